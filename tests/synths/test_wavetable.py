"""Tests for the wavetable synth (dspfx/synths/wavetable.py, dspfx/functional/wavetable.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.signal
import torch

import dspfx
import dspfx.synths.wavetable  # noqa: F401  (registers the unit)
from dspfx.functional.wavetable import wavetable_mipmaps, wavetable_oscillator
from dspfx.synths.wavetable import Wavetable

SAW = torch.tensor([[0.0, 1.0, 0.0, 0.0]], dtype=torch.float64)  # the initial tables: sine, saw, square, triangle


def _aliased_db(y: np.ndarray, f0: float, sr: int) -> float:
    """Energy at bins away from the harmonics below Nyquist, relative to the fundamental (dB)."""
    spec = np.abs(np.fft.rfft(y * scipy.signal.windows.blackmanharris(len(y)))) ** 2
    freqs = np.fft.rfftfreq(len(y), 1 / sr)
    width = 8 * sr / len(y)
    harmonic = np.zeros(len(spec), bool)
    k = 1
    while k * f0 < sr / 2:
        harmonic |= np.abs(freqs - k * f0) <= width
        k += 1
    harmonic |= freqs <= width  # DC
    fundamental = spec[np.abs(freqs - f0) <= width].sum()
    return float(10 * np.log10(spec[~harmonic].sum() / fundamental))


def test_registered_and_shapes():
    unit = dspfx.make("wavetable", sample_rate=16000)
    assert isinstance(unit, Wavetable) and unit.is_synth and unit.category == "synth"
    assert unit.tables.shape == (4, 2048) and unit.weights.shape == (4,)
    assert unit(n_samples=100).shape == (1, 1, 100)
    assert unit(f0_hz=torch.full((2, 5), 220.0)).shape == (2, 1, 5 * 64)
    assert unit(weights=torch.ones(3, 7, 4)).shape == (3, 1, 7 * 64)


@pytest.mark.parametrize("f0", [4000.0, 4177.3, 1234.5])
def test_no_aliasing_at_high_f0(f0):
    sr = 48000
    unit = Wavetable(sr).double()
    y = unit(n_samples=sr, f0_hz=f0, weights=SAW, amplitude=1.0)[0, 0].detach().numpy()
    assert _aliased_db(y, f0, sr) < -60.0


def test_naive_reading_would_alias():
    # the measure can fail: the same saw read without mip-maps aliases far above -60 dB
    sr, f0 = 48000, 4177.3
    unit = Wavetable(sr).double()
    raw = unit.tables.detach()[:, None, :]
    y, _ = wavetable_oscillator(raw, torch.tensor([math.inf], dtype=torch.float64),
                                torch.full((1, 1, sr), f0, dtype=torch.float64), SAW.view(1, 1, 4), sr)
    assert _aliased_db(y[0, 0].numpy(), f0, sr) > -30.0


def test_harmonic_levels_of_the_saw():
    # f0 = 1000 Hz at 48 kHz lies in the octave (750, 1500] Hz of the level keeping 15 harmonics;
    # the next level keeps 7; crossfaded by x = log2(1000 / 750): harmonics 1..7 at the saw's
    # 2 / (pi k), 8..15 at (1 - x) times that
    sr, f0 = 48000, 1000.0
    y = Wavetable(sr).double()(n_samples=sr, f0_hz=f0, weights=SAW, amplitude=1.0)[0, 0].detach()
    spec = torch.fft.rfft(y).abs() * 2 / sr  # 1 Hz bins, integer harmonics: no leakage
    x = math.log2(f0 / 750.0)
    for k in range(1, 16):
        gain = 1.0 if k <= 7 else 1.0 - x
        assert abs(20 * math.log10(float(spec[int(k * f0)]) * math.pi * k / 2 / gain)) < 0.01
    for k in range(16, 24):  # dropped; what is left is linear interpolation's images (< -95 dB)
        assert float(spec[int(k * f0)]) < 1e-5


def test_mipmap_levels_keep_harmonics_below_nyquist():
    sr = 48000
    tables = torch.randn(2, 64, dtype=torch.float64)
    mipmaps, top = wavetable_mipmaps(tables, sr)
    nyquist_part = torch.fft.irfft(torch.fft.rfft(tables) * (torch.arange(33) == 32), n=64)
    assert torch.allclose(mipmaps[:, 0], tables - nyquist_part)  # level 0: all but the table's Nyquist bin
    spectrum = torch.fft.rfft(mipmaps).abs()
    for level in range(mipmaps.shape[1]):
        kept = torch.nonzero(spectrum[0, level] > 1e-9).flatten()
        if level:
            assert top[level] == 2 * top[level - 1]
        if len(kept):
            assert int(kept.max()) * float(top[level]) < sr / 2
    assert int(torch.nonzero(spectrum[0, -1] > 1e-9).max()) == 0  # last level: DC only


def test_fit_recovers_the_table_shape():
    sr, size, n = 16000, 256, 2000
    phi = torch.arange(size, dtype=torch.float64) / size
    target = (torch.cos(2 * math.pi * phi) + 0.5 * torch.sin(4 * math.pi * phi)
              + 0.25 * torch.cos(6 * math.pi * phi))
    ref = Wavetable(sr, n_tables=1, table_size=size, amplitude=0.5).set_tables(target[None])
    with torch.no_grad():
        y_target = ref(n_samples=n, f0_hz=220.0)
    unit = Wavetable(sr, n_tables=1, table_size=size, amplitude=0.5).set_tables(torch.zeros(1, size))
    unit.freeze()
    unit.weights.requires_grad_(False)
    opt = torch.optim.Adam([unit.tables], lr=0.02)
    for _ in range(200):
        opt.zero_grad()
        loss = (unit(n_samples=n, f0_hz=220.0) - y_target).pow(2).mean()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 1e-6
    # the shape within the band the render sees (harmonics of f0 below Nyquist) is recovered
    keep = int(sr / 2 / 220.0)
    learned = torch.fft.rfft(unit.tables.detach()[0].double())[: keep // 2] / size
    wanted = torch.fft.rfft(target)[: keep // 2] / size
    assert (learned - wanted).abs().max() < 1e-3


@pytest.mark.parametrize("block", [1, 7, 64, 4096])
def test_streaming_equals_offline(block):
    n = 5000 if block >= 64 else 1000
    unit = Wavetable(48000)
    weights = torch.tensor([[0.2, 0.5, -0.3, 0.1]])
    for controls in ({"f0_hz": 440.0}, {"f0_hz": 4177.3, "weights": weights, "amplitude": 0.8}):
        with torch.no_grad():
            offline = unit(n_samples=n, **controls)
            stream = dspfx.Stream(unit)
            sizes = [block] * (n // block) + ([n % block] if n % block else [])
            streamed = torch.cat([stream(n_samples=k, **controls) for k in sizes], dim=-1)
        assert (streamed - offline).abs().max() < 1e-5


def test_gradcheck_functional():
    sr = 1000
    tables = torch.randn(2, 16, dtype=torch.float64, requires_grad=True)
    f0 = torch.linspace(30.0, 60.0, 40, dtype=torch.float64).view(1, 1, 40).requires_grad_(True)
    weights = torch.randn(1, 40, 2, dtype=torch.float64, requires_grad=True)

    def render(t, f, w):
        mipmaps, top = wavetable_mipmaps(t, sr)
        return wavetable_oscillator(mipmaps, top, f, w, sr)[0]

    assert torch.autograd.gradcheck(render, (tables, f0, weights))


def test_gradients_reach_tables_weights_and_knobs():
    unit = Wavetable(16000, n_tables=2, table_size=64).double()
    unit(n_samples=200, f0_hz=300.0).pow(2).sum().backward()
    assert unit.tables.grad.abs().sum() > 0
    assert unit.weights.grad.abs().sum() > 0
    assert unit.raw_knobs["amplitude"].grad.abs() > 0
    unit.zero_grad()
    unit(n_samples=200).sum().backward()
    assert unit.raw_knobs["f0_hz"].grad.abs() > 0


def test_errors():
    unit = Wavetable(16000)
    with pytest.raises(ValueError, match="range"):
        unit(n_samples=100, f0_hz=-100.0)
    with pytest.raises(ValueError, match="NaN"):
        unit(n_samples=100, f0_hz=torch.tensor([[float("nan"), 100.0]]))
    with pytest.raises(ValueError, match="expected 4"):
        unit(n_samples=100, weights=torch.ones(1, 3, 3))
    with pytest.raises(ValueError, match="table_size"):
        Wavetable(16000, table_size=1001)
    with pytest.raises(ValueError, match="n_tables"):
        Wavetable(16000, n_tables=0)
    with pytest.raises(ValueError, match="tables"):
        unit.set_tables(torch.zeros(4, 100))
    with pytest.raises(ValueError, match=">= 0"):
        wavetable_oscillator(*wavetable_mipmaps(torch.zeros(1, 8), 1000), -torch.ones(1, 1, 5),
                             torch.ones(1, 1, 1), 1000)
    with pytest.raises(ValueError, match="n_samples"):
        unit()


def test_cached_mipmaps_follow_table_changes():
    unit = Wavetable(16000, n_tables=1, table_size=64)
    with torch.no_grad():
        a = unit(n_samples=200, f0_hz=300.0)
        unit.set_tables(-unit.tables.detach())
        b = unit(n_samples=200, f0_hz=300.0)
    assert torch.allclose(b, -a, atol=1e-6) and a.abs().max() > 0.1


def _centroids(y: np.ndarray, sr: int, frame: int) -> np.ndarray:
    """Spectral centroid (Hz) of consecutive Hann-windowed frames of ``y``."""
    frames = y[: len(y) // frame * frame].reshape(-1, frame) * np.hanning(frame)
    spec = np.abs(np.fft.rfft(frames, axis=-1)) ** 2
    freqs = np.fft.rfftfreq(frame, 1 / sr)
    return (spec * freqs).sum(-1) / spec.sum(-1)


def test_glide_has_no_timbre_step_at_octave_boundaries():
    # a slow exponential glide of the saw over two octave boundaries (375 and 750 Hz at 48 kHz):
    # the brightness (centroid / f0) must change smoothly; without the crossfade it jumps as the
    # band halves at each boundary
    sr, seconds, frame = 48000, 2.0, 1024
    n = int(sr * seconds)
    f0_frames = torch.tensor(np.geomspace(300.0, 1000.0, 201), dtype=torch.float64).view(1, -1)
    unit = Wavetable(sr).double()
    with torch.no_grad():
        y = unit(n_samples=n, f0_hz=f0_frames, weights=SAW, amplitude=1.0)[0, 0].numpy()
        f0 = dspfx.functional.upsample_control(f0_frames.unsqueeze(-1), n, mode="causal")[0, :, 0]
        mipmaps, top = unit.mipmaps()
        hard, _ = wavetable_oscillator(mipmaps, top, f0.view(1, 1, -1), SAW.view(1, 1, 4), sr, crossfade=False)
    f0_mid = f0.numpy()[: n // frame * frame].reshape(-1, frame).mean(-1)
    jumps = np.abs(np.diff(np.log(_centroids(y, sr, frame) / f0_mid)))
    jumps_hard = np.abs(np.diff(np.log(_centroids(hard[0, 0].numpy(), sr, frame) / f0_mid)))
    assert jumps_hard.max() > 0.1  # the step the crossfade removes (the test can fail)
    assert jumps.max() < 0.03, jumps.max()  # brightness changes by < 3 % per 21 ms frame
    # and aliasing stays down while crossfading: 4 kHz is 42 % into its octave
    y4 = unit(n_samples=sr, f0_hz=4000.0, weights=SAW, amplitude=1.0)[0, 0].detach().numpy()
    assert _aliased_db(y4, 4000.0, sr) < -60.0


def test_crossfade_is_continuous_in_f0_across_a_level_boundary():
    # the same phase read just below and just above a boundary gives (almost) the same sample
    sr, n = 48000, 64
    unit = Wavetable(sr).double()
    mipmaps, top = unit.mipmaps()
    boundary = float(top[6])  # 1500 Hz
    phase = torch.tensor([[[0.123]]], dtype=torch.float64)

    def render(f0: float, crossfade: bool) -> torch.Tensor:
        f = torch.full((1, 1, n), f0, dtype=torch.float64)
        return wavetable_oscillator(mipmaps, top, f, SAW.view(1, 1, 4), sr, phase, crossfade=crossfade)[0]

    above = boundary * (1 + 1e-9)
    assert (render(boundary, True) - render(above, True)).abs().max() < 1e-5
    assert (render(boundary, False) - render(above, False)).abs().max() > 0.05
