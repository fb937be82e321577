"""FIR design and filtering (dspfx.functional.fir)."""

import numpy as np
import pytest
import scipy.signal
import torch


from signal_helpers import F64, noise


# ============================================================================ FIR design and filtering

from dspfx.functional import fir_filter, fir_from_magnitudes, fir_window, upsample_control  # noqa: E402


def test_fir_from_magnitudes_equals_the_ddsp_recipe_in_numpy():
    # DDSP: irfft of the magnitudes, rolled by half (zero phase -> causal), times a periodic Hann
    rng = np.random.default_rng(0)
    mags = rng.uniform(0.0, 2.0, (3, 4, 65))
    h = fir_from_magnitudes(torch.from_numpy(mags))
    assert h.shape == (3, 4, 128) and h.dtype == F64
    ref = np.roll(np.fft.irfft(mags, n=128, axis=-1), 64, axis=-1) * scipy.signal.get_window("hann", 128)
    np.testing.assert_allclose(h.numpy(), ref, atol=1e-15)
    # rectangular window: the rolled irfft itself, whose DFT gives the magnitudes back exactly
    h_rect = fir_from_magnitudes(torch.from_numpy(mags), window="rectangular").numpy()
    spectrum = np.fft.rfft(np.roll(h_rect, -64, axis=-1), axis=-1)
    np.testing.assert_allclose(spectrum.real, mags, atol=1e-12)
    np.testing.assert_allclose(spectrum.imag, 0.0, atol=1e-12)


@pytest.mark.parametrize("n_bands, n_taps", [(65, 128), (65, 127), (65, 129), (17, 100), (9, 5), (5, 1), (5, 2)])
def test_fir_taps_are_symmetric_about_the_delay(n_bands, n_taps):
    mags = noise((2, n_bands), seed=n_taps).abs()
    h = fir_from_magnitudes(mags, n_taps)
    assert h.shape == (2, n_taps)
    c = n_taps // 2
    k = min(c, n_taps - 1 - c)
    assert torch.allclose(h[:, c - k : c].flip(-1), h[:, c + 1 : c + k + 1], atol=1e-15)
    if n_taps % 2 == 0 and n_taps > 1:
        assert torch.all(h[:, 0] == 0)  # the periodic Hann window's zero tap
    # linear in the magnitudes
    m2 = noise((2, n_bands), seed=99)
    combined = fir_from_magnitudes(2 * mags - m2, n_taps)
    assert torch.allclose(combined, 2 * h - fir_from_magnitudes(m2, n_taps), atol=1e-14)


def test_fir_window_shapes():
    w = fir_window(8)
    np.testing.assert_allclose(w.numpy(), scipy.signal.get_window("hann", 8), atol=1e-7)
    w = fir_window(9, dtype=F64)
    assert torch.allclose(w, w.flip(0)) and w.argmax() == 4 and float(w.min()) > 0
    assert torch.equal(fir_window(5, "rectangular"), torch.ones(5))


def test_fir_filter_static_equals_lfilter_and_streams():
    x = noise((2, 3, 700))
    h = noise((2, 31), seed=1)  # one response per batch item
    y, _ = fir_filter(x, h)
    ref = np.stack([scipy.signal.lfilter(h[b].numpy(), [1.0], x[b].numpy(), axis=-1) for b in range(2)])
    np.testing.assert_allclose(y.numpy(), ref, atol=1e-12)
    # blocks with the carried history (short blocks: matmul path; long: conv1d) == at once
    pieces, hist, i = [], None, 0
    for size in (1, 5, 29, 2, 600, 63):
        out, hist = fir_filter(x[..., i : i + size], h, hist)
        pieces.append(out)
        i += size
    assert i == 700
    assert torch.allclose(torch.cat(pieces, -1), y, atol=1e-12)
    assert torch.equal(hist, x[..., -30:].flip(-1))


