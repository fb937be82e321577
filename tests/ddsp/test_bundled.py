"""Tests of the bundled instruments (dspfx/models/<name>.safetensors, trained by
scripts/train_bundled_model.py on a sampled instrument of musescore-general-soundfont played by
fluidsynth): each loads, is small and described, follows a held-out phrase of its own instrument
(rendered here by fluidsynth; skipped without it, CI installs it) and a voice."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from dspfx.cli import build_parser, main
from dspfx.ddsp.features import loudness_db, pitch
from dspfx.ddsp.instrument import render_voice
from dspfx.ddsp.model import DDSPModel
from dspfx.ddsp.soundfont import INSTRUMENTS, can_render, random_phrase, render_phrases
from dspfx.ddsp.transfer import bundled_models, load_model, resolve_model, transfer

SR = 16000
FR = 250.0
CONFIDENT = 0.85
NAMES = ("violin", "flute", "trumpet", "tenor_sax")
#: Seed of the held-out phrases: training phrases use seeds 0 .. ~100 and validation 100003 ..
#: (scripts/train_bundled_model.py, seeds (seed * 100003 + k)).
HELD_OUT = 777_777


needs_musescore = pytest.mark.skipif(not can_render("musescore"), reason="needs fluidsynth and musescore-general-soundfont")


def _features(y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = torch.from_numpy(np.asarray(y, dtype=np.float32))
    f0, conf = pitch(x, SR, FR)
    return f0.numpy(), conf.numpy(), loudness_db(x, SR, FR).numpy()


def _transfer_metrics(model: DDSPModel, x: np.ndarray, octave_shift: int | str = 0) -> tuple[float, float, float, int]:
    """(f0 L1 in semitones between the output and the shifted input over the input's confident
    note-on frames, Pearson r of output and input loudness over note-on frames, share of frames
    used, the octave shift)."""
    y, feats = transfer(model, x, SR, octave_shift=octave_shift, return_features=True)
    f0_in, conf_in = feats["f0_hz"] * 2.0 ** feats["octave_shift"], _features(x)[1]
    f0_out, _, loud_out = _features(y.numpy())
    n = min(f0_in.size, f0_out.size)
    mask = feats["mask"][:n]
    sel = mask & (conf_in[:n] >= CONFIDENT)
    err = np.abs(12.0 * np.log2(f0_out[:n][sel] / f0_in[:n][sel]))
    r = np.corrcoef(feats["loudness_db"][:n][mask], loud_out[:n][mask])[0, 1]
    return float(err.mean()), float(r), float(sel.mean()), int(feats["octave_shift"])


@pytest.fixture(scope="module")
def models() -> dict[str, DDSPModel]:
    return {name: load_model(name) for name in NAMES}


@pytest.mark.parametrize("name", NAMES)
def test_bundled_instrument_is_listed_small_and_described(name, models):
    info = bundled_models()[name]
    path = resolve_model(name)
    assert path.suffix == ".safetensors" and path.stat().st_size < 5e6
    assert info["train_seconds"] >= 600  # at least 10 minutes of rendered music
    assert info["range_midi"] == [INSTRUMENTS[name].low_midi, INSTRUMENTS[name].high_midi]
    assert info["soundfont"].startswith("MuseScore_General") and info["other_soundfont"] == "TimGM6mb.sf2"
    for key in ("validation", "validation_other_soundfont"):
        for metric in ("loudness_l1_db", "f0_l1_semitones", "f0_outlier_ratio", "mrstft"):
            assert np.isfinite(info[key][metric])
    model = models[name]
    assert info["sample_rate"] == model.sample_rate and info["preset"] == model.decoder.preset
    assert info["parameters"] == sum(p.numel() for p in model.parameters())
    # the training set's register sits inside the playing range (octave shift 'auto' aims there)
    assert INSTRUMENTS[name].low_midi < model.stats["mean_pitch_midi"] < INSTRUMENTS[name].high_midi


@needs_musescore
@pytest.mark.parametrize("name", NAMES)
def test_held_out_phrase_follows_f0_and_loudness(name, models, tmp_path):
    phrase = random_phrase(name, HELD_OUT, 5.0)
    [path] = render_phrases([phrase], [tmp_path / "held_out.wav"])
    x, rate = sf.read(str(path), dtype="float32")
    assert rate == SR
    f0_l1, r, used, _ = _transfer_metrics(models[name], x)
    assert used > 0.3
    assert f0_l1 < 0.5  # semitones, on the input's confident note-on frames
    assert r > 0.8  # Pearson r of output vs input loudness on note-on frames


@pytest.mark.parametrize("name", NAMES)
def test_a_voice_played_as_each_instrument_follows_its_pitch(name, models):
    x = render_voice(3.0, SR, seed=1, f0_hz=220.0)
    f0_l1, r, used, shift = _transfer_metrics(models[name], x, octave_shift="auto")
    inst = INSTRUMENTS[name]
    assert inst.low_midi <= 57 + 12 * shift <= inst.high_midi  # A3 moved into the playing range
    assert used > 0.4
    assert f0_l1 < 0.5
    assert r > 0.8


def test_bundled_model_save_load_renders_identically(models, tmp_path):
    violin = models["violin"]
    again = DDSPModel.load(violin.save(tmp_path / "copy.safetensors"))
    assert again.config() == violin.config() and again.stats == violin.stats
    t = torch.arange(200) / FR
    f0 = (440.0 * 2 ** (0.3 * torch.sin(2 * np.pi * 5 * t) / 12)).unsqueeze(0)
    loud = (-40.0 + 20.0 * torch.sin(np.pi * t / 0.8).abs()).unsqueeze(0)
    with torch.no_grad():
        assert torch.equal(violin(f0, loud), again(f0, loud))


def test_cli_instruments_lists_each_with_range_and_figures(capsys):
    assert main(["instruments"]) == 0
    out = capsys.readouterr().out
    for name, rng in (("violin", "G3-A6"), ("flute", "C4-A6"), ("trumpet", "F#3-A#5"), ("tenor_sax", "G#2-D#5")):
        line = next(x for x in out.splitlines() if x.startswith(name))
        assert rng in line
    assert main(["instruments", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(NAMES) <= set(rows)
    assert rows["flute"]["range_midi"] == [60, 93] and rows["flute"]["f0_l1_semitones"] > 0


def test_cli_transfer_with_bundled_name(tmp_path, capsys):
    src, dst = tmp_path / "in.wav", tmp_path / "out.wav"
    sf.write(str(src), render_voice(2.0, SR, seed=2, f0_hz=330.0), SR)
    assert main(["transfer", "flute", str(src), str(dst), "--quiet"]) == 0
    y, rate = sf.read(str(dst), dtype="float32")
    assert rate == SR and y.shape == (2 * SR,)
    assert np.isfinite(y).all() and np.sqrt(np.mean(y**2)) > 1e-3
    assert "wrote" in capsys.readouterr().out
    sub = build_parser()._subparsers._group_actions[0].choices["transfer"]
    assert all(name in sub.format_help() for name in NAMES)


def test_cli_transfer_unknown_model_is_a_clear_error(tmp_path, capsys):
    src = tmp_path / "in.wav"
    sf.write(str(src), np.zeros(SR, np.float32), SR)
    assert main(["transfer", "nope", str(src), str(tmp_path / "out.wav")]) == 2
    err = capsys.readouterr().err
    assert "nope" in err and "violin" in err and "tenor_sax" in err


def test_the_readme_instrument_table_is_the_bundled_figures():
    from pathlib import Path

    from dspfx.ddsp.commands import instruments_markdown

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert instruments_markdown() in readme, "README instrument table is stale: paste `dspfx instruments --markdown`"
