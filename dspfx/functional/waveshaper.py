"""Neural waveshaping (NEWT-style): a bank of learnable shaping functions with affine controls.

- :func:`chebyshev`: Chebyshev polynomials ``T_1 .. T_order`` by the recurrence;
- :func:`chebyshev_band_mask`: per-sample, per-order mask that keeps ``k * f0`` below Nyquist;
- :func:`chebyshev_shaper`: ``sum_k c[s, k] T_k(u_s)`` per shaper ``s`` (optionally masked);
- :func:`mlp_shaper`: one small sine-activated MLP per shaper (NEWT's shaping functions);
- :func:`shaping_bank`: input affine -> shaping functions -> output affine -> (weighted) sum.

Shapes: the shaper axis is the second-to-last one: an exciter ``(..., n)`` becomes
``u = input_gain * exciter + input_offset`` shaped ``(..., S, n)`` for ``S`` shapers.

Band limit: ``T_k(a cos(theta) + b)`` is a polynomial of degree ``k`` in ``cos(theta)``, so it
holds harmonics 0..k of the exciter only, whatever the gain ``a`` and offset ``b``. Zeroing the
coefficient of every order with ``k * f0 >= sample_rate / 2`` (per sample) therefore leaves no
partial at or above Nyquist: nothing folds back. No clamp is applied to ``u`` (a clamp would add
partials of every order); ``|a| + |b| <= 1`` keeps ``|T_k(u)| <= 1``, beyond it ``T_k`` grows
like ``(2|u|)^k``. MLP shapers are not band-limited (their output has partials of every order).

Reference: Hayes, Saitis, Fazekas, "Neural Waveshaping Synthesis", ISMIR 2021 (NEWT: FiLM
input/output affine per shaper, per-shaper sine MLPs, 1x1 mixer); Le Brun, "Digital waveshaping
synthesis", JAES 1979 (Chebyshev shaping).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from dspfx.functional._compiled import as_numpy, to_grads

__all__ = [
    "chebyshev",
    "chebyshev_band_mask",
    "chebyshev_band_orders",
    "chebyshev_shaper",
    "mlp_shaper",
    "shaping_bank",
]


def _check_order(order: object) -> int:
    if isinstance(order, bool) or not isinstance(order, int) or order < 1:
        raise ValueError(f"order must be an int >= 1, got {order!r}")
    return order


def chebyshev(x: Tensor, order: int) -> Tensor:
    """Chebyshev polynomials of the first kind ``T_1 .. T_order`` at ``x``.

    Recurrence ``T_0 = 1``, ``T_1 = x``, ``T_{k+1} = 2 x T_k - T_{k-1}``, so
    ``T_k(cos theta) = cos(k theta)``.

    Args:
        x: points, any shape (not clamped: the polynomials are defined everywhere).
        order: highest degree, an int >= 1.

    Returns:
        ``(*x.shape, order)``; ``[..., k - 1]`` holds ``T_k(x)``. Differentiable w.r.t. ``x``.
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    order = _check_order(order)
    prev, cur = torch.ones_like(x), x
    terms = [cur]
    for _ in range(1, order):
        prev, cur = cur, 2.0 * x * cur - prev
        terms.append(cur)
    return torch.stack(terms, dim=-1)


def chebyshev_band_mask(f0_hz: Tensor, order: int, sample_rate: float) -> Tensor:
    """Gain mask per order and sample: 1 where ``k * f0 < sample_rate / 2``, else 0.

    Args:
        f0_hz: ``(..., n)`` exciter frequency in Hz.
        order: number of orders ``k = 1 .. order``.
        sample_rate: Hz.

    Returns:
        ``(..., n, order)`` float mask (dtype of ``f0_hz``), no gradient (a step function).
    """
    order = _check_order(order)
    k = torch.arange(1, order + 1, dtype=f0_hz.dtype, device=f0_hz.device)
    return (f0_hz.detach().unsqueeze(-1) * k < 0.5 * float(sample_rate)).to(f0_hz.dtype)


def chebyshev_band_orders(f0_hz: Tensor, order: int, sample_rate: float) -> Tensor:
    """How many orders :func:`chebyshev_band_mask` keeps per sample: the count of ``k = 1..order``
    with ``k * f0 < sample_rate / 2`` (the mask is that prefix of ones). ``(..., n)`` int64, no gradient."""
    order = _check_order(order)
    with torch.no_grad():
        f0 = f0_hz.to(torch.float64)
        nyquist = 0.5 * float(sample_rate)
        k = torch.floor(nyquist / f0.clamp_min(1e-300))
        k = k - (k * f0 >= nyquist).to(k.dtype)
        return k.clamp(0, order).to(torch.int64)


