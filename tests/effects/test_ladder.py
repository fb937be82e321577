"""The ladder unit: pedalboard.LadderFilter twin (all six modes), gradients, streaming, fit."""

import math

import numpy as np
import pedalboard
import pytest
import torch

import dspfx
import dspfx.effects.ladder  # noqa: F401  (registers "ladder")
from dspfx.effects.ladder import LADDER_MODES, Ladder
from dspfx.signals import guitar_di, log_sweep, white_noise
from dspfx.fitting.metrics import esr

MODES = list(LADDER_MODES)


def _signal(kind, sample_rate, channels):
    if kind == "noise":
        return white_noise(0.25, sample_rate, channels=channels, seed=7, level_db=-6.0)
    if kind == "sweep":
        x = log_sweep(20.0, 20000.0, 0.25, sample_rate, amplitude=0.8)
    else:
        x = guitar_di(sample_rate=sample_rate, duration_s=0.25, seed=1)
    if channels == 2:  # a second, different channel
        x = torch.cat([x, -0.5 * x.flip(-1)], dim=1)
    return x


#: every corner of the knob box (cutoff, resonance, drive), then the settings where a float64
#: loop drifted away from pedalboard's float32 one (near Nyquist, self-oscillating, driven)
EDGES = [
    (20000.0, 1.0, 100.0),
    (20.0, 0.0, 1.0),
    (20.0, 1.0, 100.0),
    (20000.0, 0.0, 1.0),
    (20000.0, 1.0, 1.0),
    (20000.0, 0.0, 100.0),
    (20.0, 1.0, 1.0),
    (20.0, 0.0, 100.0),
    (18300.0, 0.89, 60.5),
]


def _settings(n=20, seed=0):
    """Seeded random settings over the full ranges; the first ones sit on the edges."""
    rng = np.random.default_rng(seed)
    edges = EDGES
    out = []
    for i in range(n):
        if i < len(edges):
            fc, res, drive = edges[i]
        else:
            fc = float(math.exp(rng.uniform(math.log(20.0), math.log(20000.0))))
            res = float(rng.uniform(0.0, 1.0))
            drive = float(math.exp(rng.uniform(0.0, math.log(100.0))))
        out.append((MODES[i % len(MODES)], fc, res, drive))
    return out


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("sample_rate", [44100, 48000])
@pytest.mark.parametrize("kind", ["noise", "sweep", "guitar"])
def test_twin_matches_pedalboard_over_random_settings(kind, sample_rate, channels):
    x = _signal(kind, sample_rate, channels)
    worst = 0.0
    for mode, fc, res, drive in _settings():
        plugin = pedalboard.LadderFilter(
            mode=getattr(pedalboard.LadderFilter.Mode, mode.upper()), cutoff_hz=fc, resonance=res, drive=drive
        )
        twin = dspfx.from_pedalboard(plugin, sample_rate=sample_rate)
        assert isinstance(twin, Ladder) and twin.mode == mode
        ref = torch.from_numpy(plugin(x[0].numpy(), sample_rate))
        with torch.no_grad():
            y = twin(x)[0]
        worst = max(worst, float(esr(y.double(), ref.double())))
    assert worst <= 1e-6


@pytest.mark.parametrize("sample_rate", [44100, 48000])
@pytest.mark.parametrize("mode", MODES)
def test_twin_matches_pedalboard_at_the_self_oscillating_corner_near_nyquist(mode, sample_rate):
    # cutoff 20 kHz, resonance 1, drive 100 on a 20 Hz - 20 kHz sweep: the loop is chaotic
    # there, so a float64 loop (ESR ~6e-2) diverges from pedalboard's float32 one; the float32
    # path repeats JUCE's arithmetic and must stay with it, mono and stereo, for the whole 0.5 s
    sweep = log_sweep(20.0, 20000.0, 0.5, sample_rate, amplitude=0.5)
    x = torch.cat([sweep, guitar_di(sample_rate=sample_rate, duration_s=0.5, seed=2)], dim=1)
    plugin = pedalboard.LadderFilter(
        mode=getattr(pedalboard.LadderFilter.Mode, mode.upper()), cutoff_hz=20000.0, resonance=1.0, drive=100.0
    )
    twin = dspfx.from_pedalboard(plugin, sample_rate=sample_rate)
    for channels in (1, 2):
        ref = torch.from_numpy(plugin(x[0, :channels].numpy(), sample_rate))
        with torch.no_grad():
            y = twin(x[:, :channels])[0]
        assert y.dtype == torch.float32
        assert float(esr(y.double(), ref.double())) <= 1e-6


