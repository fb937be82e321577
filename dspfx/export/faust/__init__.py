"""Plugin export: a chain becomes Faust code, and Faust's toolchain builds an LV2 plugin from it.

:func:`faust_code` writes a self-contained Faust program (``.dsp``) that renders like the unit:
the same formulas (the RBJ cookbook biquad in JUCE's order, the bilinear one-pole, tanh drive),
each knob a control named by its path (``tone.cutoff_hz``), with its range, its current value as
the default and its unit in the label (a knob the unit's mode ignores, a lowpass biquad's
``gain_db``, gets no port: Faust drops controls that reach no output). :func:`export_plugin` writes that file (``format="faust"``)
or also builds an LV2 bundle with Debian's ``faust2lv2`` (``format="lv2"``; it needs g++,
lv2-dev and libboost-dev), its URI ``urn:dspfx:plugin/<name>``. The plugin computes in double
precision (float32 ports), so it renders what dspfx renders in float64.

Exportable so far (mono in, mono out): ``gain``, ``trim``, ``invert``, ``distortion``,
``clipping`` (hard curve), ``biquad`` and ``svf`` (every mode), ``one_pole``, ``parametric_eq``,
``ladder`` (every mode, table or tanh saturation), ``tonestack`` (every model), ``bitcrush``, ``static_nonlinearity`` (every curve, its learned
parameters baked in), ``compressor``, ``expander`` (both detectors),
``noise_gate`` and ``limiter`` (no sidechain), ``convolution`` and ``cabinet`` (parametric, or its
impulse response as a direct FIR of at most ``MAX_FIR_TAPS``, 1024), ``delay`` (whole samples, undamped), and the containers ``chain``,
``parallel`` and ``dry_wet``. Another unit raises a one-line TypeError naming it; the neural
captures (``wavenet``, ``lstm_amp``) go to ``.nam`` files instead (:func:`export_nam`).
Exactness against dspfx's render, through the built plugin, is tested in tests/export.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import sys
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dspfx.unit import Unit

__all__ = ["faust_code", "export_plugin", "plugin_controls", "FAUST_UNITS", "PluginExportError", "URI_PREFIX"]

#: The prefix of every exported plugin's URI (``urn:dspfx:plugin/<name>``): stable across builds.
URI_PREFIX = "urn:dspfx:plugin"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


class PluginExportError(RuntimeError):
    """The Faust/LV2 toolchain is missing, or it failed (its message is included)."""


def _number(value: float) -> str:
    text = format(float(value), ".9g")  # float32 values print as set (1.2, not 1.2000000476837158)
    return text if ("." in text or "e" in text or "n" in text) else text + ".0"


def _slider(unit: Unit, key: str, path: str) -> str:
    knob = unit.knob_specs[key]
    meta = f" [unit:{knob.unit}]" if knob.unit else ""
    meta += " [scale:log]" if knob.scale == "log" else ""
    step = (knob.maximum - knob.minimum) / 100000.0
    return (f'hslider("{path}{key}{meta}", {_number(float(unit.knob_value(key).detach()))}, {_number(knob.minimum)}, '
            f"{_number(knob.maximum)}, {_number(step)})")


def _gain(unit: Unit, path: str) -> str:
    return f"*(ba.db2linear({_slider(unit, 'gain_db', path)}))"


def _trim(unit: Unit, path: str) -> str:
    return f"(*({_slider(unit, 'scale', path)}) : +({_slider(unit, 'dc', path)}))"


def _distortion(unit: Unit, path: str) -> str:
    return f"(*(ba.db2linear({_slider(unit, 'drive_db', path)})) : ma.tanh)"


def _clipping(unit: Unit, path: str) -> str:
    if unit.curve != "hard":
        raise TypeError(f"{unit.label}: only the hard clipping curve exports to Faust so far, got curve={unit.curve!r}")
    t = f"ba.db2linear({_slider(unit, 'threshold_db', path)})"
    return f"(max(0.0 - {t}) : min({t}))"


def _clamped_cutoff(cutoff: str, sample_rate: float) -> str:
    """A cutoff clamped into [2 Hz, Nyquist - 100 Hz], as dspfx's designs clamp it."""
    from dspfx.functional.design import MIN_CUTOFF_HZ, NYQUIST_MARGIN_HZ

    return (f"max({_number(MIN_CUTOFF_HZ)}, min({cutoff}, "
            f"{_number(sample_rate / 2.0 - NYQUIST_MARGIN_HZ)}))")


