"""Convolution with (long) impulse responses: FFT convolution with explicit state, and the
pedalboard / JUCE impulse-response normalisation."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["IR_NORMALIZE_TARGET", "IR_NORMALIZE_FLOOR", "normalize_impulse_response", "fft_convolve"]

#: pedalboard (JUCE ``Convolution`` with normalisation on) scales the impulse response so that the
#: energy of its loudest channel becomes ``IR_NORMALIZE_TARGET ** 2``.
IR_NORMALIZE_TARGET = 0.125
#: Blocks with at most this many (samples x taps) are convolved directly, longer ones by FFT.
_DIRECT_MAX = 1 << 14
#: Impulse responses whose loudest channel has less energy than this are left alone.
IR_NORMALIZE_FLOOR = 1e-8


def _as_ir(impulse_response: Tensor, name: str = "impulse_response") -> Tensor:
    h = impulse_response
    if not isinstance(h, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(h).__name__}")
    if h.is_complex() or not h.is_floating_point():
        raise TypeError(f"{name} must be a real floating tensor, got dtype {h.dtype}")
    if h.ndim == 1:
        h = h.unsqueeze(0)
    if h.ndim != 2 or h.shape[0] < 1 or h.shape[1] < 1:
        raise ValueError(
            f"{name} must be shaped (taps,) or (ir_channels, taps) with at least one tap, "
            f"got shape {tuple(impulse_response.shape)}"
        )
    return h


def normalize_impulse_response(impulse_response: Tensor) -> Tensor:
    """Scale an impulse response like pedalboard's ``Convolution`` (JUCE normalisation).

    ``h * 0.125 / sqrt(E)`` where ``E = max_c sum_k h[c, k]^2`` is the energy of the loudest
    channel; the same factor applies to every channel. When ``E < 1e-8`` the response is returned
    unchanged (as pedalboard does).

    Args:
        impulse_response: ``(taps,)`` or ``(ir_channels, taps)`` real tensor.

    Returns:
        A tensor of the same shape; differentiable w.r.t. the response (including through the
        scale factor).

    Reference: pedalboard.Convolution (JUCE ``dsp::Convolution``, ``Normalise::yes``).
    """
    h = _as_ir(impulse_response)
    energy = (h * h).sum(dim=-1).amax()
    loud = energy >= IR_NORMALIZE_FLOOR
    # the where() keeps the gradient finite on both branches (energy 0 would give inf)
    scale = torch.where(loud, IR_NORMALIZE_TARGET * torch.rsqrt(torch.where(loud, energy, torch.ones_like(energy))),
                        torch.ones_like(energy))
    return impulse_response * scale


def _check_channels(channels: int, ir_channels: int) -> None:
    if ir_channels != 1 and channels != 1 and ir_channels != channels:
        raise ValueError(
            f"an impulse response with {ir_channels} channels applies to an input with 1 or "
            f"{ir_channels} channels (a mono response applies to any), got {channels} input channels"
        )


def fft_convolve(
    x: Tensor, impulse_response: Tensor, history: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Zero-latency convolution by FFT, with the input history as explicit state.

    ``y[b, c, n] = sum_k h[c', k] x[b, c, n - k]`` for ``n`` in the block (the output is
    truncated to the input's length, like pedalboard's ``Convolution``), where the samples before
    the block come from ``history``. Channel mapping (that of pedalboard): a mono response applies
    to every input channel; a response with ``C`` channels applies channel-wise to a ``C``-channel
    input; a mono input with a multi-channel response uses the response's first channel.

    Short blocks (``samples * taps <= 16384``) are convolved directly (a dot product per output
    sample); longer ones at once by FFT: ``[history, x]`` (``taps - 1 + samples`` long) and ``h`` are
    zero-padded to a power of two at least that long and multiplied in the frequency domain; the
    circular wrap-around lands only on the first ``taps - 1`` outputs, which are dropped, so the
    kept samples are the exact linear convolution. Filtering block by block with the returned history therefore
    equals filtering the whole signal at once.

    Args:
        x: ``(batch, channels, samples)`` real tensor.
        impulse_response: ``(taps,)`` or ``(ir_channels, taps)``.
        history: the ``taps - 1`` input samples before the block, in time order (oldest first),
            shaped ``(batch, channels, taps - 1)``; ``None`` means silence.

    Returns:
        ``(y, history)``: ``y`` shaped like ``x`` and the last ``taps - 1`` input samples (of
        ``[history, x]``) for the next block. Differentiable w.r.t. ``x``, the response and the
        history.
    """
    if not isinstance(x, Tensor) or x.ndim != 3 or not x.is_floating_point() or x.is_complex():
        raise ValueError(
            "x must be a real floating tensor shaped (batch, channels, samples), got "
            f"{tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__}"
        )
    h = _as_ir(impulse_response).to(x.dtype)
    batch, channels, n = x.shape
    ir_channels, taps = h.shape
    _check_channels(channels, ir_channels)
    if ir_channels != channels:
        h = h[:1]  # mono response for every channel, or the first channel for a mono input
    order = taps - 1
    if history is None:
        history = x.new_zeros(batch, channels, order)
    elif not isinstance(history, Tensor) or tuple(history.shape) != (batch, channels, order):
        raise ValueError(
            f"history must be shaped (batch, channels, taps - 1) = {(batch, channels, order)}, got "
            f"{tuple(history.shape) if isinstance(history, Tensor) else type(history).__name__}"
        )
    x_ext = torch.cat([history.to(x.dtype), x], dim=-1) if order > 0 else x
    new_history = x_ext[..., x_ext.shape[-1] - order :]
    length = x_ext.shape[-1]
    if taps == 1:
        return x * h[..., :1], new_history
    if n * taps <= _DIRECT_MAX:
        # short blocks (streaming): a direct dot product per output sample beats the FFT's setup
        windows = x_ext.unfold(-1, taps, 1)  # (batch, channels, n, taps), a view
        return torch.matmul(windows, h.flip(-1).unsqueeze(-1)).squeeze(-1), new_history
    # circular convolution of period n_fft >= length wraps only the full convolution's samples
    # beyond length - 1 onto indices below taps - 1, which are discarded: exact for those kept
    n_fft = 1 << max(length - 1, 1).bit_length()
    spec = torch.fft.rfft(x_ext, n=n_fft) * torch.fft.rfft(h, n=n_fft)  # h broadcasts over batch
    y = torch.fft.irfft(spec, n=n_fft)[..., order : order + n]
    return y, new_history
