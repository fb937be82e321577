"""Dynamics processing: gain computers and the processors built on the level detector (compressor,
expander, noise gate, limiter).

The level detector (JUCE's ``BallisticsFilter``, evaluated exactly and differentiably) is in
:mod:`dspfx.functional.ballistics`.

Gain computers work in decibels on the detector level ``L`` (``20 log10 e`` for peak,
``10 log10 e`` for RMS power). With threshold ``T`` (dB), ratio ``R`` and knee width ``W`` (dB)
they follow D. Giannoulis, M. Massberg and J. D. Reiss, "Digital dynamic range compressor design
— a tutorial and analysis", JAES 60(6), 2012, eq. (4) (quadratic soft knee), written as a gain:

    compressor: g = (1/R - 1) * k(L - T),   expander / gate: g = (R - 1) * -k(T - L),

    k(u) = 0                       for 2u < -W
           (u + W/2)^2 / (2W)      for 2|u| <= W
           u                       for 2u > W.

With ``W = 0`` (hard knee) the compressor gain is exactly pedalboard's ``(e/T)^(1/R - 1)`` above
the threshold and 1 below; the gate/expander gain is ``(e/T)^(R - 1)`` below and 1 above.

Unlike Giannoulis et al., who smooth the gain in the log domain, the ballistics here run on the
linear detector input before the static curve, as in JUCE/pedalboard (their "level detector in
the linear domain" variant).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from dspfx.checks import check_sample_rate
from dspfx.functional.control import check_signal
from dspfx.functional.ballistics import (
    _as_control,
    _check_detector,
    _check_range,
    _gate_envelopes,
    ballistics_coefficient,
    envelope_follower,
)

__all__ = [
    "level_db",
    "knee",
    "compressor_gain_db",
    "expander_gain_db",
    "compressor",
    "expander",
    "noise_gate",
    "limiter",
    "LIMITER_FIRST_STAGE",
    "NOISE_GATE_RMS_RELEASE_MS",
]

#: pedalboard's/JUCE's Limiter: fixed first compressor stage (threshold dB, ratio, attack ms,
#: release ms), its second stage ratio and attack time (ms).
LIMITER_FIRST_STAGE = (-10.0, 4.0, 2.0, 200.0)
LIMITER_SECOND_STAGE_RATIO = 1000.0
LIMITER_SECOND_STAGE_ATTACK_MS = 0.001
#: pedalboard's/JUCE's NoiseGate: release time (ms) of its RMS pre-detector (attack 0).
NOISE_GATE_RMS_RELEASE_MS = 50.0


def _safe_sqrt(p: Tensor) -> Tensor:
    """sqrt with a zero (not infinite) gradient at 0."""
    positive = p > 0
    return torch.where(positive, torch.sqrt(torch.where(positive, p, torch.ones_like(p))), torch.zeros_like(p))


def _exact_sqrt(p: Tensor) -> Tensor:
    """Correctly rounded square roots of ``p >= 0`` (no gradient): the hardware instruction, as
    JUCE's ``std::sqrt`` and the compiled gate kernel compute them (torch's vectorised sqrt can
    be one ulp off)."""
    with torch.no_grad():
        values = np.sqrt(np.maximum(p.detach().cpu().numpy(), 0.0))
    return torch.from_numpy(values).to(device=p.device, dtype=p.dtype)


def level_db(envelope: Tensor, power: bool = False) -> Tensor:
    """Detector level in dB: ``20 log10(e)`` (``10 log10(e)`` for a power envelope).

    The envelope is floored at the dtype's smallest normal number (about -758 dB in float32 as
    amplitude), so silence gives a very low, finite level and finite gradients.
    """
    tiny = torch.finfo(envelope.dtype).tiny
    scale = (10.0 if power else 20.0) / math.log(10.0)
    return scale * torch.log(envelope.clamp_min(tiny))


def knee(u: Tensor, knee_db: Tensor | float) -> Tensor:
    """The quadratic soft knee ``k(u)`` of Giannoulis et al. (2012) (see the module docstring).

    ``u`` is the level above the threshold in dB; ``knee_db`` the knee width ``W >= 0`` (0 is a
    hard knee: ``k(u) = max(u, 0)``). ``k`` is continuous with a continuous derivative for
    ``W > 0``. Differentiable w.r.t. both.
    """
    w = knee_db if isinstance(knee_db, Tensor) else torch.tensor(float(knee_db), dtype=u.dtype, device=u.device)
    w = w.to(u.dtype)
    half = 0.5 * w
    w_safe = torch.where(w > 0, w, torch.ones_like(w))
    quadratic = (u + half) ** 2 / (2.0 * w_safe)
    return torch.where(u <= -half, torch.zeros_like(u), torch.where(u >= half, u, quadratic))


def compressor_gain_db(
    level: Tensor, threshold_db: Tensor | float, ratio: Tensor | float, knee_db: Tensor | float = 0.0
) -> Tensor:
    """Static compressor curve as a gain in dB: ``(1/ratio - 1) * k(level - threshold_db)``.

    Hard knee (``knee_db = 0``): 0 dB below the threshold, ``(1/ratio - 1)(L - T)`` above, i.e.
    the output level rises by ``1/ratio`` dB per dB above the threshold. Giannoulis et al.
    (2012), eq. (4).
    """
    return (1.0 / ratio - 1.0) * knee(level - threshold_db, knee_db)


def expander_gain_db(
    level: Tensor, threshold_db: Tensor | float, ratio: Tensor | float, knee_db: Tensor | float = 0.0
) -> Tensor:
    """Static downward-expander / gate curve as a gain in dB: ``-(ratio - 1) * k(threshold_db - level)``.

    Hard knee: 0 dB above the threshold, ``(ratio - 1)(L - T)`` below, i.e. the output level
    falls by ``ratio`` dB per dB below the threshold (pedalboard's NoiseGate:
    ``(e/T)^(ratio - 1)``). The soft knee mirrors the compressor's.
    """
    return (1.0 - ratio) * knee(threshold_db - level, knee_db)


def _db_to_gain(db: Tensor) -> Tensor:
    return torch.exp(db * (math.log(10.0) / 20.0))


def _detector_input(x: Tensor, sidechain: Tensor | None, detector: str) -> Tensor:
    key = x
    if sidechain is not None:
        key = check_signal(sidechain, "sidechain")
        if key.shape[0] != x.shape[0] or key.shape[1] not in (1, x.shape[1]) or key.shape[2] != x.shape[2]:
            raise ValueError(
                f"sidechain shaped {tuple(key.shape)} does not fit x shaped {tuple(x.shape)}: expected "
                f"(batch, channels or 1, samples) = ({x.shape[0]}, {x.shape[1]} or 1, {x.shape[2]})"
            )
        key = key.to(x.dtype).expand_as(x)
    return key.abs() if detector == "peak" else key * key


def _times(attack_ms: Any, release_ms: Any, x: Tensor, sample_rate: float) -> tuple[Tensor, Tensor]:
    attack = _as_control(attack_ms, "attack_ms", x)
    release = _as_control(release_ms, "release_ms", x)
    _check_range(attack, "attack_ms", 0.0)
    _check_range(release, "release_ms", 0.0)
    return ballistics_coefficient(attack, sample_rate), ballistics_coefficient(release, sample_rate)


def _needs_grad(*values: Any) -> bool:
    """Whether autograd records a render from these inputs (tensors among them that require grad)."""
    return torch.is_grad_enabled() and any(isinstance(v, Tensor) and v.requires_grad for v in values)


def _knee_gain_no_grad(
    x: Tensor,
    envelope: Tensor,
    power: bool,
    threshold: Tensor,
    slope: Tensor,
    knee_t: Tensor,
    makeup: Tensor | None,
    below: bool,
) -> Tensor:
    """``x`` times the gain of a compressor (``below=False``, ``slope = 1/ratio - 1``, ``u = L - T``)
    or an expander / gate (``below=True``, ``slope = 1 - ratio``, ``u = T - L``), for renders that
    need no gradient: the operations of :func:`level_db`, :func:`knee`, the gain computers and
    ``_db_to_gain`` in the same order, mostly in place on one buffer, so the values equal theirs
    bit for bit (a hard knee is ``max(u, 0)``: only a zero's sign may differ before ``exp``,
    which maps both to 1).
    """
    g = envelope.clamp_min(torch.finfo(envelope.dtype).tiny)  # a new buffer: the envelope holds the state
    g.log_().mul_((10.0 if power else 20.0) / math.log(10.0))
    if below:
        g.neg_().add_(threshold)  # T - L (IEEE: T + (-L) is T - L)
    else:
        g.sub_(threshold)
    with torch.no_grad():
        hard = not bool(knee_t.any())
    if hard:
        g.clamp_min_(0.0)
    else:  # knee(): where(u <= -W/2, 0, where(u >= W/2, u, (u + W/2)^2 / (2 W)))
        w = knee_t.to(g.dtype)
        half = 0.5 * w
        w_safe = torch.where(w > 0, w, torch.ones_like(w))
        quadratic = (g + half).pow_(2).div_(2.0 * w_safe)
        g = torch.where(g >= half, g, quadratic, out=quadratic).masked_fill_(g <= -half, 0.0)
    g.mul_(slope)
    if makeup is not None:
        g.add_(makeup)
    return x * g.mul_(math.log(10.0) / 20.0).exp_()


# --------------------------------------------------------------------------------------------
# processors
# --------------------------------------------------------------------------------------------


def compressor(
    x: Tensor,
    threshold_db: Tensor | float,
    ratio: Tensor | float,
    attack_ms: Tensor | float,
    release_ms: Tensor | float,
    sample_rate: float,
    knee_db: Tensor | float = 0.0,
    makeup_db: Tensor | float = 0.0,
    *,
    detector: str = "peak",
    sidechain: Tensor | None = None,
    state: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Feed-forward downward compressor, per channel (JUCE/pedalboard ``Compressor`` plus knee,
    makeup gain, an RMS detector and a sidechain).

    ``y = x * 10^((g + makeup_db)/20)`` with ``g = compressor_gain_db(L, threshold_db, ratio,
    knee_db)`` and ``L`` the level of the attack/release envelope of ``|key|`` (peak) or
    ``key**2`` (rms, level ``10 log10``), where ``key`` is ``sidechain`` if given, else ``x``.
    With ``knee_db = 0``, ``makeup_db = 0`` and the peak detector this is exactly
    ``pedalboard.Compressor``: gain ``(e/T)^(1/ratio - 1)`` when ``e >= T``, else 1.

    Args:
        x: ``(batch, channels, samples)``.
        threshold_db: dB; ratio: >= 1; attack_ms, release_ms: >= 0 ms (see
            :func:`ballistics_coefficient`); knee_db: >= 0 dB; makeup_db: dB. Each a number or a
            tensor broadcastable to x (``(batch|1, 1, samples|1)`` for time-varying controls).
        sample_rate: Hz.
        detector: ``"peak"`` or ``"rms"``.
        sidechain: optional key signal ``(batch, channels or 1, samples)``; a 1-channel key
            gives the same gain on every channel (linked).
        state: detector envelope before the block ``(batch, channels, 1)``, ``None``: zeros.

    Returns:
        ``(y, state)``: ``y`` shaped like ``x``, ``state`` the envelope after the block.
        Differentiable w.r.t. x, sidechain, every control and the state.

    Reference: D. Giannoulis, M. Massberg, J. D. Reiss, JAES 2012 (gain computer, soft knee);
    JUCE ``dsp::Compressor`` / pedalboard ``Compressor`` (detector and ballistics).
    """
    x = check_signal(x)
    sample_rate = check_sample_rate(sample_rate)
    detector = _check_detector(detector)
    threshold = _as_control(threshold_db, "threshold_db", x)
    ratio_t = _as_control(ratio, "ratio", x)
    knee_t = _as_control(knee_db, "knee_db", x)
    makeup = _as_control(makeup_db, "makeup_db", x)
    _check_range(ratio_t, "ratio", 1.0)
    _check_range(knee_t, "knee_db", 0.0)
    _check_range(threshold, "threshold_db", -math.inf)
    _check_range(makeup, "makeup_db", -math.inf)
    c_attack, c_release = _times(attack_ms, release_ms, x, sample_rate)
    d = _detector_input(x, sidechain, detector)
    env, new_state = envelope_follower(d, c_attack, c_release, state)
    if not _needs_grad(x, sidechain, threshold, ratio_t, knee_t, makeup, c_attack, c_release, state):
        slope = 1.0 / ratio_t - 1.0
        return _knee_gain_no_grad(x, env, detector == "rms", threshold, slope, knee_t, makeup, below=False), new_state
    level = level_db(env, power=detector == "rms")
    gain_db = compressor_gain_db(level, threshold, ratio_t, knee_t) + makeup
    return x * _db_to_gain(gain_db), new_state


