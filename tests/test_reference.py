"""The pedalboard link: from_pedalboard / to_pedalboard for boards, and compare()."""

import numpy as np
import pedalboard
import pytest
import torch

import dspfx
from dspfx.signals import guitar_di


def _board():
    return pedalboard.Pedalboard(
        [
            pedalboard.Gain(gain_db=3.0),
            pedalboard.Distortion(drive_db=18.0),
            pedalboard.LowShelfFilter(cutoff_frequency_hz=150.0, gain_db=4.0),
            pedalboard.PeakFilter(cutoff_frequency_hz=1000.0, gain_db=-6.0, q=2.0),
            pedalboard.PeakFilter(cutoff_frequency_hz=3000.0, gain_db=3.0, q=1.0),
            pedalboard.HighShelfFilter(cutoff_frequency_hz=5000.0, gain_db=-9.0),
        ]
    )


@pytest.mark.parametrize("sample_rate", [44100, 48000])
def test_board_twin_renders_like_pedalboard(sample_rate):
    board = _board()
    twin = dspfx.from_pedalboard(board, sample_rate=sample_rate)
    assert list(twin.children_units()) == ["gain", "distortion", "low_shelf_filter", "peak_filter", "peak_filter_2", "high_shelf_filter"]
    assert twin.knobs()["peak_filter_2.cutoff_hz"] == pytest.approx(3000.0, rel=1e-6)
    x = guitar_di(sample_rate=sample_rate, duration_s=1.0)[0]
    result = dspfx.compare(twin, board, x, sample_rate)
    assert result.esr <= 1e-6
    assert result.latency_samples == 0
    assert result.snr_db > 60


def test_to_pedalboard_round_trip_of_a_board():
    board = _board()
    back = dspfx.to_pedalboard(dspfx.from_pedalboard(board))
    assert isinstance(back, pedalboard.Pedalboard)
    assert [type(p) for p in back] == [type(p) for p in board]
    assert back[3].q == pytest.approx(2.0, rel=1e-5)
    x = np.random.default_rng(0).standard_normal((1, 4800)).astype(np.float32) * 0.3
    y, ref = back(x, 48000).astype(np.float64), board(x, 48000).astype(np.float64)
    assert np.sum((y - ref) ** 2) / np.sum(ref**2) < 1e-10  # knobs come back to float32 precision


def test_mix_becomes_parallel_and_back():
    mix = pedalboard.Mix([pedalboard.Gain(gain_db=-6.0), pedalboard.Distortion(drive_db=10.0)])
    twin = dspfx.from_pedalboard(mix)
    assert isinstance(twin, dspfx.Parallel)
    x = 0.2 * torch.randn(1, 4800)
    assert dspfx.compare(twin, mix, x, 48000).esr <= 1e-6
    assert isinstance(dspfx.to_pedalboard(twin), pedalboard.Mix)


def test_missing_twins_raise_errors_naming_the_plugin_or_unit():
    with pytest.raises(TypeError, match=r"no dspfx twin for pedalboard\.PitchShift yet; twins exist for: .*PeakFilter"):
        dspfx.from_pedalboard(pedalboard.PitchShift(semitones=2))
    chain = dspfx.Chain(a=dspfx.make("gain"), b=dspfx.make("biquad", mode="notch"))
    with pytest.raises(ValueError, match="mode 'notch' has no pedalboard twin"):
        dspfx.to_pedalboard(chain)
    with pytest.raises(TypeError, match="branch gains"):
        dspfx.to_pedalboard(dspfx.Parallel(a=dspfx.make("gain"), gains=True))
    with pytest.raises(ValueError, match="out of range"):
        dspfx.from_pedalboard(pedalboard.Gain(gain_db=70.0))
    with pytest.raises(TypeError, match="takes a pedalboard plugin"):
        dspfx.from_pedalboard("Gain")


def test_compare_accepts_any_pedalboard_plugin_as_reference_and_finds_latency():
    sr = 48000
    x = guitar_di(duration_s=0.5)[0, 0]  # (samples,)
    delay = pedalboard.Delay(delay_seconds=50 / sr, feedback=0.0, mix=1.0)
    result = dspfx.compare(dspfx.make("gain"), delay, x, sr)
    assert result.latency_samples == 50
    assert result.esr < 1e-6  # identical once the latency is removed
    unaligned = dspfx.compare(dspfx.make("gain"), delay, x, sr, align=False)
    assert unaligned.latency_samples == 0 and unaligned.esr > 0.1
    pitched = dspfx.compare(dspfx.make("gain"), pedalboard.PitchShift(semitones=3), x, sr)
    assert pitched.esr > 0.05  # a real difference is measured, not hidden


def test_compare_measures_a_known_difference_and_plots(tmp_path):
    x = 0.3 * torch.randn(2, 9600)
    half = dspfx.make("gain", gain_db=-6.0206)
    result = dspfx.compare(half, dspfx.make("gain"), x, 48000, plot=tmp_path / "cmp.png", align=False)
    assert result.esr == pytest.approx(0.25, rel=1e-3)  # (0.5 - 1)^2 / 1
    assert result.snr_db == pytest.approx(6.02, abs=0.01)
    assert result.lsd_db == pytest.approx(6.02, abs=0.05)
    assert (tmp_path / "cmp.png").stat().st_size > 10_000
    assert result.a_render.shape == (2, 9600)


def test_compare_rejects_bad_input():
    with pytest.raises(ValueError, match="sample-rate mismatch"):
        dspfx.compare(dspfx.make("gain"), pedalboard.Gain(), torch.randn(100), 44100)
    with pytest.raises(ValueError, match="NaN"):
        dspfx.compare(dspfx.make("gain"), pedalboard.Gain(), torch.tensor([0.0, float("nan")]), 48000)
    with pytest.raises(TypeError, match="must be a dspfx Unit"):
        dspfx.compare(dspfx.make("gain"), 3.0, torch.randn(100), 48000)
