"""chorus, flanger, vibrato: pedalboard twin (Chorus), clicks moved by known (fractional) delays,
the delay curve traced by the LFO, gradients, streaming, knob recovery, edges and errors."""

import math

import numpy as np
import pedalboard
import pytest
import scipy.signal
import torch

import dspfx
import dspfx.effects.modulation  # noqa: F401  (registers the units until dspfx.effects imports them)
from dspfx.effects.modulation import Chorus, Flanger, Vibrato
from dspfx.signals import guitar_di, log_sweep, white_noise
from dspfx.fitting.metrics import esr

# ------------------------------------------------------------------ the pedalboard twin

_EDGES = [
    dict(rate_hz=1.0, depth=0.25, centre_delay_ms=7.0, feedback=0.0, mix=0.5),  # defaults
    dict(rate_hz=0.0, depth=1.0, centre_delay_ms=1.0, feedback=-1.0, mix=1.0),
    dict(rate_hz=100.0, depth=1.0, centre_delay_ms=100.0, feedback=1.0, mix=1.0),
    dict(rate_hz=100.0, depth=0.0, centre_delay_ms=1.0, feedback=0.99, mix=0.0),
    dict(rate_hz=37.0, depth=0.6, centre_delay_ms=2.0, feedback=-0.9, mix=1.0),  # delay clipped at 1 ms
]


def _settings(seed, count=20):
    rng = np.random.default_rng(seed)
    out = list(_EDGES)
    while len(out) < count:
        out.append(
            dict(
                rate_hz=float(rng.choice([rng.uniform(0, 5), rng.uniform(0, 100)])),
                depth=float(rng.uniform(0, 1)),
                centre_delay_ms=float(np.exp(rng.uniform(0, np.log(100)))),
                feedback=float(rng.uniform(-1, 1)),
                mix=float(rng.uniform(0, 1)),
            )
        )
    return out


