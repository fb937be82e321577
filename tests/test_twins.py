"""Knob recovery for the pedalboard twins (issue 5, "Knob recovery").

Each test starts a twin from DEFAULT knobs (``dspfx.from_pedalboard(pedalboard.<Class>(), sr)``,
or ``dspfx.make`` where pedalboard's defaults give no gradient at all, see below), fits it with
:func:`dspfx.fit` to the render of the pedalboard plugin itself at hidden settings (float32,
48 kHz, 0.1-0.4 s), and checks the recovered settings. Twins render the same audio as pedalboard,
so the time-domain ESR loss is exact and sharp; ``"mrstft+esr"`` is used where ESR alone crawls
along a valley (the compressor's threshold/ratio trade-off).

Tolerances: cutoff 2 %; gains, drive and thresholds 0.25 dB; q and ratio 5 %; attack/release
times 5 %; mix and feedback 0.02 (absolute).

Which test covers each twin
---------------------------

=================  ===========================================  =============================================
pedalboard class   knobs recovered                              test (in this file unless a path is given)
=================  ===========================================  =============================================
Gain               gain_db                                      test_gain_recovers_gain_db
Invert             (no knobs)                                   none needed
Clipping           threshold_db                                 test_clipping_recovers_threshold_db
Distortion         drive_db                                     test_distortion_recovers_drive_db
Bitcrush           bit_depth, read off the staircase (not by    test_bitcrush_depth_read_from_the_staircase_
                   gradient: see below)                         renders_bit_exact; test_bitcrush_depth_by_
                                                                gradient (xfail, strict: the limitation)
LowpassFilter      cutoff_hz                                    test_one_pole_recovers_cutoff[LowpassFilter]
HighpassFilter     cutoff_hz                                    test_one_pole_recovers_cutoff[HighpassFilter]
LowShelfFilter     cutoff_hz, gain_db, q                        test_biquad_twins_recover_cutoff_gain_and_q
HighShelfFilter    cutoff_hz, gain_db, q                        test_biquad_twins_recover_cutoff_gain_and_q
PeakFilter         cutoff_hz, gain_db, q                        test_biquad_twins_recover_cutoff_gain_and_q
Compressor         threshold_db, ratio, attack_ms, release_ms   test_compressor_recovers_all_four_knobs
Limiter            threshold_db, release_ms                     test_limiter_recovers_threshold_and_release
NoiseGate          threshold_db, ratio, attack_ms, release_ms   test_noise_gate_recovers_all_four_knobs
Delay              delay time (cross-correlation, no gradient:  test_delay_recovers_time_feedback_and_mix
                   see below), feedback, mix
Convolution        mix (the response is given, frozen)          test_convolution_recovers_mix
LadderFilter       cutoff, resonance, drive                     tests/effects/test_ladder.py::test_fit_
                                                                recovers_cutoff_resonance_and_drive_from_
                                                                pedalboard
Chorus             its knobs                                    tests/effects/test_modulation.py::test_fit_
                                                                recovers_hidden_chorus_knobs_from_pedalboard
Phaser             its knobs                                    tests/effects/test_phaser.py::
                                                                test_knob_recovery_against_pedalboard
Reverb             its knobs                                    tests/effects/test_reverb.py::test_fit_
                                                                recovers_hidden_settings_from_pedalboard
=================  ===========================================  =============================================

(The tests in tests/effects/test_filters.py, test_eq.py, test_dynamics.py and test_delay.py fit
dspfx units to dspfx renders from hand-picked starts; the tests here are the pedalboard-target,
default-start ones and do not repeat them.)

Knobs that audio does not identify (and how the signals here avoid it)
----------------------------------------------------------------------

- Shelves and peak: at gain_db = 0 (pedalboard's default) the filter is flat, so cutoff and q
  get exactly zero gradient; Adam moves the gain first and the others follow. q of a shelf is
  identifiable only at a non-zero gain.
- Clipping: threshold_db is identifiable only if the signal's peaks exceed the threshold (the
  noise here is at -6 dB RMS, the start at -6 dB clips its peaks).
- Compressor: pedalboard's defaults (threshold 0 dB, ratio 1) are the identity, so every knob
  has zero gradient there; the fit starts from dspfx's defaults (-12 dB, 4:1, 10 ms, 100 ms).
  Threshold and ratio need levels on both sides of the threshold (one level above it only fixes
  their combination), attack needs onsets above the threshold, release needs decays: noise
  bursts at eight levels with short silences between them.
- Limiter: threshold needs peaks above it; release needs decays (the same bursts).
- NoiseGate: at pedalboard's default threshold (-100 dB) nothing is gated and every gradient
  is zero, so the fit starts from dspfx's defaults (-40 dB, 10, 1 ms, 100 ms). Threshold and
  ratio need material below the threshold. release_ms is only seen when the level falls below
  the threshold while the signal goes on: with bursts separated by silence (20 ms), or quiet
  segments shorter than the fixed 50 ms release of the RMS detector, the output does not depend
  on release_ms at all (pedalboard's own renders for release 40 ms and 1000 ms are then
  identical, and the twin's gradient is exactly 0). The gate signal is therefore level steps of
  continuous noise (0.1 s loud, 0.1 s far below, ...).
- Delay: in the twin mode (interpolation="none") the delay is ``floor(delay_s * sr)`` whole
  samples and delay_ms gets NO gradient (dspfx/effects/delay.py says so). It is recovered by
  the trivial means: the peak of the input/target cross-correlation away from lag 0 (white
  noise input), then frozen. Feedback is only identifiable with mix > 0 and audio longer than
  two delays; from pedalboard's default 500 ms on short audio the wet path is silent, which is
  why the delay time is found first.
- Bitcrush: bit_depth's straight-through gradient ``dy/db = -ln(2) (y - x)`` (see
  dspfx/functional/nonlinear.py) always says "more bits lower the error" under ESR and is
  first-order blind to the noise floor under MR-STFT, so gradient descent does not find the
  depth (ESR drives it up from 8 to about 14.5 bits against a 5-bit target, MR-STFT to about
  13). Documented limitation: the depth is read off the output's quantisation step instead
  (``2**-b`` is the smallest non-zero output magnitude), and the render at that depth is
  bit-identical to pedalboard's.
- Delay and Convolution mix, Gain, Distortion, one-pole cutoffs: identifiable from any
  broadband signal.
"""

