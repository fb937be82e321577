"""The feedback delay network's compiled loops (:func:`dspfx.functional.fdn.fdn`): the forward
recursion and its adjoint, run backwards in time, written with numba and compiled on first use
(cached on disk). The recursion they run is in :mod:`dspfx.functional.fdn`'s docstring."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

__all__ = ["kernels"]


@lru_cache(maxsize=None)
def kernels():
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
