"""least_squares_ir / Cabinet.from_pair: the least-squares FIR between a recording's input and
output (the learned cabinet's starting response)."""

import numpy as np
import pytest
import torch
from scipy import signal

from dspfx.amps.cabinet import Cabinet, least_squares_ir


def _noise(n: int, seed: int, rows: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(rows, 1, n, generator=g, dtype=torch.float64)


def _filter(h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:  # scipy as the reference convolution
    return torch.from_numpy(signal.lfilter(h.numpy(), [1.0], x.numpy(), axis=-1))


def test_recovers_a_known_fir_exactly_from_noise_in_float64():
    g = torch.Generator().manual_seed(1)
    h = torch.randn(64, generator=g, dtype=torch.float64) * torch.exp(-torch.arange(64.0, dtype=torch.float64) / 12)
    x = _noise(3000, seed=0)
    y = _filter(h, x)
    got = least_squares_ir(x, y, 64, ridge=0.0)
    assert got.dtype == torch.float64 and got.shape == (64,)
    assert (got - h).abs().max() < 1e-10
    # the default ridge (1e-6 of the input power) costs about 1e-6 relative error
    assert (least_squares_ir(x, y, 64) - h).abs().max() < 1e-5 * h.abs().max()
    # a longer response than the system's: the extra taps come out zero
    longer = least_squares_ir(x, y, 100, ridge=0.0)
    assert (longer[:64] - h).abs().max() < 1e-10 and longer[64:].abs().max() < 1e-10
    # several recordings (batch and channels) of the same system share one response, even short ones
    xs = _noise(150, seed=3, rows=4)
    assert (least_squares_ir(xs, _filter(h, xs), 64, ridge=0.0) - h).abs().max() < 1e-9
    # float32 in, float32 out, close to the truth
    got32 = least_squares_ir(x.float(), y.float(), 64)
    assert got32.dtype == torch.float32 and (got32.double() - h).abs().max() < 1e-4


def test_is_the_least_squares_solution():
    """Against numpy's lstsq on the explicit convolution matrix (y not made by a short FIR)."""
    x, y = _noise(500, seed=4)[0, 0], _noise(500, seed=5)[0, 0]
    n_taps = 20
    design = np.stack([np.concatenate([np.zeros(k), x.numpy()[: 500 - k]]) for k in range(n_taps)], axis=1)
    want = np.linalg.lstsq(design, y.numpy(), rcond=None)[0]
    assert np.abs(least_squares_ir(x, y, n_taps, ridge=0.0).numpy() - want).max() < 1e-10


def test_ridge_keeps_it_finite_on_silence_padded_input():
    # audio only in the last 30 samples: the taps beyond 30 see no input at all
    x = torch.cat([torch.zeros(1, 1, 970, dtype=torch.float64), _noise(30, seed=6)], dim=-1)
    h = torch.tensor([1.0, -0.5, 0.25], dtype=torch.float64)
    y = _filter(h, x)
    got = least_squares_ir(x, y, 64)
    assert torch.isfinite(got).all()
    assert (got[:3] - h).abs().max() < 1e-3  # what the audio shows is still found
    assert got[30:].abs().max() < 1e-6  # what it cannot show stays at zero
    assert torch.isfinite(least_squares_ir(x, y, 64, ridge=0.0)).all()  # minimum-norm answer


def test_gradient_flows_to_the_recording():
    x = _noise(80, seed=7)
    y = _noise(80, seed=8).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: least_squares_ir(x, t, 5, ridge=1e-3), (y,))


def test_from_pair_renders_the_recording():
    h = torch.tensor([0.5, 0.3, -0.2, 0.1], dtype=torch.float64)
    x = _noise(2000, seed=9)
    y = _filter(h, x)
    cab = Cabinet.from_pair(x, y, 32, 44100, ridge=0.0)
    assert cab.mode == "ir" and cab.n_taps == 32 and cab.sample_rate == 44100 and cab.dtype == torch.float64
    assert cab.impulse_response.requires_grad  # learnable from there
    with torch.no_grad():
        assert (cab(x) - y).abs().max() < 1e-9


def test_errors():
    x = _noise(100, seed=0)
    with pytest.raises(ValueError, match="same shape"):
        least_squares_ir(x, x[..., :99], 10)
    with pytest.raises(ValueError, match="same shape"):
        least_squares_ir(x, x.repeat(1, 2, 1), 10)
    with pytest.raises(ValueError, match="n_taps"):
        least_squares_ir(x, x, 101)
    with pytest.raises(ValueError, match="n_taps"):
        least_squares_ir(x, x, 0)
    with pytest.raises(ValueError, match="ridge"):
        least_squares_ir(x, x, 10, ridge=-1.0)
    with pytest.raises(ValueError, match="silent"):
        least_squares_ir(torch.zeros_like(x), x, 10)
    with pytest.raises(ValueError, match="finite"):
        least_squares_ir(x, x * float("nan"), 10)
    with pytest.raises(TypeError, match="tensor"):
        least_squares_ir(x.numpy(), x, 10)
