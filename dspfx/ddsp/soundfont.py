"""Expressive monophonic phrases as MIDI, played by sampled instruments through fluidsynth.

The training data of the bundled instruments: recordings of real sampled instruments that no one
here made (Debian's ``musescore-general-soundfont``), driven by MIDI that makes them sound played
rather than typed:

- :func:`random_phrase` writes one seeded phrase for an instrument of :data:`INSTRUMENTS`: notes
  over the whole playing range (each phrase centred somewhere in it, steps and leaps), legato
  and detached notes, rests, tempi from 56 to 150 bpm, velocities, CC11 expression swells per
  note (flat, crescendo, diminuendo, swell) and pitch-bend vibrato that fades in after an onset
  delay (4.5-7 Hz, 10-45 cents);
- :func:`write_midi` saves it as a Standard MIDI File (mido), bend range set to 2 semitones;
- :func:`render_midi` plays a MIDI file with fluidsynth (reverb and chorus off, float WAV);
- :func:`make_phrases` does both for ``seconds`` of phrases and keeps each phrase's MIDI beside
  its audio (``0000.mid`` / ``0000.wav`` ...), the pairs the MIDI issue trains on.

fluidsynth and a soundfont are Debian packages (``apt-get install fluidsynth
musescore-general-soundfont timgm6mb-soundfont``); :func:`find_soundfont` locates the installed
ones, :func:`can_render` says whether rendering can run, and :class:`SoundfontError` says what
is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dspfx.io import atomic_path

__all__ = [
    "InstrumentRange", "INSTRUMENTS", "SOUNDFONTS", "PhraseNote", "Phrase", "SoundfontError",
    "find_soundfont", "can_render", "random_phrase", "write_midi", "render_midi", "render_phrases", "make_phrases",
]


@dataclass(frozen=True)
class InstrumentRange:
    """A sampled instrument: its General MIDI program (0-based) and playing range (MIDI notes,
    sounding pitch; the usual professional range, a little short of the extreme top)."""

    name: str
    program: int
    low_midi: int
    high_midi: int
    wind: bool  # breathes: phrases are shorter, with more rests


INSTRUMENTS: dict[str, InstrumentRange] = {
    "violin": InstrumentRange("violin", 40, 55, 93, False),       # G3 .. A6
    "flute": InstrumentRange("flute", 73, 60, 93, True),          # C4 .. A6
    "trumpet": InstrumentRange("trumpet", 56, 54, 82, True),      # F#3 .. Bb5
    "tenor_sax": InstrumentRange("tenor_sax", 66, 44, 75, True),  # Ab2 .. Eb5 (sounding)
}

#: Soundfonts by short name: Debian package and installed paths (the first present wins).
SOUNDFONTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "musescore": ("musescore-general-soundfont", ("/usr/share/sounds/sf3/MuseScore_General.sf3",
                                                  "/usr/share/sounds/sf3/MuseScore_General_Full.sf3")),
    "timgm6mb": ("timgm6mb-soundfont", ("/usr/share/sounds/sf2/TimGM6mb.sf2",)),
}

#: Pitch-bend range the phrases set (RPN 0), semitones: the GM default, stated explicitly.
BEND_RANGE_SEMITONES = 2.0
#: Control curves (expression, bend) are written at this rate, events per second.
CONTROL_RATE_HZ = 100.0
TICKS_PER_BEAT = 960
#: Seconds a phrase's MIDI and audio last after its last note ends (the release).
TAIL_S = 1.0
#: Silence between phrases rendered in one fluidsynth run (all notes released by then).
GAP_S = 1.0


class SoundfontError(RuntimeError):
    """fluidsynth or a soundfont is missing, or fluidsynth failed."""


@dataclass
class PhraseNote:
    """One note: start and length in seconds, MIDI pitch, velocity, and its expression shape."""

    start_s: float
    duration_s: float
    pitch: int
    velocity: int
    expression: str = "flat"  # flat | crescendo | diminuendo | swell
    vibrato_hz: float = 0.0
    vibrato_cents: float = 0.0
    vibrato_delay_s: float = 0.0

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s


@dataclass
class Phrase:
    """A monophonic phrase for one instrument (notes never overlap)."""

    instrument: str
    bpm: float
    seed: int
    notes: list[PhraseNote] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return max((n.start_s + n.duration_s for n in self.notes), default=0.0)

    def to_json(self) -> dict[str, Any]:
        return {"instrument": self.instrument, "bpm": self.bpm, "seed": self.seed,
                "notes": [asdict(n) for n in self.notes]}


def find_soundfont(name: str = "musescore") -> Path:
    """The installed file of soundfont ``name`` (a key of :data:`SOUNDFONTS`) or a path.

    Raises:
        SoundfontError: not installed (the message names the Debian package).
    """
    if name in SOUNDFONTS:
        package, paths = SOUNDFONTS[name]
        for p in paths:
            if Path(p).is_file():
                return Path(p)
        raise SoundfontError(f"soundfont {name!r} is not installed: apt-get install {package}")
    path = Path(name)
    if path.is_file() and path.suffix.lower() in (".sf2", ".sf3"):
        return path
    raise SoundfontError(f"soundfont {name!r}: expected one of {sorted(SOUNDFONTS)} or an .sf2/.sf3 file")


def can_render(soundfont: str = "musescore") -> bool:
    """Whether :func:`render_midi` can run here: fluidsynth on the PATH and ``soundfont``
    installed (what tests and benchmarks check before rendering)."""
    try:
        find_soundfont(soundfont)
    except SoundfontError:
        return False
    return shutil.which("fluidsynth") is not None


def _instrument(name: str) -> InstrumentRange:
    if name not in INSTRUMENTS:
        raise ValueError(f"instrument {name!r}: expected one of {sorted(INSTRUMENTS)}")
    return INSTRUMENTS[name]


def random_phrase(instrument: str, seed: int, seconds: float = 12.0) -> Phrase:
    """A seeded phrase of about ``seconds`` (it ends with the note that crosses it).

    Its centre pitch is drawn uniformly over the instrument's range, so phrases cover the whole
    range; notes move by steps (mostly seconds and thirds) with occasional leaps up to an
    octave, reflected at the range's ends. Each phrase picks a tempo (56-150 bpm), a legato
    share (notes that end where the next begins), a base velocity; each note a length of 1/2 to
    4 beats, an expression shape and, when longer than 0.35 s, a vibrato.
    """
    inst = _instrument(instrument)
    if not (0.5 <= seconds <= 600.0):
        raise ValueError(f"phrase seconds {seconds}: expected 0.5 .. 600")
    rng = np.random.default_rng([seed, inst.program])
    bpm = float(rng.uniform(56.0, 150.0))
    beat = 60.0 / bpm
    legato = float(rng.uniform(0.0, 1.0))
    rest_p = 0.18 if inst.wind else 0.08
    base_vel = int(rng.integers(50, 110))
    lo, hi = inst.low_midi, inst.high_midi
    span = max(3, min(7, (hi - lo) // 4))
    centre = int(rng.integers(lo, hi + 1))
    pitch = centre
    t = round(float(rng.uniform(0.05, 0.3)), 4)
    phrase = Phrase(instrument, round(bpm, 3), int(seed))
    while t < seconds:
        length = beat * float(rng.choice([0.5, 1.0, 1.0, 1.5, 2.0, 2.0, 3.0, 4.0]))
        length = min(length, 4.0)
        sounding = length if rng.random() < legato else length * float(rng.uniform(0.55, 0.9))
        vel = int(np.clip(base_vel + rng.normal(0.0, 12.0), 25, 127))
        shape = str(rng.choice(["flat", "crescendo", "diminuendo", "swell"], p=[0.35, 0.2, 0.2, 0.25]))
        vib = sounding > 0.35 and rng.random() < 0.8
        phrase.notes.append(PhraseNote(
            t, round(sounding, 4), int(pitch), vel, shape,
            round(float(rng.uniform(4.5, 7.0)), 3) if vib else 0.0,
            round(float(rng.uniform(10.0, 45.0)), 2) if vib else 0.0,
            round(float(rng.uniform(0.1, 0.5)), 3) if vib else 0.0,
        ))
        t = round(t + length, 4)
        if rng.random() < rest_p:
            t = round(t + beat * float(rng.choice([0.5, 1.0, 2.0])), 4)
        step = int(rng.choice([1, 1, 2, 2, 3, 4, 5, 7, 12], p=[.2, .15, .2, .15, .1, .08, .06, .04, .02]))
        step *= 1 if rng.random() < 0.5 + 0.04 * (centre - pitch) else -1
        pitch += step
        if pitch > hi:
            pitch = hi - (pitch - hi)
        if pitch < lo:
            pitch = lo + (lo - pitch)
        pitch = int(np.clip(pitch, lo, hi))
        centre = int(np.clip(centre + rng.integers(-span, span + 1) // 3, lo, hi))
    return phrase


def _expression(shape: str, u: np.ndarray) -> np.ndarray:
    """CC11 value over a note's normalised time ``u`` in [0, 1]."""
    if shape == "crescendo":
        return 55.0 + 72.0 * u
    if shape == "diminuendo":
        return 127.0 - 72.0 * u
    if shape == "swell":
        return 60.0 + 67.0 * np.sin(np.pi * u)
    return np.full_like(u, 110.0)


