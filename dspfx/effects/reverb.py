"""The Freeverb reverb unit (``reverb``), twin of ``pedalboard.Reverb``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from dspfx.functional.reverb import (
    FREEVERB_ALLPASS_LENGTHS,
    FREEVERB_COMB_LENGTHS,
    FREEVERB_INPUT_GAIN,
    FREEVERB_STEREO_SPREAD,
    freeverb_damp,
    freeverb_feedback,
    freeverb_lengths,
    freeverb_network,
    freeverb_rt60,
)
from dspfx.registry import register
from dspfx.unit import Knob, Unit

__all__ = ["Reverb"]


def _check_lengths_option(value: Any, name: str) -> tuple[int, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise TypeError(f"reverb option {name} must be a sequence of ints (samples at 44.1 kHz), got {value!r}")
    if not value or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in value):
        raise ValueError(f"reverb option {name} must be a non-empty sequence of ints >= 1, got {tuple(value)!r}")
    return tuple(int(v) for v in value)


def _check_freeze(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and 0.0 <= float(value) <= 1.0:
        return float(value) >= 0.5  # pedalboard's convention
    raise TypeError(f"reverb option freeze_mode must be True/False (or a number 0..1, frozen at >= 0.5), got {value!r}")


@register
class Reverb(Unit):
    """Freeverb: 8 parallel lowpass-feedback combs then 4 series allpasses per channel; knobs may
    vary per sample.

    Per network (left, and for stereo a right one whose delay lines are 23 samples longer at
    44.1 kHz), the input ``0.015 * x`` (mono) or ``0.015 * (L + R)`` (stereo) feeds 8 combs with
    feedback ``g = 0.28 * room_size + 0.7`` and a one-pole lowpass ``d = 0.4 * damping`` in each
    loop; their sum passes 4 allpasses (coefficient 0.5). Delay lengths (combs 1116..1617,
    allpasses 556..225 samples at 44.1 kHz) scale as ``int(int(sr) * (len + spread) / 44100)``.
    Output, with ``wet = 3 * wet_level``, ``wet1 = wet * (1 + width) / 2``,
    ``wet2 = wet * (1 - width) / 2``, ``dry = 2 * dry_level``:
    stereo ``L = outL * wet1 + outR * wet2 + L * dry`` (R mirrored), mono ``y = out * wet1 + x * dry``.

    Knobs (ranges of ``pedalboard.Reverb``):
        room_size: 0 .. 1 (default 0.5): comb feedback 0.7 .. 0.98.
        damping: 0 .. 1 (default 0.5): lowpass in the comb loops (high frequencies die sooner).
        wet_level: 0 .. 1 (default 0.33); dry_level: 0 .. 1 (default 0.4).
        width: 0 .. 1 (default 1): stereo width of the wet signal (mono: scales the wet by
            ``(1 + width) / 2``).

    Options:
        freeze_mode: False (default) or True (a number 0..1 is read like pedalboard: frozen at
            >= 0.5). Frozen, the combs get no input, feedback 1 and no damping: the tail rings
            forever, new input is ignored (the dry path still passes). It is an option, not a knob:
            it is a switch with no useful gradient (pedalboard thresholds it), and a continuous
            blend would duplicate room_size and wet_level and let fits drift into it. To freeze
            a running tail, stream and set ``unit.freeze_mode = True`` between blocks (the state
            carries over).
        comb_lengths, allpass_lengths, stereo_spread: delay lengths in samples at 44.1 kHz
            (defaults: Freeverb's). Short ones make tiny networks for tests (gradcheck).

    Decay: with damping 0 the comb loops lose ``g`` per pass of ``L`` samples, so a comb's
    reverberation time is ``T60 = -3 * L / (sr * log10(g))``; with the mean comb length this
    gives 0.61 s at room_size 0, 1.24 s at 0.5, 10.7 s at 1 (any rate: lengths scale with it).
    The bank's Schroeder decay (-5..-35 dB fit) is the sum of its 8 combs' exponential decays,
    longer by 4-6 % (0.63, 1.30, 11.2 s): :meth:`rt60` computes both (``method="edc"``, the
    default, or ``"mean"``); with damping, the loop gain at frequency f is
    ``g * (1 - d) / |1 - d e^{-jw}|``.

    Identifiability from audio: with wet_level 0, room_size, damping and width have no effect;
    width has no effect on mono input beyond a scale it shares with wet_level (mono output
    depends on ``wet_level * (1 + width)`` only); frozen, room_size and damping have no effect.

    Gradients are exact w.r.t. the input, every knob (per sample) and the initial state: the comb
    bank and allpass chain are compiled numba loops with hand-written adjoint loops
    (:mod:`dspfx.functional.reverb`); the mixing is plain torch.

    >>> verb = dspfx.make("reverb", room_size=0.8, damping=0.2, wet_level=0.5, dry_level=0.5)
    >>> y = verb(x)     # x: (batch, 1 or 2, samples)

    Reference: Jezar at Dreampoint, Freeverb (2000); JUCE ``juce::Reverb``; twin of
    ``pedalboard.Reverb`` (``room_size``, ``damping``, ``wet_level``, ``dry_level``, ``width``,
    ``freeze_mode``).
    """

    name = "reverb"
    category = "effect"
    pedalboard_classes = ("Reverb",)
    room_size = Knob(0.5, 0.0, 1.0, doc="room size: comb feedback 0.28 * room_size + 0.7")
    damping = Knob(0.5, 0.0, 1.0, doc="high-frequency damping in the comb loops")
    wet_level = Knob(0.33, 0.0, 1.0, doc="level of the reverberated signal")
    dry_level = Knob(0.4, 0.0, 1.0, doc="level of the input signal")
    width = Knob(1.0, 0.0, 1.0, doc="stereo width of the reverberated signal")

    def __init__(
        self,
        sample_rate: float = 48000,
        freeze_mode: bool = False,
        comb_lengths: Sequence[int] = FREEVERB_COMB_LENGTHS,
        allpass_lengths: Sequence[int] = FREEVERB_ALLPASS_LENGTHS,
        stereo_spread: int = FREEVERB_STEREO_SPREAD,
        **knobs: Any,
    ) -> None:
        self.freeze_mode = _check_freeze(freeze_mode)
        self.comb_lengths = _check_lengths_option(comb_lengths, "comb_lengths")
        self.allpass_lengths = _check_lengths_option(allpass_lengths, "allpass_lengths")
        if isinstance(stereo_spread, bool) or not isinstance(stereo_spread, int) or stereo_spread < 0:
            raise ValueError(f"reverb option stereo_spread must be an int >= 0 (samples at 44.1 kHz), got {stereo_spread!r}")
        self.stereo_spread = stereo_spread
        super().__init__(sample_rate, **knobs)

    def __setattr__(self, key: str, value: Any) -> None:
        if key == "freeze_mode":
            value = _check_freeze(value)
        super().__setattr__(key, value)

    # -- delay lengths and state ---------------------------------------------------------------
    def delay_lengths(self, channel: int = 0) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """(comb lengths, allpass lengths) in samples at this rate for channel 0 (left) or 1."""
        spread = self.stereo_spread if channel == 1 else 0
        return (
            freeverb_lengths(self.sample_rate, self.comb_lengths, spread),
            freeverb_lengths(self.sample_rate, self.allpass_lengths, spread),
        )

    def _check_channels(self, channels: int) -> None:
        if channels not in (1, 2):
            raise ValueError(
                f"{self.label}: Freeverb takes mono or stereo input (1 or 2 channels), got {channels} channels"
            )

    def init_state(self, batch: int, channels: int) -> tuple[tuple[Tensor, Tensor, Tensor], ...]:
        """Per network (left, right): (comb lines (batch, sum L), comb lowpass memories
        (batch, 8), allpass lines (batch, sum M)), all zeros; lines hold the last values
        written, oldest first."""
        self._check_channels(channels)
        out = []
        for ch in range(channels):
            combs, allpasses = self.delay_lengths(ch)
            kw = dict(dtype=self.dtype, device=self.device)
            out.append(
                (torch.zeros(batch, sum(combs), **kw), torch.zeros(batch, len(combs), **kw), torch.zeros(batch, sum(allpasses), **kw))
            )
        return tuple(out)

    # -- DSP -----------------------------------------------------------------------------------
    def process(self, x: Tensor, controls: dict[str, Tensor], state: Any) -> tuple[Tensor, Any]:
        batch, channels, n = x.shape
        self._check_channels(channels)
        if state is None:
            state = self.init_state(batch, channels)
        if not isinstance(state, tuple) or len(state) != channels:
            held = f"{len(state)} networks" if isinstance(state, tuple) else f"a {type(state).__name__}"
            raise ValueError(
                f"{self.label}: the state must be a tuple of one network state per channel ({channels}), "
                f"got {held}; make it with init_state(batch, channels)"
            )
        if self.freeze_mode:
            gain = 0.0
            feedback = x.new_ones(1, 1)
            damp = x.new_zeros(1, 1)
        else:
            gain = FREEVERB_INPUT_GAIN
            feedback = freeverb_feedback(controls["room_size"]).squeeze(1)  # (batch|1, n|1)
            damp = freeverb_damp(controls["damping"]).squeeze(1)
        u = gain * x.sum(1)  # (batch, n): mono x, or L + R
        outs, new_state = [], []
        for ch in range(channels):
            combs, allpasses = self.delay_lengths(ch)
            y, st = freeverb_network(u, feedback, damp, state[ch], combs, allpasses)
            outs.append(y.unsqueeze(1))
            new_state.append(st)
        wet = 3.0 * controls["wet_level"]
        wet1 = 0.5 * wet * (1.0 + controls["width"])
        dry = 2.0 * controls["dry_level"]
        if channels == 1:
            y = outs[0] * wet1 + x * dry
        else:
            wet2 = 0.5 * wet * (1.0 - controls["width"])
            left = outs[0] * wet1 + outs[1] * wet2
            right = outs[1] * wet1 + outs[0] * wet2
            y = torch.cat([left, right], dim=1) + x * dry
        return y, tuple(new_state)

    def rt60(
        self, room_size: float | None = None, damping: float = 0.0, freq_hz: float = 0.0, method: str = "edc"
    ) -> float:
        """Predicted reverberation time in s (see :func:`dspfx.functional.reverb.freeverb_rt60`);
        room_size defaults to the knob's value, damping to 0 (then the decay is the same at all
        frequencies)."""
        if room_size is None:
            room_size = self._knob_float("room_size")
        return freeverb_rt60(room_size, self.sample_rate, self.comb_lengths, damping, freq_hz, method)

    # -- pedalboard twin -----------------------------------------------------------------------
    @classmethod
    def from_pedalboard(cls, plugin: Any, sample_rate: float) -> Unit:
        return cls(
            sample_rate=sample_rate,
            freeze_mode=float(plugin.freeze_mode) >= 0.5,
            room_size=float(plugin.room_size),
            damping=float(plugin.damping),
            wet_level=float(plugin.wet_level),
            dry_level=float(plugin.dry_level),
            width=float(plugin.width),
        )

    def to_pedalboard(self) -> Any:
        import pedalboard

        if (self.comb_lengths, self.allpass_lengths, self.stereo_spread) != (
            FREEVERB_COMB_LENGTHS,
            FREEVERB_ALLPASS_LENGTHS,
            FREEVERB_STEREO_SPREAD,
        ):
            raise ValueError(
                f"{self.label}: only the standard Freeverb delay lengths have a pedalboard twin, got "
                f"comb_lengths={self.comb_lengths}, allpass_lengths={self.allpass_lengths}, "
                f"stereo_spread={self.stereo_spread}"
            )
        k = self.knobs()
        return pedalboard.Reverb(
            room_size=k["room_size"],
            damping=k["damping"],
            wet_level=k["wet_level"],
            dry_level=k["dry_level"],
            width=k["width"],
            freeze_mode=1.0 if self.freeze_mode else 0.0,
        )
