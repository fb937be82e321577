"""Tests of the bundled instrument (dspfx.ddsp.instrument) and the bundled "violin" DDSP model
(dspfx/models/violin.safetensors, trained by scripts/train_bundled_model.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from dspfx.cli import build_parser, main
from dspfx.ddsp.model import DDSPModel
from dspfx.ddsp.features import loudness_db, pitch
from dspfx.ddsp.instrument import (
    VIOLIN_RANGE_MIDI,
    Note,
    make_dataset,
    random_melody,
    render_melody,
    render_voice,
)
from dspfx.ddsp.transfer import bundled_models, load_model, resolve_model, transfer

SR = 16000
FR = 250.0
CONFIDENT = 0.85
#: Seeds of held-out melodies: the training data uses seeds 0..7 (seed 0, clips 0..7) and the
#: validation data seed 7000 (scripts/train_bundled_model.py).
HELD_OUT = 4242


def _features(y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = torch.from_numpy(np.asarray(y, dtype=np.float32))
    f0, conf = pitch(x, SR, FR)
    return f0.numpy(), conf.numpy(), loudness_db(x, SR, FR).numpy()


# -- the instrument --------------------------------------------------------------------------------
@pytest.mark.parametrize("midi", [57.0, 69.0, 83.5])
def test_note_pitch_within_10_cents(midi):
    y = render_melody([Note(midi, 0.1, 1.6, -12.0, -12.0)], SR, seed=1, seconds=1.9)
    f0, conf, _ = _features(y)
    sel = conf >= CONFIDENT
    assert sel.sum() > 200  # most of the 1.6 s note is confidently pitched
    cents = 1200.0 * np.log2(np.median(f0[sel]) / (440.0 * 2 ** ((midi - 69.0) / 12.0)))
    assert abs(cents) < 10.0
    # vibrato: the pitch moves (after the onset delay) but by well under a semitone
    spread = 1200.0 * np.log2(f0[sel] / np.median(f0[sel]))
    assert 5.0 < np.percentile(np.abs(spread), 90) < 60.0


def test_loudness_follows_dynamics():
    # a crescendo from -32 to -8 dB, then a held note at -30 dB after a rest
    notes = [Note(64.0, 0.1, 2.0, -32.0, -8.0), Note(64.0, 2.5, 1.0, -30.0, -30.0)]
    y = render_melody(notes, SR, seed=2, seconds=3.7, room=0.0)
    _, conf, loud = _features(y)
    t = np.arange(loud.size) / FR
    inside = (t > 0.3) & (t < 2.0)
    planned = -32.0 + 24.0 * (t[inside] - 0.1) / 2.0
    r = np.corrcoef(loud[inside], planned)[0, 1]
    assert r > 0.98
    slope = np.polyfit(planned, loud[inside], 1)[0]
    assert 0.8 < slope < 1.6  # dB of loudness per dB of dynamic (brightness adds a little)
    # the quiet held note reads about as loud as the crescendo's start, and the rest is silent
    held = loud[(t > 2.8) & (t < 3.3)].mean()
    start = loud[(t > 0.3) & (t < 0.4)].mean()
    assert abs(held - start) < 4.0
    assert loud[(t > 2.25) & (t < 2.4)].max() < held - 20.0


def test_render_is_deterministic_for_a_seed():
    notes = random_melody(4.0, seed=5)
    assert notes == random_melody(4.0, seed=5)
    assert notes != random_melody(4.0, seed=6)
    a = render_melody(notes, SR, seed=5)
    b = render_melody(notes, SR, seed=5)
    c = render_melody(notes, SR, seed=6)
    assert a.dtype == np.float32 and np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert np.isclose(np.abs(a).max(), 0.5)


def test_random_melody_register_rests_and_dynamics():
    notes = random_melody(60.0, seed=3)
    midi = np.array([n.midi for n in notes])
    assert midi.min() >= VIOLIN_RANGE_MIDI[0] and midi.max() <= VIOLIN_RANGE_MIDI[1]
    starts = np.array([n.start_s for n in notes])
    ends = starts + np.array([n.duration_s for n in notes])
    assert np.all(np.diff(starts) > 0)
    gaps = starts[1:] - ends[:-1]
    assert np.all(gaps >= -1e-9) and (gaps > 0.14).sum() >= 3  # rests between phrases
    assert any(n.legato for n in notes) and not all(n.legato for n in notes)
    change = np.array([n.end_db - n.start_db for n in notes])
    assert (change > 1).any() and (change < -1).any()  # crescendi and diminuendi


def test_make_dataset_writes_clips(tmp_path):
    paths = make_dataset(tmp_path, seconds=3.0, seed=9, clip_s=2.0)
    assert [p.name for p in paths] == ["violin-009-000.wav", "violin-009-001.wav"]
    lengths = [sf.info(str(p)).frames for p in paths]
    assert lengths == [2 * SR, 1 * SR] and sf.info(str(paths[0])).samplerate == SR


def test_instrument_errors():
    with pytest.raises(ValueError, match="seconds"):
        random_melody(0.0)
    with pytest.raises(ValueError, match="sample_rate"):
        render_melody([Note(60, 0, 1)], sample_rate=0)


# -- the bundled model -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def violin() -> DDSPModel:
    return load_model("violin")


def test_bundled_model_is_listed_and_small():
    models = bundled_models()
    assert "violin" in models
    path = resolve_model("violin")
    assert path.suffix == ".safetensors" and path.stat().st_size < 5e6
    info = models["violin"]
    for key in ("command", "steps", "train_seconds", "validation"):
        assert key in info
    for key in ("loudness_l1_db", "f0_l1_semitones", "f0_outlier_ratio", "mrstft"):
        assert np.isfinite(info["validation"][key])
    with pytest.raises(FileNotFoundError, match="violin"):  # the message lists the bundled names
        resolve_model("no-such-model")


def _transfer_metrics(model: DDSPModel, x: np.ndarray) -> tuple[float, float, float]:
    """(f0 L1 in semitones over the input's confident note-on frames, Pearson r of the output's
    and the input's loudness over note-on frames, share of frames used)."""
    y, feats = transfer(model, x, SR, octave_shift=0, return_features=True)
    f0_in, conf_in = feats["f0_hz"], _features(x)[1]
    f0_out, _, loud_out = _features(y.numpy())
    n = min(f0_in.size, f0_out.size)
    mask = feats["mask"][:n]
    sel = mask & (conf_in[:n] >= CONFIDENT)
    err = np.abs(12.0 * np.log2(f0_out[:n][sel] / f0_in[:n][sel]))
    r = np.corrcoef(feats["loudness_db"][:n][mask], loud_out[:n][mask])[0, 1]
    return float(err.mean()), float(r), float(sel.mean())


def test_transfer_held_out_melody_follows_f0_and_loudness(violin):
    x = render_melody(random_melody(4.0, HELD_OUT), SR, HELD_OUT, seconds=4.0)
    f0_l1, r, used = _transfer_metrics(violin, x)
    assert used > 0.4
    assert f0_l1 < 0.5  # semitones, on the input's confident note-on frames
    assert r > 0.8  # Pearson r of output vs input loudness on note-on frames


def test_transfer_synthetic_voice_follows_f0_and_loudness(violin):
    x = render_voice(3.0, SR, seed=1, f0_hz=330.0)
    f0_l1, r, used = _transfer_metrics(violin, x)
    assert used > 0.4
    assert f0_l1 < 0.5
    assert r > 0.8


def test_bundled_model_save_load_renders_identically(violin, tmp_path):
    path = violin.save(tmp_path / "copy.safetensors")
    again = DDSPModel.load(path)
    assert again.config() == violin.config() and again.stats == violin.stats
    t = torch.arange(200) / FR
    f0 = (440.0 * 2 ** (0.3 * torch.sin(2 * np.pi * 5 * t) / 12)).unsqueeze(0)
    loud = (-40.0 + 20.0 * torch.sin(np.pi * t / 0.8).abs()).unsqueeze(0)
    with torch.no_grad():
        assert torch.equal(violin(f0, loud), again(f0, loud))


def test_cli_transfer_with_bundled_name(tmp_path, capsys):
    x = render_melody(random_melody(2.0, HELD_OUT + 1), SR, HELD_OUT + 1, seconds=2.0)
    src, dst = tmp_path / "in.wav", tmp_path / "out.wav"
    sf.write(str(src), x, SR)
    assert main(["transfer", "violin", str(src), str(dst)]) == 0
    y, rate = sf.read(str(dst), dtype="float32")
    assert rate == SR and y.shape == (2 * SR,)
    assert np.isfinite(y).all() and np.sqrt(np.mean(y**2)) > 1e-3
    assert "wrote" in capsys.readouterr().out
    # the transfer subcommand's help names the bundled models
    sub = build_parser()._subparsers._group_actions[0].choices["transfer"]
    assert "violin" in sub.format_help()


def test_cli_transfer_unknown_model_is_a_clear_error(tmp_path, capsys):
    src = tmp_path / "in.wav"
    sf.write(str(src), np.zeros(SR, np.float32), SR)
    assert main(["transfer", "nope", str(src), str(tmp_path / "out.wav")]) == 2
    err = capsys.readouterr().err
    assert "nope" in err and "violin" in err


def test_model_json_matches_model_file():
    info = json.loads(resolve_model("violin").with_suffix(".json").read_text())
    model = DDSPModel.load(resolve_model("violin"))
    assert info["sample_rate"] == model.sample_rate and info["preset"] == model.decoder.preset
    assert info["parameters"] == sum(p.numel() for p in model.parameters())
