"""A cascade of second-order sections: :func:`sos_filter` (one compiled pass for a static
cascade on the CPU without gradients, else :func:`~dspfx.functional.recursive.iir` per section)."""

from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from dspfx.functional._compiled import as_numpy
from dspfx.functional.recursive import _as_coefficients, _as_history, iir

__all__ = ["sos_filter"]


@lru_cache(maxsize=None)
def _sos_kernel():
    """The compiled loop of :func:`sos_filter` (numba, cached on disk; imported lazily)."""
    from numba import njit

    @njit(cache=True, nogil=True)
    def kernel(x, sos, zi):  # pragma: no cover - compiled
        # y = x through the biquads sos[r, s] = (b0, b1, b2, a1, a2) (a0 divided out) in order;
        # zi[r, s] = (x[-1], x[-2], y[-1], y[-2]) of section s, updated in place. Sections run
        # two at a time, sample by sample, so the two recursions overlap in the pipeline; each
        # section's arithmetic is that of StaticIIR's biquad loop (bit-identical results).
        rows, n = x.shape
        n_sections = sos.shape[1]
        y = x.copy()
        for r in range(rows):
            s = 0
            while s < n_sections:
                b0, b1, b2, a1, a2 = sos[r, s, 0], sos[r, s, 1], sos[r, s, 2], sos[r, s, 3], sos[r, s, 4]
                x1, x2, y1, y2 = zi[r, s, 0], zi[r, s, 1], zi[r, s, 2], zi[r, s, 3]
                if s + 1 < n_sections:
                    c0, c1, c2 = sos[r, s + 1, 0], sos[r, s + 1, 1], sos[r, s + 1, 2]
                    d1, d2 = sos[r, s + 1, 3], sos[r, s + 1, 4]
                    u1, u2, w1, w2 = zi[r, s + 1, 0], zi[r, s + 1, 1], zi[r, s + 1, 2], zi[r, s + 1, 3]
                    for t in range(n):
                        x0 = y[r, t]
                        y0 = b0 * x0 + b1 * x1 + b2 * x2 - a1 * y1 - a2 * y2
                        w0 = c0 * y0 + c1 * u1 + c2 * u2 - d1 * w1 - d2 * w2
                        y[r, t] = w0
                        x2 = x1
                        x1 = x0
                        y2 = y1
                        y1 = y0
                        u2 = u1
                        u1 = y0
                        w2 = w1
                        w1 = w0
                    zi[r, s + 1, 0], zi[r, s + 1, 1], zi[r, s + 1, 2], zi[r, s + 1, 3] = u1, u2, w1, w2
                else:
                    for t in range(n):
                        x0 = y[r, t]
                        y0 = b0 * x0 + b1 * x1 + b2 * x2 - a1 * y1 - a2 * y2
                        y[r, t] = y0
                        x2 = x1
                        x1 = x0
                        y2 = y1
                        y1 = y0
                zi[r, s, 0], zi[r, s, 1], zi[r, s, 2], zi[r, s, 3] = x1, x2, y1, y2
                s += 2
        return y

    return kernel


