import math

import numpy as np
import pedalboard
import pytest
import scipy.signal
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dspfx.functional import filters as filters_module
from dspfx.functional import (
    BIQUAD_MODES,
    biquad_coefficients,
    frequency_response,
    iir,
    one_pole_coefficients,
)

F64 = torch.float64


def esr(y: np.ndarray, ref: np.ndarray) -> float:
    return float(np.sum((y - ref) ** 2) / np.sum(ref**2))


def noise(shape, seed=0, dtype=F64) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=gen, dtype=dtype)


def lfilter_ref(b: np.ndarray, a: np.ndarray, x: np.ndarray) -> np.ndarray:
    return scipy.signal.lfilter(b, a, x, axis=-1)


def assert_close_scaled(y, ref, rtol):
    """All samples within rtol of the reference's peak (a relative check robust to zeros)."""
    y, ref = np.asarray(y), np.asarray(ref)
    np.testing.assert_allclose(y, ref, rtol=rtol, atol=rtol * np.max(np.abs(ref)))


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


# ============================================================================ time-varying iir


def naive_df1(x, b, a, x_hist, y_hist):
    """Per-sample direct form I reference: y[n] = (sum b_k x[n-k] - sum a_k y[n-k]) / a0."""
    batch, channels, n = x.shape
    b = np.broadcast_to(b, (batch, channels, n, b.shape[-1]))
    a = np.broadcast_to(a, (batch, channels, n, a.shape[-1]))
    y = np.zeros_like(x)
    for i in range(batch):
        for c in range(channels):
            xs = list(x_hist[i, c])  # most recent first
            ys = list(y_hist[i, c])
            for t in range(n):
                xs = [x[i, c, t]] + xs
                acc = sum(b[i, c, t, k] * xs[k] for k in range(b.shape[-1]))
                acc -= sum(a[i, c, t, k] * ys[k - 1] for k in range(1, a.shape[-1]))
                y[i, c, t] = acc / a[i, c, t, 0]
                ys = [y[i, c, t]] + ys
                xs = xs[: b.shape[-1] - 1]
                ys = ys[: a.shape[-1] - 1]
    return y


def sweep(batch, channels, n, low, high, seed=0, dtype=F64):
    """Smooth per-sample cutoff sweeps, different per batch item and channel."""
    gen = torch.Generator().manual_seed(seed)
    phase = torch.rand(batch, channels, 1, generator=gen, dtype=dtype) * 2 * math.pi
    t = torch.arange(n, dtype=dtype) / n
    m = 0.5 + 0.5 * torch.sin(2 * math.pi * 1.5 * t + phase)
    return low * (high / low) ** m


@pytest.fixture(params=["flattened", "batched"])
def lpc_path(request, monkeypatch):
    """Run a test through both ways iir calls torchlpc for several rows (see filters._all_pole)."""
    if request.param == "batched":
        monkeypatch.setattr(filters_module, "_FLATTEN_MAX_SAMPLES", 0)
    return request.param


def test_time_varying_matches_naive_loop(lpc_path):
    batch, channels, n = 2, 2, 200
    x = noise((batch, channels, n), seed=20)
    b = noise((batch, channels, n, 3), seed=21)
    _, a = biquad_coefficients("lowpass", sweep(batch, channels, n, 100.0, 10000.0, seed=22), 2.0, 0.0, 48000)
    x_hist = noise((batch, channels, 2), seed=23)
    y_hist = noise((batch, channels, 2), seed=24)
    y, (xs, ys) = iir(x, b, a, (x_hist, y_hist))
    ref = naive_df1(x.numpy(), b.numpy(), a.numpy(), x_hist.numpy(), y_hist.numpy())
    assert_close_scaled(y.numpy(), ref, 1e-12)
    np.testing.assert_array_equal(xs.numpy(), x.numpy()[..., ::-1][..., :2])
    np.testing.assert_array_equal(ys.numpy(), y.numpy()[..., ::-1][..., :2])


