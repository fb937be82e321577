"""Distortion family: tanh drive, clippers, polarity inversion, bit crushing, learnable static curves.

All units here are memoryless (no state), so streaming in blocks of any size equals the offline
render exactly. The math lives in :mod:`dspfx.functional.nonlinear`.
"""

from __future__ import annotations

from typing import Any

import math

import torch
from torch import Tensor, nn

from dspfx.functional.conversions import db_to_gain
from dspfx.functional.nonlinear import (
    CLIP_CURVES,
    _bitcrush_static,
    _bitcrush_steps,
    _static_scalar,
    biased_curve,
    bitcrush,
    chebyshev_series,
    clip,
    mlp_curve,
)
from dspfx.registry import register
from dspfx.unit import Knob, Unit

__all__ = ["Distortion", "Clipping", "Invert", "Bitcrush", "StaticNonlinearity", "CLIP_CURVES", "STATIC_CURVES"]

STATIC_CURVES = ("tanh", "chebyshev", "mlp")


def _gain_of(unit: Unit, key: str, db: Tensor) -> Tensor:
    """``db_to_gain(db)`` for the control ``key``. Without autograd, a one-element control that is
    the very tensor of the last call (the unit's cached static knob control, unchanged) reuses that
    call's value, so repeated renders skip the dB conversion; values are bit-identical."""
    if torch.is_grad_enabled() or torch.is_inference_mode_enabled() or db.numel() != 1 or db.is_inference():
        return db_to_gain(db)
    cache = unit.__dict__.setdefault("_gain_cache", {})
    hit = cache.get(key)
    if hit is not None and hit[0] is db and hit[1] == db._version:
        return hit[2]
    gain = db_to_gain(db)
    cache[key] = (db, db._version, gain)  # the control itself kept: `is` cannot match another tensor
    return gain


@register
class Distortion(Unit):
    """Memoryless soft clipper: ``y = tanh(10**(drive_db / 20) * x)``, no oversampling.

    Knobs:
        drive_db: 0 .. 60 dB (default 25), gain into the tanh curve; may vary in time.

    >>> fuzz = dspfx.make("distortion", drive_db=30.0)
    >>> y = fuzz(x)

    Reference: ``pedalboard.Distortion`` (same curve, same lack of oversampling, so the twin
    aliases exactly as pedalboard does).
    """

    name = "distortion"
    category = "effect"
    pedalboard_classes = ("Distortion",)
    drive_db = Knob(25.0, 0.0, 60.0, unit="dB", doc="gain into the tanh curve")

    def process(self, x: Tensor, controls: dict[str, Tensor], state: Any) -> tuple[Tensor, Any]:
        gain = _gain_of(self, "drive_db", controls["drive_db"])
        g = _static_scalar(gain, x)
        if g is not None:  # no autograd, static drive: the same tanh(g * x) in place on one buffer
            return torch.mul(x, g).tanh_(), state
        return torch.tanh(gain * x), state

    @classmethod
    def from_pedalboard(cls, plugin: Any, sample_rate: float) -> Unit:
        return cls(sample_rate=sample_rate, drive_db=plugin.drive_db)

    def to_pedalboard(self) -> Any:
        import pedalboard

        return pedalboard.Distortion(drive_db=self.knobs()["drive_db"])


@register
class Clipping(Unit):
    """Memoryless clipper with a choice of curve, saturating at ``+-10**(threshold_db / 20)``.

    Options:
        curve: ``"hard"`` (default; ``clamp(x, -t, t)``), ``"soft"`` (``t * tanh(x / t)``),
            ``"cubic"`` (the cubic soft clipper ``v - v^3/3`` rescaled: slope 1 at 0, reaches
            ``t`` at ``|x| = 1.5 t`` and is flat beyond) or ``"arctan"``
            (``t * 2/pi * atan(pi x / (2 t))``). The soft curves all have slope 1 at 0.

    Knobs:
        threshold_db: -60 .. 0 dB (default -6): the output ceiling ``t``; may vary in time.

    The hard curve's gradients are exact away from the kinks: ``dy/dt = sign(x)`` where clipped.

    >>> clip = dspfx.make("clipping", curve="cubic", threshold_db=-12.0)
    >>> y = clip(x)

    Reference: ``pedalboard.Clipping`` (twin for ``curve="hard"``: same hard clip, no
    oversampling, so it aliases the same way); J. O. Smith, *Physical Audio Signal Processing*,
    "Cubic Soft Clipper".
    """

    name = "clipping"
    category = "effect"
    pedalboard_classes = ("Clipping",)
    threshold_db = Knob(-6.0, -60.0, 0.0, unit="dB", doc="output ceiling of the clipper")

    def __init__(self, sample_rate: float = 48000, curve: str = "hard", **knobs: Any) -> None:
        if curve not in CLIP_CURVES:
            raise ValueError(f"clipping curve must be one of {', '.join(CLIP_CURVES)}; got {curve!r}")
        self.curve = curve
        super().__init__(sample_rate, **knobs)

    def process(self, x: Tensor, controls: dict[str, Tensor], state: Any) -> tuple[Tensor, Any]:
        return clip(x, _gain_of(self, "threshold_db", controls["threshold_db"]), self.curve), state

    @classmethod
    def from_pedalboard(cls, plugin: Any, sample_rate: float) -> Unit:
        return cls(sample_rate=sample_rate, curve="hard", threshold_db=plugin.threshold_db)

    def to_pedalboard(self) -> Any:
        import pedalboard

        if self.curve != "hard":
            raise ValueError(
                f"clipping curve {self.curve!r} has no pedalboard twin (pedalboard.Clipping is the 'hard' curve)"
            )
        return pedalboard.Clipping(threshold_db=self.knobs()["threshold_db"])


