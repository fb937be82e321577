"""Tests of dspfx.ddsp.midi: reading a monophonic line from MIDI files made here, its rules
(track choice, last note wins, octaves into range) and bad files."""

from __future__ import annotations

import warnings

import mido
import numpy as np
import pytest

from dspfx.ddsp.midi import (
    SILENCE_DB,
    MidiError,
    MidiNote,
    MidiWarning,
    fit_range,
    notes_to_frames,
    read_midi,
    velocity_db,
    velocity_loudness,
)


def _write(path, tracks, tpb=480, kind=1):
    """tracks: lists of (delta_ticks, message) pairs."""
    mid = mido.MidiFile(type=kind, ticks_per_beat=tpb)
    for events in tracks:
        t = mido.MidiTrack()
        for dt, msg in events:
            t.append(msg.copy(time=dt))
        mid.tracks.append(t)
    mid.save(str(path))
    return path


def on(note, vel=100, ch=0):
    return mido.Message("note_on", note=note, velocity=vel, channel=ch)


def off(note, ch=0):
    return mido.Message("note_off", note=note, velocity=0, channel=ch)


def test_reads_the_melody_through_a_tempo_change_and_skips_drums(tmp_path):
    tempo = [(0, mido.MetaMessage("set_tempo", tempo=500_000)), (960, mido.MetaMessage("set_tempo", tempo=250_000))]
    drums = [(0, on(36, ch=9)), (240, off(36, ch=9))]
    melody = [(0, on(60, 90)), (480, off(60)), (0, on(62, 70)), (480, off(62)), (240, on(64, 50)), (480, off(64))]
    path = _write(tmp_path / "a.mid", [tempo, drums, melody])
    notes = read_midi(path)
    # 120 bpm for two beats (0.5 s each), then 240 bpm (0.25 s a beat)
    assert [(n.pitch, n.velocity) for n in notes] == [(60, 90), (62, 70), (64, 50)]
    assert np.allclose([(n.start_s, n.end_s) for n in notes], [(0.0, 0.5), (0.5, 1.0), (1.125, 1.375)])
    assert read_midi(path, track=2) == notes
    with pytest.raises(MidiError, match="track 1 .* drum track"):
        read_midi(path, track=1)
    with pytest.raises(MidiError, match="track 0 .* no notes"):
        read_midi(path, track=0)
    with pytest.raises(MidiError, match="tracks 0..2"):
        read_midi(path, track=7)


def test_chords_and_overlaps_last_note_wins_with_a_warning(tmp_path):
    melody = [(0, on(60)), (0, on(67)), (0, on(64)), (480, off(60)), (0, off(64)), (0, off(67)),  # a chord
              (0, on(70)), (360, on(72)), (120, off(70)), (360, off(72))]  # an overlap
    path = _write(tmp_path / "c.mid", [melody])
    with pytest.warns(MidiWarning, match="3 overlapping notes.*later note wins"):
        notes = read_midi(path)
    assert [n.pitch for n in notes] == [67, 70, 72]  # the chord's highest; 70 cut where 72 starts
    assert np.allclose([(n.start_s, n.end_s) for n in notes], [(0, 0.5), (0.5, 0.875), (0.875, 1.375)])
    starts = np.array([n.start_s for n in notes])
    ends = np.array([n.end_s for n in notes])
    assert np.all(starts[1:] >= ends[:-1])


@pytest.mark.parametrize("case, match", [
    ("drums_only", "no melodic track .*only drums"),
    ("empty", "no melodic track .*no notes"),
    ("corrupt", "cannot read MIDI .*Standard MIDI File"),
    ("truncated", "cannot read MIDI"),
    ("type2", "type 2"),
])
def test_bad_files_are_one_line_errors(tmp_path, case, match):
    path = tmp_path / f"{case}.mid"
    if case == "drums_only":
        _write(path, [[(0, on(36, ch=9)), (100, off(36, ch=9))]])
    elif case == "empty":
        _write(path, [[(0, mido.MetaMessage("track_name", name="nothing"))]])
    elif case == "corrupt":
        path.write_bytes(b"RIFF" + bytes(range(200)))
    elif case == "truncated":
        _write(path, [[(0, on(60)), (480, off(60))] * 50])
        path.write_bytes(path.read_bytes()[:60])
    else:
        _write(path, [[(0, on(60)), (480, off(60))]], kind=2)
    with pytest.raises(MidiError, match=match) as err:
        read_midi(path)
    assert "\n" not in str(err.value)


