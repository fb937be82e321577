"""Fitting a unit's knobs (and any other parameters) to target audio by gradient descent."""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from dspfx.checks import as_batch, check_finite, positive_number
from dspfx.fitting.capture import LATENCY_WINDOW_S, PLAUSIBLE_LATENCY_MS, CaptureWarning, check_capture
from dspfx.fitting.latency import align, device_latency, render_latency
from dspfx.fitting.loop import SCHEDULES, optimise, param_groups, restore, snapshot
from dspfx.fitting.losses import make_loss
from dspfx.fitting.metrics import all_metrics
from dspfx.unit import Unit

__all__ = ["fit", "FitResult"]

#: Default warm-up pre-roll of a training segment or of the held-out segment, in seconds.
DEFAULT_WARMUP_S = 0.05


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
    audio, _ = as_batch(value)
    check_finite(audio, name)
    return audio


def _target_latency(unit: Unit, inp: Tensor, tgt: Tensor, max_latency: int | None) -> int:
    """The target's delay relative to what ``unit`` renders from ``inp`` (its own latency and
    filtering included; see :func:`dspfx.fitting.latency.render_latency`). Falls back to the
    input (minus the unit's reported latency) when the unit renders silence. Only the first
    ``LATENCY_WINDOW_S`` seconds of a long pair are rendered for this."""
    window = int(round(LATENCY_WINDOW_S * unit.sample_rate))
    if inp.shape[-1] > window:
        inp, tgt = inp[..., :window], tgt[..., :window]
    with torch.no_grad():
        reference = unit(inp)
    lag = render_latency(reference, tgt, max_latency=max_latency)
    if lag is None:
        return device_latency(inp, tgt, max_latency=max_latency) - unit.latency_samples
    return lag


def _seconds_or_fraction(value: float, n: int, sample_rate: float, name: str) -> int:
    """``value`` < 1: a fraction of ``n``; >= 1: seconds. Returns samples."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a fraction in (0, 1) of the pair or a number of seconds >= 1, got {value!r}")
    return int(round(value * n)) if value < 1 else int(round(value * sample_rate))


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
    max_seconds: float | None = None,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 100,
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
            ``LATENCY_WINDOW_S`` = 30 s of a longer pair; the peak rule of
            :func:`dspfx.fitting.latency.render_latency`, or the onset rule of
            :func:`~dspfx.fitting.latency.device_latency` against the input when the unit renders
            silence) and remove it first (reported in the result).
        max_latency: largest latency searched, in samples (default: see
            :func:`dspfx.fitting.latency.estimate_latency`).
        restarts: number of runs; run 0 starts from the unit's current knobs, the others from
            random knobs (seeded); the best run wins.
        seed: seed of the random restarts and of the segment draws.
        schedule: ``"cosine"`` (decay to 1% of ``lr``), ``"exponential"`` or ``"constant"``
            (see :func:`dspfx.fitting.optimise`).
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
        max_seconds: wall-clock budget of the whole fit (every restart); it stops cleanly at the
            best state found so far (``result.settings["stopped"] == "time"``).
        checkpoint: a ``.safetensors`` path for a long fit: written every ``checkpoint_every``
            steps (unit, optimiser, best state, history) and resumed from when it exists (one
            restart only; a checkpoint of another unit or settings is refused).

    Returns:
        a :class:`FitResult`.

    The steps run through :func:`dspfx.fitting.optimise`, the core shared by every training job:
    a step whose loss or gradient is NaN/Inf is not taken, the unit goes back to its best state
    so far, the rates are halved, and fitting goes on; under torchrun the ranks average their
    gradients (each draws its own segments when ``seed`` differs per rank).
    """
    if not isinstance(unit, Unit):
        raise TypeError(f"fit() takes a dspfx Unit, got {type(unit).__name__}")
    if sample_rate is not None and sample_rate != unit.sample_rate:
        raise ValueError(f"sample-rate mismatch: audio at {sample_rate} Hz, {unit.label} renders at {unit.sample_rate} Hz")
    if steps < 1 or restarts < 1:
        raise ValueError(f"steps and restarts must be >= 1, got steps={steps}, restarts={restarts}")
    if checkpoint is not None and restarts != 1:
        raise ValueError(f"checkpoint= resumes one run; it cannot be combined with restarts={restarts}")
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
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
    groups = param_groups(unit, lr, weights_lr)

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
        every = None
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

    def evaluate() -> float:  # optimise reads a non-finite value as the worst
        with torch.no_grad():
            return float(criterion(*evaluation_pair()))

    def loss_fn(step: int) -> Tensor:
        return criterion(*train_batch()) if capture_mode else criterion(render(), tgt)

    generator = torch.Generator().manual_seed(seed)
    start_state = snapshot(unit)
    history: list[float] = []
    validation_history: list[tuple[int, float]] = []
    restart_losses: list[float] = []
    best: tuple[float, int, int, dict[str, Tensor]] = (math.inf, -1, 0, start_state)  # loss, step, restart, state
    skipped = 0
    stopped = "steps"
    deadline = None if max_seconds is None else time.perf_counter() + positive_number(max_seconds, "max_seconds")
    for restart in range(restarts):
        restore(unit, start_state)
        if restart > 0:
            unit.randomize(generator)
        offset = len(history)
        remaining = None if deadline is None else deadline - time.perf_counter()
        if remaining is not None and remaining <= 0 and restart > 0:
            break
        run_callback = None if callback is None else (lambda s, v, m, o=offset: callback(o + s, v, m))
        try:
            run = optimise(
                unit, loss_fn, steps=steps, groups=[dict(g) for g in groups], schedule=schedule,
                validate=evaluate if capture_mode else None, validate_every=every, patience=patience,
                max_seconds=max(remaining, 1e-9) if remaining is not None else None, progress=progress,
                desc=f"fit {unit.label}" + (f" (restart {restart})" if restarts > 1 else ""), callback=run_callback,
                checkpoint=checkpoint, checkpoint_every=checkpoint_every,
                checkpoint_config=None if checkpoint is None else {"unit": unit.spec(), "steps": steps, "seed": seed},
            )
        except FloatingPointError:
            if restart + 1 < restarts or math.isfinite(best[0]):
                continue
            restore(unit, start_state)
            raise FloatingPointError(
                f"fit: every step of {unit.label} gave a NaN/Inf loss; check the input levels and knob ranges"
            ) from None
        history += run.history
        validation_history += [(offset + s, v) for s, v in run.validation_history]
        skipped += run.skipped_steps
        restart_losses.append(run.best_loss)
        if run.best_loss < best[0]:
            best = (run.best_loss, offset + run.best_step, restart, snapshot(unit))
        if run.stopped == "time":
            stopped = "time"
            break
    restore(unit, best[3])
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
            "validate_every": every,
            "patience": patience,
            "weights_lr": weights_lr,
            "max_seconds": max_seconds,
            "stopped": stopped,
        },
        validation_history=validation_history,
        heldout_samples=n_heldout,
        capture_warnings=capture_warnings,
    )


