"""Functional ballistics: compiled decisions + differentiable recomputation of the level
detector, exactness against the plain recursion, blocks, gradients."""

import math

import numpy as np
import pytest
import torch

from dspfx.functional import ballistics as FB


def _noise(n=64, channels=1, batch=1, seed=0, scale=0.3, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(batch, channels, n, generator=g, dtype=dtype)


def _python_ballistics(d, ca, cr, e0):
    """The recursion written out plainly (JUCE BallisticsFilter), one row."""
    out, prev = [], e0
    for v in d:
        c = ca if v > prev else cr
        prev = v + c * (prev - v)
        out.append(prev)
    return np.array(out)


def test_ballistics_coefficient_formula_and_instant_times():
    sr = 44100.0
    t = torch.tensor([0.0, 0.0009, 0.001, 1.0, 100.0], dtype=torch.float64)
    c = FB.ballistics_coefficient(t, sr)
    expected = [0.0, 0.0] + [math.exp(-2 * math.pi * 1000 / (sr * v)) for v in (0.001, 1.0, 100.0)]
    np.testing.assert_allclose(c.numpy(), expected, rtol=1e-14, atol=0)
    # gradient is finite everywhere, zero on the instant branch
    t.requires_grad_(True)
    FB.ballistics_coefficient(t, sr).sum().backward()
    assert torch.isfinite(t.grad).all() and t.grad[0] == 0 and t.grad[1] == 0 and t.grad[3] > 0


def test_compiled_decisions_equal_the_plain_recursion():
    d = _noise(n=500, channels=2, batch=2).abs()
    e0 = torch.tensor([0.1, 0.0, 0.5, 0.2], dtype=torch.float64).view(2, 2, 1)
    ca, cr = 0.7, 0.995
    env, attack = FB.envelope_decisions(d, ca, cr, e0)
    for b in range(2):
        for ch in range(2):
            ref = _python_ballistics(d[b, ch].tolist(), ca, cr, float(e0[b, ch, 0]))
            np.testing.assert_array_equal(env[b, ch].numpy(), ref)
    prev = torch.cat([e0, env[..., :-1]], dim=-1)
    assert torch.equal(attack, d > prev)
    assert attack.any() and (~attack).any()


@pytest.mark.parametrize("time_varying", [False, True])
def test_differentiable_envelope_equals_the_compiled_one(time_varying):
    d = _noise(n=3000, channels=2, batch=2, seed=1).abs()
    d[..., 1000:1500] *= 0.01  # a quiet passage, so both branches run for long stretches
    if time_varying:
        ca = FB.ballistics_coefficient(torch.linspace(0.05, 30.0, 3000, dtype=torch.float64).view(1, 1, -1), 48000)
        cr = FB.ballistics_coefficient(torch.tensor([20.0, 400.0], dtype=torch.float64).view(2, 1, 1), 48000)
    else:
        ca, cr = FB.ballistics_coefficient(1.0, 48000), FB.ballistics_coefficient(100.0, 48000)
        ca, cr = ca.double(), cr.double()
    e0 = torch.rand(2, 2, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    compiled, _ = FB.envelope_decisions(d, ca, cr, e0)
    env, state = FB.envelope_follower(d, ca, cr, e0, compiled_values=False)
    assert (env - compiled).abs().max() <= 1e-12
    assert torch.equal(state, env[..., -1:])
    # the default returns the compiled values, with the recomputation's gradient
    d.requires_grad_(True)
    default, _ = FB.envelope_follower(d, ca, cr, e0)
    assert torch.equal(default.detach(), compiled)
    w = torch.randn(d.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    (g_default,) = torch.autograd.grad((default * w).sum(), d)
    env, _ = FB.envelope_follower(d, ca, cr, e0, compiled_values=False)
    (g_recomputed,) = torch.autograd.grad((env * w).sum(), d)
    assert torch.equal(g_default, g_recomputed)


def test_envelope_in_blocks_equals_whole():
    d = _noise(n=1000, channels=2, seed=2).abs()
    ca, cr = 0.5, 0.99
    whole, _ = FB.envelope_follower(d, ca, cr)
    state, parts = None, []
    for start in range(0, 1000, 37):
        e, state = FB.envelope_follower(d[..., start : start + 37], ca, cr, state)
        parts.append(e)
    assert (torch.cat(parts, -1) - whole).abs().max() <= 1e-14


def test_envelope_gradcheck_wrt_input_coefficients_and_state():
    d = _noise(n=48, channels=2, seed=3).abs().requires_grad_(True)
    ca = torch.tensor(0.6, dtype=torch.float64, requires_grad=True)
    cr = torch.tensor([0.9, 0.97], dtype=torch.float64).view(1, 2, 1).requires_grad_(True)
    e0 = torch.tensor([0.2, 0.01], dtype=torch.float64).view(1, 2, 1).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda *a: FB.envelope_follower(*a)[0], (d, ca, cr, e0), eps=1e-7, atol=1e-7)
