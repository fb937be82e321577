"""Tests of the neural waveshaping units (dspfx.synths.waveshaper): waveshaper and waveshaper_fx."""

import math

import numpy as np
import pytest
import torch
from torch.func import functional_call

import dspfx
import dspfx.synths.waveshaper  # noqa: F401  (registers the units)
from dspfx.functional.control import upsample_control
from dspfx.functional.waveshaper import chebyshev_shaper
from dspfx.synths.waveshaper import Waveshaper, WaveshaperFX

D = torch.float64
SR = 16000


def _single(order=8, f0=1000.0, sr=SR, coefficients=None):
    synth = Waveshaper(sample_rate=sr, n_shapers=1, order=order, f0_hz=f0).double()
    with torch.no_grad():
        synth.output_gain.fill_(1.0)
        if coefficients is not None:
            synth.coefficients.copy_(torch.as_tensor(coefficients, dtype=D).reshape(1, order))
    return synth


def _spectrum_db(y):
    mag = np.abs(np.fft.rfft(y)) * 2 / len(y)
    return 20 * np.log10(mag + 1e-300)


@pytest.mark.parametrize("k", [1, 2, 3, 5, 7])
def test_single_coefficient_puts_the_peak_at_k_f0(k):
    c = np.zeros(8)
    c[k - 1] = 1.0
    y = _single(coefficients=c)(n_samples=SR)[0, 0].detach().numpy()  # 1 s: 1 Hz bins
    db = _spectrum_db(y)
    assert np.argmax(db) == k * 1000
    assert abs(db[k * 1000]) < 1e-6  # T_k(cos) = cos(k theta) at full level
    others = np.delete(db, k * 1000)
    assert others.max() < -100


def test_band_limit_nothing_folds_back():
    # f0 = 3 kHz at 16 kHz: orders 1, 2 lie below Nyquist (8 kHz); orders 3..8 would fold back
    # to 7, 4, 1, 2, 5, 8 kHz. The per-order mask zeroes them; gains/offsets keep the polynomial
    # degree, so the limit holds for any input gain and offset.
    synth = _single(f0=3000.0, coefficients=np.ones(8))
    gain, offset = torch.tensor([[0.7]], dtype=D), torch.tensor([[0.25]], dtype=D)
    y = synth(n_samples=SR, input_gain=gain, input_offset=offset)[0, 0].detach().numpy()
    p = np.abs(np.fft.rfft(y)) ** 2
    folded = [7000, 4000, 1000, 2000, 5000]
    assert p[folded].sum() < 1e-6 * p[3000]  # 60 dB below the fundamental
    off = np.ones(len(p), bool)
    off[[0, 3000, 6000]] = False
    assert p[off].sum() < 1e-6 * p[3000]
    # without the mask the same shaper aliases strongly (the test can fail)
    t = np.arange(SR) / SR
    u = torch.as_tensor(0.7 * np.cos(2 * np.pi * 3000 * t) + 0.25).reshape(1, 1, -1)
    raw = chebyshev_shaper(u, torch.ones(1, 8, dtype=D))[0, 0].numpy()
    p_raw = np.abs(np.fft.rfft(raw)) ** 2
    assert p_raw[folded].sum() > 1e-2 * p_raw[3000]


def test_band_limit_follows_f0_per_sample():
    # a sweep through the mask edges: the render equals the band-limited reference sum of
    # cos(k theta) over the orders with k f0 < Nyquist, sample by sample
    synth = _single(f0=1000.0, coefficients=np.ones(8))
    f0 = torch.linspace(500.0, 4000.0, 8, dtype=D).reshape(1, 8)
    y = synth(n_samples=4000, f0_hz=f0)[0, 0]
    f = upsample_control(f0.reshape(1, 8, 1), 4000, mode="causal")[0, :, 0]  # the units' frame timing
    theta = 2 * math.pi * torch.cat([torch.zeros(1, dtype=D), torch.cumsum(f / SR, 0)[:-1]])
    ref = sum(torch.cos(k * theta) * (k * f < SR / 2) for k in range(1, 9))
    assert (y - ref).abs().max() < 1e-9


@pytest.mark.parametrize("shaper", ["chebyshev", "both"])
def test_streaming_equals_offline(shaper):
    synth = Waveshaper(sample_rate=SR, n_shapers=3, order=6, shaper=shaper, hidden=4, f0_hz=440.0)
    controls = dict(input_gain=torch.tensor([[0.9, 0.5, 0.7]]), output_offset=torch.tensor([[0.0, 0.1, -0.1]]))
    n = 4096
    with torch.no_grad():
        y = synth(n_samples=n, **controls)
        for block in (1, 7, 64, 4096):
            m = 500 if block == 1 else n
            stream = dspfx.Stream(synth)
            out = torch.cat([stream(n_samples=min(block, m - i), **controls) for i in range(0, m, block)], dim=-1)
            assert (out - y[..., :m]).abs().max() < 1e-5, block


def test_gradcheck_f0_controls_and_coefficients():
    synth = Waveshaper(sample_rate=8000, n_shapers=2, order=4, f0_hz=300.0).double()
    f0 = torch.tensor([[300.0, 420.0, 350.0]], dtype=D, requires_grad=True)
    ctl = {k: (torch.rand(1, 3, 2, dtype=D) * 0.4 + 0.3).requires_grad_() for k in
           ("input_gain", "input_offset", "output_gain", "output_offset")}
    coef = torch.randn(2, 4, dtype=D, requires_grad=True)

    def render(f, c, a, b, g, d):
        return functional_call(synth, {"coefficients": c}, args=(), kwargs=dict(
            n_samples=48, f0_hz=f, input_gain=a, input_offset=b, output_gain=g, output_offset=d))

    assert torch.autograd.gradcheck(render, (f0, coef, *ctl.values()))
    # the MLP shapers and the learnable mix too
    mlp = Waveshaper(sample_rate=8000, n_shapers=2, shaper="mlp", hidden=3, depth=2, mix="learnable").double()
    params = [mlp.mlp_weights[0], mlp.mlp_biases[1], mlp.mix_weights, mlp.input_gain]
    names = ["mlp_weights.0", "mlp_biases.1", "mix_weights", "input_gain"]
    inputs = tuple(p.detach().clone().requires_grad_() for p in params)
    assert torch.autograd.gradcheck(
        lambda *ps: functional_call(mlp, dict(zip(names, ps)), args=(), kwargs=dict(n_samples=32)), inputs)


