"""Latency estimation and alignment of input/target captures.

A re-amped capture (DI in, amp/pedal out) is usually delayed by the interface's round trip and
the device itself. :func:`estimate_latency` finds that delay by cross-correlation and
:func:`align` trims the pair so that sample ``n`` of the input lines up with sample ``n`` of the
target. Neither is differentiable (the lag is an integer).
"""

from __future__ import annotations

import operator

import numpy as np
import scipy.fft
import torch

__all__ = [
    "estimate_latency", "device_latency", "render_latency", "align", "DEFAULT_MAX_LATENCY", "PHASE_LAG_SAMPLES",
    "ONSET_FRACTION", "ONSET_WINDOW",
]

#: Upper bound of the default search range, in samples (one second at 48 kHz).
DEFAULT_MAX_LATENCY = 48000
#: Regularisation of the deconvolution in ``method="impulse"``, relative to the mean input power.
DECONVOLUTION_EPS = 1e-3
#: Lags of at most this many samples between a unit's starting render and the target are left
#: to the fit: a model of another structure (or at other knob settings) differs from the target
#: in phase, and that reads as a lag of a sample or two that the knobs will take up, whereas a
#: wrong alignment by one sample is an error no knob can undo (a pedalboard board against the
#: bassman chain read -1 and held-out ESR went from 0.010 to 0.049). Interface latencies are
#: tens of samples and more.
PHASE_LAG_SAMPLES = 2
#: ``method="onset"``: the response has begun where ``|h|`` first reaches this fraction of its
#: peak. Measured on guitarix and calf devices of zero latency rendered from a guitar DI: 0.1
#: reads them within 2 samples of 0 (0.05 lets the spread of long fuzz responses read -59).
ONSET_FRACTION = 0.1
#: ``method="onset"``: how far before the peak, in samples, the onset is looked for.
ONSET_WINDOW = 64


def _time_axis_2d(x: object, name: str) -> np.ndarray:
    """``x`` as float64 numpy ``(batch, samples)``: channels summed, leading dims added."""
    if isinstance(x, torch.Tensor):
        if x.is_complex():
            raise TypeError(f"{name} must be a real tensor, got dtype {x.dtype}")
        arr = x.detach().to("cpu", torch.float64).numpy()
    elif isinstance(x, np.ndarray):
        arr = np.asarray(x, dtype=np.float64)
    else:
        raise TypeError(f"{name} must be a torch.Tensor (or numpy array), got {type(x).__name__}")
    if arr.ndim == 1:
        arr = arr[None, None, :]
    elif arr.ndim == 2:
        arr = arr[None, :, :]
    elif arr.ndim != 3:
        raise ValueError(
            f"{name} must be shaped (batch, channels, samples), (channels, samples) or "
            f"(samples,), got shape {tuple(arr.shape)}"
        )
    if arr.shape[-1] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {tuple(x.shape)})")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf; cannot estimate latency")
    summed = arr.sum(axis=1)
    return summed - summed.mean(axis=-1, keepdims=True)


