"""Capture a device (an amp or a pedal) as a model: :func:`capture` and ``dspfx capture``.

The input is what was played into the device (a DI recording, or the reamp signal of
:mod:`dspfx.fitting.reamp`), the output what came out, both at one rate. The steps:

1. checks (:func:`~dspfx.fitting.capture.check_capture`): rates, lengths, silence, NaN are
   errors; clipping and DC offsets are warnings;
2. latency: ``latency=`` when given; the blips when the input is the reamp signal
   (:func:`~dspfx.fitting.reamp.blip_latency`); else the onset of the device's response
   (:func:`~dspfx.fitting.latency.device_latency`: a zero-latency device is never shifted, a
   pure delay is recovered; a steep low-pass can read late by its rise, so give ``latency=``
   when you know it). The method is reported;
3. held-out audio: with the reamp signal, its second validation segment (after a second of
   silence); else the last 20% of the pair. It is never trained on;
4. training through :func:`dspfx.fit` (the training core): random segments of the training
   part, a time-domain loss (it keeps phase): the squared error over the training audio's mean
   square (:class:`~dspfx.fitting.losses.ScaledMSELoss`, NAM's MSE on the ESR scale), the best held-out state, within
   ``max_seconds``. ``model="auto"`` follows :data:`AUTO_PLAN`: the gray-box amp for a fifth
   of the budget, then NAM's WaveNet for the rest, and keeps the one with the lower held-out
   ESR. Polarity, level and DC are learned: the neural models' output layers carry a
   signed scale and a bias, the gray-box amp is followed by a ``trim`` (signed level, DC);
5. the model renders aligned with the device: the unit followed by a pure delay of the
   latency (``latency`` in the chain, frozen).

Grades of the held-out ESR are NAM's: great < 0.01, not bad < 0.035, ok < 0.1.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from dspfx.chain import Parallel
from dspfx.checks import as_batch, check_sample_rate, positive_number
from dspfx.unit import Unit

__all__ = ["capture", "pair_latency", "CaptureResult", "CAPTURE_MODELS", "AUTO_PLAN", "grade", "GRADES"]

#: ``model=`` choices: NAM's WaveNet (``size=``), NAM's LSTM, the gray-box amp, or ``auto``.
CAPTURE_MODELS = ("auto", "wavenet", "lstm", "graybox", "hybrid")
#: What ``model="auto"`` trains, in order, each with its share of the budget (the last takes
#: what is left); the one with the lowest held-out ESR is kept. Measured on guitarix pedals
#: (benchmarks/capture.py, 5 minutes): equal trials of the four models for an eighth of the
#: budget each, the rest to the best, starved the WaveNet (gxbooster 0.0032 against 0.00059 for
#: the WaveNet alone) and picked the gray-box on gx_fuzzface, whose quick start (0.026 against
#: the WaveNet's 0.039 after 37 s) did not last (0.0153 against 0.0127 at the end); the LSTM
#: and the hybrid never led a trial (0.16-0.39). The gray-box settles fast, so a fifth of the
#: budget shows what it can do, and the WaveNet, the model that keeps improving, gets the rest.
AUTO_PLAN = (("graybox", 0.2), ("wavenet", 1.0))
#: Models that cannot delay their output: their latency is measured against their own render.
_STRUCTURED = ("graybox", "hybrid")
#: NAM's grades of the held-out ESR, best first.
GRADES = ((0.01, "great"), (0.035, "not bad"), (0.1, "ok"), (0.3, "probably won't sound great"))


def grade(esr: float) -> str:
    """NAM's word for a held-out ESR."""
    for limit, word in GRADES:
        if esr < limit:
            return word
    return "poor"