def test_to_pedalboard_round_trips_settings():
    unit = dspfx.make("ladder", mode="hpf24", cutoff_hz=1234.0, resonance=0.3, drive=7.5)
    plugin = dspfx.to_pedalboard(unit)
    assert isinstance(plugin, pedalboard.LadderFilter)
    assert plugin.mode == pedalboard.LadderFilter.Mode.HPF24
    assert plugin.cutoff_hz == pytest.approx(1234.0, rel=1e-5)
    assert plugin.resonance == pytest.approx(0.3, abs=1e-6)
    assert plugin.drive == pytest.approx(7.5, rel=1e-5)
    back = dspfx.from_pedalboard(plugin, sample_rate=48000)
    assert back.knobs()["cutoff_hz"] == pytest.approx(1234.0, rel=1e-5)
    with pytest.raises(ValueError, match="saturation='tanh' has no pedalboard twin"):
        dspfx.to_pedalboard(dspfx.make("ladder", saturation="tanh"))


def test_gradcheck_time_varying_controls_float64():
    unit = dspfx.make("ladder", mode="bpf12").double()
    g = torch.Generator().manual_seed(0)
    x = (0.5 * torch.randn(2, 1, 48, generator=g, dtype=torch.float64)).requires_grad_(True)
    cutoff = torch.tensor([[300.0, 2000.0, 800.0], [5000.0, 100.0, 1000.0]], dtype=torch.float64, requires_grad=True)
    resonance = torch.tensor([[0.2, 0.9], [0.5, 0.1]], dtype=torch.float64, requires_grad=True)
    drive = torch.tensor([1.5, 6.0], dtype=torch.float64, requires_grad=True)

    def render(x, cutoff, resonance, drive):
        return unit(x, cutoff_hz=cutoff, resonance=resonance, drive=drive)

    assert torch.autograd.gradcheck(render, (x, cutoff, resonance, drive), eps=1e-6, atol=1e-6)


