"""dspfx.functional.modulation: the modulated delay line against a per-sample reference, fractional
delays of an impulse, gradients (gradcheck of the hand-written backward), block-wise state, the
LFO phase (float32 accumulation like JUCE), errors."""

import math

import numpy as np
import pytest
import torch

from dspfx.functional.modulation import (
    DelayLoop,
    delay_line_length,
    lfo,
    lfo_phase,
    modulated_delay,
    modulated_delay_state,
)


def _reference(x, d, g, m, hist, w0, sign):
    """Per-sample loop in numpy float64: write first, then a linear-interpolated read."""
    x = np.asarray(x, np.float64)
    b, c, n = x.shape
    d, g, m = (np.broadcast_to(np.asarray(v, np.float64), x.shape) for v in (d, g, m))
    length = hist.shape[-1]
    line = np.concatenate([np.asarray(hist, np.float64), np.zeros((b, c, n))], axis=-1)
    wp = np.asarray(w0, np.float64)[..., 0].copy()
    y = np.zeros_like(x)
    for t in range(n):
        line[..., length + t] = x[..., t] + sign * g[..., t] * wp
        dd = np.clip(d[..., t], 0.0, length - 1.0)
        k = np.floor(dd).astype(int)
        f = dd - k
        idx = length + t - k
        a = np.take_along_axis(line, idx[..., None], -1)[..., 0]
        bb = np.take_along_axis(line, idx[..., None] - 1, -1)[..., 0]
        wp = a + f * (bb - a)
        y[..., t] = (1 - m[..., t]) * x[..., t] + m[..., t] * wp
    return y, line[..., n:], wp[..., None]