def test_fit_recovers_chebyshev_coefficients():
    torch.manual_seed(0)
    order = 6
    gain = torch.linspace(0.5, 1.0, 8).reshape(1, 8, 1)  # per-frame input gain: a moving timbre
    target_synth = Waveshaper(sample_rate=8000, n_shapers=1, order=order, f0_hz=200.0)
    true = torch.tensor([[0.6, -0.3, 0.25, 0.0, 0.1, -0.05]])
    with torch.no_grad():
        target_synth.coefficients.copy_(true)
        target = target_synth(n_samples=2000, input_gain=gain)
    synth = Waveshaper(sample_rate=8000, n_shapers=1, order=order, f0_hz=200.0)
    with torch.no_grad():
        synth.coefficients.fill_(0.1)
    opt = torch.optim.Adam([synth.coefficients], lr=0.02)
    for _ in range(250):
        opt.zero_grad()
        loss = torch.mean((synth(n_samples=2000, input_gain=gain) - target) ** 2)
        loss.backward()
        opt.step()
    assert (synth.coefficients.detach() - true).abs().max() < 0.01


def test_fx_on_a_cosine_equals_the_synth():
    synth = Waveshaper(sample_rate=SR, n_shapers=3, order=5, f0_hz=250.0).double()  # 5 f0 < Nyquist
    fx = WaveshaperFX(sample_rate=SR, n_shapers=3, order=5).double()
    fx.load_state_dict(synth.state_dict(), strict=False)  # all but the f0 knob
    n = 800
    x = torch.cos(2 * math.pi * 250.0 * torch.arange(n, dtype=D) / SR).reshape(1, 1, n)
    gain = torch.tensor([[[0.9, 0.6, 0.8]], [[0.5, 0.4, 0.3]]], dtype=D)  # (2, 1, 3): one per item
    y_fx = fx(x.expand(2, 2, n), input_gain=gain)  # stereo: controls broadcast over channels
    y = synth(n_samples=n, input_gain=gain)
    assert y_fx.shape == (2, 2, n)
    assert (y_fx - y).abs().max() < 1e-9
    assert fx.category == "effect" and not fx.is_synth and synth.is_synth


def test_defaults_spec_save_and_length(tmp_path):
    synth = dspfx.make("waveshaper", sample_rate=16000, n_shapers=4, order=8)
    y = synth(f0_hz=torch.full((2, 5), 220.0))
    assert y.shape == (2, 1, 5 * 64) and torch.isfinite(y).all()
    assert y.abs().max() <= 1.0 + 1e-6  # defaults: every shaper's coefficients sum to 1
    assert synth(output_gain=torch.ones(1, 7, 4)).shape == (1, 1, 7 * 64)
    with torch.no_grad():
        synth.coefficients.mul_(0.5)
    path = tmp_path / "ws.safetensors"
    dspfx.save(synth, str(path))
    loaded = dspfx.load(str(path))
    assert isinstance(loaded, Waveshaper) and loaded.order == 8
    assert torch.equal(loaded.coefficients, synth.coefficients)


def test_errors():
    synth = Waveshaper(n_shapers=2, order=4)
    with pytest.raises(ValueError, match="outside the knob"):
        synth(n_samples=10, f0_hz=-5.0)
    with pytest.raises(ValueError, match="NaN"):
        synth(n_samples=10, f0_hz=torch.tensor([float("nan")]))
    with pytest.raises(ValueError, match="NaN"):
        synth(n_samples=10, input_gain=torch.tensor([[1.0, float("nan")]]))
    with pytest.raises(ValueError, match="last dimension"):
        synth(n_samples=10, output_gain=torch.ones(1, 4, 3))
    with pytest.raises(ValueError, match="batch size"):
        synth(n_samples=10, input_gain=torch.ones(3, 4, 2), output_gain=torch.ones(2, 4, 2))
    with pytest.raises(TypeError, match="waveshaper_fx"):
        synth(torch.zeros(1, 1, 10))
    with pytest.raises(TypeError, match="input audio"):
        WaveshaperFX()(None)
    with pytest.raises(ValueError, match="shaper must be"):
        Waveshaper(shaper="spline")
    with pytest.raises(ValueError, match="order"):
        Waveshaper(order=0)
    with pytest.raises(ValueError, match="mix"):
        WaveshaperFX(mix="max")


def test_waveshaper_fx_clips_at_the_chebyshev_domain_instead_of_exploding():
    """Input just above full scale (1.05) used to come out at 388 (T_32 grows as x**32 outside
    [-1, 1]); now the shapers see it clamped, so the output is bounded by the shapers' values
    on [-1, 1]."""
    fx = dspfx.make("waveshaper_fx", n_shapers=4, order=32)
    x = torch.linspace(-1.05, 1.05, 2001).reshape(1, 1, -1)
    with torch.no_grad():
        y = fx(x)
        inside = fx(x.clamp(-1.0, 1.0))
    torch.testing.assert_close(y, inside)  # beyond full scale: the value at full scale
    assert float(y.abs().max()) <= float(inside.abs().max()) + 1e-6
