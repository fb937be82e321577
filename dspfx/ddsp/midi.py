"""MIDI input for the instruments: Standard MIDI Files -> a monophonic line of notes -> frames.

- :func:`read_midi` reads one track of a Standard MIDI File (mido) as a monophonic list of
  :class:`MidiNote` (seconds, through the file's whole tempo map). The rules, stated once:

  * track: ``track=N`` picks track N; by default the first track with notes that is not a drum
    track (every note on MIDI channel 10);
  * a chord or an overlap is resolved by **last note wins**: a note that starts while another
    sounds cuts that one off at its onset (notes starting together: the highest wins), with one
    :class:`MidiWarning` saying how many were cut;
  * a drum track, a track without notes, a file without a melodic track, a corrupt file, and a
    file beyond the limits (``MAX_MIDI_BYTES``, ``max_notes``, ``max_seconds``, checked before the
    work they bound) raise :class:`MidiError` (a ``ValueError``) with a one-line message.

- :func:`fit_range` moves notes outside a playing range by whole octaves (with a warning).
- :func:`notes_to_frames` turns notes into the frame features an instrument plays (f0 in Hz and
  loudness in dB at its frame rate) with the plainest expression: each note at one pitch and
  one level, short linear attack and release ramps, silence (and the last pitch held) between
  notes. It is the "no learned expression" baseline of the MIDI work, and the frames a fit of
  a synth voice to a note starts from.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "MidiNote", "MidiError", "MidiWarning", "read_midi", "fit_range", "notes_to_frames", "velocity_db",
    "velocity_loudness", "MAX_MIDI_BYTES", "MAX_NOTES", "MAX_SECONDS", "DRUM_CHANNEL", "VELOCITY_QUANTILES",
]

#: Largest MIDI file read (bytes): a long orchestral file is well under 1 MB.
MAX_MIDI_BYTES = 16 * 2**20
#: Most notes in the chosen track, and the longest track (seconds), by default.
MAX_NOTES = 100_000
MAX_SECONDS = 3600.0
#: MIDI channel 10 (9 counted from 0): General MIDI's percussion.
DRUM_CHANNEL = 9
#: Loudness (dB) that :func:`notes_to_frames` gives silence.
SILENCE_DB = -80.0


class MidiError(ValueError):
    """A MIDI file that cannot be played: corrupt, too large, no melodic notes, a drum track."""


class MidiWarning(UserWarning):
    """Notes changed to make a line playable: overlaps cut (last note wins), octaves moved."""


@dataclass(frozen=True)
class MidiNote:
    """A note: onset and offset in seconds, MIDI pitch, velocity (1..127)."""

    start_s: float
    end_s: float
    pitch: int
    velocity: int

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


def _tempo_map(mid: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ticks where a tempo starts, the seconds at those ticks, seconds per tick from there)."""
    changes: dict[int, int] = {0: 500_000}
    for track in mid.tracks:
        tick = 0
        for msg in track:
            tick += msg.time
            if msg.type == "set_tempo":
                changes[tick] = msg.tempo
    ticks = np.array(sorted(changes), dtype=np.int64)
    per_tick = np.array([changes[t] for t in ticks], dtype=np.float64) * 1e-6 / mid.ticks_per_beat
    seconds = np.concatenate([[0.0], np.cumsum(np.diff(ticks) * per_tick[:-1])])
    return ticks, seconds, per_tick


def _track_notes(track: Any, to_seconds: Any) -> tuple[list[tuple[float, float, int, int]], set[int]]:
    """(start, end, pitch, velocity) of a track's notes (note-offs matched first in, first out
    per channel and pitch; a note never released ends at the track's end), and its channels."""
    sounding: dict[tuple[int, int], list[tuple[int, int]]] = {}
    notes, channels, tick = [], set(), 0
    for msg in track:
        tick += msg.time
        if msg.type == "note_on" and msg.velocity > 0:
            sounding.setdefault((msg.channel, msg.note), []).append((tick, msg.velocity))
            channels.add(msg.channel)
        elif msg.type in ("note_off", "note_on"):
            started = sounding.get((msg.channel, msg.note))
            if started:
                t0, vel = started.pop(0)
                notes.append((t0, tick, msg.note, vel))
    for (_, pitch), left in sounding.items():
        notes += [(t0, tick, pitch, vel) for t0, vel in left]
    out = [(float(to_seconds(a)), float(to_seconds(b)), p, v) for a, b, p, v in notes if b > a]
    return out, channels


