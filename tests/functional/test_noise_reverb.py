"""Band noise and noise-shaped impulse responses."""

import numpy as np
import pytest
import torch
from scipy.signal import butter, sosfiltfilt

from dspfx.functional.decay import rt60
from dspfx.functional.noise_reverb import band_noise, noise_band_edges, noise_impulse_response

F64 = torch.float64


def test_band_edges_and_bands_partition_white_noise():
    edges = noise_band_edges(12, 48000)
    assert edges[0] == 0.0 and edges[1] == 40.0 and edges[-1] == 24000.0
    assert np.allclose(np.diff(np.log(edges[1:])), np.log(600.0) / 11)
    bands = band_noise(6, 1000, 16000, seed=3)
    total = band_noise(1, 1000, 16000, seed=3)[0]
    torch.testing.assert_close(bands.sum(0), total, atol=1e-12, rtol=0)
    spec = torch.fft.rfft(bands, dim=-1).abs()
    freqs = torch.fft.rfftfreq(1000, 1 / 16000, dtype=F64)
    e = noise_band_edges(6, 16000)
    for k in range(6):  # each band holds only its own bins
        outside = (freqs < e[k]) | (freqs > e[k + 1])
        assert float(spec[k][outside].max()) < 1e-9
    torch.testing.assert_close(band_noise(6, 1000, 16000, seed=3), bands, atol=0, rtol=0)
    assert not torch.equal(band_noise(6, 1000, 16000, seed=4), bands)


def test_per_band_rt60_matches_the_decays():
    sr, nb = 16000, 12
    decays = torch.tensor(np.geomspace(1.5, 0.4, nb))
    edges = noise_band_edges(nb, sr)
    hs = [
        noise_impulse_response(band_noise(nb, int(1.5 * sr), sr, seed=s), decays, torch.zeros(nb, dtype=F64), sr).numpy()
        for s in range(4)
    ]
    for k in range(1, nb):
        lo, hi = edges[k], edges[k + 1]
        r = (hi / lo) ** 0.1  # the inner part of the band
        sos = butter(4, [lo * r, min(hi / r, 0.999 * sr / 2)], btype="bandpass", fs=sr, output="sos")
        # the energy averaged over four noise draws: the expected decay, not one draw's wiggles
        energy = np.mean([sosfiltfilt(sos, h) ** 2 for h in hs], axis=0)
        assert rt60(np.sqrt(energy), sr) == pytest.approx(float(decays[k]), rel=0.10), k


def test_unit_energy_and_gains():
    sr, nb = 16000, 4
    noise = band_noise(nb, 2 * sr, sr, seed=0)
    h = noise_impulse_response(noise, torch.ones(nb, dtype=F64), torch.zeros(nb, dtype=F64), sr)
    assert float(h.square().sum()) == pytest.approx(1.0, rel=0.05)
    gains = torch.tensor([-6.0, 0.0, 3.0, -60.0], dtype=F64)
    h2 = noise_impulse_response(noise, torch.ones(nb, dtype=F64), gains, sr)
    ref = sum(10 ** (float(g) / 20) * noise_impulse_response(noise[k : k + 1], torch.ones(1, dtype=F64), torch.zeros(1, dtype=F64), sr) for k, g in enumerate(gains))
    torch.testing.assert_close(h2, ref)


def test_gradcheck_decays_and_gains():
    noise = band_noise(3, 64, 8000, seed=1)
    decays = torch.tensor([[0.01, 0.02, 0.005], [0.03, 0.01, 0.02]], dtype=F64, requires_grad=True)
    gains = torch.tensor([-3.0, 0.0, 2.0], dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda d, g: noise_impulse_response(noise, d, g, 8000), (decays, gains))


def test_bad_inputs():
    with pytest.raises(ValueError, match="n_bands"):
        noise_band_edges(0, 16000)
    with pytest.raises(ValueError, match="min_hz"):
        noise_band_edges(4, 16000, min_hz=9000.0)
    with pytest.raises(ValueError, match="decays_s must be"):
        noise_impulse_response(band_noise(3, 10, 8000), torch.ones(2), torch.zeros(3), 8000)
