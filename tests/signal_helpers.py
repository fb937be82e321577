"""Small signal helpers shared by the filter tests (tests/functional/test_design, test_recursive,
test_sos, test_fir): seeded noise, ESR and the scipy references."""

import numpy as np
import scipy.signal
import torch

F64 = torch.float64


def esr(y: np.ndarray, ref: np.ndarray) -> float:
    return float(np.sum((y - ref) ** 2) / np.sum(ref**2))


def noise(shape, seed=0, dtype=F64) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=gen, dtype=dtype)


def lfilter_ref(b: np.ndarray, a: np.ndarray, x: np.ndarray) -> np.ndarray:
    return scipy.signal.lfilter(b, a, x, axis=-1)


def assert_close_scaled(y, ref, rtol):
    """All samples within rtol of the reference's peak (a relative check robust to zeros)."""
    y, ref = np.asarray(y), np.asarray(ref)
    np.testing.assert_allclose(y, ref, rtol=rtol, atol=rtol * np.max(np.abs(ref)))
