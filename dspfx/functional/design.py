"""Filter design: RBJ biquads and first-order sections, and frequency responses.

Coefficient convention: every coefficient tensor holds its coefficients in the last dimension,
``b = [b0, b1, ...]`` (numerator) and ``a = [a0, a1, ...]`` (denominator) of

    H(z) = (b0 + b1 z^-1 + ...) / (a0 + a1 z^-1 + ...),

and the designs here return ``a`` normalised so that ``a[..., 0] == 1``.

Designs follow the RBJ Audio-EQ-Cookbook (Robert Bristow-Johnson) for the biquads and the
first-order bilinear designs, in the exact forms JUCE uses (``IIR::Coefficients::makeLowShelf``,
``makeHighShelf``, ``makePeakFilter``, ``makeFirstOrderLowPass/HighPass``), which are what
pedalboard's ``PeakFilter``, ``LowShelfFilter``, ``HighShelfFilter``, ``LowpassFilter`` and
``HighpassFilter`` render with. Filtering is in :mod:`~dspfx.functional.recursive` (:func:`iir`),
:mod:`~dspfx.functional.sos` and :mod:`~dspfx.functional.fir`.
"""

from __future__ import annotations

import math
from functools import reduce
from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from dspfx.checks import broadcast_shape, check_sample_rate

__all__ = [
    "BIQUAD_MODES",
    "ONE_POLE_MODES",
    "MIN_CUTOFF_HZ",
    "NYQUIST_MARGIN_HZ",
    "biquad_coefficients",
    "one_pole_coefficients",
    "frequency_response",
]

BIQUAD_MODES: tuple[str, ...] = (
    "lowpass",
    "highpass",
    "bandpass",
    "notch",
    "allpass",
    "peak",
    "lowshelf",
    "highshelf",
)
ONE_POLE_MODES: tuple[str, ...] = ("lowpass", "highpass")

#: Lowest cutoff a biquad design uses (Hz); JUCE computes w0 from max(cutoff, 2 Hz).
MIN_CUTOFF_HZ = 2.0
#: A biquad cutoff is kept at least this far below Nyquist (Hz), like pedalboard.
NYQUIST_MARGIN_HZ = 100.0


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------

_TWO_PI_F32 = float(np.float32(2.0) * np.float32(math.pi))  # JUCE's 2 * MathConstants<float>::pi


def _rounded(fn: Callable[[Tensor], Tensor], v: Tensor) -> Tensor:
    """``fn(v)`` computed in float64 and rounded once to ``v``'s dtype when that is narrower
    (the correctly rounded result a C library's float function gives), else ``fn(v)``."""
    if v.dtype in (torch.float32, torch.float16, torch.bfloat16):
        return fn(v.double()).to(v.dtype)
    return fn(v)


def _design_inputs(**values: Tensor | float) -> list[Tensor]:
    """Convert design parameters to tensors of one floating dtype/device and broadcast them.

    The dtype is the promoted dtype of the tensor arguments (python numbers do not take part);
    torch's default dtype when there are no floating tensors.
    """
    tensors = [v for v in values.values() if isinstance(v, Tensor)]
    for key, v in values.items():
        if isinstance(v, Tensor):
            if v.is_complex():
                raise TypeError(f"{key} must be real, got dtype {v.dtype}")
        elif isinstance(v, bool) or not isinstance(v, (int, float)):
            raise TypeError(f"{key} must be a tensor or a real number, got {type(v).__name__}")
    float_dtypes = [t.dtype for t in tensors if t.is_floating_point()]
    dtype = reduce(torch.promote_types, float_dtypes) if float_dtypes else torch.get_default_dtype()
    device = tensors[0].device if tensors else None
    converted = [torch.as_tensor(v, dtype=dtype, device=device) for v in values.values()]
    try:
        return list(torch.broadcast_tensors(*converted))
    except RuntimeError as exc:
        shapes = ", ".join(f"{k}={tuple(t.shape)}" for k, t in zip(values, converted))
        raise ValueError(f"design parameters do not broadcast together: {shapes}") from exc


def _check_mode(mode: str, valid: Sequence[str], what: str) -> str:
    if not isinstance(mode, str) or mode not in valid:
        raise ValueError(f"unknown {what} mode {mode!r}; valid modes are: {', '.join(valid)}")
    return mode


