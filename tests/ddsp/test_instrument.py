"""Tests of dspfx.ddsp.instrument: the bowed string made in code (pitch, dynamics, determinism),
used for exact, analytic checks of the DDSP pipeline."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from dspfx.ddsp.features import loudness_db, pitch
from dspfx.ddsp.instrument import (
    VIOLIN_RANGE_MIDI,
    Note,
    make_dataset,
    random_melody,
    render_melody,
)

SR = 16000
FR = 250.0
CONFIDENT = 0.85


def _features(y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = torch.from_numpy(np.asarray(y, dtype=np.float32))
    f0, conf = pitch(x, SR, FR)
    return f0.numpy(), conf.numpy(), loudness_db(x, SR, FR).numpy()


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
