"""Tests for dspfx.plot's signal plots: images written atomically with the expected size; input checks."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from matplotlib.image import imread

from dspfx import plot

SR = 16000


@pytest.fixture(scope="module")
def pair() -> tuple[torch.Tensor, np.ndarray]:
    rng = np.random.default_rng(0)
    t = np.arange(SR // 2) / SR
    target = (0.5 * np.sin(2 * np.pi * 440.0 * t) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)
    prediction = 0.9 * target
    return torch.from_numpy(target).reshape(1, 1, -1), prediction  # (1,1,n) tensor and (n,) array


def _expected_shape(panels: int, dpi: float = 100.0) -> tuple[int, int]:
    return (round(plot.PANEL_HEIGHT_IN * panels * dpi), round(plot.FIGURE_WIDTH_IN * dpi))


@pytest.mark.parametrize("with_loss", [False, True])
def test_report_writes_png_of_expected_size(tmp_path, pair, with_loss):
    target, prediction = pair
    history = list(np.geomspace(1.0, 1e-3, 50)) if with_loss else None
    path = tmp_path / "report.png"
    out = plot.report(path, target=target, prediction=prediction, sample_rate=SR,
                      loss_history=history, title="fit", dpi=50)
    assert out == path and path.stat().st_size > 1000
    image = imread(path)
    assert image.shape[:2] == _expected_shape(4 if with_loss else 3, dpi=50)
    assert image[..., :3].std() > 0.05  # something was drawn, not a blank canvas
    assert os.listdir(tmp_path) == ["report.png"]


def test_comparison_writes_png(tmp_path, pair):
    target, prediction = pair
    path = tmp_path / "cmp.png"
    plot.comparison(path, a=target[0], b=prediction, sample_rate=SR, labels=("dspfx", "pedalboard"), dpi=40)
    assert imread(path).shape[:2] == _expected_shape(4, dpi=40)
    assert os.listdir(tmp_path) == ["cmp.png"]


def test_mismatched_lengths_raise_and_write_nothing(tmp_path, pair):
    target, prediction = pair
    with pytest.raises(ValueError, match=r"target has 8000 samples and prediction has 7999"):
        plot.report(tmp_path / "r.png", target=target, prediction=prediction[:-1], sample_rate=SR)
    with pytest.raises(ValueError, match=r"a has 8000 samples and b has 100"):
        plot.comparison(tmp_path / "c.png", a=target, b=prediction[:100], sample_rate=SR)
    with pytest.raises(ValueError, match=r"target.*\(1, 1, 1, 8000\)"):
        plot.report(tmp_path / "r.png", target=target[None], prediction=prediction, sample_rate=SR)
    with pytest.raises(ValueError, match=r"r\.xyz"):
        plot.report(tmp_path / "r.xyz", target=target, prediction=prediction, sample_rate=SR)
    assert not list(tmp_path.iterdir())


def test_spectrogram_levels_and_axes():
    # A full-scale sine reads ~0 dBFS at its frequency; the axis is log frequency up to Nyquist.
    t = np.arange(SR) / SR
    fig = Figure()
    ax = fig.add_subplot()
    mesh = plot.spectrogram(ax, np.sin(2 * np.pi * 1000.0 * t), SR, title="sine")
    assert ax.get_yscale() == "log" and ax.get_ylim()[1] == SR / 2 and ax.get_title() == "sine"
    levels = mesh.get_array().reshape(1024, -1)  # (bins without DC, frames)
    peak_bin = np.argmax(levels[:, levels.shape[1] // 2]) + 1  # +1: DC was dropped
    assert peak_bin * SR / 2048 == pytest.approx(1000.0, abs=SR / 2048)
    assert levels.max() == pytest.approx(0.0, abs=0.1)


def test_loss_curve_and_frequency_response():
    fig = Figure()
    ax1, ax2 = fig.subplots(1, 2)
    lines = plot.loss_curve(ax1, {"train": [1.0, 0.5, float("nan"), 0.1], "valid": torch.tensor([2.0, 1.0])})
    assert len(lines) == 2 and ax1.get_yscale() == "log"
    np.testing.assert_array_equal(lines[0].get_ydata(), [1.0, 0.5, np.nan, 0.1])
    line = plot.frequency_response(ax2, [0.0, 100.0, 1000.0], [1.0, 2.0, 3.0], label="eq")
    assert ax2.get_xscale() == "log"
    np.testing.assert_array_equal(line.get_xdata(), [100.0, 1000.0])  # 0 Hz left out
    with pytest.raises(ValueError, match=r"\(3,\).*\(2,\)"):
        plot.frequency_response(ax2, [1.0, 2.0, 3.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="history"):
        plot.loss_curve(ax1, [])
