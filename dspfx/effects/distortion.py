"""Distortion: drive into a tanh waveshaper."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from dspfx.functional.conversions import db_to_gain
from dspfx.registry import register
from dspfx.unit import Knob, Unit

__all__ = ["Distortion"]


@register
class Distortion(Unit):
    """Memoryless soft clipper: ``y = tanh(10**(drive_db / 20) * x)``, no oversampling.

    Knobs:
        drive_db: 0 .. 60 dB (default 25), gain into the tanh curve; may vary in time.

    >>> fuzz = dspfx.make("distortion", drive_db=30.0)
    >>> y = fuzz(x)

    Reference: ``pedalboard.Distortion`` (same curve, same lack of oversampling, so the twin
    aliases exactly as pedalboard does).
    """

    name = "distortion"
    category = "effect"
    pedalboard_classes = ("Distortion",)
    drive_db = Knob(25.0, 0.0, 60.0, unit="dB", doc="gain into the tanh curve")

    def process(self, x: Tensor, controls: dict[str, Tensor], state: Any) -> tuple[Tensor, Any]:
        return torch.tanh(db_to_gain(controls["drive_db"]) * x), state

    @classmethod
    def from_pedalboard(cls, plugin: Any, sample_rate: float) -> Unit:
        return cls(sample_rate=sample_rate, drive_db=plugin.drive_db)

    def to_pedalboard(self) -> Any:
        import pedalboard

        return pedalboard.Distortion(drive_db=self.knobs()["drive_db"])
