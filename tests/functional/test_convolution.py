"""FFT convolution with state (offline), uniformly partitioned convolution (streaming), and the
pedalboard IR normalisation."""

import numpy as np
import pytest
import scipy.signal
import torch

from dspfx.functional.convolution import (
    fft_convolve,
    fft_size,
    normalize_impulse_response,
    partition_spectra,
    partitioned_convolve,
    partitioned_state,
)


def _rand(*shape, seed=0, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.mark.parametrize("taps,n", [(1, 50), (5, 300), (257, 1000), (1000, 300)])
@pytest.mark.parametrize("path", ["direct", "fft"])
def test_fft_convolve_equals_numpy_convolve_truncated(taps, n, path, monkeypatch):
    import dspfx.functional.convolution as conv

    monkeypatch.setattr(conv, "_DIRECT_MAX", 1 << 30 if path == "direct" else 0)
    x = _rand(2, 3, n, seed=1)
    h = _rand(taps, seed=2)
    y, _ = fft_convolve(x, h)
    expected = np.stack([[np.convolve(xc, h.numpy())[:n] for xc in xb] for xb in x.numpy()])
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-10, atol=1e-11)


def test_channel_mapping_mono_and_multichannel_responses():
    x2 = _rand(1, 2, 400, seed=3)
    h2 = _rand(2, 30, seed=4)
    y, _ = fft_convolve(x2, h2)
    for c in range(2):
        np.testing.assert_allclose(y[0, c].numpy(), np.convolve(x2[0, c].numpy(), h2[c].numpy())[:400], atol=1e-11)
    ymono, _ = fft_convolve(x2[:, :1], h2)  # a mono input uses the first channel of the response
    np.testing.assert_allclose(ymono[0, 0].numpy(), y[0, 0].numpy(), atol=1e-12)
    with pytest.raises(ValueError, match="3 input channels"):
        fft_convolve(_rand(1, 3, 100), h2)


def test_history_makes_blocks_equal_one_pass():
    x = _rand(2, 2, 1000, seed=5)
    h = _rand(2, 77, seed=6)
    whole, _ = fft_convolve(x, h)
    state, parts = None, []
    for start, stop in [(0, 1), (1, 8), (8, 50), (50, 51), (51, 1000)]:
        y, state = fft_convolve(x[..., start:stop], h, state)
        parts.append(y)
    np.testing.assert_allclose(torch.cat(parts, -1).numpy(), whole.numpy(), atol=1e-12)
    with pytest.raises(ValueError, match="history"):
        fft_convolve(x, h, torch.zeros(2, 2, 5, dtype=torch.float64))


def test_normalization_matches_the_pedalboard_formula():
    h = _rand(2, 100, seed=7)
    h[1] *= 3.0  # the loudest channel sets the scale for both
    out = normalize_impulse_response(h)
    energy = (out**2).sum(-1)
    assert float(energy.max()) == pytest.approx(0.125**2, rel=1e-12)
    np.testing.assert_allclose((out / h).numpy(), (out[1, 0] / h[1, 0]).item(), rtol=1e-12)
    quiet = torch.zeros(50, dtype=torch.float64)
    quiet[3] = 5e-5  # energy 2.5e-9 < 1e-8: left alone
    assert torch.equal(normalize_impulse_response(quiet), quiet)
    assert torch.equal(normalize_impulse_response(torch.zeros(8)), torch.zeros(8))


@pytest.mark.parametrize("path", ["direct", "fft"])
def test_gradcheck_input_response_and_history(path, monkeypatch):
    import dspfx.functional.convolution as conv

    monkeypatch.setattr(conv, "_DIRECT_MAX", 1 << 30 if path == "direct" else 0)
    x = _rand(1, 2, 12, seed=8).requires_grad_()
    h = _rand(2, 5, seed=9).requires_grad_()
    hist = _rand(1, 2, 4, seed=10).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b, c: fft_convolve(a, b, c)[0], (x, h, hist))
    if path == "direct":  # the normalisation's gradient does not depend on the path
        assert torch.autograd.gradcheck(lambda a, b: fft_convolve(a, normalize_impulse_response(b))[0], (x, h))


