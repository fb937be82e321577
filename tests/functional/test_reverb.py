"""Freeverb's comb bank and allpass chain: transfer functions vs scipy, exact gradients, state."""

import math

import numpy as np
import pytest
import scipy.signal
import torch

from dspfx.functional.reverb import (
    FREEVERB_ALLPASS_LENGTHS,
    FREEVERB_COMB_LENGTHS,
    allpass_chain,
    comb_bank,
    freeverb_lengths,
    freeverb_network,
    freeverb_rt60,
)

F64 = torch.float64
COMBS = (3, 4, 5, 7)
ALLPASSES = (2, 5, 3)


def _zeros_state(rows, combs=COMBS, allpasses=ALLPASSES, dtype=F64):
    return (
        torch.zeros(rows, sum(combs), dtype=dtype),
        torch.zeros(rows, len(combs), dtype=dtype),
        torch.zeros(rows, sum(allpasses), dtype=dtype),
    )


def _comb_ba(length, f, d):
    """Transfer function of one comb: z^-L (1 - d z^-1) / (1 - d z^-1 - f (1 - d) z^-L)."""
    b = np.zeros(length + 2)
    b[length], b[length + 1] = 1.0, -d
    a = np.zeros(length + 1)
    a[0], a[1] = 1.0, -d
    a[length] += -f * (1.0 - d)
    return b, a


@pytest.mark.parametrize("f, d", [(0.84, 0.2), (0.7, 0.0), (0.98, 0.4), (1.0, 0.0)])
def test_comb_bank_equals_sum_of_comb_transfer_functions(f, d):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 300))
    y, _, _ = comb_bank(torch.from_numpy(x), f, d, *_zeros_state(2)[:2], COMBS)
    expected = sum(scipy.signal.lfilter(*_comb_ba(length, f, d), x, axis=-1) for length in COMBS)
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-10, atol=1e-10)


def test_allpass_chain_equals_cascade_of_freeverb_allpasses():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 200))
    y, _ = allpass_chain(torch.from_numpy(x), torch.zeros(3, sum(ALLPASSES), dtype=F64), ALLPASSES)
    expected = x
    for m in ALLPASSES:  # (1.5 z^-M - 1) / (1 - 0.5 z^-M)
        b = np.zeros(m + 1)
        b[0], b[m] = -1.0, 1.5
        a = np.zeros(m + 1)
        a[0], a[m] = 1.0, -0.5
        expected = scipy.signal.lfilter(b, a, expected, axis=-1)
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-10, atol=1e-12)


def test_comb_impulse_response_echoes():
    # one comb, no damping: echoes g^(m-1) at multiples of L, nothing in between
    u = torch.zeros(1, 40, dtype=F64)
    u[0, 0] = 1.0
    y, _, _ = comb_bank(u, 0.5, 0.0, torch.zeros(1, 7, dtype=F64), torch.zeros(1, 1, dtype=F64), (7,))
    expected = torch.zeros(40, dtype=F64)
    expected[7::7] = 0.5 ** torch.arange(5, dtype=F64)
    torch.testing.assert_close(y[0], expected, rtol=0, atol=1e-15)


def test_network_in_blocks_equals_at_once_time_varying():
    rng = np.random.default_rng(3)
    n = 120
    u = torch.from_numpy(rng.standard_normal((2, n)))
    fb = torch.from_numpy(0.7 + 0.28 * rng.random((2, n)))
    dmp = torch.from_numpy(0.4 * rng.random((1, n)))
    whole, end = freeverb_network(u, fb, dmp, _zeros_state(2), COMBS, ALLPASSES)
    state, parts = _zeros_state(2), []
    for lo, hi in [(0, 1), (1, 8), (8, 9), (9, 50), (50, 120)]:
        y, state = freeverb_network(u[:, lo:hi], fb[:, lo:hi], dmp[:, lo:hi], state, COMBS, ALLPASSES)
        parts.append(y)
    torch.testing.assert_close(torch.cat(parts, -1), whole, rtol=0, atol=1e-13)
    for a, b in zip(state, end):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-13)


def test_gradcheck_comb_bank_per_sample_knobs_and_state():
    g = torch.Generator().manual_seed(0)
    rows, n = 2, 30
    u = torch.randn(rows, n, dtype=F64, generator=g).requires_grad_()
    fb = (0.6 + 0.35 * torch.rand(rows, n, dtype=F64, generator=g)).requires_grad_()
    dmp = (0.4 * torch.rand(rows, n, dtype=F64, generator=g)).requires_grad_()
    hist = torch.randn(rows, sum(COMBS), dtype=F64, generator=g).requires_grad_()
    lp = torch.randn(rows, len(COMBS), dtype=F64, generator=g).requires_grad_()
    # all three outputs (the block and the state after it) are checked
    assert torch.autograd.gradcheck(lambda *a: comb_bank(*a, COMBS), (u, fb, dmp, hist, lp))


