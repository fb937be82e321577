"""Faust emitters of the LFO effects: chorus, flanger, vibrato (a swept, linearly interpolated
delay line with feedback) and the phaser (swept TPT allpasses).

The LFO phase starts at 0 and advances by ``2 pi rate / sr`` per step, wrapped at ``2 pi``: in
double precision (dspfx's exact phase), or, where the unit accumulates it in float32 like JUCE
(the chorus's ``float32_phase``, the phaser's ``pedalboard_lfo``, both on by default), in float32
emulated in double: every sum is rounded to the nearest float32 by ``rint(v / q) * q`` with ``q``
the float32 spacing at ``v`` (its binade found exactly). Without that the phase would drift from
the unit's by the float32 rounding, ESR 8e-4 after a quarter second of a 3 Hz chorus.
"""

from __future__ import annotations

import math

import numpy as np

from dspfx.export.faust._common import number, slider
from dspfx.unit import Unit

_TWO_PI = repr(2.0 * math.pi)


_TWO_PI32 = repr(float(np.float32(2.0 * math.pi)))
#: ``f32(v)``: ``v`` rounded to the nearest float32 (ties to even, as C's ``rint``), for normal
#: values and 0: ``q = 2^(e - 23)`` with ``e`` the binade of ``|v|``, from ``log`` and then
#: corrected by one either way where ``log`` rounds across a power of two.
_F32 = ("f32(v) = select2(v == 0.0, rint(v / q) * q, 0.0) with { a = abs(v); "
        "e0 = floor(log(max(a, 1e-300)) / log(2.0)); "
        "e = e0 - (a < pow(2.0, e0)) + (a >= pow(2.0, e0 + 1.0)); q = pow(2.0, e - 23.0); };")


def _phase(increment: str, trigger: str | None = None, float32: bool = False) -> str:
    """The LFO phase before each step (0 at the first sample), advanced by ``increment`` per
    sample, or only where ``trigger`` is 1; ``float32``: each sum rounded to float32 (the
    increment must be a float32 value already)."""
    step = increment if trigger is None else f"select2({trigger}, 0.0, {increment})"
    if not float32:
        return f"(((+({step}) : \\(p).(select2(p >= {_TWO_PI}, p, p - {_TWO_PI}))) ~ _) : mem)"
    return (f"((((+({step}) : f32) : \\(p).(select2(p >= {_TWO_PI32}, p, f32(p - {_TWO_PI32})))) ~ _) : mem "
            f"with {{ {_F32} }})")


def _increment(rate: str, sample_rate: float, float32: bool, steps: int = 1) -> str:
    """The phase step of an LFO at ``rate`` (a port, a float32 value): ``rate * 2 pi steps / sr``
    in double, or JUCE's ``float32(float32(2 pi) * rate) / float32(sr / steps)`` rounded to float32."""
    if not float32:
        return f"{rate} * {2.0 * math.pi * steps / sample_rate!r}"
    divisor = repr(float(np.float32(sample_rate / steps)))
    return f"(f32(f32({_TWO_PI32} * {rate}) / {divisor}) with {{ {_F32} }})"


def _lfo(shape: str, phase: str) -> str:
    """dspfx's LFO waveforms (:func:`dspfx.functional.modulation.lfo`)."""
    if shape == "sine":
        return f"sin({phase})"
    return f"(1.0 - 4.0 * abs(fmod({phase} / {_TWO_PI} + 0.25, 1.0) - 0.5))"


def _swept_line(unit: Unit, path: str, delay_ms: str, feedback: str, mix: str) -> str:
    """:func:`dspfx.functional.modulation.modulated_delay`: write ``v = x + sign g w'``, read
    ``w = a + f (b - a)`` at ``d = clamp(delay_ms * sr / 1000, 0, ceil(max))`` samples back
    (``a = v[n - k]``, ``b = v[n - k - 1]``), ``y = (1 - mix) x + mix w``. The LFO's phase is
    ``ph``; ``delay_ms`` may use it."""
    sr = number(unit.sample_rate)
    dmax = math.ceil(unit.max_delay_samples)
    size = dmax + 2
    float32 = bool(getattr(unit, "float32_phase", False))
    increment = _increment(slider(unit, "rate_hz", path), unit.sample_rate, float32)
    return (f"(\\(x).((1.0 - mx) * x + mx * (x : line)) with {{ ph = {_phase(increment, float32=float32)}; mx = {mix}; "
            f"g = {feedback}; d = max(0.0, min({delay_ms} * {sr} / 1000.0, {number(dmax)})); "
            "k = int(floor(d)); f = d - floor(d); "
            f"rd(v) = a + f * (b - a) with {{ a = de.delay({size}, k, v); b = de.delay({size}, k + 1, v); }}; "
            f"line = (\\(wp, x).(x + {number(unit.feedback_sign)} * g * wp) : rd) ~ _; }})")


