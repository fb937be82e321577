"""The phaser unit: pedalboard twin, streaming, gradients, the cutoff control, knob recovery, errors."""

import math

import numpy as np
import pedalboard
import pytest
import torch

import dspfx
import dspfx.effects.phaser  # noqa: F401  (registers the unit until dspfx.effects imports it)
from dspfx.effects.phaser import Phaser
from dspfx.signals import guitar_di, log_sweep, white_noise
from dspfx.fitting.metrics import esr

KNOBS = ("rate_hz", "depth", "centre_frequency_hz", "feedback", "mix")


def _settings(n_random: int = 10, seed: int = 0) -> list[dict]:
    """pedalboard's defaults, ten settings on the edges of the ranges, then seeded random draws."""
    edges = [
        (1.0, 0.5, 1300.0, 0.0, 0.5),  # defaults
        (0.0, 0.0, 20.0, -1.0, 0.0),
        (100.0, 1.0, 20000.0, 1.0, 1.0),
        (0.0, 1.0, 20000.0, -1.0, 1.0),
        (100.0, 0.0, 20.0, 1.0, 0.3),
        (100.0, 1.0, 440.0, -1.0, 0.7),
        (3.0, 1.0, 20.0, 1.0, 1.0),
        (50.0, 0.0, 20000.0, 1.0, 0.6),
        (0.25, 1.0, 1000.0, 0.0, 1.0),
        (7.0, 0.8, 5000.0, 0.99, 0.0),
        (20.0, 0.6, 150.0, -0.95, 1.0),
    ]
    rng = np.random.default_rng(seed)
    out = [dict(zip(KNOBS, s)) for s in edges]
    for _ in range(n_random):
        out.append(
            dict(
                rate_hz=float(rng.uniform(0.0, 100.0) if rng.uniform() < 0.3 else rng.uniform(0.0, 8.0)),
                depth=float(rng.uniform()),
                centre_frequency_hz=float(np.exp(rng.uniform(math.log(20.0), math.log(20000.0)))),
                feedback=float(rng.uniform(-1.0, 1.0)),
                mix=float(rng.uniform()),
            )
        )
    return out


SETTINGS = _settings()


def _signal(kind: str, sample_rate: int) -> torch.Tensor:
    """(2, samples) float32, 0.25 s."""
    if kind == "noise":
        return white_noise(0.25, sample_rate, channels=2, seed=3)[0]
    if kind == "sweep":
        s = log_sweep(20.0, 0.45 * sample_rate, 0.25, sample_rate).reshape(1, -1)
        return torch.cat([s, 0.5 * s.roll(777, -1)])
    g = guitar_di(sample_rate=sample_rate, duration_s=0.25).reshape(1, -1)
    return torch.cat([g, 0.7 * g.roll(1000, -1)])


@pytest.mark.parametrize("sample_rate", [44100, 48000])
@pytest.mark.parametrize("kind", ["noise", "sweep", "guitar"])
def test_twin_matches_pedalboard(kind, sample_rate):
    assert len(SETTINGS) >= 20
    x = _signal(kind, sample_rate)
    worst = 0.0
    for setting in SETTINGS:
        plugin = pedalboard.Phaser(**setting)
        twin = dspfx.from_pedalboard(plugin, sample_rate=sample_rate)
        assert isinstance(twin, Phaser)
        back = dspfx.to_pedalboard(twin)
        assert isinstance(back, pedalboard.Phaser)
        for key in KNOBS:
            assert getattr(back, key) == pytest.approx(setting[key], rel=1e-6, abs=1e-7)
        for audio in (x, x[:1]):
            ref = torch.from_numpy(plugin(audio.numpy(), sample_rate)).double()
            with torch.no_grad():
                y = twin(audio.unsqueeze(0))[0].double()
            e = float(esr(y, ref))
            assert e <= 1e-6, (setting, audio.shape[0], e)
            worst = max(worst, e)
    print(f"phaser twin, {kind} at {sample_rate} Hz: worst ESR {worst:.2e}")


def test_float64_twin_away_from_unit_feedback():
    """float64 renders in float64 (not pedalboard's float32 rounding): still the twin for |feedback| < 1."""
    sr = 48000
    x = _signal("noise", sr)
    for setting in SETTINGS[8:]:
        if abs(setting["feedback"]) > 0.97:
            continue
        plugin = pedalboard.Phaser(**setting)
        twin = dspfx.from_pedalboard(plugin, sample_rate=sr).double()
        ref = torch.from_numpy(plugin(x.numpy(), sr)).double()
        with torch.no_grad():
            y = twin(x.double().unsqueeze(0))[0]
        assert float(esr(y, ref)) <= 1e-6, setting


@pytest.mark.parametrize("block", [1, 7, 64, 4096])
def test_streaming_equals_offline(block):
    sr = 48000
    unit = Phaser(sample_rate=sr, rate_hz=40.0, depth=0.9, centre_frequency_hz=900.0, feedback=0.7, mix=0.8)
    n = {1: 400, 7: 1500, 64: 4500, 4096: 4500}[block]
    x = white_noise(n / sr, sr, channels=2, seed=5)[:, :, :n]
    with torch.no_grad():
        y_all = unit(x)
        stream = dspfx.Stream(unit, batch=1, channels=2)
        y = torch.cat([stream(x[..., i : i + block]) for i in range(0, n, block)], dim=-1)
    assert y.shape == y_all.shape
    assert float((y - y_all).abs().max()) <= 1e-5


