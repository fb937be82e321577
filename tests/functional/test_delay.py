"""dspfx.functional.delay: the feedback comb against a per-sample reference, analytic impulse
responses, pedalboard's delay rounding, gradients, block-wise state, errors; and the fractional,
damped echo loop (reference loop, analytic echoes, gradcheck, blocks)."""

import math

import numpy as np
import pedalboard
import pytest
import torch

from dspfx.functional.delay import (
    damped_delay_state,
    damped_feedback_delay,
    damping_pole,
    feedback_delay,
    pedalboard_delay_samples,
)


def _reference(x, delay, feedback, mix, state=None):
    """Per-sample loop over pedalboard's recursion (numpy float64); feedback/mix per sample."""
    x = np.asarray(x, dtype=np.float64)
    b, c, n = x.shape
    g = np.broadcast_to(np.asarray(feedback, dtype=np.float64), x.shape)
    m = np.broadcast_to(np.asarray(mix, dtype=np.float64), x.shape)
    line = np.zeros((b, c, delay + n))
    if state is not None:
        line[..., :delay] = state
    y = np.zeros_like(x)
    for i in range(n):
        d = line[..., i]
        line[..., delay + i] = x[..., i] + g[..., i] * d
        y[..., i] = (1 - m[..., i]) * x[..., i] + m[..., i] * d
    return y, line[..., n:]


