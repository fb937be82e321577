"""Faust emitters of the amp blocks: preamp, power_amp, output_transformer (at their base rate).

With these, the tone stack and the cabinet (:mod:`dspfx.export.faust.filters`), the gray-box amp
of :func:`dspfx.amps.amp` exports whole: a capture fitted with ``model="graybox"`` becomes a
plugin with its knobs as ports. The blocks' ``oversample=2|4`` (a polyphase linear-phase FIR
around the nonlinear core) is not written yet: such a unit raises a TypeError naming it.
"""

from __future__ import annotations

from collections.abc import Callable

from dspfx.export.faust._common import KNOB_EXPRESSIONS, cookbook, number, slider
from dspfx.unit import Unit


def _base_rate(unit: Unit) -> None:
    if getattr(unit, "oversample", 1) != 1:
        raise TypeError(f"{unit.label}: oversample={unit.oversample} does not export yet; the plugin runs the "
                        "block at its base rate (make it with oversample=1)")


def _one_pole(mode: str, cutoff: str, sample_rate: float) -> str:
    """The amp blocks' first-order bilinear filter, cutoff clamped into [1 Hz, 0.45 fs]
    (:func:`dspfx.amps.preamp.one_pole`), in the direct form of ``iir``."""
    sr = number(sample_rate)
    n = f"tan(ma.PI * max(1.0, min({cutoff}, {number(0.45 * sample_rate)})) / {sr})"
    b = "n / (n + 1.0), n / (n + 1.0)" if mode == "lowpass" else "1.0 / (n + 1.0), -1.0 / (n + 1.0)"
    return f"(fi.tf1({b}, (n - 1.0) / (n + 1.0)) with {{ n = {n}; }})"


def _db(value: str) -> str:
    return f"pow(10.0, {value} / 20.0)"


def _preamp(unit: Unit, path: str) -> str:
    """Per stage: coupling high-pass, (cathode-bypass shelf), gain, the triode curve
    ``s(u + bias) - s(bias)`` (``s(v) = tanh((1 + a) v) / (1 + a)`` for ``v >= 0``, else
    ``tanh(v)``), Miller low-pass; then the output level."""
    _base_rate(unit)
    sr = unit.sample_rate
    stages = []
    for i in range(1, unit.n_stages + 1):
        def knob(key: str) -> str:
            return slider(unit, f"stage{i}_{key}", path)

        parts = [_one_pole("highpass", knob("hp_hz"), sr)]
        if unit.cathode_bypass:
            parts.append(cookbook("highshelf", knob("bypass_hz"), "0.7071", knob("bypass_db"), sr))
        parts.append(f"*({_db(knob('gain_db'))})")
        parts.append(f"(\\(u).(s(u + b) - s(b)) with {{ b = {knob('bias')}; k = 1.0 + {knob('asymmetry')}; "
                     "s(v) = select2(v >= 0.0, ma.tanh(v), ma.tanh(k * v) / k); })")
        parts.append(_one_pole("lowpass", knob("lp_hz"), sr))
        stages.append(" : ".join(parts))
    return f"({' : '.join(stages)} : *({_db(slider(unit, 'output_db', path))}))"


def _power_amp(unit: Unit, path: str) -> str:
    """Master volume; the push-pull pair ``t(v) - t(-v)`` (or single-ended ``t(v) - t(0)``),
    ``t(v) = tanh(w softplus((v + bias) / w))``; supply sag ``y (1 - sag e)`` with ``e`` the
    attack/release envelope of ``|y|`` (``e = d + c (e' - d)``, ``c = exp(-1000 / (ms fs))``);
    the resonance peak and the presence shelf; the output level."""
    _base_rate(unit)
    sr = unit.sample_rate
    master, bias, width, sag, attack, release, presence, resonance, out = (slider(unit, key, path) for key in (
        "master_db", "bias", "crossover", "sag", "sag_attack_ms", "sag_release_ms", "presence_db", "resonance_db",
        "output_db"))
    other = "t(0.0 - v)" if unit.topology == "push_pull" else "t(0.0)"
    coefficient = f"exp(-1000.0 / (({{}}) * {number(sr)}))"
    envelope = (f"((\\(prev, d).(d + select2(d > prev, {coefficient.format(release)}, {coefficient.format(attack)}) "
                "* (prev - d))) ~ _)")
    return (f"(*({_db(master)}) : (\\(v).(t(v) - {other})) : (_ <: (_, (abs : {envelope})) : \\(y, e).(y * (1.0 - {sag} * e))) "
            f": {cookbook('peak', number(unit.resonance_hz), '1.0', resonance, sr)} "
            f": {cookbook('highshelf', number(unit.presence_hz), '0.7071', presence, sr)} : *({_db(out)}) "
            f"with {{ w = {width}; sp(z) = select2(z > 20.0, log(1.0 + exp(z)), z); "
            f"t(v) = ma.tanh(w * sp((v + {bias}) / w)); }})")


