"""Convolution with an impulse response (loaded from a file or array, or learned)."""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from dspfx.functional.convolution import (
    DEFAULT_PARTITION_SIZE,
    _check_channels,
    normalize_impulse_response,
    partition_spectra,
    partitioned_convolve,
    partitioned_state,
)
from dspfx.registry import register
from dspfx.unit import Knob, Unit

__all__ = ["Convolution"]

IR_INITS = ("noise", "impulse")


def _load_ir(source: Any, sample_rate: float, resample: bool) -> Tensor:
    """The impulse response given as a tensor, an array or an audio file path, as (C, taps) float64."""
    if isinstance(source, (str, os.PathLike)):
        from dspfx.io import read_audio

        path = os.fspath(source)
        try:
            audio, file_sr = read_audio(path, dtype=torch.float64)
        except FileNotFoundError:
            raise FileNotFoundError(f"convolution: impulse response file not found: {path!r}") from None
        except ValueError as err:
            raise ValueError(f"convolution: cannot read the impulse response file {path!r}: {err}") from None
        if file_sr != sample_rate:
            if not resample:
                raise ValueError(
                    f"convolution: impulse response file {path!r} is at {file_sr} Hz but the unit runs at "
                    f"{sample_rate} Hz; pass resample=True to resample it, or make the unit at {file_sr} Hz"
                )
            from dspfx.io import resample as resample_audio

            audio = resample_audio(audio, int(file_sr), int(sample_rate))
        return audio
    if isinstance(source, np.ndarray):
        if not np.issubdtype(source.dtype, np.floating):
            raise TypeError(f"convolution: impulse_response array must be floating point, got dtype {source.dtype}")
        source = torch.from_numpy(np.ascontiguousarray(source))
    if not isinstance(source, Tensor):
        raise TypeError(
            "convolution: impulse_response must be a tensor, a numpy array or an audio file path, "
            f"got {type(source).__name__}"
        )
    if source.is_complex() or not source.is_floating_point():
        raise TypeError(f"convolution: impulse_response must be a real floating tensor, got dtype {source.dtype}")
    h = source.detach().to(torch.float64)
    if h.ndim == 1:
        h = h.unsqueeze(0)
    if h.ndim != 2 or h.shape[0] < 1 or h.shape[1] < 1:
        raise ValueError(
            "convolution: impulse_response must be shaped (taps,) or (ir_channels, taps), got shape "
            f"{tuple(source.shape)}"
        )
    return h


