"""The unit contract: :class:`Knob`, :class:`Unit` and :class:`Stream`.

A *unit* is a synth, filter, effect or amp block whose knobs are trainable. Every knob is stored as
one unconstrained ``nn.Parameter`` (the *raw* value) and mapped into the knob's declared range by a
bounded smooth map, so gradient descent can never push a knob outside its range:

- ``scale="linear"``: ``value = lo' + (hi' - lo') * sigmoid(raw)``
- ``scale="log"``:    ``value = exp(log lo' + (log hi' - log lo') * sigmoid(raw))``

where ``[lo', hi']`` is the declared range widened by a small margin (:data:`KNOB_MARGIN` of the
span, in the scale's own space). The mapped value is then clamped to the declared range with a
straight-through gradient. The margin makes every value of the range, its edges included, settable
with a finite raw value (``mix = 0``, ``drive_db = 0`` render exactly); the clamp keeps the margin
itself out of reach while leaving the gradient alive, so an optimiser sitting on an edge can still
walk back in.

Rendering (``unit(x, **controls)``) resolves each knob to a *control*: the knob's own value, or a
value given by name in the call (a float, a per-batch ``(batch,)`` tensor, or frames
``(batch, frames)``), upsampled to audio rate by :func:`dspfx.functional.upsample_control`. A
network therefore drives exactly the code that a fit drives through knobs.

Every unit's DSP lives in ``process(x, controls, state) -> (y, state)`` with an explicit state made
by ``init_state(batch, channels)``; :class:`dspfx.stream.Stream` carries that state between blocks.
:class:`~dspfx.knob.Knob` lives in :mod:`dspfx.knob` (re-exported here).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from dspfx.checks import check_finite
from dspfx.functional._compiled import CPUKernelError
from dspfx.functional.control import control_frames, split_frames, upsample_control
from dspfx.knob import KNOB_MARGIN, Knob

__all__ = ["KNOB_MARGIN", "Knob", "Unit", "check_audio"]

def check_audio(x: Any, name: str = "x", owner: str = "") -> Tensor:
    """Check that ``x`` is a finite floating tensor shaped (batch, channels, samples)."""
    who = f"{owner}: " if owner else ""
    if not isinstance(x, Tensor):
        raise TypeError(f"{who}{name} must be a torch.Tensor shaped (batch, channels, samples), got {type(x).__name__}")
    if x.ndim != 3:
        raise ValueError(
            f"{who}{name} must be shaped (batch, channels, samples), got shape {tuple(x.shape)}; "
            "add the missing dims, e.g. x.view(1, 1, -1) for a mono signal"
        )
    if not x.is_floating_point():
        raise TypeError(f"{who}{name} must be a floating tensor, got dtype {x.dtype}")
    if x.dtype not in (torch.float32, torch.float64):
        # one dtype policy: recursive filters and compiled kernels lose their accuracy (or fail)
        # in half precision, so units render float32 or float64 and return the input's dtype
        raise TypeError(
            f"{who}{name} is {x.dtype}; units render float32 or float64 (and return the input's dtype): "
            f"pass {name}.float() and convert the output back if you need {x.dtype}"
        )
    if x.shape[-1] == 0:
        raise ValueError(f"{who}{name} is empty (0 samples)")
    # One reduction is enough when it is finite (a NaN or Inf anywhere would make it so);
    # otherwise the detailed scan finds and names the bad values (or none: the sum overflowed).
    if not math.isfinite(float(x.detach().sum())):
        check_finite(x, f"{who}{name}")
    return x


class Unit(nn.Module):
    """Base class of every dspfx unit (synths, effects, amp blocks, and the containers).

    Subclasses declare ``name`` (registry key), ``category`` (``"synth"``, ``"effect"``, ``"amp"``
    or ``"container"``), their knobs as :class:`Knob` class attributes, and implement
    :meth:`process` (and :meth:`init_state` when they keep state). Every constructor argument
    other than knob values is an *option* and must be stored on the instance under its own name,
    so that :meth:`spec` can write it back.

    Args:
        sample_rate: the rate the unit renders at, in Hz.
        **knobs: initial knob values by name (physical units).
    """

    name: ClassVar[str] = ""
    category: ClassVar[str] = "effect"
    #: Synths build audio from controls (``x=None``); everything else transforms its input.
    is_synth: ClassVar[bool] = False
    #: Names of the pedalboard classes this unit is the twin of (see :mod:`dspfx.reference`).
    pedalboard_classes: ClassVar[tuple[str, ...]] = ()
    #: Controls a call may give that are not knobs: audio-rate signals (a sidechain) or
    #: multi-dimensional frames (a harmonic distribution, band magnitudes). They reach
    #: process() as given, under their names; the unit checks and shapes them (see
    #: dspfx.functional.control_frames / upsample_control). Missing ones are absent from controls.
    #: Frame-rate ones may arrive as dspfx.functional.Frames (from a Stream: the values with
    #: the previous block's), which control_frames unpacks.
    extra_controls: ClassVar[tuple[str, ...]] = ()
    #: The extra controls that are not on the frame grid (audio-rate signals, static arrays):
    #: a Stream's Frames wrapper is taken off before process() sees them.
    unframed_controls: ClassVar[tuple[str, ...]] = ()
    _class_knobs: ClassVar[dict[str, Knob]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        knobs: dict[str, Knob] = {}
        for base in reversed(cls.__mro__):
            for key, value in vars(base).items():
                if isinstance(value, Knob):
                    knobs[key] = value
        cls._class_knobs = knobs

    def __init__(self, sample_rate: float = 48000, **knob_values: Any) -> None:
        super().__init__()
        if not isinstance(sample_rate, (int, float)) or isinstance(sample_rate, bool) or not sample_rate > 0:
            raise ValueError(f"{type(self).__name__}: sample_rate must be a positive number, got {sample_rate!r}")
        self.sample_rate = int(sample_rate) if float(sample_rate).is_integer() else float(sample_rate)
        self._knobs: dict[str, Knob] = {}
        # knob -> ((data_ptr, version) of its raw parameter when set, value set, as a tensor)
        self._exact: dict[str, tuple[tuple[int, int], float, Tensor]] = {}
        # knob -> (token of its raw parameter and set value, its (1, 1, 1) control) for renders
        # without autograd: the map runs once per knob change, not once per call
        self._static_controls: dict[str, tuple[tuple[Any, ...], Tensor]] = {}
        self.raw_knobs = nn.ParameterDict()
        # Zero-size buffer that follows .to(device/dtype), so stateless code knows where to work.
        self.register_buffer("_anchor", torch.zeros(0), persistent=False)
        for key, knob in self._class_knobs.items():
            self.add_knob(key, knob)
        unknown = [k for k in knob_values if k not in self._knobs]
        if unknown:
            raise TypeError(self._unknown_message(unknown[0], "knob or option"))
        if knob_values:
            self.set(**knob_values)

    # -- identity ------------------------------------------------------------------------------
    @property
    def label(self) -> str:
        return self.name or type(self).__name__

    @property
    def device(self) -> torch.device:
        return self._anchor.device

    @property
    def dtype(self) -> torch.dtype:
        return self._anchor.dtype

    def _unknown_message(self, key: str, what: str) -> str:
        import difflib

        valid = list(self._knobs) + list(self.options())
        close = difflib.get_close_matches(key, valid, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        return f"{self.label}: unknown {what} {key!r}{hint} (valid: {', '.join(valid) or 'none'})"

    # -- knobs ---------------------------------------------------------------------------------
    def add_knob(self, key: str, knob: Knob) -> None:
        """Add a knob to this instance (containers add per-branch knobs this way)."""
        if key in self._knobs:
            raise ValueError(f"{self.label}: knob {key!r} already exists")
        if "." in key:
            raise ValueError(f"{self.label}: knob names cannot contain '.', got {key!r}")
        knob = knob.copy(key)
        self._knobs[key] = knob
        ref = self._anchor
        self.raw_knobs[key] = nn.Parameter(torch.zeros((), dtype=ref.dtype, device=ref.device))
        self._write_knob(key, knob.default)

    @property
    def knob_specs(self) -> dict[str, Knob]:
        """This unit's own knobs (not its children's), in declaration order."""
        return dict(self._knobs)

    def knob_value(self, key: str) -> Tensor:
        """The physical value of one of this unit's own knobs, as a differentiable 0-d tensor."""
        if key not in self._knobs:
            raise KeyError(self._unknown_message(key, "knob"))
        value = self._knobs[key].to_physical(self.raw_knobs[key])
        if self._exact_hit(key):
            # the raw parameter is untouched since set(): render the value that was set, exactly
            # (float32 cannot invert the map exactly), with the map's gradient
            return value + (self._exact[key][2] - value).detach()
        return value

    def _write_knob(self, key: str, value: float) -> None:
        """Store a checked physical value: its raw parameter, and the value itself for exact
        rendering until the parameter changes (an optimiser step, load_state_dict, .to())."""
        raw = self.raw_knobs[key]
        with torch.no_grad():
            raw.fill_(self._knobs[key].to_raw(value))
        self._remember(key, value)

    def _remember(self, key: str, value: float) -> None:
        raw = self.raw_knobs[key]
        tensor = torch.tensor(value, dtype=raw.dtype, device=raw.device)
        self._exact[key] = ((raw.data_ptr(), raw._version), value, tensor)

    def _apply(self, fn: Any, recurse: bool = True) -> Unit:
        # .to(), .double(), .cuda() make new raw tensors without changing their values: keep
        # the values that were set (read back in float64 so a float32 copy is not promoted)
        kept = {k: self._exact[k][1] for k in self._exact if self._exact_hit(k)}
        super()._apply(fn, recurse)
        for key, value in kept.items():
            self._remember(key, value)
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Unit:
        # a copy has new raw tensors (new addresses): keep the values that were set, exactly, as
        # .to() does (without this a copy renders its knobs through the float32 map, ~1e-7 off,
        # which an LFO's phase accumulates into a drift)
        import copy

        new = type(self).__new__(type(self))
        memo[id(self)] = new
        kept = {k: self._exact[k][1] for k in self._exact if self._exact_hit(k)}
        for name, value in self.__dict__.items():
            new.__dict__[name] = copy.deepcopy(value, memo)
        new._exact = {}
        for key, value in kept.items():
            new._remember(key, value)
        return new

    def _exact_hit(self, key: str) -> bool:
        raw = self.raw_knobs[key]
        exact = self._exact.get(key)
        return exact is not None and exact[0] == (raw.data_ptr(), raw._version)

    def children_units(self) -> dict[str, Unit]:
        """Named child units (containers override this); knobs and controls are addressed through them by path."""
        return {}

    def _resolve(self, path: str) -> tuple[Unit, str]:
        """Find the unit that owns the knob at ``path`` ("tone.treble")."""
        unit: Unit = self
        parts = path.split(".")
        for depth, part in enumerate(parts[:-1]):
            children = unit.children_units()
            if part not in children:
                import difflib

                prefix = ".".join(parts[:depth])
                close = difflib.get_close_matches(part, list(children), n=3)
                hint = f"; did you mean {', '.join(close)}?" if close else ""
                raise KeyError(
                    f"{self.label}: no child {part!r}{' under ' + repr(prefix) if prefix else ''} in path "
                    f"{path!r}{hint} (children: {', '.join(children) or 'none'}; knobs: {', '.join(self.knobs())})"
                )
            unit = children[part]
        if parts[-1] not in unit._knobs:
            import difflib

            if parts[-1] in unit.extra_controls:
                raise KeyError(f"{self.label}: {path!r} is a control, not a knob: give it in the call, unit(x, {path}=...)")
            valid = list(self.knobs())
            extras = list(unit.extra_controls)
            close = difflib.get_close_matches(path, valid + extras, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            also = f"; other controls: {', '.join(extras)}" if extras else ""
            raise KeyError(f"{self.label}: unknown knob {path!r}{hint} (knobs: {', '.join(valid) or 'none'}{also})")
        return unit, parts[-1]

    def _knob_float(self, key: str) -> float:
        if self._exact_hit(key):
            return self._exact[key][1]
        raw = self.raw_knobs[key]
        with torch.no_grad():  # evaluated in float64: a float32 unit reads back to ~1e-7
            return float(self._knobs[key].to_physical(raw.detach().double()))

    def knobs(self) -> dict[str, float]:
        """Physical values of every knob, this unit's and its children's (by path), as floats."""
        out: dict[str, float] = {key: self._knob_float(key) for key in self._knobs}
        for child_name, child in self.children_units().items():
            for key, value in child.knobs().items():
                out[f"{child_name}.{key}"] = value
        return out

    def knob_table(self) -> dict[str, Knob]:
        """Knob declarations of this unit and its children, by path."""
        out = {k: v for k, v in self._knobs.items()}
        for child_name, child in self.children_units().items():
            for key, knob in child.knob_table().items():
                out[f"{child_name}.{key}"] = knob
        return out

    @torch.no_grad()
    def set(self, **values: Any) -> Unit:
        """Write knob values (physical units, by name or path); returns ``self``.

        Raises ``ValueError`` for a value outside the knob's range and ``KeyError`` for an unknown
        knob. The round trip ``unit.set(k=v); unit.knobs()[k]`` returns ``v`` up to float
        precision of the parameter dtype.
        """
        resolved = []
        for path, value in values.items():  # validate everything before writing anything
            unit, key = self._resolve(path)
            knob = unit._knobs[key]
            resolved.append((unit, key, knob.check(value, owner=unit.label)))
        for unit, key, v in resolved:
            unit._write_knob(key, v)
        return self

    def freeze(self, *paths: str) -> Unit:
        """Stop gradients of the named knobs (all knobs when none are named); returns ``self``."""
        for path in paths or tuple(self.knobs()):
            unit, key = self._resolve(path)
            unit.raw_knobs[key].requires_grad_(False)
        return self

    def unfreeze(self, *paths: str) -> Unit:
        """Undo :meth:`freeze` for the named knobs (all when none are named); returns ``self``."""
        for path in paths or tuple(self.knobs()):
            unit, key = self._resolve(path)
            unit.raw_knobs[key].requires_grad_(True)
        return self

    def frozen(self) -> list[str]:
        """Paths of the knobs whose gradients are stopped."""
        out = [k for k in self._knobs if not self.raw_knobs[k].requires_grad]
        for child_name, child in self.children_units().items():
            out += [f"{child_name}.{k}" for k in child.frozen()]
        return out

    @torch.no_grad()
    def randomize(self, generator: torch.Generator | None = None) -> Unit:
        """Draw every unfrozen knob uniformly in its scale's space inside the declared range.

        Used by :func:`dspfx.fit` for random restarts.
        """
        for key, knob in self._knobs.items():
            p = self.raw_knobs[key]
            if not p.requires_grad:
                continue
            u = float(torch.rand((), generator=generator))
            lo, hi = knob._to_scale(knob.minimum), knob._to_scale(knob.maximum)
            s = lo + (hi - lo) * (0.05 + 0.9 * u)
            p.fill_(knob.to_raw(math.exp(s) if knob.scale == "log" else s))
        for child in self.children_units().values():
            child.randomize(generator)
        return self

    # -- options and spec ----------------------------------------------------------------------
    def options(self) -> dict[str, Any]:
        """Constructor options (everything in ``__init__``'s signature but ``sample_rate`` and knobs)."""
        out = {}
        for pname, param in inspect.signature(type(self).__init__).parameters.items():
            if pname in ("self", "sample_rate") or param.kind in (param.VAR_KEYWORD, param.VAR_POSITIONAL):
                continue
            if pname in self._class_knobs:
                continue
            out[pname] = getattr(self, pname)
        return out

    def spec(self) -> dict[str, Any]:
        """A plain JSON-safe description: unit name, sample rate, options, knob values, frozen knobs.

        :func:`dspfx.build` makes an equal unit back from it.
        """
        if not self.name:
            raise TypeError(f"{type(self).__name__} has no registry name, so it cannot be written as a spec")
        out: dict[str, Any] = {"unit": self.name, "sample_rate": self.sample_rate}
        opts = self.options()
        if opts:
            out["options"] = opts
        out["knobs"] = {k: self._knob_float(k) for k in self._knobs}
        frozen = [k for k in self._knobs if not self.raw_knobs[k].requires_grad]
        if frozen:
            out["frozen"] = frozen
        return out

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> Unit:
        """Build a unit of this class from :meth:`spec` output (see :func:`dspfx.build`)."""
        unit = cls(sample_rate=spec.get("sample_rate", 48000), **dict(spec.get("options", {})))
        unit.set(**dict(spec.get("knobs", {})))
        if spec.get("frozen"):
            unit.freeze(*spec["frozen"])
        return unit

    # -- pedalboard twins (see dspfx.reference) ----------------------------------------------
    @classmethod
    def from_pedalboard(cls, plugin: Any, sample_rate: float) -> Unit:
        """Make this unit with the settings of a pedalboard plugin (units listed as its twin)."""
        raise TypeError(f"{cls.__name__} is not the twin of any pedalboard plugin")

    def to_pedalboard(self) -> Any:
        """The pedalboard plugin that renders like this unit (units with a twin override this)."""
        raise TypeError(f"unit {self.label!r} has no pedalboard twin")

    # -- rendering -----------------------------------------------------------------------------
    @property
    def latency_samples(self) -> int:
        """Delay this unit adds to its input, in samples (0 unless a unit says otherwise)."""
        return 0

    def output_channels(self, channels: int) -> int:
        """Channels this unit outputs for an input of ``channels`` (the same, unless it says otherwise)."""
        return channels

    def init_state(self, batch: int, channels: int) -> Any:
        """The state :meth:`process` starts from: ``None`` for stateless units, else tensors."""
        return None

    def process(self, x: Tensor | None, controls: dict[str, Tensor], state: Any) -> tuple[Tensor, Any]:
        """Render one block: the unit's DSP. Override in every unit.

        Args:
            x: input audio (batch, channels, samples), or ``None`` for synths.
            controls: one tensor per knob, physical units, shaped (batch|1, 1, samples|1),
                ready to broadcast against x; for synths (x is None) always (batch|1, 1, samples),
                expanded views where constant, and ``controls["n_samples"]`` holds the block
                length (an int). Extra controls (``extra_controls``) come as given.
            state: as returned by :meth:`init_state` or the previous block.
        Returns:
            (y, new_state) with y shaped (batch, channels, samples).
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement process()")

    def controls(
        self, overrides: Mapping[str, Any], batch: int, n_samples: int
    ) -> dict[str, Tensor]:
        """Resolve this unit's own knobs to audio-rate control tensors (batch|1, 1, n|1).

        ``overrides`` are physical values given in the call: floats, (batch,) tensors, or frames
        (batch, frames) on the block's causal hop grid (frame ``i`` reached at sample ``(i + 1)
        n / frames - 1``, from the previous block's last frame when a :class:`Frames` carries
        it; :func:`dspfx.functional.upsample_control`). Override values are checked to lie
        inside the knob's range.
        """
        out: dict[str, Tensor] = {}
        for key, knob in self._knobs.items():
            if key in overrides:
                c, previous = control_frames(overrides[key], batch, name=f"{self.label}.{key}", dtype=self.dtype,
                                             device=self.device)
                _check_control_range(c, knob, f"{self.label}.{key}")
                if c.shape[1] > 1 or previous is not None:
                    c = upsample_control(c, n_samples, mode="causal", previous=previous)
                out[key] = c.squeeze(-1).unsqueeze(1)  # (batch|1, 1, frames|n)
            else:
                out[key] = self._knob_control(key)
        return out

    def kept_design(self, controls: Mapping[str, Tensor], build: Any, *, key: Any = ()) -> Any:
        """``build(controls)`` (a filter design, say), kept between calls while autograd is off and
        every control is the same one-value tensor as last time (the unit's own knobs, unchanged:
        :meth:`_knob_control` hands out the same tensor until a knob moves). A moved knob, a control
        given in the call, a time-varying control or ``key`` (mode, sample rate, ...) changing
        builds afresh; with autograd on it always builds. The values are ``build``'s, bit for bit."""
        if torch.is_grad_enabled() or torch.is_inference_mode_enabled():
            return build(controls)
        values = tuple(controls.values())
        # inference tensors keep no version counter: they are never kept
        if any(not isinstance(c, Tensor) or c.numel() != 1 or c.is_inference() for c in values):
            return build(controls)
        token = (key, tuple(controls), tuple((id(c), c._version) for c in values))
        last = self.__dict__.get("_kept_design")
        if last is not None and last[0] == token:
            return last[2]
        design = build(controls)
        self.__dict__["_kept_design"] = (token, values, design)  # values kept alive: their ids stay theirs
        return design

    def _knob_control(self, key: str) -> Tensor:
        """``knob_value(key)`` as a (1, 1, 1) control. Without autograd (``torch.no_grad()``) the
        tensor is kept until the raw parameter or the value set changes (the same token as the
        exact-value record: storage and version), so repeated renders skip the knob map; the
        values are those the map gives, bit for bit."""
        if torch.is_grad_enabled() or torch.is_inference_mode_enabled():
            return self.knob_value(key).reshape(1, 1, 1)
        raw = self.raw_knobs[key]
        token = (raw.data_ptr(), raw._version, raw.dtype, raw.device, id(self._exact.get(key)))
        cache = self.__dict__.setdefault("_static_controls", {})
        hit = cache.get(key)
        if hit is not None and hit[0] == token:
            return hit[1]
        value = self.knob_value(key).reshape(1, 1, 1)
        cache[key] = (token, value)
        return value

    def split_controls(self, controls: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
        """Split call controls into this unit's own and its children's (by first path part)."""
        own: dict[str, Any] = {}
        per_child: dict[str, dict[str, Any]] = {}
        children = self.children_units()
        for path, value in controls.items():
            head, _, rest = path.partition(".")
            if rest and head in children:
                per_child.setdefault(head, {})[rest] = value
            elif not rest and (path in self._knobs or path in self.extra_controls):
                own[path] = value
            else:
                self._resolve(path)  # raises a KeyError naming the valid paths
                raise KeyError(f"{self.label}: {path!r} is not a control of this unit")
        return own, per_child

    def forward(self, x: Tensor | None = None, n_samples: int | None = None, **controls: Any) -> Tensor:
        """Render offline: ``y = unit(x, **controls)``, y shaped (batch, channels, samples).

        Named controls override knobs (see :meth:`controls`). Synths take ``x=None`` and
        ``n_samples=``.
        """
        if self.is_synth:
            if x is not None:
                check_audio(x, owner=self.label)
            batch, channels = (x.shape[0], x.shape[1]) if x is not None else (_control_batch(controls, self.extra_controls), 1)
        else:
            if x is None:
                raise TypeError(f"{self.label} is an effect: it needs input audio x shaped (batch, channels, samples)")
            check_audio(x, owner=self.label)
            if n_samples is not None and n_samples != x.shape[-1]:
                raise ValueError(f"{self.label}: n_samples={n_samples} differs from the input's {x.shape[-1]} samples")
            batch, channels = x.shape[0], x.shape[1]
        y, _ = self.render_block(x, controls, self.init_state(batch, channels), n_samples=n_samples)
        return y

    def render_block(
        self, x: Tensor | None, controls: Mapping[str, Any], state: Any, n_samples: int | None = None
    ) -> tuple[Tensor, Any]:
        """Resolve controls (own and children's) for one block and call :meth:`process`."""
        if x is not None:
            batch, n = x.shape[0], x.shape[-1]
        else:
            batch = _control_batch(controls, self.extra_controls)
            n = n_samples if n_samples is not None else self.default_length({k: split_frames(v)[0] for k, v in controls.items()})
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise ValueError(f"{self.label}: n_samples must be an int >= 1, got {n!r}")
        own, per_child = self.split_controls(controls)
        extras = {k: own.pop(k) for k in self.extra_controls if k in own}
        for k in self.unframed_controls:
            if k in extras:
                extras[k] = split_frames(extras[k])[0]
        resolved: dict[str, Any] = self.controls(own, batch, n)
        if x is None:  # a synth learns its block length from its controls: all audio-rate views
            resolved = {k: c.expand(*c.shape[:-1], n) for k, c in resolved.items()}
        resolved.update(extras)  # handed on as given: the unit checks and shapes them
        if x is None:
            resolved["n_samples"] = n  # a synth's block length, even when it has no knob
        for child_name, child_controls in per_child.items():
            resolved[child_name] = child_controls  # containers hand these on, unresolved
        try:
            return self.process(x, resolved, state)
        except CPUKernelError as err:
            if getattr(err, "unit", None) is not None:
                raise
            named = CPUKernelError(f"{self.label} ({type(self).__name__}) runs a compiled CPU kernel: {err}")
            named.unit = self.label
            raise named from None

    def default_length(self, controls: Mapping[str, Any]) -> int:
        raise ValueError(f"{self.label}: give n_samples= (the number of samples to render)")

    def __repr__(self) -> str:
        head = f"{type(self).__name__}({self.extra_repr()})"
        lines = [head]
        for key, child in self.children_units().items():
            body = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({key}): {body}")
        return "\n".join(lines)

    def extra_repr(self) -> str:
        parts = [f"sample_rate={self.sample_rate}"]
        parts += [f"{k}={v!r}" for k, v in self.options().items()]
        parts += [f"{k}={self._knob_float(k):.4g}" for k in self._knobs]
        return ", ".join(parts)


def _check_control_range(c: Tensor, knob: Knob, where: str) -> None:
    with torch.no_grad():
        lo, hi = float(c.min()), float(c.max())
        finite = bool(torch.isfinite(c).all())
    if not finite:  # min/max comparisons let NaN through
        raise ValueError(f"control {where} contains NaN or Inf; a control must be finite")
    if not knob.admits(lo, hi):
        raise ValueError(
            f"control {where} spans {lo:g} .. {hi:g}{knob.unit and ' ' + knob.unit}, outside the knob's "
            f"range {knob.minimum:g} .. {knob.maximum:g}; map network outputs with the unit's "
            f"knob_specs[{knob.name!r}].to_physical(raw)"
        )


def _control_batch(controls: Mapping[str, Any], extras: tuple[str, ...] = ()) -> int:
    """The batch size a synth renders, from its controls: a knob's (batch,) or (batch, frames),
    an extra control's leading dim when it has two or more (a 1-D one, e.g. band magnitudes
    (n_bands,), holds no batch)."""
    batch = 1
    for key, value in controls.items():
        value = split_frames(value)[0]
        if isinstance(value, Tensor) and value.ndim >= (2 if key.rpartition(".")[2] in extras else 1):
            batch = max(batch, int(value.shape[0]))
    return batch