# --------------------------------------------------------------------------------------------
# designs
# --------------------------------------------------------------------------------------------


def biquad_coefficients(
    mode: str,
    cutoff_hz: Tensor | float,
    q: Tensor | float,
    gain_db: Tensor | float,
    sample_rate: float,
) -> tuple[Tensor, Tensor]:
    """Second-order (biquad) filter coefficients from the RBJ Audio-EQ-Cookbook.

    With ``w0 = 2*pi*fc/sample_rate``, ``alpha = sin(w0) / (2*q)`` and, for ``peak``/shelves,
    ``A = 10 ** (gain_db / 40)``:

    - ``lowpass``, ``highpass``: 12 dB/octave, resonance set by ``q`` (0.7071: Butterworth).
    - ``bandpass``: constant 0 dB peak gain (``b = [alpha, 0, -alpha]``).
    - ``notch``: zero at the cutoff; ``allpass``: unit magnitude, phase turn at the cutoff.
    - ``peak``: ``gain_db`` at the cutoff (``b = [1 + alpha*A, -2cos, 1 - alpha*A]``,
      ``a = [1 + alpha/A, -2cos, 1 - alpha/A]``).
    - ``lowshelf``, ``highshelf``: the cookbook's Q form (the ``2*sqrt(A)*alpha`` term), reaching
      ``gain_db`` far into the shelf and ``gain_db / 2`` at the cutoff.

    These equal JUCE's ``makePeakFilter``/``makeLowShelf``/``makeHighShelf`` used by
    pedalboard's ``PeakFilter``/``LowShelfFilter``/``HighShelfFilter``. Like JUCE/pedalboard, the
    cutoff is clamped into ``[2 Hz, sample_rate/2 - 100 Hz]`` before computing ``w0``
    (``torch.clamp``: outside that range the gradient w.r.t. the cutoff is zero, never NaN/Inf).

    ``gain_db`` is ignored (but still broadcast) by the modes without gain. ``q`` must be > 0.

    Args:
        mode: one of ``BIQUAD_MODES``.
        cutoff_hz: cutoff/centre frequency in Hz, tensor or float.
        q: quality factor, tensor or float.
        gain_db: gain in dB for ``peak``/``lowshelf``/``highshelf``, tensor or float.
        sample_rate: sample rate in Hz.

    Returns:
        ``(b, a)``, each shaped ``broadcast(cutoff_hz, q, gain_db).shape + (3,)``, with
        ``a[..., 0] == 1``; dtype is the promoted dtype of the tensor inputs (default dtype when
        all are python numbers), device that of the tensor inputs. Differentiable.

    Raises:
        ValueError: unknown mode (the message lists the valid modes), non-broadcastable inputs,
            a non-positive python ``q``, or a sample rate too low to leave a valid cutoff range.
    """
    _check_mode(mode, BIQUAD_MODES, "biquad")
    sample_rate = check_sample_rate(sample_rate)
    if isinstance(q, (int, float)) and not isinstance(q, bool) and not q > 0:
        raise ValueError(f"q must be > 0, got {q}")
    upper = sample_rate / 2.0 - NYQUIST_MARGIN_HZ
    if upper <= MIN_CUTOFF_HZ:
        raise ValueError(
            f"sample_rate {sample_rate} Hz is too low for a biquad: the cutoff range "
            f"[{MIN_CUTOFF_HZ}, sample_rate/2 - {NYQUIST_MARGIN_HZ}] Hz is empty"
        )
    cutoff_hz, q, gain_db = _design_inputs(cutoff_hz=cutoff_hz, q=q, gain_db=gain_db)

    fc = torch.clamp(cutoff_hz, min=MIN_CUTOFF_HZ, max=upper)
    # The operations follow JUCE's float32 order (IIR::Coefficients::make*), so a float32 design
    # rounds exactly like pedalboard's: that matters where the design is ill-conditioned (a 20 Hz
    # shelf at Q 20 moves by 1e-3 ESR with one ulp of cos(w0)). Transcendentals are taken in
    # float64 and rounded once (what the C library's cosf/sinf/powf return), not torch's
    # vectorised float32 approximations.
    w0 = (fc * (_TWO_PI_F32 if fc.dtype == torch.float32 else 2.0 * math.pi)) / sample_rate
    cos_w0 = _rounded(torch.cos, w0)
    sin_w0 = _rounded(torch.sin, w0)
    alpha = sin_w0 / (q * 2.0)
    one = torch.ones_like(cos_w0)
    two_cos = 2.0 * cos_w0

    if mode == "lowpass":
        b1 = 1.0 - cos_w0
        b = (0.5 * b1, b1, 0.5 * b1)
        a = (1.0 + alpha, -two_cos, 1.0 - alpha)
    elif mode == "highpass":
        b1 = 1.0 + cos_w0
        b = (0.5 * b1, -b1, 0.5 * b1)
        a = (1.0 + alpha, -two_cos, 1.0 - alpha)
    elif mode == "bandpass":
        b = (alpha, torch.zeros_like(alpha), -alpha)
        a = (1.0 + alpha, -two_cos, 1.0 - alpha)
    elif mode == "notch":
        b = (one, -two_cos, one)
        a = (1.0 + alpha, -two_cos, 1.0 - alpha)
    elif mode == "allpass":
        b = (1.0 - alpha, -two_cos, 1.0 + alpha)
        a = (1.0 + alpha, -two_cos, 1.0 - alpha)
    else:
        # A = sqrt(10^(dB/20)) (= 10^(dB/40)), as JUCE: sqrt(Decibels::decibelsToGain(dB))
        big_a = torch.sqrt(_rounded(lambda v: torch.pow(10.0, v), gain_db * 0.05))
        if mode == "peak":
            c2 = -2.0 * cos_w0
            alpha_times_a = alpha * big_a
            alpha_over_a = alpha / big_a
            b = (1.0 + alpha_times_a, c2, 1.0 - alpha_times_a)
            a = (1.0 + alpha_over_a, c2, 1.0 - alpha_over_a)
        else:
            beta = sin_w0 * torch.sqrt(big_a) / q  # = 2 sqrt(A) alpha
            a_plus = big_a + 1.0
            a_minus = big_a - 1.0
            a_minus_cos = a_minus * cos_w0
            if mode == "lowshelf":
                b = (
                    big_a * (a_plus - a_minus_cos + beta),
                    big_a * 2.0 * (a_minus - a_plus * cos_w0),
                    big_a * (a_plus - a_minus_cos - beta),
                )
                a = (
                    a_plus + a_minus_cos + beta,
                    -2.0 * (a_minus + a_plus * cos_w0),
                    a_plus + a_minus_cos - beta,
                )
            else:  # highshelf
                b = (
                    big_a * (a_plus + a_minus_cos + beta),
                    big_a * -2.0 * (a_minus + a_plus * cos_w0),
                    big_a * (a_plus + a_minus_cos - beta),
                )
                a = (
                    a_plus - a_minus_cos + beta,
                    2.0 * (a_minus - a_plus * cos_w0),
                    a_plus - a_minus_cos - beta,
                )
    b_t = torch.stack(b, dim=-1)
    a_t = torch.stack(a, dim=-1)
    a0_inv = 1.0 / a_t[..., :1]  # JUCE normalises by multiplying with 1/a0
    return b_t * a0_inv, torch.cat([torch.ones_like(a0_inv), a_t[..., 1:] * a0_inv], dim=-1)


