"""Modulated delays: a low-frequency oscillator with carried phase, and a fractional delay line
with feedback whose delay may change every sample (the core of chorus, flanger and vibrato).

The delay line, per row (one batch item and channel) and sample ``n``::

    v[n] = x[n] + sign * g[n] * w[n - 1]              # write first (w[-1]: the carried last wet)
    w[n] = (1 - f) * v[n - k] + f * v[n - k - 1]      # then read at d[n] = k + f samples back
    y[n] = (1 - mix[n]) * x[n] + mix[n] * w[n]

with ``k = floor(d[n])`` and ``f = d[n] - k`` (linear interpolation; ``d = 0`` reads the sample
just written). The wet sample is fed back on the next sample, so a round trip of the loop takes
``d + 1`` samples (as in JUCE's ``dsp::Chorus``): an impulse echoes at ``d``, ``2 d + 1``, ...
The loop runs in a compiled kernel (numba, ``cache=True``) and its gradient comes
from a hand-written adjoint loop run backwards in time (also numba), exact w.r.t. the input, the
delay signal (through the interpolation slope ``v[n-k-1] - v[n-k]``), feedback, mix and the
carried state (the last ``max_delay_samples + 1`` written samples and the last wet sample).
The kernel pair is :class:`DelayLoop`, the one delay-line loop of the package: parametrised by
the order of write and read and an optional one-pole lowpass in the loop, it also runs the
damped echo of :func:`dspfx.functional.delay.damped_feedback_delay` (read first, filtered).

Arithmetic: float64 inputs run the loop in float64; float32 inputs run it in float32 arithmetic,
in the order of operations of JUCE's float32 ``dsp::Chorus`` (the rounding pedalboard does). The
backward always runs in float64.

Interpolation: linear only (JUCE ``DelayLineInterpolationTypes::Linear``, which pedalboard's
Chorus uses). Cubic/allpass interpolation is not provided.

Device: the kernels run on CPU; tensors on another device are copied to the CPU and the results
copied back (autograd follows the copies), so CUDA users run, at the cost of two transfers.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

from dspfx.functional._compiled import as_numpy, to_torch
from dspfx.functional.control import as_signal, check_signal

__all__ = [
    "DelayLoop",
    "LFO_SHAPES",
    "lfo_phase",
    "lfo",
    "modulated_delay",
    "modulated_delay_state",
    "delay_line_length",
]

LFO_SHAPES = ("sine", "triangle")
_TWO_PI = 2.0 * math.pi


# ============================================================================ kernels


@lru_cache(maxsize=None)
def _kernels():
    """The compiled float32 LFO phase loop (numba, cached on disk; imported lazily)."""
    from numba import njit

    @njit(cache=True, nogil=True)
    def phase_f32(inc, phase0):  # pragma: no cover - compiled
        # JUCE dsp::Phase in float32: return the phase, then phase += inc, wrapped at 2 pi
        rows, n = inc.shape
        out = np.empty((rows, n), dtype=np.float64)
        end = np.empty(rows, dtype=np.float64)
        two_pi = np.float32(6.283185307179586)
        for r in range(rows):
            p = np.float32(phase0[r])
            for t in range(n):
                out[r, t] = p
                p = np.float32(p + inc[r, t])
                while p >= two_pi:
                    p = np.float32(p - two_pi)
            end[r] = p
        return out, end

    return phase_f32


@lru_cache(maxsize=None)
def _loop_kernels():
    """The delay-line loop shared by every delay of the package (numba, cached on disk):
    :func:`modulated_delay` (write, then read) and :func:`dspfx.functional.delay.damped_feedback_delay`
    (read, then write, one-pole lowpass in the loop) run these two kernels.

    Per row and sample, with ``z`` the (optionally filtered) wet signal fed back::

        write_first:  v[t] = x[t] + sign * g[t] * z[t - 1]
        w[t] = lerp(v, t - d[t])            (d clamped into [dmin, dmax])
        z[t] = (1 - p[t]) * w[t] + p[t] * z[t - 1]   if damped, else z[t] = w[t]
        read_first:   v[t] = x[t] + sign * g[t] * z[t]
        y[t] = (1 - m[t]) * x[t] + m[t] * w[t]

    The forward runs in the arrays' dtype (float32 arrays: float32 arithmetic, JUCE's order;
    the constants ``one``, ``dmin``, ``dmax``, ``sign`` come in that dtype); the adjoint runs in
    float64 backwards in time.
    """
    from numba import njit

    @njit(cache=True, nogil=True)
    def forward(x, d, g, m, p, hist, z0, sign, one, dmin, dmax, write_first, damped):  # pragma: no cover
        rows, n = x.shape
        length = hist.shape[1]
        v = np.empty((rows, length + n), dtype=x.dtype)
        w = np.empty((rows, n), dtype=x.dtype)
        z = np.empty((rows, n if damped else 0), dtype=x.dtype)
        y = np.empty((rows, n), dtype=x.dtype)
        for r in range(rows):
            for j in range(length):
                v[r, j] = hist[r, j]
            zp = z0[r]
            for t in range(n):
                if write_first:
                    v[r, length + t] = x[r, t] + sign * g[r, t] * zp
                dd = d[r, t]
                if dd < dmin:
                    dd = dmin
                elif dd > dmax:
                    dd = dmax
                kf = np.floor(dd)
                k = int(kf)
                f = dd - kf
                i = length + t - k  # write_first: i <= length + t; read_first: i <= length + t - 1
                a = v[r, i]
                wn = a + f * (v[r, i - 1] - a)
                if damped:
                    zn = (one - p[r, t]) * wn + p[r, t] * zp
                    z[r, t] = zn
                else:
                    zn = wn
                if not write_first:
                    v[r, length + t] = x[r, t] + sign * g[r, t] * zn
                w[r, t] = wn
                y[r, t] = (one - m[r, t]) * x[r, t] + m[r, t] * wn
                zp = zn
        return y, v, w, z

    @njit(cache=True, nogil=True)
    def backward(  # pragma: no cover - compiled
        gy, g_hist_out, g_z_out, x, d, g, m, p, v, w, z, z0, sign, dmin, write_first, damped
    ):
        # float64 adjoint; z is w when not damped
        rows, n = x.shape
        length = v.shape[1] - n
        dmax = length - 1.0
        gv = np.zeros((rows, length + n), dtype=np.float64)
        gx = np.empty((rows, n), dtype=np.float64)
        gd = np.empty((rows, n), dtype=np.float64)
        gg = np.empty((rows, n), dtype=np.float64)
        gm = np.empty((rows, n), dtype=np.float64)
        gp = np.zeros((rows, n), dtype=np.float64)
        gz0 = np.empty(rows, dtype=np.float64)
        for r in range(rows):
            for j in range(length):
                gv[r, n + j] = g_hist_out[r, j]  # the carried history is v[n .. n + length - 1]
            lz = g_z_out[r]  # adjoint reaching z[t] from later samples (and the carried state)
            for t in range(n - 1, -1, -1):
                zp = z[r, t - 1] if t > 0 else z0[r]
                gyt = gy[r, t]
                mt = m[r, t]
                gm[r, t] = gyt * (w[r, t] - x[r, t])
                if write_first:
                    gzt = lz
                else:
                    gvt = gv[r, length + t]  # complete: v[t] is read only at times > t
                    gx[r, t] = gyt * (1.0 - mt) + gvt
                    gg[r, t] = gvt * sign * z[r, t]
                    gzt = gvt * sign * g[r, t] + lz
                if damped:
                    pt = p[r, t]
                    gp[r, t] = gzt * (zp - w[r, t])
                    gwt = gzt * (1.0 - pt) + gyt * mt
                    lz = gzt * pt
                else:
                    gwt = gzt + gyt * mt
                    lz = 0.0
                dd = d[r, t]
                inside = dd >= dmin and dd < dmax
                if dd < dmin:
                    dd = dmin
                elif dd > dmax:
                    dd = dmax
                k = int(math.floor(dd))
                f = dd - k
                i = length + t - k
                gv[r, i] += gwt * (1.0 - f)
                gv[r, i - 1] += gwt * f
                gd[r, t] = gwt * (v[r, i - 1] - v[r, i]) if inside else 0.0
                if write_first:
                    gvt = gv[r, length + t]  # complete: every read of v[t] happens at times >= t
                    gx[r, t] = gyt * (1.0 - mt) + gvt
                    gg[r, t] = gvt * sign * zp
                    lz += gvt * sign * g[r, t]
            gz0[r] = lz
        return gx, gd, gg, gm, gp, gv[:, :length].copy(), gz0

    return forward, backward


class DelayLoop(torch.autograd.Function):
    """The delay-line loop on CPU rows, shared by :func:`modulated_delay` and
    :func:`dspfx.functional.delay.damped_feedback_delay` (see :func:`_loop_kernels` for the
    recursion).

    ``apply(x, d, g, m, p, hist, z0, sign, write_first, min_delay, float32_arithmetic)`` with
    ``x, d, g, m`` (and the damping pole ``p``, or ``None`` for no loop filter) shaped (R, N),
    ``hist`` (R, L) and ``z0`` (R,) (the last sample fed back); returns ``y`` (R, N), the new
    history (R, L) and the last fed-back sample (R,). The delay is clamped into
    ``[min_delay, L - 1]``. float32 inputs run in float32 arithmetic when
    ``float32_arithmetic`` (JUCE's rounding), else in float64; the backward runs in float64.

    Backward: the adjoint loop runs backwards in time; ``dL/dv[t]`` collects the interpolation
    weights of every read of ``v[t]`` (all at times >= t, so it is complete when ``t`` is
    reached), then flows to ``x[t]``, ``g[t]`` and the fed-back sample; ``dL/dd[t]`` is the
    read's slope ``v[t-k-1] - v[t-k]`` (zero where the delay was clamped).
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx, x, d, g, m, p, hist, z0, sign, write_first, min_delay, float32_arithmetic
    ):
        fwd, _ = _loop_kernels()
        damped = p is not None
        dtype = np.float32 if (float32_arithmetic and x.dtype == torch.float32) else np.float64
        arr = lambda t: as_numpy(t, torch.float32 if dtype == np.float32 else torch.float64)  # noqa: E731
        arrays = [arr(t) for t in (x, d, g, m)]
        pa = arr(p) if damped else arrays[0]
        length = hist.shape[1]
        y, v, w, z = fwd(
            *arrays, pa, arr(hist), arr(z0), dtype(sign), dtype(1.0), dtype(min_delay), dtype(length - 1),
            bool(write_first), damped,
        )  # fmt: skip
        n = x.shape[1]
        ctx.flags = (float(sign), bool(write_first), float(min_delay), damped)
        ctx.save_for_backward(x, d, g, m, p if damped else None, z0)
        ctx.v, ctx.w, ctx.z = v, w, (z if damped else w)
        out = to_torch(y, x)
        hist_out = to_torch(v[:, n:].copy(), x)
        z_out = to_torch(ctx.z[:, -1].copy(), x) if n else z0.detach().clone()
        return out, hist_out, z_out

    @staticmethod
    def backward(ctx, gy, g_hist, g_z):  # type: ignore[override]
        _, bwd = _loop_kernels()
        x, d, g, m, p, z0 = ctx.saved_tensors
        sign, write_first, min_delay, damped = ctx.flags
        rows, n = x.shape
        length = ctx.v.shape[1] - n
        gy = np.zeros((rows, n)) if gy is None else as_numpy(gy)
        g_hist = np.zeros((rows, length)) if g_hist is None else as_numpy(g_hist)
        g_z = np.zeros(rows) if g_z is None else as_numpy(g_z)
        v, w, z = (a.astype(np.float64, copy=False) for a in (ctx.v, ctx.w, ctx.z))
        xa, da, ga, ma = (as_numpy(t) for t in (x, d, g, m))
        pa = as_numpy(p) if damped else xa
        gx, gd, gg, gm, gp, gh, gz0 = bwd(
            gy, g_hist, g_z, xa, da, ga, ma, pa, v, w, z, as_numpy(z0), sign, min_delay, write_first, damped
        )
        t = lambda a: to_torch(a, x)  # noqa: E731
        return t(gx), t(gd), t(gg), t(gm), (t(gp) if damped else None), t(gh), t(gz0), None, None, None, None


