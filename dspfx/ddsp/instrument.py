"""A bundled instrument made in code: a physically informed bowed string ("violin") and a
melody generator, to make DDSP training data without downloads.

The model (source-filter, as a bowed string seen from the bridge):

- **Excitation**: the Helmholtz motion of a bowed string is a travelling corner; the bridge
  force is a sawtooth (harmonic ``k`` at ``1 / k``). It is rendered band-limited (additive,
  harmonics below ``0.45 * sample_rate`` only) with a spectral tilt ``k ** -(1 + b)`` where the
  brightness ``b`` falls as the bow force (the note's dynamic) rises: louder bowing sharpens the
  corner and brightens the tone (Schelleng / Cremer: the corner rounding shrinks with force).
- **Bow noise**: white noise, high-passed, gated by the slip phase of each period (it is
  loudest just after the slip) and scaled by the envelope: the rosin's friction noise.
- **Body**: a fixed bank of resonators (two-pole bandpass filters at typical violin body
  modes: A0 ~ 275 Hz, CBR ~ 405 Hz, B1- ~ 460 Hz, B1+ ~ 530 Hz, the "bridge hill" around
  2.2-3 kHz, plus a few higher modes) summed with a little of the direct string force, and a
  short diffuse room (exponentially decaying noise response, 0.25 s, small wet share).
- **Performance**: per note a MIDI pitch, a start, a length and two dynamics (start and end
  dB: crescendi and diminuendi); legato notes glide into each other (portamento of
  ``glide_s``), detached notes get attack and release ramps; vibrato (5-6.5 Hz, 15-35 cents)
  fades in after an onset delay of about 0.25 s per note.

Everything is vectorised numpy/scipy (no per-sample Python loops; loops run over notes and
harmonics only). Deterministic for a seed.

Reference: physically informed synthesis of bowed strings (J. O. Smith, "Physical Audio Signal
Processing", bowed strings and body modes; Cremer, "The Physics of the Violin", 1984: Helmholtz
motion and body resonances); DDSP's training data is one monophonic instrument in one room.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import signal

from dspfx.functional.conversions import hz_to_midi, midi_to_hz

__all__ = [
    "Note",
    "BODY_MODES_HZ",
    "VIOLIN_RANGE_MIDI",
    "random_melody",
    "render_melody",
    "render_voice",
    "make_dataset",
]

#: Lowest and highest MIDI note of the melodies (G3 .. E6).
VIOLIN_RANGE_MIDI = (55, 88)

#: Body resonances: (centre Hz, Q, gain). Typical violin modes (A0, CBR, B1-, B1+, bridge hill
#: and upper modes), values rounded from the violin acoustics literature.
BODY_MODES_HZ: tuple[tuple[float, float, float], ...] = (
    (275.0, 12.0, 1.0),
    (405.0, 15.0, 0.6),
    (460.0, 18.0, 1.1),
    (530.0, 18.0, 1.0),
    (700.0, 10.0, 0.5),
    (1050.0, 8.0, 0.5),
    (2300.0, 4.0, 0.9),
    (2900.0, 5.0, 0.8),
    (4200.0, 6.0, 0.35),
)


@dataclass(frozen=True)
class Note:
    """One bowed note.

    Attributes:
        midi: pitch (MIDI note number, may be fractional).
        start_s: onset in seconds.
        duration_s: length in seconds (the bow leaves the string at ``start_s + duration_s``).
        start_db: dynamic at the onset (dB, 0 = loudest, e.g. -30 = pianissimo).
        end_db: dynamic at the end (a crescendo when above ``start_db``).
        legato: glide from the previous note (no new attack) when it ends where this starts.
    """

    midi: float
    start_s: float
    duration_s: float
    start_db: float = -12.0
    end_db: float = -12.0
    legato: bool = False


def random_melody(seconds: float, seed: int = 0, low_midi: int = VIOLIN_RANGE_MIDI[0],
                  high_midi: int = VIOLIN_RANGE_MIDI[1]) -> list[Note]:
    """Seeded random phrases in a violin register, with rests.

    Each phrase (3-10 notes) picks a major or minor scale on a random key, walks mostly by
    step (occasionally leaps up to a sixth) within ``low_midi .. high_midi``, with note lengths
    of 0.2 - 1.6 s, a phrase dynamic arc (a crescendo, a diminuendo or a swell between -34 and
    -4 dB) and legato (60%) or detached bowing; phrases are separated by rests of 0.15 - 1.0 s.

    Args:
        seconds: total length to fill (the last phrase is cut there).
        seed: random seed (same seed, same melody).
        low_midi, high_midi: register (MIDI).

    Returns:
        list of :class:`Note`, in time order.
    """
    if not seconds > 0:
        raise ValueError(f"seconds must be positive, got {seconds!r}")
    if not low_midi < high_midi:
        raise ValueError(f"need low_midi < high_midi, got {low_midi}, {high_midi}")
    rng = np.random.default_rng(seed)
    major, minor = np.array([0, 2, 4, 5, 7, 9, 11]), np.array([0, 2, 3, 5, 7, 8, 10])
    notes: list[Note] = []
    t = float(rng.uniform(0.1, 0.4))
    durations = np.array([0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.2, 1.6])
    while t < seconds:
        key = int(rng.integers(12))
        steps = major if rng.random() < 0.5 else minor
        scale = np.array([m for m in range(low_midi, high_midi + 1) if (m - key) % 12 in steps])
        index = int(rng.integers(len(scale) // 4, 3 * len(scale) // 4))
        n_notes = int(rng.integers(3, 11))
        legato = rng.random() < 0.6
        shape = rng.integers(3)  # 0 crescendo, 1 diminuendo, 2 swell
        lo, hi = sorted(rng.uniform(-34.0, -4.0, 2))
        if hi - lo < 6:
            lo = max(-36.0, hi - 12.0)
        lens = rng.choice(durations, n_notes)
        total = float(lens.sum())
        pos = 0.0

        def arc(x: float) -> float:
            if shape == 0:
                return lo + (hi - lo) * x
            if shape == 1:
                return hi - (hi - lo) * x
            return lo + (hi - lo) * np.sin(np.pi * x)

        for j in range(n_notes):
            if t >= seconds:
                break
            d = float(lens[j])
            gap = 0.0 if legato else float(rng.uniform(0.03, 0.12))
            a, b = arc(pos / total), arc((pos + d) / total)
            jitter = float(rng.normal(0, 1.5))
            notes.append(Note(float(scale[index]), t, d - gap, a + jitter, b + jitter, legato and j > 0))
            t += d
            pos += d
            move = int(rng.choice([-2, -1, -1, 1, 1, 2, 0, -3, 3, 5, -5],
                                  p=[.1, .2, .15, .2, .15, .1, .02, .03, .03, .01, .01]))
            index = int(np.clip(index + move, 0, len(scale) - 1))
        t += float(rng.uniform(0.15, 1.0))
    return notes


def _ramp(t: np.ndarray, start: float, length: float) -> np.ndarray:
    return np.clip((t - start) / max(length, 1e-9), 0.0, 1.0)


def _controls(notes: list[Note], n: int, sample_rate: int, glide_s: float, rng: np.random.Generator
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-sample MIDI pitch, amplitude envelope (linear) and dynamic (dB) of the melody."""
    t = np.arange(n) / sample_rate
    midi = np.full(n, np.nan)
    env = np.zeros(n)
    dyn = np.full(n, -60.0)
    vib = np.zeros(n)
    previous_end = None
    for i, note in enumerate(notes):
        s = int(round(note.start_s * sample_rate))
        e = min(n, int(round((note.start_s + note.duration_s) * sample_rate)))
        if s >= n or e <= s:
            continue
        glide = note.legato and previous_end is not None and abs(previous_end - note.start_s) < 1e-6 and i > 0
        # release tail: the string rings on briefly after the bow leaves (0.08 s)
        tail = min(n, e + int(0.08 * sample_rate))
        seg = slice(s, tail)
        ts = t[seg]
        x = np.clip((ts - note.start_s) / note.duration_s, 0.0, 1.0)
        level_db = note.start_db + (note.end_db - note.start_db) * x
        attack = 1.0 if glide else _ramp(ts, note.start_s, 0.06 + 0.04 * rng.random())
        release = 1.0 - _ramp(ts, note.start_s + note.duration_s, 0.08)
        shape = attack * release
        midi[seg] = np.where(np.isnan(midi[seg]) | (ts >= note.start_s), note.midi, midi[seg])
        env[seg] = np.maximum(env[seg], shape * 10.0 ** (level_db / 20.0))
        dyn[seg] = np.where(shape > 0, level_db, dyn[seg])
        # vibrato: fades in after an onset delay, rate and depth per note
        rate = rng.uniform(5.0, 6.5)
        depth = rng.uniform(0.15, 0.35)  # semitones (peak)
        delay = rng.uniform(0.18, 0.35)
        fade = _ramp(ts, note.start_s + delay, 0.25)
        vib[seg] = depth * fade * np.sin(2 * np.pi * rate * (ts - note.start_s) + rng.uniform(0, 2 * np.pi))
        previous_end = note.start_s + note.duration_s
    # hold the last pitch through rests (no glide from or to silence), first pitch before
    valid = ~np.isnan(midi)
    if not valid.any():
        midi[:] = 69.0
    else:
        idx = np.where(valid, np.arange(n), 0)
        np.maximum.accumulate(idx, out=idx)
        first = int(np.argmax(valid))
        midi = midi[idx]
        midi[:first] = midi[first]
    # portamento: a moving average over glide_s smooths the steps between legato notes (the
    # attack ramps hide it on detached notes)
    g = max(1, int(glide_s * sample_rate))
    kernel = np.ones(g) / g
    midi = np.convolve(np.pad(midi, (g // 2, g - 1 - g // 2), mode="edge"), kernel, mode="valid")
    return midi + vib, env, dyn


def render_melody(notes: list[Note], sample_rate: int = 16000, seed: int = 0, *, seconds: float | None = None,
                  glide_s: float = 0.05, noise_db: float = -32.0, room: float = 0.12,
                  peak: float = 0.5) -> np.ndarray:
    """Render notes with the bowed-string model (see the module docstring).

    Args:
        notes: :class:`Note` list (e.g. :func:`random_melody`).
        sample_rate: Hz.
        seed: seeds the vibrato, attack and noise draws.
        seconds: output length (default: up to the last note's end + 0.3 s).
        glide_s: legato portamento time.
        noise_db: bow noise level relative to the string.
        room: wet share of the short room response (0: dry).
        peak: the render is scaled to this peak amplitude when ``notes`` is not empty (the
            dynamics stay relative: one gain for the whole render).

    Returns:
        ``(samples,)`` float32 ndarray.
    """
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive int (Hz), got {sample_rate!r}")
    if seconds is None:
        seconds = max([note.start_s + note.duration_s for note in notes], default=0.0) + 0.3
    n = int(round(seconds * sample_rate))
    if n <= 0:
        raise ValueError(f"nothing to render: {seconds!r} seconds")
    rng = np.random.default_rng(seed)
    midi, env, dyn = _controls(notes, n, sample_rate, glide_s, rng)
    f0 = midi_to_hz(midi)
    phase = 2 * np.pi * np.cumsum(f0 / sample_rate)
    phase = np.mod(phase, 2 * np.pi)
    # brightness falls with bow force: spectral tilt exponent 1 + b, b in [0.25 (ff), 1.2 (pp)]
    force = np.clip((dyn + 40.0) / 36.0, 0.0, 1.0)
    tilt = 1.0 + 1.2 - 0.95 * force
    nyquist = 0.45 * sample_rate
    n_harm = int(nyquist // max(float(f0.min()), 1.0))
    string = np.zeros(n)
    log_k = np.log(np.arange(1, n_harm + 1))
    for k in range(1, n_harm + 1):
        amp = np.exp(-tilt * log_k[k - 1]) * (k * f0 < nyquist)
        string += amp * np.sin(k * phase)
    # bow noise: high-passed white noise, loudest just after each slip (phase near 0)
    b, a = signal.butter(2, 1500.0 / (sample_rate / 2), "highpass")
    noise = signal.lfilter(b, a, rng.standard_normal(n))
    gate = 0.3 + 0.7 * np.exp(-4.0 * phase / (2 * np.pi))
    string = string + 10.0 ** (noise_db / 20.0) * noise * gate * np.sqrt(np.mean(string**2) + 1e-12) * 3.0
    x = string * env
    # body: resonator bank + a little direct force
    body = 0.15 * x
    for fc, q, gain in BODY_MODES_HZ:
        if fc >= 0.48 * sample_rate:
            continue
        bw = fc / q
        bb, ab = signal.iirpeak(fc, fc / bw, fs=sample_rate)
        body = body + gain * signal.lfilter(bb, ab, x)
    y = body
    if room > 0:
        m = int(0.25 * sample_rate)
        tt = np.arange(m) / sample_rate
        ir = rng.standard_normal(m) * np.exp(-tt / 0.05)
        ir[: int(0.004 * sample_rate)] = 0.0
        ir /= np.sqrt(np.sum(ir**2)) + 1e-12
        y = y + room * signal.fftconvolve(y, ir)[:n]
    top = float(np.max(np.abs(y)))
    if notes and top > 0:
        y = y * (peak / top)
    return y.astype(np.float32)


def render_voice(seconds: float = 2.0, sample_rate: int = 16000, seed: int = 0, f0_hz: float = 220.0,
                 glide_semitones: float = 3.0) -> np.ndarray:
    """A plain synthetic "voice": a glottal-like pulse train (harmonics at ``k ** -2``, vowel
    formants ~ 700/1200/2600 Hz) with vibrato (5.5 Hz, 30 cents), a slow pitch glide of
    ``glide_semitones`` and a loudness swell, with short pauses: a non-violin input for timbre
    transfer tests.

    Returns:
        ``(samples,)`` float32 ndarray, peak 0.5.
    """
    n = int(round(seconds * sample_rate))
    if n <= 0:
        raise ValueError(f"nothing to render: {seconds!r} seconds")
    rng = np.random.default_rng(seed)
    t = np.arange(n) / sample_rate
    midi = hz_to_midi(f0_hz) + glide_semitones * np.sin(np.pi * t / seconds) \
        + 0.3 * np.sin(2 * np.pi * 5.5 * t) * np.clip((t - 0.2) / 0.3, 0, 1)
    f0 = midi_to_hz(midi)
    phase = 2 * np.pi * np.cumsum(f0 / sample_rate)
    y = np.zeros(n)
    for k in range(1, int(0.45 * sample_rate // f0.max()) + 1):
        y += k ** -2.0 * np.sin(k * phase)
    out = np.zeros(n)
    for fc, bw in ((700.0, 110.0), (1200.0, 120.0), (2600.0, 200.0)):
        bb, ab = signal.iirpeak(fc, fc / bw, fs=sample_rate)
        out += signal.lfilter(bb, ab, y)
    # phrases: two "syllables" with a pause, swelling loudness (-26 .. -6 dB)
    env = 10 ** ((-26 + 20 * np.sin(np.pi * np.clip(t / seconds, 0, 1))) / 20)
    gate = np.ones(n)
    pause = (t > 0.45 * seconds) & (t < 0.55 * seconds)
    gate[pause] = 0.0
    gate = np.convolve(gate, np.ones(320) / 320, mode="same")
    out = out * env * gate + 1e-4 * rng.standard_normal(n)
    return (0.5 * out / np.max(np.abs(out))).astype(np.float32)


def make_dataset(out_dir: str | os.PathLike, seconds: float = 240.0, seed: int = 0, sample_rate: int = 16000,
                 clip_s: float = 30.0) -> list[Path]:
    """Write ``seconds`` of random violin melodies as wav files of ``clip_s`` seconds.

    Clip ``i`` is ``render_melody(random_melody(clip_s, seed * 1000 + i), seed=seed * 1000 + i)``,
    written to ``out_dir/violin-<seed>-<i>.wav`` (16-bit PCM would quantise quiet notes; files
    are float32). Melodies of other seeds are held out from this data set.

    Returns:
        the paths written.
    """
    import soundfile as sf

    if not seconds > 0 or not clip_s > 0:
        raise ValueError(f"seconds and clip_s must be positive, got {seconds!r}, {clip_s!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    n_clips = int(np.ceil(seconds / clip_s))
    for i in range(n_clips):
        length = min(clip_s, seconds - i * clip_s)
        s = seed * 1000 + i
        audio = render_melody(random_melody(length, s), sample_rate, s, seconds=length)
        path = out / f"violin-{seed:03d}-{i:03d}.wav"
        sf.write(str(path), audio, sample_rate, subtype="FLOAT")
        paths.append(path)
    return paths