@register
class Invert(Unit):
    """Polarity inversion: ``y = -x``. No knobs.

    >>> flip = dspfx.make("invert")
    >>> y = flip(x)

    Reference: ``pedalboard.Invert``.
    """

    name = "invert"
    category = "effect"
    pedalboard_classes = ("Invert",)

    def process(self, x: Tensor, controls: dict[str, Tensor], state: Any) -> tuple[Tensor, Any]:
        return -x, state

    @classmethod
    def from_pedalboard(cls, plugin: Any, sample_rate: float) -> Unit:
        return cls(sample_rate=sample_rate)

    def to_pedalboard(self) -> Any:
        import pedalboard

        return pedalboard.Invert()


@register
class Bitcrush(Unit):
    """Bit-depth reduction: ``y = round_half_even(x * 2**b) / 2**b`` (no dither, no clipping).

    Knobs:
        bit_depth: 0 .. 32 bits (linear, default 8); fractional depths give non-power-of-two
            steps, as in pedalboard. Linear in bits is logarithmic in the step size ``2**-b``
            and linear in the quantisation noise level (6.02 dB per bit), the scale on which a
            fit should move. May vary in time.

    Gradients are straight-through estimators (the staircase has zero slope almost everywhere):
    identity w.r.t. the input, and w.r.t. ``bit_depth`` the quantisation-noise model
    ``dy/db = -ln(2) * (y - x)`` (the error scales with the step size), see
    :func:`dspfx.functional.nonlinear.bitcrush`.

    >>> crush = dspfx.make("bitcrush", bit_depth=6.0)
    >>> y = crush(x)

    Reference: ``pedalboard.Bitcrush`` (bit-identical in float32: ``round(x * s) * (1 / s)``).
    """

    name = "bitcrush"
    category = "effect"
    pedalboard_classes = ("Bitcrush",)
    bit_depth = Knob(8.0, 0.0, 32.0, unit="bits", doc="bits of resolution (quantisation step 2^-bit_depth)")

    def process(self, x: Tensor, controls: dict[str, Tensor], state: Any) -> tuple[Tensor, Any]:
        depth = controls["bit_depth"]
        if _static_scalar(depth, x) is not None:  # no autograd, static depth: steps kept between calls
            if depth.is_inference():  # no version counter to key a cache on
                return _bitcrush_static(x, *_bitcrush_steps(depth, x.dtype)), state
            cache = self.__dict__.get("_steps_cache")
            if cache is None or cache[0] is not depth or cache[1] != depth._version or cache[2] != x.dtype:
                cache = (depth, depth._version, x.dtype, _bitcrush_steps(depth, x.dtype))
                self.__dict__["_steps_cache"] = cache  # the control itself kept: `is` matches no other tensor
            return _bitcrush_static(x, *cache[3]), state
        return bitcrush(x, depth), state

    @classmethod
    def from_pedalboard(cls, plugin: Any, sample_rate: float) -> Unit:
        return cls(sample_rate=sample_rate, bit_depth=plugin.bit_depth)

    def to_pedalboard(self) -> Any:
        import pedalboard

        return pedalboard.Bitcrush(bit_depth=self.knobs()["bit_depth"])


