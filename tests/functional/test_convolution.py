"""FFT convolution with state, and the pedalboard IR normalisation."""

import numpy as np
import pytest
import torch

from dspfx.functional.convolution import fft_convolve, normalize_impulse_response


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
