"""Measurements of a unit (or a pedalboard plugin, or any callable) for pictures and reports:
harmonic levels of sines at several input levels, and dynamic transfer curves."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from dspfx.unit import Unit

__all__ = ["harmonic_response", "transfer_curves"]


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
