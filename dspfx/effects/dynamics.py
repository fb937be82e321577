"""Dynamics: compressor, limiter, noise gate, expander.

All four share one detector: JUCE's/pedalboard's attack/release ballistics (see
:mod:`dspfx.functional.dynamics`), computed per channel, decided in a compiled loop and recomputed
differentiably, so gradients w.r.t. the input, every knob and the state are exact.

Time knobs follow JUCE/pedalboard: a time ``t`` gives the per-sample coefficient
``exp(-2*pi*1000 / (sample_rate * t_ms))``, so the detector envelope covers 99.8 %
(``1 - exp(-2*pi)``) of a step in ``t`` and ``1 - 1/e`` of it in ``t / (2*pi)``.

The compressor, expander and noise gate take an optional key signal: ``unit(x, sidechain=key)``
(``key`` shaped ``(batch, channels or 1, samples)``; one channel links the gain across channels),
also through :class:`dspfx.Stream` (``stream(block, sidechain=key_block)``) and inside chains
(``chain(x, **{"comp.sidechain": key})``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor

from dspfx.functional import dynamics as FD
from dspfx.functional.ballistics import DETECTORS
from dspfx.registry import register
from dspfx.unit import Knob, Unit, check_audio

__all__ = ["Compressor", "Limiter", "NoiseGate", "Expander"]

#: Knobs the compressor and the noise gate share, by name and units, with their pedalboard twins.
_BALLISTIC_TWIN_KNOBS = ("threshold_db", "ratio", "attack_ms", "release_ms")


def _zeros(unit: Unit, batch: int, channels: int) -> Tensor:
    return torch.zeros(batch, channels, 1, dtype=unit.dtype, device=unit.device)


class _Dynamics(Unit):
    """What the dynamics units share: the knob mapping to and from their pedalboard twins.

    A twin's knobs are the pedalboard parameters of the same names (``_pedalboard_knobs``);
    knobs pedalboard lacks are set to the values that render like it (``_pedalboard_fixed``).
    """

    #: knobs that are also parameters (same name, same units) of the pedalboard twin
    _pedalboard_knobs: ClassVar[tuple[str, ...]] = ()
    #: values of the knobs the twin lacks, at which the unit renders like it
    _pedalboard_fixed: ClassVar[dict[str, float]] = {}

    @classmethod
    def from_pedalboard(cls, plugin: Any, sample_rate: float) -> Unit:
        if not cls.pedalboard_classes:
            return super().from_pedalboard(plugin, sample_rate)
        knobs = {key: getattr(plugin, key) for key in cls._pedalboard_knobs}
        return cls(sample_rate=sample_rate, **knobs, **cls._pedalboard_fixed)

    def _pedalboard_plugin(self) -> Any:
        """The twin plugin with this unit's values of the shared knobs."""
        import pedalboard

        k = self.knobs()
        return getattr(pedalboard, self.pedalboard_classes[0])(**{key: k[key] for key in self._pedalboard_knobs})

    def to_pedalboard(self) -> Any:
        if not self.pedalboard_classes:
            return super().to_pedalboard()
        return self._pedalboard_plugin()


class _KeyedUnit(_Dynamics):
    """A unit whose detector can listen to a key signal given as the ``sidechain`` control."""

    extra_controls = ("sidechain",)
    unframed_controls = ("sidechain",)

    def _sidechain(self, x: Tensor, controls: Mapping[str, Any]) -> Tensor | None:
        """The call's key signal, checked against the input, or None."""
        sidechain = controls.get("sidechain")
        if sidechain is None:
            return None
        check_audio(sidechain, name="sidechain", owner=self.label)
        if sidechain.shape[0] != x.shape[0] or sidechain.shape[1] not in (1, x.shape[1]) or sidechain.shape[2] != x.shape[2]:
            raise ValueError(
                f"{self.label}: sidechain shaped {tuple(sidechain.shape)} does not fit the input shaped "
                f"{tuple(x.shape)}: expected (batch, channels or 1, samples) = "
                f"({x.shape[0]}, {x.shape[1]} or 1, {x.shape[2]})"
            )
        return sidechain.to(dtype=x.dtype)


