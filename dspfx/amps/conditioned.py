"""Knob-conditioned amp models: front-panel settings (0 .. 10) -> a small network -> block knobs.

One amp capture gives one setting. :class:`KnobConditioned` learns the whole front panel from a
few captures at different settings: a small MLP reads the normalised settings and moves every
trainable knob of a wrapped amp chain, in the knobs' raw (pre-sigmoid) space, away from the
chain's own (learned) values. Trained on several captures, it renders settings it never saw.

See :class:`KnobConditioned` for the five lines from captures to an unseen setting.

Reference: the knob-conditioned MLP controllers of nablafx (Comunità, Steinmetz & Reiss,
"Differentiable black-box and gray-box modeling of nonlinear audio effects", 2025), which map
knob settings to the parameters of gray-box blocks, and the gray-box amp of Yeh et al., "DDSP
Guitar Amp" (arXiv 2408.11405), evaluated on seen and unseen knob settings.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from dspfx.chain import Container
from dspfx.functional.control import Frames, as_control, split_frames, upsample_control
from dspfx.registry import register
from dspfx.unit import Unit

__all__ = ["KnobConditioned", "KnobFitResult", "SETTING_RANGE"]

#: Every front-panel setting runs 0 .. 10, like the numbers printed around an amp's knobs.
SETTING_RANGE = (0.0, 10.0)

_SETTING_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def _front_panel_names() -> tuple[str, ...]:
    from dspfx.amps.amp import FRONT_PANEL

    return tuple(FRONT_PANEL)


def _first_frame(value: Any) -> Any:
    """The first frame of a setting's value: a ``(batch, frames)`` tensor's column 0, else the
    value itself (a number or ``(batch,)`` is constant)."""
    return value[:, :1] if getattr(value, "ndim", 0) >= 2 else value


def _check_setting_value(name: str, value: Any, where: str) -> float:
    """A plain number in 0 .. 10, as a float (for captures and defaults)."""
    if isinstance(value, Tensor):
        if value.numel() != 1:
            raise ValueError(f"{where}: setting {name!r} takes one number here, got a tensor shaped {tuple(value.shape)}")
        value = float(value.detach())
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            value = float(value)  # numpy scalars
        except (TypeError, ValueError):
            raise TypeError(f"{where}: setting {name!r} must be a number in 0 .. 10, got {type(value).__name__} {value!r}") from None
    v = float(value)
    lo, hi = SETTING_RANGE
    if not math.isfinite(v) or not lo <= v <= hi:
        raise ValueError(f"{where}: setting {name!r} = {v!r} is out of range; front-panel settings run {lo:g} .. {hi:g}")
    return v


@dataclass
class KnobFitResult:
    """What :meth:`KnobConditioned.fit_captures` found.

    Attributes:
        model: the trained :class:`KnobConditioned` (the same object, trained in place).
        esr: per-capture error-to-signal ratio of the final model over each whole capture
            (after latency alignment), in capture order.
        esr_pre_emphasis: the same with first-order pre-emphasis ``1 - 0.95 z^-1``.
        latency_samples: per capture, the target's delay removed before training.
        loss_history: training loss per step.
        skipped_steps: steps skipped for a NaN/Inf loss or gradient.
        elapsed_s: wall-clock time of the whole fit.
        settings: the fit's arguments (steps, lr, batch, segment, ...), JSON-safe.
    """

    model: KnobConditioned
    esr: list[float]
    esr_pre_emphasis: list[float]
    latency_samples: list[int]
    loss_history: list[float]
    skipped_steps: int
    elapsed_s: float
    settings: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        per = ", ".join(f"{e:.3g}" for e in self.esr)
        return (
            f"ESR per capture: {per}; final loss {self.loss_history[-1]:.4g}; "
            f"{self.skipped_steps} skipped steps; {self.elapsed_s:.1f} s"
        )


@register
class KnobConditioned(Container):
    """An amp chain whose knobs follow the front-panel settings (0 .. 10) through a small network.

    A multilayer perceptron (``layers`` hidden layers of ``hidden`` tanh units) reads the
    settings, normalised to ``settings / 5 - 1`` (so 0 .. 10 -> -1 .. 1), and outputs one offset
    per conditioned knob, added to that knob's own raw (pre-sigmoid) parameter in the wrapped
    chain; the knob's bounded map then turns it into a physical value, so every setting renders
    knobs inside their ranges. The network's last layer starts at zero: a new model renders
    exactly like the chain it wraps, at any setting, and training moves it from there. The
    chain's own knobs are the learned *base* (the amp's voicing shared by all settings); the
    network learns how the settings move them. Knobs that are not conditioned (frozen ones, or
    those left out of ``conditioned``) stay shared by all settings.

    The wrapped chain is the child ``"amp"``: its knobs and controls are addressed as
    ``"amp.<block>.<knob>"``; a control given by path in a call overrides the network for that
    knob (``model(x, {"gain": 7}, **{"amp.cabinet.lowpass_hz": 3000.0})``).

    Settings in a call: ``model(x, settings)`` with ``settings`` a dict ``{name: value}`` (a
    number, a ``(batch,)`` tensor, or ``(batch, frames)`` for automation on the causal hop grid of the
    block), or a tensor ``(n_settings,)`` / ``(batch, n_settings)`` in the order of
    ``model.settings``; or by name as controls, ``model(x, gain=7.0)`` (the form
    :class:`dspfx.Stream` uses: ``stream(block, gain=7.0)``). Settings not given take
    ``defaults`` (5, the middle of each knob, unless set). Values outside 0 .. 10 and unknown
    names are errors. Tensors stay differentiable (gradients reach the settings).

    Options:
        amp: the chain to condition (any effect unit; default :func:`dspfx.amps.amp` of
            ``model`` at ``sample_rate``).
        settings: names of the front-panel settings the network reads (snake_case; default
            the six of :data:`dspfx.amps.amp.FRONT_PANEL`: gain, bass, mid, treble, presence,
            master).
        hidden: units per hidden layer (default 32).
        layers: hidden layers (default 2).
        conditioned: paths of the chain's knobs the network moves (default: every knob that
            is not frozen when the model is made).
        defaults: ``{name: value}`` for settings a call does not give (default 5 each).
        model, sample_rate: for the default chain only.

    The spec's options also hold ``exact_raw``: the raw parameters of the chain's trained knobs
    (physical values in a spec cannot give them back bit for bit), written back on load.

    Streaming: it carries the wrapped chain's state, so :class:`dspfx.Stream` over blocks of
    any size equals the offline render (constant settings).

    Saving: ``dspfx.save(model, "amp.safetensors")`` writes the chain's spec and the network's
    weights (no pickle); ``dspfx.load`` renders bit-identically.

    >>> model = KnobConditioned(model="bassman", sample_rate=48000, settings=("gain", "treble"))
    >>> y = model(x, {"gain": torch.tensor([2.0, 8.0]), "treble": 5.0})  # x: (2, 1, samples)

    Usage, from captures to an unseen setting (``di``: the DI recording; ``amp_g2`` ...: the
    amp's output recorded at those settings)::

        model = KnobConditioned(model="jcm800", sample_rate=48000, settings=("gain", "treble"))
        captures = [({"gain": 2, "treble": 5}, di, amp_g2), ({"gain": 8, "treble": 5}, di, amp_g8),
                    ({"gain": 5, "treble": 9}, di, amp_g5_t9)]     # (settings, DI, amp output)
        result = model.fit_captures(captures, steps=500)         # result.esr: per capture
        y = model(new_di, {"gain": 6.5, "treble": 7})             # a setting no capture had
        dspfx.save(model, "jcm800.safetensors")                    # dspfx.load() gives it back

    Reference: the knob-conditioned MLP controllers of nablafx (Comunità, Steinmetz & Reiss
    2025); Yeh et al., "DDSP Guitar Amp" (arXiv 2408.11405) for gray-box amps at unseen
    knob settings.
    """

    name = "knob_conditioned"
    category = "amp"

    def __init__(
        self,
        amp: Unit | None = None,
        *,
        settings: Sequence[str] | None = None,
        hidden: int = 32,
        layers: int = 2,
        conditioned: Sequence[str] | None = None,
        defaults: Mapping[str, float] | None = None,
        model: str = "bassman",
        sample_rate: float = 48000,
    ) -> None:
        owner = "KnobConditioned"
        if amp is None:
            from dspfx.amps.amp import amp as make_amp

            amp = make_amp(model, sample_rate)
        if not isinstance(amp, Unit):
            raise TypeError(f"{owner}: amp must be a dspfx Unit (e.g. dspfx.amps.amp('bassman')), got {type(amp).__name__}")
        if amp.is_synth:
            raise ValueError(f"{owner}: {amp.label} is a synth; a knob-conditioned model wraps an effect or amp chain")
        # -- settings ------------------------------------------------------------------------
        names = list(_front_panel_names() if settings is None else settings)
        if isinstance(settings, str):
            raise TypeError(f"{owner}: settings is a list of names, e.g. ['gain', 'treble'], got the string {settings!r}")
        if not names:
            raise ValueError(f"{owner}: settings must name at least one front-panel setting")
        for n in names:
            if not isinstance(n, str) or not _SETTING_NAME.match(n) or n == "amp":
                raise ValueError(f"{owner}: setting names are snake_case strings other than 'amp', got {n!r}")
        if len(set(names)) != len(names):
            raise ValueError(f"{owner}: settings has repeated names: {names}")
        for key, value in (("hidden", hidden), ("layers", layers)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{owner}: {key} must be an int >= 1, got {value!r}")
        given_defaults = dict(defaults or {})
        unknown = [k for k in given_defaults if k not in names]
        if unknown:
            raise ValueError(f"{owner}: defaults for unknown settings {unknown}; settings are {names}")
        self.defaults = {n: _check_setting_value(n, given_defaults.get(n, 5.0), f"{owner} defaults") for n in names}
        # -- conditioned knobs -----------------------------------------------------------------
        table = amp.knobs()
        if conditioned is None:
            paths = [p for p in table if p not in set(amp.frozen())]
        else:
            if isinstance(conditioned, str):
                raise TypeError(f"{owner}: conditioned is a list of knob paths, got the string {conditioned!r}")
            paths = list(conditioned)
            bad = [p for p in paths if p not in table]
            if bad:
                raise ValueError(f"{owner}: conditioned names knobs the chain does not have: {bad} (knobs: {', '.join(table)})")
            if len(set(paths)) != len(paths):
                raise ValueError(f"{owner}: conditioned has repeated paths: {paths}")
        if not paths:
            raise ValueError(f"{owner}: no knob to condition (all of {amp.label}'s knobs are frozen?)")
        super().__init__({"amp": amp})
        self.settings = names
        self.hidden = int(hidden)
        self.layers = int(layers)
        self.conditioned = paths
        self.extra_controls = tuple(names)  # settings reach render_block as controls by name
        # -- the network: settings -> raw offsets, last layer zero --------------------------------
        dims = [len(names)] + [self.hidden] * self.layers
        modules: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:]):
            modules += [nn.Linear(a, b), nn.Tanh()]
        last = nn.Linear(dims[-1], len(paths))
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.net = nn.Sequential(*modules, last)
        self.to(device=amp.device, dtype=amp.dtype)

    # -- spec / save -----------------------------------------------------------------------------
    @property
    def exact_raw(self) -> dict[str, float]:
        """Raw parameters of the chain's knobs that are not at a value set by ``set()`` (trained
        ones), by path: the spec's physical values cannot give them back bit for bit."""
        out: dict[str, float] = {}
        for path in self.units["amp"].knobs():
            unit, key = self.units["amp"]._resolve(path)
            if not unit._exact_hit(key):
                out[path] = float(unit.raw_knobs[key].detach().double())
        return out

    @torch.no_grad()
    def _write_exact_raw(self, exact_raw: Mapping[str, float]) -> None:
        chain = self.units["amp"]
        for path, value in dict(exact_raw).items():
            try:
                unit, key = chain._resolve(path)
            except KeyError:
                raise ValueError(f"KnobConditioned: exact_raw names a knob the chain does not have: {path!r}") from None
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"KnobConditioned: exact_raw[{path!r}] must be a finite number, got {value!r}")
            unit.raw_knobs[key].fill_(float(value))

    def options(self) -> dict[str, Any]:
        return {
            "settings": list(self.settings),
            "hidden": self.hidden,
            "layers": self.layers,
            "conditioned": list(self.conditioned),
            "defaults": dict(self.defaults),
            "exact_raw": self.exact_raw,
        }

    @classmethod
    def _from_children(cls, children: dict[str, Unit], options: dict[str, Any]) -> Unit:
        if set(children) != {"amp"}:
            raise ValueError(f"knob_conditioned spec needs exactly one child named 'amp', got {sorted(children)}")
        options = dict(options)
        exact_raw = options.pop("exact_raw", None) or {}
        if not isinstance(exact_raw, Mapping):
            raise ValueError(f"knob_conditioned spec: exact_raw must be a dict {{path: raw value}}, got {type(exact_raw).__name__}")
        unit = cls(children["amp"], **options)
        unit._write_exact_raw(exact_raw)
        return unit

    @property
    def latency_samples(self) -> int:
        return self.units["amp"].latency_samples

    def extra_repr(self) -> str:
        return (
            f"sample_rate={self.sample_rate}, settings={self.settings}, hidden={self.hidden}, "
            f"layers={self.layers}, conditioned={len(self.conditioned)} knobs"
        )

    # -- settings -> knobs ---------------------------------------------------------------------
    def settings_dict(self, settings: Any) -> dict[str, Any]:
        """Normalise ``settings`` (a dict by name, or a tensor ``(n_settings,)`` / ``(batch,
        n_settings)`` in the order of :attr:`settings`) to a dict by name; checks the names."""
        if isinstance(settings, Mapping):
            unknown = [k for k in settings if k not in self.settings]
            if unknown:
                import difflib

                close = difflib.get_close_matches(str(unknown[0]), self.settings, n=2)
                hint = f"; did you mean {', '.join(close)}?" if close else ""
                raise ValueError(
                    f"KnobConditioned: unknown setting {unknown[0]!r}{hint} (this model reads: {', '.join(self.settings)})"
                )
            return dict(settings)
        if isinstance(settings, Tensor):
            n = len(self.settings)
            if settings.ndim == 1 and settings.shape[0] == n:
                return {name: settings[i] for i, name in enumerate(self.settings)}
            if settings.ndim == 2 and settings.shape[1] == n:
                return {name: settings[:, i] for i, name in enumerate(self.settings)}
            raise ValueError(
                f"KnobConditioned: a settings tensor is shaped ({n},) or (batch, {n}) (columns "
                f"{', '.join(self.settings)}), got shape {tuple(settings.shape)}"
            )
        raise TypeError(
            f"KnobConditioned: settings are a dict {{name: value}} or a (batch, {len(self.settings)}) tensor, "
            f"got {type(settings).__name__}"
        )

    def _settings_tensor(self, given: Mapping[str, Any], batch: int) -> Tensor:
        """(batch|1, frames, n_settings) on the model's dtype/device, checked to lie in 0 .. 10."""
        lo, hi = SETTING_RANGE
        columns = []
        for name in self.settings:
            value = given.get(name, self.defaults[name])
            c = as_control(value, batch, name=name, dtype=self.dtype, device=self.device)
            with torch.no_grad():
                below, above = bool((c < lo).any()), bool((c > hi).any())
            if below or above:
                with torch.no_grad():
                    span = f"{float(c.min()):g} .. {float(c.max()):g}"
                raise ValueError(f"KnobConditioned: setting {name!r} spans {span}; front-panel settings run {lo:g} .. {hi:g}")
            columns.append(c)
        b = max(c.shape[0] for c in columns)
        frames = max(c.shape[1] for c in columns)
        columns = [upsample_control(c, frames, mode="causal") if c.shape[1] != frames else c for c in columns]
        return torch.cat([c.expand(b, frames, 1) for c in columns], dim=-1)

    def knob_controls(self, settings: Any = None, batch: int = 1) -> dict[str, Tensor]:
        """Physical values of the conditioned knobs for ``settings``, by path in the chain.

        Args:
            settings: as in a call (dict, or ``(batch, n_settings)`` tensor), None for the defaults.
            batch: the audio batch the settings must match (or broadcast to).

        Returns:
            ``{path: tensor (batch|1, frames)}``, differentiable with respect to the settings,
            the network and the chain's knobs. With a zero last layer these are exactly the
            chain's own knob values.
        """
        given = {} if settings is None else self.settings_dict(settings)
        s = self._settings_tensor(given, batch)
        offsets = self.net(s / 5.0 - 1.0)  # (b, frames, n_knobs)
        chain = self.units["amp"]
        out: dict[str, Tensor] = {}
        for i, path in enumerate(self.conditioned):
            unit, key = chain._resolve(path)
            knob = unit.knob_specs[key]
            raw = unit.raw_knobs[key]
            off = offsets[..., i]
            moved = knob.to_physical(raw + off)
            # base + (moved - at_base): exactly the chain's own value (set values included, see
            # Unit.knob_value) when the offset is 0, computed on the same shape so no rounding
            # of the map differs; gradients are those of to_physical(raw + off)
            at_base = knob.to_physical(raw.expand_as(off))
            value = unit.knob_value(key) + (moved - at_base)
            clamped = value.clamp(knob.minimum, knob.maximum)  # rounding must not leave the range
            out[path] = value + (clamped - value).detach()
        return out

    def knob_values(self, settings: Any = None) -> dict[str, Tensor]:
        """The conditioned knobs' physical values for ``settings`` (constant in time), by path:
        ``{path: (batch,) tensor}``; shows how the network maps the front panel to the blocks."""
        given = {} if settings is None else self.settings_dict(settings)
        batch = max([int(v.shape[0]) for v in given.values() if isinstance(v, Tensor) and v.ndim >= 1] or [1])
        return {p: v[:, 0] for p, v in self.knob_controls(given, batch).items()}

    # -- rendering -------------------------------------------------------------------------------
    def forward(self, x: Tensor | None = None, settings: Any = None, **controls: Any) -> Tensor:
        """Render ``x`` (batch, channels, samples) at ``settings`` (see the class doc).

        Returns:
            (batch, channels', samples), the wrapped chain's output.
        """
        if settings is not None:
            named = self.settings_dict(settings)
            both = [k for k in named if k in controls]
            if both:
                raise ValueError(f"KnobConditioned: setting {both[0]!r} given twice (in settings and by name)")
            controls = {**named, **controls}
        return super().forward(x, **controls)

    def render_block(self, x, controls, state, n_samples=None):
        for key in controls:
            head = key.partition(".")[0]
            if key not in self.settings and head != "amp":
                import difflib

                close = difflib.get_close_matches(key, self.settings, n=2)
                hint = f"; did you mean {', '.join(close)}?" if close else ""
                raise ValueError(
                    f"KnobConditioned: unknown setting {key!r}{hint} (this model reads: {', '.join(self.settings)}; "
                    "chain controls go by path, 'amp.<block>.<knob>')"
                )
        own, per_child = self.split_controls(controls)
        batch = x.shape[0] if x is not None else 1
        child = dict(per_child.get("amp", {}))
        current = {k: split_frames(v)[0] for k, v in own.items()}
        before = {k: split_frames(v)[1] for k, v in own.items()}
        knobs = self.knob_controls(current, batch)
        if any(v is not None for v in before.values()):
            # a stream's previous block: its settings' last frame through the network gives the
            # knob frame each conditioned knob starts this block from
            start = {k: before[k] if before[k] is not None else _first_frame(current[k]) for k in current}
            last = self.knob_controls(start, batch)
            knobs = {path: Frames(value, last[path][:, -1:]) for path, value in knobs.items()}
        for path, value in knobs.items():
            child.setdefault(path, value)  # a control given by path wins over the network
        y, amp_state = self.units["amp"].render_block(x, child, state["amp"], n_samples=n_samples)
        return y, {"amp": amp_state}

    # -- training -------------------------------------------------------------------------------
    def fit_captures(
        self,
        captures: Sequence[Any],
        *,
        steps: int = 500,
        batch_size: int = 8,
        segment_s: float | None = None,
        warmup_s: float | None = None,
        lr: float = 0.05,
        weights_lr: float = 0.005,
        loss: Any = "mrstft+esr",
        esr_weight: float = 1.0,
        align_latency: bool = True,
        max_latency: int | None = None,
        sample_rate: float | None = None,
        seed: int = 0,
        progress: bool | None = None,
        max_seconds: float | None = None,
    ) -> KnobFitResult:
        """Train on captures of the amp at several settings: random segments, captures mixed in
        every batch, Adam with a cosine decay to 1% of the rates.

        Every parameter that requires a gradient trains, through :func:`dspfx.fitting.optimise`
        (the core every training job shares): the chain's knobs at ``lr`` (raw knob space,
        where a knob's range spans about 8 units), the network and any learned tensor at
        ``weights_lr``. Freeze the network (``model.net.requires_grad_(False)``) to fit one
        shared amp to all captures instead, the unconditioned baseline.

        Args:
            captures: a list of ``(settings, di, target)`` or ``(settings, di, target,
                sample_rate)``, or dicts with keys ``settings``, ``input``, ``target`` and
                optionally ``sample_rate``. ``settings`` is a dict giving every name of
                :attr:`settings` a number in 0 .. 10; ``di`` and ``target`` are one recording
                each, ``(samples,)``, ``(channels, samples)`` or ``(1, channels, samples)``, of
                equal length; captures may differ in length but not in channels.
            steps: optimiser steps.
            batch_size: segments per step; captures are dealt round-robin in a random order,
                so every batch holds as many different captures as it can.
            segment_s: seconds per segment (default 0.1 s, at most the shortest capture).
            warmup_s: first seconds of each segment left out of the loss while the chain's
                filters and sag settle (default 1/8 of the segment).
            lr, weights_lr: Adam rates of the chain's knobs and of the network (and any other
                learned tensor).
            loss: ``"mrstft+esr"`` (default: auraloss MR-STFT at resolutions scaled to the rate,
                plus ``esr_weight`` x ESR), or anything :func:`dspfx.fitting.losses.make_loss` takes.
            esr_weight: weight of the ESR term.
            align_latency: estimate each target's delay against the model's render at that
                capture's settings and remove it (reported per capture).
            max_latency: largest delay searched, samples.
            sample_rate: rate of every capture without its own (must be the model's).
            seed: seeds the segment draws.
            progress: tqdm bar; None shows it when stderr is a terminal.
            max_seconds: wall-clock budget; training stops cleanly after the step that crosses it.

        Returns:
            :class:`KnobFitResult` with per-capture ESR of the trained model.

        Raises:
            ValueError: no captures, unknown/missing setting names, values outside 0 .. 10,
                input and target of different lengths, channel counts or sample rates that do
                not match, a silent target, non-finite audio.
        """
        from dspfx.fitting.knob_fit import fit_knob_captures

        return fit_knob_captures(
            self, captures, steps=steps, batch_size=batch_size, segment_s=segment_s, warmup_s=warmup_s, lr=lr,
            weights_lr=weights_lr, loss=loss, esr_weight=esr_weight, align_latency=align_latency,
            max_latency=max_latency, sample_rate=sample_rate, seed=seed, progress=progress, max_seconds=max_seconds,
        )
