"""Tests of dspfx.resampling: the chunked resampler equals the whole-signal one."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal
import torch

from dspfx.resampling import StreamResampler, resample


@pytest.mark.parametrize("rates", [(44100, 16000), (48000, 16000), (16000, 44100), (22050, 16000), (16000, 16000),
                                   (8000, 48000), (96000, 44100)])
def test_chunks_of_any_size_give_the_whole_signal_resampling(rates):
    rng = np.random.default_rng(sum(rates))
    x = rng.standard_normal(30011)
    whole = scipy.signal.resample_poly(x, *(np.array(rates[::-1]) // np.gcd(*rates)))
    assert np.allclose(resample(torch.from_numpy(x), *rates).numpy(), whole, atol=1e-12)
    for sizes in ([1] * 50 + [30011], list(rng.integers(1, 5000, 40)), [30011]):
        r, parts, i = StreamResampler(*rates), [], 0
        for n in sizes:
            parts.append(r.feed(x[i: i + n]))
            i += n
        parts.append(r.finish())
        y = np.concatenate(parts)
        assert y.shape == whole.shape
        assert np.max(np.abs(y - whole)) < 1e-12


def test_memory_is_bounded_by_the_chunk_and_the_filter():
    r = StreamResampler(44100, 16000)
    x = np.random.default_rng(0).standard_normal(4410)
    for _ in range(200):  # 20 s of input
        r.feed(x)
        assert r._buffer.size < 4410 + 2 * r.reach + 441  # the chunk, the filter's reach, one period


def test_misuse_is_refused():
    r = StreamResampler(48000, 16000)
    with pytest.raises(ValueError, match="1-d"):
        r.feed(np.zeros((2, 10)))
    r.finish()
    with pytest.raises(RuntimeError, match="after finish"):
        r.feed(np.zeros(10))
    with pytest.raises(ValueError, match="positive"):
        StreamResampler(0, 16000)
