"""Delay: a feedback echo with an integer delay time (pedalboard's ``Delay``)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from dspfx.functional.delay import feedback_delay, pedalboard_delay_samples
from dspfx.registry import register
from dspfx.unit import Knob, Unit

__all__ = ["Delay"]


@register
class Delay(Unit):
    """Feedback delay (echo) with a whole-sample delay time; feedback and mix may vary per sample.

    Per sample, with ``D`` the delay in samples and ``g`` the feedback::

        d[n] = buf[n - D];   buf[n] = x[n] + g * d[n];   y[n] = (1 - mix) * x[n] + mix * d[n]

    so an impulse comes back ``mix * g**(k - 1)`` at ``k * D`` samples. Rendered exactly and
    without a loop over samples by :func:`dspfx.functional.delay.feedback_delay` (a first-order
    recursion along rows of ``D`` samples, one torchlpc call per block).

    Knobs:
        delay_ms: 0 .. 2000 ms (linear, default 500). Rounded DOWN to whole samples like
            pedalboard, ``D = floor(float32(delay_ms / 1000) * sample_rate)``, so it gets no
            gradient (freeze it when fitting; a fractional, modulated delay is the job of the
            chorus and flanger units). It is static within a block (a time-varying
            ``delay_ms`` control raises). ``delay_ms = 0`` bypasses the unit (``y = x``, as
            pedalboard does); a delay shorter than one sample but not 0 leaves only the dry part
            ``(1 - mix) * x`` (also pedalboard's behaviour).
        feedback: 0 .. 1 (linear, default 0): echo level fed back into the line. The loop is
            stable for feedback < 1; at 1 (pedalboard's maximum, kept for the twin) it is
            lossless: echoes repeat forever at constant level.
        mix: 0 .. 1 (linear, default 0.5): wet fraction (0 dry, 1 echoes only).

    Streaming keeps the last ``D`` samples of the delay line as the state. If ``delay_ms``
    changes between blocks, the state keeps the most recent samples that fit the new length
    (zeros where a longer line would have older samples).

    >>> echo = dspfx.make("delay", delay_ms=250.0, feedback=0.4, mix=0.3)
    >>> y = echo(x, mix=torch.linspace(0.0, 0.6, 20).view(1, -1))   # a mix ramp over 20 frames

    Reference: twin of ``pedalboard.Delay`` (``delay_seconds``, ``feedback``, ``mix``; JUCE
    ``dsp::DelayLine`` without interpolation).
    """

    name = "delay"
    category = "effect"
    pedalboard_classes = ("Delay",)
    delay_ms = Knob(500.0, 0.0, 2000.0, unit="ms", doc="delay time (whole samples, no gradient)")
    feedback = Knob(0.0, 0.0, 1.0, doc="echo level fed back into the line (1: endless repeats)")
    mix = Knob(0.5, 0.0, 1.0, doc="wet fraction: 0 dry, 1 echoes only")

    def _delay_ms_value(self, control: Tensor | None = None) -> float:
        """The delay in ms as a float: the knob's exact value, or a static control's."""
        if control is None:
            return self._knob_float("delay_ms")
        with torch.no_grad():
            flat = control.detach().reshape(-1)
            first = flat[0]
            if flat.numel() > 1 and not bool((flat == first).all()):
                raise ValueError(
                    f"{self.label}: delay_ms must be one value per block (the same for the whole batch "
                    f"and in time), got a control spanning {float(flat.min()):g} .. {float(flat.max()):g} ms; "
                    "render the parts separately, or use a modulated-delay unit (chorus, flanger)"
                )
            value = float(first)
            if value == float(self.knob_value("delay_ms").detach()):
                return self._knob_float("delay_ms")  # the knob itself: its exact (float64) value
        return value

    def delay_samples(self, delay_ms: float | None = None) -> int:
        """The delay in whole samples for ``delay_ms`` (default: the knob), rounded like pedalboard."""
        ms = self._delay_ms_value() if delay_ms is None else float(delay_ms)
        return pedalboard_delay_samples(ms / 1000.0, self.sample_rate)

    def init_state(self, batch: int, channels: int) -> Tensor:
        return torch.zeros(batch, channels, self.delay_samples(), dtype=self.dtype, device=self.device)

    def process(self, x: Tensor, controls: dict[str, Tensor], state: Any) -> tuple[Tensor, Any]:
        ms = self._delay_ms_value(controls["delay_ms"])
        delay = self.delay_samples(ms)
        batch, channels, _ = x.shape
        if state is None:
            state = x.new_zeros(batch, channels, delay)
        else:
            have = state.shape[-1]
            if have > delay:
                state = state[..., have - delay :]
            elif have < delay:
                state = torch.cat([state.new_zeros(batch, channels, delay - have), state], dim=-1)
        if ms == 0.0:
            return x, state
        if delay == 0:
            return (1 - controls["mix"]) * x, state
        return feedback_delay(x, delay, controls["feedback"], controls["mix"], state)

    @classmethod
    def from_pedalboard(cls, plugin: Any, sample_rate: float) -> Unit:
        return cls(
            sample_rate=sample_rate,
            delay_ms=float(plugin.delay_seconds) * 1000.0,
            feedback=float(plugin.feedback),
            mix=float(plugin.mix),
        )

    def to_pedalboard(self) -> Any:
        import pedalboard

        k = self.knobs()
        return pedalboard.Delay(delay_seconds=k["delay_ms"] / 1000.0, feedback=k["feedback"], mix=k["mix"])