@dataclass
class CaptureResult:
    """What :func:`capture` made and measured.

    Attributes:
        unit: the model, followed by the latency (a chain ``model -> latency``): renders the
            device's output aligned with the recording.
        model: the trained model alone (what ``.nam`` export takes).
        model_name: which of :data:`CAPTURE_MODELS` it is (``auto`` names its choice).
        latency_samples, latency_method: the latency removed, and how it was found
            (``"given"``, ``"blips"`` or ``"onset"``).
        heldout_esr, grade: on the held-out audio, and NAM's word for it.
        metrics: every metric of :func:`dspfx.fit` on the held-out audio.
        repeat_esr: with the reamp signal, the ESR between the device's two validation
            returns (its noise or drift); else None.
        steps, train_seconds: optimiser steps and wall-clock time of the training.
        realtime_factor: how many times faster than real time the model renders (2 s, batch 1,
            no gradient, this machine's threads).
        warnings: capture warnings (clipping, DC).
        candidates: with ``model="auto"``, each candidate's held-out ESR (see :data:`AUTO_PLAN`).
    """

    unit: Unit
    model: Unit
    model_name: str
    latency_samples: int
    latency_method: str
    heldout_esr: float
    grade: str
    metrics: dict[str, float]
    repeat_esr: float | None
    steps: int
    train_seconds: float
    realtime_factor: float
    warnings: list[str] = field(default_factory=list)
    candidates: dict[str, float] = field(default_factory=dict)
    fit: Any = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model_name, "unit": self.model.spec()["unit"], "options": self.model.options(),
            "latency_samples": self.latency_samples, "latency_method": self.latency_method,
            "heldout_esr": self.heldout_esr, "grade": self.grade, "metrics": self.metrics,
            "repeat_esr": self.repeat_esr, "steps": self.steps, "train_seconds": self.train_seconds,
            "realtime_factor": self.realtime_factor, "warnings": self.warnings,
            **({"auto_candidates": self.candidates} if self.candidates else {}),
        }


#: Training rates per model: ``lr`` for knobs, ``weights_lr`` for network weights. The WaveNet
#: trains at Adam 0.01 with the cosine schedule over the budget: on gx_muff's reamp pair (2
#: minutes of one core) held-out ESR 0.050 at 0.004 (NAM's rate, which NAM keeps nearly
#: constant), 0.033 at 0.008, 0.037 at 0.012, 0.029 at 0.016, 0.065 at 0.03.
RATES = {"wavenet": {"lr": 0.01, "weights_lr": 0.01}, "lstm": {"lr": 0.01, "weights_lr": 0.01},
         "graybox": {"lr": 0.05, "weights_lr": 0.01}, "hybrid": {"lr": 0.05, "weights_lr": 0.004}}


def _make_model(model: str, sample_rate: int, size: str, seed: int) -> Unit:
    """A fresh unit of one of the capture models (its rates are :data:`RATES`)."""
    import dspfx

    if model == "wavenet":
        return dspfx.make("wavenet", sample_rate=sample_rate, size=size, seed=seed)
    if model == "lstm":  # NAM's LSTM (no skip connection), so that it exports as a .nam file
        return dspfx.make("lstm_amp", sample_rate=sample_rate, seed=seed, skip=False)
    if model in _STRUCTURED:
        amp = dspfx.amps.amp(model="jcm800", sample_rate=sample_rate)
        gray = dspfx.Chain(amp=amp, trim=dspfx.make("trim", sample_rate=sample_rate))
        if model == "graybox":
            return gray
        # the gray-box amp plus a nano WaveNet beside it that learns what the amp's structure misses
        return dspfx.Parallel(graybox=gray, residual=dspfx.make("wavenet", sample_rate=sample_rate, size="nano", seed=seed))
    raise ValueError(f"model must be one of {', '.join(CAPTURE_MODELS)}, got {model!r}")