def test_bad_shapes_are_errors():
    with pytest.raises(ValueError, match="taps"):
        fft_convolve(_rand(1, 1, 10), _rand(1, 1, 5))
    with pytest.raises(ValueError, match="batch, channels, samples"):
        fft_convolve(_rand(10), _rand(5))
    with pytest.raises(TypeError, match="floating"):
        fft_convolve(_rand(1, 1, 10), torch.ones(3, dtype=torch.int64))


# ---------------------------------------------------------------- offline: overlap-save segments
@pytest.mark.parametrize("taps,n", [(300, 5000), (1000, 20000), (4097, 9000)])
def test_overlap_save_segments_equal_scipy_fftconvolve(taps, n):
    n_fft, hop = fft_size(n, taps)
    assert n_fft >= taps and hop == n_fft - taps + 1 and n_fft & (n_fft - 1) == 0
    x = _rand(2, 2, n, seed=11)
    h = _rand(2, taps, seed=12)
    hist = _rand(2, 2, taps - 1, seed=13)
    y, _ = fft_convolve(x, h, hist)
    full = torch.cat([hist, x], -1).numpy()
    expected = scipy.signal.fftconvolve(full, h.numpy()[None], axes=-1)[..., taps - 1 : taps - 1 + n]
    np.testing.assert_allclose(y.numpy(), expected, rtol=0, atol=1e-11 * np.abs(expected).max())


