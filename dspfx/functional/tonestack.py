"""The passive treble/middle/bass tone stack of Fender and Marshall amps: component tables, pot
tapers, the third-order analog transfer function derived by nodal analysis, and its bilinear
discretisation.

Circuit (Yeh & Smith, "Discretization of the '59 Fender Bassman tone stack", DAFx 2006; the
Fender 5F6-A topology that Marshall copied). An ideal voltage source ``Vin`` (the cathode
follower) drives, with the output taken unloaded from the treble pot's wiper::

    Vin --C1-- n1 --[(1-t) R1]-- OUT --[t R1]-- n2 --[Rb]-- n3 --[Rmu]-- n5 --[Rml]-- ground
    Vin --R4-- n4;   n4 --C2-- n2;   n4 --C3-- n5

- treble pot R1: upper section ``Rtu = (1 - T) R1`` (n1 to wiper), lower ``Rtl = T R1``;
- bass pot R2 as a variable resistor ``Rb = B R2`` (between n2 and the top of the mid pot);
- mid pot R3: ``Rmu = (1 - M) R3`` (top n3 to wiper n5), ``Rml = M R3`` (wiper to ground) when
  wired as a full pot (5F6-A, Marshall); wired as a variable resistor (Fender "blackface" TMB:
  wiper tied to the top lug) ``Rmu = 0`` and ``Rml = M R3``;
- ``T, B, M`` are the pot positions after the taper (:func:`pot_taper`).

Nodal analysis of the five unknown node voltages (derived symbolically with sympy, and checked
term by term against the closed form printed in Yeh & Smith) gives, in the section resistances,

    H(s) = (b1 s + b2 s^2 + b3 s^3) / (1 + a1 s + a2 s^2 + a3 s^3)

    b1 = C1 (Rtl + Rb + Rmu + Rml) + C2 (Rb + Rmu + Rml) + C3 Rml
    b2 = C1 C2 [R4 (Rtl + Rb + Rmu + Rml) + (Rtl + Rtu)(Rb + Rmu + Rml)]
       + C1 C3 [R4 (Rtl + Rb + Rmu + Rml) + Rml (Rb + Rmu + Rtl + Rtu)]
       + C2 C3 Rml (Rb + Rmu)
    b3 = C1 C2 C3 (Rb + Rmu) [R4 (Rml + Rtl) + Rml (Rtl + Rtu)]
    a1 = C1 (Rtl + Rtu + Rb + Rmu + Rml) + C2 (R4 + Rb + Rmu + Rml) + C3 (R4 + Rml)
    a2 = b2 + C1 C2 R4 Rtu + C1 C3 R4 Rtu + C2 C3 R4 (Rb + Rmu)
    a3 = C1 C2 C3 (Rb + Rmu) [R4 (Rml + Rtl + Rtu) + Rml (Rtl + Rtu)]

With the full-pot mid this is exactly Yeh & Smith's eq. (1)-(2) (their ``t, m, l``). Every
coefficient is a polynomial in the section resistances, so the pot edges (a section of 0 ohm)
are exact. The digital filter is the bilinear transform ``s = c (1 - z^-1) / (1 + z^-1)`` with
``c = 2 fs``, or ``c = 2 pi f_w / tan(pi f_w / fs)`` to match the analog response exactly at a
warping frequency ``f_w``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "ToneStackComponents",
    "TONESTACK_MODELS",
    "POT_TAPERS",
    "LOG_TAPER_BASE",
    "pot_taper",
    "tonestack_sections",
    "tonestack_analog_coefficients",
    "bilinear_coefficients",
    "tonestack_coefficients",
    "analog_frequency_response",
]

#: Pot tapers: ``"linear"`` and ``"log"`` (audio taper, see :func:`pot_taper`).
POT_TAPERS = ("linear", "log")

#: The audio taper used: ``(LOG_TAPER_BASE ** x - 1) / (LOG_TAPER_BASE - 1)``; base 81 puts the
#: half-rotation point at 10 % of the track resistance (the common "10A" approximation).
LOG_TAPER_BASE = 81.0


@dataclass(frozen=True)
class ToneStackComponents:
    """Component values (ohm, farad) and pot wiring of one amp's tone stack.

    Attributes:
        r1_treble, r2_bass, r3_mid: pot track resistances R1, R2, R3.
        r4_slope: the slope resistor R4.
        c1_treble, c2_bass, c3_mid: capacitors C1, C2, C3.
        mid_wiring: ``"pot"`` (mid pot with its wiper to C3, 5F6-A/Marshall) or ``"rheostat"``
            (wiper tied to the top lug: a variable resistor, Fender blackface TMB).
        treble_taper, bass_taper, mid_taper: ``"linear"`` or ``"log"``.
        description: the amp, and where the values come from.
    """

    r1_treble: float
    r2_bass: float
    r3_mid: float
    r4_slope: float
    c1_treble: float
    c2_bass: float
    c3_mid: float
    mid_wiring: str = "pot"
    treble_taper: str = "linear"
    bass_taper: str = "log"
    mid_taper: str = "linear"
    description: str = ""


#: Component tables. Sources: values as published in Yeh & Smith (DAFx 2006) for the 5F6-A, and
#: the tone-stack tables of the CAPS plugin suite (T. Goetze, after D. Yeh; also in guitarix'
#: tonestacks.lib) and of "Yet Another Tonestack Calculator" (why-trv), which agree with each
#: other and with /work/shared/reference/amps.md for the Bassman and the JCM800:
#:
#: ============  ====== ====== ====== ====== ======= ====== ====== ==========
#: model          R1     R2     R3     R4     C1      C2     C3     mid wiring
#: ============  ====== ====== ====== ====== ======= ====== ====== ==========
#: bassman        250k   1M     25k    56k    250p    20n    20n    pot
#: jcm800         220k   1M     22k    33k    470p    22n    22n    pot
#: blackface      250k   250k   10k    100k   250p    100n   47n    rheostat
#: ============  ====== ====== ====== ====== ======= ====== ====== ==========
#:
#: Tapers: bass pots are audio taper on all three; the Bassman and Marshall treble and mid pots
#: are linear; the blackface treble pot is audio taper (its mid pot linear). (CAPS' "twin" row
#: uses a 120 pF treble cap, the bright-voiced Twin Reverb; "blackface" here is the common
#: 250 pF Fender TMB of the AB763 circuits.)
TONESTACK_MODELS: dict[str, ToneStackComponents] = {
    "bassman": ToneStackComponents(
        250e3, 1e6, 25e3, 56e3, 250e-12, 20e-9, 20e-9, "pot", "linear", "log", "linear",
        "Fender '59 Bassman 5F6-A (Yeh & Smith 2006)",
    ),
    "jcm800": ToneStackComponents(
        220e3, 1e6, 22e3, 33e3, 470e-12, 22e-9, 22e-9, "pot", "linear", "log", "linear",
        "Marshall JCM800 2203 (5F6-A topology)",
    ),
    "blackface": ToneStackComponents(
        250e3, 250e3, 10e3, 100e3, 250e-12, 100e-9, 47e-9, "rheostat", "log", "log", "linear",
        "Fender blackface TMB (AB763 Twin Reverb / Super Reverb family)",
    ),
}


def _model(model: str | ToneStackComponents) -> ToneStackComponents:
    if isinstance(model, ToneStackComponents):
        return model
    if not isinstance(model, str) or model not in TONESTACK_MODELS:
        raise ValueError(f"unknown tone-stack model {model!r}; valid models are: {', '.join(TONESTACK_MODELS)}")
    return TONESTACK_MODELS[model]


def pot_taper(position: Tensor, taper: str) -> Tensor:
    """Fraction of a pot's track resistance selected at a rotation ``position`` in [0, 1].

    ``"linear"``: the position itself. ``"log"`` (audio taper): ``(81 ** x - 1) / 80``, an
    exponential through 0, 10 % at half rotation and 1 (the usual "10A" approximation).

    Args:
        position: tensor of rotations in [0, 1] (any shape).
        taper: ``"linear"`` or ``"log"``.

    Returns:
        Tensor like ``position``; differentiable.
    """
    if taper == "linear":
        return position
    if taper == "log":
        return torch.expm1(position * math.log(LOG_TAPER_BASE)) / (LOG_TAPER_BASE - 1.0)
    raise ValueError(f"pot taper must be one of {', '.join(POT_TAPERS)}, got {taper!r}")


def tonestack_sections(
    model: str | ToneStackComponents, treble: Tensor, mid: Tensor, bass: Tensor
) -> dict[str, Tensor]:
    """Section resistances (ohm) of the pots at the given rotations (tapers applied).

    Returns:
        dict with ``"treble_upper"`` (n1 to wiper), ``"treble_lower"`` (wiper to n2), ``"bass"``,
        ``"mid_upper"`` (top lug to wiper) and ``"mid_lower"`` (wiper to ground), broadcast
        against each other.
    """
    c = _model(model)
    t = pot_taper(treble, c.treble_taper)
    m = pot_taper(mid, c.mid_taper)
    b = pot_taper(bass, c.bass_taper)
    t, m, b = torch.broadcast_tensors(t, m, b)
    mid_upper = (1.0 - m) * c.r3_mid if c.mid_wiring == "pot" else torch.zeros_like(m)
    return {
        "treble_upper": (1.0 - t) * c.r1_treble,
        "treble_lower": t * c.r1_treble,
        "bass": b * c.r2_bass,
        "mid_upper": mid_upper,
        "mid_lower": m * c.r3_mid,
    }


def tonestack_analog_coefficients(
    model: str | ToneStackComponents, treble: Tensor, mid: Tensor, bass: Tensor
) -> tuple[Tensor, Tensor]:
    """Analog transfer function ``H(s) = sum b_k s^k / sum a_k s^k`` of the tone stack.

    The closed form of the module docstring (nodal analysis; Yeh & Smith 2006, eq. 1-2).

    Args:
        model: a name in :data:`TONESTACK_MODELS` or a :class:`ToneStackComponents`.
        treble, mid, bass: pot rotations in [0, 1], tensors broadcasting together (any shape).

    Returns:
        ``(b, a)`` shaped ``broadcast shape + (4,)``, ascending powers of ``s`` (``b[..., 0]`` is
        0, ``a[..., 0]`` is 1), in the dtype of the inputs. Differentiable.
    """
    c = _model(model)
    sec = tonestack_sections(c, treble, mid, bass)
    rtu, rtl, rb, rmu, rml = (sec[k] for k in ("treble_upper", "treble_lower", "bass", "mid_upper", "mid_lower"))
    r4, c1, c2, c3 = c.r4_slope, c.c1_treble, c.c2_bass, c.c3_mid
    low = rb + rmu  # the bass pot and the upper mid section, in series
    below = low + rml  # everything between n2 and ground
    tre = rtl + rtu
    b1 = c1 * (rtl + below) + c2 * below + c3 * rml
    b2 = (
        c1 * c2 * (r4 * (rtl + below) + tre * below)
        + c1 * c3 * (r4 * (rtl + below) + rml * (low + tre))
        + c2 * c3 * rml * low
    )
    b3 = c1 * c2 * c3 * low * (r4 * (rml + rtl) + rml * tre)
    a1 = c1 * (tre + below) + c2 * (r4 + below) + c3 * (r4 + rml)
    a2 = b2 + (c1 * c2 + c1 * c3) * r4 * rtu + c2 * c3 * r4 * low
    a3 = c1 * c2 * c3 * low * (r4 * (rml + tre) + rml * tre)
    zero, one = torch.zeros_like(b1), torch.ones_like(b1)
    return torch.stack([zero, b1, b2, b3], dim=-1), torch.stack([one, a1, a2, a3], dim=-1)


# (1 - q)^k (1 + q)^(3 - k) in powers of q = z^-1, for k = 0 .. 3 (rows)
_BILINEAR3 = ((1.0, 3.0, 3.0, 1.0), (1.0, 1.0, -1.0, -1.0), (1.0, -1.0, -1.0, 1.0), (1.0, -3.0, 3.0, -1.0))


def _bilinear_constant(sample_rate: float, warp_hz: float | None) -> float:
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, float)) or not sample_rate > 0:
        raise ValueError(f"sample_rate must be a positive number in Hz, got {sample_rate!r}")
    if warp_hz is None:
        return 2.0 * float(sample_rate)
    if isinstance(warp_hz, bool) or not isinstance(warp_hz, (int, float)) or not 0 < warp_hz < sample_rate / 2:
        raise ValueError(
            f"warp_hz must be None or a frequency in (0, sample_rate/2) = (0, {sample_rate / 2:g}) Hz, got {warp_hz!r}"
        )
    return 2.0 * math.pi * warp_hz / math.tan(math.pi * warp_hz / sample_rate)


def bilinear_coefficients(
    b_s: Tensor, a_s: Tensor, sample_rate: float, warp_hz: float | None = None
) -> tuple[Tensor, Tensor]:
    """Bilinear transform of a third-order (or lower, zero-padded) analog transfer function.

    ``s = c (1 - z^-1) / (1 + z^-1)``, ``c = 2 * sample_rate`` (``warp_hz=None``) or
    ``c = 2 pi warp_hz / tan(pi warp_hz / sample_rate)`` (the digital response equals the analog
    one exactly at ``warp_hz``). In general ``H_d(e^{jw}) = H_a(j c tan(w / 2))``.

    Args:
        b_s, a_s: ``(..., 4)`` analog coefficients, ascending powers of ``s``.
        sample_rate: Hz.
        warp_hz: optional warping frequency in Hz.

    Returns:
        ``(b, a)`` shaped ``(..., 4)``, powers of ``z^-1``, ``a[..., 0] == 1``. Differentiable.
    """
    if b_s.shape[-1] != 4 or a_s.shape[-1] != 4:
        raise ValueError(
            f"bilinear_coefficients takes (..., 4) coefficients, got {tuple(b_s.shape)} and {tuple(a_s.shape)}"
        )
    c = _bilinear_constant(sample_rate, warp_hz)
    dtype = torch.promote_types(b_s.dtype, a_s.dtype)
    mix = torch.tensor(_BILINEAR3, dtype=dtype, device=b_s.device) * torch.tensor(
        [[c**k] for k in range(4)], dtype=dtype, device=b_s.device
    )
    b = b_s.to(dtype) @ mix
    a = a_s.to(dtype) @ mix
    a0 = a[..., :1]
    return b / a0, torch.cat([torch.ones_like(a0), a[..., 1:] / a0], dim=-1)


def tonestack_coefficients(
    model: str | ToneStackComponents,
    treble: Tensor | float,
    mid: Tensor | float,
    bass: Tensor | float,
    sample_rate: float,
    warp_hz: float | None = None,
) -> tuple[Tensor, Tensor]:
    """Digital third-order IIR coefficients of the tone stack (analog design + bilinear transform).

    The design runs in float64 (the analog coefficients span ~15 orders of magnitude) and is cast
    back to the promoted dtype of the tensor inputs (torch's default dtype when all are python
    numbers); gradients flow through the casts.

    Args:
        model: a name in :data:`TONESTACK_MODELS` or a :class:`ToneStackComponents`.
        treble, mid, bass: pot rotations in [0, 1]; tensors of any broadcasting shapes (e.g.
            ``(batch|1, 1, samples|1)`` controls) or floats.
        sample_rate: Hz.
        warp_hz: optional bilinear warping frequency (Hz), see :func:`bilinear_coefficients`.

    Returns:
        ``(b, a)`` shaped ``broadcast shape + (4,)`` for :func:`dspfx.functional.iir`.
    """
    tensors = [v for v in (treble, mid, bass) if isinstance(v, Tensor)]
    out_dtype = tensors[0].dtype if tensors else torch.get_default_dtype()
    for v in tensors[1:]:
        out_dtype = torch.promote_types(out_dtype, v.dtype)
    device = tensors[0].device if tensors else None
    t, m, b = (torch.as_tensor(v, device=device).to(torch.float64) for v in (treble, mid, bass))
    b_s, a_s = tonestack_analog_coefficients(model, t, m, b)
    bz, az = bilinear_coefficients(b_s, a_s, sample_rate, warp_hz)
    return bz.to(out_dtype), az.to(out_dtype)


def analog_frequency_response(b_s: Tensor, a_s: Tensor, freqs_hz: Any) -> Tensor:
    """``H(j 2 pi f)`` of analog coefficients in ascending powers of ``s``.

    Args:
        b_s, a_s: ``(..., n)`` coefficients.
        freqs_hz: 1-D frequencies (Hz).

    Returns:
        Complex tensor shaped ``(..., len(freqs_hz))``.
    """
    dtype = torch.promote_types(b_s.dtype, a_s.dtype)
    f = torch.as_tensor(freqs_hz, dtype=dtype, device=b_s.device).reshape(-1)
    s = torch.complex(torch.zeros_like(f), 2.0 * math.pi * f)
    powers = torch.stack([s**k for k in range(b_s.shape[-1])], dim=0)  # (n, F)
    return (b_s.to(powers.dtype) @ powers) / (a_s.to(powers.dtype) @ powers)