# ============================================================================ LFO


def _as_signal(value: Tensor | float, name: str, dtype: torch.dtype, device: torch.device) -> Tensor:
    """A number or a tensor of up to 3 dims as a 3-D tensor (leading dims of size 1 added)."""
    return as_signal(value, None, name, dtype=dtype, device=device)


def lfo_phase(
    rate_hz: Tensor | float,
    n_samples: int,
    sample_rate: float,
    phase: Tensor | None = None,
    *,
    float32_phase: bool = False,
) -> tuple[Tensor, Tensor]:
    """Phase of a low-frequency oscillator, sample by sample, with the phase carried between blocks.

    ``phase[t] = phase0 + 2 pi / sample_rate * sum_{j < t} rate_hz[j]`` (the phase a sample
    sees is the one before the step), wrapped into ``[0, 2 pi)``.

    Args:
        rate_hz: frequency in Hz, a number or a tensor shaped ``(batch|1, 1, n_samples|1)``
            (per-sample rates allowed).
        n_samples: block length.
        sample_rate: in Hz.
        phase: the phase before the block, ``(batch|1, 1, 1)`` radians; ``None`` means 0.
        float32_phase: accumulate like JUCE's ``dsp::Oscillator`` (pedalboard's Chorus and
            Phaser): the increment ``float32(float32(2 pi) * rate) / float32(sample_rate)`` is
            added in float32 and wrapped by subtracting ``float32(2 pi)``. The value is then
            that float32 phase exactly (computed in a compiled loop), and the gradient is the one
            of the exact-arithmetic phase (a straight-through estimator: the float32 rounding has
            no useful derivative). Without it the phase is accumulated in float64.

    Returns:
        ``(phases, end_phase)``: ``(batch|1, 1, n_samples)`` in the dtype of ``rate_hz`` (else of
        ``phase``) and ``(batch|1, 1, 1)`` in the dtype of ``phase`` (keep a float64 phase state
        for long streams), differentiable w.r.t. ``rate_hz`` and ``phase``.

    Devices: CPU only (a compiled numba loop); tensors on another device raise
    :class:`~dspfx.functional.CPUKernelError` (nothing is copied to the CPU behind the caller's back).
    Gradients: w.r.t. ``rate_hz`` and ``phase`` (the unwrapped phase's).
    """
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < 0:
        raise ValueError(f"n_samples must be an int >= 0, got {n_samples!r}")
    if not (isinstance(sample_rate, (int, float)) and math.isfinite(sample_rate) and sample_rate > 0):
        raise ValueError(f"sample_rate must be a positive number, got {sample_rate!r}")
    ref = rate_hz if isinstance(rate_hz, Tensor) else phase
    dtype = ref.dtype if isinstance(ref, Tensor) and ref.is_floating_point() else torch.get_default_dtype()
    device = ref.device if isinstance(ref, Tensor) else torch.device("cpu")
    rate = _as_signal(rate_hz, "rate_hz", dtype, device)
    if rate.shape[1] != 1 or rate.shape[2] not in (1, n_samples):
        raise ValueError(f"rate_hz must be shaped (batch|1, 1, {n_samples}|1), got {tuple(rate.shape)}")
    if phase is None:
        phase = torch.zeros(1, 1, 1, dtype=dtype, device=device)
    phase = _as_signal(phase, "phase", phase.dtype if phase.is_floating_point() else dtype, device)
    if phase.shape[1:] != (1, 1):
        raise ValueError(f"phase must be shaped (batch|1, 1, 1), got {tuple(phase.shape)}")
    batch = max(rate.shape[0], phase.shape[0])
    if rate.shape[0] not in (1, batch) or phase.shape[0] not in (1, batch):
        raise ValueError(f"rate_hz {tuple(rate.shape)} and phase {tuple(phase.shape)} have different batch sizes")

    needs_grad = torch.is_grad_enabled() and (rate.requires_grad or phase.requires_grad)
    if float32_phase:
        phase_f32 = _kernels()
        inc32 = (
            torch.tensor(np.float32(_TWO_PI), dtype=torch.float32) * rate.detach().cpu().to(torch.float32)
        ) / np.float32(sample_rate)
        inc32 = np.ascontiguousarray(inc32.expand(batch, 1, n_samples).reshape(batch, n_samples).numpy())
        p32 = phase.detach().cpu().to(torch.float32).expand(batch, 1, 1).reshape(batch).numpy()
        out, end = phase_f32(inc32, np.ascontiguousarray(p32))
        exact_values = torch.from_numpy(out).to(device=device, dtype=dtype).view(batch, 1, n_samples)
        exact_end = torch.from_numpy(end).to(device=device, dtype=phase.dtype).view(batch, 1, 1)
        if not needs_grad:
            return exact_values, exact_end

    # exact-arithmetic phase (float64 inside), the differentiable path
    inc = rate.to(torch.float64) * (_TWO_PI / float(sample_rate))
    p0 = phase.to(torch.float64)
    if inc.shape[-1] == 1:
        steps = torch.arange(n_samples + 1, dtype=torch.float64, device=device)
        total = p0 + inc * steps  # (B, 1, n + 1)
    else:
        total = p0 + torch.cat([torch.zeros_like(inc[..., :1]), torch.cumsum(inc, -1)], dim=-1)
    total = total.expand(batch, 1, n_samples + 1)
    if not float32_phase:
        wrapped = torch.remainder(total, _TWO_PI)
        values = total + (wrapped - total).detach()
    else:
        exact = torch.cat([exact_values.to(torch.float64), exact_end.to(torch.float64).view(batch, 1, 1)], dim=-1)
        values = total + (exact - total).detach()
    # the carried phase keeps its own dtype (a float64 phase state does not lose precision at
    # every block boundary when the audio is float32)
    return values[..., :n_samples].to(dtype), values[..., n_samples:].to(phase.dtype)


