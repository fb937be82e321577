"""Recursive filtering (dspfx.functional.recursive.iir, dspfx.functional.tdf2): time-varying
and static, its engines (compiled, torch scan), streaming, gradients."""

import math

import numpy as np
import pytest
import scipy.signal
import torch

from dspfx.functional import recursive as recursive_module
from dspfx.functional import biquad_coefficients, iir

from signal_helpers import F64, assert_close_scaled, lfilter_ref, noise


# ============================================================================ time-varying iir


def naive_df1(x, b, a, x_hist, y_hist):
    """Per-sample direct form I reference: y[n] = (sum b_k x[n-k] - sum a_k y[n-k]) / a0."""
    batch, channels, n = x.shape
    b = np.broadcast_to(b, (batch, channels, n, b.shape[-1]))
    a = np.broadcast_to(a, (batch, channels, n, a.shape[-1]))
    y = np.zeros_like(x)
    for i in range(batch):
        for c in range(channels):
            xs = list(x_hist[i, c])  # most recent first
            ys = list(y_hist[i, c])
            for t in range(n):
                xs = [x[i, c, t]] + xs
                acc = sum(b[i, c, t, k] * xs[k] for k in range(b.shape[-1]))
                acc -= sum(a[i, c, t, k] * ys[k - 1] for k in range(1, a.shape[-1]))
                y[i, c, t] = acc / a[i, c, t, 0]
                ys = [y[i, c, t]] + ys
                xs = xs[: b.shape[-1] - 1]
                ys = ys[: a.shape[-1] - 1]
    return y


def sweep(batch, channels, n, low, high, seed=0, dtype=F64):
    """Smooth per-sample cutoff sweeps, different per batch item and channel."""
    gen = torch.Generator().manual_seed(seed)
    phase = torch.rand(batch, channels, 1, generator=gen, dtype=dtype) * 2 * math.pi
    t = torch.arange(n, dtype=dtype) / n
    m = 0.5 + 0.5 * torch.sin(2 * math.pi * 1.5 * t + phase)
    return low * (high / low) ** m


@pytest.fixture(params=["flattened", "batched"])
def lpc_path(request, monkeypatch):
    """Run a test through both ways iir calls torchlpc for several rows (see recursive._all_pole)."""
    if request.param == "batched":
        monkeypatch.setattr(recursive_module, "_FLATTEN_MAX_SAMPLES", 0)
    return request.param


def test_time_varying_matches_naive_loop(lpc_path):
    batch, channels, n = 2, 2, 200
    x = noise((batch, channels, n), seed=20)
    b = noise((batch, channels, n, 3), seed=21)
    _, a = biquad_coefficients("lowpass", sweep(batch, channels, n, 100.0, 10000.0, seed=22), 2.0, 0.0, 48000)
    x_hist = noise((batch, channels, 2), seed=23)
    y_hist = noise((batch, channels, 2), seed=24)
    y, (xs, ys) = iir(x, b, a, (x_hist, y_hist))
    ref = naive_df1(x.numpy(), b.numpy(), a.numpy(), x_hist.numpy(), y_hist.numpy())
    assert_close_scaled(y.numpy(), ref, 1e-12)
    np.testing.assert_array_equal(xs.numpy(), x.numpy()[..., ::-1][..., :2])
    np.testing.assert_array_equal(ys.numpy(), y.numpy()[..., ::-1][..., :2])


def test_time_varying_third_order_and_unnormalised_matches_naive_loop():
    batch, channels, n = 1, 2, 150
    x = noise((batch, channels, n), seed=30)
    _, a2 = biquad_coefficients("peak", sweep(batch, channels, n, 200.0, 5000.0, seed=31), 1.0, 6.0, 48000)
    pole = 0.5 + 0.3 * torch.sin(torch.arange(n, dtype=F64) / 20)  # one extra real pole
    # (1 + a1 z^-1 + a2 z^-2)(1 - p z^-1), scaled by a time-varying a0 = 1.5 + 0.5 sin
    a1_, a2_ = a2[..., 1], a2[..., 2]
    a3 = torch.stack([torch.ones_like(a1_), a1_ - pole, a2_ - a1_ * pole, -a2_ * pole], dim=-1)
    a3 = a3 * (1.5 + 0.5 * torch.sin(torch.arange(n, dtype=F64) / 7)).unsqueeze(-1)
    b = noise((1, 1, n, 4), seed=32)  # broadcast over channels
    y, _ = iir(x, b, a3)
    ref = naive_df1(x.numpy(), b.numpy(), a3.numpy(), np.zeros((1, 2, 3)), np.zeros((1, 2, 3)))
    assert_close_scaled(y.numpy(), ref, 1e-12)