@register
class Convolution(Unit):
    """Convolution with an impulse response: cabinets, rooms, any linear time-invariant system.

    The response is either loaded (``impulse_response``: a tensor or array shaped ``(taps,)`` or
    ``(ir_channels, taps)`` at the unit's sample rate, or the path of an audio file read with
    :func:`dspfx.io.read_audio`) or learned (``n_taps`` without ``impulse_response``). Either way it
    is the ``nn.Parameter`` ``impulse_response`` shaped ``(ir_channels, taps)``: trainable, and
    saved by :func:`dspfx.save` as a tensor (the spec records ``n_taps`` and ``ir_channels``;
    :func:`dspfx.load` restores the tensor). ``dspfx.build(spec)`` alone makes a unit of the same
    shape with a freshly initialised response.

    Zero latency: ``wet[n] = sum_k h[k] x[n - k]``, the output truncated to the input's length.
    Offline (a block long compared to the response) it is one FFT convolution, by overlap-save
    segments of about twice the response (:func:`dspfx.functional.fft_convolve`). Streaming
    (:class:`dspfx.Stream`, short blocks) it is uniformly partitioned
    (:func:`dspfx.functional.partitioned_convolve`): the response cut into partitions of
    ``partition_size`` taps whose spectra are computed once (cached until the response changes;
    recomputed at every block while the response takes gradients), a frequency-domain delay line
    of past input spectra, per ``partition_size`` samples two FFTs of ``2 * partition_size``
    points and one complex multiply-add per partition, the first partition convolved in the time
    domain so there is no latency. Blocks of any sizes, changing from call to call, give the
    offline result (the partitions follow the stream's sample count, not the blocks). The state
    holds the last ``ceil(taps / B) * B + B - 1`` input samples, the delay line and the current
    partition's tail.

    Channels (as pedalboard): a mono response applies to every input channel; an
    ``ir_channels``-channel response applies channel-wise to an input with as many channels; a
    mono input uses the response's first channel. Other combinations are an error.

    Options:
        impulse_response: tensor / array ``(taps,)`` or ``(ir_channels, taps)``, or an audio
            file path; ``None`` (default) for a learned response of ``n_taps`` taps.
        n_taps: length of a learned response (default 4096 when no response is given); with a
            given response it must match its length, or be ``None``.
        ir_channels: channels of a learned response (default 1).
        normalize: rescale the response like pedalboard, by ``0.125 / sqrt(E)`` with ``E`` the
            energy of its loudest channel (left alone when ``E < 1e-8``), at every render (so a
            learned response stays normalised). Default ``None``: True for a loaded response (the
            pedalboard twin), False for a learned one (whose gain must be learnable).
        resample: resample a file at another sample rate to the unit's (default False: a rate
            mismatch is an error naming both rates).
        partition_size: samples per partition when streaming (default 256: a 1 s response at
            48 kHz streams in 256-sample blocks at about 20x real time on one CPU core; see
            benchmarks/convolution.py).
        init: initial learned response: ``"noise"`` (default; seeded Gaussian noise under an
            exponential decay to -60 dB over the response, scaled to unit energy) or
            ``"impulse"`` (``[1, 0, 0, ...]``: the identity).

    Knobs:
        mix: 0 .. 1 (default 1): ``y = (1 - mix) * x + mix * wet``.

    >>> cab = dspfx.make("convolution", impulse_response="cab.wav", sample_rate=48000)
    >>> y = cab(x)                                      # x: (batch, channels, samples)

    Reference: twin of ``pedalboard.Convolution`` (JUCE ``dsp::Convolution`` with normalisation;
    pedalboard renders match to ESR < 1e-6).
    """

    name = "convolution"
    category = "effect"
    pedalboard_classes = ("Convolution",)
    mix = Knob(1.0, 0.0, 1.0, doc="dry/wet: 0 is the input, 1 the convolved signal")

    def __init__(
        self,
        sample_rate: float = 48000,
        impulse_response: Any = None,
        n_taps: int | None = None,
        ir_channels: int | None = None,
        normalize: bool | None = None,
        resample: bool = False,
        init: str = "noise",
        partition_size: int = DEFAULT_PARTITION_SIZE,
        **knobs: Any,
    ) -> None:
        if isinstance(partition_size, bool) or not isinstance(partition_size, (int, np.integer)) or partition_size < 1:
            raise ValueError(f"convolution: partition_size must be a positive integer, got {partition_size!r}")
        if init not in IR_INITS:
            raise ValueError(f"convolution: init must be one of {', '.join(IR_INITS)}, got {init!r}")
        for opt, value in (("n_taps", n_taps), ("ir_channels", ir_channels)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1):
                raise ValueError(f"convolution: {opt} must be a positive integer or None, got {value!r}")
        if normalize is not None and not isinstance(normalize, bool):
            raise TypeError(f"convolution: normalize must be True, False or None, got {normalize!r}")
        if impulse_response is not None:
            # sample_rate is checked by Unit.__init__ below; it is needed here for files
            h = _load_ir(impulse_response, sample_rate, bool(resample))
            if not bool(torch.isfinite(h).all()):
                raise ValueError("convolution: impulse_response contains NaN or Inf values")
            if n_taps is not None and int(n_taps) != h.shape[1]:
                raise ValueError(f"convolution: n_taps={n_taps} differs from the impulse response's {h.shape[1]} taps")
            if ir_channels is not None and int(ir_channels) != h.shape[0]:
                raise ValueError(
                    f"convolution: ir_channels={ir_channels} differs from the impulse response's {h.shape[0]} channels"
                )
            loaded = True
        else:
            taps = 4096 if n_taps is None else int(n_taps)
            chans = 1 if ir_channels is None else int(ir_channels)
            h = self._initial_ir(init, chans, taps)
            loaded = False
        self.n_taps = int(h.shape[1])
        self.ir_channels = int(h.shape[0])
        self.normalize = loaded if normalize is None else normalize
        self.resample = bool(resample)
        self.init = init
        self.partition_size = int(partition_size)
        super().__init__(sample_rate, **knobs)
        self.impulse_response = nn.Parameter(h.to(dtype=self.dtype, device=self.device))
        self._spectra_cache: tuple[Any, ...] | None = None

    @staticmethod
    def _initial_ir(init: str, channels: int, taps: int) -> Tensor:
        if init == "impulse":
            h = torch.zeros(channels, taps, dtype=torch.float64)
            h[:, 0] = 1.0
            return h
        gen = torch.Generator().manual_seed(0)
        decay = torch.exp(torch.arange(taps, dtype=torch.float64) * (math.log(1e-3) / taps))
        h = torch.randn(channels, taps, generator=gen, dtype=torch.float64) * decay
        return h / h.square().sum(-1, keepdim=True).sqrt()

    def options(self) -> dict[str, Any]:
        # The response itself travels as a tensor (dspfx.save); the spec records its shape.
        return {
            "impulse_response": None,
            "n_taps": self.n_taps,
            "ir_channels": self.ir_channels,
            "normalize": self.normalize,
            "resample": self.resample,
            "init": self.init,
            "partition_size": self.partition_size,
        }

    def extra_repr(self) -> str:
        # the response lives in the parameter, not in the "impulse_response" option (always None)
        return super().extra_repr().replace("impulse_response=None, ", "")

    def effective_impulse_response(self) -> Tensor:
        """The response the render uses, ``(ir_channels, taps)``: normalised when ``normalize``."""
        h = self.impulse_response
        return normalize_impulse_response(h) if self.normalize else h

    def init_state(self, batch: int, channels: int) -> dict[str, Any]:
        _check_channels(channels, self.ir_channels)
        return partitioned_state(batch, channels, self.n_taps, self.partition_size, dtype=self.dtype, device=self.device)

    def _response_and_spectra(self) -> tuple[Tensor, Any]:
        """The effective response and its :func:`partition_spectra` (a tensor, or a callable that
        computes it when the partitioned path needs it). Both are cached while the parameter is
        unchanged and takes no gradient; a response being trained is normalised and transformed
        anew at every block."""
        param = self.impulse_response
        if torch.is_grad_enabled() and param.requires_grad:
            h = self.effective_impulse_response()
            return h, lambda: partition_spectra(h, self.partition_size)
        key = (param._version, param.data_ptr(), self.normalize, self.partition_size, param.dtype, param.device)
        cache = self._spectra_cache
        if cache is None or cache[0] is not param or cache[1] != key:
            with torch.no_grad():
                h = self.effective_impulse_response()
                cache = (param, key, h, partition_spectra(h, self.partition_size))
            self._spectra_cache = cache
        return cache[2], cache[3]

    def process(self, x: Tensor, controls: dict[str, Tensor], state: Any) -> tuple[Tensor, Any]:
        h, spectra = self._response_and_spectra()
        wet, state = partitioned_convolve(x, h, state, self.partition_size, spectra=spectra)
        mix = controls["mix"]
        return (1 - mix) * x + mix * wet, state

    @classmethod
    def from_pedalboard(cls, plugin: Any, sample_rate: float) -> Unit:
        """Twin of ``pedalboard.Convolution``: its impulse response array (or, when it was made
        from a file, that file read at ``sample_rate``; another rate is an error) and its mix.
        The array is taken to be at ``sample_rate`` (pedalboard does not report the rate it was
        given)."""
        ir = plugin.impulse_response
        if ir is None:
            ir = plugin.impulse_response_filename
        return cls(sample_rate=sample_rate, impulse_response=ir, normalize=True, mix=float(plugin.mix))

    def to_pedalboard(self) -> Any:
        import pedalboard

        if not self.normalize:
            raise ValueError(
                "convolution: pedalboard.Convolution always normalises its impulse response; only a unit "
                "with normalize=True has a pedalboard twin"
            )
        if self.ir_channels > 2:
            raise ValueError(
                f"convolution: pedalboard.Convolution takes a mono or stereo response, this one has "
                f"{self.ir_channels} channels"
            )
        ir = self.impulse_response.detach().cpu().to(torch.float32).numpy()
        return pedalboard.Convolution(
            np.ascontiguousarray(ir), mix=self.knobs()["mix"], sample_rate=float(self.sample_rate)
        )
