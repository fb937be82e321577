"""Functional dynamics: gain computers and processors, exact gradients, block continuation,
argument checks (the level detector: test_ballistics.py)."""

import numpy as np
import pytest
import torch

from dspfx.functional import ballistics as FB
from dspfx.functional import dynamics as FD


def _noise(n=64, channels=1, batch=1, seed=0, scale=0.3, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(batch, channels, n, generator=g, dtype=dtype)


def test_knee_is_hard_at_zero_width_and_smooth_otherwise():
    u = torch.linspace(-20, 20, 4001, dtype=torch.float64)
    assert torch.equal(FD.knee(u, 0.0), u.clamp_min(0.0))
    w = 8.0
    k = FD.knee(u, w)
    assert torch.equal(k[u < -w / 2], torch.zeros_like(k[u < -w / 2]))
    assert torch.equal(k[u > w / 2], u[u > w / 2])
    assert float(FD.knee(torch.tensor(0.0, dtype=torch.float64), w)) == pytest.approx(w / 8)  # (W/2)^2 / (2W)
    # continuous first derivative across both knee edges
    uu = torch.tensor([-w / 2 - 1e-7, -w / 2 + 1e-7, w / 2 - 1e-7, w / 2 + 1e-7], dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(FD.knee(uu, w).sum(), uu)
    assert abs(float(g[0] - g[1])) <= 1e-6 and abs(float(g[2] - g[3])) <= 1e-6


def test_gain_computers_follow_their_slopes():
    level = torch.tensor([-60.0, -30.0, -20.0, -10.0, 0.0], dtype=torch.float64)
    comp = FD.compressor_gain_db(level, -20.0, 4.0)
    np.testing.assert_allclose(comp.numpy(), [0, 0, 0, -7.5, -15.0], atol=1e-12)
    exp = FD.expander_gain_db(level, -20.0, 3.0)
    np.testing.assert_allclose(exp.numpy(), [-80.0, -20.0, 0, 0, 0], atol=1e-12)
    # soft knee, Giannoulis et al. 2012 eq. (4): output level inside the knee
    t, r, w = -20.0, 4.0, 10.0
    x = torch.tensor(-18.0, dtype=torch.float64)
    y = x + FD.compressor_gain_db(x, t, r, w)
    assert float(y) == pytest.approx(-18.0 + (1 / r - 1) * (-18.0 - t + w / 2) ** 2 / (2 * w))


def test_hard_knee_compressor_gain_is_pedalboards_power_law():
    # constant input: the envelope settles at |x|, so the gain is (|x|/T)^(1/R - 1) above T
    levels = torch.tensor([0.01, 0.05, 0.2, 0.9], dtype=torch.float64).view(4, 1, 1)
    x = levels.expand(4, 1, 4000).clone()
    y, _ = FD.compressor(x, -20.0, 3.0, 0.001, 5000.0, 48000)
    t = 0.1
    expected = torch.where(levels < t, torch.ones_like(levels), (levels / t) ** (1 / 3 - 1))
    np.testing.assert_allclose((y[..., -1:] / x[..., -1:]).numpy(), expected.numpy(), rtol=1e-10)


def test_ratio_one_is_identity_and_makeup_is_a_gain():
    x = _noise(n=500, channels=2)
    y, _ = FD.compressor(x, -40.0, 1.0, 1.0, 100.0, 48000, knee_db=6.0)
    assert torch.equal(y, x)
    y, _ = FD.expander(x, -10.0, 1.0, 1.0, 100.0, 48000, knee_db=6.0)
    assert torch.equal(y, x)
    y, _ = FD.noise_gate(x, -10.0, 1.0, 1.0, 100.0, 48000)
    assert torch.equal(y, x)
    y, _ = FD.compressor(x, 0.0, 1.0, 1.0, 100.0, 48000, makeup_db=6.0)
    assert torch.allclose(y, x * 10 ** (6 / 20), rtol=1e-14)


def test_silence_gives_finite_outputs_and_gradients():
    x = torch.zeros(1, 2, 200, dtype=torch.float64, requires_grad=True)
    th = torch.tensor(-30.0, dtype=torch.float64, requires_grad=True)
    ratio = torch.tensor(8.0, dtype=torch.float64, requires_grad=True)
    total = 0
    for f in (
        lambda: FD.compressor(x, th, ratio, 1.0, 100.0, 48000, knee_db=6.0, detector="rms")[0],
        lambda: FD.expander(x, th, ratio, 1.0, 100.0, 48000, knee_db=6.0)[0],
        lambda: FD.noise_gate(x, th, ratio, 1.0, 100.0, 48000)[0],
        lambda: FD.limiter(x, th, 100.0, 48000)[0],
    ):
        y = f()
        assert torch.equal(y, torch.zeros_like(y))
        total = total + y.sum()
    grads = torch.autograd.grad(total, (x, th, ratio), allow_unused=True)
    assert all(g is None or torch.isfinite(g).all() for g in grads)


def _short(seed, n=40, channels=2):
    x = _noise(n=n, channels=channels, seed=seed, scale=0.5)
    x[..., n // 2 :] *= 0.05
    return x.requires_grad_(True)


def _p(v, shape=()):
    return torch.tensor(v, dtype=torch.float64).reshape(shape).requires_grad_(True)


@pytest.mark.parametrize("detector", ["peak", "rms"])
@pytest.mark.parametrize("knee", [0.0, 9.0])
def test_compressor_gradcheck_every_input(detector, knee):
    x = _short(4)
    args = [x, _p(-18.0), _p(3.0), _p(2.0), _p(30.0), _p(2.5), _p([0.05, 0.3], (1, 2, 1))]
    if knee:  # knee 0 is the edge of its range (a one-sided derivative): differentiate inside only
        args.append(_p(knee))

    def f(x, th, ratio, att, rel, mk, st, kn=0.0):
        return FD.compressor(x, th, ratio, att, rel, 16000, kn, mk, detector=detector, state=st)[0]

    assert torch.autograd.gradcheck(f, tuple(args), eps=1e-7, atol=1e-7)


def test_compressor_gradcheck_time_varying_controls_and_sidechain():
    x = _short(5)
    key = _short(6, channels=1)
    th = torch.linspace(-30, -10, 40, dtype=torch.float64).view(1, 1, -1).requires_grad_(True)
    att = torch.linspace(0.5, 5, 40, dtype=torch.float64).view(1, 1, -1).requires_grad_(True)

    def f(x, key, th, att):
        return FD.compressor(x, th, 4.0, att, 50.0, 16000, 6.0, sidechain=key)[0]

    assert torch.autograd.gradcheck(f, (x, key, th, att), eps=1e-7, atol=1e-7)


def test_expander_gradcheck_every_input():
    x = _short(7)
    args = (x, _p(-20.0), _p(2.5), _p(1.5), _p(40.0), _p(6.0), _p([0.01, 0.2], (1, 2, 1)))

    def f(x, th, ratio, att, rel, kn, st):
        return FD.expander(x, th, ratio, att, rel, 16000, kn, state=st)[0]

    assert torch.autograd.gradcheck(f, args, eps=1e-7, atol=1e-7)


def test_noise_gate_gradcheck_every_input():
    x = _short(8)
    args = (x, _p(-25.0), _p(4.0), _p(1.5), _p(40.0), _p([0.02, 0.1], (1, 2, 1)), _p([0.1, 0.3], (1, 2, 1)))

    def f(x, th, ratio, att, rel, s_rms, s_env):
        return FD.noise_gate(x, th, ratio, att, rel, 16000, state=(s_rms, s_env))[0]

    assert torch.autograd.gradcheck(f, args, eps=1e-7, atol=1e-7)


def test_limiter_gradcheck_every_input():
    x = _short(9)
    x.data *= 1.5
    args = (x, _p(-8.0), _p(20.0), _p([0.1, 0.4], (1, 2, 1)), _p([0.05, 0.2], (1, 2, 1)))

    def f(x, th, rel, s1, s2):
        return FD.limiter(x, th, rel, 16000, state=(s1, s2))[0]

    assert torch.autograd.gradcheck(f, args, eps=1e-7, atol=1e-7)


@pytest.mark.parametrize("name", ["compressor", "expander", "noise_gate", "limiter"])
def test_processors_in_blocks_equal_whole(name):
    x = _noise(n=1500, channels=2, seed=10, scale=0.5)
    x[..., 500:900] *= 0.02
    call = {
        "compressor": lambda x, s: FD.compressor(x, -20.0, 5.0, 3.0, 60.0, 48000, 6.0, 3.0, detector="rms", state=s),
        "expander": lambda x, s: FD.expander(x, -30.0, 3.0, 3.0, 60.0, 48000, 6.0, state=s),
        "noise_gate": lambda x, s: FD.noise_gate(x, -30.0, 3.0, 3.0, 60.0, 48000, state=s),
        "limiter": lambda x, s: FD.limiter(x, -12.0, 20.0, 48000, state=s),
    }[name]
    whole, _ = call(x, None)
    state, parts = None, []
    for start in range(0, 1500, 101):
        y, state = call(x[..., start : start + 101], state)
        parts.append(y)
    assert (torch.cat(parts, -1) - whole).abs().max() <= 1e-12


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_renders_without_gradient_equal_the_differentiable_ones_exactly(dtype):
    """The no-grad fast paths (fused gate detectors, in-place hard-knee gain) give the values and
    states of the differentiable path bit for bit, time-varying controls and a sidechain included."""
    g = torch.Generator().manual_seed(7)
    x = torch.randn(2, 2, 3000, generator=g, dtype=dtype) * torch.linspace(0.0, 1.0, 3000, dtype=dtype)
    key = torch.randn(2, 1, 3000, generator=g, dtype=dtype) * 0.2
    thr = torch.linspace(-40.0, -10.0, 3000, dtype=dtype).view(1, 1, -1)
    knee = torch.linspace(0.0, 24.0, 3000, dtype=dtype).view(1, 1, -1)  # soft knees, from hard
    calls = [
        lambda x, **k: FD.compressor(x, thr, 4.0, 2.0, 80.0, 48000, **k),
        lambda x, **k: FD.compressor(x, -20.0, 3.0, 1.0, 50.0, 48000, 0.0, 2.0, detector="rms", sidechain=key, **k),
        lambda x, **k: FD.compressor(x, thr, 6.0, 1.0, 60.0, 48000, knee, -3.0, **k),
        lambda x, **k: FD.expander(x, thr, 4.0, 2.0, 120.0, 48000, **k),
        lambda x, **k: FD.expander(x, -30.0, 3.0, 2.0, 120.0, 48000, knee, detector="rms", **k),
        lambda x, **k: FD.noise_gate(x, thr, 8.0, 2.0, 120.0, 48000, **k),
        lambda x, **k: FD.noise_gate(x, -30.0, 100.0, 0.01, 10.0, 44100, sidechain=key, **k),
        lambda x, **k: FD.limiter(x, -12.0, 60.0, 48000, **k),
    ]
    for call in calls:
        with torch.no_grad():
            y0, s0 = call(x)
        xg = x.clone().requires_grad_()
        y1, s1 = call(xg)
        assert y1.requires_grad and torch.equal(y0, y1.detach())
        for a, b in zip(s0 if isinstance(s0, tuple) else (s0,), s1 if isinstance(s1, tuple) else (s1,)):
            assert torch.equal(a, b.detach())
        # and carried on from that state, both paths continue alike
        with torch.no_grad():
            y2, _ = call(x, state=s0)
        y3, _ = call(xg, state=s1)
        assert torch.equal(y2, y3.detach())


def test_noise_gate_square_root_is_correctly_rounded():
    """The RMS detector's square root is the IEEE one (JUCE's std::sqrt): the gate's envelope is
    the peak ballistics of exactly np.sqrt of its mean square."""
    x = _noise(n=4000, scale=0.5, dtype=torch.float32)
    c_rms = FB.ballistics_coefficient(torch.tensor(FD.NOISE_GATE_RMS_RELEASE_MS), 48000)
    ca, cr = FB.ballistics_coefficient(torch.tensor(2.0), 48000), FB.ballistics_coefficient(torch.tensor(100.0), 48000)
    env, _, _ = FB._gate_envelopes(x * x, c_rms, ca, cr, None, None)
    ms, _ = FB.envelope_decisions(x * x, 0.0, c_rms)
    ref, _ = FB.envelope_decisions(torch.from_numpy(np.sqrt(ms.numpy())), ca, cr)
    assert torch.equal(env, ref)


def test_bad_arguments_raise_clear_errors():
    x = _noise(n=100)
    with pytest.raises(ValueError, match="ratio must lie in"):
        FD.compressor(x, -20.0, 0.5, 1.0, 100.0, 48000)
    with pytest.raises(ValueError, match="attack_ms must lie in"):
        FD.compressor(x, -20.0, 2.0, -1.0, 100.0, 48000)
    with pytest.raises(ValueError, match="knee_db must lie in"):
        FD.expander(x, -20.0, 2.0, 1.0, 100.0, 48000, knee_db=-3.0)
    with pytest.raises(ValueError, match="detector must be one of"):
        FD.compressor(x, -20.0, 2.0, 1.0, 100.0, 48000, detector="loud")
    with pytest.raises(ValueError, match="sample_rate must be a positive"):
        FD.compressor(x, -20.0, 2.0, 1.0, 100.0, 0)
    with pytest.raises(ValueError, match=r"shaped \(batch, channels, samples\)"):
        FD.compressor(x[0], -20.0, 2.0, 1.0, 100.0, 48000)
    with pytest.raises(TypeError, match="must be a torch.Tensor"):
        FD.limiter(x.numpy(), -20.0, 100.0, 48000)
    with pytest.raises(ValueError, match="sidechain shaped"):
        FD.compressor(x, -20.0, 2.0, 1.0, 100.0, 48000, sidechain=_noise(n=99))
    with pytest.raises(ValueError, match="does not broadcast"):
        FD.compressor(x, torch.zeros(3), 2.0, 1.0, 100.0, 48000)
    with pytest.raises(ValueError, match="state shaped"):
        FD.compressor(x, -20.0, 2.0, 1.0, 100.0, 48000, state=torch.zeros(1, 3, 1))
    with pytest.raises(ValueError, match="pair"):
        FD.noise_gate(x, -20.0, 2.0, 1.0, 100.0, 48000, state=torch.zeros(1, 1, 1))
    with pytest.raises(TypeError, match="number or a tensor"):
        FD.compressor(x, "-20", 2.0, 1.0, 100.0, 48000)
