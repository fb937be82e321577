"""Faust emitters of the amp blocks: preamp, power_amp, output_transformer, and the
knob-conditioned amp.

With these, the tone stack and the cabinet (:mod:`dspfx.export.faust.filters`), the gray-box amp
of :func:`dspfx.amps.amp` exports whole: a capture fitted with ``model="graybox"`` becomes a
plugin with its knobs as ports. Each block's nonlinear core runs at its ``oversample`` factor
between the same polyphase filters as in dspfx (:mod:`dspfx.export.faust.oversampling`).
"""

from __future__ import annotations

from collections.abc import Callable

from dspfx.export.faust import oversampling as ov
from dspfx.export.faust._common import KNOB_EXPRESSIONS, cookbook, number, slider
from dspfx.unit import Unit


def _preamp(unit: Unit, path: str) -> str:
    """Per stage: coupling high-pass, (cathode-bypass shelf), gain, the triode curve
    ``s(u + bias) - s(bias)`` (``s(v) = tanh((1 + a) v) / (1 + a)`` for ``v >= 0``, else
    ``tanh(v)``), Miller low-pass; then the output level; all at the oversampled rate."""
    fs = unit.sample_rate * unit.oversample
    blocks = []
    for i in range(1, unit.n_stages + 1):
        def knob(key: str) -> str:
            return slider(unit, f"stage{i}_{key}", path)

        blocks.append(ov.one_pole(f"pre{i}hp", "highpass", knob("hp_hz"), fs))
        if unit.cathode_bypass:
            blocks.append(ov.biquad(f"pre{i}sh", "highshelf", knob("bypass_hz"), "0.7071", knob("bypass_db"), fs))
        gain, bias, k = f"pre{i}g", f"pre{i}bias", f"pre{i}k"
        blocks.append(ov.memoryless(
            lambda x, gain=gain, bias=bias, k=k: (f"s{k}({x} * {gain} + {bias}) - s{k}({bias})"),
            [f"{gain} = ba.db2linear({knob('gain_db')});", f"{bias} = {knob('bias')};", f"{k} = 1.0 + {knob('asymmetry')};",
             f"s{k}(v) = select2(v >= 0.0, ma.tanh(v), ma.tanh({k} * v) / {k});"]))
        blocks.append(ov.one_pole(f"pre{i}lp", "lowpass", knob("lp_hz"), fs))
    blocks.append(ov.memoryless(lambda x: f"{x} * preout", [f"preout = ba.db2linear({slider(unit, 'output_db', path)});"]))
    return ov.run(blocks, unit.oversample, "pre_")


def _power_amp(unit: Unit, path: str) -> str:
    """Master volume; at the oversampled rate the push-pull pair ``t(v) - t(-v)`` (or
    single-ended ``t(v) - t(0)``), ``t(v) = tanh(w softplus((v + bias) / w))``, and the supply
    sag ``y (1 - sag e)`` with ``e`` the attack/release envelope of ``|y|``
    (``e = d + c (e' - d)``, ``c = exp(-1000 / (ms fs))``); then the resonance peak, the
    presence shelf and the output level."""
    sr = unit.sample_rate
    fs = sr * unit.oversample
    master, bias, width, sag, attack, release, presence, resonance, out = (slider(unit, key, path) for key in (
        "master_db", "bias", "crossover", "sag", "sag_attack_ms", "sag_release_ms", "presence_db", "resonance_db",
        "output_db"))
    other = "pa_t(0.0 - {x})" if unit.topology == "push_pull" else "pa_t(0.0)"
    curve = ov.memoryless(lambda x: f"pa_t({x}) - {other.format(x=x)}", [
        f"pa_w = {width};", "pa_sp(z) = select2(z > 20.0, log(1.0 + exp(z)), z);",
        f"pa_t(v) = ma.tanh(pa_w * pa_sp((v + {bias}) / pa_w));"])

    def sag_step(tag: str, x: str, state: list[str]) -> tuple[list[str], str, list[str]]:
        (e,) = state
        d = f"abs({x})"
        return ([f"{tag}_e = {d} + select2({d} > {e}, pa_rel, pa_att) * ({e} - {d});",
                 f"{tag} = {x} * (1.0 - pa_sag * {tag}_e);"], tag, [f"{tag}_e"])

    sag_block = ov.Block(sag_step, 1, [f"pa_att = exp(-1000.0 / (({attack}) * {number(fs)}));",
                                       f"pa_rel = exp(-1000.0 / (({release}) * {number(fs)}));", f"pa_sag = {sag};"])
    return (f"(*(ba.db2linear({master})) : {ov.run([curve, sag_block], unit.oversample, 'pa_')} "
            f": {cookbook('peak', number(unit.resonance_hz), '1.0', resonance, sr)} "
            f": {cookbook('highshelf', number(unit.presence_hz), '0.7071', presence, sr)} : *(ba.db2linear({out})))")


def _output_transformer(unit: Unit, path: str) -> str:
    """At the oversampled rate: low cut; the core ``(1 - h) tanh(u) + h tanh(p)`` on ``u = a v``
    (``a`` the drive), ``p`` the play operator (``p = u - r`` where ``u - p' > r``, ``u + r``
    where ``p' - u > r``, else ``p'``); divided by ``a``; high cut."""
    fs = unit.sample_rate * unit.oversample

    def core_step(tag: str, x: str, state: list[str]) -> tuple[list[str], str, list[str]]:
        (p,) = state
        return ([f"{tag}_u = {x} * ot_a;",
                 f"{tag}_p = select2({tag}_u - {p} > ot_r, select2({p} - {tag}_u > ot_r, {p}, {tag}_u + ot_r), "
                 f"{tag}_u - ot_r);",
                 f"{tag} = ((1.0 - ot_h) * ma.tanh({tag}_u) + ot_h * ma.tanh({tag}_p)) / ot_a;"], tag, [f"{tag}_p"])

    core = ov.Block(core_step, 1, [f"ot_a = ba.db2linear({slider(unit, 'drive_db', path)});",
                                   f"ot_r = {slider(unit, 'width', path)};", f"ot_h = {slider(unit, 'hysteresis', path)};"])
    return ov.run([ov.one_pole("othp", "highpass", slider(unit, "low_hz", path), fs), core,
                   ov.one_pole("otlp", "lowpass", slider(unit, "high_hz", path), fs)], unit.oversample, "ot_")


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
