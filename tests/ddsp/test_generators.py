"""Tests of dspfx.ddsp.generators: note features, the expression generator learning a known
mapping, its files, and `dspfx train-midi` on pairs rendered by fluidsynth (skipped without it)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dspfx.cli import main
from dspfx.ddsp.generators import TARGETS, ExpressionGenerator, note_features, train_expression, training_pairs
from dspfx.ddsp.midi import MidiNote
from dspfx.ddsp.soundfont import can_render, make_phrases
from dspfx.ddsp.transfer import MODELS_DIR


def test_note_features_describe_the_line():
    notes = [MidiNote(0.0, 0.5, 60, 127), MidiNote(0.5, 1.5, 72, 64), MidiNote(2.0, 2.25, 67, 32)]
    f = note_features(notes)
    assert f.shape == (3, 8) and f.dtype == np.float32
    assert np.allclose(f[:, 0], [0.0, 0.5, 7 / 24])
    assert np.allclose(f[:, 1], np.log2([0.5, 1.0, 0.25]))
    assert np.allclose(f[:, 3], [2.0, 0.0, 0.5]) and np.allclose(f[:, 4], [0.0, 0.5, 2.0])
    assert np.allclose(f[:, 5], [0.0, 1.0, -5 / 12]) and np.allclose(f[:, 6], [1.0, -5 / 12, 0.0])
    assert np.allclose(f[:, 7], [0.0, 0.5, 1.0])


def _synthetic_pairs(n, seed):
    """Lines whose controls are a known function of the notes: volume from velocity, vibrato on
    long notes, a swell on notes after a leap, peak position from the place in the line."""
    rng = np.random.default_rng(seed)
    pairs = []
    for _ in range(n):
        t, notes = 0.0, []
        for _ in range(int(rng.integers(4, 12))):
            d = float(rng.choice([0.2, 0.4, 0.8, 1.2]))
            notes.append(MidiNote(t, t + d, int(rng.integers(55, 80)), int(rng.integers(30, 127))))
            t += d + float(rng.choice([0.0, 0.0, 0.3]))
        f = note_features(notes)
        y = np.stack([-40 + 25 * f[:, 2], 6 * (np.abs(f[:, 5]) > 0.3), 0.2 + 0.6 * f[:, 7],
                      0.3 * (f[:, 1] > -1.0)], axis=1).astype(np.float32)
        pairs.append((f, y))
    return pairs


def test_the_generator_learns_a_known_mapping():
    result = train_expression(_synthetic_pairs(120, 0), _synthetic_pairs(20, 1), steps=600, seed=0)
    assert result.mse < 0.1 * result.mean_baseline_mse
    assert all(result.pearson_r[name] > 0.9 for name in TARGETS), result.pearson_r
    notes = [MidiNote(0.0, 1.2, 60, 127), MidiNote(1.2, 1.4, 62, 30)]
    pred = result.generator.predict(notes)
    assert pred["volume"][0] > pred["volume"][1] + 10  # loud velocity, loud note
    assert pred["vibrato"][0] > 0.2 > 0.1 > pred["vibrato"][1]  # vibrato on the long note only


def test_generator_files_round_trip_and_refuse_bad_ones(tmp_path):
    gen = ExpressionGenerator(16, mean=[-30, 2, 0.4, 0.1], std=[5, 1, 0.2, 0.1])
    path = gen.save(tmp_path / "g.safetensors")
    again = ExpressionGenerator.load(path)
    notes = [MidiNote(0.0, 0.5, 60, 100), MidiNote(0.6, 1.0, 64, 80)]
    for key in TARGETS:
        assert np.array_equal(gen.predict(notes)[key], again.predict(notes)[key])
    with torch.no_grad():
        gen.out.weight[0, 0] = float("nan")
    gen.save(tmp_path / "nan.safetensors")
    with pytest.raises(ValueError, match="NaN"):
        ExpressionGenerator.load(tmp_path / "nan.safetensors")
    from dspfx.io import write_safetensors

    write_safetensors(tmp_path / "other.safetensors", {"x": torch.zeros(1)}, {"format": "something"})
    with pytest.raises(ValueError, match="not an expression generator"):
        ExpressionGenerator.load(tmp_path / "other.safetensors")


@pytest.mark.skipif(not can_render("musescore"), reason="needs fluidsynth and musescore-general-soundfont")
def test_train_midi_on_rendered_pairs_and_play_with_it(tmp_path, capsys):
    data = tmp_path / "pairs"
    make_phrases(data, "flute", 40.0, seed=3)
    pairs = training_pairs(data)
    assert len(pairs) >= 3 and all(x.shape[0] == y.shape[0] and y.shape[1] == 4 for x, y in pairs)
    assert all(np.isfinite(y).all() for _, y in pairs)
    run = tmp_path / "run"
    assert main(["train-midi", str(data), "--out", str(run), "--steps", "100", "--synthesis-steps", "20", "--quiet"]) == 0
    info = json.loads((run / "expression.json").read_text())
    assert info["pairs"] == len(pairs) and info["steps"] == 100 and set(info["held_out_pearson_r"]) == set(TARGETS)
    synth = json.loads((run / "synthesis.json").read_text())
    # the same pairs held out for both; the frames' errors measured against predicting the mean
    assert synth["held_out"] == info["held_out"] and synth["steps"] == 20
    assert 0 < synth["heldout_loudness_l1_db"] < 60 and synth["mean_baseline"]["loudness_l1_db"] > 0
    out = capsys.readouterr().out
    assert "wrote" in out and "--synthesis" in out
    midi = sorted(data.glob("*.mid"))[0]
    assert main(["play", "flute", str(midi), str(tmp_path / "a.wav"), "--expression",
                 str(run / "expression.safetensors")]) == 0
    assert main(["play", "flute", str(midi), str(tmp_path / "b.wav"), "--expression", "none"]) == 0
    assert main(["play", "flute", str(midi), str(tmp_path / "c.wav"), "--expression", "none", "--synthesis",
                 str(run / "synthesis.safetensors")]) == 0
    import soundfile as sf

    a, b, c = (sf.read(str(tmp_path / f"{k}.wav"))[0] for k in "abc")
    assert a.shape == b.shape == c.shape and not np.allclose(a, b) and not np.allclose(b, c)
    assert np.isfinite(c).all() and np.abs(c).max() > 1e-3
    # a model file has no bundled synthesis generator: learned frames need one named
    model = MODELS_DIR / "flute.safetensors"
    assert main(["play", str(model), str(midi), str(tmp_path / "d.wav"), "--frames", "learned"]) == 2
    assert "--synthesis FILE" in capsys.readouterr().err
    assert main(["train-midi", str(tmp_path / "nothing"), "--out", str(tmp_path / "r2")]) == 2
    assert "no folder" in capsys.readouterr().err
