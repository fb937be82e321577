"""Envelope ballistics: the level detector of dspfx's dynamics processors.

The level detector follows JUCE's ``BallisticsFilter`` (used by pedalboard's ``Compressor``,
``Limiter`` and ``NoiseGate``): per channel and per sample, with a detector input ``d[n] >= 0``
(``|x|`` for a peak detector, ``x**2`` for an RMS detector),

    e[n] = d[n] + c[n] * (e[n-1] - d[n]),   c[n] = c_attack if d[n] > e[n-1] else c_release,

with ``c = exp(-2*pi*1000 / (sample_rate * t_ms))`` (``c = 0`` for ``t_ms < 0.001``). So a time
``t_ms`` is the time the envelope needs to cover ``1 - exp(-2*pi)`` (99.8 %) of a step; it covers
``1 - 1/e`` (63.2 %) of it in ``t_ms / (2*pi)``.

The switch between attack and release makes the recursion non-linear, so it cannot be computed by
one linear filter. It is evaluated in two passes (the approach of torchcomp, Chin-Yun Yu 2024):

1. a compiled numba loop (forward only, no gradient) runs the recursion and records, per sample,
   whether the attack or the release coefficient was used;
2. the envelope is recomputed differentiably by :func:`dspfx.functional.recursive.iir` as the
   first-order *time-varying linear* recursion ``e[n] = (1 - c[n]) d[n] + c[n] e[n-1]`` with the
   coefficient sequence ``c[n]`` chosen by pass 1.

Pass 2 gives exact gradients w.r.t. the detector input, the attack and release times and the
initial state (almost everywhere: the branch decision itself is piecewise constant; the envelope
is continuous across a switch, since both branches give ``e = d`` when ``d == e[n-1]``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from numba import njit
from torch import Tensor

from dspfx.checks import check_sample_rate
from dspfx.functional.control import as_signal, check_signal
from dspfx.functional.recursive import iir

__all__ = ["DETECTORS", "MIN_TIME_MS", "ballistics_coefficient", "envelope_decisions", "envelope_follower"]

#: Detector kinds of :func:`dspfx.functional.dynamics.compressor` and ``expander``.
DETECTORS: tuple[str, ...] = ("peak", "rms")
#: Ballistics times below this (ms) give a coefficient of 0 (instant), like JUCE.
MIN_TIME_MS = 1.0e-3


# --------------------------------------------------------------------------------------------
# checks (the sample-rate check is dspfx.checks')
# --------------------------------------------------------------------------------------------


def _as_control(value: Any, name: str, x: Tensor) -> Tensor:
    """A knob value (number or tensor broadcastable to x's (batch, channels, samples)) as a tensor."""
    return as_signal(value, x, name, integers=True)


def _check_range(t: Tensor, name: str, low: float, high: float = math.inf, low_open: bool = False) -> None:
    with torch.no_grad():
        lo, hi = float(t.min()), float(t.max())
    if not (math.isfinite(lo) and math.isfinite(hi)) or (lo <= low if low_open else lo < low) or hi > high:
        bracket = "(" if low_open else "["
        raise ValueError(f"{name} must lie in {bracket}{low:g}, {high:g}], got values in [{lo:g}, {hi:g}]")


def _check_detector(detector: Any) -> str:
    if not isinstance(detector, str) or detector not in DETECTORS:
        raise ValueError(f"detector must be one of {', '.join(map(repr, DETECTORS))}, got {detector!r}")
    return detector


def _as_state(state: Any, x: Tensor, name: str = "state") -> Tensor:
    batch, channels, _ = x.shape
    if state is None:
        return x.new_zeros(batch, channels, 1)
    if not isinstance(state, Tensor):
        raise TypeError(f"{name} must be a tensor shaped (batch, channels, 1), got {type(state).__name__}")
    try:
        return state.to(dtype=x.dtype, device=x.device).expand(batch, channels, 1)
    except RuntimeError:
        raise ValueError(
            f"{name} shaped {tuple(state.shape)} does not fit: expected (batch, channels, 1) = ({batch}, {channels}, 1)"
        ) from None


# --------------------------------------------------------------------------------------------
# ballistics
# --------------------------------------------------------------------------------------------


def ballistics_coefficient(time_ms: Tensor | float, sample_rate: float) -> Tensor:
    """Per-sample smoothing coefficient of an attack or release time (JUCE ``BallisticsFilter``).

    ``c = exp(-2*pi*1000 / (sample_rate * time_ms))``, and ``c = 0`` for ``time_ms < 0.001``
    (instant). The envelope covers ``1 - 1/e`` of a step in ``time_ms / (2*pi)`` milliseconds.

    Args:
        time_ms: attack or release time in ms (>= 0), number or tensor of any shape.
        sample_rate: in Hz.

    Returns:
        Coefficients in ``[0, 1)``, shaped like ``time_ms`` (a 0-d tensor of the default dtype
        for a number). Differentiable w.r.t. ``time_ms`` (zero gradient below 0.001 ms).
    """
    sample_rate = check_sample_rate(sample_rate)
    if isinstance(time_ms, Tensor):
        t = time_ms if time_ms.is_floating_point() else time_ms.to(torch.get_default_dtype())
    elif isinstance(time_ms, bool) or not isinstance(time_ms, (int, float)):
        raise TypeError(f"time_ms must be a number or a tensor, got {type(time_ms).__name__}")
    else:
        t = torch.tensor(float(time_ms), dtype=torch.get_default_dtype())
    _check_range(t, "time_ms", 0.0)
    instant = t < MIN_TIME_MS
    t_safe = torch.where(instant, torch.ones_like(t), t)
    c = torch.exp((-2.0 * math.pi * 1000.0 / sample_rate) / t_safe)
    return torch.where(instant, torch.zeros_like(c), c)


@njit(cache=True)
def _ballistics_kernel(d, c_attack, c_release, e0, envelope, attack):  # pragma: no cover - compiled
    batch, channels, n_samples = d.shape
    for b in range(batch):
        for ch in range(channels):
            prev = e0[b, ch]
            for n in range(n_samples):
                v = d[b, ch, n]
                if v > prev:
                    c = c_attack[b, ch, n]
                    attack[b, ch, n] = True
                else:
                    c = c_release[b, ch, n]
                    attack[b, ch, n] = False
                prev = v + c * (prev - v)
                envelope[b, ch, n] = prev


@njit(cache=True)
def _gate_envelopes_kernel(power, c_rms_attack, c_rms, c_attack, c_release, ms0, env0, mean_square, envelope):  # pragma: no cover
    # The noise gate's two detectors in one pass (forward only): ballistics on the power
    # (c_rms_attack / c_rms), its square root, then ballistics with c_attack / c_release. Per
    # sample the operations are those of two _ballistics_kernel calls, in the power's dtype.
    batch, channels, n_samples = power.shape
    for b in range(batch):
        for ch in range(channels):
            ms = ms0[b, ch]
            prev = env0[b, ch]
            for n in range(n_samples):
                v = power[b, ch, n]
                c = c_rms_attack[b, ch, n] if v > ms else c_rms[b, ch, n]
                ms = v + c * (ms - v)
                mean_square[b, ch, n] = ms
                # _safe_sqrt (+0 at 0), rounded to the dtype by the store (numba's sqrt is float64)
                envelope[b, ch, n] = math.sqrt(ms) if ms > 0 else 0.0
                r = envelope[b, ch, n]
                c = c_attack[b, ch, n] if r > prev else c_release[b, ch, n]
                prev = r + c * (prev - r)
                envelope[b, ch, n] = prev


def envelope_decisions(
    d: Tensor,
    attack_coefficient: Tensor | float,
    release_coefficient: Tensor | float,
    state: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Run the attack/release recursion in a compiled loop (forward only, no gradient).

    ``e[n] = d[n] + c[n] (e[n-1] - d[n])`` with ``c[n] = attack_coefficient`` when
    ``d[n] > e[n-1]``, else ``release_coefficient``; computed in ``d``'s dtype on the CPU.

    Args:
        d: detector input ``(batch, channels, samples)``, normally ``>= 0``.
        attack_coefficient, release_coefficient: numbers or tensors broadcastable to ``d``
            (e.g. ``(batch|1, 1, samples|1)``), from :func:`ballistics_coefficient`.
        state: ``(batch, channels, 1)`` envelope before the block (``None``: zeros).

    Returns:
        ``(envelope, attack)``: the envelope (detached, like ``d``) and a bool tensor saying
        where the attack coefficient was used; both shaped like ``d``, on ``d``'s device.

    Devices: CPU only (a compiled numba loop); tensors on another device raise
    :class:`~dspfx.functional.CPUKernelError` (nothing is copied to the CPU behind the caller's back).
    Gradients: none (it returns decisions; the envelope itself is differentiated by its caller).
    """
    d = check_signal(d, "d")
    batch, channels, n_samples = d.shape
    ca = _as_control(attack_coefficient, "attack_coefficient", d)
    cr = _as_control(release_coefficient, "release_coefficient", d)
    e0 = _as_state(state, d)
    with torch.no_grad():
        shape = (batch, channels, n_samples)
        d_np = d.detach().cpu().contiguous().numpy()
        ca_np = ca.detach().cpu().expand(shape).numpy()
        cr_np = cr.detach().cpu().expand(shape).numpy()
        e0_np = e0.detach().cpu()[..., 0].contiguous().numpy()
        env = np.empty(shape, dtype=d_np.dtype)
        attack = np.empty(shape, dtype=np.bool_)
        if n_samples:
            _ballistics_kernel(d_np, ca_np, cr_np, e0_np, env, attack)
    return torch.from_numpy(env).to(d.device), torch.from_numpy(attack).to(d.device)


def envelope_follower(
    d: Tensor,
    attack_coefficient: Tensor | float,
    release_coefficient: Tensor | float,
    state: Tensor | None = None,
    *,
    compiled_values: bool = True,
) -> tuple[Tensor, Tensor]:
    """Differentiable attack/release envelope (JUCE ``BallisticsFilter`` recursion).

    The branch taken at each sample (attack when ``d[n] > e[n-1]``, else release) is decided by
    :func:`envelope_decisions`; the envelope is then recomputed by
    :func:`~dspfx.functional.recursive.iir` as the time-varying first-order recursion
    ``e[n] = (1 - c[n]) d[n] + c[n] e[n-1]`` (``b = [1 - c]``, ``a = [1, -c]``), which gives
    exact gradients w.r.t. ``d``, both coefficients and ``state`` (almost everywhere).

    The recomputed envelope equals the compiled one up to rounding (the two evaluate the same
    recursion in a different operation order). By default (``compiled_values=True``) the
    returned values are the compiled loop's, which evaluates ``d + c (e[n-1] - d)`` like JUCE,
    carrying the recomputation's gradient (``e_rec + (e_compiled - e_rec).detach()``): float32
    renders then agree with pedalboard's float32 renders to the last bits, which matters where a
    large ratio amplifies the envelope's rounding (a gate at 100:1 multiplies its relative error
    by 99). ``compiled_values=False`` returns the recomputed values themselves. When nothing
    needs a gradient (``torch.no_grad()``, or no input requires grad) the recomputation is
    skipped: the compiled values are returned as they are.

    Args:
        d: detector input ``(batch, channels, samples)`` (``|x|`` or ``x**2``).
        attack_coefficient, release_coefficient: numbers or tensors broadcastable to ``d``.
        state: ``(batch, channels, 1)`` envelope before the block; ``None`` means zeros.
        compiled_values: return the compiled loop's values (default) or the recomputed ones.

    Returns:
        ``(envelope, new_state)``: ``envelope`` shaped like ``d``; ``new_state`` its last
        sample ``(batch, channels, 1)``, to continue with the next block.
    """
    d = check_signal(d, "d")
    ca = _as_control(attack_coefficient, "attack_coefficient", d)
    cr = _as_control(release_coefficient, "release_coefficient", d)
    e0 = _as_state(state, d)
    if d.shape[-1] == 0:
        return d, e0
    compiled, attack = envelope_decisions(d, ca, cr, e0)
    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (d, ca, cr, e0))
    if compiled_values and not needs_grad:  # nothing to differentiate: the compiled values are the result
        compiled = compiled.to(d.dtype)
        return compiled, compiled[..., -1:]
    c = torch.where(attack, ca, cr)  # (batch, channels, samples)
    b = (1.0 - c).unsqueeze(-1)
    a = torch.stack([torch.ones_like(c), -c], dim=-1)
    batch, channels, _ = d.shape
    e, _ = iir(d, b, a, (d.new_zeros(batch, channels, 0), e0))
    if compiled_values:
        e = e + (compiled - e).detach()
    return e, e[..., -1:]


def _gate_envelopes(
    power: Tensor, c_rms: Tensor, c_attack: Tensor, c_release: Tensor, rms_state: Any, peak_state: Any
) -> tuple[Tensor, Tensor, Tensor]:
    """The noise gate's envelope without gradient, both detectors in one compiled pass:
    ``(envelope, rms_state, peak_state)``, equal to two :func:`envelope_follower` calls."""
    shape = tuple(power.shape)
    ca1 = _as_control(0.0, "rms attack coefficient", power)
    cr1 = _as_control(c_rms, "rms release coefficient", power)
    ca = _as_control(c_attack, "attack_coefficient", power)
    cr = _as_control(c_release, "release_coefficient", power)
    ms0 = _as_state(rms_state, power, "rms state")
    e0 = _as_state(peak_state, power, "envelope state")
    with torch.no_grad():
        arrays = [power.detach().cpu().contiguous().numpy()]
        arrays += [c.detach().cpu().expand(shape).numpy() for c in (ca1, cr1, ca, cr)]
        arrays += [s.detach().cpu()[..., 0].contiguous().numpy() for s in (ms0, e0)]
        mean_square = np.empty(shape, dtype=arrays[0].dtype)
        envelope = np.empty(shape, dtype=arrays[0].dtype)
        _gate_envelopes_kernel(*arrays, mean_square, envelope)
    ms_t = torch.from_numpy(mean_square).to(power.device)
    env_t = torch.from_numpy(envelope).to(power.device)
    return env_t, ms_t[..., -1:], env_t[..., -1:]
