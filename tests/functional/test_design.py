"""Filter designs (dspfx.functional.design): RBJ/JUCE biquads and one-poles against scipy,
pedalboard and their analytic responses."""

import math

import numpy as np
import pedalboard
import pytest
import scipy.signal
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dspfx.functional import (
    BIQUAD_MODES,
    biquad_coefficients,
    frequency_response,
    iir,
    one_pole_coefficients,
)

from signal_helpers import F64, assert_close_scaled, esr, lfilter_ref, noise


# ============================================================================ designs vs scipy


SETTINGS = [(100.0, 0.7071, 6.0), (1000.0, 2.0, -12.0), (7000.0, 0.5, 9.0), (18000.0, 5.0, 3.0)]


@pytest.mark.parametrize("mode", BIQUAD_MODES)
def test_biquad_iir_matches_lfilter(mode):
    x = noise((2, 2, 4000))
    for cutoff_hz, q, gain_db in SETTINGS:
        b, a = biquad_coefficients(mode, torch.tensor(cutoff_hz, dtype=F64), q, gain_db, 48000)
        assert b.shape == (3,) and a.shape == (3,) and b.dtype == F64
        assert a[0].item() == 1.0
        y, _ = iir(x, b, a)
        ref = lfilter_ref(b.numpy(), a.numpy(), x.numpy())
        assert_close_scaled(y.numpy(), ref, 1e-10)


def test_per_channel_static_coefficients_match_lfilter():
    x = noise((2, 3, 3000), seed=1)
    cutoff = torch.tensor([[200.0, 2000.0, 9000.0], [50.0, 500.0, 15000.0]], dtype=F64)
    b, a = biquad_coefficients("peak", cutoff.unsqueeze(-1), 1.3, -4.0, 44100)
    assert b.shape == (2, 3, 1, 3)
    y, _ = iir(x, b, a)
    for i in range(2):
        for c in range(3):
            ref = lfilter_ref(b[i, c, 0].numpy(), a[i, c, 0].numpy(), x[i, c].numpy())
            assert_close_scaled(y[i, c].numpy(), ref, 1e-10)


@settings(max_examples=50, deadline=None)
@given(
    mode=st.sampled_from(BIQUAD_MODES),
    cutoff_hz=st.floats(20.0, 20000.0),
    q=st.floats(0.1, 20.0),
    gain_db=st.floats(-24.0, 24.0),
    sample_rate=st.sampled_from([22050, 44100, 48000, 96000]),
)
def test_biquad_property_lfilter_and_freqz(mode, cutoff_hz, q, gain_db, sample_rate):
    b, a = biquad_coefficients(mode, torch.tensor(cutoff_hz, dtype=F64), q, gain_db, sample_rate)
    x = noise((1, 1, 512), seed=2)
    y, _ = iir(x, b, a)
    assert_close_scaled(y[0, 0].numpy(), lfilter_ref(b.numpy(), a.numpy(), x[0, 0].numpy()), 1e-9)
    freqs = np.linspace(0.0, sample_rate / 2, 33)
    _, h_ref = scipy.signal.freqz(b.numpy(), a.numpy(), worN=freqs, fs=sample_rate)
    h = frequency_response(b, a, torch.from_numpy(freqs), sample_rate).numpy()
    np.testing.assert_allclose(h, h_ref, rtol=1e-9, atol=1e-9 * np.max(np.abs(h_ref)))


def test_unnormalised_denominator_is_divided_out():
    b, a = biquad_coefficients("lowpass", torch.tensor(800.0, dtype=F64), 0.9, 0.0, 48000)
    x = noise((1, 2, 1000), seed=3)
    y, _ = iir(x, b, a)
    y2, _ = iir(x, 2.5 * b, 2.5 * a)
    assert_close_scaled(y2.numpy(), y.numpy(), 1e-12)


def test_fir_only_and_pole_only():
    x = noise((2, 1, 2000), seed=4)
    fir = torch.tensor([0.5, -0.25, 0.125, 0.0625, -0.5], dtype=F64)
    y, state = iir(x, fir, torch.ones(1, dtype=F64))
    assert_close_scaled(y.numpy(), lfilter_ref(fir.numpy(), [1.0], x.numpy()), 1e-12)
    assert state[1].shape == (2, 1, 0)
    # a long static FIR goes through conv1d
    long_fir = noise((40,), seed=5)
    y, _ = iir(x, long_fir, torch.ones(1, dtype=F64))
    assert_close_scaled(y.numpy(), lfilter_ref(long_fir.numpy(), [1.0], x.numpy()), 1e-11)
    a = torch.tensor([1.0, -0.9], dtype=F64)
    y, state = iir(x, torch.tensor([0.3], dtype=F64), a)
    assert_close_scaled(y.numpy(), lfilter_ref([0.3], a.numpy(), x.numpy()), 1e-12)
    assert state[0].shape == (2, 1, 0) and state[1].shape == (2, 1, 1)


