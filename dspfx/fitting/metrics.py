"""Objective metrics for comparing a rendered signal with a target.

Every metric takes a ``prediction`` and a ``target`` shaped ``(batch, channels, samples)``
(``(channels, samples)`` and ``(samples,)`` are accepted and get leading dims added), works in
float32 and float64 on any device, is differentiable (unless said otherwise) and returns a 0-d
tensor reduced over all elements.

The metrics are the ones the virtual-analog literature reports:

- ESR, error-to-signal ratio, optionally after a first-order pre-emphasis high-pass
  (Wright, Damskägg, Välimäki, "Real-time black-box modelling with recurrent neural networks",
  DAFx 2019; Wright et al., "Real-time guitar amplifier emulation with deep learning",
  Applied Sciences 2020, which also defines the DC error used here).
- SNR in dB.
- MR-STFT, auraloss' multi-resolution STFT loss (Yamamoto et al. 2019; Steinmetz & Reiss 2020)
  with resolutions scaled to the sample rate (:func:`dspfx.fitting.losses.default_resolutions`).
- Log-spectral distance in dB.
- DC error and maximum absolute error.
"""

from __future__ import annotations


import torch

from dspfx.checks import prepare_pair
from dspfx.fitting.losses import MRSTFTLoss, apply_pre_emphasis, esr

__all__ = [
    "esr",
    "snr_db",
    "mrstft",
    "log_spectral_distance",
    "dc_error",
    "max_abs_error",
    "all_metrics",
    "apply_pre_emphasis",
]


def snr_db(prediction: torch.Tensor, target: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Signal-to-noise ratio ``10 log10(sum(t^2) / sum((t - p)^2))`` in dB.

    Both sums are clamped from below at ``eps``, so equal signals give a large finite value
    (``10 log10(sum(t^2) / eps)``) rather than ``inf``.

    Args:
        prediction: ``(batch, channels, samples)`` (or 2-D / 1-D).
        target: same shape.
        eps: lower clamp of the signal and error energies.

    Returns:
        0-d tensor in dB (higher is better).
    """
    p, t = prepare_pair(prediction, target)
    signal = torch.clamp(torch.sum(t**2), min=eps)
    noise = torch.clamp(torch.sum((t - p) ** 2), min=eps)
    return 10.0 * torch.log10(signal / noise)


def mrstft(
    prediction: torch.Tensor, target: torch.Tensor, sample_rate: float | None = None
) -> torch.Tensor:
    """Multi-resolution STFT distance (auraloss), with resolutions scaled to ``sample_rate``.

    Spectral convergence plus log-magnitude L1, averaged over the resolutions of
    :func:`dspfx.fitting.losses.default_resolutions` (auraloss' defaults, FFT 1024/2048/512,
    hops 120/240/50, windows 600/1200/240 at 48 kHz, scaled to other rates; ``None`` keeps the
    defaults). Absolute values depend on these settings: state them with any figure.

    Args:
        prediction: ``(batch, channels, samples)`` (or 2-D / 1-D).
        target: same shape.
        sample_rate: in Hz, or None for auraloss' defaults unchanged.

    Returns:
        0-d tensor (0 for equal signals).
    """
    p, t = prepare_pair(prediction, target)
    return MRSTFTLoss(sample_rate=sample_rate).to(p.device)(p, t)


def log_spectral_distance(
    prediction: torch.Tensor,
    target: torch.Tensor,
    *,
    n_fft: int = 2048,
    hop: int = 512,
    eps: float = 1e-8,
) -> torch.Tensor:
    """Log-spectral distance in dB.

    For each frame, the RMS over frequency bins of ``10 log10(|T|^2 + eps) -
    10 log10(|P|^2 + eps)``; then the mean over frames, channels and batch. STFT: Hann window of
    ``n_fft`` samples, hop ``hop``, frames centred with zero padding (so any length works).
    A pure gain ``g`` between the signals gives ``|20 log10 g|`` dB.

    Args:
        prediction: ``(batch, channels, samples)`` (or 2-D / 1-D).
        target: same shape.
        n_fft: FFT (and window) size in samples.
        hop: hop size in samples.
        eps: added to the power spectra before the log.

    Returns:
        0-d tensor in dB.
    """
    if isinstance(n_fft, bool) or not isinstance(n_fft, int) or n_fft < 2:
        raise ValueError(f"n_fft must be an integer >= 2, got {n_fft!r}")
    if isinstance(hop, bool) or not isinstance(hop, int) or hop < 1:
        raise ValueError(f"hop must be a positive integer, got {hop!r}")
    p, t = prepare_pair(prediction, target)
    window = torch.hann_window(n_fft, dtype=p.dtype, device=p.device)

    def power_db(x: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(
            x.reshape(-1, x.shape[-1]),
            n_fft,
            hop_length=hop,
            window=window,
            center=True,
            pad_mode="constant",
            return_complex=True,
        )
        power = spec.real**2 + spec.imag**2
        return 10.0 * torch.log10(power + eps)

    diff = power_db(t) - power_db(p)  # (batch*channels, freq, frames)
    mean_square = torch.mean(diff**2, dim=-2)
    # sqrt with a finite gradient where the spectra agree exactly (the value stays exact)
    tiny = torch.finfo(mean_square.dtype).tiny
    per_frame = torch.where(
        mean_square > 0, torch.sqrt(torch.clamp(mean_square, min=tiny)), 0.0
    )
    return torch.mean(per_frame)


def dc_error(prediction: torch.Tensor, target: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """DC error ``|mean(t - p)|^2 / (mean(t^2) + eps)`` over all elements.

    Args:
        prediction: ``(batch, channels, samples)`` (or 2-D / 1-D).
        target: same shape.
        eps: added to the denominator so a silent target gives a finite value.

    Returns:
        0-d tensor.

    Reference: Wright et al., "Real-time guitar amplifier emulation with deep learning",
    Applied Sciences 10(3), 2020.
    """
    p, t = prepare_pair(prediction, target)
    return torch.mean(t - p) ** 2 / (torch.mean(t**2) + eps)


def max_abs_error(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Largest absolute sample difference ``max |t - p|``.

    Args:
        prediction: ``(batch, channels, samples)`` (or 2-D / 1-D).
        target: same shape.

    Returns:
        0-d tensor, in the signals' units (full scale = 1).
    """
    p, t = prepare_pair(prediction, target)
    return torch.max(torch.abs(t - p))


def all_metrics(
    prediction: torch.Tensor, target: torch.Tensor, sample_rate: float | None
) -> dict[str, float]:
    """All metrics as python floats (computed without gradients).

    Args:
        prediction: ``(batch, channels, samples)`` (or 2-D / 1-D).
        target: same shape.
        sample_rate: in Hz, for the MR-STFT resolutions (None: auraloss' defaults).

    Returns:
        ``{"esr", "esr_pre_emphasis" (c = 0.95), "mrstft", "snr_db", "lsd_db", "dc_error",
        "max_abs_error"}``.
    """
    p, t = prepare_pair(prediction, target)
    with torch.no_grad():
        p, t = p.detach(), t.detach()
        return {
            "esr": float(esr(p, t)),
            "esr_pre_emphasis": float(esr(p, t, pre_emphasis=0.95)),
            "mrstft": float(mrstft(p, t, sample_rate)),
            "snr_db": float(snr_db(p, t)),
            "lsd_db": float(log_spectral_distance(p, t)),
            "dc_error": float(dc_error(p, t)),
            "max_abs_error": float(max_abs_error(p, t)),
        }