def read_midi(path: str | os.PathLike, track: int | None = None, *, max_notes: int = MAX_NOTES,
              max_seconds: float = MAX_SECONDS) -> list[MidiNote]:
    """The notes of one track of a Standard MIDI File as a monophonic line (see the module
    docstring for the rules), sorted by onset.

    Args:
        path: a ``.mid`` file.
        track: track index (0-based, as ``mido`` counts them); default: the first track with
            notes that is not a drum track.
        max_notes, max_seconds: limits on the chosen track (raise them explicitly for longer
            material).

    Raises:
        MidiError: see the module docstring.
        FileNotFoundError: no such file.
    """
    import mido

    p = Path(os.fspath(path))
    if not p.exists():
        raise FileNotFoundError(f"MIDI file not found: {str(p)!r}")
    if not p.is_file():
        raise MidiError(f"cannot read MIDI from {str(p)!r}: not a file")
    size = p.stat().st_size
    if size > MAX_MIDI_BYTES:
        raise MidiError(f"cannot read MIDI from {str(p)!r}: {size} bytes, more than the limit of {MAX_MIDI_BYTES}")
    try:
        mid = mido.MidiFile(str(p))
    except (OSError, EOFError, ValueError, KeyError, IndexError, TypeError) as err:
        raise MidiError(f"cannot read MIDI from {str(p)!r}: {' '.join(str(err).split()) or type(err).__name__} "
                        "(not a Standard MIDI File, or a damaged one)") from None
    if mid.type == 2:
        raise MidiError(f"cannot play {str(p)!r}: a type 2 MIDI file (independent sequences); expected type 0 or 1")
    ticks, seconds, per_tick = _tempo_map(mid)

    def to_seconds(tick: int) -> float:
        i = int(np.searchsorted(ticks, tick, side="right")) - 1
        return seconds[i] + (tick - ticks[i]) * per_tick[i]

    tracks = [_track_notes(t, to_seconds) for t in mid.tracks]
    melodic = [i for i, (notes, ch) in enumerate(tracks) if notes and ch != {DRUM_CHANNEL}]
    if track is None:
        if not melodic:
            drums = any(notes for notes, _ in tracks)
            raise MidiError(f"{str(p)!r} has no melodic track" + (" (only drums on channel 10)" if drums else " (no notes)"))
        track = melodic[0]
    if isinstance(track, bool) or not isinstance(track, int) or not 0 <= track < len(tracks):
        raise MidiError(f"track {track!r}: {str(p)!r} has tracks 0..{len(tracks) - 1} (melodic: {melodic})")
    raw, channels = tracks[track]
    if not raw:
        raise MidiError(f"track {track} of {str(p)!r} has no notes (tracks with notes: {melodic})")
    if channels == {DRUM_CHANNEL}:
        raise MidiError(f"track {track} of {str(p)!r} is a drum track (channel 10); melodic tracks: {melodic}")
    if len(raw) > max_notes:
        raise MidiError(f"track {track} of {str(p)!r} has {len(raw)} notes, more than max_notes={max_notes}")
    end = max(b for _, b, _, _ in raw)
    if end > max_seconds:
        raise MidiError(f"track {track} of {str(p)!r} lasts {end:.0f} s, more than max_seconds={max_seconds:g}")
    # last note wins: sort by onset (the highest last among equal onsets), cut each note at the next onset
    raw.sort(key=lambda n: (n[0], n[2]))
    notes: list[MidiNote] = []
    cut = 0
    for a, b, pitch, vel in raw:
        if notes and notes[-1].end_s > a:
            prev = notes.pop()
            cut += 1
            if a > prev.start_s:
                notes.append(replace(prev, end_s=a))
        notes.append(MidiNote(a, b, int(pitch), int(vel)))
    if cut:
        warnings.warn(f"{cut} overlapping notes in track {track} of {str(p)!r} (chords or overlaps): the later note "
                      "wins, the earlier is cut at its onset", MidiWarning, stacklevel=2)
    return notes


def fit_range(notes: list[MidiNote], low_midi: int, high_midi: int) -> list[MidiNote]:
    """Notes outside ``low_midi .. high_midi`` moved by whole octaves to the nearest octave
    inside it (one :class:`MidiWarning` with the count)."""
    if high_midi - low_midi < 11:
        raise ValueError(f"a playing range of {low_midi}..{high_midi} holds no whole octave")
    out, moved = [], 0
    for n in notes:
        pitch = n.pitch
        while pitch < low_midi:
            pitch += 12
        while pitch > high_midi:
            pitch -= 12
        moved += pitch != n.pitch
        out.append(replace(n, pitch=pitch))
    if moved:
        warnings.warn(f"{moved} of {len(notes)} notes were outside the playing range {low_midi}..{high_midi} and "
                      "were moved by octaves", MidiWarning, stacklevel=2)
    return out


def velocity_db(velocity: Any, top_db: float = -16.0, range_db: float = 30.0) -> np.ndarray:
    """Loudness (dB) of a velocity: ``top_db`` at 127, ``range_db`` lower at velocity 0, a
    square-law curve in between (as General MIDI's default velocity-to-gain mapping)."""
    v = np.clip(np.asarray(velocity, dtype=np.float64), 0.0, 127.0) / 127.0
    return top_db + 20.0 * np.log10(np.maximum(v, 1e-3) ** 2) * range_db / 60.0