def _events(phrase: Phrase, inst: InstrumentRange) -> list[tuple[float, Any]]:
    """(time_s, mido message) for the whole phrase, before sorting."""
    import mido

    ev: list[tuple[float, Any]] = [
        (0.0, mido.Message("program_change", program=inst.program, channel=0)),
        (0.0, mido.Message("control_change", control=101, value=0)),
        (0.0, mido.Message("control_change", control=100, value=0)),
        (0.0, mido.Message("control_change", control=6, value=int(BEND_RANGE_SEMITONES))),
        (0.0, mido.Message("control_change", control=38, value=0)),
        (0.0, mido.Message("control_change", control=7, value=100)),
    ]
    step = 1.0 / CONTROL_RATE_HZ
    for note in phrase.notes:
        start, end = note.start_s, note.start_s + note.duration_s
        times = np.arange(start, end, step)
        u = (times - start) / max(note.duration_s, 1e-9)
        expr = np.clip(np.round(_expression(note.expression, u)), 0, 127).astype(int)
        last = -1
        for tt, v in zip(times, expr):
            if v != last:
                ev.append((float(tt) - 1e-4 if tt == start else float(tt),
                           mido.Message("control_change", control=11, value=int(v))))
                last = v
        ev.append((start - 1e-4, mido.Message("pitchwheel", pitch=0)))
        if note.vibrato_hz > 0.0:
            tv = times[times >= start + note.vibrato_delay_s]
            fade = np.clip((tv - start - note.vibrato_delay_s) / 0.25, 0.0, 1.0)
            cents = note.vibrato_cents * fade * np.sin(2 * np.pi * note.vibrato_hz * (tv - start - note.vibrato_delay_s))
            bend = np.clip(np.round(cents / (100.0 * BEND_RANGE_SEMITONES) * 8192), -8192, 8191).astype(int)
            for tt, b in zip(tv, bend):
                ev.append((float(tt), mido.Message("pitchwheel", pitch=int(b))))
        ev.append((start, mido.Message("note_on", note=note.pitch, velocity=note.velocity)))
        ev.append((end, mido.Message("note_off", note=note.pitch, velocity=0)))
    return ev


