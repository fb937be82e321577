"""Composition: :class:`Chain` (series), :class:`Parallel` (sum of branches), :class:`DryWet` (mix).

All three are units themselves, so they nest. Children are named (``Chain(pre=a, tone=b)``;
positional children are named ``"0"``, ``"1"``, ...) and their knobs and controls are addressed by
path: ``chain.set(**{"tone.gain_db": 3.0})``, ``chain(x, **{"tone.cutoff_hz": sweep})``.

:func:`build` turns a :meth:`~dspfx.Unit.spec` back into a unit.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from dspfx.functional.conversions import db_to_gain
from dspfx.registry import get, register
from dspfx.unit import Knob, Unit

__all__ = ["Container", "Chain", "Parallel", "DryWet", "build", "SPEC_KEYS"]

#: Keys a unit spec may hold.
SPEC_KEYS = frozenset({"unit", "sample_rate", "options", "knobs", "frozen", "children", "format"})

# The per-branch gain knob that Parallel(gains=True) adds as gain_db_<branch>.
_BRANCH_GAIN = Knob(0.0, -60.0, 24.0, unit="dB", doc="gain of one branch before the sum")


class Container(Unit):
    """A unit made of named child units (base of Chain, Parallel and DryWet)."""

    category = "container"

    def __init__(self, children: Mapping[str, Unit], **knob_values: Any) -> None:
        owner = type(self).__name__
        if not children:
            raise ValueError(f"{owner} needs at least one unit")
        for key, child in children.items():
            if not isinstance(child, Unit):
                raise TypeError(f"{owner}: child {key!r} is a {type(child).__name__}, expected a dspfx Unit")
            if not key or "." in key:
                raise ValueError(f"{owner}: child names must be non-empty and contain no '.', got {key!r}")
        rates = {key: child.sample_rate for key, child in children.items()}
        if len(set(rates.values())) > 1:
            listing = ", ".join(f"{k}: {v} Hz" for k, v in rates.items())
            raise ValueError(f"{owner}: sample-rate mismatch between children ({listing}); make them all at one rate")
        super().__init__(sample_rate=next(iter(rates.values())))
        self.units = nn.ModuleDict(dict(children))
        if knob_values:
            self.set(**knob_values)

    def children_units(self) -> dict[str, Unit]:
        return dict(self.units.items())

    def options(self) -> dict[str, Any]:
        return {}

    def spec(self) -> dict[str, Any]:
        out = super().spec()
        out["children"] = {key: child.spec() for key, child in self.units.items()}
        return out

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> Unit:
        children = {key: _build(child) for key, child in dict(spec.get("children", {})).items()}
        unit = cls._from_children(children, dict(spec.get("options", {})))
        rate = spec.get("sample_rate")
        if rate is not None and rate != unit.sample_rate:
            raise ValueError(f"{cls.name} spec says sample_rate {rate} but its children render at {unit.sample_rate}")
        unit.set(**dict(spec.get("knobs", {})))
        if spec.get("frozen"):
            unit.freeze(*spec["frozen"])
        return unit

    @classmethod
    def _from_children(cls, children: dict[str, Unit], options: dict[str, Any]) -> Unit:
        return cls(**children, **options)

    def output_channels(self, channels: int) -> int:
        for child in self.units.values():
            channels = child.output_channels(channels)
        return channels

    def init_state(self, batch: int, channels: int) -> dict[str, Any]:
        return {key: child.init_state(batch, channels) for key, child in self.units.items()}

    def process(self, x: Tensor | None, controls: dict[str, Any], state: Any) -> tuple[Tensor, Any]:
        """Containers hold no DSP of their own: they override :meth:`render_block`, which hands
        each child its own controls (by path) and state, so this is never called."""
        raise NotImplementedError(f"{type(self).__name__} renders through render_block()")

    @staticmethod
    def _named(owner: str, positional: tuple[Unit, ...], named: dict[str, Unit]) -> dict[str, Unit]:
        if positional and named:
            raise TypeError(f"{owner}: give children either all by position or all by name, not both")
        return {str(i): u for i, u in enumerate(positional)} if positional else named


@register
class Chain(Container):
    """Units in series: the output of each feeds the next (like ``pedalboard.Pedalboard``).

    Children are named by keyword (``Chain(drive=..., tone=...)``) or by position (``"0"``, ``"1"``).
    A chain whose first unit is a synth is itself a synth (call it with ``x=None``).

    >>> amp = dspfx.Chain(drive=dspfx.make("distortion", drive_db=18.0), tone=dspfx.make("biquad"))
    >>> y = amp(x, **{"tone.cutoff_hz": 800.0})
    """

    name = "chain"

    def __init__(self, *units: Unit, **named_units: Unit) -> None:
        super().__init__(self._named("Chain", units, named_units))
        self.is_synth = next(iter(self.units.values())).is_synth

    @property
    def latency_samples(self) -> int:
        return sum(child.latency_samples for child in self.units.values())

    def default_length(self, controls: Mapping[str, Any]) -> int:
        key, first = next(iter(self.units.items()))
        own = {k.partition(".")[2]: v for k, v in controls.items() if k.partition(".")[0] == key}
        return first.default_length(own)

    def init_state(self, batch: int, channels: int) -> dict[str, Any]:
        out = {}
        for key, child in self.units.items():
            out[key] = child.init_state(batch, channels)
            channels = child.output_channels(channels)
        return out

    def render_block(self, x, controls, state, n_samples=None):
        own, per_child = self.split_controls(controls)
        new_state = {}
        y = x
        for i, (key, child) in enumerate(self.units.items()):
            y, new_state[key] = child.render_block(y, per_child.get(key, {}), state[key], n_samples=n_samples if i == 0 else None)
        return y, new_state

    def __getitem__(self, key: str | int) -> Unit:
        if isinstance(key, int):
            return list(self.units.values())[key]
        return self.units[key]

    def __len__(self) -> int:
        return len(self.units)


@register
class Parallel(Container):
    """Branches side by side, their outputs summed (like ``pedalboard.Mix``: a sum, no 1/N).

    With ``gains=True`` each branch gets a knob ``gain_db_<branch>`` (-60 .. +24 dB, default 0).
    All branches must output the same number of channels.

    >>> wide = dspfx.Parallel(low=dspfx.make("biquad", mode="lowpass"), high=dspfx.make("biquad", mode="highpass"))
    >>> y = wide(x)
    """

    name = "parallel"

    def __init__(self, *branches: Unit, gains: bool = False, **named_branches: Unit) -> None:
        super().__init__(self._named("Parallel", branches, named_branches))
        self.gains = bool(gains)
        if self.gains:
            for key in self.units:
                self.add_knob(f"gain_db_{key}", _BRANCH_GAIN)
        kinds = {child.is_synth for child in self.units.values()}
        if len(kinds) > 1:
            raise ValueError("Parallel: branches must be all synths or all effects, not a mix")
        self.is_synth = kinds.pop()

    def options(self) -> dict[str, Any]:
        return {"gains": self.gains}

    @property
    def latency_samples(self) -> int:
        return max(child.latency_samples for child in self.units.values())

    def output_channels(self, channels: int) -> int:
        outs = {key: child.output_channels(channels) for key, child in self.units.items()}
        if len(set(outs.values())) > 1:
            raise ValueError(f"Parallel: branches output different channel counts {outs}")
        return next(iter(outs.values()))

    def default_length(self, controls: Mapping[str, Any]) -> int:
        key, first = next(iter(self.units.items()))
        own = {k.partition(".")[2]: v for k, v in controls.items() if k.partition(".")[0] == key}
        return first.default_length(own)

    def render_block(self, x, controls, state, n_samples=None):
        own, per_child = self.split_controls(controls)
        if x is not None:
            batch, n = x.shape[0], x.shape[-1]
        else:
            batch, n = 1, n_samples if n_samples is not None else self.default_length(controls)
            n_samples = n
        gains = self.controls(own, batch, n)
        new_state = {}
        total = None
        for key, child in self.units.items():
            y, new_state[key] = child.render_block(x, per_child.get(key, {}), state[key], n_samples=n_samples)
            if self.gains:
                y = y * db_to_gain(gains[f"gain_db_{key}"])
            total = y if total is None else total + y
        return total, new_state

    def __getitem__(self, key: str) -> Unit:
        return self.units[key]


@register
class DryWet(Container):
    """Mix a unit's output with its input: ``y = (1 - mix) * x + mix * unit(x)``.

    Knob ``mix`` 0 .. 1 (linear, default 0.5). The wrapped unit is the child ``"wet"``, so its
    knobs are addressed as ``"wet.<knob>"``. The dry path is not delayed: wrap units without
    latency, or expect comb filtering.

    >>> crunchy = dspfx.DryWet(dspfx.make("distortion", drive_db=30.0), mix=0.3)
    >>> y = crunchy(x, mix=0.8)
    """

    name = "dry_wet"
    mix = Knob(0.5, 0.0, 1.0, doc="0 = input only, 1 = processed only")

    def __init__(self, wet: Unit, **knob_values: Any) -> None:
        super().__init__({"wet": wet}, **knob_values)
        if wet.is_synth:
            raise ValueError(f"DryWet wraps effects; {wet.label} is a synth and has no dry signal")

    @classmethod
    def _from_children(cls, children: dict[str, Unit], options: dict[str, Any]) -> Unit:
        if set(children) != {"wet"}:
            raise ValueError(f"dry_wet spec needs exactly one child named 'wet', got {sorted(children)}")
        return cls(children["wet"], **options)

    def output_channels(self, channels: int) -> int:
        out = self.units["wet"].output_channels(channels)
        if out != channels:
            raise ValueError(f"DryWet: the wet unit turns {channels} channels into {out}; dry and wet must match")
        return out

    def render_block(self, x, controls, state, n_samples=None):
        own, per_child = self.split_controls(controls)
        mix = self.controls(own, x.shape[0], x.shape[-1])["mix"]
        wet, wet_state = self.units["wet"].render_block(x, per_child.get("wet", {}), state["wet"])
        return x + mix * (wet - x), {"wet": wet_state}


def build(spec: Mapping[str, Any] | str, *, limits: Any = None, base_dir: Any = None) -> Unit:
    """Make a unit (or a whole chain) from a spec: a dict from :meth:`~dspfx.Unit.spec`, or its JSON text.

    The spec is checked against ``limits`` (:class:`dspfx.Limits`; sizes, rates, depth) before
    anything is made; ``base_dir`` is the folder file paths in it are resolved against and
    confined to (:func:`dspfx.load` passes the spec file's folder).

    Raises ``ValueError`` for malformed specs (:class:`~dspfx.limits.LimitError` for one over
    the limits) and :class:`~dspfx.registry.UnknownUnitError` for unit names the registry does
    not know.
    """
    from dspfx.limits import check_spec

    if isinstance(spec, str):
        try:
            spec = json.loads(spec)
        except (json.JSONDecodeError, RecursionError) as err:
            raise ValueError(f"spec text is not valid JSON: {err}") from None
    if not isinstance(spec, Mapping):
        raise TypeError(f"a spec is a dict (from unit.spec()) or its JSON text, got {type(spec).__name__}")
    return _build(check_spec(spec, limits, base_dir))


def _build(spec: Mapping[str, Any]) -> Unit:
    """:func:`build` of a spec already checked (containers build their children with it)."""
    if not isinstance(spec, Mapping):
        raise TypeError(f"a spec is a dict (from unit.spec()), got {type(spec).__name__}")
    if "unit" not in spec:
        raise ValueError(f"spec has no 'unit' key (keys given: {sorted(spec)}); expected e.g. {{'unit': 'gain', ...}}")
    extra = set(spec) - SPEC_KEYS
    if extra:
        raise ValueError(f"spec for {spec['unit']!r} has unknown keys {sorted(extra)}; allowed: {sorted(SPEC_KEYS)}")
    cls = get(spec["unit"])
    for key, kind in (("options", Mapping), ("knobs", Mapping), ("children", Mapping), ("frozen", list)):
        if key in spec and not isinstance(spec[key], kind):
            raise ValueError(f"spec for {spec['unit']!r}: {key!r} must be a {kind.__name__}, got {type(spec[key]).__name__}")
    if "children" in spec and not issubclass(cls, Container):
        raise ValueError(f"spec for {spec['unit']!r} has 'children' but {spec['unit']!r} is not a container")
    return cls.from_spec(spec)

