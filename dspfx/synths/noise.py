"""Filtered noise: uniform noise through a time-varying linear-phase FIR designed from band
magnitudes (the noise half of DDSP's harmonic-plus-noise synth)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as TF
from torch import Tensor, nn

from dspfx.effects.filters import FIR_MIN_MAGNITUDE, _softplus_inverse
from dspfx.functional.control import control_frames, control_hop
from dspfx.functional.fir import fir_design_options, fir_filter, fir_from_magnitudes
from dspfx.registry import register
from dspfx.unit import Unit

__all__ = ["FilteredNoise"]

_M32 = 0xFFFFFFFF


def _mul32(x: Tensor, c: int) -> Tensor:
    """``(x * c) mod 2**32`` for int64 ``x`` in [0, 2**32) without overflowing int64."""
    lo = x & 0xFFFF
    hi = x >> 16
    return ((lo * c) + (((hi * c) & _M32) << 16)) & _M32


def _lowbias32(x: Tensor) -> Tensor:
    """A 32-bit integer hash (C. Wellons' "lowbias32"), on int64 tensors holding uint32 values."""
    x = x & _M32
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def hash_noise(seed: int, start: Tensor, n: int, batch: int, dtype: torch.dtype) -> Tensor:
    """Counter-based uniform noise in (-1, 1): sample ``i`` of batch item ``b`` is a hash of
    (seed, b, i), so any span of the sequence can be drawn without drawing what came before.

    Args:
        seed: integer >= 0.
        start: int64 tensor (0-d): absolute index of the first sample.
        n: number of samples.
        batch: batch items (each gets its own sequence).
        dtype: floating dtype of the result.

    Returns:
        ``(batch, 1, n)`` noise on ``start``'s device; 24-bit resolution.
    """
    device = start.device
    idx = start + torch.arange(n, dtype=torch.int64, device=device)  # (n,)
    seed_t = torch.tensor(seed, dtype=torch.int64, device=device)
    key = _lowbias32(_lowbias32(seed_t & _M32) ^ _lowbias32((seed_t >> 32) + 0x632BE5AB))
    b = torch.arange(batch, dtype=torch.int64, device=device)
    key = _lowbias32(key + _mul32(b + 1, 0x9E3779B9))[:, None]  # (batch, 1)
    h = _lowbias32(_lowbias32((idx & _M32) ^ key) + (idx >> 32) + key)
    u = ((h >> 8).to(torch.float64) + 0.5) * (2.0 / (1 << 24)) - 1.0
    return u.to(dtype).unsqueeze(1)


@register
class FilteredNoise(Unit):
    """Filtered-noise synth (DDSP): uniform noise in [-1, 1] through a time-varying linear-phase
    FIR designed by frequency sampling from band magnitudes.

    ``n_bands`` linear magnitudes sample the amplitude response at frequencies spaced linearly
    from 0 Hz to Nyquist; :func:`dspfx.functional.fir_from_magnitudes` turns each frame into a
    symmetric Hann-windowed impulse response of ``2 * (n_bands - 1)`` taps (128 for 65 bands),
    and :func:`dspfx.functional.fir_filter` filters the noise with per-sample linearly
    interpolated responses (the same filter as the ``fir`` effect; segment-wise FFT
    convolution, equivalent to DDSP's overlap-add for this design). Uniform noise has power
    1/3, so the output's power spectral density is ``|H(f)|^2 / 3`` per sample.

    Delay: the linear-phase FIR delays its input by ``n_taps // 2`` samples (its centre tap);
    the unit compensates it, as DDSP's ``fft_convolve(delay_compensation=...)`` trims it, by
    reading the noise source that many samples ahead (``delay_compensation``; the first samples
    of the source are in the initial state), so output sample ``t`` is the filter centred on
    source sample ``t``: ``latency_samples == 0`` and all-ones magnitudes return the source
    itself (:meth:`noise`). The spectral envelope was never delayed: the response at sample
    ``t`` is the one interpolated from the frames at ``t``.

    Options:
        n_bands: number of magnitude bands (>= 2, default 65).
        n_taps: impulse-response length (default ``2 * (n_bands - 1)``).
        window: ``"hann"`` (default) or ``"rectangular"``.
        seed: ``None`` (default): noise from torch's global RNG (``torch.rand``); an int >= 0:
            counter-based noise, a hash of (seed, batch item, absolute sample index), so a render
            is reproducible and streaming in blocks draws exactly the noise of the offline render
            (the state carries the sample counter).
        hop: samples per control frame when ``n_samples`` is not given (default
            ``sample_rate // 250``: 64 at 16 kHz, 192 at 48 kHz).

    Knobs: none.

    Controls:
        magnitudes: ``(batch|1, frames, n_bands)`` (or ``(batch|1, n_bands)``, constant),
            linear, >= 0, frames on the block's causal hop grid. Default: the learnable
            parameter ``raw_magnitudes`` ``(n_bands,)`` mapped by softplus (initial value all
            0.1, -20 dB); read ``unit.magnitudes``, write ``unit.set_magnitudes(values)``.

    Output: ``(batch, 1, samples)``. State: ``(counter, history)``: the absolute index of the next
    source sample to draw (int64) and the last ``n_taps - 1`` source samples (most recent first).

    >>> noise = dspfx.make("filtered_noise", sample_rate=16000, seed=0)
    >>> y = noise(magnitudes=mags)          # mags: (batch, frames, 65) -> frames * 64 samples

    Reference: Engel et al., "DDSP: Differentiable Digital Signal Processing" (ICLR 2020),
    ``ddsp.synths.FilteredNoise`` (65 bands, 128-tap Hann-windowed frequency-sampling FIR).
    """

    name = "filtered_noise"
    category = "synth"
    is_synth = True
    extra_controls = ("magnitudes",)

    def __init__(
        self,
        sample_rate: float = 48000,
        n_bands: int = 65,
        n_taps: int | None = None,
        window: str = "hann",
        seed: int | None = None,
        hop: int | None = None,
        **knobs: Any,
    ) -> None:
        n_taps = fir_design_options("filtered_noise", n_bands, n_taps, window)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63):
            raise ValueError(f"filtered_noise seed must be None or an int in [0, 2**63), got {seed!r}")
        self.n_bands = n_bands
        self.n_taps = n_taps
        self.window = window
        self.seed = seed
        self.hop = control_hop(sample_rate, hop, "filtered_noise")
        super().__init__(sample_rate, **knobs)
        init = torch.full((n_bands,), 0.1, dtype=torch.float64)
        self.raw_magnitudes = nn.Parameter(_softplus_inverse(init).to(self.dtype))

    # -- magnitudes ------------------------------------------------------------------------
    @property
    def magnitudes(self) -> Tensor:
        """The learnable band magnitudes, ``(n_bands,)``, linear, differentiable."""
        return TF.softplus(self.raw_magnitudes)

    @torch.no_grad()
    def set_magnitudes(self, values: Any) -> FilteredNoise:
        """Write the learnable band magnitudes (``n_bands`` linear values >= 0); returns ``self``."""
        v = torch.as_tensor(values, dtype=torch.float64).detach().cpu()
        if v.shape != (self.n_bands,):
            raise ValueError(
                f"filtered_noise magnitudes must hold n_bands = {self.n_bands} values, got shape {tuple(v.shape)}"
            )
        self._check_magnitudes(v, "filtered_noise magnitudes")
        self.raw_magnitudes.copy_(_softplus_inverse(v.clamp_min(FIR_MIN_MAGNITUDE)).to(self.raw_magnitudes))
        return self

    @staticmethod
    def _check_magnitudes(values: Tensor, what: str) -> None:
        with torch.no_grad():
            if not bool(torch.isfinite(values).all()):
                raise ValueError(f"{what} must be finite (got NaN or Inf)")
            low = float(values.min()) if values.numel() else 0.0
        if low < 0.0:
            raise ValueError(f"{what} are linear amplitudes and must be >= 0, got a minimum of {low:g}")

    # -- rendering -------------------------------------------------------------------------
    def default_length(self, controls: Mapping[str, Any]) -> int:
        value = controls.get("magnitudes")
        if value is None:
            raise ValueError(f"{self.label}: give n_samples= or frames of magnitudes (batch, frames, {self.n_bands})")
        frames = int(value.shape[1]) if isinstance(value, Tensor) and value.ndim == 3 else 1
        return frames * self.hop

    @property
    def delay_compensation(self) -> int:
        """Samples the noise is read ahead by so the linear-phase FIR adds no delay: ``n_taps // 2``."""
        return self.n_taps // 2

    @property
    def latency_samples(self) -> int:
        """0: the FIR's delay (``n_taps // 2`` samples) is compensated by reading the noise ahead."""
        return 0

    def init_state(self, batch: int, channels: int) -> tuple[Tensor, Tensor]:
        """``(counter, history)``: the next source sample to draw (``delay_compensation``, as the
        first ``delay_compensation`` source samples sit in the history already) and the last
        ``n_taps - 1`` source samples, most recent first (zeros before the source's start)."""
        ahead = self.delay_compensation
        counter = torch.full((), ahead, dtype=torch.int64, device=self.device)
        history = torch.zeros(batch, 1, self.n_taps - 1, dtype=self.dtype, device=self.device)
        if ahead:
            start = torch.zeros((), dtype=torch.int64, device=self.device)
            # fir_filter's history runs backwards in time (most recent first)
            history = torch.cat([self.noise(start, ahead, batch).flip(-1), history[..., ahead:]], dim=-1)
        return counter, history

    def noise(self, start: Tensor, n: int, batch: int) -> Tensor:
        """The raw noise ``(batch, 1, n)`` from absolute sample ``start`` (seeded) or torch.rand."""
        if self.seed is None:
            return torch.rand(batch, 1, n, dtype=self.dtype, device=self.device) * 2 - 1
        return hash_noise(self.seed, start, n, batch, self.dtype)

    def process(self, x: Tensor | None, controls: dict[str, Any], state: Any) -> tuple[Tensor, Any]:
        """Render one block of ``controls["n_samples"]`` samples; ``controls["magnitudes"]`` is
        the call's value as given (or absent: the learnable default)."""
        counter, history = state
        batch = history.shape[0]
        n = controls["n_samples"]
        value = controls.get("magnitudes")
        previous_taps = None
        if value is None:
            mags = self.magnitudes.reshape(1, 1, self.n_bands)
        else:
            mags, previous = control_frames(value, batch, dims=self.n_bands, name="filtered_noise.magnitudes",
                                            dtype=self.dtype, device=self.device)
            self._check_magnitudes(mags, "filtered_noise.magnitudes control values")
            if previous is not None:
                previous_taps = fir_from_magnitudes(previous, self.n_taps, self.window)
        taps = fir_from_magnitudes(mags, self.n_taps, self.window)  # (B|1, frames, n_taps)
        noise = self.noise(counter, n, batch)
        y, history = fir_filter(noise, taps, history, previous=previous_taps)
        return y, (counter + n, history)