def estimate_latency(
    input: torch.Tensor,
    target: torch.Tensor,
    max_latency: int | None = None,
    *,
    method: str = "impulse",
) -> int:
    """Integer delay of ``target`` relative to ``input``.

    Finds ``L`` such that ``target[n] ~ f(input[n - L])``: ``L > 0`` means the target lags the
    input (the usual capture latency), ``L < 0`` that it is ahead. Each signal is summed over
    its channels and its mean removed; spectra of the batch items (input and target batches
    must match, or one of them be 1) are pooled.

    - ``method="impulse"`` (default): ``L`` is the peak of ``|h|``, the impulse response of the
      device's best linear approximation, estimated by regularised deconvolution
      ``h = irfft(sum Y conj(X) / (sum |X|^2 + eps))`` with ``eps`` = 1e-3 of the mean input
      power. Removing the input's own colouring matters: a guitar DI is dominated by low
      frequencies, and its broad autocorrelation drags the plain cross-correlation peak a few
      samples along the device's filters (e.g. 2 samples late for distortion into shelving EQ),
      which leaves a time-domain fit misaligned. Exact for delays through memoryless
      nonlinearities and minimum-phase EQ (shelves, peaks, one-pole filters), whose responses
      peak at their first sample.
    - ``method="onset"``: where that response begins rather than where it peaks: the first lag
      within :data:`ONSET_WINDOW` samples before the peak where ``|h|`` reaches
      :data:`ONSET_FRACTION` of it, less the same onset of the input's own kernel (what ``h``
      is for a wire: a band-limited DI smears every response by a sample or two, both ways).
      Low-passes, resonances and linear-phase oversampling filters peak late (a 3 kHz
      two-pole low-pass at 3 samples, guitarix's oversampled fuzzes at 33) but begin near 0,
      so this is the method for a device's latency (:func:`device_latency`); a steep low-pass
      still reads late by its rise (6th-order Chebyshev at 1.5 kHz: about 15).
    - ``method="xcorr"``: the peak of the plain cross-correlation
      ``r[L] = sum_n target[n] input[n - L]``.

    Both look at magnitudes, so a polarity-inverted target (many amps invert) is found too;
    responses that peak late (steep low-passes, linear-phase FIRs: their centre) read late by
    that much. For strictly periodic signals without onsets the lag is only defined up to the
    period.

    Args:
        input: ``(batch, channels, samples)`` (or ``(channels, samples)`` / ``(samples,)``),
            the signal sent into the device.
        target: same layout (its channel count and length may differ), the recorded output.
        max_latency: largest ``|L|`` searched, in samples. Default:
            ``min(min(len(input), len(target)) // 4, DEFAULT_MAX_LATENCY)`` where
            ``DEFAULT_MAX_LATENCY = 48000`` (one second at 48 kHz). Lags are also limited to
            those where the signals still overlap.

    Returns:
        ``L`` as a python int (samples).

    Raises:
        ValueError: if either signal is silent (all zeros or constant), has NaN/inf, or the
            shapes are unusable.
    """
    x = _time_axis_2d(input, "input")
    y = _time_axis_2d(target, "target")
    if x.shape[0] != y.shape[0] and 1 not in (x.shape[0], y.shape[0]):
        raise ValueError(
            f"input and target batch sizes must match (or one be 1), got input "
            f"{tuple(input.shape)} and target {tuple(target.shape)}"
        )
    for arr, name, orig in ((x, "input", input), (y, "target", target)):
        if not np.any(arr):
            raise ValueError(
                f"{name} (shape {tuple(orig.shape)}) is silent (all zeros or constant after "
                f"summing channels): cannot estimate latency"
            )
    n_x, n_y = x.shape[-1], y.shape[-1]
    if max_latency is None:
        max_latency = min(min(n_x, n_y) // 4, DEFAULT_MAX_LATENCY)
    else:
        try:
            max_latency = operator.index(max_latency)
        except TypeError:
            raise TypeError(
                f"max_latency must be an integer number of samples or None, got {max_latency!r}"
            ) from None
        if max_latency < 0:
            raise ValueError(f"max_latency must be >= 0 samples, got {max_latency}")

    if method not in ("impulse", "xcorr", "onset"):
        raise ValueError(f"method must be 'impulse', 'onset' or 'xcorr', got {method!r}")

    n_fft = scipy.fft.next_fast_len(n_x + n_y - 1, real=True)
    spectrum_x = scipy.fft.rfft(x, n_fft, axis=-1)
    spectrum_y = scipy.fft.rfft(y, n_fft, axis=-1)
    cross = np.sum(spectrum_y * np.conj(spectrum_x), axis=0)
    if method != "xcorr":
        power = np.sum(np.abs(spectrum_x) ** 2, axis=0)
        denominator = power + DECONVOLUTION_EPS * power.mean()
        cross = cross / denominator
    response = scipy.fft.irfft(cross, n_fft)  # response[L mod n_fft] is the value at lag L

    lo = -min(max_latency, n_x - 1)
    hi = min(max_latency, n_y - 1)
    lags = np.arange(lo, hi + 1)
    if method != "onset":
        return int(lags[int(np.argmax(np.abs(response[lags % n_fft])))])
    kernel = scipy.fft.irfft(power / denominator, n_fft)
    return _onset(response, lags) - _onset(kernel, np.arange(-ONSET_WINDOW, ONSET_WINDOW + 1))


def _onset(response: np.ndarray, lags: np.ndarray) -> int:
    """The first lag within ONSET_WINDOW before the peak of ``|response|`` (over ``lags``)
    where it reaches ONSET_FRACTION of that peak."""
    magnitude = np.abs(response[lags % response.shape[-1]])
    peak = int(np.argmax(magnitude))
    start = max(peak - ONSET_WINDOW, 0)
    begun = magnitude[start : peak + 1] >= ONSET_FRACTION * magnitude[peak]
    return int(lags[start + int(np.argmax(begun))])


def align(
    input: torch.Tensor, target: torch.Tensor, latency: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Trim ``input`` and ``target`` so that they line up, given the target's delay.

    For ``latency = L >= 0`` returns ``input[..., :n]`` and ``target[..., L:L + n]``; for
    ``L < 0`` returns ``input[..., -L:-L + n]`` and ``target[..., :n]``, with ``n`` the largest
    common length (``T - |L|`` for equal lengths ``T``). The results are views (slices) with the
    original leading dims.

    Args:
        input: tensor ``(..., samples)``.
        target: tensor ``(..., samples)``.
        latency: delay of ``target`` relative to ``input`` in samples, e.g. from
            :func:`estimate_latency`.

    Returns:
        ``(input, target)`` trimmed to the same number of samples.

    Raises:
        TypeError: if ``latency`` is not an integer.
        ValueError: if ``|latency|`` leaves no overlap.
    """
    for x, name in ((input, "input"), (target, "target")):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() == 0:
            raise ValueError(f"{name} must have a time axis, got a 0-d tensor")
    try:
        lag = operator.index(latency)
    except TypeError:
        raise TypeError(
            f"latency must be an integer number of samples, got {latency!r}"
        ) from None
    n_x, n_y = input.shape[-1], target.shape[-1]
    if lag >= 0:
        n = min(n_x, n_y - lag)
        start_x, start_y = 0, lag
    else:
        n = min(n_x + lag, n_y)
        start_x, start_y = -lag, 0
    if n <= 0:
        raise ValueError(
            f"latency {lag} leaves no overlap between input ({n_x} samples) and target "
            f"({n_y} samples)"
        )
    return input[..., start_x : start_x + n], target[..., start_y : start_y + n]


def device_latency(input: torch.Tensor, output: torch.Tensor, max_latency: int | None = None) -> int:
    """A device's latency from a plain input/output pair: what :func:`dspfx.capture` uses for
    its neural models, and :func:`dspfx.fit` when the unit renders silence (against a unit's
    render, :func:`render_latency`).

    The onset of the device's response (``estimate_latency(method="onset")``); an onset of at
    most :data:`PHASE_LAG_SAMPLES` either way is the smear of a band-limited input, and reads 0.
    So a device of zero latency is never shifted (memoryless nonlinearities, EQ, a 3 kHz
    low-pass, the guitarix and calf devices tried), and a pure delay of ``D > 2`` samples after
    a device whose response begins at once reads ``D`` exactly. A device that pre-rings
    (linear-phase oversampling) reads where the ringing reaches a tenth of its peak, earlier
    than its blips' onset: early is safe for a model that sees the past, late is not.
    """
    lag = estimate_latency(input, output, max_latency=max_latency, method="onset")
    return 0 if abs(lag) <= PHASE_LAG_SAMPLES else lag


def render_latency(reference: torch.Tensor, target: torch.Tensor, max_latency: int | None = None) -> int | None:
    """The target's delay relative to a model's own render ``reference`` of the same input:
    what a fit must remove before it starts. Measuring against the model's render rather
    than the input keeps the model's filtering and reported latency out of the estimate (a
    1.5 kHz resonant low-pass peaks several samples late, and measured against the input that
    group delay reads as latency). Here the peak of the response is the rule, not its onset
    (:func:`device_latency`): the render carries a filtering like the device's, so the response
    is nearly an impulse whose peak is exact; where the two filter differently, the onset moves
    with the smear (a render low-passed at 1.5 kHz against an unfiltered device 37 samples late:
    onset 29, peak 33, and 33 is what lines the render up). A lag of at most
    :data:`PHASE_LAG_SAMPLES` is phase for the knobs to take up, and reads 0. Returns None when
    the render is silent or not finite (the caller falls back to the input)."""
    if not bool(torch.isfinite(reference).all()) or float(reference.abs().max()) == 0.0:
        return None
    lag = estimate_latency(reference, target, max_latency=max_latency)
    return 0 if abs(lag) <= PHASE_LAG_SAMPLES else lag
