"""The reamp (capture) signal: a standard input to play through a device, made in code, and the
measurements its layout allows on the device's output (latency from blips, the noise or drift
of the device from a repeated validation segment).

Like NAM's v3 signal, it holds a validation segment at the start and again at the end, two
isolated blips (single-sample impulses with silence around them) for latency calibration, and a
training part in between: log sweeps and noise at several levels, guitar and bass phrases at
several levels (:func:`dspfx.signals.guitar_di`; the bass is the same string model an octave
down). Everything is seeded, so the same rate gives the same samples on every machine.

>>> audio, layout = capture_signal(48000)          # float32 (samples,), CaptureLayout
>>> latency = blip_latency(device_output, layout)   # BlipLatency(samples=..., onsets=[...])
>>> repeat_esr(device_output, layout)               # ESR between the two validation returns
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from dspfx.checks import check_sample_rate

__all__ = [
    "CAPTURE_SIGNAL_VERSION",
    "CaptureLayout",
    "capture_signal",
    "match_capture_signal",
    "BlipLatency",
    "blip_latency",
    "repeat_esr",
    "REPEAT_ESR_LIMIT",
]

#: Recorded in a layout: which signal this is.
CAPTURE_SIGNAL_VERSION = "dspfx-reamp/1"
#: Peak of each blip (full scale 1): loud enough to stand out of a device's noise, short enough
#: to stay in the linear range of most inputs.
BLIP_PEAK = 0.5
#: A device whose two validation returns differ by more than this ESR is noisy or drifting
#: (NAM's data check uses the same limit).
REPEAT_ESR_LIMIT = 0.01
#: Highest rate the capture signal is made at (a bound on what one command line can allocate).
MAX_SAMPLE_RATE = 192000
#: Longest latency looked for after a blip, in seconds (silence follows each blip for longer).
MAX_BLIP_LATENCY_S = 0.5


@dataclass(frozen=True)
class CaptureLayout:
    """Where the parts of the capture signal lie, in samples at ``sample_rate``.

    Attributes:
        sample_rate: Hz.
        length: samples in the whole signal.
        validation: ``(start, end)`` of the validation segment at the start.
        blips: sample index of each blip.
        training: ``(start, end)`` of the training part.
        validation_repeat: ``(start, end)`` of the same validation segment again at the end.
        version: :data:`CAPTURE_SIGNAL_VERSION`.
    """

    sample_rate: int
    length: int
    validation: tuple[int, int]
    blips: tuple[int, ...]
    training: tuple[int, int]
    validation_repeat: tuple[int, int]
    version: str = CAPTURE_SIGNAL_VERSION

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (seconds added for people reading it)."""
        out = asdict(self)
        out["seconds"] = self.length / self.sample_rate
        return out


def _log_sweep(n: int, sample_rate: int, low_hz: float = 20.0, high_hz: float = 20000.0) -> np.ndarray:
    high_hz = min(high_hz, 0.45 * sample_rate)
    t = np.arange(n) / sample_rate
    duration = n / sample_rate
    k = math.log(high_hz / low_hz)
    phase = 2 * math.pi * low_hz * duration / k * (np.exp(t / duration * k) - 1.0)
    fade = np.minimum(1.0, np.minimum(np.arange(n), np.arange(n)[::-1]) / (0.01 * sample_rate))
    return np.sin(phase) * fade


def _guitar(sample_rate: int, seconds: float, seed: int, octave_down: bool = False) -> np.ndarray:
    from dspfx.signals import guitar_di

    if octave_down:  # the same strings at twice the rate, played back at this one: an octave lower
        audio = guitar_di(2 * sample_rate, seconds / 2.0, seed=seed)
    else:
        audio = guitar_di(sample_rate, seconds, seed=seed)
    x = audio.reshape(-1).double().numpy()
    return x / max(float(np.abs(x).max()), 1e-12)


@functools.lru_cache(maxsize=4)
def _build(sample_rate: int) -> tuple[np.ndarray, CaptureLayout]:
    sr = sample_rate
    s = lambda seconds: int(round(seconds * sr))  # noqa: E731
    rng = np.random.default_rng(20261207)
    validation = np.concatenate([0.5 * _guitar(sr, 4.0, seed=11), 0.6 * _guitar(sr, 4.0, seed=12, octave_down=True)])
    parts: list[np.ndarray] = [validation, np.zeros(s(2.0))]
    start = sum(len(p) for p in parts)
    blips = []
    for _ in range(2):
        blip = np.zeros(s(1.0))
        blip[0] = BLIP_PEAK
        blips.append(start)
        parts.append(blip)
        start += len(blip)
    training_start = start
    train: list[np.ndarray] = []
    for peak_db in (-30.0, -18.0, -6.0):
        train += [10 ** (peak_db / 20) * _log_sweep(s(2.0), sr), np.zeros(s(0.1))]
    for rms_db in (-40.0, -28.0, -16.0):  # clipped at 3.5 sigma: peak 0.55 at the loudest
        train += [10 ** (rms_db / 20) * np.clip(rng.standard_normal(s(1.0)), -3.5, 3.5), np.zeros(s(0.1))]
    for peak, seed in ((0.125, 1), (0.5, 2), (0.9, 3)):
        train += [peak * _guitar(sr, 8.0, seed=seed)]
    for peak, seed in ((0.25, 4), (0.7, 5)):
        train += [peak * _guitar(sr, 8.0, seed=seed, octave_down=True)]
    training = np.concatenate(train)
    parts += [training, np.zeros(s(1.0))]
    repeat_start = sum(len(p) for p in parts)
    parts.append(validation)
    audio = np.concatenate(parts).astype(np.float32)
    layout = CaptureLayout(
        sample_rate=sr,
        length=len(audio),
        validation=(0, len(validation)),
        blips=tuple(blips),
        training=(training_start, training_start + len(training)),
        validation_repeat=(repeat_start, repeat_start + len(validation)),
    )
    audio.setflags(write=False)
    return audio, layout


