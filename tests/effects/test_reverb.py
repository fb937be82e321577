"""The reverb unit (Freeverb): pedalboard twin, RT60, freeze, gradients, streaming, fit, errors."""

import json

import numpy as np
import pedalboard
import pytest
import torch

import dspfx
import dspfx.effects.reverb  # noqa: F401  (registers the unit until dspfx.effects imports it)
from dspfx.effects.reverb import Reverb
from dspfx.signals import guitar_di, log_sweep, white_noise
from dspfx.fitting.metrics import esr

KNOBS = ("room_size", "damping", "wet_level", "dry_level", "width")
TINY = dict(comb_lengths=(3, 4, 5, 6, 7, 8, 9, 11), allpass_lengths=(2, 3, 5, 4), stereo_spread=1)

# edges of every knob, and freeze on (pedalboard freezes at freeze_mode >= 0.5)
EDGE_SETTINGS = [
    dict(),  # pedalboard's defaults
    dict(room_size=0.0, damping=0.0, wet_level=1.0, dry_level=0.0, width=0.0),
    dict(room_size=1.0, damping=0.0, wet_level=1.0, dry_level=0.0, width=1.0),
    dict(room_size=1.0, damping=1.0, wet_level=0.5, dry_level=0.5, width=0.0),
    dict(room_size=0.0, damping=1.0, wet_level=0.0, dry_level=1.0, width=0.5),
    dict(room_size=0.7, damping=0.3, wet_level=1.0, dry_level=1.0, width=1.0),
    dict(room_size=0.5, damping=0.5, wet_level=0.0, dry_level=0.0, width=0.3),
    dict(room_size=0.9, damping=0.1, wet_level=0.6, dry_level=0.3, freeze_mode=1.0),
    dict(room_size=0.2, damping=0.8, wet_level=0.6, dry_level=0.3, freeze_mode=0.5),
    dict(room_size=0.2, damping=0.8, wet_level=0.6, dry_level=0.3, freeze_mode=0.49),
]


def _settings(seed):
    rng = np.random.default_rng(seed)
    drawn = [{k: float(rng.uniform(0.0, 1.0)) for k in KNOBS} for _ in range(14)]
    return EDGE_SETTINGS + drawn  # 24 settings


def _signal(kind, sample_rate):
    if kind == "noise":
        return white_noise(0.25, sample_rate, channels=2, seed=4)[0]
    if kind == "sweep":
        s = log_sweep(20.0, 20000.0, 0.25, sample_rate)
        s = s.reshape(-1)[None]
        return torch.cat([s, 0.7 * s.roll(500, -1)])
    g = guitar_di(sample_rate=sample_rate, duration_s=0.3)[0]
    return torch.cat([g, 0.5 * g.roll(1000, -1)])


@pytest.mark.parametrize("sample_rate", [44100, 48000])
@pytest.mark.parametrize("kind", ["noise", "sweep", "guitar"])
def test_twin_matches_pedalboard(kind, sample_rate):
    x = _signal(kind, sample_rate).float()
    assert x.shape[0] == 2
    worst = 0.0
    for i, setting in enumerate(_settings(seed=sample_rate + len(kind))):
        plugin = pedalboard.Reverb(**setting)
        twin = dspfx.from_pedalboard(plugin, sample_rate=sample_rate)
        assert isinstance(twin, Reverb)
        assert twin.freeze_mode == (setting.get("freeze_mode", 0.0) >= 0.5)
        back = dspfx.to_pedalboard(twin)
        assert isinstance(back, pedalboard.Reverb)
        for key in KNOBS:
            assert getattr(back, key) == pytest.approx(getattr(plugin, key), abs=1e-6)
        assert (back.freeze_mode >= 0.5) == (plugin.freeze_mode >= 0.5)  # written back as 0 or 1
        for audio in (x, x[:1]) if i % 2 == 0 else (x[1:], x):  # stereo and mono
            ref = torch.from_numpy(plugin(audio.numpy(), sample_rate))
            with torch.no_grad():
                y = twin(audio[None])[0]
            assert y.dtype == torch.float32 and y.shape == audio.shape
            e = float(esr(y.double(), ref.double()))
            worst = max(worst, e)
            assert e <= 1e-5, (setting, audio.shape[0], e)
    assert worst < 1e-7  # measured: about 3e-13


