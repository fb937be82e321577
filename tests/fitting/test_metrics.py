import math

import numpy as np
import pytest
import scipy.signal
import torch

from dspfx.fitting.losses import MRSTFTLoss
from dspfx.fitting.metrics import (
    all_metrics,
    apply_pre_emphasis,
    dc_error,
    esr,
    log_spectral_distance,
    max_abs_error,
    mrstft,
    snr_db,
)


def _noise(*shape, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=dtype)


# ---------------------------------------------------------------------------- ESR


def test_esr_identical_is_zero_and_zero_prediction_is_one():
    t = _noise(2, 2, 1000)
    assert esr(t, t).item() == 0.0
    assert esr(torch.zeros_like(t), t).item() == pytest.approx(1.0, abs=1e-12)


def test_esr_matches_formula_and_is_scale_invariant():
    t = _noise(2, 1, 2000, seed=1)
    p = t + 0.3 * _noise(2, 1, 2000, seed=2)
    tn, pn = t.numpy(), p.numpy()
    expected = np.sum((tn - pn) ** 2) / np.sum(tn**2)
    assert esr(p, t).item() == pytest.approx(expected, rel=1e-9)
    for k in (1e-3, 7.0):
        assert esr(k * p, k * t).item() == pytest.approx(expected, rel=1e-6)
    # a different error gives a different value (the metric is not constant)
    assert esr(t + 0.1 * (p - t), t).item() == pytest.approx(0.01 * expected, rel=1e-6)


@pytest.mark.parametrize("c", [0.95, 0.5])
def test_esr_pre_emphasis_matches_scipy_lfilter(c):
    t = _noise(1, 2, 3000, seed=3)
    p = t + 0.2 * _noise(1, 2, 3000, seed=4)
    tf = scipy.signal.lfilter([1.0, -c], [1.0], t.numpy(), axis=-1)
    pf = scipy.signal.lfilter([1.0, -c], [1.0], p.numpy(), axis=-1)
    expected = np.sum((tf - pf) ** 2) / np.sum(tf**2)
    got = esr(p, t, pre_emphasis=c).item()
    assert got == pytest.approx(expected, rel=1e-9)
    assert got != pytest.approx(esr(p, t).item(), rel=1e-3)
    np.testing.assert_allclose(apply_pre_emphasis(t, c).numpy(), tf, rtol=1e-12, atol=1e-12)


def test_pre_emphasis_weights_high_frequencies():
    n = torch.arange(4800, dtype=torch.float64)
    low = torch.sin(2 * math.pi * 100 / 48000 * n)
    high = torch.sin(2 * math.pi * 10000 / 48000 * n)
    # an error at 10 kHz counts more than the same error at 100 Hz once pre-emphasised
    t = low + high
    e_low = esr(t + 0.1 * low, t, pre_emphasis=0.95)
    e_high = esr(t + 0.1 * high, t, pre_emphasis=0.95)
    assert e_high > 10 * e_low


def test_esr_gradcheck_and_dtypes():
    t = _noise(1, 1, 64, seed=5)
    p = _noise(1, 1, 64, seed=6).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda q: esr(q, t, pre_emphasis=0.95), (p,))
    out32 = esr(p.detach().float(), t.float())
    assert out32.dtype == torch.float32 and out32.dim() == 0
    assert esr(p, t).dtype == torch.float64


def test_lower_rank_inputs_equal_3d():
    t = _noise(2, 500, seed=7)
    p = _noise(2, 500, seed=8)
    assert esr(p, t).item() == pytest.approx(esr(p[None], t[None]).item(), rel=1e-12)
    assert snr_db(p[0], t[0]).item() == pytest.approx(
        snr_db(p[None, :1], t[None, :1]).item(), rel=1e-12
    )


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(1, 2, 100\).*\(1, 1, 100\)"):
        esr(torch.zeros(1, 2, 100), torch.zeros(1, 1, 100))
    with pytest.raises(ValueError, match="prediction"):
        snr_db(torch.zeros(100), torch.zeros(99))
    with pytest.raises(TypeError):
        esr([0.0, 1.0], torch.zeros(2))
    with pytest.raises(ValueError):
        esr(torch.zeros(1, 1, 1, 10), torch.zeros(1, 1, 1, 10))


# ---------------------------------------------------------------------------- SNR


