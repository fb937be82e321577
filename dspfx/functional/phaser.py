"""Phaser: a cascade of first-order allpasses (topology-preserving form) swept by an LFO, with
feedback around the cascade and a dry/wet mix (pedalboard's / JUCE's ``Phaser``).

Per sample ``t`` and channel, with ``N`` stages, stage states ``s_k`` and the feedback sample
``f`` (``G = g / (1 + g)``, ``g = tan(pi * fc / sample_rate)``)::

    u = x[t] - f                                   # feedback is subtracted
    for k in 1 .. N:                               # TPT first-order allpass
        v = G[t] * (u - s_k);  lp = v + s_k;  s_k = lp + v;  u = 2 * lp - u
    w[t] = u;  f = feedback[t] * u                 # the wet signal, fed back one sample later
    y[t] = (1 - mix[t]) * x[t] + mix[t] * w[t]

The allpass cutoff ``fc`` follows an LFO that is updated every 4 samples and held in between
(pedalboard's ``maxUpdateCounter``): at an update ``j``,
``m = clip(-sin(phase_j) * 0.5 * depth + c0, 0, 1)``, ``fc = 20 * (fmax / 20) ** m`` with
``c0 = log10(centre / 20) / log10(1000)`` and ``fmax = min(20000, 0.49 * sample_rate)``; the phase
advances by ``2 pi rate * 4 / sample_rate`` per update, accumulated in float32 and wrapped at
``2 pi`` like pedalboard (JUCE ``dsp::Oscillator``: ``sin(phase - pi)``, phase starting at 0).
``c0`` always uses 20 kHz as the top of the log range, because pedalboard computes it when the
centre is set, with the sample rate JUCE was last prepared with (44100 at construction, where
``min(20000, 0.49 * 44100) = 20000``), whatever rate it later renders at.

float32 inputs are rendered in float32 with pedalboard's operation order (the LFO and cutoff
values by a small compiled loop calling libm's float functions, the recursion likewise), which
reproduces its renders bit for bit in practice, also where ``|feedback| = 1`` makes the loop
marginally stable and rounding differences would otherwise grow; float64 inputs are rendered in
float64 (ESR ~1e-9 against pedalboard, except near ``|feedback| = 1``).

Only the recursion is compiled (numba, ``cache=True``): :class:`PhaserCascade` runs it forward
and its exact adjoint backwards in time, giving gradients w.r.t. the input, the per-sample
allpass coefficient ``G``, the per-sample feedback and the initial state. The LFO, the cutoff
map and the mix are torch code, so gradients reach rate, depth and centre frequency through them.

Reference: pedalboard ``Phaser`` (JUCE 6 ``dsp::Phaser``, ``dsp::FirstOrderTPTFilter``);
V. Zavalishin, "The Art of VA Filter Design" (TPT one-pole / allpass).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
from numba import njit
from torch import Tensor

from dspfx.functional._compiled import as_numpy, to_torch
from dspfx.functional.control import as_signal

__all__ = [
    "PHASER_UPDATE_INTERVAL",
    "PhaserState",
    "PhaserCascade",
    "allpass_coefficient",
    "phaser_cascade",
    "phaser_cutoff_hz",
    "phaser_init_state",
    "phaser_lfo_phase",
    "phaser",
]

#: pedalboard recomputes the LFO and the allpass cutoff every this many samples and holds them.
PHASER_UPDATE_INTERVAL = 4
#: Top of the log range used for the centre frequency's position (see the module docstring).
_CENTRE_RANGE_MAX_HZ = 20000.0
_MIN_CUTOFF_HZ = 20.0
_TWO_PI32 = np.float32(2.0 * math.pi)


class PhaserState(NamedTuple):
    """Everything a phaser carries between blocks.

    Attributes:
        stages: ``(batch, channels, n_stages)`` allpass states ``s_k``.
        feedback: ``(batch, channels)`` the feedback sample ``f`` subtracted from the next input.
        lfo_phase: ``(batch,)`` LFO phase in radians used at the next update (a float32 value,
            held in the state's dtype).
        coefficient: ``(batch,)`` the allpass coefficient ``G`` held until the next update.
        counter: position within the 4-sample hold (0 means: the next sample updates).
    """

    stages: Tensor
    feedback: Tensor
    lfo_phase: Tensor
    coefficient: Tensor
    counter: int


def phaser_init_state(
    batch: int, channels: int, n_stages: int = 6, *, dtype: torch.dtype | None = None, device=None
) -> PhaserState:
    """The state a render starts from (pedalboard's reset): zero states, LFO phase 0, counter 0."""
    dtype = dtype or torch.get_default_dtype()
    z = torch.zeros(batch, channels, n_stages, dtype=dtype, device=device)
    return PhaserState(
        z,
        torch.zeros(batch, channels, dtype=dtype, device=device),
        torch.zeros(batch, dtype=dtype, device=device),
        torch.zeros(batch, dtype=dtype, device=device),
        0,
    )


# ------------------------------------------------------------------------------------------
# compiled kernels (float64 inside)
# ------------------------------------------------------------------------------------------


@njit(cache=True, nogil=True)
def _cascade_forward(x, g, fb, s, f, two, w, s_hist, f_hist):  # pragma: no cover - compiled
    # in the arrays' own dtype (float32: pedalboard's arithmetic, operation for operation);
    # s (rows, N) and f (rows,) are updated in place; histories recorded when they have samples
    rows, n = x.shape
    n_stages = s.shape[1]
    record = s_hist.shape[1] > 0
    for r in range(rows):
        fr = f[r]
        for t in range(n):
            if record:
                for k in range(n_stages):
                    s_hist[r, t, k] = s[r, k]
                f_hist[r, t] = fr
            gt = g[r, t]
            u = x[r, t] - fr
            for k in range(n_stages):
                v = gt * (u - s[r, k])
                lp = v + s[r, k]
                s[r, k] = lp + v
                u = two * lp - u
            w[r, t] = u
            fr = fb[r, t] * u
        f[r] = fr


@njit(cache=True, nogil=True)
def _cascade_backward(gw, gs1, gf1, x, g, fb, s_hist, f_hist):  # pragma: no cover - compiled
    rows, n = x.shape
    n_stages = gs1.shape[1]
    gx = np.empty((rows, n))
    gg = np.empty((rows, n))
    gfb = np.empty((rows, n))
    gs0 = gs1.copy()
    gf0 = gf1.copy()
    u = np.empty(n_stages + 1)
    for r in range(rows):
        ls = gs0[r]  # adjoints of the stage states after the current step
        lf = gf0[r]
        for t in range(n - 1, -1, -1):
            gt = g[r, t]
            # recompute the step's stage inputs
            u[0] = x[r, t] - f_hist[r, t]
            for k in range(n_stages):
                sk = s_hist[r, t, k]
                v = gt * (u[k] - sk)
                u[k + 1] = 2.0 * v + 2.0 * sk - u[k]
            ub = gw[r, t] + fb[r, t] * lf
            gfb[r, t] = lf * u[n_stages]
            acc = 0.0
            for k in range(n_stages - 1, -1, -1):
                sk = s_hist[r, t, k]
                vb = 2.0 * ub + 2.0 * ls[k]
                ls[k] = 2.0 * ub + ls[k] - gt * vb
                acc += vb * (u[k] - sk)
                ub = gt * vb - ub
            gg[r, t] = acc
            gx[r, t] = ub
            lf = -ub
        gf0[r] = lf
    return gx, gg, gfb, gs0, gf0


@njit(cache=True, nogil=True)
def _phase_float32(increments, phase0, two_pi):  # pragma: no cover - compiled
    # JUCE dsp::Phase::advance in float32: returns the phase, then adds and wraps at 2 pi
    rows, k_max = increments.shape
    out = np.empty((rows, k_max), dtype=np.float32)
    last = np.empty(rows, dtype=np.float32)
    for r in range(rows):
        p = phase0[r]
        for j in range(k_max):
            out[r, j] = p
            p = p + increments[r, j]
            while p >= two_pi:
                p = p - two_pi
        last[r] = p
    return out, last


@njit(cache=True, nogil=True)
def _pedalboard_coefficients(inc, half_depth, centre, phase0, fmax, sample_rate):  # pragma: no cover
    # float32 throughout, libm's float functions, JUCE's operation order: Oscillator (sin(phase - pi),
    # phase advanced after use), mapFromLog10 / mapToLog10, FirstOrderTPTFilter::update (tan in
    # double of the float cutoff, then G = g / (1 + g) in float)
    rows, k_max = inc.shape
    two_pi = np.float32(6.2831854820251465)
    pi = np.float32(3.1415927410125732)
    zero = np.float32(0.0)
    one = np.float32(1.0)
    ten = np.float32(10.0)
    log_min = math.log10(np.float32(20.0))
    log_centre_max = math.log10(np.float32(20000.0))
    log_max = math.log10(fmax)
    out = np.empty((rows, k_max), dtype=np.float32)
    last = np.empty(rows, dtype=np.float32)
    for r in range(rows):
        p = phase0[r]
        for j in range(k_max):
            c0 = (math.log10(centre[r, j]) - log_min) / (log_centre_max - log_min)
            m = math.sin(p - pi) * half_depth[r, j] + c0
            if m < zero:
                m = zero
            if m > one:
                m = one
            fc = math.pow(ten, m * (log_max - log_min) + log_min)
            g = np.float32(math.tan(math.pi * np.float64(fc) / sample_rate))
            out[r, j] = g / (one + g)
            p = p + inc[r, j]
            while p >= two_pi:
                p = p - two_pi
        last[r] = p
    return out, last


class PhaserCascade(torch.autograd.Function):
    """The phaser's recursion: ``N`` TPT allpasses in series with one-sample feedback around them.

    ``apply(x, coefficient, feedback, stages, feedback_sample) -> (wet, stages, feedback_sample)``
    with ``x``, ``coefficient`` (``G``) and ``feedback`` shaped ``(rows, samples)``, ``stages``
    ``(rows, n_stages)`` and ``feedback_sample`` ``(rows,)``. The forward is a compiled loop
    (float64 inside); the backward is its exact adjoint, a second compiled loop run backwards in
    time over the recorded states (see the module docstring for the recursion). float32 inputs
    run in float32 arithmetic, operation for operation like pedalboard (so renders agree bit for
    bit even where the loop is marginally stable, ``|feedback| = 1``); other dtypes in float64.
    The backward runs in float64 over the recorded states. Runs on the CPU only;
    tensors on another device raise :class:`~dspfx.functional.CPUKernelError`.
    """

    @staticmethod
    def forward(ctx, x, coefficient, feedback, stages, feedback_sample):
        record = any(ctx.needs_input_grad)
        dtype = np.float32 if x.dtype == torch.float32 else np.float64
        arr = lambda t: as_numpy(t, torch.float32 if dtype == np.float32 else torch.float64)  # noqa: E731
        xa = arr(x)
        rows, n = xa.shape
        n_stages = stages.shape[-1]
        s = arr(stages).copy()
        f = arr(feedback_sample).copy()
        w = np.empty((rows, n), dtype=dtype)
        s_hist = np.empty((rows, n if record else 0, n_stages), dtype=dtype)
        f_hist = np.empty((rows, n if record else 0), dtype=dtype)
        _cascade_forward(xa, arr(coefficient), arr(feedback), s, f, dtype(2.0), w, s_hist, f_hist)
        if record:
            ctx.save_for_backward(x, coefficient, feedback)
            ctx.hist = (s_hist.astype(np.float64), f_hist.astype(np.float64))
        return tuple(to_torch(a, x) for a in (w, s, f))

    @staticmethod
    def backward(ctx, g_w, g_s1, g_f1):
        x, coefficient, feedback = ctx.saved_tensors
        s_hist, f_hist = ctx.hist
        rows, n = x.shape
        n_stages = s_hist.shape[2]
        if g_w is None:
            g_w = x.new_zeros(rows, n)
        if g_s1 is None:
            g_s1 = x.new_zeros(rows, n_stages)
        if g_f1 is None:
            g_f1 = x.new_zeros(rows)
        arrays = (as_numpy(t) for t in (g_w, g_s1, g_f1, x, coefficient, feedback))
        return tuple(to_torch(a, x) for a in _cascade_backward(*arrays, s_hist, f_hist))


def phaser_cascade(
    x: Tensor,
    coefficient: Tensor,
    feedback: Tensor | float,
    stages: Tensor,
    feedback_sample: Tensor,
) -> tuple[Tensor, Tensor, Tensor]:
    """Run the allpass cascade with feedback (the wet path of the phaser) with explicit state.

    Args:
        x: ``(batch, channels, samples)`` input.
        coefficient: the TPT allpass coefficient ``G = g / (1 + g)`` per sample, broadcastable to
            ``x`` (see :func:`allpass_coefficient`).
        feedback: feedback gain per sample, a float or broadcastable to ``x``.
        stages: ``(batch, channels, n_stages)`` allpass states before the block.
        feedback_sample: ``(batch, channels)`` feedback sample ``f`` before the block.

    Returns:
        ``(wet, stages, feedback_sample)``: the cascade output shaped like ``x`` and the states
        after the block. Differentiable w.r.t. every input (exact adjoint, see
        :class:`PhaserCascade`).

    Devices: CPU only (a compiled numba loop); tensors on another device raise
    :class:`~dspfx.functional.CPUKernelError` (nothing is copied to the CPU behind the caller's back).
    Gradients: exact (hand-written adjoint) w.r.t. every input.
    """
    batch, channels, n = x.shape
    n_stages = stages.shape[-1]
    if not isinstance(feedback, Tensor):
        feedback = torch.tensor(float(feedback), dtype=x.dtype, device=x.device)
    g = coefficient.to(x.dtype).expand(batch, channels, n).reshape(batch * channels, n)
    a = feedback.to(x.dtype).expand(batch, channels, n).reshape(batch * channels, n)
    w, s1, f1 = PhaserCascade.apply(
        x.reshape(batch * channels, n),
        g,
        a,
        stages.to(x.dtype).reshape(batch * channels, n_stages),
        feedback_sample.to(x.dtype).reshape(batch * channels),
    )
    return w.reshape(batch, channels, n), s1.reshape(batch, channels, n_stages), f1.reshape(batch, channels)


# ------------------------------------------------------------------------------------------
# LFO and cutoff (torch, differentiable)
# ------------------------------------------------------------------------------------------


def allpass_coefficient(cutoff_hz: Tensor, sample_rate: float) -> Tensor:
    """TPT first-order coefficient ``G = g / (1 + g)`` with ``g = tan(pi * cutoff_hz / sample_rate)``.

    Args:
        cutoff_hz: tensor of cutoffs in Hz, ``0 < cutoff_hz < sample_rate / 2``.
        sample_rate: in Hz.

    Returns:
        ``G`` shaped like ``cutoff_hz`` (differentiable).
    """
    g = torch.tan(math.pi * cutoff_hz / sample_rate)
    return g / (1.0 + g)


def phaser_cutoff_hz(lfo_phase: Tensor, depth: Tensor, centre_frequency_hz: Tensor, sample_rate: float) -> Tensor:
    """Allpass cutoff at an LFO update: ``20 * (fmax / 20) ** clip(-sin(phase) * depth / 2 + c0, 0, 1)``.

    ``c0 = log10(centre / 20) / log10(20000 / 20)`` (pedalboard's centre position, always on the
    20 Hz .. 20 kHz range) and ``fmax = min(20000, 0.49 * sample_rate)``.

    Args:
        lfo_phase: LFO phase in radians (any shape, broadcast with the others).
        depth: 0 .. 1.
        centre_frequency_hz: > 0, in Hz.
        sample_rate: in Hz.

    Returns:
        cutoff in Hz, broadcast shape; differentiable (zero gradient where clipped).
    """
    fmax = min(20000.0, 0.49 * float(sample_rate))
    c0 = torch.log10(centre_frequency_hz / _MIN_CUTOFF_HZ) / math.log10(_CENTRE_RANGE_MAX_HZ / _MIN_CUTOFF_HZ)
    lfo = torch.sin(lfo_phase - math.pi)
    m = torch.clamp(lfo * (0.5 * depth) + c0, 0.0, 1.0)
    return _MIN_CUTOFF_HZ * (fmax / _MIN_CUTOFF_HZ) ** m


def phaser_lfo_phase(
    rate_hz: Tensor, phase0: Tensor, sample_rate: float, *, float32_phase: bool = True
) -> tuple[Tensor, Tensor]:
    """LFO phases at consecutive updates (every 4 samples) and the phase after them.

    The phase at update ``j`` is ``phase0 + sum_{i<j} 2 pi rate_i * 4 / sample_rate``.

    Args:
        rate_hz: ``(batch, updates)`` LFO rate at each update, >= 0.
        phase0: ``(batch,)`` phase at the first update (radians, in ``[0, 2 pi)``).
        sample_rate: audio rate in Hz.
        float32_phase: accumulate like pedalboard: float32 increments added in float32 and
            wrapped at ``2 pi`` (the value of the result). The gradient is always the exact
            phase's (``d phase_j / d rate_i = 8 pi / sample_rate`` for ``i < j``), passed
            straight through the rounding, so it is not the derivative of the rounded steps.
            With ``False`` the phase is the exact sum in the working dtype, wrapped (smooth).

    Returns:
        ``(phases (batch, updates), next_phase (batch,))``, dtype of ``rate_hz``.

    Devices: CPU only (a compiled numba loop); tensors on another device raise
    :class:`~dspfx.functional.CPUKernelError` (nothing is copied to the CPU behind the caller's back).
    Gradients: exact w.r.t. the rate and the phase (of the unwrapped phase).
    """
    inc = rate_hz * (2.0 * math.pi * PHASER_UPDATE_INTERVAL / sample_rate)
    exact = phase0.unsqueeze(-1) + torch.cumsum(inc, dim=-1) - inc  # exclusive sum
    exact_next = phase0 + inc.sum(-1)
    if not float32_phase:
        two_pi = 2.0 * math.pi
        wrap = lambda p: p - (torch.floor(p.detach() / two_pi) * two_pi)  # noqa: E731
        return wrap(exact), wrap(exact_next)
    r32 = as_numpy(rate_hz, torch.float32)
    inc32 = (_TWO_PI32 * r32).astype(np.float32) / np.float32(sample_rate / PHASER_UPDATE_INTERVAL)
    values, last = _phase_float32(
        np.ascontiguousarray(inc32, dtype=np.float32), as_numpy(phase0, torch.float32), _TWO_PI32
    )
    values_t, last_t = to_torch(values, rate_hz), to_torch(last, rate_hz)
    # value: pedalboard's float32 phase exactly; gradient: the exact phase's
    return values_t + (exact - exact.detach()), last_t + (exact_next - exact_next.detach())


def _pedalboard_coefficient_values(
    rate_hz: Tensor, depth: Tensor, centre_frequency_hz: Tensor, phase0: Tensor, sample_rate: float
) -> Tensor:
    """pedalboard's float32 allpass coefficients at the updates (values only), (batch, updates)."""
    f32 = lambda t: as_numpy(t, torch.float32)  # noqa: E731
    r32 = f32(rate_hz)
    inc32 = (_TWO_PI32 * r32).astype(np.float32) / np.float32(sample_rate / PHASER_UPDATE_INTERVAL)
    half_depth = (f32(depth) * np.float32(0.5)).astype(np.float32)
    values, _ = _pedalboard_coefficients(
        np.ascontiguousarray(inc32, dtype=np.float32),
        half_depth,
        f32(centre_frequency_hz),
        f32(phase0),
        np.float32(min(20000.0, 0.49 * float(sample_rate))),
        float(sample_rate),
    )
    return torch.from_numpy(values).to(device=rate_hz.device)


# ------------------------------------------------------------------------------------------
# the effect
# ------------------------------------------------------------------------------------------


def _as_signal(value: Tensor | float, name: str, x: Tensor, channels_ok: bool = True) -> Tensor:
    """A control as a (B|1, C|1, T|1) tensor of x's dtype/device."""
    return as_signal(value, x, name, channels=channels_ok)


def _at_updates(c: Tensor, first: int, count: int, batch: int) -> Tensor:
    """(B|1, 1, T|1) -> (batch, count): the control at samples first, first + 4, ..."""
    if c.shape[-1] == 1:
        return c[:, 0, :1].expand(batch, count)
    return c[:, 0, first :: PHASER_UPDATE_INTERVAL][:, :count].expand(batch, count)


def phaser(
    x: Tensor,
    rate_hz: Tensor | float,
    depth: Tensor | float,
    centre_frequency_hz: Tensor | float,
    feedback: Tensor | float,
    mix: Tensor | float,
    sample_rate: float,
    *,
    n_stages: int = 6,
    state: PhaserState | None = None,
    cutoff_hz: Tensor | None = None,
    float32_phase: bool = True,
) -> tuple[Tensor, PhaserState]:
    """Phaser with explicit state: pedalboard's ``Phaser`` (see the module docstring).

    Args:
        x: ``(batch, channels, samples)`` input.
        rate_hz: LFO rate (>= 0), float or ``(batch|1, 1, samples|1)``; sampled at the updates.
        depth: LFO depth 0 .. 1, same shapes.
        centre_frequency_hz: centre of the sweep in Hz (> 0), same shapes.
        feedback: feedback gain (-1 .. 1 is stable), float or ``(batch|1, channels|1, samples|1)``.
        mix: wet fraction, same shapes as ``feedback``.
        sample_rate: in Hz.
        n_stages: number of first-order allpasses (pedalboard: 6).
        state: :class:`PhaserState` before the block (``None``: :func:`phaser_init_state`).
        cutoff_hz: optional ``(batch|1, 1, samples)`` or ``(batch|1, 1, 1)`` allpass cutoff in Hz
            used per sample instead of the LFO (no 4-sample hold); the LFO state still advances,
            so a later block without it goes on where the LFO would be.
        float32_phase: see :func:`phaser_lfo_phase` (True: pedalboard's float32 phase).

    Returns:
        ``(y, state)``: output shaped like ``x`` and the state after the block; rendering in
        blocks with the carried state equals rendering at once. Differentiable w.r.t. ``x``,
        every control, ``cutoff_hz`` and the state's tensors.
    """
    if not isinstance(x, Tensor) or x.ndim != 3 or not x.is_floating_point():
        raise ValueError(
            "x must be a real floating tensor shaped (batch, channels, samples), got "
            f"{tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__}"
        )
    if isinstance(n_stages, bool) or not isinstance(n_stages, int) or n_stages < 1:
        raise ValueError(f"n_stages must be an int >= 1, got {n_stages!r}")
    batch, channels, n = x.shape
    if state is None:
        state = phaser_init_state(batch, channels, n_stages, dtype=x.dtype, device=x.device)
    if not isinstance(state, PhaserState):
        raise TypeError(f"state must be a PhaserState (see phaser_init_state), got {type(state).__name__}")
    if tuple(state.stages.shape) != (batch, channels, n_stages):
        raise ValueError(
            f"state.stages must be shaped (batch, channels, n_stages) = {(batch, channels, n_stages)}, "
            f"got {tuple(state.stages.shape)}"
        )
    rate = _as_signal(rate_hz, "rate_hz", x, channels_ok=False)
    dep = _as_signal(depth, "depth", x, channels_ok=False)
    centre = _as_signal(centre_frequency_hz, "centre_frequency_hz", x, channels_ok=False)
    fb = _as_signal(feedback, "feedback", x)
    wet_mix = _as_signal(mix, "mix", x)

    # LFO updates inside this block: samples first, first + 4, ...
    counter = int(state.counter) % PHASER_UPDATE_INTERVAL
    first = (-counter) % PHASER_UPDATE_INTERVAL
    count = max(0, -(-(n - first) // PHASER_UPDATE_INTERVAL))
    phase0 = state.lfo_phase.to(x.dtype)
    held = state.coefficient.to(x.dtype).reshape(batch, 1)
    if count > 0:
        rate_u = _at_updates(rate, first, count, batch)
        depth_u = _at_updates(dep, first, count, batch)
        centre_u = _at_updates(centre, first, count, batch)
        phases, next_phase = phaser_lfo_phase(rate_u, phase0, sample_rate, float32_phase=float32_phase)
        g_upd = allpass_coefficient(phaser_cutoff_hz(phases, depth_u, centre_u, sample_rate), sample_rate)
        if float32_phase and x.dtype == torch.float32:
            # value: pedalboard's float32 coefficients bit for bit; gradient: the torch formula's
            g32 = _pedalboard_coefficient_values(rate_u, depth_u, centre_u, phase0, sample_rate)
            g_upd = g32 + (g_upd - g_upd.detach())
        # held value until the first update, then each update's value for 4 samples
        repeated = g_upd.unsqueeze(-1).expand(batch, count, PHASER_UPDATE_INTERVAL).reshape(batch, -1)
        coefficient = torch.cat([held.expand(batch, first), repeated], dim=-1)[:, :n]  # (batch, n)
        new_held = g_upd[:, -1]
    else:
        next_phase = phase0
        coefficient = held.expand(batch, n)
        new_held = held[:, 0]
    if cutoff_hz is not None:
        cut = _as_signal(cutoff_hz, "cutoff_hz", x, channels_ok=False)
        coefficient = allpass_coefficient(cut[:, 0, :], sample_rate).expand(batch, n)
    wet, stages, fb_sample = phaser_cascade(x, coefficient.unsqueeze(1), fb, state.stages, state.feedback)
    y = (1.0 - wet_mix) * x + wet_mix * wet
    new_state = PhaserState(stages, fb_sample, next_phase, new_held, (counter + n) % PHASER_UPDATE_INTERVAL)
    return y, new_state
