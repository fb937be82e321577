"""Fitting a unit's knobs (and any other parameters) to target audio by gradient descent."""

from __future__ import annotations

import math
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from dspfx.train.align import align, estimate_latency
from dspfx.train.losses import make_loss
from dspfx.train.metrics import all_metrics
from dspfx.unit import Unit

__all__ = [
    "fit",
    "FitResult",
    "check_capture",
    "CaptureReport",
    "CaptureWarning",
    "harmonic_response",
    "transfer_curves",
]

#: Longest stretch of a pair (from its start) used to estimate the latency, in seconds: minutes
#: of audio need not be rendered whole for that.
LATENCY_WINDOW_S = 30.0
#: Default warm-up pre-roll of a training segment or of the held-out segment, in seconds.
DEFAULT_WARMUP_S = 0.05
#: check_capture's defaults: a latency above this many milliseconds is implausible for an
#: interface round trip plus an amp, a clipped sample sits within this fraction of the
#: file's peak in a flat run, a mean above this (full scale 1) and above a tenth of the RMS is
#: a DC offset, a peak below this is silence.
PLAUSIBLE_LATENCY_MS = 100.0
#: Lags of at most this many samples between a unit's starting render and the target are left
#: to the fit: a model of another structure (or at other knob settings) differs from the target
#: in phase, and that reads as a lag of a sample or two that the knobs will take up, whereas a
#: wrong alignment by one sample is an error no knob can undo (a pedalboard board against the
#: bassman chain read -1 and held-out ESR went from 0.010 to 0.049). Interface latencies are
#: tens of samples and more.
PHASE_LAG_SAMPLES = 2
CLIP_TOLERANCE = 1e-3
DC_THRESHOLD = 0.01
SILENCE_THRESHOLD = 1e-6


class CaptureWarning(UserWarning):
    """A DI/target capture that can be fitted but probably should be fixed first (clipping,
    DC offset, an implausible latency, trimmed lengths)."""


@dataclass
class FitResult:
    """What :func:`fit` found.

    Attributes:
        unit: the fitted unit (the same object that was passed in, left at its best state).
        loss_history: loss per step, all restarts one after another.
        best_loss: lowest training loss seen; ``unit`` holds the parameters that gave it. With
            ``validation`` or ``segment_s``: the lowest periodic evaluation loss instead (held-out
            audio, or the whole pair without ``validation``): early stopping.
        best_step: step of ``best_loss`` (counted across restarts).
        best_restart: restart that found it (0 = from the unit's own starting knobs).
        restart_losses: best loss of each restart.
        latency_samples: how far the target lagged the input (removed before fitting).
        skipped_steps: steps skipped because the loss or a gradient was NaN/Inf.
        metrics: ESR, ESR with pre-emphasis (1 - 0.95 z^-1), MR-STFT, SNR (dB), log-spectral
            distance (dB), DC error and max abs error of the best render against the (aligned)
            target: on the held-out segment when ``validation`` was given, else the whole pair.
        knobs: the fitted knob values (physical units, by path).
        elapsed_s: wall-clock time of the whole fit.
        settings: the options of the run.
        validation_history: ``(step, loss)`` of every periodic evaluation (empty in the plain
            whole-pair mode).
        heldout_samples: length of the held-out segment (0: none).
        capture_warnings: the messages :func:`check_capture` warned about.
    """

    unit: Unit
    loss_history: list[float]
    best_loss: float
    best_step: int
    best_restart: int
    restart_losses: list[float]
    latency_samples: int
    skipped_steps: int
    metrics: dict[str, float]
    knobs: dict[str, float]
    elapsed_s: float
    settings: dict[str, Any] = field(default_factory=dict)
    validation_history: list[tuple[int, float]] = field(default_factory=list)
    heldout_samples: int = 0
    capture_warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        m = self.metrics
        where = f"held-out {self.heldout_samples} samples: " if self.heldout_samples else ""
        return (
            f"best loss {self.best_loss:.4g} at step {self.best_step} (restart {self.best_restart}); {where}"
            f"ESR {m['esr']:.3g}, ESR pre-emph. {m['esr_pre_emphasis']:.3g}, DC {m['dc_error']:.3g}, "
            f"MR-STFT {m['mrstft']:.3g}, SNR {m['snr_db']:.1f} dB; "
            f"latency {self.latency_samples} samples; {self.skipped_steps} skipped steps; {self.elapsed_s:.1f} s"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe record of the fit (everything but the unit itself)."""
        return {
            "best_loss": self.best_loss,
            "best_step": self.best_step,
            "best_restart": self.best_restart,
            "restart_losses": self.restart_losses,
            "latency_samples": self.latency_samples,
            "skipped_steps": self.skipped_steps,
            "metrics": self.metrics,
            "knobs": self.knobs,
            "elapsed_s": self.elapsed_s,
            "settings": self.settings,
            "heldout_samples": self.heldout_samples,
            "validation_history": [list(v) for v in self.validation_history],
            "capture_warnings": self.capture_warnings,
            "loss_history": self.loss_history,
        }


def _as_audio(value: Any, name: str) -> Tensor:
    from dspfx.io import as_batch, check_finite

    audio, _ = as_batch(value)
    check_finite(audio, name)
    return audio


def _snapshot(unit: Unit) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in unit.state_dict().items()}


@torch.no_grad()
def _restore(unit: Unit, snapshot: dict[str, Tensor]) -> None:
    """Write a snapshot back, touching only the tensors that changed: frozen knobs keep the
    exact values they were set to (a write would drop them, see Unit.knob_value)."""
    current = unit.state_dict(keep_vars=True)
    for key, value in snapshot.items():
        if not torch.equal(current[key], value):
            current[key].copy_(value)


def _target_latency(unit: Unit, inp: Tensor, tgt: Tensor, max_latency: int | None) -> int:
    """The target's delay relative to what ``unit`` renders from ``inp`` (its own latency and
    filtering included): the impulse response of the best linear map from the unit's render
    to the target peaks at the capture's extra delay. Measuring against the input instead
    reads a resonant or steep filter's group delay as latency (a 1.5 kHz resonant low-pass
    peaks several samples late) and misaligns exactly the fits it should help. Falls back to
    the input (minus the unit's reported latency) when the unit renders silence. Only the
    first ``LATENCY_WINDOW_S`` seconds of a long pair are rendered for this. A lag of at most
    :data:`PHASE_LAG_SAMPLES` is taken as a phase difference for the fit to resolve, not as
    latency (see there)."""
    window = int(round(LATENCY_WINDOW_S * unit.sample_rate))
    if inp.shape[-1] > window:
        inp, tgt = inp[..., :window], tgt[..., :window]
    with torch.no_grad():
        reference = unit(inp)
    if bool(torch.isfinite(reference).all()) and float(reference.abs().max()) > 0.0:
        lag = estimate_latency(reference, tgt, max_latency=max_latency)
        return 0 if abs(lag) <= PHASE_LAG_SAMPLES else lag
    return estimate_latency(inp, tgt, max_latency=max_latency) - unit.latency_samples


def _seconds_or_fraction(value: float, n: int, sample_rate: float, name: str) -> int:
    """``value`` < 1: a fraction of ``n``; >= 1: seconds. Returns samples."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a fraction in (0, 1) of the pair or a number of seconds >= 1, got {value!r}")
    return int(round(value * n)) if value < 1 else int(round(value * sample_rate))