def _signal(kind, sample_rate, channels):
    n = int(0.25 * sample_rate)
    if kind == "noise":
        x = white_noise(0.25, sample_rate, channels=2, seed=3)[0]
    elif kind == "sweep":
        s = log_sweep(20.0, 20000.0, 0.25, sample_rate).reshape(-1)[:n]
        x = torch.stack([s, 0.7 * s.flip(-1)])
    else:
        g = guitar_di(sample_rate=sample_rate, duration_s=1.0).reshape(-1)[n // 2 : n // 2 + n]
        x = torch.stack([g, 0.5 * g.roll(1000, -1)])
    return x[:channels, :n].float().contiguous()


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("sample_rate", [44100, 48000])
@pytest.mark.parametrize("kind", ["noise", "sweep", "guitar"])
def test_chorus_twin_matches_pedalboard(kind, sample_rate, channels):
    x = _signal(kind, sample_rate, channels)
    worst = 0.0
    for s in _settings(seed=sample_rate + channels):
        plugin = pedalboard.Chorus(**s)
        twin = dspfx.from_pedalboard(plugin, sample_rate=sample_rate)
        assert isinstance(twin, Chorus)
        ref = torch.from_numpy(plugin(x.numpy(), sample_rate))
        with torch.no_grad():
            y = twin(x.unsqueeze(0))[0]
        if float(ref.square().sum()) == 0.0:
            assert float(y.abs().max()) == 0.0
            continue
        worst = max(worst, float(esr(y.double(), ref.double())))
    assert worst <= 1e-5


def test_chorus_pedalboard_round_trip_and_ranges():
    s = dict(rate_hz=2.5, depth=0.3, centre_delay_ms=12.0, feedback=-0.4, mix=0.8)
    twin = dspfx.from_pedalboard(pedalboard.Chorus(**s), sample_rate=44100)
    back = dspfx.to_pedalboard(twin)
    assert isinstance(back, pedalboard.Chorus)
    for k, v in s.items():
        assert getattr(back, k) == pytest.approx(v, rel=1e-6)
    # pedalboard accepts a depth above 1; the twin's knob range is JUCE's 0 .. 1
    with pytest.raises(ValueError, match="depth = 1.5 is out of range"):
        dspfx.from_pedalboard(pedalboard.Chorus(depth=1.5), sample_rate=48000)
    with pytest.raises(ValueError, match="rate_hz = 101 Hz is out of range"):
        Chorus(rate_hz=101.0)


# ------------------------------------------------------------------ known delays move a click


def _units(sr):
    return [
        Chorus(sample_rate=sr, depth=0.0, centre_delay_ms=2.5, feedback=0.0, mix=1.0),
        Flanger(sample_rate=sr, depth=0.0, centre_delay_ms=2.5, feedback=0.0, mix=1.0),
        Vibrato(sample_rate=sr, depth_ms=0.0, centre_delay_ms=2.5),
    ]


@pytest.mark.parametrize("index", [0, 1, 2])
def test_static_delay_moves_a_click_to_the_right_sample(index):
    sr = 8000
    unit = _units(sr)[index].double()
    x = torch.zeros(1, 1, 100, dtype=torch.float64)
    x[..., 5] = 1.0
    y = unit(x)[0, 0].detach()
    # 2.5 ms at 8 kHz = 20 samples
    assert int(y.abs().argmax()) == 25
    assert float(y[25]) == pytest.approx(1.0, abs=1e-12)
    assert float(y.abs().sum()) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("index", [0, 1, 2])
@pytest.mark.parametrize("delay_samples", [10.25, 3.7, 17.5])
def test_fractional_delay_control_moves_the_centre_of_mass(index, delay_samples):
    sr = 8000
    unit = _units(sr)[index].double()
    x = torch.zeros(1, 1, 60, dtype=torch.float64)
    x[..., 3] = 1.0
    y = unit(x, delay_ms=torch.tensor(delay_samples * 1000.0 / sr, dtype=torch.float64))[0, 0].detach()
    t = torch.arange(60, dtype=torch.float64)
    assert abs(float((t * y).sum() / y.sum()) - 3 - delay_samples) < 0.01
    k = math.floor(delay_samples)
    assert float(y[3 + k]) == pytest.approx(1 - (delay_samples - k), abs=1e-9)


# ------------------------------------------------------------------ the LFO traces the delay curve


def _trace(unit, n, sr):
    """Delay per sample, recovered from the wet output for a ramp input: reading a straight line
    with linear interpolation gives y[t] = t - d[t] exactly."""
    ramp = torch.arange(n, dtype=torch.float64).view(1, 1, n)
    y = unit(ramp)[0, 0].detach()
    return (torch.arange(n, dtype=torch.float64) - y).numpy()


def test_chorus_lfo_traces_the_pedalboard_delay_curve():
    sr, n = 8000, 8000
    unit = Chorus(sample_rate=sr, rate_hz=3.0, depth=0.4, centre_delay_ms=9.0, mix=1.0).double()
    d = _trace(unit, n, sr)
    two_pi = np.float32(2 * np.pi)
    inc = np.float32(np.float32(two_pi * np.float32(3.0)) / np.float32(sr))
    phase, p = np.zeros(n), np.float32(0)
    for t in range(n):  # JUCE's float32 phase
        phase[t] = p
        p = np.float32(p + inc)
        while p >= two_pi:
            p = np.float32(p - two_pi)
    expected = np.maximum(1.0, 10 * 0.4 * -np.sin(phase) + 9.0) * sr / 1000
    start = 200  # after the line has filled (the longest delay is 104 samples)
    np.testing.assert_allclose(d[start:], expected[start:], rtol=0, atol=1e-9)
    # one period of the recovered curve lasts sr / rate samples
    lo = np.argmin(d[start : start + 2667]) + start
    assert abs(d[lo + 2667] - d[lo]) < 0.01


@pytest.mark.parametrize("shape", ["sine", "triangle"])
def test_flanger_and_vibrato_lfo_trace_their_formulas(shape):
    sr, n = 8000, 4000
    t = np.arange(n)
    phase = np.remainder(2 * np.pi * 2.0 * t / sr, 2 * np.pi)
    wave = np.sin(phase) if shape == "sine" else 1 - 4 * np.abs(np.remainder(phase / (2 * np.pi) + 0.25, 1) - 0.5)
    flanger = Flanger(sample_rate=sr, shape=shape, rate_hz=2.0, depth=0.8, centre_delay_ms=5.0, feedback=0.0, mix=1.0)
    d = _trace(flanger.double(), n, sr)
    np.testing.assert_allclose(d[100:], (5.0 * (1 + 0.8 * wave) * sr / 1000)[100:], rtol=0, atol=1e-8)
    vibrato = Vibrato(sample_rate=sr, shape=shape, rate_hz=2.0, depth_ms=3.0, centre_delay_ms=4.0)
    d = _trace(vibrato.double(), n, sr)
    np.testing.assert_allclose(d[100:], (np.maximum(0, 4.0 + 3.0 * wave) * sr / 1000)[100:], rtol=0, atol=1e-8)


def test_delay_control_curve_is_traced():
    sr, n = 8000, 800
    unit = Vibrato(sample_rate=sr).double()
    frames = torch.tensor([[1.0, 4.0, 2.0, 6.0]], dtype=torch.float64)
    d = _trace_with(unit, n, frames)
    expected = dspfx.functional.upsample_control(frames.unsqueeze(-1), n, mode="causal")[0, :, 0].numpy() * sr / 1000
    np.testing.assert_allclose(d[60:], expected[60:], rtol=0, atol=1e-9)


def _trace_with(unit, n, frames):
    ramp = torch.arange(n, dtype=torch.float64).view(1, 1, n)
    return (torch.arange(n, dtype=torch.float64) - unit(ramp, delay_ms=frames)[0, 0].detach()).numpy()


# ------------------------------------------------------------------ gradients


def _gradcheck_unit(unit, names, frames_seed):
    x = torch.randn(2, 2, 48, generator=torch.Generator().manual_seed(frames_seed), dtype=torch.float64)
    x.requires_grad_(True)
    g = torch.Generator().manual_seed(frames_seed + 1)
    controls = []
    for k in names:
        knob = unit.knob_specs[k]
        lo, hi = knob.minimum, knob.maximum
        span = hi - lo
        c = lo + span * (0.3 + 0.4 * torch.rand(2, 3, generator=g, dtype=torch.float64))
        controls.append(c.requires_grad_(True))

    def f(x, *cs):
        return unit(x, **dict(zip(names, cs)))

    assert torch.autograd.gradcheck(f, (x, *controls), eps=1e-6, atol=1e-6)


def test_gradcheck_chorus_all_knobs_time_varying():
    unit = Chorus(sample_rate=2000, float32_phase=False).double()
    # rate 30 .. 70 Hz, depth 0.3 .. 0.7, centre 30 .. 70 ms at 2 kHz: delays inside the 48 samples
    _gradcheck_unit(unit, ["rate_hz", "depth", "feedback", "mix"], 0)
    unit.set(centre_delay_ms=5.0)
    x = torch.randn(1, 2, 48, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    c = torch.tensor([[4.1, 6.3, 5.2]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda c: unit(x, centre_delay_ms=c), (c,), eps=1e-6, atol=1e-6)


def test_gradcheck_chorus_float32_phase_knobs():
    # (settings whose delay curve avoids whole samples, where the read's slope jumps)
    unit = Chorus(sample_rate=2000, centre_delay_ms=6.13, rate_hz=17.3, depth=0.3, feedback=0.3, mix=0.6).double()
    x = torch.randn(1, 1, 48, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    names = ("depth", "centre_delay_ms", "feedback", "mix")  # rate_hz: straight-through phase
    raws = tuple(unit.raw_knobs[k].detach().clone().requires_grad_(True) for k in names)

    def through_knobs(*raw):
        return unit(x, **{k: unit.knob_specs[k].to_physical(r) for k, r in zip(names, raw)})

    assert torch.autograd.gradcheck(through_knobs, raws, eps=1e-6, atol=1e-6)


def test_gradcheck_flanger_and_vibrato():
    flanger = Flanger(sample_rate=4000).double()
    _gradcheck_unit(flanger, ["rate_hz", "depth", "centre_delay_ms", "feedback", "mix"], 5)
    vibrato = Vibrato(sample_rate=4000, shape="triangle").double()
    _gradcheck_unit(vibrato, ["rate_hz", "depth_ms", "centre_delay_ms"], 6)


def test_gradcheck_delay_control():
    unit = Flanger(sample_rate=4000, feedback=0.4, mix=0.7).double()
    x = torch.randn(1, 2, 40, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    frames = torch.tensor([[1.13, 2.71, 0.57, 3.33]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda d: unit(x, delay_ms=d), (frames,), eps=1e-6, atol=1e-6)


# ------------------------------------------------------------------ streaming


@pytest.mark.parametrize("block", [1, 7, 64, 4096])
@pytest.mark.parametrize(
    "make",
    [
        lambda: Chorus(sample_rate=8000, rate_hz=3.0, depth=0.5, centre_delay_ms=8.0, feedback=0.6, mix=0.5),
        lambda: Flanger(sample_rate=8000, rate_hz=2.0, depth=0.7, centre_delay_ms=3.0, feedback=-0.8, mix=0.5),
        lambda: Vibrato(sample_rate=8000, rate_hz=6.0, depth_ms=2.0, centre_delay_ms=3.0, shape="triangle"),
    ],
    ids=["chorus", "flanger", "vibrato"],
)
def test_streaming_in_blocks_equals_offline(make, block):
    unit = make()
    x = white_noise(0.6, 8000, channels=2, seed=4)[..., : 4500 if block > 1 else 600]
    with torch.no_grad():
        offline = unit(x)
        stream = dspfx.Stream(unit, batch=1, channels=2)
        blocks = [stream(x[..., i : i + block]) for i in range(0, x.shape[-1], block)]
    torch.testing.assert_close(torch.cat(blocks, dim=-1), offline, rtol=0.0, atol=1e-5)


# ------------------------------------------------------------------ fits


def _bass_noise(sr, seconds, seed):
    """One-pole low-passed noise: its autocorrelation exp(-a |lag|) has one peak, so the fit's
    loss has a single valley in the delay time."""
    w = np.random.default_rng(seed).standard_normal(int(seconds * sr))
    b, a = scipy.signal.butter(1, 150 / (sr / 2))
    x = scipy.signal.lfilter(b, a, w)
    return (0.5 * x / np.abs(x).max()).astype(np.float32)


def test_fit_recovers_hidden_chorus_knobs_from_pedalboard():
    sr = 16000
    x = _bass_noise(sr, 0.25, 1)
    hidden = dict(rate_hz=1.5, depth=0.2, centre_delay_ms=10.0, feedback=0.4, mix=0.7)
    target = torch.from_numpy(pedalboard.Chorus(**hidden)(x[None], sr))[None]
    unit = Chorus(sample_rate=sr)  # starts from the defaults: 1 Hz, 0.25, 7 ms, 0, 0.5
    dspfx.fit(unit, torch.from_numpy(x)[None, None], target, steps=200, lr=0.05, loss="esr",
              align_latency=False, progress=False)
    k = unit.knobs()
    assert k["centre_delay_ms"] == pytest.approx(10.0, rel=0.01)
    assert k["rate_hz"] == pytest.approx(1.5, rel=0.02)
    assert k["depth"] == pytest.approx(0.2, rel=0.05)
    assert k["feedback"] == pytest.approx(0.4, abs=0.01)
    assert k["mix"] == pytest.approx(0.7, abs=0.01)


def test_fit_recovers_a_flanger_delay_time_feedback_and_mix():
    sr = 16000
    x = torch.from_numpy(_bass_noise(sr, 0.25, 2))[None, None]
    with torch.no_grad():
        target = Flanger(sample_rate=sr, depth=0.0, centre_delay_ms=4.3, feedback=0.5, mix=0.5)(x)
    # from 2 ms and no feedback (started WITH feedback, the fit can settle at 2.12 ms, where the
    # second echo, 2 d + 1 samples, lands on 4.3 ms: a true local minimum of the flanger)
    unit = Flanger(sample_rate=sr, depth=0.0, feedback=0.0, mix=0.5).freeze("depth", "rate_hz")
    dspfx.fit(unit, x, target, steps=150, lr=0.05, loss="esr", align_latency=False, progress=False)
    k = unit.knobs()
    assert k["centre_delay_ms"] == pytest.approx(4.3, rel=0.01)
    assert k["feedback"] == pytest.approx(0.5, abs=0.02)
    assert k["mix"] == pytest.approx(0.5, abs=0.02)


def test_fit_recovers_a_vibrato_delay_time():
    sr = 16000
    x = torch.from_numpy(_bass_noise(sr, 0.25, 3))[None, None]
    with torch.no_grad():
        target = Vibrato(sample_rate=sr, depth_ms=0.0, centre_delay_ms=9.7)(x)
    unit = Vibrato(sample_rate=sr, depth_ms=0.0).freeze("depth_ms", "rate_hz")  # from 5 ms
    dspfx.fit(unit, x, target, steps=100, lr=0.05, loss="esr", align_latency=False, progress=False)
    assert unit.knobs()["centre_delay_ms"] == pytest.approx(9.7, rel=0.005)


# ------------------------------------------------------------------ edges, spec, errors


def test_every_knob_edge_renders():
    x = white_noise(0.05, 8000, channels=2, seed=1)
    for cls in (Chorus, Flanger, Vibrato):
        for edge in ("minimum", "maximum"):
            values = {k: getattr(knob, edge) for k, knob in cls._class_knobs.items()}
            with torch.no_grad():
                y = cls(sample_rate=8000, **values)(x)
            assert y.shape == x.shape and torch.isfinite(y).all()
    assert torch.equal(Chorus(mix=0.0, feedback=1.0)(x), x)  # mix 0: dry exactly
    assert torch.equal(Flanger(mix=0.0)(x), x)
    with torch.no_grad():  # vibrato at zero delay is the identity
        assert torch.equal(Vibrato(depth_ms=0.0, centre_delay_ms=0.0)(x), x)


def test_spec_build_round_trip():
    unit = Flanger(sample_rate=44100, shape="triangle", rate_hz=0.3, depth=0.7, feedback=-0.6)
    spec = unit.spec()
    assert spec["unit"] == "flanger" and spec["options"] == {"shape": "triangle"}
    built = dspfx.build(spec)
    x = white_noise(0.1, 44100, seed=2)
    with torch.no_grad():
        torch.testing.assert_close(built(x), unit(x), rtol=0, atol=0)
    assert dspfx.build(Chorus(float32_phase=False).spec()).float32_phase is False


def test_bad_input_errors():
    unit = Chorus()
    with pytest.raises(ValueError, match=r"\(batch, channels, samples\)"):
        unit(torch.zeros(2, 100))
    with pytest.raises(ValueError, match=r"delay_ms spans 5 .. 120 ms, outside the line's range 0 .. 110 ms"):
        unit(torch.zeros(1, 1, 100), delay_ms=torch.tensor([[5.0, 120.0]]))
    with pytest.raises(ValueError, match="feedback = 1.5 is out of range"):
        Flanger(feedback=1.5)
    with pytest.raises(ValueError, match="option shape must be one of sine, triangle; got 'square'"):
        Vibrato(shape="square")
    with pytest.raises(TypeError, match="float32_phase must be True or False"):
        Chorus(float32_phase=1)
    with pytest.raises(ValueError, match="NaN"):
        unit(torch.full((1, 1, 10), float("nan")))
    with pytest.raises(ValueError, match="mix spans"):
        unit(torch.zeros(1, 1, 100), mix=torch.tensor([[0.5, 1.2]]))
