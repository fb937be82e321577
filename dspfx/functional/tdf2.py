"""Transposed direct form II with JUCE's operation order: :func:`iir`'s ``form="tdf2"`` (the form
pedalboard's filters run, so a float32 render rounds exactly like theirs)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from dspfx.functional._compiled import as_numpy
from dspfx.functional.recursive import _lagged_sum, _static_iir_numpy, iir

__all__ = ["iir_tdf2"]


@lru_cache(maxsize=None)
def _tdf2_kernel():
    """The compiled loop of :class:`StaticTDF2` (numba, cached on disk; imported lazily)."""
    from numba import njit

    @njit(cache=True, nogil=True)
    def kernel(x, b, a, s0):  # pragma: no cover - compiled
        # y[t] = b0 x[t] + s1;  s_j = b_j x[t] - a_j y[t] + s_{j+1}  (s_{p+1} = 0), JUCE's order
        rows, n = x.shape
        p = s0.shape[1]
        y = np.empty_like(x)
        s_out = np.empty_like(s0)
        for r in range(rows):
            if p == 2:
                b0, b1, b2 = b[r, 0], b[r, 1], b[r, 2]
                a1, a2 = a[r, 0], a[r, 1]
                s1, s2 = s0[r, 0], s0[r, 1]
                for t in range(n):
                    x0 = x[r, t]
                    y0 = b0 * x0 + s1
                    s1 = b1 * x0 - a1 * y0 + s2
                    s2 = b2 * x0 - a2 * y0
                    y[r, t] = y0
                s_out[r, 0] = s1
                s_out[r, 1] = s2
                continue
            if p == 1:
                b0, b1, a1 = b[r, 0], b[r, 1], a[r, 0]
                s1 = s0[r, 0]
                for t in range(n):
                    x0 = x[r, t]
                    y0 = b0 * x0 + s1
                    s1 = b1 * x0 - a1 * y0
                    y[r, t] = y0
                s_out[r, 0] = s1
                continue
            st = s0[r].copy()
            for t in range(n):
                x0 = x[r, t]
                y0 = b[r, 0] * x0 + (st[0] if p > 0 else 0.0)
                for j in range(p - 1):
                    st[j] = b[r, j + 1] * x0 - a[r, j] * y0 + st[j + 1]
                if p > 0:
                    st[p - 1] = b[r, p] * x0 - a[r, p - 1] * y0
                y[r, t] = y0
            s_out[r] = st
        return y, s_out

    return kernel


class StaticTDF2(torch.autograd.Function):
    """Static recursive filter in transposed direct form II on CPU (compiled loop, exact backward).

    Same filter as :class:`StaticIIR` (``b`` of ``p + 1`` taps, ``a`` of ``p`` without ``a0``),
    but computed in TDF-II with JUCE's operation order and carrying the ``p`` TDF-II states
    (scipy's ``zi``), so float32 renders round exactly like pedalboard's/JUCE's filters. With
    initial state ``s``, ``y = allpole_a(numerator_b(x) + e)`` where ``e[j] = s[j]`` for
    ``j < p``: the backward is StaticIIR's with zero histories, plus ``dL/ds[j] = g[j]``.
    Returns ``(y, final_state)``; the final state is exact but carries no gradient (see
    :func:`_tdf2_final_state`).
    """

    @staticmethod
    def forward(ctx, x: Tensor, b: Tensor, a: Tensor, s0: Tensor) -> tuple[Tensor, Tensor]:
        arrays = (as_numpy(t, None) for t in (x, b, a, s0))
        y_np, s_np = _tdf2_kernel()(*arrays)
        y, s_out = torch.from_numpy(y_np), torch.from_numpy(s_np)
        ctx.save_for_backward(x, b, a, y)
        ctx.mark_non_differentiable(s_out)
        return y, s_out

    @staticmethod
    def backward(ctx, grad_y: Tensor, _grad_s: Tensor):
        x, b, a, y = ctx.saved_tensors
        rows, n = x.shape
        p = a.shape[1]
        one = torch.ones(rows, 1, dtype=x.dtype)
        no_history = x.new_zeros(rows, 0)
        g = _static_iir_numpy(grad_y.flip(-1), one, a, no_history, x.new_zeros(rows, p)).flip(-1)
        grads = [None] * 4
        if ctx.needs_input_grad[0]:
            grads[0] = _static_iir_numpy(g.flip(-1), b, no_history, x.new_zeros(rows, p), no_history).flip(-1)
        if ctx.needs_input_grad[1]:
            grads[1] = _lagged_sum(g, x, x.new_zeros(rows, p), p + 1, 0)
        if ctx.needs_input_grad[2]:
            grads[2] = -_lagged_sum(g, y, x.new_zeros(rows, p), p, 1)
        if ctx.needs_input_grad[3]:
            grads[3] = F.pad(g[:, :p], (0, max(0, p - n)))
        return tuple(grads)


def _tdf2_final_state(x: Tensor, y: Tensor, b: Tensor, a: Tensor, s0: Tensor) -> Tensor:
    """TDF-II states after a block, as a differentiable expression of its last samples.

    ``s_j = sum_{k=j}^{p} (b_k x[n-1-(k-j)] - a_k y[n-1-(k-j)])`` with samples before the block
    replaced by the initial state's contribution (exact for any block length). Rows ``(R, n)``,
    ``b`` ``(R, p+1)``, ``a`` ``(R, p)`` without ``a0``, ``s0`` ``(R, p)``.
    """
    p = s0.shape[1]
    n = x.shape[1]
    a_full = F.pad(a, (1, 0))  # a_0 = 0 here: the a0 term is the output itself
    out = []
    for j in range(1, p + 1):
        acc = x.new_zeros(x.shape[0])
        for k in range(j, p + 1):
            t = n - 1 - (k - j)
            if t < 0:
                break
            acc = acc + b[:, k] * x[:, t] - a_full[:, k] * y[:, t]
        else:
            out.append(acc)
            continue
        # the block is shorter than the lag: the rest of the sum is the state carried in
        out.append(acc + s0[:, j - 1 + n])
    return torch.stack(out, dim=-1) if out else s0


def iir_tdf2(x: Tensor, b4: Tensor, a4: Tensor, state: Tensor | None, *, compiled: bool = True) -> tuple[Tensor, Tensor]:
    """``iir(..., form="tdf2")``: see :func:`iir`."""
    batch, channels, n = x.shape
    p = max(b4.shape[-1], a4.shape[-1]) - 1
    b4 = F.pad(b4, (0, p + 1 - b4.shape[-1]))
    a4 = F.pad(a4, (0, p + 1 - a4.shape[-1]))
    if state is None:
        s0 = x.new_zeros(batch, channels, p)
    else:
        if not isinstance(state, Tensor) or state.shape != (batch, channels, p):
            got = tuple(state.shape) if isinstance(state, Tensor) else type(state).__name__
            raise ValueError(
                f"form='tdf2' takes its state as one tensor of TDF-II states shaped (batch, channels, "
                f"max(nb, na) - 1) = {(batch, channels, p)}, got {got}"
            )
        s0 = state.to(x.dtype)
    if n == 0:
        return x, s0
    a0_inv = 1.0 / a4[..., :1]
    bn, an = b4 * a0_inv, a4[..., 1:] * a0_inv
    static = bn.shape[2] == 1 and an.shape[2] == 1
    rows = batch * channels
    if static and compiled:
        xr = x.reshape(rows, n)
        br = bn[:, :, 0].expand(batch, channels, p + 1).reshape(rows, p + 1)
        ar = an[:, :, 0].expand(batch, channels, p).reshape(rows, p)
        sr = s0.reshape(rows, p)
        if torch.is_grad_enabled() and any(t.requires_grad for t in (xr, br, ar, sr)):
            y, s_exact = StaticTDF2.apply(xr, br, ar, sr)
        else:  # nothing to differentiate: the same loop, without the autograd Function around it,
            # and the loop's own final state (no expression to carry a gradient)
            arrays = (as_numpy(t, None) for t in (xr, br, ar, sr))
            y, s_exact = (torch.from_numpy(a) for a in _tdf2_kernel()(*arrays))
            return y.reshape(batch, channels, n), s_exact.reshape(batch, channels, p)
        s_graph = _tdf2_final_state(xr, y, br, ar, sr)
        s_out = s_graph + (s_exact - s_graph).detach()  # exact value, the expression's gradient
        return y.reshape(batch, channels, n), s_out.reshape(batch, channels, p)
    # time-varying coefficients or another device: by linearity, the zero-state response plus
    # the all-pole response to the state injected at the first p samples
    backend = "auto" if compiled else "torch"
    y, _ = iir(x, bn, torch.cat([torch.ones_like(an[..., :1]), an], dim=-1), backend=backend)
    if p:
        e = F.pad(s0, (0, max(0, n - p)))[..., :n]
        one = torch.ones(1, dtype=x.dtype, device=x.device)
        y_e, _ = iir(e, one, torch.cat([torch.ones_like(an[..., :1]), an], dim=-1), backend=backend)
        y = y + y_e
    b_last = bn[:, :, -1].expand(batch, channels, p + 1).reshape(rows, p + 1)
    a_last = an[:, :, -1].expand(batch, channels, p).reshape(rows, p)
    s_out = _tdf2_final_state(x.reshape(rows, n), y.reshape(rows, n), b_last, a_last, s0.reshape(rows, p))
    return y, s_out.reshape(batch, channels, p)