_BIQUAD_DESIGNS = {
    "lowpass": ("0.5 * (1.0 - c)", "1.0 - c", "0.5 * (1.0 - c)", "1.0 + alpha", "-2.0 * c", "1.0 - alpha"),
    "highpass": ("0.5 * (1.0 + c)", "0.0 - (1.0 + c)", "0.5 * (1.0 + c)", "1.0 + alpha", "-2.0 * c", "1.0 - alpha"),
    "bandpass": ("alpha", "0.0", "0.0 - alpha", "1.0 + alpha", "-2.0 * c", "1.0 - alpha"),
    "notch": ("1.0", "-2.0 * c", "1.0", "1.0 + alpha", "-2.0 * c", "1.0 - alpha"),
    "allpass": ("1.0 - alpha", "-2.0 * c", "1.0 + alpha", "1.0 + alpha", "-2.0 * c", "1.0 - alpha"),
    "peak": ("1.0 + alpha * A", "-2.0 * c", "1.0 - alpha * A", "1.0 + alpha / A", "-2.0 * c", "1.0 - alpha / A"),
    "lowshelf": ("A * ((A + 1.0) - (A - 1.0) * c + beta)", "A * 2.0 * ((A - 1.0) - (A + 1.0) * c)",
                 "A * ((A + 1.0) - (A - 1.0) * c - beta)", "(A + 1.0) + (A - 1.0) * c + beta",
                 "-2.0 * ((A - 1.0) + (A + 1.0) * c)", "(A + 1.0) + (A - 1.0) * c - beta"),
    "highshelf": ("A * ((A + 1.0) + (A - 1.0) * c + beta)", "A * (0.0 - 2.0) * ((A - 1.0) + (A + 1.0) * c)",
                  "A * ((A + 1.0) + (A - 1.0) * c - beta)", "(A + 1.0) - (A - 1.0) * c + beta",
                  "2.0 * ((A - 1.0) - (A + 1.0) * c)", "(A + 1.0) - (A - 1.0) * c - beta"),
}


def _cookbook(mode: str, cutoff: str, q: str, gain_db: str, sample_rate: float) -> str:
    """The cookbook design in dspfx's (JUCE's) order, normalised by 1/a0 (Faust's ``fi.tf2``),
    from Faust expressions of the cutoff, q and gain. Negations are written ``0.0 - x``: in
    Faust ``-(x)`` is the function ``_ - x``."""
    sr = _number(sample_rate)
    head = (f"w0 = {_clamped_cutoff(cutoff, sample_rate)} * 6.2831855 / {sr}; c = cos(w0); s = sin(w0); "
            f"q_ = {q}; alpha = s / (q_ * 2.0);")
    if mode in ("peak", "lowshelf", "highshelf"):
        head += f" A = sqrt(pow(10.0, {gain_db} * 0.05));"
    if mode in ("lowshelf", "highshelf"):
        head += " beta = s * sqrt(A) / q_;"
    b0, b1, b2, a0, a1, a2 = _BIQUAD_DESIGNS[mode]
    return (f"(fi.tf2(b0, b1, b2, a1, a2) with {{ {head} k = 1.0 / ({a0}); b0 = ({b0}) * k; b1 = ({b1}) * k; "
            f"b2 = ({b2}) * k; a1 = ({a1}) * k; a2 = ({a2}) * k; }})")


def _biquad(unit: Unit, path: str) -> str:
    if unit.mode not in _BIQUAD_DESIGNS:
        raise TypeError(f"{unit.label}: biquad mode {unit.mode!r} has no Faust design")
    gain = _slider(unit, "gain_db", path) if unit.mode in ("peak", "lowshelf", "highshelf") else "0.0"
    return _cookbook(unit.mode, _slider(unit, "cutoff_hz", path), _slider(unit, "q", path), gain, unit.sample_rate)


