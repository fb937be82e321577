"""Reverb from an impulse response of band-filtered, exponentially decaying noise."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from dspfx.functional.convolution import fft_convolve
from dspfx.functional.noise_reverb import band_noise, noise_band_edges, noise_impulse_response
from dspfx.registry import register
from dspfx.unit import Knob, Unit

__all__ = ["NoiseReverb"]

_DECAY_RANGE = (0.05, 10.0)
_GAIN_RANGE = (-60.0, 12.0)


@register
class NoiseReverb(Unit):
    """Noise-shaped reverb: the impulse response is seeded noise split into frequency bands,
    each with its own exponential decay time and gain, applied by FFT convolution.

    ``h[n] = sum_k 10 ** (gain<k>_db / 20) noise_k[n] exp(-ln(1000) n / (sample_rate decay<k>_s))``
    (:func:`dspfx.functional.noise_impulse_response`), then ``y = (1 - mix) x + mix (h * x)``.
    The noise is fixed by ``seed`` (rebuilt from it, not saved), so the response is a smooth,
    differentiable function of the band decays and gains. Every channel uses the same response.
    Streaming carries the last ``taps - 1`` input samples (exact for any block size).

    Options:
        n_bands: number of bands (default 12): band 0 is ``[0, min_hz]``, the others are equal
            in log frequency up to Nyquist (:func:`dspfx.functional.noise_band_edges`).
        length_s: length of the response in seconds (default 2.0); decays longer than it are
            cut off (a decay of ``d`` s needs about ``d`` s to fall 60 dB).
        seed: seed of the noise (default 0): the same seed gives the same response.
        min_hz: upper edge of the lowest band (default 40 Hz).

    Knobs (added per instance, so ``knobs()`` and the spec list them):
        decay<k>_s: 0.05 .. 10 s (log, default 1.0), k = 1 .. n_bands: time for band k to
            fall 60 dB.
        gain<k>_db: -60 .. +12 dB (default 0): level of band k. With all gains 0 dB and all
            decays 1 s the response has about unit energy.
        mix: 0 .. 1 (default 0.3): dry/wet.
    Decays and gains are one value per block (a response per block); a control varying within
    a block is an error. Tensor controls ``decays_s`` and ``gains_db`` shaped ``(n_bands,)`` or
    ``(batch, n_bands)`` (extra controls, e.g. from a network) override the per-band knobs.

    >>> verb = dspfx.make("noise_reverb", n_bands=8, decay1_s=2.5, decay8_s=0.4, mix=0.25)
    >>> y = verb(x, decays_s=torch.full((8,), 1.2))

    Reference: C. J. Steinmetz et al., dasp-pytorch ``noise_shaped_reverberation``. No
    pedalboard twin.
    """

    name = "noise_reverb"
    category = "effect"
    extra_controls = ("decays_s", "gains_db")
    unframed_controls = ("decays_s", "gains_db")

    def __init__(
        self,
        sample_rate: float = 48000,
        n_bands: int = 12,
        length_s: float = 2.0,
        seed: int = 0,
        min_hz: float = 40.0,
        **knobs: Any,
    ) -> None:
        if isinstance(n_bands, bool) or not isinstance(n_bands, int) or not 1 <= n_bands <= 64:
            raise ValueError(f"noise_reverb: n_bands must be an int in 1 .. 64, got {n_bands!r}")
        if isinstance(length_s, bool) or not isinstance(length_s, (int, float)) or not 0 < length_s <= 30:
            raise ValueError(f"noise_reverb: length_s must be a number of seconds in (0, 30], got {length_s!r}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"noise_reverb: seed must be an int, got {seed!r}")
        if isinstance(min_hz, bool) or not isinstance(min_hz, (int, float)):
            raise TypeError(f"noise_reverb: min_hz must be a number in Hz, got {min_hz!r}")
        self.n_bands = n_bands
        self.length_s = float(length_s)
        self.seed = seed
        self.min_hz = float(min_hz)
        super().__init__(sample_rate)
        self.band_edges_hz = noise_band_edges(n_bands, sample_rate, self.min_hz)  # checks min_hz
        self.n_taps = max(1, int(round(self.length_s * sample_rate)))
        for k in range(1, n_bands + 1):
            self.add_knob(f"decay{k}_s", Knob(1.0, *_DECAY_RANGE, scale="log", unit="s", doc=f"decay time (-60 dB) of band {k}"))
        for k in range(1, n_bands + 1):
            self.add_knob(f"gain{k}_db", Knob(0.0, *_GAIN_RANGE, unit="dB", doc=f"level of band {k}"))
        self.add_knob("mix", Knob(0.3, 0.0, 1.0, doc="dry/wet: 0 is the input, 1 the reverb alone"))
        unknown = [k for k in knobs if k not in self._knobs]
        if unknown:
            raise TypeError(self._unknown_message(unknown[0], "knob or option"))
        if knobs:
            self.set(**knobs)
        noise = band_noise(n_bands, self.n_taps, sample_rate, seed=seed, min_hz=self.min_hz)
        self.register_buffer("band_noise", noise.to(self.dtype), persistent=False)

    def init_state(self, batch: int, channels: int) -> Tensor:
        return torch.zeros(batch, channels, self.n_taps - 1, dtype=self.dtype, device=self.device)

    def _band_values(self, controls: dict[str, Any], extra: str, prefix: str, suffix: str) -> Tensor:
        """(batch|1, n_bands) from an extra control or the per-band knob controls."""
        nb = self.n_bands
        if extra in controls:
            v = controls[extra]
            if not isinstance(v, Tensor):
                v = torch.as_tensor(v, dtype=self.dtype, device=self.device)
            if v.ndim == 1:
                v = v.unsqueeze(0)
            if v.ndim != 2 or v.shape[-1] != nb:
                raise ValueError(f"noise_reverb: {extra} must be shaped (n_bands,) or (batch, n_bands) with n_bands = {nb}, got {tuple(controls[extra].shape) if isinstance(controls[extra], Tensor) else controls[extra]!r}")
            lo, hi = _DECAY_RANGE if extra == "decays_s" else _GAIN_RANGE
            with torch.no_grad():
                bad = not bool(torch.isfinite(v).all()) or float(v.min()) < lo or float(v.max()) > hi
            if bad:
                raise ValueError(f"noise_reverb: {extra} must be finite and inside {lo:g} .. {hi:g}")
            return v.to(self.dtype)
        cols = []
        for k in range(1, nb + 1):
            c = controls[f"{prefix}{k}{suffix}"]  # (batch|1, 1, samples|1)
            if c.shape[-1] > 1:
                with torch.no_grad():
                    varies = bool((c != c[..., :1]).any())
                if varies:
                    raise ValueError(
                        f"noise_reverb: {prefix}{k}{suffix} must be one value per block (the response is built "
                        "once per block), got a control that varies in time"
                    )
            cols.append(c[:, 0, 0])
        return torch.stack(torch.broadcast_tensors(*cols), dim=-1)

    def impulse_response(self, controls: dict[str, Any] | None = None) -> Tensor:
        """The response ``(batch|1, n_taps)`` for the given controls (default: the knobs)."""
        if controls is None:
            controls = {k: self.knob_value(k).reshape(1, 1, 1) for k in self.knob_specs}
        decays = self._band_values(controls, "decays_s", "decay", "_s")
        gains = self._band_values(controls, "gains_db", "gain", "_db")
        return noise_impulse_response(self.band_noise, decays, gains, self.sample_rate)

    def process(self, x: Tensor, controls: dict[str, Tensor], state: Any) -> tuple[Tensor, Any]:
        h = self.impulse_response(controls).to(x.dtype)
        batch = x.shape[0]
        if h.shape[0] == 1:
            wet, state = fft_convolve(x, h, state)
        elif h.shape[0] == batch:
            parts = [fft_convolve(x[b : b + 1], h[b : b + 1], state[b : b + 1]) for b in range(batch)]
            wet = torch.cat([p[0] for p in parts], 0)
            state = torch.cat([p[1] for p in parts], 0)
        else:
            raise ValueError(f"noise_reverb: controls for {h.shape[0]} batch items given with an input of batch {batch}")
        mix = controls["mix"]
        return (1 - mix) * x + mix * wet, state