def _output_transformer(unit: Unit, path: str) -> str:
    """Low cut; the core ``(1 - h) tanh(u) + h tanh(p)`` on ``u = a v`` (``a`` the drive), ``p``
    the play operator (``p = u - r`` where ``u - p' > r``, ``u + r`` where ``p' - u > r``, else
    ``p'``); divided by ``a``; high cut."""
    _base_rate(unit)
    sr = unit.sample_rate
    drive, h, r = (slider(unit, key, path) for key in ("drive_db", "hysteresis", "width"))
    play = ("((\\(prev, u).(select2(u - prev > rr, select2(prev - u > rr, prev, u + rr), u - rr))) ~ _)")
    return (f"({_one_pole('highpass', slider(unit, 'low_hz', path), sr)} : *(a) "
            f": (_ <: (_, {play}) : \\(u, p).((1.0 - {h}) * ma.tanh(u) + {h} * ma.tanh(p))) : /(a) "
            f": {_one_pole('lowpass', slider(unit, 'high_hz', path), sr)} with {{ a = {_db(drive)}; rr = {r}; }})")


def knob_conditioned(unit: Unit, path: str, expression: Callable[[Unit, str], str]) -> str:
    """The knob-conditioned amp (:class:`dspfx.amps.conditioned.KnobConditioned`): one port per
    front-panel setting (0 .. 10, its default), the network with its weights baked in
    (``settings / 5 - 1``, tanh layers, a linear last layer giving one raw offset per
    conditioned knob), each conditioned knob ``clamp(base + phys(raw + offset) - phys(raw))``
    with ``phys`` its bounded map (:meth:`dspfx.knob.Knob.to_physical`), fed to the wrapped
    chain in place of that knob's port; the chain's other knobs keep their ports.
    ``expression`` writes the wrapped chain."""
    chain = unit.units["amp"]
    defs = []
    for i, name in enumerate(unit.settings):
        step = number(1e-4)
        defs.append(f'kc_s{i} = hslider("{path}{name}", {number(unit.defaults[name])}, 0.0, 10.0, {step}) / 5.0 - 1.0;')
    layer = [f"kc_s{i}" for i in range(len(unit.settings))]
    linears = [m for m in unit.net if hasattr(m, "weight")]
    for depth, linear in enumerate(linears):
        w = linear.weight.detach().double().tolist()
        b = linear.bias.detach().double().tolist()
        names = []
        for j, (row, bias) in enumerate(zip(w, b)):
            total = " + ".join(f"{v!r} * {x}" for v, x in zip(row, layer))
            last = depth == len(linears) - 1
            name = f"kc_o{j}" if last else f"kc_h{depth}_{j}"
            defs.append(f"{name} = {f'({total} + {bias!r})' if last else f'ma.tanh({total} + {bias!r})'};")
            names.append(name)
        layer = names
    expressions = {}
    for i, knob_path in enumerate(unit.conditioned):
        owner, key = chain._resolve(knob_path)
        knob = owner.knob_specs[key]
        raw = float(owner.raw_knobs[key].detach().double())
        lo, span = float(knob._lo), float(knob._hi) - float(knob._lo)
        scaled = "exp({})" if knob.scale == "log" else "{}"

        def phys(z: str) -> str:
            value = scaled.format(f"({lo!r} + {span!r} * (1.0 / (1.0 + exp(0.0 - ({z})))))")
            return f"max({number(knob.minimum)}, min({value}, {number(knob.maximum)}))"

        base = owner._knob_float(key)
        defs.append(f"kc_k{i} = max({number(knob.minimum)}, min({base!r} + ({phys(f'{raw!r} + kc_o{i}')} - "
                    f"{phys(repr(raw))}), {number(knob.maximum)}));")
        expressions[f"{path}amp.{knob_path}"] = f"kc_k{i}"
    token = KNOB_EXPRESSIONS.set({**KNOB_EXPRESSIONS.get(), **expressions})
    try:
        body = expression(chain, f"{path}amp.")
    finally:
        KNOB_EXPRESSIONS.reset(token)
    return f"({body} with {{ {' '.join(defs)} }})"


#: Unit name -> Faust emitter ``(unit, path prefix) -> expression``.
EMITTERS = {"preamp": _preamp, "power_amp": _power_amp, "output_transformer": _output_transformer}
