"""Delay: a feedback echo (pedalboard's ``Delay``), optionally with a fractional, differentiable
delay time and a damping lowpass in the loop."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from dspfx.functional.delay import (
    damped_delay_state,
    damped_feedback_delay,
    damping_pole,
    feedback_delay,
    pedalboard_delay_samples,
)
from dspfx.registry import register
from dspfx.unit import Knob, Unit

__all__ = ["Delay"]


@register
class Delay(Unit):
    """Feedback delay (echo); feedback and mix may vary per sample. By default the delay time is
    whole samples, exactly like pedalboard; options add a fractional, differentiable (even
    time-varying) delay time and a damping lowpass in the feedback loop.

    Per sample, with ``D`` the delay in samples and ``g`` the feedback::

        d[n] = buf[n - D];   buf[n] = x[n] + g * LP(d)[n];   y[n] = (1 - mix) * x[n] + mix * d[n]

    where ``LP`` is the identity unless ``damping=True``; so without damping an impulse comes
    back ``mix * g**(k - 1)`` at ``k * D`` samples. The default (integer, undamped) mode is
    rendered exactly without a loop over samples by :func:`dspfx.functional.delay.feedback_delay`
    (a first-order recursion along rows of ``D`` samples, one torchlpc call per block); the
    other modes run :func:`dspfx.functional.delay.damped_feedback_delay` (a compiled loop with an
    exact hand-written backward).

    Options:
        interpolation: ``"none"`` (default; pedalboard's whole-sample delay, ``delay_ms`` gets
            no gradient and is static within a block) or ``"linear"`` (fractional delay read
            with linear interpolation: ``delay_ms`` is differentiable and may vary per sample,
            a tape-style modulated echo; delays shorter than one sample are clamped to one
            sample, there is no bypass at 0 ms).
        damping: ``False`` (default) or ``True``: a one-pole lowpass
            ``z = (1 - p) d + p z[n-1]``, ``p = exp(-2 pi damping_hz / sample_rate)``, filters
            the echo fed back, so every repeat is darker than the one before (the first echo
            is not filtered). Adds the knob ``damping_hz``.

    Knobs:
        delay_ms: 0 .. 2000 ms (linear, default 500). With ``interpolation="none"`` it is rounded
            DOWN to whole samples like pedalboard, ``D = floor(float32(delay_ms / 1000) *
            sample_rate)``, so it gets no gradient there (freeze it when fitting, or use
            ``interpolation="linear"``), and it is static within a block (a time-varying
            ``delay_ms`` control raises). ``delay_ms = 0`` bypasses the unit (``y = x``, as
            pedalboard does); a delay shorter than one sample but not 0 leaves only the dry part
            ``(1 - mix) * x`` (also pedalboard's behaviour).
        feedback: 0 .. 1 (linear, default 0): echo level fed back into the line. The loop is
            stable for feedback < 1; at 1 (pedalboard's maximum, kept for the twin) it is
            lossless: echoes repeat forever at constant level (without damping).
        mix: 0 .. 1 (linear, default 0.5): wet fraction (0 dry, 1 echoes only).
        damping_hz: 20 .. 20000 Hz (log, default 4000), only with ``damping=True``: cutoff of
            the lowpass in the loop.

    Streaming keeps the last ``D`` samples of the delay line as the state (the default mode;
    if ``delay_ms`` changes between blocks, the state keeps the most recent samples that fit
    the new length), or the last ``ceil(2000 ms * sample_rate) + 1`` samples and the damping
    filter's output (the other modes).

    >>> echo = dspfx.make("delay", delay_ms=250.0, feedback=0.4, mix=0.3)
    >>> y = echo(x, mix=torch.linspace(0.0, 0.6, 20).view(1, -1))   # a mix ramp over 20 frames
    >>> tape = dspfx.make("delay", interpolation="linear", damping=True, damping_hz=2500.0)

    Reference: twin of ``pedalboard.Delay`` (``delay_seconds``, ``feedback``, ``mix``; JUCE
    ``dsp::DelayLine`` without interpolation) in the default mode; the damped loop is the
    classic tape echo with a lowpass in the feedback path (Zoelzer, DAFX, ch. 2).
    """

    name = "delay"
    category = "effect"
    pedalboard_classes = ("Delay",)
    delay_ms = Knob(500.0, 0.0, 2000.0, unit="ms", doc="delay time (whole samples unless interpolation='linear')")
    feedback = Knob(0.0, 0.0, 1.0, doc="echo level fed back into the line (1: endless repeats)")
    mix = Knob(0.5, 0.0, 1.0, doc="wet fraction: 0 dry, 1 echoes only")

    #: longest delay of the knob range, in ms (the state length of the fractional/damped modes)
    max_delay_ms = 2000.0

    def __init__(
        self, sample_rate: float = 48000, interpolation: str = "none", damping: bool = False, **knobs: Any
    ) -> None:
        if interpolation not in ("none", "linear"):
            raise ValueError(f"delay option interpolation must be 'none' or 'linear', got {interpolation!r}")
        if not isinstance(damping, bool):
            raise TypeError(f"delay option damping must be True or False, got {damping!r}")
        self.interpolation = interpolation
        self.damping = damping
        damping_hz = knobs.pop("damping_hz", None)
        super().__init__(sample_rate, **knobs)
        if damping:
            self.add_knob(
                "damping_hz",
                Knob(4000.0, 20.0, 20000.0, scale="log", unit="Hz", doc="cutoff of the lowpass in the feedback loop"),
            )
            if damping_hz is not None:
                self.set(damping_hz=damping_hz)
        elif damping_hz is not None:
            raise TypeError(f"{self.label}: knob 'damping_hz' exists only with the option damping=True")

    @property
    def exact(self) -> bool:
        """True in pedalboard's mode (whole samples, no damping): the vectorised exact path."""
        return self.interpolation == "none" and not self.damping

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

    def init_state(self, batch: int, channels: int) -> Any:
        if not self.exact:
            longest = self.max_delay_ms * self.sample_rate / 1000.0
            return damped_delay_state(batch, channels, max(longest, 1.0), dtype=self.dtype, device=self.device)
        return torch.zeros(batch, channels, self.delay_samples(), dtype=self.dtype, device=self.device)

    def process(self, x: Tensor, controls: dict[str, Tensor], state: Any) -> tuple[Tensor, Any]:
        if not self.exact:
            return self._process_loop(x, controls, state)
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

    def _process_loop(self, x: Tensor, controls: dict[str, Tensor], state: Any) -> tuple[Tensor, Any]:
        """The fractional and/or damped modes: the compiled echo loop."""
        if state is None:
            state = self.init_state(x.shape[0], x.shape[1])
        pole: Tensor | float = 0.0
        if self.damping:
            pole = damping_pole(controls["damping_hz"], self.sample_rate)
        if self.interpolation == "linear":
            delay: Tensor | float = controls["delay_ms"] * (self.sample_rate / 1000.0)
        else:
            ms = self._delay_ms_value(controls["delay_ms"])
            whole = self.delay_samples(ms)
            if ms == 0.0:
                return x, state
            if whole == 0:
                return (1 - controls["mix"]) * x, state
            delay = float(whole)
        return damped_feedback_delay(x, delay, controls["feedback"], controls["mix"], pole, state)

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

        if not self.exact:
            raise ValueError(
                f"{self.label} with interpolation={self.interpolation!r}, damping={self.damping} has no pedalboard "
                "twin (pedalboard.Delay is the default mode: interpolation='none', damping=False)"
            )

        k = self.knobs()
        return pedalboard.Delay(delay_seconds=k["delay_ms"] / 1000.0, feedback=k["feedback"], mix=k["mix"])
