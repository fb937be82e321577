"""Faust emitters of the delays: the feedback echo and the modulated delays."""

from __future__ import annotations


from dspfx.export.faust._common import number, slider
from dspfx.unit import Unit


def _delay(unit: Unit, path: str) -> str:
    """The whole-sample feedback echo (``interpolation="none"``, undamped):
    ``buf = x + g * buf[n - D]``, ``y = (1 - mix) x + mix buf[n - D]``, ``D = floor(delay_ms *
    sr / 1000)`` in float32 like pedalboard; ``delay_ms = 0`` bypasses."""
    if not unit.exact:
        raise TypeError(f"{unit.label}: only the whole-sample undamped delay exports to Faust so far "
                        f"(interpolation={unit.interpolation!r}, damping={unit.damping!r})")
    sr = number(unit.sample_rate)
    longest = int(float(unit.knob_specs["delay_ms"].maximum) * unit.sample_rate / 1000.0) + 2
    ms, fb, mix = (slider(unit, key, path) for key in ("delay_ms", "feedback", "mix"))
    return (f"(echo with {{ ms = {ms}; D = int(ms / 1000.0 * {sr}); g = {fb}; mix = {mix}; "
            f"line = + ~ (de.delay({longest}, max(D - 1, 0)) : *(g)); "
            f"echo(x) = select2(ms == 0.0, (1.0 - mix) * x + mix * select2(D > 0, 0.0, "
            f"x : line : de.delay({longest}, D)), x); }})")




#: Unit name -> Faust emitter ``(unit, path prefix) -> expression``.
EMITTERS = {"delay": _delay}