def _schroeder_rt60(h, sample_rate):
    """T60 from the backward-integrated energy decay, fitted between -5 and -35 dB."""
    energy = np.cumsum((h**2)[::-1])[::-1]
    edc = 10 * np.log10(energy / energy[0])
    fit = (edc <= -5) & (edc >= -35)
    t = np.arange(len(h)) / sample_rate
    slope = np.polyfit(t[fit], edc[fit], 1)[0]
    return -60.0 / slope


@pytest.mark.parametrize("sample_rate", [44100, 48000])
@pytest.mark.parametrize("room_size", [0.0, 0.5, 1.0])
def test_rt60_of_impulse_response(room_size, sample_rate):
    unit = Reverb(sample_rate=sample_rate, room_size=room_size, damping=0.0, wet_level=1.0, dry_level=0.0).double()
    simple = unit.rt60(method="mean")  # -3 * L_mean / (sr * log10(0.28 * room_size + 0.7))
    predicted = unit.rt60()  # the 8 combs' summed energy decay, fitted like the measurement
    n = int(sample_rate * (0.75 * predicted + 0.5))  # long enough that the -35 dB point is well inside
    x = torch.zeros(1, 1, n, dtype=torch.float64)
    x[..., 0] = 1.0
    with torch.no_grad():
        h = unit(x)[0, 0].numpy()
    measured = _schroeder_rt60(h, sample_rate)
    assert measured == pytest.approx(simple, rel=0.10)  # measured: +4 % .. +6 %
    assert measured == pytest.approx(predicted, rel=0.02)  # measured: within 1 %


def test_damping_shortens_the_decay():
    times = []
    for damping in (0.0, 0.5, 1.0):
        unit = Reverb(sample_rate=44100, room_size=0.5, damping=damping, wet_level=1.0, dry_level=0.0).double()
        x = torch.zeros(1, 1, 60000, dtype=torch.float64)
        x[..., 0] = 1.0
        with torch.no_grad():
            times.append(_schroeder_rt60(unit(x)[0, 0].numpy(), 44100))
    assert times[0] > times[1] > times[2]


def _comb_energy(stream):
    return sum(float(net[0].detach().pow(2).sum()) for net in stream.state)


@torch.no_grad()
def test_freeze_keeps_energy_and_ignores_new_input():
    sr = 44100
    unit = Reverb(sample_rate=sr, room_size=0.5, damping=0.5, wet_level=1.0, dry_level=0.0).double()
    x = white_noise(0.3, sr, channels=2, seed=1).double()
    block = 4410
    streams = [dspfx.Stream(unit, channels=2) for _ in range(3)]
    for s in streams:
        s(x)  # the same excitation
    decaying = [streams[2](torch.zeros(1, 2, block, dtype=torch.float64)) for _ in range(4)]
    unit.freeze_mode = True
    comb_energy = [_comb_energy(streams[0])]
    frozen_a, frozen_b = [], []
    for i in range(4):
        frozen_a.append(streams[0](torch.zeros(1, 2, block, dtype=torch.float64)))
        frozen_b.append(streams[1](white_noise(0.1, sr, channels=2, seed=10 + i).double()))  # new input
        comb_energy.append(_comb_energy(streams[0]))
    # ignores new input: the same output with or without it (dry_level = 0)
    torch.testing.assert_close(torch.cat(frozen_b, -1), torch.cat(frozen_a, -1), rtol=0, atol=1e-12)
    # keeps energy: the comb lines (feedback 1, no damping, no input) circulate unchanged ...
    np.testing.assert_allclose(comb_energy, comb_energy[0], rtol=1e-12)
    # ... so the output does not decay, while the unfrozen tail falls by > 10 dB in the same 0.4 s
    rms = [float(b.pow(2).mean().sqrt()) for b in frozen_a]
    assert max(rms) / min(rms) < 1.25
    fall = float(decaying[0].pow(2).mean() / decaying[-1].pow(2).mean())
    assert fall > 10.0
    # and a fresh frozen reverb is dry only (like pedalboard)
    fresh = Reverb(sample_rate=sr, freeze_mode=True, dry_level=0.25).double()
    torch.testing.assert_close(fresh(x), 0.5 * x, rtol=0, atol=0)


