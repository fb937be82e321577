"""Faust emitters of the reverbs: Freeverb exactly as dspfx (and JUCE, and pedalboard) computes it.

Faust's own ``re.mono_freeverb`` differs from Jezar's (its allpass is a true allpass, its
tuning and gains are its own), so the network is written out: 8 lowpass-feedback combs summed,
4 of Freeverb's allpasses in series, the lengths of :func:`dspfx.functional.reverb.freeverb_lengths`
at the unit's rate.
"""

from __future__ import annotations

from dspfx.export.faust._common import number, slider
from dspfx.unit import Unit


def _reverb(unit: Unit, path: str) -> str:
    """Mono Freeverb (:class:`dspfx.effects.reverb.Reverb`): ``u = 0.015 x``; per comb of ``L``
    samples ``o = w[n - L]``, ``s = o (1 - d) + s' d``, ``w = u + f s`` (``f = 0.28 room + 0.7``,
    ``d = 0.4 damping``), their outputs summed; per allpass of ``M`` samples ``b = v[n - M]``,
    ``v = a + 0.5 b``, out ``b - a``; ``y = out * 0.5 * 3 wet (1 + width) + x * 2 dry``. Frozen:
    no input, ``f = 1``, ``d = 0``."""
    from dspfx.functional.reverb import FREEVERB_INPUT_GAIN, freeverb_lengths

    combs = freeverb_lengths(unit.sample_rate, unit.comb_lengths)
    allpasses = freeverb_lengths(unit.sample_rate, unit.allpass_lengths)
    room, damping, wet, dry, width = (slider(unit, key, path) for key in
                                      ("room_size", "damping", "wet_level", "dry_level", "width"))
    if unit.freeze_mode:
        gain, feedback, damp = "0.0", "1.0", "0.0"
    else:
        gain, feedback, damp = number(FREEVERB_INPUT_GAIN), f"(0.28 * {room} + 0.7)", f"(0.4 * {damping})"
    bank = ", ".join(f"comb({length})" for length in combs)
    chain = " : ".join(f"allpass({length})" for length in allpasses)
    return (f"(\\(x).(((x * {gain}) <: ({bank}) :> {chain}) * (0.5 * (3.0 * {wet}) * (1.0 + {width})) "
            f"+ x * (2.0 * {dry})) with {{ fb = {feedback}; dm = {damp}; "
            "lp = (\\(sp, o).(o * (1.0 - dm) + sp * dm)) ~ _; "
            "comb(L) = (\\(wp, ui).(ui + fb * (wp@(L - 1) : lp), wp@(L - 1))) ~ _ : (!, _); "
            "allpass(M) = (\\(vp, a).(a + 0.5 * vp@(M - 1), vp@(M - 1) - a)) ~ _ : (!, _); })")


#: Unit name -> Faust emitter ``(unit, path prefix) -> expression``.
EMITTERS = {"reverb": _reverb}