def _check_detector(detector: Any, owner: str) -> str:
    if not isinstance(detector, str) or detector not in DETECTORS:
        raise ValueError(f"{owner}: detector must be one of {', '.join(map(repr, DETECTORS))}, got {detector!r}")
    return detector


@register
class Compressor(_KeyedUnit):
    """Feed-forward downward compressor with attack/release ballistics, soft knee and makeup gain.

    Per channel: the attack/release envelope ``e`` of ``|x|`` (peak) or ``x**2`` (rms) gives
    the level ``L`` in dB; the gain is ``(1/ratio - 1) * k(L - threshold_db) + makeup_db`` dB,
    with ``k`` the quadratic soft knee of Giannoulis et al. (2012): 0 below
    ``threshold - knee/2``, ``(u + W/2)^2 / (2W)`` inside the knee, ``u = L - threshold``
    above it (``knee_db = 0``: hard knee). ``y = x * gain``.

    Options:
        detector: ``"peak"`` (default, pedalboard's) or ``"rms"`` (ballistics on ``x**2``).

    Knobs:
        threshold_db: -60 .. 0 dB (default -12).
        ratio: 1 .. 100 (log, default 4); 1 is the identity.
        attack_ms: 0.01 .. 500 ms (log, default 10) (JUCE convention: 1 - 1/e of a step in t/(2*pi)).
        release_ms: 1 .. 5000 ms (log, default 100).
        knee_db: 0 .. 24 dB (default 0: hard knee).
        makeup_db: -24 .. 24 dB (default 0).

    Controls: every knob may vary in time; ``sidechain=key`` (``(batch, channels or 1,
    samples)``) makes the detector listen to ``key`` instead of ``x`` (ducking, de-essing).

    >>> comp = dspfx.make("compressor", threshold_db=-24.0, ratio=4.0, attack_ms=5.0)
    >>> y = comp(x)                       # or comp(x, sidechain=kick) to duck under a kick

    Reference: D. Giannoulis, M. Massberg, J. D. Reiss, "Digital dynamic range compressor design
    — a tutorial and analysis", JAES 60(6), 2012 (gain computer, soft knee); twin of
    ``pedalboard.Compressor`` (knee 0, makeup 0, peak detector: renders agree to float
    precision; with makeup the twin is ``Pedalboard([Compressor, Gain])``).
    """

    name = "compressor"
    category = "effect"
    pedalboard_classes = ("Compressor",)
    threshold_db = Knob(-12.0, -60.0, 0.0, unit="dB", doc="level above which the gain is reduced")
    ratio = Knob(4.0, 1.0, 100.0, scale="log", doc="input dB per output dB above the threshold")
    attack_ms = Knob(10.0, 0.01, 500.0, scale="log", unit="ms", doc="detector attack time")
    release_ms = Knob(100.0, 1.0, 5000.0, scale="log", unit="ms", doc="detector release time")
    knee_db = Knob(0.0, 0.0, 24.0, unit="dB", doc="width of the quadratic soft knee (0: hard)")
    makeup_db = Knob(0.0, -24.0, 24.0, unit="dB", doc="gain after compression")

    def __init__(self, sample_rate: float = 48000, detector: str = "peak", **knobs: Any) -> None:
        self.detector = _check_detector(detector, "compressor")
        super().__init__(sample_rate, **knobs)

    def init_state(self, batch: int, channels: int) -> Tensor:
        return _zeros(self, batch, channels)  # the detector envelope

    def process(self, x: Tensor, controls: dict[str, Tensor], state: Any) -> tuple[Tensor, Any]:
        return FD.compressor(
            x,
            controls["threshold_db"],
            controls["ratio"],
            controls["attack_ms"],
            controls["release_ms"],
            self.sample_rate,
            controls["knee_db"],
            controls["makeup_db"],
            detector=self.detector,
            sidechain=self._sidechain(x, controls),
            state=state,
        )

    def static_curve(self, level_db: Tensor) -> Tensor:
        """Steady-state gain in dB (makeup included) for detector levels ``level_db`` in dB."""
        k = {key: self.knob_value(key) for key in self.knob_specs}
        return FD.compressor_gain_db(level_db, k["threshold_db"], k["ratio"], k["knee_db"]) + k["makeup_db"]

    _pedalboard_knobs = _BALLISTIC_TWIN_KNOBS
    _pedalboard_fixed = {"knee_db": 0.0, "makeup_db": 0.0}

    def to_pedalboard(self) -> Any:
        import pedalboard

        k = self.knobs()
        if self.detector != "peak" or k["knee_db"] != 0.0:
            raise ValueError(
                f"compressor with detector={self.detector!r}, knee_db={k['knee_db']:g} has no pedalboard twin "
                "(pedalboard.Compressor is a peak detector with a hard knee: detector='peak', knee_db=0)"
            )
        comp = self._pedalboard_plugin()
        if k["makeup_db"] != 0.0:
            return pedalboard.Pedalboard([comp, pedalboard.Gain(gain_db=k["makeup_db"])])
        return comp


