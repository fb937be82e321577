"""Functional FDN: design helpers, the exact recursion and its adjoint, RT60 measurement."""

import math

import numpy as np
import pytest
import torch

from dspfx.functional.fdn import (
    absorption_coefficients,
    default_delays,
    fdn,
    fdn_line_energy,
    feedback_matrix,
    orthogonal_from_skew,
)

F64 = torch.float64


def _naive_fdn(x, b0, b1, a1, A, g, c, delays):
    """The recursion written out sample by sample (a slow Python reference)."""
    n, nl = x.shape[0], len(delays)
    v = np.zeros((nl, n))
    o_prev, s_prev = np.zeros(nl), np.zeros(nl)
    y = np.zeros(n)
    for t in range(n):
        s = np.array([v[i, t - delays[i]] if t >= delays[i] else 0.0 for i in range(nl)])
        o = b0 * s + b1 * s_prev - a1 * o_prev
        s_prev, o_prev = s, o
        y[t] = c @ o
        v[:, t] = A @ o + g * x[t]
    return y


def test_default_delays_are_distinct_primes_in_range():
    d = default_delays(8, 48000)
    assert len(set(d)) == 8 and d == sorted(d)
    assert all(all(m % k for k in range(2, int(math.isqrt(m)) + 1)) for m in d)
    assert 0.020 * 48000 <= d[0] and d[-1] <= 0.0605 * 48000
    with pytest.raises(ValueError, match="n_lines"):
        default_delays(0, 48000)


@pytest.mark.parametrize("kind", ["hadamard", "householder", "random"])
def test_feedback_matrices_are_orthogonal(kind):
    a = feedback_matrix(kind, 8, seed=3)
    torch.testing.assert_close(a @ a.T, torch.eye(8, dtype=F64), atol=1e-12, rtol=0)
    w = torch.randn(8, 8, dtype=F64)
    q = orthogonal_from_skew(a, w)
    torch.testing.assert_close(q @ q.T, torch.eye(8, dtype=F64), atol=1e-12, rtol=0)
    with pytest.raises(ValueError, match="power-of-two"):
        feedback_matrix("hadamard", 6)


def test_absorption_filters_hit_the_line_gains_at_dc_and_nyquist():
    sr, delays = 48000, [1009, 1601, 2003]
    b0, b1, a1 = absorption_coefficients(torch.tensor(2.0, dtype=F64), torch.tensor(0.5, dtype=F64), 1500.0, delays, sr)
    m = torch.tensor(delays, dtype=F64)
    dc = (b0 + b1) / (1 + a1)
    nyq = (b0 - b1) / (1 - a1)
    torch.testing.assert_close(dc, 10 ** (-3 * m / (sr * 2.0)))
    torch.testing.assert_close(nyq, 10 ** (-3 * m / (sr * 0.5)))


def test_matches_a_sample_by_sample_reference():
    torch.manual_seed(0)
    delays = [5, 7, 11, 13]
    n = 120
    x = torch.randn(n, dtype=F64)
    b0, b1, a1 = absorption_coefficients(torch.tensor(0.01, dtype=F64), torch.tensor(0.004, dtype=F64), 3000.0, delays, 16000)
    a = feedback_matrix("householder", 4)
    g, c = torch.randn(4, dtype=F64), torch.randn(4, dtype=F64)
    y, _ = fdn(x.view(1, 1, -1), b0.view(1, 1, 4), b1.view(1, 1, 4), a1.view(1, 1, 4), a, g, c, delays)
    ref = _naive_fdn(x.numpy(), b0.numpy(), b1.numpy(), a1.numpy(), a.numpy(), g.numpy(), c.numpy(), delays)
    np.testing.assert_allclose(y[0, 0].numpy(), ref, rtol=0, atol=1e-12)


