"""The convolution unit: pedalboard twin, analytic responses, streaming, files, fitting, errors."""

import functools

import numpy as np
import pedalboard
import pytest
import scipy.signal
import soundfile as sf
import torch

import dspfx
import dspfx.effects.convolution  # noqa: F401  (registers the unit until dspfx.effects imports it)
from dspfx.effects.convolution import Convolution
from dspfx.signals import guitar_di, white_noise
from dspfx.fitting.metrics import esr


def _decaying_noise_ir(sample_rate, channels, seconds=0.25, seed=0):
    n = int(seconds * sample_rate)
    rng = np.random.default_rng(seed)
    decay = np.exp(-np.arange(n) * (6.9 / n))  # -60 dB over the response
    return (rng.standard_normal((channels, n)) * decay).astype(np.float32)


def _cabinet_ir(sample_rate, channels):
    """A short cabinet-like response (~5 ms): a few damped resonances, low-passed."""
    n = int(0.005 * sample_rate)
    t = np.arange(n) / sample_rate
    out = []
    for c in range(channels):
        h = sum(
            a * np.exp(-t / tau) * np.sin(2 * np.pi * f * t + c * 0.3)
            for a, f, tau in [(1.0, 110.0, 0.004), (0.6, 1800.0, 0.0012), (0.3, 3500.0, 0.0006)]
        )
        h[0] += 0.5
        out.append(h)
    return np.asarray(out, dtype=np.float32)


@functools.lru_cache(maxsize=None)
def _signal(kind, sample_rate, channels):
    if kind == "noise":
        return white_noise(0.3, sample_rate, channels=channels, seed=3)
    di = guitar_di(sample_rate, duration_s=0.3)
    return di.repeat(1, channels, 1) * torch.tensor([1.0, 0.7][:channels]).view(1, -1, 1)


@pytest.mark.parametrize("sample_rate", [44100, 48000])
@pytest.mark.parametrize("kind", ["noise", "guitar"])
@pytest.mark.parametrize("ir_kind", ["decay", "cabinet"])
def test_twin_matches_pedalboard(sample_rate, kind, ir_kind):
    make_ir = _decaying_noise_ir if ir_kind == "decay" else _cabinet_ir
    worst = 0.0
    for ir_channels in (1, 2):
        ir = make_ir(sample_rate, ir_channels)
        for mix in (0.0, 0.5, 1.0):
            plugin = pedalboard.Convolution(ir, mix=mix, sample_rate=sample_rate)
            twin = dspfx.from_pedalboard(plugin, sample_rate)
            assert isinstance(twin, Convolution) and twin.normalize
            assert twin.knobs()["mix"] == pytest.approx(mix)
            for channels in (1, 2):
                x = _signal(kind, sample_rate, channels)
                expected = torch.from_numpy(plugin(x[0].numpy(), sample_rate))
                with torch.no_grad():
                    got = twin(x)[0]
                worst = max(worst, float(esr(got, expected)))
    assert worst <= 1e-6


def test_to_pedalboard_renders_like_the_unit():
    ir = torch.from_numpy(_decaying_noise_ir(48000, 2, seconds=0.05))
    unit = Convolution(48000, impulse_response=ir, mix=0.3)
    plugin = unit.to_pedalboard()
    assert isinstance(plugin, pedalboard.Convolution)
    assert plugin.mix == pytest.approx(0.3)
    np.testing.assert_array_equal(plugin.impulse_response, ir.numpy())
    x = _signal("noise", 48000, 2)
    assert float(esr(unit(x)[0].detach(), torch.from_numpy(plugin(x[0].numpy(), 48000)))) <= 1e-6
    with pytest.raises(ValueError, match="normalize=True"):
        Convolution(48000, impulse_response=ir, normalize=False).to_pedalboard()


def test_quiet_response_is_not_rescaled_like_pedalboard():
    ir = np.zeros((1, 64), dtype=np.float32)
    ir[0, [0, 9]] = [5e-5, -3e-5]  # energy 3.4e-9 < 1e-8
    plugin = pedalboard.Convolution(ir, sample_rate=48000)
    twin = dspfx.from_pedalboard(plugin, 48000)
    x = _signal("noise", 48000, 1)
    expected = torch.from_numpy(plugin(x[0].numpy(), 48000))
    got = twin(x)[0].detach()
    assert float(esr(got, expected)) <= 1e-6
    # and it really is the raw response: 5e-5 * x[n] - 3e-5 * x[n - 9]
    raw = 5e-5 * x[0, 0].double()
    raw[9:] -= 3e-5 * x[0, 0, :-9].double()
    np.testing.assert_allclose(got[0].numpy(), raw.numpy(), rtol=0, atol=1e-10)  # peak ~3e-5


