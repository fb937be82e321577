"""Output transformer: band-limited at both ends, saturating core with hysteresis."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from dspfx.amps.preamp import check_oversample, filter_state, one_pole
from dspfx.functional.oversample import (
    init_oversample_state,
    oversample_latency,
    oversampled,
    upsample_control_hold,
)
from dspfx.functional.tube import hysteresis_core
from dspfx.registry import register
from dspfx.unit import Knob, Unit

__all__ = ["OutputTransformer"]


@register
class OutputTransformer(Unit):
    """Output transformer: low cut, saturating hysteretic core, high cut.

    1. high-pass, one pole (``low_hz``): the primary inductance;
    2. core: ``u = a x`` (``a`` from ``drive_db``), ``y = ((1 - h) tanh(u) + h tanh(p)) / a``
       with ``p`` the play (backlash) operator of ``u`` with half-width ``width``
       (:func:`dspfx.functional.tube.hysteresis_core`): rate-independent hysteresis, a loop
       in the transfer curve whose area grows with ``hysteresis`` (``h``) and ``width``, and
       which vanishes at ``hysteresis = 0`` (then ``tanh(a x) / a``: unit small-signal gain);
       the core state (``p``) is carried between blocks. Forward decisions in numba, values
       recomputed by ``iir``: exact gradients (a.e.) w.r.t. everything;
    3. low-pass, one pole (``high_hz``, clamped below 0.45 x the rate): leakage inductance and
       winding capacitance.

    Steps 1-3 run at ``oversample`` x the rate when asked (latency 51 samples).

    Options:
        oversample: 1, 2 or 4 (default 1).

    Knobs:
        drive_db -24 .. 24 dB (0); hysteresis 0 .. 1 (0.3); width 0.01 .. 1 (log, 0.1);
        low_hz 5 .. 500 Hz (log, 30); high_hz 2000 .. 22000 Hz (log, 15000).
    Not identifiable from audio: ``width`` when ``hysteresis = 0``; drive at low levels
    (then the core is linear, except for the hysteresis).

    >>> ot = dspfx.make("output_transformer", drive_db=6.0, hysteresis=0.5)
    >>> y = ot(x)

    Reference: the output transformer block of the DDSP guitar amp (Yeh, Ramirez et al., arXiv
    2408.11405, 2024: gain, nonlinearity with memory, filter); play operator / Preisach
    hysteresis (I. D. Mayergoyz, "Mathematical models of hysteresis", 1991).
    """

    name = "output_transformer"
    category = "amp"
    drive_db = Knob(0.0, -24.0, 24.0, unit="dB", doc="drive into the core")
    hysteresis = Knob(0.3, 0.0, 1.0, doc="share of the hysteretic path in the core (0: no loop)")
    width = Knob(0.1, 0.01, 1.0, scale="log", doc="loop half-width, in driven-core units")
    low_hz = Knob(30.0, 5.0, 500.0, scale="log", unit="Hz", doc="low cut (primary inductance)")
    high_hz = Knob(15000.0, 2000.0, 22000.0, scale="log", unit="Hz", doc="high cut (leakage)")

    def __init__(self, sample_rate: float = 48000, oversample: int = 1, **knobs: Any) -> None:
        self.oversample = check_oversample("output_transformer", oversample)
        super().__init__(sample_rate, **knobs)

    @property
    def latency_samples(self) -> int:
        return oversample_latency(self.oversample) if self.oversample > 1 else 0

    def init_state(self, batch: int, channels: int) -> Any:
        dt, dev = self.dtype, self.device
        up, down = init_oversample_state(batch, channels, self.oversample, dt, dev)
        inner = (
            filter_state(batch, channels, 1, dt, dev),
            torch.zeros(batch, channels, 1, dtype=dt, device=dev),
            filter_state(batch, channels, 1, dt, dev),
        )
        return up, down, inner

    def _inner(self, v: Tensor, controls: dict[str, Tensor], state: Any) -> tuple[Tensor, Any]:
        fs = self.sample_rate * self.oversample
        c = {k: upsample_control_hold(controls[k], self.oversample).to(v.dtype) for k in self._knobs}
        hp, core, lp = state
        v, hp = one_pole(v, "highpass", c["low_hz"], fs, hp)
        a = torch.pow(10.0, c["drive_db"] / 20.0)
        y, core = hysteresis_core(v * a, c["hysteresis"], c["width"], core)
        v, lp = one_pole(y / a, "lowpass", c["high_hz"], fs, lp)
        return v, (hp, core, lp)

    def process(self, x: Tensor, controls: dict[str, Tensor], state: Any) -> tuple[Tensor, Any]:
        return oversampled(lambda v, s: self._inner(v, controls, s), x, self.oversample, state, stateful=True)