def test_gradcheck_every_knob_per_sample_and_input():
    n = 24  # longer than the longest tiny comb + allpass lines: feedback and state both matter
    g = torch.Generator().manual_seed(0)
    for channels in (1, 2):
        unit = Reverb(sample_rate=44100, **TINY).double()
        x = torch.randn(1, channels, n, dtype=torch.float64, generator=g).requires_grad_()
        controls = {k: (0.1 + 0.8 * torch.rand(1, n, dtype=torch.float64, generator=g)).requires_grad_() for k in KNOBS}
        names = list(controls)

        def render(x, *values):
            return unit(x, **dict(zip(names, values)))

        assert torch.autograd.gradcheck(render, (x, *controls.values()))


def test_gradcheck_initial_state():
    unit = Reverb(sample_rate=44100, **TINY).double()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 2, 20, dtype=torch.float64, generator=g)
    state = unit.init_state(1, 2)
    flat = [t.clone().normal_(generator=g).requires_grad_() for net in state for t in net]
    controls = unit.controls({}, 1, 20)

    def render(*tensors):
        nets = (tuple(tensors[:3]), tuple(tensors[3:]))
        y, new = unit.process(x, controls, nets)
        return (y,) + tuple(t for net in new for t in net)

    assert torch.autograd.gradcheck(render, tuple(flat))


def test_gradients_reach_every_knob():
    unit = Reverb(sample_rate=44100, width=0.5)
    x = white_noise(0.1, 44100, channels=2, seed=2)
    unit(x).pow(2).mean().backward()
    for key in KNOBS:
        grad = unit.raw_knobs[key].grad
        assert grad is not None and torch.isfinite(grad) and float(grad.abs()) > 0, key


@pytest.mark.parametrize("block", [1, 7, 64, 4096])
def test_streaming_equals_offline(block):
    n = {1: 1300, 7: 2500}.get(block, 6000)  # longer than every comb: the feedback recirculates
    unit = Reverb(sample_rate=44100, room_size=0.8, damping=0.3, wet_level=0.8, dry_level=0.2, width=0.7)
    x = white_noise(n / 44100, 44100, channels=2, seed=3)[..., :n]
    with torch.no_grad():
        offline = unit(x)
        stream = dspfx.Stream(unit, channels=2)
        blocks = [stream(x[..., i : i + block]) for i in range(0, n, block)]
    assert float((torch.cat(blocks, -1) - offline).abs().max()) <= 1e-5
    assert float(offline[..., 1200:].abs().max()) > 0.01  # the recirculated part is there


