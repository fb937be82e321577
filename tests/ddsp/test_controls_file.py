"""Tests of dspfx.ddsp.controls_file and `dspfx play --write-controls/--controls`: a performance's
note controls written, edited and played back."""

from __future__ import annotations

import json

import mido
import numpy as np
import pytest
import soundfile as sf

import dspfx
from dspfx.cli import main
from dspfx.ddsp.controls_file import read_controls, write_controls
from dspfx.ddsp.expression import CONTROL_NAMES, note_controls
from dspfx.ddsp.play import performance, play

NOTES = [(0.1, 0.8, 69), (0.9, 1.6, 72), (1.8, 2.5, 76)]


def _midi(path):
    mid, track, now = mido.MidiFile(type=0, ticks_per_beat=480), mido.MidiTrack(), 0
    for start, end, pitch in NOTES:  # 960 ticks a second at 120 bpm
        track.append(mido.Message("note_on", note=pitch, velocity=96, time=int(start * 960) - now))
        track.append(mido.Message("note_off", note=pitch, velocity=0, time=int((end - start) * 960)))
        now = int(end * 960)
    mid.tracks.append(track)
    mid.save(str(path))
    return path


def test_written_controls_play_back_the_same_and_an_edit_moves_its_note(tmp_path, capsys):
    src = _midi(tmp_path / "tune.mid")
    a, b, c, ctl = (tmp_path / n for n in ("a.wav", "b.wav", "c.wav", "c.json"))
    assert main(["play", "flute", str(src), str(a), "--write-controls", str(ctl)]) == 0
    assert "edit and play with --controls" in capsys.readouterr().out
    doc = json.loads(ctl.read_text())
    assert [row["pitch"] for row in doc["notes"]] == [p for _, _, p in NOTES]
    assert set(doc["notes"][0]["controls"]) == {"volume", "volume_fluctuation", "volume_peak_position", "vibrato"}
    assert main(["play", "flute", str(src), str(b), "--controls", str(ctl)]) == 0
    ya, rate = sf.read(str(a), dtype="float32")
    yb, _ = sf.read(str(b), dtype="float32")
    assert np.array_equal(ya, yb)  # the generator's own values are not edits
    doc["notes"][1]["controls"]["volume"] += 10.0
    ctl.write_text(json.dumps(doc))
    assert main(["play", "flute", str(src), str(c), "--controls", str(ctl)]) == 0
    yc, _ = sf.read(str(c), dtype="float32")
    notes = performance(src, "flute")[0]
    va, vc = (note_controls(y, rate, notes)[:, CONTROL_NAMES.index("volume")] for y in (ya, yc))
    # the learned frames see the notes around (a bidirectional GRU): a neighbour moves a little
    # (measured: +8.0 dB on the edited note, +0.03 and +2.1 dB on its neighbours)
    rise = vc - va
    assert rise[1] > 7.0 and np.all(np.abs(rise[[0, 2]]) < rise[1] / 3), (va, vc)


def test_a_nan_leaves_a_note_to_the_expression_generator():
    notes, planned = performance([dspfx.ddsp.midi.MidiNote(s, e, p, 96) for s, e, p in NOTES], "flute")
    partial = np.full(3, np.nan)
    partial[2] = -12.0
    full = planned["volume"].copy()
    full[2] = -12.0
    # the NaN notes take the generator's volumes; the one given is played as asked (the render
    # corrects the notes whose volume a caller gives, dspfx.ddsp.play.conform_volume)
    np.testing.assert_array_equal(performance(notes, "flute", controls={"volume": partial})[1]["volume"], full)
    y1, rate = play(notes, "flute", controls={"volume": partial})
    assert abs(note_controls(y1.numpy(), rate, notes)[2, CONTROL_NAMES.index("volume")] + 12.0) < 0.3
    with pytest.raises(ValueError, match="every note or none"):
        play(notes, "flute", controls={"brightness": [np.nan, 3.0, np.nan]})


def test_bad_controls_files_are_one_line_errors(tmp_path, capsys, monkeypatch):
    src = _midi(tmp_path / "tune.mid")
    notes, planned = performance(src, "flute")
    good = tmp_path / "good.json"
    write_controls(good, notes, planned)
    doc = json.loads(good.read_text())

    def variant(name, change):
        d = json.loads(json.dumps(doc))
        change(d)
        (tmp_path / name).write_text(json.dumps(d))
        return tmp_path / name

    cases = [
        (variant("short.json", lambda d: d["notes"].pop()), "holds 2 notes; the track plays 3"),
        (variant("format.json", lambda d: d.update(format="x")), "format 'x'"),
        (variant("unknown.json", lambda d: d["notes"][0]["controls"].update(loudness=1.0)), "unknown control 'loudness'"),
        (variant("text.json", lambda d: d["notes"][0]["controls"].update(volume="loud")), "finite number or null"),
        (variant("pitch.json", lambda d: d["notes"][2].update(pitch=40)), "another track or file"),
    ]
    (tmp_path / "junk.json").write_text("{not json")
    cases.append((tmp_path / "junk.json", "is not JSON"))
    cases.append((tmp_path / "missing.json", "no controls file"))
    for path, match in cases:
        assert main(["play", "flute", str(src), str(tmp_path / "x.wav"), "--controls", str(path)]) == 2, path
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and match in err, (path, err)
    assert not (tmp_path / "x.wav").exists()
    monkeypatch.setattr(dspfx.ddsp.controls_file, "MAX_BYTES", 100)
    with pytest.raises(ValueError, match="more than the limit of 100"):
        read_controls(good, notes)
