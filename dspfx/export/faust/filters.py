"""Faust emitters of the filters: biquad, parametric_eq, one_pole, svf, ladder, tonestack,
convolution and cabinet (a direct FIR)."""

from __future__ import annotations

import math
from typing import Any

from dspfx.export.faust._common import BIQUAD_DESIGNS, clamped_cutoff, cookbook, number, slider
from dspfx.unit import Unit


def _biquad(unit: Unit, path: str) -> str:
    if unit.mode not in BIQUAD_DESIGNS:
        raise TypeError(f"{unit.label}: biquad mode {unit.mode!r} has no Faust design")
    gain = slider(unit, "gain_db", path) if unit.mode in ("peak", "lowshelf", "highshelf") else "0.0"
    return cookbook(unit.mode, slider(unit, "cutoff_hz", path), slider(unit, "q", path), gain, unit.sample_rate)


def _parametric_eq(unit: Unit, path: str) -> str:
    """High-pass, low shelf, peaks, high shelf, low-pass: the cookbook biquads in series."""
    def knob(key: str) -> str:
        return slider(unit, key, path)

    from dspfx.effects.filters import EQ_FIXED_Q

    sr, butterworth = unit.sample_rate, number(EQ_FIXED_Q)
    stages = []
    if unit.highpass:
        stages.append(cookbook("highpass", knob("highpass_hz"), butterworth, "0.0", sr))
    stages.append(cookbook("lowshelf", knob("low_shelf_hz"), butterworth, knob("low_shelf_gain_db"), sr))
    for i in range(1, unit.n_peaks + 1):
        stages.append(cookbook("peak", knob(f"peak{i}_hz"), knob(f"peak{i}_q"), knob(f"peak{i}_gain_db"), sr))
    stages.append(cookbook("highshelf", knob("high_shelf_hz"), butterworth, knob("high_shelf_gain_db"), sr))
    if unit.lowpass:
        stages.append(cookbook("lowpass", knob("lowpass_hz"), butterworth, "0.0", sr))
    return "(" + " : ".join(stages) + ")"


def _one_pole(unit: Unit, path: str) -> str:
    n = f"tan(ma.PI * {slider(unit, 'cutoff_hz', path)} / {number(unit.sample_rate)})"
    b = "n / (n + 1.0), n / (n + 1.0)" if unit.mode == "lowpass" else "1.0 / (n + 1.0), -1.0 / (n + 1.0)"
    return f"(fi.tf1({b}, (n - 1.0) / (n + 1.0)) with {{ n = {n}; }})"


def _svf(unit: Unit, path: str) -> str:
    """The TPT state-variable filter (Simper): the same loop and per-mode mix as dspfx's."""
    sr = number(unit.sample_rate)
    fc = clamped_cutoff(slider(unit, "cutoff_hz", path), unit.sample_rate)
    head = f"t = tan(ma.PI / {sr} * {fc}); k0 = 1.0 / {slider(unit, 'q', path)};"
    if unit.mode in ("peak", "lowshelf", "highshelf"):
        head += f" A = pow(10.0, {slider(unit, 'gain_db', path)} / 40.0);"
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
    a0, a1_, a2, a3, a4 = (number(t * LADDER_OUTPUT_GAIN) for t in taps)
    fc, res, drive = (slider(unit, key, path) for key in ("cutoff_hz", "resonance", "drive"))
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
            f"with {{ dx = g1 * sat(dr * x); a = dx - 4.0 * r * (g2 * sat(d2 * s4) - {number(comp)} * dx); "
            "b = b1 * s0 + a1 * s1 + b0 * a; c = b1 * s1 + a1 * s2 + b0 * b; "
            "d = b1 * s2 + a1 * s3 + b0 * c; e = b1 * s3 + a1 * s4 + b0 * d; }; })")


