"""Tests of dspfx.functional.decay: RT60 by Schroeder backward integration."""

import math

import numpy as np
import pytest
import torch

from dspfx.functional.decay import rt60


def test_rt60_of_exponential_decays():
    sr = 8000
    rng = np.random.default_rng(0)
    for t60 in (0.3, 1.0):
        n = int(1.2 * t60 * sr)
        h = rng.standard_normal(n) * 10 ** (-3 * np.arange(n) / (sr * t60))
        assert rt60(h, sr) == pytest.approx(t60, rel=0.03)
    stacked = rt60(torch.from_numpy(np.stack([h, h])), sr)
    assert stacked.shape == (2,) and np.allclose(stacked, stacked[0])
    assert math.isnan(rt60(np.zeros(100), sr))  # no decay to fit
    with pytest.raises(ValueError, match="fit_db"):
        rt60(h, sr, fit_db=(-35.0, -5.0))
