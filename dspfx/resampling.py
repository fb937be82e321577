"""Polyphase resampling: :func:`resample` of a whole signal, and :class:`StreamResampler` of a
signal chunk by chunk, for files too long to hold at two rates at once.

:class:`StreamResampler` takes a signal in chunks of any size and gives back the same samples
:func:`resample` (scipy's ``resample_poly``, Kaiser beta 5, zero padding) gives for the
whole signal, to float64 rounding: each output sample depends only on the input within the
filter's half length around it, so the resampler keeps that much input between calls and hands
out an output sample as soon as all the input it depends on has arrived. Memory is the chunk
plus the filter's span, whatever the signal's length.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from dspfx.checks import ArrayLike, _audio_tensor, check_sample_rate

__all__ = ["resample", "StreamResampler"]


def resample(audio: ArrayLike, orig_sr: int, target_sr: int) -> torch.Tensor:
    """Resample audio along its last axis with a polyphase filter.

    Uses :func:`scipy.signal.resample_poly` with the reduced ratio
    ``up / down = target_sr / orig_sr`` (divided by their gcd; e.g. 44100 -> 48000 is
    160 / 147) and scipy's default Kaiser-windowed (beta 5) FIR anti-aliasing filter. Computed
    in float64 with numpy; **not differentiable** (the result carries no gradient).

    Args:
        audio: floating-point tensor or ndarray of any shape ``(..., samples)``.
        orig_sr: its sample rate in Hz.
        target_sr: wanted sample rate in Hz.

    Returns:
        Tensor ``(..., ceil(samples * up / down))`` on the input's device, with its dtype
        (float32 for half-precision input); a copy even when the rates are equal.
    """
    from scipy.signal import resample_poly  # imported here: scipy.signal takes ~1 s to import

    x = _audio_tensor(audio, "audio")
    orig_sr = check_sample_rate(orig_sr, "orig_sr", integer=True)
    target_sr = check_sample_rate(target_sr, "target_sr", integer=True)
    if x.ndim == 0 or x.shape[-1] == 0:
        raise ValueError(f"audio has shape {tuple(x.shape)}; expected (..., samples) with samples > 0")
    if orig_sr == target_sr:
        return x.detach().clone()
    g = math.gcd(orig_sr, target_sr)
    up, down = target_sr // g, orig_sr // g
    dtype = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
    y = resample_poly(x.detach().cpu().to(torch.float64).numpy(), up, down, axis=-1)
    return torch.from_numpy(np.ascontiguousarray(y)).to(device=x.device, dtype=dtype)


class StreamResampler:
    """Polyphase resampling from ``orig_sr`` to ``target_sr`` of a signal given in chunks.

    >>> r = StreamResampler(44100, 16000)
    >>> parts = [r.feed(chunk) for chunk in chunks] + [r.finish()]
    >>> np.concatenate(parts)          # == resample(whole, 44100, 16000)

    Args:
        orig_sr, target_sr: rates in Hz (whole numbers, as :func:`resample`).
    """

    def __init__(self, orig_sr: int, target_sr: int) -> None:
        orig_sr, target_sr = int(orig_sr), int(target_sr)
        if orig_sr <= 0 or target_sr <= 0:
            raise ValueError(f"rates must be positive whole numbers of Hz, got {orig_sr} and {target_sr}")
        g = math.gcd(orig_sr, target_sr)
        self.up, self.down = target_sr // g, orig_sr // g
        # resample_poly's filter has 2 * 10 * max(up, down) + 1 taps at the upsampled rate:
        # each output sample reads at most this many input samples either side of its centre
        self.reach = (10 * max(self.up, self.down)) // self.up + 2
        self._buffer = np.zeros(0)
        self._base = 0  # input index of _buffer[0] (a multiple of down)
        self._received = 0  # input samples fed so far
        self._emitted = 0  # output samples handed out so far
        self._finished = False

    def _compute(self, stop: int) -> np.ndarray:
        """Output samples ``_emitted .. stop - 1`` from the buffered input."""
        from scipy.signal import resample_poly

        if stop <= self._emitted:
            return np.zeros(0)
        if self.up == self.down:
            y = self._buffer[self._emitted - self._base: stop - self._base].copy()
        else:
            # the buffer starts on a multiple of down, so its output grid is the whole signal's
            y_all = resample_poly(self._buffer, self.up, self.down)
            first = self._base * self.up // self.down
            y = y_all[self._emitted - first: stop - first]
        self._emitted = stop
        # drop the input no later output sample reads
        keep_from = (self._emitted * self.down) // self.up - self.reach
        keep_from = max(self._base, (keep_from // self.down) * self.down)
        self._buffer = self._buffer[keep_from - self._base:]
        self._base = keep_from
        return y

    def feed(self, chunk: np.ndarray) -> np.ndarray:
        """Add the next ``chunk`` (1-d) of input; return the output samples now final (maybe none)."""
        if self._finished:
            raise RuntimeError("StreamResampler.feed after finish(): make a new resampler for a new signal")
        x = np.asarray(chunk, dtype=np.float64)
        if x.ndim != 1:
            raise ValueError(f"chunks are 1-d (samples,), got shape {x.shape}")
        self._buffer = np.concatenate([self._buffer, x])
        self._received += x.size
        # output n is final once the input reaches n * down / up + reach
        ready = max(0, ((self._received - self.reach) * self.up) // self.down) if self.up != self.down else self._received
        return self._compute(ready)

    def finish(self) -> np.ndarray:
        """The remaining output: the signal ends here (zeros beyond, as resample_poly pads)."""
        if self._finished:
            return np.zeros(0)
        self._finished = True
        total = -(-self._received * self.up // self.down)  # ceil, resample_poly's length
        return self._compute(total)
