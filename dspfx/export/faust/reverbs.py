"""Faust emitters of the reverbs: Freeverb exactly as dspfx (and JUCE, and pedalboard) computes it,
the FDN reverb, and the noise reverb's response as a direct FIR.

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


def _fdn_reverb(unit: Unit, path: str) -> str:
    """The feedback delay network (:func:`dspfx.functional.fdn.fdn`): per line ``s = v[n - m]``,
    Jot's absorption shelf ``o = b0 s + b1 s' - a1 o'`` (from the two RT60s and the crossover,
    :func:`dspfx.functional.fdn.absorption_coefficients`), ``v_i = g_i x + sum_j A_ij o_j``,
    ``wet = sum_i c_i o_i``, ``y = (1 - mix) x + mix wet``. The feedback matrix (as the unit
    renders it in float64, a learned one included) and the gains are baked in."""
    import copy
    import math

    from dspfx.functional.fdn import _LN_1000

    reference = copy.deepcopy(unit).double()
    matrix = reference.feedback_matrix().detach().tolist()
    g_in = reference.input_gains.detach().tolist()
    g_out = reference.output_gains.detach().tolist()
    delays = unit.delay_samples
    n = len(delays)
    sr = unit.sample_rate
    if unit.decay:
        low, high, crossover = (slider(unit, key, path) for key in ("rt60_low_s", "rt60_high_s", "crossover_hz"))
        defs = [f"fk = tan({math.pi!r} * max(1.0, min({crossover}, {number(0.49 * sr)})) / {number(sr)});",
                "fa1 = (fk - 1.0) / (1.0 + fk);"]
        for i, m in enumerate(delays):
            c = -(_LN_1000 / sr) * float(m)
            defs.append(f"flo{i} = exp({c!r} / {low}); fhi{i} = exp({c!r} / {high}); "
                        f"fb0_{i} = (fhi{i} + flo{i} * fk) / (1.0 + fk); fb1_{i} = (flo{i} * fk - fhi{i}) / (1.0 + fk);")
    else:
        defs = ["fa1 = 0.0;"] + [f"fb0_{i} = 1.0; fb1_{i} = 0.0;" for i in range(n)]
    body = []
    for i, m in enumerate(delays):
        body.append(f"o{i} = vp{i}@({m - 1}) : fi.tf1(fb0_{i}, fb1_{i}, fa1);")
    for i in range(n):
        body.append(f"v{i} = {g_in[i]!r} * x + " + " + ".join(f"{matrix[i][j]!r} * o{j}" for j in range(n)) + ";")
    body.append("wet = " + " + ".join(f"{g_out[i]!r} * o{i}" for i in range(n)) + ";")
    previous = ", ".join(f"vp{i}" for i in range(n))
    outputs = ", ".join(f"v{i}" for i in range(n))
    core = f"(\\({previous}, x).(({outputs}, wet) with {{ {' '.join(body)} }}))"
    network = f"({core} ~ ({', '.join(['_'] * n)}) : ({', '.join(['!'] * n)}, _))"
    mix = slider(unit, "mix", path)
    return f"((_ <: (_, {network}) : \\(x, w).((1.0 - {mix}) * x + {mix} * w)) with {{ {' '.join(defs)} }})"


def _noise_reverb(unit: Unit, path: str) -> str:
    """The response at the unit's band decays and gains, baked into one direct FIR
    (:func:`dspfx.export.faust.filters.direct_fir`), and ``mix`` as a port. The decays and gains
    are not ports: the response is not linear in a decay, so a port per band would need a
    convolution per band, ``n_bands`` times the plugin's cost. Set them before exporting; a
    response longer than :data:`~dspfx.export.faust.filters.MAX_FIR_TAPS` (``length_s``) is refused."""
    import copy

    import torch

    from dspfx.export.faust.filters import fir_expression

    with torch.no_grad():
        h = copy.deepcopy(unit).double().impulse_response()  # as dspfx renders it in float64
    mix = slider(unit, "mix", path)
    return f"(_ <: (_, {fir_expression(unit, h)}) : \\(d, w).((1.0 - {mix}) * d + {mix} * w))"


#: Unit name -> Faust emitter ``(unit, path prefix) -> expression``.
EMITTERS = {"reverb": _reverb, "fdn_reverb": _fdn_reverb, "noise_reverb": _noise_reverb}