def test_fir_filter_time_varying_equals_per_sample_interpolated_taps():
    x = noise((2, 2, 90))
    frames = noise((2, 7, 12), seed=3)
    history = noise((2, 2, 11), seed=4)
    y, new_hist = fir_filter(x, frames, history)
    per_sample = upsample_control(frames, 90, mode="causal")  # (2, 90, 12)
    x_ext = torch.cat([history.flip(-1), x], -1)
    ref = torch.stack([(per_sample[:, None, n] * x_ext[..., n : n + 12].flip(-1)).sum(-1) for n in range(90)], -1)
    assert torch.allclose(y, ref, atol=1e-12)
    assert torch.equal(new_hist, x[..., -11:].flip(-1))
    # more frames than samples, and a single-sample block (its one sample ends the hop: the last frame)
    y2, _ = fir_filter(x[..., :5], frames)
    ps = upsample_control(frames, 5, mode="causal")
    xe = torch.nn.functional.pad(x[..., :5], (11, 0))
    ref2 = torch.stack([(ps[:, None, n] * xe[..., n : n + 12].flip(-1)).sum(-1) for n in range(5)], -1)
    assert torch.allclose(y2, ref2)
    y1, _ = fir_filter(x[..., :1], frames)
    assert torch.allclose(y1[..., 0], frames[:, None, -1, 0] * x[..., 0])
    # a previous block's response: the block starts from it (the causal grid of every control)
    prev = noise((2, 12), seed=5)
    y3, _ = fir_filter(x, frames, history, previous=prev)
    ps3 = upsample_control(frames, 90, mode="causal", previous=prev[:, None, :])
    ref3 = torch.stack([(ps3[:, None, n] * x_ext[..., n : n + 12].flip(-1)).sum(-1) for n in range(90)], -1)
    assert torch.allclose(y3, ref3, atol=1e-12)


def test_fir_gradcheck_float64():
    x = noise((1, 1, 20)).requires_grad_(True)
    mags = noise((1, 3, 5), seed=2).abs().requires_grad_(True)
    hist = noise((1, 1, 7), seed=3).requires_grad_(True)

    def f(x, mags, hist):
        return fir_filter(x, fir_from_magnitudes(mags, 8), hist)[0]

    assert torch.autograd.gradcheck(f, (x, mags, hist), eps=1e-6, atol=1e-8)
    assert torch.autograd.gradcheck(lambda m: f(x, m[:, :1], hist), (mags,), eps=1e-6, atol=1e-8)


def test_fir_bad_inputs():
    with pytest.raises(ValueError, match="n_bands >= 2"):
        fir_from_magnitudes(torch.ones(1))
    with pytest.raises(TypeError, match="real floating"):
        fir_from_magnitudes(torch.ones(5, dtype=torch.int64))
    with pytest.raises(ValueError, match="n_taps must be an int >= 1"):
        fir_from_magnitudes(torch.ones(5), 0)
    with pytest.raises(ValueError, match="unknown FIR window mode 'blackman'"):
        fir_from_magnitudes(torch.ones(5), window="blackman")
    with pytest.raises(ValueError, match=r"impulse_responses must be shaped"):
        fir_filter(torch.zeros(2, 1, 10), torch.ones(3, 4, 5))
    with pytest.raises(ValueError, match="history"):
        fir_filter(torch.zeros(2, 1, 10), torch.ones(5), torch.zeros(2, 1, 3))
    with pytest.raises(ValueError, match=r"\(batch, channels, samples\)"):
        fir_filter(torch.zeros(10), torch.ones(5))


def test_fir_filter_static_fft_path_equals_direct_convolution():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 1, 5000, generator=gen, dtype=torch.float64)
    h = torch.randn(128, generator=gen, dtype=torch.float64)
    hist = torch.randn(2, 1, 127, generator=gen, dtype=torch.float64)
    y, new_hist = fir_filter(x, h, hist)  # long block: the FFT path
    x_ext = torch.cat([hist.flip(-1), x], -1)
    y_ref = torch.nn.functional.conv1d(x_ext.reshape(2, 1, -1), h.flip(-1).reshape(1, 1, -1))
    torch.testing.assert_close(y, y_ref, rtol=0, atol=1e-12)
    assert torch.equal(new_hist, x[..., -127:].flip(-1))