def _parametric_eq(unit: Unit, path: str) -> str:
    """High-pass, low shelf, peaks, high shelf, low-pass: the cookbook biquads in series."""
    def knob(key: str) -> str:
        return _slider(unit, key, path)

    from dspfx.effects.filters import EQ_FIXED_Q

    sr, butterworth = unit.sample_rate, _number(EQ_FIXED_Q)
    stages = []
    if unit.highpass:
        stages.append(_cookbook("highpass", knob("highpass_hz"), butterworth, "0.0", sr))
    stages.append(_cookbook("lowshelf", knob("low_shelf_hz"), butterworth, knob("low_shelf_gain_db"), sr))
    for i in range(1, unit.n_peaks + 1):
        stages.append(_cookbook("peak", knob(f"peak{i}_hz"), knob(f"peak{i}_q"), knob(f"peak{i}_gain_db"), sr))
    stages.append(_cookbook("highshelf", knob("high_shelf_hz"), butterworth, knob("high_shelf_gain_db"), sr))
    if unit.lowpass:
        stages.append(_cookbook("lowpass", knob("lowpass_hz"), butterworth, "0.0", sr))
    return "(" + " : ".join(stages) + ")"


def _one_pole(unit: Unit, path: str) -> str:
    n = f"tan(ma.PI * {_slider(unit, 'cutoff_hz', path)} / {_number(unit.sample_rate)})"
    b = "n / (n + 1.0), n / (n + 1.0)" if unit.mode == "lowpass" else "1.0 / (n + 1.0), -1.0 / (n + 1.0)"
    return f"(fi.tf1({b}, (n - 1.0) / (n + 1.0)) with {{ n = {n}; }})"


def _svf(unit: Unit, path: str) -> str:
    """The TPT state-variable filter (Simper): the same loop and per-mode mix as dspfx's."""
    sr = _number(unit.sample_rate)
    fc = _clamped_cutoff(_slider(unit, "cutoff_hz", path), unit.sample_rate)
    head = f"t = tan(ma.PI / {sr} * {fc}); k0 = 1.0 / {_slider(unit, 'q', path)};"
    if unit.mode in ("peak", "lowshelf", "highshelf"):
        head += f" A = pow(10.0, {_slider(unit, 'gain_db', path)} / 40.0);"
    coefficients = {
        "lowpass": ("t", "k0", "0.0", "0.0", "1.0"), "bandpass": ("t", "k0", "0.0", "k0", "0.0"),
        "highpass": ("t", "k0", "1.0", "0.0 - k0", "0.0 - 1.0"), "notch": ("t", "k0", "1.0", "0.0 - k0", "0.0"),
        "allpass": ("t", "k0", "1.0", "0.0 - 2.0 * k0", "0.0"),
        "peak": ("t", "k0 / A", "1.0", "k0 / A * (A * A - 1.0)", "0.0"),
        "lowshelf": ("t / sqrt(A)", "k0", "1.0", "k0 * (A - 1.0)", "A * A - 1.0"),
        "highshelf": ("t * sqrt(A)", "k0", "A * A", "k0 * (1.0 - A) * A", "1.0 - A * A"),
    }
    if unit.mode not in coefficients:
        raise TypeError(f"{unit.label}: svf mode {unit.mode!r} has no Faust design")
    g, k, m0, m1, m2 = coefficients[unit.mode]
    return (f"(core ~ (_, _) : (!, !, _) with {{ {head} g = {g}; k = {k}; m0 = {m0}; m1 = {m1}; m2 = {m2}; "
            "core(s1, s2, x) = 2.0 * v1 - s1, 2.0 * v2 - s2, m0 * x + m1 * v1 + m2 * v2 "
            "with { v1 = (s1 + g * (x - s2)) / (1.0 + g * (g + k)); v2 = s2 + g * v1; }; })")


