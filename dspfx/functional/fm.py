"""Phase-modulation (FM) synthesis with N operators and a feed-forward routing.

- :func:`fm_algorithm`: routing matrix and carriers of the built-in algorithms;
- :func:`check_routing`: validate a free routing matrix and carrier list;
- :func:`clamp_indices`: bound the modulation indices so the spectrum stays below Nyquist
  (Carson's rule, per sample);
- :func:`fm_render`: render the operators (no python loop over samples; one over operators);
- :func:`operator_feedback`, :func:`feedback_harmonics`, :func:`max_feedback`: DX7 operator
  self-feedback and its band, in :mod:`dspfx.functional.fm_feedback` (re-exported here).

Convention: ``routing[i][j] = 1`` means operator ``j`` modulates operator ``i``; only ``j > i`` is
allowed (strictly upper triangular, feed-forward), so operators are evaluated from the last one
down to operator 0, as on the DX7 (whose operator 6 sits at the top of its stacks). Operator
``j`` outputs ``s_j = sin(2 pi phi_j + sum_k routing[j][k] * I_k * s_k)``; as a modulator it
contributes ``I_j * s_j`` radians (its modulation index), as a carrier ``level_j * s_j`` to the
output. An operator with feedback ``beta`` adds ``beta * (s_j[t-1] + s_j[t-2]) / 2`` to its own
phase argument (the DX7's two-sample average).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from dspfx.functional.fm_feedback import (  # re-exported: part of this module's API
    FEEDBACK_FLOOR_DB,
    feedback_harmonics,
    history_after,
    max_feedback,
    operator_feedback,
)

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
                new_state[j] = history_after(outs[k], fb_state[:, j])
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
