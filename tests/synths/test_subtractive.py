"""Tests of the subtractive synth sources (dspfx.synths.subtractive) and dspfx.functional.blep."""

import math

import numpy as np
import pytest
import torch

import dspfx
import dspfx.synths.subtractive  # noqa: F401  (registers the units)
from dspfx.functional.blep import oscillator_additive, oscillator_polyblep
from dspfx.synths.subtractive import ADSR, Oscillator

SR = 48000
D = torch.float64


def _alias_db(y, f0):
    """Strongest non-harmonic bin relative to the fundamental (1 Hz bins, integer f0)."""
    p = np.abs(np.fft.rfft(y)) ** 2
    k = np.arange(len(p))
    return 10 * np.log10(p[k % int(f0) != 0].max() / p[int(f0)])


@pytest.mark.parametrize("waveform", ["saw", "square", "triangle"])
def test_aliasing_at_4khz_is_60db_below_the_fundamental(waveform):
    # 4100 Hz (not a divisor of 48 kHz, so aliases land off the harmonic grid)
    osc = Oscillator(sample_rate=SR, waveform=waveform, f0_hz=4100.0, pulse_width=0.3).double()
    y = osc(n_samples=SR)[0, 0].detach().numpy()
    assert _alias_db(y, 4100) < -60
    # the plain PolyBLEP path does not reach it at this f0: the hybrid is what does
    t = torch.arange(SR, dtype=D) * 4100 / SR % 1
    blep = oscillator_polyblep(waveform, t, torch.tensor(4100 / SR, dtype=D), 0.3).numpy()
    assert _alias_db(blep, 4100) > -60


@pytest.mark.parametrize("waveform", ["saw", "square", "triangle"])
def test_polyblep_path_matches_the_band_limited_waveform_at_low_f0(waveform):
    # below the additive crossover (750 Hz at 48 kHz) PolyBLEP renders; it approximates the
    # ideal band-limited waveform, aliasing at least 38 dB down at 601 Hz (triangle: 70 dB)
    osc = Oscillator(sample_rate=SR, waveform=waveform, f0_hz=601.0, pulse_width=0.4).double()
    y = osc(n_samples=SR)[0, 0].detach().numpy()
    assert _alias_db(y, 601) < (-70 if waveform == "triangle" else -38)
    t = torch.arange(SR, dtype=D) * 601 / SR % 1
    ideal = oscillator_additive(waveform, t, torch.tensor(601 / SR, dtype=D), 0.4, n_harmonics=40).numpy()
    err = np.sqrt(np.mean((y - ideal) ** 2) / np.mean(ideal**2))
    assert err < 0.08  # PolyBLEP also softens the top harmonics a little
    # the harmonics' levels follow the series (saw: 1/k)
    if waveform == "saw":
        p = np.abs(np.fft.rfft(y))
        assert abs(20 * np.log10(p[601 * 3] / p[601]) - 20 * np.log10(1 / 3)) < 0.3


def test_oscillator_streaming_equals_offline_and_sweeps_across_the_crossover():
    osc = Oscillator(sample_rate=SR, waveform="square", pulse_width=0.3)
    f0 = torch.linspace(300.0, 5000.0, 16).reshape(1, 16)
    with torch.no_grad():
        y = osc(n_samples=4096, f0_hz=440.0)
        for block in (1, 7, 64, 4096):
            m = 700 if block == 1 else 4096
            stream = dspfx.Stream(osc)
            out = torch.cat([stream(n_samples=min(block, m - i), f0_hz=440.0) for i in range(0, m, block)], dim=-1)
            assert (out - y[..., :m]).abs().max() < 1e-5, block
        sweep = osc(n_samples=4096, f0_hz=f0)
    assert torch.isfinite(sweep).all() and sweep.abs().max() < 1.4 + 0.3  # DC-free pulse (pw 0.3) peaks at 1.4, plus Gibbs overshoot
    # continuity through the crossfade: no jump larger than the waveform's own slope allows
    d = sweep[0, 0].diff().abs()
    assert float(d.max()) < 2.1


def test_oscillator_gradcheck():
    for waveform, f in (("saw", [300.0, 330.0]), ("square", [700.0, 720.0]), ("triangle", [2000.0, 2100.0])):
        osc = Oscillator(sample_rate=8000, waveform=waveform).double()
        f0 = torch.tensor([f], dtype=D, requires_grad=True)
        pw = torch.tensor([[0.3, 0.35]], dtype=D, requires_grad=True)
        amp = torch.tensor([[0.5, 0.9]], dtype=D, requires_grad=True)
        assert torch.autograd.gradcheck(lambda a, b, c: osc(n_samples=24, f0_hz=a, pulse_width=b, amplitude=c), (f0, pw, amp))


