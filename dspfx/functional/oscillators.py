"""Oscillator banks: phase accumulation, harmonic (additive) and free sinusoidal synthesis.

Phase is kept in *cycles* (turns), wrapped to ``[0, 1)``. The running phase is a cumulative sum of
``f / sample_rate`` computed in float64 (float32 only on devices without float64, e.g. MPS), so
it stays accurate over hours of audio whatever the working dtype: the float32 increment alone
would be off by up to 6e-8 relative, i.e. 5e-3 rad after 60 s at 220 Hz. The wrapped phase is
then cast back to the working dtype, where ``k * phase`` (integer ``k``, phase in ``[0, 1)``)
gives harmonic ``k``'s phase to ``k * 6e-8`` cycles (2e-5 rad measured at k = 100 after 60 s). Gradients flow through the casts and the cumulative sum.

References: Engel et al., "DDSP: Differentiable Digital Signal Processing", ICLR 2020 (harmonic
synthesiser: harmonics at or above Nyquist get zero amplitude and the distribution is
renormalised; phase from a cumulative sum of ``2 pi f / sr``); Fletcher, "Normal vibration
frequencies of a stiff piano string", JASA 36 (1964) for ``f_k = k f0 sqrt(1 + B k^2)``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = [
    "phase_dtype",
    "wrap_phase",
    "accumulate_phase",
    "harmonic_ratios",
    "remove_above_nyquist",
    "normalize_distribution",
    "harmonic_synthesis",
    "sinusoidal_synthesis",
]


def phase_dtype(device: torch.device | str) -> torch.dtype:
    """The dtype phase is accumulated in on ``device``: float64, or float32 where float64 is missing (MPS)."""
    return torch.float32 if torch.device(device).type == "mps" else torch.float64


def wrap_phase(phase: Tensor) -> Tensor:
    """Wrap a phase in cycles to ``[0, 1)``: ``phase - floor(phase)`` (gradient 1 everywhere)."""
    return phase - torch.floor(phase)


def accumulate_phase(
    frequency_hz: Tensor, sample_rate: float, initial_phase: Tensor | None = None, dim: int = -1
) -> tuple[Tensor, Tensor]:
    """Running phase (cycles, wrapped) of an oscillator bank driven by per-sample frequencies.

    ``phase[i] = frac(initial_phase + sum_{j < i} frequency_hz[j] / sample_rate)`` along ``dim``:
    sample 0 has the initial phase (so a sine starts at ``sin(2 pi initial_phase)``), and the
    returned final phase is the phase of the sample *after* the block, i.e. the initial phase of
    the next block, which makes block-wise rendering equal to one offline render.

    Args:
        frequency_hz: frequencies in Hz at audio rate, time along ``dim`` (any other dims).
        sample_rate: in Hz.
        initial_phase: cycles, shaped like ``frequency_hz`` with ``dim`` of size 1 (or
            broadcastable to that); default 0.
        dim: the time axis.

    Returns:
        ``(phase, final_phase)``, both in :func:`phase_dtype` (float64 on CPU/CUDA), wrapped to
        ``[0, 1)``; ``final_phase`` keeps ``dim`` with size 1. Differentiable w.r.t. both inputs.
    """
    acc = phase_dtype(frequency_hz.device)
    increment = frequency_hz.to(acc) / float(sample_rate)
    total = torch.cumsum(increment, dim=dim)
    n = increment.shape[dim]
    exclusive = total - increment
    start = torch.zeros((), dtype=acc, device=frequency_hz.device) if initial_phase is None else initial_phase.to(acc)
    phase = wrap_phase(start + exclusive)
    final = wrap_phase(start + total.narrow(dim, n - 1, 1))
    return phase, final


def harmonic_ratios(
    n_harmonics: int, inharmonicity: float = 0.0, dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Frequency ratios ``f_k / f0 = k sqrt(1 + B k^2)`` for ``k = 1..n_harmonics`` (stiff string).

    Args:
        n_harmonics: number of partials K.
        inharmonicity: B >= 0 (0: exact integer harmonics).
    Returns:
        ``(K,)`` tensor.
    """
    k = torch.arange(1, n_harmonics + 1, dtype=torch.float64, device=device)
    ratios = k * torch.sqrt(1.0 + float(inharmonicity) * k * k) if inharmonicity else k
    return ratios.to(dtype or torch.get_default_dtype())


def remove_above_nyquist(amplitudes: Tensor, frequencies_hz: Tensor, sample_rate: float) -> Tensor:
    """Zero the amplitudes of partials at or above Nyquist (``f >= sample_rate / 2``) (DDSP).

    Args:
        amplitudes: any shape; frequencies_hz: broadcastable to it.
    Returns:
        amplitudes with those partials set to 0 (differentiable w.r.t. the kept amplitudes).
    """
    return amplitudes * (frequencies_hz < 0.5 * float(sample_rate)).to(amplitudes.dtype)


def normalize_distribution(distribution: Tensor, dim: int = -1) -> Tensor:
    """Scale non-negative weights to sum to 1 along ``dim``; all-zero rows stay zero (silence)."""
    total = distribution.sum(dim=dim, keepdim=True)
    return distribution / total.clamp_min(1e-30)


