"""Tests of dspfx.ddsp.yin, the YIN / pYIN tracker behind dspfx.ddsp.features.pitch."""

from __future__ import annotations

import numpy as np
import torch

import dspfx.ddsp.features as F
import dspfx.ddsp.yin as yin

SR = 16000


def _harmonic(f0: np.ndarray, sr: int = SR, n_harmonics: int = 8) -> np.ndarray:
    """Band-limited harmonic tone with a sample-wise f0 (1/k harmonic amplitudes)."""
    phase = 2 * np.pi * np.cumsum(f0) / sr
    return 0.3 * sum(np.where(k * f0 < sr / 2, np.sin(k * phase) / k, 0.0) for k in range(1, n_harmonics + 1))


def test_difference_is_yins_by_its_definition():
    """d(k) = sum_{j<N-k} (x_j - x_{j+k})^2 / (N - k) and d'(k) = d(k) k / sum_{i<=k} d(i), computed
    by brute force, against the FFT form (float32 autocorrelation: relative 1e-4)."""
    rng = np.random.default_rng(0)
    frames = rng.standard_normal((3, 200)).astype(np.float32)
    d, cmndf = yin.difference(torch.from_numpy(frames), 60)
    x = frames.astype(np.float64)
    for f in range(3):
        brute = np.array([np.sum((x[f, : 200 - k] - x[f, k:]) ** 2) / (200 - k) for k in range(61)])
        np.testing.assert_allclose(d[f].numpy(), brute, rtol=1e-4, atol=1e-4)
        k = np.arange(1, 61)
        np.testing.assert_allclose(cmndf[f, 1:].numpy(), brute[1:] * k / np.cumsum(brute[1:]), rtol=1e-4)
        assert cmndf[f, 0] == 1.0


def test_pitch_viterbi_segments_carry_over(monkeypatch):
    """Decoding in short Viterbi segments (as for signals over 131 s) gives the same track."""
    t = np.arange(int(0.5 * SR)) / SR
    x = torch.tensor(_harmonic(196.0 * 2 ** (0.5 / 12 * np.sin(2 * np.pi * 3 * t))))
    whole, conf_whole = F.pitch(x, SR)
    monkeypatch.setattr(yin, "_VITERBI_SEGMENT", 37)
    monkeypatch.setattr(yin, "_CHUNK_FRAMES", 50)
    pieces, conf_pieces = F.pitch(x, SR)
    torch.testing.assert_close(pieces, whole)
    torch.testing.assert_close(conf_pieces, conf_whole)
