"""Subtractive synth sources: a band-limited saw / square / triangle oscillator and an ADSR envelope.

Combine them by multiplying the renders, then filter with the effects' filters::

    osc = dspfx.make("oscillator", waveform="saw", f0_hz=110.0)
    env = dspfx.make("adsr", attack_s=0.01, decay_s=0.2, sustain=0.6, release_s=0.3)
    voice = osc(n_samples=n) * env(n_samples=n, gate=gate)      # (batch, 1, n)
    y = dspfx.make("biquad", mode="lowpass", cutoff_hz=2000.0)(voice)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from dspfx.functional.blep import WAVEFORMS, accumulate_phase, adsr_envelope, oscillator
from dspfx.functional.control import control_frames, control_hop, upsample_control
from dspfx.registry import register
from dspfx.unit import Knob, Unit

__all__ = ["Oscillator", "ADSR"]


def _frames(controls: Mapping[str, Any]) -> int:
    frames = 1
    for value in controls.values():
        if isinstance(value, Tensor) and value.ndim in (2, 3):
            frames = max(frames, int(value.shape[1]))
    return frames




@register
class Oscillator(Unit):
    """Band-limited saw, square (pulse width) or triangle oscillator: the subtractive synth's source.

    Band limiting is hybrid (see :func:`dspfx.functional.blep.oscillator`): PolyBLEP for the
    steps of saw and square and PolyBLAMP (integrated BLEP) for the corners of the triangle at low
    ``f0``; where at most ``additive_harmonics`` harmonics fit below Nyquist (f0 >= 750 Hz at
    48 kHz with the default 32) the waveform is the exact sum of its harmonics below Nyquist, so
    nothing aliases (crossfade over the 20 % of f0 below that). The square has its DC removed.

    Knobs (all may vary in time):
        f0_hz: 20 .. 20000 Hz (default 440), log.
        pulse_width: 0.05 .. 0.95 (default 0.5), square only: fraction of the period at +1.
        amplitude: 0 .. 1 (default 1), peak level of the naive waveform.

    Options: ``waveform`` ("saw", "square", "triangle"), ``additive_harmonics`` (32),
    ``hop`` (192: samples per control frame when ``n_samples`` is not given).
    The phase is carried across blocks (:class:`dspfx.Stream`).

    >>> osc = dspfx.make("oscillator", waveform="square", f0_hz=220.0, pulse_width=0.3)
    >>> y = osc(n_samples=48000)           # (1, 1, 48000); multiply by an adsr render to shape it

    Reference: Välimäki & Huovilainen, "Antialiasing oscillators in subtractive synthesis" (2007);
    Esqueda, Välimäki & Bilbao, "Rounding corners with BLAMP" (2016).
    """

    name = "oscillator"
    category = "synth"
    is_synth = True
    f0_hz = Knob(440.0, 20.0, 20000.0, scale="log", unit="Hz", doc="fundamental frequency")
    pulse_width = Knob(0.5, 0.05, 0.95, doc="square duty cycle")
    amplitude = Knob(1.0, 0.0, 1.0, doc="output level")

    def __init__(
        self,
        sample_rate: float = 48000,
        waveform: str = "saw",
        additive_harmonics: int = 32,
        hop: int = 192,
        **knobs: Any,
    ) -> None:
        if waveform not in WAVEFORMS:
            raise ValueError(f"oscillator: waveform must be one of {WAVEFORMS}, got {waveform!r}")
        if isinstance(additive_harmonics, bool) or not isinstance(additive_harmonics, int) or additive_harmonics < 1:
            raise ValueError(f"oscillator: additive_harmonics must be a positive int, got {additive_harmonics!r}")
        self.waveform = waveform
        self.additive_harmonics = additive_harmonics
        self.hop = control_hop(sample_rate, hop, "oscillator")
        super().__init__(sample_rate, **knobs)

    def init_state(self, batch: int, channels: int) -> Tensor:
        return torch.zeros(batch, 1, 1, dtype=torch.float64, device=self.device)

    def default_length(self, controls: Mapping[str, Any]) -> int:
        return _frames(controls) * self.hop

    def process(self, x: Tensor | None, controls: dict[str, Tensor], state: Tensor) -> tuple[Tensor, Tensor]:
        f0 = controls["f0_hz"]
        dt = f0 / self.sample_rate
        batch = state.shape[0]
        n = f0.shape[-1]
        phase, final = accumulate_phase(dt.expand(batch, 1, n), state)
        y = oscillator(self.waveform, phase, dt, controls["pulse_width"], self.additive_harmonics)
        y = controls["amplitude"] * y
        return y.expand(batch, 1, n), final


@register
class ADSR(Unit):
    """ADSR envelope (linear segments) driven by a 0/1 gate: the subtractive synth's amplifier shape.

    At gate-on the level rises linearly from where it is to 1, reached exactly ``attack_s`` after
    gate-on, falls linearly to ``sustain`` over ``decay_s`` and holds while the gate
    is on; at gate-off it falls linearly from where it is to 0 over ``release_s``. Retriggers and
    early releases start from the current level (continuous). Closed form per segment, vectorised
    (time since the last gate edge from a cumulative max; the level at each edge by a linear
    recursion through :func:`dspfx.functional.iir`), see :func:`dspfx.functional.blep.adsr_envelope`.
    The knobs are read per sample.

    Knobs: attack_s 0.001 .. 10 s (0.01), decay_s 0.001 .. 10 s (0.1), sustain 0 .. 1 (0.7),
    release_s 0.001 .. 10 s (0.2); the times are log-scaled.

    Extra control ``gate``: ``(batch, frames)`` of 0/1 values (frames on the block's causal hop grid
    and upsampled linearly, then "on" where >= 0.5; give it at audio rate, frames = samples, for
    sample-exact edges). When not given the gate is on for the whole render. Values outside
    [0, 1] are an error. Option ``hop`` (192): samples per gate frame when ``n_samples`` is not
    given. Output: ``(batch, 1, samples)``; multiply it with a source: ``osc(...) * adsr(...)``.

    >>> env = dspfx.make("adsr", attack_s=0.005, decay_s=0.1, sustain=0.5, release_s=0.2)
    >>> e = env(n_samples=48000, gate=gate)    # gate: (1, 48000) of 0/1

    Reference: the classic ADSR of analog synthesizers (ARP 2500 / Moog contour generator),
    here with linear segments as in most digital synths.
    """

    name = "adsr"
    category = "synth"
    is_synth = True
    extra_controls = ("gate",)
    attack_s = Knob(0.01, 0.001, 10.0, scale="log", unit="s", doc="time to reach 1 after gate-on")
    decay_s = Knob(0.1, 0.001, 10.0, scale="log", unit="s", doc="time from 1 to sustain")
    sustain = Knob(0.7, 0.0, 1.0, doc="level held while the gate is on")
    release_s = Knob(0.2, 0.001, 10.0, scale="log", unit="s", doc="time to 0 after gate-off")

    def __init__(self, sample_rate: float = 48000, hop: int = 192, **knobs: Any) -> None:
        self.hop = control_hop(sample_rate, hop, "adsr")
        super().__init__(sample_rate, **knobs)

    def init_state(self, batch: int, channels: int) -> tuple[Tensor, Tensor, Tensor]:
        return (
            torch.zeros(batch, dtype=torch.float64, device=self.device),
            torch.zeros(batch, dtype=torch.float64, device=self.device),
            torch.zeros(batch, dtype=self.dtype, device=self.device),
        )

    def default_length(self, controls: Mapping[str, Any]) -> int:
        return _frames(controls) * self.hop

    def process(self, x: Tensor | None, controls: dict[str, Tensor], state: Any) -> tuple[Tensor, Any]:
        batch = state[0].shape[0]
        n = controls["attack_s"].shape[-1]
        if "gate" in controls:
            g, previous = control_frames(controls["gate"], batch, name="adsr.gate", device=self.device)
            with torch.no_grad():
                lo, hi = float(g.min()), float(g.max())
            if lo < 0 or hi > 1:
                raise ValueError(f"adsr.gate must hold 0/1 values (key up/down), got values in {lo:g} .. {hi:g}")
            prev = None if previous is None else previous.detach()
            gate = upsample_control(g.detach(), n, mode="causal", previous=prev)[..., 0].expand(batch, n) >= 0.5
        else:
            gate = torch.ones(batch, n, dtype=torch.bool, device=self.device)
        sr = self.sample_rate
        env, new_state = adsr_envelope(
            gate,
            controls["attack_s"][:, 0] * sr,
            controls["decay_s"][:, 0] * sr,
            controls["sustain"][:, 0],
            controls["release_s"][:, 0] * sr,
            state,
        )
        return env.unsqueeze(1), new_state
