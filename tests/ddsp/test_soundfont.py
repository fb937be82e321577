"""Tests of dspfx.ddsp.soundfont and scripts/make_instrument_data.py: expressive MIDI phrases and
their fluidsynth renders (those skip without fluidsynth and the soundfonts; CI installs them)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import mido
import numpy as np
import pytest
import soundfile as sf
import torch

from dspfx.ddsp.expression import note_pitch_errors
from dspfx.ddsp.features import pitch
from dspfx.ddsp.soundfont import (
    BEND_RANGE_SEMITONES,
    INSTRUMENTS,
    TAIL_S,
    Phrase,
    PhraseNote,
    SoundfontError,
    can_render,
    find_soundfont,
    make_phrases,
    random_phrase,
    render_phrases,
    write_midi,
)

ROOT = Path(__file__).resolve().parents[2]
SR = 16000


needs_musescore = pytest.mark.skipif(not can_render("musescore"), reason="needs fluidsynth and musescore-general-soundfont")


# -- phrases ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(INSTRUMENTS))
def test_phrases_cover_the_range_monophonic_and_expressive(name):
    inst = INSTRUMENTS[name]
    phrases = [random_phrase(name, seed, 12.0) for seed in range(40)]
    notes = [n for p in phrases for n in p.notes]
    pitches = np.array([n.pitch for n in notes])
    assert pitches.min() >= inst.low_midi and pitches.max() <= inst.high_midi
    # the whole playing range is played: most semitones of it occur
    assert len(set(pitches.tolist())) >= 0.8 * (inst.high_midi - inst.low_midi + 1)
    for p in phrases:
        starts = np.array([n.start_s for n in p.notes])
        ends = starts + np.array([n.duration_s for n in p.notes])
        assert np.all(starts[1:] >= ends[:-1] - 1e-9)  # monophonic: no overlaps
        assert p.notes[-1].start_s < 12.0 and 8.0 < p.seconds < 12.0 + 4.0  # notes start until the length
    gaps = np.concatenate([[b.start_s - (a.start_s + a.duration_s) for a, b in zip(p.notes, p.notes[1:])] for p in phrases])
    assert (gaps < 1e-6).mean() > 0.2 and (gaps > 0.2).mean() > 0.05  # legato notes and detached ones / rests
    assert {n.expression for n in notes} == {"flat", "crescendo", "diminuendo", "swell"}
    vib = [n for n in notes if n.vibrato_hz > 0]
    assert len(vib) > 0.3 * len(notes)
    assert all(4.5 <= n.vibrato_hz <= 7.0 and 10 <= n.vibrato_cents <= 45 and n.vibrato_delay_s >= 0.1 for n in vib)
    bpms = {p.bpm for p in phrases}
    assert min(bpms) < 80 and max(bpms) > 120


def test_phrase_is_seeded():
    assert random_phrase("flute", 3).to_json() == random_phrase("flute", 3).to_json()
    assert random_phrase("flute", 3).to_json() != random_phrase("flute", 4).to_json()
    with pytest.raises(ValueError, match="instrument 'banjo'"):
        random_phrase("banjo", 0)
    with pytest.raises(ValueError, match="seconds"):
        random_phrase("flute", 0, seconds=0.0)


def test_midi_round_trip_notes_expression_and_vibrato(tmp_path):
    phrase = random_phrase("violin", 11, 8.0)
    path = write_midi(phrase, tmp_path / "p.mid")
    mid = mido.MidiFile(str(path))
    t, on, off, bends, cc = 0.0, [], [], [], {}
    for msg in mid:  # iterating a MidiFile gives times in seconds
        t += msg.time
        if msg.type == "note_on" and msg.velocity > 0:
            on.append((t, msg.note, msg.velocity))
        elif msg.type == "note_off":
            off.append((t, msg.note))
        elif msg.type == "pitchwheel":
            bends.append((t, msg.pitch))
        elif msg.type == "control_change":
            cc.setdefault(msg.control, []).append((t, msg.value))
        elif msg.type == "program_change":
            assert msg.program == INSTRUMENTS["violin"].program
    assert [(n, v) for _, n, v in on] == [(n.pitch, n.velocity) for n in phrase.notes]
    assert np.allclose([s for s, _, _ in on], [n.start_s for n in phrase.notes], atol=2e-3)
    assert np.allclose([s for s, _ in off], [n.start_s + n.duration_s for n in phrase.notes], atol=2e-3)
    assert abs(mid.length - phrase.seconds - TAIL_S) < 5e-3
    # bend range RPN 0 = 2 semitones; bends stay within each note's vibrato extent
    assert cc[101][0][1] == 0 and cc[100][0][1] == 0 and cc[6][0][1] == BEND_RANGE_SEMITONES
    most = max(n.vibrato_cents for n in phrase.notes)
    assert max(abs(b) for _, b in bends) <= most / (100 * BEND_RANGE_SEMITONES) * 8192 + 1
    assert max(abs(b) for _, b in bends) > 0.5 * most / (100 * BEND_RANGE_SEMITONES) * 8192
    assert len({v for _, v in cc[11]}) > 10  # expression curves, not a constant


def test_missing_soundfont_and_fluidsynth_are_clear(tmp_path, monkeypatch):
    with pytest.raises(SoundfontError, match="expected one of"):
        find_soundfont("nope")
    monkeypatch.setattr(shutil, "which", lambda name: None)
    from dspfx.ddsp.soundfont import render_midi

    write_midi(random_phrase("flute", 0, 1.0), tmp_path / "a.mid")
    with pytest.raises(SoundfontError, match="apt-get install fluidsynth"):
        render_midi(tmp_path / "a.mid", tmp_path / "a.wav")


# -- renders ---------------------------------------------------------------------------------------
@needs_musescore
def test_data_script_renders_a_two_second_phrase_that_plays_its_notes(tmp_path):
    out = tmp_path / "phrases"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_instrument_data.py"), "flute", str(out),
                           "--seconds", "2", "--seed", "5"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    settings = json.loads((out / "phrases.json").read_text())
    assert settings["instrument"] == "flute" and settings["phrases"] >= 1
    notes = [PhraseNote(**n) for n in json.loads((out / "0000.json").read_text())["notes"]]
    audio, rate = sf.read(str(out / "0000.wav"), dtype="float32")
    phrase_s = max(n.start_s + n.duration_s for n in notes)
    assert rate == SR and audio.ndim == 1 and abs(audio.size / SR - phrase_s - TAIL_S) < 2e-3
    errs = note_pitch_errors(audio, SR, notes)
    errs = errs[np.isfinite(errs)]
    assert len(errs) >= 0.5 * len(notes) and np.max(np.abs(errs)) < 0.5  # semitones
    assert (out / "0000.mid").is_file()
    # rerunning keeps the phrases (resume): same files, untouched
    before = (out / "0000.wav").stat().st_mtime_ns
    make_phrases(out, "flute", 2.0, seed=5)
    assert (out / "0000.wav").stat().st_mtime_ns == before


@needs_musescore
def test_pitch_bend_vibrato_is_heard_with_its_rate_and_extent(tmp_path):
    note = PhraseNote(0.1, 2.5, 72, 90, "flat", vibrato_hz=5.5, vibrato_cents=40.0, vibrato_delay_s=0.3)
    plain = PhraseNote(0.1, 2.5, 72, 90, "flat")
    paths = render_phrases([Phrase("flute", 100.0, 0, [note]), Phrase("flute", 100.0, 0, [plain])],
                           [tmp_path / "v.wav", tmp_path / "p.wav"])
    dev = []
    for p in paths:
        audio, _ = sf.read(str(p), dtype="float32")
        f0, _ = pitch(torch.from_numpy(audio), SR, 250.0)
        cents = 1200 * np.log2(f0.numpy()[250:600] / (440 * 2 ** (3 / 12)))  # 1.0 .. 2.4 s: after the fade-in
        dev.append(cents - np.median(cents))
    spectrum = np.abs(np.fft.rfft(dev[0] * np.hanning(dev[0].size)))
    rate = np.fft.rfftfreq(dev[0].size, 1 / 250.0)[np.argmax(spectrum[1:]) + 1]
    assert abs(rate - 5.5) < 0.8
    extent = np.sqrt(2) * dev[0].std()  # a sine's amplitude from its RMS
    assert 25.0 < extent < 60.0
    assert dev[1].std() < 0.4 * dev[0].std()  # the note without bends wobbles far less
