"""Memoryless nonlinearities: clipper curves, bit crusher estimator, Chebyshev recurrence, curves."""

import math

import numpy as np
import pytest
import torch

from dspfx.functional.nonlinear import (
    CLIP_CURVES,
    arctan_clip,
    biased_curve,
    bitcrush,
    chebyshev_polynomials,
    chebyshev_series,
    clip,
    cubic_clip,
    hard_clip,
    mlp_curve,
    soft_clip,
    tanh_curve,
)

SOFT = ("soft", "cubic", "arctan")


def _ramp(lo=-5.0, hi=5.0, n=2001):
    return torch.linspace(lo, hi, n, dtype=torch.float64)


# --- clippers ------------------------------------------------------------------------------------


def test_hard_clip_equals_numpy_clip_and_broadcasts_tensor_thresholds():
    x = torch.randn(2, 3, 500, dtype=torch.float64)
    t = torch.tensor([0.3, 1.2], dtype=torch.float64).view(2, 1, 1)
    y = hard_clip(x, t)
    np.testing.assert_array_equal(y.numpy(), np.clip(x.numpy(), -t.numpy(), t.numpy()))
    np.testing.assert_array_equal(hard_clip(x, 0.5).numpy(), np.clip(x.numpy(), -0.5, 0.5))


def test_hard_clip_threshold_gradient_is_sign_where_clipped():
    x = torch.tensor([-2.0, -0.5, 0.1, 0.7, 3.0], dtype=torch.float64)
    t = torch.tensor(0.6, dtype=torch.float64, requires_grad=True)
    gx = x.clone().requires_grad_(True)
    hard_clip(gx, t).sum().backward()
    assert t.grad.item() == pytest.approx(-1.0 + 1.0 + 1.0)  # -2 -> -1, 0.7 and 3 -> +1
    np.testing.assert_array_equal(gx.grad.numpy(), [0.0, 1.0, 1.0, 0.0, 0.0])


@pytest.mark.parametrize("curve", CLIP_CURVES)
def test_every_curve_saturates_at_the_threshold_and_is_odd(curve):
    t = 0.37
    x = _ramp(-40.0, 40.0, 4001)
    y = clip(x, t, curve)
    assert float(y.abs().max()) <= t * (1 + 1e-15)
    assert torch.allclose(clip(-x, t, curve), -y, atol=0, rtol=0)  # odd
    assert bool((y[1:] >= y[:-1]).all())  # monotone
    far = clip(torch.tensor([-1e4, 1e4], dtype=torch.float64), t, curve)
    np.testing.assert_allclose(far.numpy(), [-t, t], rtol=1e-4)


@pytest.mark.parametrize("curve", SOFT)
def test_soft_curves_have_slope_one_at_zero(curve):
    x = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    for t in (0.01, 0.5, 1.0):
        (g,) = torch.autograd.grad(clip(x, t, curve).sum(), x)
        assert float(g) == pytest.approx(1.0, abs=1e-12)


def test_cubic_clipper_is_the_scaled_classic_curve_flat_beyond_its_knee():
    t = 0.5
    x = _ramp(-3 * t, 3 * t, 601)
    v = (2.0 / 3.0) * torch.clamp(x / t, -1.5, 1.5)
    classic = v - v**3 / 3  # saturates at 2/3
    np.testing.assert_allclose(cubic_clip(x, t).numpy(), (1.5 * t * classic).numpy(), rtol=1e-14, atol=1e-16)
    beyond = x.abs() >= 1.5 * t
    assert torch.equal(cubic_clip(x, t)[beyond].abs(), torch.full_like(x[beyond], t))
    # continuous slope at the knee: zero from both sides
    knee = torch.tensor([1.5 * t - 1e-7, 1.5 * t + 1e-7], dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(cubic_clip(knee, t).sum(), knee)
    assert float(g.abs().max()) < 1e-6


def test_soft_and_arctan_formulas():
    x, t = _ramp(-3, 3, 61), 0.8
    np.testing.assert_allclose(soft_clip(x, t).numpy(), t * np.tanh(x.numpy() / t), rtol=1e-14)
    expected = t * 2 / np.pi * np.arctan(np.pi * x.numpy() / (2 * t))
    np.testing.assert_allclose(arctan_clip(x, t).numpy(), expected, rtol=1e-14)


@pytest.mark.parametrize("curve", CLIP_CURVES)
def test_clippers_gradcheck_float64_away_from_kinks(curve):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 1, 24, generator=g, dtype=torch.float64)
    t = torch.tensor([[[0.5]], [[0.9]]], dtype=torch.float64)
    # keep samples away from the kinks |x| = t (hard) and |x| = 1.5 t (cubic)
    for knee in (t, 1.5 * t):
        near = (x.abs() - knee).abs() < 0.02
        x = torch.where(near, x + 0.05, x)
    x.requires_grad_(True)
    t.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: clip(a, b, curve), (x, t), eps=1e-6, atol=1e-7)


