"""Feedback delay networks (FDN): orthogonal feedback matrices, Jot's frequency-dependent
absorption, an exact compiled recursion with a hand-written adjoint, and RT60 measurement.

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
from functools import lru_cache
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor

from dspfx.functional._compiled import as_numpy, to_torch
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
    "rt60",
    "energy_decay_curve",
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


@lru_cache(maxsize=None)
def _kernels():
    """Forward and adjoint loops (numba, cached on disk; imported lazily)."""
    from numba import njit

    @njit(cache=True, nogil=True)
    def forward(x, b0, b1, a1, mat, gin, gout, delays, hist, sp, op, store, vext):  # pragma: no cover
        # x (B, C, T); b0/b1/a1 (Bc, Tc, N); mat (N, N); hist (B, C, N, M) most recent first.
        # The lines live in a ring buffer (a power-of-two length > M). The signal runs in blocks
        # no longer than the shortest line, so a block's line outputs s_i[t] = v_i[t - m_i] all
        # come from earlier blocks: only the absorption filters recurse sample by sample; the
        # output sum and the matrix product run over whole blocks (long contiguous loops). Per
        # element the operations and their order are those of the plain per-sample loop
        # (v_i = g_i x + sum_j A_ij o_j, j ascending; y = sum_i c_i o_i, i ascending).
        # With store, the line inputs (vext (B, C, N, M + T), the history first) are written for
        # the adjoint (which recomputes the filter outputs from them); without, nothing of length
        # T but y is.
        bsz, chans, n = x.shape
        nl = mat.shape[0]
        mmax = hist.shape[3]
        bc, tc = b0.shape[0], b0.shape[1]
        size = 1
        while size < mmax + 1:
            size *= 2
        mask = size - 1
        block = min(delays.min(), 512)
        ring = np.empty((nl, size))
        y = np.empty((bsz, chans, n))
        hist_new = np.zeros((bsz, chans, nl, mmax))
        sp_new = np.empty((bsz, chans, nl))
        op_new = np.empty((bsz, chans, nl))
        sb = np.empty((nl, block))
        ob = np.empty((nl, block))
        vb = np.empty((nl, block))
        ub = np.empty((nl, block))
        s_prev = np.empty(nl)
        o_prev = np.empty(nl)
        for b in range(bsz):
            rb = b if bc > 1 else 0
            for c in range(chans):
                ring[:, :] = 0.0
                for i in range(nl):
                    for k in range(mmax):
                        ring[i, (size - 1 - k) & mask] = hist[b, c, i, k]  # v_i[-1-k]
                        if store:
                            vext[b, c, i, mmax - 1 - k] = hist[b, c, i, k]
                    s_prev[i] = sp[b, c, i]
                    o_prev[i] = op[b, c, i]
                t0 = 0
                while t0 < n:
                    length = min(block, n - t0)
                    for i in range(nl):
                        base = t0 - delays[i]
                        for t in range(length):
                            sb[i, t] = ring[i, (base + t) & mask]
                    # the absorption filters o = (b0 s + b1 s[t-1]) - a1 o[t-1]: the feed-forward
                    # part over the whole block, then the recursion, all lines at each sample
                    for i in range(nl):
                        ub[i, 0] = b0[rb, t0 if tc > 1 else 0, i] * sb[i, 0] + b1[rb, t0 if tc > 1 else 0, i] * s_prev[i]
                        if tc > 1:
                            for t in range(1, length):
                                ub[i, t] = b0[rb, t0 + t, i] * sb[i, t] + b1[rb, t0 + t, i] * sb[i, t - 1]
                        else:
                            c0, c1 = b0[rb, 0, i], b1[rb, 0, i]
                            for t in range(1, length):
                                ub[i, t] = c0 * sb[i, t] + c1 * sb[i, t - 1]
                        s_prev[i] = sb[i, length - 1]
                    for t in range(length):
                        rt = t0 + t if tc > 1 else 0
                        for i in range(nl):
                            oi = ub[i, t] - a1[rb, rt, i] * o_prev[i]
                            ob[i, t] = oi
                            o_prev[i] = oi
                    for t in range(length):
                        y[b, c, t0 + t] = 0.0
                    for i in range(nl):
                        ci = gout[i]
                        for t in range(length):
                            y[b, c, t0 + t] += ci * ob[i, t]
                    for i in range(nl):
                        gi = gin[i]
                        for t in range(length):
                            vb[i, t] = gi * x[b, c, t0 + t]
                    for j in range(nl):
                        for i in range(nl):
                            aij = mat[i, j]
                            for t in range(length):
                                vb[i, t] += aij * ob[j, t]
                    for i in range(nl):
                        for t in range(length):
                            ring[i, (t0 + t) & mask] = vb[i, t]
                    if store:
                        for i in range(nl):
                            for t in range(length):
                                vext[b, c, i, mmax + t0 + t] = vb[i, t]
                    t0 += length
                # the state after the block: v_i[n-1-k] for k < m_i, s_i[n-1], o_i[n-1]
                for i in range(nl):
                    for k in range(delays[i]):
                        hist_new[b, c, i, k] = ring[i, (n - 1 - k) & mask]
                    sp_new[b, c, i] = s_prev[i]
                    op_new[b, c, i] = o_prev[i]
        return y, hist_new, sp_new, op_new

    @njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
    def backward(gy, g_hist, g_sp, g_op, x, b0, b1, a1, mat, gin, gout, delays, sp, op, vext):  # pragma: no cover
        # The adjoint of the forward's blocks (no longer than the shortest line), last block
        # first. A block's line inputs v_i[t] reach the output only through s_i[t + m_i] and
        # s_i[t + m_i + 1], both in later blocks, so their adjoints gv are complete when the
        # block starts: the input, the gains, the transposed matrix product and the matrix's
        # gradient run over the whole block (long loops over time); only the absorption
        # filters' adjoint recurses sample by sample, per line, and it adds to gv of earlier
        # blocks only. The filter outputs o are recomputed block by block from the filters'
        # state at each block start (a first pass keeps them), and gv lives in a ring buffer
        # (a power-of-two length > M + block + 1): nothing of the signal's length is allocated
        # but the input's gradient. (Sums may be reassociated: exact up to rounding.)
        bsz, chans, n = x.shape
        nl = mat.shape[0]
        mmax = g_hist.shape[3]
        bc = b0.shape[0]
        tc = b0.shape[1]
        block = min(delays.min(), 512)
        n_blocks = (n + block - 1) // block
        size = 1
        while size < mmax + block + 2:
            size *= 2
        mask = size - 1
        gx = np.zeros((bsz, chans, n))
        gb0 = np.zeros(b0.shape)
        gb1 = np.zeros(b1.shape)
        ga1 = np.zeros(a1.shape)
        gmat = np.zeros(mat.shape)
        ggin = np.zeros(nl)
        ggout = np.zeros(nl)
        ghist0 = np.zeros((bsz, chans, nl, mmax))
        gsp0 = np.zeros((bsz, chans, nl))
        gop0 = np.zeros((bsz, chans, nl))
        gv = np.empty((nl, size))  # the adjoint of v_i[t] at [i, (M + t) & mask]
        gvb = np.empty((nl, block))  # gv over the block
        ob = np.empty((nl, block))  # o over the block
        gob = np.empty((nl, block))  # o's adjoint over the block
        pb0, pb1, pa1 = np.empty(block), np.empty(block), np.empty(block)
        ck_s = np.empty((n_blocks, nl))  # the filters' state before each block
        ck_o = np.empty((n_blocks, nl))
        carry_o = np.empty(nl)
        for b in range(bsz):
            rb = b if bc > 1 else 0
            for c in range(chans):
                v = vext[b, c]
                for i in range(nl):  # the filters' state before each block
                    m = delays[i]
                    s1, o1 = sp[b, c, i], op[b, c, i]
                    for kb in range(n_blocks):
                        ck_s[kb, i], ck_o[kb, i] = s1, o1
                        for t in range(kb * block, min(kb * block + block, n)):
                            rt = t if tc > 1 else 0
                            s = v[i, mmax + t - m]
                            o1 = (b0[rb, rt, i] * s + b1[rb, rt, i] * s1) - a1[rb, rt, i] * o1
                            s1 = s
                gv[:, :] = 0.0
                for i in range(nl):
                    # the returned state: hist_new[i, k] = v_i[n-1-k] (k < m_i), sp_new = s_i[n-1]
                    for k in range(delays[i]):
                        gv[i, (mmax + n - 1 - k) & mask] += g_hist[b, c, i, k]
                    gv[i, (mmax + n - 1 - delays[i]) & mask] += g_sp[b, c, i]
                    carry_o[i] = g_op[b, c, i]
                for kb in range(n_blocks - 1, -1, -1):
                    t0 = kb * block
                    length = min(block, n - t0)
                    # the block's gv is complete: take it out of the ring (its slots are free)
                    for i in range(nl):
                        for k in range(length):
                            p = (mmax + t0 + k) & mask
                            gvb[i, k] = gv[i, p]
                            gv[i, p] = 0.0
                    for i in range(nl):  # o over the block, from the filters' state before it
                        m = delays[i]
                        s1, o1 = ck_s[kb, i], ck_o[kb, i]
                        for k in range(length):
                            rt = t0 + k if tc > 1 else 0
                            s = v[i, mmax + t0 + k - m]
                            o1 = (b0[rb, rt, i] * s + b1[rb, rt, i] * s1) - a1[rb, rt, i] * o1
                            s1 = s
                            ob[i, k] = o1
                    xb = x[b, c, t0 : t0 + length]
                    gyb = gy[b, c, t0 : t0 + length]
                    gxb = gx[b, c, t0 : t0 + length]
                    # v = A o + g x, y = c . o: the input, the gains and the matrix
                    for i in range(nl):
                        gvi, oi, gobi = gvb[i], ob[i], gob[i]
                        gi, ci = gin[i], gout[i]
                        acc_in, acc_out = 0.0, 0.0
                        for k in range(length):
                            gxb[k] += gi * gvi[k]
                            acc_in += gvi[k] * xb[k]
                            acc_out += gyb[k] * oi[k]
                            gobi[k] = ci * gyb[k]
                        ggin[i] += acc_in
                        ggout[i] += acc_out
                    for j in range(nl):
                        gvj = gvb[j]
                        for i in range(nl):
                            oi, gobi = ob[i], gob[i]
                            aji = mat[j, i]
                            acc = 0.0
                            for k in range(length):
                                gobi[k] += aji * gvj[k]
                                acc += gvj[k] * oi[k]
                            gmat[j, i] += acc
                    # the absorption filters o = (b0 s + b1 s[t-1]) - a1 o[t-1], per line: the
                    # recursion of o's adjoint backwards in time (gob becomes it), then the
                    # coefficients' and the line inputs' adjoints, which need no recursion
                    for i in range(nl):
                        m = delays[i]
                        gobi = gob[i]
                        co = carry_o[i]
                        for k in range(length - 1, -1, -1):
                            gobi[k] += co
                            co = -a1[rb, t0 + k if tc > 1 else 0, i] * gobi[k]
                        carry_o[i] = co
                        vi = v[i]
                        oi = ob[i]
                        gvi = gv[i]
                        rt = t0 if tc > 1 else 0
                        g = gobi[0]  # the first sample: s[t0-1], o[t0-1] are the block's state
                        pb0[0] = g * vi[mmax + t0 - m]
                        pb1[0] = g * ck_s[kb, i]
                        pa1[0] = g * ck_o[kb, i]
                        gvi[(mmax + t0 - m) & mask] += b0[rb, rt, i] * g
                        if t0 > 0:
                            gvi[(mmax + t0 - 1 - m) & mask] += b1[rb, rt, i] * g
                        else:  # s[-1] is the state
                            gsp0[b, c, i] = b1[rb, rt, i] * g
                        for k in range(1, length):
                            t = t0 + k
                            rt = t if tc > 1 else 0
                            g = gobi[k]
                            pb0[k] = g * vi[mmax + t - m]
                            pb1[k] = g * vi[mmax + t - 1 - m]
                            pa1[k] = g * oi[k - 1]
                            gvi[(mmax + t - m) & mask] += b0[rb, rt, i] * g
                            gvi[(mmax + t - 1 - m) & mask] += b1[rb, rt, i] * g
                        if tc > 1:
                            for k in range(length):
                                gb0[rb, t0 + k, i] += pb0[k]
                                gb1[rb, t0 + k, i] += pb1[k]
                                ga1[rb, t0 + k, i] -= pa1[k]
                        else:
                            acc0, acc1, acc2 = 0.0, 0.0, 0.0
                            for k in range(length):
                                acc0 += pb0[k]
                                acc1 += pb1[k]
                                acc2 += pa1[k]
                            gb0[rb, 0, i] += acc0
                            gb1[rb, 0, i] += acc1
                            ga1[rb, 0, i] -= acc2
                for i in range(nl):
                    gop0[b, c, i] = carry_o[i]
                    for k in range(delays[i]):
                        ghist0[b, c, i, k] = gv[i, (mmax - 1 - k) & mask]
        return gx, gb0, gb1, ga1, gmat, ggin, ggout, ghist0, gsp0, gop0

    return forward, backward


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


# --------------------------------------------------------------------------------------------
# measurement
# --------------------------------------------------------------------------------------------


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