def test_time_varying_third_order_and_unnormalised_matches_naive_loop():
    batch, channels, n = 1, 2, 150
    x = noise((batch, channels, n), seed=30)
    _, a2 = biquad_coefficients("peak", sweep(batch, channels, n, 200.0, 5000.0, seed=31), 1.0, 6.0, 48000)
    pole = 0.5 + 0.3 * torch.sin(torch.arange(n, dtype=F64) / 20)  # one extra real pole
    # (1 + a1 z^-1 + a2 z^-2)(1 - p z^-1), scaled by a time-varying a0 = 1.5 + 0.5 sin
    a1_, a2_ = a2[..., 1], a2[..., 2]
    a3 = torch.stack([torch.ones_like(a1_), a1_ - pole, a2_ - a1_ * pole, -a2_ * pole], dim=-1)
    a3 = a3 * (1.5 + 0.5 * torch.sin(torch.arange(n, dtype=F64) / 7)).unsqueeze(-1)
    b = noise((1, 1, n, 4), seed=32)  # broadcast over channels
    y, _ = iir(x, b, a3)
    ref = naive_df1(x.numpy(), b.numpy(), a3.numpy(), np.zeros((1, 2, 3)), np.zeros((1, 2, 3)))
    assert_close_scaled(y.numpy(), ref, 1e-12)


@pytest.mark.parametrize("mode", ["lowpass", "peak", "highshelf"])
def test_gradcheck_through_design_and_state(mode, lpc_path):
    # the batched torchlpc call opens a thread pool region per call: keep its gradcheck shorter
    batch, n = 2, (32 if lpc_path == "flattened" else 12)
    sr = 8000
    t = torch.arange(n, dtype=F64)
    cutoff = (torch.tensor([[600.0], [1500.0]], dtype=F64) * (1 + 0.5 * torch.sin(t / 5))).unsqueeze(1)
    cutoff.requires_grad_(True)  # (2, 1, 32): one cutoff per sample
    q = torch.tensor(1.2, dtype=F64, requires_grad=True)
    gain_db = torch.tensor([[[4.0]], [[-3.0]]], dtype=F64, requires_grad=True)
    x = noise((batch, 1, n), seed=40).requires_grad_(True)
    x_hist = noise((batch, 1, 2), seed=41).requires_grad_(True)
    y_hist = noise((batch, 1, 2), seed=42).requires_grad_(True)

    def run(x, cutoff, q, gain_db, x_hist, y_hist):
        b, a = biquad_coefficients(mode, cutoff, q, gain_db, sr)
        y, (xs, ys) = iir(x, b, a, (x_hist, y_hist))
        return y, xs, ys

    assert torch.autograd.gradcheck(run, (x, cutoff, q, gain_db, x_hist, y_hist))


def test_gradcheck_raw_coefficients(lpc_path):
    batch, n = 2, (32 if lpc_path == "flattened" else 10)
    x = noise((batch, 1, n), seed=50).requires_grad_(True)
    b = noise((batch, 1, n, 3), seed=51).requires_grad_(True)
    _, a = biquad_coefficients("bandpass", sweep(batch, 1, n, 300.0, 3000.0, seed=52), 3.0, 0.0, 16000)
    a = a.detach().requires_grad_(True)
    static_b = noise((3,), seed=53).requires_grad_(True)
    static_a = torch.tensor([1.0, -1.2, 0.5], dtype=F64, requires_grad=True)
    y_hist = noise((batch, 1, 2), seed=54).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x, b, a: iir(x, b, a)[0], (x, b, a))
    assert torch.autograd.gradcheck(
        lambda x, b, a, yh: iir(x, b, a, (torch.zeros(batch, 1, 2, dtype=F64), yh))[0],
        (x, static_b, static_a, y_hist),
    )
    # first-order denominator takes torchlpc's other code path
    one_a = torch.tensor([1.0, -0.7], dtype=F64, requires_grad=True)
    y1 = noise((batch, 1, 1), seed=55).requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda x, a, yh: iir(x, static_b[:2].detach(), a, (torch.zeros(batch, 1, 1, dtype=F64), yh))[0],
        (x, one_a, y1),
    )


