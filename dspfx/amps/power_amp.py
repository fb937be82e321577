"""Tube power amp: master volume, push-pull (or single-ended) output stage with supply sag,
presence and resonance negative-feedback shelves."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from dspfx.amps.preamp import check_oversample, filter_state
from dspfx.functional.dynamics import envelope_follower
from dspfx.functional.design import biquad_coefficients
from dspfx.functional.recursive import iir
from dspfx.functional.oversample import (
    init_oversample_state,
    oversample_latency,
    oversampled,
    upsample_control_hold,
)
from dspfx.functional.tube import push_pull, single_ended
from dspfx.registry import register
from dspfx.unit import Knob, Unit

__all__ = ["PowerAmp", "POWER_AMP_TOPOLOGIES"]

POWER_AMP_TOPOLOGIES = ("push_pull", "single_ended")


def time_constant_coefficient(tau_ms: Tensor, sample_rate: float) -> Tensor:
    """One-pole smoothing coefficient of an exponential time constant: ``exp(-1 / (tau fs))``
    (the envelope covers ``1 - 1/e`` of a step in ``tau_ms``)."""
    return torch.exp(-1000.0 / (tau_ms * sample_rate))


@register
class PowerAmp(Unit):
    """Tube power amp: master volume, phase splitter, push-pull pair with crossover, supply sag,
    presence/resonance feedback shelves.

    Signal path:

    1. master volume ``master_db`` (the drive into the output tubes);
    2. phase splitter and push-pull pair (:func:`dspfx.functional.tube.push_pull`): each half is
       a tube ``t(v) = tanh(w softplus((v + bias) / w))`` (cut off below ``-bias``, knee width
       ``w`` = ``crossover``, saturating at 1), one fed the inverted phase, the two plate
       currents subtracted by the transformer: ``t(v) - t(-v)``, odd in ``v``, so no even
       harmonics whatever the bias; a low or negative bias (class B) leaves a crossover notch
       near 0. ``topology="single_ended"``: ``t(v) - t(0)``, one tube in class A (even
       harmonics);
    3. supply sag: an attack/release envelope ``e`` of the stage's output magnitude (the current
       drawn from the supply; :func:`dspfx.functional.dynamics.envelope_follower`, exact
       gradients; feed-forward: the envelope of the sag-free stage, so no delay-free loop)
       scales the stage's swing (headroom and gain) by ``1 - sag * e`` (``e <= 1``, so the
       gain stays in ``[1 - sag, 1]``). ``sag_attack_ms`` and ``sag_release_ms`` are exponential
       time constants (``1 - 1/e`` of a step): after a loud burst the gain recovers as
       ``exp(-t / sag_release_ms)``;
    4. resonance (low peak, RBJ, ``resonance_hz``, q 1) and presence (high shelf, RBJ,
       ``presence_hz``, q 0.7071): the frequency-dependent negative feedback around the power
       stage, modelled as shelves after it (``resonance_db``, ``presence_db``);
    5. output level ``output_db``.

    Steps 2-3 run at ``oversample`` x the rate (time constants designed at that rate).

    Options:
        topology: ``"push_pull"`` (default) or ``"single_ended"``.
        oversample: 1, 2 or 4 (default 1); latency 51 samples when > 1.
        presence_hz (default 3000.0), resonance_hz (default 100.0): shelf/peak frequencies.

    Knobs:
        master_db -30 .. 30 dB (0); bias -0.3 .. 0.5 (0.1); crossover 0.005 .. 0.5 (log, 0.05);
        sag 0 .. 0.5 (0.2); sag_attack_ms 0.5 .. 200 ms (log, 10); sag_release_ms 5 .. 2000 ms
        (log, 150); presence_db -6 .. 12 dB (0); resonance_db -6 .. 12 dB (0);
        output_db -40 .. 20 dB (0).
    Not identifiable from audio: the sag times when ``sag = 0`` or nothing is loud; bias and
    crossover at levels far above the crossover region.

    >>> pa = dspfx.make("power_amp", master_db=12.0, sag=0.3, presence_db=4.0)
    >>> y = pa(x)

    Reference: the power amp of the DDSP guitar amp (Yeh, Ramirez et al., arXiv 2408.11405,
    2024): phase splitter, two halves, one inverted, summed; M. Blencowe, "Designing Valve
    Preamps / Power Amps" (sag, presence/resonance feedback).
    """

    name = "power_amp"
    category = "amp"
    master_db = Knob(0.0, -30.0, 30.0, unit="dB", doc="master volume: drive into the output tubes")
    bias = Knob(0.1, -0.3, 0.5, doc="output tubes' operating point (low: class B crossover)")
    crossover = Knob(0.05, 0.005, 0.5, scale="log", doc="width of the tubes' cut-off knee")
    sag = Knob(0.2, 0.0, 0.5, doc="supply sag depth: gain drop at full envelope")
    sag_attack_ms = Knob(10.0, 0.5, 200.0, scale="log", unit="ms", doc="sag attack time constant")
    sag_release_ms = Knob(150.0, 5.0, 2000.0, scale="log", unit="ms", doc="sag recovery time constant")
    presence_db = Knob(0.0, -6.0, 12.0, unit="dB", doc="presence (high shelf in the feedback)")
    resonance_db = Knob(0.0, -6.0, 12.0, unit="dB", doc="resonance (low peak in the feedback)")
    output_db = Knob(0.0, -40.0, 20.0, unit="dB", doc="output level")

    def __init__(
        self,
        sample_rate: float = 48000,
        topology: str = "push_pull",
        oversample: int = 1,
        presence_hz: float = 3000.0,
        resonance_hz: float = 100.0,
        **knobs: Any,
    ) -> None:
        if topology not in POWER_AMP_TOPOLOGIES:
            raise ValueError(f"power_amp: topology must be one of {', '.join(POWER_AMP_TOPOLOGIES)}; got {topology!r}")
        for opt, v in (("presence_hz", presence_hz), ("resonance_hz", resonance_hz)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise ValueError(f"power_amp: {opt} must be a positive frequency in Hz, got {v!r}")
        self.topology = topology
        self.oversample = check_oversample("power_amp", oversample)
        self.presence_hz = float(presence_hz)
        self.resonance_hz = float(resonance_hz)
        super().__init__(sample_rate, **knobs)

    @property
    def latency_samples(self) -> int:
        return oversample_latency(self.oversample) if self.oversample > 1 else 0

    def init_state(self, batch: int, channels: int) -> Any:
        dt, dev = self.dtype, self.device
        up, down = init_oversample_state(batch, channels, self.oversample, dt, dev)
        envelope = torch.zeros(batch, channels, 1, dtype=dt, device=dev)
        work = dt if dev.type == "mps" else torch.float64
        return (
            (up, down, envelope),
            filter_state(batch, channels, 2, work, dev),
            filter_state(batch, channels, 2, work, dev),
        )

    def _stage(self, v: Tensor, controls: dict[str, Tensor], envelope: Tensor) -> tuple[Tensor, Tensor]:
        fs = self.sample_rate * self.oversample
        c = {k: upsample_control_hold(controls[k], self.oversample).to(v.dtype) for k in
             ("bias", "crossover", "sag", "sag_attack_ms", "sag_release_ms")}
        curve = push_pull if self.topology == "push_pull" else single_ended
        y = curve(v, c["bias"], c["crossover"])
        ca = time_constant_coefficient(c["sag_attack_ms"], fs)
        cr = time_constant_coefficient(c["sag_release_ms"], fs)
        e, envelope = envelope_follower(y.abs(), ca, cr, envelope)
        return y * (1.0 - c["sag"] * e), envelope

    def sag_gain(self, x: Tensor, **controls: Any) -> Tensor:
        """For analysis: ``1 - sag * e`` of the stage for input ``x`` (base rate, no oversampling)."""
        batch, n = x.shape[0], x.shape[-1]
        c = self.controls(controls, batch, n)
        v = x * torch.pow(10.0, c["master_db"] / 20.0)
        curve = push_pull if self.topology == "push_pull" else single_ended
        y = curve(v, c["bias"], c["crossover"])
        ca = time_constant_coefficient(c["sag_attack_ms"], self.sample_rate)
        cr = time_constant_coefficient(c["sag_release_ms"], self.sample_rate)
        e, _ = envelope_follower(y.abs(), ca, cr)
        return 1.0 - c["sag"] * e

    def process(self, x: Tensor, controls: dict[str, Tensor], state: Any) -> tuple[Tensor, Any]:
        os_state, res_state, pres_state = state
        v = x * torch.pow(10.0, controls["master_db"].to(x.dtype) / 20.0)
        up, down, env = os_state
        y, (up, down, env) = oversampled(
            lambda u, e: self._stage(u, controls, e), v, self.oversample, (up, down, env), stateful=True
        )
        # the feedback shelves run in float64 (float32 direct form with poles near z = 1 rounds
        # audibly), except on devices without float64 (MPS)
        work = x.dtype if x.device.type == "mps" else torch.float64
        y = y.to(work)
        b, a = biquad_coefficients("peak", self.resonance_hz, 1.0, controls["resonance_db"].to(work), self.sample_rate)
        y, res_state = iir(y, b, a, res_state)
        presence = controls["presence_db"].to(work)
        b, a = biquad_coefficients("highshelf", self.presence_hz, 0.7071, presence, self.sample_rate)
        y, pres_state = iir(y, b, a, pres_state)
        y = y.to(x.dtype) * torch.pow(10.0, controls["output_db"].to(x.dtype) / 20.0)
        return y, ((up, down, env), res_state, pres_state)
