"""Gain: a level change in decibels; trim: a signed level and a DC offset."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from dspfx.functional.conversions import db_to_gain
from dspfx.registry import register
from dspfx.unit import Knob, Unit

__all__ = ["Gain", "Trim"]


def _linear_gain(controls: dict[str, Tensor]) -> Tensor:
    return db_to_gain(controls["gain_db"])


@register
class Gain(Unit):
    """Level change in decibels: ``y = 10**(gain_db / 20) * x``.

    Knobs:
        gain_db: -60 .. +40 dB (default 0), may vary in time.

    >>> louder = dspfx.make("gain", gain_db=6.0)
    >>> y = louder(x)                      # x: (batch, channels, samples)

    Reference: ``pedalboard.Gain`` (twin: renders agree to float32 precision).
    """

    name = "gain"
    category = "effect"
    pedalboard_classes = ("Gain",)
    gain_db = Knob(0.0, -60.0, 40.0, unit="dB", doc="level change")

    def process(self, x: Tensor, controls: dict[str, Tensor], state: Any) -> tuple[Tensor, Any]:
        # without autograd the linear gain is kept while the knob stays put (Unit.kept_design)
        return x * self.kept_design(controls, _linear_gain), state

    @classmethod
    def from_pedalboard(cls, plugin: Any, sample_rate: float) -> Unit:
        return cls(sample_rate=sample_rate, gain_db=plugin.gain_db)

    def to_pedalboard(self) -> Any:
        import pedalboard

        return pedalboard.Gain(gain_db=self.knobs()["gain_db"])


@register
class Trim(Unit):
    """Signed level and DC offset: ``y = scale * x + dc``.

    What a capture learns after a gray-box model: a device's output level, its polarity (many
    amps invert: ``scale < 0``) and a DC offset, none of which the amp's own knobs can take up.

    Knobs:
        scale: -4 .. 4 (default 1), linear and signed.
        dc: -1 .. 1 (default 0), added.

    >>> dspfx.make("trim", scale=-1.0)             # a polarity flip

    Reference: with ``dc = 0``, ``pedalboard.Gain`` (``20 log10 |scale|`` dB) followed by
    ``pedalboard.Invert`` when ``scale < 0`` (renders agree to float32 precision; tested).
    """

    name = "trim"
    category = "effect"
    scale = Knob(1.0, -4.0, 4.0, doc="signed linear level")
    dc = Knob(0.0, -1.0, 1.0, doc="DC offset added to the output")

    def process(self, x: Tensor, controls: dict[str, Tensor], state: Any) -> tuple[Tensor, Any]:
        return x * controls["scale"] + controls["dc"], state
