"""Topology-preserving-transform (trapezoidal) state-variable filter, Zavalishin / Simper.

Per sample, with the two integrator states ``s1`` (band) and ``s2`` (low), the prewarped gain
``g = tan(pi*fc/sr)`` and the damping ``k = 1/q``:

    v1 = (s1 + g*(x - s2)) / (1 + g*(g + k))      # bandpass output
    v2 = s2 + g*v1                                # lowpass output
    s1' = 2*v1 - s1,  s2' = 2*v2 - s2
    y  = m0*x + m1*v1 + m2*v2

The mode picks ``(g, k, m0, m1, m2)`` (:func:`svf_coefficients`, A. Simper, "Linear
Trapezoidal Integrated State Variable Filter", Cytomic 2013; V. Zavalishin, "The Art of VA
Filter Design", ch. 4). For static settings each mode has exactly the transfer function of the
RBJ-cookbook biquad of the same name (:func:`dspfx.functional.biquad_coefficients`, same
prewarping and the same cutoff clamp into [2 Hz, sr/2 - 100 Hz]); under modulation the TPT
structure keeps its states meaningful and stays stable for any positive ``g``, ``k``, unlike a
direct-form biquad whose coefficients are swept.

The loop is compiled with numba (forward) and differentiated by a hand-written adjoint loop run
backwards in time (numba): exact gradients w.r.t. the input, every coefficient (each may vary
per sample) and the initial state. Kernels run on the CPU only, in float64; tensors on another device raise
:class:`~dspfx.functional.CPUKernelError`.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

from dspfx.functional._compiled import as_numpy, to_grads, to_torch
from dspfx.functional.control import as_signal
from dspfx.functional.design import MIN_CUTOFF_HZ, NYQUIST_MARGIN_HZ

__all__ = ["SVF_MODES", "svf_coefficients", "svf_filter", "svf"]

SVF_MODES: tuple[str, ...] = ("lowpass", "bandpass", "highpass", "notch", "allpass", "peak", "lowshelf", "highshelf")


def svf_coefficients(
    mode: str,
    cutoff_hz: Tensor | float,
    q: Tensor | float,
    gain_db: Tensor | float,
    sample_rate: float,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """TPT state-variable filter coefficients ``(g, k, m0, m1, m2)`` for a mode (Simper 2013).

    With ``t = tan(pi*fc/sr)`` (fc clamped into [2 Hz, sr/2 - 100 Hz], like the biquad) and
    ``A = 10^(gain_db/40)``:

    - ``lowpass``: ``g = t, k = 1/q, m = (0, 0, 1)``;
    - ``bandpass`` (0 dB peak, like the cookbook's): ``m = (0, k, 0)``;
    - ``highpass``: ``m = (1, -k, -1)``; ``notch``: ``m = (1, -k, 0)``;
      ``allpass``: ``m = (1, -2k, 0)``;
    - ``peak``: ``k = 1/(q*A)``, ``m = (1, k*(A^2 - 1), 0)``;
    - ``lowshelf``: ``g = t/sqrt(A)``, ``m = (1, k*(A - 1), A^2 - 1)``;
    - ``highshelf``: ``g = t*sqrt(A)``, ``m = (A^2, k*(1 - A)*A, 1 - A^2)``.

    Args:
        mode: one of :data:`SVF_MODES`.
        cutoff_hz, q, gain_db: tensors (broadcastable together) or floats; ``gain_db`` is used
            by ``peak`` and the shelves only.
        sample_rate: in Hz.

    Returns:
        five tensors broadcast together, differentiable.
    """
    if mode not in SVF_MODES:
        raise ValueError(f"svf mode must be one of {', '.join(SVF_MODES)}; got {mode!r}")
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, float)) or not sample_rate > 0:
        raise ValueError(f"sample_rate must be a positive number in Hz, got {sample_rate!r}")
    upper = sample_rate / 2.0 - NYQUIST_MARGIN_HZ
    if upper <= MIN_CUTOFF_HZ:
        raise ValueError(f"sample_rate {sample_rate} Hz is too low for an svf (no cutoff range below Nyquist)")
    tensors = [v for v in (cutoff_hz, q, gain_db) if isinstance(v, Tensor)]
    dtype = tensors[0].dtype if tensors else torch.get_default_dtype()
    device = tensors[0].device if tensors else None

    def as_t(v: Tensor | float) -> Tensor:
        return v if isinstance(v, Tensor) else torch.tensor(float(v), dtype=dtype, device=device)

    fc, q_t, gain = torch.broadcast_tensors(as_t(cutoff_hz), as_t(q), as_t(gain_db))
    t = torch.tan((math.pi / sample_rate) * torch.clamp(fc, min=MIN_CUTOFF_HZ, max=upper))
    k = 1.0 / q_t
    one = torch.ones_like(t)
    zero = torch.zeros_like(t)
    if mode == "lowpass":
        return t, k, zero, zero, one
    if mode == "bandpass":
        return t, k, zero, k, zero
    if mode == "highpass":
        return t, k, one, -k, -one
    if mode == "notch":
        return t, k, one, -k, zero
    if mode == "allpass":
        return t, k, one, -2.0 * k, zero
    big_a = torch.pow(10.0, gain / 40.0)
    if mode == "peak":
        k = 1.0 / (q_t * big_a)
        return t, k, one, k * (big_a * big_a - 1.0), zero
    if mode == "lowshelf":
        return t / torch.sqrt(big_a), k, one, k * (big_a - 1.0), big_a * big_a - 1.0
    # highshelf
    return t * torch.sqrt(big_a), k, big_a * big_a, k * (1.0 - big_a) * big_a, 1.0 - big_a * big_a


@lru_cache(maxsize=None)
def _kernels():
    """(forward, backward) compiled loops (numba, cached on disk; imported lazily)."""
    from numba import njit

    @njit(cache=True, nogil=True)
    def forward(x, gs, ks, m0s, m1s, m2s, s_init, save):  # pragma: no cover - compiled
        rows, n = x.shape
        y = np.empty_like(x)
        traj = np.empty((rows, n if save else 0, 2))
        s_out = np.empty((rows, 2))
        tg = gs.shape[1] > 1
        tk = ks.shape[1] > 1
        t0 = m0s.shape[1] > 1
        t1 = m1s.shape[1] > 1
        t2 = m2s.shape[1] > 1
        for row in range(rows):
            s1 = s_init[row, 0]
            s2 = s_init[row, 1]
            g = gs[row, 0]
            k = ks[row, 0]
            inv = 1.0 / (1.0 + g * (g + k))
            m0 = m0s[row, 0]
            m1 = m1s[row, 0]
            m2 = m2s[row, 0]
            for t in range(n):
                if tg or tk:
                    g = gs[row, t if tg else 0]
                    k = ks[row, t if tk else 0]
                    inv = 1.0 / (1.0 + g * (g + k))
                if t0:
                    m0 = m0s[row, t]
                if t1:
                    m1 = m1s[row, t]
                if t2:
                    m2 = m2s[row, t]
                xv = float(x[row, t])
                v1 = (s1 + g * (xv - s2)) * inv
                v2 = s2 + g * v1
                y[row, t] = m0 * xv + m1 * v1 + m2 * v2
                s1 = 2.0 * v1 - s1
                s2 = 2.0 * v2 - s2
                if save:
                    traj[row, t, 0] = v1
                    traj[row, t, 1] = v2
            s_out[row, 0] = s1
            s_out[row, 1] = s2
        return y, traj, s_out

    @njit(cache=True, nogil=True)
    def backward(gy, gs_final, x, gs, ks, m0s, m1s, m2s, s_init, traj):  # pragma: no cover - compiled
        rows, n = x.shape
        gx = np.empty_like(x)
        ggs = np.zeros_like(gs)
        gks = np.zeros_like(ks)
        gm0 = np.zeros_like(m0s)
        gm1 = np.zeros_like(m1s)
        gm2 = np.zeros_like(m2s)
        gs_init = np.empty((rows, 2))
        tg = gs.shape[1] > 1
        tk = ks.shape[1] > 1
        t0 = m0s.shape[1] > 1
        t1 = m1s.shape[1] > 1
        t2 = m2s.shape[1] > 1
        for row in range(rows):
            l1 = gs_final[row, 0]
            l2 = gs_final[row, 1]
            for t in range(n - 1, -1, -1):
                ig = t if tg else 0
                ik = t if tk else 0
                g = gs[row, ig]
                k = ks[row, ik]
                v1 = traj[row, t, 0]
                v2 = traj[row, t, 1]
                xv = float(x[row, t])
                go = float(gy[row, t])
                gm0[row, t if t0 else 0] += go * xv
                gm1[row, t if t1 else 0] += go * v1
                gm2[row, t if t2 else 0] += go * v2
                gxv = m0s[row, t if t0 else 0] * go
                gv1 = m1s[row, t if t1 else 0] * go + 2.0 * l1
                gv2 = m2s[row, t if t2 else 0] * go + 2.0 * l2
                gs1 = -l1
                gs2 = -l2
                # v2 = s2 + g*v1
                gs2 += gv2
                gg = gv2 * v1
                gv1 += g * gv2
                # v1 = (s1 + g*(x - s2)) / D, D = 1 + g*(g + k)
                den = 1.0 + g * (g + k)
                gn = gv1 / den
                gden = -gv1 * v1 / den
                # s2 before this sample: v2 = s2 + g*v1  =>  s2 = v2 - g*v1
                s2 = v2 - g * v1
                gs1 += gn
                gg += gn * (xv - s2)
                gxv += gn * g
                gs2 -= gn * g
                gg += gden * (2.0 * g + k)
                gks[row, ik] += gden * g
                ggs[row, ig] += gg
                gx[row, t] = gxv
                l1 = gs1
                l2 = gs2
            gs_init[row, 0] = l1
            gs_init[row, 1] = l2
        return gx, ggs, gks, gm0, gm1, gm2, gs_init

    return forward, backward


class _SVFFunction(torch.autograd.Function):
    """The compiled TPT loop with its exact adjoint. Inputs: x (rows, n); g, k, m0, m1, m2
    (rows, n|1); s_init (rows, 2). Outputs: y (rows, n), final state (rows, 2)."""

    @staticmethod
    def forward(ctx, x, g, k, m0, m1, m2, s_init):  # type: ignore[override]
        fwd, _ = _kernels()
        arrays = [as_numpy(x, None)] + [as_numpy(t) for t in (g, k, m0, m1, m2, s_init)]  # x float32 kept
        y, traj, s_out = fwd(*arrays, any(ctx.needs_input_grad))
        ctx.arrays = arrays
        ctx.traj = traj
        ctx.meta = [(t.dtype, t.device) for t in (x, g, k, m0, m1, m2, s_init)]
        return to_torch(y, x), to_torch(s_out, x)

    @staticmethod
    def backward(ctx, grad_y, grad_state):  # type: ignore[override]
        _, bwd = _kernels()
        x, g, k, m0, m1, m2, s_init = ctx.arrays
        gy = as_numpy(grad_y, None).astype(x.dtype, copy=False) if grad_y is not None else np.zeros_like(x)
        gs = as_numpy(grad_state) if grad_state is not None else np.zeros_like(s_init)
        grads = bwd(gy, gs, x, g, k, m0, m1, m2, s_init, ctx.traj)
        return to_grads(grads, ctx.meta, ctx.needs_input_grad)


def _as_param(value: Tensor, x: Tensor, name: str) -> Tensor:
    """A parameter broadcastable to x (batch, channels, samples) -> (batch*channels, n|1)."""
    t = as_signal(value, x, f"svf {name}", integers=True)
    batch, channels, n = x.shape
    steps = n if t.shape[-1] == n else 1
    return t.expand(batch, channels, steps).reshape(batch * channels, steps)


def svf_filter(
    x: Tensor,
    g: Tensor,
    k: Tensor,
    m0: Tensor,
    m1: Tensor,
    m2: Tensor,
    state: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Run the TPT state-variable filter with given coefficients (see the module docstring).

    Args:
        x: input (batch, channels, samples).
        g, k, m0, m1, m2: coefficient tensors broadcastable to (batch, channels, samples|1)
            (from :func:`svf_coefficients`); ``g > 0``, ``k > 0`` keep the filter stable.
        state: the integrator states ``(s1, s2)`` as (batch, channels, 2) (default zeros).

    Returns:
        ``(y, state)``: y (batch, channels, samples), final state (batch, channels, 2).

    Devices: CPU only (a compiled numba loop); tensors on another device raise
    :class:`~dspfx.functional.CPUKernelError` (nothing is copied to the CPU behind the caller's back).
    Gradients: exact (hand-written adjoint loop) w.r.t. ``x``, the coefficients and the state.
    """
    if not isinstance(x, Tensor) or x.ndim != 3:
        got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"svf input must be a tensor shaped (batch, channels, samples), got {got}")
    batch, channels, n = x.shape
    params = [_as_param(v, x, name) for v, name in zip((g, k, m0, m1, m2), ("g", "k", "m0", "m1", "m2"))]
    if state is None:
        s0 = x.new_zeros(batch * channels, 2)
    else:
        if not isinstance(state, Tensor) or tuple(state.shape) != (batch, channels, 2):
            raise ValueError(
                f"svf state must be shaped (batch, channels, 2) = {(batch, channels, 2)}, "
                f"got {tuple(getattr(state, 'shape', ()))}"
            )
        s0 = state.to(dtype=x.dtype, device=x.device).reshape(batch * channels, 2)
    y, s_out = _SVFFunction.apply(x.reshape(batch * channels, n), *params, s0)
    return y.reshape(batch, channels, n), s_out.reshape(batch, channels, 2)


