"""Curves shared by the amp blocks: triode stage, push-pull / single-ended power stage, and a
hysteretic transformer core.

- :func:`triode_curve`: an asymmetric saturating curve with an operating-point bias, shifted so
  that silence maps to 0: ``y = s(u + bias) - s(bias)`` with ``s(v) = tanh(v)`` for ``v < 0`` and
  ``tanh((1 + a) v) / (1 + a)`` for ``v >= 0`` (``a`` = ``asymmetry``: the grid-conduction side
  clips harder; ``s`` is C2 at 0). With ``bias = 0`` and ``a = 0`` it is ``tanh``, odd: only odd
  harmonics. A bias or an asymmetry gives even harmonics, whose level moves with the drive.
- :func:`power_tube`, :func:`push_pull`, :func:`single_ended`: one output tube's plate current
  ``t(v) = tanh(w softplus((v + bias) / w))`` (cut off below ``-bias``, a smooth knee of width ``w``,
  saturating at 1); push-pull ``t(v) - t(-v)`` is odd in ``v`` (no even harmonics, whatever the
  bias), with crossover distortion near 0 when the bias is low (class B); single-ended
  ``t(v) - t(0)`` is not (even harmonics).
- :func:`play_operator` and :func:`hysteresis_core`: rate-independent hysteresis (a backlash /
  play operator, the elementary hysteron of Preisach-type models) inside a tanh core:
  ``y = (1 - h) tanh(u) + h tanh(p)``, ``p = play(u; r)``. The play operator is a non-linear
  recursion; a compiled numba loop decides per sample whether ``p`` holds or is dragged by ``u``
  (and from which side), then ``p`` is recomputed differentiably by
  :func:`dspfx.functional.recursive.iir` as the first-order time-varying linear recursion
  ``p[n] = hold[n] p[n-1] + (1 - hold[n]) (u[n] -+ r[n])`` given those decisions (the approach of
  :mod:`dspfx.functional.dynamics`): gradients are exact w.r.t. ``u``, ``r`` and the initial state
  almost everywhere (the decisions are piecewise constant; ``p`` is continuous across a switch).
  Non-CPU tensors: the decisions are taken on the CPU (a copy), the recomputation runs on the
  tensors' device.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from numba import njit
from torch import Tensor

from dspfx.functional.recursive import iir

__all__ = [
    "triode_curve",
    "power_tube",
    "push_pull",
    "single_ended",
    "play_operator",
    "hysteresis_core",
]


def triode_curve(u: Tensor, bias: Tensor | float = 0.0, asymmetry: Tensor | float = 0.0) -> Tensor:
    """Asymmetric saturating triode-stage curve minus its resting value.

    ``y = s(u + bias) - s(bias)``, ``s(v) = tanh(v)`` (``v < 0``), ``tanh((1 + a) v) / (1 + a)``
    (``v >= 0``). Slope 1 at rest when ``bias = 0``.

    Args:
        u: driven grid signal, any shape.
        bias: operating point (curve-input units), broadcastable.
        asymmetry: ``a >= 0``, how much harder the positive side clips, broadcastable.

    Returns:
        the shaped signal (broadcast shape). Differentiable.
    """
    k = 1.0 + torch.as_tensor(asymmetry, dtype=u.dtype, device=u.device)
    b = torch.as_tensor(bias, dtype=u.dtype, device=u.device)

    def s(v: Tensor) -> Tensor:
        return torch.where(v >= 0, torch.tanh(k * v) / k, torch.tanh(v))

    return s(u + b) - s(b)


def power_tube(v: Tensor, bias: Tensor | float, width: Tensor | float = 0.05) -> Tensor:
    """One output tube's normalised plate current ``tanh(w softplus((v + bias) / w))``, in [0, 1).

    Args:
        v: grid drive, any shape.
        bias: operating point: ``> 0`` class A-B overlap, ``<= 0`` towards class B (crossover).
        width: ``w > 0``, knee width of the cut-off (the crossover region), broadcastable.
    """
    w = torch.as_tensor(width, dtype=v.dtype, device=v.device)
    return torch.tanh(w * F.softplus((v + bias) / w))


def push_pull(v: Tensor, bias: Tensor | float, width: Tensor | float = 0.05) -> Tensor:
    """Push-pull pair, phase splitter to output: ``t(v) - t(-v)`` (odd in ``v``)."""
    return power_tube(v, bias, width) - power_tube(-v, bias, width)


def single_ended(v: Tensor, bias: Tensor | float, width: Tensor | float = 0.05) -> Tensor:
    """Single-ended (class A) stage: ``t(v) - t(0)`` (asymmetric: even harmonics)."""
    return power_tube(v, bias, width) - power_tube(torch.zeros_like(v), bias, width)


@njit(cache=True)
def _play_kernel(u, r, p0, hold, sign, out):  # pragma: no cover - compiled
    rows, n = u.shape
    for i in range(rows):
        p = p0[i]
        for t in range(n):
            v = u[i, t]
            w = r[i, t]
            if v - p > w:
                p = v - w
                hold[i, t] = 0.0
                sign[i, t] = -1.0
            elif p - v > w:
                p = v + w
                hold[i, t] = 0.0
                sign[i, t] = 1.0
            else:
                hold[i, t] = 1.0
                sign[i, t] = 0.0
            out[i, t] = p


def play_operator(u: Tensor, width: Tensor | float, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Play (backlash) operator: ``p`` follows ``u`` with a dead band of half-width ``r``.

    ``p[n] = u[n] - r`` if ``u[n] - p[n-1] > r``; ``u[n] + r`` if ``p[n-1] - u[n] > r``; else
    ``p[n-1]``.

    Args:
        u: ``(batch, channels, samples)``.
        width: ``r >= 0``, number or tensor broadcastable to ``u`` (e.g. ``(batch|1, 1, T|1)``).
        state: ``(batch, channels, 1)`` value of ``p`` before the block (``None``: zeros).

    Returns:
        ``(p, new_state)``; ``p`` shaped like ``u``. Exact gradients a.e. (see module doc).

    Devices: CPU only (a compiled numba loop); tensors on another device raise
    :class:`~dspfx.functional.CPUKernelError` (nothing is copied to the CPU behind the caller's back).
    Gradients: exact almost everywhere (hand-written adjoint, see the module docstring).
    """
    if not isinstance(u, Tensor) or u.ndim != 3:
        raise ValueError(f"play_operator: u must be shaped (batch, channels, samples), got {getattr(u, 'shape', u)!r}")
    batch, channels, n = u.shape
    r = torch.as_tensor(width, dtype=u.dtype, device=u.device).expand(batch, channels, n)
    if state is None:
        state = u.new_zeros(batch, channels, 1)
    if tuple(state.shape) != (batch, channels, 1):
        raise ValueError(f"play_operator: state must be shaped {(batch, channels, 1)}, got {tuple(state.shape)}")
    with torch.no_grad():
        u_np = u.detach().cpu().to(torch.float64).reshape(batch * channels, n).numpy()
        r_np = np.ascontiguousarray(r.detach().cpu().to(torch.float64).reshape(batch * channels, n).numpy())
        p0 = state.detach().cpu().to(torch.float64).reshape(-1).numpy().copy()
        hold = np.empty_like(u_np)
        sign = np.empty_like(u_np)
        out = np.empty_like(u_np)
        _play_kernel(np.ascontiguousarray(u_np), r_np, p0, hold, sign, out)
    hold_t = torch.from_numpy(hold).to(dtype=u.dtype, device=u.device).view(batch, channels, n)
    sign_t = torch.from_numpy(sign).to(dtype=u.dtype, device=u.device).view(batch, channels, n)
    target = u + sign_t * r
    b = (1.0 - hold_t).unsqueeze(-1)
    a = torch.stack([torch.ones_like(hold_t), -hold_t], dim=-1)
    p, _ = iir(target, b, a, (u.new_zeros(batch, channels, 0), state.to(u.dtype)))
    return p, p[..., -1:]


def hysteresis_core(
    u: Tensor, hysteresis: Tensor | float, width: Tensor | float, state: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Saturating core with memory: ``y = (1 - h) tanh(u) + h tanh(play(u; r))``.

    For a slow sine of amplitude above ``r``, the rising branch is ``tanh(u - r)`` and the falling
    ``tanh(u + r)`` (weighted by ``h``): a loop whose area grows with ``h`` and ``r`` and
    vanishes at ``h = 0`` (then ``y = tanh(u)``, memoryless).

    Args:
        u: ``(batch, channels, samples)``, driven core input.
        hysteresis: ``h`` in [0, 1], broadcastable.
        width: ``r > 0``, loop half-width in ``u`` units, broadcastable.
        state: the play operator's state ``(batch, channels, 1)`` or ``None``.

    Returns:
        ``(y, new_state)``.
    """
    p, state = play_operator(u, width, state)
    h = torch.as_tensor(hysteresis, dtype=u.dtype, device=u.device)
    return (1.0 - h) * torch.tanh(u) + h * torch.tanh(p), state
