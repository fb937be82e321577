"""Note onsets of a monophonic, pitched recording, and their agreement with written notes.

A level-based onset detector (spectral flux, as ``librosa.onset.onset_detect``) misses a slurred
note change, whose level hardly moves, and fires on a wind instrument's breath and tremolo: on
MuseScore General's flute it finds about a third of the notes. :func:`note_onsets` reads onsets
the way a transcriber of monophonic music does (as pYIN's note tracking and Tony do), from the
frame analysis of :func:`dspfx.ddsp.expression.frame_analysis` (f0, confidence, loudness at 250
frames/s):

- an attack: the level rises out of silence (the sounding threshold is ``floor_db`` below the
  recording's loudest frame), or, within sound, out of a dip of at least ``dip_db`` below the
  level just before and just after it (a re-articulated note of the same pitch);
- a pitch change: the pitch leaves the current note by more than ``change_semitones`` and stays
  there, steady, for ``hold_s`` (a vibrato of up to half a semitone each way is not a change),
  dated at the frame the glide left the old note (back over frames between the two pitches and
  over unpitched sound).

Onsets closer than ``min_gap_s`` merge into the earlier one. :func:`onset_scores` matches found
onsets to written ones one to one within a tolerance (the F-measure of MIREX onset detection, as
``mir_eval.onset.f_measure``).

A slurred change has no attack to date, and a detector dates it by convention (here: where the
level moved before the tracker read the new pitch). :func:`pitch_change_delays` times it by the
pitch itself: when the tracked pitch passes halfway between the two notes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dspfx.functional.conversions import hz_to_midi

__all__ = ["note_onsets", "onset_scores", "pitch_change_delays", "SILENCE_DB"]

#: Loudness (dB) at or below which a frame is silent, whatever the recording's level.
SILENCE_DB = -75.0


def _attacks(loud: np.ndarray, sounding: np.ndarray, starts: list[int], dip_db: float, reach: int,
             memory: int) -> list[int]:
    """The sound ``starts`` (frames where sound begins after silence), and the frames where the
    level rises by ``dip_db`` within ``reach`` frames out of a dip ``dip_db`` below the level of
    the ``memory`` frames before it, dated at the dip's lowest frame."""
    out = list(starts)
    n = loud.size
    for t in range(1, n - 1):
        if not sounding[t] or not (loud[t] <= loud[t - 1] and loud[t] < loud[t + 1]):
            continue
        before = loud[max(0, t - memory): t].max()
        after = loud[t + 1: t + 1 + reach].max()
        if before - loud[t] >= dip_db and after - loud[t] >= dip_db:
            out.append(t)
    return sorted(out)


def _pitch_changes(st: np.ndarray, voiced: np.ndarray, sounding: np.ndarray, conf: np.ndarray, starts: list[int],
                   change: float, hold: int, memory: int, reach: int, sure: float) -> list[int]:
    """Frames where the pitch leaves the current note by more than ``change`` semitones and stays
    within half a semitone of its new value for ``hold`` voiced frames; the current note is the
    median of the last ``memory`` voiced frames of the note; a sound start resets it. A change
    is dated back over the glide and over unpitched sound before it (a bow change or a slur
    the tracker cannot read), at most ``reach`` frames."""
    out: list[int] = []
    history: list[float] = []
    reset = set(starts)
    n = st.size
    t = 0
    while t < n:
        if t in reset:
            history = []
        if not voiced[t]:
            t += 1
            continue
        if len(history) < hold:
            history.append(st[t])
            t += 1
            continue
        current = float(np.median(history[-memory:]))
        if abs(st[t] - current) <= change:
            history.append(st[t])
            t += 1
            continue
        run = np.flatnonzero(voiced[t: t + 3 * hold])[:hold] + t
        seg = st[run]
        new = float(np.median(seg))
        if (run.size == hold and abs(new - current) > change and np.abs(seg - new).max() <= 0.5
                and np.median(conf[run]) >= sure):
            # back to where the glide left the old note
            b = t
            lo, hi = min(current, new) - 0.25, max(current, new) + 0.25
            while b - 1 >= 0 and t - b < reach and sounding[b - 1] and (
                    not voiced[b - 1] or (abs(st[b - 1] - current) > 0.25 and lo <= st[b - 1] <= hi)):
                b -= 1
            out.append(b)
            history = list(seg)
            t = int(run[-1]) + 1
            continue
        t += 1
    return out