def _match_level(model: Unit, x: Tensor, y: Tensor) -> None:
    """Start the gray-box's trim at the least-squares level, polarity and DC of its render
    against the device: a fit that starts with the wrong polarity shrinks the output on its
    way through zero and stalls at ESR 1 (measured on an inverting amp)."""
    trim = model["graybox"]["trim"] if isinstance(model, Parallel) else model["trim"]
    n = min(x.shape[-1], 30 * int(model.sample_rate))
    with torch.no_grad():
        trim.set(scale=1.0, dc=0.0)
        r = model(x[..., :n]).reshape(-1).double()
    t = y[..., :n].reshape(-1).double()
    r_c, t_c = r - r.mean(), t - t.mean()
    power = float(r_c @ r_c)
    scale = float(r_c @ t_c) / power if power > 0 else 1.0
    knobs = type(trim)
    scale = min(max(scale, knobs.scale.minimum), knobs.scale.maximum)
    dc = float(t.mean() - scale * r.mean())
    trim.set(scale=scale, dc=min(max(dc, knobs.dc.minimum), knobs.dc.maximum))



def pair_latency(x: Tensor, y: Tensor, sample_rate: int, layout: Any = None,
                 latency: int | None = None) -> tuple[int, str, str | None]:
    """The latency :func:`capture` removes, how it was found, and a warning (or None).

    ``latency`` when given; with the reamp signal's ``layout``, the blips' onsets, unless the two
    blips disagree (a device whose answer to a lone impulse is not repeatable, e.g. gx_bmp's
    residue at 12 kHz: 32 and 16 samples), then the response's onset, with a warning; else the
    onset (:func:`dspfx.fitting.latency.device_latency`).

    Raises:
        ValueError: a latency that is not an int >= 0; an output that leads its input.
    """
    from dspfx.fitting.latency import device_latency
    from dspfx.fitting.reamp import blip_latency

    if latency is not None:
        if isinstance(latency, bool) or not isinstance(latency, int) or latency < 0:
            raise ValueError(f"latency must be a number of samples >= 0, got {latency!r}")
        return latency, "given", None
    warning = None
    if layout is not None:
        try:
            return blip_latency(y.reshape(-1).numpy(), layout).samples, "blips", None
        except ValueError as err:
            warning = f"{err}; the latency is read from the response's onset instead"
    lag = device_latency(x, y, max_latency=min(x.shape[-1] // 4, int(sample_rate)))
    if lag < 0:
        raise ValueError(
            f"the output leads the input by {-lag} samples: the files are misaligned (or swapped); "
            f"trim the input or give the latency (latency= / --latency)"
        )
    return lag, "onset" if warning is None else "onset (the blips disagreed)", warning


def _realtime_factor(unit: Unit, sample_rate: int) -> float:
    x = torch.randn(1, 1, 2 * sample_rate, dtype=unit.dtype) * 0.1
    with torch.no_grad():
        unit(x[..., :256])
        t0 = time.perf_counter()
        unit(x)
        return 2.0 / max(time.perf_counter() - t0, 1e-9)


def capture(
    input: Any,
    output: Any,
    sample_rate: int,
    *,
    model: str = "wavenet",
    size: str = "standard",
    max_seconds: float = 300.0,
    steps: int = 1_000_000,
    latency: int | None = None,
    segment_s: float = 0.5,
    batch_size: int = 8,
    validate_every: int = 25,
    seed: int = 0,
    progress: bool | None = None,
    out: str | os.PathLike | None = None,
) -> CaptureResult:
    """Capture the device that turned ``input`` into ``output`` (see the module docstring).

    Args:
        input, output: mono audio, ``(samples,)`` or ``(1, samples)`` or ``(1, 1, samples)``.
        sample_rate: their rate in Hz.
        model: ``"wavenet"`` (NAM's, ``size`` standard/lite/feather/nano), ``"lstm"`` (NAM's
            LSTM, 32 units), ``"graybox"`` (the jcm800 gray-box amp, every knob learnable, then
            a trim), ``"hybrid"`` (that gray-box plus a nano WaveNet in parallel, learning
            what the structure misses) or ``"auto"`` (:data:`AUTO_PLAN`: the gray-box, then the
            WaveNet, the better on held-out ESR kept).
        max_seconds: wall-clock budget of the training (``dspfx capture --minutes``).
        steps: at most this many steps (the budget usually ends the run first).
        latency: the device's latency in samples, when known (skips the estimate).
        segment_s, batch_size: training segments (seconds) and segments per step.
        validate_every: steps between held-out evaluations (the best one is kept).
        out: a folder: ``model.safetensors`` (the aligned chain), ``capture.json``,
            ``report.png`` and, for a WaveNet, ``model.nam``. Checked before any work.

    Raises:
        ValueError: a pair that cannot be captured (see check_capture), not mono, a latency
            that is not an int >= 0, an unknown model, an output folder that is a file.
    """
    import dspfx
    from dspfx.fitting.capture import CaptureWarning, check_capture
    from dspfx.fitting.latency import align, render_latency
    from dspfx.fitting.losses import ScaledMSELoss
    from dspfx.fitting.reamp import match_capture_signal, repeat_esr

    sr = check_sample_rate(sample_rate, integer=True)
    if model not in CAPTURE_MODELS:
        raise ValueError(f"model must be one of {', '.join(CAPTURE_MODELS)}, got {model!r}")
    positive_number(max_seconds, "max_seconds")
    folder = None if out is None else Path(out)
    if folder is not None and folder.exists() and not folder.is_dir():
        raise ValueError(f"out={folder} exists and is not a folder")
    pair = []
    for name, value in (("input", input), ("output", output)):
        audio, _ = as_batch(torch.as_tensor(value) if not isinstance(value, Tensor) else value)
        if audio.shape[0] != 1 or audio.shape[1] != 1:
            raise ValueError(f"capture takes mono recordings; the {name} is shaped {tuple(audio.shape)}")
        pair.append(audio.to(torch.float32))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CaptureWarning)
        report = check_capture(pair[0], pair[1], sr, max_latency_ms=None)
    found = [str(w.message) for w in caught if issubclass(w.category, CaptureWarning)]
    x, y = report.di, report.target
    layout = match_capture_signal(x.reshape(-1).numpy(), sr)
    lag, method, warning = pair_latency(x, y, sr, layout, latency)
    if warning:
        warnings.warn(warning, CaptureWarning, stacklevel=2)
        found.append(warning)
    repeat = None if layout is None else repeat_esr(y.reshape(-1).numpy(), layout, latency=lag)
    if layout is not None:  # train on the training part and the silence after it; hold out the repeat
        x, y = x[..., layout.training[0] :], y[..., layout.training[0] :]
        validation = (layout.validation_repeat[1] - layout.validation_repeat[0]) / sr
    else:
        validation = 0.2
    unaligned = (x, y)
    lags = {name: lag for name in CAPTURE_MODELS}  # where the device's latency applies to all
    if method.startswith("onset") and model in (*_STRUCTURED, "auto"):
        # A gray-box amp cannot delay: its latency is measured against its own render (the rule
        # of dspfx.fit), which a low-pass's slow rise in the device cannot push late.
        gray = _make_model("graybox", sr, size, seed)
        with torch.no_grad():
            reference = gray(x[..., : min(x.shape[-1], 30 * sr)])
        lags["graybox"] = lags["hybrid"] = max(render_latency(reference, y[..., : reference.shape[-1]]) or 0, 0)

    def aligned(name: str) -> tuple[Tensor, Tensor]:
        return align(*unaligned, lags[name]) if lags[name] else unaligned

    def train(name: str, unit: Unit | None, seconds: float) -> tuple[Unit, Any]:
        xa, ya = aligned(name)
        if unit is None:
            unit = _make_model(name, sr, size, seed)
            if name in _STRUCTURED:
                _match_level(unit, xa, ya)
        # a WaveNet's output depends on its receptive field only; anything with state (filters,
        # an LSTM) gets 50 ms to settle
        field = getattr(unit, "receptive_field", 0)
        warm = field / sr if field else 0.05
        if progress:
            print(f"capture: training {name} for up to {seconds:.0f} s")
        # the training audio's ESR scale, one divisor for every batch (see ScaledMSELoss); the
        # held-out end (seconds with the reamp signal, else a fraction) is left out of it
        held = int(validation * sr) if layout is not None else int(validation * ya.shape[-1])
        energy = float(torch.mean(ya[..., : ya.shape[-1] - held].double() ** 2)) or 1.0
        return unit, dspfx.fit(unit, xa, ya, steps=steps, loss=ScaledMSELoss(energy), align_latency=False,
                               segment_s=segment_s,
                               batch_size=batch_size, validation=validation, validate_every=validate_every,
                               warmup_s=warm, seed=seed, progress=progress, max_seconds=seconds, check=False,
                               **RATES[name])

    t0 = time.perf_counter()
    candidates: dict[str, float] = {}
    if model == "auto":
        trained = {}
        for name, share in AUTO_PLAN:
            left = max_seconds - (time.perf_counter() - t0)
            trained[name] = train(name, None, left if share >= 1.0 else min(left, max_seconds * share))
        candidates = {name: float(r.metrics["esr"]) for name, (_, r) in trained.items()}
        model = min(candidates, key=candidates.__getitem__)
        unit, result = trained[model]
    else:
        unit, result = train(model, None, max_seconds)
    steps_taken = len(result.loss_history)
    train_s = time.perf_counter() - t0
    if lags[model] != lag or (model in _STRUCTURED and method.startswith("onset")):
        method += " (against the gray-box render)"
    lag = lags[model]
    x, y = aligned(model)
    # half a sample more: the delay floors its time to whole samples like pedalboard, and
    # 1000 * 17 / 48000 ms floors to 16 in float32
    delay = dspfx.make("delay", sample_rate=sr, delay_ms=1000.0 * (lag + 0.5) / sr if lag else 0.0, feedback=0.0, mix=1.0)
    delay.freeze("delay_ms", "feedback", "mix")
    if delay.delay_samples() != lag:  # pragma: no cover - a rounding this comment did not foresee
        raise RuntimeError(f"capture: the latency delay renders {delay.delay_samples()} samples, not {lag}")
    chain = dspfx.Chain(model=unit, latency=delay)
    heldout = float(result.metrics["esr"])
    res = CaptureResult(
        unit=chain, model=unit, latency_samples=int(lag), latency_method=method, heldout_esr=heldout,
        grade=grade(heldout), metrics=dict(result.metrics), repeat_esr=repeat, steps=steps_taken,
        train_seconds=train_s, realtime_factor=_realtime_factor(unit, sr), warnings=found, model_name=model,
        candidates=candidates, fit=result,
    )
    if folder is not None:
        _write(folder, res, x, y, sr)
    return res


def _write(folder: Path, res: CaptureResult, x: Tensor, y: Tensor, sr: int) -> None:
    import dspfx
    from dspfx.io import atomic_path
    from dspfx.plot import fit_report

    folder.mkdir(parents=True, exist_ok=True)
    dspfx.save(res.unit, folder / "model.safetensors")
    record = res.to_dict()
    if getattr(res.model, "nam_architecture", None):
        from dspfx.export.nam import export_nam

        export_nam(res.model, folder / "model.nam", metadata={"training": {"heldout_esr": res.heldout_esr}})
        record["nam"] = "model.nam"
    with atomic_path(folder / "capture.json") as tmp:
        Path(tmp).write_text(json.dumps(record, indent=2) + "\n")
    n = res.fit.heldout_samples
    with torch.no_grad():
        prediction = res.model(x)[..., -n:]
    fit_report(folder / "report.png", target=y[..., -n:], prediction=prediction, sample_rate=sr,
               loss_history={"train (squared error / training energy)": res.fit.loss_history}, validation_history=res.fit.validation_history,
               title=f"capture: {res.model.label}, held-out ESR {res.heldout_esr:.4g} ({res.grade}), latency "
                     f"{res.latency_samples} samples ({res.latency_method})")
