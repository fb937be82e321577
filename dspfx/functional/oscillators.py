"""Oscillator banks: phase accumulation, harmonic (additive) and free sinusoidal synthesis.

Phase is kept in *cycles* (turns), wrapped to ``[0, 1)``. The running phase is a cumulative sum of
``f / sample_rate`` computed in float64 (float32 only on devices without float64, e.g. MPS), so
it stays accurate over hours of audio whatever the working dtype: the float32 increment alone
would be off by up to 6e-8 relative, i.e. 5e-3 rad after 60 s at 220 Hz. The wrapped phase is
then cast back to the working dtype, where ``k * phase`` (integer ``k``, phase in ``[0, 1)``)
gives harmonic ``k``'s phase to ``k * 6e-8`` cycles (2e-5 rad measured at k = 100 after 60 s). Gradients flow through the casts and the cumulative sum.
On the CPU the harmonic and sinusoid banks run in compiled loops (numba, float64, exact
hand-written adjoints): the harmonic bank takes ``sin(k theta)`` from the rotation recurrence on
the float64 wrapped phase (error ~ k * 1e-16) and interpolates distribution frames itself, so no
``(batch, n, K)`` tensor is built; on other devices the torch formulas below are used.

References: Engel et al., "DDSP: Differentiable Digital Signal Processing", ICLR 2020 (harmonic
synthesiser: harmonics at or above Nyquist get zero amplitude and the distribution is
renormalised; phase from a cumulative sum of ``2 pi f / sr``); Fletcher, "Normal vibration
frequencies of a stiff piano string", JASA 36 (1964) for ``f_k = k f0 sqrt(1 + B k^2)``.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
from torch import Tensor

from dspfx.functional._compiled import as_numpy, to_grads, to_torch

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


#: Use the compiled (numba) harmonic bank on the CPU; False: the torch path everywhere (tests compare both).
_COMPILED_BANK = True


def harmonic_synthesis(
    f0_hz: Tensor,
    amplitude: Tensor,
    harmonic_distribution: Tensor,
    sample_rate: float,
    initial_phase: Tensor | None = None,
    inharmonicity: float = 0.0,
    normalize: bool = True,
    previous: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Additive synthesis of (stiff-string) harmonics of ``f0_hz``, at audio rate.

    ``y[i] = amplitude[i] * sum_k w_k[i] sin(2 pi phase_k[i])`` with ``f_k = k f0 sqrt(1 + B k^2)``,
    ``w`` = the distribution with partials at or above Nyquist zeroed and (``normalize``)
    renormalised to sum 1 at every sample (DDSP). The distribution may be given per sample
    (``frames == n``), constant (``frames == 1``) or at any frame rate: frames on the block's causal
    hop grid, interpolated linearly from ``previous`` (the previous block's last frame), as
    :func:`dspfx.functional.control.upsample_control` does in ``mode="causal"``, but without
    materialising the ``(batch, n, K)`` upsampled weights.

    Harmonic case (B = 0): only the fundamental's phase is accumulated (float64, wrapped), and on
    the CPU a compiled loop (numba, float64) sums the harmonics with ``sin(k theta)`` from the
    rotation recurrence ``e^{i k theta} = e^{i (k-1) theta} e^{i theta}`` (error ~ k * 1e-16),
    frame by frame so that the working set stays in cache, stopping at the last harmonic below
    Nyquist; its backward is a hand-written exact adjoint (also numba). The Nyquist
    renormalisation is taken from cumulative sums of the frames (a gather per sample). On other
    devices the same sum is computed with torch (weights upsampled, ``sin(k * phase)`` in the
    working dtype, ``phase`` exact in ``[0, 1)``). Inharmonic case: every partial's phase is
    accumulated (float64) from its own carried phase (torch).

    Args:
        f0_hz: ``(batch|1, n)`` fundamental in Hz (>= 0).
        amplitude: ``(batch|1, n)`` overall linear amplitude.
        harmonic_distribution: ``(batch|1, frames, K)`` non-negative relative partial amplitudes,
            ``frames`` = n (per sample), 1 (constant) or a frame rate (interpolated linearly).
        sample_rate: in Hz.
        initial_phase: cycles; ``(batch, 1)`` (harmonic) or ``(batch, K)`` (inharmonic); default 0.
        inharmonicity: B >= 0.
        normalize: renormalise the kept partials to sum 1 (False: use the weights as given).
        previous: ``(batch|1, 1, K)``, the distribution's frame before the block (default: its
            first frame).

    Devices and gradients: CPU (compiled kernel with an exact adjoint) and any torch device
    (torch path); differentiable w.r.t. ``f0_hz``, ``amplitude``, ``harmonic_distribution`` and
    ``previous``.

    Returns:
        ``(y, final_phase)``: y ``(batch, n)`` in the working dtype; final_phase like
        ``initial_phase`` (float64), the phase to start the next block from.
    """
    K = harmonic_distribution.shape[-1]
    n = f0_hz.shape[-1]
    dtype = harmonic_distribution.dtype
    frames = harmonic_distribution.shape[-2]
    if previous is not None and frames == n:
        previous = None  # a hop of one sample reaches every frame on its own sample
    if previous is not None or 1 < frames < n:
        from dspfx.functional.control import upsample_control

        prev = harmonic_distribution[..., :1, :] if previous is None else previous.to(dtype)
        if frames + 1 == n or not (not inharmonicity and _COMPILED_BANK and f0_hz.device.type == "cpu"):
            # per sample (the torch path, or F + 1 rows that would read as one row per sample)
            harmonic_distribution = upsample_control(harmonic_distribution, n, mode="causal", previous=prev)
        else:  # F + 1 rows, the previous frame first: read on the causal grid by _frame_positions
            rows = max(prev.shape[0], harmonic_distribution.shape[0])
            harmonic_distribution = torch.cat([prev.expand(rows, 1, K), harmonic_distribution.expand(rows, frames, K)], dim=-2)
        frames = harmonic_distribution.shape[-2]
    on_cpu = f0_hz.device.type == "cpu" and harmonic_distribution.device.type == "cpu"
    if not inharmonicity and _COMPILED_BANK and on_cpu:
        fundamental, final = accumulate_phase(f0_hz, sample_rate, initial_phase, dim=-1)  # (batch, n) float64
        kept = _harmonics_below_nyquist(f0_hz, K, sample_rate)  # (batch|1, n) int64
        if frames == n and n > 1 and _is_constant(harmonic_distribution, -2):
            harmonic_distribution = harmonic_distribution[..., :1, :]  # an expanded constant: one frame
        dist = harmonic_distribution.to(dtype)
        y = _HarmonicSum.apply(fundamental, dist, kept).to(dtype)
        if normalize:  # renormalise the kept partials: divide the sum rather than every weight
            y = y / _kept_weight_sum(dist, kept, n).clamp_min(1e-30)
        return amplitude * y, final
    ratios = harmonic_ratios(K, inharmonicity, dtype=torch.float64, device=f0_hz.device)
    # weights: at one time step when f0 and the distribution are constant over the block (expanded
    # views, as the unit makes them), else per sample
    constant = _is_constant(f0_hz, -1) and _is_constant(harmonic_distribution, -2)
    f0_w = f0_hz[..., :1] if constant else f0_hz
    dist_w = harmonic_distribution[..., :1, :] if constant else harmonic_distribution.expand(-1, n, -1)
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


