"""Test and demo signals generated in code: guitar DI, noise, sines, sweeps, impulses.

Every generator returns a float32 (or ``dtype``) torch tensor shaped ``(1, channels, samples)``
(``channels`` is 1 unless the function takes a ``channels`` argument). Random generators take a
``seed`` and are deterministic for it. The numbers are made with numpy in float64 and cast at
the end; nothing here is differentiable or meant to be.

The guitar is an extended Karplus-Strong plucked string (Karplus & Strong 1983; Jaffe & Smith,
"Extensions of the Karplus-Strong plucked-string algorithm", CMJ 7(2), 1983): a delay line
closed by a one-pole lowpass loop filter (frequency-dependent decay), a first-order allpass for
the fractional part of the period (so notes are in tune), a pick-position comb on the noise
excitation and a short noisy pick attack. The string loop is compiled with numba
(``cache=True``: the first call of a fresh install compiles it once, ~1 s).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from numba import njit
from scipy.signal import lfilter

from dspfx.functional.conversions import midi_to_hz

__all__ = ["guitar_di", "pluck", "white_noise", "sine", "log_sweep", "impulse"]

#: Open-string MIDI notes of a standard-tuned guitar, low to high: E2 A2 D3 G3 B3 E4.
STANDARD_TUNING = (40, 45, 50, 55, 59, 64)


def _n_samples(duration_s: float, sample_rate: int) -> int:
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive integer in Hz, got {sample_rate!r}")
    if not (isinstance(duration_s, (int, float)) and math.isfinite(duration_s) and duration_s > 0):
        raise ValueError(f"duration_s must be a positive number of seconds, got {duration_s!r}")
    n = int(round(duration_s * sample_rate))
    if n < 1:
        raise ValueError(
            f"duration_s={duration_s!r} at sample_rate={sample_rate} gives no samples; expected >= 1"
        )
    return n


def _to_tensor(x: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    """(channels, samples) or (samples,) float64 array -> (1, channels, samples) tensor."""
    x = np.atleast_2d(x)
    return torch.from_numpy(np.ascontiguousarray(x[None])).to(dtype)


# --- plucked string (extended Karplus-Strong) ---


@njit(cache=True)
def _string_loop(
    excitation: np.ndarray, n_out: int, delay: int, b0: float, a1: float, c: float
) -> np.ndarray:  # pragma: no cover - compiled
    """y[n] = x[n] + AP(LP(y[n - delay])); LP: b0 / (1 - a1 z^-1); AP: (c + z^-1) / (1 + c z^-1)."""
    y = np.zeros(n_out)
    n_exc = excitation.shape[0]
    lp = 0.0
    ap_x1 = 0.0
    ap_y1 = 0.0
    for n in range(n_out):
        v = y[n - delay] if n >= delay else 0.0
        lp = b0 * v + a1 * lp
        ap = c * lp + ap_x1 - c * ap_y1
        ap_x1 = lp
        ap_y1 = ap
        y[n] = ap + (excitation[n] if n < n_exc else 0.0)
    return y


def _string_coefficients(
    f0_hz: float, sample_rate: int, decay_s: float, damping: float
) -> tuple[int, float, float, float]:
    """Delay length, loop-filter (b0, a1) and allpass c tuning the loop to exactly f0.

    Loop filter ``g (1 - a) / (1 - a z^-1)`` with ``a = damping``; ``g`` makes the fundamental
    decay by 60 dB in ``decay_s``. Its phase delay at f0 and the allpass' (exact at f0:
    ``c = sin(w (1 - d) / 2) / sin(w (1 + d) / 2)``) plus the integer delay sum to one period.
    """
    period = sample_rate / f0_hz
    w0 = 2.0 * math.pi * f0_hz / sample_rate
    a = damping
    lp_mag = (1.0 - a) / math.hypot(1.0 - a * math.cos(w0), a * math.sin(w0))
    lp_delay = math.atan2(a * math.sin(w0), 1.0 - a * math.cos(w0)) / w0
    loop_gain = 10.0 ** (-3.0 / (decay_s * f0_hz))  # per period, at f0
    g = min(loop_gain / lp_mag, 0.99999)
    rest = period - lp_delay
    delay = int(math.floor(rest - 0.1))  # keep the allpass delay in [0.1, 1.1): c away from -1
    d = rest - delay
    c = math.sin(w0 * (1.0 - d) / 2.0) / math.sin(w0 * (1.0 + d) / 2.0)
    return delay, g * (1.0 - a), a, c


def _default_decay_s(f0_hz: float) -> float:
    return float(np.clip(5.0 * (82.4 / f0_hz) ** 0.5, 0.8, 6.0))


def _default_damping(f0_hz: float) -> float:
    # Lower strings (long delay lines) need more loop damping per period for a similar tone.
    return float(np.clip(0.45 * (82.4 / f0_hz) ** 0.3, 0.05, 0.6))


def _pluck_np(
    f0_hz: float,
    n_samples: int,
    sample_rate: int,
    rng: np.random.Generator,
    *,
    decay_s: float | None = None,
    damping: float | None = None,
    pick_position: float = 0.15,
    velocity: float = 1.0,
    attack_level: float = 0.08,
) -> np.ndarray:
    """One plucked note, float64 (n_samples,), peak = velocity."""
    if not (math.isfinite(f0_hz) and 20.0 <= f0_hz <= sample_rate / 8.0):
        raise ValueError(
            f"f0_hz must be in [20, sample_rate / 8] = [20, {sample_rate / 8.0:g}] Hz, got {f0_hz!r}"
        )
    decay_s = _default_decay_s(f0_hz) if decay_s is None else float(decay_s)
    damping = _default_damping(f0_hz) if damping is None else float(damping)
    if not decay_s > 0:
        raise ValueError(f"decay_s must be positive (seconds to -60 dB), got {decay_s!r}")
    if not 0.0 <= damping < 1.0:
        raise ValueError(f"damping (loop lowpass pole) must be in [0, 1), got {damping!r}")
    if not 0.0 < pick_position < 0.5:
        raise ValueError(f"pick_position must be in (0, 0.5) (fraction of the string), got {pick_position!r}")
    delay, b0, a1, c = _string_coefficients(f0_hz, sample_rate, decay_s, damping)
    period = int(round(sample_rate / f0_hz))

    # Excitation: one period of noise, softened for low velocities, zero mean, then the
    # pick-position comb (1 - z^-M) that notches the harmonics with a node at the pick.
    burst = rng.uniform(-1.0, 1.0, period)
    smooth = 0.2 + 0.5 * (1.0 - min(velocity, 1.0))
    burst = lfilter([1.0 - smooth], [1.0, -smooth], burst)
    burst -= burst.mean()
    m = max(1, int(round(pick_position * period)))
    excitation = np.concatenate([burst, np.zeros(m)])
    excitation[m:] -= burst
    y = _string_loop(excitation, n_samples, delay, b0, a1, c)

    # Pick attack: a few ms of bright noise with a fast decay, outside the loop.
    n_att = min(n_samples, int(0.004 * sample_rate))
    if n_att > 1 and attack_level > 0:
        noise = np.diff(rng.standard_normal(n_att + 1))
        env = np.exp(-np.arange(n_att) / (0.0008 * sample_rate))
        y[:n_att] += attack_level * np.max(np.abs(y)) * noise / np.max(np.abs(noise)) * env
    peak = np.max(np.abs(y))
    return y * (velocity / peak) if peak > 0 else y


def pluck(
    f0_hz: float,
    duration_s: float,
    sample_rate: int = 48000,
    *,
    decay_s: float | None = None,
    damping: float | None = None,
    pick_position: float = 0.15,
    velocity: float = 1.0,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """One plucked-string note (extended Karplus-Strong, Jaffe & Smith 1983), in tune.

    Args:
        f0_hz: fundamental in Hz, in [20, sample_rate / 8]. The loop (integer delay, lowpass
            phase delay, fractional-delay allpass) is tuned exactly at this frequency.
        duration_s: length in seconds.
        sample_rate: in Hz.
        decay_s: time for the fundamental to fall by 60 dB (default: ~5 s for E2, shorter for
            higher notes).
        damping: pole of the one-pole loop lowpass, in [0, 1): larger -> highs die faster
            (default depends on f0).
        pick_position: where the string is picked, as a fraction of its length from the bridge
            (0, 0.5); sets the comb on the excitation.
        velocity: peak level of the note; below 1 also darkens the excitation.
        seed: seeds the excitation and pick noise.
        dtype: floating-point torch dtype of the result.

    Returns:
        Tensor ``(1, 1, samples)`` with peak ``velocity``.
    """
    n = _n_samples(duration_s, sample_rate)
    y = _pluck_np(
        float(f0_hz), n, int(sample_rate), np.random.default_rng(seed),
        decay_s=decay_s, damping=damping, pick_position=pick_position, velocity=velocity,
    )
    return _to_tensor(y, dtype)


# A 4-second phrase: (start_s, string, fret) single notes, then strummed chords
# (start_s, frets low E..high E, None = not played, direction).
_SINGLE_NOTES = [
    (0.02, 0, 0), (0.24, 0, 3), (0.44, 1, 0), (0.62, 1, 2), (0.82, 2, 2),
    (1.02, 3, 2), (1.22, 4, 3), (1.42, 5, 3), (1.62, 5, 7), (1.84, 5, 12),
]
_CHORDS = [
    (2.10, (0, 2, 2, 1, 0, 0), "down"),        # E major
    (2.72, (None, 0, 2, 2, 1, 0), "up"),       # A minor
    (3.30, (3, 2, 0, 0, 0, 3), "down"),        # G major
]
_PHRASE_S = 4.0


def _phrase_events(rng: np.random.Generator, offset_s: float) -> list[tuple[float, int, int, float]]:
    """(start_s, string, fret, velocity) for one phrase, with seeded timing/velocity variation."""
    events = []
    for t, string, fret in _SINGLE_NOTES:
        jitter = rng.uniform(-0.008, 0.008) if t > 0.05 else 0.0
        events.append((offset_s + t + jitter, string, fret, rng.uniform(0.7, 1.0)))
    for t, frets, direction in _CHORDS:
        strings = [s for s, f in enumerate(frets) if f is not None]
        if direction == "up":
            strings = strings[::-1]
        start = offset_s + t + rng.uniform(-0.01, 0.01)
        level = rng.uniform(0.6, 0.9)
        for s in strings:
            events.append((start, s, frets[s], level * rng.uniform(0.8, 1.0)))
            start += rng.uniform(0.010, 0.030)
    return events


def guitar_di(sample_rate: int = 48000, duration_s: float = 4.0, seed: int = 0) -> torch.Tensor:
    """A guitar-like DI signal: single notes, then strummed chords, on plucked strings.

    Standard tuning (E2 A2 D3 G3 B3 E4 open strings, notes up to E5). Each note is an extended
    Karplus-Strong pluck (see :func:`pluck`); a new note on a string stops the one ringing
    there (30 ms fade). Chords are strummed, strings 10-30 ms apart, down or up. A 4-second
    phrase (ten single notes; E major, A minor, G major chords) repeats for longer durations.
    The mix goes through a DC blocker (5 Hz) and a gentle pickup-like resonant lowpass
    (5 kHz, Q 1.2), has its tiny leftover mean removed, and is scaled to a peak of 0.5 like a
    DI recording. The seed varies the excitation noise, timing, velocities and pick positions.

    Args:
        sample_rate: in Hz (>= 16000 so the highest notes fit the string model).
        duration_s: length in seconds.
        seed: random seed; same seed, same signal.

    Returns:
        float32 tensor ``(1, 1, samples)``.
    """
    n = _n_samples(duration_s, sample_rate)
    if sample_rate < 16000:
        raise ValueError(f"guitar_di needs sample_rate >= 16000 Hz, got {sample_rate}")
    rng = np.random.default_rng(seed)
    events: list[tuple[float, int, int, float]] = []
    for k in range(int(math.ceil(duration_s / _PHRASE_S))):
        events += _phrase_events(rng, k * _PHRASE_S)
    events.sort(key=lambda e: e[0])

    fade = int(0.03 * sample_rate)
    out = np.zeros(n)
    for i, (t, string, fret, velocity) in enumerate(events):
        start = max(0, int(round(t * sample_rate)))
        if start >= n:
            continue
        later = [e[0] for e in events[i + 1:] if e[1] == string]
        stop = min(n, int(round(later[0] * sample_rate)) + fade) if later else n
        f0 = midi_to_hz(STANDARD_TUNING[string] + fret)
        note = _pluck_np(f0, stop - start, sample_rate, rng,
                         pick_position=rng.uniform(0.1, 0.22), velocity=velocity)
        if later and stop - start > fade:
            note[-fade:] *= 0.5 * (1.0 + np.cos(np.linspace(0.0, np.pi, fade)))
        out[start:stop] += note

    # DC blocker, then a pickup-like resonant lowpass (RBJ cookbook).
    r = math.exp(-2.0 * math.pi * 5.0 / sample_rate)
    out = lfilter([1.0, -1.0], [1.0, -r], out)
    w = 2.0 * math.pi * min(5000.0, 0.4 * sample_rate) / sample_rate
    alpha = math.sin(w) / (2.0 * 1.2)
    cw = math.cos(w)
    out = lfilter([(1 - cw) / 2, 1 - cw, (1 - cw) / 2], [1 + alpha, -2 * cw, 1 - alpha], out)
    out -= out.mean()
    peak = np.max(np.abs(out))
    if peak > 0:
        out *= 0.5 / peak
    return _to_tensor(out, torch.float32)


# --- simple signals ---


def white_noise(
    duration_s: float,
    sample_rate: int,
    channels: int = 1,
    seed: int = 0,
    level_db: float = -12.0,
    *,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Gaussian white noise at an exact RMS level.

    Args:
        duration_s: length in seconds.
        sample_rate: in Hz.
        channels: independent noise channels.
        seed: random seed.
        level_db: RMS level of each channel in dB re 1.0 (dBFS RMS; a full-scale square wave
            is 0 dB, a full-scale sine -3 dB). Each channel is made zero-mean and scaled to
            exactly this level.
        dtype: floating-point torch dtype.

    Returns:
        Tensor ``(1, channels, samples)``.
    """
    n = _n_samples(duration_s, sample_rate)
    if isinstance(channels, bool) or not isinstance(channels, (int, np.integer)) or channels < 1:
        raise ValueError(f"channels must be a positive integer, got {channels!r}")
    x = np.random.default_rng(seed).standard_normal((channels, n))
    if n > 1:
        x -= x.mean(axis=1, keepdims=True)
    rms = np.sqrt(np.mean(x**2, axis=1, keepdims=True))
    x = x / np.where(rms > 0, rms, 1.0) * 10.0 ** (level_db / 20.0)
    return _to_tensor(x, dtype)