def capture_signal(sample_rate: int = 48000) -> tuple[np.ndarray, CaptureLayout]:
    """The reamp signal at ``sample_rate`` (mono float32, peak 0.9, 70.6 s) and its layout.

    Raises:
        ValueError: a sample rate that is not a whole positive number of Hz, or outside 16 ..
            192 kHz (:data:`MAX_SAMPLE_RATE`: the signal at 192 kHz is 54 MB).
    """
    sr = check_sample_rate(sample_rate, integer=True)
    if sr < 16000:
        raise ValueError(f"the capture signal is made at 16 kHz or more (its guitar phrases need it), got {sr} Hz")
    if sr > MAX_SAMPLE_RATE:
        raise ValueError(f"the capture signal is made at {MAX_SAMPLE_RATE} Hz at most, got {sr} Hz")
    audio, layout = _build(sr)
    return audio.copy(), layout


def match_capture_signal(audio: Any, sample_rate: int, tolerance: float = 1e-5) -> CaptureLayout | None:
    """The layout when ``audio`` (mono, ``(samples,)``) is this package's capture signal at
    ``sample_rate`` (the same length, and an ESR against it below ``tolerance``: 16-bit files
    pass), else None."""
    x = np.asarray(audio, dtype=np.float64).reshape(-1)
    try:
        reference, layout = _build(check_sample_rate(sample_rate, integer=True))
    except ValueError:
        return None
    if x.shape[0] != reference.shape[0]:
        return None
    ref = reference.astype(np.float64)
    return layout if float(np.sum((x - ref) ** 2) / np.sum(ref**2)) < tolerance else None


@dataclass(frozen=True)
class BlipLatency:
    """What :func:`blip_latency` found.

    Attributes:
        samples: the device's latency (the first blip's onset), in samples.
        onsets: the onset found after each blip, in samples after it.
        noise_floor: RMS of the output in the silence before the first blip (full scale 1).
        threshold: the level an onset had to exceed.
    """

    samples: int
    onsets: tuple[int, ...]
    noise_floor: float
    threshold: float


def blip_latency(output: Any, layout: CaptureLayout, *, relative: float = 1e-3, noise_factor: float = 8.0) -> BlipLatency:
    """The device's latency from its response to the capture signal's blips.

    For each blip, the onset is the first sample after it (within :data:`MAX_BLIP_LATENCY_S`)
    where the output, less its mean in the silence before the blip, exceeds a threshold: the
    larger of ``relative`` times that response's peak and ``noise_factor`` times the RMS of that
    silence. It reads the first arrival, not the peak of the response, so a device's filtering
    (whose impulse response peaks later than it starts) is not mistaken for latency.

    Args:
        output: the device's output for the whole capture signal, mono ``(samples,)``.
        layout: from :func:`capture_signal` or :func:`match_capture_signal`.

    Raises:
        ValueError: the output is shorter than the signal, a blip draws no response above the
            noise, or the two blips' onsets disagree by more than a sample (a device that does
            not answer a blip the same way twice, or a recording with dropouts).
    """
    y = np.asarray(output, dtype=np.float64).reshape(-1)
    if y.shape[0] < layout.length:
        raise ValueError(
            f"the output holds {y.shape[0]} samples but the capture signal {layout.length}; record the whole signal"
        )
    sr = layout.sample_rate
    window = int(MAX_BLIP_LATENCY_S * sr)
    quiet = int(0.5 * sr)
    onsets, floors, thresholds = [], [], []
    for blip in layout.blips:
        before = y[blip - quiet : blip]
        base = float(before.mean())
        floor = float(np.sqrt(np.mean((before - base) ** 2)))
        response = np.abs(y[blip : blip + window] - base)
        peak = float(response.max())
        threshold = max(relative * peak, noise_factor * floor)
        if peak <= noise_factor * floor or peak == 0.0:
            raise ValueError(
                f"no response to the blip at {blip / sr:.3f} s above the noise (peak {peak:.3g}, noise RMS {floor:.3g}): "
                "check that the output is the device's recording of the capture signal"
            )
        onsets.append(int(np.argmax(response > threshold)))
        floors.append(floor)
        thresholds.append(threshold)
    if max(onsets) - min(onsets) > 1:
        raise ValueError(
            f"the blips' onsets disagree ({', '.join(str(o) for o in onsets)} samples): the device does not answer "
            "them alike (a gate, a dropout, or drift); give the latency yourself (--latency)"
        )
    return BlipLatency(samples=onsets[0], onsets=tuple(onsets), noise_floor=floors[0], threshold=thresholds[0])


def repeat_esr(output: Any, layout: CaptureLayout, latency: int = 0) -> float:
    """ESR between the device's two returns of the validation segment (after ``latency``): near 0
    for a deterministic device; above :data:`REPEAT_ESR_LIMIT` the device is noisy or drifting
    and no model can be graded below it."""
    y = np.asarray(output, dtype=np.float64).reshape(-1)
    (a0, a1), (b0, b1) = layout.validation, layout.validation_repeat
    cut = max(0, b1 + latency - y.shape[0])  # a recording as long as the signal loses the last `latency` samples
    if cut >= (b1 - b0) // 2:
        raise ValueError(f"the output ({y.shape[0]} samples) ends before the repeated validation segment")
    first, second = y[a0 + latency : a1 + latency - cut], y[b0 + latency : b1 + latency - cut]
    energy = float(np.sum(first**2))
    if energy == 0.0:
        raise ValueError("the output is silent during the validation segment")
    return float(np.sum((second - first) ** 2) / energy)