def note_onsets(audio: Any = None, sample_rate: int | None = None, frame_rate: float = 250.0, *,
                analysis: dict[str, np.ndarray] | None = None, floor_db: float = 45.0, dip_db: float = 8.0,
                change_semitones: float = 0.7, hold_s: float = 0.04, min_gap_s: float = 0.05,
                confidence: float = 0.5, sure_confidence: float = 0.8, step_db: float = 1.5) -> np.ndarray:
    """Onset times (seconds) of the notes of a monophonic pitched recording (see the module).

    Args:
        audio: mono audio (or give ``analysis``).
        sample_rate: its rate.
        frame_rate: frames per second of the analysis.
        analysis: a :func:`dspfx.ddsp.expression.frame_analysis` of the audio.
        floor_db: a frame sounds when its loudness is within this of the loudest frame's.
        dip_db: depth of a dip in the level that separates two notes of the same pitch.
        change_semitones: how far the pitch must move from the current note to start a new one.
        hold_s: how long the new pitch must hold.
        min_gap_s: onsets closer than this merge into the earlier one.
        confidence: the pitch tracker's confidence for a frame to be pitched.
        sure_confidence: the median confidence of the frames that establish a new pitch (a
            decaying tail's resonance is read with less).

    Returns:
        sorted onset times in seconds ``(onsets,)``.
    """
    if analysis is None:
        if audio is None or sample_rate is None:
            raise ValueError("note_onsets needs audio and its sample_rate, or a frame analysis")
        from dspfx.ddsp.expression import frame_analysis

        analysis = frame_analysis(audio, sample_rate, frame_rate)
    for name, value in (("floor_db", floor_db), ("dip_db", dip_db), ("change_semitones", change_semitones),
                        ("hold_s", hold_s), ("min_gap_s", min_gap_s), ("frame_rate", frame_rate)):
        if not (np.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a positive number, got {value!r}")
    loud = np.asarray(analysis["loudness_db"], dtype=np.float64)
    n = loud.size
    f0 = np.asarray(analysis["f0_hz"], dtype=np.float64)[:n]
    conf = np.asarray(analysis["confidence"], dtype=np.float64)[:n]
    if n == 0:
        return np.zeros(0)
    # within floor_db of the loudest frame, and above the loudness floor (silence reads -80 dB)
    sounding = (loud >= loud.max() - floor_db) & (loud > SILENCE_DB)
    # a sound shorter than 20 ms is a click, not a note
    hold = max(2, int(round(hold_s * frame_rate)))
    edges = np.flatnonzero(np.diff(np.r_[0, sounding.astype(int), 0]))
    for s, e in zip(edges[::2], edges[1::2]):
        if e - s < max(2, int(0.02 * frame_rate)):
            sounding[s:e] = False
    starts = [int(s) for s in np.flatnonzero(sounding & ~np.r_[False, sounding[:-1]])]
    attacks = _attacks(loud, sounding, starts, dip_db, hold, int(round(0.15 * frame_rate)))
    voiced = sounding & (conf >= confidence) & (f0 > 0)
    changes = _pitch_changes(hz_to_midi(f0), voiced, sounding, conf, starts, change_semitones, hold,
                             int(round(0.25 * frame_rate)), int(round(0.2 * frame_rate)), sure_confidence)
    # a slurred change sounds where the level moves (the old note's release, the new one's attack)
    # before the tracker reads the new pitch
    span, step = int(round(0.04 * frame_rate)), max(1, int(round(0.012 * frame_rate)))
    moves = np.abs(loud[step:] - loud[:-step])
    for i, b in enumerate(changes):
        lo = max(0, b - span)
        if b - lo >= 1 and moves[lo:b].size and moves[lo:b].max() >= step_db:
            changes[i] = lo + int(np.argmax(moves[lo:b]))
    frames = sorted(set(attacks) | set(changes))
    gap = min_gap_s * frame_rate
    kept: list[int] = []
    for f in frames:
        if not kept or f - kept[-1] >= gap:
            kept.append(f)
    return np.asarray(kept, dtype=np.float64) / frame_rate


def onset_scores(found: Any, reference: Any, tolerance_s: float = 0.05) -> dict[str, float]:
    """Precision, recall and F-measure of ``found`` onsets against ``reference`` ones (seconds),
    each reference matched to at most one found onset within ``tolerance_s`` (a maximum
    matching, as ``mir_eval.onset.f_measure``); ``mean_abs_error_s`` over the matched pairs."""
    found = np.sort(np.asarray(found, dtype=np.float64).reshape(-1))
    ref = np.sort(np.asarray(reference, dtype=np.float64).reshape(-1))
    if not tolerance_s > 0:
        raise ValueError(f"tolerance_s must be positive, got {tolerance_s!r}")
    # both sorted: a greedy sweep in time order gives a maximum matching on the line
    i = j = hits = 0
    errors = []
    while i < ref.size and j < found.size:
        d = found[j] - ref[i]
        if abs(d) <= tolerance_s:
            hits += 1
            errors.append(abs(d))
            i += 1
            j += 1
        elif d < 0:
            j += 1
        else:
            i += 1
    precision = hits / found.size if found.size else 0.0
    recall = hits / ref.size if ref.size else 0.0
    f = 2 * precision * recall / (precision + recall) if hits else 0.0
    return {"precision": precision, "recall": recall, "f_measure": f,
            "mean_abs_error_s": float(np.mean(errors)) if errors else float("nan")}


def pitch_change_delays(f0_hz: Any, notes: list[Any], frame_rate: float = 250.0, window_s: float = 0.1,
                        legato_s: float = 0.01) -> np.ndarray:
    """For each slurred note (its predecessor, of another pitch, sounds until at most ``legato_s``
    before its onset): the time from its onset to the first frame, within ``window_s`` either
    side, at which the pitch ``f0_hz`` (frame ``i`` at ``i / frame_rate`` s; 0 where unpitched)
    is past the midpoint between the two notes' pitches, in seconds (negative: before the
    onset). NaN for the other notes and where the pitch does not pass it. ``(notes,)``."""
    f0 = np.asarray(f0_hz, dtype=np.float64)
    if f0.ndim != 1 or not np.all(np.isfinite(f0)):
        raise ValueError(f"f0_hz must be a finite 1-D frame track, got shape {f0.shape}")
    for name, value in (("frame_rate", frame_rate), ("window_s", window_s), ("legato_s", legato_s)):
        if not (np.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a positive number, got {value!r}")
    out = np.full(len(notes), np.nan)
    st = np.where(f0 > 0, hz_to_midi(np.maximum(f0, 1e-3)), np.nan)
    reach = int(round(window_s * frame_rate))
    for i in range(1, len(notes)):
        before, note = notes[i - 1], notes[i]
        if before.end_s < note.start_s - legato_s or before.pitch == note.pitch:
            continue
        on = int(round(note.start_s * frame_rate))
        lo, hi = max(0, on - reach), min(f0.size, on + reach + 1)
        mid = 0.5 * (before.pitch + note.pitch)
        seg = st[lo:hi]
        past = (seg > mid) if note.pitch > before.pitch else (seg < mid)  # NaN compares False
        if past.any():
            out[i] = (lo + int(np.argmax(past))) / frame_rate - note.start_s
    return out
