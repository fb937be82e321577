"""The NAM-compatible WaveNet unit: sizes and receptive fields as NAM's, streaming equals
offline, save/load, gradients, and a short fit that learns a distortion."""

from __future__ import annotations

import pytest
import torch

import dspfx
from dspfx.amps.wavenet import WAVENET_SIZES, WaveNetAmp

# NAM's classic parameter counts (standard 13,801: shared/reference/capture-midi-plugins.md)
COUNTS = {"standard": 13801, "lite": 6553, "feather": 3025, "nano": 841}


@pytest.mark.parametrize("size", list(WAVENET_SIZES))
def test_sizes_and_receptive_field(size):
    unit = dspfx.make("wavenet", size=size)
    assert unit.n_parameters == COUNTS[size]
    assert unit.receptive_field == 4093  # 1 + 2 * (1023 + 1023) for every classic size
    assert unit.nam_weights().numel() == COUNTS[size] + 1  # the head scale last


def test_causal_and_streaming_equals_offline():
    torch.manual_seed(0)
    unit = WaveNetAmp(size="nano", seed=3).double()
    x = torch.randn(2, 2, 9000, dtype=torch.float64) * 0.3
    with torch.no_grad():
        y = unit(x)
        stream = dspfx.Stream(unit, batch=2, channels=2)
        pieces = [stream(b) for b in x.split([1, 4095, 17, 4887], dim=-1)]
        late = x.clone()
        late[..., 5000:] = 0.0
        y_late = unit(late)
    torch.testing.assert_close(torch.cat(pieces, -1), y, rtol=0, atol=1e-12)
    torch.testing.assert_close(y_late[..., :5000], y[..., :5000], rtol=0, atol=0)  # causal
    assert not torch.equal(y_late[..., 5000:], y[..., 5000:])


def test_save_load_and_load_nam_weights_round_trip(tmp_path):
    unit = WaveNetAmp(size="feather", seed=1)
    path = dspfx.save(unit, tmp_path / "w.safetensors")
    loaded = dspfx.load(path)
    x = torch.randn(1, 1, 5000) * 0.3
    with torch.no_grad():
        assert torch.equal(loaded(x), unit(x))
    other = WaveNetAmp(size="feather", seed=2).load_nam_weights(unit.nam_weights())
    with torch.no_grad():
        torch.testing.assert_close(other(x), unit(x), rtol=0, atol=0)
    with pytest.raises(ValueError, match="3026 weights"):
        other.load_nam_weights(torch.zeros(5))
    with pytest.raises(ValueError, match="size"):
        dspfx.make("wavenet", size="huge")


def test_gradients_and_a_short_fit_learns_a_distortion():
    torch.manual_seed(0)
    x = torch.randn(1, 1, 12000) * 0.3
    target = torch.tanh(4.0 * x) * 0.5
    unit = WaveNetAmp(size="nano", seed=0)
    result = dspfx.fit(unit, x, target, steps=150, lr=0.01, loss="esr", progress=False, align_latency=False)
    assert result.metrics["esr"] < 0.05, result.metrics  # from about 1 (a fresh net's output is near 0)
    assert result.loss_history[0] > 0.9