def test_limits_are_checked_and_raisable(tmp_path):
    path = _write(tmp_path / "long.mid", [[(0, on(60)), (480, off(60))] * 30])
    with pytest.raises(MidiError, match="30 notes, more than max_notes=20"):
        read_midi(path, max_notes=20)
    with pytest.raises(MidiError, match="more than max_seconds=10"):
        read_midi(path, max_seconds=10)
    assert len(read_midi(path, max_notes=30)) == 30
    with pytest.raises(FileNotFoundError):
        read_midi(tmp_path / "none.mid")


def test_fit_range_moves_by_octaves_with_a_warning():
    notes = [MidiNote(0, 1, 40, 80), MidiNote(1, 2, 62, 80), MidiNote(2, 3, 100, 80)]
    with pytest.warns(MidiWarning, match="2 of 3 notes"):
        moved = fit_range(notes, 55, 93)
    assert [n.pitch for n in moved] == [64, 62, 88]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert fit_range(moved, 55, 93) == moved
    with pytest.raises(ValueError, match="octave"):
        fit_range(notes, 60, 65)


def test_notes_to_frames_pitch_levels_ramps_and_legato():
    fr = 250.0
    notes = [MidiNote(0.2, 0.6, 69, 127), MidiNote(0.6, 1.0, 72, 64), MidiNote(1.5, 2.0, 57, 127)]
    f0, loud = notes_to_frames(notes, fr, attack_s=0.04, release_s=0.08, tail_s=0.2)
    t = np.arange(f0.size) / fr
    assert f0.size == int(np.ceil(2.2 * fr))
    assert np.allclose(f0[(t > 0.3) & (t < 0.6)], 440.0)
    assert np.allclose(f0[(t >= 0.6) & (t < 1.0)], 440 * 2 ** 0.25)
    assert np.allclose(f0[(t > 1.1) & (t < 1.5)], 440 * 2 ** 0.25)  # the last pitch is held in the rest
    top, mid = velocity_db([127, 64])
    assert np.allclose(loud[(t > 0.25) & (t < 0.6)], top)
    assert np.allclose(loud[(t > 0.61) & (t < 1.0)], mid)  # legato: no attack ramp, no dip
    assert loud[(t > 0.6) & (t < 0.61)].min() >= mid - 1e-9
    assert np.allclose(loud[(t > 1.1) & (t < 1.5)], SILENCE_DB)  # silence after the release
    ramp = loud[(t >= 1.5) & (t < 1.54)]
    assert np.all(np.diff(ramp) > 0) and ramp[0] < SILENCE_DB + 1  # the attack rises from silence
    assert np.all(np.diff(loud[(t >= 2.0) & (t < 2.08)]) < 0)  # the release falls
    assert top > mid and velocity_db(127) == pytest.approx(-16.0)


def test_velocity_loudness_plays_the_instruments_own_dynamics():
    """A velocity is a rank in the instrument's note loudness: 0 and 127 at its 1% and 99%
    quantiles, in between linearly in the quantile."""
    levels = np.linspace(0.0, 1.0, 101)
    quantiles = -60.0 + 40.0 * levels**2  # an instrument mostly quiet
    got = velocity_loudness([0, 32, 64, 127, 200], levels, quantiles)
    expected = -60.0 + 40.0 * np.array([0.01, 32 / 127, 64 / 127, 0.99, 0.99]) ** 2
    assert np.allclose(got, expected, atol=0.02)  # the quantiles interpolated between their 1% steps
    assert np.all(np.diff(got[:4]) > 0)
    for bad_levels, bad_quantiles in (([0.0], [-30.0]), (levels, quantiles[:-1]), (levels[::-1], quantiles),
                                      (levels, quantiles[::-1]), (levels, np.where(levels > 0.5, np.nan, quantiles))):
        with pytest.raises(ValueError, match="two finite, increasing sequences"):
            velocity_loudness(64, bad_levels, bad_quantiles)