def one_pole_coefficients(
    mode: str, cutoff_hz: Tensor | float, sample_rate: float
) -> tuple[Tensor, Tensor]:
    """First-order bilinear lowpass/highpass coefficients (pedalboard/JUCE first-order filters).

    With ``n = tan(pi * cutoff_hz / sample_rate)``:

    - ``lowpass``:  ``b = [n, n] / (n + 1)``
    - ``highpass``: ``b = [1, -1] / (n + 1)``
    - both: ``a = [1, (n - 1) / (n + 1)]``

    (JUCE ``makeFirstOrderLowPass``/``makeFirstOrderHighPass``, used by pedalboard's
    ``LowpassFilter``/``HighpassFilter``; -3 dB at the cutoff.) No clamping is applied: the
    cutoff must lie in ``(0, sample_rate / 2)``.

    Args:
        mode: ``"lowpass"`` or ``"highpass"``.
        cutoff_hz: cutoff frequency in Hz, tensor (any shape) or float.
        sample_rate: sample rate in Hz.

    Returns:
        ``(b, a)``, each shaped ``cutoff_hz.shape + (2,)``, ``a[..., 0] == 1``; dtype/device of
        ``cutoff_hz`` (default dtype for a python number). Differentiable.

    Raises:
        ValueError: unknown mode, or a python ``cutoff_hz`` outside ``(0, sample_rate / 2)``.
    """
    _check_mode(mode, ONE_POLE_MODES, "one-pole")
    sample_rate = check_sample_rate(sample_rate)
    if isinstance(cutoff_hz, (int, float)) and not isinstance(cutoff_hz, bool):
        if not 0.0 < cutoff_hz < sample_rate / 2.0:
            raise ValueError(
                f"cutoff_hz must lie in (0, sample_rate/2) = (0, {sample_rate / 2.0}) Hz, got {cutoff_hz}"
            )
    (fc,) = _design_inputs(cutoff_hz=cutoff_hz)
    n = torch.tan((math.pi / sample_rate) * fc)
    inv = 1.0 / (n + 1.0)
    if mode == "lowpass":
        b = torch.stack([n * inv, n * inv], dim=-1)
    else:
        b = torch.stack([inv, -inv], dim=-1)
    a = torch.stack([torch.ones_like(n), (n - 1.0) * inv], dim=-1)
    return b, a