def lfo(phase: Tensor, shape: str = "sine") -> Tensor:
    """LFO waveform of a phase (radians): ``"sine"`` is ``sin(phase)``; ``"triangle"`` has the
    same zero crossings and peaks (0 at phase 0, +1 at pi/2, -1 at 3 pi/2), linear in between.

    Args:
        phase: any shape, radians.
        shape: ``"sine"`` or ``"triangle"``.

    Returns:
        Values in ``[-1, 1]``, shaped like ``phase``; differentiable (the triangle's slope is
        ``+-2/pi``, one-sided at its corners).
    """
    if shape == "sine":
        return torch.sin(phase)
    if shape == "triangle":
        u = torch.remainder(phase / _TWO_PI + 0.25, 1.0)
        return 1.0 - 4.0 * (u - 0.5).abs()
    raise ValueError(f"LFO shape must be one of {', '.join(LFO_SHAPES)}; got {shape!r}")


# ============================================================================ delay line


def delay_line_length(max_delay_samples: float) -> int:
    """Samples of history a line needs for delays up to ``max_delay_samples``: ``ceil(max) + 1``."""
    if not (isinstance(max_delay_samples, (int, float, np.integer, np.floating)) and math.isfinite(max_delay_samples)
            and max_delay_samples >= 0):
        raise ValueError(f"max_delay_samples must be a finite number >= 0, got {max_delay_samples!r}")
    return int(math.ceil(max_delay_samples)) + 1