def _ladder(unit: Unit, path: str) -> str:
    """The transistor ladder (:mod:`dspfx.functional.ladder`): JUCE's recursion with five states,
    the saturation in the feedback, the mode's taps times 1.2; ``saturation="table"`` reads the
    128-point tanh table (Faust ``rdtable``, values written with 17 digits) with dspfx's index
    ``(v + 5) * 12.7`` and linear interpolation, clamped to its ends; ``"tanh"`` uses ``ma.tanh``."""
    from dspfx.functional.ladder import LADDER_MODES, LADDER_OUTPUT_GAIN, ladder_tanh_table

    taps, comp = LADDER_MODES[unit.mode]
    a0, a1_, a2, a3, a4 = (_number(t * LADDER_OUTPUT_GAIN) for t in taps)
    fc, res, drive = (_slider(unit, key, path) for key in ("cutoff_hz", "resonance", "drive"))
    if unit.saturation == "table":
        values = ", ".join(repr(float(v)) for v in ladder_tanh_table())
        sat = (f"sat(v) = select2(v <= -5.0, select2(v >= 5.0, select2(i >= 127, lo + f * (hi - lo), tb(127)), "
               f"tb(127)), tb(0)) with {{ pos = (v + 5.0) * 12.7; i = int(max(0.0, min(pos, 127.0))); "
               f"f = pos - float(i); tb(j) = rdtable(waveform{{{values}}}, j); lo = tb(i); hi = tb(min(i + 1, 127)); }};")
    else:
        sat = "sat(v) = ma.tanh(v);"
    return (f"(core ~ (_, _, _, _, _) : (!, !, !, !, !, _) with {{ {sat} "
            f"a1 = exp({fc} * ({-2.0 * math.pi / unit.sample_rate!r})); r = 0.1 + 0.9 * {res}; dr = {drive}; "
            "gain(dd) = pow(dd, -2.642) * 0.6103 + 0.3903; d2 = 0.04 * dr + 0.96; g1 = gain(dr); g2 = gain(d2); "
            "gg = 1.0 - a1; b0 = gg * (10.0 / 13.0); b1 = gg * (3.0 / 13.0); "
            "core(s0, s1, s2, s3, s4, x) = a, b, c, d, e, "
            f"{a0} * a + {a1_} * b + {a2} * c + {a3} * d + {a4} * e "
            f"with {{ dx = g1 * sat(dr * x); a = dx - 4.0 * r * (g2 * sat(d2 * s4) - {_number(comp)} * dx); "
            "b = b1 * s0 + a1 * s1 + b0 * a; c = b1 * s1 + a1 * s2 + b0 * b; "
            "d = b1 * s2 + a1 * s3 + b0 * c; e = b1 * s3 + a1 * s4 + b0 * d; }; })")


def _static_nonlinearity(unit: Unit, path: str) -> str:
    """``out * (f(in * x + bias) - f(bias) + f(0))`` with the curve baked in: ``tanh``; a
    Chebyshev series (the recurrence ``T_k = 2 u T_(k-1) - T_(k-2)`` on ``clamp(u, -1, 1)``, the
    learned coefficients as constants); or the MLP ``u + w3 . tanh(W2^T tanh(w1 u + b1) + b2) + b3``
    with its learned weights as constants."""
    gi, go, bias = (_slider(unit, key, path) for key in ("input_gain_db", "output_gain_db", "bias"))
    if unit.curve == "tanh":
        curve = "f(u) = ma.tanh(u);"
    elif unit.curve == "chebyshev":
        c = [repr(float(v)) for v in unit.coefficients.detach().double()]
        terms = ["1.0", "v"][: len(c)]
        for _ in range(2, len(c)):
            terms.append(f"(2.0 * v * {terms[-1]} - {terms[-2]})")
        curve = f"f(u) = {' + '.join(f'{ck} * {tk}' for ck, tk in zip(c, terms))} with {{ v = max(-1.0, min(1.0, u)); }};"
    else:
        w1, b1, w2, b2, w3 = (t.detach().double().tolist() for t in (unit.w1, unit.b1, unit.w2, unit.b2, unit.w3))
        b3 = float(unit.b3.detach().double().reshape(-1)[0])
        n = len(w1)
        h1 = [f"ma.tanh(u * {w1[i]!r} + {b1[i]!r})" for i in range(n)]
        defs = " ".join(f"h{i} = {h1[i]};" for i in range(n))
        h2 = [f"ma.tanh({' + '.join(f'h{i} * {w2[i][j]!r}' for i in range(n))} + {b2[j]!r})" for j in range(n)]
        curve = (f"f(u) = u + ({' + '.join(f'{h2[j]} * {w3[j]!r}' for j in range(n))}) + {b3!r} "
                 f"with {{ {defs} }};")
    return (f"(\\(x).(pow(10.0, {go} / 20.0) * ((f(pow(10.0, {gi} / 20.0) * x + b) - f(b)) + f(0.0))) "
            f"with {{ b = {bias}; {curve} }})")