def harmonic_synthesis(
    f0_hz: Tensor,
    amplitude: Tensor,
    harmonic_distribution: Tensor,
    sample_rate: float,
    initial_phase: Tensor | None = None,
    inharmonicity: float = 0.0,
    normalize: bool = True,
) -> tuple[Tensor, Tensor]:
    """Additive synthesis of (stiff-string) harmonics of ``f0_hz``, everything at audio rate.

    ``y[i] = amplitude[i] * sum_k w_k[i] sin(2 pi phase_k[i])`` with ``f_k = k f0 sqrt(1 + B k^2)``,
    ``w`` = the distribution with partials at or above Nyquist zeroed and (``normalize``)
    renormalised to sum 1 at every sample (DDSP). Harmonic case (B = 0): only the fundamental's
    phase is accumulated (float64) and ``phase_k = frac(k phase_1)``; inharmonic case: every
    partial's phase is accumulated (float64) from its own carried phase.

    Args:
        f0_hz: ``(batch|1, n)`` fundamental in Hz (>= 0).
        amplitude: ``(batch|1, n)`` overall linear amplitude.
        harmonic_distribution: ``(batch|1, n, K)`` non-negative relative partial amplitudes.
        sample_rate: in Hz.
        initial_phase: cycles; ``(batch, 1)`` (harmonic) or ``(batch, K)`` (inharmonic); default 0.
        inharmonicity: B >= 0.
        normalize: renormalise the kept partials to sum 1 (False: use the weights as given).

    Returns:
        ``(y, final_phase)``: y ``(batch, n)`` in the working dtype; final_phase like
        ``initial_phase`` (float64), the phase to start the next block from.
    """
    K = harmonic_distribution.shape[-1]
    dtype = harmonic_distribution.dtype
    ratios = harmonic_ratios(K, inharmonicity, dtype=torch.float64, device=f0_hz.device)
    # weights: at one time step when f0 and the distribution are constant over the block (expanded
    # views, as the unit makes them), else per sample
    constant = _is_constant(f0_hz, -1) and _is_constant(harmonic_distribution, -2)
    f0_w = f0_hz[..., :1] if constant else f0_hz
    dist_w = harmonic_distribution[..., :1, :] if constant else harmonic_distribution
    partial_hz = f0_w.unsqueeze(-1) * ratios.to(f0_hz.dtype)  # (batch|1, n|1, K)
    weights = remove_above_nyquist(dist_w, partial_hz, sample_rate)
    if inharmonicity:
        # per-partial phases: start_k + m_k * (cycles of the fundamental since the block start)
        acc = phase_dtype(f0_hz.device)
        increment = f0_hz.to(acc) / float(sample_rate)
        total = torch.cumsum(increment, dim=-1)
        elapsed = (total - increment).unsqueeze(-1) * ratios.to(acc)  # (batch|1, n, K)
        start = 0.0 if initial_phase is None else initial_phase.to(acc).unsqueeze(1)  # (batch, 1, K)
        angles = (2 * math.pi) * wrap_phase(start + elapsed).to(dtype)
        final = wrap_phase(start + total[..., -1:].unsqueeze(-1) * ratios.to(acc)).squeeze(1)
    else:
        fundamental, final = accumulate_phase(f0_hz, sample_rate, initial_phase, dim=-1)  # (batch, n)
        # fundamental in [0, 1): the float32 product is within k * 6e-8 cycles of the exact phase
        angles = fundamental.to(dtype).unsqueeze(-1) * ((2 * math.pi) * ratios).to(dtype)  # (batch, n, K)
    y = _weighted_sum(torch.sin(angles), weights)
    if normalize:  # renormalise the kept partials: divide the sum rather than every weight
        y = y / weights.sum(dim=-1).clamp_min(1e-30)
    return amplitude * y, final


def _is_constant(t: Tensor, dim: int) -> bool:
    """True when ``t`` is one value along ``dim`` by construction (size 1 or an expanded view)."""
    return t.shape[dim] == 1 or t.stride(dim) == 0


def _weighted_sum(partials: Tensor, weights: Tensor) -> Tensor:
    """``(partials * weights).sum(-1)`` for (b, n, K) partials and (b|1, n|1, K) weights, as a matmul."""
    if weights.shape[-2] == 1:
        return torch.matmul(partials, weights.transpose(-1, -2)).squeeze(-1)
    batch = max(partials.shape[0], weights.shape[0])
    return torch.einsum("bnk,bnk->bn", partials.expand(batch, -1, -1), weights.expand(batch, -1, -1))


def sinusoidal_synthesis(
    frequencies_hz: Tensor,
    amplitudes: Tensor,
    sample_rate: float,
    initial_phase: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """A bank of free sinusoids: ``y[i] = sum_k a_k[i] sin(2 pi phase_k[i])``, at audio rate.

    Each partial's phase is accumulated (float64) from its own carried phase; partials at or above
    Nyquist are muted at the samples where they are (DDSP ``remove_above_nyquist``).

    Args:
        frequencies_hz: ``(batch|1, n, K)`` in Hz (>= 0).
        amplitudes: ``(batch|1, n, K)`` linear.
        sample_rate: in Hz.
        initial_phase: ``(batch, K)`` cycles; default 0.

    Returns:
        ``(y, final_phase)``: y ``(batch, n)``; final_phase ``(batch, K)`` float64.
    """
    dtype = amplitudes.dtype
    start = None if initial_phase is None else initial_phase.unsqueeze(1)  # (batch, 1, K)
    phases, final = accumulate_phase(frequencies_hz, sample_rate, start, dim=1)
    constant = _is_constant(frequencies_hz, -2) and _is_constant(amplitudes, -2)
    weights = remove_above_nyquist(
        amplitudes[..., :1, :] if constant else amplitudes,
        frequencies_hz[..., :1, :] if constant else frequencies_hz,
        sample_rate,
    )
    y = _weighted_sum(torch.sin((2 * math.pi) * phases.to(dtype)), weights)
    return y, final.squeeze(1)
