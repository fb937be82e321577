"""The svf unit: same response as the biquad for static settings, scipy agreement, gradients
for time-varying cutoff and q, streaming, a fit, bad inputs."""

import numpy as np
import pytest
import scipy.signal
import torch

import dspfx
import dspfx.effects.svf  # noqa: F401  (registers "svf")
from dspfx.effects.svf import SVF_MODES
from dspfx.signals import white_noise

BIQUAD_TWIN_MODES = list(SVF_MODES)  # every svf mode has a biquad mode of the same name


@pytest.mark.parametrize("mode", BIQUAD_TWIN_MODES)
def test_static_svf_has_the_biquads_response(mode):
    sr = 48000
    freqs = torch.logspace(1.0, np.log10(23900.0), 300, dtype=torch.float64)
    for fc, q, gain_db in [(80.0, 0.5, 9.0), (1000.0, 2.0, -6.0), (15000.0, 12.0, 18.0)]:
        svf = dspfx.make("svf", sample_rate=sr, mode=mode, cutoff_hz=fc, q=q, gain_db=gain_db).double()
        bq = dspfx.make("biquad", sample_rate=sr, mode=mode, cutoff_hz=fc, q=q, gain_db=gain_db).double()
        _, h_svf = svf.frequency_response(freqs)
        _, h_bq = bq.frequency_response(freqs)
        assert (h_svf - h_bq).abs().max() <= 0.01
        # and the rendered impulse responses agree (relative to the peak)
        x = torch.zeros(1, 1, 2048, dtype=torch.float64)
        x[..., 0] = 1.0
        with torch.no_grad():
            y_svf, y_bq = svf(x), bq(x)
        assert float((y_svf - y_bq).abs().max() / y_bq.abs().max()) <= 1e-6


@pytest.mark.parametrize("mode", ["lowpass", "highpass", "bandpass", "notch"])
def test_svf_matches_scipy_lfilter_of_the_equivalent_biquad(mode):
    sr = 44100
    unit = dspfx.make("svf", sample_rate=sr, mode=mode, cutoff_hz=2500.0, q=3.0).double()
    b, a = dspfx.make("biquad", sample_rate=sr, mode=mode, cutoff_hz=2500.0, q=3.0).double().coefficients()
    x = white_noise(0.1, sr, channels=2, seed=5, dtype=torch.float64)
    with torch.no_grad():
        y = unit(x)[0].numpy()
    ref = scipy.signal.lfilter(b.detach().numpy(), a.detach().numpy(), x[0].numpy(), axis=-1)
    assert np.abs(y - ref).max() <= 1e-6 * np.abs(ref).max()


def test_time_varying_gradcheck_cutoff_q_gain_float64():
    unit = dspfx.make("svf", mode="peak").double()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 1, 48, generator=g, dtype=torch.float64).requires_grad_(True)
    cutoff = torch.tensor([[300.0, 2000.0, 800.0], [5000.0, 100.0, 1000.0]], dtype=torch.float64, requires_grad=True)
    q = torch.tensor([[0.5, 3.0], [8.0, 0.9]], dtype=torch.float64, requires_grad=True)
    gain = torch.tensor([6.0, -9.0], dtype=torch.float64, requires_grad=True)

    def render(x, cutoff, q, gain):
        return unit(x, cutoff_hz=cutoff, q=q, gain_db=gain)

    assert torch.autograd.gradcheck(render, (x, cutoff, q, gain), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("block", [1, 7, 64, 4096])
def test_streaming_in_blocks_equals_offline(block):
    unit = dspfx.make("svf", mode="bandpass", cutoff_hz=700.0, q=6.0)
    x = white_noise(0.05, 48000, channels=2, seed=2)
    with torch.no_grad():
        offline = unit(x)
        stream = dspfx.Stream(unit, batch=1, channels=2)
        streamed = torch.cat([stream(x[..., i : i + block]) for i in range(0, x.shape[-1], block)], dim=-1)
    assert (streamed - offline).abs().max() <= 1e-5


def test_fast_sweep_stays_bounded_and_matches_static_segments():
    # a sweep over every sample: bounded output; a sweep that holds still equals the static filter
    unit = dspfx.make("svf", mode="lowpass", q=20.0)
    x = white_noise(0.1, 48000, seed=1, level_db=0.0)
    sweep = torch.logspace(np.log10(20.0), np.log10(20000.0), 400).view(1, -1)
    with torch.no_grad():
        y = unit(x, cutoff_hz=sweep)
        held = unit(x, cutoff_hz=torch.full((1, 5), 1234.0))
        static = unit(x, cutoff_hz=1234.0)
    assert torch.isfinite(y).all() and y.abs().max() < 100.0
    assert torch.allclose(held, static, atol=1e-6)


def test_fit_recovers_cutoff_and_q():
    sr = 48000
    x = white_noise(0.125, sr, seed=3, level_db=-6.0)
    truth = dspfx.make("svf", sample_rate=sr, mode="lowpass", cutoff_hz=2500.0, q=3.0)
    with torch.no_grad():
        target = truth(x)
    model = dspfx.make("svf", sample_rate=sr, mode="lowpass").freeze("gain_db")
    # align_latency off: a resonant lowpass's cross-correlation peak is not at lag 0
    result = dspfx.fit(model, x, target, steps=120, lr=0.1, loss="mrstft+esr", progress=False, align_latency=False)
    k = result.knobs
    assert k["cutoff_hz"] == pytest.approx(2500.0, rel=0.02)
    assert k["q"] == pytest.approx(3.0, rel=0.05)
    assert result.metrics["esr"] < 1e-4


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="svf mode must be one of"):
        dspfx.make("svf", mode="bandstop")
    with pytest.raises(ValueError):
        dspfx.make("svf", q=0.01)
    unit = dspfx.make("svf")
    with pytest.raises(ValueError):
        unit(torch.randn(2, 100))
    with pytest.raises(ValueError):
        unit(torch.randn(1, 1, 100), cutoff_hz=5.0)
    with pytest.raises(ValueError):
        unit(torch.full((1, 1, 10), float("nan")))
    with pytest.raises(TypeError):
        dspfx.to_pedalboard(unit)


def test_spec_and_file_round_trips_render_identically(tmp_path):
    unit = dspfx.make("svf", mode="highshelf", cutoff_hz=3000.0, q=0.9, gain_db=-5.0)
    x = white_noise(0.02, 48000, seed=5)
    with torch.no_grad():
        ref = unit(x)
        assert torch.allclose(dspfx.build(unit.spec())(x), ref, atol=1e-6)
        dspfx.save(unit, tmp_path / "svf.safetensors")
        loaded = dspfx.load(tmp_path / "svf.safetensors")
        assert loaded.mode == "highshelf"
        assert torch.allclose(loaded(x), ref, atol=1e-6)