def _bitcrush(unit: Unit, path: str) -> str:
    """``round_half_even(x * s) * (1 / s)``, ``s = 2 ** bit_depth``: C's ``rint`` rounds half to
    even, and the operation order is dspfx's (and pedalboard's)."""
    return f"(\\(x).(rint(x * s) * (1.0 / s)) with {{ s = pow(2.0, {_slider(unit, 'bit_depth', path)}); }})"


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
    t, ratio, att, rel, w = (_slider(unit, key, path) for key in ("threshold_db", "ratio", "attack_ms", "release_ms", "knee_db"))
    makeup = _slider(unit, "makeup_db", path) if "makeup_db" in unit.knob_specs else "0.0"
    power = unit.detector == "rms"
    sr = unit.sample_rate
    detector = f"({'(_ <: *)' if power else 'abs'} : {_follower(_coefficient(att, sr), _coefficient(rel, sr))})"
    slope = f"1.0 - {ratio}" if below else f"1.0 / {ratio} - 1.0"
    return _gain_stage(detector, power, t, slope, w, makeup, below)


def _noise_gate(unit: Unit, path: str) -> str:
    """JUCE's ``NoiseGate``: ballistics on ``x^2`` (attack 0, release 50 ms), its square root,
    ballistics with the attack and release knobs, a hard-knee expander below the threshold."""
    from dspfx.functional.dynamics import NOISE_GATE_RMS_RELEASE_MS

    t, ratio, att, rel = (_slider(unit, key, path) for key in ("threshold_db", "ratio", "attack_ms", "release_ms"))
    sr = unit.sample_rate
    rms = _follower("0.0", _coefficient(_number(NOISE_GATE_RMS_RELEASE_MS), sr))
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

    t, rel = _slider(unit, "threshold_db", path), _slider(unit, "release_ms", path)
    sr = unit.sample_rate
    t1, r1, a1, rel1 = LIMITER_FIRST_STAGE
    first = _gain_stage(f"(abs : {_follower(_coefficient(_number(a1), sr), _coefficient(_number(rel1), sr))})", False,
                        _number(t1), f"1.0 / {_number(r1)} - 1.0", "0.0", "0.0", False)
    second = _gain_stage(f"(abs : {_follower(_coefficient(_number(LIMITER_SECOND_STAGE_ATTACK_MS), sr), _coefficient(rel, sr))})",
                         False, t, f"1.0 / {_number(LIMITER_SECOND_STAGE_RATIO)} - 1.0", "0.0", "0.0", False)
    out_db = f"({10.0 * (1.0 - 1.0 / r1) / 2.0!r} - ({t}))"
    return f"({first} : {second} : *(exp({out_db} * {_LN10_20!r})) : max(-1.0) : min(1.0))"


#: Longest impulse response written as a direct-form FIR: one multiply-add per tap and sample in
#: the plugin, and the Faust compiler's time grows with the square of the taps (1536 taps in one
#: program build in about 25 s with g++; 2048 taps alone take Faust 2.54 over 2 minutes).
MAX_FIR_TAPS = 1024