def test_high_order_static_filter_matches_lfilter():
    b_np, a_np = scipy.signal.butter(6, 0.1)
    x = noise((1, 2, 3000), seed=6)
    y, _ = iir(x, torch.from_numpy(b_np), torch.from_numpy(a_np))
    assert_close_scaled(y.numpy(), lfilter_ref(b_np, a_np, x.numpy()), 1e-9)


def test_float32_and_mixed_dtypes():
    x = noise((1, 1, 2000), seed=7, dtype=torch.float32)
    b, a = biquad_coefficients("highshelf", 3000.0, 0.7071, 6.0, 48000)
    assert b.dtype == torch.float32
    y, state = iir(x, b, a)
    assert y.dtype == torch.float32 and state[1].dtype == torch.float32
    ref = lfilter_ref(b.double().numpy(), a.double().numpy(), x.double().numpy())
    assert esr(y.double().numpy(), ref) < 1e-10
    # float64 coefficients are cast to the signal's dtype
    y2, _ = iir(x, b.double(), a.double())
    assert y2.dtype == torch.float32


# ============================================================================ pedalboard


BIQUAD_TWINS = [
    (pedalboard.PeakFilter, "peak"),
    (pedalboard.LowShelfFilter, "lowshelf"),
    (pedalboard.HighShelfFilter, "highshelf"),
]
# (cutoff_hz, gain_db, q); 23990 Hz exercises the clamp to sample_rate/2 - 100 Hz
TWIN_SETTINGS = [
    (440.0, 0.0, 0.7071),
    (100.0, 6.0, 0.7),
    (1000.0, -12.0, 2.0),
    (5000.0, 9.0, 0.5),
    (15000.0, -6.0, 0.7071),
    (23990.0, 6.0, 0.7),
]


