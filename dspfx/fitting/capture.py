"""Checks of a DI/target capture before fitting: clear errors for pairs that cannot be fitted,
:class:`CaptureWarning` for pairs that can but probably should be fixed."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from dspfx.checks import as_batch
from dspfx.fitting.latency import estimate_latency

__all__ = ["check_capture", "CaptureReport", "CaptureWarning", "LATENCY_WINDOW_S", "PLAUSIBLE_LATENCY_MS"]

#: Longest stretch of a pair (from its start) used to estimate the latency, in seconds: minutes
#: of audio need not be rendered whole for that.
LATENCY_WINDOW_S = 30.0
#: check_capture's defaults: a latency above this many milliseconds is implausible for an
#: interface round trip plus an amp, a clipped sample sits within this fraction of the
#: file's peak in a flat run, a mean above this (full scale 1) and above a tenth of the RMS is
#: a DC offset, a peak below this is silence.
PLAUSIBLE_LATENCY_MS = 100.0
CLIP_TOLERANCE = 1e-3
#: A target's flat runs count as clipping only at or above this level (dBFS): the converter's
#: full scale. Below it they are the device's own hard clipping (a fuzz, a diode clipper:
#: guitarix's pedals sit flat at -6 to -12 dBFS), which the model is there to learn.
FULL_SCALE_DB = -0.5
DC_THRESHOLD = 0.01
SILENCE_THRESHOLD = 1e-6


class CaptureWarning(UserWarning):
    """A DI/target capture that can be fitted but probably should be fixed first (clipping,
    DC offset, an implausible latency, trimmed lengths)."""




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
    -120 dBFS) in either file. Warnings: clipping (the share of samples in flat runs at the
    peak): in the DI at any level (the amp heard a different signal), in the target at full
    scale (``FULL_SCALE_DB`` = -0.5 dBFS: the recording clipped, and no model can match it;
    flat runs below are the device's own clipping); a DC offset (a mean above ``DC_THRESHOLD`` = 0.01 of full scale and
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
        if fraction > 0 and (name == "di" or stats["peak"][name] >= FULL_SCALE_DB):
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