def test_knob_gradients_through_the_raw_maps():
    unit = dspfx.make("ladder", mode="lpf24", cutoff_hz=900.0, resonance=0.5, drive=3.0, saturation="tanh").double()
    x = 0.5 * torch.randn(1, 1, 128, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    names = ("cutoff_hz", "resonance", "drive")
    raws = tuple(unit.raw_knobs[k].detach().clone().requires_grad_(True) for k in names)

    def f(*raw):
        return unit(x, **{k: unit.knob_specs[k].to_physical(r) for k, r in zip(names, raw)}).square().sum()

    assert torch.autograd.gradcheck(f, raws, eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("block", [1, 7, 64, 4096])
def test_streaming_in_blocks_equals_offline(block):
    unit = dspfx.make("ladder", mode="lpf24", cutoff_hz=700.0, resonance=0.9, drive=5.0)
    x = white_noise(0.05, 48000, channels=2, seed=2, level_db=-6.0)
    with torch.no_grad():
        offline = unit(x)
        stream = dspfx.Stream(unit, batch=1, channels=2)
        streamed = torch.cat([stream(x[..., i : i + block]) for i in range(0, x.shape[-1], block)], dim=-1)
    assert (streamed - offline).abs().max() <= 1e-5


@pytest.mark.parametrize("mode", MODES)
def test_every_edge_renders_finite(mode):
    x = white_noise(0.05, 44100, channels=1, seed=3, level_db=0.0)
    for fc in (20.0, 20000.0):
        for res in (0.0, 1.0):
            for drive in (1.0, 100.0):
                unit = dspfx.make("ladder", sample_rate=44100, mode=mode, cutoff_hz=fc, resonance=res, drive=drive)
                with torch.no_grad():
                    y = unit(x)
                assert torch.isfinite(y).all() and y.abs().max() < 10.0


def test_lowpass_attenuates_above_cutoff_and_highpass_below():
    sr = 48000
    x = white_noise(0.5, sr, seed=4, level_db=-30.0)  # quiet: nearly linear
    spec = lambda y: torch.fft.rfft(y[0, 0]).abs().square()  # noqa: E731
    freqs = torch.fft.rfftfreq(x.shape[-1], 1 / sr)
    low, high = freqs < 200, (freqs > 8000) & (freqs < 16000)
    ratio = lambda s: float(s[high].mean() / s[low].mean())  # noqa: E731
    with torch.no_grad():
        lp24 = ratio(spec(dspfx.make("ladder", mode="lpf24", cutoff_hz=1000.0)(x)))
        lp12 = ratio(spec(dspfx.make("ladder", mode="lpf12", cutoff_hz=1000.0)(x)))
        hp24 = ratio(spec(dspfx.make("ladder", mode="hpf24", cutoff_hz=1000.0)(x)))
    assert lp24 < lp12 < 1e-2  # 24 dB/oct falls faster than 12
    assert hp24 > 100.0


def test_fit_recovers_cutoff_resonance_and_drive_from_pedalboard():
    sr = 48000
    x = white_noise(0.125, sr, seed=3, level_db=-6.0)
    mode = pedalboard.LadderFilter.Mode.LPF24
    plugin = pedalboard.LadderFilter(mode=mode, cutoff_hz=1500.0, resonance=0.6, drive=3.0)
    target = torch.from_numpy(plugin(x[0].numpy(), sr)).unsqueeze(0)
    model = dspfx.make("ladder", sample_rate=sr, mode="lpf24")  # default knobs: 200 Hz, 0, 1
    # align_latency off: a resonant lowpass's cross-correlation peak is not at lag 0
    result = dspfx.fit(model, x, target, steps=150, lr=0.1, loss="mrstft+esr", progress=False, align_latency=False)
    k = result.knobs
    assert k["cutoff_hz"] == pytest.approx(1500.0, rel=0.02)
    assert k["resonance"] == pytest.approx(0.6, abs=0.02)
    assert k["drive"] == pytest.approx(3.0, rel=0.05)
    assert result.metrics["esr"] < 1e-4


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="ladder mode must be one of"):
        dspfx.make("ladder", mode="LPF12")
    with pytest.raises(ValueError, match="saturation"):
        dspfx.make("ladder", saturation="soft")
    with pytest.raises(ValueError):
        dspfx.make("ladder", drive=0.5)
    with pytest.raises(ValueError):
        dspfx.make("ladder", resonance=1.5)
    unit = dspfx.make("ladder")
    with pytest.raises(ValueError):
        unit(torch.randn(100))
    with pytest.raises(ValueError):
        unit(torch.randn(1, 1, 100), cutoff_hz=30000.0)
    with pytest.raises(ValueError):
        unit(torch.full((1, 1, 10), float("nan")))


def test_spec_and_file_round_trips_render_identically(tmp_path):
    unit = dspfx.make("ladder", mode="bpf24", saturation="tanh", cutoff_hz=900.0, resonance=0.7, drive=4.0)
    x = white_noise(0.02, 48000, seed=5)
    with torch.no_grad():
        ref = unit(x)
        assert torch.allclose(dspfx.build(unit.spec())(x), ref, atol=1e-6)
        dspfx.save(unit, tmp_path / "ladder.safetensors")
        loaded = dspfx.load(tmp_path / "ladder.safetensors")
        assert (loaded.mode, loaded.saturation) == ("bpf24", "tanh")
        assert torch.allclose(loaded(x), ref, atol=1e-6)