def _cosine_factor(steps: int) -> Callable[[int], float]:
    return lambda t: 0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * min(t, steps) / steps))


def fit(
    unit: Unit,
    input: Any,
    target: Any,
    *,
    steps: int = 500,
    lr: float = 0.05,
    loss: str | Callable[[Tensor, Tensor], Tensor] = "mrstft",
    esr_weight: float = 0.0,
    align_latency: bool = True,
    max_latency: int | None = None,
    restarts: int = 1,
    seed: int = 0,
    schedule: str = "cosine",
    progress: bool | None = None,
    sample_rate: float | None = None,
    callback: Callable[[int, float, Unit], None] | None = None,
    segment_s: float | None = None,
    batch_size: int = 1,
    warmup_s: float | None = None,
    validation: float | None = None,
    validate_every: int | None = None,
    patience: int | None = None,
    weights_lr: float | None = None,
    check: bool = True,
) -> FitResult:
    """Fit ``unit`` so that ``unit(input)`` matches ``target``.

    Every parameter of the unit that requires a gradient is trained (knobs through their bounded
    maps, plus tables or weights a unit may hold); freeze knobs with ``unit.freeze(...)`` first.

    Two modes:

    - whole pair (default): every step renders the whole (aligned) input; the unit is left at
      the step of lowest training loss.
    - capture scale (``segment_s`` and/or ``validation`` given), for DI/amp recordings of any
      length: each step renders ``batch_size`` random segments of ``segment_s`` seconds drawn
      (seeded) from the training part only; each segment is rendered with a warm-up pre-roll of
      ``warmup_s`` seconds of the input that precedes it (zeros before the pair's start) and
      the loss is taken after the pre-roll, so filter, envelope and FIR states are warmed up
      and never start from silence mid-note. ``validation`` holds out a contiguous segment at
      the end of the pair (never trained on; its pre-roll is input audio just before it); every
      ``validate_every`` steps (and before the first and after the last) the loss is evaluated
      there, and the unit is left at the best evaluation (early stopping; ``patience``
      evaluations without improvement end a restart early). Without ``validation`` the
      evaluation uses the whole pair. ``result.metrics`` are then measured on the held-out
      audio.

    Args:
        unit: the unit or chain to fit; it is modified in place and left at its best state.
        input: input audio, ``(samples,)``, ``(channels, samples)`` or ``(batch, channels,
            samples)``; ``None`` for a synth (its length then follows the target).
        target: the audio to match, same layout.
        steps: optimiser steps per restart.
        lr: Adam learning rate (raw knob space, where the whole range spans about 8 units).
        loss: ``"mrstft"`` (auraloss multi-resolution STFT, resolutions scaled to the sample
            rate), ``"esr"``, ``"mrstft+esr"``, or a callable ``loss(prediction, target)``.
        esr_weight: weight of an extra time-domain ESR term added to the loss.
        align_latency: find the target's latency (against the unit's own render of the input, so
            the unit's filtering and reported latency are not mistaken for delay; the first
            ``LATENCY_WINDOW_S`` = 30 s of a longer pair) and remove it first (reported in the
            result).
        max_latency: largest latency searched, in samples (default: see
            :func:`dspfx.train.align.estimate_latency`).
        restarts: number of runs; run 0 starts from the unit's current knobs, the others from
            random knobs (seeded); the best run wins.
        seed: seed of the random restarts and of the segment draws.
        schedule: ``"cosine"`` (decay to 1% of ``lr``) or ``"constant"``.
        progress: show a tqdm bar; ``None`` shows it only when stderr is a terminal.
        sample_rate: if given, must equal ``unit.sample_rate`` (a guard against mixed-up files).
        callback: called as ``callback(step, loss, unit)`` after every step.
        segment_s: length of the random training segments, in seconds (None: whole pair).
        batch_size: segments per step (with ``segment_s``).
        warmup_s: pre-roll of each rendered segment, seconds (default ``DEFAULT_WARMUP_S`` =
            0.05 s, plus the unit's latency); not scored.
        validation: held-out part at the end of the pair: a fraction (< 1) or seconds (>= 1).
        validate_every: steps between evaluations (default ``max(1, steps // 20)``).
        patience: stop a restart after this many evaluations without improvement (None: never).
        weights_lr: learning rate of the trainable parameters that are not knobs (learned
            impulse responses, tables, network weights), whose natural scale differs from the
            raw knobs'; default ``lr``.
        check: run :func:`check_capture` on the pair first (errors for unusable pairs,
            :class:`CaptureWarning` for clipping and DC offsets) and warn when the latency found
            exceeds ``PLAUSIBLE_LATENCY_MS``.

    Returns:
        a :class:`FitResult`.

    A step whose loss or gradient is NaN/Inf is skipped: the unit goes back to its best state so
    far, the learning rate is halved, and fitting goes on.
    """
    if not isinstance(unit, Unit):
        raise TypeError(f"fit() takes a dspfx Unit, got {type(unit).__name__}")
    if sample_rate is not None and sample_rate != unit.sample_rate:
        raise ValueError(f"sample-rate mismatch: audio at {sample_rate} Hz, {unit.label} renders at {unit.sample_rate} Hz")
    if steps < 1 or restarts < 1:
        raise ValueError(f"steps and restarts must be >= 1, got steps={steps}, restarts={restarts}")
    if schedule not in ("cosine", "constant"):
        raise ValueError(f"schedule must be 'cosine' or 'constant', got {schedule!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    for name, value in (("validate_every", validate_every), ("patience", patience)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be a positive integer or None, got {value!r}")
    if weights_lr is not None and not (isinstance(weights_lr, (int, float)) and weights_lr > 0):
        raise ValueError(f"weights_lr must be a positive number or None, got {weights_lr!r}")
    capture_mode = segment_s is not None or validation is not None
    t0 = time.perf_counter()
    device, dtype = unit.device, unit.dtype
    sr = unit.sample_rate
    tgt = _as_audio(target, "target").to(device=device, dtype=dtype)
    capture_warnings: list[str] = []
    if input is None:
        if not unit.is_synth:
            raise ValueError(f"{unit.label} is an effect: fit() needs input audio")
        if capture_mode:
            raise ValueError("segment_s and validation need input audio (a DI); a synth is fitted on its whole render")
        inp = None
        latency = 0
    else:
        inp = _as_audio(input, "input").to(device=device, dtype=dtype)
        if check:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", CaptureWarning)
                check_capture(inp, tgt, sr, max_latency_ms=None)
            for w in caught:
                if issubclass(w.category, CaptureWarning):
                    capture_warnings.append(str(w.message))
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        elif inp.shape[-1] != tgt.shape[-1]:
            raise ValueError(
                f"input and target lengths differ ({inp.shape[-1]} vs {tgt.shape[-1]} samples); "
                "pass a pair recorded together (trim both to the same length)"
            )
        if inp.shape[0] != tgt.shape[0] and inp.shape[0] != 1:
            raise ValueError(f"input batch {inp.shape[0]} does not match target batch {tgt.shape[0]}")
        latency = 0
        if align_latency:
            latency = _target_latency(unit, inp, tgt, max_latency)
            if check and abs(latency) > PLAUSIBLE_LATENCY_MS * 1e-3 * sr:
                message = (
                    f"capture latency {latency} samples ({1000 * latency / sr:.1f} ms) is larger than a plausible "
                    f"{PLAUSIBLE_LATENCY_MS:g} ms: check that the DI and the target belong together"
                )
                capture_warnings.append(message)
                warnings.warn(message, CaptureWarning, stacklevel=2)
            if latency != 0:
                inp, tgt = align(inp, tgt, latency)
    if float(tgt.abs().max()) == 0.0:
        raise ValueError("target is silent (all zeros): nothing to fit")

    criterion = make_loss(loss, sr, esr_weight=esr_weight)
    if isinstance(criterion, torch.nn.Module):
        criterion = criterion.to(device)
    named = [(n, p) for n, p in unit.named_parameters() if p.requires_grad]
    params = [p for _, p in named]
    if not params:
        raise ValueError(f"{unit.label} has no trainable parameters (all knobs frozen?)")
    if weights_lr is None or weights_lr == lr:
        groups: list[dict[str, Any]] = [{"params": params, "lr": lr}]
    else:
        knob_params = [p for n, p in named if "raw_knobs." in n]
        other = [p for n, p in named if "raw_knobs." not in n]
        groups = [g for g in ({"params": knob_params, "lr": lr}, {"params": other, "lr": weights_lr}) if g["params"]]

    # -- the pair's layout in capture mode ----------------------------------------------------
    n_total = tgt.shape[-1]
    n_heldout = 0
    seg = warm = 0
    if capture_mode:
        warm_s = DEFAULT_WARMUP_S if warmup_s is None else warmup_s
        if not (isinstance(warm_s, (int, float)) and math.isfinite(warm_s) and warm_s >= 0):
            raise ValueError(f"warmup_s must be a number of seconds >= 0, got {warmup_s!r}")
        warm = int(round(warm_s * sr)) + (unit.latency_samples if warmup_s is None else 0)
        if validation is not None:
            n_heldout = _seconds_or_fraction(validation, n_total, sr, "validation")
            if n_heldout >= n_total - 1:
                raise ValueError(
                    f"validation={validation!r} holds out {n_heldout} of the pair's {n_total} samples; "
                    "leave some audio to train on"
                )
        n_train = n_total - n_heldout
        if segment_s is not None:
            if not (isinstance(segment_s, (int, float)) and math.isfinite(segment_s) and segment_s > 0):
                raise ValueError(f"segment_s must be a positive number of seconds, got {segment_s!r}")
            seg = max(1, int(round(segment_s * sr)))
            if seg > n_train:
                raise ValueError(
                    f"segment_s={segment_s} s ({seg} samples) is longer than the training part of the pair "
                    f"({n_train} samples after latency alignment and the held-out part); use shorter segments"
                )
        assert inp is not None
        inp_padded = torch.nn.functional.pad(inp, (warm, 0))  # input sample k sits at k + warm
        every = validate_every if validate_every is not None else max(1, steps // 20)
    else:
        n_train = n_total
        every = 0
    segment_rng = torch.Generator().manual_seed(seed)

    def render() -> Tensor:
        if inp is None:
            return unit(None, n_samples=tgt.shape[-1])
        return unit(inp)

    def train_batch() -> tuple[Tensor, Tensor]:
        """Prediction and target of one training step (capture mode)."""
        if seg == 0:  # whole training part
            return unit(inp_padded[..., : warm + n_train])[..., warm:], tgt[..., :n_train]
        starts = torch.randint(0, n_train - seg + 1, (batch_size,), generator=segment_rng).tolist()
        items = torch.randint(0, tgt.shape[0], (batch_size,), generator=segment_rng).tolist()
        x_b = torch.stack([inp_padded[b if inp_padded.shape[0] > 1 else 0, :, s : s + warm + seg] for b, s in zip(items, starts)])
        y_b = torch.stack([tgt[b, :, s : s + seg] for b, s in zip(items, starts)])
        return unit(x_b)[..., warm:], y_b

    def evaluation_pair() -> tuple[Tensor, Tensor]:
        """Render of the held-out segment (or of the whole pair) and its target."""
        start = n_total - n_heldout if n_heldout else 0
        with torch.no_grad():
            y_hat = unit(inp_padded[..., start : n_total + warm])[..., warm:]
        return y_hat, tgt[..., start:]

    def evaluate() -> float:
        with torch.no_grad():
            value = float(criterion(*evaluation_pair()))
        return value if math.isfinite(value) else math.inf

    if progress is None:
        progress = sys.stderr.isatty()
    from tqdm.auto import tqdm

    bar = tqdm(total=steps * restarts, disable=not progress, desc=f"fit {unit.label}", unit="step", leave=False)
    generator = torch.Generator().manual_seed(seed)
    start_state = _snapshot(unit)
    history: list[float] = []
    validation_history: list[tuple[int, float]] = []
    restart_losses: list[float] = []
    best = (math.inf, -1, 0, start_state)  # loss, step, restart, state
    skipped = 0
    try:
        for restart in range(restarts):
            _restore(unit, start_state)
            if restart > 0:
                unit.randomize(generator)
            optimizer = torch.optim.Adam([dict(g) for g in groups])
            if schedule == "cosine" and len(groups) == 1:
                scheduler: Any = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps, eta_min=lr * 0.01)
            elif schedule == "cosine":
                scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _cosine_factor(steps))
            else:
                scheduler = None
            run_best = (math.inf, _snapshot(unit))
            since_best = 0

            def consider(value: float, at_step: int) -> None:
                nonlocal run_best, best
                if value < run_best[0]:
                    run_best = (value, _snapshot(unit))
                    if value < best[0]:
                        best = (value, at_step, restart, run_best[1])

            if capture_mode:
                value = evaluate()
                validation_history.append((len(history), value))
                consider(value, len(history))
            for step in range(steps):
                optimizer.zero_grad(set_to_none=True)
                if capture_mode:
                    value = criterion(*train_batch())
                else:
                    value = criterion(render(), tgt)
                finite = bool(torch.isfinite(value))
                if finite:
                    value.backward()
                    finite = all(p.grad is None or bool(torch.isfinite(p.grad).all()) for p in params)
                loss_value = float(value.detach())
                history.append(loss_value)
                if not finite:
                    skipped += 1
                    _restore(unit, run_best[1])
                    for group in optimizer.param_groups:
                        group["lr"] *= 0.5
                    if scheduler is not None:
                        scheduler.base_lrs = [b * 0.5 for b in scheduler.base_lrs]
                        if hasattr(scheduler, "eta_min"):
                            scheduler.eta_min *= 0.5
                    bar.update(1)
                    continue
                if not capture_mode:
                    consider(loss_value, len(history) - 1)
                optimizer.step()
                if scheduler is not None:
                    scheduler.step()
                if callback is not None:
                    callback(len(history) - 1, loss_value, unit)
                bar.update(1)
                if capture_mode and ((step + 1) % every == 0 or step == steps - 1):
                    before = run_best[0]
                    value = evaluate()
                    validation_history.append((len(history), value))
                    consider(value, len(history))
                    since_best = 0 if run_best[0] < before else since_best + 1
                    if patience is not None and since_best >= patience:
                        break
                if step % 10 == 0:
                    bar.set_postfix(loss=f"{loss_value:.4g}", best=f"{best[0]:.4g}", restart=restart)
            if not capture_mode:
                # the parameters after the last step have not been scored yet
                with torch.no_grad():
                    last = float(criterion(render(), tgt))
                if math.isfinite(last):
                    consider(last, len(history))
            restart_losses.append(run_best[0])
    finally:
        bar.close()
    if not math.isfinite(best[0]):
        _restore(unit, start_state)
        raise FloatingPointError(f"fit: every step of {unit.label} gave a NaN/Inf loss; check the input levels and knob ranges")
    _restore(unit, best[3])
    with torch.no_grad():
        if capture_mode:
            metrics = all_metrics(*evaluation_pair(), sr)
        else:
            metrics = all_metrics(render(), tgt, sr)
    return FitResult(
        unit=unit,
        loss_history=history,
        best_loss=best[0],
        best_step=best[1],
        best_restart=best[2],
        restart_losses=restart_losses,
        latency_samples=latency,
        skipped_steps=skipped,
        metrics=metrics,
        knobs=unit.knobs(),
        elapsed_s=time.perf_counter() - t0,
        settings={
            "steps": steps,
            "lr": lr,
            "loss": loss if isinstance(loss, str) else getattr(loss, "__name__", type(loss).__name__),
            "esr_weight": esr_weight,
            "restarts": restarts,
            "seed": seed,
            "schedule": schedule,
            "segment_s": segment_s,
            "batch_size": batch_size,
            "warmup_samples": warm,
            "validation": validation,
            "validate_every": every or None,
            "patience": patience,
            "weights_lr": weights_lr,
        },
        validation_history=validation_history,
        heldout_samples=n_heldout,
        capture_warnings=capture_warnings,
    )