def test_many_rows_and_long_signals_take_the_batched_path():
    # rows x samples above the flattening threshold: torchlpc's batched call
    batch, channels, n = 2, 2, 20000
    assert batch * channels * n > filters_module._FLATTEN_MAX_SAMPLES
    x = noise((batch, channels, n), seed=56)
    b, a = biquad_coefficients("peak", sweep(batch, channels, n, 100.0, 8000.0, seed=57), 2.0, 6.0, 48000)
    state = (noise((batch, channels, 2), seed=58), noise((batch, channels, 2), seed=59))
    y, (xs, ys) = iir(x, b, a, state)
    for i in range(batch):
        for c in range(channels):
            row_state = (state[0][i : i + 1, c : c + 1], state[1][i : i + 1, c : c + 1])
            y_row, (xs_row, ys_row) = iir(x[i : i + 1, c : c + 1], b[i : i + 1, c : c + 1], a[i : i + 1, c : c + 1], row_state)
            torch.testing.assert_close(y[i : i + 1, c : c + 1], y_row, rtol=0, atol=1e-12)
            torch.testing.assert_close(ys[i : i + 1, c : c + 1], ys_row, rtol=0, atol=1e-12)


@pytest.mark.parametrize("order", [1, 2, 4])
def test_torch_scan_fallback_matches_torchlpc(order):
    # the pure-torch recursion used on devices without a torchlpc kernel, checked on CPU
    rows, n = 3, 300
    u = noise((rows, n), seed=90)
    _, a = biquad_coefficients("lowpass", sweep(rows, 1, n, 200.0, 5000.0, seed=91)[:, 0], 1.5, 0.0, 48000)
    ar = a[..., 1:] if order == 2 else torch.cat([a[..., 1:]] * (order // 2), -1) * 0.5 if order == 4 else a[..., 1:2] * 0.45
    y_hist = noise((rows, order), seed=92)
    y_scan = filters_module._all_pole_scan(u, ar, y_hist)
    y_ref = filters_module._all_pole(u, ar, y_hist)
    torch.testing.assert_close(y_scan, y_ref, rtol=0, atol=1e-10 * y_ref.abs().max().item())
    small = (u[:, :24].clone().requires_grad_(True), ar[:, :24].clone().requires_grad_(True), y_hist.clone().requires_grad_(True))
    assert torch.autograd.gradcheck(filters_module._all_pole_scan, small)


# ============================================================================ streaming


def stream(x, b, a, block, state=None):
    """Filter x block by block, slicing time-varying coefficients along with it."""
    outputs = []
    n = x.shape[-1]
    for start in range(0, n, block):
        stop = min(start + block, n)
        bb = b[..., start:stop, :] if b.ndim == 4 and b.shape[-2] == n else b
        aa = a[..., start:stop, :] if a.ndim == 4 and a.shape[-2] == n else a
        y, state = iir(x[..., start:stop], bb, aa, state)
        outputs.append(y)
    return torch.cat(outputs, dim=-1), state


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
@pytest.mark.parametrize("varying", [False, True], ids=["static", "time_varying"])
def test_streaming_equals_offline(varying, dtype, tol):
    batch, channels, n = 2, 2, 5000
    x = noise((batch, channels, n), seed=60, dtype=dtype)
    if varying:
        b, a = biquad_coefficients("peak", sweep(batch, channels, n, 100.0, 8000.0, seed=61, dtype=dtype), 2.0, 9.0, 48000)
    else:
        b, a = biquad_coefficients("lowshelf", torch.tensor([[[300.0]], [[2000.0]]], dtype=dtype), 0.7071, 6.0, 48000)
    y_off, (xs_off, ys_off) = iir(x, b, a)
    if varying and dtype == torch.float32:
        # blocks of one sample see static coefficients and run in the compiled static loop,
        # the offline render in torchlpc's time-varying loop: the same recursion in another
        # float32 summation order, amplified by poles near the unit circle (100 Hz, Q 2).
        # float64 above checks that the two are the same computation to 1e-12.
        tol = 1e-3
    for block in (1, 7, 64, 4096):
        y, (xs, ys) = stream(x, b, a, block)
        torch.testing.assert_close(y, y_off, rtol=0, atol=tol)
        torch.testing.assert_close(xs, xs_off, rtol=0, atol=tol)
        torch.testing.assert_close(ys, ys_off, rtol=0, atol=tol)


def test_static_loop_equals_the_time_varying_loop():
    """The compiled static path and torchlpc's time-varying path compute the same filter."""
    from dspfx.functional.filters import StaticIIR

    b, a = biquad_coefficients("peak", torch.tensor(700.0, dtype=F64), 1.5, 6.0, 48000)
    x = noise((2, 3, 3000), seed=90)
    static, _ = iir(x, b, a)
    varying, _ = iir(x, b.expand(2, 3, 3000, 3), a.expand(2, 3, 3000, 3))
    torch.testing.assert_close(static, varying, rtol=0, atol=1e-12)
    assert_close_scaled(static.numpy(), lfilter_ref(b.numpy(), a.numpy(), x.numpy()), 1e-10)
    # exact gradients of the compiled loop, histories included, for several orders
    torch.manual_seed(0)
    for nb, order in ((3, 2), (2, 1), (1, 2), (4, 3), (3, 0)):
        for n in (1, 2, 30):
            args = (
                torch.randn(2, n, dtype=F64),
                torch.randn(2, nb, dtype=F64),
                0.3 * torch.randn(2, order, dtype=F64),
                torch.randn(2, nb - 1, dtype=F64),
                torch.randn(2, order, dtype=F64),
            )
            assert torch.autograd.gradcheck(StaticIIR.apply, tuple(t.requires_grad_() for t in args))


@pytest.mark.parametrize("block", [1, 3, 7])
def test_streaming_blocks_shorter_than_order(block):
    b_np, a_np = scipy.signal.butter(4, 0.2)  # order 4 > blocks of 1 and 3
    b, a = torch.from_numpy(b_np), torch.from_numpy(a_np)
    x = noise((1, 2, 300), seed=70)
    y_off, _ = iir(x, b, a)
    y, _ = stream(x, b, a, block)
    torch.testing.assert_close(y, y_off, rtol=0, atol=1e-12)
    assert_close_scaled(y.numpy(), lfilter_ref(b_np, a_np, x.numpy()), 1e-10)


def test_state_continues_a_signal():
    b, a = biquad_coefficients("highpass", torch.tensor(500.0, dtype=F64), 0.7, 0.0, 48000)
    x = noise((1, 1, 1000), seed=80)
    y_all, state_all = iir(x, b, a)
    _, state = iir(x[..., :600], b, a)
    y_rest, state_rest = iir(x[..., 600:], b, a, state)
    torch.testing.assert_close(y_rest, y_all[..., 600:], rtol=0, atol=1e-12)
    torch.testing.assert_close(state_rest[1], state_all[1], rtol=0, atol=1e-12)
    # an empty block leaves the state alone
    y_empty, state_empty = iir(x[..., :0], b, a, state)
    assert y_empty.shape == (1, 1, 0)
    assert torch.equal(state_empty[0], state[0]) and torch.equal(state_empty[1], state[1])


def test_iir_errors():
    b, a = biquad_coefficients("lowpass", 1000.0, 0.7, 0.0, 48000)
    with pytest.raises(ValueError, match=r"\(batch, channels, samples\).*\(1000,\)"):
        iir(torch.zeros(1000), b, a)
    with pytest.raises(ValueError, match="batch dimension is 3, expected 1 or 2"):
        iir(torch.zeros(2, 1, 100), torch.zeros(3, 1, 1, 3), a)
    with pytest.raises(ValueError, match="samples dimension is 50, expected 1 or 100"):
        iir(torch.zeros(2, 1, 100), b, torch.zeros(50, 3))
    with pytest.raises(ValueError, match="y_history"):
        iir(torch.zeros(2, 1, 100), b, a, (torch.zeros(2, 1, 2), torch.zeros(2, 1, 3)))
    with pytest.raises(ValueError, match="state must be a pair"):
        iir(torch.zeros(2, 1, 100), b, a, torch.zeros(2, 1, 2))
    with pytest.raises(TypeError, match="floating-point"):
        iir(torch.zeros(2, 1, 100, dtype=torch.int64), b, a)


# ============================================================================ FIR design and filtering

from dspfx.functional import fir_filter, fir_from_magnitudes, fir_window, upsample_control  # noqa: E402


def test_fir_from_magnitudes_equals_the_ddsp_recipe_in_numpy():
    # DDSP: irfft of the magnitudes, rolled by half (zero phase -> causal), times a periodic Hann
    rng = np.random.default_rng(0)
    mags = rng.uniform(0.0, 2.0, (3, 4, 65))
    h = fir_from_magnitudes(torch.from_numpy(mags))
    assert h.shape == (3, 4, 128) and h.dtype == F64
    ref = np.roll(np.fft.irfft(mags, n=128, axis=-1), 64, axis=-1) * scipy.signal.get_window("hann", 128)
    np.testing.assert_allclose(h.numpy(), ref, atol=1e-15)
    # rectangular window: the rolled irfft itself, whose DFT gives the magnitudes back exactly
    h_rect = fir_from_magnitudes(torch.from_numpy(mags), window="rectangular").numpy()
    spectrum = np.fft.rfft(np.roll(h_rect, -64, axis=-1), axis=-1)
    np.testing.assert_allclose(spectrum.real, mags, atol=1e-12)
    np.testing.assert_allclose(spectrum.imag, 0.0, atol=1e-12)


@pytest.mark.parametrize("n_bands, n_taps", [(65, 128), (65, 127), (65, 129), (17, 100), (9, 5), (5, 1), (5, 2)])
def test_fir_taps_are_symmetric_about_the_delay(n_bands, n_taps):
    mags = noise((2, n_bands), seed=n_taps).abs()
    h = fir_from_magnitudes(mags, n_taps)
    assert h.shape == (2, n_taps)
    c = n_taps // 2
    k = min(c, n_taps - 1 - c)
    assert torch.allclose(h[:, c - k : c].flip(-1), h[:, c + 1 : c + k + 1], atol=1e-15)
    if n_taps % 2 == 0 and n_taps > 1:
        assert torch.all(h[:, 0] == 0)  # the periodic Hann window's zero tap
    # linear in the magnitudes
    m2 = noise((2, n_bands), seed=99)
    combined = fir_from_magnitudes(2 * mags - m2, n_taps)
    assert torch.allclose(combined, 2 * h - fir_from_magnitudes(m2, n_taps), atol=1e-14)


def test_fir_window_shapes():
    w = fir_window(8)
    np.testing.assert_allclose(w.numpy(), scipy.signal.get_window("hann", 8), atol=1e-7)
    w = fir_window(9, dtype=F64)
    assert torch.allclose(w, w.flip(0)) and w.argmax() == 4 and float(w.min()) > 0
    assert torch.equal(fir_window(5, "rectangular"), torch.ones(5))


def test_fir_filter_static_equals_lfilter_and_streams():
    x = noise((2, 3, 700))
    h = noise((2, 31), seed=1)  # one response per batch item
    y, _ = fir_filter(x, h)
    ref = np.stack([scipy.signal.lfilter(h[b].numpy(), [1.0], x[b].numpy(), axis=-1) for b in range(2)])
    np.testing.assert_allclose(y.numpy(), ref, atol=1e-12)
    # blocks with the carried history (short blocks: matmul path; long: conv1d) == at once
    pieces, hist, i = [], None, 0
    for size in (1, 5, 29, 2, 600, 63):
        out, hist = fir_filter(x[..., i : i + size], h, hist)
        pieces.append(out)
        i += size
    assert i == 700
    assert torch.allclose(torch.cat(pieces, -1), y, atol=1e-12)
    assert torch.equal(hist, x[..., -30:].flip(-1))


def test_fir_filter_time_varying_equals_per_sample_interpolated_taps():
    x = noise((2, 2, 90))
    frames = noise((2, 7, 12), seed=3)
    history = noise((2, 2, 11), seed=4)
    y, new_hist = fir_filter(x, frames, history)
    per_sample = upsample_control(frames, 90, mode="causal")  # (2, 90, 12)
    x_ext = torch.cat([history.flip(-1), x], -1)
    ref = torch.stack([(per_sample[:, None, n] * x_ext[..., n : n + 12].flip(-1)).sum(-1) for n in range(90)], -1)
    assert torch.allclose(y, ref, atol=1e-12)
    assert torch.equal(new_hist, x[..., -11:].flip(-1))
    # more frames than samples, and a single-sample block (its one sample ends the hop: the last frame)
    y2, _ = fir_filter(x[..., :5], frames)
    ps = upsample_control(frames, 5, mode="causal")
    xe = torch.nn.functional.pad(x[..., :5], (11, 0))
    ref2 = torch.stack([(ps[:, None, n] * xe[..., n : n + 12].flip(-1)).sum(-1) for n in range(5)], -1)
    assert torch.allclose(y2, ref2)
    y1, _ = fir_filter(x[..., :1], frames)
    assert torch.allclose(y1[..., 0], frames[:, None, -1, 0] * x[..., 0])
    # a previous block's response: the block starts from it (the causal grid of every control)
    prev = noise((2, 12), seed=5)
    y3, _ = fir_filter(x, frames, history, previous=prev)
    ps3 = upsample_control(frames, 90, mode="causal", previous=prev[:, None, :])
    ref3 = torch.stack([(ps3[:, None, n] * x_ext[..., n : n + 12].flip(-1)).sum(-1) for n in range(90)], -1)
    assert torch.allclose(y3, ref3, atol=1e-12)


def test_fir_gradcheck_float64():
    x = noise((1, 1, 20)).requires_grad_(True)
    mags = noise((1, 3, 5), seed=2).abs().requires_grad_(True)
    hist = noise((1, 1, 7), seed=3).requires_grad_(True)

    def f(x, mags, hist):
        return fir_filter(x, fir_from_magnitudes(mags, 8), hist)[0]

    assert torch.autograd.gradcheck(f, (x, mags, hist), eps=1e-6, atol=1e-8)
    assert torch.autograd.gradcheck(lambda m: f(x, m[:, :1], hist), (mags,), eps=1e-6, atol=1e-8)


def test_fir_bad_inputs():
    with pytest.raises(ValueError, match="n_bands >= 2"):
        fir_from_magnitudes(torch.ones(1))
    with pytest.raises(TypeError, match="real floating"):
        fir_from_magnitudes(torch.ones(5, dtype=torch.int64))
    with pytest.raises(ValueError, match="n_taps must be an int >= 1"):
        fir_from_magnitudes(torch.ones(5), 0)
    with pytest.raises(ValueError, match="unknown FIR window mode 'blackman'"):
        fir_from_magnitudes(torch.ones(5), window="blackman")
    with pytest.raises(ValueError, match=r"impulse_responses must be shaped"):
        fir_filter(torch.zeros(2, 1, 10), torch.ones(3, 4, 5))
    with pytest.raises(ValueError, match="history"):
        fir_filter(torch.zeros(2, 1, 10), torch.ones(5), torch.zeros(2, 1, 3))
    with pytest.raises(ValueError, match=r"\(batch, channels, samples\)"):
        fir_filter(torch.zeros(10), torch.ones(5))


# --- transposed direct form II (the form pedalboard/JUCE run) ---------------------------------


def test_tdf2_matches_scipy_lfilter_with_zi_and_streams_bit_exactly():
    torch.manual_seed(3)
    x = torch.randn(2, 3, 300, dtype=F64)
    b, a = biquad_coefficients("peak", torch.tensor(500.0, dtype=F64), 2.0, 6.0, 48000)
    s0 = torch.randn(2, 3, 2, dtype=F64)
    y, s = iir(x, b, a, s0, form="tdf2")
    ref, zf = scipy.signal.lfilter(b.numpy(), a.numpy(), x.numpy(), axis=-1, zi=s0.numpy())
    assert np.abs(y.numpy() - ref).max() < 1e-12
    assert np.abs(s.numpy() - zf).max() < 1e-12
    x32 = x.float()
    offline, _ = iir(x32, b.float(), a.float(), form="tdf2")
    for block in (1, 7, 64):
        state, parts = None, []
        for i in range(0, x32.shape[-1], block):
            part, state = iir(x32[..., i : i + block], b.float(), a.float(), state, form="tdf2")
            parts.append(part)
        assert torch.equal(torch.cat(parts, dim=-1), offline)  # same arithmetic, bit for bit


def test_tdf2_time_varying_equals_static_and_gradients_are_exact():
    torch.manual_seed(4)
    b, a = biquad_coefficients("lowshelf", torch.tensor(300.0, dtype=F64), 0.9, -4.0, 48000)
    x = torch.randn(1, 2, 40, dtype=F64)
    s0 = torch.randn(1, 2, 2, dtype=F64)
    y_static, s_static = iir(x, b, a, s0, form="tdf2")
    y_tv, s_tv = iir(x, b.expand(1, 1, 40, 3), a.expand(1, 1, 40, 3), s0, form="tdf2")
    assert torch.allclose(y_static, y_tv, atol=1e-12) and torch.allclose(s_static, s_tv, atol=1e-12)

    def f(x, b, a, s0):
        return tuple(iir(x, b, a, s0, form="tdf2"))

    leaves = [t.clone().requires_grad_() for t in (x[..., :16], b, a, s0)]
    assert torch.autograd.gradcheck(f, leaves)
    leaves[0] = x[..., :1].clone().requires_grad_()  # a block shorter than the order
    assert torch.autograd.gradcheck(f, leaves)
    tv = [x[..., :12].clone().requires_grad_(), b.expand(1, 1, 12, 3).clone().requires_grad_(),
          a.expand(1, 1, 12, 3).clone().requires_grad_(), s0.clone().requires_grad_()]
    assert torch.autograd.gradcheck(f, tv)
    with pytest.raises(ValueError, match="tdf2"):
        iir(x, b, a, (s0, s0), form="tdf2")
    with pytest.raises(ValueError, match="form must be"):
        iir(x, b, a, form="df2")


# ---- sos_filter: the fused cascade (issue 4 speed) --------------------------------------------


def _random_sections(n_sections, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n_sections):
        mode = ("peak", "lowshelf", "highpass", "highshelf", "lowpass")[i % 5]
        hz = float(50.0 * 2.0 ** (8.0 * torch.rand(1, generator=gen)))
        q = float(0.3 + 5.0 * torch.rand(1, generator=gen))
        gain = float(24.0 * torch.rand(1, generator=gen) - 12.0)
        b, a = filters_module.biquad_coefficients(mode, torch.tensor(hz), torch.tensor(q), torch.tensor(gain), 48000)
        out.append((b.to(dtype), a.to(dtype)))
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n_sections", [1, 2, 5])
@pytest.mark.parametrize("n", [1, 3, 2000])
def test_sos_filter_fused_is_bit_identical_to_iir_per_section(dtype, n_sections, n):
    gen = torch.Generator().manual_seed(n)
    x = torch.randn(2, 2, n, generator=gen, dtype=torch.float64).to(dtype)
    sections = _random_sections(n_sections, dtype)
    state = [(torch.randn(2, 2, 2, generator=gen).to(dtype), torch.randn(2, 2, 2, generator=gen).to(dtype)) for _ in sections]
    with torch.no_grad():
        y, s = filters_module.sos_filter(x, sections, state)
        y_ref = x
        s_ref = []
        for (b, a), st in zip(sections, state):
            y_ref, st_new = iir(y_ref, b, a, st)
            s_ref.append(st_new)
    assert torch.equal(y, y_ref)
    for (xh, yh), (xh_ref, yh_ref) in zip(s, s_ref):
        assert torch.equal(xh, xh_ref) and torch.equal(yh, yh_ref)


def test_sos_filter_streams_and_matches_scipy_sosfilt():
    x = torch.randn(1, 1, 3000, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    sections = _random_sections(4, torch.float64, seed=5)
    with torch.no_grad():
        y, _ = filters_module.sos_filter(x, sections)
        state, parts = None, []
        for lo in range(0, 3000, 7 * 64):
            part, state = filters_module.sos_filter(x[..., lo : lo + 7 * 64], sections, state)
            parts.append(part)
    assert torch.equal(torch.cat(parts, -1), y)
    sos = np.stack([np.concatenate([b.reshape(-1).numpy(), a.reshape(-1).numpy()]) for b, a in sections])
    np.testing.assert_allclose(y[0, 0].numpy(), scipy.signal.sosfilt(sos, x[0, 0].numpy()), rtol=0, atol=1e-9)


def test_sos_filter_gradients_use_the_per_section_path():
    x = torch.randn(1, 1, 64, dtype=torch.float64, requires_grad=True)
    b1, a1 = _random_sections(1, torch.float64, seed=1)[0]
    b1 = b1.clone().requires_grad_(True)
    sections = [(b1, a1)] + _random_sections(1, torch.float64, seed=2)
    torch.autograd.gradcheck(lambda x, b: filters_module.sos_filter(x, [(b, a1), sections[1]])[0], (x, b1))
    with pytest.raises(ValueError, match="one .* per section"):
        filters_module.sos_filter(x, sections, [None])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_static_iir_third_order_branch_equals_the_generic_loop(dtype):
    # the order-3 register branch (tone stack) vs the generic loop (b padded with a zero tap)
    rng = np.random.default_rng(0)
    kernel = filters_module._static_iir_kernel()
    x = rng.standard_normal((2, 3000)).astype(dtype)
    b = (0.3 * rng.random((2, 4))).astype(dtype)
    a = np.array([[-0.5, 0.1, -0.02]] * 2, dtype=dtype)
    xh, yh = rng.standard_normal((2, 3)).astype(dtype), rng.standard_normal((2, 3)).astype(dtype)
    y = kernel(x, b, a, xh, yh)
    pad = np.zeros((2, 1), dtype)
    y_generic = kernel(x, np.concatenate([b, pad], 1), a, np.concatenate([xh, pad], 1), yh)
    assert np.array_equal(y, y_generic)


def test_fir_filter_static_fft_path_equals_direct_convolution():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 1, 5000, generator=gen, dtype=torch.float64)
    h = torch.randn(128, generator=gen, dtype=torch.float64)
    hist = torch.randn(2, 1, 127, generator=gen, dtype=torch.float64)
    y, new_hist = fir_filter(x, h, hist)  # long block: the FFT path
    x_ext = torch.cat([hist.flip(-1), x], -1)
    y_ref = torch.nn.functional.conv1d(x_ext.reshape(2, 1, -1), h.flip(-1).reshape(1, 1, -1))
    torch.testing.assert_close(y, y_ref, rtol=0, atol=1e-12)
    assert torch.equal(new_hist, x[..., -127:].flip(-1))
