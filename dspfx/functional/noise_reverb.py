"""Impulse responses made of band-filtered noise with per-band exponential decay and gain.

A reverb tail is well modelled as noise whose energy decays exponentially at a rate that depends
on frequency. Here white Gaussian noise (seeded, so reproducible) is split into ``n_bands``
frequency bands by brick-wall masks in the frequency domain (the bands partition the spectrum:
they sum back to the white noise), and each band is shaped by its own decay and gain::

    h[n] = sum_k 10 ** (gain_db_k / 20) * noise_k[n] * exp(-ln(1000) n / (sample_rate * decay_s_k))

so band ``k`` falls 60 dB in ``decay_s_k`` seconds. The noise is scaled by
``sqrt(2 ln(1000) / sample_rate)``: with every gain at 0 dB and every decay at 1 s the response
has unit energy (about; it is noise).

Reference: C. J. Steinmetz et al., dasp-pytorch ``noise_shaped_reverberation`` (octave-band
noise with per-band exponential decays); J. A. Moorer, "About this reverberation business"
(1979) on exponentially decaying noise as a model of late reverberation.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from dspfx.checks import check_sample_rate

__all__ = ["noise_band_edges", "band_noise", "noise_impulse_response"]

_LN_1000 = math.log(1000.0)


def noise_band_edges(n_bands: int, sample_rate: float, min_hz: float = 40.0) -> list[float]:
    """Band edges (Hz), ``n_bands + 1`` of them: ``0``, then geometric from ``min_hz`` to Nyquist.

    Band 0 is ``[0, min_hz]`` and the others are equal in log frequency (12 bands at 48 kHz from
    40 Hz are 0.84 octave wide).

    Args:
        n_bands: number of bands (>= 1; one band is the whole spectrum).
        sample_rate: Hz.
        min_hz: upper edge of the lowest band (0 < min_hz < Nyquist).
    """
    sr = check_sample_rate(sample_rate)
    if isinstance(n_bands, bool) or not isinstance(n_bands, int) or n_bands < 1:
        raise ValueError(f"n_bands must be an int >= 1, got {n_bands!r}")
    nyq = sr / 2.0
    if not 0 < min_hz < nyq:
        raise ValueError(f"min_hz must lie between 0 and Nyquist ({nyq:g} Hz), got {min_hz!r}")
    if n_bands == 1:
        return [0.0, nyq]
    inner = [min_hz * (nyq / min_hz) ** (k / (n_bands - 1)) for k in range(n_bands - 1)]
    return [0.0, *inner, nyq]


def band_noise(
    n_bands: int,
    n_taps: int,
    sample_rate: float,
    *,
    seed: int = 0,
    min_hz: float = 40.0,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """Seeded white Gaussian noise split into frequency bands, ``(n_bands, n_taps)``.

    The noise (``torch.Generator`` seeded with ``seed``, drawn in float64 on the CPU, so the
    same seed gives the same noise everywhere) is scaled by ``sqrt(2 ln(1000) / sample_rate)``,
    transformed by an FFT of ``n_taps`` points, and band ``k`` keeps the bins whose frequency
    lies in ``[edges[k], edges[k+1])`` (:func:`noise_band_edges`; Nyquist goes to the last
    band). The bands sum to the scaled noise exactly (up to rounding).
    """
    if isinstance(n_taps, bool) or not isinstance(n_taps, int) or n_taps < 1:
        raise ValueError(f"n_taps must be an int >= 1, got {n_taps!r}")
    edges = noise_band_edges(n_bands, sample_rate, min_hz)
    gen = torch.Generator().manual_seed(int(seed))
    noise = torch.randn(n_taps, generator=gen, dtype=torch.float64) * math.sqrt(2 * _LN_1000 / float(sample_rate))
    spec = torch.fft.rfft(noise)
    freqs = torch.fft.rfftfreq(n_taps, 1.0 / float(sample_rate), dtype=torch.float64)
    bands = []
    for k in range(n_bands):
        lo, hi = edges[k], edges[k + 1]
        mask = (freqs >= lo) & ((freqs < hi) if k < n_bands - 1 else (freqs <= hi))
        bands.append(torch.fft.irfft(spec * mask, n=n_taps))
    return torch.stack(bands).to(dtype)


def noise_impulse_response(noise: Tensor, decays_s: Tensor, gains_db: Tensor, sample_rate: float) -> Tensor:
    """Shape band noise into an impulse response: per-band exponential decay and gain, summed.

    Args:
        noise: ``(n_bands, n_taps)`` from :func:`band_noise`.
        decays_s: ``(..., n_bands)`` time (s) for each band to fall 60 dB (> 0).
        gains_db: ``(..., n_bands)`` band gains in dB (broadcast against ``decays_s``).
        sample_rate: Hz.

    Returns:
        ``(..., n_taps)``, differentiable w.r.t. the decays and gains (and the noise).
    """
    sr = check_sample_rate(sample_rate)
    if not isinstance(noise, Tensor) or noise.ndim != 2:
        raise ValueError(f"noise must be a tensor shaped (n_bands, n_taps), got {getattr(noise, 'shape', type(noise).__name__)}")
    n_bands, n_taps = noise.shape
    for name, v in (("decays_s", decays_s), ("gains_db", gains_db)):
        if not isinstance(v, Tensor) or v.ndim < 1 or v.shape[-1] != n_bands:
            raise ValueError(
                f"{name} must be a tensor shaped (..., n_bands) with n_bands = {n_bands}, got "
                f"{tuple(v.shape) if isinstance(v, Tensor) else type(v).__name__}"
            )
    n = torch.arange(n_taps, dtype=noise.dtype, device=noise.device)
    rate = (_LN_1000 / sr) / decays_s  # (..., n_bands) nepers per sample
    env = torch.exp(-rate.unsqueeze(-1) * n)  # (..., n_bands, n_taps)
    amp = torch.pow(10.0, gains_db / 20.0).unsqueeze(-1)
    return (amp * env * noise).sum(dim=-2)