def sos_filter(
    x: Tensor,
    sections: Sequence[tuple[Tensor, Tensor]],
    state: Sequence[tuple[Tensor, Tensor]] | None = None,
) -> tuple[Tensor, tuple[tuple[Tensor, Tensor], ...]]:
    """A cascade of recursive filters (second-order sections, like scipy's ``sosfilt``) with
    explicit per-section state; equal to calling :func:`iir` once per section in order.

    When every section is a static biquad (3 + 3 coefficients, no time variation), ``x`` is on
    CPU and nothing needs a gradient (no_grad, or no input requiring grad), the whole cascade
    runs in ONE compiled pass over the samples (two sections at a time in registers) with no
    intermediate tensors. Each section's arithmetic and operation order is that of :func:`iir`'s
    static loop in ``x``'s dtype, so the output and the state are bit-identical to the
    per-section path. Otherwise (gradients, time-varying coefficients, other orders, other
    devices) it is exactly the per-section :func:`iir` loop, differentiable as usual.

    Args:
        x: ``(batch, channels, samples)`` real tensor.
        sections: ``[(b, a), ...]`` in processing order, each as :func:`iir` takes them
            (``(B|1, C|1, T|1, n)`` or fewer leading dims; ``a[..., 0]`` divides).
        state: one :func:`iir` state ``(x_history, y_history)`` per section, or ``None`` (zeros).

    Returns:
        ``(y, states)``: ``y`` shaped like ``x``; ``states`` a tuple of the sections' states
        after the block, in :func:`iir`'s layout.

    Raises:
        ValueError / TypeError: as :func:`iir`, or when ``state`` does not hold one entry per
        section.

    Devices: CPU (one compiled pass for a static cascade without gradients) and any torch device
    (the per-section :func:`iir` path).
    Gradients: exact w.r.t. the input, the coefficients and the state (the :func:`iir` path).
    """
    sections = list(sections)
    if state is None:
        state = [None] * len(sections)
    else:
        state = list(state)
        if len(state) != len(sections):
            raise ValueError(
                f"sos_filter state must hold one (x_history, y_history) per section: "
                f"{len(sections)} sections, got {len(state)} states"
            )
    fused = (
        isinstance(x, Tensor)
        and x.ndim == 3
        and x.is_floating_point()
        and x.device.type == "cpu"
        and x.shape[-1] > 0
        and len(sections) > 0
    )
    if fused:
        tensors = [x] + [t for ba in sections for t in ba] + [t for st in state if st is not None for t in st]
        if torch.is_grad_enabled() and any(isinstance(t, Tensor) and t.requires_grad for t in tensors):
            fused = False
    if fused:
        batch, channels, n = x.shape
        rows = batch * channels
        coefs, zis = [], []
        for (b, a), st in zip(sections, state):
            b4 = _as_coefficients(b, "b", x)
            a4 = _as_coefficients(a, "a", x)
            if b4.shape[-1] != 3 or a4.shape[-1] != 3 or b4.shape[2] != 1 or a4.shape[2] != 1:
                fused = False
                break
            bn = b4 / a4[..., :1]  # the same normalisations as iir's static path
            an = a4[:, :, 0, 1:] / a4[:, :, 0, :1]
            coefs.append(
                torch.cat([bn[:, :, 0].expand(batch, channels, 3), an.expand(batch, channels, 2)], dim=-1)
            )
            if st is None:
                zis.append(x.new_zeros(batch, channels, 4))
            else:
                if not isinstance(st, (tuple, list)) or len(st) != 2:
                    raise ValueError(
                        "each sos_filter state must be a pair (x_history, y_history) shaped "
                        f"(batch, channels, 2), got {type(st).__name__}"
                    )
                zis.append(
                    torch.cat([_as_history(st[0], "x_history", x, 2), _as_history(st[1], "y_history", x, 2)], -1)
                )
    if not fused:
        y = x
        new_state = []
        for (b, a), st in zip(sections, state):
            y, s = iir(y, b, a, st)
            new_state.append(s)
        return y, tuple(new_state)
    sos = as_numpy(torch.stack(coefs, dim=2).reshape(rows, len(coefs), 5), None)
    zi = np.ascontiguousarray(as_numpy(torch.stack(zis, dim=2).reshape(rows, len(zis), 4), None)).copy()
    y = torch.from_numpy(_sos_kernel()(as_numpy(x.reshape(rows, n), None), sos, zi))
    zf = torch.from_numpy(zi).reshape(batch, channels, len(zis), 4)
    new_state = tuple((zf[:, :, i, 0:2].clone(), zf[:, :, i, 2:4].clone()) for i in range(len(zis)))
    return y.reshape(batch, channels, n), new_state


