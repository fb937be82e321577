"""Recursive filters: the RBJ-cookbook biquad."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from dspfx.functional.filters import biquad_coefficients, frequency_response, iir
from dspfx.registry import register
from dspfx.unit import Knob, Unit

__all__ = ["Biquad", "BIQUAD_MODES"]

BIQUAD_MODES = ("lowpass", "highpass", "bandpass", "notch", "allpass", "peak", "lowshelf", "highshelf")

# pedalboard class name <-> biquad mode, for the twins
_PEDALBOARD_MODES = {"PeakFilter": "peak", "LowShelfFilter": "lowshelf", "HighShelfFilter": "highshelf"}


@register
class Biquad(Unit):
    """Second-order IIR filter (RBJ Audio-EQ-Cookbook designs); every knob may vary per sample.

    Options:
        mode: ``"lowpass"``, ``"highpass"``, ``"bandpass"`` (0 dB peak), ``"notch"``,
            ``"allpass"``, ``"peak"`` (default), ``"lowshelf"``, ``"highshelf"``.

    Knobs:
        cutoff_hz: 20 .. 20000 Hz (log, default 1000): centre or corner frequency; clamped
            inside the design to [2, sample_rate/2 - 100] Hz like JUCE.
        q: 0.1 .. 20 (log, default 0.7071): quality factor (shelves: the cookbook's Q form).
        gain_db: -24 .. +24 dB (default 0): used by peak and shelves only.

    Time-varying knobs are exact: the filter is run as a direct-form-I difference equation with
    per-sample coefficients (FIR numerator, then an all-pole denominator through torchlpc, whose
    backward pass is exact), so gradients hold for sweeps too.

    >>> eq = dspfx.make("biquad", mode="lowshelf", cutoff_hz=200.0, gain_db=4.0)
    >>> y = eq(x, cutoff_hz=torch.linspace(200, 2000, 50).view(1, -1))   # a sweep over 50 frames

    Reference: R. Bristow-Johnson, "Cookbook formulae for audio EQ biquad filter coefficients";
    twins of ``pedalboard.PeakFilter``, ``LowShelfFilter`` and ``HighShelfFilter``.
    """

    name = "biquad"
    category = "effect"
    pedalboard_classes = tuple(_PEDALBOARD_MODES)
    cutoff_hz = Knob(1000.0, 20.0, 20000.0, scale="log", unit="Hz", doc="centre or corner frequency")
    q = Knob(0.7071, 0.1, 20.0, scale="log", doc="quality factor")
    gain_db = Knob(0.0, -24.0, 24.0, unit="dB", doc="gain of peak and shelf modes")

    def __init__(self, sample_rate: float = 48000, mode: str = "peak", **knobs: Any) -> None:
        if mode not in BIQUAD_MODES:
            raise ValueError(f"biquad mode must be one of {', '.join(BIQUAD_MODES)}; got {mode!r}")
        self.mode = mode
        super().__init__(sample_rate, **knobs)

    def init_state(self, batch: int, channels: int) -> tuple[Tensor, Tensor]:
        zeros = torch.zeros(batch, channels, 2, dtype=self.dtype, device=self.device)
        return zeros, zeros.clone()

    def coefficients(self, controls: dict[str, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        """(b, a) for the given controls, or for the current knobs when none are given."""
        if controls is None:
            controls = {k: self.knob_value(k) for k in self.knob_specs}
        return biquad_coefficients(
            self.mode, controls["cutoff_hz"], controls["q"], controls["gain_db"], self.sample_rate
        )

    def process(self, x: Tensor, controls: dict[str, Tensor], state: Any) -> tuple[Tensor, Any]:
        b, a = self.coefficients(controls)  # (batch|1, 1, samples|1, 3)
        return iir(x, b, a, state)

    def frequency_response(self, freqs_hz: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(freqs_hz, magnitude in dB) of the current knobs; 512 log-spaced points by default."""
        if freqs_hz is None:
            freqs_hz = torch.logspace(1, torch.log10(torch.tensor(self.sample_rate / 2)).item(), 512, dtype=self.dtype)
        b, a = self.coefficients()
        h = frequency_response(b, a, freqs_hz, self.sample_rate)
        return freqs_hz, 20 * torch.log10(h.abs().clamp_min(1e-12))

    @classmethod
    def from_pedalboard(cls, plugin: Any, sample_rate: float) -> Unit:
        return cls(
            sample_rate=sample_rate,
            mode=_PEDALBOARD_MODES[type(plugin).__name__],
            cutoff_hz=plugin.cutoff_frequency_hz,
            q=plugin.q,
            gain_db=plugin.gain_db,
        )

    def to_pedalboard(self) -> Any:
        import pedalboard

        names = {mode: name for name, mode in _PEDALBOARD_MODES.items()}
        if self.mode not in names:
            raise ValueError(
                f"biquad mode {self.mode!r} has no pedalboard twin (twins exist for modes: {', '.join(names)})"
            )
        k = self.knobs()
        return getattr(pedalboard, names[self.mode])(cutoff_frequency_hz=k["cutoff_hz"], gain_db=k["gain_db"], q=k["q"])