def test_gradcheck_every_input_and_the_state():
    torch.manual_seed(1)
    delays, nl, b, t = [3, 5, 2, 7], 4, 2, 24
    x = torch.randn(b, 2, t, dtype=F64, requires_grad=True)
    b0 = (0.8 + 0.1 * torch.rand(b, t, nl, dtype=F64)).requires_grad_()  # time-varying, per batch
    b1 = (0.1 * torch.randn(1, 1, nl, dtype=F64)).requires_grad_()
    a1 = (0.3 * torch.randn(b, 1, nl, dtype=F64)).requires_grad_()
    a = feedback_matrix("householder", nl).requires_grad_()
    g = torch.randn(nl, dtype=F64, requires_grad=True)
    c = torch.randn(nl, dtype=F64, requires_grad=True)
    lines = torch.randn(b, 2, nl, 7, dtype=F64)
    for i, m in enumerate(delays):
        lines[:, :, i, m:] = 0
    lines.requires_grad_()
    sp = torch.randn(b, 2, nl, dtype=F64, requires_grad=True)
    op = torch.randn(b, 2, nl, dtype=F64, requires_grad=True)

    def run(*args):
        y, state = fdn(*args[:7], delays, state=args[7:])
        return (y, *state)

    assert torch.autograd.gradcheck(run, (x, b0, b1, a1, a, g, c, lines, sp, op))


def test_no_grad_render_equals_the_differentiable_one_exactly():
    """Without a gradient the loop keeps no lines for the adjoint: same values, same state, bit for bit."""
    torch.manual_seed(4)
    delays, nl, b, t = [3, 1, 6, 2], 4, 2, 40
    x = torch.randn(b, 2, t, dtype=F64)
    b0 = 0.8 + 0.1 * torch.rand(b, t, nl, dtype=F64)
    b1, a1 = 0.1 * torch.randn(1, 1, nl, dtype=F64), 0.3 * torch.randn(b, 1, nl, dtype=F64)
    a, g, c = feedback_matrix("householder", nl), torch.randn(nl, dtype=F64), torch.randn(nl, dtype=F64)
    lines = torch.randn(b, 2, nl, 6, dtype=F64)
    for i, m in enumerate(delays):
        lines[:, :, i, m:] = 0
    state = (lines, torch.randn(b, 2, nl, dtype=F64), torch.randn(b, 2, nl, dtype=F64))
    for n in (t, 4):  # a block shorter than the longest line too
        with torch.no_grad():
            y0, s0 = fdn(x[..., :n], b0[:, :n], b1, a1, a, g, c, delays, state)
        y1, s1 = fdn(x[..., :n].requires_grad_(), b0[:, :n], b1, a1, a, g, c, delays, state)
        assert y1.requires_grad
        assert torch.equal(y0, y1.detach())
        for u, v in zip(s0, s1):
            assert torch.equal(u, v.detach())


def test_blocks_with_carried_state_equal_one_call():
    torch.manual_seed(2)
    delays = [17, 23, 29, 31]
    x = torch.randn(1, 1, 200, dtype=F64)
    b0, b1, a1 = (v.view(1, 1, 4) for v in absorption_coefficients(0.05, 0.02, 2000.0, delays, 8000))
    a, g, c = feedback_matrix("hadamard", 4), torch.ones(4, dtype=F64), torch.ones(4, dtype=F64)
    y, _ = fdn(x, b0, b1, a1, a, g, c, delays)
    for block in (1, 7, 64):
        state, parts = None, []
        for i in range(0, 200, block):
            part, state = fdn(x[..., i : i + block], b0, b1, a1, a, g, c, delays, state)
            parts.append(part)
        torch.testing.assert_close(torch.cat(parts, -1), y, rtol=0, atol=1e-12)


def test_lossless_network_conserves_line_energy():
    delays = default_delays(8, 16000)
    one = torch.ones(1, 1, 8, dtype=F64)
    zero = torch.zeros_like(one)
    a = feedback_matrix("random", 8, seed=5)
    g, c = torch.randn(8, dtype=F64), torch.randn(8, dtype=F64)
    x = torch.zeros(1, 1, 4, dtype=F64)
    x[..., 0] = 1.0
    _, state = fdn(x, one, zero, zero, a, g, c, delays)
    e0 = fdn_line_energy(state)
    assert torch.allclose(e0, g.square().sum().view(1, 1))
    for _ in range(5):
        _, state = fdn(torch.zeros(1, 1, 1000, dtype=F64), one, zero, zero, a, g, c, delays, state)
        assert abs(float(fdn_line_energy(state) / e0) - 1) < 1e-6