@register
class Limiter(_Dynamics):
    """Brickwall-style limiter exactly as JUCE's/pedalboard's ``Limiter``.

    Two hard-knee peak compressors in series (a fixed -10 dB, 4:1, 2 ms / 200 ms stage, then
    ``threshold_db`` at 1000:1 with 0.001 ms attack and ``release_ms``), then a gain of
    ``+3.75 dB - threshold_db`` and a hard clip at +-1.

    Knobs:
        threshold_db: -60 .. 0 dB (default -10).
        release_ms: 1 .. 5000 ms (log, default 100) (JUCE convention: 1 - 1/e of a step in t/(2*pi)).

    >>> lim = dspfx.make("limiter", threshold_db=-6.0, release_ms=50.0)
    >>> y = lim(x)                              # peaks held at +-1 after the makeup

    Reference: JUCE ``dsp::Limiter``; twin of ``pedalboard.Limiter`` (renders agree to float
    precision).
    """

    name = "limiter"
    category = "effect"
    pedalboard_classes = ("Limiter",)
    threshold_db = Knob(-10.0, -60.0, 0.0, unit="dB", doc="limiting threshold (the output is raised by -threshold)")
    release_ms = Knob(100.0, 1.0, 5000.0, scale="log", unit="ms", doc="release time of the limiting stage")

    def init_state(self, batch: int, channels: int) -> tuple[Tensor, Tensor]:
        return _zeros(self, batch, channels), _zeros(self, batch, channels)  # both stages' envelopes

    def process(self, x: Tensor, controls: dict[str, Tensor], state: Any) -> tuple[Tensor, Any]:
        return FD.limiter(x, controls["threshold_db"], controls["release_ms"], self.sample_rate, state=state)

    _pedalboard_knobs = ("threshold_db", "release_ms")


@register
class NoiseGate(_KeyedUnit):
    """Noise gate exactly as JUCE's/pedalboard's ``NoiseGate``.

    Per channel: an RMS detector (ballistics on ``x**2``, attack 0, release 50 ms, square
    root), then attack/release ballistics on that; gain 1 above the threshold ``T``,
    ``(e/T)^(ratio - 1)`` below (the level falls ``ratio`` dB per dB below the threshold).

    Knobs:
        threshold_db: -100 .. 0 dB (default -40).
        ratio: 1 .. 100 (log, default 10); 1 is the identity.
        attack_ms: 0.01 .. 500 ms (log, default 1) (JUCE convention: 1 - 1/e of a step in t/(2*pi)).
        release_ms: 1 .. 5000 ms (log, default 100).

    Controls: every knob may vary in time; ``sidechain=key`` gates ``x`` by ``key``'s level.

    >>> gate = dspfx.make("noise_gate", threshold_db=-50.0, ratio=10.0)
    >>> y = gate(x)

    Reference: JUCE ``dsp::NoiseGate``; twin of ``pedalboard.NoiseGate`` (renders agree to
    float precision).
    """

    name = "noise_gate"
    category = "effect"
    pedalboard_classes = ("NoiseGate",)
    threshold_db = Knob(-40.0, -100.0, 0.0, unit="dB", doc="level below which the gain falls")
    ratio = Knob(10.0, 1.0, 100.0, scale="log", doc="output dB per input dB below the threshold")
    attack_ms = Knob(1.0, 0.01, 500.0, scale="log", unit="ms", doc="detector attack time")
    release_ms = Knob(100.0, 1.0, 5000.0, scale="log", unit="ms", doc="detector release time")

    def init_state(self, batch: int, channels: int) -> tuple[Tensor, Tensor]:
        return _zeros(self, batch, channels), _zeros(self, batch, channels)  # RMS power, envelope

    def process(self, x: Tensor, controls: dict[str, Tensor], state: Any) -> tuple[Tensor, Any]:
        return FD.noise_gate(
            x,
            controls["threshold_db"],
            controls["ratio"],
            controls["attack_ms"],
            controls["release_ms"],
            self.sample_rate,
            sidechain=self._sidechain(x, controls),
            state=state,
        )

    _pedalboard_knobs = _BALLISTIC_TWIN_KNOBS