def _fir(unit: Unit, h: Any) -> str:
    """A baked impulse response (first channel) as Faust's direct-form ``fi.fir``; its cost is
    one multiply-add per tap and sample (a partitioned FFT convolution is far cheaper for long
    responses, which is why longer ones are refused)."""
    taps = h.detach().cpu().double().reshape(-1, h.shape[-1])[0].tolist()
    if getattr(h, "ndim", 1) > 1 and h.shape[0] > 1:
        raise TypeError(f"{unit.label}: a {h.shape[0]}-channel impulse response; the plugins are mono")
    if len(taps) > MAX_FIR_TAPS:
        raise TypeError(f"{unit.label}: {len(taps)} taps; a plugin writes at most {MAX_FIR_TAPS} as a direct FIR "
                        "(trim the response, e.g. Cabinet.to_ir(n_taps))")
    return f"fi.fir(({', '.join(repr(float(v)) for v in taps)}))"


def _convolution(unit: Unit, path: str) -> str:
    """The (normalised) impulse response as a direct FIR, and the dry/wet mix."""
    from dspfx.functional.convolution import normalize_impulse_response

    h = unit.impulse_response
    h = normalize_impulse_response(h) if unit.normalize else h
    mix = _slider(unit, "mix", path)
    return f"(_ <: (_, {_fir(unit, h)}) : \\(d, w).((1.0 - {mix}) * d + {mix} * w))"


def _cabinet(unit: Unit, path: str) -> str:
    """Parametric: the five cookbook biquads of :data:`dspfx.amps.cabinet.CABINET_SECTIONS`; IR
    mode: the (normalised) response as a direct FIR."""
    from dspfx.amps.cabinet import CABINET_SECTIONS

    if unit.mode == "ir":
        return _fir(unit, unit.effective_impulse_response())
    stages = []
    for name, mode in CABINET_SECTIONS:
        gain = _slider(unit, f"{name}_gain_db", path) if f"{name}_gain_db" in unit.knob_specs else "0.0"
        stages.append(_cookbook(mode, _slider(unit, f"{name}_hz", path), _slider(unit, f"{name}_q", path), gain,
                                unit.sample_rate))
    return "(" + " : ".join(stages) + ")"


def _tonestack(unit: Unit, path: str) -> str:
    """The tone stack (:mod:`dspfx.functional.tonestack`): pot tapers, the section resistances,
    Yeh & Smith's third-order analog coefficients and their bilinear transform, computed from
    the pot ports in the plugin as dspfx computes them; the IIR runs in Faust's direct form."""
    from dspfx.functional.tonestack import _BILINEAR3, LOG_TAPER_BASE, _bilinear_constant

    c = unit.components
    knobs = {key: _slider(unit, key, path) for key in ("treble", "mid", "bass")}

    def taper(x: str, kind: str) -> str:
        return x if kind == "linear" else f"((exp({x} * {math.log(LOG_TAPER_BASE)!r}) - 1.0) / {_number(LOG_TAPER_BASE - 1.0)})"

    t, m, b = taper(knobs["treble"], c.treble_taper), taper(knobs["mid"], c.mid_taper), taper(knobs["bass"], c.bass_taper)
    mid_upper = f"(1.0 - {m}) * {_number(c.r3_mid)}" if c.mid_wiring == "pot" else "0.0"
    k = _bilinear_constant(unit.sample_rate, unit.warp_hz)
    head = (f"rtu = (1.0 - {t}) * {_number(c.r1_treble)}; rtl = {t} * {_number(c.r1_treble)}; "
            f"rb = {b} * {_number(c.r2_bass)}; rmu = {mid_upper}; rml = {m} * {_number(c.r3_mid)}; "
            f"r4 = {_number(c.r4_slope)}; c1 = {_number(c.c1_treble)}; c2 = {_number(c.c2_bass)}; c3 = {_number(c.c3_mid)}; "
            "low = rb + rmu; below = low + rml; tre = rtl + rtu; "
            "sb1 = c1 * (rtl + below) + c2 * below + c3 * rml; "
            "sb2 = c1 * c2 * (r4 * (rtl + below) + tre * below) + c1 * c3 * (r4 * (rtl + below) + rml * (low + tre)) "
            "+ c2 * c3 * rml * low; "
            "sb3 = c1 * c2 * c3 * low * (r4 * (rml + rtl) + rml * tre); "
            "sa1 = c1 * (tre + below) + c2 * (r4 + below) + c3 * (r4 + rml); "
            "sa2 = sb2 + (c1 * c2 + c1 * c3) * r4 * rtu + c2 * c3 * r4 * low; "
            "sa3 = c1 * c2 * c3 * low * (r4 * (rml + tre) + rml * tre); ")
    analog_b, analog_a = ("0.0", "sb1", "sb2", "sb3"), ("1.0", "sa1", "sa2", "sa3")

    def z(coeffs: tuple[str, ...], j: int) -> str:  # the coefficient of z^-j after the bilinear transform
        return " + ".join(f"{coeffs[i]} * {float(_BILINEAR3[i][j] * k**i)!r}" for i in range(4))

    head += "".join(f"zb{j} = {z(analog_b, j)}; za{j} = {z(analog_a, j)}; " for j in range(4))
    return (f"(fi.iir((zb0 / za0, zb1 / za0, zb2 / za0, zb3 / za0), (za1 / za0, za2 / za0, za3 / za0)) "
            f"with {{ {head}}})")


