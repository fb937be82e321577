"""The cabinet: parametric sections, IR convolution, parametric -> IR, gradients, streaming,
save/load, knob recovery, errors."""

import numpy as np
import pytest
import scipy.signal
import torch

import dspfx
import dspfx.amps.cabinet  # noqa: F401  (registers the unit until dspfx.amps imports it)
from dspfx.amps.cabinet import CABINET_SECTIONS, Cabinet

SETTING = dict(
    highpass_hz=110.0, highpass_q=1.2, resonance_hz=130.0, resonance_gain_db=6.0, resonance_q=3.0,
    upper_mid_hz=2200.0, upper_mid_gain_db=5.0, upper_mid_q=1.5, lowpass_hz=4200.0, lowpass_q=0.9,
    notch_hz=7500.0, notch_gain_db=-18.0, notch_q=4.0,
)


def _cab_ir(sample_rate, channels, n=240, seed=0):
    """A short cabinet-like response: damped resonances plus a direct tap."""
    t = np.arange(n) / sample_rate
    rng = np.random.default_rng(seed)
    out = []
    for c in range(channels):
        h = sum(a * np.exp(-t / tau) * np.sin(2 * np.pi * f * t + c) for a, f, tau in
                [(1.0, 120.0, 0.004), (0.5, 2000.0, 0.001), (0.2, 3600.0, 0.0005)])
        h[0] += 0.4
        out.append(h + 0.01 * rng.standard_normal(n))
    return np.asarray(out)


# ---------------------------------------------------------------------------- parametric


@pytest.mark.parametrize("sample_rate", [44100, 48000])
def test_parametric_response_is_the_product_of_its_section_designs(sample_rate):
    cab = Cabinet(sample_rate, **SETTING).double()
    freqs = np.geomspace(20.0, 0.45 * sample_rate, 200)
    product = np.ones(len(freqs), dtype=complex)
    for b, a in cab.sections():
        _, h = scipy.signal.freqz(b.detach().numpy(), a.detach().numpy(), worN=freqs, fs=sample_rate)
        product *= h
    want_db = 20 * np.log10(np.abs(product))
    # the unit's own response ...
    _, got_db = cab.frequency_response(torch.from_numpy(freqs))
    assert np.abs(got_db.detach().numpy() - want_db).max() < 0.01
    # ... and the rendered filter: the spectrum of its (fully decayed) impulse response
    ir = cab.to_ir(1 << 15).detach().numpy()
    _, h_ir = scipy.signal.freqz(ir, [1.0], worN=freqs, fs=sample_rate)
    assert np.abs(20 * np.log10(np.abs(h_ir)) - want_db).max() < 0.01


def test_sections_sit_where_their_knobs_say():
    sr = 48000
    cab = Cabinet(sr, **SETTING).double()
    names = [name for name, _ in CABINET_SECTIONS]
    secs = dict(zip(names, cab.sections()))

    def db_at(section, f):
        b, a = secs[section]
        _, h = scipy.signal.freqz(b.detach().numpy(), a.detach().numpy(), worN=[f], fs=sr)
        return float(20 * np.log10(np.abs(h[0])))

    for peak in ("resonance", "upper_mid", "notch"):
        assert db_at(peak, SETTING[f"{peak}_hz"]) == pytest.approx(SETTING[f"{peak}_gain_db"], abs=1e-6)
    # 12 dB/octave cuts: |H| = q at the corner, -12 dB/octave far from it
    assert db_at("highpass", SETTING["highpass_hz"]) == pytest.approx(20 * np.log10(SETTING["highpass_q"]), abs=1e-6)
    assert db_at("lowpass", SETTING["lowpass_hz"]) == pytest.approx(20 * np.log10(SETTING["lowpass_q"]), abs=1e-6)
    assert db_at("highpass", 5.0) - db_at("highpass", 10.0) == pytest.approx(-12.0, abs=0.1)
    assert db_at("lowpass", 16000.0) - db_at("lowpass", 8000.0) < -12.0  # and faster near Nyquist


def test_parametric_gradcheck_with_time_varying_knobs():
    gen = torch.Generator().manual_seed(1)
    cab = Cabinet(48000).double()
    x = torch.randn(1, 1, 40, dtype=torch.float64, generator=gen, requires_grad=True)
    hp = torch.tensor([[90.0, 140.0, 110.0]], dtype=torch.float64, requires_grad=True)
    gain = torch.tensor([[2.0, 7.0]], dtype=torch.float64, requires_grad=True)
    lp = torch.tensor([4500.0], dtype=torch.float64, requires_grad=True)
    notch = torch.tensor([-20.0], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x, hp, g, lp, n: cab(x, highpass_hz=hp, upper_mid_gain_db=g, lowpass_hz=lp, notch_gain_db=n),
        (x, hp, gain, lp, notch), eps=1e-6, atol=1e-6,
    )
    # every knob reaches the output
    y = cab(x.detach()).square().sum()
    grads = torch.autograd.grad(y, list(cab.raw_knobs.values()))
    assert all(torch.isfinite(g) and g != 0 for g in grads)