from __future__ import annotations

import numpy as np
import pedalboard
import pytest
import torch

import dspfx
import dspfx.effects  # noqa: F401  (registers the twins)
from dspfx.signals import guitar_di, white_noise

SR = 48000


def _render(plugin, x: torch.Tensor) -> torch.Tensor:
    """pedalboard's render of ``x`` (1, channels, samples), as a (1, channels, samples) tensor."""
    y = plugin(np.ascontiguousarray(x[0].numpy().astype(np.float32)), SR, reset=True)
    return torch.from_numpy(np.asarray(y, dtype=np.float32))[None]


def _fit(unit, x, target, *, steps, lr, loss="esr"):
    return dspfx.fit(unit, x, target, steps=steps, lr=lr, loss=loss, align_latency=False, progress=False)


def _noise(duration_s=0.25, seed=0, level_db=-12.0):
    return white_noise(duration_s, SR, seed=seed, level_db=level_db).reshape(1, 1, -1)


def _bursts(seed=0):
    """0.4 s of noise bursts (30 ms) at eight levels, -45 .. -3 dB RMS, each followed by 20 ms of
    silence: onsets (attack), decays (release), levels on both sides of the thresholds."""
    rng = np.random.default_rng(seed)
    seg = int(0.05 * SR)
    on = int(0.03 * SR)
    x = np.zeros(8 * seg)
    for i, level_db in enumerate([-6.0, -30.0, -14.0, -45.0, -3.0, -22.0, -38.0, -10.0]):
        x[i * seg : i * seg + on] = rng.standard_normal(on) * 10 ** (level_db / 20)
    return torch.from_numpy(x.astype(np.float32)).reshape(1, 1, -1)


def _level_steps(seed=0):
    """0.35 s of continuous noise stepping between levels (dB RMS, seconds): loud -> far below
    the gate threshold for longer than the RMS detector's 50 ms release, and back."""
    rng = np.random.default_rng(seed)
    env = np.concatenate([np.full(int(d * SR), 10 ** (lvl / 20)) for lvl, d in
                          [(-10.0, 0.1), (-45.0, 0.1), (-20.0, 0.05), (-38.0, 0.1)]])
    return torch.from_numpy((rng.standard_normal(env.size) * env).astype(np.float32)).reshape(1, 1, -1)


# ------------------------------------------------------------------ stateless units


def test_gain_recovers_gain_db():
    x = _noise(seed=1)
    target = _render(pedalboard.Gain(gain_db=-7.3), x)
    unit = dspfx.from_pedalboard(pedalboard.Gain(), SR)  # default +1 dB
    _fit(unit, x, target, steps=60, lr=0.1)
    assert unit.knobs()["gain_db"] == pytest.approx(-7.3, abs=0.25)


