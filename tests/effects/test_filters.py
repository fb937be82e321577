"""The biquad unit: scipy agreement for every mode, pedalboard twins, gradients, streaming, files."""

import json

import numpy as np
import pedalboard
import pytest
import scipy.signal
import torch

import dspfx
from dspfx.effects import BIQUAD_MODES
from dspfx.signals import guitar_di
from dspfx.fitting.metrics import esr


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
    fc, gain_db = 2000.0, 9.0
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
    # range edges, where float32 roundoff decides (the twin runs JUCE's TDF-II arithmetic)
    (pedalboard.LowShelfFilter, dict(cutoff_frequency_hz=20.0, gain_db=-24.0, q=20.0)),
    (pedalboard.HighShelfFilter, dict(cutoff_frequency_hz=20.0, gain_db=-24.0, q=20.0)),
    (pedalboard.HighShelfFilter, dict(cutoff_frequency_hz=20.0, gain_db=-24.0, q=0.1)),
    (pedalboard.PeakFilter, dict(cutoff_frequency_hz=20.0, gain_db=24.0, q=20.0)),
    (pedalboard.PeakFilter, dict(cutoff_frequency_hz=20000.0, gain_db=24.0, q=20.0)),
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


# ============================================================================ one_pole


@pytest.mark.parametrize("mode", ["lowpass", "highpass"])
@pytest.mark.parametrize("cutoff", [20.0, 440.0, 5000.0, 20000.0])
@pytest.mark.parametrize("sample_rate", [44100, 48000])
def test_one_pole_equals_scipy_bilinear_design(mode, cutoff, sample_rate):
    # scipy's own bilinear transform of the analog prototype wc/(s+wc) (LP) or s/(s+wc) (HP),
    # prewarped at the cutoff: no clamping, even at 20 kHz at 44.1 kHz (like pedalboard)
    unit = dspfx.make("one_pole", mode=mode, sample_rate=sample_rate).double()
    unit.set(cutoff_hz=cutoff)
    wc = 2 * sample_rate * np.tan(np.pi * cutoff / sample_rate)
    analog = ([wc], [1.0, wc]) if mode == "lowpass" else ([1.0, 0.0], [1.0, wc])
    b, a = scipy.signal.bilinear(*analog, fs=sample_rate)
    x = _noise(channels=2)
    expected = scipy.signal.lfilter(b, a, x.numpy(), axis=-1)
    np.testing.assert_allclose(unit(x).detach().numpy(), expected, rtol=1e-8, atol=1e-11)
    _, db = unit.frequency_response(torch.tensor([cutoff], dtype=torch.float64))
    assert float(db.detach()) == pytest.approx(-3.0103, abs=1e-3)
    w, h = scipy.signal.freqz(b, a, worN=[cutoff / 4, cutoff], fs=sample_rate)
    _, db2 = unit.frequency_response(torch.tensor(w, dtype=torch.float64))
    np.testing.assert_allclose(db2.detach().numpy(), 20 * np.log10(np.abs(h)), atol=1e-9)


ONE_POLE_SETTINGS = [
    (pedalboard.LowpassFilter, 20.0),
    (pedalboard.LowpassFilter, 50.0),
    (pedalboard.LowpassFilter, 1500.0),
    (pedalboard.LowpassFilter, 20000.0),  # near Nyquist at 44.1 kHz: pedalboard does not clamp
    (pedalboard.HighpassFilter, 20.0),
    (pedalboard.HighpassFilter, 700.0),
    (pedalboard.HighpassFilter, 20000.0),
]


