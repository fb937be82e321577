"""dspfx.functional.phaser: the allpass cascade's exact adjoint, the LFO, the static response."""

import math

import numpy as np
import pytest
import scipy.signal
import torch

from dspfx.functional.phaser import (
    PHASER_UPDATE_INTERVAL,
    PhaserCascade,
    allpass_coefficient,
    phaser,
    phaser_cutoff_hz,
    phaser_init_state,
    phaser_lfo_phase,
)

F64 = torch.float64


def _reference_phaser(x, sr, coefficient_per_sample, feedback, mix, n_stages=6):
    """Plain float64 loop of the recursion (independent of the compiled kernel)."""
    y = np.zeros_like(x)
    for c in range(x.shape[0]):
        s = np.zeros(n_stages)
        f = 0.0
        for t in range(x.shape[1]):
            g = coefficient_per_sample[t]
            u = x[c, t] - f
            for k in range(n_stages):
                v = g * (u - s[k])
                lp = v + s[k]
                s[k] = lp + v
                u = 2 * lp - u
            y[c, t] = (1 - mix) * x[c, t] + mix * u
            f = feedback * u
    return y


def test_cascade_gradcheck_time_varying():
    torch.manual_seed(0)
    rows, n, stages = 2, 32, 6
    x = torch.randn(rows, n, dtype=F64, requires_grad=True)
    g = (0.05 + 0.9 * torch.rand(rows, n, dtype=F64)).requires_grad_()
    fb = (1.8 * torch.rand(rows, n, dtype=F64) - 0.9).requires_grad_()
    s0 = torch.randn(rows, stages, dtype=F64, requires_grad=True)
    f0 = torch.randn(rows, dtype=F64, requires_grad=True)
    # all three outputs (wet and the final states) are checked, so block chaining is exact too
    assert torch.autograd.gradcheck(PhaserCascade.apply, (x, g, fb, s0, f0))


@pytest.mark.parametrize("counter", [0, 3])
def test_phaser_gradcheck_every_control_and_state(counter):
    """Exact phase (float32_phase=False): gradients w.r.t. x, every per-sample control and the state."""
    torch.manual_seed(1)
    n, sr = 23, 8000.0
    x = torch.randn(2, 2, n, dtype=F64, requires_grad=True)
    t = torch.linspace(0, 1, n, dtype=F64).view(1, 1, n)
    rate = (200.0 + 300.0 * t).requires_grad_()
    depth = (0.4 + 0.3 * t).requires_grad_()
    centre = (500.0 + 400.0 * t).requires_grad_()
    fb = (0.5 - 0.9 * t).requires_grad_()
    mix = (0.2 + 0.6 * t).expand(1, 2, n).clone().requires_grad_()
    stages = torch.randn(2, 2, 6, dtype=F64, requires_grad=True)
    f0 = torch.randn(2, 2, dtype=F64, requires_grad=True)
    phase = torch.tensor([0.3, 2.0], dtype=F64, requires_grad=True)
    held = torch.tensor([0.2, 0.4], dtype=F64, requires_grad=True)

    def fn(x, rate, depth, centre, fb, mix, stages, f0, phase, held):
        state = phaser_init_state(2, 2, 6, dtype=F64)._replace(
            stages=stages, feedback=f0, lfo_phase=phase, coefficient=held, counter=counter
        )
        y, st = phaser(x, rate, depth, centre, fb, mix, sr, state=state, float32_phase=False)
        return y, st.stages, st.feedback, st.lfo_phase, st.coefficient

    assert torch.autograd.gradcheck(fn, (x, rate, depth, centre, fb, mix, stages, f0, phase, held))


def test_phaser_gradcheck_cutoff_control():
    torch.manual_seed(2)
    n, sr = 40, 8000.0
    x = torch.randn(1, 2, n, dtype=F64, requires_grad=True)
    cutoff = (300.0 + 2000.0 * torch.rand(1, 1, n, dtype=F64)).requires_grad_()
    fn = lambda x, c: phaser(x, 1.0, 0.5, 1000.0, 0.7, 0.6, sr, cutoff_hz=c)[0]  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, cutoff))


