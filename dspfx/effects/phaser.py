"""Phaser: first-order allpasses swept by an LFO, with feedback and mix (pedalboard's ``Phaser``)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from dspfx.functional.control import control_frames, upsample_control
from dspfx.functional.phaser import PhaserState, phaser, phaser_init_state
from dspfx.registry import register
from dspfx.unit import Knob, Unit

__all__ = ["Phaser"]


@register
class Phaser(Unit):
    """Phaser: ``n_stages`` first-order TPT allpasses in series, their cutoff swept by a sine LFO,
    with the cascade's output fed back (subtracted) into its input and mixed with the dry signal.

    Per sample: ``u = x - f``; six TPT allpasses (``G = g / (1 + g)``, ``g = tan(pi fc / sr)``;
    ``v = G (u - s); lp = v + s; s = lp + v; u = 2 lp - u``); ``wet = u``; ``f = feedback * wet``;
    ``y = (1 - mix) x + mix wet``. The cutoff is updated every 4 samples and held:
    ``fc = 20 * (fmax / 20) ** clip(-sin(phase) * depth / 2 + c0, 0, 1)`` with
    ``c0 = log10(centre / 20) / 3`` and ``fmax = min(20000, 0.49 * sample_rate)``; the LFO phase
    starts at 0 and is accumulated in float32 like pedalboard's (see
    :mod:`dspfx.functional.phaser` for every detail, including why ``c0`` always uses 20 kHz).

    Options:
        n_stages: number of allpasses (int >= 1, default 6 = pedalboard's; a twin only at 6).
        pedalboard_lfo: accumulate the LFO phase in float32 like pedalboard (default True: the
            twin, ESR ~1e-9). False accumulates the exact phase in the working dtype, which is
            smooth in ``rate_hz`` (finite differences of the float32 phase are steps); the
            gradient w.r.t. ``rate_hz`` is the exact phase's in both cases.

    Knobs (the ranges JUCE's ``dsp::Phaser`` documents; pedalboard itself checks nothing: a
    negative centre gives NaN, ``|feedback| > 1`` diverges, mix is clamped to 0 .. 1):
        rate_hz: 0 .. 100 Hz (linear, default 1): LFO rate.
        depth: 0 .. 1 (default 0.5): LFO depth (in the normalised log-frequency range 0 .. 1,
            where 20 Hz .. fmax spans 0 .. 1; the sweep spans ``+- depth / 2``).
        centre_frequency_hz: 20 .. 20000 Hz (log, default 1300): centre of the sweep.
        feedback: -1 .. 1 (default 0): cascade output fed back (subtracted) into its input.
        mix: 0 .. 1 (default 0.5): wet fraction (0 dry, 1 the allpass cascade only).

    Extra control:
        cutoff_hz: the allpass cutoff in Hz, ``0 < cutoff_hz < sample_rate / 2``, given as a
            float, ``(batch,)``, frames ``(batch|1, frames)`` or ``(batch|1, frames, 1)`` (frames
            on the block's causal hop grid, upsampled linearly): used per sample (no 4-sample hold)
            instead of the LFO, so any modulator can drive the sweep. rate, depth and centre
            then have no effect on that block (the LFO phase still advances).

    Identifiability (for fits): with ``depth = 0`` (or a centre so far out that the sweep is
    clipped at 20 Hz or fmax) the rate has no effect on the audio; with ``mix = 0`` nothing but
    the mix is identifiable; at ``rate_hz = 0`` the sweep sits at ``c0 - 0`` (``sin(0) = 0``),
    so depth has no effect. Rate is hard to fit by gradient descent from far away (the loss is
    oscillatory in it); centre, feedback and mix are well identified on a few tenths of a second
    of noise.

    Precision: float32 renders use pedalboard's float32 arithmetic operation for operation (the
    LFO, the cutoff and the recursion), so they equal pedalboard's renders bit for bit on most
    settings (worst ESR seen 1e-8 over the twin tests). float64 renders are float64
    throughout: ESR ~1e-9 against pedalboard, except near ``|feedback| = 1``, where the loop is
    marginally stable and pedalboard's own float32 rounding grows (ESR up to ~3e-4 seen there).
    Gradients come from an exact float64 adjoint of the recursion (a compiled backward loop).
    On a CUDA device the compiled loops run on the CPU (tensors are copied there and back).

    Streaming carries the allpass states, the feedback sample, the LFO phase, the held
    coefficient and the position within the 4-sample hold, so blocks of any size equal the
    offline render.

    >>> ph = dspfx.make("phaser", rate_hz=0.5, depth=0.8, centre_frequency_hz=800.0, feedback=0.6)
    >>> y = ph(x, cutoff_hz=torch.logspace(2, 3.5, 30).view(1, -1))   # drive the sweep yourself

    Reference: twin of ``pedalboard.Phaser`` (JUCE 6 ``dsp::Phaser``; TPT allpass after
    V. Zavalishin, "The Art of VA Filter Design").
    """

    name = "phaser"
    category = "effect"
    pedalboard_classes = ("Phaser",)
    extra_controls = ("cutoff_hz",)
    rate_hz = Knob(1.0, 0.0, 100.0, unit="Hz", doc="LFO rate")
    depth = Knob(0.5, 0.0, 1.0, doc="LFO depth (sweep +- depth/2 of the 20 Hz .. fmax log range)")
    centre_frequency_hz = Knob(1300.0, 20.0, 20000.0, scale="log", unit="Hz", doc="centre of the sweep")
    feedback = Knob(0.0, -1.0, 1.0, doc="cascade output fed back (subtracted) into its input")
    mix = Knob(0.5, 0.0, 1.0, doc="wet fraction: 0 dry, 1 allpass cascade only")

    def __init__(self, sample_rate: float = 48000, n_stages: int = 6, pedalboard_lfo: bool = True, **knobs: Any) -> None:
        if isinstance(n_stages, bool) or not isinstance(n_stages, int) or n_stages < 1:
            raise ValueError(f"phaser n_stages must be an int >= 1, got {n_stages!r}")
        if not isinstance(pedalboard_lfo, bool):
            raise TypeError(f"phaser option pedalboard_lfo must be True or False, got {pedalboard_lfo!r}")
        self.n_stages = n_stages
        self.pedalboard_lfo = pedalboard_lfo
        super().__init__(sample_rate, **knobs)

    def init_state(self, batch: int, channels: int) -> PhaserState:
        return phaser_init_state(batch, channels, self.n_stages, dtype=self.dtype, device=self.device)

    def _cutoff_control(self, value: Any, batch: int, n: int) -> Tensor:
        c, previous = control_frames(value, batch, dims=1, name=f"{self.label}.cutoff_hz", dtype=self.dtype,
                                     device=self.device)
        with torch.no_grad():
            lo, hi = float(c.min()), float(c.max())
        nyquist = self.sample_rate / 2.0
        if not (lo > 0.0 and hi < nyquist):
            raise ValueError(
                f"control {self.label}.cutoff_hz spans {lo:g} .. {hi:g} Hz; expected values in "
                f"(0, {nyquist:g}) Hz (above 0 and below Nyquist at sample_rate {self.sample_rate})"
            )
        if c.shape[1] > 1 or previous is not None:
            c = upsample_control(c, n, mode="causal", previous=previous)
        return c.squeeze(-1).unsqueeze(1)  # (batch|1, 1, n|1)

    def process(self, x: Tensor, controls: dict[str, Tensor], state: Any) -> tuple[Tensor, Any]:
        cutoff = controls.get("cutoff_hz")
        if cutoff is not None:
            cutoff = self._cutoff_control(cutoff, x.shape[0], x.shape[-1])
        return phaser(
            x,
            controls["rate_hz"],
            controls["depth"],
            controls["centre_frequency_hz"],
            controls["feedback"],
            controls["mix"],
            self.sample_rate,
            n_stages=self.n_stages,
            state=state,
            cutoff_hz=cutoff,
            float32_phase=self.pedalboard_lfo,
        )

    @classmethod
    def from_pedalboard(cls, plugin: Any, sample_rate: float) -> Unit:
        return cls(
            sample_rate=sample_rate,
            rate_hz=float(plugin.rate_hz),
            depth=float(plugin.depth),
            centre_frequency_hz=float(plugin.centre_frequency_hz),
            feedback=float(plugin.feedback),
            mix=float(plugin.mix),
        )

    def to_pedalboard(self) -> Any:
        import pedalboard

        if self.n_stages != 6:
            raise ValueError(f"phaser with n_stages={self.n_stages} has no pedalboard twin (pedalboard.Phaser has 6)")
        k = self.knobs()
        return pedalboard.Phaser(
            rate_hz=k["rate_hz"],
            depth=k["depth"],
            centre_frequency_hz=k["centre_frequency_hz"],
            feedback=k["feedback"],
            mix=k["mix"],
        )
