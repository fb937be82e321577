"""Faust emitters of the gains and memoryless curves: gain, trim, distortion, clipping,
static_nonlinearity, bitcrush, waveshaper_fx."""

from __future__ import annotations

from typing import Any

from dspfx.export.faust._common import slider
from dspfx.unit import Unit


def _gain(unit: Unit, path: str) -> str:
    return f"*(ba.db2linear({slider(unit, 'gain_db', path)}))"


def _trim(unit: Unit, path: str) -> str:
    return f"(*({slider(unit, 'scale', path)}) : +({slider(unit, 'dc', path)}))"


def _distortion(unit: Unit, path: str) -> str:
    return f"(*(ba.db2linear({slider(unit, 'drive_db', path)})) : ma.tanh)"


def _clipping(unit: Unit, path: str) -> str:
    if unit.curve != "hard":
        raise TypeError(f"{unit.label}: only the hard clipping curve exports to Faust so far, got curve={unit.curve!r}")
    t = f"ba.db2linear({slider(unit, 'threshold_db', path)})"
    return f"(max(0.0 - {t}) : min({t}))"


def _static_nonlinearity(unit: Unit, path: str) -> str:
    """``out * (f(in * x + bias) - f(bias) + f(0))`` with the curve baked in: ``tanh``; a
    Chebyshev series (the recurrence ``T_k = 2 u T_(k-1) - T_(k-2)`` on ``clamp(u, -1, 1)``, the
    learned coefficients as constants); or the MLP ``u + w3 . tanh(W2^T tanh(w1 u + b1) + b2) + b3``
    with its learned weights as constants."""
    gi, go, bias = (slider(unit, key, path) for key in ("input_gain_db", "output_gain_db", "bias"))
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
    return f"(\\(x).(rint(x * s) * (1.0 / s)) with {{ s = pow(2.0, {slider(unit, 'bit_depth', path)}); }})"




def _waveshaper_fx(unit: Unit, path: str) -> str:
    """NEWT's shaping bank on the input (:class:`dspfx.synths.waveshaper.WaveshaperFX`):
    ``y = sum_s w_s (g_s f_s(a_s x + b_s) + d_s)`` with every learned parameter baked in;
    ``f_s`` the Chebyshev series ``sum_k c_sk T_k(clamp(u, -1, 1))`` (by the recurrence
    ``T_k = 2 v T_(k-1) - T_(k-2)``), the sine MLP, or their sum. Its per-sample affine
    controls are a call's, not knobs: the plugin plays the learned values."""
    import copy

    ref = copy.deepcopy(unit).double()

    def values(tensor: Any) -> list:
        return tensor.detach().tolist()

    a, b, g, d = (values(getattr(ref, key)) for key in ("input_gain", "input_offset", "output_gain", "output_offset"))
    mix = values(ref.mix_weights) if unit.mix == "learnable" else None
    defs, terms = [], []
    for i in range(unit.n_shapers):
        defs.append(f"u{i} = {a[i]!r} * x + {b[i]!r};")
        parts = []
        if unit.shaper in ("chebyshev", "both"):
            c = values(ref.coefficients[i])
            defs.append(f"v{i} = max(-1.0, min(1.0, u{i})); t{i}_0 = 1.0; t{i}_1 = v{i};")
            for k in range(2, len(c) + 1):
                defs.append(f"t{i}_{k} = 2.0 * v{i} * t{i}_{k - 1} - t{i}_{k - 2};")
            parts.append(" + ".join(f"{c[k - 1]!r} * t{i}_{k}" for k in range(1, len(c) + 1)))
        if unit.shaper in ("mlp", "both"):
            layer = [f"u{i}"]
            for depth, (w, bias) in enumerate(zip(ref.mlp_weights, ref.mlp_biases)):
                w, bias = values(w[i]), values(bias[i])
                names = []
                for j, (row, offset) in enumerate(zip(w, bias)):
                    name = f"h{i}_{depth}_{j}"
                    defs.append(f"{name} = sin({' + '.join(f'{v!r} * {h}' for v, h in zip(row, layer))} + {offset!r});")
                    names.append(name)
                layer = names
            parts.append(layer[0])
        z = f"({g[i]!r} * ({' + '.join(f'({p})' for p in parts)}) + {d[i]!r})"
        terms.append(z if mix is None else f"{z} * {mix[i]!r}")
    return f"(\\(x).(({' + '.join(terms)}) with {{ {' '.join(defs)} }}))"


#: Unit name -> Faust emitter ``(unit, path prefix) -> expression``.
EMITTERS = {
    "waveshaper_fx": _waveshaper_fx,
    "gain": _gain, "trim": _trim, "invert": lambda unit, path: "*(-1.0)", "distortion": _distortion,
    "clipping": _clipping, "static_nonlinearity": _static_nonlinearity, "bitcrush": _bitcrush,
}