# -- capture checks ----------------------------------------------------------------------------
@dataclass
class CaptureReport:
    """What :func:`check_capture` found about a DI/target pair.

    Attributes:
        di, target: the pair as ``(batch, channels, samples)`` tensors (trimmed to the same
            length when ``trim=True`` and they differed).
        sample_rate: the pair's rate in Hz.
        latency_samples: the target's delay against the DI (:func:`estimate_latency` on the
            first ``LATENCY_WINDOW_S`` seconds), or None when not measured.
        clipped_fraction: ``{"di": ..., "target": ...}``, share of samples in flat runs at the
            file's peak.
        dc_offset: ``{"di": ..., "target": ...}``, the mean of each file (full scale 1).
        peak_db: ``{"di": ..., "target": ...}``, peak level in dBFS.
        warnings: the messages warned about (also issued as :class:`CaptureWarning`).
    """

    di: Tensor
    target: Tensor
    sample_rate: float
    latency_samples: int | None
    clipped_fraction: dict[str, float]
    dc_offset: dict[str, float]
    peak_db: dict[str, float]
    warnings: list[str] = field(default_factory=list)


def _clipped_fraction(x: Tensor) -> float:
    """Share of samples that sit in flat runs (3 or more equal magnitudes in a row) within
    ``CLIP_TOLERANCE`` of the signal's peak: what a clipping converter or a hard limiter
    leaves; a smooth saturating curve does not."""
    a = x.detach().abs().reshape(-1, x.shape[-1])
    peak = a.amax(dim=-1, keepdim=True)
    if a.shape[-1] < 3 or not bool((peak > 0).any()):
        return 0.0
    near = a >= (1.0 - CLIP_TOLERANCE) * peak
    flat = (a[:, 1:-1] == a[:, :-2]) & (a[:, 1:-1] == a[:, 2:]) & near[:, 1:-1]
    clipped = torch.zeros_like(near)
    clipped[:, 1:-1] |= flat  # the centre of each flat triple and its two neighbours
    clipped[:, :-2] |= flat
    clipped[:, 2:] |= flat
    return float(clipped.sum()) / clipped.numel()