@pytest.mark.parametrize("sample_rate", [44100, 48000])
@pytest.mark.parametrize("cls, cutoff", ONE_POLE_SETTINGS, ids=lambda v: getattr(v, "__name__", str(v)))
def test_one_pole_twins_match_pedalboard(cls, cutoff, sample_rate):
    plugin = cls(cutoff_frequency_hz=cutoff)
    twin = dspfx.from_pedalboard(plugin, sample_rate=sample_rate)
    assert twin.name == "one_pole" and twin.knobs()["cutoff_hz"] == pytest.approx(cutoff, rel=1e-6)
    back = dspfx.to_pedalboard(twin)
    assert type(back) is cls and back.cutoff_frequency_hz == pytest.approx(cutoff, rel=1e-5)
    guitar = guitar_di(sample_rate=sample_rate, duration_s=1.0)[0]
    signals = [
        _noise(n=sample_rate // 2, channels=2, dtype=torch.float32)[0],  # stereo noise
        _noise(n=sample_rate // 4, channels=1, dtype=torch.float32, seed=5)[0],  # mono noise
        guitar,  # mono guitar
        torch.cat([guitar, -0.7 * guitar.roll(1000, -1)]),  # stereo guitar
    ]
    for x in signals:
        ref = torch.from_numpy(plugin(x.numpy(), sample_rate))
        with torch.no_grad():
            y = twin(x.unsqueeze(0))[0]
        assert float(esr(y.double(), ref.double())) <= 1e-6


def test_one_pole_keeps_the_design_below_nyquist_at_low_sample_rates():
    # at 16 kHz the knob range reaches past Nyquist: the design is held at Nyquist - 100 Hz
    x = _noise(n=2000)
    unit = dspfx.make("one_pole", mode="lowpass", sample_rate=16000, cutoff_hz=20000.0).double()
    y = unit(x)
    assert torch.isfinite(y).all()
    ref = dspfx.make("one_pole", mode="lowpass", sample_rate=16000, cutoff_hz=7900.0).double()
    ref.set(cutoff_hz=7900.0)
    assert torch.allclose(y, ref(x), atol=1e-12)


def test_one_pole_gradcheck_knob_and_time_varying_cutoff():
    unit = dspfx.make("one_pole", mode="highpass", cutoff_hz=300.0).double()
    x = torch.randn(2, 2, 48, dtype=torch.float64, requires_grad=True)
    sweep = torch.tensor([[300.0, 5000.0, 60.0], [20.0, 800.0, 20000.0]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, c: unit(x, cutoff_hz=c), (x, sweep), eps=1e-6, atol=1e-6)
    knob = unit.knob_specs["cutoff_hz"]
    raw = unit.raw_knobs["cutoff_hz"].detach().clone().requires_grad_(True)
    through_knob = lambda r: unit(x.detach(), cutoff_hz=knob.to_physical(r))  # noqa: E731
    assert torch.autograd.gradcheck(through_knob, (raw,), eps=1e-6, atol=1e-6)
    # and the knob's own parameter gets its gradient in a plain render
    unit(x.detach()).square().sum().backward()
    assert unit.raw_knobs["cutoff_hz"].grad is not None and unit.raw_knobs["cutoff_hz"].grad.abs() > 0


@pytest.mark.parametrize("block", [1, 7, 64, 4096])
def test_one_pole_streaming_equals_offline(block):
    unit = dspfx.make("one_pole", mode="lowpass", cutoff_hz=350.0)
    x = _noise(n=1000 if block < 64 else 5000, channels=2, dtype=torch.float32)
    with torch.no_grad():
        offline = unit(x)
        stream = dspfx.Stream(unit, batch=1, channels=2)
        streamed = torch.cat([stream(x[..., i : i + block]) for i in range(0, x.shape[-1], block)], dim=-1)
    assert (streamed - offline).abs().max() <= 1e-5


def test_one_pole_spec_and_file_round_trips(tmp_path):
    unit = dspfx.make("one_pole", mode="highpass", cutoff_hz=123.0, sample_rate=44100)
    x = _noise(n=2048, dtype=torch.float32)
    with torch.no_grad():
        ref = unit(x)
        built = dspfx.build(unit.spec())
        assert built.mode == "highpass" and built.sample_rate == 44100
        assert torch.allclose(built(x), ref, atol=1e-6)
        for name in ("hp.safetensors", "hp.json"):
            dspfx.save(unit, tmp_path / name)
            assert torch.allclose(dspfx.load(tmp_path / name)(x), ref, atol=1e-6)


def test_one_pole_bad_inputs_raise():
    with pytest.raises(ValueError, match="one_pole mode must be one of lowpass, highpass; got 'bandpass'"):
        dspfx.make("one_pole", mode="bandpass")
    with pytest.raises(ValueError, match="cutoff_hz = 10 Hz is out of range"):
        dspfx.make("one_pole", cutoff_hz=10.0)
    with pytest.raises(ValueError, match="out of range"):
        dspfx.from_pedalboard(pedalboard.LowpassFilter(cutoff_frequency_hz=21000.0), sample_rate=48000)
    unit = dspfx.make("one_pole")
    with pytest.raises(ValueError, match="outside the knob's range"):
        unit(_noise(n=64, dtype=torch.float32), cutoff_hz=torch.tensor([[100.0, 30000.0]]))
    with pytest.raises(ValueError, match=r"\(batch, channels, samples\)"):
        unit(torch.zeros(64))


# ============================================================================ fir


@pytest.mark.parametrize("n_bands, n_taps", [(65, None), (33, 64), (65, 129)])
def test_fir_impulse_response_meets_its_design(n_bands, n_taps):
    # a plateau at 0 dB, a step down to -12 dB, then up to -6 dB (bands 20 and 41 of 65)
    edges = [round(e * (n_bands - 1) / 64) for e in (20, 41)]
    mags = torch.ones(n_bands, dtype=torch.float64)
    mags[edges[0] : edges[1]] = 0.25
    mags[edges[1] :] = 0.5
    unit = dspfx.make("fir", n_bands=n_bands, n_taps=n_taps, magnitudes=mags).double()
    n_taps = unit.n_taps
    assert unit.latency_samples == n_taps // 2
    impulse = torch.zeros(1, 1, 4 * n_taps, dtype=torch.float64)
    impulse[..., 0] = 1.0
    ir = unit(impulse)[0, 0].detach().numpy()
    assert np.all(ir[n_taps:] == 0)  # finite
    taps = ir[:n_taps]
    c = n_taps // 2
    k = min(c, n_taps - 1 - c)
    np.testing.assert_allclose(taps[c - k : c][::-1], taps[c + 1 : c + k + 1], atol=1e-15)  # linear phase
    # response at the band centres (DFT at f_i = i * sr / (2 (n_bands - 1)))
    n_fft = 2 * (n_bands - 1)
    freqs = np.arange(n_bands) * unit.sample_rate / n_fft
    _, h = scipy.signal.freqz(taps, [1.0], worN=freqs, fs=unit.sample_rate)
    db = 20 * np.log10(np.abs(h))
    want = 20 * np.log10(mags.numpy())
    away = np.ones(n_bands, bool)
    for e in edges:
        away[max(e - 3, 0) : e + 3] = False
    assert away.sum() > n_bands // 2
    np.testing.assert_allclose(db[away], want[away], atol=0.1)
    # the phase is linear: a pure delay of n_taps // 2 samples
    np.testing.assert_allclose(
        np.angle(h[away] * np.exp(2j * np.pi * freqs[away] * c / unit.sample_rate)), 0.0, atol=1e-9
    )


def test_fir_equals_scipy_lfilter_with_its_taps():
    rng = np.random.default_rng(2)
    mags = torch.from_numpy(rng.uniform(0.0, 2.0, 33))
    unit = dspfx.make("fir", n_bands=33, magnitudes=mags).double()
    taps = unit.impulse_response().detach().numpy()
    x = _noise(n=3000, channels=2)
    np.testing.assert_allclose(
        unit(x).detach().numpy(), scipy.signal.lfilter(taps, [1.0], x.numpy(), axis=-1), rtol=1e-9, atol=1e-12
    )
    # all ones is a pure delay of latency_samples
    delay = dspfx.make("fir").double()
    y = delay(x)
    assert torch.allclose(y[..., delay.latency_samples :], x[..., : -delay.latency_samples], atol=1e-12)


def test_fir_time_varying_frames_follow_the_interpolated_design():
    torch.manual_seed(1)
    unit = dspfx.make("fir", n_bands=9).double()
    x = torch.randn(2, 2, 60, dtype=torch.float64)
    frames = torch.rand(2, 4, 9, dtype=torch.float64)
    y = unit(x, magnitudes=frames)
    # reference: per-sample magnitudes (linear upsampling, as every control), per-sample taps
    per_sample = dspfx.functional.upsample_control(frames, 60, mode="causal")
    taps = dspfx.functional.fir_from_magnitudes(per_sample, unit.n_taps)  # (2, 60, 16)
    x_ext = torch.nn.functional.pad(x, (unit.n_taps - 1, 0))
    ref = torch.stack(
        [(taps[:, None, n, :] * x_ext[..., n : n + unit.n_taps].flip(-1)).sum(-1) for n in range(60)], dim=-1
    )
    assert torch.allclose(y, ref, atol=1e-12)
    # constant frames == the static filter; (batch, n_bands) == constant in time
    const = frames[:, :1].expand(2, 5, 9)
    assert torch.allclose(unit(x, magnitudes=const), unit(x, magnitudes=frames[:, 0]), atol=1e-12)


def test_fir_gradcheck_magnitude_frames_and_parameter():
    unit = dspfx.make("fir", n_bands=5).double()
    x = torch.randn(1, 1, 24, dtype=torch.float64, requires_grad=True)
    frames = torch.rand(1, 3, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, m: unit(x, magnitudes=m), (x, frames), eps=1e-6, atol=1e-7)
    static = torch.rand(1, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda m: unit(x.detach(), magnitudes=m), (static,), eps=1e-6, atol=1e-7)
    raw = unit.raw_magnitudes

    def through_parameter(r):
        raw.data = r.detach().clone()
        return unit(x.detach(), magnitudes=torch.nn.functional.softplus(r).unsqueeze(0))

    r0 = raw.detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(through_parameter, (r0,), eps=1e-6, atol=1e-7)
    unit.zero_grad()
    unit(x.detach()).square().sum().backward()
    assert unit.raw_magnitudes.grad is not None and unit.raw_magnitudes.grad.abs().sum() > 0


@pytest.mark.parametrize("block", [1, 7, 64, 4096])
def test_fir_streaming_equals_offline(block):
    rng = np.random.default_rng(4)
    unit = dspfx.make("fir", magnitudes=rng.uniform(0.0, 1.5, 65))
    x = _noise(n=1000 if block < 64 else 5000, channels=2, dtype=torch.float32)
    with torch.no_grad():
        offline = unit(x)
        stream = dspfx.Stream(unit, batch=1, channels=2)
        streamed = torch.cat([stream(x[..., i : i + block]) for i in range(0, x.shape[-1], block)], dim=-1)
    assert (streamed - offline).abs().max() <= 1e-5


def test_fir_spec_and_file_round_trips(tmp_path):
    rng = np.random.default_rng(5)
    unit = dspfx.make("fir", n_bands=17, n_taps=40, sample_rate=16000, magnitudes=rng.uniform(0, 2, 17))
    x = _noise(n=1000, dtype=torch.float32)
    with torch.no_grad():
        ref = unit(x)
        spec = unit.spec()
        json.dumps(spec)
        built = dspfx.build(spec)
        assert (built.n_bands, built.n_taps, built.sample_rate) == (17, 40, 16000)
        assert torch.allclose(built(x), ref, atol=1e-6)
        dspfx.save(unit, tmp_path / "fir.safetensors")
        loaded = dspfx.load(tmp_path / "fir.safetensors")
        assert torch.equal(loaded.raw_magnitudes, unit.raw_magnitudes)
        assert torch.allclose(loaded(x), ref, atol=1e-7)
        with pytest.raises(ValueError, match="learned tensors"):
            dspfx.save(unit, tmp_path / "fir.json")
        # a chain carries it too, with its control addressed by path
        chain = dspfx.Chain(gain=dspfx.make("gain", gain_db=-3.0, sample_rate=16000), tone=unit)
        frames = torch.rand(1, 4, 17)
        dspfx.save(chain, tmp_path / "chain.safetensors")
        again = dspfx.load(tmp_path / "chain.safetensors")
        controls = {"tone.magnitudes": frames}
        assert torch.allclose(again(x, **controls), chain(x, **controls), atol=1e-6)
        assert chain.latency_samples == 20


def test_fir_bad_inputs_raise():
    with pytest.raises(ValueError, match="n_bands must be an int >= 2, got 1"):
        dspfx.make("fir", n_bands=1)
    with pytest.raises(ValueError, match="n_taps must be an int >= 1"):
        dspfx.make("fir", n_taps=0)
    with pytest.raises(ValueError, match="window must be one of hann, rectangular; got 'kaiser'"):
        dspfx.make("fir", window="kaiser")
    with pytest.raises(ValueError, match="must hold n_bands = 65 values"):
        dspfx.make("fir", magnitudes=[1.0, 2.0])
    with pytest.raises(ValueError, match=">= 0"):
        dspfx.make("fir", n_bands=3, magnitudes=[1.0, -0.5, 1.0])
    unit = dspfx.make("fir", n_bands=5)
    x = _noise(n=100, dtype=torch.float32)
    with pytest.raises(ValueError, match=">= 0"):
        unit(x, magnitudes=-torch.rand(1, 3, 5))
    with pytest.raises(ValueError):
        unit(x, magnitudes=torch.rand(1, 3, 6))
    with pytest.raises(KeyError, match="cutoff_hz"):
        unit(x, cutoff_hz=100.0)
    with pytest.raises(TypeError, match="unknown knob or option 'n_band'"):
        dspfx.make("fir", n_band=5)


def test_biquad_renders_without_autograd_follow_knob_and_mode_changes():
    """Without autograd the biquad reuses its design while its knobs stay put; a changed knob, mode
    or control is designed afresh, and every render equals the differentiable one."""
    import scipy.signal

    x = torch.randn(1, 1, 512, dtype=torch.float64)
    unit = dspfx.make("biquad", sample_rate=48000, mode="peak", cutoff_hz=1000.0, gain_db=6.0, q=1.0).double()

    def expected():
        b, a = (c.detach().reshape(-1).numpy() for c in unit.coefficients())
        return torch.from_numpy(scipy.signal.lfilter(b, a, x[0, 0].numpy())).view(1, 1, -1)

    for change in (None, dict(gain_db=-3.0), dict(cutoff_hz=250.0), "lowshelf"):
        if isinstance(change, dict):
            unit.set(**change)
        elif change is not None:
            unit.mode = change
        with torch.no_grad():
            first, again = unit(x), unit(x)
        assert torch.equal(first, again)
        assert torch.equal(first, unit(x.clone().requires_grad_()).detach())
        torch.testing.assert_close(first, expected(), rtol=0, atol=1e-12)
    with torch.no_grad():  # a control given in the call wins over the kept design
        torch.testing.assert_close(unit(x, gain_db=0.0), x, rtol=0, atol=1e-12)


def test_fir_constant_frames_take_the_static_path_and_equal_the_time_varying_one():
    rng = np.random.default_rng(6)
    unit = dspfx.make("fir", magnitudes=rng.uniform(0.0, 1.5, 65)).double()
    x = _noise(n=6000, channels=2)
    frames = torch.from_numpy(rng.uniform(0.0, 1.5, (1, 1, 65))).expand(1, 6, 65)
    taps = unit.impulse_response(frames)  # 6 equal frames: forces the per-frame (segment) path
    time_varying, _ = dspfx.functional.fir_filter(x, taps)
    with torch.no_grad():
        fast = unit(x, magnitudes=frames)  # detected constant: designed once, one FFT convolution
    assert torch.allclose(fast, time_varying, rtol=0, atol=1e-12)
    with torch.no_grad():  # and it streams
        stream = dspfx.Stream(unit, batch=1, channels=2)
        streamed = torch.cat([stream(x[..., i : i + 1500], magnitudes=frames) for i in range(0, 6000, 1500)], -1)
    assert (streamed - fast).abs().max() <= 1e-12