def test_gradcheck_unit_controls():
    """float64, exact LFO phase: gradients w.r.t. the input and every knob as a time-varying control."""
    sr = 8000
    unit = Phaser(sample_rate=sr, pedalboard_lfo=False).double()
    n = 32
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 2, n, dtype=torch.float64, generator=gen, requires_grad=True)
    frames = torch.linspace(0, 1, 5, dtype=torch.float64).view(1, 5)
    controls = {
        "rate_hz": (60.0 + 35.0 * frames).requires_grad_(),
        "depth": (0.3 + 0.5 * frames).requires_grad_(),
        "centre_frequency_hz": (400.0 + 300.0 * frames).requires_grad_(),
        "feedback": (0.6 - 1.0 * frames).requires_grad_(),
        "mix": (0.2 + 0.7 * frames).requires_grad_(),
    }
    names = list(controls)

    def fn(x, *values):
        return unit(x, **dict(zip(names, values)))

    assert torch.autograd.gradcheck(fn, (x, *controls.values()))
    cutoff = (300.0 + 1500.0 * frames).requires_grad_()
    assert torch.autograd.gradcheck(lambda x, c: unit(x, cutoff_hz=c, feedback=0.5), (x, cutoff))


def test_every_knob_gets_a_gradient_in_twin_mode():
    unit = Phaser(sample_rate=44100, rate_hz=2.0, depth=0.6, centre_frequency_hz=800.0, feedback=0.4, mix=0.6)
    x = white_noise(0.05, 44100, seed=1)
    unit(x).pow(2).sum().backward()
    for key in KNOBS:
        g = unit.raw_knobs[key].grad
        assert g is not None and torch.isfinite(g) and float(g) != 0.0, key


def test_cutoff_control_drives_the_allpasses():
    """A constant cutoff_hz equals the LFO at depth 0 centred there; a sweep moves the notches."""
    sr = 48000
    x = white_noise(0.05, sr, channels=2, seed=2)
    unit = Phaser(sample_rate=sr, rate_hz=5.0, depth=1.0, centre_frequency_hz=200.0, feedback=0.3, mix=0.5)
    still = Phaser(sample_rate=sr, depth=0.0, centre_frequency_hz=1500.0, feedback=0.3, mix=0.5)
    with torch.no_grad():
        torch.testing.assert_close(unit(x, cutoff_hz=1500.0), still(x), rtol=0, atol=1e-6)
        swept = unit(x, cutoff_hz=torch.logspace(2, 4, 20).view(1, -1))
        assert float((swept - still(x)).abs().max()) > 1e-2
    with pytest.raises(ValueError, match="cutoff_hz"):
        unit(x, cutoff_hz=30000.0)
    with pytest.raises(ValueError, match="cutoff_hz"):
        unit(x, cutoff_hz=torch.tensor([[100.0, -5.0]]))


def test_knob_recovery_against_pedalboard():
    """Fit depth, centre, feedback and mix to a pedalboard render (rate frozen at the default)."""
    sr = 44100
    x = white_noise(0.15, sr, seed=7)
    hidden = dict(rate_hz=1.0, depth=0.7, centre_frequency_hz=600.0, feedback=0.5, mix=0.7)
    target = torch.from_numpy(pedalboard.Phaser(**hidden)(x[0].numpy(), sr))
    unit = Phaser(sample_rate=sr).freeze("rate_hz")  # starts at the defaults
    result = dspfx.fit(unit, x, target.unsqueeze(0), steps=80, lr=0.06, align_latency=False, progress=False)
    k = result.knobs
    assert k["centre_frequency_hz"] == pytest.approx(600.0, rel=0.02)
    assert k["depth"] == pytest.approx(0.7, abs=0.02)
    assert k["feedback"] == pytest.approx(0.5, abs=0.02)
    assert k["mix"] == pytest.approx(0.7, abs=0.02)
    assert result.metrics["esr"] < 1e-3


def test_every_edge_renders_and_spec_round_trip():
    x = white_noise(0.02, 48000, channels=2, seed=4)
    for setting in SETTINGS[:8]:
        unit = Phaser(sample_rate=48000, **setting)
        assert unit.knobs() == pytest.approx(setting)
        with torch.no_grad():
            y = unit(x)
        assert y.shape == x.shape and torch.isfinite(y).all()
    unit = Phaser(sample_rate=44100, n_stages=4, feedback=0.25)
    again = dspfx.build(unit.spec())
    assert isinstance(again, Phaser) and again.n_stages == 4 and again.knobs() == pytest.approx(unit.knobs())
    with torch.no_grad():
        torch.testing.assert_close(again(x), unit(x))
    mix0 = Phaser(sample_rate=48000, mix=0.0, feedback=0.9)
    with torch.no_grad():
        assert torch.equal(mix0(x), x)


def test_bad_settings_raise():
    with pytest.raises(ValueError, match="feedback"):
        Phaser(feedback=1.5)
    with pytest.raises(ValueError, match="rate_hz"):
        Phaser(rate_hz=-1.0)
    with pytest.raises(ValueError, match="centre_frequency_hz"):
        Phaser(centre_frequency_hz=10.0)
    with pytest.raises(ValueError, match="n_stages"):
        Phaser(n_stages=0)
    with pytest.raises(TypeError, match="pedalboard_lfo"):
        Phaser(pedalboard_lfo="yes")
    with pytest.raises(ValueError, match="no pedalboard twin"):
        dspfx.to_pedalboard(Phaser(n_stages=4))
    with pytest.raises(ValueError, match="batch, channels, samples"):
        Phaser()(torch.zeros(100))
    with pytest.raises(ValueError, match="mix"):
        Phaser()(torch.zeros(1, 1, 100), mix=torch.tensor([[0.5, 1.5]]))
