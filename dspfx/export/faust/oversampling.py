"""Blocks run at ``factor`` times the plugin's rate, inside one Faust sample tick.

Faust 2.54 (Debian 12) has no multirate primitives, so an oversampled core is written out: each
block is one *step* with explicit state (``(state, x) -> (state', y)``), the step is repeated
``factor`` times per tick on the interpolated sub-samples, and the last state is fed back with
``~``. Around it, :mod:`dspfx.functional.oversample`'s polyphase filters: sub-sample ``p`` of
tick ``n`` is ``sum_j factor h[j factor + p] x[n - j]``, and the output
``y[n] = sum_k h[k] v[n factor - k]`` is one FIR per sub-sample stream (``k = q factor`` reads
stream 0 ``q`` ticks back; ``k = q factor + r`` reads stream ``factor - r`` ``q + 1`` ticks back).
At ``factor = 1`` the same step runs once per tick, with no filter.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from dspfx.export.faust._common import cookbook_coefficients, number

#: ``step(tag, x, state) -> (definitions, y, new_state)``: Faust definitions (``name = expr;``,
#: their names prefixed with ``tag``), the output's name, the names of the state after the step.
Step = Callable[[str, str, Sequence[str]], tuple[list[str], str, list[str]]]


@dataclass
class Block:
    """One stage of an oversampled core: its constant definitions (coefficients), its number of
    state variables and its step."""

    step: Step
    n_state: int = 0
    constants: list[str] = field(default_factory=list)


def one_pole(name: str, mode: str, cutoff: str, sample_rate: float) -> Block:
    """The amp blocks' first-order bilinear filter (:func:`dspfx.amps.preamp.one_pole`: cutoff
    clamped into [1 Hz, 0.45 fs]) in direct form I: ``y = b0 x + b1 x1 - a1 y1``."""
    t = f"tan(ma.PI * max(1.0, min({cutoff}, {number(0.45 * sample_rate)})) / {number(sample_rate)})"
    b0, b1 = ((f"{name}_t / ({name}_t + 1.0)",) * 2 if mode == "lowpass"
              else (f"1.0 / ({name}_t + 1.0)", f"-1.0 / ({name}_t + 1.0)"))
    constants = [f"{name}_t = {t};", f"{name}_b0 = {b0};", f"{name}_b1 = {b1};",
                 f"{name}_a1 = ({name}_t - 1.0) / ({name}_t + 1.0);"]

    def step(tag: str, x: str, state: Sequence[str]) -> tuple[list[str], str, list[str]]:
        x1, y1 = state
        return [f"{tag} = {name}_b0 * {x} + {name}_b1 * {x1} - {name}_a1 * {y1};"], tag, [x, tag]

    return Block(step, 2, constants)


def biquad(name: str, mode: str, cutoff: str, q: str, gain_db: str, sample_rate: float) -> Block:
    """The cookbook biquad in direct form I."""
    coefficients = cookbook_coefficients(mode, cutoff, q, gain_db, sample_rate)
    constants = [f"{name}_{c} = {e};" for c, e in zip(("b0", "b1", "b2", "a1", "a2"), coefficients)]

    def step(tag: str, x: str, state: Sequence[str]) -> tuple[list[str], str, list[str]]:
        x1, x2, y1, y2 = state
        return ([f"{tag} = {name}_b0 * {x} + {name}_b1 * {x1} + {name}_b2 * {x2} - {name}_a1 * {y1} "
                 f"- {name}_a2 * {y2};"], tag, [x, x1, tag, y1])

    return Block(step, 4, constants)


def memoryless(function: Callable[[str], str], constants: Sequence[str] = ()) -> Block:
    """A curve or a gain: ``y = function(x)`` (a Faust expression of the input's name)."""
    def step(tag: str, x: str, state: Sequence[str]) -> tuple[list[str], str, list[str]]:
        return [f"{tag} = {function(x)};"], tag, []

    return Block(step, 0, list(constants))


def run(blocks: Sequence[Block], factor: int, prefix: str) -> str:
    """A Faust box (one input, one output) running ``blocks`` in series at ``factor`` times the
    rate (1, 2 or 4), between the polyphase interpolator and decimator for ``factor > 1``."""
    from dspfx.functional.oversample import _taps_numpy

    sizes = [b.n_state for b in blocks]
    states = [[f"{prefix}s{i}_{k}" for k in range(n)] for i, n in enumerate(sizes)]
    inputs = [f"{prefix}u{p}" for p in range(factor)]
    definitions, outputs = [], []
    current = [list(s) for s in states]
    for p, u in enumerate(inputs):
        x = u
        for i, block in enumerate(blocks):
            defs, x, current[i] = block.step(f"{prefix}b{i}p{p}", x, current[i])
            definitions += defs
        outputs.append(x)
    flat_in = [s for group in states for s in group]
    flat_out = [s for group in current for s in group]
    constants = [c for b in blocks for c in b.constants]
    body = " ".join(constants + definitions)
    n_state = len(flat_in)
    core = f"(\\({', '.join(flat_in + inputs)}).(({', '.join(flat_out + outputs)}) with {{ {body} }}))"
    if n_state:
        core = f"({core} ~ ({', '.join('_' * n_state)}) : ({', '.join(['!'] * n_state + ['_'] * factor)}))"
    if factor == 1:
        return core
    h = [float(v) for v in _taps_numpy(factor)]
    taps = len(h)
    j = -(-taps // factor)
    h_padded = h + [0.0] * (j * factor - taps)
    up = ", ".join(f"fi.fir(({', '.join(repr(factor * h_padded[q * factor + p]) for q in range(j))}))"
                   for p in range(factor))
    down = []
    for stream in range(factor):  # stream 0: k = q factor at q ticks; stream s > 0: k = q factor + (factor - s) at q + 1
        taps_s = ([h[q * factor] for q in range(-(-taps // factor)) if q * factor < taps] if stream == 0 else
                  [0.0] + [h[q * factor + factor - stream] for q in range(j) if q * factor + factor - stream < taps])
        down.append(f"fi.fir(({', '.join(repr(v) for v in taps_s)}))")
    return f"(_ <: ({up}) : {core} : ({', '.join(down)}) :> _)"
