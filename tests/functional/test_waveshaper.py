"""Tests of dspfx.functional.waveshaper (Chebyshev and MLP shaping banks, NEWT-style)."""

import math

import numpy as np
import pytest
import torch

from dspfx.functional.waveshaper import (
    chebyshev,
    chebyshev_band_mask,
    chebyshev_shaper,
    mlp_shaper,
    shaping_bank,
)

D = torch.float64


@pytest.mark.parametrize("k", range(1, 9))
def test_chebyshev_turns_cos_into_cos_k_theta(k):
    theta = torch.linspace(0, 2 * math.pi, 1001, dtype=D)
    t = chebyshev(torch.cos(theta), 8)
    assert t.shape == (1001, 8)
    assert (t[:, k - 1] - torch.cos(k * theta)).abs().max() < 1e-5


def test_chebyshev_matches_numpy_outside_the_unit_interval():
    x = torch.linspace(-1.5, 1.5, 31, dtype=D)
    t = chebyshev(x, 6)
    for k in range(1, 7):
        ref = np.polynomial.chebyshev.chebval(x.numpy(), [0] * k + [1])
        np.testing.assert_allclose(t[:, k - 1].numpy(), ref, rtol=1e-12, atol=1e-12)


def test_shaper_equals_the_explicit_masked_series():
    torch.manual_seed(0)
    u = torch.rand(2, 3, 50, dtype=D) * 2 - 1  # (B, S, n)
    c = torch.randn(3, 5, dtype=D)
    mask = (torch.rand(2, 50, 5) > 0.3).to(D)
    got = chebyshev_shaper(u, c, mask)
    t = chebyshev(u, 5)  # (B, S, n, 5)
    ref = (t * c[None, :, None, :] * mask[:, None]).sum(-1)
    assert (got - ref).abs().max() < 1e-12
    shared = chebyshev_shaper(u, c[0])
    assert (shared - (t * c[0]).sum(-1)).abs().max() < 1e-12


def test_band_mask_zeroes_orders_at_and_above_nyquist():
    m = chebyshev_band_mask(torch.tensor([[1000.0, 3000.0, 4000.0]], dtype=D), 8, 16000)
    assert m.shape == (1, 3, 8)
    assert m[0, 0].tolist() == [1.0] * 7 + [0.0]  # 8 kHz is Nyquist itself
    assert m[0, 1].tolist() == [1.0, 1.0] + [0.0] * 6
    assert m[0, 2].tolist() == [1.0] + [0.0] * 7


def test_mlp_shaper_equals_a_loop_over_shapers():
    torch.manual_seed(1)
    S, H, n = 3, 4, 20
    ws = [torch.randn(S, H, 1, dtype=D), torch.randn(S, H, H, dtype=D), torch.randn(S, 1, H, dtype=D)]
    bs = [torch.randn(S, H, dtype=D), torch.randn(S, H, dtype=D), torch.randn(S, 1, dtype=D)]
    u = torch.randn(2, S, n, dtype=D)
    got = mlp_shaper(u, ws, bs)
    for b in range(2):
        for s in range(S):
            h = u[b, s].reshape(1, n)
            for w, bias in zip(ws, bs):
                h = torch.sin(w[s] @ h + bias[s].unsqueeze(-1))
            assert (got[b, s] - h[0]).abs().max() < 1e-12
    with pytest.raises(ValueError, match="first layer"):
        mlp_shaper(u, ws[1:], bs[1:])


def test_shaping_bank_affine_and_mix():
    torch.manual_seed(2)
    x = torch.randn(2, 30, dtype=D)
    a, b, g, d = (torch.randn(1, 3, 1, dtype=D) for _ in range(4))
    w = torch.randn(3, dtype=D)
    y = shaping_bank(x, torch.tanh, a, b, g, d, mix=w)
    ref = sum(w[s] * (g[0, s] * torch.tanh(a[0, s] * x + b[0, s]) + d[0, s]) for s in range(3))
    assert (y - ref).abs().max() < 1e-12