def _harmonics_below_nyquist(f0_hz: Tensor, n_harmonics: int, sample_rate: float) -> Tensor:
    """Per sample, how many of the harmonics ``k = 1..K`` lie below Nyquist (``k f0 < sr / 2``), int64."""
    with torch.no_grad():
        f0 = f0_hz.to(torch.float64)
        nyquist = 0.5 * float(sample_rate)
        k = torch.floor(nyquist / f0.clamp_min(1e-300))
        k = k - (k * f0 >= nyquist).to(k.dtype)  # exactly at Nyquist: not kept
        return k.clamp(0, n_harmonics).to(torch.int64)


def _frame_positions(rows: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Left row and weight of the right one per sample: ``rows == 1`` constant, ``rows == n`` one
    row per sample, else the previous frame and ``rows - 1`` frames on the causal hop grid
    (:func:`dspfx.functional.control.frame_positions`, as harmonic_synthesis lays them out)."""
    if rows == 1:
        return np.zeros(n, np.int64), np.zeros(n)
    if rows == n:
        return np.arange(n, dtype=np.int64).clip(max=n - 2), (np.arange(n) == n - 1).astype(np.float64)
    from dspfx.functional.control import frame_positions

    left, weight = frame_positions(rows, n, "causal")
    return left.numpy(), weight.numpy()


def _kept_weight_sum(dist: Tensor, kept: Tensor, n: int) -> Tensor:
    """``sum_{k <= kept[t]} w[t, k]`` with ``w`` the frames of ``dist`` interpolated to ``n`` samples.

    A gather in the cumulative sums of the frames: ``(batch, n)``, differentiable w.r.t. ``dist``."""
    b_w, frames, K = dist.shape
    if frames == n and n > 1:
        # per-sample weights (the DDSP model's audio-rate distribution): a masked sum, whose
        # backward is one multiply, instead of a cumsum over (batch, n, K) and its flips
        below_kept = torch.arange(K, device=dist.device) < kept.unsqueeze(-1)  # (batch|1, n, K)
        return (dist * below_kept).sum(-1)
    cum = torch.cat([torch.zeros_like(dist[..., :1]), torch.cumsum(dist, dim=-1)], dim=-1)  # (Bw, F, K + 1)
    left_np, alpha_np = _frame_positions(frames, n)
    left = torch.from_numpy(left_np).to(kept.device)
    batch = max(b_w, kept.shape[0])
    flat = cum.reshape(b_w, frames * (K + 1)).expand(batch, -1)
    index = (left * (K + 1) + kept).expand(batch, n)
    below = torch.gather(flat, 1, index)
    if frames == 1:
        return below
    above = torch.gather(flat, 1, index + (K + 1))
    alpha = torch.from_numpy(alpha_np).to(device=dist.device, dtype=dist.dtype)
    return below + alpha * (above - below)


@functools.lru_cache(maxsize=None)
def _harmonic_kernels():
    """The compiled forward and adjoint loops of :class:`_HarmonicSum` (numba, cached on disk).

    Samples are taken one segment at a time (the samples between two control frames, whose
    weights are one lerp of two rows of the distribution); within a segment the harmonics run in
    the outer loop and the samples in the inner one (SIMD over samples, all in L1), each sample
    carrying ``(cos k theta, sin k theta)`` from one harmonic to the next by a rotation."""
    from numba import njit

    @njit(cache=True, nogil=True, fastmath={"contract", "reassoc"})
    def run(phase, dist, kept, left, alpha, g, backward):  # pragma: no cover - compiled
        # forward: out[b, t] = sum_{k <= kept[b, t]} w[b, t, k] sin(2 pi k phase[b, t]),
        #   w[b, t] = (1 - alpha[t]) dist[b, left[t]] + alpha[t] dist[b, left[t] + 1];
        # backward (g = dL/dout): dL/dphase[b, t] = g 2 pi sum_k k w cos(2 pi k phase), and
        #   dL/ddist[left frame] += g (1 - alpha) sin(...), dL/ddist[right frame] += g alpha sin(...)
        batch, n = phase.shape
        b_w, frames, K = dist.shape
        b_k = kept.shape[0]
        out = np.zeros((batch, n))
        g_dist = np.zeros((b_w, frames, K) if backward else (1, 1, 1))
        c1 = np.empty(n)
        s1 = np.empty(n)
        ck = np.empty(n)
        sk = np.empty(n)
        kf = np.empty(n)
        bounds = [0]  # starts of the runs of equal left frames (segments), and n
        for t in range(1, n):
            if left[t] != left[t - 1]:
                bounds.append(t)
        bounds.append(n)
        for b in range(batch):
            bw = b if b_w > 1 else 0
            bk = b if b_k > 1 else 0
            for t in range(n):
                a = 2.0 * np.pi * phase[b, t]
                c1[t] = np.cos(a)
                s1[t] = np.sin(a)
                ck[t] = c1[t]
                sk[t] = s1[t]
                kf[t] = kept[bk, t]
            for i in range(len(bounds) - 1):
                t0 = bounds[i]
                t1 = bounds[i + 1]
                m = t1 - t0
                f = left[t0]
                f1 = f + 1 if frames > 1 else f
                # contiguous views of the segment: the inner loops run over j = 0 .. m - 1 (SIMD)
                acc = out[b, t0:t1]
                c1_ = c1[t0:t1]
                s1_ = s1[t0:t1]
                ck_ = ck[t0:t1]
                sk_ = sk[t0:t1]
                al_ = alpha[t0:t1]
                kf_ = kf[t0:t1]
                g_ = g[b, t0:t1]
                top = int(kf_.max())
                for k in range(1, top + 1):
                    kk = float(k)
                    w0 = dist[bw, f, k - 1]
                    dw = dist[bw, f1, k - 1] - w0
                    if backward:
                        acc0 = 0.0
                        acc1 = 0.0
                        two_pi_k = 2.0 * np.pi * kk
                        for j in range(m):
                            gm = g_[j] * (1.0 if kk <= kf_[j] else 0.0)
                            sv = sk_[j]
                            cv = ck_[j]
                            gs = gm * sv
                            acc1 += al_[j] * gs
                            acc0 += gs
                            acc[j] += two_pi_k * (w0 + al_[j] * dw) * gm * cv
                            ck_[j] = cv * c1_[j] - sv * s1_[j]
                            sk_[j] = sv * c1_[j] + cv * s1_[j]
                        g_dist[bw, f, k - 1] += acc0 - acc1
                        g_dist[bw, f1, k - 1] += acc1
                    else:
                        for j in range(m):
                            w = (w0 + al_[j] * dw) * (1.0 if kk <= kf_[j] else 0.0)
                            sv = sk_[j]
                            cv = ck_[j]
                            acc[j] += w * sv
                            ck_[j] = cv * c1_[j] - sv * s1_[j]
                            sk_[j] = sv * c1_[j] + cv * s1_[j]
        return out, g_dist

    def forward(phase, dist, kept, left, alpha):
        return run(phase, dist, kept, left, alpha, phase, False)[0]

    def backward(phase, dist, kept, left, alpha, g):
        return run(phase, dist, kept, left, alpha, g, True)

    return forward, backward


class _HarmonicSum(torch.autograd.Function):
    """``sum_{k <= kept} w_k sin(2 pi k phase)`` (batch, n) from the fundamental's phase (batch, n)
    in cycles, distribution frames (Bw, F, K) interpolated linearly over the n samples, and the
    number of kept harmonics per sample (Bk, n): forward and exact adjoint in numba (float64, CPU
    tensors only). Returns float64; gradients w.r.t. the phase and the frames."""

    @staticmethod
    def forward(ctx, phase: Tensor, dist: Tensor, kept: Tensor) -> Tensor:
        fwd, _ = _harmonic_kernels()
        n = phase.shape[-1]
        batch = max(phase.shape[0], dist.shape[0], kept.shape[0])
        left, alpha = _frame_positions(dist.shape[-2], n)
        arrays = (as_numpy(phase.expand(batch, n)), as_numpy(dist), np.ascontiguousarray(kept.numpy()), left, alpha)
        ctx.arrays = arrays
        ctx.meta = ((phase.dtype, phase.device), (dist.dtype, dist.device))
        ctx.phase_batch = phase.shape[0]
        return torch.from_numpy(fwd(*arrays))

    @staticmethod
    def backward(ctx, grad: Tensor):
        _, bwd = _harmonic_kernels()
        g_phase, g_dist = bwd(*ctx.arrays, as_numpy(grad))
        phase_like, dist_like = ctx.meta
        g_phase = to_torch(g_phase, phase_like)
        if ctx.phase_batch != g_phase.shape[0]:
            g_phase = g_phase.sum(0, keepdim=True)
        return (
            g_phase if ctx.needs_input_grad[0] else None,
            to_torch(g_dist, dist_like) if ctx.needs_input_grad[1] else None,
            None,
        )


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
    Nyquist are muted at the samples where they are (DDSP ``remove_above_nyquist``). On the CPU
    the bank runs in a compiled loop (numba, float64: phases accumulated sample by sample and
    wrapped, no ``(batch, n, K)`` temporaries) with an exact hand-written adjoint (the frequency
    gradient is a reverse cumulative sum); elsewhere in torch.

    Args:
        frequencies_hz: ``(batch|1, n, K)`` in Hz (>= 0).
        amplitudes: ``(batch|1, n, K)`` linear.
        sample_rate: in Hz.
        initial_phase: ``(batch, K)`` cycles; default 0.

    Returns:
        ``(y, final_phase)``: y ``(batch, n)``; final_phase ``(batch, K)`` float64.

    Devices: CPU (a compiled numba loop) and any torch device (a torch path, same results up to
    rounding).
    Gradients: exact w.r.t. frequencies and amplitudes (the compiled path's hand-written adjoint).
    """
    dtype = amplitudes.dtype
    if _COMPILED_BANK and frequencies_hz.device.type == "cpu" and amplitudes.device.type == "cpu":
        n, K = max(frequencies_hz.shape[-2], amplitudes.shape[-2]), frequencies_hz.shape[-1]
        frequencies_hz = frequencies_hz.expand(-1, n, -1)
        amplitudes = amplitudes.expand(-1, n, -1)
        batch = max(frequencies_hz.shape[0], amplitudes.shape[0],
                    1 if initial_phase is None else initial_phase.shape[0])
        start = (torch.zeros(batch, K, dtype=torch.float64) if initial_phase is None
                 else initial_phase.to(torch.float64).expand(batch, K))
        y = _SinusoidBank.apply(frequencies_hz, amplitudes, start, float(sample_rate)).to(dtype)
        final = wrap_phase(start + frequencies_hz.to(torch.float64).sum(dim=1) / float(sample_rate))
        return y, final
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


@functools.lru_cache(maxsize=None)
def _sinusoid_kernel():
    """The compiled forward / adjoint loop of :class:`_SinusoidBank` (numba, cached on disk)."""
    from numba import njit

    @njit(cache=True, nogil=True)
    def run(freqs, amps, start, sample_rate, g, backward):  # pragma: no cover - compiled
        # phase[b, t, k] = frac(start[b, k] + sum_{j < t} freqs[b, j, k] / sr);
        # out[b, t] = sum_k amps[b, t, k] [freqs[b, t, k] < sr / 2] sin(2 pi phase[b, t, k]).
        # backward (g = dL/dout): dL/damps = g m sin, dL/dphase = g m amps 2 pi cos,
        # dL/dfreqs[t] = sum_{tau > t} dL/dphase[tau] / sr, dL/dstart = sum_tau dL/dphase[tau]
        b_f, n, K = freqs.shape
        b_a = amps.shape[0]
        batch = start.shape[0]
        nyquist = 0.5 * sample_rate
        two_pi = 2.0 * np.pi
        out = np.zeros((batch, n))
        g_f = np.zeros((b_f, n, K) if backward else (1, 1, 1))
        g_a = np.zeros((b_a, n, K) if backward else (1, 1, 1))
        g_s = np.zeros((batch, K) if backward else (1, 1))
        phase = np.empty(K)
        if backward:
            phases = np.empty((n, K))
            acc = np.empty(K)
        for b in range(batch):
            bf = b if b_f > 1 else 0
            ba = b if b_a > 1 else 0
            for k in range(K):
                phase[k] = start[b, k]
            for t in range(n):
                total = 0.0
                for k in range(K):
                    p = phase[k]
                    if backward:
                        phases[t, k] = p
                    f = freqs[bf, t, k]
                    if f < nyquist:
                        total += amps[ba, t, k] * np.sin(two_pi * p)
                    p += f / sample_rate
                    phase[k] = p - np.floor(p)
                out[b, t] = total
            if backward:
                for k in range(K):
                    acc[k] = 0.0
                for t in range(n - 1, -1, -1):
                    gt = g[b, t]
                    for k in range(K):
                        g_f[bf, t, k] += acc[k] / sample_rate  # phases after t depend on freqs[t]
                        if freqs[bf, t, k] < nyquist:
                            a = two_pi * phases[t, k]
                            g_a[ba, t, k] += gt * np.sin(a)
                            acc[k] += gt * amps[ba, t, k] * two_pi * np.cos(a)
                for k in range(K):
                    g_s[b, k] = acc[k]
        return out, g_f, g_a, g_s

    return run


class _SinusoidBank(torch.autograd.Function):
    """``sum_k a_k [f_k < sr/2] sin(2 pi phase_k)`` with per-partial float64 phases accumulated from
    ``start`` (batch, K): frequencies and amplitudes (B|1, n, K); forward and exact adjoint in
    numba (CPU). Returns float64 (batch, n)."""

    @staticmethod
    def forward(ctx, freqs: Tensor, amps: Tensor, start: Tensor, sample_rate: float) -> Tensor:
        arrays = (as_numpy(freqs), as_numpy(amps), as_numpy(start))
        ctx.arrays = arrays
        ctx.sample_rate = sample_rate
        ctx.meta = [(t.dtype, t.device) for t in (freqs, amps, start)]
        out = _sinusoid_kernel()(*arrays, sample_rate, arrays[2], False)[0]
        return torch.from_numpy(out)

    @staticmethod
    def backward(ctx, grad: Tensor):
        _, g_f, g_a, g_s = _sinusoid_kernel()(*ctx.arrays, ctx.sample_rate, as_numpy(grad), True)
        return (*to_grads((g_f, g_a, g_s), ctx.meta, ctx.needs_input_grad[:3]), None)
