"""The delay unit: pedalboard twin, analytic echoes, gradients, streaming, files, fitting, errors."""

import math

import numpy as np
import pedalboard
import pytest
import scipy.signal
import torch

import dspfx
import dspfx.effects.delay  # noqa: F401  (registers the unit until dspfx.effects imports it)
from dspfx.effects.delay import Delay
from dspfx.signals import guitar_di, white_noise
from dspfx.fitting.metrics import esr

# (delay_seconds, feedback, mix): 20 settings, the knob edges included
SETTINGS = [
    (0.5, 0.0, 0.5),  # pedalboard's defaults
    (0.0, 0.5, 0.5),  # delay 0: bypass
    (0.0, 1.0, 1.0),
    (2.0, 0.5, 0.7),  # the longest delay (longer than the 1 s guitar: wet is silent there)
    (0.25, 0.0, 0.0),  # mix 0: dry
    (0.25, 0.6, 1.0),  # mix 1: echoes only
    (0.1, 1.0, 0.5),  # feedback at its maximum
    (0.003, 1.0, 1.0),
    (0.0123, 0.7, 0.3),
    (0.05, 0.95, 0.4),
    (1.0 / 48000, 0.5, 0.5),  # about one sample (float32 rounds 1/sr s down to 0 samples)
    (2.0 / 44100, 0.9, 0.6),
    (4.0 / 44100, 0.3, 0.8),
    (0.3 / 48000, 0.5, 0.4),  # under one sample: dry part only
    (0.0007, 0.99, 0.5),
    (0.333, 0.45, 0.25),
    (0.75, 0.8, 0.9),
    (0.02, 0.0, 1.0),
    (0.0451, 0.35, 0.55),
    (0.0002, 0.6, 0.15),
]


def _signals(sample_rate):
    noise = white_noise(0.5, sample_rate, channels=2, seed=3)[0]
    guitar = guitar_di(sample_rate=sample_rate, duration_s=1.0)[0]
    return [noise, noise[:1], guitar, torch.cat([guitar, 0.5 * guitar.roll(1000, -1)])]


@pytest.mark.parametrize("sample_rate", [44100, 48000])
@pytest.mark.parametrize("seconds, feedback, mix", SETTINGS)
def test_twin_matches_pedalboard(seconds, feedback, mix, sample_rate):
    plugin = pedalboard.Delay(delay_seconds=seconds, feedback=feedback, mix=mix)
    twin = dspfx.from_pedalboard(plugin, sample_rate=sample_rate)
    assert isinstance(twin, Delay)
    back = dspfx.to_pedalboard(twin)
    assert isinstance(back, pedalboard.Delay)
    assert back.delay_seconds == pytest.approx(seconds, rel=1e-7, abs=1e-12)
    assert (back.feedback, back.mix) == pytest.approx((feedback, mix), abs=1e-7)  # float32 in pedalboard
    for x in _signals(sample_rate):
        ref = torch.from_numpy(plugin(x.numpy(), sample_rate))
        with torch.no_grad():
            y = twin(x.unsqueeze(0))[0]
        assert float(esr(y.double(), ref.double())) <= 1e-6


@pytest.mark.parametrize("delay_samples, feedback, mix", [(48, 0.5, 0.5), (100, 0.9, 1.0), (7, 1.0, 0.3)])
def test_impulse_echoes_decay_by_feedback(delay_samples, feedback, mix):
    sr = 48000
    unit = Delay(sample_rate=sr, delay_ms=delay_samples * 1000.0 / sr + 1e-6, feedback=feedback, mix=mix).double()
    assert unit.delay_samples() == delay_samples
    n = 8 * delay_samples + 5
    x = torch.zeros(1, 1, n, dtype=torch.float64)
    x[..., 0] = 1.0
    y = unit(x)[0, 0].detach()
    hits = torch.arange(delay_samples, n, delay_samples)
    k = torch.arange(1, len(hits) + 1, dtype=torch.float64)
    torch.testing.assert_close(y[hits], mix * feedback ** (k - 1), rtol=1e-14, atol=0.0)
    assert y[0] == 1 - mix
    rest = torch.ones(n, dtype=torch.bool)
    rest[hits] = False
    rest[0] = False
    assert torch.all(y[rest] == 0)


def test_edges_render_exactly():
    x = white_noise(0.05, 48000, channels=2, seed=1)
    assert torch.equal(Delay(delay_ms=10.0, feedback=0.7, mix=0.0)(x), x)  # mix 0: dry
    assert torch.equal(Delay(delay_ms=0.0, feedback=1.0, mix=1.0)(x), x)  # delay 0: bypass
    unit = Delay(delay_ms=12.5, feedback=0.0, mix=1.0)  # mix 1, feedback 0: a pure delay
    assert unit.delay_samples() == 600
    wet = unit(x)
    assert torch.equal(wet[..., 600:], x[..., :-600])
    assert torch.all(wet[..., :600] == 0)
    # pedalboard's rounding: float32(0.01 s) * 48 kHz = 479.99998 -> 479 samples
    assert Delay(delay_ms=10.0).delay_samples() == 479