def _tonestack(unit: Unit, path: str) -> str:
    """The tone stack (:mod:`dspfx.functional.tonestack`): pot tapers, the section resistances,
    Yeh & Smith's third-order analog coefficients and their bilinear transform, computed from
    the pot ports in the plugin as dspfx computes them; the IIR runs in Faust's direct form."""
    from dspfx.functional.tonestack import _BILINEAR3, LOG_TAPER_BASE, _bilinear_constant

    c = unit.components
    knobs = {key: slider(unit, key, path) for key in ("treble", "mid", "bass")}

    def taper(x: str, kind: str) -> str:
        return x if kind == "linear" else f"((exp({x} * {math.log(LOG_TAPER_BASE)!r}) - 1.0) / {number(LOG_TAPER_BASE - 1.0)})"

    t, m, b = taper(knobs["treble"], c.treble_taper), taper(knobs["mid"], c.mid_taper), taper(knobs["bass"], c.bass_taper)
    mid_upper = f"(1.0 - {m}) * {number(c.r3_mid)}" if c.mid_wiring == "pot" else "0.0"
    k = _bilinear_constant(unit.sample_rate, unit.warp_hz)
    head = (f"rtu = (1.0 - {t}) * {number(c.r1_treble)}; rtl = {t} * {number(c.r1_treble)}; "
            f"rb = {b} * {number(c.r2_bass)}; rmu = {mid_upper}; rml = {m} * {number(c.r3_mid)}; "
            f"r4 = {number(c.r4_slope)}; c1 = {number(c.c1_treble)}; c2 = {number(c.c2_bass)}; c3 = {number(c.c3_mid)}; "
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


#: Longest impulse response written as a direct FIR: one multiply-add per tap and sample in the
#: plugin (benchmarks/export.py measures it; a 0.68 s response at 48 kHz is 32768 taps), and the
#: build grows faster than the taps (Faust 2.54 and g++ take about 4 s for 8192 taps, 30 s and
#: more for 32768).
MAX_FIR_TAPS = 32768

#: Taps per block of :func:`direct_fir`: Faust's compiler is quadratic in the taps of one sum
#: (2048 taps as one ``fi.fir`` take it over 2 minutes), so a long response is cut into blocks.
FIR_BLOCK = 64


def _horner(terms: list[str], delay: int) -> str:
    """``t0 + (t1 + (t2 + ...)@delay)@delay``: each term ``delay`` samples later than the one before."""
    expr = terms[-1]
    for term in reversed(terms[:-1]):
        expr = f"{term} + ({expr}) @ ({delay})"
    return expr


def direct_fir(taps: list[float]) -> str:
    """A direct-form FIR of the taps, one multiply-add per tap and sample, in blocks of
    :data:`FIR_BLOCK` taps nested two deep: ``y = g0 + D^S (g1 + D^S (g2 + ...))`` over groups of
    ``S`` taps, each group ``g = b0 + D^B (b1 + D^B (...))`` over its blocks, each block a
    ``fi.fir``. The sums stay separate for Faust's compiler, so the build grows about linearly
    with the taps, and the delay lines hold about twice the response. Exact: the same products,
    summed in another order."""
    def block(seg: list[float]) -> str:
        return f"*({seg[0]!r})" if len(seg) == 1 else f"fi.fir(({', '.join(repr(float(v)) for v in seg)}))"

    if len(taps) <= FIR_BLOCK:
        return block(taps)
    blocks = [taps[i : i + FIR_BLOCK] for i in range(0, len(taps), FIR_BLOCK)]
    per_group = math.ceil(math.sqrt(len(blocks)))
    defs = " ".join(f"b{k} = {block(seg)};" for k, seg in enumerate(blocks))
    groups = [_horner([f"b{k}(x)" for k in range(g, min(g + per_group, len(blocks)))], FIR_BLOCK)
              for g in range(0, len(blocks), per_group)]
    return f"(\\(x).({_horner(groups, FIR_BLOCK * per_group)}) with {{ {defs} }})"


def fir_expression(unit: Unit, h: Any) -> str:
    """A baked impulse response (first channel) as a :func:`direct_fir`; its cost is one
    multiply-add per tap and sample (a partitioned FFT convolution is far cheaper for long
    responses, and Faust 2.54 has no block processing to write one), so responses longer than
    :data:`MAX_FIR_TAPS` are refused."""
    taps = h.detach().cpu().double().reshape(-1, h.shape[-1])[0].tolist()
    if getattr(h, "ndim", 1) > 1 and h.shape[0] > 1:
        raise TypeError(f"{unit.label}: a {h.shape[0]}-channel impulse response; the plugins are mono")
    if len(taps) > MAX_FIR_TAPS:
        raise TypeError(f"{unit.label}: {len(taps)} taps; a plugin writes at most {MAX_FIR_TAPS} as a direct FIR "
                        f"({MAX_FIR_TAPS / unit.sample_rate:.3g} s at {unit.sample_rate:g} Hz; trim the response, "
                        "e.g. Cabinet.to_ir(n_taps) or a shorter length_s)")
    return direct_fir(taps)


def _convolution(unit: Unit, path: str) -> str:
    """The (normalised) impulse response as a direct FIR, and the dry/wet mix."""
    from dspfx.functional.convolution import normalize_impulse_response

    h = unit.impulse_response
    h = normalize_impulse_response(h) if unit.normalize else h
    mix = slider(unit, "mix", path)
    return f"(_ <: (_, {fir_expression(unit, h)}) : \\(d, w).((1.0 - {mix}) * d + {mix} * w))"


def _cabinet(unit: Unit, path: str) -> str:
    """Parametric: the five cookbook biquads of :data:`dspfx.amps.cabinet.CABINET_SECTIONS`; IR
    mode: the (normalised) response as a direct FIR."""
    from dspfx.amps.cabinet import CABINET_SECTIONS

    if unit.mode == "ir":
        return fir_expression(unit, unit.effective_impulse_response())
    stages = []
    for name, mode in CABINET_SECTIONS:
        gain = slider(unit, f"{name}_gain_db", path) if f"{name}_gain_db" in unit.knob_specs else "0.0"
        stages.append(cookbook(mode, slider(unit, f"{name}_hz", path), slider(unit, f"{name}_q", path), gain,
                                unit.sample_rate))
    return "(" + " : ".join(stages) + ")"




def _fir_unit(unit: Unit, path: str) -> str:
    """The ``fir`` effect: the taps its magnitudes design (in float64, as the unit renders them
    there) as a direct FIR; a call's time-varying magnitudes are not knobs."""
    import copy

    return fir_expression(unit, copy.deepcopy(unit).double().impulse_response().detach())


#: Unit name -> Faust emitter ``(unit, path prefix) -> expression``.
EMITTERS = {
    "fir": _fir_unit,
    "biquad": _biquad, "one_pole": _one_pole, "svf": _svf, "parametric_eq": _parametric_eq, "ladder": _ladder,
    "tonestack": _tonestack, "convolution": _convolution, "cabinet": _cabinet,
}
