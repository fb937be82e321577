"""The pedalboard link: twins both ways, and comparing renders.

- :func:`from_pedalboard` turns a pedalboard plugin, ``Pedalboard`` or ``Mix`` into the dspfx unit
  or chain that renders the same audio (pedalboard objects hold no sample rate, so it is an
  argument).
- :func:`to_pedalboard` goes the other way, and names the unit when it has no twin.
- :func:`compare` renders the same audio through two processors (each a dspfx unit or any
  pedalboard plugin, VST3 included) and reports how far apart the renders are.

A unit declares the pedalboard classes it twins (``pedalboard_classes``) and the mapping both ways
(``from_pedalboard`` / ``to_pedalboard``), so this module holds no per-effect knowledge.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from dspfx.unit import Unit

__all__ = ["from_pedalboard", "to_pedalboard", "compare", "Comparison", "twin_table"]


def _pedalboard():
    try:
        import pedalboard
    except ImportError as err:  # pragma: no cover - pedalboard is a dependency
        raise ImportError("the pedalboard link needs the pedalboard package: pip install pedalboard") from err
    return pedalboard


def twin_table() -> dict[str, type[Unit]]:
    """pedalboard class name -> the dspfx unit class that twins it (from the registry)."""
    from dspfx.registry import _REGISTRY

    out: dict[str, type[Unit]] = {}
    for cls in _REGISTRY.values():
        for name in cls.pedalboard_classes:
            out[name] = cls
    return out


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _child_names(plugins: list[Any]) -> list[str]:
    names, seen = [], {}
    for plugin in plugins:
        base = _snake(type(plugin).__name__)
        seen[base] = seen.get(base, 0) + 1
        names.append(base if seen[base] == 1 else f"{base}_{seen[base]}")
    return names


def from_pedalboard(plugin_or_board: Any, sample_rate: float = 48000) -> Unit:
    """The dspfx twin of a pedalboard plugin, ``Pedalboard`` (-> :class:`~dspfx.Chain`) or ``Mix``
    (-> :class:`~dspfx.Parallel`).

    Children are named after their pedalboard class in snake case (``peak_filter``, a second one
    ``peak_filter_2``), so ``twin.set(**{"peak_filter.gain_db": 3.0})`` works.

    Raises ``TypeError`` naming the plugin when no twin exists, and ``ValueError`` when a setting
    lies outside the twin knob's range.
    """
    from dspfx.chain import Chain, Parallel

    pb = _pedalboard()
    if isinstance(plugin_or_board, (pb.Pedalboard, pb.Chain, pb.Mix)):
        plugins = list(plugin_or_board)
        if not plugins:
            raise ValueError(f"cannot make a twin of an empty {type(plugin_or_board).__name__}")
        children = {name: from_pedalboard(p, sample_rate) for name, p in zip(_child_names(plugins), plugins)}
        return Parallel(**children) if isinstance(plugin_or_board, pb.Mix) else Chain(**children)
    if not isinstance(plugin_or_board, pb.Plugin):
        raise TypeError(f"from_pedalboard() takes a pedalboard plugin or board, got {type(plugin_or_board).__name__}")
    table = twin_table()
    kind = type(plugin_or_board).__name__
    if kind not in table:
        raise TypeError(
            f"no dspfx twin for pedalboard.{kind} yet; twins exist for: {', '.join(sorted(table))}. "
            "It can still be the reference side of dspfx.compare()."
        )
    return table[kind].from_pedalboard(plugin_or_board, sample_rate)


def to_pedalboard(unit: Unit) -> Any:
    """The pedalboard object that renders like ``unit``: a plugin, a ``Pedalboard`` for a
    :class:`~dspfx.Chain`, a ``Mix`` for a :class:`~dspfx.Parallel` without branch gains.

    Raises ``TypeError`` naming the unit (by path inside a chain) when it has no twin.
    """
    from dspfx.chain import Chain, Parallel

    pb = _pedalboard()
    if isinstance(unit, Chain):
        return pb.Pedalboard([_child_to_pedalboard(unit, k, c) for k, c in unit.children_units().items()])
    if isinstance(unit, Parallel):
        if unit.gains:
            raise TypeError("a Parallel with branch gains has no pedalboard twin (pedalboard.Mix has no gains)")
        return pb.Mix([_child_to_pedalboard(unit, k, c) for k, c in unit.children_units().items()])
    if not isinstance(unit, Unit):
        raise TypeError(f"to_pedalboard() takes a dspfx Unit, got {type(unit).__name__}")
    return unit.to_pedalboard()


def _child_to_pedalboard(parent: Unit, key: str, child: Unit) -> Any:
    try:
        return to_pedalboard(child)
    except TypeError as err:
        raise TypeError(f"{parent.label} child {key!r}: {err}") from None


@dataclass
class Comparison:
    """How far apart two renders of the same audio are (``a`` is the prediction, ``b`` the reference).

    Attributes: esr, esr_pre_emphasis, mrstft, snr_db, lsd_db, dc_error, max_abs_error (of the
    renders after removing ``latency_samples``), latency_samples (how far ``b`` lags ``a``,
    found by cross-correlation), and the two renders as (channels, samples) float tensors.
    """

    esr: float
    esr_pre_emphasis: float
    mrstft: float
    snr_db: float
    lsd_db: float
    dc_error: float
    max_abs_error: float
    latency_samples: int
    sample_rate: float
    a_render: Tensor = field(repr=False)
    b_render: Tensor = field(repr=False)

    def metrics(self) -> dict[str, float]:
        """The figures alone, as a JSON-safe dict."""
        return {
            "esr": self.esr,
            "esr_pre_emphasis": self.esr_pre_emphasis,
            "mrstft": self.mrstft,
            "snr_db": self.snr_db,
            "lsd_db": self.lsd_db,
            "dc_error": self.dc_error,
            "max_abs_error": self.max_abs_error,
            "latency_samples": self.latency_samples,
        }


def _render(side: Any, audio: Tensor, sample_rate: float, which: str) -> Tensor:
    """Render (channels, samples) float32 audio through a dspfx unit or a pedalboard plugin."""
    if isinstance(side, Unit):
        if side.sample_rate != sample_rate:
            raise ValueError(
                f"sample-rate mismatch: {which} ({side.label}) renders at {side.sample_rate} Hz, "
                f"the audio is at {sample_rate} Hz"
            )
        with torch.no_grad():
            y = side(audio.unsqueeze(0).to(device=side.device, dtype=side.dtype))
        return y[0].detach().to("cpu", torch.float32)
    pb = _pedalboard()
    if isinstance(side, pb.Plugin):
        y = side(audio.numpy().astype(np.float32), float(sample_rate))
        return torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32))
    if callable(side):
        y = side(audio)
        if not isinstance(y, Tensor):
            y = torch.as_tensor(np.asarray(y), dtype=torch.float32)
        return y.reshape(audio.shape[0], -1).to(torch.float32)
    raise TypeError(f"compare(): {which} must be a dspfx Unit, a pedalboard plugin or board, got {type(side).__name__}")


def compare(
    a: Any,
    b: Any,
    audio: Any,
    sample_rate: float,
    *,
    plot: str | Path | None = None,
    align: bool = True,
    max_latency: int | None = None,
) -> Comparison:
    """Render ``audio`` through ``a`` and ``b`` and measure how far apart the renders are.

    Args:
        a, b: each a dspfx unit, a pedalboard plugin/``Pedalboard``/``Mix`` (any plugin
            pedalboard can load, VST3 included), or a callable ``f(audio) -> audio``.
        audio: ``(samples,)`` or ``(channels, samples)`` (or ``(1, channels, samples)``), tensor
            or array; float32 is what pedalboard renders in.
        sample_rate: the audio's rate; a dspfx unit must render at this rate.
        plot: write a picture here (both spectrograms, their difference, the waveform error).
        align: find ``b``'s latency against ``a`` and remove it before measuring.
        max_latency: largest latency searched, in samples.

    Returns:
        a :class:`Comparison` (``b`` is the reference: ESR = sum((a-b)^2) / sum(b^2)).
    """
    from dspfx.checks import as_batch, check_finite
    from dspfx.fitting.latency import align as align_pair
    from dspfx.fitting.latency import estimate_latency
    from dspfx.fitting.metrics import all_metrics

    x, _ = as_batch(audio)
    if x.shape[0] != 1:
        raise ValueError(f"compare() renders one signal; got a batch of {x.shape[0]} (shape {tuple(x.shape)})")
    check_finite(x, "audio")
    x = x[0].to(torch.float32)
    ya = _render(a, x, sample_rate, "a")
    yb = _render(b, x, sample_rate, "b")
    if ya.shape != yb.shape:
        raise ValueError(f"renders differ in shape: a gave {tuple(ya.shape)}, b gave {tuple(yb.shape)}")
    latency = 0
    pa, pb_ = ya.unsqueeze(0), yb.unsqueeze(0)
    if align and float(ya.abs().max()) > 0 and float(yb.abs().max()) > 0:
        latency = estimate_latency(pa, pb_, max_latency=max_latency)
        if latency:
            pa, pb_ = align_pair(pa, pb_, latency)
    m = all_metrics(pa.double(), pb_.double(), sample_rate)
    result = Comparison(
        esr=m["esr"],
        esr_pre_emphasis=m["esr_pre_emphasis"],
        mrstft=m["mrstft"],
        snr_db=m["snr_db"],
        lsd_db=m["lsd_db"],
        dc_error=m["dc_error"],
        max_abs_error=m["max_abs_error"],
        latency_samples=latency,
        sample_rate=sample_rate,
        a_render=ya,
        b_render=yb,
    )
    if plot is not None:
        from dspfx.plot import comparison

        comparison(plot, a=ya, b=yb, sample_rate=sample_rate, title=f"ESR {result.esr:.3g}, SNR {result.snr_db:.1f} dB")
    return result