@pytest.mark.parametrize("delay", [0, 1, 17, 300])
def test_unit_impulse_passes_and_delayed_impulse_delays_exactly(delay):
    h = torch.zeros(301, dtype=torch.float64)
    h[delay] = 1.0
    unit = Convolution(48000, impulse_response=h, normalize=False).double()
    x = white_noise(0.05, 48000, channels=2, seed=1, dtype=torch.float64)
    y = unit(x).detach()
    expected = torch.zeros_like(x)
    expected[..., delay:] = x[..., : x.shape[-1] - delay]
    torch.testing.assert_close(y, expected, rtol=0, atol=1e-12)


def test_equals_numpy_convolve_truncated_and_mix_edges():
    h = torch.from_numpy(_cabinet_ir(48000, 2)).double()
    unit = Convolution(48000, impulse_response=h, normalize=False).double()
    x = white_noise(0.05, 48000, channels=2, seed=2, dtype=torch.float64)
    n = x.shape[-1]
    wet = np.stack([np.convolve(x[0, c].numpy(), h[c].numpy())[:n] for c in range(2)])
    np.testing.assert_allclose(unit(x)[0].detach().numpy(), wet, atol=1e-11)
    np.testing.assert_array_equal(unit(x, mix=0.0).detach().numpy(), x.numpy())  # mix 0 is exactly dry
    half = unit(x, mix=0.25)[0].detach().numpy()
    np.testing.assert_allclose(half, 0.75 * x[0].numpy() + 0.25 * wet, atol=1e-11)


@pytest.mark.parametrize("block", [1, 7, 64, 256, 4096])
def test_stream_equals_offline(block):
    ir = torch.from_numpy(_decaying_noise_ir(48000, 2, seconds=0.005))  # 240 taps
    unit = Convolution(48000, impulse_response=ir, mix=0.8)
    x = white_noise(600 / 48000, 48000, channels=2, seed=4)
    offline = unit(x).detach()
    stream = dspfx.Stream(unit, batch=1, channels=2)
    with torch.no_grad():
        blocks = [stream(x[..., i : i + block]) for i in range(0, x.shape[-1], block)]
    assert (torch.cat(blocks, -1) - offline).abs().max() <= 1e-5


STREAM_PLANS = {
    "1": [1] * 900,
    "7": [7] * 130,
    "64": [64] * 15,
    "256": [256] * 4,
    "4096": [4096],
    "changing": [1, 255, 3, 700, 64, 2, 1000, 31, 4096],
}