def _delay(unit: Unit, path: str) -> str:
    """The whole-sample feedback echo (``interpolation="none"``, undamped):
    ``buf = x + g * buf[n - D]``, ``y = (1 - mix) x + mix buf[n - D]``, ``D = floor(delay_ms *
    sr / 1000)`` in float32 like pedalboard; ``delay_ms = 0`` bypasses."""
    if not unit.exact:
        raise TypeError(f"{unit.label}: only the whole-sample undamped delay exports to Faust so far "
                        f"(interpolation={unit.interpolation!r}, damping={unit.damping!r})")
    sr = _number(unit.sample_rate)
    longest = int(float(unit.knob_specs["delay_ms"].maximum) * unit.sample_rate / 1000.0) + 2
    ms, fb, mix = (_slider(unit, key, path) for key in ("delay_ms", "feedback", "mix"))
    return (f"(echo with {{ ms = {ms}; D = int(ms / 1000.0 * {sr}); g = {fb}; mix = {mix}; "
            f"line = + ~ (de.delay({longest}, max(D - 1, 0)) : *(g)); "
            f"echo(x) = select2(ms == 0.0, (1.0 - mix) * x + mix * select2(D > 0, 0.0, "
            f"x : line : de.delay({longest}, D)), x); }})")


def _chain(unit: Unit, path: str) -> str:
    return "(" + " : ".join(_expression(child, f"{path}{key}.") for key, child in unit.units.items()) + ")"


def _parallel(unit: Unit, path: str) -> str:
    branches = []
    for key, child in unit.units.items():
        branch = _expression(child, f"{path}{key}.")
        if unit.gains:
            branch = f"({branch} : *(ba.db2linear({_slider(unit, f'gain_db_{key}', path)})))"
        branches.append(branch)
    return f"(_ <: ({', '.join(branches)}) :> _)"


def _dry_wet(unit: Unit, path: str) -> str:
    wet = _expression(unit.units["wet"], f"{path}wet.")
    mix = _slider(unit, "mix", path)
    return f"(_ <: (_, {wet}) : \\(d, w).(d + {mix} * (w - d)))"


#: Unit name -> its Faust emitter ``(unit, path prefix) -> expression``.
FAUST_UNITS: dict[str, Callable[[Unit, str], str]] = {
    "gain": _gain, "trim": _trim, "invert": lambda unit, path: "*(-1.0)", "distortion": _distortion,
    "clipping": _clipping, "biquad": _biquad, "one_pole": _one_pole, "svf": _svf, "delay": _delay,
    "parametric_eq": _parametric_eq, "ladder": _ladder, "tonestack": _tonestack, "bitcrush": _bitcrush, "static_nonlinearity": _static_nonlinearity,
    "compressor": lambda unit, path: _dynamics(unit, path, below=False),
    "expander": lambda unit, path: _dynamics(unit, path, below=True),
    "noise_gate": _noise_gate, "limiter": _limiter, "convolution": _convolution, "cabinet": _cabinet,
    "chain": _chain, "parallel": _parallel, "dry_wet": _dry_wet,
}