def _check_freq(freq_hz: float, sample_rate: int, name: str) -> None:
    if not (math.isfinite(freq_hz) and 0 < freq_hz < sample_rate / 2):
        raise ValueError(
            f"{name} must be in (0, sample_rate / 2) = (0, {sample_rate / 2:g}) Hz, got {freq_hz!r}"
        )


def sine(
    freq_hz: float,
    duration_s: float,
    sample_rate: int,
    amplitude: float = 0.5,
    *,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """A sine ``amplitude * sin(2 pi f n / sample_rate)``, starting at phase 0.

    Args:
        freq_hz: frequency in (0, sample_rate / 2).
        duration_s: length in seconds.
        sample_rate: in Hz.
        amplitude: peak amplitude (linear).
        dtype: floating-point torch dtype.

    Returns:
        Tensor ``(1, 1, samples)``.
    """
    n = _n_samples(duration_s, sample_rate)
    _check_freq(freq_hz, sample_rate, "freq_hz")
    t = np.arange(n) / sample_rate
    return _to_tensor(amplitude * np.sin(2.0 * np.pi * freq_hz * t), dtype)


def log_sweep(
    f_start: float,
    f_end: float,
    duration_s: float,
    sample_rate: int,
    amplitude: float = 0.5,
    *,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Exponential sine sweep (Farina, "Simultaneous measurement of impulse response and
    distortion with a swept-sine technique", AES 108th Convention, 2000).

    ``x(t) = A sin(2 pi f1 L (exp(t / L) - 1))`` with ``L = T / ln(f2 / f1)``: the
    instantaneous frequency ``f1 exp(t / L)`` goes from ``f_start`` at t = 0 to ``f_end`` at
    t = T, spending equal time per octave. Starts at phase 0; no fades.

    Args:
        f_start: start frequency in Hz, in (0, sample_rate / 2).
        f_end: end frequency in Hz, in (0, sample_rate / 2), different from ``f_start``
            (downward sweeps allowed).
        duration_s: T, in seconds.
        sample_rate: in Hz.
        amplitude: peak amplitude (linear).
        dtype: floating-point torch dtype.

    Returns:
        Tensor ``(1, 1, samples)``.
    """
    n = _n_samples(duration_s, sample_rate)
    _check_freq(f_start, sample_rate, "f_start")
    _check_freq(f_end, sample_rate, "f_end")
    if f_start == f_end:
        raise ValueError(f"f_start and f_end must differ for a sweep, got both {f_start!r} Hz; use sine()")
    rate = duration_s / math.log(f_end / f_start)
    t = np.arange(n) / sample_rate
    phase = 2.0 * np.pi * f_start * rate * np.expm1(t / rate)
    return _to_tensor(amplitude * np.sin(phase), dtype)


def impulse(n_samples: int, position: int = 0, *, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A unit impulse: 1.0 at ``position``, 0 elsewhere.

    Args:
        n_samples: length in samples (>= 1).
        position: index of the 1.0 (0 <= position < n_samples).
        dtype: floating-point torch dtype.

    Returns:
        Tensor ``(1, 1, n_samples)``.
    """
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
        raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
    if isinstance(position, bool) or not isinstance(position, (int, np.integer)) or not 0 <= position < n_samples:
        raise ValueError(f"position must be an integer in [0, {n_samples}), got {position!r}")
    x = torch.zeros(1, 1, int(n_samples), dtype=dtype)
    x[0, 0, int(position)] = 1.0
    return x