def _chorus(unit: Unit, path: str) -> str:
    """pedalboard's chorus: ``d_ms = max(20 (sin(ph - pi) (0.5 depth)) + clamp(centre, 1, 100), 1)``,
    the feedback subtracted."""
    depth, centre = slider(unit, "depth", path), slider(unit, "centre_delay_ms", path)
    delay = f"max(20.0 * (sin(ph - {math.pi!r}) * (0.5 * {depth})) + max(1.0, min({centre}, 100.0)), 1.0)"
    return _swept_line(unit, path, delay, slider(unit, "feedback", path), slider(unit, "mix", path))


def _flanger(unit: Unit, path: str) -> str:
    """``d_ms = centre (1 + depth lfo)``, the feedback added."""
    depth, centre = slider(unit, "depth", path), slider(unit, "centre_delay_ms", path)
    delay = f"({centre} * (1.0 + {depth} * {_lfo(unit.shape, 'ph')}))"
    return _swept_line(unit, path, delay, slider(unit, "feedback", path), slider(unit, "mix", path))


def _vibrato(unit: Unit, path: str) -> str:
    """``d_ms = max(centre + depth_ms lfo, 0)``, wet only, no feedback."""
    depth, centre = slider(unit, "depth_ms", path), slider(unit, "centre_delay_ms", path)
    delay = f"max({centre} + {depth} * {_lfo(unit.shape, 'ph')}, 0.0)"
    return _swept_line(unit, path, delay, "0.0", "1.0")


def _phaser(unit: Unit, path: str) -> str:
    """:func:`dspfx.functional.phaser.phaser`: every 4th sample (the first included) the LFO sets
    the allpass coefficient ``G = g / (1 + g)``, ``g = tan(pi fc / sr)``,
    ``fc = 20 (fmax / 20) ** clamp(sin(ph - pi) (0.5 depth) + c0, 0, 1)``, held in between; the
    phase advances by ``2 pi rate 4 / sr`` per update. Then per sample ``u = x - f``, ``n_stages``
    TPT allpasses, ``f = feedback u``, ``y = (1 - mix) x + mix u``."""
    from dspfx.functional.phaser import _CENTRE_RANGE_MAX_HZ, _MIN_CUTOFF_HZ, PHASER_UPDATE_INTERVAL

    sr = unit.sample_rate
    fmax = min(20000.0, 0.49 * float(sr))
    rate, depth, centre, feedback, mix = (slider(unit, key, path) for key in
                                          ("rate_hz", "depth", "centre_frequency_hz", "feedback", "mix"))
    every = PHASER_UPDATE_INTERVAL
    update = f"((((+(1) : %({every})) ~ _) : mem) == 0)"
    phase = _phase(_increment(rate, sr, unit.pedalboard_lfo, every), "upd", float32=unit.pedalboard_lfo)
    n = unit.n_stages
    states = ", ".join(f"s{k}" for k in range(n))
    stages = ""
    u = "u0"
    for k in range(n):
        stages += (f"v{k} = G * ({u} - s{k}); lp{k} = v{k} + s{k}; n{k} = lp{k} + v{k}; "
                   f"u{k + 1} = 2.0 * lp{k} - {u}; ")
        u = f"u{k + 1}"
    outputs = ", ".join(f"n{k}" for k in range(n))
    feed = ", ".join("_" for _ in range(n + 1))
    drop = ", ".join("!" for _ in range(n + 1))
    return (f"(\\(x).((1.0 - {mix}) * x + {mix} * (x : (core ~ ({feed}) : ({drop}, _)))) with {{ upd = {update}; "
            f"ph = {phase}; c0 = log10({centre} / {number(_MIN_CUTOFF_HZ)}) / {math.log10(_CENTRE_RANGE_MAX_HZ / _MIN_CUTOFF_HZ)!r}; "
            f"m = max(0.0, min(sin(ph - {math.pi!r}) * (0.5 * {depth}) + c0, 1.0)); "
            f"fc = {number(_MIN_CUTOFF_HZ)} * pow({fmax / _MIN_CUTOFF_HZ!r}, m); "
            f"gt = tan({math.pi!r} * fc / {number(sr)}); G = ba.sAndH(upd, gt / (1.0 + gt)); "
            f"core({states}, fp, x) = {outputs}, {feedback} * {u}, {u} with {{ u0 = x - fp; {stages}}}; }})")


#: Unit name -> Faust emitter ``(unit, path prefix) -> expression``.
EMITTERS = {"chorus": _chorus, "flanger": _flanger, "vibrato": _vibrato, "phaser": _phaser}