def _expression(unit: Unit, path: str) -> str:
    if unit.name in ("wavenet", "lstm_amp"):
        raise TypeError(f"{unit.label} is a neural capture: write it as a .nam file (dspfx.export.export_nam), "
                        "which NAM's plugin plays")
    emitter = FAUST_UNITS.get(unit.name)
    if emitter is None:
        raise TypeError(f"{unit.label} cannot be exported as a plugin yet; exportable units: {', '.join(FAUST_UNITS)}")
    return emitter(unit, path)


def faust_code(unit: Unit, name: str = "dspfx_chain") -> str:
    """A self-contained Faust program (``.dsp`` text) rendering ``unit``, mono in and out.

    Raises:
        TypeError: a unit (anywhere in the chain) that cannot be exported, named.
        ValueError: a name that is not an identifier.
    """
    if not isinstance(unit, Unit):
        raise TypeError(f"faust_code takes a dspfx Unit, got {type(unit).__name__}")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"a plugin name is an identifier of at most 64 characters (letters, digits, _), got {name!r}")
    body = _expression(unit, "")
    return (f'declare name "{name}";\ndeclare description "exported by dspfx from {unit.label}";\n'
            f'import("stdfaust.lib");\n\nprocess = {body};\n')


def export_plugin(unit: Unit, out: str | os.PathLike, *, format: str = "lv2", name: str = "dspfx_chain") -> Path:
    """Write ``unit`` as a plugin into the folder ``out``: ``NAME.dsp`` (``format="faust"``), or
    that and the LV2 bundle ``NAME.lv2`` built by faust2lv2 (``format="lv2"``). Returns the
    ``.dsp`` path or the bundle's. A bundle already there is replaced only once the new one is built.

    Raises:
        TypeError: a unit that cannot be exported. ValueError: a bad format or name, ``out``
            a file. PluginExportError: faust2lv2 missing or failing.
    """
    from dspfx.io import atomic_path

    if format not in ("faust", "lv2"):
        raise ValueError(f"format must be 'faust' or 'lv2', got {format!r}")
    code = faust_code(unit, name)
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"out={folder} exists and is not a folder")
    if format == "lv2" and shutil.which("faust2lv2") is None:
        raise PluginExportError("faust2lv2 is not installed (Debian: apt-get install faust g++ lv2-dev libboost-dev)")
    folder.mkdir(parents=True, exist_ok=True)
    dsp = folder / f"{name}.dsp"
    with atomic_path(dsp) as tmp:
        Path(tmp).write_text(code)
    if format == "faust":
        return dsp
    with tempfile.TemporaryDirectory(prefix="dspfx-lv2-build-") as build:
        shutil.copy(dsp, Path(build) / dsp.name)
        done = subprocess.run(["faust2lv2", "-nomidicc", "-double", "-uri-prefix", URI_PREFIX, dsp.name], cwd=build,
                              capture_output=True, text=True, timeout=600)
        bundle = Path(build) / f"{name}.lv2"
        if done.returncode != 0 or not bundle.is_dir():
            lines = (done.stderr or done.stdout).strip().splitlines()
            raise PluginExportError(f"faust2lv2 failed on {dsp} (exit {done.returncode}): {lines[-1] if lines else ''}")
        target = folder / bundle.name
        staged = folder / f".{bundle.name}.new"
        shutil.rmtree(staged, ignore_errors=True)
        shutil.copytree(bundle, staged)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(staged, target)
    return target


def plugin_controls(bundle: str | os.PathLike) -> dict[str, str]:
    """Knob path -> LV2 port symbol of a bundle built by :func:`export_plugin` (Faust derives
    the symbols from the paths, e.g. ``tone.cutoff_hz`` -> ``tone_cutoff_hz_3``)."""
    bundle = Path(bundle)
    ttl = bundle / f"{bundle.stem}.ttl"
    if not ttl.is_file():
        raise FileNotFoundError(f"no {ttl.name} in {bundle}: not a bundle built by export_plugin")
    pairs = re.findall(r'lv2:symbol "([^"]+)" ;\s*lv2:name "([^"]+)"', ttl.read_text())
    return {name: symbol for symbol, name in pairs if not re.fullmatch(r"(in|out)\d+", symbol)}