def _noise(shape, seed=0, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.mark.parametrize("delay, n", [(1, 50), (3, 50), (7, 50), (16, 48), (13, 100), (60, 50), (50, 50)])
def test_equals_per_sample_reference(delay, n):
    x = _noise((2, 3, n))
    g = torch.tensor([0.3, 0.9], dtype=torch.float64).view(2, 1, 1)
    mix = 0.35
    y, state = feedback_delay(x, delay, g, mix)
    ref, ref_state = _reference(x.numpy(), delay, g.numpy(), mix)
    np.testing.assert_allclose(y.numpy(), ref, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(state.numpy(), ref_state, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("delay", [1, 5, 9])
def test_time_varying_feedback_and_mix_are_exact(delay):
    n = 61
    x = _noise((2, 2, n), seed=1)
    g = torch.rand(2, 1, n, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    mix = torch.rand(1, 2, n, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    state = _noise((2, 2, delay), seed=4)
    y, new_state = feedback_delay(x, delay, g, mix, state)
    ref, ref_state = _reference(x.numpy(), delay, g.numpy(), mix.numpy(), state.numpy())
    np.testing.assert_allclose(y.numpy(), ref, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(new_state.numpy(), ref_state, rtol=1e-12, atol=1e-13)


def test_per_channel_feedback():
    x = _noise((1, 2, 40), seed=5)
    g = torch.tensor([0.2, 0.8], dtype=torch.float64).view(1, 2, 1)
    y, _ = feedback_delay(x, 4, g, 0.5)
    ref, _ = _reference(x.numpy(), 4, g.numpy(), 0.5)
    np.testing.assert_allclose(y.numpy(), ref, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("delay, g, mix", [(5, 0.5, 0.3), (37, 0.9, 1.0), (1, 0.25, 0.5), (12, 1.0, 0.7)])
def test_impulse_gives_decaying_echoes_exactly(delay, g, mix):
    n = 10 * delay + 3
    x = torch.zeros(1, 1, n, dtype=torch.float64)
    x[..., 0] = 1.0
    y, _ = feedback_delay(x, delay, g, mix)
    expected = torch.zeros(n, dtype=torch.float64)
    expected[0] = 1 - mix
    echo = 1.0  # g ** (k - 1), accumulated as the loop does (one rounding per trip)
    for k in range(1, (n - 1) // delay + 1):
        expected[k * delay] = mix * echo
        echo *= g
    assert torch.equal(y[0, 0], expected)
    torch.testing.assert_close(expected[delay::delay][:10], mix * g ** torch.arange(10, dtype=torch.float64))


@pytest.mark.parametrize("delay", [1, 4, 25])
def test_blocks_with_carried_state_equal_one_call(delay):
    x = _noise((1, 2, 300), seed=6)
    full, full_state = feedback_delay(x, delay, 0.7, 0.4)
    outs, state = [], None
    for start, stop in [(0, 1), (1, 8), (8, 9), (9, 72), (72, 300)]:
        y, state = feedback_delay(x[..., start:stop], delay, 0.7, 0.4, state)
        outs.append(y)
    torch.testing.assert_close(torch.cat(outs, -1), full, rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(state, full_state, rtol=1e-12, atol=1e-13)


def test_gradcheck_input_feedback_mix_state():
    x = _noise((1, 2, 23), seed=7).requires_grad_(True)
    g = (0.2 + 0.6 * torch.rand(1, 1, 23, dtype=torch.float64)).requires_grad_(True)
    mix = torch.tensor(0.4, dtype=torch.float64, requires_grad=True)
    state = _noise((1, 2, 4), seed=8).requires_grad_(True)

    def f(x, g, mix, state):
        y, s = feedback_delay(x, 4, g, mix, state)
        return y, s

    assert torch.autograd.gradcheck(f, (x, g, mix, state), eps=1e-6, atol=1e-7)
    g_static = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, g, m: feedback_delay(x, 3, g, m)[0], (x, g_static, mix))


def test_float32_agrees_with_float64():
    x = _noise((1, 1, 5000), seed=9)
    y64, _ = feedback_delay(x, 97, 0.95, 0.5)
    y32, _ = feedback_delay(x.float(), 97, 0.95, 0.5)
    assert y32.dtype == torch.float32
    torch.testing.assert_close(y32.double(), y64, rtol=1e-4, atol=1e-5)


def test_pedalboard_delay_samples_matches_pedalboard():
    impulse = np.zeros((1, 200), np.float32)
    impulse[0, 0] = 1.0
    for sr in (44100, 48000):
        for d in [1, 2, 3, 4, 5, 7, 8, 33, 64, 150]:
            for seconds in (d / sr, (d + 0.5) / sr):
                out = pedalboard.Delay(delay_seconds=seconds, feedback=0.0, mix=1.0)(impulse, sr)[0]
                hits = np.nonzero(out)[0]
                got = int(hits[0]) if len(hits) else 0  # a 0-sample line outputs silence
                assert pedalboard_delay_samples(seconds, sr) == got
    # float32 rounding of the seconds: 4/44100 s is 3 samples, 5/44100 s is 5
    assert pedalboard_delay_samples(4 / 44100, 44100) == 3
    assert pedalboard_delay_samples(0.5, 48000) == 24000


def test_errors_name_what_was_given():
    x = torch.zeros(1, 1, 10)
    with pytest.raises(ValueError, match="delay_samples must be >= 1, got 0"):
        feedback_delay(x, 0, 0.5, 0.5)
    with pytest.raises(TypeError, match="delay_samples must be an int"):
        feedback_delay(x, 2.5, 0.5, 0.5)
    with pytest.raises(ValueError, match=r"shaped \(batch, channels, samples\)"):
        feedback_delay(torch.zeros(10), 2, 0.5, 0.5)
    with pytest.raises(ValueError, match=r"state must be shaped .* \(1, 1, 3\)"):
        feedback_delay(x, 3, 0.5, 0.5, torch.zeros(1, 1, 2))
    with pytest.raises(ValueError, match="feedback shaped"):
        feedback_delay(x, 3, torch.zeros(1, 1, 7), 0.5)
    with pytest.raises(TypeError, match="x must be a real floating tensor"):
        feedback_delay(torch.zeros(1, 1, 4, dtype=torch.int64), 2, 0.5, 0.5)
    with pytest.raises(ValueError, match="delay_seconds must be a finite number >= 0"):
        pedalboard_delay_samples(-0.1, 48000)


# ------------------------------------------------------------------ fractional, damped echo


def _damped_reference(x, d, g, m, p, hist, z0):
    """Per-sample loop (numpy float64): read first (linear interpolation), damp, then write."""
    x = np.asarray(x, np.float64)
    b, c, n = x.shape
    d, g, m, p = (np.broadcast_to(np.asarray(v, np.float64), x.shape) for v in (d, g, m, p))
    length = hist.shape[-1]
    line = np.concatenate([np.asarray(hist, np.float64), np.zeros((b, c, n))], axis=-1)
    z = np.asarray(z0, np.float64)[..., 0].copy()
    y = np.zeros_like(x)
    for t in range(n):
        dd = np.clip(d[..., t], 1.0, length - 1.0)
        k = np.floor(dd).astype(int)
        f = dd - k
        idx = (length + t - k)[..., None]
        a = np.take_along_axis(line, idx, -1)[..., 0]
        w = a + f * (np.take_along_axis(line, idx - 1, -1)[..., 0] - a)
        z = (1 - p[..., t]) * w + p[..., t] * z
        line[..., length + t] = x[..., t] + g[..., t] * z
        y[..., t] = (1 - m[..., t]) * x[..., t] + m[..., t] * w
    return y, line[..., n:], z[..., None]


def test_damped_delay_equals_per_sample_reference():
    x = _noise((2, 2, 80), seed=20)
    gen = torch.Generator().manual_seed(21)
    d = 0.5 + 12 * torch.rand(2, 1, 80, generator=gen, dtype=torch.float64)  # below 1 and beyond L - 1 too
    g = 0.9 * torch.rand(1, 2, 80, generator=gen, dtype=torch.float64)
    m = torch.rand(2, 1, 1, generator=gen, dtype=torch.float64)
    p = 0.9 * torch.rand(1, 1, 80, generator=gen, dtype=torch.float64)
    hist, z0 = _noise((2, 2, 11), seed=22), _noise((2, 2, 1), seed=23)
    y, (h, z) = damped_feedback_delay(x, d, g, m, p, (hist, z0))
    ref = _damped_reference(x.numpy(), d.numpy(), g.numpy(), m.numpy(), p.numpy(), hist.numpy(), z0.numpy())
    for got, want in zip((y, h, z), ref):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("delay", [1, 6, 37])
def test_whole_sample_undamped_equals_feedback_delay(delay):
    x = _noise((1, 2, 200), seed=24)
    y, _ = damped_feedback_delay(x, float(delay), 0.8, 0.4, 0.0, max_delay_samples=40)
    ref, _ = feedback_delay(x, delay, 0.8, 0.4)
    torch.testing.assert_close(y, ref, rtol=0, atol=1e-13)


def test_damped_second_echo_is_the_one_pole_impulse_response():
    delay, g, mix, p, n = 30, 0.7, 0.5, 0.6, 90
    x = torch.zeros(1, 1, n, dtype=torch.float64)
    x[..., 0] = 1.0
    y, _ = damped_feedback_delay(x, float(delay), g, mix, p, max_delay_samples=40)
    h = y[0, 0]
    assert float(h[delay]) == pytest.approx(mix)  # the first echo is not filtered
    j = torch.arange(delay, dtype=torch.float64)
    torch.testing.assert_close(h[2 * delay : 3 * delay], mix * g * (1 - p) * p**j, rtol=1e-12, atol=1e-15)
    assert float(damping_pole(1000.0, 48000)) == pytest.approx(math.exp(-2 * math.pi * 1000 / 48000))


@pytest.mark.parametrize("delay", [10.25, 4.6, 1.5])
def test_damped_delay_fractional_click(delay):
    x = torch.zeros(1, 1, 40, dtype=torch.float64)
    x[..., 2] = 1.0
    y, _ = damped_feedback_delay(x, delay, 0.0, 1.0, 0.3, max_delay_samples=20)
    t = torch.arange(40, dtype=torch.float64)
    assert abs(float((t * y[0, 0]).sum() / y[0, 0].sum()) - 2 - delay) < 0.01


def test_damped_delay_gradcheck_all_inputs_and_state():
    x = _noise((1, 2, 30), seed=25).requires_grad_(True)
    base = torch.linspace(1.3, 7.6, 30, dtype=torch.float64).view(1, 1, 30)
    d = (base + 0.05 * _noise((1, 1, 30), seed=26)).requires_grad_(True)
    gen = torch.Generator().manual_seed(27)
    g = (0.2 + 0.6 * torch.rand(1, 2, 30, dtype=torch.float64, generator=gen)).requires_grad_(True)
    m = torch.tensor(0.4, dtype=torch.float64, requires_grad=True)
    p = (0.1 + 0.8 * torch.rand(1, 1, 30, dtype=torch.float64, generator=gen)).requires_grad_(True)
    hist, z0 = damped_delay_state(1, 2, 9, dtype=torch.float64)
    hist = _noise(hist.shape, seed=29).requires_grad_(True)
    z0 = _noise(z0.shape, seed=30).requires_grad_(True)

    def f(x, d, g, m, p, hist, z0):
        y, (h, z) = damped_feedback_delay(x, d, g, m, p, (hist, z0))
        return y, h, z

    assert torch.autograd.gradcheck(f, (x, d, g, m, p, hist, z0), eps=1e-6, atol=1e-7)


def test_damped_delay_blocks_equal_one_call():
    x = _noise((1, 2, 300), seed=31)
    d = (20 + 8 * torch.sin(torch.arange(300, dtype=torch.float64) / 13)).view(1, 1, -1)
    full, (fh, fz) = damped_feedback_delay(x, d, 0.8, 0.5, 0.4, max_delay_samples=30)
    outs, state = [], damped_delay_state(1, 2, 30, dtype=torch.float64)
    for a, b in [(0, 1), (1, 8), (8, 9), (9, 72), (72, 300)]:
        y, state = damped_feedback_delay(x[..., a:b], d[..., a:b], 0.8, 0.5, 0.4, state)
        outs.append(y)
    torch.testing.assert_close(torch.cat(outs, -1), full, rtol=0, atol=1e-14)
    torch.testing.assert_close(state[0], fh, rtol=0, atol=1e-14)
    torch.testing.assert_close(state[1], fz, rtol=0, atol=1e-14)


def test_damped_delay_errors():
    x = torch.zeros(1, 1, 10)
    with pytest.raises(ValueError, match="needs max_delay_samples"):
        damped_feedback_delay(x, 2.0, 0.5, 0.5)
    with pytest.raises(ValueError, match="max_delay_samples must be a finite number >= 1"):
        damped_delay_state(1, 1, 0.5)
    with pytest.raises(ValueError, match="state history must be shaped"):
        damped_feedback_delay(x, 2.0, 0.5, 0.5, state=damped_delay_state(2, 1, 4))
    with pytest.raises(ValueError, match="damping shaped"):
        damped_feedback_delay(x, 2.0, 0.5, 0.5, torch.zeros(1, 1, 3), max_delay_samples=4)