@register
class StaticNonlinearity(Unit):
    """A learnable memoryless transfer curve with drive, level and bias (amp-block waveshaper).

    ``y = 10**(output_gain_db/20) * (f(10**(input_gain_db/20) * x + bias) - f(bias) + f(0))``:
    ``bias`` moves the operating point along ``f`` (asymmetry, even harmonics) and the output is
    shifted back so silence still maps to ``f(0)``.

    Options:
        curve: the shape ``f``:
            ``"tanh"`` (default): ``f = tanh``, so ``y = out * (tanh(in * x + bias) - tanh(bias))``.
            ``"chebyshev"``: ``f(u) = sum_k c_k T_k(clamp(u, -1, 1))`` with learnable
            coefficients ``self.coefficients`` (an ``nn.Parameter`` shaped ``(order + 1,)``,
            unbounded, so not knobs); starts at ``c_1 = 1`` (identity on [-1, 1]).
            ``"mlp"``: ``f(u) = u + MLP(u)``, a 1 -> hidden -> hidden -> 1 tanh MLP applied per
            sample, output layer initialised small so the curve starts near the identity
            (the initial weights are drawn from a fixed seed, so fresh units are identical).
        order: Chebyshev order (default 8), for ``curve="chebyshev"``.
        hidden: MLP width (default 16), for ``curve="mlp"``.

    Knobs (all curves):
        input_gain_db: -24 .. +48 dB (default 0): drive into the curve.
        output_gain_db: -48 .. +24 dB (default 0): level after the curve.
        bias: -1 .. 1 (default 0): operating-point offset at the curve input.

    Learned tensors (Chebyshev coefficients, MLP weights) travel in ``dspfx.save`` files.

    >>> shaper = dspfx.make("static_nonlinearity", curve="tanh", input_gain_db=12.0, bias=0.2)
    >>> y = shaper(x)

    Reference: the static nonlinearity of Wiener-Hammerstein amp models (e.g. Eichas & Zoelzer,
    "Block-oriented gray box modeling of guitar amplifiers", DAFx 2017); Chebyshev waveshaping
    after Le Brun, JAES 1979.
    """

    name = "static_nonlinearity"
    category = "effect"
    input_gain_db = Knob(0.0, -24.0, 48.0, unit="dB", doc="drive into the curve")
    output_gain_db = Knob(0.0, -48.0, 24.0, unit="dB", doc="level after the curve")
    bias = Knob(0.0, -1.0, 1.0, doc="operating-point offset at the curve input")

    def __init__(
        self, sample_rate: float = 48000, curve: str = "tanh", order: int = 8, hidden: int = 16, **knobs: Any
    ) -> None:
        if curve not in STATIC_CURVES:
            raise ValueError(f"static_nonlinearity curve must be one of {', '.join(STATIC_CURVES)}; got {curve!r}")
        for opt, value, low in (("order", order, 0), ("hidden", hidden, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"static_nonlinearity option {opt} must be an int >= {low}, got {value!r}")
        self.curve = curve
        self.order = order
        self.hidden = hidden
        super().__init__(sample_rate, **knobs)
        if curve == "chebyshev":
            c = torch.zeros(order + 1)
            if order >= 1:
                c[1] = 1.0
            self.coefficients = nn.Parameter(c)
        elif curve == "mlp":
            g = torch.Generator().manual_seed(0)
            bound1 = 1.0  # fan-in 1 (nn.Linear's default init bound: 1/sqrt(fan_in))
            bound2 = 1.0 / math.sqrt(hidden)
            self.w1 = nn.Parameter((torch.rand(hidden, generator=g) * 2 - 1) * bound1)
            self.b1 = nn.Parameter((torch.rand(hidden, generator=g) * 2 - 1) * bound1)
            self.w2 = nn.Parameter((torch.rand(hidden, hidden, generator=g) * 2 - 1) * bound2)
            self.b2 = nn.Parameter((torch.rand(hidden, generator=g) * 2 - 1) * bound2)
            self.w3 = nn.Parameter((torch.rand(hidden, generator=g) * 2 - 1) * (1e-2 * bound2))
            self.b3 = nn.Parameter(torch.zeros(1))

    def shape(self, u: Tensor) -> Tensor:
        """The bare curve ``f(u)`` (no gains, no bias), any shape."""
        if self.curve == "tanh":
            return torch.tanh(u)
        if self.curve == "chebyshev":
            return chebyshev_series(u, self.coefficients)
        return mlp_curve(u, self.w1, self.b1, self.w2, self.b2, self.w3, self.b3)

    def process(self, x: Tensor, controls: dict[str, Tensor], state: Any) -> tuple[Tensor, Any]:
        y = biased_curve(
            # the same curve; torch.tanh itself lets biased_curve run it in place
            torch.tanh if self.curve == "tanh" and type(self).shape is StaticNonlinearity.shape else self.shape,
            x,
            _gain_of(self, "input_gain_db", controls["input_gain_db"]),
            _gain_of(self, "output_gain_db", controls["output_gain_db"]),
            controls["bias"],
        )
        return y, state

    def transfer_curve(self, inputs: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(inputs, outputs) of the current settings; 1001 points on [-1, 1] by default."""
        if inputs is None:
            inputs = torch.linspace(-1.0, 1.0, 1001, dtype=self.dtype, device=self.device)
        k = {name: self.knob_value(name) for name in self.knob_specs}
        y = biased_curve(self.shape, inputs, db_to_gain(k["input_gain_db"]), db_to_gain(k["output_gain_db"]), k["bias"])
        return inputs, y