def test_clip_rejects_an_unknown_curve_and_bad_types():
    with pytest.raises(ValueError, match="clip curve must be one of hard, soft, cubic, arctan; got 'fuzz'"):
        clip(torch.zeros(3), 0.5, "fuzz")
    with pytest.raises(TypeError, match="threshold must be a tensor or a real number"):
        hard_clip(torch.zeros(3), "high")
    with pytest.raises(TypeError, match="floating tensor"):
        hard_clip(torch.zeros(3, dtype=torch.int64), 0.5)


# --- bit crusher ---------------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [1.0, 3.0, 8.0, 16.0, 2.5, 7.3])
def test_bitcrush_quantises_to_the_nearest_step(bits):
    x = torch.randn(1, 2, 4000, dtype=torch.float64) * 0.4
    y = bitcrush(x, bits)
    s = 2.0**bits
    np.testing.assert_allclose(y.numpy(), np.round(x.numpy() * s) / s, rtol=1e-15, atol=1e-300)
    assert float((y - x).abs().max()) <= 0.5 / s * (1 + 1e-12)


@pytest.mark.parametrize("bits", [0.5, 1.0, 3.7, 7.3, 12.25, 31.9])
def test_bitcrush_float32_is_bit_identical_to_pedalboard_fractional_depths_included(bits):
    import pedalboard

    plugin = pedalboard.Bitcrush(bit_depth=bits)
    x = 0.5 * torch.randn(2, 24000, generator=torch.Generator().manual_seed(3))
    ref = torch.from_numpy(plugin(x.numpy(), 48000))
    # same float32 depth as the plugin holds; round(x * s) * (1 / s), not round(x * s) / s
    assert torch.equal(bitcrush(x, torch.tensor(plugin.bit_depth, dtype=torch.float32)), ref)


def test_bitcrush_rounds_ties_to_even():
    x = torch.tensor([0.5, 1.5, 2.5, -0.5, -1.5, 3.5], dtype=torch.float64) / 4.0  # ties at 2 bits
    np.testing.assert_array_equal(bitcrush(x, 2.0).numpy(), np.array([0.0, 2.0, 2.0, -0.0, -2.0, 4.0]) / 4.0)


def test_bitcrush_forward_is_exact_when_gradients_are_tracked():
    x = torch.randn(3000, dtype=torch.float32) * 0.3
    b = torch.tensor(5.5, requires_grad=True)
    xg = x.clone().requires_grad_(True)
    assert torch.equal(bitcrush(xg, b), bitcrush(x, 5.5))


def test_bitcrush_straight_through_gradients():
    g = torch.Generator().manual_seed(2)
    x = (0.3 * torch.randn(2, 1, 300, generator=g, dtype=torch.float64)).requires_grad_(True)
    b = torch.tensor([[[4.0]], [[6.5]]], dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 1, 300, generator=g, dtype=torch.float64)
    y = bitcrush(x, b)
    gx, gb = torch.autograd.grad((y * w).sum(), (x, b))
    assert torch.equal(gx, w)  # identity w.r.t. x
    e = (y - x).detach()
    expected = (-math.log(2.0) * e * w).sum(dim=(1, 2), keepdim=True)
    np.testing.assert_allclose(gb.numpy(), expected.numpy(), rtol=1e-12)


def test_bitcrush_bit_depth_estimator_matches_how_the_error_actually_scales():
    # the estimator says d/db log(sum e^2) = -2 ln 2 per bit; measure it over one bit
    x = 0.4 * torch.randn(200000, dtype=torch.float64)
    b = torch.tensor(6.0, dtype=torch.float64, requires_grad=True)
    err = (bitcrush(x, b) - x).square().sum()
    (g,) = torch.autograd.grad(err, b)
    predicted = float(g) / float(err.detach())
    measured = math.log(float((bitcrush(x, 7.0) - x).square().sum()) / float(err.detach()))
    assert predicted == pytest.approx(-2 * math.log(2.0), rel=1e-9)
    assert measured == pytest.approx(predicted, rel=0.03)


# --- Chebyshev -----------------------------------------------------------------------------------


def test_chebyshev_recurrence_turns_cosines_into_harmonics():
    theta = torch.linspace(0, math.pi, 257, dtype=torch.float64)
    t = chebyshev_polynomials(torch.cos(theta), 12)
    assert t.shape == (257, 13)
    for k in range(13):
        np.testing.assert_allclose(t[:, k].numpy(), torch.cos(k * theta).numpy(), atol=1e-12)