def test_clipping_recovers_threshold_db():
    x = _noise(seed=2, level_db=-6.0)
    target = _render(pedalboard.Clipping(threshold_db=-14.5), x)
    unit = dspfx.from_pedalboard(pedalboard.Clipping(), SR)  # default -6 dB
    _fit(unit, x, target, steps=150, lr=0.1)
    assert unit.knobs()["threshold_db"] == pytest.approx(-14.5, abs=0.25)


def test_distortion_recovers_drive_db():
    x = guitar_di(SR, duration_s=0.3, seed=1).reshape(1, 1, -1)
    target = _render(pedalboard.Distortion(drive_db=12.0), x)
    unit = dspfx.from_pedalboard(pedalboard.Distortion(), SR)  # default 25 dB
    _fit(unit, x, target, steps=100, lr=0.3)
    assert unit.knobs()["drive_db"] == pytest.approx(12.0, abs=0.25)


def test_bitcrush_depth_read_from_the_staircase_renders_bit_exact():
    # Documented limitation (module docstring): bit_depth is not found by gradient descent
    # (see the xfail below); the quantisation step is read off the target instead.
    x = _noise(0.1, seed=5)
    hidden = 5.0
    target = _render(pedalboard.Bitcrush(bit_depth=hidden), x)
    unit = dspfx.from_pedalboard(pedalboard.Bitcrush(), SR)  # default 8 bits
    step = float(target.abs()[target != 0].min())
    unit.set(bit_depth=-np.log2(step))
    assert unit.knobs()["bit_depth"] == pytest.approx(hidden, abs=1e-6)
    with torch.no_grad():
        assert torch.equal(unit(x), target)  # bit-identical to pedalboard at the recovered depth


@pytest.mark.xfail(
    strict=True,
    reason="bit_depth's straight-through gradient -ln(2)*(y - x) always points to more bits under "
    "ESR (dspfx/functional/nonlinear.py): a gradient fit from 8 bits ends near 14.5 bits, not 5",
)
def test_bitcrush_depth_by_gradient():
    x = _noise(0.1, seed=5)
    target = _render(pedalboard.Bitcrush(bit_depth=5.0), x)
    unit = dspfx.from_pedalboard(pedalboard.Bitcrush(), SR)
    _fit(unit, x, target, steps=100, lr=0.1)
    assert unit.knobs()["bit_depth"] == pytest.approx(5.0, abs=0.25)


# ------------------------------------------------------------------ filters


@pytest.mark.parametrize("cls, cutoff", [(pedalboard.LowpassFilter, 3000.0), (pedalboard.HighpassFilter, 800.0)])
def test_one_pole_recovers_cutoff(cls, cutoff):
    x = _noise(seed=3)
    target = _render(cls(cutoff_frequency_hz=cutoff), x)
    unit = dspfx.from_pedalboard(cls(), SR)  # default 50 Hz
    _fit(unit, x, target, steps=100, lr=0.1)
    assert unit.knobs()["cutoff_hz"] == pytest.approx(cutoff, rel=0.02)


@pytest.mark.parametrize(
    "cls, hidden",
    [
        (pedalboard.LowShelfFilter, dict(cutoff_hz=250.0, gain_db=6.0, q=1.2)),
        (pedalboard.HighShelfFilter, dict(cutoff_hz=4000.0, gain_db=-8.0, q=0.9)),
        (pedalboard.PeakFilter, dict(cutoff_hz=2500.0, gain_db=9.0, q=2.5)),
    ],
)
def test_biquad_twins_recover_cutoff_gain_and_q(cls, hidden):
    x = _noise(0.1, seed=4)
    plugin = cls(cutoff_frequency_hz=hidden["cutoff_hz"], gain_db=hidden["gain_db"], q=hidden["q"])
    target = _render(plugin, x)
    unit = dspfx.from_pedalboard(cls(), SR)  # default 440 Hz, 0 dB, q 0.7071
    _fit(unit, x, target, steps=200, lr=0.1)
    k = unit.knobs()
    assert k["cutoff_hz"] == pytest.approx(hidden["cutoff_hz"], rel=0.02)
    assert k["gain_db"] == pytest.approx(hidden["gain_db"], abs=0.25)
    assert k["q"] == pytest.approx(hidden["q"], rel=0.05)


# ------------------------------------------------------------------ dynamics


