"""The passive treble/middle/bass tone stack of Fender and Marshall amps, derived from the circuit."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from dspfx.functional.design import frequency_response as digital_frequency_response
from dspfx.functional.recursive import iir
from dspfx.functional.tonestack import (
    TONESTACK_MODELS,
    analog_frequency_response,
    tonestack_analog_coefficients,
    tonestack_coefficients,
)
from dspfx.registry import register
from dspfx.unit import Knob, Unit

__all__ = ["Tonestack"]


@register
class Tonestack(Unit):
    """Passive treble/middle/bass tone stack (Fender 5F6-A topology), from the circuit.

    The third-order analog transfer function of the passive network, derived by nodal analysis
    (closed form in :mod:`dspfx.functional.tonestack`; equal to Yeh & Smith's), with coefficients
    that are polynomials in the component values and the pot sections; discretised by the
    bilinear transform (optionally warped) and run as a third-order IIR through
    :func:`dspfx.functional.iir`, so the knobs may vary per sample with exact gradients. The
    design and the recursion run in float64 whatever the input dtype (float32 rounding in a
    third-order direct form with poles near z = 1 costs about -50 dB); the output has the
    input's dtype. Source
    ideal, output unloaded (as in the paper). Like the real circuit it is lossy: about -4 to
    -23 dB at 1 kHz depending on the model and the knobs.

    Options:
        model: ``"bassman"`` (Fender '59 Bassman 5F6-A, default), ``"jcm800"`` (Marshall JCM800
            2203), ``"blackface"`` (Fender blackface TMB, AB763 family: mid pot wired as a
            variable resistor). Component values: ``dspfx.functional.tonestack.TONESTACK_MODELS``.
        warp_hz: ``None`` (default; plain bilinear transform, ``c = 2 fs``) or a frequency in Hz
            at which the digital response equals the analog one exactly.

    Knobs (pot rotations, 0 = fully counter-clockwise):
        bass: 0 .. 1 (default 0.5); audio-taper pot on every model:
            ``R = R2 (81^x - 1) / 80`` (10 % of the track at half rotation).
        mid: 0 .. 1 (default 0.5); linear pot.
        treble: 0 .. 1 (default 0.5); linear (bassman, jcm800) or audio taper (blackface).
    With ``bass = 0`` and ``mid = 1`` (pot wiring) the bass and upper-mid sections are 0 ohm and
    the network drops to second order; every edge renders exactly. The blackface with all three
    knobs at 0 shorts its output to ground (silence, like the amp). Identifiability: all three
    knobs are heard and a fit recovers them from noise (within 0.05 in the tests), except in
    such degenerate corners, and the audio-taper bass moves the response little near 0.

    >>> ts = dspfx.make("tonestack", model="jcm800", bass=0.7, mid=0.4, treble=0.6)
    >>> y = ts(x, treble=torch.linspace(0.2, 0.9, 30).view(1, -1))   # a treble sweep

    Reference: D. T. Yeh and J. O. Smith, "Discretization of the '59 Fender Bassman tone stack",
    DAFx 2006.
    """

    name = "tonestack"
    category = "amp"
    bass = Knob(0.5, 0.0, 1.0, doc="bass pot rotation (audio taper)")
    mid = Knob(0.5, 0.0, 1.0, doc="middle pot rotation (linear)")
    treble = Knob(0.5, 0.0, 1.0, doc="treble pot rotation")

    def __init__(
        self, sample_rate: float = 48000, model: str = "bassman", warp_hz: float | None = None, **knobs: Any
    ) -> None:
        if not isinstance(model, str) or model not in TONESTACK_MODELS:
            raise ValueError(f"tonestack model must be one of {', '.join(TONESTACK_MODELS)}; got {model!r}")
        if warp_hz is not None:
            if isinstance(warp_hz, bool) or not isinstance(warp_hz, (int, float)) or not math.isfinite(warp_hz):
                raise TypeError(f"tonestack warp_hz must be None or a frequency in Hz, got {warp_hz!r}")
            if isinstance(sample_rate, (int, float)) and not 0 < warp_hz < sample_rate / 2:
                raise ValueError(
                    f"tonestack warp_hz must lie in (0, sample_rate/2) = (0, {sample_rate / 2:g}) Hz, got {warp_hz!r}"
                )
            warp_hz = float(warp_hz)
        self.model = model
        self.warp_hz = warp_hz
        super().__init__(sample_rate, **knobs)

    @property
    def components(self):
        """The :class:`~dspfx.functional.tonestack.ToneStackComponents` of this model."""
        return TONESTACK_MODELS[self.model]

    @property
    def _work_dtype(self) -> torch.dtype:
        # the recursion runs in float64 (float32 direct form loses ~-50 dB to rounding with the
        # poles near z = 1), except on devices without float64 (MPS)
        return self.dtype if self.device.type == "mps" else torch.float64

    def init_state(self, batch: int, channels: int) -> tuple[Tensor, Tensor]:
        """The filter memory ``(x_history, y_history)``, each ``(batch, channels, 3)``, float64."""
        zeros = torch.zeros(batch, channels, 3, dtype=self._work_dtype, device=self.device)
        return zeros, zeros.clone()

    def _knob_controls(self, controls: dict[str, Tensor] | None) -> dict[str, Tensor]:
        if controls is None:
            return {k: self.knob_value(k) for k in ("bass", "mid", "treble")}
        return controls

    def coefficients(self, controls: dict[str, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        """Digital ``(b, a)`` (``(..., 4)``, powers of ``z^-1``) for the given controls, or for
        the current knobs when none are given."""
        c = self._knob_controls(controls)
        return tonestack_coefficients(
            self.model, c["treble"], c["mid"], c["bass"], self.sample_rate, self.warp_hz
        )

    def analog_coefficients(self, controls: dict[str, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        """Analog ``(b, a)`` (``(..., 4)``, ascending powers of ``s``) of the current knobs."""
        c = self._knob_controls(controls)
        return tonestack_analog_coefficients(self.model, c["treble"], c["mid"], c["bass"])

    def process(self, x: Tensor, controls: dict[str, Tensor], state: Any) -> tuple[Tensor, Any]:
        work = self._work_dtype
        b, a = self.coefficients({k: controls[k].to(work) for k in ("bass", "mid", "treble")})
        y, state = iir(x.to(work), b.to(work), a.to(work), state)
        return y.to(x.dtype), state

    def complex_response(self, freqs_hz: Any, analog: bool = False) -> Tensor:
        """Complex response of the current knobs at ``freqs_hz`` (1-D, Hz): the digital filter's
        ``H(e^{j 2 pi f / fs})``, or with ``analog=True`` the circuit's ``H(j 2 pi f)``.
        Computed in float64 (complex128)."""
        c = {k: self.knob_value(k).to(torch.float64) for k in ("bass", "mid", "treble")}
        freqs = torch.as_tensor(freqs_hz, dtype=torch.float64, device=self.device).reshape(-1)
        if analog:
            b, a = self.analog_coefficients(c)
            return analog_frequency_response(b, a, freqs)
        b, a = self.coefficients(c)
        return digital_frequency_response(b, a, freqs, self.sample_rate)

    def frequency_response(self, freqs_hz: Tensor | None = None, analog: bool = False) -> tuple[Tensor, Tensor]:
        """(freqs_hz, magnitude in dB) of the current knobs, for plots (e.g.
        :func:`dspfx.plot.frequency_response`); 512 log-spaced points from 10 Hz to Nyquist by
        default. ``analog=True`` gives the circuit's response instead of the digital filter's."""
        if freqs_hz is None:
            freqs_hz = torch.logspace(1.0, math.log10(self.sample_rate / 2.0), 512, dtype=torch.float64)
        h = self.complex_response(freqs_hz, analog=analog)
        db = 20.0 * torch.log10(h.abs().clamp_min(1e-12))
        return torch.as_tensor(freqs_hz), db.to(self.dtype)
