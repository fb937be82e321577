"""Speaker cabinet: a parametric cabinet (a cascade of five biquads) or a loaded / learned
impulse response."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from dspfx.effects.convolution import IR_INITS, Convolution, _load_ir
from dspfx.functional.convolution import (
    DEFAULT_PARTITION_SIZE,
    _check_channels,
    normalize_impulse_response,
    partitioned_convolve,
    partitioned_state,
)
from dspfx.functional.design import biquad_coefficients, frequency_response
from dspfx.functional.sos import sos_filter
from dspfx.registry import register
from dspfx.unit import Knob, Unit

__all__ = ["Cabinet", "CABINET_MODES", "CABINET_SECTIONS", "least_squares_ir"]

CABINET_MODES = ("parametric", "ir")

#: The parametric cabinet's sections in processing order: (name, RBJ biquad mode).
CABINET_SECTIONS: tuple[tuple[str, str], ...] = (
    ("highpass", "highpass"),
    ("resonance", "peak"),
    ("upper_mid", "peak"),
    ("lowpass", "lowpass"),
    ("notch", "peak"),
)

#: Default length of a learned impulse response (about 43 ms at 48 kHz).
DEFAULT_IR_TAPS = 2048

#: Default relative ridge of :func:`least_squares_ir` (a fraction of the input's mean power).
DEFAULT_IR_RIDGE = 1e-6


def _parametric_knobs() -> list[tuple[str, Knob]]:
    def hz(default: float, lo: float, hi: float, doc: str) -> Knob:
        return Knob(default, lo, hi, scale="log", unit="Hz", doc=doc)

    def q(default: float, lo: float, hi: float, doc: str) -> Knob:
        return Knob(default, lo, hi, scale="log", doc=doc)

    def db(default: float, lo: float, hi: float, doc: str) -> Knob:
        return Knob(default, lo, hi, unit="dB", doc=doc)

    return [
        ("highpass_hz", hz(80.0, 20.0, 500.0, "low cut of the closed box (12 dB/octave)")),
        ("highpass_q", q(0.7071, 0.3, 4.0, "resonance of the low cut")),
        ("resonance_hz", hz(100.0, 40.0, 400.0, "speaker/box low resonance")),
        ("resonance_gain_db", db(3.0, -12.0, 18.0, "height of the low resonance")),
        ("resonance_q", q(2.0, 0.3, 10.0, "sharpness of the low resonance")),
        ("upper_mid_hz", hz(2500.0, 500.0, 8000.0, "upper-mid (cone) presence peak")),
        ("upper_mid_gain_db", db(4.0, -12.0, 18.0, "height of the upper-mid peak")),
        ("upper_mid_q", q(1.0, 0.3, 10.0, "sharpness of the upper-mid peak")),
        ("lowpass_hz", hz(5000.0, 1000.0, 20000.0, "high roll-off of the speaker (12 dB/octave)")),
        ("lowpass_q", q(0.7071, 0.3, 4.0, "resonance of the roll-off")),
        ("notch_hz", hz(7000.0, 2000.0, 16000.0, "cone break-up dip above the roll-off")),
        ("notch_gain_db", db(-12.0, -40.0, 0.0, "depth of the dip (0 dB: no dip)")),
        ("notch_q", q(2.0, 0.3, 10.0, "sharpness of the dip")),
    ]


@register
class Cabinet(Unit):
    """Guitar speaker cabinet: parametric (five biquads) or an impulse response (loaded or learned).

    ``mode="parametric"`` (default) is a smooth, interpretable, learnable starting point: a
    cascade of RBJ-cookbook biquads (:func:`dspfx.functional.biquad_coefficients`) run exactly,
    time-varying knobs included, through :func:`dspfx.functional.iir` (designed and run in
    float64 whatever the input dtype, output in the input's dtype), in this order:

    1. high-pass (12 dB/octave, resonant): the closed box's low cut, ~80 Hz;
    2. peak: the speaker-in-box low resonance, ~100 Hz;
    3. peak: the upper-mid presence of the cone, ~2.5 kHz;
    4. low-pass (12 dB/octave): the speaker's roll-off, ~5 kHz;
    5. peak with a cut (a finite notch): the cone break-up dip, ~7 kHz. A true notch would be
       infinitely deep; real cabinets show dips of 10-20 dB, so the dip depth is a knob.

    ``mode="ir"`` convolves with an impulse response (zero latency; one FFT convolution offline,
    uniformly partitioned when streamed, so streaming is exact and a block's cost does not grow
    with the IR): loaded (``impulse_response``: tensor,
    array or audio file, as in :class:`dspfx.effects.convolution.Convolution`) or learned (the
    ``nn.Parameter`` ``impulse_response`` of ``n_taps`` taps, saved by :func:`dspfx.save` as a
    tensor). Start parametric, fit, then call :meth:`to_ir_cabinet` to continue with a learned
    response initialised from the fitted parametric one (:meth:`to_ir` renders it).

    Options:
        mode: ``"parametric"`` or ``"ir"``.
        impulse_response, n_taps (default 2048 when learned), ir_channels (default 1),
        normalize (default False: the response's level is kept), resample, init
        (``"impulse"``, default, or ``"noise"``): ``mode="ir"`` only, as in ``Convolution``.

    Knobs (parametric mode; the IR mode has none):
        highpass_hz 20 .. 500 Hz (log, 80), highpass_q 0.3 .. 4 (log, 0.7071);
        resonance_hz 40 .. 400 Hz (log, 100), resonance_gain_db -12 .. 18 dB (3),
        resonance_q 0.3 .. 10 (log, 2);
        upper_mid_hz 500 .. 8000 Hz (log, 2500), upper_mid_gain_db -12 .. 18 dB (4),
        upper_mid_q 0.3 .. 10 (log, 1);
        lowpass_hz 1 .. 20 kHz (log, 5000), lowpass_q 0.3 .. 4 (log, 0.7071);
        notch_hz 2 .. 16 kHz (log, 7000), notch_gain_db -40 .. 0 dB (-12), notch_q 0.3 .. 10 (log, 2).
    Cutoffs are clamped into [2 Hz, Nyquist - 100 Hz] inside the designs (like the biquad).
    Not identifiable from audio: a peak's frequency and q when its gain is 0 dB, and, when a
    peak sits on the slope of a cut, the trade between the two.

    >>> cab = dspfx.make("cabinet", highpass_hz=90.0, lowpass_hz=4500.0)
    >>> learned = cab.to_ir_cabinet(n_taps=2048)           # same sound, now a learnable FIR

    Reference: the gray-box cabinet of the issue (high-pass, low resonance, upper-mid peak,
    low-pass, notch); R. Bristow-Johnson's biquad cookbook; IR mode as ``pedalboard.Convolution``.
    """

    name = "cabinet"
    category = "amp"

    def __init__(
        self,
        sample_rate: float = 48000,
        mode: str = "parametric",
        impulse_response: Any = None,
        n_taps: int | None = None,
        ir_channels: int | None = None,
        normalize: bool = False,
        resample: bool = False,
        init: str = "impulse",
        **knobs: Any,
    ) -> None:
        if mode not in CABINET_MODES:
            raise ValueError(f"cabinet mode must be one of {', '.join(CABINET_MODES)}; got {mode!r}")
        if init not in IR_INITS:
            raise ValueError(f"cabinet init must be one of {', '.join(IR_INITS)}; got {init!r}")
        if not isinstance(normalize, bool):
            raise TypeError(f"cabinet normalize must be True or False, got {normalize!r}")
        for opt, value in (("n_taps", n_taps), ("ir_channels", ir_channels)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1):
                raise ValueError(f"cabinet {opt} must be a positive integer or None, got {value!r}")
        self.mode = mode
        self.normalize = normalize
        self.resample = bool(resample)
        self.init = init
        h = None
        if mode == "parametric":
            if impulse_response is not None or n_taps is not None or ir_channels is not None:
                raise ValueError(
                    "cabinet: impulse_response, n_taps and ir_channels belong to mode='ir'; the parametric "
                    "cabinet has none (render one with to_ir(n_taps))"
                )
            self.n_taps = None
            self.ir_channels = None
        else:
            if impulse_response is not None:
                h = _load_ir(impulse_response, sample_rate, self.resample)
                if not bool(torch.isfinite(h).all()):
                    raise ValueError("cabinet: impulse_response contains NaN or Inf values")
                if n_taps is not None and int(n_taps) != h.shape[1]:
                    raise ValueError(f"cabinet: n_taps={n_taps} differs from the impulse response's {h.shape[1]} taps")
                if ir_channels is not None and int(ir_channels) != h.shape[0]:
                    raise ValueError(
                        f"cabinet: ir_channels={ir_channels} differs from the impulse response's {h.shape[0]} channels"
                    )
            else:
                taps = DEFAULT_IR_TAPS if n_taps is None else int(n_taps)
                h = Convolution._initial_ir(init, 1 if ir_channels is None else int(ir_channels), taps)
            self.n_taps = int(h.shape[1])
            self.ir_channels = int(h.shape[0])
        super().__init__(sample_rate)
        if mode == "parametric":
            for key, knob in _parametric_knobs():
                self.add_knob(key, knob)
        else:
            self.impulse_response = nn.Parameter(h.to(dtype=self.dtype, device=self.device))
        unknown = [k for k in knobs if k not in self._knobs]
        if unknown:
            raise TypeError(self._unknown_message(unknown[0], "knob or option"))
        if knobs:
            self.set(**knobs)

    def options(self) -> dict[str, Any]:
        # a learned or loaded response travels as a tensor (dspfx.save); the spec keeps its shape
        return {
            "mode": self.mode,
            "impulse_response": None,
            "n_taps": self.n_taps,
            "ir_channels": self.ir_channels,
            "normalize": self.normalize,
            "resample": self.resample,
            "init": self.init,
        }

    def extra_repr(self) -> str:
        return super().extra_repr().replace("impulse_response=None, ", "")

    # -- parametric --------------------------------------------------------------------------
    def sections(self, controls: dict[str, Tensor] | None = None) -> list[tuple[Tensor, Tensor]]:
        """``(b, a)`` of the five biquads in processing order (see :data:`CABINET_SECTIONS`),
        for the given controls or the current knobs (parametric mode); float64 (except on MPS)."""
        if self.mode != "parametric":
            raise ValueError("cabinet: sections() exist in mode='parametric' only")
        if controls is None:
            controls = {k: self.knob_value(k) for k in self._knobs}
        work = self._work_dtype
        zero = torch.zeros((), dtype=work, device=self.device)
        out = []
        for name, biquad_mode in CABINET_SECTIONS:
            hz, q = controls[f"{name}_hz"].to(work), controls[f"{name}_q"].to(work)
            gain = controls[f"{name}_gain_db"].to(work) if f"{name}_gain_db" in controls else zero
            out.append(biquad_coefficients(biquad_mode, hz, q, gain, self.sample_rate))
        return out

    # -- impulse response ----------------------------------------------------------------------
    def effective_impulse_response(self) -> Tensor:
        """IR mode: the response the render uses, ``(ir_channels, taps)`` (normalised when
        ``normalize``)."""
        if self.mode != "ir":
            raise ValueError("cabinet: effective_impulse_response() exists in mode='ir' only; use to_ir(n_taps)")
        h = self.impulse_response
        return normalize_impulse_response(h) if self.normalize else h

    def to_ir(self, n_taps: int = DEFAULT_IR_TAPS) -> Tensor:
        """The cabinet's impulse response, the first ``n_taps`` samples, ``(n_taps,)`` (first
        channel in IR mode; zero-padded or truncated). Differentiable w.r.t. the knobs.
        ``n_taps`` long enough for the low resonance to decay (at 48 kHz, 2048 taps keep the
        truncation error of the default cabinet below -60 dB)."""
        if isinstance(n_taps, bool) or not isinstance(n_taps, (int, np.integer)) or n_taps < 1:
            raise ValueError(f"cabinet: n_taps must be a positive integer, got {n_taps!r}")
        n_taps = int(n_taps)
        if self.mode == "ir":
            h = self.effective_impulse_response()[0]
            if h.shape[-1] >= n_taps:
                return h[:n_taps]
            return torch.cat([h, h.new_zeros(n_taps - h.shape[-1])])
        impulse = torch.zeros(1, 1, n_taps, dtype=self.dtype, device=self.device)
        impulse[..., 0] = 1.0
        controls = {k: self.knob_value(k).reshape(1, 1, 1) for k in self._knobs}
        y, _ = self.process(impulse, controls, self.init_state(1, 1))
        return y[0, 0]

    def to_ir_cabinet(self, n_taps: int = DEFAULT_IR_TAPS) -> Cabinet:
        """A ``mode="ir"`` cabinet whose learnable response starts as this cabinet's
        :meth:`to_ir` (so it renders alike, up to the truncation at ``n_taps``)."""
        h = self.to_ir(n_taps).detach()
        out = Cabinet(self.sample_rate, mode="ir", impulse_response=h.to(torch.float64), normalize=False)
        out = out.to(device=self.device, dtype=self.dtype)
        with torch.no_grad():
            out.impulse_response.copy_(h.reshape(1, -1))  # not rounded through float32
        return out

    @classmethod
    def from_pair(
        cls, x: Tensor, y: Tensor, n_taps: int, sample_rate: float = 48000, *, ridge: float = DEFAULT_IR_RIDGE
    ) -> Cabinet:
        """A learnable ``mode="ir"`` cabinet whose response is :func:`least_squares_ir` of the pair:
        the ``n_taps``-tap FIR that best maps ``x`` (e.g. the preamp's render of the DI) to ``y``
        (the recorded amp), a sensible start for fitting a learned cabinet.

        Args:
            x, y: input and output audio of the same shape, ``(..., samples)`` (leading indices
                are more recordings sharing the response).
            n_taps: response length in samples (e.g. ``int(0.04 * sample_rate)``).
            sample_rate: the pair's rate in Hz.
            ridge: relative regulariser, see :func:`least_squares_ir`.

        Returns:
            a ``Cabinet(sample_rate, mode="ir", n_taps=n_taps)`` in ``x``'s dtype and device.

        >>> cab = Cabinet.from_pair(preamp(di)[..., :n_train], amp_out[..., :n_train], 882, 22050)
        """
        h = least_squares_ir(x, y, n_taps, ridge=ridge).detach()
        out = cls(sample_rate, mode="ir", n_taps=int(n_taps)).to(device=x.device, dtype=x.dtype)
        with torch.no_grad():
            out.impulse_response.copy_(h.reshape(1, -1))
        return out

    # -- rendering -----------------------------------------------------------------------------
    @property
    def _work_dtype(self) -> torch.dtype:
        # the parametric recursions run in float64 (float32 loses ~-80 dB to rounding with the
        # resonant low sections), except on devices without float64 (MPS)
        return self.dtype if self.device.type == "mps" else torch.float64

    def init_state(self, batch: int, channels: int) -> Any:
        if self.mode == "ir":
            _check_channels(channels, self.ir_channels)
            # uniformly partitioned: a streamed block costs the same whatever the IR length
            return partitioned_state(
                batch, channels, self.n_taps, DEFAULT_PARTITION_SIZE, dtype=self.dtype, device=self.device
            )
        zeros = torch.zeros(batch, channels, 2, dtype=self._work_dtype, device=self.device)
        return tuple((zeros.clone(), zeros.clone()) for _ in CABINET_SECTIONS)

    def process(self, x: Tensor, controls: dict[str, Tensor], state: Any) -> tuple[Tensor, Any]:
        if self.mode == "ir":
            return partitioned_convolve(x, self.effective_impulse_response(), state, DEFAULT_PARTITION_SIZE)
        work = self._work_dtype
        # one compiled pass over the cascade when static and gradient-free; else iir per section
        sections = [(b.to(work), a.to(work)) for b, a in self.kept_design(controls, self.sections, key=self.sample_rate)]
        y, new_state = sos_filter(x.to(work), sections, state)
        return y.to(x.dtype), new_state

    def frequency_response(self, freqs_hz: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(freqs_hz, magnitude in dB) of the current cabinet: the product of the sections'
        responses (parametric) or the response's first channel (IR); 512 log-spaced points from
        10 Hz to Nyquist by default."""
        if freqs_hz is None:
            freqs_hz = torch.logspace(1.0, math.log10(self.sample_rate / 2.0), 512, dtype=self.dtype)
        if self.mode == "ir":
            taps = self.effective_impulse_response()[0]
            one = torch.ones(1, dtype=taps.dtype, device=taps.device)
            h = frequency_response(taps, one, freqs_hz, self.sample_rate)
        else:
            h = None
            for b, a in self.sections():
                hs = frequency_response(b, a, freqs_hz, self.sample_rate)
                h = hs if h is None else h * hs
        return torch.as_tensor(freqs_hz), 20.0 * torch.log10(h.abs().clamp_min(1e-12))


# -- impulse responses from recordings -----------------------------------------------------------


def least_squares_ir(x: Tensor, y: Tensor, n_taps: int, *, ridge: float = DEFAULT_IR_RIDGE) -> Tensor:
    """The FIR ``h`` of ``n_taps`` taps that best maps ``x`` to ``y`` in the least-squares sense:
    ``argmin_h sum_t (y[t] - sum_k h[k] x[t - k])**2 + lam * sum_k h[k]**2``, with ``x`` zero
    before its first sample (the start of a recording) and ``lam = ridge * mean_k R[k, k]``
    (``R``: the input's covariance matrix, so ``ridge`` is relative to the input's energy).

    The exact normal equations (covariance method, the end of the recording included, not
    the Toeplitz approximation of the autocorrelation method) are built with FFT correlations
    plus an ``n_taps x n_taps`` end correction, then solved by Cholesky: a noise-like input and
    ``ridge=0`` give back the FIR that made ``y`` to float64 rounding. The ridge keeps the
    answer finite (and small where the input has no energy) for silence-padded or band-limited
    input. Use it for a learned cabinet's starting response: ``x`` the rest of the amp's
    render of the DI, ``y`` the recording (:meth:`Cabinet.from_pair`).

    Every leading index of ``x`` / ``y`` is one more recording of the same system: they share
    one response (all their equations are stacked). Computed in float64 (float32 on devices
    without it), returned in ``x``'s dtype and device; differentiable. Memory: about ten ``n_taps x n_taps``
    temporaries (~0.3 GB at 2048 taps); time: FFTs of the recordings plus one Cholesky solve.

    Args:
        x: input audio, ``(samples,)`` or ``(..., samples)``.
        y: output audio of the same shape.
        n_taps: response length, ``1 <= n_taps <= samples``.
        ridge: Tikhonov regulariser relative to the input's mean power, ``>= 0`` (default 1e-6).

    Returns:
        ``(n_taps,)`` tensor.

    Raises:
        TypeError: ``x`` or ``y`` not tensors.
        ValueError: shapes differ (lengths or channels), ``n_taps`` not in ``1 .. samples``,
            a negative or non-finite ridge, non-finite audio, or a silent ``x``.

    Reference: the covariance method of linear prediction (Makhoul, "Linear prediction: a
    tutorial review", Proc. IEEE 1975) applied to system identification; ridge regression.
    """
    for name, value in (("x", x), ("y", y)):
        if not isinstance(value, Tensor):
            raise TypeError(f"least_squares_ir: {name} must be a tensor, got {type(value).__name__}")
    if x.ndim == 0 or x.shape[-1] == 0:
        raise ValueError(f"least_squares_ir: x must be (..., samples) with samples > 0, got shape {tuple(x.shape)}")
    if x.shape != y.shape:
        raise ValueError(
            f"least_squares_ir: x and y must have the same shape (one output sample per input sample), "
            f"got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    n = x.shape[-1]
    if isinstance(n_taps, bool) or not isinstance(n_taps, (int, np.integer)) or not 1 <= n_taps <= n:
        raise ValueError(
            f"least_squares_ir: n_taps must be an integer in 1 .. {n} (the signals' length), got {n_taps!r}"
        )
    if isinstance(ridge, bool) or not isinstance(ridge, (int, float)) or not math.isfinite(ridge) or ridge < 0:
        raise ValueError(f"least_squares_ir: ridge must be a finite number >= 0, got {ridge!r}")
    n_taps = int(n_taps)
    work = torch.float32 if x.device.type == "mps" else torch.float64
    xs = x.reshape(-1, n).to(work)
    ys = y.reshape(-1, n).to(work)
    if not bool(torch.isfinite(xs).all() and torch.isfinite(ys).all()):
        raise ValueError("least_squares_ir: x and y must be finite (NaN or Inf found)")
    n_fft = 1 << (n + n_taps - 1).bit_length()
    spec_x = torch.fft.rfft(xs, n_fft)
    # r[k] = sum_t y[t] x[t-k]; a[d] = sum_t x[t] x[t-d] (no circular wrap with n_fft >= n + n_taps)
    r = torch.fft.irfft(torch.fft.rfft(ys, n_fft) * spec_x.conj(), n_fft)[:, :n_taps].sum(0)
    a = torch.fft.irfft(spec_x.abs().square(), n_fft)[:, :n_taps].sum(0)
    # covariance method: R[i, i+d] = a[d] - sum_{m<i} w[m] w[m+d], with w the input reversed
    # from its last sample (the terms the recording's end cuts off), zero before the start
    w = torch.nn.functional.pad(xs.flip(-1)[:, : 2 * n_taps - 1], (0, max(0, 2 * n_taps - 1 - n)))
    idx = torch.arange(n_taps, device=x.device)
    shifted = idx[:, None] + idx[None, :]
    products = sum(row[:n_taps, None] * row[shifted] for row in w)  # (m, d), summed over the recordings
    cut = torch.cumsum(products, dim=0) - products  # exclusive cumsum over m: (i, d)
    i, j = torch.meshgrid(idx, idx, indexing="ij")
    lo, d = torch.minimum(i, j), (i - j).abs()
    cov = a[d] - cut[lo, d]
    lam = ridge * cov.diagonal().mean()
    if not bool(lam > 0) and not bool(cov.diagonal().mean() > 0):
        raise ValueError("least_squares_ir: x is silent (all zeros): no response can be identified from it")
    system = cov + lam * torch.eye(n_taps, dtype=work, device=x.device)
    factor, info = torch.linalg.cholesky_ex(system)
    if int(info) == 0:
        h = torch.cholesky_solve(r[:, None], factor)[:, 0]
    else:  # singular without a ridge: the minimum-norm least-squares answer
        h = torch.linalg.pinv(system, hermitian=True) @ r
    return h.to(x.dtype)