def test_float32_phase_values_and_straight_through_gradient():
    """Values: pedalboard's float32 accumulation; gradient: the exact phase's, in both modes."""
    rate = torch.full((1, 5000), 7.3, dtype=F64, requires_grad=True)
    p0 = torch.zeros(1, dtype=F64)
    sr = 48000
    p32, next32 = phaser_lfo_phase(rate, p0, sr, float32_phase=True)
    # an independent float32 loop (np.float32 scalars)
    two_pi = np.float32(2 * math.pi)
    inc = np.float32(np.float32(two_pi * np.float32(7.3)) / np.float32(sr / 4))
    p, expected = np.float32(0), []
    for _ in range(5000):
        expected.append(p)
        p = np.float32(p + inc)
        while p >= two_pi:
            p = np.float32(p - two_pi)
    assert np.array_equal(p32.detach().numpy()[0], np.array(expected, dtype=np.float64))
    assert float(next32.detach()) == float(p)
    pe, _ = phaser_lfo_phase(rate, p0, sr, float32_phase=False)
    # the float32 phase drifts from the exact one (that is why pedalboard's must be copied) ...
    drift = (torch.remainder(pe - p32, 2 * math.pi) + math.pi) % (2 * math.pi) - math.pi
    assert 1e-6 < float(drift.detach().abs().max()) < 1e-2
    # ... but both have the exact phase's gradient: d phase_j / d rate_i = 8 pi / sr for i < j
    w = torch.randn(5000, dtype=F64, generator=torch.Generator().manual_seed(0))
    (g32,) = torch.autograd.grad((p32[0] * w).sum(), rate)
    (ge,) = torch.autograd.grad((pe[0] * w).sum(), rate)
    want = 8 * math.pi / sr * (w.flip(0).cumsum(0).flip(0) - w)
    torch.testing.assert_close(g32[0], want, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(ge[0], want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("sr", [44100, 48000])
@pytest.mark.parametrize("cutoff", [100.0, 1300.0, 9000.0])
def test_static_cascade_is_six_bilinear_allpasses(sr, cutoff):
    """depth 0, feedback 0, mix 1: unit magnitude and the phase of six bilinear allpasses."""
    n = 8192
    x = torch.zeros(1, 1, n, dtype=F64)
    x[..., 0] = 1.0
    y, _ = phaser(x, 1.0, 0.0, cutoff, 0.0, 1.0, sr)
    h_ir = y[0, 0].numpy()
    assert abs(h_ir[-64:]).max() < 1e-12  # the IR has decayed: its spectrum is the response
    freqs = np.geomspace(20.0, 0.45 * sr, 200)
    _, h = scipy.signal.freqz(h_ir, 1, worN=freqs, fs=sr)
    g = math.tan(math.pi * cutoff / sr)  # at 44.1/48 kHz the set centre IS the cutoff
    a1 = (g - 1) / (g + 1)
    _, h1 = scipy.signal.freqz([a1, 1.0], [1.0, a1], worN=freqs, fs=sr)
    np.testing.assert_allclose(np.abs(h), 1.0, atol=1e-9)
    np.testing.assert_allclose(h, h1**6, atol=1e-9)
    # each stage is -90 degrees at the cutoff: the cascade is -540 = 180 degrees
    _, hc = scipy.signal.freqz(h_ir, 1, worN=[cutoff], fs=sr)
    assert abs(hc[0] - (-1.0)) < 1e-8


def test_lfo_cutoff_map_and_hold():
    """fc traces 20*(fmax/20)^clip(-sin(phase)*depth/2 + c0), held for 4 samples."""
    sr, rate, depth, centre = 48000, 50.0, 0.6, 1000.0
    phases = torch.linspace(0, 2 * math.pi, 9, dtype=F64)
    fc = phaser_cutoff_hz(phases, torch.tensor(depth, dtype=F64), torch.tensor(centre, dtype=F64), sr)
    c0 = math.log10(centre / 20) / 3
    want = [20 * 1000 ** min(max(-math.sin(p) * depth / 2 + c0, 0), 1) for p in phases.tolist()]
    np.testing.assert_allclose(fc.numpy(), want, rtol=1e-12)
    # the render equals a plain loop driven by the held coefficients
    n = 103
    x = torch.randn(2, n, dtype=F64, generator=torch.Generator().manual_seed(3))
    y, st = phaser(x.unsqueeze(0), rate, depth, centre, 0.4, 0.8, sr, float32_phase=False)
    k = np.arange(n) // PHASER_UPDATE_INTERVAL
    ph = 2 * math.pi * rate * PHASER_UPDATE_INTERVAL * k / sr
    fck = 20 * 1000 ** np.clip(-np.sin(ph) * depth / 2 + c0, 0, 1)
    gt = np.tan(np.pi * fck / sr)
    ref = _reference_phaser(x.numpy(), sr, gt / (1 + gt), 0.4, 0.8)
    np.testing.assert_allclose(y[0].numpy(), ref, atol=1e-12)
    assert st.counter == n % 4


def test_cutoff_control_overrides_lfo():
    sr, n = 48000, 500
    x = torch.randn(1, 2, n, dtype=F64, generator=torch.Generator().manual_seed(4))
    cutoff = torch.logspace(2, 4, n, dtype=F64).view(1, 1, n)
    y, _ = phaser(x, 5.0, 1.0, 300.0, -0.5, 1.0, sr, cutoff_hz=cutoff)
    g = allpass_coefficient(cutoff[0, 0], sr).numpy()
    np.testing.assert_allclose(y[0].numpy(), _reference_phaser(x[0].numpy(), sr, g, -0.5, 1.0), atol=1e-12)
    # a constant cutoff equals the LFO at depth 0 centred there
    y1, _ = phaser(x, 5.0, 1.0, 300.0, 0.3, 0.6, sr, cutoff_hz=torch.tensor(2500.0, dtype=F64))
    y2, _ = phaser(x, 5.0, 0.0, 2500.0, 0.3, 0.6, sr)
    torch.testing.assert_close(y1, y2, rtol=0, atol=1e-12)


def test_blocks_with_carried_state_equal_one_render():
    sr, n = 48000, 301
    x = torch.randn(1, 2, n, dtype=F64, generator=torch.Generator().manual_seed(5))
    args = (37.0, 0.9, 800.0, 0.8, 0.6, sr)
    y_all, _ = phaser(x, *args)
    out, state, pos = [], None, 0
    for size in [1, 2, 3, 7, 64, 5, 219]:
        y, state = phaser(x[..., pos : pos + size], *args, state=state)
        out.append(y)
        pos += size
    assert pos == n
    torch.testing.assert_close(torch.cat(out, -1), y_all, rtol=0, atol=1e-12)


def test_bad_inputs_raise():
    x = torch.zeros(1, 1, 16)
    with pytest.raises(ValueError, match="batch, channels, samples"):
        phaser(torch.zeros(16), 1.0, 0.5, 1000.0, 0.0, 0.5, 48000)
    with pytest.raises(ValueError, match="n_stages"):
        phaser(x, 1.0, 0.5, 1000.0, 0.0, 0.5, 48000, n_stages=0)
    with pytest.raises(ValueError, match="rate_hz"):
        phaser(x, torch.ones(1, 2, 16), 0.5, 1000.0, 0.0, 0.5, 48000)
    with pytest.raises(TypeError, match="feedback"):
        phaser(x, 1.0, 0.5, 1000.0, "a lot", 0.5, 48000)
    with pytest.raises(ValueError, match="state.stages"):
        phaser(x, 1.0, 0.5, 1000.0, 0.0, 0.5, 48000, state=phaser_init_state(1, 1, 4))