@pytest.mark.parametrize("mode", ["lowpass", "peak", "highshelf"])
def test_gradcheck_through_design_and_state(mode, lpc_path):
    # the batched torchlpc call opens a thread pool region per call: keep its gradcheck shorter
    batch, n = 2, (32 if lpc_path == "flattened" else 12)
    sr = 8000
    t = torch.arange(n, dtype=F64)
    cutoff = (torch.tensor([[600.0], [1500.0]], dtype=F64) * (1 + 0.5 * torch.sin(t / 5))).unsqueeze(1)
    cutoff.requires_grad_(True)  # (2, 1, 32): one cutoff per sample
    q = torch.tensor(1.2, dtype=F64, requires_grad=True)
    gain_db = torch.tensor([[[4.0]], [[-3.0]]], dtype=F64, requires_grad=True)
    x = noise((batch, 1, n), seed=40).requires_grad_(True)
    x_hist = noise((batch, 1, 2), seed=41).requires_grad_(True)
    y_hist = noise((batch, 1, 2), seed=42).requires_grad_(True)

    def run(x, cutoff, q, gain_db, x_hist, y_hist):
        b, a = biquad_coefficients(mode, cutoff, q, gain_db, sr)
        y, (xs, ys) = iir(x, b, a, (x_hist, y_hist))
        return y, xs, ys

    assert torch.autograd.gradcheck(run, (x, cutoff, q, gain_db, x_hist, y_hist))


def test_gradcheck_raw_coefficients(lpc_path):
    batch, n = 2, (32 if lpc_path == "flattened" else 10)
    x = noise((batch, 1, n), seed=50).requires_grad_(True)
    b = noise((batch, 1, n, 3), seed=51).requires_grad_(True)
    _, a = biquad_coefficients("bandpass", sweep(batch, 1, n, 300.0, 3000.0, seed=52), 3.0, 0.0, 16000)
    a = a.detach().requires_grad_(True)
    static_b = noise((3,), seed=53).requires_grad_(True)
    static_a = torch.tensor([1.0, -1.2, 0.5], dtype=F64, requires_grad=True)
    y_hist = noise((batch, 1, 2), seed=54).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x, b, a: iir(x, b, a)[0], (x, b, a))
    assert torch.autograd.gradcheck(
        lambda x, b, a, yh: iir(x, b, a, (torch.zeros(batch, 1, 2, dtype=F64), yh))[0],
        (x, static_b, static_a, y_hist),
    )
    # first-order denominator takes torchlpc's other code path
    one_a = torch.tensor([1.0, -0.7], dtype=F64, requires_grad=True)
    y1 = noise((batch, 1, 1), seed=55).requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda x, a, yh: iir(x, static_b[:2].detach(), a, (torch.zeros(batch, 1, 1, dtype=F64), yh))[0],
        (x, one_a, y1),
    )


def test_many_rows_and_long_signals_take_the_batched_path():
    # rows x samples above the flattening threshold: torchlpc's batched call
    batch, channels, n = 2, 2, 20000
    assert batch * channels * n > recursive_module._FLATTEN_MAX_SAMPLES
    x = noise((batch, channels, n), seed=56)
    b, a = biquad_coefficients("peak", sweep(batch, channels, n, 100.0, 8000.0, seed=57), 2.0, 6.0, 48000)
    state = (noise((batch, channels, 2), seed=58), noise((batch, channels, 2), seed=59))
    y, (xs, ys) = iir(x, b, a, state)
    for i in range(batch):
        for c in range(channels):
            row_state = (state[0][i : i + 1, c : c + 1], state[1][i : i + 1, c : c + 1])
            y_row, (xs_row, ys_row) = iir(x[i : i + 1, c : c + 1], b[i : i + 1, c : c + 1], a[i : i + 1, c : c + 1], row_state)
            torch.testing.assert_close(y[i : i + 1, c : c + 1], y_row, rtol=0, atol=1e-12)
            torch.testing.assert_close(ys[i : i + 1, c : c + 1], ys_row, rtol=0, atol=1e-12)


