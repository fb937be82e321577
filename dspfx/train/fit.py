"""Fitting a unit's knobs (and any other parameters) to target audio by gradient descent."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from dspfx.train.align import align, estimate_latency
from dspfx.train.losses import make_loss
from dspfx.train.metrics import all_metrics
from dspfx.unit import Unit

__all__ = ["fit", "FitResult"]


@dataclass
class FitResult:
    """What :func:`fit` found.

    Attributes:
        unit: the fitted unit (the same object that was passed in, left at its best state).
        loss_history: loss per step, all restarts one after another.
        best_loss: lowest training loss seen; ``unit`` holds the parameters that gave it.
        best_step: step of ``best_loss`` (counted across restarts).
        best_restart: restart that found it (0 = from the unit's own starting knobs).
        restart_losses: best loss of each restart.
        latency_samples: how far the target lagged the input (removed before fitting).
        skipped_steps: steps skipped because the loss or a gradient was NaN/Inf.
        metrics: ESR, ESR with pre-emphasis, MR-STFT, SNR (dB), log-spectral distance (dB),
            DC error and max abs error of the best render against the (aligned) target.
        knobs: the fitted knob values (physical units, by path).
        elapsed_s: wall-clock time of the whole fit.
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

    def summary(self) -> str:
        m = self.metrics
        return (
            f"best loss {self.best_loss:.4g} at step {self.best_step} (restart {self.best_restart}); "
            f"ESR {m['esr']:.3g}, MR-STFT {m['mrstft']:.3g}, SNR {m['snr_db']:.1f} dB; "
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
    the input (minus the unit's reported latency) when the unit renders silence."""
    with torch.no_grad():
        reference = unit(inp)
    if bool(torch.isfinite(reference).all()) and float(reference.abs().max()) > 0.0:
        return estimate_latency(reference, tgt, max_latency=max_latency)
    return estimate_latency(inp, tgt, max_latency=max_latency) - unit.latency_samples


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
) -> FitResult:
    """Fit ``unit`` so that ``unit(input)`` matches ``target``.

    Every parameter of the unit that requires a gradient is trained (knobs through their bounded
    maps, plus tables or weights a unit may hold); freeze knobs with ``unit.freeze(...)`` first.

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
            the unit's filtering and reported latency are not mistaken for delay) and remove it
            first (reported in the result).
        max_latency: largest latency searched, in samples (default: see
            :func:`dspfx.train.align.estimate_latency`).
        restarts: number of runs; run 0 starts from the unit's current knobs, the others from
            random knobs (seeded); the best run wins.
        seed: seed of the random restarts.
        schedule: ``"cosine"`` (decay to 1% of ``lr``) or ``"constant"``.
        progress: show a tqdm bar; ``None`` shows it only when stderr is a terminal.
        sample_rate: if given, must equal ``unit.sample_rate`` (a guard against mixed-up files).
        callback: called as ``callback(step, loss, unit)`` after every step.

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
    t0 = time.perf_counter()
    device, dtype = unit.device, unit.dtype
    tgt = _as_audio(target, "target").to(device=device, dtype=dtype)
    if input is None:
        if not unit.is_synth:
            raise ValueError(f"{unit.label} is an effect: fit() needs input audio")
        inp = None
        latency = 0
    else:
        inp = _as_audio(input, "input").to(device=device, dtype=dtype)
        if inp.shape[-1] != tgt.shape[-1]:
            raise ValueError(
                f"input and target lengths differ ({inp.shape[-1]} vs {tgt.shape[-1]} samples); "
                "pass a pair recorded together (trim both to the same length)"
            )
        if inp.shape[0] != tgt.shape[0] and inp.shape[0] != 1:
            raise ValueError(f"input batch {inp.shape[0]} does not match target batch {tgt.shape[0]}")
        latency = 0
        if align_latency:
            latency = _target_latency(unit, inp, tgt, max_latency)
            if latency != 0:
                inp, tgt = align(inp, tgt, latency)
    if float(tgt.abs().max()) == 0.0:
        raise ValueError("target is silent (all zeros): nothing to fit")

    criterion = make_loss(loss, unit.sample_rate, esr_weight=esr_weight)
    if isinstance(criterion, torch.nn.Module):
        criterion = criterion.to(device)
    params = [p for p in unit.parameters() if p.requires_grad]
    if not params:
        raise ValueError(f"{unit.label} has no trainable parameters (all knobs frozen?)")

    def render() -> Tensor:
        if inp is None:
            return unit(None, n_samples=tgt.shape[-1])
        return unit(inp)

    if progress is None:
        progress = sys.stderr.isatty()
    from tqdm.auto import tqdm

    bar = tqdm(total=steps * restarts, disable=not progress, desc=f"fit {unit.label}", unit="step", leave=False)
    generator = torch.Generator().manual_seed(seed)
    start_state = _snapshot(unit)
    history: list[float] = []
    restart_losses: list[float] = []
    best = (math.inf, -1, 0, start_state)  # loss, step, restart, state
    skipped = 0
    try:
        for restart in range(restarts):
            _restore(unit, start_state)
            if restart > 0:
                unit.randomize(generator)
            optimizer = torch.optim.Adam(params, lr=lr)
            scheduler = (
                torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps, eta_min=lr * 0.01)
                if schedule == "cosine"
                else None
            )
            run_best = (math.inf, _snapshot(unit))
            for step in range(steps):
                optimizer.zero_grad(set_to_none=True)
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
                        scheduler.eta_min *= 0.5
                    bar.update(1)
                    continue
                if loss_value < run_best[0]:
                    run_best = (loss_value, _snapshot(unit))
                    if loss_value < best[0]:
                        best = (loss_value, len(history) - 1, restart, run_best[1])
                optimizer.step()
                if scheduler is not None:
                    scheduler.step()
                if callback is not None:
                    callback(len(history) - 1, loss_value, unit)
                bar.update(1)
                if step % 10 == 0:
                    bar.set_postfix(loss=f"{loss_value:.4g}", best=f"{best[0]:.4g}", restart=restart)
            # the parameters after the last step have not been scored yet
            with torch.no_grad():
                last = float(criterion(render(), tgt))
            if math.isfinite(last) and last < run_best[0]:
                run_best = (last, _snapshot(unit))
                if last < best[0]:
                    best = (last, len(history), restart, run_best[1])
            restart_losses.append(run_best[0])
    finally:
        bar.close()
    if not math.isfinite(best[0]):
        _restore(unit, start_state)
        raise FloatingPointError(f"fit: every step of {unit.label} gave a NaN/Inf loss; check the input levels and knob ranges")
    _restore(unit, best[3])
    with torch.no_grad():
        metrics = all_metrics(render(), tgt, unit.sample_rate)
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
        },
    )