def test_gradcheck_comb_bank_broadcast_knobs():
    g = torch.Generator().manual_seed(1)
    u = torch.randn(3, 25, dtype=F64, generator=g).requires_grad_()
    fb = torch.tensor([[0.9]], dtype=F64, requires_grad=True)  # one value for every row and sample
    dmp = torch.tensor([[0.1], [0.3], [0.2]], dtype=F64, requires_grad=True)  # per row
    hist = torch.randn(3, sum(COMBS), dtype=F64, generator=g).requires_grad_()
    lp = torch.zeros(3, len(COMBS), dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *a: comb_bank(*a, COMBS), (u, fb, dmp, hist, lp))


def test_gradcheck_allpass_chain():
    g = torch.Generator().manual_seed(2)
    a = torch.randn(2, 30, dtype=F64, generator=g).requires_grad_()
    hist = torch.randn(2, sum(ALLPASSES), dtype=F64, generator=g).requires_grad_()
    assert torch.autograd.gradcheck(lambda *t: allpass_chain(*t, ALLPASSES), (a, hist))


def test_gradient_through_chained_blocks_equals_offline():
    """The gradient w.r.t. the state returned by a block is carried back into the previous one."""
    g = torch.Generator().manual_seed(3)
    u = torch.randn(1, 60, dtype=F64, generator=g)
    w = torch.randn(1, 60, dtype=F64, generator=g)

    def loss(fb, blocks):
        state, out = _zeros_state(1), []
        for lo, hi in blocks:
            y, state = freeverb_network(u[:, lo:hi], fb, 0.2, state, COMBS, ALLPASSES)
            out.append(y)
        return (torch.cat(out, -1) * w).sum()

    fb1 = torch.tensor([[0.9]], dtype=F64, requires_grad=True)
    fb2 = torch.tensor([[0.9]], dtype=F64, requires_grad=True)
    loss(fb1, [(0, 60)]).backward()
    loss(fb2, [(0, 13), (13, 14), (14, 60)]).backward()
    torch.testing.assert_close(fb2.grad, fb1.grad, rtol=1e-12, atol=1e-12)


def test_float32_in_float32_out():
    u = torch.randn(1, 50)
    y, state = freeverb_network(u, 0.84, 0.2, _zeros_state(1, dtype=torch.float32), COMBS, ALLPASSES)
    assert y.dtype == torch.float32 and all(s.dtype == torch.float32 for s in state)


def test_lengths_scale_like_juce():
    assert freeverb_lengths(44100, FREEVERB_COMB_LENGTHS) == FREEVERB_COMB_LENGTHS
    assert freeverb_lengths(44100, FREEVERB_ALLPASS_LENGTHS, 23) == tuple(n + 23 for n in FREEVERB_ALLPASS_LENGTHS)
    # 48 kHz: the spread is added before scaling (int(48000 * 1139 / 44100) = 1239, not 1214 + 23)
    assert freeverb_lengths(48000, (1116,)) == (1214,)
    assert freeverb_lengths(48000, (1116,), 23) == (1239,)
    assert freeverb_lengths(100, (5,)) == (1,)  # never zero


def test_rt60_formulas():
    g = 0.84
    mean = sum(FREEVERB_COMB_LENGTHS) / 8
    assert freeverb_rt60(0.5, 44100, method="mean") == pytest.approx(-3 * mean / (44100 * math.log10(g)), rel=1e-12)
    # one comb length: the energy decay is one exponential, both methods agree
    assert freeverb_rt60(0.5, 44100, (1300,), method="edc") == pytest.approx(
        freeverb_rt60(0.5, 44100, (1300,), method="mean"), rel=1e-6
    )
    # several: the longer combs dominate the late decay
    assert freeverb_rt60(0.5, 44100) > freeverb_rt60(0.5, 44100, method="mean")
    # damping shortens the decay above DC only
    assert freeverb_rt60(0.5, 44100, damping=1.0) == freeverb_rt60(0.5, 44100)
    assert freeverb_rt60(0.5, 44100, damping=1.0, freq_hz=5000) < freeverb_rt60(0.5, 44100, freq_hz=5000)
    assert freeverb_rt60(1.0 / 0.28 * 0.3, 44100) == math.inf  # loop gain 1
    with pytest.raises(ValueError, match="method"):
        freeverb_rt60(0.5, 44100, method="sabine")


def test_bad_inputs():
    u = torch.zeros(1, 10, dtype=F64)
    hist, lp = torch.zeros(1, sum(COMBS), dtype=F64), torch.zeros(1, len(COMBS), dtype=F64)
    with pytest.raises(ValueError, match="rows, samples"):
        comb_bank(torch.zeros(10, dtype=F64), 0.8, 0.2, hist, lp, COMBS)
    with pytest.raises(ValueError, match="feedback"):
        comb_bank(u, torch.zeros(2, 10, dtype=F64), 0.2, hist, lp, COMBS)
    with pytest.raises(ValueError, match="comb state"):
        comb_bank(u, 0.8, 0.2, hist[:, :-1], lp, COMBS)
    with pytest.raises(ValueError, match="comb lengths"):
        comb_bank(u, 0.8, 0.2, hist, lp, (3, 0))
    with pytest.raises(ValueError, match="allpass state"):
        allpass_chain(u, torch.zeros(1, 3, dtype=F64), ALLPASSES)