@pytest.mark.parametrize("order", [1, 2, 4])
def test_torch_scan_fallback_matches_torchlpc(order):
    # the pure-torch recursion used on devices without a torchlpc kernel, checked on CPU
    rows, n = 3, 300
    u = noise((rows, n), seed=90)
    _, a = biquad_coefficients("lowpass", sweep(rows, 1, n, 200.0, 5000.0, seed=91)[:, 0], 1.5, 0.0, 48000)
    ar = a[..., 1:] if order == 2 else torch.cat([a[..., 1:]] * (order // 2), -1) * 0.5 if order == 4 else a[..., 1:2] * 0.45
    y_hist = noise((rows, order), seed=92)
    y_scan = recursive_module._all_pole_scan(u, ar, y_hist)
    y_ref = recursive_module._all_pole(u, ar, y_hist)
    torch.testing.assert_close(y_scan, y_ref, rtol=0, atol=1e-10 * y_ref.abs().max().item())
    small = (u[:, :24].clone().requires_grad_(True), ar[:, :24].clone().requires_grad_(True), y_hist.clone().requires_grad_(True))
    assert torch.autograd.gradcheck(recursive_module._all_pole_scan, small)


# ============================================================================ streaming


def stream(x, b, a, block, state=None):
    """Filter x block by block, slicing time-varying coefficients along with it."""
    outputs = []
    n = x.shape[-1]
    for start in range(0, n, block):
        stop = min(start + block, n)
        bb = b[..., start:stop, :] if b.ndim == 4 and b.shape[-2] == n else b
        aa = a[..., start:stop, :] if a.ndim == 4 and a.shape[-2] == n else a
        y, state = iir(x[..., start:stop], bb, aa, state)
        outputs.append(y)
    return torch.cat(outputs, dim=-1), state


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
@pytest.mark.parametrize("varying", [False, True], ids=["static", "time_varying"])
def test_streaming_equals_offline(varying, dtype, tol):
    batch, channels, n = 2, 2, 5000
    x = noise((batch, channels, n), seed=60, dtype=dtype)
    if varying:
        b, a = biquad_coefficients("peak", sweep(batch, channels, n, 100.0, 8000.0, seed=61, dtype=dtype), 2.0, 9.0, 48000)
    else:
        b, a = biquad_coefficients("lowshelf", torch.tensor([[[300.0]], [[2000.0]]], dtype=dtype), 0.7071, 6.0, 48000)
    y_off, (xs_off, ys_off) = iir(x, b, a)
    if varying and dtype == torch.float32:
        # blocks of one sample see static coefficients and run in the compiled static loop,
        # the offline render in torchlpc's time-varying loop: the same recursion in another
        # float32 summation order, amplified by poles near the unit circle (100 Hz, Q 2).
        # float64 above checks that the two are the same computation to 1e-12.
        tol = 1e-3
    for block in (1, 7, 64, 4096):
        y, (xs, ys) = stream(x, b, a, block)
        torch.testing.assert_close(y, y_off, rtol=0, atol=tol)
        torch.testing.assert_close(xs, xs_off, rtol=0, atol=tol)
        torch.testing.assert_close(ys, ys_off, rtol=0, atol=tol)


def test_static_loop_equals_the_time_varying_loop():
    """The compiled static path and torchlpc's time-varying path compute the same filter."""
    from dspfx.functional.recursive import StaticIIR

    b, a = biquad_coefficients("peak", torch.tensor(700.0, dtype=F64), 1.5, 6.0, 48000)
    x = noise((2, 3, 3000), seed=90)
    static, _ = iir(x, b, a)
    varying, _ = iir(x, b.expand(2, 3, 3000, 3), a.expand(2, 3, 3000, 3))
    torch.testing.assert_close(static, varying, rtol=0, atol=1e-12)
    assert_close_scaled(static.numpy(), lfilter_ref(b.numpy(), a.numpy(), x.numpy()), 1e-10)
    # exact gradients of the compiled loop, histories included, for several orders
    torch.manual_seed(0)
    for nb, order in ((3, 2), (2, 1), (1, 2), (4, 3), (3, 0)):
        for n in (1, 2, 30):
            args = (
                torch.randn(2, n, dtype=F64),
                torch.randn(2, nb, dtype=F64),
                0.3 * torch.randn(2, order, dtype=F64),
                torch.randn(2, nb - 1, dtype=F64),
                torch.randn(2, order, dtype=F64),
            )
            assert torch.autograd.gradcheck(StaticIIR.apply, tuple(t.requires_grad_() for t in args))


@pytest.mark.parametrize("block", [1, 3, 7])
def test_streaming_blocks_shorter_than_order(block):
    b_np, a_np = scipy.signal.butter(4, 0.2)  # order 4 > blocks of 1 and 3
    b, a = torch.from_numpy(b_np), torch.from_numpy(a_np)
    x = noise((1, 2, 300), seed=70)
    y_off, _ = iir(x, b, a)
    y, _ = stream(x, b, a, block)
    torch.testing.assert_close(y, y_off, rtol=0, atol=1e-12)
    assert_close_scaled(y.numpy(), lfilter_ref(b_np, a_np, x.numpy()), 1e-10)


def test_state_continues_a_signal():
    b, a = biquad_coefficients("highpass", torch.tensor(500.0, dtype=F64), 0.7, 0.0, 48000)
    x = noise((1, 1, 1000), seed=80)
    y_all, state_all = iir(x, b, a)
    _, state = iir(x[..., :600], b, a)
    y_rest, state_rest = iir(x[..., 600:], b, a, state)
    torch.testing.assert_close(y_rest, y_all[..., 600:], rtol=0, atol=1e-12)
    torch.testing.assert_close(state_rest[1], state_all[1], rtol=0, atol=1e-12)
    # an empty block leaves the state alone
    y_empty, state_empty = iir(x[..., :0], b, a, state)
    assert y_empty.shape == (1, 1, 0)
    assert torch.equal(state_empty[0], state[0]) and torch.equal(state_empty[1], state[1])


def test_iir_errors():
    b, a = biquad_coefficients("lowpass", 1000.0, 0.7, 0.0, 48000)
    with pytest.raises(ValueError, match=r"\(batch, channels, samples\).*\(1000,\)"):
        iir(torch.zeros(1000), b, a)
    with pytest.raises(ValueError, match="batch dimension is 3, expected 1 or 2"):
        iir(torch.zeros(2, 1, 100), torch.zeros(3, 1, 1, 3), a)
    with pytest.raises(ValueError, match="samples dimension is 50, expected 1 or 100"):
        iir(torch.zeros(2, 1, 100), b, torch.zeros(50, 3))
    with pytest.raises(ValueError, match="y_history"):
        iir(torch.zeros(2, 1, 100), b, a, (torch.zeros(2, 1, 2), torch.zeros(2, 1, 3)))
    with pytest.raises(ValueError, match="state must be a pair"):
        iir(torch.zeros(2, 1, 100), b, a, torch.zeros(2, 1, 2))
    with pytest.raises(TypeError, match="floating-point"):
        iir(torch.zeros(2, 1, 100, dtype=torch.int64), b, a)


# --- transposed direct form II (the form pedalboard/JUCE run) ---------------------------------


def test_tdf2_matches_scipy_lfilter_with_zi_and_streams_bit_exactly():
    torch.manual_seed(3)
    x = torch.randn(2, 3, 300, dtype=F64)
    b, a = biquad_coefficients("peak", torch.tensor(500.0, dtype=F64), 2.0, 6.0, 48000)
    s0 = torch.randn(2, 3, 2, dtype=F64)
    y, s = iir(x, b, a, s0, form="tdf2")
    ref, zf = scipy.signal.lfilter(b.numpy(), a.numpy(), x.numpy(), axis=-1, zi=s0.numpy())
    assert np.abs(y.numpy() - ref).max() < 1e-12
    assert np.abs(s.numpy() - zf).max() < 1e-12
    x32 = x.float()
    offline, _ = iir(x32, b.float(), a.float(), form="tdf2")
    for block in (1, 7, 64):
        state, parts = None, []
        for i in range(0, x32.shape[-1], block):
            part, state = iir(x32[..., i : i + block], b.float(), a.float(), state, form="tdf2")
            parts.append(part)
        assert torch.equal(torch.cat(parts, dim=-1), offline)  # same arithmetic, bit for bit


def test_tdf2_time_varying_equals_static_and_gradients_are_exact():
    torch.manual_seed(4)
    b, a = biquad_coefficients("lowshelf", torch.tensor(300.0, dtype=F64), 0.9, -4.0, 48000)
    x = torch.randn(1, 2, 40, dtype=F64)
    s0 = torch.randn(1, 2, 2, dtype=F64)
    y_static, s_static = iir(x, b, a, s0, form="tdf2")
    y_tv, s_tv = iir(x, b.expand(1, 1, 40, 3), a.expand(1, 1, 40, 3), s0, form="tdf2")
    assert torch.allclose(y_static, y_tv, atol=1e-12) and torch.allclose(s_static, s_tv, atol=1e-12)

    def f(x, b, a, s0):
        return tuple(iir(x, b, a, s0, form="tdf2"))

    leaves = [t.clone().requires_grad_() for t in (x[..., :16], b, a, s0)]
    assert torch.autograd.gradcheck(f, leaves)
    leaves[0] = x[..., :1].clone().requires_grad_()  # a block shorter than the order
    assert torch.autograd.gradcheck(f, leaves)
    tv = [x[..., :12].clone().requires_grad_(), b.expand(1, 1, 12, 3).clone().requires_grad_(),
          a.expand(1, 1, 12, 3).clone().requires_grad_(), s0.clone().requires_grad_()]
    assert torch.autograd.gradcheck(f, tv)
    with pytest.raises(ValueError, match="tdf2"):
        iir(x, b, a, (s0, s0), form="tdf2")
    with pytest.raises(ValueError, match="form must be"):
        iir(x, b, a, form="df2")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_static_iir_third_order_branch_equals_the_generic_loop(dtype):
    # the order-3 register branch (tone stack) vs the generic loop (b padded with a zero tap)
    rng = np.random.default_rng(0)
    kernel = recursive_module._static_iir_kernel()
    x = rng.standard_normal((2, 3000)).astype(dtype)
    b = (0.3 * rng.random((2, 4))).astype(dtype)
    a = np.array([[-0.5, 0.1, -0.02]] * 2, dtype=dtype)
    xh, yh = rng.standard_normal((2, 3)).astype(dtype), rng.standard_normal((2, 3)).astype(dtype)
    y = kernel(x, b, a, xh, yh)
    pad = np.zeros((2, 1), dtype)
    y_generic = kernel(x, np.concatenate([b, pad], 1), a, np.concatenate([xh, pad], 1), yh)
    assert np.array_equal(y, y_generic)




# ============================================================================ engines (backend=)


@pytest.mark.parametrize("form", ["df1", "tdf2"])
@pytest.mark.parametrize("varying", [False, True])
def test_the_backends_agree(form, varying):
    """backend='torch' (the parallel scan any device runs) equals the compiled engines on the CPU."""
    batch, channels, n = 2, 2, 300
    x = noise((batch, channels, n), seed=5)
    cutoff = sweep(batch, channels, n, 200.0, 5000.0) if varying else torch.tensor(1200.0, dtype=F64)
    b, a = biquad_coefficients("peak", cutoff, torch.tensor(2.0, dtype=F64), torch.tensor(6.0, dtype=F64), 48000)
    y_c, s_c = iir(x, b, a, form=form, backend="compiled")
    y_t, s_t = iir(x, b, a, form=form, backend="torch")
    y_a, _ = iir(x, b, a, form=form)
    torch.testing.assert_close(y_t, y_c, rtol=0, atol=1e-10)
    assert torch.equal(y_a, y_c)  # auto on the CPU is the compiled engine
    for got, want in zip(s_t if form == "df1" else [s_t], s_c if form == "df1" else [s_c]):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-10)


def test_backend_errors():
    x = noise((1, 1, 10))
    b, a = biquad_coefficients("lowpass", 1000.0, 0.7, 0.0, 48000)
    with pytest.raises(ValueError, match="backend"):
        iir(x, b, a, backend="cuda")
    from dspfx.functional import CPUKernelError

    with pytest.raises(CPUKernelError, match="CPU only"):
        iir(torch.zeros(1, 1, 10, device="meta"), b.to("meta"), a.to("meta"), backend="compiled")