@pytest.mark.parametrize("sample_rate", [48000, 44100])
@pytest.mark.parametrize("plugin_class, mode", BIQUAD_TWINS)
def test_biquads_match_pedalboard(plugin_class, mode, sample_rate):
    rng = np.random.default_rng(10)
    x = (0.3 * rng.standard_normal((2, sample_rate // 2))).astype(np.float32)
    for cutoff_hz, gain_db, q in TWIN_SETTINGS:
        plugin = plugin_class(cutoff_frequency_hz=cutoff_hz, gain_db=gain_db, q=q)
        ref = plugin(x, sample_rate)
        b, a = biquad_coefficients(mode, cutoff_hz, q, gain_db, sample_rate)
        y, _ = iir(torch.from_numpy(x).unsqueeze(0), b, a)
        assert y.dtype == torch.float32
        value = esr(y[0].numpy().astype(np.float64), ref.astype(np.float64))
        assert value <= 1e-6, (mode, sample_rate, cutoff_hz, gain_db, q, value)


@pytest.mark.parametrize("sample_rate", [48000, 44100])
@pytest.mark.parametrize(
    "plugin_class, mode", [(pedalboard.LowpassFilter, "lowpass"), (pedalboard.HighpassFilter, "highpass")]
)
def test_one_pole_matches_pedalboard(plugin_class, mode, sample_rate):
    rng = np.random.default_rng(11)
    x = (0.3 * rng.standard_normal((1, sample_rate // 2))).astype(np.float32)
    for cutoff_hz in (50.0, 440.0, 5000.0, 18000.0):
        ref = plugin_class(cutoff_frequency_hz=cutoff_hz)(x, sample_rate)
        b, a = one_pole_coefficients(mode, cutoff_hz, sample_rate)
        y, _ = iir(torch.from_numpy(x).unsqueeze(0), b, a)
        value = esr(y[0].numpy().astype(np.float64), ref.astype(np.float64))
        assert value <= 1e-6, (mode, sample_rate, cutoff_hz, value)


# ============================================================================ analytic


def response(b, a, freqs, sample_rate):
    return frequency_response(b, a, torch.tensor(freqs, dtype=F64), sample_rate)


@pytest.mark.parametrize("cutoff_hz", [60.0, 1000.0, 12000.0])
@pytest.mark.parametrize("q", [0.3, 0.7071, 4.0])
def test_lowpass_highpass_dc_and_nyquist(cutoff_hz, q):
    sr = 48000
    b, a = biquad_coefficients("lowpass", torch.tensor(cutoff_hz, dtype=F64), q, 0.0, sr)
    h = response(b, a, [0.0, sr / 2], sr).abs()
    # sum(a) is ~ w0^2 at low cutoffs: rounding limits DC to ~1e-12 relative there
    assert h[0].item() == pytest.approx(1.0, abs=1e-9)
    assert h[1].item() == pytest.approx(0.0, abs=1e-12)
    b, a = biquad_coefficients("highpass", torch.tensor(cutoff_hz, dtype=F64), q, 0.0, sr)
    h = response(b, a, [0.0, sr / 2], sr).abs()
    assert h[0].item() == pytest.approx(0.0, abs=1e-12)
    assert h[1].item() == pytest.approx(1.0, abs=1e-9)
    # the cookbook's resonance: |H(fc)| = q for both
    for mode in ("lowpass", "highpass"):
        b, a = biquad_coefficients(mode, torch.tensor(cutoff_hz, dtype=F64), q, 0.0, sr)
        assert response(b, a, [cutoff_hz], sr).abs().item() == pytest.approx(q, rel=1e-9)


@settings(max_examples=50, deadline=None)
@given(
    cutoff_hz=st.floats(30.0, 15000.0),
    q=st.floats(0.2, 10.0),
    gain_db=st.floats(-24.0, 24.0),
)
def test_gain_modes_analytic(cutoff_hz, q, gain_db):
    sr = 48000
    fc = torch.tensor(cutoff_hz, dtype=F64)

    def db(mode, freqs):
        b, a = biquad_coefficients(mode, fc, q, gain_db, sr)
        return 20 * torch.log10(response(b, a, freqs, sr).abs())

    assert db("peak", [cutoff_hz]).item() == pytest.approx(gain_db, abs=1e-8)
    assert db("peak", [0.0, sr / 2]).abs().max().item() < 1e-8  # 0 dB far from the peak
    low = db("lowshelf", [0.0, cutoff_hz, sr / 2])
    assert low[0].item() == pytest.approx(gain_db, abs=1e-8)  # deep in the shelf
    assert low[1].item() == pytest.approx(gain_db / 2, abs=1e-8)  # half way at the cutoff
    assert low[2].item() == pytest.approx(0.0, abs=1e-8)
    high = db("highshelf", [0.0, cutoff_hz, sr / 2])
    assert high[0].item() == pytest.approx(0.0, abs=1e-8)
    assert high[1].item() == pytest.approx(gain_db / 2, abs=1e-8)
    assert high[2].item() == pytest.approx(gain_db, abs=1e-8)


@settings(max_examples=50, deadline=None)
@given(cutoff_hz=st.floats(30.0, 20000.0), q=st.floats(0.2, 10.0))
def test_allpass_notch_bandpass_analytic(cutoff_hz, q):
    sr = 44100
    fc = torch.tensor(cutoff_hz, dtype=F64)
    freqs = np.linspace(0.0, sr / 2, 101).tolist()
    b, a = biquad_coefficients("allpass", fc, q, 0.0, sr)
    mag = response(b, a, freqs, sr).abs()
    torch.testing.assert_close(mag, torch.ones_like(mag), rtol=0, atol=1e-10)
    b, a = biquad_coefficients("notch", fc, q, 0.0, sr)
    assert response(b, a, [cutoff_hz], sr).abs().item() < 1e-8  # -160 dB; rounding-limited at low fc, high q
    assert response(b, a, [0.0], sr).abs().item() == pytest.approx(1.0, abs=1e-9)
    b, a = biquad_coefficients("bandpass", fc, q, 0.0, sr)
    h = response(b, a, [0.0, cutoff_hz, sr / 2], sr).abs()
    assert h[1].item() == pytest.approx(1.0, abs=1e-10)  # constant 0 dB peak gain
    assert h[0].item() < 1e-12 and h[2].item() < 1e-12


@pytest.mark.parametrize("cutoff_hz", [20.0, 1000.0, 15000.0])
def test_one_pole_analytic(cutoff_hz):
    sr = 48000
    for mode, dc, nyq in (("lowpass", 1.0, 0.0), ("highpass", 0.0, 1.0)):
        b, a = one_pole_coefficients(mode, torch.tensor(cutoff_hz, dtype=F64), sr)
        assert b.shape == (2,) and a[0].item() == 1.0
        h = response(b, a, [0.0, cutoff_hz, sr / 2], sr).abs()
        assert h[0].item() == pytest.approx(dc, abs=1e-12)
        assert h[1].item() == pytest.approx(1 / math.sqrt(2), abs=1e-12)  # -3 dB at the cutoff
        assert h[2].item() == pytest.approx(nyq, abs=1e-9)


def test_frequency_response_shapes_and_gradient():
    cutoff = torch.tensor([[300.0], [3000.0]], dtype=F64, requires_grad=True)
    gain = torch.tensor([-6.0, 0.0, 6.0], dtype=F64)
    b, a = biquad_coefficients("peak", cutoff, 1.0, gain, 48000)
    assert b.shape == (2, 3, 3)
    h = frequency_response(b, a, [100.0, 1000.0, 10000.0, 20000.0], 48000)
    assert h.shape == (2, 3, 4) and h.dtype == torch.complex128
    for i in range(2):
        for j in range(3):
            _, ref = scipy.signal.freqz(
                b[i, j].detach().numpy(), a[i, j].detach().numpy(), worN=[100.0, 1000.0, 10000.0, 20000.0], fs=48000
            )
            np.testing.assert_allclose(h[i, j].detach().numpy(), ref, rtol=1e-12)
    assert torch.autograd.gradcheck(
        lambda c: frequency_response(*biquad_coefficients("peak", c, 1.0, gain, 48000), [500.0, 2000.0], 48000),
        (cutoff,),
    )
    # broadcasting between b and a leading dimensions
    h2 = frequency_response(b[0, 0], a, [1000.0], 48000)
    assert h2.shape == (2, 3, 1)


def test_design_shapes_dtypes_and_clamp():
    b, a = biquad_coefficients("lowshelf", torch.tensor([[100.0], [200.0]]), torch.tensor([0.5, 1.0, 2.0]), 3.0, 48000)
    assert b.shape == (2, 3, 3) and a.shape == (2, 3, 3) and b.dtype == torch.float32
    assert torch.all(a[..., 0] == 1.0)
    b, a = biquad_coefficients("lowpass", 1000.0, 0.7, 0.0, 48000)
    assert b.shape == (3,) and b.dtype == torch.get_default_dtype()

    # the cutoff is clamped into [2 Hz, sample_rate/2 - 100 Hz], with finite (zero) gradients
    sr = 48000
    cutoff = torch.tensor([0.0, 1.0, 2.0, 23900.0, 23999.0, 30000.0], dtype=F64, requires_grad=True)
    b, a = biquad_coefficients("peak", cutoff, 0.7, 6.0, sr)
    torch.testing.assert_close(b[0], b[2])
    torch.testing.assert_close(a[1], a[2])
    torch.testing.assert_close(b[3], b[5])
    torch.testing.assert_close(a[4], a[3])
    (b.sum() + a.sum()).backward()
    assert torch.isfinite(cutoff.grad).all()
    assert cutoff.grad[0].item() == 0.0 and cutoff.grad[5].item() == 0.0


def test_design_errors():
    with pytest.raises(ValueError, match="lowpass, highpass, bandpass, notch, allpass, peak, lowshelf, highshelf"):
        biquad_coefficients("bandstop", 1000.0, 0.7, 0.0, 48000)
    with pytest.raises(ValueError, match="lowpass, highpass"):
        one_pole_coefficients("bandpass", 1000.0, 48000)
    with pytest.raises(ValueError, match="q must be > 0"):
        biquad_coefficients("peak", 1000.0, 0.0, 0.0, 48000)
    with pytest.raises(ValueError, match="broadcast"):
        biquad_coefficients("peak", torch.zeros(3), torch.ones(4), 0.0, 48000)
    with pytest.raises(ValueError, match="sample_rate"):
        biquad_coefficients("peak", 1000.0, 0.7, 0.0, -1)
    with pytest.raises(ValueError, match="cutoff_hz"):
        one_pole_coefficients("lowpass", 30000.0, 48000)