@pytest.mark.parametrize("plan", list(STREAM_PLANS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_partitioned_stream_of_a_long_response_equals_offline(plan, dtype):
    # 3000 taps = 12 partitions of 256 (the default): the stream runs through the delay line
    ir = torch.from_numpy(_decaying_noise_ir(48000, 2, seconds=0.0625)).double()
    unit = Convolution(48000, impulse_response=ir, mix=0.7).to(dtype)
    assert unit.partition_size == 256 and unit.latency_samples == 0
    blocks = STREAM_PLANS[plan]
    x = white_noise(sum(blocks) / 48000, 48000, channels=2, seed=8, dtype=dtype)
    with torch.no_grad():
        offline = unit(x)
        stream = dspfx.Stream(unit, batch=1, channels=2)
        parts, i = [], 0
        for b in blocks:
            parts.append(stream(x[..., i : i + b]))
            i += b
    streamed = torch.cat(parts, -1)
    h = unit.effective_impulse_response().detach().double().numpy()
    wet = scipy.signal.fftconvolve(x[0].double().numpy(), h, axes=-1)[:, : x.shape[-1]]
    expected = 0.3 * x[0].double().numpy() + 0.7 * wet
    tol = (1e-12 if dtype == torch.float64 else 1e-5) * np.abs(expected).max()
    assert float((streamed - offline).abs().max()) <= tol
    assert np.abs(streamed[0].double().numpy() - expected).max() <= tol
    if plan in ("1", "7", "64", "256"):
        assert "fdl" in stream.state  # short blocks went through the partitions


def test_stream_of_a_mono_response_on_stereo_and_a_short_response():
    for taps, partition_size in ((1000, 64), (40, 64)):  # longer / shorter than a partition
        h = torch.randn(taps, generator=torch.Generator().manual_seed(taps), dtype=torch.float64)
        unit = Convolution(48000, impulse_response=h, normalize=False, partition_size=partition_size).double()
        x = white_noise(2000 / 48000, 48000, channels=2, seed=9, dtype=torch.float64)
        stream = dspfx.Stream(unit, batch=1, channels=2)
        with torch.no_grad():
            streamed = torch.cat([stream(x[..., i : i + 50]) for i in range(0, 2000, 50)], -1)
        h = unit.impulse_response.detach()[0]  # as stored (the unit was made in float32)
        expected = scipy.signal.fftconvolve(x[0].numpy(), h.numpy()[None], axes=-1)[:, :2000]
        np.testing.assert_allclose(streamed[0].numpy(), expected, rtol=0, atol=1e-12 * np.abs(expected).max())


def test_streaming_follows_a_response_that_changes():
    # the partition spectra are cached while streaming: a changed response (an optimiser step)
    # applies from the next block on, to the whole input history, as offline
    unit = Convolution(48000, n_taps=700, init="noise", partition_size=64).double()
    x = white_noise(0.01, 48000, seed=10, dtype=torch.float64)
    stream = dspfx.Stream(unit)
    with torch.no_grad():
        stream(x[..., :100])
        unit.impulse_response.mul_(-2.0).add_(0.01)
        y = stream(x[..., 100:164])
    h = unit.impulse_response.detach()[0].numpy()
    expected = np.convolve(x[0, 0, :164].numpy(), h)[100:164]
    np.testing.assert_allclose(y[0, 0].numpy(), expected, rtol=0, atol=1e-12 * np.abs(expected).max())


def test_gradcheck_through_the_streamed_partitions():
    unit = Convolution(48000, impulse_response=torch.randn(2, 20), normalize=True, partition_size=8).double()
    x = torch.randn(1, 2, 30, dtype=torch.float64, requires_grad=True)
    h = torch.randn(2, 20, dtype=torch.float64, requires_grad=True)
    mix = torch.tensor([0.6], dtype=torch.float64, requires_grad=True)

    def render(x, mix, h):
        def blocks():
            stream = dspfx.Stream(unit, batch=1, channels=2)
            out = [stream(x[..., i : i + n], mix=mix) for i, n in ((0, 5), (5, 1), (6, 13), (19, 11))]
            assert "fdl" in stream.state
            return torch.cat(out, -1)

        return _with_response(unit, h, blocks)

    assert torch.autograd.gradcheck(render, (x, mix, h))


def _with_response(unit, h, fn):
    """Run ``fn`` with the unit's response parameter replaced by ``h`` (keeps the graph to h)."""
    saved = unit._parameters["impulse_response"]
    try:
        del unit._parameters["impulse_response"]
        unit.impulse_response = h
        return fn()
    finally:
        del unit.impulse_response
        unit._parameters["impulse_response"] = saved


def test_gradcheck_input_mix_and_response():
    unit = Convolution(48000, impulse_response=torch.randn(2, 6), normalize=True).double()
    x = torch.randn(1, 2, 16, dtype=torch.float64, requires_grad=True)
    h = torch.randn(2, 6, dtype=torch.float64, requires_grad=True)
    mix = torch.tensor([0.6], dtype=torch.float64, requires_grad=True)

    def render(x, mix, h):
        return torch.func.functional_call(unit, {"impulse_response": h}, (x,), {"mix": mix})

    assert torch.autograd.gradcheck(render, (x, mix, h))
    # the knob itself carries a gradient to its raw parameter, the IR parameter gets one too
    unit(x.detach()).square().sum().backward()
    assert unit.raw_knobs["mix"].grad is not None and unit.impulse_response.grad.abs().sum() > 0


def test_save_load_round_trip_keeps_the_response(tmp_path):
    unit = Convolution(44100, n_taps=200, ir_channels=2, init="noise", mix=0.4)
    with torch.no_grad():
        unit.impulse_response.mul_(torch.linspace(0.5, 2.0, 200))  # something not made by init
    path = dspfx.save(unit, tmp_path / "conv.safetensors")
    back = dspfx.load(path)
    assert isinstance(back, Convolution)
    assert back.spec() == unit.spec()
    assert back.spec()["options"]["n_taps"] == 200 and back.spec()["options"]["ir_channels"] == 2
    torch.testing.assert_close(back.impulse_response, unit.impulse_response, rtol=0, atol=0)
    x = white_noise(0.02, 44100, channels=2, seed=5)
    torch.testing.assert_close(back(x), unit(x), rtol=0, atol=0)
    # build(spec) alone makes a unit of the same shape (the response lives in the tensors)
    built = dspfx.build(unit.spec())
    assert tuple(built.impulse_response.shape) == (2, 200) and built.knobs()["mix"] == pytest.approx(0.4)


def test_loaded_from_file_matches_the_array_and_resamples_on_request(tmp_path):
    ir = _cabinet_ir(48000, 2)
    path = tmp_path / "cab.wav"
    sf.write(path, ir.T, 48000, subtype="FLOAT")
    from_file = Convolution(48000, impulse_response=str(path))
    np.testing.assert_array_equal(from_file.impulse_response.detach().numpy(), ir)
    assert from_file.normalize  # a loaded response is normalised by default (pedalboard's rule)
    plugin = pedalboard.Convolution(str(path))
    twin = dspfx.from_pedalboard(plugin, 48000)
    torch.testing.assert_close(twin.impulse_response, from_file.impulse_response)
    with pytest.raises(ValueError, match=r"48000 Hz.*44100 Hz"):
        Convolution(44100, impulse_response=path)
    resampled = Convolution(44100, impulse_response=path, resample=True)
    assert resampled.ir_channels == 2
    assert abs(resampled.n_taps - ir.shape[1] * 44100 / 48000) <= 1


def test_learned_inits():
    impulse = Convolution(48000, n_taps=16, init="impulse")
    assert not impulse.normalize and impulse.impulse_response.requires_grad
    x = white_noise(0.01, 48000, seed=6)
    torch.testing.assert_close(impulse(x), x)
    noise = Convolution(48000, n_taps=512, ir_channels=2)
    h = noise.impulse_response.detach()
    assert h.shape == (2, 512)
    torch.testing.assert_close(h.square().sum(-1), torch.ones(2))
    assert h[:, :64].abs().mean() > 10 * h[:, -64:].abs().mean()  # it decays


def test_fit_recovers_a_short_fir():
    torch.manual_seed(0)
    target_h = torch.randn(32, dtype=torch.float64) * torch.exp(-torch.arange(32.0, dtype=torch.float64) / 8)
    x = white_noise(2048 / 48000, 48000, seed=7, dtype=torch.float64)
    target = torch.from_numpy(np.convolve(x[0, 0].numpy(), target_h.numpy())[: x.shape[-1]]).view(1, 1, -1)
    unit = Convolution(48000, n_taps=32, init="noise").double().freeze()
    opt = torch.optim.Adam([unit.impulse_response], lr=0.02)
    for _ in range(400):
        opt.zero_grad()
        loss = esr(unit(x), target)
        loss.backward()
        opt.step()
    assert float(esr(unit(x).detach(), target)) < 1e-4
    assert float(esr(unit.impulse_response.detach()[0], target_h)) < 1e-4


def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        Convolution(48000, impulse_response=tmp_path / "missing.wav")
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"this is not audio at all")
    with pytest.raises(ValueError, match="cannot read"):
        Convolution(48000, impulse_response=junk)
    with pytest.raises(ValueError, match=r"\(taps,\) or \(ir_channels, taps\)"):
        Convolution(48000, impulse_response=torch.zeros(1, 2, 10))
    with pytest.raises(ValueError, match=r"\(taps,\) or \(ir_channels, taps\)"):
        Convolution(48000, impulse_response=np.zeros((1, 0), dtype=np.float32))
    bad = torch.randn(2, 10)
    bad[1, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        Convolution(48000, impulse_response=bad)
    with pytest.raises(TypeError, match="tensor, a numpy array or an audio file path"):
        Convolution(48000, impulse_response=[1.0, 0.0])
    with pytest.raises(ValueError, match="n_taps=5 differs"):
        Convolution(48000, impulse_response=torch.randn(10), n_taps=5)
    with pytest.raises(ValueError, match="init"):
        Convolution(48000, n_taps=8, init="zeros")
    stereo = Convolution(48000, impulse_response=torch.randn(2, 10))
    with pytest.raises(ValueError, match="3 input channels"):
        stereo(torch.randn(1, 3, 100))
    with pytest.raises(ValueError, match="mono or stereo"):
        Convolution(48000, impulse_response=torch.randn(3, 10)).to_pedalboard()