def check_capture(
    di: Any,
    target: Any,
    sample_rate: float,
    target_rate: float | None = None,
    *,
    trim: bool = False,
    max_latency_ms: float | None = PLAUSIBLE_LATENCY_MS,
) -> CaptureReport:
    """Check a DI/amp capture before fitting it: clear errors for pairs that cannot be fitted,
    :class:`CaptureWarning` for pairs that can but probably should be fixed.

    Errors (ValueError): the two files' sample rates differ (both named: resample one, or
    re-export both at the same rate); the lengths differ (unless ``trim``: both then keep the
    shorter length, with a warning); NaN or Inf samples ("non-finite"); silence (a peak below
    -120 dBFS) in either file. Warnings: clipping in either file (the share of samples in flat
    runs at the peak: a clipped DI is a different input than the amp heard, a clipped target
    cannot be modelled); a DC offset (a mean above ``DC_THRESHOLD`` = 0.01 of full scale and
    above a tenth of the RMS); a latency larger than ``max_latency_ms`` (the DI and target
    probably do not belong together, or the capture has a long pre-delay to cut).

    Args:
        di: the input recording, ``(samples,)``, ``(channels, samples)`` or ``(batch,
            channels, samples)``.
        target: the amp's recording, same layout.
        sample_rate: the DI's rate in Hz.
        target_rate: the target's rate in Hz, if it was read separately (default: the same).
        trim: cut both to the shorter length instead of raising when the lengths differ.
        max_latency_ms: warn above this latency; None skips the latency measurement.

    Returns:
        a :class:`CaptureReport`.
    """
    from dspfx.io import as_batch

    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, float)) or not sample_rate > 0:
        raise ValueError(f"sample_rate must be a positive number in Hz, got {sample_rate!r}")
    if target_rate is not None and target_rate != sample_rate:
        raise ValueError(
            f"sample rates differ: the DI is at {sample_rate:g} Hz but the target at {target_rate:g} Hz; "
            "resample one of them (or export both at the same rate) before fitting"
        )
    pair = {}
    for name, value in (("di", di), ("target", target)):
        audio, _ = as_batch(value)
        if audio.shape[-1] == 0:
            raise ValueError(f"{name} has no samples (shape {tuple(audio.shape)})")
        if not bool(torch.isfinite(audio).all()):
            bad = int((~torch.isfinite(audio)).sum())
            raise ValueError(f"{name} contains non-finite samples (NaN or Inf: {bad} of {audio.numel()}); fix the file first")
        pair[name] = audio
    x, y = pair["di"], pair["target"]
    found: list[str] = []

    def warn(message: str) -> None:
        found.append(message)
        warnings.warn(message, CaptureWarning, stacklevel=3)

    if x.shape[-1] != y.shape[-1]:
        n = min(x.shape[-1], y.shape[-1])
        longer = "input (DI)" if x.shape[-1] > y.shape[-1] else "target"
        if not trim:
            raise ValueError(
                f"input and target lengths differ ({x.shape[-1]} vs {y.shape[-1]} samples, "
                f"{x.shape[-1] / sample_rate:.3f} s vs {y.shape[-1] / sample_rate:.3f} s); the pair must be recorded "
                f"together: trim both to the same length (e.g. the first {n} samples; the {longer} is longer), "
                "or pass trim=True (`dspfx fit --trim`)"
            )
        warn(f"input and target lengths differ ({x.shape[-1]} vs {y.shape[-1]} samples); both trimmed to the first {n}")
        x, y = x[..., :n], y[..., :n]
    stats: dict[str, dict[str, float]] = {"clipped": {}, "dc": {}, "peak": {}}
    for name, audio in (("di", x), ("target", y)):
        peak = float(audio.abs().max())
        if peak < SILENCE_THRESHOLD:
            what = "input (DI)" if name == "di" else "target"
            raise ValueError(
                f"{what} is silent (peak {peak:.3g}, below -120 dBFS): nothing to fit; check the file and the recording chain"
            )
        stats["peak"][name] = 20.0 * math.log10(peak)
        fraction = _clipped_fraction(audio)
        stats["clipped"][name] = fraction
        if fraction > 0:
            what = "the DI (the amp heard a different signal)" if name == "di" else "the target (the model cannot match it)"
            warn(
                f"{name} is clipped: {100 * fraction:.3g}% of its samples sit in flat runs at its peak "
                f"({stats['peak'][name]:.1f} dBFS); clipping in {what}: record it again with less level"
            )
        mean = float(audio.double().mean())
        rms = float(audio.double().square().mean().sqrt())
        stats["dc"][name] = mean
        if abs(mean) > DC_THRESHOLD and abs(mean) > 0.1 * rms:
            warn(
                f"{name} has a DC offset of {mean:.3g} ({20 * math.log10(abs(mean)):.1f} dBFS, {abs(mean) / rms:.0%} of its RMS); "
                "high-pass it (a few Hz) or fix the interface before fitting"
            )
    latency = None
    if max_latency_ms is not None:
        window = int(round(LATENCY_WINDOW_S * sample_rate))
        xs, ys = x[..., :window], y[..., :window]
        search = min(xs.shape[-1] // 4, int(round(sample_rate)))
        latency = estimate_latency(xs, ys, max_latency=search)
        if abs(latency) > max_latency_ms * 1e-3 * sample_rate:
            warn(
                f"capture latency {latency} samples ({1000 * latency / sample_rate:.1f} ms) is larger than a plausible "
                f"{max_latency_ms:g} ms: check that the DI and the target belong together, or cut the target's pre-delay"
            )
    return CaptureReport(
        di=x,
        target=y,
        sample_rate=sample_rate,
        latency_samples=latency,
        clipped_fraction=stats["clipped"],
        dc_offset=stats["dc"],
        peak_db=stats["peak"],
        warnings=found,
    )


# -- measurements for pictures ----------------------------------------------------------------
def _render_probe(unit: Any, x: np.ndarray, sample_rate: float | None) -> tuple[np.ndarray, float]:
    """Render ``x`` ``(batch, samples)`` (float64) through a Unit, a pedalboard plugin or a
    callable on ``(batch, 1, samples)`` tensors; returns ``(batch, samples)`` (channel 0)."""
    if isinstance(unit, Unit):
        if sample_rate is not None and sample_rate != unit.sample_rate:
            raise ValueError(f"sample_rate {sample_rate} differs from {unit.label}'s {unit.sample_rate} Hz")
        with torch.no_grad():
            y = unit(torch.from_numpy(x[:, None, :]).to(device=unit.device, dtype=unit.dtype))
        return y[:, 0].detach().cpu().to(torch.float64).numpy(), float(unit.sample_rate)
    if sample_rate is None:
        raise ValueError("sample_rate is required when the processor is not a dspfx Unit")
    if hasattr(unit, "process") and hasattr(unit, "reset"):  # a pedalboard plugin or board
        rows = []
        for row in x:
            unit.reset()
            rows.append(np.asarray(unit(row[None, :].astype(np.float32), float(sample_rate)), dtype=np.float64)[0])
        return np.stack(rows), float(sample_rate)
    if not callable(unit):
        raise TypeError(f"expected a dspfx Unit, a pedalboard plugin or a callable, got {type(unit).__name__}")
    with torch.no_grad():
        y = unit(torch.from_numpy(x[:, None, :]))
    y = y.detach().cpu().to(torch.float64).numpy() if isinstance(y, Tensor) else np.asarray(y, dtype=np.float64)
    return y.reshape(x.shape[0], -1, y.shape[-1])[:, 0], float(sample_rate)


def _check_levels(levels_db: Any) -> np.ndarray:
    levels = np.atleast_1d(np.asarray(levels_db, dtype=np.float64))
    if levels.ndim != 1 or levels.size == 0 or not np.all(np.isfinite(levels)):
        raise ValueError(f"levels_db must be a non-empty list of finite levels in dBFS, got {levels_db!r}")
    return levels


def harmonic_response(
    unit: Any,
    f0_hz: float,
    levels_db: Any = (-30.0, -20.0, -10.0, 0.0),
    n_harmonics: int = 8,
    *,
    sample_rate: float | None = None,
    settle_s: float = 0.25,
    periods: int = 60,
) -> np.ndarray:
    """Levels of harmonics 1 .. ``n_harmonics`` of the output for sines at several input levels.

    A sine ``10^(L/20) sin(2 pi f0 t)`` for each level ``L`` (one batch item per level) is
    rendered; after ``settle_s`` seconds (filters, sag and warm-up settled), ``periods`` periods
    are analysed: the amplitude of harmonic ``k`` is ``2 |sum w[n] y[n] e^(-j 2 pi k f0 n /
    fs)| / sum w[n]`` with a Hann window ``w`` (exact for a steady sinusoid; the leakage of
    the other harmonics through the window is below -120 dB at 60 periods).

    Args:
        unit: a dspfx Unit (rendered at its own rate, channel 0 of its output), a pedalboard
            plugin/board, or a callable mapping ``(batch, 1, samples)`` float64 tensors to audio
            of the same layout (both need ``sample_rate``).
        f0_hz: fundamental in Hz.
        levels_db: input peak levels in dBFS.
        n_harmonics: how many harmonics (1 = the fundamental).
        sample_rate: Hz, for processors that are not Units.
        settle_s: seconds rendered before the analysis starts.
        periods: periods analysed.

    Returns:
        ``(len(levels_db), n_harmonics)`` float64 array of output amplitudes in dBFS (a
        full-scale sine reads 0 dB; harmonics at or above Nyquist are NaN; silence reads
        -240 dB).
    """
    levels = _check_levels(levels_db)
    if isinstance(n_harmonics, bool) or not isinstance(n_harmonics, int) or n_harmonics < 1:
        raise ValueError(f"n_harmonics must be a positive integer, got {n_harmonics!r}")
    rate = float(unit.sample_rate) if isinstance(unit, Unit) else sample_rate
    if rate is None:
        raise ValueError("sample_rate is required when the processor is not a dspfx Unit")
    if not (isinstance(f0_hz, (int, float)) and 0 < f0_hz < rate / 2):
        raise ValueError(f"f0_hz must lie in (0, {rate / 2:g}) Hz (Nyquist), got {f0_hz!r}")
    start = int(round(settle_s * rate))
    length = int(math.ceil(periods * rate / f0_hz))
    n = np.arange(start + length)
    x = (10.0 ** (levels[:, None] / 20.0)) * np.sin(2 * np.pi * f0_hz * n[None, :] / rate)
    y, rate = _render_probe(unit, x, sample_rate)
    seg = y[:, start : start + length]
    w = np.hanning(length + 2)[1:-1]
    m = np.arange(start, start + length)
    out = np.full((levels.size, n_harmonics), np.nan)
    for k in range(1, n_harmonics + 1):
        if k * f0_hz >= rate / 2:
            break
        basis = np.exp(-2j * np.pi * k * f0_hz * m / rate) * w
        amplitude = 2.0 * np.abs(seg @ basis) / w.sum()
        out[:, k - 1] = 20.0 * np.log10(np.maximum(amplitude, 1e-12))
    return out


def transfer_curves(
    unit: Any,
    levels_db: Any = (-20.0, -10.0, 0.0),
    f_hz: float = 50.0,
    *,
    sample_rate: float | None = None,
    settle_periods: int = 4,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Output against input for a slow sine at several levels (a dynamic transfer curve).

    For each level, a sine of ``f_hz`` at ``10^(L/20)`` peak is rendered for
    ``settle_periods + 1`` periods; the last period is returned. A memoryless curve draws a
    single line; filters and memory (hysteresis, sag, coupling high-passes) open it into a loop.

    Args:
        unit: a dspfx Unit, a pedalboard plugin/board or a callable (see
            :func:`harmonic_response`).
        levels_db: input peak levels in dBFS.
        f_hz: frequency of the probe sine in Hz (low, so the curve is traced slowly).
        sample_rate: Hz, for processors that are not Units.
        settle_periods: periods rendered before the one returned.

    Returns:
        one ``(input, output)`` pair of float64 arrays per level (one period each).
    """
    levels = _check_levels(levels_db)
    rate = float(unit.sample_rate) if isinstance(unit, Unit) else sample_rate
    if rate is None:
        raise ValueError("sample_rate is required when the processor is not a dspfx Unit")
    if not (isinstance(f_hz, (int, float)) and 0 < f_hz < rate / 2):
        raise ValueError(f"f_hz must lie in (0, {rate / 2:g}) Hz, got {f_hz!r}")
    period = int(round(rate / f_hz))
    n = np.arange((settle_periods + 1) * period)
    x = (10.0 ** (levels[:, None] / 20.0)) * np.sin(2 * np.pi * f_hz * n[None, :] / rate)
    y, _ = _render_probe(unit, x, sample_rate)
    return [(x[i, -period:], y[i, -period:]) for i in range(levels.size)]