def _rand(shape, seed, lo=-1.0, hi=1.0):
    g = torch.Generator().manual_seed(seed)
    return lo + (hi - lo) * torch.rand(*shape, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_equals_per_sample_reference(sign):
    b, c, n, max_d = 2, 3, 90, 12.0
    x = _rand((b, c, n), 0)
    d = _rand((b, 1, n), 1, -1.0, 14.0)  # reaches beyond both clamps
    g = _rand((1, c, n), 2, -0.9, 0.9)
    m = _rand((b, 1, 1), 3, 0.0, 1.0)
    hist, w0 = _rand((b, c, delay_line_length(max_d)), 4), _rand((b, c, 1), 5)
    y, (h, w) = modulated_delay(x, d, g, m, (hist, w0), feedback_sign=sign)
    ref, ref_h, ref_w = _reference(x.numpy(), d.numpy(), g.numpy(), m.numpy(), hist.numpy(), w0.numpy(), sign)
    np.testing.assert_allclose(y.numpy(), ref, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(h.numpy(), ref_h, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(w.numpy(), ref_w, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("delay", [10.25, 3.5, 7.0, 0.75, 21.9])
def test_fractional_delay_moves_an_impulse(delay):
    n = 40
    x = torch.zeros(1, 1, n, dtype=torch.float64)
    x[..., 2] = 1.0
    y, _ = modulated_delay(x, delay, 0.0, 1.0, max_delay_samples=30)
    h = y[0, 0]
    k = math.floor(delay)
    expected = torch.zeros(n, dtype=torch.float64)
    expected[2 + k] = 1 - (delay - k)
    expected[2 + k + 1] += delay - k
    torch.testing.assert_close(h, expected, rtol=0, atol=1e-15)
    t = torch.arange(n, dtype=torch.float64)
    centre_of_mass = float((t * h).sum() / h.sum()) - 2
    assert abs(centre_of_mass - delay) < 0.01


def test_feedback_comb_echoes_and_sign():
    # integer delay D, feedback g: the wet sample is fed back on the NEXT sample (JUCE's Chorus),
    # so the loop takes D + 1 samples: echoes at D + k (D + 1) with gain (sign * g)^k
    d, g, n = 5, 0.6, 40
    x = torch.zeros(1, 1, n, dtype=torch.float64)
    x[..., 0] = 1.0
    for sign in (1.0, -1.0):
        y, _ = modulated_delay(x, float(d), g, 1.0, max_delay_samples=8, feedback_sign=sign)
        hits = torch.arange(d, n, d + 1)
        k = torch.arange(len(hits), dtype=torch.float64)
        torch.testing.assert_close(y[0, 0, hits], (sign * g) ** k, rtol=1e-14, atol=0)
        rest = torch.ones(n, dtype=torch.bool)
        rest[hits] = False
        assert torch.all(y[0, 0, rest] == 0)


def test_zero_delay_and_mix_edges():
    x = _rand((2, 2, 50), 6)
    y, _ = modulated_delay(x, 0.0, 0.0, 1.0, max_delay_samples=4)
    assert torch.equal(y, x)  # delay 0 reads the sample just written
    y, _ = modulated_delay(x, 3.3, 0.5, 0.0, max_delay_samples=4)
    assert torch.equal(y, x)  # mix 0: dry


def test_gradcheck_all_inputs_and_state():
    b, c, n = 2, 2, 24
    max_d = 6.0
    x = _rand((b, c, n), 7).requires_grad_(True)
    # fractional delays away from integers (the read's slope jumps there)
    base = torch.linspace(0.3, 5.4, n, dtype=torch.float64).view(1, 1, n)
    d = (base + 0.1 * _rand((b, 1, n), 8)).requires_grad_(True)
    g = _rand((1, c, n), 9, -0.8, 0.8).requires_grad_(True)
    m = _rand((b, 1, n), 10, 0.1, 0.9).requires_grad_(True)
    hist = _rand((b, c, delay_line_length(max_d)), 11).requires_grad_(True)
    w0 = _rand((b, c, 1), 12).requires_grad_(True)

    def f(x, d, g, m, hist, w0):
        y, (h, w) = modulated_delay(x, d, g, m, (hist, w0), feedback_sign=-1.0)
        return y, h, w

    assert torch.autograd.gradcheck(f, (x, d, g, m, hist, w0), eps=1e-6, atol=1e-7)
    # static (broadcast) feedback and mix, positive sign
    gs = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    ms = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x, d, g, m: modulated_delay(x, d, g, m, max_delay_samples=max_d)[0], (x, d, gs, ms)
    )


def test_blocks_with_carried_state_equal_one_call():
    x = _rand((1, 2, 300), 13)
    d = (20 + 15 * torch.sin(torch.arange(300, dtype=torch.float64) / 17)).view(1, 1, -1)
    full, (fh, fw) = modulated_delay(x, d, 0.7, 0.5, max_delay_samples=40, feedback_sign=-1.0)
    outs, state = [], modulated_delay_state(1, 2, 40, dtype=torch.float64)
    for start, stop in [(0, 1), (1, 8), (8, 9), (9, 72), (72, 300)]:
        y, state = modulated_delay(x[..., start:stop], d[..., start:stop], 0.7, 0.5, state, feedback_sign=-1.0)
        outs.append(y)
    torch.testing.assert_close(torch.cat(outs, -1), full, rtol=0, atol=1e-14)
    torch.testing.assert_close(state[0], fh, rtol=0, atol=1e-14)
    torch.testing.assert_close(state[1], fw, rtol=0, atol=1e-14)


def test_float32_runs_and_agrees_with_float64():
    x = _rand((1, 1, 2000), 14)
    d = (30 + 10 * torch.sin(torch.arange(2000, dtype=torch.float64) / 50)).view(1, 1, -1)
    y64, _ = modulated_delay(x, d, 0.8, 0.5, max_delay_samples=50)
    y32, (h32, w32) = modulated_delay(x.float(), d.float(), 0.8, 0.5, max_delay_samples=50)
    assert y32.dtype == h32.dtype == w32.dtype == torch.float32
    torch.testing.assert_close(y32.double(), y64, rtol=1e-4, atol=1e-5)


def test_lfo_phase_float64_is_2_pi_f_t():
    sr, n = 1000.0, 2500
    rate = torch.tensor([[[3.0]], [[0.7]]], dtype=torch.float64)
    phases, end = lfo_phase(rate, n, sr)
    t = torch.arange(n + 1, dtype=torch.float64)
    expected = torch.remainder(2 * math.pi * rate * t / sr, 2 * math.pi)
    torch.testing.assert_close(phases, expected[..., :n], rtol=0, atol=1e-9)
    torch.testing.assert_close(end, expected[..., n:], rtol=0, atol=1e-9)
    assert float(phases.min()) >= 0 and float(phases.max()) < 2 * math.pi


def test_lfo_phase_float32_follows_juce_accumulation():
    sr, n, rate = 48000, 5000, 3.3
    phases, end = lfo_phase(torch.tensor(rate, dtype=torch.float64).view(1, 1, 1), n, sr, float32_phase=True)
    two_pi = np.float32(2 * np.pi)
    inc = np.float32(np.float32(two_pi * np.float32(rate)) / np.float32(sr))
    p, ref = np.float32(0), []
    for _ in range(n + 1):
        ref.append(float(p))
        p = np.float32(p + inc)
        while p >= two_pi:
            p = np.float32(p - two_pi)
    ref = np.array(ref)
    np.testing.assert_array_equal(phases[0, 0].numpy(), ref[:n])
    assert float(end) == ref[n]
    # the float32 phase drifts from the exact one: the reason for the option
    exact = np.remainder(2 * np.pi * rate * np.arange(n) / sr, 2 * np.pi)
    assert np.abs(ref[:n] - exact).max() > 1e-6


@pytest.mark.parametrize("float32_phase", [False, True])
def test_lfo_phase_streams_and_has_gradients(float32_phase):
    rate = (1 + torch.rand(1, 1, 90, dtype=torch.float64, generator=torch.Generator().manual_seed(0)))
    full, end = lfo_phase(rate, 90, 200.0, float32_phase=float32_phase)
    parts, phase = [], None
    for a, b in [(0, 1), (1, 30), (30, 90)]:
        p, phase = lfo_phase(rate[..., a:b], b - a, 200.0, phase, float32_phase=float32_phase)
        parts.append(p)
    torch.testing.assert_close(torch.cat(parts, -1), full, rtol=0, atol=1e-12)
    torch.testing.assert_close(phase, end, rtol=0, atol=1e-12)
    r = rate[..., :20].clone().requires_grad_(True)
    p0 = torch.tensor(0.3, dtype=torch.float64, requires_grad=True).view(1, 1, 1)
    # the gradient is the exact-arithmetic phase's: d phase[t] / d rate[j] = 2 pi / sr for j < t
    (g,) = torch.autograd.grad(lfo_phase(r, 20, 200.0, p0, float32_phase=float32_phase)[0][0, 0, 10], r)
    expected = torch.zeros(20, dtype=torch.float64)
    expected[:10] = 2 * math.pi / 200.0
    torch.testing.assert_close(g[0, 0], expected)
    if not float32_phase:
        assert torch.autograd.gradcheck(lambda r, p: lfo(lfo_phase(r, 20, 200.0, p)[0]), (r, p0))


def test_lfo_shapes():
    phase = torch.tensor([0.0, math.pi / 2, math.pi, 3 * math.pi / 2, 2 * math.pi, math.pi / 4], dtype=torch.float64)
    torch.testing.assert_close(lfo(phase, "sine"), torch.sin(phase))
    torch.testing.assert_close(
        lfo(phase, "triangle"), torch.tensor([0.0, 1.0, 0.0, -1.0, 0.0, 0.5], dtype=torch.float64), atol=1e-12, rtol=0
    )
    with pytest.raises(ValueError, match="LFO shape must be one of sine, triangle; got 'saw'"):
        lfo(phase, "saw")


def test_errors_name_what_was_given():
    x = torch.zeros(1, 1, 10)
    with pytest.raises(ValueError, match="needs max_delay_samples"):
        modulated_delay(x, 2.0)
    with pytest.raises(ValueError, match=r"shaped \(batch, channels, samples\)"):
        modulated_delay(torch.zeros(10), 2.0, max_delay_samples=4)
    with pytest.raises(TypeError, match="real floating"):
        modulated_delay(torch.zeros(1, 1, 4, dtype=torch.int64), 2.0, max_delay_samples=4)
    with pytest.raises(ValueError, match="does not broadcast"):
        modulated_delay(x, torch.zeros(1, 1, 7), max_delay_samples=4)
    with pytest.raises(ValueError, match=r"needs a history of 6 samples, but the state holds 5"):
        modulated_delay(x, 2.0, state=modulated_delay_state(1, 1, 4), max_delay_samples=5)
    with pytest.raises(ValueError, match="state history must be shaped"):
        modulated_delay(x, 2.0, state=modulated_delay_state(2, 1, 4))
    with pytest.raises(ValueError, match="max_delay_samples must be a finite number >= 0"):
        delay_line_length(-1.0)
    with pytest.raises(ValueError, match=r"rate_hz must be shaped"):
        lfo_phase(torch.zeros(1, 1, 5), 7, 100.0)


def _loop_reference(x, d, g, m, p, hist, z0, sign, write_first, min_delay):
    """Per-sample numpy float64 loop of DelayLoop (rows, samples), p None: no loop filter."""
    rows, n = x.shape
    length = hist.shape[1]
    v = np.concatenate([hist, np.zeros((rows, n))], axis=1)
    y = np.zeros((rows, n))
    zp = z0.copy()
    for t in range(n):
        if write_first:
            v[:, length + t] = x[:, t] + sign * g[:, t] * zp
        dd = np.clip(d[:, t], min_delay, length - 1)
        k = np.floor(dd).astype(int)
        f = dd - k
        i = length + t - k
        a, b = v[np.arange(rows), i], v[np.arange(rows), i - 1]
        w = a + f * (b - a)
        z = w if p is None else (1 - p[:, t]) * w + p[:, t] * zp
        if not write_first:
            v[:, length + t] = x[:, t] + sign * g[:, t] * z
        y[:, t] = (1 - m[:, t]) * x[:, t] + m[:, t] * w
        zp = z
    return y, v[:, n:], zp


@pytest.mark.parametrize("damped", [False, True])
@pytest.mark.parametrize("write_first", [True, False])
def test_shared_delay_loop_every_variant_matches_reference_and_gradcheck(write_first, damped):
    # the one loop behind modulated_delay (write first, no filter) and damped_feedback_delay (read
    # first, one-pole filter): every combination against a per-sample loop, and its adjoint
    rows, n, length = 2, 24, 9
    min_delay = 0.0 if write_first else 1.0
    x, g, m = _rand((rows, n), 10), _rand((rows, n), 11, -0.8, 0.8), _rand((rows, n), 12, 0.0, 1.0)
    d = _rand((rows, n), 13, min_delay + 0.05, length - 1.1)
    p = _rand((rows, n), 14, 0.0, 0.9) if damped else None
    hist, z0 = _rand((rows, length), 15), _rand((rows,), 16)
    sign = -1.0
    y, h, z = DelayLoop.apply(x, d, g, m, p, hist, z0, sign, write_first, min_delay, True)
    ref = _loop_reference(*(t.numpy() if t is not None else None for t in (x, d, g, m, p, hist, z0)),
                          sign, write_first, min_delay)  # fmt: skip
    for got, want in zip((y, h, z), ref):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=1e-13)
    inputs = [t.clone().requires_grad_(True) for t in (x, d, g, m, p, hist, z0) if t is not None]

    def f(*ins):
        ins = list(ins)
        if not damped:
            ins.insert(4, None)
        return DelayLoop.apply(*ins, sign, write_first, min_delay, True)

    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-7)