def chebyshev_shaper(
    u: Tensor, coefficients: Tensor, mask: Tensor | None = None, orders: Tensor | None = None
) -> Tensor:
    """Bank of Chebyshev shaping functions ``f_s(u) = sum_k c[s, k - 1] m[k - 1] T_k(u_s)``.

    The sum is accumulated along the recurrence (the ``(..., S, n, order)`` stack is never built).
    With ``orders`` (a prefix mask given by its length) on the CPU, the recurrence runs in a
    compiled loop (numba, float64, SIMD over samples) with an exact hand-written adjoint
    (``T_k' = k U_{k-1}``, Chebyshev polynomials of the second kind, by their recurrence).

    Args:
        u: ``(..., S, n)`` shaper inputs.
        coefficients: ``(S, order)`` (or ``(order,)``, shared) weights of ``T_1 .. T_order``.
        mask: optional ``(..., n, order)`` gains per order (see :func:`chebyshev_band_mask`),
            broadcast over the shapers.
        orders: optional ``(..., n)`` integer count of the orders kept per sample (orders
            ``1 .. orders[t]``, see :func:`chebyshev_band_orders`), instead of ``mask``.

    Returns:
        ``(..., S, n)``. Differentiable w.r.t. ``u`` and ``coefficients``.

    Devices: CPU (a compiled numba loop) and any torch device (a torch path, same results up to
    rounding).
    Gradients: exact w.r.t. ``u`` and ``coefficients``.
    """
    if mask is not None and orders is not None:
        raise ValueError("give mask= or orders=, not both")
    if not isinstance(coefficients, Tensor) or coefficients.ndim not in (1, 2) or coefficients.shape[-1] < 1:
        got = tuple(coefficients.shape) if isinstance(coefficients, Tensor) else type(coefficients).__name__
        raise ValueError(f"coefficients must be shaped (n_shapers, order) or (order,), got {got}")
    if coefficients.ndim == 2 and coefficients.shape[0] not in (1, u.shape[-2]):
        raise ValueError(
            f"coefficients have {coefficients.shape[0]} rows but u has {u.shape[-2]} shapers (shape {tuple(u.shape)})"
        )
    order = coefficients.shape[-1]
    if orders is not None:
        if u.device.type == "cpu" and u.ndim >= 2:
            n = u.shape[-1]
            lead = torch.broadcast_shapes(u.shape[:-2], orders.shape[:-1])
            S = u.shape[-2]
            flat_u = u.expand(*lead, S, n).reshape(-1, S, n)
            flat_k = orders.expand(*lead, n).reshape(-1, n)
            c2 = coefficients.reshape(-1, order)
            return _ChebyshevBank.apply(flat_u, c2, flat_k).to(u.dtype).reshape(*lead, S, n)
        k = torch.arange(1, order + 1, device=orders.device)
        mask = (k <= orders.unsqueeze(-1)).to(u.dtype)
    c = coefficients.to(u.dtype)
    c = c.unsqueeze(-1) if c.ndim == 2 else c.reshape(1, order, 1)  # (S|1, order, 1)
    if mask is not None:
        mask = mask.unsqueeze(-3)  # (..., 1, n, order)
    prev, cur = torch.ones_like(u), u
    out = None
    for k in range(order):
        if k:
            prev, cur = cur, 2.0 * u * cur - prev
        term = c[:, k] * cur
        if mask is not None:
            term = term * mask[..., k]
        out = term if out is None else out + term
    return out


@functools.lru_cache(maxsize=None)
def _chebyshev_kernel():
    """The compiled forward / adjoint loop of :class:`_ChebyshevBank` (numba, cached on disk)."""
    from numba import njit

    @njit(cache=True, nogil=True, fastmath={"contract", "reassoc"})
    def run(u, c, kept, g, backward):  # pragma: no cover - compiled
        # forward: out[r, s, t] = sum_{k <= kept[r, t]} c[s, k - 1] T_k(u[r, s, t]);
        # backward (g = dL/dout): dL/du = g sum_k c m k U_{k-1}(u), dL/dc[s, k - 1] = sum g m T_k(u)
        R, S, n = u.shape
        s_c, order = c.shape
        r_k = kept.shape[0]
        out = np.zeros((R, S, n))
        g_c = np.zeros((s_c, order))
        chunk = 1024
        t_prev = np.empty(chunk)
        t_cur = np.empty(chunk)
        u_prev = np.empty(chunk)
        u_cur = np.empty(chunk)
        kf = np.empty(chunk)
        for r in range(R):
            rk = r if r_k > 1 else 0
            for s in range(S):
                sc = s if s_c > 1 else 0
                for t0 in range(0, n, chunk):
                    m = min(chunk, n - t0)
                    x = u[r, s, t0:t0 + m]
                    acc = out[r, s, t0:t0 + m]
                    gg = g[r, s, t0:t0 + m]
                    top = 0
                    for j in range(m):
                        kf[j] = kept[rk, t0 + j]
                        top = max(top, kept[rk, t0 + j])
                        t_prev[j] = 1.0  # T_0
                        t_cur[j] = x[j]  # T_1
                        u_prev[j] = 0.0  # U_{-1}
                        u_cur[j] = 1.0  # U_0
                    for k in range(1, top + 1):
                        kk = float(k)
                        ck = c[sc, k - 1]
                        if backward:
                            red = 0.0
                            for j in range(m):
                                gm = gg[j] * (1.0 if kk <= kf[j] else 0.0)
                                red += gm * t_cur[j]
                                acc[j] += gm * ck * kk * u_cur[j]
                                un = 2.0 * x[j] * u_cur[j] - u_prev[j]
                                u_prev[j] = u_cur[j]
                                u_cur[j] = un
                                tn = 2.0 * x[j] * t_cur[j] - t_prev[j]
                                t_prev[j] = t_cur[j]
                                t_cur[j] = tn
                            g_c[sc, k - 1] += red
                        else:
                            for j in range(m):
                                acc[j] += (ck if kk <= kf[j] else 0.0) * t_cur[j]
                                tn = 2.0 * x[j] * t_cur[j] - t_prev[j]
                                t_prev[j] = t_cur[j]
                                t_cur[j] = tn
        return out, g_c

    return run