def test_chebyshev_series_equals_numpy_chebval_with_clamp():
    c = torch.tensor([0.1, -0.7, 0.3, 0.05, -0.2], dtype=torch.float64)
    x = _ramp(-1.4, 1.4, 301)
    expected = np.polynomial.chebyshev.chebval(np.clip(x.numpy(), -1, 1), c.numpy())
    np.testing.assert_allclose(chebyshev_series(x, c).numpy(), expected, rtol=1e-12, atol=1e-14)


def test_chebyshev_gradcheck_and_errors():
    x = (0.9 * torch.rand(2, 1, 20, dtype=torch.float64) * 2 - 0.9).requires_grad_(True)
    c = torch.randn(6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(chebyshev_series, (x, c), eps=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="order must be an int >= 0, got -1"):
        chebyshev_polynomials(torch.zeros(3), -1)
    with pytest.raises(ValueError, match=r"coefficients must be a 1-D tensor \(order \+ 1,\), got \(2, 2\)"):
        chebyshev_series(torch.zeros(3), torch.zeros(2, 2))
    assert chebyshev_polynomials(torch.zeros(3), 0).shape == (3, 1)


# --- biased curves and the MLP -------------------------------------------------------------------


def test_tanh_curve_is_odd_without_bias_and_maps_silence_to_zero_with_it():
    x = _ramp(-2, 2, 401)
    y = tanh_curve(x, 3.0, 0.5, 0.0)
    np.testing.assert_allclose(y.numpy(), 0.5 * np.tanh(3.0 * x.numpy()), rtol=1e-14)
    assert torch.allclose(tanh_curve(-x, 3.0, 0.5, 0.0), -y, atol=0)
    biased = tanh_curve(x, 3.0, 0.5, 0.4)
    assert float(tanh_curve(torch.zeros(1, dtype=torch.float64), 3.0, 0.5, 0.4)) == 0.0
    assert not torch.allclose(tanh_curve(-x, 3.0, 0.5, 0.4), -biased, atol=1e-3)


def test_biased_curve_keeps_f_of_zero_and_gradchecks():
    f = lambda u: torch.cos(u) + u  # noqa: E731  (f(0) = 1, not odd)
    zero = torch.zeros(1, dtype=torch.float64)
    assert float(biased_curve(f, zero, 2.0, 1.0, 0.7)) == pytest.approx(1.0, abs=1e-15)
    x = torch.randn(1, 1, 16, dtype=torch.float64, requires_grad=True)
    gi = torch.tensor(1.7, dtype=torch.float64, requires_grad=True)
    go = torch.tensor(0.6, dtype=torch.float64, requires_grad=True)
    b = torch.tensor(-0.3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(tanh_curve, (x, gi, go, b), eps=1e-6, atol=1e-7)


def _mlp_weights(hidden=5, seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    shapes = [(hidden,), (hidden,), (hidden, hidden), (hidden,), (hidden,), (1,)]
    return [(scale * torch.randn(*s, generator=g, dtype=torch.float64)).requires_grad_(True) for s in shapes]


def test_mlp_curve_is_identity_with_zero_output_layer_and_matches_a_loop():
    x = _ramp(-1, 1, 11)
    w1, b1, w2, b2, w3, b3 = _mlp_weights()
    zero3, zerob = torch.zeros_like(w3), torch.zeros_like(b3)
    assert torch.equal(mlp_curve(x, w1, b1, w2, b2, zero3, zerob), x)
    y = mlp_curve(x, w1, b1, w2, b2, w3, b3)
    for xi, yi in zip(x.tolist(), y.tolist()):
        h1 = np.tanh(xi * w1.detach().numpy() + b1.detach().numpy())
        h2 = np.tanh(h1 @ w2.detach().numpy() + b2.detach().numpy())
        assert yi == pytest.approx(xi + h2 @ w3.detach().numpy() + b3.item(), abs=1e-12)


def test_mlp_curve_gradcheck_and_shape_errors():
    x = torch.randn(1, 2, 6, dtype=torch.float64, requires_grad=True)
    weights = _mlp_weights(hidden=3, seed=1)
    assert torch.autograd.gradcheck(mlp_curve, (x, *weights), eps=1e-6, atol=1e-7)
    w1, b1, w2, b2, w3, b3 = _mlp_weights(hidden=3)
    with pytest.raises(ValueError, match="mlp_curve weights"):
        mlp_curve(x, w1, b1, w2[:2], b2, w3, b3)
    with pytest.raises(ValueError, match="output weights"):
        mlp_curve(x, w1, b1, w2, b2, w3[:2], b3)


# --- the no-autograd fast path (scalar operands, in-place buffers) equals the autograd path -----


def _bits(y):
    """The raw bit patterns of a float tensor (so -0 != +0 and NaN payloads count)."""
    return y.contiguous().view(torch.int32 if y.dtype == torch.float32 else torch.int64)


def _edge_signal(dtype, n=3000):
    g = torch.Generator().manual_seed(3)
    x = 2.0 * torch.randn(2, 2, n, generator=g, dtype=torch.float64)
    special = [0.0, -0.0, 1e-30, -1e-30, 1e-3, -1e-3, 0.5, -0.5, 1.0, -1.0, 3.0, -3.0, 1e30, -1e30,
               math.inf, -math.inf, math.nan, 0.5011872336272722, -0.5011872336272722]
    x[0, 0, : len(special)] = torch.tensor(special, dtype=torch.float64)
    return x.to(dtype)


def _both_paths(fn, x, *params):
    """fn under torch.no_grad() (fast path) and with autograd on (the unchanged path)."""
    with torch.no_grad():
        fast = fn(x, *params)
    with torch.enable_grad():
        slow = fn(x, *[p.clone().requires_grad_(True) if isinstance(p, torch.Tensor) else p for p in params])
    return fast, slow.detach()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("curve", CLIP_CURVES)
def test_clip_fast_path_is_bit_identical_to_the_autograd_path(curve, dtype):
    x = _edge_signal(dtype)
    for t_db in (-60.0, -12.0, -0.5, 0.0):
        t = 10.0 ** (t_db / 20.0)
        for threshold in (t, torch.tensor(t, dtype=dtype), torch.tensor(t, dtype=dtype).reshape(1, 1, 1)):
            fast, slow = _both_paths(lambda x_, t_: clip(x_, t_, curve), x, threshold)
            assert fast.shape == slow.shape == x.shape and fast.dtype == slow.dtype == dtype
            assert torch.equal(_bits(fast), _bits(slow)), (curve, t_db, type(threshold))
    # a (1, 1, 1) threshold widens a 1-D signal: the general path, same shape either way
    wide = torch.tensor(0.3, dtype=dtype).reshape(1, 1, 1)
    fast, slow = _both_paths(lambda x_, t_: clip(x_, t_, curve), x[0, 0], wide)
    assert fast.shape == slow.shape == (1, 1, x.shape[-1]) and torch.equal(_bits(fast), _bits(slow))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_bitcrush_fast_path_is_bit_identical_to_the_autograd_path(dtype):
    with_nan = _edge_signal(dtype)
    without_nan = with_nan.nan_to_num(nan=0.25, posinf=math.inf, neginf=-math.inf)  # infs seen directly
    for depth, x in ((d, x) for d in (0.0, 0.5, 1.0, 6.0, 8.0, 15.3, 16.0, 23.7, 24.0, 31.0, 32.0, 120.0, 200.0, -3.0)
                     for x in (with_nan, without_nan)):
        for b in (torch.tensor(depth, dtype=dtype).reshape(1, 1, 1), torch.tensor(depth, dtype=torch.float64)):
            fast, slow = _both_paths(bitcrush, x, b)
            assert fast.shape == slow.shape and fast.dtype == slow.dtype == dtype
            # -0 -> +0 and inf -> NaN exactly as the straight-through terms of the autograd path give
            assert torch.equal(_bits(fast), _bits(slow)), depth
    zero = torch.tensor(-1e-4, dtype=dtype)
    with torch.no_grad():
        y = bitcrush(zero.reshape(1), 8.0)
    assert _bits(y).item() == 0  # +0, not -0
    assert bitcrush(torch.empty(1, 1, 0, dtype=dtype), 8.0).shape == (1, 1, 0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_biased_curve_fast_path_is_bit_identical_to_the_autograd_path(dtype):
    x = _edge_signal(dtype)
    coefficients = torch.tensor([0.1, 0.8, -0.3, 0.2], dtype=dtype)
    curves = (torch.tanh, lambda u: chebyshev_series(u, coefficients), lambda u: u)  # the last returns u itself
    for curve in curves:
        for gi, go, b in ((1.0, 1.0, 0.0), (1.0, 1.0, -0.0), (1.0, 2.0, 0.3), (0.063, 1.0, -1.0), (251.0, 0.004, 1.0)):
            params = [torch.tensor(v, dtype=dtype).reshape(1, 1, 1) for v in (gi, go, b)]
            fast, slow = _both_paths(lambda x_, *p: biased_curve(curve, x_, *p), x, *params)
            assert fast.dtype == slow.dtype == dtype
            assert torch.equal(_bits(fast), _bits(slow)), (curve, gi, go, b)