#: The quantiles of an instrument's note loudness that velocities 0 and 127 play at
#: (:func:`velocity_loudness`): its extremes are left to outliers.
VELOCITY_QUANTILES = (0.01, 0.99)


def velocity_loudness(velocity: Any, quantile_levels: Any, loudness_quantiles: Any) -> np.ndarray:
    """Loudness (dB) of a velocity on an instrument's own dynamics: the quantile ``v / 127``
    (within :data:`VELOCITY_QUANTILES`) of the loudness its training notes played at, given as
    ``loudness_quantiles`` at ``quantile_levels`` (the dataset statistics a model keeps,
    :func:`dspfx.ddsp.data.load_stats`). Velocity 64 plays the instrument's median note level,
    127 its loudest but 1%; General MIDI's curve (:func:`velocity_db`) plays the bundled
    instruments a median 9-12 dB above what they learned from."""
    levels = np.asarray(quantile_levels, dtype=np.float64).reshape(-1)
    loud = np.asarray(loudness_quantiles, dtype=np.float64).reshape(-1)
    if (levels.size < 2 or levels.size != loud.size or not np.all(np.isfinite(levels)) or not np.all(np.isfinite(loud))
            or np.any(np.diff(levels) <= 0) or np.any(np.diff(loud) < 0)):
        raise ValueError(f"quantile_levels and loudness_quantiles must be two finite, increasing sequences of one "
                         f"length (at least 2), got {levels.size} and {loud.size} values")
    lo, hi = VELOCITY_QUANTILES
    q = np.clip(np.clip(np.asarray(velocity, dtype=np.float64), 0.0, 127.0) / 127.0, lo, hi)
    return np.interp(q, levels, loud)


def notes_to_frames(notes: list[MidiNote], frame_rate: float = 250.0, *, seconds: float | None = None,
                    attack_s: float = 0.015, release_s: float = 0.06, loudness_db: Any = None,
                    tail_s: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Frame features of a monophonic line: ``(f0_hz, loudness_db)``, each ``(frames,)``.

    Frame ``i`` is at ``i / frame_rate`` s. Inside a note f0 is its pitch and loudness its level
    (``loudness_db[k]`` for note ``k`` when given, else :func:`velocity_db` of its velocity),
    ramped up from silence over ``attack_s`` and down over ``release_s`` after its offset
    (legato notes, one starting as the last ends, join without a dip). Between notes the
    loudness is ``SILENCE_DB`` and f0 holds the last note's pitch (the first note's before it).
    The frames run to ``seconds`` (default: the last offset plus ``tail_s``).
    """
    if not notes:
        raise ValueError("no notes to play")
    if not frame_rate > 0:
        raise ValueError(f"frame_rate must be > 0, got {frame_rate}")
    levels = velocity_db([n.velocity for n in notes]) if loudness_db is None else np.asarray(loudness_db, float)
    if levels.shape != (len(notes),):
        raise ValueError(f"loudness_db needs one level per note ({len(notes)}), got shape {levels.shape}")
    total = seconds if seconds is not None else notes[-1].end_s + tail_s
    n = max(1, int(np.ceil(total * frame_rate)))
    t = np.arange(n) / frame_rate
    midi = np.full(n, float(notes[0].pitch))
    loud = np.full(n, SILENCE_DB)

    def frame(seconds_: float) -> int:  # first frame at or after a time
        return int(min(n, max(0, np.ceil(seconds_ * frame_rate - 1e-9))))

    for k, note in enumerate(notes):  # each note touches only its own frames: O(frames + notes)
        nxt = notes[k + 1].start_s if k + 1 < len(notes) else np.inf
        joined_next = nxt - note.end_s < 1e-6
        joined_prev = k > 0 and note.start_s - notes[k - 1].end_s < 1e-6
        end = note.end_s if joined_next else min(note.end_s + release_s, nxt)
        a, b = frame(note.start_s), frame(end)
        midi[a: frame(nxt) if np.isfinite(nxt) else n] = note.pitch
        tt = t[a:b]
        up = np.ones_like(tt) if joined_prev or attack_s <= 0 else np.clip((tt - note.start_s) / attack_s, 0.0, 1.0)
        down = np.ones_like(tt) if joined_next else np.clip(1.0 - (tt - note.end_s) / release_s, 0.0, 1.0)
        level = SILENCE_DB + (levels[k] - SILENCE_DB) * np.minimum(up, down)
        loud[a:b] = np.maximum(loud[a:b], level)
    f0 = 440.0 * 2.0 ** ((midi - 69.0) / 12.0)
    return f0, loud
