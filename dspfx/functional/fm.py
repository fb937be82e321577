"""Phase-modulation (FM) synthesis with N operators and a feed-forward routing.

- :func:`fm_algorithm`: routing matrix and carriers of the built-in algorithms;
- :func:`check_routing`: validate a free routing matrix and carrier list;
- :func:`clamp_indices`: bound the modulation indices so the spectrum stays below Nyquist
  (Carson's rule, per sample);
- :func:`fm_render`: render the operators (no python loop over samples; one over operators);
- :func:`operator_feedback`: DX7 operator self-feedback, a one-sample nonlinear recursion run by
  a compiled loop (numba) with an exact hand-written backward;
- :func:`feedback_harmonics` / :func:`max_feedback`: the band of a fed-back operator and the
  largest feedback that keeps it below a limit.

Convention: ``routing[i][j] = 1`` means operator ``j`` modulates operator ``i``; only ``j > i`` is
allowed (strictly upper triangular, feed-forward), so operators are evaluated from the last one
down to operator 0, as on the DX7 (whose operator 6 sits at the top of its stacks). Operator
``j`` outputs ``s_j = sin(2 pi phi_j + sum_k routing[j][k] * I_k * s_k)``; as a modulator it
contributes ``I_j * s_j`` radians (its modulation index), as a carrier ``level_j * s_j`` to the
output. An operator with feedback ``beta`` adds ``beta * (s_j[t-1] + s_j[t-2]) / 2`` to its own
phase argument (the DX7's two-sample average).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from dspfx.functional._compiled import as_numpy, to_grads, to_torch

__all__ = [
    "FM_ALGORITHMS",
    "fm_algorithm",
    "check_routing",
    "clamp_indices",
    "clamp_indices_and_feedback",
    "returning_clamp",
    "fm_render",
    "fm_render_feedback",
    "operator_feedback",
    "feedback_harmonics",
    "max_feedback",
    "FEEDBACK_FLOOR_DB",
]

#: Level (dB re the fundamental) below which a fed-back operator's harmonics count as outside its
#: band (:func:`feedback_harmonics`).
FEEDBACK_FLOOR_DB = -60.0

#: Names / DX7 numbers of the built-in algorithms.
FM_ALGORITHMS = ("stack", "parallel", "pairs", 1, 5, 32)


def fm_algorithm(algorithm: Any, n_operators: int) -> tuple[list[list[int]], list[int]]:
    """Routing matrix and carriers (0-based) of a built-in algorithm.

    - ``"stack"``: every operator modulates the one below it; operator 0 is the only carrier.
    - ``"parallel"``: no modulation; every operator is a carrier (DX7 algorithm 32 without
      feedback).
    - ``"pairs"``: operator 2k+1 modulates operator 2k; carriers 0, 2, 4, ... (an unpaired last
      operator is a carrier too). DX7 algorithm 5 without feedback.
    - ``1``, ``5``, ``32``: DX7 algorithms 1 (2->1, 6->5->4->3; carriers 1 and 3), 5 and 32
      (operators numbered from 1 as on the DX7), for ``n_operators == 6`` only; feedback omitted.

    Raises:
        ValueError: unknown algorithm, or a DX7 number with ``n_operators != 6``.
    """
    n = n_operators
    r = [[0] * n for _ in range(n)]
    if algorithm in (1, 5, 32) and not isinstance(algorithm, bool):
        if n != 6:
            raise ValueError(f"DX7 algorithm {algorithm} needs n_operators=6, got {n}; use 'stack', 'parallel' or 'pairs'")
        if algorithm == 1:
            r[0][1] = r[2][3] = r[3][4] = r[4][5] = 1
            return r, [0, 2]
        algorithm = "pairs" if algorithm == 5 else "parallel"
    if algorithm == "stack":
        for i in range(n - 1):
            r[i][i + 1] = 1
        return r, [0]
    if algorithm == "parallel":
        return r, list(range(n))
    if algorithm == "pairs":
        for i in range(0, n - 1, 2):
            r[i][i + 1] = 1
        return r, list(range(0, n, 2))
    raise ValueError(f"unknown FM algorithm {algorithm!r}; expected one of {FM_ALGORITHMS} or a routing matrix")


def check_routing(routing: Any, carriers: Any, n_operators: int) -> tuple[list[list[int]], list[int]]:
    """Validate a free routing: an ``n x n`` 0/1 matrix, strictly upper triangular, and a
    non-empty list of distinct carrier indices in ``0 .. n-1``. Returns plain python lists.

    Raises:
        ValueError / TypeError: naming what was given and what was expected.
    """
    n = n_operators
    try:
        rows = [[int(v) if float(v) == int(v) else float(v) for v in row] for row in routing]
    except (TypeError, ValueError):
        raise TypeError(f"routing must be an {n} x {n} matrix of 0/1, got {routing!r}") from None
    if len(rows) != n or any(len(row) != n for row in rows):
        raise ValueError(f"routing must be {n} x {n} (n_operators={n}), got {[len(r) for r in rows]} entries per row")
    for i, row in enumerate(rows):
        for j, v in enumerate(row):
            if v not in (0, 1):
                raise ValueError(f"routing[{i}][{j}] = {v!r}: entries must be 0 or 1")
            if v and j <= i:
                raise ValueError(
                    f"routing[{i}][{j}] = 1 but only j > i is allowed (operator j modulates operator i, "
                    "strictly upper triangular, feed-forward); feedback loops are not supported"
                )
    if carriers is None:
        raise ValueError("a routing matrix needs carriers= (the operators heard at the output)")
    try:
        cs = [int(c) for c in carriers]
    except (TypeError, ValueError):
        raise TypeError(f"carriers must be a list of operator indices, got {carriers!r}") from None
    if not cs or len(set(cs)) != len(cs) or any(not 0 <= c < n for c in cs):
        raise ValueError(f"carriers must be distinct operator indices in 0 .. {n - 1}, got {carriers!r}")
    return rows, cs


class _ReturningClamp(torch.autograd.Function):
    """Forward: ``x`` clamped to ``[low, high]``. Backward: the gradient reaches ``x`` inside the
    range, and beyond a bound when it points back into the range (a descent step would move
    ``x`` towards the bound); the bound itself gets the gradient where it is the output."""

    @staticmethod
    def forward(ctx, x: Tensor, low: Tensor | None, high: Tensor | None) -> Tensor:
        y = x
        if low is not None:
            y = torch.maximum(y, low)
        if high is not None:
            y = torch.minimum(y, high)
        ctx.save_for_backward(x, low, high)
        ctx.shapes = (x.shape, None if low is None else low.shape, None if high is None else high.shape)
        return y

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, low, high = ctx.saved_tensors
        shape_x, shape_low, shape_high = ctx.shapes
        g_x = grad
        g_low = g_high = None
        if high is not None:
            above = x > high
            if low is not None:  # where the bounds cross, the output is the high bound
                above = above | (low > high)
            g_x = torch.where(above & (grad < 0), 0.0, g_x)
            g_high = torch.where(above, grad, 0.0)
        if low is not None:
            below = x < low
            if high is not None:
                below = below & ~(low > high)
            g_x = torch.where(below & (grad > 0), 0.0, g_x)
            g_low = torch.where(below, grad, 0.0)
        return _sum_to(g_x, shape_x), _sum_to(g_low, shape_low), _sum_to(g_high, shape_high)


def _sum_to(g: Tensor | None, shape: torch.Size | None) -> Tensor | None:
    if g is None or shape is None:
        return None
    while g.ndim > len(shape):
        g = g.sum(0)
    dims = [i for i, (a, b) in enumerate(zip(g.shape, shape)) if b == 1 and a != 1]
    return g.sum(dims, keepdim=True) if dims else g


def returning_clamp(x: Tensor, low: Tensor | float | None = None, high: Tensor | float | None = None) -> Tensor:
    """Clamp ``x`` to ``[low, high]`` with a gradient that can bring it back into range.

    The forward equals ``torch.clamp`` (``high`` wins where the bounds cross). Inside the range
    the gradient is 1, as usual; beyond a bound, where a plain clamp passes nothing (so a fit
    that overshoots stays stuck there), the gradient still reaches ``x`` when it points back
    into the range: beyond ``high`` a positive gradient (gradient descent lowers ``x``), below
    ``low`` a negative one; a gradient that would push ``x`` further out is blocked. A tensor
    bound gets the gradient where it is the output, as with ``torch.minimum``/``maximum``.
    It is a straight-through estimator beyond the bounds (not the derivative there).

    Args:
        x: any tensor.
        low, high: bounds broadcastable to ``x`` (tensors or numbers), or ``None``.

    Returns:
        the clamped tensor, shaped like ``broadcast(x, low, high)``.
    """
    if isinstance(low, (int, float)):
        low = torch.tensor(float(low), dtype=x.dtype, device=x.device)
    if isinstance(high, (int, float)):
        high = torch.tensor(float(high), dtype=x.dtype, device=x.device)
    return _ReturningClamp.apply(x, low, high)


def clamp_indices(
    freqs: Tensor, indices: Tensor, routing: list[list[int]], sample_rate: float, margin: float
) -> Tensor:
    """Bound modulation indices per sample so every operator's band stays below Nyquist.

    Carson's rule: a carrier ``f_c`` phase-modulated with index ``I`` by a signal whose band
    reaches ``E`` has its band up to about ``f_c + (I + 1) E`` (about 98 % of the power).
    With ``limit = (1 - margin) * sample_rate / 2``, operators are visited from the top of the
    routing down; operator ``k``'s band edge is ``E_k = f_k + sum_m routing[k][m] (I_m + 1) E_m``
    (terms with ``I_m = 0`` count 0: an unused modulator adds nothing),
    and its index is clamped to ``0 .. min_j ((limit - f_j) / (n_j E_k) - 1)`` over the
    operators ``j`` it modulates (``n_j`` = number of modulators of ``j``), so that
    ``E_j <= limit`` for every operator. Indices of operators that modulate nothing are returned
    as given (clamped to >= 0). Differentiable where not clamped; beyond a bound the gradient
    still reaches a requested index when it points back into range (:func:`returning_clamp`),
    so a fit that overshoots the bound recovers.
    With operator feedback see :func:`clamp_indices_and_feedback`.

    Args:
        freqs: ``(B, N, n)`` operator frequencies in Hz.
        indices: ``(B|1, N, n)`` requested indices (radians).
        routing, sample_rate, margin: see the module doc; ``0 <= margin < 1``.

    Returns:
        ``(B, N, n)`` clamped indices.
    """
    return clamp_indices_and_feedback(freqs, indices, routing, sample_rate, margin)[0]


def clamp_indices_and_feedback(
    freqs: Tensor,
    indices: Tensor,
    routing: list[list[int]],
    sample_rate: float,
    margin: float,
    feedback: Tensor | None = None,
    feedback_operators: list[int] | tuple[int, ...] = (),
) -> tuple[Tensor, Tensor | None]:
    """:func:`clamp_indices` for patches with operator feedback; also bounds the feedback.

    A fed-back operator whose phase argument (own phase plus modulation) has band edge ``e``
    is given the band ``K(beta) e`` (:func:`feedback_harmonics`: beyond harmonic ``K`` the
    self-modulation spectrum lies below :data:`FEEDBACK_FLOOR_DB`); when operator ``k`` is
    visited, its feedback is clamped first to ``max_feedback(h)`` with ``h = limit / e_k``, or,
    for a modulator with a requested index ``I_k > 0``, the smaller
    ``(limit - f_j) / (n_j (I_k + 1) e_k)`` over the operators ``j`` it modulates (so the
    requested index still fits), then its index as in :func:`clamp_indices` (with the widened
    edge ``K(beta) e_k``). With ``beta = 0``, ``K = 1`` and the result equals :func:`clamp_indices` exactly.

    Args:
        freqs, indices, routing, sample_rate, margin: as :func:`clamp_indices`.
        feedback: ``(B|1, N, n)`` feedback amounts ``beta >= 0`` (entries of operators not in
            ``feedback_operators`` are unused), or ``None``.
        feedback_operators: indices of the operators with feedback.

    Returns:
        ``(indices, feedback)``: ``(B, N, n)`` clamped indices and, when ``feedback`` is given,
        ``(B, N, n)`` clamped feedback (unused entries 0), else ``None``.
    """
    n_ops = len(routing)
    limit = (1 - margin) * sample_rate / 2
    n_mod = [sum(row) for row in routing]
    # per-operator views by unbind (one backward for all operators, not one full-size zero fill each)
    idx = returning_clamp(indices, low=0.0).expand_as(freqs).unbind(1)
    fb_in = returning_clamp(feedback, low=0.0).expand_as(freqs).unbind(1) if feedback is not None else None
    freqs_op = freqs.unbind(1)
    edge: list[Tensor | None] = [None] * n_ops
    out: list[Tensor | None] = [None] * n_ops
    fb_out: list[Tensor] = [torch.zeros_like(freqs_op[0])] * n_ops
    for k in range(n_ops - 1, -1, -1):
        e = freqs_op[k]
        for m in range(k + 1, n_ops):
            if routing[k][m]:
                e = e + torch.where(out[m] > 0, (out[m] + 1) * edge[m], 0.0)
        if fb_in is not None and k in feedback_operators:
            h = limit / e
            for j in range(k):  # a fed-back modulator leaves room for its requested index
                if routing[j][k]:
                    share = (limit - freqs_op[j]) / (n_mod[j] * (idx[k] + 1) * e)
                    h = torch.minimum(h, torch.where(idx[k] > 0, share, h))
            beta = returning_clamp(fb_in[k], high=max_feedback(h))
            fb_out[k] = beta
            e = feedback_harmonics(beta) * e
        edge[k] = e
        bound = None
        for j in range(k):
            if routing[j][k]:
                b = ((limit - freqs_op[j]) / (n_mod[j] * e) - 1).clamp(min=0.0)
                bound = b if bound is None else torch.minimum(bound, b)
        out[k] = idx[k] if bound is None else returning_clamp(idx[k], high=bound)
    return torch.stack(out, dim=1), (torch.stack(fb_out, dim=1) if fb_in is not None else None)


@functools.lru_cache(maxsize=None)
def _feedback_table() -> tuple[np.ndarray, np.ndarray]:
    """``(beta, K)``: the band in harmonics of a fed-back operator for ``beta`` in [0, 1].

    Continuous-time limit of the DX7 recursion: ``y = sin(phi + beta y)`` is Kepler's equation,
    whose solution has the Fourier series ``y = sum_n a_n sin(n phi)`` with
    ``a_n = 2 J_n(n beta) / (n beta)``; for ``beta <= 1`` the ``a_n`` fall monotonically with
    ``n`` (``J_nu(nu beta)`` with argument below the order). ``K(beta)`` is the real order ``nu``
    where ``a_nu / a_1`` falls to :data:`FEEDBACK_FLOOR_DB` (order interpolated in log-log),
    ``K(0) = 1``. Computed once with scipy (about 0.2 s), then cached.
    """
    import scipy.special as sp

    betas = np.linspace(0.0, 1.0, 201)
    nu = np.geomspace(1.0, 3e4, 600)
    floor = math.log(10 ** (FEEDBACK_FLOOR_DB / 20))
    K = [1.0]
    for b in betas[1:]:
        a1 = 2 * sp.jv(1, b) / b
        ratio = np.abs(2 * sp.jv(nu, nu * b) / (nu * b)) / a1
        lr = np.log(np.maximum(ratio, 1e-300))
        i = int(np.argmax(lr < floor))
        x0, x1, y0, y1 = math.log(nu[i - 1]), math.log(nu[i]), lr[i - 1], lr[i]
        K.append(math.exp(x0 + (floor - y0) * (x1 - x0) / (y1 - y0)))
    K = np.maximum.accumulate(np.asarray(K))
    return betas, K


@functools.lru_cache(maxsize=32)
def _table_tensors(inverse: bool, dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor]:
    betas, K = _feedback_table()
    xp, fp = (K, betas) if inverse else (betas, K)
    return torch.as_tensor(xp, dtype=dtype, device=device), torch.as_tensor(fp, dtype=dtype, device=device)


def _interp(x: Tensor, inverse: bool) -> Tensor:
    """Piecewise-linear interpolation of the feedback table (``beta -> K``, or ``K -> beta`` when
    ``inverse``) at ``x``, clamped to its ends; differentiable w.r.t. ``x`` inside the table."""
    xp_t, fp_t = _table_tensors(inverse, x.dtype, x.device)
    n = xp_t.shape[0]
    xc = torch.minimum(torch.maximum(x, xp_t[0]), xp_t[-1])
    i = torch.searchsorted(xp_t, xc.detach().contiguous(), right=True).clamp(1, n - 1)
    x0, x1, y0, y1 = xp_t[i - 1], xp_t[i], fp_t[i - 1], fp_t[i]
    return y0 + (y1 - y0) * ((xc - x0) / (x1 - x0))


def feedback_harmonics(beta: Tensor) -> Tensor:
    """Band of an operator with feedback ``beta``, in harmonics of its frequency: ``K(beta)``.

    Beyond harmonic ``K`` every partial of ``y = sin(phi + beta y)`` lies below
    :data:`FEEDBACK_FLOOR_DB` re the fundamental (see ``_feedback_table``); ``K(0) = 1``
    exactly, ``K(0.5) ~ 9``, ``K(0.9) ~ 47``, ``K(1) ~ 180``. ``beta`` is clamped to [0, 1].
    Piecewise linear in ``beta`` (differentiable).
    """
    return _interp(beta, inverse=False)


def max_feedback(harmonics: Tensor) -> Tensor:
    """Largest feedback ``beta`` in [0, 1] whose band :func:`feedback_harmonics` fits in
    ``harmonics`` (the inverse of ``K``): 0 for ``harmonics <= 1``, 1 from ``K(1) ~ 180`` on."""
    return _interp(harmonics, inverse=True)


@functools.lru_cache(maxsize=None)
def _feedback_kernels():
    """The compiled forward and adjoint loops of :class:`_FeedbackPhase` (numba, cached on disk)."""
    from numba import njit

    @njit(cache=True, nogil=True)
    def forward(a, beta, hist):  # pragma: no cover - compiled
        # fb[t] = beta[t] (y[t-1] + y[t-2]) / 2, y[t] = sin(a[t] + fb[t]); y[-1-k] = hist[k]
        rows, n = a.shape
        fb = np.empty_like(a)
        y = np.empty_like(a)
        for r in range(rows):
            y1 = hist[r, 0]
            y2 = hist[r, 1]
            for t in range(n):
                f = beta[r, t] * (0.5 * (y1 + y2))
                fb[r, t] = f
                y0 = np.sin(a[r, t] + f)
                y[r, t] = y0
                y2 = y1
                y1 = y0
        return fb, y

    @njit(cache=True, nogil=True)
    def backward(a, beta, hist, fb, y, g):  # pragma: no cover - compiled
        # adjoint, backwards in time: G[t] = dL/dfb[t] (total), lam[t] = dL/dy[t] (total)
        # lam[t] = (G[t+1] beta[t+1] + G[t+2] beta[t+2]) / 2; dL/da[t] = lam[t] cos(a[t] + fb[t])
        # G[t] = g[t] + dL/da[t]; dL/dbeta[t] = G[t] (y[t-1] + y[t-2]) / 2
        rows, n = a.shape
        ga = np.empty_like(a)
        gb = np.empty_like(a)
        gh = np.zeros((rows, 2))
        for r in range(rows):
            p1 = 0.0  # G[t+1] beta[t+1]
            p2 = 0.0  # G[t+2] beta[t+2]
            for t in range(n - 1, -1, -1):
                d = 0.5 * (p1 + p2) * np.cos(a[r, t] + fb[r, t])
                ga[r, t] = d
                G = g[r, t] + d
                y1 = y[r, t - 1] if t >= 1 else hist[r, 0]
                y2 = y[r, t - 2] if t >= 2 else (hist[r, 0] if t == 1 else hist[r, 1])
                gb[r, t] = G * (0.5 * (y1 + y2))
                p2 = p1
                p1 = G * beta[r, t]
            gh[r, 0] = 0.5 * (p1 + p2)  # y[-1] feeds fb[0] and fb[1]
            gh[r, 1] = 0.5 * p1  # y[-2] feeds fb[0]
        return ga, gb, gh

    return forward, backward


class _FeedbackPhase(torch.autograd.Function):
    """``fb = feedback term`` of the DX7 recursion (rows, n) from ``a``, ``beta`` (rows, n) and the
    history (rows, 2): forward in numba (float64), exact adjoint loop in numba for the backward. CPU only."""

    @staticmethod
    def forward(ctx, a: Tensor, beta: Tensor, hist: Tensor) -> Tensor:
        fwd, _ = _feedback_kernels()
        arrays = (as_numpy(a), as_numpy(beta), as_numpy(hist))
        fb, y = fwd(*arrays)
        ctx.arrays = arrays + (fb, y)
        ctx.meta = [(t.dtype, t.device) for t in (a, beta, hist)]
        return to_torch(fb, a)

    @staticmethod
    def backward(ctx, grad_fb: Tensor):
        _, bwd = _feedback_kernels()
        return to_grads(bwd(*ctx.arrays, as_numpy(grad_fb)), ctx.meta, ctx.needs_input_grad)


def operator_feedback(arg: Tensor, beta: Tensor, history: Tensor) -> tuple[Tensor, Tensor]:
    """A DX7 operator with self-feedback: ``y[t] = sin(arg[t] + beta[t] (y[t-1] + y[t-2]) / 2)``.

    The one-sample nonlinear recursion runs in a compiled loop (numba, float64 internally) that
    returns the feedback term; ``y = sin(arg + feedback term)`` is then taken in torch, so
    ``beta = 0`` gives exactly ``torch.sin(arg)``; when ``beta`` is 0 everywhere the loop is
    skipped (the first-order terms are computed vectorised: same output, same exact gradient
    w.r.t. ``beta``, e.g. a trainable feedback at 0). Gradients are exact (a hand-written adjoint
    loop run backwards in time). 

    Args:
        arg: ``(..., n)`` phase argument in radians (``2 pi phase`` plus any modulation).
        beta: feedback amount (radians per unit output), broadcastable to ``arg``.
        history: ``(..., 2)`` outputs before the block, most recent first (``y[-1], y[-2]``).

    Returns:
        ``(y, new_history)``: ``y`` like ``arg``; ``new_history`` ``(..., 2)`` for the next block.
        Differentiable w.r.t. ``arg``, ``beta`` and ``history``.

    Reference: Yamaha DX7 operator feedback (the average of the last two outputs, as in the
    DX7's envelope/feedback path described by Chowning & Bristow, "FM Theory and Applications").

    Devices: CPU only (a compiled numba loop); tensors on another device raise
    :class:`~dspfx.functional.CPUKernelError` (nothing is copied to the CPU behind the caller's back).
    Gradients: exact (hand-written adjoint loop) w.r.t. ``arg``, ``beta`` and ``history``.
    """
    lead, n = arg.shape[:-1], arg.shape[-1]
    if history.shape[-1] != 2:
        raise ValueError(f"history must be shaped (..., 2) (y[-1], y[-2]), got {tuple(history.shape)}")
    beta = beta.expand_as(arg)
    hist = history.expand(*lead, 2)
    with torch.no_grad():
        zero = not bool(beta.any())
    if zero:
        # beta == 0 everywhere: y = sin(arg) exactly, and the recursion's exact first-order terms
        # are fb[t] = beta[t] (s[t-1] + s[t-2]) / 2 with s = sin(arg) (every other path carries a
        # factor beta = 0): the same output bit for bit and the same gradients, without the loop
        s = torch.sin(arg)
        prev = torch.cat([hist.flip(-1).to(s.dtype), s], dim=-1)  # y[-2], y[-1], y[0], ...
        fb = beta * (0.5 * (prev[..., 1:n + 1] + prev[..., :n]))
        y = torch.sin(arg + fb)
        return y, _history_after(y, hist)
    fb = _FeedbackPhase.apply(arg.reshape(-1, n), beta.reshape(-1, n), hist.reshape(-1, 2)).reshape(arg.shape)
    y = torch.sin(arg + fb)
    return y, _history_after(y, hist)


def _history_after(y: Tensor, history: Tensor) -> Tensor:
    """The last two outputs after the block ``y`` (..., n), most recent first, reaching into
    ``history`` (..., 2) when ``n == 1``."""
    if y.shape[-1] >= 2:
        return torch.stack([y[..., -1], y[..., -2]], dim=-1)
    return torch.stack([y[..., -1], history[..., 0].to(y.dtype).expand_as(y[..., -1])], dim=-1)


def fm_render(
    phase: Tensor,
    freqs: Tensor,
    levels: Tensor,
    indices: Tensor,
    routing: list[list[int]],
    carriers: list[int],
    sample_rate: float,
    margin: float | None = 0.05,
) -> Tensor:
    """Render a feed-forward FM (phase modulation) patch.

    Args:
        phase: ``(B, N, n)`` operator phases in turns (see
            :func:`dspfx.functional.blep.accumulate_phase`).
        freqs: ``(B|1, N, n)`` operator frequencies in Hz (used by the index clamp and to mute a
            carrier whose own frequency is at or above the limit).
        levels: ``(B|1, N, n)`` carrier output levels (entries of non-carriers are unused).
        indices: ``(B|1, N, n)`` modulation indices in radians (entries of operators that modulate
            nothing are unused).
        routing, carriers: see :func:`fm_algorithm` / :func:`check_routing`.
        sample_rate: Hz.
        margin: fraction of Nyquist kept free (:func:`clamp_indices`); ``None`` disables the clamp
            and the carrier mute (aliasing then possible; for tests and comparisons).

    Returns:
        ``(B, 1, n)`` output. Differentiable w.r.t. phase, freqs, levels and indices.
    """
    return _render(phase, freqs, levels, indices, routing, carriers, sample_rate, margin, None, (), None)[0]


def fm_render_feedback(
    phase: Tensor,
    freqs: Tensor,
    levels: Tensor,
    indices: Tensor,
    feedback: Tensor | None,
    feedback_state: Tensor,
    routing: list[list[int]],
    carriers: list[int],
    feedback_operators: list[int] | tuple[int, ...],
    sample_rate: float,
    margin: float | None = 0.05,
) -> tuple[Tensor, Tensor]:
    """:func:`fm_render` with DX7 operator self-feedback on ``feedback_operators``.

    Operator ``k`` in ``feedback_operators`` outputs
    ``s_k[t] = sin(2 pi phi_k[t] + modulation[t] + beta_k[t] (s_k[t-1] + s_k[t-2]) / 2)``
    (:func:`operator_feedback`: compiled loop, exact backward); the other operators are
    rendered exactly as in :func:`fm_render`, and ``beta = 0`` reproduces it exactly. With a
    margin, feedback and indices are bounded together (:func:`clamp_indices_and_feedback`).

    Args:
        phase, freqs, levels, indices, routing, carriers, sample_rate, margin: as
            :func:`fm_render`.
        feedback: ``(B|1, N, n)`` feedback amounts ``beta >= 0`` (only the entries of
            ``feedback_operators`` are used), or ``None`` for ``beta = 0`` everywhere (no loop
            is run, and no gradient w.r.t. beta; the history is still tracked).
        feedback_state: ``(B, len(feedback_operators), 2)`` the last two outputs of each fed-back
            operator before the block (most recent first); zeros at the start.
        feedback_operators: operator indices with feedback.

    Returns:
        ``(y, new_feedback_state)``: ``(B, 1, n)`` output and the state for the next block.
        Differentiable w.r.t. every tensor argument, the feedback state included.
    """
    return _render(phase, freqs, levels, indices, routing, carriers, sample_rate, margin,
                   feedback, tuple(feedback_operators), feedback_state)


def _render(phase, freqs, levels, indices, routing, carriers, sample_rate, margin, feedback, fb_ops, fb_state):
    n_ops = len(routing)
    freqs = freqs.expand_as(phase)
    fb = None
    if margin is None:
        idx = indices.expand_as(phase)
        if feedback is not None:
            fb = feedback.expand_as(phase)
    else:
        idx, fb = clamp_indices_and_feedback(freqs, indices, routing, sample_rate, margin, feedback, fb_ops)
    # per-operator views by unbind (one backward for all operators, not one full-size zero fill each)
    phase_op = phase.unbind(1)
    idx_op = idx.unbind(1)
    fb_op = fb.unbind(1) if fb is not None else None
    outs: list[Tensor | None] = [None] * n_ops
    new_state: list[Tensor | None] = [None] * len(fb_ops)
    two_pi = 2 * math.pi
    for k in range(n_ops - 1, -1, -1):
        arg = two_pi * phase_op[k]
        for m in range(k + 1, n_ops):
            if routing[k][m]:
                arg = arg + idx_op[m] * outs[m]
        if fb is not None and k in fb_ops:
            j = fb_ops.index(k)
            outs[k], new_state[j] = operator_feedback(arg, fb_op[k], fb_state[:, j])
        else:
            outs[k] = torch.sin(arg)
            if fb_state is not None and k in fb_ops:  # beta = 0: the loop would give sin(arg)
                j = fb_ops.index(k)
                new_state[j] = _history_after(outs[k], fb_state[:, j])
    y = 0
    levels_op = levels.expand_as(phase).unbind(1)
    freqs_op = freqs.unbind(1)
    for c in carriers:
        term = levels_op[c] * outs[c]
        if margin is not None:
            term = term * (freqs_op[c] < (1 - margin) * sample_rate / 2).to(term.dtype)
        y = y + term
    state = torch.stack(new_state, dim=1) if fb_state is not None and fb_ops else fb_state
    return y.unsqueeze(1), state