def test_time_varying_knobs_equal_switching_between_blocks():
    unit = Reverb(sample_rate=44100, **TINY).double()
    x = torch.randn(1, 2, 200, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    room = torch.cat([torch.full((1, 120), 0.2), torch.full((1, 80), 0.9)], -1).double()
    whole = unit(x, room_size=room)
    stream = dspfx.Stream(unit, channels=2)
    parts = [stream(x[..., :120], room_size=0.2), stream(x[..., 120:], room_size=0.9)]
    torch.testing.assert_close(torch.cat(parts, -1), whole, rtol=0, atol=1e-12)


def test_fit_recovers_hidden_settings_from_pedalboard():
    sr = 44100
    x = white_noise(0.3, sr, channels=2, seed=5)[0]
    x[:, 2000:] = 0.0  # a noise burst, then its tail
    hidden = dict(room_size=0.75, damping=0.25, wet_level=0.5, dry_level=0.6, width=0.6)
    target = torch.from_numpy(pedalboard.Reverb(**hidden)(x.numpy(), sr))
    unit = Reverb(sample_rate=sr)  # starts from the defaults (0.5, 0.5, 0.33, 0.4, 1)
    result = dspfx.fit(unit, x[None], target[None], steps=120, lr=0.2, loss="esr", align_latency=False, progress=False)
    found = unit.knobs()
    assert found["room_size"] == pytest.approx(hidden["room_size"], abs=0.01)
    assert found["damping"] == pytest.approx(hidden["damping"], abs=0.01)
    assert found["width"] == pytest.approx(hidden["width"], abs=0.01)
    assert found["wet_level"] == pytest.approx(hidden["wet_level"], rel=0.02)
    assert found["dry_level"] == pytest.approx(hidden["dry_level"], rel=0.02)
    assert result.best_loss < 1e-4


def test_spec_round_trip_and_options():
    unit = Reverb(sample_rate=48000, freeze_mode=True, room_size=0.3, **TINY)
    spec = json.loads(json.dumps(unit.spec()))
    back = dspfx.build(spec)
    assert isinstance(back, Reverb) and back.freeze_mode is True and back.comb_lengths == TINY["comb_lengths"]
    assert back.knobs() == pytest.approx(unit.knobs())
    assert Reverb(freeze_mode=0.7).freeze_mode is True and Reverb(freeze_mode=0.2).freeze_mode is False
    combs, allpasses = Reverb(sample_rate=48000).delay_lengths(1)
    assert combs[0] == 1239 and allpasses[-1] == 269  # int(48000 * (len + 23) / 44100)


def test_bad_input_errors():
    unit = Reverb(sample_rate=44100)
    with pytest.raises(ValueError, match="mono or stereo"):
        unit(torch.zeros(1, 3, 100))
    with pytest.raises(ValueError, match="batch, channels, samples"):
        unit(torch.zeros(2, 100))
    with pytest.raises(ValueError, match="(?i)nan|finite"):
        unit(torch.full((1, 1, 100), float("nan")))
    with pytest.raises(ValueError, match="out of range"):
        Reverb(room_size=1.5)
    with pytest.raises(ValueError, match="outside the knob's range"):
        unit(torch.zeros(1, 1, 100), damping=torch.tensor([[0.0, 1.2]]))
    with pytest.raises(TypeError, match="freeze_mode"):
        Reverb(freeze_mode="on")
    with pytest.raises(TypeError, match="freeze_mode"):
        unit.freeze_mode = 2.0
    with pytest.raises(ValueError, match="comb_lengths"):
        Reverb(comb_lengths=(3, 0))
    with pytest.raises(TypeError, match="allpass_lengths"):
        Reverb(allpass_lengths=5)
    with pytest.raises(ValueError, match="stereo_spread"):
        Reverb(stereo_spread=-1)
    with pytest.raises(ValueError, match="pedalboard twin"):
        Reverb(**TINY).to_pedalboard()
    with pytest.raises(ValueError, match="one network state per channel"):
        unit.process(torch.zeros(1, 2, 10), unit.controls({}, 1, 10), unit.init_state(1, 1))
    with pytest.raises(TypeError, match="room_sise"):
        Reverb(room_sise=0.5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_equals_cpu():
    unit = Reverb(sample_rate=48000, room_size=0.7, width=0.4)
    x = white_noise(0.1, 48000, channels=2, seed=6)
    with torch.no_grad():
        cpu = unit(x)
    gpu_unit = unit.to("cuda")
    y = gpu_unit(x.cuda())
    assert y.device.type == "cuda"
    torch.testing.assert_close(y.detach().cpu(), cpu, rtol=0, atol=1e-5)
    y.pow(2).mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in gpu_unit.raw_knobs.values())