def _track(events: list[tuple[float, Any]], tempo: int, end_s: float) -> Any:
    """A mido track of ``(time_s, message)`` events at ``tempo``, ending at ``end_s``."""
    import mido

    # note-offs sort before note-ons at the same time (legato), controls before notes
    order = {"note_off": 0, "note_on": 2}
    events = sorted(events, key=lambda e: (e[0], order.get(e[1].type, 1)))
    track = mido.MidiTrack()
    track.append(mido.MetaMessage("set_tempo", tempo=tempo, time=0))
    now = 0
    for t, msg in events:
        tick = max(now, int(round(mido.second2tick(max(t, 0.0), TICKS_PER_BEAT, tempo))))
        track.append(msg.copy(time=tick - now))
        now = tick
    end = int(round(mido.second2tick(end_s, TICKS_PER_BEAT, tempo)))
    track.append(mido.MetaMessage("end_of_track", time=max(0, end - now)))
    return track


def _save_midi(track: Any, path: Path) -> Path:
    import mido

    mid = mido.MidiFile(type=0, ticks_per_beat=TICKS_PER_BEAT, tracks=[track])
    with atomic_path(path) as tmp:
        mid.save(str(tmp))
    return path


def write_midi(phrase: Phrase, path: str | os.PathLike, tail_s: float = TAIL_S) -> Path:
    """Save ``phrase`` as a one-track Standard MIDI File (type 0, its tempo, bend range RPN,
    program, CC7, CC11 curves, pitch bends, notes); the track ends ``tail_s`` after the last
    note so a renderer keeps the release. Written atomically."""
    import mido

    events = _events(phrase, _instrument(phrase.instrument))
    return _save_midi(_track(events, mido.bpm2tempo(phrase.bpm), phrase.seconds + tail_s), Path(path))