# --------------------------------------------------------------------------------------------
# analysis
# --------------------------------------------------------------------------------------------


def frequency_response(
    b: Tensor,
    a: Tensor,
    freqs_hz: Tensor | Sequence[float] | float,
    sample_rate: float,
) -> Tensor:
    """Complex frequency response ``H(e^{jw})`` of static filter coefficients.

    ``H = sum_k b_k e^{-jwk} / sum_k a_k e^{-jwk}`` with ``w = 2*pi*f/sample_rate`` (same as
    ``scipy.signal.freqz(b, a, worN=freqs_hz, fs=sample_rate)``).

    Args:
        b: numerator, shaped ``(..., nb)``.
        a: denominator, shaped ``(..., na)``; need not be normalised.
        freqs_hz: frequencies in Hz, 1-D (or a scalar), tensor or sequence.
        sample_rate: sample rate in Hz.

    Returns:
        Complex tensor shaped ``broadcast(b.shape[:-1], a.shape[:-1]) + (len(freqs_hz),)``;
        complex128 for float64 coefficients, else complex64. Differentiable w.r.t. ``b``, ``a``
        and a tensor ``freqs_hz``.
    """
    sample_rate = check_sample_rate(sample_rate)
    b = torch.as_tensor(b)
    a = torch.as_tensor(a, device=b.device)
    if b.ndim < 1 or a.ndim < 1 or b.shape[-1] < 1 or a.shape[-1] < 1:
        raise ValueError(
            f"b and a must hold coefficients in their last dimension, got shapes "
            f"{tuple(b.shape)} and {tuple(a.shape)}"
        )
    float_dtypes = [t.dtype for t in (b, a) if t.is_floating_point()]
    dtype = reduce(torch.promote_types, float_dtypes) if float_dtypes else torch.get_default_dtype()
    b = b.to(dtype)
    a = a.to(dtype)
    freqs = torch.as_tensor(freqs_hz, dtype=dtype, device=b.device)
    if freqs.ndim == 0:
        freqs = freqs.reshape(1)
    if freqs.ndim != 1:
        raise ValueError(f"freqs_hz must be 1-D, got shape {tuple(freqs.shape)}")
    if broadcast_shape(b.shape[:-1], a.shape[:-1]) is None:
        raise ValueError(
            f"b {tuple(b.shape)} and a {tuple(a.shape)} leading dimensions do not broadcast"
        )
    w = (2.0 * math.pi / sample_rate) * freqs

    def _poly(coef: Tensor) -> Tensor:
        k = torch.arange(coef.shape[-1], dtype=dtype, device=coef.device)
        phase = w.unsqueeze(-1) * k  # (F, n)
        basis = torch.polar(torch.ones_like(phase), -phase)  # e^{-j w k}
        return torch.matmul(coef.to(basis.dtype), basis.transpose(0, 1))  # (..., F)

    return _poly(b) / _poly(a)