def modulated_delay_state(
    batch: int,
    channels: int,
    max_delay_samples: float,
    *,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> tuple[Tensor, Tensor]:
    """The silent state of :func:`modulated_delay`: ``(history, last_wet)`` shaped
    ``(batch, channels, delay_line_length(max_delay_samples))`` and ``(batch, channels, 1)``."""
    length = delay_line_length(max_delay_samples)
    hist = torch.zeros(batch, channels, length, dtype=dtype, device=device)
    return hist, torch.zeros(batch, channels, 1, dtype=dtype, device=device)


def modulated_delay(
    x: Tensor,
    delay_samples: Tensor | float,
    feedback: Tensor | float = 0.0,
    mix: Tensor | float = 1.0,
    state: tuple[Tensor, Tensor] | None = None,
    *,
    max_delay_samples: float | None = None,
    feedback_sign: float = 1.0,
) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """Fractional delay line with feedback; the delay may change every sample.

    Per sample (see the module docstring): write ``v = x + feedback_sign * feedback * w_prev``,
    then read ``w`` at ``delay_samples`` back with linear interpolation (``0`` reads the sample
    just written), output ``(1 - mix) * x + mix * w``. Delays are clamped into
    ``[0, L - 1]`` with ``L`` the history length (like JUCE's ``DelayLine::setDelay``); the
    gradient is zero where the clamp acts.

    Args:
        x: ``(batch, channels, samples)`` real tensor.
        delay_samples: delay in samples (fractional), a number or a tensor broadcastable to
            ``x`` (per sample, per batch item, per channel).
        feedback: gain of the wet signal fed back into the line, broadcastable to ``x``.
            The loop is stable for ``|feedback| < 1``.
        mix: wet fraction, broadcastable to ``x`` (1: wet only).
        state: ``(history, last_wet)`` from :func:`modulated_delay_state` or a previous block:
            the last ``L`` written samples (oldest first) ``(batch, channels, L)`` and the last
            wet sample ``(batch, channels, 1)``; ``None`` means silence (then
            ``max_delay_samples`` is required).
        max_delay_samples: longest delay the line holds; sets ``L = ceil(max) + 1`` when
            ``state`` is None, else must agree with the state's length (or be None).
        feedback_sign: ``+1`` adds the feedback (flanger), ``-1`` subtracts it (JUCE's and
            pedalboard's Chorus).

    Returns:
        ``(y, state)`` with ``y`` shaped like ``x`` and the state after the block, so that
        blocks with carried state equal one call. Differentiable w.r.t. ``x``,
        ``delay_samples``, ``feedback``, ``mix`` and the state (exact backward, see the module
        docstring).

    Raises:
        TypeError, ValueError: non-tensor or non-floating ``x``, bad shapes, missing
            ``max_delay_samples``, a state of the wrong shape.

    Reference: JUCE ``dsp::DelayLine`` (linear interpolation) as used by ``dsp::Chorus``.

    Devices: CPU only (a compiled numba loop); tensors on another device raise
    :class:`~dspfx.functional.CPUKernelError` (nothing is copied to the CPU behind the caller's back).
    Gradients: exact (hand-written adjoint) w.r.t. ``x``, the delay, the gains and the state;
    zero where the delay clamp acts.
    """
    check_signal(x)
    batch, channels, n = x.shape
    if state is None:
        if max_delay_samples is None:
            raise ValueError("modulated_delay needs max_delay_samples when no state is given")
        state = modulated_delay_state(batch, channels, max_delay_samples, dtype=x.dtype, device=x.device)
    if not (isinstance(state, (tuple, list)) and len(state) == 2 and all(isinstance(s, Tensor) for s in state)):
        raise TypeError("state must be a (history, last_wet) pair of tensors from modulated_delay_state")
    hist, w0 = state
    length = hist.shape[-1]
    if hist.ndim != 3 or tuple(hist.shape[:2]) != (batch, channels) or length < 1:
        raise ValueError(
            f"state history must be shaped (batch, channels, L) = ({batch}, {channels}, L), got {tuple(hist.shape)}"
        )
    if tuple(w0.shape) != (batch, channels, 1):
        raise ValueError(f"state last_wet must be shaped {(batch, channels, 1)}, got {tuple(w0.shape)}")
    if max_delay_samples is not None and delay_line_length(max_delay_samples) != length:
        raise ValueError(
            f"max_delay_samples={max_delay_samples} needs a history of {delay_line_length(max_delay_samples)} "
            f"samples, but the state holds {length}"
        )
    signals = []
    for value, name in ((delay_samples, "delay_samples"), (feedback, "feedback"), (mix, "mix")):
        s = _as_signal(value, name, x.dtype, x.device)
        try:
            s = torch.broadcast_to(s, x.shape)
        except RuntimeError:
            raise ValueError(
                f"{name} shaped {tuple(s.shape)} does not broadcast to x shaped {tuple(x.shape)}"
            ) from None
        signals.append(s)
    if n == 0:
        return x, (hist, w0)
    rows = batch * channels
    device = x.device
    cpu = torch.device("cpu")
    args = [t.to(cpu).reshape(rows, -1) for t in (x, *signals, hist.to(x.dtype))]
    args.append(w0.to(x.dtype).to(cpu).reshape(rows))
    x_r, d_r, g_r, m_r, hist_r, w0_r = args
    y, hist_out, w_out = DelayLoop.apply(x_r, d_r, g_r, m_r, None, hist_r, w0_r, float(feedback_sign), True, 0.0, True)
    y = y.reshape(batch, channels, n).to(device)
    return y, (hist_out.reshape(batch, channels, length).to(device), w_out.reshape(batch, channels, 1).to(device))