def test_adsr_levels_and_segment_timings_are_exact():
    sr = 1000
    env = ADSR(sample_rate=sr, attack_s=0.02, decay_s=0.03, sustain=0.4, release_s=0.05).double()
    gate = torch.zeros(1, 200, dtype=D)
    gate[:, 10:110] = 1
    e = env(n_samples=200, gate=gate)[0, 0].detach()
    t = torch.arange(200, dtype=D)
    expected = torch.zeros(200, dtype=D)
    a = (t >= 10) & (t < 30)
    expected[a] = (t[a] - 10) / 20
    d = (t >= 30) & (t < 60)
    expected[d] = 1 - 0.6 * (t[d] - 30) / 30
    expected[(t >= 60) & (t < 110)] = 0.4
    r = (t >= 110) & (t < 160)
    expected[r] = 0.4 * (1 - (t[r] - 110) / 50)
    assert torch.allclose(e, expected, atol=1e-12)
    assert float(e[30]) == pytest.approx(1.0) and float(e[60]) == pytest.approx(0.4)
    # early release during the attack and retrigger during the release start from the level reached
    gate = torch.zeros(1, 120, dtype=D)
    gate[:, 0:10] = 1
    gate[:, 30:] = 1
    e = env(n_samples=120, gate=gate)[0, 0].detach()
    assert float(e[10]) == pytest.approx(0.5)  # 10 of 20 attack samples
    assert float(e[30]) == pytest.approx(0.5 * (1 - 20 / 50))  # released for 20 of 50 samples
    assert float(e[31]) == pytest.approx(0.3 + 0.7 / 20)  # from there to 1 in the attack time
    assert float(e[50]) == pytest.approx(1.0)
    # no gate: held on for the whole render
    assert float(env(n_samples=100)[0, 0, 99].detach()) == pytest.approx(0.4)


def test_adsr_streaming_equals_offline():
    env = ADSR(sample_rate=8000, attack_s=0.01, decay_s=0.02, sustain=0.6, release_s=0.03)
    g = torch.zeros(2, 1500)
    g[0, 50:400] = 1
    g[0, 700:760] = 1
    g[1, 100:1200] = 1
    with torch.no_grad():
        y = env(n_samples=1500, gate=g)
        for block in (1, 7, 64, 4096):
            m = 500 if block == 1 else 1500
            stream = dspfx.Stream(env, batch=2)
            out = torch.cat([stream(n_samples=min(block, m - i), gate=g[:, i : i + block]) for i in range(0, m, block)], dim=-1)
            assert (out - y[..., :m]).abs().max() < 1e-5, block


def test_adsr_gradcheck_and_combination_with_the_oscillator():
    env = ADSR(sample_rate=1000).double()
    g = torch.zeros(1, 40, dtype=D)
    g[:, 2:25] = 1
    knobs = [torch.tensor([v], dtype=D, requires_grad=True) for v in (0.0071, 0.0093, 0.45, 0.0127)]
    names = ("attack_s", "decay_s", "sustain", "release_s")
    assert torch.autograd.gradcheck(lambda *k: env(n_samples=40, gate=g, **dict(zip(names, k))), tuple(knobs))
    osc = Oscillator(sample_rate=1000).double()
    voice = osc(n_samples=40) * env(n_samples=40, gate=g)
    assert voice.shape == (1, 1, 40) and float(voice.detach()[0, 0, 0]) == 0.0


def test_errors_and_lengths():
    with pytest.raises(ValueError, match="waveform"):
        Oscillator(waveform="sine")
    with pytest.raises(ValueError, match="hop"):
        ADSR(hop=0)
    osc = dspfx.make("oscillator")
    with pytest.raises(ValueError, match="outside the knob"):
        osc(n_samples=10, f0_hz=-100.0)
    with pytest.raises(ValueError, match="NaN"):
        osc(n_samples=10, f0_hz=torch.tensor([float("nan")]))
    with pytest.raises(ValueError, match="outside the knob"):
        osc(n_samples=10, pulse_width=0.99)
    env = dspfx.make("adsr")
    with pytest.raises(ValueError, match="0/1"):
        env(n_samples=10, gate=torch.full((1, 10), 2.0))
    with pytest.raises(ValueError, match="batch"):
        env(n_samples=10, gate=torch.ones(3, 10), attack_s=torch.full((2,), 0.01))
    assert env(gate=torch.ones(2, 5)).shape == (2, 1, 5 * 192)
    assert osc(f0_hz=torch.full((1, 3), 100.0)).shape == (1, 1, 3 * 192)


def test_additive_saw_compiled_bank_equals_the_series_with_gradients():
    # on the CPU the saw's series runs in the compiled harmonic bank; the torch series is the reference
    torch.manual_seed(7)
    phase = torch.rand(3, 1, 400, dtype=torch.float64, requires_grad=True)
    dt = torch.linspace(0.001, 0.3, 400, dtype=torch.float64).view(1, 1, -1)
    y = oscillator_additive("saw", phase, dt, n_harmonics=40)
    k = torch.arange(1, 41, dtype=torch.float64)
    terms = torch.sin(2 * math.pi * k * phase.unsqueeze(-1)) * (-2 / (math.pi * k))
    ref = (terms * (k * dt.unsqueeze(-1) < 0.5)).sum(-1)
    assert y.shape == ref.shape and (y - ref).abs().max() < 1e-12
    g, g_ref = (torch.autograd.grad(v.square().sum(), phase)[0] for v in (y, ref))
    assert (g - g_ref).abs().max() < 1e-9
    assert torch.autograd.gradcheck(lambda p: oscillator_additive("saw", p, dt[..., :24], n_harmonics=12),
                                    (phase[..., :24].detach().requires_grad_(),))
    # the torch path (other devices) gives the same series
    from dspfx.functional import oscillators

    oscillators._COMPILED_BANK = False
    try:
        assert (oscillator_additive("saw", phase, dt, n_harmonics=40) - ref).abs().max() < 1e-12
    finally:
        oscillators._COMPILED_BANK = True
