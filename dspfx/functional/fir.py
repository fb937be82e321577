"""FIR filters: frequency-sampling design from band magnitudes, and (time-varying) filtering
with explicit state on the causal control grid (:func:`fir_filter`)."""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import Tensor

from dspfx.functional.control import frame_positions
from dspfx.functional.design import _check_mode
from dspfx.functional.recursive import _as_history

__all__ = ["FIR_WINDOWS", "fir_window", "fir_design_options", "fir_from_magnitudes", "fir_filter"]

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