@register
class Expander(_KeyedUnit):
    """Downward expander: the smooth sibling of the noise gate.

    Per channel: the attack/release envelope of ``|x|`` (peak) or ``x**2`` (rms) gives the level
    ``L`` in dB; the gain is 0 dB above the threshold and ``(ratio - 1)(L - threshold_db)`` dB
    below it (the level falls ``ratio`` dB per dB), with the quadratic soft knee of Giannoulis
    et al. (2012) mirrored below the threshold (``-(ratio - 1)(u - W/2)^2 / (2W)`` for
    ``|u| <= W/2``, ``u = L - threshold``).

    Options:
        detector: ``"peak"`` (default) or ``"rms"``.

    Knobs:
        threshold_db: -100 .. 0 dB (default -40).
        ratio: 1 .. 100 (log, default 2); 1 is the identity, large ratios gate.
        attack_ms: 0.01 .. 500 ms (log, default 1) (JUCE convention: 1 - 1/e of a step in t/(2*pi)).
        release_ms: 1 .. 5000 ms (log, default 100).
        knee_db: 0 .. 24 dB (default 6).

    Controls: every knob may vary in time; ``sidechain=key`` expands ``x`` by ``key``'s level.

    >>> exp = dspfx.make("expander", threshold_db=-45.0, ratio=3.0, knee_db=6.0)
    >>> y = exp(x)

    Reference: D. Giannoulis, M. Massberg, J. D. Reiss, JAES 2012 (gain computer and knee);
    ballistics as JUCE's ``BallisticsFilter``. No pedalboard twin (its NoiseGate is the
    hard-knee, RMS-pre-detector special case).
    """

    name = "expander"
    category = "effect"
    threshold_db = Knob(-40.0, -100.0, 0.0, unit="dB", doc="level below which the gain falls")
    ratio = Knob(2.0, 1.0, 100.0, scale="log", doc="output dB per input dB below the threshold")
    attack_ms = Knob(1.0, 0.01, 500.0, scale="log", unit="ms", doc="detector attack time")
    release_ms = Knob(100.0, 1.0, 5000.0, scale="log", unit="ms", doc="detector release time")
    knee_db = Knob(6.0, 0.0, 24.0, unit="dB", doc="width of the quadratic soft knee (0: hard)")

    def __init__(self, sample_rate: float = 48000, detector: str = "peak", **knobs: Any) -> None:
        self.detector = _check_detector(detector, "expander")
        super().__init__(sample_rate, **knobs)

    def init_state(self, batch: int, channels: int) -> Tensor:
        return _zeros(self, batch, channels)

    def process(self, x: Tensor, controls: dict[str, Tensor], state: Any) -> tuple[Tensor, Any]:
        return FD.expander(
            x,
            controls["threshold_db"],
            controls["ratio"],
            controls["attack_ms"],
            controls["release_ms"],
            self.sample_rate,
            controls["knee_db"],
            detector=self.detector,
            sidechain=self._sidechain(x, controls),
            state=state,
        )

    def static_curve(self, level_db: Tensor) -> Tensor:
        """Steady-state gain in dB for detector levels ``level_db`` in dB."""
        k = {key: self.knob_value(key) for key in self.knob_specs}
        return FD.expander_gain_db(level_db, k["threshold_db"], k["ratio"], k["knee_db"])
