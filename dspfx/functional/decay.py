"""Reverberation time of an impulse response: Schroeder's energy decay curve and the RT60 fitted
to it (T30 by default), optionally in a frequency band.

Reference: M. R. Schroeder, "New method of measuring reverberation time", JASA 37 (1965);
ISO 3382-1 (T20 / T30 evaluation ranges).
"""

from __future__ import annotations

import numpy as np
from torch import Tensor

from dspfx.checks import check_sample_rate

__all__ = ["rt60", "energy_decay_curve"]


def _band_filter(h: np.ndarray, sample_rate: float, band_hz: tuple[float, float]) -> np.ndarray:
    from scipy.signal import butter, sosfiltfilt

    lo, hi = float(band_hz[0]), float(band_hz[1])
    nyq = sample_rate / 2.0
    if not 0 <= lo < hi:
        raise ValueError(f"rt60: band_hz must be (low, high) with 0 <= low < high, got {band_hz!r}")
    if lo <= 0:
        sos = butter(4, min(hi, 0.999 * nyq), btype="lowpass", fs=sample_rate, output="sos")
    elif hi >= nyq:
        sos = butter(4, lo, btype="highpass", fs=sample_rate, output="sos")
    else:
        sos = butter(4, [lo, hi], btype="bandpass", fs=sample_rate, output="sos")
    return sosfiltfilt(sos, h, axis=-1)


def energy_decay_curve(impulse_response: Tensor | np.ndarray) -> np.ndarray:
    """Schroeder's energy decay curve in dB (0 dB at the start): ``10 log10(sum_{k>=n} h[k]^2 / E)``.

    Args:
        impulse_response: ``(..., samples)``.

    Returns:
        ``(..., samples)`` numpy float64 array.
    """
    h = impulse_response.detach().cpu().double().numpy() if isinstance(impulse_response, Tensor) else np.asarray(impulse_response, dtype=np.float64)
    e = np.cumsum((h * h)[..., ::-1], axis=-1)[..., ::-1]
    return 10.0 * np.log10(np.maximum(e / np.maximum(e[..., :1], 1e-300), 1e-300))


def rt60(
    impulse_response: Tensor | np.ndarray,
    sample_rate: float,
    *,
    fit_db: tuple[float, float] = (-5.0, -35.0),
    band_hz: tuple[float, float] | None = None,
) -> float | np.ndarray:
    """Reverberation time (seconds) of an impulse response by Schroeder backward integration.

    The energy decay curve (:func:`energy_decay_curve`) is fitted by a straight line (least
    squares, in dB against time) where it lies between ``fit_db[0]`` and ``fit_db[1]``; the
    RT60 is the time that line takes to fall 60 dB (T30 for the default -5 .. -35 dB).

    Args:
        impulse_response: ``(samples,)`` or ``(..., samples)`` (tensor or array).
        sample_rate: Hz.
        fit_db: the range of the decay curve fitted, in dB (both negative, first above second).
        band_hz: optional ``(low, high)`` Hz: measure in this band only (zero-phase 4th-order
            Butterworth band-pass, ``sosfiltfilt``; ``low = 0`` is a lowpass and ``high >=
            Nyquist`` a highpass).

    Returns:
        A float for a 1-D response, else an array shaped like the leading dimensions; ``nan``
        where the curve has no decay to fit (silence). The response should run well past the
        ``fit_db[1]`` point: truncation bends the end of the curve down (a shorter estimate).

    Reference: M. R. Schroeder, "New method of measuring reverberation time", JASA 37 (1965);
    ISO 3382-1 (T20 / T30 evaluation ranges).
    """
    sr = check_sample_rate(sample_rate)
    top, bottom = float(fit_db[0]), float(fit_db[1])
    if not 0 >= top > bottom:
        raise ValueError(f"rt60: fit_db must be (upper, lower) dB with 0 >= upper > lower, got {fit_db!r}")
    h = impulse_response.detach().cpu().double().numpy() if isinstance(impulse_response, Tensor) else np.asarray(impulse_response, dtype=np.float64)
    if h.ndim < 1 or h.shape[-1] < 2:
        raise ValueError(f"rt60: impulse_response must be (..., samples) with >= 2 samples, got shape {h.shape}")
    if band_hz is not None:
        h = _band_filter(h, sr, band_hz)
    edc = energy_decay_curve(h)
    flat = edc.reshape(-1, edc.shape[-1])
    out = np.full(flat.shape[0], np.nan)
    t = np.arange(edc.shape[-1]) / sr
    for r, curve in enumerate(flat):
        sel = (curve <= top) & (curve >= bottom)
        if sel.sum() < 2:
            continue
        slope, _ = np.polyfit(t[sel], curve[sel], 1)
        out[r] = -60.0 / slope if slope < 0 else np.nan
    if h.ndim == 1:
        return float(out[0])
    return out.reshape(edc.shape[:-1])
