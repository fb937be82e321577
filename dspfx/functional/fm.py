"""Phase-modulation (FM) synthesis with N operators and a feed-forward routing.

- :func:`fm_algorithm`: routing matrix and carriers of the built-in algorithms;
- :func:`check_routing`: validate a free routing matrix and carrier list;
- :func:`clamp_indices`: bound the modulation indices so the spectrum stays below Nyquist
  (Carson's rule, per sample);
- :func:`fm_render`: render the operators (no python loop over samples; one over operators).

Convention: ``routing[i][j] = 1`` means operator ``j`` modulates operator ``i``; only ``j > i`` is
allowed (strictly upper triangular, feed-forward), so operators are evaluated from the last one
down to operator 0, as on the DX7 (whose operator 6 sits at the top of its stacks). Operator
``j`` outputs ``s_j = sin(2 pi phi_j + sum_k routing[j][k] * I_k * s_k)``; as a modulator it
contributes ``I_j * s_j`` radians (its modulation index), as a carrier ``level_j * s_j`` to the
output.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

__all__ = ["FM_ALGORITHMS", "fm_algorithm", "check_routing", "clamp_indices", "fm_render"]

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
    as given (clamped to >= 0). Differentiable where not clamped (``torch.minimum``).

    Args:
        freqs: ``(B, N, n)`` operator frequencies in Hz.
        indices: ``(B|1, N, n)`` requested indices (radians).
        routing, sample_rate, margin: see the module doc; ``0 <= margin < 1``.

    Returns:
        ``(B, N, n)`` clamped indices.
    """
    n_ops = len(routing)
    limit = (1 - margin) * sample_rate / 2
    n_mod = [sum(row) for row in routing]
    idx = indices.clamp(min=0.0).expand_as(freqs)
    edge: list[Tensor | None] = [None] * n_ops
    out: list[Tensor | None] = [None] * n_ops
    for k in range(n_ops - 1, -1, -1):
        e = freqs[:, k]
        for m in range(k + 1, n_ops):
            if routing[k][m]:
                e = e + torch.where(out[m] > 0, (out[m] + 1) * edge[m], torch.zeros_like(e))
        edge[k] = e
        ik = idx[:, k]
        for j in range(k):
            if routing[j][k]:
                bound = ((limit - freqs[:, j]) / (n_mod[j] * e) - 1).clamp(min=0.0)
                ik = torch.minimum(ik, bound)
        out[k] = ik
    return torch.stack(out, dim=1)


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
    n_ops = len(routing)
    freqs = freqs.expand_as(phase)
    if margin is None:
        idx = indices.expand_as(phase)
    else:
        idx = clamp_indices(freqs, indices, routing, sample_rate, margin)
    outs: list[Tensor | None] = [None] * n_ops
    two_pi = 2 * math.pi
    for k in range(n_ops - 1, -1, -1):
        arg = two_pi * phase[:, k]
        for m in range(k + 1, n_ops):
            if routing[k][m]:
                arg = arg + idx[:, m] * outs[m]
        outs[k] = torch.sin(arg)
    y = 0
    levels = levels.expand_as(phase)
    for c in carriers:
        term = levels[:, c] * outs[c]
        if margin is not None:
            term = term * (freqs[:, c] < (1 - margin) * sample_rate / 2).to(term.dtype)
        y = y + term
    return y.unsqueeze(1)
