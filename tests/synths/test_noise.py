"""Tests for the filtered_noise synth (dspfx/synths/noise.py)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal
import torch

import dspfx
import dspfx.synths.noise  # noqa: F401  (registers the unit)
from dspfx.synths.noise import FilteredNoise, hash_noise


def _step_magnitudes(n_bands: int = 65) -> torch.Tensor:
    mags = torch.full((n_bands,), 1.0, dtype=torch.float64)
    mags[21:45] = 0.1
    mags[45:] = 0.5
    return mags


def test_registered_and_shapes():
    unit = dspfx.make("filtered_noise", sample_rate=16000, seed=0)
    assert isinstance(unit, FilteredNoise) and unit.is_synth and unit.category == "synth"
    assert unit.hop == 64 and FilteredNoise(48000).hop == 192
    assert unit(n_samples=100).shape == (1, 1, 100)
    # frames x hop when no length is given, batch from the control
    assert unit(magnitudes=torch.ones(3, 10, 65)).shape == (3, 1, 640)


def test_hash_noise_is_uniform_in_minus_one_one():
    u = hash_noise(7, torch.tensor(0), 200_000, 2, torch.float64)
    assert u.shape == (2, 1, 200_000)
    assert float(u.min()) > -1.0 and float(u.max()) < 1.0
    assert abs(float(u.mean())) < 0.01
    assert abs(float(u.var()) - 1 / 3) < 0.01
    # batch items draw different sequences, nearly uncorrelated; so do neighbouring samples
    assert abs(float((u[0] * u[1]).mean())) < 0.01
    assert abs(float((u[0, 0, 1:] * u[0, 0, :-1]).mean())) < 0.01


def test_averaged_response_reaches_the_band_magnitudes():
    sr, n = 48000, 1 << 18
    mags = _step_magnitudes()
    unit = FilteredNoise(sr, seed=1).double()
    frames = mags.view(1, 1, -1).expand(1, 400, -1)  # many frames: the time-varying path
    y = unit(n_samples=n, magnitudes=frames)[0, 0].detach().numpy()
    f, pxx = scipy.signal.welch(y, fs=sr, nperseg=512)
    # uniform noise has power 1/3: one-sided PSD = 2/3 |H|^2 / fs
    measured_db = 10 * np.log10(pxx * sr / (2 / 3))
    band_hz = sr / 2 / 64
    band = np.rint(f / band_hz).astype(int)
    wanted_db = 20 * np.log10(mags.numpy()[band])
    edges_hz = np.array([0.0, 20.5 * band_hz, 44.5 * band_hz, sr / 2])
    away = np.min(np.abs(f[:, None] - edges_hz[None, :]), axis=1) > 4 * band_hz
    assert away.sum() > 150
    err = measured_db[away] - wanted_db[away]
    assert np.max(np.abs(err)) < 1.0, np.max(np.abs(err))
    assert abs(np.mean(err)) < 0.2


def test_seeded_renders_are_reproducible_and_seeds_differ():
    a = FilteredNoise(16000, seed=5)(n_samples=2000)
    b = FilteredNoise(16000, seed=5)(n_samples=2000)
    c = FilteredNoise(16000, seed=6)(n_samples=2000)
    assert torch.equal(a, b)
    assert (a - c).abs().max() > 1e-3
    # without a seed: torch's global RNG
    torch.manual_seed(0)
    d = FilteredNoise(16000)(n_samples=500)
    torch.manual_seed(0)
    e = FilteredNoise(16000)(n_samples=500)
    assert torch.equal(d, e)


@pytest.mark.parametrize("block", [1, 7, 64, 4096])
def test_streaming_equals_offline(block):
    n = 5000 if block >= 64 else 1000
    unit = FilteredNoise(48000, seed=3)
    unit.set_magnitudes(_step_magnitudes())
    mags = torch.linspace(0.0, 2.0, 65).view(1, 1, 65)  # constant control given per block
    for controls in ({}, {"magnitudes": mags}):
        with torch.no_grad():
            offline = unit(n_samples=n, **controls).expand(2, 1, n)
            stream = dspfx.Stream(unit, batch=2)
            sizes = [block] * (n // block) + ([n % block] if n % block else [])
            streamed = torch.cat([stream(n_samples=k, **controls) for k in sizes], dim=-1)
        assert streamed.shape == (2, 1, n)
        # batch item 0 equals the offline batch-1 render; item 1 draws its own noise
        assert (streamed[0] - offline[0]).abs().max() < 1e-5
        assert (streamed[1] - offline[1]).abs().max() > 1e-3


def test_gradcheck_magnitudes():
    unit = FilteredNoise(8000, n_bands=9, seed=2).double()
    mags = (torch.rand(1, 3, 9, dtype=torch.float64) + 0.1).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda m: unit(n_samples=40, magnitudes=m), (mags,))
    # the default learnable magnitudes get a gradient too
    unit(n_samples=40).pow(2).sum().backward()
    assert unit.raw_magnitudes.grad is not None and unit.raw_magnitudes.grad.abs().sum() > 0


def test_zero_magnitudes_are_silent():
    y = FilteredNoise(16000, seed=0)(n_samples=300, magnitudes=torch.zeros(1, 4, 65))
    assert float(y.abs().max()) == 0.0


def test_errors():
    unit = FilteredNoise(16000, seed=0)
    bad = torch.ones(1, 2, 65)
    bad[0, 1, 3] = -0.5
    with pytest.raises(ValueError, match=">= 0"):
        unit(n_samples=100, magnitudes=bad)
    nan = torch.ones(1, 2, 65)
    nan[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        unit(n_samples=100, magnitudes=nan)
    with pytest.raises(ValueError, match="65"):
        unit(n_samples=100, magnitudes=torch.ones(1, 2, 64))
    with pytest.raises(ValueError, match="n_bands"):
        unit.set_magnitudes(torch.ones(64))
    with pytest.raises(ValueError, match=">= 0"):
        unit.set_magnitudes(-torch.ones(65))
    with pytest.raises(ValueError, match="seed"):
        FilteredNoise(16000, seed=-1)
    with pytest.raises(ValueError, match="n_bands"):
        FilteredNoise(16000, n_bands=1)
    with pytest.raises(ValueError, match="n_samples"):
        unit()
    with pytest.raises(KeyError):
        unit(n_samples=10, magnitude=torch.ones(1, 1, 65))


def _lag_of_peak(y: np.ndarray, source: np.ndarray, max_lag: int) -> int:
    """The lag (samples y lags source by) where their cross-correlation peaks, within +-max_lag."""
    lags = np.arange(-max_lag, max_lag + 1)
    n = len(y)
    corr = [np.dot(y[max(0, l):n + min(0, l)], source[max(0, -l):n - max(0, l)]) for l in lags]
    return int(lags[int(np.argmax(np.abs(corr)))])


@pytest.mark.parametrize("n_bands", [65, 17])
def test_fir_delay_is_compensated_latency_zero(n_bands):
    sr, n = 16000, 4000
    unit = FilteredNoise(sr, n_bands=n_bands, seed=4).double()
    assert unit.latency_samples == 0 and unit.delay_compensation == unit.n_taps // 2
    source = unit.noise(torch.tensor(0), n + unit.n_taps, 1)[0, 0].numpy()  # the source, from sample 0
    # all-ones magnitudes: the impulse response is one tap at the centre, the output is the source
    flat = unit(n_samples=n, magnitudes=torch.ones(1, n_bands, dtype=torch.float64))[0, 0].detach().numpy()
    assert np.abs(flat - source[:n]).max() < 1e-12
    # a band (a bump around a quarter of Nyquist): its impulse-like response, the cross-correlation
    # with the source, peaks at lag latency_samples = 0 and is symmetric about it (linear phase)
    f = torch.linspace(0, 1, n_bands, dtype=torch.float64)
    band = torch.exp(-0.5 * ((f - 0.25) / 0.05) ** 2)
    y = unit(n_samples=n, magnitudes=band.view(1, 1, -1).expand(1, 10, -1))[0, 0].detach().numpy()
    assert _lag_of_peak(y, source[:n], unit.n_taps) == unit.latency_samples == 0
    lags = np.arange(1, 20)
    ccf = np.array([[np.dot(y[l:], source[: n - l]), np.dot(y[: n - l], source[l:n])] for l in lags])
    assert np.abs(ccf[:, 0] - ccf[:, 1]).max() < 0.05 * np.abs(np.dot(y, source[:n]))
    # the uncompensated filter (the same taps on the source as it comes) peaks n_taps // 2 later
    from dspfx.functional.fir import fir_filter, fir_from_magnitudes

    taps = fir_from_magnitudes(band.view(1, 1, -1), unit.n_taps)
    raw, _ = fir_filter(torch.tensor(source[:n]).view(1, 1, -1), taps, torch.zeros(1, 1, unit.n_taps - 1,
                                                                                       dtype=torch.float64))
    assert _lag_of_peak(raw[0, 0].numpy(), source[:n], unit.n_taps) == unit.n_taps // 2