class _ChebyshevBank(torch.autograd.Function):
    """``sum_{k <= orders} c[s, k - 1] T_k(u)`` for u ``(R, S, n)``, coefficients ``(S|1, order)`` and
    orders ``(R|1, n)``: forward and exact adjoint in numba (float64, CPU). Returns float64."""

    @staticmethod
    def forward(ctx, u: Tensor, coefficients: Tensor, orders: Tensor) -> Tensor:
        arrays = (as_numpy(u), as_numpy(coefficients), np.ascontiguousarray(orders.numpy()))
        ctx.arrays = arrays
        ctx.meta = [(t.dtype, t.device) for t in (u, coefficients)]
        out, _ = _chebyshev_kernel()(*arrays, arrays[0], False)
        return torch.from_numpy(out)

    @staticmethod
    def backward(ctx, grad: Tensor):
        g_u, g_c = _chebyshev_kernel()(*ctx.arrays, as_numpy(grad), True)
        return (*to_grads((g_u, g_c), ctx.meta, ctx.needs_input_grad[:2]), None)


def mlp_shaper(u: Tensor, weights: Sequence[Tensor], biases: Sequence[Tensor]) -> Tensor:
    """One small MLP per shaper, sine activations after every layer (NEWT's shaping functions).

    Layer ``l`` maps ``h`` (width ``w_in``) to ``sin(W_l h + b_l)`` (width ``w_out``), separately for
    each shaper (a grouped 1x1 convolution in NEWT).

    Args:
        u: ``(..., S, n)`` shaper inputs.
        weights: per layer ``(S, w_out, w_in)``; the first has ``w_in = 1``, the last ``w_out = 1``.
        biases: per layer ``(S, w_out)``.

    Returns:
        ``(..., S, n)``. Differentiable w.r.t. ``u`` and every weight and bias.
    """
    if len(weights) != len(biases) or not weights:
        raise ValueError(f"mlp_shaper needs as many weights as biases (>= 1), got {len(weights)} and {len(biases)}")
    if weights[0].shape[-1] != 1 or weights[-1].shape[-2] != 1:
        raise ValueError(
            f"the first layer must take 1 input and the last give 1 output, got shapes "
            f"{tuple(weights[0].shape)} .. {tuple(weights[-1].shape)}"
        )
    h = u.unsqueeze(-2)  # (..., S, 1, n)
    for w, b in zip(weights, biases):
        h = torch.sin(torch.einsum("soi,...sin->...son", w.to(u.dtype), h) + b.to(u.dtype).unsqueeze(-1))
    return h.squeeze(-2)


def shaping_bank(
    exciter: Tensor,
    shaper: Callable[[Tensor], Tensor],
    input_gain: Tensor,
    input_offset: Tensor,
    output_gain: Tensor,
    output_offset: Tensor,
    mix: Tensor | None = None,
) -> Tensor:
    """NEWT's waveshaping block: ``y = sum_s w_s (g_s f_s(a_s x + b_s) + d_s)``.

    Args:
        exciter: ``(..., n)`` input signal ``x`` (a sinusoid, or any audio).
        shaper: maps ``(..., S, n)`` to ``(..., S, n)``, e.g. ``lambda u: chebyshev_shaper(u, c)``.
        input_gain, input_offset, output_gain, output_offset: ``a, b, g, d`` broadcastable to
            ``(..., S, n)`` (per shaper, per sample).
        mix: optional ``(S,)`` weights ``w`` (default: plain sum).

    Returns:
        ``(..., n)``: the mixed output. Differentiable w.r.t. every argument.
    """
    u = input_gain * exciter.unsqueeze(-2) + input_offset
    z = output_gain * shaper(u) + output_offset
    if mix is not None:
        z = z * mix.to(z.dtype).unsqueeze(-1)
    return z.sum(-2)