def test_fft_size_splits_long_signals_into_cache_sized_segments():
    n_fft, hop = fft_size(480000, 48000)  # 1 s response, 10 s at 48 kHz
    assert n_fft == 1 << 17 and -(-480000 // hop) == 6
    assert fft_size(1000, 1000) == (2048, 1049)  # one segment holds a short signal


# ---------------------------------------------------------------- streaming: partitioned (UPOLS)
def _stream(x, h, blocks, partition_size, method="partitioned"):
    state, parts, i = None, [], 0
    for b in blocks:
        y, state = partitioned_convolve(x[..., i : i + b], h, state, partition_size, method=method)
        parts.append(y)
        i += b
    assert i == x.shape[-1]
    return torch.cat(parts, -1), state


def _reference(x, h):
    x64, h64 = x.double().numpy(), h.double().numpy()
    if h64.ndim == 1:
        h64 = h64[None]
    if h64.shape[0] != x64.shape[1]:
        h64 = h64[:1]
    return scipy.signal.fftconvolve(x64, h64[None], axes=-1)[..., : x64.shape[-1]]


BLOCK_PLANS = {
    "1": [1] * 700,
    "7": [7] * 100,
    "64": [64] * 11,
    "256": [256] * 3,
    "4096": [4096],
    "changing": [3, 256, 1, 64, 700, 9, 255, 2, 1000, 17, 1789],
}


@pytest.mark.parametrize("plan", list(BLOCK_PLANS))
@pytest.mark.parametrize("taps", [37, 256, 1500])  # shorter than, equal to, longer than partitions
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_partitioned_stream_equals_offline_and_scipy(plan, taps, dtype):
    blocks = BLOCK_PLANS[plan]
    n = sum(blocks)
    x = _rand(1, 2, n, seed=20, dtype=dtype)
    h = _rand(2, taps, seed=21, dtype=dtype) * torch.exp(-torch.arange(taps, dtype=dtype) / 400)
    partition_size = 64 if plan != "256" else 256
    streamed, _ = _stream(x, h, blocks, partition_size)
    offline, _ = fft_convolve(x, h)
    expected = _reference(x, h)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    scale = float(np.abs(expected).max())
    assert float((streamed - offline).abs().max()) <= tol * scale
    assert np.abs(streamed.double().numpy() - expected).max() <= tol * scale


@pytest.mark.parametrize("method", ["auto", "fft"])
def test_auto_and_fft_paths_mixed_with_partitioned_blocks(method):
    # a long block may go through one FFT convolution; the next partitioned block rebuilds the
    # delay line from the time-domain history, at any phase
    x = _rand(2, 1, 9000, seed=22)
    h = _rand(3000, seed=23)
    expected = _reference(x, h)
    state, parts, i = None, [], 0
    for b, how in [(5, "partitioned"), (4000, method), (33, "partitioned"), (1, method), (4961, method)]:
        y, state = partitioned_convolve(x[..., i : i + b], h, state, 128, method=how)
        parts.append(y)
        i += b
    np.testing.assert_allclose(torch.cat(parts, -1).numpy(), expected, rtol=0, atol=1e-12 * np.abs(expected).max())


def test_auto_picks_one_fft_offline_and_partitions_for_short_blocks():
    x = _rand(1, 1, 20000, seed=24)
    h = _rand(4000, seed=25)
    _, state = partitioned_convolve(x, h, method="auto")
    assert "fdl" not in state  # one FFT convolution: no delay line built
    _, state = partitioned_convolve(x[..., :64], h, state, method="auto")
    assert state["fdl"].shape == (1, 1, 4000 // 256 + 1 - 1, 257) and state["phase"] == (20000 + 64) % 256


def test_partitioned_multichannel_mapping():
    h2 = _rand(2, 700, seed=26)
    x2 = _rand(1, 2, 1200, seed=27)
    y2, _ = _stream(x2, h2, [100] * 12, 64)
    np.testing.assert_allclose(y2.numpy(), _reference(x2, h2), atol=1e-11)
    y1, _ = _stream(x2[:, :1], h2, [100] * 12, 64)  # mono input: the response's first channel
    np.testing.assert_allclose(y1[0, 0].numpy(), y2[0, 0].numpy(), atol=1e-12)
    ym, _ = _stream(x2, h2[:1], [100] * 12, 64)  # mono response on both channels
    np.testing.assert_allclose(ym.numpy(), _reference(x2, h2[:1]), atol=1e-11)
    with pytest.raises(ValueError, match="3 input channels"):
        partitioned_convolve(_rand(1, 3, 10), h2)


def test_precomputed_spectra_give_the_same_result():
    x = _rand(1, 2, 3000, seed=28)
    h = _rand(2, 1000, seed=29)
    spectra = partition_spectra(h, 64)
    assert spectra.shape == (2, 1000 // 64 + 1, 65) and spectra.is_complex()
    state = partitioned_state(1, 2, 1000, 64, dtype=torch.float64)
    calls = []
    parts = []
    for i in range(0, 3000, 100):
        y, state = partitioned_convolve(x[..., i : i + 100], h, state, 64, spectra=lambda: calls.append(1) or spectra)
        parts.append(y)
    assert len(calls) == 30
    np.testing.assert_allclose(torch.cat(parts, -1).numpy(), _reference(x, h), atol=1e-11)


@pytest.mark.parametrize("blocks", [[29], [3, 11, 1, 14]])
def test_gradcheck_partitioned_input_and_response(blocks):
    x = _rand(1, 2, 29, seed=30).requires_grad_()
    h = _rand(2, 21, seed=31).requires_grad_()  # 3 partitions of 8 taps (the last one short)

    def render(x, h):
        return _stream(x, h, blocks, 8)[0]

    assert torch.autograd.gradcheck(render, (x, h))


def test_gradcheck_through_the_carried_delay_line():
    # gradients flow from a later block back through the state (FDL, tail, history)
    x = _rand(1, 1, 24, seed=32).requires_grad_()
    h = _rand(19, seed=33).requires_grad_()

    def render(x, h):
        _, state = partitioned_convolve(x[..., :13], h, None, 4, method="partitioned")
        y, _ = partitioned_convolve(x[..., 13:], h, state, 4, method="partitioned")
        return y

    assert torch.autograd.gradcheck(render, (x, h))


def test_partitioned_bad_arguments():
    x = _rand(1, 1, 10)
    h = _rand(50)
    with pytest.raises(ValueError, match="partition_size"):
        partitioned_convolve(x, h, partition_size=0)
    with pytest.raises(ValueError, match="method"):
        partitioned_convolve(x, h, method="fastest")
    with pytest.raises(ValueError, match="history shaped"):
        partitioned_convolve(x, h, partitioned_state(1, 1, 50, 32, dtype=torch.float64), 16)
    with pytest.raises(ValueError, match="phase"):
        partitioned_convolve(x, h, {"history": torch.zeros(1, 1, 255 + 256, dtype=torch.float64), "phase": 300})
    with pytest.raises(ValueError, match="spectra"):
        partitioned_convolve(x, h, None, 16, spectra=partition_spectra(h, 32), method="partitioned")