def expander(
    x: Tensor,
    threshold_db: Tensor | float,
    ratio: Tensor | float,
    attack_ms: Tensor | float,
    release_ms: Tensor | float,
    sample_rate: float,
    knee_db: Tensor | float = 0.0,
    *,
    detector: str = "peak",
    sidechain: Tensor | None = None,
    state: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Feed-forward downward expander, per channel: the smooth sibling of the noise gate.

    ``y = x * 10^(g/20)`` with ``g = expander_gain_db(L, threshold_db, ratio, knee_db)``: 0 dB
    above the threshold, ``(ratio - 1)(L - T)`` dB below (hard knee), the quadratic knee of
    Giannoulis et al. (2012) mirrored below the threshold for ``knee_db > 0``. ``L`` is the level
    of the attack/release envelope of the key as in :func:`compressor`.

    Args and returns as :func:`compressor` (no makeup); ``ratio >= 1`` is the expansion ratio
    (1: identity; large: a gate).
    """
    x = check_signal(x)
    sample_rate = check_sample_rate(sample_rate)
    detector = _check_detector(detector)
    threshold = _as_control(threshold_db, "threshold_db", x)
    ratio_t = _as_control(ratio, "ratio", x)
    knee_t = _as_control(knee_db, "knee_db", x)
    _check_range(ratio_t, "ratio", 1.0)
    _check_range(knee_t, "knee_db", 0.0)
    _check_range(threshold, "threshold_db", -math.inf)
    c_attack, c_release = _times(attack_ms, release_ms, x, sample_rate)
    d = _detector_input(x, sidechain, detector)
    env, new_state = envelope_follower(d, c_attack, c_release, state)
    if not _needs_grad(x, sidechain, threshold, ratio_t, knee_t, c_attack, c_release, state):
        return _knee_gain_no_grad(x, env, detector == "rms", threshold, 1.0 - ratio_t, knee_t, None, below=True), new_state
    level = level_db(env, power=detector == "rms")
    return x * _db_to_gain(expander_gain_db(level, threshold, ratio_t, knee_t)), new_state


def noise_gate(
    x: Tensor,
    threshold_db: Tensor | float,
    ratio: Tensor | float,
    attack_ms: Tensor | float,
    release_ms: Tensor | float,
    sample_rate: float,
    *,
    sidechain: Tensor | None = None,
    state: tuple[Tensor, Tensor] | None = None,
) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """Noise gate exactly as pedalboard's/JUCE's ``NoiseGate``, per channel.

    Detector: an RMS envelope (ballistics on ``key**2`` with attack 0 ms and release 50 ms,
    then a correctly rounded square root, as JUCE's ``std::sqrt``), then peak ballistics with ``attack_ms``/``release_ms`` on that. Gain:
    1 when the envelope ``e > T``, else ``(e/T)^(ratio - 1)`` (``T = 10^(threshold_db/20)``).

    Args:
        x: ``(batch, channels, samples)``.
        threshold_db: dB; ratio: >= 1; attack_ms, release_ms: >= 0 ms; numbers or tensors
            broadcastable to x.
        sample_rate: Hz.
        sidechain: optional key ``(batch, channels or 1, samples)``.
        state: ``(rms_power, envelope)``, each ``(batch, channels, 1)``; ``None``: zeros.

    Returns:
        ``(y, state)``. Differentiable w.r.t. x, the key, every control and the state.

    Without a gradient to track, both detectors run in one compiled pass and the gain is
    computed in place (the same values as the differentiable path).

    Reference: JUCE ``dsp::NoiseGate``, as wrapped by ``pedalboard.NoiseGate``.
    """
    x = check_signal(x)
    sample_rate = check_sample_rate(sample_rate)
    threshold = _as_control(threshold_db, "threshold_db", x)
    ratio_t = _as_control(ratio, "ratio", x)
    _check_range(ratio_t, "ratio", 1.0)
    _check_range(threshold, "threshold_db", -math.inf)
    c_attack, c_release = _times(attack_ms, release_ms, x, sample_rate)
    if state is None:
        rms_state = peak_state = None
    elif isinstance(state, (tuple, list)) and len(state) == 2:
        rms_state, peak_state = state
    else:
        raise ValueError(f"noise_gate state must be a pair (rms_power, envelope), got {type(state).__name__}")
    power = _detector_input(x, sidechain, "rms")
    c_rms = ballistics_coefficient(torch.tensor(NOISE_GATE_RMS_RELEASE_MS, dtype=x.dtype, device=x.device), sample_rate)
    if x.shape[-1] and not _needs_grad(x, sidechain, threshold, ratio_t, c_attack, c_release, rms_state, peak_state):
        env, rms_state, peak_state = _gate_envelopes(power, c_rms, c_attack, c_release, rms_state, peak_state)
        zero_knee = torch.zeros((), dtype=x.dtype, device=x.device)
        return _knee_gain_no_grad(x, env, False, threshold, 1.0 - ratio_t, zero_knee, None, below=True), (rms_state, peak_state)
    mean_square, rms_state = envelope_follower(power, 0.0, c_rms, rms_state)
    root = _safe_sqrt(mean_square)
    root = root + (_exact_sqrt(mean_square) - root).detach()  # the kernel's (and JUCE's) values
    env, peak_state = envelope_follower(root, c_attack, c_release, peak_state)
    gain_db = expander_gain_db(level_db(env), threshold, ratio_t)
    return x * _db_to_gain(gain_db), (rms_state, peak_state)


def limiter(
    x: Tensor,
    threshold_db: Tensor | float,
    release_ms: Tensor | float,
    sample_rate: float,
    *,
    state: tuple[Tensor, Tensor] | None = None,
) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """Limiter exactly as pedalboard's/JUCE's ``Limiter``, per channel.

    Two hard-knee peak compressors in series: a fixed first stage (-10 dB, 4:1, attack 2 ms,
    release 200 ms), then ``threshold_db`` at 1000:1 with attack 0.001 ms and ``release_ms``;
    then a gain of ``10^(10 (1 - 1/4) / 40) * 10^(-threshold_db/20)`` and a hard clip at +-1.

    Args:
        x: ``(batch, channels, samples)``.
        threshold_db: dB; release_ms: >= 0 ms; numbers or tensors broadcastable to x.
        sample_rate: Hz.
        state: the two stages' envelopes, each ``(batch, channels, 1)``; ``None``: zeros.

    Returns:
        ``(y, state)``. Differentiable w.r.t. x, both controls and the state (zero gradient
        where the clip is active).

    Reference: JUCE ``dsp::Limiter``, as wrapped by ``pedalboard.Limiter``.
    """
    x = check_signal(x)
    sample_rate = check_sample_rate(sample_rate)
    threshold = _as_control(threshold_db, "threshold_db", x)
    _check_range(threshold, "threshold_db", -math.inf)
    if state is None:
        s1 = s2 = None
    elif isinstance(state, (tuple, list)) and len(state) == 2:
        s1, s2 = state
    else:
        raise ValueError(f"limiter state must be a pair of stage envelopes, got {type(state).__name__}")
    t1, r1, a1, rel1 = LIMITER_FIRST_STAGE
    y, s1 = compressor(x, t1, r1, a1, rel1, sample_rate, state=s1)
    y, s2 = compressor(
        y, threshold, LIMITER_SECOND_STAGE_RATIO, LIMITER_SECOND_STAGE_ATTACK_MS, release_ms, sample_rate, state=s2
    )
    out_db = 10.0 * (1.0 - 1.0 / r1) / 2.0 - threshold  # 10^(10(1-1/4)/40) is +3.75 dB
    y = y * _db_to_gain(out_db)
    return y.clamp(-1.0, 1.0), (s1, s2)
