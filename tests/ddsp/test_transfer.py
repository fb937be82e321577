"""Tests of dspfx.ddsp.transfer: the colab pipeline's helpers and an end-to-end transfer."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dspfx.ddsp.model import DDSPModel
from dspfx.ddsp.features import pitch
from dspfx.ddsp.transfer import autotune_midi, octave_shift_toward, quantile_match, transfer, tuning_offset

sys.path.insert(0, str(Path(__file__).parent))
from test_trainer import sawtooth_like  # noqa: E402


def test_octave_shift_toward_mean_pitch():
    f0 = np.full(100, 110.0)  # MIDI 45
    mask = np.ones(100, bool)
    assert octave_shift_toward(f0, mask, 69.0) == 2
    assert octave_shift_toward(f0, mask, 45.0 + 5.9) == 0
    assert octave_shift_toward(f0, mask, 45.0 + 6.1) == 1
    assert octave_shift_toward(f0 * 8, mask, 45.0) == -3
    # only note-on frames count
    f0b = f0.copy()
    f0b[:50] = 1760.0
    assert octave_shift_toward(f0b, np.arange(100) >= 50, 69.0) == 2


def test_quantile_match_maps_distributions():
    rng = np.random.default_rng(0)
    loud = rng.uniform(-60, -20, 5000)
    levels = np.linspace(0, 1, 101)
    target = np.quantile(rng.normal(-30, 5, 20000), levels)
    out = quantile_match(loud, np.ones_like(loud, bool), target, levels)
    assert np.allclose(np.quantile(out, levels[5:-5]), target[5:-5], atol=0.3)
    assert np.all(np.diff(out[np.argsort(loud)]) >= -1e-9)  # monotone
    # mapping onto its own quantiles is the identity (inside the range)
    own = np.quantile(loud, levels)
    assert np.allclose(quantile_match(loud, np.ones_like(loud, bool), own, levels), loud, atol=1e-6)
    # frames outside the mask do not shape the input distribution
    mask = np.arange(loud.size) < 2500
    shifted = loud.copy()
    shifted[~mask] = 0.0
    a = quantile_match(shifted, mask, target, levels)[mask]
    b = quantile_match(loud[mask], np.ones(2500, bool), target, levels)
    assert np.allclose(a, b)


def test_tuning_offset_and_autotune():
    rng = np.random.default_rng(1)
    notes = np.repeat(rng.integers(55, 75, 20), 25).astype(float)
    midi = notes + 0.2 + rng.normal(0, 0.02, notes.size)  # a melody tuned 20 cents sharp
    conf = np.ones_like(midi)
    offset = tuning_offset(midi, conf, np.ones_like(midi, bool))
    assert abs(offset - 0.2) <= 0.03
    tuned = autotune_midi(midi, offset, 1.0)
    assert np.allclose((tuned - offset) % 1.0, 0.0, atol=1e-9) or np.allclose(
        np.minimum((tuned - offset) % 1.0, 1 - (tuned - offset) % 1.0), 0.0, atol=1e-9)
    assert np.allclose(autotune_midi(midi, offset, 0.0), midi)
    half = autotune_midi(midi, offset, 0.5)
    assert np.allclose(half - midi, 0.5 * (tuned - midi))
    with pytest.raises(ValueError, match="amount"):
        autotune_midi(midi, offset, 1.5)


def _model(stats=None) -> DDSPModel:
    torch.manual_seed(0)
    return sawtooth_like(DDSPModel(reverb_s=0.01, decoder={"gru_units": 16}, stats=stats))


def _input(sr: int, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    f = 147.0 * 2 ** (0.2 * np.sin(2 * np.pi * 3 * t) / 12)  # D3 with vibrato
    phase = 2 * np.pi * np.cumsum(f) / sr
    env = np.minimum(1.0, np.minimum(t, seconds - t) / 0.05)
    return 0.3 * env * (np.sin(phase) + 0.4 * np.sin(2 * phase) + 0.2 * np.sin(3 * phase))


def test_transfer_keeps_f0_length_and_rate():
    sr = 22050
    x = _input(sr)
    stats = {"mean_pitch_midi": 50.0 + 14.0, "quantile_levels": list(np.linspace(0, 1, 11)),
             "loudness_quantiles_db": list(np.linspace(-40, -10, 11))}
    out, feats = transfer(_model(stats), x, sr, return_features=True)
    assert out.shape == (x.size,) and out.dtype == torch.float32 and torch.isfinite(out).all()
    assert feats["octave_shift"] == 1  # D3 (MIDI 50) toward MIDI 64: round(14 / 12) = 1
    f_in, c_in = pitch(torch.as_tensor(x), sr, 100.0)
    f_out, c_out = pitch(out.double(), sr, 100.0)
    mask = (c_in >= 0.85) & (c_out >= 0.5)
    assert int(mask.sum()) > 50
    err = (12 * torch.log2(f_out[mask] / (2 * f_in[mask]))).abs()
    assert float(err.mean()) < 0.5  # semitones: the output follows the input's f0, an octave up
    # manual shifts: explicit octave 0 plus -1 octave lands an octave below the input
    out2 = transfer(_model(stats), x, sr, octave_shift=0, pitch_shift_octaves=-1.0)
    f2, c2 = pitch(out2.double(), sr, 100.0)
    m2 = (c_in >= 0.85) & (c2 >= 0.5)
    assert float((12 * torch.log2(f2[m2] / (0.5 * f_in[m2]))).abs().mean()) < 0.5
    # loudness: note frames mapped into the training distribution, then the manual shift
    on = feats["mask"]
    assert on.mean() > 0.5
    assert feats["new_loudness_db"][on].min() >= -40.0 - 1e-9 and feats["new_loudness_db"][on].max() <= -10.0 + 1e-9
    _, feats3 = transfer(_model(stats), x, sr, loudness_shift_db=-12.0, return_features=True)
    assert np.allclose(feats3["new_loudness_db"], np.clip(feats["new_loudness_db"] - 12.0, -80.0, 0.0))


def test_transfer_without_stats_and_bad_inputs():
    model = _model()
    x = _input(16000, 0.3)
    out, feats = transfer(model, np.stack([x, x]), 16000, return_features=True)  # stereo is mixed
    assert out.shape == (x.size,) and feats["octave_shift"] == 0
    assert np.allclose(feats["new_loudness_db"], np.clip(feats["loudness_db"], -80, 0))
    with pytest.raises(TypeError, match="DDSPModel"):
        transfer(object(), x, 16000)
    with pytest.raises(ValueError, match="samples"):
        transfer(model, np.zeros(0), 16000)
    with pytest.raises(ValueError, match="pitch_shift_octaves"):
        transfer(model, x, 16000, pitch_shift_octaves=3)
    with pytest.raises(ValueError, match="octave_shift"):
        transfer(model, x, 16000, octave_shift="up")


def test_a_clip_shorter_than_the_note_smoothing_transfers_and_a_wild_octave_shift_is_refused():
    """50 ms (fewer frames than detect_notes' 40-frame window) used to fail with a broadcasting
    message; --octave-shift 100 wrote near-silence with exit 0."""
    from dspfx.ddsp.features import detect_notes

    model = _model()
    short = _input(16000, 0.05)
    out = transfer(model, short, 16000)
    assert out.shape == (short.size,) and torch.isfinite(out).all()
    mask, ratio = detect_notes(np.full(5, -20.0), np.full(5, 0.9))
    assert mask.shape == ratio.shape == (5,)
    with pytest.raises(ValueError, match="beyond \\+-4 octaves"):
        transfer(model, _input(16000, 0.3), 16000, octave_shift=100)