def test_compressor_recovers_all_four_knobs():
    x = _bursts()
    hidden = dict(threshold_db=-22.0, ratio=5.0, attack_ms=3.0, release_ms=60.0)
    target = _render(pedalboard.Compressor(**hidden), x)
    # pedalboard's defaults (0 dB, 1:1) are the identity: zero gradient everywhere. Start from
    # dspfx's defaults; knee and makeup are not pedalboard knobs (twin: 0 dB), keep them there.
    unit = dspfx.make("compressor", sample_rate=SR, knee_db=0.0, makeup_db=0.0).freeze("knee_db", "makeup_db")
    _fit(unit, x, target, steps=150, lr=0.1, loss="mrstft+esr")
    k = unit.knobs()
    assert k["threshold_db"] == pytest.approx(hidden["threshold_db"], abs=0.25)
    assert k["ratio"] == pytest.approx(hidden["ratio"], rel=0.05)
    assert k["attack_ms"] == pytest.approx(hidden["attack_ms"], rel=0.05)
    assert k["release_ms"] == pytest.approx(hidden["release_ms"], rel=0.05)
    assert k["knee_db"] == 0.0 and k["makeup_db"] == 0.0


def test_limiter_recovers_threshold_and_release():
    x = _bursts(seed=1)
    hidden = dict(threshold_db=-18.0, release_ms=40.0)
    target = _render(pedalboard.Limiter(**hidden), x)
    unit = dspfx.from_pedalboard(pedalboard.Limiter(), SR)  # default -10 dB, 100 ms
    _fit(unit, x, target, steps=150, lr=0.1)
    k = unit.knobs()
    assert k["threshold_db"] == pytest.approx(hidden["threshold_db"], abs=0.25)
    assert k["release_ms"] == pytest.approx(hidden["release_ms"], rel=0.05)


def test_noise_gate_recovers_all_four_knobs():
    x = _level_steps()
    hidden = dict(threshold_db=-30.0, ratio=4.0, attack_ms=2.0, release_ms=40.0)
    target = _render(pedalboard.NoiseGate(**hidden), x)
    # pedalboard's default threshold (-100 dB) gates nothing: zero gradient. dspfx's defaults.
    unit = dspfx.make("noise_gate", sample_rate=SR)  # -40 dB, 10, 1 ms, 100 ms
    _fit(unit, x, target, steps=300, lr=0.1)
    k = unit.knobs()
    assert k["threshold_db"] == pytest.approx(hidden["threshold_db"], abs=0.25)
    assert k["ratio"] == pytest.approx(hidden["ratio"], rel=0.05)
    assert k["attack_ms"] == pytest.approx(hidden["attack_ms"], rel=0.05)
    assert k["release_ms"] == pytest.approx(hidden["release_ms"], rel=0.05)


# ------------------------------------------------------------------ delay and convolution


def test_delay_recovers_time_feedback_and_mix():
    x = _noise(0.25, seed=7)
    hidden_s = 2.0**-7  # 7.8125 ms = 375 samples at 48 kHz (exact in float32)
    hidden = dict(feedback=0.45, mix=0.3)
    target = _render(pedalboard.Delay(delay_seconds=hidden_s, **hidden), x)
    unit = dspfx.from_pedalboard(pedalboard.Delay(), SR)  # default 500 ms, feedback 0, mix 0.5
    # delay_ms gets no gradient in the twin (whole samples): take the cross-correlation peak
    # away from lag 0 (the dry path), then freeze it.
    n = x.shape[-1]
    xf = np.fft.rfft(x[0, 0].numpy().astype(np.float64), 2 * n)
    tf = np.fft.rfft(target[0, 0].numpy().astype(np.float64), 2 * n)
    xcorr = np.abs(np.fft.irfft(tf * np.conj(xf))[1 : n // 2])
    lag = 1 + int(np.argmax(xcorr))
    unit.set(delay_ms=(lag + 0.5) / SR * 1000.0).freeze("delay_ms")
    assert unit.delay_samples() == round(hidden_s * SR) == 375
    _fit(unit, x, target, steps=150, lr=0.1)
    k = unit.knobs()
    assert k["feedback"] == pytest.approx(hidden["feedback"], abs=0.02)
    assert k["mix"] == pytest.approx(hidden["mix"], abs=0.02)


def test_convolution_recovers_mix():
    x = _noise(0.25, seed=8)
    rng = np.random.default_rng(3)
    ir = (rng.standard_normal(960) * np.exp(-np.arange(960) / 150.0)).astype(np.float32)  # 20 ms
    target = _render(pedalboard.Convolution(ir, mix=0.35, sample_rate=SR), x)
    unit = dspfx.from_pedalboard(pedalboard.Convolution(ir, sample_rate=SR), SR)  # default mix 1
    unit.impulse_response.requires_grad_(False)  # the response is given: fit the knob only
    _fit(unit, x, target, steps=100, lr=0.1)
    assert unit.knobs()["mix"] == pytest.approx(0.35, abs=0.02)
