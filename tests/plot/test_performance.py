"""Tests for dspfx.plot.performance: the picture of a performance is written atomically at its
size, returns the render's controls as note_controls measures them, and refuses bad input
before any work."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.image import imread

from dspfx.ddsp.expression import note_controls
from dspfx.ddsp.midi import MidiNote
from dspfx.plot import FIGURE_WIDTH_IN
from dspfx.plot.performance import check_image_path, performance_report

SR = 16000


@pytest.fixture(scope="module")
def tune():
    """Three harmonic notes made in code, the second louder, the third with 0.3 st of vibrato."""
    notes = [MidiNote(0.1, 0.6, 69, 90), MidiNote(0.6, 1.1, 72, 90), MidiNote(1.3, 2.2, 67, 90)]
    t = np.arange(int(2.5 * SR)) / SR
    midi = np.full(t.size, 69.0)
    gain = np.zeros(t.size)
    for n, g in zip(notes, (0.1, 0.3, 0.2)):
        sel = (t >= n.start_s) & (t < n.end_s)
        midi[sel] = n.pitch
        gain[sel] = g
    sel = t >= 1.3
    midi[sel] += 0.3 * np.sin(2 * np.pi * 5.5 * t[sel])
    phase = 2 * np.pi * np.cumsum(440.0 * 2 ** ((midi - 69) / 12)) / SR
    gain = np.convolve(gain, np.ones(80) / 80, mode="same")
    audio = (gain * sum(0.5**k * np.sin((k + 1) * phase) for k in range(5))).astype(np.float32)
    return audio, notes


def test_the_picture_and_the_measured_controls(tmp_path, tune):
    audio, notes = tune
    played = {"volume": [-30.0, -20.0, -25.0], "vibrato": [0.0, 0.0, 0.3]}
    path, measured = performance_report(tmp_path / "perf.png", audio, SR, notes, played, dpi=40)
    assert path == tmp_path / "perf.png" and [p.name for p in tmp_path.iterdir()] == ["perf.png"]
    image = imread(path)
    assert image.shape[1] == round(FIGURE_WIDTH_IN * 40) and image.shape[0] > image.shape[1]
    assert np.array_equal(measured, note_controls(audio, SR, notes))
    # what it shows is the render: the louder note reads louder, the vibrato note has its vibrato
    assert measured[1, 0] > measured[0, 0] + 5.0
    assert measured[2, 3] == pytest.approx(0.3, abs=0.05) and measured[0, 3] < 0.05


def test_bad_input_is_refused_before_the_work(tmp_path, tune):
    audio, notes = tune
    with pytest.raises(ValueError, match="unknown image extension '.txt'"):
        performance_report(tmp_path / "perf.txt", audio, SR, notes)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        check_image_path(tmp_path / "no" / "perf.png")
    with pytest.raises(ValueError, match="unknown controls \\['timbre'\\]"):
        performance_report(tmp_path / "p.png", audio, SR, notes, {"timbre": [1.0, 2.0, 3.0]})
    with pytest.raises(ValueError, match="one value per note \\(3\\), got 2"):
        performance_report(tmp_path / "p.png", audio, SR, notes, {"vibrato": [0.1, 0.2]})
    with pytest.raises(ValueError, match="at least one note"):
        performance_report(tmp_path / "p.png", audio, SR, [])
    assert list(tmp_path.iterdir()) == []
