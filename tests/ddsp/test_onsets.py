"""Tests of dspfx.ddsp.onsets: note onsets of melodies made in code (attacks, slurs, repeated
notes, vibrato and tremolo that are not onsets), the matching against mir_eval's, and a sampled
flute phrase that a level-based detector cannot read."""

from __future__ import annotations

import numpy as np
import pytest

from dspfx.ddsp.midi import MidiNote
from dspfx.ddsp.onsets import note_onsets, onset_scores, pitch_change_delays

SR = 16000


def melody(notes, seconds, vibrato_st=0.0, tremolo_db=0.0, rate=6.0):
    """A harmonic tone: ``notes`` are (start_s, end_s, midi, level_db); between notes with no
    gap the pitch changes at once (a slur) and the level is continuous."""
    t = np.arange(int(SR * seconds)) / SR
    midi = np.full(t.size, 60.0)
    level = np.full(t.size, -120.0)
    for start, end, pitch, db in notes:
        sel = (t >= start) & (t < end)
        midi[sel] = pitch
        level[sel] = db
    midi = midi + vibrato_st * np.sin(2 * np.pi * rate * t)
    level = level + tremolo_db * np.sin(2 * np.pi * 5.0 * t)
    # 5 ms ramps: an attack, not a click
    ramp = np.ones(80) / 80
    gain = np.convolve(10 ** (level / 20), ramp, mode="same")
    phase = 2 * np.pi * np.cumsum(440 * 2 ** ((midi - 69) / 12)) / SR
    y = sum(0.5**k * np.sin((k + 1) * phase) for k in range(6))
    return (0.3 * gain * y).astype(np.float32)


def starts(notes):
    return np.array([n[0] for n in notes])


def test_detached_notes_are_found_at_their_attacks():
    notes = [(0.2, 0.6, 60, -12), (0.8, 1.1, 64, -18), (1.3, 1.9, 67, -12), (2.1, 2.5, 67, -24)]
    found = note_onsets(melody(notes, 2.8), SR)
    assert found.size == len(notes)
    assert np.abs(found - starts(notes)).max() < 0.02


def test_slurred_pitch_changes_at_a_steady_level_are_onsets():
    # one breath, five notes: a level detector sees a single onset
    notes = [(0.2 + 0.35 * k, 0.55 + 0.35 * k, p, -12) for k, p in enumerate([60, 62, 64, 65, 67])]
    found = note_onsets(melody(notes, 2.2), SR)
    assert found.size == len(notes)
    assert np.abs(found - starts(notes)).max() < 0.02


def test_a_repeated_note_is_found_at_its_dip():
    notes = [(0.2, 0.7, 69, -12), (0.7, 1.2, 69, -12)]
    y = melody(notes, 1.5)
    t = np.arange(y.size) / SR
    y = y * np.where(np.abs(t - 0.7) < 0.03, 10 ** (-20 / 20), 1.0)  # a 20 dB, 60 ms re-articulation
    found = note_onsets(y, SR)
    assert found.size == 2
    assert abs(found[1] - 0.7) < 0.04


def test_vibrato_and_tremolo_are_not_onsets():
    notes = [(0.2, 2.2, 65, -12)]
    found = note_onsets(melody(notes, 2.5, vibrato_st=0.45, tremolo_db=3.0), SR)
    assert found.size == 1 and abs(found[0] - 0.2) < 0.02
    # a semitone step under the same vibrato is still a change
    notes = [(0.2, 1.2, 65, -12), (1.2, 2.2, 66, -12)]
    found = note_onsets(melody(notes, 2.5, vibrato_st=0.3), SR)
    assert found.size == 2 and abs(found[1] - 1.2) < 0.05


def test_onset_scores_match_mir_eval():
    mir_eval = pytest.importorskip("mir_eval")
    rng = np.random.default_rng(3)
    for _ in range(50):
        ref = np.sort(rng.uniform(0, 5, rng.integers(1, 20)))
        kept = ref[rng.random(ref.size) < 0.8]
        est = np.sort(np.concatenate([kept + rng.normal(0, 0.04, kept.size), rng.uniform(0, 5, rng.integers(0, 5))]))
        ours = onset_scores(est, ref, 0.05)
        f, p, r = mir_eval.onset.f_measure(ref, est, window=0.05)
        assert (ours["f_measure"], ours["precision"], ours["recall"]) == pytest.approx((f, p, r))


