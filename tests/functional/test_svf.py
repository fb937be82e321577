"""dspfx.functional.svf: TPT state-variable filter against the bilinear biquads, its exact
adjoint, state and stability under modulation."""

import math

import numpy as np
import pytest
import scipy.signal
import torch

from dspfx.functional.design import biquad_coefficients
from dspfx.functional.svf import SVF_MODES, svf, svf_coefficients, svf_filter


def _noise(n, channels=1, batch=1, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, channels, n, generator=g, dtype=dtype)


def _textbook_biquad(mode, fc, q, gain_db, sr):
    """The bilinear transform (prewarped at fc) of the cookbook's analog prototypes, float64."""
    K = math.tan(math.pi * min(max(fc, 2.0), sr / 2 - 100.0) / sr)
    A = 10.0 ** (gain_db / 40.0)
    # analog numerator/denominator in s: (n2 s^2 + n1 s + n0) / (d2 s^2 + d1 s + d0), s -> (1-z^-1)/(K(1+z^-1))
    w = 1.0 / q
    protos = {
        "lowpass": ((0, 0, 1), (1, w, 1)),
        "highpass": ((1, 0, 0), (1, w, 1)),
        "bandpass": ((0, w, 0), (1, w, 1)),
        "notch": ((1, 0, 1), (1, w, 1)),
        "allpass": ((1, -w, 1), (1, w, 1)),
        "peak": ((1, A * w, 1), (1, w / A, 1)),
        "lowshelf": ((A, math.sqrt(A) * w * A, A * A), (A, math.sqrt(A) * w, 1)),
        "highshelf": ((A * A, math.sqrt(A) * w * A, A), (1, math.sqrt(A) * w, A)),
    }
    (n2, n1, n0), (d2, d1, d0) = protos[mode]

    def bilinear(c2, c1, c0):
        # c2 (1-z)^2 + c1 K (1-z)(1+z) + c0 K^2 (1+z)^2, z = z^-1
        return np.array(
            [c2 + c1 * K + c0 * K * K, -2 * c2 + 2 * c0 * K * K, c2 - c1 * K + c0 * K * K], dtype=np.float64
        )

    b, a = bilinear(n2, n1, n0), bilinear(d2, d1, d0)
    return b / a[0], a / a[0]


SETTINGS = [(60.0, 0.5, 6.0), (1000.0, 0.7071, -12.0), (7000.0, 8.0, 20.0), (20000.0, 0.1, -24.0)]


@pytest.mark.parametrize("mode", SVF_MODES)
def test_static_svf_equals_the_bilinear_biquad_in_scipy(mode):
    x = _noise(3000)
    sr = 44100
    for fc, q, gain_db in SETTINGS:
        y, _ = svf(x, fc, q, sr, mode, gain_db)
        b, a = _textbook_biquad(mode, fc, q, gain_db, sr)
        ref = scipy.signal.lfilter(b, a, x[0, 0].numpy())
        assert np.abs(y[0, 0].numpy() - ref).max() <= 1e-9 * max(1.0, np.abs(ref).max())


@pytest.mark.parametrize("mode", SVF_MODES)
def test_static_svf_impulse_response_equals_dspfx_biquad(mode):
    sr = 48000
    x = torch.zeros(1, 1, 4096, dtype=torch.float64)
    x[..., 0] = 1.0
    for fc, q, gain_db in SETTINGS:
        y, _ = svf(x, fc, q, sr, mode, gain_db)
        t = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
        b, a = biquad_coefficients(mode, t(fc), t(q), t(gain_db), sr)
        ref = scipy.signal.lfilter(b.numpy(), a.numpy(), x[0, 0].numpy())
        rel = np.abs(y[0, 0].numpy() - ref).max() / np.abs(ref).max()
        assert rel <= 1e-6


def test_coefficients_reject_bad_mode_and_rate():
    with pytest.raises(ValueError, match="svf mode must be one of"):
        svf_coefficients("bandstop", 100.0, 1.0, 0.0, 48000)
    with pytest.raises(ValueError, match="sample_rate"):
        svf_coefficients("lowpass", 100.0, 1.0, 0.0, 0)


@pytest.mark.parametrize("mode", SVF_MODES)
def test_gradcheck_time_varying_cutoff_q_gain_and_state(mode):
    n = 40
    x = _noise(n, batch=2, seed=1).requires_grad_(True)
    g = torch.Generator().manual_seed(2)
    cutoff = (100.0 + 8000.0 * torch.rand(2, 1, n, generator=g, dtype=torch.float64)).requires_grad_(True)
    q = (0.3 + 5.0 * torch.rand(1, 1, n, generator=g, dtype=torch.float64)).requires_grad_(True)
    gain = (-12.0 + 24.0 * torch.rand(2, 1, 1, generator=g, dtype=torch.float64)).requires_grad_(True)
    state = torch.randn(2, 1, 2, generator=g, dtype=torch.float64).requires_grad_(True)

    def f(x, cutoff, q, gain, state):
        return svf(x, cutoff, q, 48000, mode, gain, state=state)

    assert torch.autograd.gradcheck(f, (x, cutoff, q, gain, state), eps=1e-6, atol=1e-6)


def test_state_carries_between_blocks():
    x = _noise(900, channels=2)
    coefs = svf_coefficients("bandpass", torch.tensor(900.0, dtype=torch.float64), 5.0, 0.0, 48000)
    full, s_full = svf_filter(x, *coefs)
    state, parts = None, []
    for i in range(0, 900, 250):
        y, state = svf_filter(x[..., i : i + 250], *coefs, state=state)
        parts.append(y)
    assert torch.allclose(torch.cat(parts, -1), full, atol=1e-12)
    assert torch.allclose(state, s_full, atol=1e-12)


def test_stable_under_fast_random_modulation():
    # cutoff jumping anywhere in 20 Hz .. 20 kHz every sample at q = 20: the TPT filter stays
    # bounded, while a direct-form biquad swept the same way (same per-sample design) blows up.
    n = 20000
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, 1, n, generator=g, dtype=torch.float64)
    cutoff = torch.exp(math.log(20.0) + math.log(1000.0) * torch.rand(1, 1, n, generator=g, dtype=torch.float64))
    y, _ = svf(x, cutoff, 20.0, 48000, "lowpass")
    assert torch.isfinite(y).all() and y.abs().max() < 100.0
    b, a = biquad_coefficients("lowpass", cutoff[0, 0], 20.0, 0.0, 48000)
    b, a = b.numpy(), a.numpy()
    xs, yd = x[0, 0].numpy(), np.zeros(n)
    x1 = x2 = y1 = y2 = 0.0
    for t in range(2000):  # a short pure-python run suffices to see the direct form diverge
        y0 = b[t, 0] * xs[t] + b[t, 1] * x1 + b[t, 2] * x2 - a[t, 1] * y1 - a[t, 2] * y2
        x2, x1, y2, y1 = x1, xs[t], y1, y0
        yd[t] = y0
    assert np.abs(yd[:2000]).max() > 10 * float(y[0, 0, :2000].abs().max())


def test_bad_state_and_shapes_raise():
    x = _noise(10)
    with pytest.raises(ValueError, match=r"state must be shaped \(batch, channels, 2\)"):
        svf(x, 100.0, 1.0, 48000, state=torch.zeros(1, 1, 3))
    with pytest.raises(ValueError, match="does not broadcast"):
        svf(x, torch.ones(2, 1, 10) * 100.0, 1.0, 48000)