def test_time_varying_feedback_and_mix_follow_the_recursion():
    sr, d, n = 8000, 5, 200
    unit = Delay(sample_rate=sr, delay_ms=d * 1000.0 / sr + 1e-6).double()
    x = torch.randn(2, 1, n, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    g_frames = torch.tensor([[0.1, 0.9, 0.4], [1.0, 0.0, 0.7]], dtype=torch.float64)
    m_frames = torch.tensor([[0.0, 1.0], [0.5, 0.2]], dtype=torch.float64)
    y = unit(x, feedback=g_frames, mix=m_frames).detach().numpy()
    g = dspfx.functional.upsample_control(g_frames.unsqueeze(-1), n, mode="causal")[..., 0].numpy()
    m = dspfx.functional.upsample_control(m_frames.unsqueeze(-1), n, mode="causal")[..., 0].numpy()
    xs = x[:, 0].numpy()
    line = np.zeros((2, d + n))
    ref = np.zeros((2, n))
    for i in range(n):  # pedalboard's recursion, sample by sample
        echo = line[:, i]
        line[:, d + i] = xs[:, i] + g[:, i] * echo
        ref[:, i] = (1 - m[:, i]) * xs[:, i] + m[:, i] * echo
    np.testing.assert_allclose(y[:, 0], ref, rtol=1e-12, atol=1e-13)


def test_gradcheck_input_feedback_mix_float64():
    unit = Delay(sample_rate=1000, delay_ms=3.0, feedback=0.4, mix=0.6).double()  # inside the ranges
    assert unit.delay_samples() == 3
    x = torch.randn(2, 2, 20, generator=torch.Generator().manual_seed(1), dtype=torch.float64).requires_grad_(True)
    g = torch.tensor([[0.2, 0.8], [0.5, 0.6]], dtype=torch.float64, requires_grad=True)
    m = torch.tensor([0.3, 0.9], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, g, m: unit(x, feedback=g, mix=m), (x, g, m), eps=1e-6, atol=1e-7)

    names = ("feedback", "mix")
    raws = tuple(unit.raw_knobs[k].detach().clone().requires_grad_(True) for k in names)

    def through_knobs(*raw):
        controls = {k: unit.knob_specs[k].to_physical(r) for k, r in zip(names, raw)}
        return unit(x.detach(), **controls)

    assert torch.autograd.gradcheck(through_knobs, raws, eps=1e-6, atol=1e-7)


def test_knob_gradients_reach_feedback_and_mix_but_not_delay():
    unit = Delay(sample_rate=8000, delay_ms=2.0, feedback=0.5, mix=0.5)
    x = white_noise(0.05, 8000, seed=2)
    unit(x).square().sum().backward()
    assert unit.raw_knobs["feedback"].grad.abs() > 0
    assert unit.raw_knobs["mix"].grad.abs() > 0
    grad = unit.raw_knobs["delay_ms"].grad
    assert grad is None or grad == 0


@pytest.mark.parametrize("block", [1, 7, 64, 4096])
@pytest.mark.parametrize("delay_ms", [0.125, 2.0, 30.0])
def test_streaming_in_blocks_equals_offline(block, delay_ms):
    unit = Delay(sample_rate=8000, delay_ms=delay_ms, feedback=0.8, mix=0.6)
    x = white_noise(0.6, 8000, channels=2, seed=4)[..., :4500 if block > 1 else 700]
    with torch.no_grad():
        offline = unit(x)
        stream = dspfx.Stream(unit, batch=1, channels=2)
        blocks = [stream(x[..., i : i + block]) for i in range(0, x.shape[-1], block)]
    torch.testing.assert_close(torch.cat(blocks, dim=-1), offline, rtol=0.0, atol=1e-5)


def test_stream_follows_a_delay_change_between_blocks():
    unit = Delay(sample_rate=8000, delay_ms=2.0, feedback=0.5, mix=1.0)
    x = white_noise(0.1, 8000, seed=5)
    stream = dspfx.Stream(unit)
    with torch.no_grad():
        stream(x[..., :400])
        y = stream(x[..., 400:], delay_ms=1.0)  # 8 samples, then the last 16 kept become 8
    assert y.shape == x[..., 400:].shape and torch.isfinite(y).all()
    assert torch.all(y[..., 8:] != 0)


def test_spec_save_load_round_trip(tmp_path):
    unit = Delay(sample_rate=44100, delay_ms=123.4, feedback=0.65, mix=0.35)
    unit.freeze("delay_ms")
    spec = unit.spec()
    assert spec["unit"] == "delay" and spec["sample_rate"] == 44100
    assert spec["knobs"] == pytest.approx({"delay_ms": 123.4, "feedback": 0.65, "mix": 0.35})
    built = dspfx.build(spec)
    assert isinstance(built, Delay) and built.frozen() == ["delay_ms"]
    x = white_noise(0.3, 44100, seed=6)
    path = dspfx.save(unit, tmp_path / "delay.safetensors")
    loaded = dspfx.load(path)
    assert loaded.knobs() == pytest.approx(unit.knobs())
    with torch.no_grad():
        torch.testing.assert_close(built(x), unit(x), rtol=0.0, atol=0.0)
        torch.testing.assert_close(loaded(x), unit(x), rtol=0.0, atol=1e-7)


def test_fit_recovers_feedback_and_mix():
    sr = 8000
    x = white_noise(0.5, sr, seed=7)
    target_unit = Delay(sample_rate=sr, delay_ms=25.0, feedback=0.6, mix=0.35)
    with torch.no_grad():
        target = target_unit(x)
    unit = Delay(sample_rate=sr, delay_ms=25.0, feedback=0.2, mix=0.7).freeze("delay_ms")
    dspfx.fit(unit, x, target, steps=150, lr=0.1, loss="esr", align_latency=False, progress=False)
    k = unit.knobs()
    assert k["delay_ms"] == pytest.approx(25.0, rel=1e-6)  # frozen (read back through float32)
    assert unit.delay_samples() == 200
    assert k["feedback"] == pytest.approx(0.6, abs=1e-3)
    assert k["mix"] == pytest.approx(0.35, abs=1e-3)


def test_bad_input_errors():
    unit = Delay(delay_ms=10.0)
    with pytest.raises(ValueError, match=r"\(batch, channels, samples\)"):
        unit(torch.zeros(2, 100))
    with pytest.raises(ValueError, match="delay_ms must be one value per block"):
        unit(torch.zeros(1, 1, 100), delay_ms=torch.tensor([[10.0, 20.0]]))
    with pytest.raises(ValueError, match="feedback = 1.5 is out of range"):
        Delay(feedback=1.5)
    with pytest.raises(ValueError, match="delay_ms = 2500 ms is out of range"):
        dspfx.from_pedalboard(pedalboard.Delay(delay_seconds=2.5), sample_rate=48000)
    with pytest.raises(ValueError, match="mix spans"):
        unit(torch.zeros(1, 1, 100), mix=torch.tensor([[0.5, 1.2]]))
    with pytest.raises(TypeError, match="needs input audio"):
        unit()


# ------------------------------------------------------------------ fractional delay, damping


def test_linear_mode_whole_samples_equals_the_default_mode():
    x = white_noise(0.1, 8000, channels=2, seed=10).double()
    exact = Delay(sample_rate=8000, delay_ms=2.0, feedback=0.7, mix=0.4).double()
    linear = Delay(sample_rate=8000, interpolation="linear", delay_ms=2.0, feedback=0.7, mix=0.4).double()
    assert exact.delay_samples() == 16
    with torch.no_grad():
        torch.testing.assert_close(linear(x), exact(x), rtol=0, atol=1e-12)


@pytest.mark.parametrize("delay_samples", [10.25, 33.6, 1.5])
def test_linear_mode_fractional_click(delay_samples):
    sr = 8000
    unit = Delay(sample_rate=sr, interpolation="linear", delay_ms=delay_samples * 1000.0 / sr, mix=1.0).double()
    x = torch.zeros(1, 1, 80, dtype=torch.float64)
    x[..., 4] = 1.0
    y = unit(x)[0, 0].detach()
    t = torch.arange(80, dtype=torch.float64)
    assert abs(float((t * y).sum() / y.sum()) - 4 - delay_samples) < 0.01


def test_damping_darkens_each_repeat():
    sr, d = 8000, 40
    unit = Delay(sample_rate=sr, damping=True, delay_ms=5.0 + 1e-6, feedback=0.9, mix=1.0, damping_hz=500.0).double()
    assert unit.delay_samples() == d
    x = torch.zeros(1, 1, 4 * d, dtype=torch.float64)
    x[..., 0] = 1.0
    y = unit(x)[0, 0].detach()
    p = math.exp(-2 * math.pi * 500.0 / sr)
    j = torch.arange(d, dtype=torch.float64)
    assert float(y[d]) == pytest.approx(1.0) and float(y[d + 1 : 2 * d].abs().max()) == 0.0
    torch.testing.assert_close(y[2 * d : 3 * d], 0.9 * (1 - p) * p**j, rtol=1e-12, atol=1e-15)
    # the undamped twin keeps the pedalboard render
    plain = Delay(sample_rate=sr, delay_ms=5.0 + 1e-6, feedback=0.9, mix=1.0).double()
    assert float(plain(x)[0, 0, 2 * d].detach()) == pytest.approx(0.9)


def test_linear_mode_gradcheck_delay_feedback_mix_damping():
    unit = Delay(sample_rate=1000, interpolation="linear", damping=True, damping_hz=200.0).double()
    x = torch.randn(1, 2, 30, generator=torch.Generator().manual_seed(11), dtype=torch.float64)
    delay = torch.tensor([[3.3, 7.45, 5.1]], dtype=torch.float64, requires_grad=True)  # ms, time-varying
    g = torch.tensor([[0.3, 0.7]], dtype=torch.float64, requires_grad=True)
    m = torch.tensor([0.6], dtype=torch.float64, requires_grad=True)
    damp = torch.tensor([[150.0, 320.0]], dtype=torch.float64, requires_grad=True)

    def f(delay, g, m, damp):
        return unit(x, delay_ms=delay, feedback=g, mix=m, damping_hz=damp)

    assert torch.autograd.gradcheck(f, (delay, g, m, damp), eps=1e-6, atol=1e-7)
    unit.set(delay_ms=4.37)
    unit(x).square().sum().backward()
    assert unit.raw_knobs["delay_ms"].grad.abs() > 0


@pytest.mark.parametrize("block", [1, 7, 64, 4096])
def test_linear_damped_streaming_equals_offline(block):
    unit = Delay(sample_rate=8000, interpolation="linear", damping=True, delay_ms=3.33, feedback=0.8, mix=0.6)
    x = white_noise(0.6, 8000, channels=2, seed=12)[..., : 4500 if block > 1 else 500]
    with torch.no_grad():
        offline = unit(x)
        stream = dspfx.Stream(unit, batch=1, channels=2)
        blocks = [stream(x[..., i : i + block]) for i in range(0, x.shape[-1], block)]
    torch.testing.assert_close(torch.cat(blocks, dim=-1), offline, rtol=0.0, atol=1e-5)


def test_fit_recovers_a_fractional_delay_time_and_feedback():
    sr = 8000
    w = np.random.default_rng(5).standard_normal(int(0.5 * sr))
    b, a = scipy.signal.butter(1, 30 / (sr / 2))  # one-pole low-passed noise: one valley in the delay
    x = scipy.signal.lfilter(b, a, w)
    x = torch.from_numpy((0.5 * x / np.abs(x).max()).astype(np.float32)).view(1, 1, -1)
    hidden = dict(delay_ms=27.5, feedback=0.5, mix=0.4, damping_hz=800.0)
    with torch.no_grad():
        target = Delay(sample_rate=sr, interpolation="linear", damping=True, **hidden)(x)
    # damping_hz is frozen at its value: a 30 Hz input hardly shows an 800 Hz damping
    unit = Delay(sample_rate=sr, interpolation="linear", damping=True, delay_ms=20.0, feedback=0.0, damping_hz=800.0)
    unit.freeze("damping_hz")
    dspfx.fit(unit, x, target, steps=200, lr=0.05, loss="esr", align_latency=False, progress=False)
    k = unit.knobs()
    assert k["delay_ms"] == pytest.approx(27.5, rel=0.002)
    assert k["feedback"] == pytest.approx(0.5, abs=0.01)
    assert k["mix"] == pytest.approx(0.4, abs=0.01)


def test_modes_spec_and_errors():
    unit = Delay(sample_rate=44100, interpolation="linear", damping=True, damping_hz=2500.0, delay_ms=80.0)
    spec = unit.spec()
    assert spec["options"] == {"interpolation": "linear", "damping": True}
    assert spec["knobs"]["damping_hz"] == pytest.approx(2500.0)
    built = dspfx.build(spec)
    x = white_noise(0.1, 44100, seed=13)
    with torch.no_grad():
        torch.testing.assert_close(built(x), unit(x), rtol=0, atol=0)
    with pytest.raises(ValueError, match="has no pedalboard twin"):
        dspfx.to_pedalboard(unit)
    with pytest.raises(ValueError, match="interpolation must be 'none' or 'linear', got 'cubic'"):
        Delay(interpolation="cubic")
    with pytest.raises(TypeError, match="damping must be True or False"):
        Delay(damping="yes")
    with pytest.raises(TypeError, match="damping_hz' exists only with the option damping=True"):
        Delay(damping_hz=1000.0)
    with pytest.raises(ValueError, match="damping_hz = 5 Hz is out of range"):
        Delay(damping=True, damping_hz=5.0)
