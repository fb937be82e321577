"""The biquad unit: scipy agreement for every mode, pedalboard twins, gradients, streaming, files."""

import numpy as np
import pedalboard
import pytest
import scipy.signal
import torch

import dspfx
from dspfx.effects import BIQUAD_MODES
from dspfx.signals import guitar_di
from dspfx.train.metrics import esr


def _noise(n=4800, channels=1, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return 0.3 * torch.randn(1, channels, n, generator=g, dtype=dtype)


@pytest.mark.parametrize("mode", BIQUAD_MODES)
def test_every_mode_equals_scipy_lfilter(mode):
    unit = dspfx.make("biquad", mode=mode, cutoff_hz=1234.0, q=1.7, gain_db=-7.5).double()
    unit.set(cutoff_hz=1234.0, q=1.7, gain_db=-7.5)  # set again in float64 for exact knobs
    b, a = unit.coefficients()
    b, a = b.detach().numpy(), a.detach().numpy()
    x = _noise(channels=2)
    expected = scipy.signal.lfilter(b, a, x.numpy(), axis=-1)
    np.testing.assert_allclose(unit(x).detach().numpy(), expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("mode", BIQUAD_MODES)
def test_every_mode_has_its_textbook_response(mode):
    fc, gain_db, sr = 2000.0, 9.0, 48000
    unit = dspfx.make("biquad", mode=mode, cutoff_hz=fc, q=0.7071, gain_db=gain_db).double()
    unit.set(cutoff_hz=fc, gain_db=gain_db)
    freqs = torch.tensor([10.0, fc, 23000.0], dtype=torch.float64)
    _, db = unit.frequency_response(freqs)
    lo, at, hi = db.tolist()
    expect = {
        "lowpass": (0.0, -3.01, None),
        "highpass": (None, -3.01, 0.0),
        "bandpass": (None, 0.0, None),
        "notch": (0.0, None, 0.0),
        "allpass": (0.0, 0.0, 0.0),
        "peak": (0.0, gain_db, 0.0),
        "lowshelf": (gain_db, gain_db / 2, 0.0),
        "highshelf": (0.0, gain_db / 2, gain_db),
    }[mode]
    for got, want in zip((lo, at, hi), expect):
        if want is not None:
            assert got == pytest.approx(want, abs=0.05)
    if mode == "notch":
        assert at < -100
    if mode == "lowpass":
        assert hi < -40
    if mode == "highpass":
        assert lo < -60


PEDALBOARD_SETTINGS = [
    (pedalboard.PeakFilter, dict(cutoff_frequency_hz=900.0, gain_db=6.0, q=1.4)),
    (pedalboard.PeakFilter, dict(cutoff_frequency_hz=60.0, gain_db=-18.0, q=8.0)),
    (pedalboard.LowShelfFilter, dict(cutoff_frequency_hz=180.0, gain_db=-5.0, q=0.7071)),
    (pedalboard.LowShelfFilter, dict(cutoff_frequency_hz=2500.0, gain_db=12.0, q=2.0)),
    (pedalboard.HighShelfFilter, dict(cutoff_frequency_hz=3500.0, gain_db=-8.0, q=0.7071)),
    (pedalboard.HighShelfFilter, dict(cutoff_frequency_hz=19000.0, gain_db=24.0, q=0.3)),
    (pedalboard.Gain, dict(gain_db=-13.5)),
    (pedalboard.Distortion, dict(drive_db=20.0)),
    (pedalboard.Distortion, dict(drive_db=0.0)),
]


@pytest.mark.parametrize("sample_rate", [44100, 48000])
@pytest.mark.parametrize("cls, settings", PEDALBOARD_SETTINGS, ids=lambda v: getattr(v, "__name__", str(v)))
def test_twins_match_pedalboard_on_noise_and_guitar(cls, settings, sample_rate):
    plugin = cls(**settings)
    twin = dspfx.from_pedalboard(plugin, sample_rate=sample_rate)
    assert type(dspfx.to_pedalboard(twin)) is cls
    signals = [
        _noise(n=sample_rate // 2, channels=2, dtype=torch.float32)[0],
        guitar_di(sample_rate=sample_rate, duration_s=1.0)[0],
    ]
    for x in signals:
        ref = torch.from_numpy(plugin(x.numpy(), sample_rate))
        with torch.no_grad():
            y = twin(x.unsqueeze(0))[0]
        assert float(esr(y.double(), ref.double())) <= 1e-6


def test_to_pedalboard_round_trips_settings():
    eq = dspfx.make("biquad", mode="highshelf", cutoff_hz=3000.0, q=0.9, gain_db=-4.0)
    plugin = dspfx.to_pedalboard(eq)
    assert isinstance(plugin, pedalboard.HighShelfFilter)
    assert plugin.cutoff_frequency_hz == pytest.approx(3000.0, rel=1e-5)
    assert plugin.gain_db == pytest.approx(-4.0, abs=1e-5)
    assert plugin.q == pytest.approx(0.9, rel=1e-5)
    with pytest.raises(ValueError, match="mode 'lowpass' has no pedalboard twin"):
        dspfx.to_pedalboard(dspfx.make("biquad", mode="lowpass"))


def test_time_varying_biquad_gradcheck_float64():
    torch.manual_seed(0)
    unit = dspfx.make("biquad", mode="peak").double()
    x = torch.randn(2, 1, 40, dtype=torch.float64, requires_grad=True)
    cutoff = torch.tensor([[300.0, 2000.0, 800.0], [5000.0, 100.0, 1000.0]], dtype=torch.float64, requires_grad=True)
    q = torch.tensor([0.5, 3.0], dtype=torch.float64, requires_grad=True)
    gain = torch.tensor([[6.0, -12.0], [0.0, 9.0]], dtype=torch.float64, requires_grad=True)

    def render(x, cutoff, q, gain):
        return unit(x, cutoff_hz=cutoff, q=q, gain_db=gain)

    assert torch.autograd.gradcheck(render, (x, cutoff, q, gain), eps=1e-6, atol=1e-6)


def test_knob_gradients_match_finite_differences():
    unit = dspfx.make("biquad", mode="lowshelf", cutoff_hz=500.0, q=1.2, gain_db=5.0).double()
    x = _noise(n=256)
    params = [unit.raw_knobs[k] for k in ("cutoff_hz", "q", "gain_db")]

    def loss(*raw):
        for p, r in zip(params, raw):
            p.data = r.detach().clone()
        return unit(x).square().sum()

    raws = [p.detach().clone().requires_grad_(True) for p in params]

    def f(*raw):
        # route the raw values through the knob maps, as a fit does
        out = unit(x, **{k: unit.knob_specs[k].to_physical(r) for k, r in zip(("cutoff_hz", "q", "gain_db"), raw)})
        return out.square().sum()

    assert torch.autograd.gradcheck(f, tuple(raws), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("block", [1, 7, 64, 4096])
def test_streaming_in_blocks_equals_offline(block):
    unit = dspfx.make("biquad", mode="peak", cutoff_hz=700.0, q=2.0, gain_db=9.0)
    x = _noise(n=6000, channels=2, dtype=torch.float32)
    with torch.no_grad():
        offline = unit(x)
        stream = dspfx.Stream(unit, batch=1, channels=2)
        streamed = torch.cat([stream(x[..., i : i + block]) for i in range(0, x.shape[-1], block)], dim=-1)
    assert (streamed - offline).abs().max() <= 1e-5


def test_streaming_a_chain_with_per_block_controls_equals_offline_piecewise():
    chain = dspfx.Chain(drive=dspfx.make("distortion", drive_db=12.0), tone=dspfx.make("biquad", mode="lowpass"))
    x = _noise(n=1000, dtype=torch.float32)
    with torch.no_grad():
        stream = dspfx.Stream(chain)
        a = stream(x[..., :500], **{"tone.cutoff_hz": 500.0})
        b = stream(x[..., 500:], **{"tone.cutoff_hz": 500.0})
        offline = chain(x, **{"tone.cutoff_hz": 500.0})
    assert torch.allclose(torch.cat([a, b], -1), offline, atol=1e-5)


def test_spec_and_file_round_trips_render_identically(tmp_path):
    eq = dspfx.make("biquad", mode="lowshelf", cutoff_hz=220.0, q=0.9, gain_db=-3.5)
    x = _noise(n=2048, dtype=torch.float32)
    with torch.no_grad():
        ref = eq(x)
        assert torch.allclose(dspfx.build(eq.spec())(x), ref, atol=1e-6)
        for name in ("eq.safetensors", "eq.json"):
            dspfx.save(eq, tmp_path / name)
            loaded = dspfx.load(tmp_path / name)
            assert loaded.mode == "lowshelf"
            assert torch.allclose(loaded(x), ref, atol=1e-6)


def test_biquad_fit_recovers_cutoff_and_gain():
    sr = 48000
    x = _noise(n=sr // 2, dtype=torch.float32, seed=3)
    truth = dspfx.make("biquad", mode="peak", cutoff_hz=2500.0, q=2.0, gain_db=8.0)
    with torch.no_grad():
        target = truth(x)
    model = dspfx.make("biquad", mode="peak").freeze("q")
    model.set(q=2.0)
    result = dspfx.fit(model, x, target, steps=150, lr=0.05, loss="mrstft+esr", progress=False)
    k = result.knobs
    assert k["cutoff_hz"] == pytest.approx(2500.0, rel=0.02)
    assert k["gain_db"] == pytest.approx(8.0, abs=0.25)
    assert result.metrics["esr"] < 1e-3
