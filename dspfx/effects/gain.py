"""Gain: a level change in decibels."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from dspfx.functional.conversions import db_to_gain
from dspfx.registry import register
from dspfx.unit import Knob, Unit

__all__ = ["Gain"]


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
        return x * self._linear_gain(controls["gain_db"]), state

    def _linear_gain(self, gain_db: Tensor) -> Tensor:
        """``db_to_gain(gain_db)``; without autograd, a static control that is the same tensor as
        in the last call (the unit's own knob, unchanged) reuses that call's value."""
        if torch.is_grad_enabled() or gain_db.numel() != 1:
            return db_to_gain(gain_db)
        key = (id(gain_db), gain_db._version)
        last = self.__dict__.get("_last_gain")
        if last is not None and last[0] == key:
            return last[2]
        gain = db_to_gain(gain_db)
        self.__dict__["_last_gain"] = (key, gain_db, gain)  # the control kept alive: its id stays its own
        return gain

    @classmethod
    def from_pedalboard(cls, plugin: Any, sample_rate: float) -> Unit:
        return cls(sample_rate=sample_rate, gain_db=plugin.gain_db)

    def to_pedalboard(self) -> Any:
        import pedalboard

        return pedalboard.Gain(gain_db=self.knobs()["gain_db"])
