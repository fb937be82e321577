"""Faust emitters of the dynamics: compressor, expander, noise_gate, limiter (JUCE's ballistics
and dspfx's gain computer)."""

from __future__ import annotations

import math
import sys

from dspfx.export.faust._common import number, slider
from dspfx.unit import Unit


_LN10_20 = math.log(10.0) / 20.0


def _coefficient(ms: str, sample_rate: float) -> str:
    """JUCE's ballistics coefficient ``exp(-2 pi 1000 / (sr t))``, 0 below 0.001 ms."""
    return f"select2(({ms}) < 0.001, exp({-2.0 * math.pi * 1000.0 / sample_rate!r} / ({ms})), 0.0)"


def _follower(attack: str, release: str) -> str:
    """An envelope follower box (JUCE's ``BallisticsFilter``): ``e = d + c (e' - d)``."""
    return f"(\\(prev, d).(d + select2(d > prev, {release}, {attack}) * (prev - d)) ~ _)"


def _gain_stage(detector: str, power: bool, threshold: str, slope: str, knee: str, makeup: str, below: bool) -> str:
    """``x * exp((slope * k(u) + makeup) * ln10 / 20)`` with ``u = L - T`` (or ``T - L`` below),
    ``L`` the dB level of ``detector`` (a box from x to the envelope) floored at the smallest
    normal double, ``k`` the quadratic soft knee (hard at 0 dB): the operations and order of
    :func:`dspfx.functional.dynamics._knee_gain_no_grad`."""
    u = f"({threshold}) - l" if below else f"l - ({threshold})"
    return (f"((_ <: (_, ({detector} : lvl : gain)) : *) "
            f"with {{ lvl(e) = log(max(e, {sys.float_info.min!r})) * {(10.0 if power else 20.0) / math.log(10.0)!r}; "
            f"u(l) = {u}; ww = {knee}; half = 0.5 * ww; wsafe = select2(ww > 0.0, 1.0, ww); "
            "kn(l) = select2(ww > 0.0, max(u(l), 0.0), select2(u(l) <= 0.0 - half, select2(u(l) >= half, "
            "(u(l) + half) * (u(l) + half) / (2.0 * wsafe), u(l)), 0.0)); "
            f"gain(l) = exp(((({slope}) * kn(l)) + {makeup}) * {_LN10_20!r}); }})")


def _dynamics(unit: Unit, path: str, below: bool) -> str:
    """Compressor (``below=False``) or expander: ballistics on ``|x|`` (peak) or ``x^2`` (rms),
    then the gain stage (:mod:`dspfx.functional.dynamics`)."""
    t, ratio, att, rel, w = (slider(unit, key, path) for key in ("threshold_db", "ratio", "attack_ms", "release_ms", "knee_db"))
    makeup = slider(unit, "makeup_db", path) if "makeup_db" in unit.knob_specs else "0.0"
    power = unit.detector == "rms"
    sr = unit.sample_rate
    detector = f"({'(_ <: *)' if power else 'abs'} : {_follower(_coefficient(att, sr), _coefficient(rel, sr))})"
    slope = f"1.0 - {ratio}" if below else f"1.0 / {ratio} - 1.0"
    return _gain_stage(detector, power, t, slope, w, makeup, below)


def _noise_gate(unit: Unit, path: str) -> str:
    """JUCE's ``NoiseGate``: ballistics on ``x^2`` (attack 0, release 50 ms), its square root,
    ballistics with the attack and release knobs, a hard-knee expander below the threshold."""
    from dspfx.functional.dynamics import NOISE_GATE_RMS_RELEASE_MS

    t, ratio, att, rel = (slider(unit, key, path) for key in ("threshold_db", "ratio", "attack_ms", "release_ms"))
    sr = unit.sample_rate
    rms = _follower("0.0", _coefficient(number(NOISE_GATE_RMS_RELEASE_MS), sr))
    detector = f"((_ <: *) : {rms} : sqrt : {_follower(_coefficient(att, sr), _coefficient(rel, sr))})"
    return _gain_stage(detector, False, t, f"1.0 - {ratio}", "0.0", "0.0", True)


def _limiter(unit: Unit, path: str) -> str:
    """JUCE's ``Limiter``: a fixed hard-knee compressor (-10 dB, 4:1, 2 ms, 200 ms), one at the
    threshold (1000:1, 0.001 ms, the release knob), the gain ``3.75 - threshold`` dB, a clip at
    +-1."""
    from dspfx.functional.dynamics import (
        LIMITER_FIRST_STAGE,
        LIMITER_SECOND_STAGE_ATTACK_MS,
        LIMITER_SECOND_STAGE_RATIO,
    )

    t, rel = slider(unit, "threshold_db", path), slider(unit, "release_ms", path)
    sr = unit.sample_rate
    t1, r1, a1, rel1 = LIMITER_FIRST_STAGE
    first = _gain_stage(f"(abs : {_follower(_coefficient(number(a1), sr), _coefficient(number(rel1), sr))})", False,
                        number(t1), f"1.0 / {number(r1)} - 1.0", "0.0", "0.0", False)
    second = _gain_stage(f"(abs : {_follower(_coefficient(number(LIMITER_SECOND_STAGE_ATTACK_MS), sr), _coefficient(rel, sr))})",
                         False, t, f"1.0 / {number(LIMITER_SECOND_STAGE_RATIO)} - 1.0", "0.0", "0.0", False)
    out_db = f"({10.0 * (1.0 - 1.0 / r1) / 2.0!r} - ({t}))"
    return f"({first} : {second} : *(exp({out_db} * {_LN10_20!r})) : max(-1.0) : min(1.0))"




#: Unit name -> Faust emitter ``(unit, path prefix) -> expression``.
EMITTERS = {
    "compressor": lambda unit, path: _dynamics(unit, path, below=False),
    "expander": lambda unit, path: _dynamics(unit, path, below=True),
    "noise_gate": _noise_gate, "limiter": _limiter,
}
