"""Subtractive synthesis: a band-limited saw / square / triangle oscillator, an ADSR envelope, and
the voice that composes them (:class:`SubtractiveVoice`, unit ``subtractive``: two detuned
oscillators -> a resonant low-pass whose cutoff follows its own envelope and the key -> an
amplifier envelope, the shape of torchsynth's Voice).

Or combine the parts by hand, multiplying the renders, then filtering with the effects' filters::

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

__all__ = ["Oscillator", "ADSR", "SubtractiveVoice"]


def _frames(controls: Mapping[str, Any]) -> int:
    frames = 1
    for value in controls.values():
        if isinstance(value, Tensor) and value.ndim in (2, 3):
            frames = max(frames, int(value.shape[1]))
    return frames




def _gate(controls: Mapping[str, Any], batch: int, n: int, device: Any, owner: str) -> Tensor:
    """The ``gate`` control as ``(batch, n)`` booleans (on where the causally upsampled value is
    >= 0.5; always on when not given); values outside [0, 1] are an error."""
    if "gate" not in controls:
        return torch.ones(batch, n, dtype=torch.bool, device=device)
    g, previous = control_frames(controls["gate"], batch, name=f"{owner}.gate", device=device)
    with torch.no_grad():
        lo, hi = float(g.min()), float(g.max())
    if lo < 0 or hi > 1:
        raise ValueError(f"{owner}.gate must hold 0/1 values (key up/down), got values in {lo:g} .. {hi:g}")
    prev = None if previous is None else previous.detach()
    return upsample_control(g.detach(), n, mode="causal", previous=prev)[..., 0].expand(batch, n) >= 0.5


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
        gate = _gate(controls, batch, n, self.device, "adsr")
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


@register
class SubtractiveVoice(Unit):
    """A subtractive synth voice: two oscillators -> resonant low-pass -> amplifier envelope.

    Per sample::

        src    = osc(f0) + osc2_mix * osc(f0 * 2 ** (detune_cents / 1200))     (band-limited, :class:`Oscillator`)
        cutoff = cutoff_hz * 2 ** (filter_env_octaves * filter_env) * (f0 / 261.63) ** key_tracking
        y      = amplitude * amp_env * svf_lowpass(src, cutoff, resonance)      (TPT svf, cutoff clamped)

    where ``filter_env`` and ``amp_env`` are ADSR envelopes (:class:`ADSR`'s segments) of the
    same ``gate``: the filter opens by ``filter_env_octaves`` at each note-on and settles at its
    sustain; the cutoff follows the key (1: the same harmonic at every pitch, 0: a fixed
    cutoff, middle C the reference). The shape of torchsynth's Voice (Turian et al. 2021) and of
    most analog monosynths.

    Knobs (all may vary in time): ``f0_hz`` (20 .. 20000, 220), ``amplitude`` (0 .. 1, 0.5),
    ``detune_cents`` (0 .. 100, 7), ``osc2_mix`` (0 .. 1, 0.5), ``cutoff_hz`` (20 .. 20000,
    800), ``resonance`` (q, 0.5 .. 20, 1), ``filter_env_octaves`` (0 .. 8, 3), ``key_tracking``
    (0 .. 1, 0.5), ``filter_attack_s`` / ``filter_decay_s`` / ``filter_sustain`` /
    ``filter_release_s`` (0.005, 0.3, 0.2, 0.3) and ``attack_s`` / ``decay_s`` / ``sustain`` /
    ``release_s`` (0.01, 0.2, 0.7, 0.3). Extra control ``gate`` (0/1 frames, as :class:`ADSR`;
    always on when not given). Options: ``waveform`` ("saw", "square", "triangle"), ``hop``
    (192). State (phases, envelopes, filter) is carried across blocks (:class:`dspfx.Stream`).

    >>> voice = dspfx.make("subtractive", sample_rate=16000, cutoff_hz=600.0, filter_env_octaves=4.0)
    >>> y = voice(f0_hz=f0_frames, gate=gate_frames)     # (batch, frames) each -> (batch, 1, frames * hop)
    """

    name = "subtractive"
    category = "synth"
    is_synth = True
    extra_controls = ("gate",)
    f0_hz = Knob(220.0, 20.0, 20000.0, scale="log", unit="Hz", doc="fundamental frequency")
    amplitude = Knob(0.5, 0.0, 1.0, doc="output level")
    detune_cents = Knob(7.0, 0.0, 100.0, unit="cents", doc="second oscillator's detune")
    osc2_mix = Knob(0.5, 0.0, 1.0, doc="second oscillator's level")
    cutoff_hz = Knob(800.0, 20.0, 20000.0, scale="log", unit="Hz", doc="filter cutoff (envelope closed, at middle C)")
    resonance = Knob(1.0, 0.5, 20.0, scale="log", doc="filter q")
    filter_env_octaves = Knob(3.0, 0.0, 8.0, unit="oct", doc="how far the envelope opens the filter")
    key_tracking = Knob(0.5, 0.0, 1.0, doc="cutoff follows the pitch (1: fully)")
    filter_attack_s = Knob(0.005, 0.001, 10.0, scale="log", unit="s", doc="filter envelope attack")
    filter_decay_s = Knob(0.3, 0.001, 10.0, scale="log", unit="s", doc="filter envelope decay")
    filter_sustain = Knob(0.2, 0.0, 1.0, doc="filter envelope sustain")
    filter_release_s = Knob(0.3, 0.001, 10.0, scale="log", unit="s", doc="filter envelope release")
    attack_s = Knob(0.01, 0.001, 10.0, scale="log", unit="s", doc="amplifier attack")
    decay_s = Knob(0.2, 0.001, 10.0, scale="log", unit="s", doc="amplifier decay")
    sustain = Knob(0.7, 0.0, 1.0, doc="amplifier sustain")
    release_s = Knob(0.3, 0.001, 10.0, scale="log", unit="s", doc="amplifier release")

    def __init__(self, sample_rate: float = 48000, waveform: str = "saw", hop: int = 192, **knobs: Any) -> None:
        if waveform not in WAVEFORMS:
            raise ValueError(f"subtractive: waveform must be one of {WAVEFORMS}, got {waveform!r}")
        self.waveform = waveform
        self.hop = control_hop(sample_rate, hop, "subtractive")
        super().__init__(sample_rate, **knobs)

    def init_state(self, batch: int, channels: int) -> dict[str, Any]:
        def env() -> tuple[Tensor, Tensor, Tensor]:
            return (torch.zeros(batch, dtype=torch.float64, device=self.device),
                    torch.zeros(batch, dtype=torch.float64, device=self.device),
                    torch.zeros(batch, dtype=self.dtype, device=self.device))

        return {"phase": torch.zeros(batch, 2, 1, dtype=torch.float64, device=self.device), "filter_env": env(),
                "amp_env": env(), "svf": torch.zeros(batch, 1, 2, dtype=self.dtype, device=self.device)}

    def default_length(self, controls: Mapping[str, Any]) -> int:
        return _frames(controls) * self.hop

    def process(self, x: Tensor | None, controls: dict[str, Tensor], state: Any) -> tuple[Tensor, Any]:
        from dspfx.functional.svf import svf_coefficients, svf_filter

        batch = state["phase"].shape[0]
        n = int(controls["n_samples"])
        c = {k: controls[k].expand(batch, 1, n) for k in self.knob_specs}
        gate = _gate(controls, batch, n, self.device, "subtractive")
        sr = self.sample_rate
        f0 = c["f0_hz"]
        ratio = torch.cat([torch.ones_like(f0), 2.0 ** (c["detune_cents"] / 1200.0)], dim=1)  # (batch, 2, n)
        dt = (f0 * ratio / sr).clamp(max=0.49)
        phase, final_phase = accumulate_phase(dt, state["phase"])
        osc = oscillator(self.waveform, phase, dt, 0.5, 32)
        src = osc[:, :1] + c["osc2_mix"] * osc[:, 1:]

        def envelope(prefix: str, st: Any) -> tuple[Tensor, Any]:
            keys = [f"{prefix}attack_s", f"{prefix}decay_s", f"{prefix}sustain", f"{prefix}release_s"]
            a, d, s_, r = (c[k][:, 0] for k in keys)
            return adsr_envelope(gate, a * sr, d * sr, s_, r * sr, st)

        fenv, filter_state = envelope("filter_", state["filter_env"])
        aenv, amp_state = envelope("", state["amp_env"])
        cutoff = c["cutoff_hz"] * 2.0 ** (c["filter_env_octaves"] * fenv.unsqueeze(1).to(f0.dtype)) * (
            f0 / 261.63) ** c["key_tracking"]
        coeffs = svf_coefficients("lowpass", cutoff, c["resonance"], 0.0, sr)
        y, svf_state = svf_filter(src, *coeffs, state=state["svf"])
        y = c["amplitude"] * aenv.unsqueeze(1).to(y.dtype) * y
        return y, {"phase": final_phase, "filter_env": filter_state, "amp_env": amp_state, "svf": svf_state}
