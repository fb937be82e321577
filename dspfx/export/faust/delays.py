"""Faust emitters of the delays: the feedback echo and the modulated delays."""

from __future__ import annotations


from dspfx.export.faust._common import number, slider
from dspfx.unit import Unit


def _delay(unit: Unit, path: str) -> str:
    """The feedback echo. Whole-sample and undamped (the default, pedalboard's):
    ``buf = x + g * buf[n - D]``, ``y = (1 - mix) x + mix buf[n - D]``, ``D = floor(delay_ms *
    sr / 1000)``; ``delay_ms = 0`` bypasses. Otherwise the read-first loop of
    :func:`dspfx.functional.delay.damped_feedback_delay`: ``w = a + f (b - a)`` read ``d``
    samples back (``d = delay_ms sr / 1000`` clamped into ``[1, L - 1]`` with
    ``interpolation="linear"``, else ``D``), ``z = (1 - p) w + p z'`` (``p = exp(-2 pi
    damping_hz / sr)`` with ``damping=True``, else 0), ``buf = x + g z``,
    ``y = (1 - mix) x + mix w``."""
    sr = number(unit.sample_rate)
    longest = int(float(unit.knob_specs["delay_ms"].maximum) * unit.sample_rate / 1000.0) + 2
    ms, fb, mix = (slider(unit, key, path) for key in ("delay_ms", "feedback", "mix"))
    if unit.exact:
        return (f"(echo with {{ ms = {ms}; D = int(ms / 1000.0 * {sr}); g = {fb}; mix = {mix}; "
                f"line = + ~ (de.delay({longest}, max(D - 1, 0)) : *(g)); "
                f"echo(x) = select2(ms == 0.0, (1.0 - mix) * x + mix * select2(D > 0, 0.0, "
                f"x : line : de.delay({longest}, D)), x); }})")
    import math

    length = math.ceil(max(unit.max_delay_ms * unit.sample_rate / 1000.0, 1.0)) + 1
    pole = (f"exp({-2.0 * math.pi!r} * {slider(unit, 'damping_hz', path)} / {sr})" if unit.damping else "0.0")
    if unit.interpolation == "linear":
        d = f"max(1.0, min(ms * {unit.sample_rate / 1000.0!r}, {number(length - 1)}))"
    else:
        d = "float(D)"
    loop = ("(\\(bp, zp, x).((x + g * z, z, w) with { k = int(floor(d)); f = d - floor(d); "
            f"a = de.delay({length + 1}, k - 1, bp); w = a + f * (de.delay({length + 1}, k, bp) - a); "
            "z = (1.0 - p) * w + p * zp; })) ~ (_, _) : (!, !, _)")
    wet = f"(1.0 - mix) * x + mix * (x : {loop})"
    if unit.interpolation != "linear":  # whole samples: bypass at 0 ms, dry-only below one sample
        wet = f"select2(ms == 0.0, select2(D > 0, (1.0 - mix) * x, {wet}), x)"
    return (f"(\\(x).({wet}) with {{ ms = {ms}; D = int(ms / 1000.0 * {sr}); g = {fb}; mix = {mix}; "
            f"p = {pole}; d = {d}; }})")


#: Unit name -> Faust emitter ``(unit, path prefix) -> expression``.
EMITTERS = {"delay": _delay}
