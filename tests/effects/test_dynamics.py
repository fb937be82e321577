"""Dynamics units: pedalboard twins (Compressor, Limiter, NoiseGate), static curves, attack and
release times, gradients, streaming, sidechain, a fit, and argument checks."""

import functools
import math

import numpy as np
import pedalboard
import pytest
import torch

import dspfx
from dspfx.effects import Compressor, Expander, Limiter, NoiseGate
from dspfx.signals import guitar_di

UNITS = {"compressor": Compressor, "limiter": Limiter, "noise_gate": NoiseGate, "expander": Expander}
PEDALBOARD = {"compressor": pedalboard.Compressor, "limiter": pedalboard.Limiter, "noise_gate": pedalboard.NoiseGate}


def _esr(prediction, reference):
    p, r = np.asarray(prediction, np.float64), np.asarray(reference, np.float64)
    return float(np.sum((p - r) ** 2) / np.sum(r**2))


def _noise(n, channels=1, seed=0, scale=0.3, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(1, channels, n, generator=g, dtype=dtype)


@functools.lru_cache(maxsize=None)
def _guitar(sample_rate, seed=0, duration_s=1.0):
    return guitar_di(sample_rate=sample_rate, duration_s=duration_s, seed=seed)[0]  # (1, n)


def _with_gap(x, sample_rate, gap_db=-30.0):
    """A quiet passage in the middle: 0.3 s .. 0.7 s attenuated by gap_db."""
    x = x.clone()
    x[..., int(0.3 * sample_rate) : int(0.7 * sample_rate)] *= 10 ** (gap_db / 20)
    return x


def _signals(sample_rate):
    """(name, (channels, samples) float32): stereo noise, mono guitar, stereo loud/quiet guitar."""
    guitar = _guitar(sample_rate)
    loud_quiet = torch.cat([_with_gap(guitar, sample_rate), _with_gap(_guitar(sample_rate, seed=1), sample_rate)])
    return [
        ("noise_stereo", _noise(sample_rate // 2, channels=2)[0]),
        ("guitar_mono", guitar),
        ("guitar_gap_stereo", loud_quiet),
    ]


def _twin_render(plugin, x, sample_rate, dtype):
    twin = dspfx.from_pedalboard(plugin, sample_rate=sample_rate).to(dtype)
    # set the knobs again in the twin's dtype, so a float64 twin holds the exact settings
    twin.set(**{k: getattr(plugin, k) for k in twin.knob_specs if hasattr(plugin, k)})
    with torch.no_grad():
        return twin(x.to(dtype).unsqueeze(0))[0].double().numpy()


def _check_twin(plugin, x, sample_rate, dtype=torch.float32):
    ref = plugin(x.numpy(), sample_rate).astype(np.float64)
    assert ref.shape == tuple(x.shape)
    y = _twin_render(plugin, x, sample_rate, dtype)
    assert np.isfinite(y).all()
    energy = np.sum(ref**2)
    if energy < 1e-20:  # pedalboard's float32 output is below -200 dB (denormals): both ~silent
        assert np.abs(y - ref).max() <= 1e-10
    else:
        assert _esr(y, ref) <= 1e-6, f"{plugin}: ESR {_esr(y, ref):.3g}"
    return y, ref


TWIN_SETTINGS = [
    ("compressor", dict(threshold_db=0.0, ratio=1.0, attack_ms=1.0, release_ms=100.0)),  # pedalboard defaults
    ("compressor", dict(threshold_db=-24.0, ratio=4.0, attack_ms=5.0, release_ms=80.0)),
    ("compressor", dict(threshold_db=-40.0, ratio=20.0, attack_ms=0.01, release_ms=5000.0)),
    ("compressor", dict(threshold_db=-60.0, ratio=100.0, attack_ms=500.0, release_ms=1.0)),
    ("limiter", dict(threshold_db=-10.0, release_ms=100.0)),  # pedalboard defaults
    ("limiter", dict(threshold_db=-30.0, release_ms=5.0)),
    ("limiter", dict(threshold_db=0.0, release_ms=5000.0)),
    ("limiter", dict(threshold_db=-60.0, release_ms=1.0)),
    ("noise_gate", dict(threshold_db=-100.0, ratio=10.0, attack_ms=1.0, release_ms=100.0)),  # defaults
    ("noise_gate", dict(threshold_db=-35.0, ratio=4.0, attack_ms=2.0, release_ms=150.0)),
    ("noise_gate", dict(threshold_db=-20.0, ratio=100.0, attack_ms=0.01, release_ms=5000.0)),
    ("noise_gate", dict(threshold_db=0.0, ratio=1.0, attack_ms=500.0, release_ms=1.0)),
]


@pytest.mark.parametrize("sample_rate", [44100, 48000])
@pytest.mark.parametrize("name, settings", TWIN_SETTINGS, ids=lambda v: v if isinstance(v, str) else "-".join(f"{x:g}" for x in v.values()))
def test_twins_match_pedalboard(name, settings, sample_rate):
    plugin = PEDALBOARD[name](**settings)
    twin = dspfx.from_pedalboard(plugin, sample_rate=sample_rate)
    assert isinstance(twin, UNITS[name])
    assert type(dspfx.to_pedalboard(twin)) is type(plugin)
    for _, x in _signals(sample_rate):
        _check_twin(plugin, x, sample_rate, torch.float32)
    # float64 twin on the loud/quiet stereo signal
    _check_twin(plugin, _signals(sample_rate)[2][1], sample_rate, torch.float64)


def _random_settings(name, seed):
    """Seeded random knob values across the twin's ranges, an edge for about 4 in 10 knobs."""
    rng = np.random.default_rng(seed)
    out = {}
    for key, knob in UNITS[name]._class_knobs.items():
        if key in ("knee_db", "makeup_db"):
            continue
        u = rng.choice([0.0, 1.0, rng.uniform()], p=[0.2, 0.2, 0.6])
        if u in (0.0, 1.0):
            out[key] = knob.maximum if u == 1.0 else knob.minimum
        elif knob.scale == "log":
            out[key] = float(math.exp(math.log(knob.minimum) + u * (math.log(knob.maximum) - math.log(knob.minimum))))
        else:
            out[key] = float(knob.minimum + u * (knob.maximum - knob.minimum))
    return out


@pytest.mark.parametrize("name", list(PEDALBOARD))
def test_twins_match_pedalboard_for_random_settings(name):
    edges_seen = set()
    for seed in range(24):
        settings = _random_settings(name, seed)
        sample_rate = (44100, 48000)[seed % 2]
        plugin = PEDALBOARD[name](**settings)
        x = _signals(sample_rate)[2 if seed % 3 else 0][1]
        _check_twin(plugin, x, sample_rate)
        for key, value in settings.items():
            knob = UNITS[name]._class_knobs[key]
            if value in (knob.minimum, knob.maximum):
                edges_seen.add((key, value == knob.maximum))
    assert len(edges_seen) >= len(UNITS[name]._class_knobs) + 1  # many edges were tried


@pytest.mark.parametrize("name", list(PEDALBOARD))
def test_pedalboard_and_twins_process_channels_independently(name):
    sr = 48000
    settings = {"compressor": dict(threshold_db=-30.0, ratio=6.0), "limiter": dict(threshold_db=-20.0),
                "noise_gate": dict(threshold_db=-40.0, ratio=5.0)}[name]
    plugin = PEDALBOARD[name](**settings)
    x = _signals(sr)[2][1]
    stereo = plugin(x.numpy(), sr)
    for ch in range(2):
        mono = plugin(x[ch : ch + 1].numpy(), sr)
        np.testing.assert_array_equal(stereo[ch : ch + 1], mono)  # pedalboard: no stereo link
    twin = dspfx.from_pedalboard(plugin, sr).double()
    twin.set(**settings)
    with torch.no_grad():
        y = twin(x.double()[None])[0]
        for ch in range(2):
            assert torch.equal(y[ch], twin(x.double()[None, ch : ch + 1])[0, 0])


def test_compressor_with_makeup_twins_a_compressor_then_gain():
    sr = 48000
    comp = dspfx.make("compressor", sample_rate=sr, threshold_db=-20.0, ratio=3.0, attack_ms=2.0, makeup_db=6.0)
    board = dspfx.to_pedalboard(comp)
    assert isinstance(board, pedalboard.Pedalboard) and isinstance(board[1], pedalboard.Gain)
    x = _guitar(sr)
    with torch.no_grad():
        y = comp(x[None])[0].numpy()
    assert _esr(y, board(x.numpy(), sr)) <= 1e-6


# ---------------------------------------------------------------------------------------------
# static curves, attack and release
# ---------------------------------------------------------------------------------------------


def _compressor_curve_db(level, t, r, w):
    """Giannoulis, Massberg & Reiss (2012) eq. (4), as a gain: output level minus input level."""
    if 2 * (level - t) < -w:
        return 0.0
    if 2 * abs(level - t) <= w and w > 0:
        return (1 / r - 1) * (level - t + w / 2) ** 2 / (2 * w)
    return (1 / r - 1) * (level - t)


def _expander_curve_db(level, t, r, w):
    if 2 * (level - t) > w:
        return 0.0
    if 2 * abs(level - t) <= w and w > 0:
        return -(r - 1) * (level - t - w / 2) ** 2 / (2 * w)
    return (r - 1) * (level - t)


@pytest.mark.parametrize("knee", [0.0, 12.0])
def test_compressor_static_curve_from_steady_sines(knee):
    sr, t, r = 48000, -24.0, 4.0
    levels_db = np.arange(-60.0, 0.1, 1.5)
    amp = torch.tensor(10 ** (levels_db / 20)).view(-1, 1, 1)
    n = sr // 2
    x = amp * torch.sin(2 * math.pi * 1000.0 * torch.arange(n, dtype=torch.float64) / sr).view(1, 1, -1)
    # fast attack, slow release: the peak detector settles on the sine's amplitude
    comp = dspfx.make("compressor", sample_rate=sr).double()
    comp.set(threshold_db=t, ratio=r, attack_ms=0.01, release_ms=5000.0, knee_db=knee)
    with torch.no_grad():
        y = comp(x)
    tail_x, tail_y = x[..., -480:], y[..., -480:]
    peaks = tail_x.abs() > 0.9 * amp
    gain_db = 20 * torch.log10(tail_y[peaks].view(len(levels_db), -1) / tail_x[peaks].view(len(levels_db), -1))
    expected = np.array([_compressor_curve_db(v, t, r, knee) for v in levels_db])
    np.testing.assert_allclose(gain_db.numpy(), np.broadcast_to(expected[:, None], gain_db.shape), atol=0.01)
    np.testing.assert_allclose(comp.static_curve(torch.tensor(levels_db)).detach().numpy(), expected, atol=1e-9)
    assert expected.min() < -15  # the curve was exercised well above the threshold


def test_compressor_rms_detector_static_curve_uses_the_sine_rms():
    sr, t, r, w = 48000, -30.0, 3.0, 6.0
    levels_db = np.arange(-50.0, 0.1, 5.0)
    amp = torch.tensor(10 ** (levels_db / 20)).view(-1, 1, 1)
    x = amp * torch.sin(2 * math.pi * 1000.0 * torch.arange(sr // 2, dtype=torch.float64) / sr).view(1, 1, -1)
    comp = dspfx.make("compressor", sample_rate=sr, detector="rms", threshold_db=t, ratio=r, attack_ms=100.0, release_ms=100.0, knee_db=w).double()
    with torch.no_grad():
        y = comp(x)
    tail_x, tail_y = x[..., -4800:], y[..., -4800:]
    gain_db = 20 * torch.log10((tail_y * tail_x).sum(-1) / (tail_x * tail_x).sum(-1)).flatten()
    rms_db = levels_db - 10 * math.log10(2)
    expected = [_compressor_curve_db(v, t, r, w) for v in rms_db]
    np.testing.assert_allclose(gain_db.numpy(), expected, atol=0.05)


@pytest.mark.parametrize("name, knee", [("expander", 0.0), ("expander", 10.0), ("noise_gate", 0.0)])
def test_expander_and_gate_static_curves_from_steady_levels(name, knee):
    sr, t, r = 48000, -40.0, 3.0
    levels_db = np.arange(-80.0, 0.1, 2.5)
    amp = torch.tensor(10 ** (levels_db / 20)).view(-1, 1, 1)
    x = amp.expand(-1, 1, sr // 4).clone()  # steady levels: every detector settles on |x|
    kwargs = dict(threshold_db=t, ratio=r, attack_ms=0.5, release_ms=50.0)
    if name == "expander":
        kwargs["knee_db"] = knee
    unit = dspfx.make(name, sample_rate=sr, **kwargs).double()
    with torch.no_grad():
        y = unit(x)
    gain_db = 20 * torch.log10(y[..., -1] / x[..., -1]).flatten()
    expected = [_expander_curve_db(v, t, r, knee) for v in levels_db]
    np.testing.assert_allclose(gain_db.numpy(), expected, atol=1e-6)


def _envelope_from_gain(x, y, t_db, ratio):
    """Invert the hard-knee curve above the threshold: e = T * gain^(1 / (1/ratio - 1))."""
    gain = (y / x).numpy()
    return 10 ** (t_db / 20) * gain ** (1.0 / (1.0 / ratio - 1.0))


@pytest.mark.parametrize("kind, time_ms", [("attack", 5.0), ("attack", 20.0), ("attack", 100.0), ("release", 50.0), ("release", 500.0)])
def test_attack_and_release_times_on_a_step(kind, time_ms):
    """attack_ms / release_ms follow JUCE: the detector envelope (recovered from the gain by
    inverting the static curve; both step levels lie above the threshold) covers 1 - 1/e of the
    step in time_ms / (2*pi), i.e. 99.8 % of it in time_ms."""
    sr, t_db, ratio, low, high = 48000, -40.0, 4.0, 0.05, 0.5
    step = sr // 2
    n = step + int(12 * time_ms / (2 * math.pi) * sr / 1000) + 10
    x = torch.full((1, 1, n), low if kind == "attack" else high, dtype=torch.float64)
    x[..., step:] = high if kind == "attack" else low
    other = 0.01 if kind == "release" else 1000.0
    times = dict(attack_ms=time_ms, release_ms=other) if kind == "attack" else dict(attack_ms=other, release_ms=time_ms)
    comp = dspfx.make("compressor", sample_rate=sr, threshold_db=t_db, ratio=ratio, **times).double()
    with torch.no_grad():
        y = comp(x)
    env = _envelope_from_gain(x[0, 0], y[0, 0], t_db, ratio)
    start, end = (low, high) if kind == "attack" else (high, low)
    assert env[step - 1] == pytest.approx(start, rel=1e-6)  # settled before the step
    assert env[-1] == pytest.approx(end, rel=1e-4)  # and after it
    progress = (env[step:] - start) / (end - start)
    reached = int(np.argmax(progress >= 1 - 1 / math.e)) + 1  # samples after the step, counting it
    expected = time_ms / (2 * math.pi) * sr / 1000
    assert reached == pytest.approx(expected, rel=0.05)
    # and 99.8 % (1 - e^{-2 pi}) of the way after time_ms
    assert int(np.argmax(progress >= 1 - math.exp(-2 * math.pi))) + 1 == pytest.approx(time_ms * sr / 1000, rel=0.05)


# ---------------------------------------------------------------------------------------------
# gradients
# ---------------------------------------------------------------------------------------------


GRAD_SETTINGS = {
    "compressor": dict(threshold_db=-18.0, ratio=3.0, attack_ms=2.0, release_ms=30.0, knee_db=8.0, makeup_db=2.0),
    "limiter": dict(threshold_db=-8.0, release_ms=20.0),
    "noise_gate": dict(threshold_db=-20.0, ratio=4.0, attack_ms=3.0, release_ms=10.0),
    "expander": dict(threshold_db=-22.0, ratio=2.5, attack_ms=3.0, release_ms=10.0, knee_db=12.0),
}


@pytest.mark.parametrize(
    "name, detector",
    [("compressor", "peak"), ("compressor", "rms"), ("expander", "peak"), ("expander", "rms"), ("limiter", None), ("noise_gate", None)],
)
def test_gradcheck_wrt_input_and_every_knob(name, detector):
    options = dict(detector=detector) if name in ("compressor", "expander") else {}
    # 1 kHz: the fixed 50 ms RMS release of the gate spans 8 samples, so 48 samples see the
    # detectors rise and fall through every region of the curves
    unit = dspfx.make(name, sample_rate=1000, **options).double()
    unit.set(**GRAD_SETTINGS[name])
    x = _noise(48, channels=2, seed=11, scale=0.6, dtype=torch.float64)
    x[..., 16:] *= 0.01
    if name == "limiter":
        x *= 2.0
    x.requires_grad_(True)
    keys = list(unit.knob_specs)
    raws = [unit.raw_knobs[k].detach().clone().requires_grad_(True) for k in keys]

    def render(x, *raw):  # through the knobs' bounded maps, as a fit does
        return unit(x, **{k: unit.knob_specs[k].to_physical(r) for k, r in zip(keys, raw)})

    assert torch.autograd.gradcheck(render, (x, *raws), eps=1e-7, atol=1e-7)
    # every knob actually moves the output
    out = render(x, *raws).square().sum()
    grads = torch.autograd.grad(out, raws)
    assert all(float(g.abs()) > 0 for g in grads), dict(zip(keys, grads))


# ---------------------------------------------------------------------------------------------
# streaming, sidechain
# ---------------------------------------------------------------------------------------------


STREAM_SETTINGS = {
    "compressor": dict(threshold_db=-20.0, ratio=5.0, attack_ms=3.0, release_ms=60.0, knee_db=6.0, makeup_db=3.0),
    "limiter": dict(threshold_db=-12.0, release_ms=20.0),
    "noise_gate": dict(threshold_db=-30.0, ratio=4.0, attack_ms=2.0, release_ms=40.0),
    "expander": dict(threshold_db=-30.0, ratio=3.0, attack_ms=2.0, release_ms=40.0, knee_db=6.0),
}


@pytest.mark.parametrize("name", list(UNITS))
@pytest.mark.parametrize("block", [1, 7, 64, 4096])
def test_streaming_in_blocks_equals_offline(name, block):
    unit = dspfx.make(name, **STREAM_SETTINGS[name])
    x = _noise(800, channels=2, seed=12, scale=0.5)
    x[..., 250:550] *= 0.02
    with torch.no_grad():
        offline = unit(x)
        stream = dspfx.Stream(unit, batch=1, channels=2)
        streamed = torch.cat([stream(x[..., i : i + block]) for i in range(0, x.shape[-1], block)], dim=-1)
    assert (streamed - offline).abs().max() <= 1e-5


@pytest.mark.parametrize("name", ["compressor", "noise_gate", "expander"])
def test_sidechain_keys_the_detector(name):
    sr = 48000
    unit = dspfx.make(name, sample_rate=sr).double()
    unit.set(**STREAM_SETTINGS[name])
    x = _noise(9600, channels=2, seed=13, scale=0.1, dtype=torch.float64)
    key = _noise(9600, channels=1, seed=14, scale=0.5, dtype=torch.float64)
    key[..., 2400:] *= 0.001
    with torch.no_grad():
        assert torch.equal(unit(x, sidechain=x), unit(x))  # keyed by itself: the plain render
        assert torch.equal(unit(x, sidechain=None), unit(x))
        y = unit(x, sidechain=key)
        gain = y / x
        assert torch.allclose(gain[:, 0], gain[:, 1], rtol=1e-12)  # a mono key links the channels
        # the gain follows the key's level, not x's (the gate's RMS stage releases in 50 ms)
        loud_key, quiet_key = gain[..., 1200:2400].mean(), gain[..., 8400:].mean()
        assert (loud_key < quiet_key - 0.1) if name == "compressor" else (loud_key > quiet_key + 0.1)
        # streaming with a key equals offline
        stream = dspfx.Stream(unit, batch=1, channels=2)
        parts = [stream(x[..., i : i + 1000], sidechain=key[..., i : i + 1000]) for i in range(0, 9600, 1000)]
        assert (torch.cat(parts, -1) - y).abs().max() <= 1e-12
        # and inside a chain, addressed by path
        chain = dspfx.Chain(dyn=unit, out=dspfx.make("gain").double())
        assert torch.allclose(chain(x, **{"dyn.sidechain": key}), y, rtol=1e-6, atol=0)


def test_sidechain_gradients_reach_the_key():
    unit = dspfx.make("compressor", sample_rate=16000, **GRAD_SETTINGS["compressor"]).double()
    x = _noise(40, channels=2, seed=15, dtype=torch.float64).requires_grad_(True)
    key = _noise(40, channels=1, seed=16, scale=0.5, dtype=torch.float64).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x, k: unit(x, sidechain=k), (x, key), eps=1e-7, atol=1e-7)


def test_time_varying_controls_reach_the_functional_core():
    from dspfx.functional import dynamics as FD

    sr, n = 48000, 4800
    x = _noise(n, channels=2, seed=19, scale=0.5, dtype=torch.float64)
    comp = dspfx.make("compressor", sample_rate=sr).double()
    comp.set(ratio=8.0, attack_ms=2.0, release_ms=50.0, knee_db=3.0)
    frames = torch.tensor([[-40.0, -10.0, -30.0]], dtype=torch.float64)  # (batch, frames)
    with torch.no_grad():
        y = comp(x, threshold_db=frames)
        per_sample = dspfx.functional.upsample_control(frames.unsqueeze(-1), n, mode="causal").view(1, 1, n)
        k = comp.knobs()
        expected, _ = FD.compressor(x, per_sample, k["ratio"], k["attack_ms"], k["release_ms"], sr, k["knee_db"], k["makeup_db"])
        assert torch.allclose(y, expected, rtol=1e-12, atol=0)
        # and the sweep matters: a static threshold renders differently
        assert (comp(x, threshold_db=-40.0) - y).abs().max() > 0.01


# ---------------------------------------------------------------------------------------------
# knob ranges, fit, specs, errors
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(UNITS))
def test_every_knob_edge_renders(name):
    x = _noise(2000, channels=2, seed=17, scale=0.5)
    for key, knob in UNITS[name]._class_knobs.items():
        for value in (knob.minimum, knob.maximum):
            unit = dspfx.make(name, **{key: value})
            assert unit.knobs()[key] == value
            with torch.no_grad():
                y = unit(x)
            assert torch.isfinite(y).all(), f"{name}.{key}={value}"
    if name != "limiter":
        unit = dspfx.make(name, ratio=1.0).double()
        x64 = x.double()
        with torch.no_grad():
            assert torch.equal(unit(x64), x64)  # ratio 1 is the identity


def test_fit_recovers_threshold_and_ratio():
    sr = 16000
    x = _with_gap(_guitar(sr, duration_s=1.0), sr, -20.0)[None]
    truth = dict(threshold_db=-24.0, ratio=6.0, attack_ms=5.0, release_ms=80.0)
    with torch.no_grad():
        target = dspfx.make("compressor", sample_rate=sr, **truth)(x)
    model = dspfx.make("compressor", sample_rate=sr, threshold_db=-12.0, ratio=2.0, attack_ms=5.0, release_ms=80.0)
    model.freeze("attack_ms", "release_ms", "knee_db", "makeup_db")
    result = dspfx.fit(model, x, target, steps=150, lr=0.3, loss="esr", align_latency=False, progress=False)
    k = result.knobs
    assert k["threshold_db"] == pytest.approx(-24.0, abs=0.25)
    assert k["ratio"] == pytest.approx(6.0, rel=0.03)
    assert result.metrics["esr"] < 1e-5


def test_spec_round_trip_keeps_the_detector():
    comp = dspfx.make("compressor", detector="rms", threshold_db=-30.0, knee_db=9.0)
    x = _noise(2000, seed=18)
    rebuilt = dspfx.build(comp.spec())
    assert rebuilt.detector == "rms"
    with torch.no_grad():
        assert torch.allclose(rebuilt(x), comp(x), atol=1e-6)


def test_bad_input_raises_clear_errors():
    comp = dspfx.make("compressor")
    x = _noise(100, channels=2)
    with pytest.raises(ValueError, match=r"\(batch, channels, samples\)"):
        comp(x[0])
    with pytest.raises(ValueError, match="sidechain shaped"):
        comp(x, sidechain=_noise(99))
    with pytest.raises(TypeError, match="sidechain must be a torch.Tensor"):
        comp(x, sidechain=[0.0] * 100)
    with pytest.raises(ValueError, match="detector must be one of"):
        dspfx.make("compressor", detector="loudness")
    with pytest.raises(ValueError, match="out of range"):
        comp.set(ratio=0.5)
    with pytest.raises(ValueError, match="out of range"):
        dspfx.make("noise_gate", threshold_db=-120.0)
    with pytest.raises(ValueError, match="outside the knob's range"):
        comp(x, attack_ms=1000.0)
    with pytest.raises(ValueError, match="out of range"):
        dspfx.from_pedalboard(pedalboard.Compressor(threshold_db=6.0), sample_rate=48000)
    with pytest.raises(ValueError, match="no pedalboard twin"):
        dspfx.to_pedalboard(dspfx.make("compressor", knee_db=6.0))
    with pytest.raises(ValueError, match="no pedalboard twin"):
        dspfx.to_pedalboard(dspfx.make("compressor", detector="rms"))
    with pytest.raises(TypeError, match="no pedalboard twin"):
        dspfx.to_pedalboard(dspfx.make("expander"))
    with pytest.raises(KeyError, match="sidechain"):
        dspfx.make("limiter")(x, sidechain=x)
