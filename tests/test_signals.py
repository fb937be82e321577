"""Tests for dspfx.signals: determinism, levels, tuning of the plucked string, sweep law."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch
from scipy.signal import hilbert

from dspfx import signals

SR = 48000


def _peak_frequency(x: np.ndarray, sr: int, near_hz: float, cents: float = 100.0) -> float:
    """Frequency of the largest spectral peak within +-cents of near_hz (Hann window, heavy
    zero padding, parabolic interpolation on the log magnitude)."""
    n_fft = 1 << 22
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size), n_fft))
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
    band = (freqs > near_hz * 2 ** (-cents / 1200)) & (freqs < near_hz * 2 ** (cents / 1200))
    i = int(np.argmax(np.where(band, spectrum, 0.0)))
    a, b, c = np.log(spectrum[i - 1 : i + 2])
    return (i + 0.5 * (a - c) / (a - 2 * b + c)) * sr / n_fft


@pytest.fixture(scope="module")
def di() -> torch.Tensor:
    return signals.guitar_di(SR, 4.0, seed=0)


def test_guitar_di_shape_level_and_dc(di):
    assert di.shape == (1, 1, 4 * SR) and di.dtype == torch.float32
    assert torch.isfinite(di).all()
    assert 0.3 <= di.abs().max().item() <= 0.9
    assert abs(di.double().mean().item()) < 1e-3
    # Not silent anywhere long: every 0.5 s block has signal (notes all the way through).
    blocks = di[0, 0].reshape(8, -1)
    assert (blocks.abs().amax(dim=1) > 0.02).all()


def test_guitar_di_is_deterministic_per_seed(di):
    assert torch.equal(signals.guitar_di(SR, 4.0, seed=0), di)
    other = signals.guitar_di(SR, 4.0, seed=1)
    assert other.shape == di.shape and not torch.allclose(other, di, atol=1e-3)


def test_guitar_di_is_fast_after_compile(di):
    start = time.perf_counter()
    signals.guitar_di(SR, 4.0, seed=3)
    assert time.perf_counter() - start < 1.0


def test_guitar_di_other_lengths_and_rates():
    x = signals.guitar_di(44100, 9.0, seed=2)  # the 4 s phrase repeats
    assert x.shape == (1, 1, 9 * 44100)
    assert x[0, 0, 8 * 44100 :].abs().max() > 0.02  # third phrase is playing
    short = signals.guitar_di(SR, 0.25)
    assert short.shape == (1, 1, SR // 4) and torch.isfinite(short).all()


@pytest.mark.parametrize("f0_hz", [82.407, 146.83, 987.77, 1318.51])
def test_pluck_is_in_tune(f0_hz):
    # At 1318.5 Hz the period is 36.4 samples: an integer-only delay, or one ignoring the loop
    # filter's phase delay, would be tens of cents off.
    x = signals.pluck(f0_hz, 1.0, SR, dtype=torch.float64)
    assert x.shape == (1, 1, SR) and x.dtype == torch.float64
    measured = _peak_frequency(x[0, 0].numpy(), SR, f0_hz)
    assert abs(1200 * math.log2(measured / f0_hz)) < 5.0


def test_pluck_decays_and_highs_die_first():
    x = signals.pluck(110.0, 2.0, SR, decay_s=1.0, seed=1, dtype=torch.float64)[0, 0].numpy()
    assert np.max(np.abs(x)) == pytest.approx(1.0)

    def band_level(seg, lo, hi):
        spec = np.abs(np.fft.rfft(seg * np.hanning(seg.size)))
        f = np.fft.rfftfreq(seg.size, 1 / SR)
        return np.sum(spec[(f >= lo) & (f < hi)] ** 2)

    early, late = x[2400:7200], x[SR : SR + 4800]
    low_drop = band_level(early, 80, 140) / band_level(late, 80, 140)
    high_drop = band_level(early, 2000, 8000) / band_level(late, 2000, 8000)
    # Fundamental: 60 dB per decay_s -> ~50 dB energy drop over 0.9 s (within a few dB).
    assert 10 * math.log10(low_drop) == pytest.approx(60 * 0.9, abs=6.0)
    assert high_drop > 100 * low_drop


def test_pluck_rejects_bad_pitch():
    with pytest.raises(ValueError, match="f0_hz"):
        signals.pluck(10000.0, 0.1, SR)


def test_white_noise_level_and_channels():
    x = signals.white_noise(1.0, SR, channels=3, seed=5, level_db=-20.0)
    assert x.shape == (1, 3, SR) and x.dtype == torch.float32
    level_db = 10 * torch.log10(x.double().pow(2).mean(dim=-1))
    assert torch.all((level_db + 20.0).abs() < 0.5)
    assert not torch.allclose(x[0, 0], x[0, 1])  # independent channels
    assert torch.equal(x, signals.white_noise(1.0, SR, channels=3, seed=5, level_db=-20.0))
    assert not torch.equal(x, signals.white_noise(1.0, SR, channels=3, seed=6, level_db=-20.0))


def test_sine_and_impulse():
    x = signals.sine(1000.0, 0.5, SR, amplitude=0.25, dtype=torch.float64)[0, 0].numpy()
    assert x.size == SR // 2
    np.testing.assert_allclose(x, 0.25 * np.sin(2 * np.pi * 1000.0 * np.arange(x.size) / SR), atol=1e-12)
    imp = signals.impulse(64, position=5)
    assert imp.shape == (1, 1, 64) and imp.sum() == 1.0 and imp[0, 0, 5] == 1.0
    with pytest.raises(ValueError, match="position"):
        signals.impulse(64, position=64)
    with pytest.raises(ValueError, match="freq_hz"):
        signals.sine(30000.0, 0.1, SR)


@pytest.mark.parametrize(("f_start", "f_end"), [(20.0, 20000.0), (8000.0, 100.0)])
def test_log_sweep_instantaneous_frequency(f_start, f_end):
    duration = 2.0
    x = signals.log_sweep(f_start, f_end, duration, SR, amplitude=0.5, dtype=torch.float64)[0, 0].numpy()
    assert x.size == 2 * SR and x[0] == 0.0
    assert np.max(np.abs(x)) == pytest.approx(0.5, abs=1e-3)
    phase = np.unwrap(np.angle(hilbert(x)))
    inst = np.diff(phase) * SR / (2 * np.pi)
    t = (np.arange(inst.size) + 0.5) / SR

    def expected(t_s):
        return f_start * (f_end / f_start) ** (t_s / duration)

    # Exactly at the start: the first phase step is 2 pi f_start / SR (to first order).
    assert math.asin(x[1] / 0.5) * SR / (2 * np.pi) == pytest.approx(f_start, rel=1e-3)
    # Near the start and end (clear of the Hilbert transform's edge effects) and in between.
    for t_s in (0.1, 0.5, 1.0, 1.5, 1.9):
        i = int(t_s * SR)
        got = np.median(inst[i - 200 : i + 200])
        assert got == pytest.approx(expected(t[i]), rel=0.02)
