"""Filter design and exact (time-varying) recursive filtering.

Coefficient convention: every coefficient tensor holds its coefficients in the last dimension,
``b = [b0, b1, ...]`` (numerator) and ``a = [a0, a1, ...]`` (denominator) of

    H(z) = (b0 + b1 z^-1 + ...) / (a0 + a1 z^-1 + ...),

and the designs here return ``a`` normalised so that ``a[..., 0] == 1``.

Designs follow the RBJ Audio-EQ-Cookbook (Robert Bristow-Johnson) for the biquads and the
first-order bilinear designs, in the exact forms JUCE uses (``IIR::Coefficients::makeLowShelf``,
``makeHighShelf``, ``makePeakFilter``, ``makeFirstOrderLowPass/HighPass``), which are what
pedalboard's ``PeakFilter``, ``LowShelfFilter``, ``HighShelfFilter``, ``LowpassFilter`` and
``HighpassFilter`` render with.
"""

from __future__ import annotations

import functools
import math
from functools import lru_cache, reduce
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from dspfx.checks import check_sample_rate
from dspfx.functional.control import frame_positions
from dspfx.functional._compiled import as_numpy

__all__ = [
    "BIQUAD_MODES",
    "ONE_POLE_MODES",
    "biquad_coefficients",
    "one_pole_coefficients",
    "frequency_response",
    "iir",
    "sos_filter",
    "FIR_WINDOWS",
    "fir_window",
    "fir_design_options",
    "fir_from_magnitudes",
    "fir_filter",
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


def _broadcast_shape(*shapes: Sequence[int]) -> tuple[int, ...] | None:
    """numpy-style broadcast of shapes, or None when they do not broadcast.

    (Plain python: ``torch.broadcast_shapes`` pulls in sympy on its first call.)
    """
    ndim = max((len(shape) for shape in shapes), default=0)
    out = []
    for dim in range(-ndim, 0):
        sizes = {shape[dim] for shape in shapes if len(shape) >= -dim} - {1}
        if len(sizes) > 1:
            return None
        out.append(sizes.pop() if sizes else 1)
    return tuple(out)


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
    if _broadcast_shape(b.shape[:-1], a.shape[:-1]) is None:
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


# --------------------------------------------------------------------------------------------
# filtering
# --------------------------------------------------------------------------------------------


#: Numerators with more taps than this (and static in time) use conv1d in iir().
_SHIFTED_SUM_MAX_TAPS = 16


#: Up to this many samples in all (rows x time), the all-pole recursion of several rows runs as
#: one flattened row (see _all_pole).
_FLATTEN_MAX_SAMPLES = 65536


def _lpc_function():
    """torchlpc's exact time-varying all-pole autograd Function (imported lazily: numba)."""
    from torchlpc import LPC

    return LPC


def _all_pole(u: Tensor, ar: Tensor, y_hist: Tensor) -> Tensor:
    """All-pole recursion ``y[r, t] = u[r, t] - sum_{k=1..p} ar[r, t, k-1] * y[r, t-k]``.

    Args:
        u: ``(R, T)`` input.
        ar: ``(R, T, p)`` denominator coefficients without ``a0`` (may be an expanded view).
        y_hist: ``(R, p)`` outputs before the block, most recent first (``y[r, -1]`` first).

    On CPU this is torchlpc's ``LPC`` Function (a compiled loop with exact gradients w.r.t. all
    three inputs). It is called directly rather than through ``sample_wise_lpc``, whose first-order
    path uses a scan kernel that allocates the whole signal on the C stack.

    torchlpc parallelises over rows with a grain of one row, so any call with several rows opens
    a parallel region; on a busy machine that costs milliseconds per call, which dominates short
    blocks (streaming). Small problems therefore run as one flattened row in which each row is
    preceded by its history under zero coefficients: bit-for-bit the same result for finite
    signals (an Inf in one row would turn into NaN in the rows after it, as ``0 * inf``).

    On other devices (no torchlpc kernel) a pure-torch parallel scan is used (``_all_pole_scan``).
    """
    rows, n_samples, order = ar.shape
    if u.device.type != "cpu":
        return _all_pole_scan(u, ar, y_hist)
    lpc = _lpc_function()
    if rows > 1 and rows * n_samples <= _FLATTEN_MAX_SAMPLES:
        # Each row becomes [its history (oldest first), its block]; the history positions get
        # zero coefficients, so the recursion reproduces them exactly (y = u - 0 * ...), and the
        # block's samples then see exactly the values and operation order of the batched call.
        width = order + n_samples
        u_flat = torch.cat([y_hist.flip(-1), u], dim=1).reshape(1, rows * width)
        ar_flat = torch.cat([ar.new_zeros(rows, order, order), ar], dim=1)
        y = lpc.apply(u_flat, ar_flat.reshape(1, rows * width, order), u.new_zeros(1, order))
        return y.reshape(rows, width)[:, order:]
    return lpc.apply(u.contiguous(), ar.contiguous(), y_hist.contiguous())


@lru_cache(maxsize=None)
def _static_iir_kernel():
    """The compiled loop of :class:`StaticIIR` (numba, cached on disk; imported lazily)."""
    from numba import njit

    @njit(cache=True, nogil=True)
    def kernel(x, b, a, x_hist, y_hist):  # pragma: no cover - compiled
        # y[t] = sum_k b[k] x[t-k] - sum_k a[k] y[t-1-k]; x[-1-k] = x_hist[k], y[-1-k] = y_hist[k]
        rows, n = x.shape
        nb = b.shape[1]
        order = a.shape[1]
        y = np.empty_like(x)
        for r in range(rows):
            if nb == 3 and order == 2:  # the biquad: its four histories live in registers
                b0, b1, b2 = b[r, 0], b[r, 1], b[r, 2]
                a1, a2 = a[r, 0], a[r, 1]
                x1, x2 = x_hist[r, 0], x_hist[r, 1]
                y1, y2 = y_hist[r, 0], y_hist[r, 1]
                for t in range(n):
                    x0 = x[r, t]
                    y0 = b0 * x0 + b1 * x1 + b2 * x2 - a1 * y1 - a2 * y2
                    y[r, t] = y0
                    x2 = x1
                    x1 = x0
                    y2 = y1
                    y1 = y0
                continue
            if nb == 2 and order == 1:  # first order: one-pole filters, DC blockers
                b0, b1, a1 = b[r, 0], b[r, 1], a[r, 0]
                x1, y1 = x_hist[r, 0], y_hist[r, 0]
                for t in range(n):
                    x0 = x[r, t]
                    y0 = b0 * x0 + b1 * x1 - a1 * y1
                    y[r, t] = y0
                    x1 = x0
                    y1 = y0
                continue
            if nb == 4 and order == 3:  # third order (the tone stack): the generic loop's exact
                # operation sequence (float64 accumulator, stored outputs fed back), in registers
                b0, b1, b2, b3 = b[r, 0], b[r, 1], b[r, 2], b[r, 3]
                a1, a2, a3 = a[r, 0], a[r, 1], a[r, 2]
                x1, x2, x3 = x_hist[r, 0], x_hist[r, 1], x_hist[r, 2]
                y1, y2, y3 = y_hist[r, 0], y_hist[r, 1], y_hist[r, 2]
                for t in range(n):
                    x0 = x[r, t]
                    acc = 0.0
                    acc += b0 * x0
                    acc += b1 * x1
                    acc += b2 * x2
                    acc += b3 * x3
                    acc -= a1 * y1
                    acc -= a2 * y2
                    acc -= a3 * y3
                    y[r, t] = acc
                    x3 = x2
                    x2 = x1
                    x1 = x0
                    y3 = y2
                    y2 = y1
                    y1 = y[r, t]
                continue
            for t in range(n):
                acc = 0.0
                for k in range(nb):
                    back = t - k
                    acc += b[r, k] * (x[r, back] if back >= 0 else x_hist[r, -back - 1])
                for k in range(order):
                    back = t - 1 - k
                    acc -= a[r, k] * (y[r, back] if back >= 0 else y_hist[r, -back - 1])
                y[r, t] = acc
        return y

    return kernel


def _static_iir_numpy(x: Tensor, b: Tensor, a: Tensor, x_hist: Tensor, y_hist: Tensor) -> Tensor:
    arrays = (as_numpy(t, None) for t in (x, b, a, x_hist, y_hist))
    return torch.from_numpy(_static_iir_kernel()(*arrays))


def _lagged_sum(g: Tensor, signal: Tensor, history: Tensor, taps: int, offset: int) -> Tensor:
    """``out[:, k] = sum_t g[t] s[t - offset - k]`` for k < taps, ``s[-1-m] = history[:, m]``."""
    n = g.shape[-1]
    if taps == 0:
        return g.new_zeros(g.shape[0], 0)
    padded = torch.cat([history.flip(-1), signal], dim=-1)  # padded[:, h + t] = s[t]
    h = history.shape[-1]
    return torch.stack([(g * padded[:, h - offset - k : h - offset - k + n]).sum(-1) for k in range(taps)], dim=-1)


def _history_after(history: Tensor, block: Tensor, order: int) -> Tensor:
    """The last ``order`` samples after ``block`` (most recent first), reaching into ``history``."""
    if order == 0:
        return history
    if block.shape[-1] >= order:
        return block[..., block.shape[-1] - order :].flip(-1)
    joined = torch.cat([history.flip(-1), block], dim=-1)
    return joined[..., joined.shape[-1] - order :].flip(-1)


class StaticIIR(torch.autograd.Function):
    """Recursive filter with coefficients fixed over time, on CPU: a compiled loop with an exact
    backward (the biquad runs with its four histories in registers).

    Direct form I per row ``r``: ``y[t] = sum_k b[k] x[t-k] - sum_{k>=1} a[k] y[t-k]`` (``a``
    given without ``a0``), histories most recent first. The adjoint of the recursion is the
    same all-pole recursion run backwards in time, so the backward pass calls the compiled loop
    once more, on the reversed gradient: ``g = reverse(allpole(reverse(dL/dy)))``; then
    ``dL/dx[t] = sum_k b[k] g[t+k]`` (the numerator's adjoint, one more loop call),
    ``dL/db[k] = sum_t g[t] x[t-k]``, ``dL/da[k] = -sum_t g[t] y[t-1-k]``, and the histories'
    gradients from the first samples of ``g``.
    """

    @staticmethod
    def forward(ctx, x: Tensor, b: Tensor, a: Tensor, x_hist: Tensor, y_hist: Tensor) -> Tensor:
        y = _static_iir_numpy(x, b, a, x_hist, y_hist)
        ctx.save_for_backward(x, b, a, x_hist, y_hist, y)
        return y

    @staticmethod
    def backward(ctx, grad_y: Tensor):
        x, b, a, x_hist, y_hist, y = ctx.saved_tensors
        rows, n = x.shape
        nb, order = b.shape[1], a.shape[1]
        one = torch.ones(rows, 1, dtype=x.dtype)
        no_history = x.new_zeros(rows, 0)
        zeros = x.new_zeros(rows, order)
        # g: gradient w.r.t. the numerator's output u (y = allpole(u))
        g = _static_iir_numpy(grad_y.flip(-1), one, a, no_history, zeros).flip(-1)
        grads = [None] * 5
        if ctx.needs_input_grad[0]:  # x: the numerator's adjoint, a correlation with b
            grads[0] = _static_iir_numpy(g.flip(-1), b, no_history, x.new_zeros(rows, nb - 1), no_history).flip(-1)
        if ctx.needs_input_grad[1]:
            grads[1] = _lagged_sum(g, x, x_hist, nb, 0)
        if ctx.needs_input_grad[2]:
            grads[2] = -_lagged_sum(g, y, y_hist, order, 1)
        head = F.pad(g[:, : max(nb, order)], (0, max(0, max(nb, order) - n)))
        if ctx.needs_input_grad[3]:  # x[-1-k] reaches u[j-1-k] through b[j], j >= k+1
            grads[3] = (
                torch.stack([(b[:, k + 1 :] * head[:, : nb - 1 - k]).sum(-1) for k in range(nb - 1)], dim=-1)
                if nb > 1
                else x_hist.new_zeros(rows, 0)
            )
        if ctx.needs_input_grad[4]:  # y[-1-k] reaches u[j-k] through -a[j], j >= k
            grads[4] = (
                torch.stack([-(a[:, k:] * head[:, : order - k]).sum(-1) for k in range(order)], dim=-1)
                if order
                else y_hist.new_zeros(rows, 0)
            )
        return tuple(grads)


@lru_cache(maxsize=None)
def _tdf2_kernel():
    """The compiled loop of :class:`StaticTDF2` (numba, cached on disk; imported lazily)."""
    from numba import njit

    @njit(cache=True, nogil=True)
    def kernel(x, b, a, s0):  # pragma: no cover - compiled
        # y[t] = b0 x[t] + s1;  s_j = b_j x[t] - a_j y[t] + s_{j+1}  (s_{p+1} = 0), JUCE's order
        rows, n = x.shape
        p = s0.shape[1]
        y = np.empty_like(x)
        s_out = np.empty_like(s0)
        for r in range(rows):
            if p == 2:
                b0, b1, b2 = b[r, 0], b[r, 1], b[r, 2]
                a1, a2 = a[r, 0], a[r, 1]
                s1, s2 = s0[r, 0], s0[r, 1]
                for t in range(n):
                    x0 = x[r, t]
                    y0 = b0 * x0 + s1
                    s1 = b1 * x0 - a1 * y0 + s2
                    s2 = b2 * x0 - a2 * y0
                    y[r, t] = y0
                s_out[r, 0] = s1
                s_out[r, 1] = s2
                continue
            if p == 1:
                b0, b1, a1 = b[r, 0], b[r, 1], a[r, 0]
                s1 = s0[r, 0]
                for t in range(n):
                    x0 = x[r, t]
                    y0 = b0 * x0 + s1
                    s1 = b1 * x0 - a1 * y0
                    y[r, t] = y0
                s_out[r, 0] = s1
                continue
            st = s0[r].copy()
            for t in range(n):
                x0 = x[r, t]
                y0 = b[r, 0] * x0 + (st[0] if p > 0 else 0.0)
                for j in range(p - 1):
                    st[j] = b[r, j + 1] * x0 - a[r, j] * y0 + st[j + 1]
                if p > 0:
                    st[p - 1] = b[r, p] * x0 - a[r, p - 1] * y0
                y[r, t] = y0
            s_out[r] = st
        return y, s_out

    return kernel


class StaticTDF2(torch.autograd.Function):
    """Static recursive filter in transposed direct form II on CPU (compiled loop, exact backward).

    Same filter as :class:`StaticIIR` (``b`` of ``p + 1`` taps, ``a`` of ``p`` without ``a0``),
    but computed in TDF-II with JUCE's operation order and carrying the ``p`` TDF-II states
    (scipy's ``zi``), so float32 renders round exactly like pedalboard's/JUCE's filters. With
    initial state ``s``, ``y = allpole_a(numerator_b(x) + e)`` where ``e[j] = s[j]`` for
    ``j < p``: the backward is StaticIIR's with zero histories, plus ``dL/ds[j] = g[j]``.
    Returns ``(y, final_state)``; the final state is exact but carries no gradient (see
    :func:`_tdf2_final_state`).
    """

    @staticmethod
    def forward(ctx, x: Tensor, b: Tensor, a: Tensor, s0: Tensor) -> tuple[Tensor, Tensor]:
        arrays = (as_numpy(t, None) for t in (x, b, a, s0))
        y_np, s_np = _tdf2_kernel()(*arrays)
        y, s_out = torch.from_numpy(y_np), torch.from_numpy(s_np)
        ctx.save_for_backward(x, b, a, y)
        ctx.mark_non_differentiable(s_out)
        return y, s_out

    @staticmethod
    def backward(ctx, grad_y: Tensor, _grad_s: Tensor):
        x, b, a, y = ctx.saved_tensors
        rows, n = x.shape
        p = a.shape[1]
        one = torch.ones(rows, 1, dtype=x.dtype)
        no_history = x.new_zeros(rows, 0)
        g = _static_iir_numpy(grad_y.flip(-1), one, a, no_history, x.new_zeros(rows, p)).flip(-1)
        grads = [None] * 4
        if ctx.needs_input_grad[0]:
            grads[0] = _static_iir_numpy(g.flip(-1), b, no_history, x.new_zeros(rows, p), no_history).flip(-1)
        if ctx.needs_input_grad[1]:
            grads[1] = _lagged_sum(g, x, x.new_zeros(rows, p), p + 1, 0)
        if ctx.needs_input_grad[2]:
            grads[2] = -_lagged_sum(g, y, x.new_zeros(rows, p), p, 1)
        if ctx.needs_input_grad[3]:
            grads[3] = F.pad(g[:, :p], (0, max(0, p - n)))
        return tuple(grads)


def _tdf2_final_state(x: Tensor, y: Tensor, b: Tensor, a: Tensor, s0: Tensor) -> Tensor:
    """TDF-II states after a block, as a differentiable expression of its last samples.

    ``s_j = sum_{k=j}^{p} (b_k x[n-1-(k-j)] - a_k y[n-1-(k-j)])`` with samples before the block
    replaced by the initial state's contribution (exact for any block length). Rows ``(R, n)``,
    ``b`` ``(R, p+1)``, ``a`` ``(R, p)`` without ``a0``, ``s0`` ``(R, p)``.
    """
    p = s0.shape[1]
    n = x.shape[1]
    a_full = F.pad(a, (1, 0))  # a_0 = 0 here: the a0 term is the output itself
    out = []
    for j in range(1, p + 1):
        acc = x.new_zeros(x.shape[0])
        for k in range(j, p + 1):
            t = n - 1 - (k - j)
            if t < 0:
                break
            acc = acc + b[:, k] * x[:, t] - a_full[:, k] * y[:, t]
        else:
            out.append(acc)
            continue
        # the block is shorter than the lag: the rest of the sum is the state carried in
        out.append(acc + s0[:, j - 1 + n])
    return torch.stack(out, dim=-1) if out else s0


def _iir_tdf2(x: Tensor, b4: Tensor, a4: Tensor, state: Tensor | None) -> tuple[Tensor, Tensor]:
    """``iir(..., form="tdf2")``: see :func:`iir`."""
    batch, channels, n = x.shape
    p = max(b4.shape[-1], a4.shape[-1]) - 1
    b4 = F.pad(b4, (0, p + 1 - b4.shape[-1]))
    a4 = F.pad(a4, (0, p + 1 - a4.shape[-1]))
    if state is None:
        s0 = x.new_zeros(batch, channels, p)
    else:
        if not isinstance(state, Tensor) or state.shape != (batch, channels, p):
            got = tuple(state.shape) if isinstance(state, Tensor) else type(state).__name__
            raise ValueError(
                f"form='tdf2' takes its state as one tensor of TDF-II states shaped (batch, channels, "
                f"max(nb, na) - 1) = {(batch, channels, p)}, got {got}"
            )
        s0 = state.to(x.dtype)
    if n == 0:
        return x, s0
    a0_inv = 1.0 / a4[..., :1]
    bn, an = b4 * a0_inv, a4[..., 1:] * a0_inv
    static = bn.shape[2] == 1 and an.shape[2] == 1
    rows = batch * channels
    if static and x.device.type == "cpu":
        xr = x.reshape(rows, n)
        br = bn[:, :, 0].expand(batch, channels, p + 1).reshape(rows, p + 1)
        ar = an[:, :, 0].expand(batch, channels, p).reshape(rows, p)
        sr = s0.reshape(rows, p)
        if torch.is_grad_enabled() and any(t.requires_grad for t in (xr, br, ar, sr)):
            y, s_exact = StaticTDF2.apply(xr, br, ar, sr)
        else:  # nothing to differentiate: the same loop, without the autograd Function around it,
            # and the loop's own final state (no expression to carry a gradient)
            arrays = (as_numpy(t, None) for t in (xr, br, ar, sr))
            y, s_exact = (torch.from_numpy(a) for a in _tdf2_kernel()(*arrays))
            return y.reshape(batch, channels, n), s_exact.reshape(batch, channels, p)
        s_graph = _tdf2_final_state(xr, y, br, ar, sr)
        s_out = s_graph + (s_exact - s_graph).detach()  # exact value, the expression's gradient
        return y.reshape(batch, channels, n), s_out.reshape(batch, channels, p)
    # time-varying coefficients or another device: by linearity, the zero-state response plus
    # the all-pole response to the state injected at the first p samples
    y, _ = iir(x, bn, torch.cat([torch.ones_like(an[..., :1]), an], dim=-1))
    if p:
        e = F.pad(s0, (0, max(0, n - p)))[..., :n]
        one = torch.ones(1, dtype=x.dtype, device=x.device)
        y_e, _ = iir(e, one, torch.cat([torch.ones_like(an[..., :1]), an], dim=-1))
        y = y + y_e
    b_last = bn[:, :, -1].expand(batch, channels, p + 1).reshape(rows, p + 1)
    a_last = an[:, :, -1].expand(batch, channels, p).reshape(rows, p)
    s_out = _tdf2_final_state(x.reshape(rows, n), y.reshape(rows, n), b_last, a_last, s0.reshape(rows, p))
    return y, s_out.reshape(batch, channels, p)


def _all_pole_scan(u: Tensor, ar: Tensor, y_hist: Tensor) -> Tensor:
    """Pure-torch all-pole recursion (same contract as ``_all_pole``) by a parallel prefix scan.

    The state ``s[t] = (y[t], ..., y[t-p+1])`` follows the affine map
    ``s[t] = M[t] s[t-1] + e0 u[t]`` with the companion matrix ``M[t]``; the maps are composed by
    a Hillis-Steele scan in ``ceil(log2 T)`` vectorised steps, differentiable by autograd.
    Used on devices without a torchlpc kernel (CUDA); ``O(T log T)`` work and memory.
    """
    rows, n_samples, order = ar.shape
    shift = torch.eye(order, dtype=ar.dtype, device=ar.device)[:-1]  # rows e_0 .. e_{p-2}
    mats = torch.cat(
        [-ar.unsqueeze(-2), shift.expand(rows, n_samples, order - 1, order)], dim=-2
    )  # (R, T, p, p)
    offs = F.pad(u.unsqueeze(-1), (0, order - 1))  # (R, T, p)
    step = 1
    while step < n_samples:
        later = mats[:, step:]
        new_mats = torch.matmul(later, mats[:, :-step])
        new_offs = torch.matmul(later, offs[:, :-step].unsqueeze(-1)).squeeze(-1) + offs[:, step:]
        mats = torch.cat([mats[:, :step], new_mats], dim=1)
        offs = torch.cat([offs[:, :step], new_offs], dim=1)
        step *= 2
    states = torch.matmul(mats, y_hist[:, None, :, None]).squeeze(-1) + offs
    return states[..., 0]


def _as_coefficients(coef: Tensor, name: str, x: Tensor) -> Tensor:
    """Check a coefficient tensor against x and view it as (B|1, C|1, T|1, n)."""
    if not isinstance(coef, Tensor):
        coef = torch.as_tensor(coef, dtype=x.dtype, device=x.device)
    if coef.is_complex():
        raise TypeError(f"{name} must be real, got dtype {coef.dtype}")
    if coef.ndim < 1 or coef.ndim > 4 or coef.shape[-1] < 1:
        raise ValueError(
            f"{name} must be shaped (..., n) with ... broadcastable to x's (batch, channels, "
            f"samples) = {tuple(x.shape)} and n >= 1, got shape {tuple(coef.shape)}"
        )
    lead = (1,) * (4 - coef.ndim) + tuple(coef.shape[:-1])
    for size, target, dim_name in zip(lead, x.shape, ("batch", "channels", "samples")):
        if size not in (1, target):
            raise ValueError(
                f"{name} shaped {tuple(coef.shape)} does not broadcast to x shaped "
                f"{tuple(x.shape)}: its {dim_name} dimension is {size}, expected 1 or {target}; "
                f"coefficients are shaped (batch|1, channels|1, samples|1, n)"
            )
    if coef.dtype != x.dtype:
        coef = coef.to(x.dtype)
    return coef.reshape(lead + (coef.shape[-1],))


def _as_history(h: Tensor, name: str, x: Tensor, order: int) -> Tensor:
    batch, channels, _ = x.shape
    if not isinstance(h, Tensor):
        raise TypeError(f"state {name} must be a tensor, got {type(h).__name__}")
    expected = (batch, channels, order)
    if h.ndim > 3 or _broadcast_shape(h.shape, expected) != expected:
        raise ValueError(
            f"state {name} shaped {tuple(h.shape)} does not fit: expected (batch, channels, "
            f"order) = {expected} (most recent sample first)"
        )
    return h.to(x.dtype).expand(batch, channels, order)


def iir(
    x: Tensor,
    b: Tensor,
    a: Tensor,
    state: tuple[Tensor, Tensor] | Tensor | None = None,
    form: str = "df1",
) -> tuple[Tensor, Any]:
    """Exact, possibly time-varying, recursive (IIR) filter with explicit state.

    Direct form I, per sample ``n`` (``a0 = a[..., 0]``, 1 for the designs in this module):

        a0[n] y[n] = sum_{k>=0} b_k[n] x[n-k] - sum_{k>=1} a_k[n] y[n-k]

    The FIR numerator is a vectorised sum over shifted copies of the input padded with the input
    history (static ``b`` broadcasts over time without being materialised); the all-pole
    denominator runs in torchlpc's compiled recursion (the Function behind
    ``torchlpc.sample_wise_lpc``; exact gradients w.r.t. input, coefficients and initial state),
    on devices other than CPU in a pure-torch parallel scan. No python loop over samples.

    Args:
        x: ``(batch, channels, samples)`` real tensor.
        b: numerator, ``(..., nb)``; ``...`` broadcasts to ``(batch, channels, samples)``, i.e.
            ``b`` is shaped ``(B|1, C|1, T|1, nb)`` (missing leading dims count as 1); ``T == 1``
            means static coefficients, ``T == samples`` one set per sample.
        a: denominator, ``(..., na)`` likewise; ``a[..., 0]`` divides everything (so it needs
            not be 1, but must not be 0). For stability the poles must stay inside the unit
            circle; this is not checked.
        state: ``(x_history, y_history)`` shaped ``(batch, channels, nb - 1)`` and
            ``(batch, channels, na - 1)``, most recent sample first (``x_history[..., 0]`` is
            ``x[-1]``); ``None`` means zeros. With ``form="tdf2"``: one tensor of transposed
            direct form II states shaped ``(batch, channels, max(nb, na) - 1)`` (scipy's ``zi``).
        form: ``"df1"`` (default: direct form I, the histories above) or ``"tdf2"``: static
            coefficients on CPU run in transposed direct form II with JUCE's operation order, so
            a float32 render rounds exactly like pedalboard's filters (the pedalboard twins use
            it: at ill-conditioned settings, e.g. a 20 Hz shelf at Q 20, the two forms' float32
            roundoff differs by up to 1e-3 ESR). Time-varying ``tdf2`` filters the same way as
            ``df1`` and converts the state.

    Returns:
        ``(y, state)``: ``y`` shaped like ``x``; ``state`` the histories after the block in the
        same layout, so that filtering a signal block by block with the carried state equals
        filtering it at once (blocks shorter than the filter order included).
        Coefficients are cast to ``x.dtype``. Differentiable w.r.t. ``x``, ``b``, ``a`` and the
        state.

    Raises:
        ValueError: ``x`` is not 3-D, coefficient or state shapes do not fit.
        TypeError: non-tensor or complex inputs.

    Devices: CPU (torchlpc's compiled recursion, or the compiled TDF-II loop) and any torch device
    (a pure-torch parallel scan).
    Gradients: exact w.r.t. ``x``, ``b``, ``a`` and the initial state.
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a torch.Tensor shaped (batch, channels, samples), got {type(x).__name__}")
    if x.ndim != 3:
        raise ValueError(
            f"x must be shaped (batch, channels, samples), got {x.ndim}-D shape {tuple(x.shape)}"
        )
    if not x.is_floating_point():
        raise TypeError(f"x must be a real floating-point tensor, got dtype {x.dtype}")
    batch, channels, n_samples = x.shape
    b4 = _as_coefficients(b, "b", x)
    a4 = _as_coefficients(a, "a", x)
    if form == "tdf2":
        return _iir_tdf2(x, b4, a4, state)
    if form != "df1":
        raise ValueError(f"form must be 'df1' or 'tdf2', got {form!r}")
    nb, na = b4.shape[-1], a4.shape[-1]
    fir_order, ar_order = nb - 1, na - 1

    if state is None:
        x_hist = x.new_zeros(batch, channels, fir_order)
        y_hist = x.new_zeros(batch, channels, ar_order)
    else:
        if not isinstance(state, (tuple, list)) or len(state) != 2:
            raise ValueError(
                "state must be a pair (x_history, y_history) shaped (batch, channels, nb - 1) and "
                f"(batch, channels, na - 1), got {type(state).__name__}"
            )
        x_hist = _as_history(state[0], "x_history", x, fir_order)
        y_hist = _as_history(state[1], "y_history", x, ar_order)

    if n_samples == 0:
        return x, (x_hist, y_hist)

    # A static denominator's a0 is divided into b (a few numbers) rather than into the signal.
    a_static = a4.shape[2] == 1
    if a_static:
        b4 = b4 / a4[..., :1]

    if (
        a_static
        and b4.shape[2] == 1
        and x.device.type == "cpu"
        and nb <= _SHIFTED_SUM_MAX_TAPS
        and ar_order <= _SHIFTED_SUM_MAX_TAPS
    ):
        # static coefficients on CPU: one compiled loop for numerator and denominator
        rows = batch * channels
        args = (
            x.reshape(rows, n_samples),
            b4[:, :, 0].expand(batch, channels, nb).reshape(rows, nb),
            (a4[:, :, 0, 1:] / a4[:, :, 0, :1]).expand(batch, channels, ar_order).reshape(rows, ar_order),
            x_hist.reshape(rows, fir_order),
            y_hist.reshape(rows, ar_order),
        )
        if torch.is_grad_enabled() and any(t.requires_grad for t in args):
            y = StaticIIR.apply(*args)
        else:  # nothing to differentiate: the same loop, without the autograd Function around it
            y = _static_iir_numpy(*args)
        y = y.reshape(batch, channels, n_samples)
        return y, (_history_after(x_hist, x, fir_order), _history_after(y_hist, y, ar_order))

    # ---- FIR part: fir[n] = sum_k b_k[n] x[n-k], with x[n-k] for n-k < 0 from the history.
    if fir_order > 0:
        x_ext = torch.cat([x_hist.flip(-1), x], dim=-1)  # (B, C, fir_order + T)
    else:
        x_ext = x
    # A sum of nb shifted, scaled copies: static coefficients (T == 1) broadcast over time without
    # being materialised. For the short numerators used here this is faster than conv1d (which
    # measured 3-5x slower for 3 taps on 10 s of audio on CPU) and equal up to rounding.
    # Long static numerators go through conv1d instead.
    if nb > _SHIFTED_SUM_MAX_TAPS and b4.shape[2] == 1:
        groups = batch * channels
        weight = b4.flip(-1).expand(batch, channels, 1, nb).reshape(groups, 1, nb)
        fir = F.conv1d(
            x_ext.reshape(1, groups, x_ext.shape[-1]), weight, groups=groups
        ).reshape(batch, channels, n_samples)
    else:
        fir = x * b4[..., 0]
        for k in range(1, nb):
            start = fir_order - k
            fir = torch.addcmul(fir, x_ext[..., start : start + n_samples], b4[..., k])

    # ---- normalise by a0 (exact no-op for a0 == 1) and run the all-pole part.
    if not a_static:
        fir = fir / a4[..., 0]
    if ar_order > 0:
        ar = (a4[..., 1:] / a4[..., :1]).expand(batch, channels, n_samples, ar_order)
        y = _all_pole(
            fir.reshape(batch * channels, n_samples),
            ar.reshape(batch * channels, n_samples, ar_order),
            y_hist.reshape(batch * channels, ar_order),
        ).reshape(batch, channels, n_samples)
    else:
        y = fir

    # ---- new state, most recent sample first.
    if fir_order == 0:
        new_x_hist = x_hist
    else:
        new_x_hist = x_ext[..., x_ext.shape[-1] - fir_order :].flip(-1)
    if ar_order == 0:
        new_y_hist = y_hist
    elif n_samples >= ar_order:
        new_y_hist = y[..., n_samples - ar_order :].flip(-1)
    else:
        y_ext = torch.cat([y_hist.flip(-1), y], dim=-1)
        new_y_hist = y_ext[..., y_ext.shape[-1] - ar_order :].flip(-1)
    return y, (new_x_hist, new_y_hist)


@lru_cache(maxsize=None)
def _sos_kernel():
    """The compiled loop of :func:`sos_filter` (numba, cached on disk; imported lazily)."""
    from numba import njit

    @njit(cache=True, nogil=True)
    def kernel(x, sos, zi):  # pragma: no cover - compiled
        # y = x through the biquads sos[r, s] = (b0, b1, b2, a1, a2) (a0 divided out) in order;
        # zi[r, s] = (x[-1], x[-2], y[-1], y[-2]) of section s, updated in place. Sections run
        # two at a time, sample by sample, so the two recursions overlap in the pipeline; each
        # section's arithmetic is that of StaticIIR's biquad loop (bit-identical results).
        rows, n = x.shape
        n_sections = sos.shape[1]
        y = x.copy()
        for r in range(rows):
            s = 0
            while s < n_sections:
                b0, b1, b2, a1, a2 = sos[r, s, 0], sos[r, s, 1], sos[r, s, 2], sos[r, s, 3], sos[r, s, 4]
                x1, x2, y1, y2 = zi[r, s, 0], zi[r, s, 1], zi[r, s, 2], zi[r, s, 3]
                if s + 1 < n_sections:
                    c0, c1, c2 = sos[r, s + 1, 0], sos[r, s + 1, 1], sos[r, s + 1, 2]
                    d1, d2 = sos[r, s + 1, 3], sos[r, s + 1, 4]
                    u1, u2, w1, w2 = zi[r, s + 1, 0], zi[r, s + 1, 1], zi[r, s + 1, 2], zi[r, s + 1, 3]
                    for t in range(n):
                        x0 = y[r, t]
                        y0 = b0 * x0 + b1 * x1 + b2 * x2 - a1 * y1 - a2 * y2
                        w0 = c0 * y0 + c1 * u1 + c2 * u2 - d1 * w1 - d2 * w2
                        y[r, t] = w0
                        x2 = x1
                        x1 = x0
                        y2 = y1
                        y1 = y0
                        u2 = u1
                        u1 = y0
                        w2 = w1
                        w1 = w0
                    zi[r, s + 1, 0], zi[r, s + 1, 1], zi[r, s + 1, 2], zi[r, s + 1, 3] = u1, u2, w1, w2
                else:
                    for t in range(n):
                        x0 = y[r, t]
                        y0 = b0 * x0 + b1 * x1 + b2 * x2 - a1 * y1 - a2 * y2
                        y[r, t] = y0
                        x2 = x1
                        x1 = x0
                        y2 = y1
                        y1 = y0
                zi[r, s, 0], zi[r, s, 1], zi[r, s, 2], zi[r, s, 3] = x1, x2, y1, y2
                s += 2
        return y

    return kernel


def sos_filter(
    x: Tensor,
    sections: Sequence[tuple[Tensor, Tensor]],
    state: Sequence[tuple[Tensor, Tensor]] | None = None,
) -> tuple[Tensor, tuple[tuple[Tensor, Tensor], ...]]:
    """A cascade of recursive filters (second-order sections, like scipy's ``sosfilt``) with
    explicit per-section state; equal to calling :func:`iir` once per section in order.

    When every section is a static biquad (3 + 3 coefficients, no time variation), ``x`` is on
    CPU and nothing needs a gradient (no_grad, or no input requiring grad), the whole cascade
    runs in ONE compiled pass over the samples (two sections at a time in registers) with no
    intermediate tensors. Each section's arithmetic and operation order is that of :func:`iir`'s
    static loop in ``x``'s dtype, so the output and the state are bit-identical to the
    per-section path. Otherwise (gradients, time-varying coefficients, other orders, other
    devices) it is exactly the per-section :func:`iir` loop, differentiable as usual.

    Args:
        x: ``(batch, channels, samples)`` real tensor.
        sections: ``[(b, a), ...]`` in processing order, each as :func:`iir` takes them
            (``(B|1, C|1, T|1, n)`` or fewer leading dims; ``a[..., 0]`` divides).
        state: one :func:`iir` state ``(x_history, y_history)`` per section, or ``None`` (zeros).

    Returns:
        ``(y, states)``: ``y`` shaped like ``x``; ``states`` a tuple of the sections' states
        after the block, in :func:`iir`'s layout.

    Raises:
        ValueError / TypeError: as :func:`iir`, or when ``state`` does not hold one entry per
        section.

    Devices: CPU (one compiled pass for a static cascade without gradients) and any torch device
    (the per-section :func:`iir` path).
    Gradients: exact w.r.t. the input, the coefficients and the state (the :func:`iir` path).
    """
    sections = list(sections)
    if state is None:
        state = [None] * len(sections)
    else:
        state = list(state)
        if len(state) != len(sections):
            raise ValueError(
                f"sos_filter state must hold one (x_history, y_history) per section: "
                f"{len(sections)} sections, got {len(state)} states"
            )
    fused = (
        isinstance(x, Tensor)
        and x.ndim == 3
        and x.is_floating_point()
        and x.device.type == "cpu"
        and x.shape[-1] > 0
        and len(sections) > 0
    )
    if fused:
        tensors = [x] + [t for ba in sections for t in ba] + [t for st in state if st is not None for t in st]
        if torch.is_grad_enabled() and any(isinstance(t, Tensor) and t.requires_grad for t in tensors):
            fused = False
    if fused:
        batch, channels, n = x.shape
        rows = batch * channels
        coefs, zis = [], []
        for (b, a), st in zip(sections, state):
            b4 = _as_coefficients(b, "b", x)
            a4 = _as_coefficients(a, "a", x)
            if b4.shape[-1] != 3 or a4.shape[-1] != 3 or b4.shape[2] != 1 or a4.shape[2] != 1:
                fused = False
                break
            bn = b4 / a4[..., :1]  # the same normalisations as iir's static path
            an = a4[:, :, 0, 1:] / a4[:, :, 0, :1]
            coefs.append(
                torch.cat([bn[:, :, 0].expand(batch, channels, 3), an.expand(batch, channels, 2)], dim=-1)
            )
            if st is None:
                zis.append(x.new_zeros(batch, channels, 4))
            else:
                if not isinstance(st, (tuple, list)) or len(st) != 2:
                    raise ValueError(
                        "each sos_filter state must be a pair (x_history, y_history) shaped "
                        f"(batch, channels, 2), got {type(st).__name__}"
                    )
                zis.append(
                    torch.cat([_as_history(st[0], "x_history", x, 2), _as_history(st[1], "y_history", x, 2)], -1)
                )
    if not fused:
        y = x
        new_state = []
        for (b, a), st in zip(sections, state):
            y, s = iir(y, b, a, st)
            new_state.append(s)
        return y, tuple(new_state)
    sos = as_numpy(torch.stack(coefs, dim=2).reshape(rows, len(coefs), 5), None)
    zi = np.ascontiguousarray(as_numpy(torch.stack(zis, dim=2).reshape(rows, len(zis), 4), None)).copy()
    y = torch.from_numpy(_sos_kernel()(as_numpy(x.reshape(rows, n), None), sos, zi))
    zf = torch.from_numpy(zi).reshape(batch, channels, len(zis), 4)
    new_state = tuple((zf[:, :, i, 0:2].clone(), zf[:, :, i, 2:4].clone()) for i in range(len(zis)))
    return y.reshape(batch, channels, n), new_state


# --------------------------------------------------------------------------------------------
# FIR: frequency-sampling design and (time-varying) filtering
# --------------------------------------------------------------------------------------------

#: Windows :func:`fir_from_magnitudes` applies to the impulse response.
FIR_WINDOWS: tuple[str, ...] = ("hann", "rectangular")


def fir_design_options(owner: str, n_bands: int, n_taps: int | None, window: str) -> int:
    """Check the options of a frequency-sampled FIR (``fir``, ``filtered_noise``) and return
    ``n_taps`` (``2 * (n_bands - 1)`` when None). Raises ValueError naming ``owner``."""
    if isinstance(n_bands, bool) or not isinstance(n_bands, int) or n_bands < 2:
        raise ValueError(f"{owner} n_bands must be an int >= 2, got {n_bands!r}")
    if n_taps is None:
        n_taps = 2 * (n_bands - 1)
    if isinstance(n_taps, bool) or not isinstance(n_taps, int) or n_taps < 1:
        raise ValueError(f"{owner} n_taps must be an int >= 1 (or None for 2 * (n_bands - 1)), got {n_taps!r}")
    if window not in FIR_WINDOWS:
        raise ValueError(f"{owner} window must be one of {', '.join(FIR_WINDOWS)}; got {window!r}")
    return n_taps


def fir_window(n_taps: int, window: str = "hann", *, dtype: torch.dtype | None = None, device=None) -> Tensor:
    """The taper :func:`fir_from_magnitudes` puts on an ``n_taps`` impulse response.

    Centred on tap ``c = n_taps // 2`` and symmetric about it: ``"hann"`` is
    ``0.5 + 0.5 * cos(pi * (m - c) / L)`` with ``L = c`` for even ``n_taps`` (the periodic Hann
    window of length ``n_taps``, as DDSP uses; its tap 0 is zero) and ``L = c + 1`` for odd
    ``n_taps``; ``"rectangular"`` is all ones.

    Args:
        n_taps: length (>= 1).
        window: one of ``FIR_WINDOWS``.
        dtype, device: of the result (default dtype / CPU).

    Returns:
        ``(n_taps,)`` tensor.
    """
    _check_mode(window, FIR_WINDOWS, "FIR window")
    if isinstance(n_taps, bool) or not isinstance(n_taps, int) or n_taps < 1:
        raise ValueError(f"n_taps must be an int >= 1, got {n_taps!r}")
    dtype = dtype or torch.get_default_dtype()
    if window == "rectangular":
        return torch.ones(n_taps, dtype=dtype, device=device)
    c = n_taps // 2
    half = c if n_taps % 2 == 0 else c + 1
    m = torch.arange(n_taps, dtype=torch.float64, device=device)
    return (0.5 + 0.5 * torch.cos(math.pi * (m - c) / half)).to(dtype)


@functools.lru_cache(maxsize=64)
def _fir_gather(
    n_fft: int, n_taps: int, window: str, dtype: torch.dtype, device: torch.device
) -> tuple[Tensor, Tensor]:
    """Index into the zero-phase response and the taper (window and half-weights) of each tap."""
    c = n_taps // 2
    lags = [m - c for m in range(n_taps)]
    lag_set = set(lags)
    half = n_fft // 2
    scale = []
    for k in lags:
        if abs(k) < half:
            scale.append(1.0)
        elif abs(k) == half:  # the lag n_fft / 2 on both sides: half on each
            scale.append(0.5 if -k in lag_set else 1.0)
        else:
            scale.append(0.0)
    index = torch.tensor([k % n_fft for k in lags], device=device)
    taper = torch.tensor(scale, dtype=torch.float64, device=device)
    taper = taper * fir_window(n_taps, window, dtype=torch.float64, device=device)
    return index, taper.to(dtype)


def fir_from_magnitudes(magnitudes: Tensor, n_taps: int | None = None, window: str = "hann") -> Tensor:
    """Linear-phase FIR impulse responses designed by frequency sampling (DDSP's filtered noise).

    The ``n_bands`` magnitudes sample the wanted amplitude response at ``n_bands`` frequencies
    spaced linearly from 0 to Nyquist (band ``i`` at ``i * sample_rate / (2 * (n_bands - 1))``).
    With ``n_fft = 2 * (n_bands - 1)``:

    1. ``h0 = irfft(magnitudes, n_fft)``: the zero-phase (real, even) impulse response;
    2. it is rolled so that its centre lands on tap ``c = n_taps // 2`` (``h[m] = h0[(m - c) mod
       n_fft]`` for ``|m - c| <= n_fft / 2``, zero beyond; a lag of exactly ``n_fft / 2`` present
       on both sides gets half the value on each): causal, delay ``c`` samples, linear phase;
    3. it is multiplied by :func:`fir_window` (Hann by default), which is symmetric about ``c``.

    The taps are symmetric (``h[c + k] == h[c - k]``), so the phase is exactly linear with a
    delay of ``n_taps // 2`` samples; with even ``n_taps`` and the Hann window tap 0 is zero.
    The amplitude response equals the magnitudes smoothed by the window's spectrum (about two
    bands either side for ``n_taps == n_fft``): exact on plateaus, smoothed across steps.
    Follows DDSP (Engel et al. 2020), ``core.frequency_impulse_response`` /
    ``frequency_filter`` (65 bands -> 128 taps, Hann window).

    Args:
        magnitudes: ``(..., n_bands)`` real amplitudes (linear, normally >= 0), ``n_bands >= 2``.
        n_taps: impulse-response length; default ``2 * (n_bands - 1)``.
        window: ``"hann"`` or ``"rectangular"``.

    Returns:
        ``(..., n_taps)`` impulse responses, dtype/device of ``magnitudes``. Differentiable
        (linear in ``magnitudes``).

    Raises:
        ValueError: fewer than 2 bands, a bad ``n_taps`` or an unknown window.
        TypeError: ``magnitudes`` is not a real floating tensor.
    """
    if not isinstance(magnitudes, Tensor):
        raise TypeError(f"magnitudes must be a torch.Tensor shaped (..., n_bands), got {type(magnitudes).__name__}")
    if not magnitudes.is_floating_point():
        raise TypeError(f"magnitudes must be a real floating tensor, got dtype {magnitudes.dtype}")
    if magnitudes.ndim < 1 or magnitudes.shape[-1] < 2:
        raise ValueError(
            f"magnitudes must be shaped (..., n_bands) with n_bands >= 2, got shape {tuple(magnitudes.shape)}"
        )
    n_bands = magnitudes.shape[-1]
    n_fft = 2 * (n_bands - 1)
    if n_taps is None:
        n_taps = n_fft
    if isinstance(n_taps, bool) or not isinstance(n_taps, int) or n_taps < 1:
        raise ValueError(f"n_taps must be an int >= 1, got {n_taps!r}")
    h0 = torch.fft.irfft(magnitudes, n=n_fft, dim=-1)  # zero-phase, (..., n_fft)
    index, taper = _fir_gather(n_fft, n_taps, window, h0.dtype, h0.device)
    return h0.index_select(-1, index) * taper


def _as_fir_taps(impulse_responses: Tensor, x: Tensor) -> Tensor:
    h = impulse_responses
    if not isinstance(h, Tensor):
        raise TypeError(f"impulse_responses must be a torch.Tensor, got {type(h).__name__}")
    if h.is_complex() or not h.is_floating_point():
        raise TypeError(f"impulse_responses must be a real floating tensor, got dtype {h.dtype}")
    if h.ndim == 1:
        h = h.reshape(1, 1, -1)
    elif h.ndim == 2:
        h = h.unsqueeze(1)
    if h.ndim != 3 or h.shape[-1] < 1 or h.shape[1] < 1 or h.shape[0] not in (1, x.shape[0]):
        raise ValueError(
            "impulse_responses must be shaped (n_taps,), (batch|1, n_taps) or (batch|1, frames, n_taps) "
            f"with batch {x.shape[0]} (that of x), got shape {tuple(impulse_responses.shape)}"
        )
    return h.to(x.dtype)


def fir_filter(
    x: Tensor, impulse_responses: Tensor, history: Tensor | None = None, *, previous: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """FIR filtering with explicit state; the impulse response may change over time.

    Static (one impulse response): ``y[n] = sum_k h[k] x[n - k]`` (a matmul over a strided
    view for short blocks; for long ones FFT overlap-save through
    :func:`dspfx.functional.convolution.fft_convolve` when one response serves the whole batch
    and it has >= 32 taps and the block >= 16 x taps, else ``torch.nn.functional.conv1d``).

    Time-varying (``frames >= 2`` impulse responses, or a ``previous`` one): frames on the
    block's causal hop grid like every control (frame ``i`` reached at sample ``(i + 1) n /
    frames - 1``, approached from ``previous``, the previous block's last response, or from
    frame 0 at a render's start); the impulse response at sample ``n`` is the linear
    interpolation of the two frames around ``n`` (the same linear upsampling as
    :func:`dspfx.functional.upsample_control` in ``mode="causal"``), ``y[n] = sum_k h_n[k]
    x[n - k]``.
    It is computed without building ``h_n`` for every sample: by linearity
    ``y[n] = (1 - t) (h_j * x)[n] + t (h_{j+1} * x)[n]`` on the samples between frames ``j`` and
    ``j + 1``, each segment convolved by FFT with both of its frames' responses. Each output
    sample depends only on the input up to it and on its own response, so there is no tail to
    carry: the state is just the last ``n_taps - 1`` input samples.

    Args:
        x: ``(batch, channels, samples)`` real tensor.
        impulse_responses: ``(n_taps,)``, ``(batch|1, n_taps)`` or ``(batch|1, frames, n_taps)``;
            the same response for every channel.
        history: the ``n_taps - 1`` input samples before the block, ``(batch, channels,
            n_taps - 1)``, most recent first (as in :func:`iir`); ``None`` means zeros.
        previous: the response in force at the end of the previous block, ``(n_taps,)``,
            ``(batch|1, n_taps)`` or ``(batch|1, frames, n_taps)`` (its last frame is used).

    Devices and gradients: any torch device (torch ops only); differentiable w.r.t. ``x``, the
    responses, ``previous`` and the history.

    Returns:
        ``(y, history)``: ``y`` shaped like ``x`` and the history after the block, so that
        filtering in blocks with the carried history equals filtering at once (static response).
        Differentiable w.r.t. ``x``, the responses and the history.
    """
    if not isinstance(x, Tensor) or x.ndim != 3 or not x.is_floating_point():
        raise ValueError(
            "x must be a real floating tensor shaped (batch, channels, samples), got "
            f"{tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__}"
        )
    h = _as_fir_taps(impulse_responses, x)
    batch, channels, n = x.shape
    n_taps = h.shape[-1]
    order = n_taps - 1
    if history is None:
        history = x.new_zeros(batch, channels, order)
    else:
        history = _as_history(history, "history", x, order)
    x_ext = torch.cat([history.flip(-1), x], dim=-1) if order > 0 else x
    new_history = x_ext[..., x_ext.shape[-1] - order :].flip(-1) if order > 0 else history
    if n == 0:
        return x, new_history
    frames = h.shape[1]
    if previous is not None and frames == n:
        previous = None  # a hop of one sample reaches every frame on its own sample
    if previous is None and frames == 1:
        y = _fir_static(x_ext, h[:, 0], n)
    elif n == 1:  # one sample, the hop's end: the last frame
        y = _fir_static(x_ext, h[:, -1], n)
    elif previous is None and frames == n:  # one response per sample
        j0, w = frame_positions(n, n, "align_corners", device=x.device)
        y = _fir_time_varying(x_ext, h, n, j0, w)
    else:
        prev = h[:, :1] if previous is None else _as_fir_taps(previous, x)[:, -1:]
        if prev.shape[-1] != n_taps:
            raise ValueError(f"previous holds {prev.shape[-1]}-tap responses, the block {n_taps}-tap ones")
        rows = max(prev.shape[0], h.shape[0])
        h_ext = torch.cat([prev.expand(rows, 1, n_taps), h.expand(rows, frames, n_taps)], dim=1)
        j0, w = frame_positions(frames + 1, n, "causal", device=x.device)
        y = _fir_time_varying(x_ext, h_ext, n, j0, w)
    return y, new_history


#: Static FIR blocks with at most this many (samples x taps) run as a matmul, longer ones in conv1d.
_FIR_UNFOLD_MAX = 1 << 15
#: Static blocks of >= 16 x taps with at least this many taps (one response for the batch) run by FFT.
_FIR_FFT_MIN_TAPS = 32


def _fir_static(x_ext: Tensor, h: Tensor, n: int) -> Tensor:
    """y[b, c, i] = sum_k h[b, k] x_ext[b, c, i + n_taps - 1 - k]; h shaped (batch|1, n_taps)."""
    batch, channels, length = x_ext.shape
    n_taps = h.shape[-1]
    weight = h.flip(-1)
    if n * n_taps <= _FIR_UNFOLD_MAX:
        # short blocks (streaming): a matmul over a strided view beats conv1d's setup cost
        windows = x_ext.unfold(-1, n_taps, 1)  # (B, C, n, n_taps), a view
        return torch.matmul(windows, weight.reshape(weight.shape[0], 1, n_taps, 1)).squeeze(-1)
    if h.shape[0] == 1 and n_taps >= _FIR_FFT_MIN_TAPS and n >= 16 * n_taps:
        # one response for every row: FFT overlap-save (the exact linear convolution up to
        # rounding; about 5x faster than conv1d for 128 taps on one thread)
        from dspfx.functional.convolution import fft_convolve

        order = n_taps - 1
        y, _ = fft_convolve(x_ext[..., order:], h[0], x_ext[..., :order])
        return y
    if h.shape[0] == 1:
        y = F.conv1d(x_ext.reshape(batch * channels, 1, length), weight.reshape(1, 1, n_taps))
    else:
        groups = batch * channels
        weight = weight[:, None, :].expand(batch, channels, n_taps).reshape(groups, 1, n_taps)
        y = F.conv1d(x_ext.reshape(1, groups, length), weight, groups=groups)
    return y.reshape(batch, channels, n)


def _fir_time_varying(x_ext: Tensor, h: Tensor, n: int, j0: Tensor, weight: Tensor) -> Tensor:
    """Per-sample linearly interpolated impulse responses, segment by segment (see fir_filter):
    sample i lies between rows ``j0[i]`` and ``j0[i] + 1`` of ``h``, at fraction ``weight[i]``."""
    batch, channels, _ = x_ext.shape
    frames, n_taps = h.shape[1], h.shape[2]
    device = x_ext.device
    t = weight.to(x_ext.dtype)
    counts = torch.bincount(j0, minlength=frames - 1)
    starts = torch.cumsum(counts, 0) - counts
    seg_len = int(counts.max())
    offset = torch.arange(n, device=device) - starts[j0]
    # input segments: the seg_len samples of segment j plus the n_taps - 1 before them
    span = seg_len + n_taps - 1
    x_pad = F.pad(x_ext, (0, seg_len))
    index = starts[:, None] + torch.arange(span, device=device)  # (frames - 1, span)
    segs = x_pad[..., index]  # (B, C, frames - 1, span)
    n_fft = 1 << (span - 1).bit_length()
    spec_x = torch.fft.rfft(segs, n=n_fft)
    spec_h = torch.fft.rfft(h, n=n_fft).unsqueeze(1)  # (B|1, 1, frames, bins)
    both = torch.stack([spec_x * spec_h[:, :, :-1], spec_x * spec_h[:, :, 1:]], dim=0)
    z = torch.fft.irfft(both, n=n_fft)[..., n_taps - 1 : n_taps - 1 + seg_len]  # (2, B, C, frames-1, L)
    flat = (j0 * seg_len + offset).expand(batch, channels, n)
    z = z.reshape(2, batch, channels, (frames - 1) * seg_len)
    z0 = torch.gather(z[0], -1, flat)
    z1 = torch.gather(z[1], -1, flat)
    return z0 + t * (z1 - z0)
