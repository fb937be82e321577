"""Knobs: a unit's continuous settings, each one unconstrained ``nn.Parameter`` behind a bounded,
smooth map into its declared range (see :mod:`dspfx.unit` for how units declare and use them)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

if TYPE_CHECKING:  # annotations only: unit.py imports this module
    from dspfx.unit import Unit

__all__ = ["KNOB_MARGIN", "Knob"]

#: Fraction of a knob's span (in its scale's space) by which the raw map extends beyond the
#: declared range on each side, so that the range's edges map from finite raw values.
KNOB_MARGIN = 0.02

# Values this close to an edge (relative to the span) are accepted and snapped onto the edge, so a
# value read back in float32 (0.1 -> 0.10000000149) can be written again.
_EDGE_TOLERANCE = 1e-6


class Knob:
    """A continuous, trainable, range-bounded control of a :class:`Unit`, declared on the class.

    Args:
        default: value a new unit starts with.
        minimum, maximum: the declared range (inclusive). Values outside it are rejected.
        scale: ``"linear"`` or ``"log"`` (log needs ``minimum > 0``); the space in which the raw
            parameter moves and in which random restarts are drawn.
        unit: unit of measure for tables and plots (``"Hz"``, ``"dB"``, ``"ms"``, ``""``).
        doc: one line saying what the knob does.

    Declared as a class attribute, ``unit.cutoff_hz`` reads the current physical value (a 0-d
    tensor, differentiable) and ``unit.cutoff_hz = 500.0`` writes it (like ``unit.set``).
    """

    def __init__(
        self,
        default: float,
        minimum: float,
        maximum: float,
        *,
        scale: str = "linear",
        unit: str = "",
        doc: str = "",
    ) -> None:
        if scale not in ("linear", "log"):
            raise ValueError(f"Knob scale must be 'linear' or 'log', got {scale!r}")
        if not (math.isfinite(minimum) and math.isfinite(maximum)) or not minimum < maximum:
            raise ValueError(f"Knob range must be finite with minimum < maximum, got [{minimum}, {maximum}]")
        if scale == "log" and minimum <= 0:
            raise ValueError(f"a log-scale Knob needs minimum > 0, got {minimum}")
        if not minimum <= default <= maximum:
            raise ValueError(f"Knob default {default} lies outside its range [{minimum}, {maximum}]")
        self.default = float(default)
        self.minimum = float(minimum)
        self.maximum = float(maximum)
        self.scale = scale
        self.unit = unit
        self.doc = doc
        self.name = ""  # filled by __set_name__ or Unit.add_knob
        lo, hi = self._to_scale(self.minimum), self._to_scale(self.maximum)
        pad = KNOB_MARGIN * (hi - lo)
        self._lo, self._hi = lo - pad, hi + pad  # widened range, in scale space

    # -- descriptor protocol: unit.cutoff_hz reads / writes the physical value ------------------
    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, unit: Unit | None, owner: type | None = None) -> Any:
        if unit is None:
            return self
        return unit.knob_value(self.name)

    def __set__(self, unit: Unit, value: float) -> None:
        unit.set(**{self.name: value})

    # -- the bounded map -----------------------------------------------------------------------
    def _to_scale(self, value: float) -> float:
        return math.log(value) if self.scale == "log" else value

    def to_physical(self, raw: Tensor) -> Tensor:
        """Map an unconstrained raw tensor to physical values inside ``[minimum, maximum]``.

        Differentiable everywhere (straight-through at the edges). Networks can use this to turn
        unconstrained outputs into valid controls for this knob.
        """
        s = self._lo + (self._hi - self._lo) * torch.sigmoid(raw)
        value = torch.exp(s) if self.scale == "log" else s
        clamped = value.clamp(self.minimum, self.maximum)
        return value + (clamped - value).detach()

    def to_raw(self, value: float) -> float:
        """Inverse of :meth:`to_physical` for a value inside the declared range.

        An edge value maps to the middle of the margin beyond it, so that after rounding in any
        dtype the clamp lands exactly on the edge (``mix = 0`` is exactly dry).
        """
        pad = 0.5 * (self._hi - self._lo) * KNOB_MARGIN / (1 + 2 * KNOB_MARGIN)
        if value <= self.minimum:
            s = self._to_scale(self.minimum) - pad
        elif value >= self.maximum:
            s = self._to_scale(self.maximum) + pad
        else:
            s = self._to_scale(value)
        p = (s - self._lo) / (self._hi - self._lo)
        return math.log(p) - math.log1p(-p)

    def admits(self, low: float, high: float) -> bool:
        """Whether values spanning ``low .. high`` lie in the range, edges within 1e-6 of it."""
        tol = _EDGE_TOLERANCE * (self.maximum - self.minimum)
        return self.minimum - tol <= low and high <= self.maximum + tol

    def check(self, value: Any, owner: str = "") -> float:
        """Validate a value for this knob and return it as a float (edges snapped within 1e-6)."""
        where = f"{owner}.{self.name}" if owner else self.name
        if isinstance(value, Tensor):
            if value.numel() != 1:
                raise ValueError(
                    f"knob {where} takes one value, got a tensor of shape {tuple(value.shape)}; "
                    "pass time-varying values as a control in the call instead: unit(x, "
                    f"{self.name}=...)"
                )
            value = value.item()
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise TypeError(f"knob {where} takes a number, got {type(value).__name__} {value!r}") from None
        if not math.isfinite(v):
            raise ValueError(f"knob {where} must be finite, got {v}")
        if not self.admits(v, v):
            raise ValueError(
                f"knob {where} = {v:g}{self.unit and ' ' + self.unit} is out of range: "
                f"expected {self.minimum:g} .. {self.maximum:g}{self.unit and ' ' + self.unit}"
            )
        return min(max(v, self.minimum), self.maximum)

    def describe(self) -> dict[str, Any]:
        """JSON-safe description: default, range, scale, unit of measure, doc."""
        return {
            "default": self.default,
            "minimum": self.minimum,
            "maximum": self.maximum,
            "scale": self.scale,
            "unit": self.unit,
            "doc": self.doc,
        }

    def copy(self, name: str) -> Knob:
        k = Knob(self.default, self.minimum, self.maximum, scale=self.scale, unit=self.unit, doc=self.doc)
        k.name = name
        return k

    def __repr__(self) -> str:
        u = f" {self.unit}" if self.unit else ""
        return f"Knob({self.default:g}{u}, {self.minimum:g}..{self.maximum:g}, {self.scale})"