def test_every_edge_renders():
    x = torch.randn(1, 2, 1024, generator=torch.Generator().manual_seed(2))
    cab = Cabinet(44100)
    for edge in ("minimum", "maximum"):
        cab.set(**{k: getattr(knob, edge) for k, knob in cab.knob_specs.items()})
        y = cab(x)
        assert torch.isfinite(y).all()
    cab.set(resonance_gain_db=0.0, upper_mid_gain_db=0.0, notch_gain_db=0.0)
    cab = cab.double()
    x = x.double()
    # all peaks flat: the cabinet is the two cuts alone
    alone = [cab.sections()[0], cab.sections()[3]]
    y = x.double()
    for b, a in alone:
        y = torch.from_numpy(scipy.signal.lfilter(b.detach().double().numpy(), a.detach().double().numpy(), y.numpy()))
    assert torch.allclose(cab(x), y, atol=1e-9)


# ---------------------------------------------------------------------------- impulse response


@pytest.mark.parametrize("ir_channels, channels", [(1, 1), (1, 2), (2, 2)])
def test_ir_mode_equals_scipy_fftconvolve(ir_channels, channels):
    sr = 48000
    h = _cab_ir(sr, ir_channels)
    x = torch.randn(2, channels, 3000, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    cab = Cabinet(sr, mode="ir", impulse_response=torch.from_numpy(h)).double()
    h = cab.impulse_response.detach().numpy()  # the response as loaded (rounded to float32)
    assert np.abs(h - _cab_ir(sr, ir_channels)).max() < 1e-6
    got = cab(x).detach().numpy()
    for b in range(2):
        for c in range(channels):
            want = scipy.signal.fftconvolve(x[b, c].numpy(), h[c if ir_channels > 1 else 0])[: x.shape[-1]]
            np.testing.assert_allclose(got[b, c], want, atol=1e-10)


def test_ir_mode_gradcheck():
    gen = torch.Generator().manual_seed(4)
    cab = Cabinet(48000, mode="ir", n_taps=16, init="noise").double()
    x = torch.randn(1, 1, 48, dtype=torch.float64, generator=gen, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: cab(x), (x,), eps=1e-6, atol=1e-6)
    ir = cab.impulse_response

    # gradient w.r.t. the learned response: it equals the input's shifted copies
    y = cab(x.detach()).sum()
    (g,) = torch.autograd.grad(y, [ir])
    xs = x.detach()[0, 0]
    want = torch.stack([xs[: xs.shape[0] - k].sum() for k in range(16)])
    assert torch.allclose(g[0], want, atol=1e-10)


def test_parametric_to_ir_renders_alike():
    sr = 48000
    cab = Cabinet(sr, **SETTING)
    ir_cab = cab.to_ir_cabinet(n_taps=4096)
    assert ir_cab.mode == "ir" and ir_cab.n_taps == 4096 and isinstance(ir_cab.impulse_response, torch.nn.Parameter)
    x = torch.randn(1, 1, 4000, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        a, b = cab(x), ir_cab(x)
    assert float((a - b).square().sum() / a.square().sum()) < 1e-6
    # the rendered response is the parametric filter's impulse response
    impulse = torch.zeros(1, 1, 256)
    impulse[..., 0] = 1.0
    with torch.no_grad():
        assert torch.allclose(cab.to_ir(256), cab(impulse)[0, 0], atol=1e-7)
        assert torch.allclose(ir_cab.to_ir(300)[:256], cab(impulse)[0, 0], atol=1e-6)
        assert torch.all(ir_cab.to_ir(5000)[4096:] == 0)
    # a float64 cabinet hands on its response unrounded
    cab64 = cab.double()
    assert torch.equal(cab64.to_ir_cabinet(512).impulse_response[0], cab64.to_ir(512).detach())


# ---------------------------------------------------------------------------- the contract


@pytest.mark.parametrize("mode", ["parametric", "ir"])
@pytest.mark.parametrize("block", [1, 7, 64, 4096])
def test_streaming_equals_offline(mode, block):
    n = 300 if block == 1 else 800
    x = torch.randn(1, 2, n, generator=torch.Generator().manual_seed(6))
    if mode == "ir":
        cab = Cabinet(48000, mode="ir", impulse_response=torch.from_numpy(_cab_ir(48000, 2)).float())
    else:
        cab = Cabinet(48000, **SETTING)
    with torch.no_grad():
        ref = cab(x)
        stream = dspfx.Stream(cab, batch=1, channels=2)
        got = torch.cat([stream(x[..., i : i + block]) for i in range(0, n, block)], dim=-1)
    assert (got - ref).abs().max() < 1e-5


def test_save_load_round_trips(tmp_path):
    x = torch.randn(1, 1, 1000, generator=torch.Generator().manual_seed(7))
    para = Cabinet(44100, **SETTING)
    learned = Cabinet(44100, mode="ir", n_taps=300, init="noise")
    with torch.no_grad():
        learned.impulse_response.mul_(torch.linspace(1.0, 0.0, 300))  # "learned": not the init
    for unit in (para, learned):
        with torch.no_grad():
            ref = unit(x)
        dspfx.save(unit, tmp_path / "cab.safetensors")
        again = dspfx.load(tmp_path / "cab.safetensors")
        assert isinstance(again, Cabinet) and again.mode == unit.mode
        assert again.knobs() == pytest.approx(unit.knobs())
        with torch.no_grad():
            assert torch.allclose(again(x), ref, atol=1e-6)
    assert torch.equal(dspfx.load(tmp_path / "cab.safetensors").impulse_response, learned.impulse_response.detach())
    # the learned response is a tensor in the file, so a bare spec cannot hold it
    with pytest.raises(ValueError, match="safetensors"):
        dspfx.save(learned, tmp_path / "cab.json")
    dspfx.save(para, tmp_path / "para.json")
    with torch.no_grad():
        assert torch.allclose(dspfx.load(tmp_path / "para.json")(x), para(x), atol=1e-6)


def test_fit_recovers_cutoffs_and_gains():
    sr = 48000
    x = torch.randn(1, 1, sr // 8, generator=torch.Generator().manual_seed(8))
    hidden = dict(highpass_hz=130.0, lowpass_hz=3800.0, resonance_gain_db=7.0, upper_mid_gain_db=1.0)
    with torch.no_grad():
        target = Cabinet(sr, **hidden)(x)
    model = Cabinet(sr).freeze()
    model.unfreeze(*hidden)
    result = dspfx.fit(model, x, target, steps=150, lr=0.05, loss="esr", align_latency=False, progress=False)
    k = result.knobs
    assert k["highpass_hz"] == pytest.approx(130.0, rel=0.05)
    assert k["lowpass_hz"] == pytest.approx(3800.0, rel=0.05)
    assert k["resonance_gain_db"] == pytest.approx(7.0, abs=0.5)
    assert k["upper_mid_gain_db"] == pytest.approx(1.0, abs=0.5)


def test_bad_options_and_knobs_raise(tmp_path):
    with pytest.raises(ValueError, match="mode"):
        Cabinet(48000, mode="mic")
    with pytest.raises(ValueError, match="mode='ir'"):
        Cabinet(48000, impulse_response=torch.ones(8))
    with pytest.raises(ValueError, match="n_taps"):
        Cabinet(48000, mode="ir", impulse_response=torch.ones(8), n_taps=9)
    with pytest.raises(ValueError, match="NaN"):
        Cabinet(48000, mode="ir", impulse_response=torch.tensor([1.0, float("nan")]))
    with pytest.raises(ValueError, match="init"):
        Cabinet(48000, mode="ir", init="zeros")
    with pytest.raises(ValueError, match="out of range"):
        Cabinet(48000, lowpass_hz=30000.0)
    with pytest.raises(TypeError, match="unknown"):
        Cabinet(48000, mode="ir", lowpass_hz=3000.0)
    with pytest.raises(ValueError, match="channels"):
        Cabinet(48000, mode="ir", ir_channels=2, n_taps=8)(torch.zeros(1, 3, 16))
    with pytest.raises(ValueError, match="n_taps"):
        Cabinet(48000).to_ir(0)
    with pytest.raises(FileNotFoundError):
        Cabinet(48000, mode="ir", impulse_response=str(tmp_path / "missing.wav"))


def test_float32_render_equals_float64_render():
    # the parametric recursions run in float64: a float32 cabinet only rounds its output
    x = torch.randn(1, 2, 8000, generator=torch.Generator().manual_seed(9))
    cab = Cabinet(48000, **SETTING)
    with torch.no_grad():
        y32 = cab(x)
        y64 = cab.double()(x.double())
    assert y32.dtype == torch.float32
    assert (y32.double() - y64).abs().max() < 1e-6 * max(1.0, float(y64.abs().max()))