def test_onset_scores_edges():
    assert onset_scores([], [1.0])["f_measure"] == 0.0
    assert onset_scores([1.0], [1.0])["f_measure"] == 1.0
    assert onset_scores([1.0, 1.04], [1.02])["precision"] == 0.5  # one to one
    with pytest.raises(ValueError, match="tolerance_s"):
        onset_scores([1.0], [1.0], 0.0)


def test_pitch_change_delays_time_a_slur_by_its_pitch():
    """Frames made in code: a step at a known frame, a glide through the midpoint, a detached
    note and a repeated pitch (neither is timed), and a change that never comes."""
    fr = 250.0
    f0 = np.full(1000, 440.0 * 2 ** ((60 - 69) / 12))
    notes = [MidiNote(0.2, 1.0, 60, 90), MidiNote(1.0, 1.6, 64, 90), MidiNote(1.6, 2.2, 62, 90),
             MidiNote(2.5, 3.0, 67, 90), MidiNote(3.0, 3.4, 67, 90), MidiNote(3.4, 3.9, 55, 90)]
    hz = lambda m: 440.0 * 2 ** ((np.asarray(m, dtype=float) - 69) / 12)  # noqa: E731
    f0[258:] = hz(64)  # 12 ms after the onset at frame 250
    f0[395:406] = hz(np.linspace(64, 62, 11))  # a glide centred on the onset at frame 400
    f0[406:] = hz(62)
    f0[600:] = hz(67)  # the detached note, and its repeat
    f0[820:] = 0.0  # the last change is unpitched throughout the window
    d = pitch_change_delays(f0, notes, fr)
    assert d[1] == pytest.approx(0.032) and d[2] == pytest.approx(0.004)  # frame 401 is past 63
    assert np.isnan(d[[0, 3, 4, 5]]).all()
    f0[820:] = hz(65)  # two semitones down from 67: not halfway to 55
    assert np.isnan(pitch_change_delays(f0, notes, fr)[5])
    f0[860:] = hz(55)  # ... until 10 frames after the onset
    assert pitch_change_delays(f0, notes, fr)[5] == pytest.approx(0.04)
    with pytest.raises(ValueError, match="1-D frame track"):
        pitch_change_delays(f0[None], notes)
    with pytest.raises(ValueError, match="window_s"):
        pitch_change_delays(f0, notes, window_s=0.0)


def test_bad_input():
    with pytest.raises(ValueError, match="audio and its sample_rate"):
        note_onsets()
    with pytest.raises(ValueError, match="dip_db"):
        note_onsets(np.zeros(1600, np.float32) + 0.1, SR, dip_db=-1.0)
    with pytest.raises(ValueError, match="finite"):
        note_onsets(np.full(1600, np.nan, np.float32), SR)
    assert note_onsets(np.zeros(16000, np.float32), SR).size == 0  # silence has no notes


@pytest.mark.skipif(not __import__("dspfx.ddsp.soundfont", fromlist=["can_render"]).can_render("musescore"),
                    reason="needs fluidsynth and musescore-general-soundfont")
def test_a_sampled_flute_phrase(tmp_path):
    """MuseScore General's flute, slurred and detached notes with vibrato and swells: the notes are
    found, where librosa's level-based detector finds well under half of them."""
    import soundfile as sf

    from dspfx.ddsp.soundfont import random_phrase, render_phrases

    phrase = random_phrase("flute", 600005, 10.0)  # a seed no training or benchmark phrase uses
    path = render_phrases([phrase], [tmp_path / "flute.wav"])[0]
    audio = sf.read(str(path), dtype="float32")[0]
    ref = np.array([n.start_s for n in phrase.notes])
    ours = onset_scores(note_onsets(audio, SR), ref, 0.05)["f_measure"]
    assert ours >= 0.9
    librosa = pytest.importorskip("librosa")
    level = librosa.onset.onset_detect(y=audio, sr=SR, units="time", hop_length=64, backtrack=True)
    assert onset_scores(level, ref, 0.05)["f_measure"] < ours - 0.2