def test_gradcheck_shaper():
    torch.manual_seed(3)
    u = (torch.rand(1, 2, 16, dtype=D) * 1.6 - 0.8).requires_grad_()
    c = torch.randn(2, 4, dtype=D, requires_grad=True)
    mask = torch.ones(1, 16, 4, dtype=D)
    assert torch.autograd.gradcheck(lambda u, c: chebyshev_shaper(u, c, mask), (u, c))
    ws = [torch.randn(2, 3, 1, dtype=D, requires_grad=True), torch.randn(2, 1, 3, dtype=D, requires_grad=True)]
    bs = [torch.randn(2, 3, dtype=D, requires_grad=True), torch.randn(2, 1, dtype=D, requires_grad=True)]
    assert torch.autograd.gradcheck(lambda u, w0, w1, b0, b1: mlp_shaper(u, [w0, w1], [b0, b1]), (u, *ws, *bs))


def test_errors():
    with pytest.raises(ValueError, match="order"):
        chebyshev(torch.zeros(3), 0)
    with pytest.raises(TypeError, match="torch.Tensor"):
        chebyshev([0.1, 0.2], 3)
    with pytest.raises(ValueError, match="coefficients"):
        chebyshev_shaper(torch.zeros(1, 2, 5), torch.zeros(2, 3, 4))
    with pytest.raises(ValueError, match="3 rows"):
        chebyshev_shaper(torch.zeros(1, 2, 5), torch.zeros(3, 4))


# --- the compiled bank (orders kept per sample, numba forward + adjoint) ------------------------

from dspfx.functional.waveshaper import chebyshev_band_orders  # noqa: E402


def test_band_orders_count_the_band_mask():
    f0 = torch.tensor([[0.0, 999.0, 1000.0, 2000.0, 2666.7, 4000.0, 9000.0]], dtype=D)
    orders = chebyshev_band_orders(f0, 8, 16000)
    mask = chebyshev_band_mask(f0, 8, 16000)
    assert torch.equal(orders, mask.sum(-1).long())
    assert torch.equal(mask, (torch.arange(1, 9) <= orders.unsqueeze(-1)).to(D))  # a prefix of ones


@pytest.mark.parametrize("shared", [False, True])
def test_compiled_bank_equals_the_masked_series_with_gradients(shared):
    torch.manual_seed(5)
    n, S, order = 300, 3, 9
    u = (torch.rand(2, S, n, dtype=D) * 2.2 - 1.1).requires_grad_()  # a little beyond [-1, 1] too
    c = torch.randn(order if shared else S, order, dtype=D)[0 if shared else slice(None)].requires_grad_()
    f0 = torch.linspace(300, 5000, n, dtype=D).expand(2, n) * torch.tensor([[1.0], [0.7]], dtype=D)
    orders = chebyshev_band_orders(f0, order, 16000)
    got = chebyshev_shaper(u, c, orders=orders)
    ref = chebyshev_shaper(u, c, chebyshev_band_mask(f0, order, 16000))
    assert (got - ref).abs().max() < 1e-10
    g = torch.randn_like(ref)
    for a, b in zip(torch.autograd.grad((got * g).sum(), (u, c)), torch.autograd.grad((ref * g).sum(), (u, c))):
        assert (a - b).abs().max() < 1e-9 * max(1.0, float(b.abs().max()))


def test_gradcheck_compiled_bank():
    torch.manual_seed(6)
    u = (torch.rand(1, 2, 30, dtype=D) * 2 - 1).requires_grad_()
    c = torch.randn(2, 6, dtype=D, requires_grad=True)
    orders = torch.randint(0, 7, (1, 30))
    assert torch.autograd.gradcheck(lambda a, b: chebyshev_shaper(a, b, orders=orders), (u, c))