@pytest.mark.parametrize("snr", [0.0, 20.0, 40.0])
def test_snr_db_of_target_plus_noise(snr):
    t = _noise(1, 1, 48000, seed=9)
    noise_rms = t.pow(2).mean().sqrt() * 10 ** (-snr / 20)
    p = t + noise_rms * _noise(1, 1, 48000, seed=10)
    assert abs(snr_db(p, t).item() - snr) < 0.1


def test_snr_db_equal_signals_is_large_and_finite():
    t = _noise(1, 1, 100, seed=11)
    value = snr_db(t, t)
    assert torch.isfinite(value) and value.item() > 100
    assert torch.isfinite(snr_db(torch.zeros(10), torch.zeros(10)))


# ---------------------------------------------------------------------------- LSD


def test_lsd_zero_for_equal_with_finite_gradient():
    t = _noise(1, 2, 4096, seed=12)
    p = t.clone().requires_grad_(True)
    value = log_spectral_distance(p, t)
    assert value.item() == 0.0
    value.backward()
    assert torch.isfinite(p.grad).all()


@pytest.mark.parametrize("gain", [0.5, 2.0, 0.1])
def test_lsd_of_a_gain(gain):
    t = _noise(1, 1, 8192, seed=13)
    value = log_spectral_distance(gain * t, t)
    assert value.item() == pytest.approx(abs(20 * math.log10(gain)), abs=1e-3)


def test_lsd_grows_with_spectral_change():
    t = _noise(1, 1, 8192, seed=14)
    b, a = scipy.signal.butter(2, 0.2)
    mild = torch.from_numpy(scipy.signal.lfilter(b, a, t.numpy()) * 0.5 + t.numpy() * 0.5)
    strong = torch.from_numpy(scipy.signal.lfilter(b, a, t.numpy()))
    assert 0 < log_spectral_distance(mild, t) < log_spectral_distance(strong, t)


# ---------------------------------------------------------------------------- DC, max


def test_dc_error_of_constant_offset():
    t = _noise(2, 1, 1000, seed=15)
    offset = 0.25
    expected = offset**2 / t.pow(2).mean().item()
    assert dc_error(t + offset, t).item() == pytest.approx(expected, rel=1e-6)
    # a zero-mean error has no DC error
    assert dc_error(t + (t - t.mean()), t).item() < 1e-3 * expected


def test_max_abs_error():
    t = _noise(1, 2, 300, seed=16)
    p = t.clone()
    p[0, 1, 123] -= 0.3
    p[0, 0, 7] += 0.1
    assert max_abs_error(p, t).item() == pytest.approx(0.3, abs=1e-12)
    assert max_abs_error(t, t).item() == 0.0


# ---------------------------------------------------------------------------- MR-STFT, all


def test_mrstft_metric_matches_loss_and_is_zero_for_equal():
    t = _noise(1, 1, 8000, seed=17)
    p = 0.7 * t
    assert mrstft(t, t, 16000).item() < 1e-6
    expected = MRSTFTLoss(sample_rate=16000)(p, t).item()
    assert mrstft(p, t, 16000).item() == pytest.approx(expected, rel=1e-9)
    assert mrstft(p, t, 16000).item() > 0.1


def test_all_metrics_floats_consistent_without_grad():
    t = _noise(1, 1, 8000, seed=18).float()
    p = (0.8 * t + 0.05).requires_grad_(True)
    result = all_metrics(p, t, 48000)
    assert set(result) == {
        "esr",
        "esr_pre_emphasis",
        "mrstft",
        "snr_db",
        "lsd_db",
        "dc_error",
        "max_abs_error",
    }
    assert all(isinstance(v, float) and math.isfinite(v) for v in result.values())
    pd = p.detach()
    assert result["esr"] == pytest.approx(esr(pd, t).item(), rel=1e-6)
    assert result["esr_pre_emphasis"] == pytest.approx(
        esr(pd, t, pre_emphasis=0.95).item(), rel=1e-6
    )
    assert result["snr_db"] == pytest.approx(snr_db(pd, t).item(), rel=1e-6)
    assert result["lsd_db"] == pytest.approx(log_spectral_distance(pd, t).item(), rel=1e-5)
    assert result["dc_error"] == pytest.approx(dc_error(pd, t).item(), rel=1e-5)
    assert result["max_abs_error"] == pytest.approx(max_abs_error(pd, t).item(), rel=1e-6)
    assert result["mrstft"] == pytest.approx(mrstft(pd, t, 48000).item(), rel=1e-5)
