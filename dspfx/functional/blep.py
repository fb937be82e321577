"""Band-limited classic oscillators (PolyBLEP / PolyBLAMP and additive) and the ADSR envelope.

The math of the subtractive synth (:mod:`dspfx.synths.subtractive`):

- :func:`accumulate_phase`: phase in turns from per-sample frequencies, accumulated in float64
  and wrapped to [0, 1) (also used by the FM synth);
- :func:`poly_blep`, :func:`poly_blamp`: the two-sample polynomial band-limited step / ramp
  residuals (Välimäki & Huovilainen 2007; Esqueda, Välimäki & Bilbao 2016);
- :func:`oscillator_polyblep`, :func:`oscillator_additive`, :func:`oscillator`: saw, square
  (pulse width) and triangle, by PolyBLEP/BLAMP, by a sum of harmonics below Nyquist, and the
  hybrid of both that the ``oscillator`` unit renders;
- :func:`adsr_envelope`: a linear-segment ADSR envelope driven by a 0/1 gate, in closed form per
  segment, with explicit state so that block-wise rendering equals offline rendering.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .recursive import iir

__all__ = [
    "WAVEFORMS",
    "accumulate_phase",
    "poly_blep",
    "poly_blamp",
    "oscillator_polyblep",
    "oscillator_additive",
    "oscillator",
    "adsr_envelope",
]

WAVEFORMS = ("saw", "square", "triangle")


def _check_waveform(waveform: str) -> None:
    if waveform not in WAVEFORMS:
        raise ValueError(f"waveform must be one of {WAVEFORMS}, got {waveform!r}")


def accumulate_phase(increment: Tensor, initial: Tensor) -> tuple[Tensor, Tensor]:
    """Phase in turns, sample by sample, wrapped to [0, 1).

    ``phase[n] = frac(initial + sum_{k<n} increment[k])``: sample 0 sits at the initial phase, and
    the phase after the block is returned for the next block. The cumulative sum runs in float64
    (exact to ~1e-16 turns per sample) and the result is cast back to ``increment``'s dtype.

    Args:
        increment: ``(..., samples)`` phase increments in turns per sample (``f / sample_rate``).
        initial: phase at sample 0, in turns, broadcastable to ``increment[..., :1]``.

    Returns:
        ``(phase, final)``: ``phase`` like ``increment``; ``final`` the float64 wrapped phase
        after the last sample, shaped ``increment[..., :1]`` (after broadcasting).
        Differentiable w.r.t. ``increment`` (the wrap has unit derivative).
    """
    inc = increment.to(torch.float64)
    total = initial.to(torch.float64) + torch.cumsum(inc, dim=-1)
    phase = total - inc
    phase = phase - torch.floor(phase).detach()
    final = total[..., -1:]
    final = final - torch.floor(final).detach()
    return phase.to(increment.dtype), final


def poly_blep(t: Tensor, dt: Tensor) -> Tensor:
    """Two-sample polynomial band-limited step residual (PolyBLEP).

    Args:
        t: phase in turns, [0, 1); the step sits at ``t = 0``.
        dt: phase increment per sample (``f0 / sample_rate``), broadcastable to ``t``, in (0, 0.5].

    Returns:
        The residual to add for a step of +2 (subtract for -2): ``-(1 - t/dt)^2`` just after the
        step, ``(1 + (t - 1)/dt)^2`` just before it, 0 elsewhere.
    """
    after = t < dt
    before = t > 1 - dt
    x_after = (t / dt).clamp(max=1.0)
    x_before = ((t - 1) / dt).clamp(min=-1.0)
    r_after = -(1 - x_after) ** 2
    r_before = (1 + x_before) ** 2
    zero = torch.zeros((), dtype=t.dtype, device=t.device)
    return torch.where(after, r_after, torch.where(before, r_before, zero))


def poly_blamp(t: Tensor, dt: Tensor) -> Tensor:
    """Two-sample polynomial band-limited ramp residual (PolyBLAMP): the integral of
    :func:`poly_blep` / 2, in samples.

    Multiply by the slope change in amplitude per sample and add: ``(1 + tau)^3 / 6`` for the
    sample before the corner (``tau = (t - 1)/dt`` in (-1, 0)), ``(1 - tau)^3 / 6`` for the sample
    after it (``tau = t/dt`` in [0, 1)), 0 elsewhere.
    """
    after = t < dt
    before = t > 1 - dt
    x_after = (t / dt).clamp(max=1.0)
    x_before = ((t - 1) / dt).clamp(min=-1.0)
    r_after = (1 - x_after) ** 3 / 6
    r_before = (1 + x_before) ** 3 / 6
    zero = torch.zeros((), dtype=t.dtype, device=t.device)
    return torch.where(after, r_after, torch.where(before, r_before, zero))


def _wrap(t: Tensor) -> Tensor:
    return t - torch.floor(t).detach()


def oscillator_polyblep(waveform: str, phase: Tensor, dt: Tensor, pulse_width: Tensor | float = 0.5) -> Tensor:
    """Saw, square or triangle corrected by PolyBLEP (steps) or PolyBLAMP (corners).

    Waveforms (phase ``t`` in turns): saw ``2t - 1``; square ``+1`` for ``t < pulse_width`` else
    ``-1``, minus its mean ``2 pulse_width - 1`` (no DC); triangle ``-1 + 4t`` rising to ``+1`` at
    ``t = 1/2`` and falling back (the integral of the 50 % square).

    Args:
        waveform: ``"saw"``, ``"square"`` or ``"triangle"``.
        phase: ``(..., samples)`` phase in turns, [0, 1).
        dt: ``f0 / sample_rate`` per sample, broadcastable to ``phase``; must be in (0, 0.5).
        pulse_width: square duty cycle in (0, 1), broadcastable.

    Returns:
        Tensor like ``phase``. Residual aliasing grows with ``dt``; see :func:`oscillator`.
    """
    _check_waveform(waveform)
    t = phase
    if waveform == "saw":
        return 2 * t - 1 - poly_blep(t, dt)
    if waveform == "square":
        pw = torch.as_tensor(pulse_width, dtype=t.dtype, device=t.device)
        naive = torch.where(t < pw, 1.0, -1.0).to(t.dtype)
        y = naive + poly_blep(t, dt) - poly_blep(_wrap(t - pw), dt)
        return y - (2 * pw - 1)
    naive = torch.where(t < 0.5, -1 + 4 * t, 3 - 4 * t)
    slope_change = 8 * dt  # amplitude per sample: +8 dt at t = 0, -8 dt at t = 1/2
    return naive + slope_change * (poly_blamp(t, dt) - poly_blamp(_wrap(t - 0.5), dt))


def oscillator_additive(
    waveform: str,
    phase: Tensor,
    dt: Tensor,
    pulse_width: Tensor | float = 0.5,
    n_harmonics: int = 40,
) -> Tensor:
    """The same waveforms as :func:`oscillator_polyblep` as a sum of their harmonics below Nyquist.

    Harmonic ``k`` (1 .. ``n_harmonics``) is kept where ``k * dt < 1/2``; nothing folds back.
    Series: saw ``-(2/pi) sum sin(2 pi k t)/k``; square ``(4/(pi k)) sin(pi k w) cos(2 pi k t -
    pi k w)``; triangle ``-(8/pi^2) sum_{k odd} cos(2 pi k t)/k^2``.

    Args:
        waveform, phase, dt, pulse_width: as in :func:`oscillator_polyblep`.
        n_harmonics: the most harmonics summed (cost grows linearly with it).

    Returns:
        Tensor like ``phase``.

    Devices: CPU (a compiled numba loop) and any torch device (a torch path, same results up to
    rounding).
    Gradients: w.r.t. the phase and the amplitudes (a hand-written adjoint on the CPU).
    """
    _check_waveform(waveform)
    from . import oscillators as _osc

    if _osc._COMPILED_BANK and waveform == "saw" and phase.device.type == "cpu" and phase.ndim >= 1 and phase.numel():
        # the saw is a harmonic sum with fixed weights -2 / (pi k) and a prefix of kept harmonics:
        # the compiled harmonic bank (exact gradient w.r.t. the phase; the mask has none, as below)
        from .oscillators import _HarmonicSum, _harmonics_below_nyquist

        n = phase.shape[-1]
        dt_t = torch.as_tensor(dt, dtype=phase.dtype, device=phase.device)
        shape = torch.broadcast_shapes(phase.shape, dt_t.shape)
        kept = _harmonics_below_nyquist(dt_t.expand(shape).reshape(-1, n), n_harmonics, 1.0)
        k = torch.arange(1, n_harmonics + 1, dtype=phase.dtype, device=phase.device)
        weights = (-2 / (math.pi * k)).reshape(1, 1, -1)
        y = _HarmonicSum.apply(phase.expand(shape).reshape(-1, n), weights, kept)
        return y.to(phase.dtype).reshape(shape)
    k = torch.arange(1, n_harmonics + 1, dtype=phase.dtype, device=phase.device)
    t = phase.unsqueeze(-1)
    dtk = torch.as_tensor(dt, dtype=phase.dtype, device=phase.device).unsqueeze(-1)
    keep = (k * dtk < 0.5).to(phase.dtype)
    arg = 2 * math.pi * k * t
    if waveform == "saw":
        terms = torch.sin(arg) * (-2 / (math.pi * k))
    elif waveform == "square":
        pw = torch.as_tensor(pulse_width, dtype=phase.dtype, device=phase.device).unsqueeze(-1)
        terms = 4 / (math.pi * k) * torch.sin(math.pi * k * pw) * torch.cos(arg - math.pi * k * pw)
    else:
        odd = (k % 2 == 1).to(phase.dtype)
        terms = torch.cos(arg) * (-8 / math.pi**2 * odd / k**2)
    return (terms * keep).sum(-1)


def oscillator(
    waveform: str,
    phase: Tensor,
    dt: Tensor,
    pulse_width: Tensor | float = 0.5,
    additive_harmonics: int = 32,
) -> Tensor:
    """Band-limited oscillator: PolyBLEP at low f0, exact additive synthesis at high f0.

    Where ``f0`` leaves at most ``additive_harmonics`` (``K``) harmonics below Nyquist
    (``dt >= 1/(2K)``) the waveform is the sum of its harmonics below Nyquist (no aliasing at all);
    below ``0.8/(2K)`` it is the PolyBLEP/BLAMP waveform; in between the two are crossfaded
    linearly in ``dt`` (the additive branch then sums up to ``1.25 K`` harmonics, i.e. all of them).
    The additive branch is only computed when some sample needs it.

    Args:
        waveform, phase, dt, pulse_width: as in :func:`oscillator_polyblep`.
        additive_harmonics: ``K`` above.

    Returns:
        Tensor like ``phase``. Differentiable w.r.t. ``phase``, ``dt`` and ``pulse_width``.
    """
    dt = torch.as_tensor(dt, dtype=phase.dtype, device=phase.device)
    hi = 1.0 / (2 * additive_harmonics)
    lo = 0.8 * hi
    blep = oscillator_polyblep(waveform, phase, dt.clamp(max=0.49), pulse_width)
    with torch.no_grad():
        need_additive = bool((dt > lo).any())
    if not need_additive:
        return blep
    add = oscillator_additive(waveform, phase, dt, pulse_width, math.ceil(1.25 * additive_harmonics))
    w = ((dt - lo) / (hi - lo)).clamp(0.0, 1.0)
    return blep + w * (add - blep)


def _segment_on(tau: Tensor, attack: Tensor, decay: Tensor, sustain: Tensor) -> tuple[Tensor, Tensor]:
    """Gate-on segment: level = alpha * start_level + beta at ``tau`` samples after gate-on."""
    alpha = (1 - tau / attack).clamp(min=0.0)
    ramp_up = tau / attack
    into_decay = ((tau - attack) / decay).clamp(max=1.0)
    beta = torch.where(tau < attack, ramp_up, 1 - (1 - sustain) * into_decay)
    return alpha, beta


def _segment_off(tau: Tensor, release: Tensor) -> tuple[Tensor, Tensor]:
    """Gate-off segment: level = alpha * level_at_gate_off."""
    alpha = (1 - tau / release).clamp(min=0.0)
    return alpha, torch.zeros_like(alpha)


def adsr_envelope(
    gate: Tensor,
    attack: Tensor,
    decay: Tensor,
    sustain: Tensor,
    release: Tensor,
    state: tuple[Tensor, Tensor, Tensor] | None = None,
) -> tuple[Tensor, tuple[Tensor, Tensor, Tensor]]:
    """Linear-segment ADSR envelope of a 0/1 gate, in closed form per segment.

    The envelope is a continuous function of time sampled at the sample instants; gate edges
    fall on samples. At gate-on (sample ``e``, level ``L`` there) it rises linearly from ``L`` to 1,
    reached exactly ``attack`` samples after ``e`` (whatever ``L``), then falls linearly to ``sustain`` over ``decay``
    samples and holds. At gate-off (level ``L``) it falls linearly to 0 over ``release`` samples.
    Retriggering and early release start from the level reached, so the envelope is continuous.

    Vectorised: per sample, the time since the last gate edge comes from a cumulative max of
    edge positions; the level at each edge obeys the linear recursion
    ``L_e = alpha_prev(tau) L_(e-1) + beta_prev(tau)`` (identity between edges), solved by
    :func:`dspfx.functional.iir`; the level is then ``alpha(tau) L + beta(tau)``.

    Args:
        gate: ``(batch, samples)`` bool or 0/1 tensor (``True``/1 = key held).
        attack, decay, release: segment lengths in samples, ``> 0``, broadcastable to
            ``(batch, samples)``.
        sustain: sustain level in [0, 1], broadcastable to ``(batch, samples)``.
        state: ``(gate_last, tau_last, level_at_edge)``, each ``(batch,)`` float64 / dtype:
            the gate at the previous block's last sample, samples since the last edge there, and
            the level at that edge. ``None``: gate off for ever, level 0.

    Returns:
        ``(envelope, state)``: envelope ``(batch, samples)`` in the dtype of ``attack``;
        differentiable w.r.t. the segment lengths and the sustain level (piecewise linear in
        time, kinks at the segment ends).
    """
    batch, n = gate.shape
    dtype = torch.promote_types(torch.as_tensor(attack).dtype, torch.as_tensor(sustain).dtype)
    dev = gate.device
    if state is None:
        state = (
            torch.zeros(batch, dtype=torch.float64, device=dev),
            torch.zeros(batch, dtype=torch.float64, device=dev),
            torch.zeros(batch, dtype=dtype, device=dev),
        )
    gate_last, tau_last, level_last = state
    g = gate > 0.5
    g_prev = torch.cat([gate_last.reshape(batch, 1) > 0.5, g[:, :-1]], dim=1)
    edge = g != g_prev
    idx = torch.arange(n, device=dev).expand(batch, n)
    last_edge = torch.cummax(torch.where(edge, idx, torch.full_like(idx, -1)), dim=1).values
    tau64 = torch.where(last_edge >= 0, (idx - last_edge).to(torch.float64), tau_last.reshape(batch, 1) + 1 + idx)
    tau_before = torch.cat([tau_last.reshape(batch, 1), tau64[:, :-1]], dim=1) + 1  # previous segment, continued
    tau = tau64.to(dtype)
    tau_b = tau_before.to(dtype)
    shape = (batch, n)
    attack, decay, sustain, release = (torch.as_tensor(v, dtype=dtype, device=dev).expand(shape) for v in (attack, decay, sustain, release))

    # level at each edge: L = c * L_prev + d, with (c, d) the previous segment's map at that time
    a_on_b, b_on_b = _segment_on(tau_b, attack, decay, sustain)
    a_off_b, _ = _segment_off(tau_b, release)
    c = torch.where(edge, torch.where(g_prev, a_on_b, a_off_b), torch.ones_like(tau_b))
    d = torch.where(edge & g_prev, b_on_b, torch.zeros_like(tau_b))
    coef_a = torch.stack([torch.ones_like(c), -c], dim=-1).unsqueeze(1)  # (batch, 1, n, 2)
    level_edge, _ = iir(d.unsqueeze(1), torch.ones(1, dtype=dtype, device=dev), coef_a, (d.new_zeros(batch, 1, 0), level_last.to(dtype).reshape(batch, 1, 1)))
    level_edge = level_edge.squeeze(1)

    a_on, b_on = _segment_on(tau, attack, decay, sustain)
    a_off, _ = _segment_off(tau, release)
    env = torch.where(g, a_on * level_edge + b_on, a_off * level_edge)
    new_state = (g[:, -1].to(torch.float64), tau64[:, -1], level_edge[:, -1])
    return env, new_state
