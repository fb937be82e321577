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


# -- the voice --------------------------------------------------------------------------------------
def _voice_by_hand(sr, n, gate, f0, k):
    """The voice composed from its parts: two oscillators, svf low-pass, two ADSR renders."""
    from dspfx.functional.svf import svf_coefficients, svf_filter

    osc1 = Oscillator(sample_rate=sr, f0_hz=f0).double()(n_samples=n)
    osc2 = Oscillator(sample_rate=sr, f0_hz=f0 * 2 ** (k["detune_cents"] / 1200)).double()(n_samples=n)
    fenv = ADSR(sample_rate=sr, attack_s=k["filter_attack_s"], decay_s=k["filter_decay_s"],
                sustain=k["filter_sustain"], release_s=k["filter_release_s"]).double()(n_samples=n, gate=gate)
    aenv = ADSR(sample_rate=sr, attack_s=k["attack_s"], decay_s=k["decay_s"], sustain=k["sustain"],
                release_s=k["release_s"]).double()(n_samples=n, gate=gate)
    cutoff = k["cutoff_hz"] * 2 ** (k["filter_env_octaves"] * fenv) * (f0 / 261.63) ** k["key_tracking"]
    y, _ = svf_filter(osc1 + k["osc2_mix"] * osc2, *svf_coefficients("lowpass", cutoff, k["resonance"], 0.0, sr))
    return k["amplitude"] * aenv * y


def test_voice_is_its_parts_composed():
    sr, n = 16000, 4000
    k = dict(detune_cents=11.0, osc2_mix=0.4, cutoff_hz=500.0, resonance=3.0, filter_env_octaves=2.5,
             key_tracking=0.7, filter_attack_s=0.01, filter_decay_s=0.05, filter_sustain=0.3, filter_release_s=0.04,
             attack_s=0.005, decay_s=0.08, sustain=0.6, release_s=0.05, amplitude=0.8)
    gate = torch.zeros(1, n, dtype=D)
    gate[:, 200:2600] = 1
    voice = dspfx.make("subtractive", sample_rate=sr, f0_hz=196.0, **k).double()
    with torch.no_grad():
        y = voice(n_samples=n, gate=gate)
        ref = _voice_by_hand(sr, n, gate, 196.0, k)
    assert float((y - ref).abs().max()) < 1e-9
    # silent before the gate and once the release is over; sounding while it is on
    assert float(y[..., :200].abs().max()) == 0.0
    assert float(y[..., 2600 + int(0.05 * sr) + 2:].abs().max()) < 1e-9
    assert float(y[..., 1000:2000].abs().max()) > 0.1


def _centroid_harmonic(y, f0, sr):
    p = np.abs(np.fft.rfft(y * np.hanning(y.size))) ** 2
    f = np.fft.rfftfreq(y.size, 1 / sr)
    return float((p * f).sum() / p.sum() / f0)


def test_key_tracking_keeps_the_timbre_across_octaves():
    sr, n = 32000, 16000
    ratios = {}
    for tracking in (0.0, 1.0):
        cents = []
        for f0 in (110.0, 440.0):
            v = dspfx.make("subtractive", sample_rate=sr, f0_hz=f0, cutoff_hz=600.0, filter_env_octaves=0.0,
                           key_tracking=tracking, osc2_mix=0.0, resonance=0.7)
            with torch.no_grad():
                cents.append(_centroid_harmonic(v(n_samples=n)[0, 0, 4000:].numpy(), f0, sr))
        ratios[tracking] = cents[0] / cents[1]
    assert abs(ratios[1.0] - 1.0) < 0.15  # the same harmonic centroid two octaves apart
    assert ratios[0.0] > 1.3  # a fixed cutoff: the low note keeps more of its harmonics


def test_voice_streams_and_gradchecks():
    voice = dspfx.make("subtractive", sample_rate=8000, hop=8).double()
    g = torch.zeros(1, 120, dtype=D)
    g[:, 5:80] = 1
    f0 = torch.linspace(180.0, 260.0, 120, dtype=D)[None]
    with torch.no_grad():
        y = voice(f0_hz=f0, gate=g)
        stream = dspfx.Stream(voice)
        out = torch.cat([stream(f0_hz=f0[:, i: i + 13], gate=g[:, i: i + 13]) for i in range(0, 120, 13)], dim=-1)
    assert float((out - y).abs().max()) < 1e-9
    small = dspfx.make("subtractive", sample_rate=2000, hop=1).double()
    gate = torch.ones(1, 30, dtype=D)
    knobs = [torch.tensor([v], dtype=D, requires_grad=True) for v in (300.0, 2.0, 9.0, 0.6)]
    names = ("cutoff_hz", "filter_env_octaves", "detune_cents", "key_tracking")
    assert torch.autograd.gradcheck(
        lambda *kv: small(n_samples=30, f0_hz=150.0, gate=gate, **dict(zip(names, kv))), tuple(knobs))


def test_a_fit_recovers_the_filter_of_a_target_note():
    sr, n = 16000, 8000
    gate = torch.zeros(1, n)
    gate[:, :6000] = 1
    target = dspfx.make("subtractive", sample_rate=sr, f0_hz=220.0, cutoff_hz=1500.0, filter_env_octaves=1.5)
    with torch.no_grad():
        y = target(n_samples=n, gate=gate)
    voice = dspfx.make("subtractive", sample_rate=sr, f0_hz=220.0)
    for name in voice.knob_specs:
        if name not in ("cutoff_hz", "filter_env_octaves"):
            voice.freeze(name)
    from dspfx.fitting.loop import optimise
    from dspfx.fitting.losses import MRSTFTLoss

    loss = MRSTFTLoss(sample_rate=sr)
    optimise(voice, lambda step: loss(voice(n_samples=n, gate=gate), y), steps=150, lr=0.05, progress=False)
    assert float(voice.knob_value("cutoff_hz").detach()) == pytest.approx(1500.0, rel=0.15)
    assert float(voice.knob_value("filter_env_octaves").detach()) == pytest.approx(1.5, abs=0.4)