def render_midi(midi_path: str | os.PathLike, wav_path: str | os.PathLike, soundfont: str | os.PathLike = "musescore",
                sample_rate: int = 16000, gain: float = 1.0, timeout_s: float = 120.0) -> Path:
    """Render a MIDI file with fluidsynth into a float WAV (stereo, ``sample_rate``), reverb and
    chorus off so the recording is the instrument alone. Written atomically.

    Raises:
        SoundfontError: fluidsynth or the soundfont missing, fluidsynth failing or timing out.
    """
    exe = shutil.which("fluidsynth")
    if exe is None:
        raise SoundfontError("fluidsynth is not installed: apt-get install fluidsynth")
    sf = find_soundfont(str(soundfont))
    if not (8000 <= int(sample_rate) <= 96000):
        raise ValueError(f"sample_rate {sample_rate}: fluidsynth renders 8000 .. 96000 Hz")
    wav_path = Path(wav_path)
    with atomic_path(wav_path) as tmp:
        cmd = [exe, "-n", "-i", "-q", "-R", "0", "-C", "0", "-g", str(gain), "-r", str(int(sample_rate)),
               "-T", "wav", "-O", "float", "-F", str(tmp), str(sf), str(midi_path)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired as err:
            raise SoundfontError(f"fluidsynth took more than {timeout_s:.0f} s on {midi_path}") from err
        if proc.returncode != 0 or not Path(tmp).is_file() or Path(tmp).stat().st_size <= 44:
            msg = " ".join((proc.stderr or proc.stdout or "no output").split())[:300]
            raise SoundfontError(f"fluidsynth failed on {midi_path} (exit {proc.returncode}): {msg}")
    return wav_path


def render_phrases(phrases: list[Phrase], wav_paths: list[str | os.PathLike], soundfont: str | os.PathLike = "musescore",
                   sample_rate: int = 16000, gain: float = 1.0) -> list[Path]:
    """Render many phrases in one fluidsynth run (loading a large soundfont takes seconds):
    they are played one after another in a single MIDI file, ``GAP_S`` of silence apart, and
    the render is cut back into one WAV per phrase, each ``phrase.seconds + TAIL_S`` long from
    its phrase's start. Mono float WAVs (the channels' mean), written atomically."""
    import tempfile

    import mido
    import soundfile

    if len(phrases) != len(wav_paths):
        raise ValueError(f"{len(phrases)} phrases but {len(wav_paths)} output paths")
    if not phrases:
        return []
    tempo = mido.bpm2tempo(120.0)
    events: list[tuple[float, Any]] = []
    starts, t = [], 0.0
    for ph in phrases:
        starts.append(t)
        events += [(t + et, msg) for et, msg in _events(ph, _instrument(ph.instrument))]
        t += ph.seconds + TAIL_S + GAP_S
    with tempfile.TemporaryDirectory(prefix="dspfx-fluidsynth-") as tmp:
        mid = _save_midi(_track(events, tempo, t), Path(tmp) / "phrases.mid")
        wav = render_midi(mid, Path(tmp) / "phrases.wav", soundfont, sample_rate, gain,
                          timeout_s=60.0 + 0.5 * t)
        audio, sr = soundfile.read(str(wav), dtype="float32", always_2d=True)
    audio = audio.mean(axis=1)
    out = []
    for ph, start, path in zip(phrases, starts, wav_paths):
        a = int(round(start * sr))
        n = int(round((ph.seconds + TAIL_S) * sr))
        seg = np.zeros(n, dtype=np.float32)
        got = audio[a: a + n]
        seg[: got.size] = got
        with atomic_path(path) as tmpw:
            soundfile.write(str(tmpw), seg, sr, subtype="FLOAT")
        out.append(Path(path))
    return out


def make_phrases(out_dir: str | os.PathLike, instrument: str, seconds: float, seed: int = 0,
                 soundfont: str = "musescore", sample_rate: int = 16000, phrase_s: tuple[float, float] = (6.0, 16.0),
                 gain: float = 1.0) -> list[Path]:
    """Write and render phrases of ``instrument`` until ``seconds`` of music: ``out_dir/NNNN.mid``,
    ``NNNN.wav`` (mono) and ``NNNN.json`` (the phrase's notes) each, plus ``phrases.json``
    (settings). Phrase ``k`` is seeded by ``(seed, k)``; phrases whose files exist are kept
    (resume); the others are rendered in one fluidsynth run (:func:`render_phrases`).

    Returns:
        the WAV paths.
    """
    inst = _instrument(instrument)
    sf = find_soundfont(soundfont)
    if not (0.5 <= seconds <= 24 * 3600):
        raise ValueError(f"seconds {seconds}: expected 0.5 .. 86400")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, 7919])
    total, k, wavs, todo = 0.0, 0, [], []
    while total < seconds:
        length = float(rng.uniform(*phrase_s)) * (0.75 if inst.wind else 1.0)
        phrase = random_phrase(instrument, seed * 100003 + k, min(length, max(seconds - total, 0.5)))
        stem = out / f"{k:04d}"
        wav = stem.with_suffix(".wav")
        if not (wav.is_file() and stem.with_suffix(".mid").is_file()):
            write_midi(phrase, stem.with_suffix(".mid"))
            with atomic_path(stem.with_suffix(".json")) as tmp:
                Path(tmp).write_text(json.dumps(phrase.to_json()) + "\n")
            todo.append((phrase, wav))
        wavs.append(wav)
        total += phrase.seconds
        k += 1
    if todo:
        render_phrases([p for p, _ in todo], [w for _, w in todo], sf, sample_rate, gain)
    settings = {"instrument": instrument, "program": inst.program, "range_midi": [inst.low_midi, inst.high_midi],
                "soundfont": str(sf), "sample_rate": int(sample_rate), "seed": int(seed), "phrases": k,
                "music_seconds": round(total, 2), "tail_s": TAIL_S, "gain": gain,
                "bend_range_semitones": BEND_RANGE_SEMITONES}
    with atomic_path(out / "phrases.json") as tmp:
        Path(tmp).write_text(json.dumps(settings, indent=1) + "\n")
    return wavs