def test_bad_inputs():
    delays = [3, 5]
    x = torch.zeros(1, 1, 10)
    one = torch.ones(1, 1, 2)
    a = torch.eye(2)
    with pytest.raises(ValueError, match="x must be"):
        fdn(torch.zeros(10), one, one, one, a, one[0, 0], one[0, 0], delays)
    with pytest.raises(ValueError, match="matrix must be shaped"):
        fdn(x, one, one, one, torch.eye(3), one[0, 0], one[0, 0], delays)
    with pytest.raises(ValueError, match="b0 must be shaped"):
        fdn(x, torch.ones(1, 3, 2), one, one, a, one[0, 0], one[0, 0], delays)
    with pytest.raises(ValueError, match="delays"):
        fdn(x, one, one, one, a, one[0, 0], one[0, 0], [0, 5])


def _torch_fdn(x, b0, b1, a1, A, g, c, delays, lines, sp, op):
    """The recursion sample by sample in torch (autograd's gradient is the reference), with state."""
    bsz, chans, n = x.shape
    tc = b0.shape[1]
    v = [[lines[:, :, i, m - 1 - k] for k in range(m)] for i, m in enumerate(delays)]  # oldest first
    s_prev, o_prev, ys = sp, op, []
    for t in range(n):
        rt = t if tc > 1 else 0
        s = torch.stack([v[i][t] for i in range(len(delays))], -1)  # v_i[t - m_i]
        o = b0[:, rt, None] * s + b1[:, rt, None] * s_prev - a1[:, rt, None] * o_prev
        s_prev, o_prev = s, o
        ys.append(o @ c)
        vt = o @ A.T + g * x[..., t, None]
        for i in range(len(delays)):
            v[i].append(vt[..., i])
    return torch.stack(ys, -1)


@pytest.mark.parametrize("delays", [[4, 9, 6], [1, 3]])
def test_block_adjoint_matches_autograd_of_the_sample_recursion(delays):
    """Blocks of uneven length (the last one shorter; blocks of one sample with a one-sample
    line), time-varying per-batch coefficients, a carried state: the compiled adjoint equals
    autograd through the per-sample recursion."""
    torch.manual_seed(7)
    nl, b, t = len(delays), 2, 37
    x = torch.randn(b, 1, t, dtype=F64, requires_grad=True)
    b0 = (0.8 + 0.1 * torch.rand(b, t, nl, dtype=F64)).requires_grad_()
    b1 = (0.1 * torch.randn(b, t, nl, dtype=F64)).requires_grad_()
    a1 = (0.3 * torch.randn(b, t, nl, dtype=F64)).requires_grad_()
    a = torch.randn(nl, nl, dtype=F64).mul(0.5).requires_grad_()
    g = torch.randn(nl, dtype=F64, requires_grad=True)
    c = torch.randn(nl, dtype=F64, requires_grad=True)
    lines = torch.randn(b, 1, nl, max(delays), dtype=F64)
    for i, m in enumerate(delays):
        lines[:, :, i, m:] = 0
    lines.requires_grad_()
    sp = torch.randn(b, 1, nl, dtype=F64, requires_grad=True)
    op = torch.randn(b, 1, nl, dtype=F64, requires_grad=True)
    inputs = (x, b0, b1, a1, a, g, c, lines, sp, op)
    w = torch.randn(b, 1, t, dtype=F64)
    y, _ = fdn(*inputs[:7], delays, state=inputs[7:])
    ref = _torch_fdn(x, b0, b1, a1, a, g, c, delays, lines, sp, op)
    torch.testing.assert_close(y, ref, atol=1e-12, rtol=0)
    got = torch.autograd.grad((y * w).sum(), inputs)
    want = torch.autograd.grad((ref * w).sum(), inputs)
    for k, (gg, ww) in enumerate(zip(got, want)):
        torch.testing.assert_close(gg, ww, atol=1e-10, rtol=1e-10, msg=f"input {k}")
