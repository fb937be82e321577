"""Feedback delay networks (FDN): orthogonal feedback matrices, Jot's frequency-dependent
absorption, and an exact compiled recursion with a hand-written adjoint (the numba loops are in
:mod:`dspfx.functional._fdn_kernels`; RT60 measurement in :mod:`dspfx.functional.decay`).

The network (per row = one batch item and channel, ``N`` lines of lengths ``m_i`` samples)::

    s_i[t] = v_i[t - m_i]                                          delay line outputs
    o_i[t] = b0_i s_i[t] + b1_i s_i[t-1] - a1_i o_i[t-1]           absorption filters
    y[t]   = sum_i c_i o_i[t]                                      output gains c
    v_i[t] = sum_j A_ij o_j[t] + g_i x[t]                          feedback matrix A, input gains g

References: J.-M. Jot and A. Chaigne, "Digital delay networks for designing artificial
reverberators", AES 90th Convention, 1991 (absorption filters from the RT60 per line length);
M. R. Schroeder, "New method of measuring reverberation time", JASA 37, 1965 (backward
integration); flamo (differentiable FDNs, evaluated per frequency bin) is the frequency-domain
counterpart of this time-domain recursion.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor

from dspfx.functional._compiled import as_numpy, to_torch
from dspfx.functional._fdn_kernels import kernels as _kernels
from dspfx.checks import check_sample_rate

__all__ = [
    "FDN_MATRICES",
    "default_delays",
    "feedback_matrix",
    "orthogonal_from_skew",
    "line_gains",
    "absorption_coefficients",
    "fdn",
    "fdn_line_energy",
]

FDN_MATRICES: tuple[str, ...] = ("hadamard", "householder", "random")

_LN_1000 = math.log(1000.0)


# --------------------------------------------------------------------------------------------
# design
# --------------------------------------------------------------------------------------------


def _is_prime(n: int) -> bool:
    if n < 2:
        return False
    if n % 2 == 0:
        return n == 2
    k = 3
    while k * k <= n:
        if n % k == 0:
            return False
        k += 2
    return True


def default_delays(n_lines: int, sample_rate: float, min_ms: float = 20.0, max_ms: float = 60.0) -> list[int]:
    """Mutually prime delay-line lengths (samples) spread geometrically over ``min_ms .. max_ms``.

    Each target length ``min_ms * (max_ms / min_ms) ** (i / (n_lines - 1))`` ms is rounded up to
    the next prime not used yet, so the lengths are distinct primes (hence mutually prime: no
    common period, the modes of the network do not pile up).

    Args:
        n_lines: number of lines (>= 1).
        sample_rate: Hz.
        min_ms, max_ms: the spread of the lengths, in milliseconds.

    Returns:
        ``n_lines`` increasing distinct primes.
    """
    sr = check_sample_rate(sample_rate)
    if isinstance(n_lines, bool) or not isinstance(n_lines, int) or n_lines < 1:
        raise ValueError(f"n_lines must be an int >= 1, got {n_lines!r}")
    if not 0 < min_ms <= max_ms:
        raise ValueError(f"default_delays needs 0 < min_ms <= max_ms, got {min_ms}, {max_ms}")
    out: list[int] = []
    for i in range(n_lines):
        frac = i / (n_lines - 1) if n_lines > 1 else 0.0
        m = max(2, int(math.ceil(min_ms * (max_ms / min_ms) ** frac * sr / 1000.0)))
        while not _is_prime(m) or m in out:
            m += 1
        out.append(m)
    return out


def feedback_matrix(kind: str, n_lines: int, *, seed: int = 0, dtype: torch.dtype = torch.float64) -> Tensor:
    """An orthogonal ``(n_lines, n_lines)`` feedback matrix.

    Args:
        kind: ``"hadamard"`` (Sylvester construction scaled by ``1/sqrt(N)``; ``N`` a power of
            two), ``"householder"`` (``I - 2/N 11^T``), or ``"random"`` (Q of the QR
            decomposition of a seeded Gaussian matrix, signs fixed so that ``diag(R) > 0``).
        n_lines: N.
        seed: seed of ``"random"``.

    Returns:
        The matrix ``A`` with ``A @ A.T == I`` (to rounding).
    """
    if kind not in FDN_MATRICES:
        raise ValueError(f"feedback matrix must be one of {', '.join(FDN_MATRICES)}, got {kind!r}")
    if isinstance(n_lines, bool) or not isinstance(n_lines, int) or n_lines < 1:
        raise ValueError(f"n_lines must be an int >= 1, got {n_lines!r}")
    n = n_lines
    if kind == "hadamard":
        if n & (n - 1):
            raise ValueError(
                f"a Hadamard feedback matrix needs a power-of-two number of lines, got {n}; use "
                "matrix='householder' or 'random'"
            )
        h = torch.ones(1, 1, dtype=torch.float64)
        while h.shape[0] < n:
            h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
        return (h / math.sqrt(n)).to(dtype)
    if kind == "householder":
        return (torch.eye(n, dtype=torch.float64) - 2.0 / n).to(dtype)
    gen = torch.Generator().manual_seed(int(seed))
    q, r = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
    return (q * torch.sign(torch.diagonal(r)).unsqueeze(0)).to(dtype)


def orthogonal_from_skew(base: Tensor, skew: Tensor) -> Tensor:
    """``base @ matrix_exp(W - W^T)``: orthogonal for any real ``W`` when ``base`` is orthogonal.

    The learnable parametrisation of a feedback matrix that stays orthogonal (the exponential
    of a skew-symmetric matrix is a rotation); ``W = 0`` gives ``base``.
    """
    return base @ torch.linalg.matrix_exp(skew - skew.transpose(-1, -2))


def line_gains(rt60_s: Tensor | float, delays: Sequence[int], sample_rate: float) -> Tensor:
    """Gain of a line of length ``m`` for a decay time: ``10 ** (-3 m / (sample_rate * rt60_s))``.

    Args:
        rt60_s: decay time(s) in seconds, any shape ``S`` (a tensor keeps its gradient).
        delays: the ``N`` line lengths in samples.
        sample_rate: Hz.

    Returns:
        ``S + (N,)``: per-line gains that make every line lose 60 dB in ``rt60_s`` seconds.
    """
    sr = check_sample_rate(sample_rate)
    t = torch.as_tensor(rt60_s, dtype=torch.float64) if not isinstance(rt60_s, Tensor) else rt60_s
    m = torch.tensor([float(d) for d in delays], dtype=t.dtype, device=t.device)
    return torch.exp(-(_LN_1000 / sr) * m / t.unsqueeze(-1))


def absorption_coefficients(
    rt60_low_s: Tensor | float,
    rt60_high_s: Tensor | float,
    crossover_hz: Tensor | float,
    delays: Sequence[int],
    sample_rate: float,
) -> tuple[Tensor, Tensor, Tensor]:
    """Jot absorption filters: a first-order shelf per line whose gain is exactly the line's
    decay gain for ``rt60_low_s`` at DC and for ``rt60_high_s`` at Nyquist.

    With ``G_lo, G_hi`` from :func:`line_gains` and ``K = tan(pi * crossover_hz / sample_rate)``
    (the bilinear transform of ``(G_hi s + G_lo w_c) / (s + w_c)``)::

        H(z) = (b0 + b1 z^-1) / (1 + a1 z^-1),   b0 = (G_hi + G_lo K) / (1 + K),
        b1 = (G_lo K - G_hi) / (1 + K),          a1 = (K - 1) / (1 + K)

    so ``H(1) = G_lo`` and ``H(-1) = G_hi``; the magnitude moves monotonically between them
    around the crossover. The crossover is clamped to [1 Hz, 0.49 sample_rate].

    Args:
        rt60_low_s, rt60_high_s, crossover_hz: tensors (or floats) of one broadcast shape ``S``.
        delays: the ``N`` line lengths (samples).
        sample_rate: Hz.

    Returns:
        ``(b0, b1, a1)``, each ``S + (N,)``, differentiable w.r.t. the three inputs.
    """
    sr = check_sample_rate(sample_rate)
    lo = line_gains(rt60_low_s, delays, sr)
    hi = line_gains(rt60_high_s, delays, sr)
    fc = torch.as_tensor(crossover_hz, dtype=lo.dtype, device=lo.device)
    k = torch.tan(math.pi * fc.clamp(1.0, 0.49 * sr) / sr).unsqueeze(-1)
    b0 = (hi + lo * k) / (1 + k)
    b1 = (lo * k - hi) / (1 + k)
    a1 = ((k - 1) / (1 + k)).expand_as(b0)
    return b0, b1, a1


# --------------------------------------------------------------------------------------------
# the compiled recursion and its adjoint
# --------------------------------------------------------------------------------------------


def _run_forward(arrays: list[np.ndarray], d: np.ndarray, store: bool):
    """The compiled forward on float64 arrays ``(x, b0, b1, a1, mat, gin, gout, hist, sp, op)``:
    ``(y, hist_new, sp_new, op_new, vext)``, the line inputs ``vext`` only with ``store`` (for the
    adjoint)."""
    fwd = _kernels()[0]
    x, b0, b1, a1, mat, gin, gout, hist, sp, op = arrays
    bsz, chans, n = x.shape
    nl, mmax = mat.shape[0], hist.shape[-1]
    vext = np.empty((bsz, chans, nl, mmax + n) if store else (1, 1, 1, 1))
    y, hist_new, sp_new, op_new = fwd(x, b0, b1, a1, mat, gin, gout, d, hist, sp, op, store, vext)
    return y, hist_new, sp_new, op_new, vext


class _FDNFunction(torch.autograd.Function):
    """The FDN recursion on CPU: numba forward, numba adjoint (backwards in time).

    The forward keeps, for the adjoint, only the line inputs ``v`` (``N x (max(m) + T)`` per row,
    float64); the adjoint runs over the forward's blocks, last first, and recomputes the
    absorption filters' outputs block by block from them. :func:`fdn` calls the forward without
    any storage when no gradient is needed."""

    @staticmethod
    def forward(ctx, x, b0, b1, a1, mat, gin, gout, hist, sp, op, delays: tuple[int, ...]):  # type: ignore[override]
        d = np.asarray(delays, dtype=np.int64)
        arrays = [as_numpy(t) for t in (x, b0, b1, a1, mat, gin, gout, hist, sp, op)]
        y, hist_new, sp_new, op_new, vext = _run_forward(arrays, d, store=True)
        ctx.delays = d
        ctx.arrays = arrays
        ctx.vext = vext
        ctx.meta = (x.dtype, x.device)
        return tuple(to_torch(a, x) for a in (y, hist_new, sp_new, op_new))

    @staticmethod
    def backward(ctx, gy, g_hist, g_sp, g_op):  # type: ignore[override]
        bwd = _kernels()[1]
        x, b0, b1, a1, mat, gin, gout, hist, sp, op = ctx.arrays

        def arr(g, like):
            return np.zeros(like.shape) if g is None else as_numpy(g)

        grads = bwd(
            arr(gy, x), arr(g_hist, hist), arr(g_sp, sp), arr(g_op, op),
            x, b0, b1, a1, mat, gin, gout, ctx.delays, sp, op, ctx.vext,
        )
        return (*(to_torch(g, ctx.meta) for g in grads), None)


def _check_tensor(t: Any, name: str, shape: tuple[int, ...]) -> Tensor:
    if not isinstance(t, Tensor):
        raise TypeError(f"fdn: {name} must be a torch.Tensor shaped {shape}, got {type(t).__name__}")
    if tuple(t.shape) != shape:
        raise ValueError(f"fdn: {name} must be shaped {shape}, got {tuple(t.shape)}")
    return t


def fdn(
    x: Tensor,
    b0: Tensor,
    b1: Tensor,
    a1: Tensor,
    matrix: Tensor,
    input_gains: Tensor,
    output_gains: Tensor,
    delays: Sequence[int],
    state: tuple[Tensor, Tensor, Tensor] | None = None,
) -> tuple[Tensor, tuple[Tensor, Tensor, Tensor]]:
    """Run a feedback delay network (see the module docstring for the recursion) with exact
    gradients w.r.t. every tensor argument, the state included.

    Every row (batch item, channel) runs the same network independently; the absorption
    coefficients may differ per batch item and per sample.

    Args:
        x: input ``(batch, channels, samples)``.
        b0, b1, a1: absorption filter coefficients ``(batch|1, samples|1, N)`` (see
            :func:`absorption_coefficients`); ``b0 = 1, b1 = a1 = 0`` is a lossless line.
        matrix: feedback matrix ``(N, N)``.
        input_gains, output_gains: ``(N,)``.
        delays: ``N`` line lengths, ints >= 1 (samples).
        state: ``(lines, s_prev, o_prev)``: ``lines`` ``(batch, channels, N, max(delays))`` the
            last line inputs, most recent first (entries ``k >= m_i`` are zero), ``s_prev`` and
            ``o_prev`` ``(batch, channels, N)`` the absorption filters' last input and output.
            ``None`` means silence.

    Returns:
        ``(y, state)``: the wet output shaped like ``x`` and the state after the block.

    On CPU the recursion is a numba loop with a hand-written adjoint loop (backwards in time).
    Both run in blocks no longer than the shortest line (whose inputs, or in the adjoint whose
    inputs' adjoints, are all known), so only the absorption filters recurse sample by sample.
    When a gradient is needed it keeps
    the line inputs (float64, ``N x (max(delays) + samples)`` per row) for the adjoint, which
    recomputes the filter outputs from them; otherwise it keeps nothing of the signal's length
    but the output. Both give the same values bit for bit.

    Devices: CPU only (a compiled numba loop); tensors on another device raise
    :class:`~dspfx.functional.CPUKernelError` (nothing is copied to the CPU behind the caller's back).
    Gradients: exact (hand-written adjoint loop) w.r.t. every tensor argument and the state.
    """
    if not isinstance(x, Tensor) or x.ndim != 3 or not x.is_floating_point():
        raise ValueError(
            "fdn: x must be a floating tensor shaped (batch, channels, samples), got "
            f"{tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__}"
        )
    bsz, chans, n = x.shape
    d = [int(m) for m in delays]
    nl = len(d)
    if nl < 1 or any(m < 1 for m in d):
        raise ValueError(f"fdn: delays must be a non-empty list of ints >= 1, got {list(delays)!r}")
    mmax = max(d)
    _check_tensor(matrix, "matrix", (nl, nl))
    _check_tensor(input_gains, "input_gains", (nl,))
    _check_tensor(output_gains, "output_gains", (nl,))
    coefs = []
    for name, c in (("b0", b0), ("b1", b1), ("a1", a1)):
        if not isinstance(c, Tensor) or c.ndim != 3 or c.shape[-1] != nl or c.shape[0] not in (1, bsz) or c.shape[1] not in (1, n):
            raise ValueError(
                f"fdn: {name} must be shaped (batch|1, samples|1, N) = ({bsz}|1, {n}|1, {nl}), got "
                f"{tuple(c.shape) if isinstance(c, Tensor) else type(c).__name__}"
            )
        coefs.append(c)
    bc = max(c.shape[0] for c in coefs)
    tc = max(c.shape[1] for c in coefs)
    b0, b1, a1 = (c.to(x.dtype).expand(bc, tc, nl) for c in coefs)
    if state is None:
        state = (
            x.new_zeros(bsz, chans, nl, mmax),
            x.new_zeros(bsz, chans, nl),
            x.new_zeros(bsz, chans, nl),
        )
    if not isinstance(state, (tuple, list)) or len(state) != 3:
        raise ValueError("fdn: state must be (lines, s_prev, o_prev) as returned by fdn, or None")
    hist = _check_tensor(state[0], "state lines", (bsz, chans, nl, mmax))
    sp = _check_tensor(state[1], "state s_prev", (bsz, chans, nl))
    op = _check_tensor(state[2], "state o_prev", (bsz, chans, nl))
    inputs = (
        x, b0, b1, a1, matrix.to(x.dtype), input_gains.to(x.dtype), output_gains.to(x.dtype),
        hist.to(x.dtype), sp.to(x.dtype), op.to(x.dtype),
    )
    if torch.is_grad_enabled() and any(t.requires_grad for t in inputs):
        y, hist, sp, op = _FDNFunction.apply(*inputs, tuple(d))
        return y, (hist, sp, op)
    # nothing to differentiate: the same loop without keeping the lines for the adjoint
    arrays = [as_numpy(t) for t in inputs]
    results = _run_forward(arrays, np.asarray(d, dtype=np.int64), store=False)[:4]
    y, hist, sp, op = (to_torch(a, x) for a in results)
    return y, (hist, sp, op)


def fdn_line_energy(state: tuple[Tensor, Tensor, Tensor]) -> Tensor:
    """Energy held in the delay lines of an FDN state: ``sum(lines ** 2)`` per (batch, channel).

    Conserved from block to block by a lossless network (orthogonal matrix, ``b0 = 1``,
    ``b1 = a1 = 0``) once the input is silent: each step moves the N line outputs ``s``
    into the lines as ``A s``, and ``|A s| = |s|``.
    """
    return state[0].square().sum(dim=(-1, -2))