def svf(
    x: Tensor,
    cutoff_hz: Tensor | float,
    q: Tensor | float,
    sample_rate: float,
    mode: str = "lowpass",
    gain_db: Tensor | float = 0.0,
    *,
    state: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """TPT state-variable filter (Simper/Zavalishin) with per-sample cutoff, q and gain.

    Args:
        x: input audio (batch, channels, samples).
        cutoff_hz: cutoff / centre in Hz, float or tensor broadcastable to
            (batch, channels, samples|1); clamped into [2 Hz, sr/2 - 100 Hz].
        q: quality factor (> 0), same shapes.
        sample_rate: in Hz.
        mode: one of :data:`SVF_MODES`.
        gain_db: gain of ``peak`` and the shelves (dB), same shapes.
        state: (batch, channels, 2) integrator states (default zeros).

    Returns:
        ``(y, state)``. For static settings ``y`` equals the RBJ-cookbook biquad of the same mode.

    Reference: A. Simper, "Linear Trapezoidal Integrated State Variable Filter" (Cytomic, 2013).
    """
    if not isinstance(x, Tensor):
        raise ValueError(f"svf input must be a tensor shaped (batch, channels, samples), got {type(x).__name__}")

    def as_t(v: Tensor | float) -> Tensor:
        return v if isinstance(v, Tensor) else torch.tensor(float(v), dtype=x.dtype, device=x.device)

    coefs = svf_coefficients(mode, as_t(cutoff_hz), as_t(q), as_t(gain_db), sample_rate)
    return svf_filter(x, *coefs, state=state)
