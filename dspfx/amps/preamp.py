"""Tube preamp: a cascade of triode-like gain stages (Wiener-Hammerstein per stage)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from dspfx.functional.design import biquad_coefficients, one_pole_coefficients
from dspfx.functional.recursive import iir
from dspfx.functional.oversample import (
    OVERSAMPLE_FACTORS,
    init_oversample_state,
    oversample_latency,
    oversampled,
    upsample_control_hold,
)
from dspfx.functional.tube import triode_curve
from dspfx.registry import register
from dspfx.unit import Knob, Unit

__all__ = ["Preamp", "PREAMP_MAX_STAGES"]

PREAMP_MAX_STAGES = 4


def check_oversample(owner: str, oversample: Any) -> int:
    """Validate an ``oversample`` option (1, 2 or 4) for ``owner``; ValueError otherwise."""
    if isinstance(oversample, bool) or oversample not in OVERSAMPLE_FACTORS:
        raise ValueError(f"{owner}: oversample must be one of {OVERSAMPLE_FACTORS}, got {oversample!r}")
    return int(oversample)


def one_pole(x: Tensor, mode: str, cutoff_hz: Tensor, sample_rate: float, state: Any) -> tuple[Tensor, Any]:
    """First-order bilinear low/high-pass (cutoff clamped to [1 Hz, 0.45 fs]) through ``iir``."""
    fc = cutoff_hz.to(x.dtype).clamp(1.0, 0.45 * sample_rate)
    b, a = one_pole_coefficients(mode, fc, sample_rate)
    return iir(x, b, a, state)


def filter_state(batch: int, channels: int, order: int, dtype: torch.dtype, device: Any) -> tuple[Tensor, Tensor]:
    """Zero ``iir`` histories ``(x_history, y_history)``, each ``(batch, channels, order)``."""
    z = torch.zeros(batch, channels, order, dtype=dtype, device=device)
    return z, z.clone()


def _stage_knobs(i: int, cathode_bypass: bool) -> list[tuple[str, Knob]]:
    p = f"stage{i}_"
    out = [
        (p + "gain_db", Knob(20.0 if i == 1 else 12.0, -12.0, 40.0, unit="dB", doc=f"stage {i} gain into its curve")),
        (p + "bias", Knob(0.2, -1.0, 1.0, doc=f"stage {i} operating point (0 with asymmetry 0: odd harmonics only)")),
        (p + "asymmetry", Knob(0.5, 0.0, 3.0, doc=f"stage {i} extra hardness of the positive (grid) side")),
        (p + "hp_hz", Knob(80.0, 5.0, 1000.0, scale="log", unit="Hz", doc=f"stage {i} coupling high-pass")),
        (p + "lp_hz", Knob(10000.0, 500.0, 20000.0, scale="log", unit="Hz", doc=f"stage {i} Miller low-pass")),
    ]
    if cathode_bypass:
        out += [
            (p + "bypass_db", Knob(6.0, 0.0, 18.0, unit="dB", doc=f"stage {i} cathode-bypass boost (high shelf)")),
            (p + "bypass_hz", Knob(300.0, 20.0, 3000.0, scale="log", unit="Hz", doc=f"stage {i} bypass shelf corner")),
        ]
    return out


@register
class Preamp(Unit):
    """Tube preamp: ``n_stages`` triode-like gain stages in series, then an output level.

    Each stage (a Wiener-Hammerstein block, as in the gray-box amp of Yeh et al. 2024):

    1. coupling high-pass, one pole (``stageK_hp_hz``);
    2. optional cathode-bypass boost: an RBJ high shelf (``stageK_bypass_db`` above
       ``stageK_bypass_hz``), when ``cathode_bypass=True``;
    3. gain ``stageK_gain_db``;
    4. the triode curve :func:`dspfx.functional.tube.triode_curve`
       ``s(u + bias) - s(bias)`` (tanh, the positive side ``1 + asymmetry`` times harder): even
       harmonics from ``bias`` and ``asymmetry``, whose level and sign move with the drive;
       silence maps to 0 (no DC at rest; the next coupling high-pass removes the dynamic DC);
    5. Miller low-pass, one pole (``stageK_lp_hz``).

    Options:
        n_stages: 1 .. 4 (default 2); knobs are per stage (``stage1_...``, ``stage2_...``).
        oversample: 1, 2 or 4 (default 1): the whole cascade runs at ``oversample`` x the rate
            between the polyphase interpolator/decimator of :mod:`dspfx.functional.oversample`
            (filters designed at the high rate); adds :attr:`latency_samples` = 51 samples.
        cathode_bypass: add the bypass shelf and its two knobs per stage (default False).

    Knobs (per stage K):
        stageK_gain_db -12 .. 40 dB (20 for stage 1, 12 after); stageK_bias -1 .. 1 (0.2);
        stageK_asymmetry 0 .. 3 (0.5); stageK_hp_hz 5 .. 1000 Hz (log, 80);
        stageK_lp_hz 500 .. 20000 Hz (log, 10000); with cathode_bypass: stageK_bypass_db
        0 .. 18 dB (6), stageK_bypass_hz 20 .. 3000 Hz (log, 300); and output_db -40 .. 20 dB (0).
    Not identifiable from audio: a bias/asymmetry at a level too low to saturate; the split
    of gain between a stage's drive and the following stages' when nothing clips.

    >>> pre = dspfx.make("preamp", n_stages=2, stage1_gain_db=30.0, oversample=2)
    >>> y = pre(x)                                     # x: (batch, channels, samples)

    Reference: D. T. Yeh, "Digital implementation of musical distortion circuits by analysis and
    simulation", PhD thesis, Stanford 2009 (triode stage: coupling HP, curve, Miller LP); the
    preamp of Yeh, Ramirez et al., "DDSP guitar amp", arXiv 2408.11405, 2024.
    """

    name = "preamp"
    category = "amp"

    def __init__(
        self,
        sample_rate: float = 48000,
        n_stages: int = 2,
        oversample: int = 1,
        cathode_bypass: bool = False,
        **knobs: Any,
    ) -> None:
        if isinstance(n_stages, bool) or not isinstance(n_stages, int) or not 1 <= n_stages <= PREAMP_MAX_STAGES:
            raise ValueError(f"preamp: n_stages must be an int in 1 .. {PREAMP_MAX_STAGES}, got {n_stages!r}")
        if not isinstance(cathode_bypass, bool):
            raise TypeError(f"preamp: cathode_bypass must be True or False, got {cathode_bypass!r}")
        self.n_stages = n_stages
        self.oversample = check_oversample("preamp", oversample)
        self.cathode_bypass = cathode_bypass
        super().__init__(sample_rate)
        for i in range(1, n_stages + 1):
            for key, knob in _stage_knobs(i, cathode_bypass):
                self.add_knob(key, knob)
        self.add_knob("output_db", Knob(0.0, -40.0, 20.0, unit="dB", doc="output level"))
        unknown = [k for k in knobs if k not in self._knobs]
        if unknown:
            raise TypeError(self._unknown_message(unknown[0], "knob or option"))
        if knobs:
            self.set(**knobs)

    @property
    def latency_samples(self) -> int:
        return oversample_latency(self.oversample) if self.oversample > 1 else 0

    def init_state(self, batch: int, channels: int) -> Any:
        dt, dev = self.dtype, self.device
        stages = []
        for _ in range(self.n_stages):
            s = {"hp": filter_state(batch, channels, 1, dt, dev), "lp": filter_state(batch, channels, 1, dt, dev)}
            if self.cathode_bypass:
                s["shelf"] = filter_state(batch, channels, 2, dt, dev)
            stages.append(s)
        up, down = init_oversample_state(batch, channels, self.oversample, dt, dev)
        return up, down, tuple(stages)

    def _cascade(self, v: Tensor, controls: dict[str, Tensor], stages: Any) -> tuple[Tensor, Any]:
        fs = self.sample_rate * self.oversample
        c = {k: upsample_control_hold(controls[k], self.oversample).to(v.dtype) for k in self._knobs}
        new = []
        for i, st in enumerate(stages, start=1):
            p = f"stage{i}_"
            st = dict(st)
            v, st["hp"] = one_pole(v, "highpass", c[p + "hp_hz"], fs, st["hp"])
            if self.cathode_bypass:
                b, a = biquad_coefficients("highshelf", c[p + "bypass_hz"], 0.7071, c[p + "bypass_db"], fs)
                v, st["shelf"] = iir(v, b, a, st["shelf"])
            u = v * torch.pow(10.0, c[p + "gain_db"] / 20.0)
            v = triode_curve(u, c[p + "bias"], c[p + "asymmetry"])
            v, st["lp"] = one_pole(v, "lowpass", c[p + "lp_hz"], fs, st["lp"])
            new.append(st)
        return v * torch.pow(10.0, c["output_db"] / 20.0), tuple(new)

    def process(self, x: Tensor, controls: dict[str, Tensor], state: Any) -> tuple[Tensor, Any]:
        return oversampled(lambda v, s: self._cascade(v, controls, s), x, self.oversample, state, stateful=True)
