"""Streaming with time-varying controls: every unit that takes frame-rate controls renders, block
by block through dspfx.Stream, the samples of one offline render, for blocks of any number of
frames (the causal hop grid: frame i reached at sample (i + 1) hop - 1, the previous block's
last frame carried by the stream)."""

from __future__ import annotations

import pytest
import torch

import dspfx
from dspfx.amps import KnobConditioned, amp

HOP = 32
FRAMES = 12
SPLITS = [(12,), (1, 11), (3, 4, 5), (1, 1, 2, 3, 5), (5, 1, 6)]


def _frames(shape, lo, hi, seed):
    g = torch.Generator().manual_seed(seed)
    return (lo + (hi - lo) * torch.rand(*shape, generator=g, dtype=torch.float64))


def _cases():
    sr = 16000
    F = FRAMES
    yield "gain", dspfx.make("gain", sample_rate=sr), {"gain_db": _frames((1, F), -30, 6, 1)}
    yield "biquad", dspfx.make("biquad", sample_rate=sr, mode="lowpass"), {
        "cutoff_hz": _frames((1, F), 200, 4000, 2), "q": _frames((1, F), 0.5, 4, 3)}
    yield "svf", dspfx.make("svf", sample_rate=sr), {"cutoff_hz": _frames((1, F), 200, 4000, 4)}
    yield "ladder", dspfx.make("ladder", sample_rate=sr), {"cutoff_hz": _frames((1, F), 200, 4000, 5),
                                                          "resonance": _frames((1, F), 0, 0.9, 6)}
    yield "fir", dspfx.make("fir", sample_rate=sr, n_bands=9, n_taps=15), {"magnitudes": _frames((1, F, 9), 0, 2, 7)}
    yield "phaser", dspfx.make("phaser", sample_rate=sr), {"cutoff_hz": _frames((1, F), 300, 3000, 8)}
    yield "chorus", dspfx.make("chorus", sample_rate=sr), {"delay_ms": _frames((1, F), 2, 12, 9)}
    yield "harmonic", dspfx.make("harmonic", sample_rate=sr, n_harmonics=8, hop=HOP), {
        "f0_hz": _frames((1, F), 100, 900, 10), "amplitude": _frames((1, F), 0, 1, 11),
        "harmonic_distribution": _frames((1, F, 8), 0, 1, 12)}
    yield "sinusoidal", dspfx.make("sinusoidal", sample_rate=sr, n_sinusoids=3, hop=HOP), {
        "frequencies_hz": _frames((1, F, 3), 100, 3000, 13), "amplitudes": _frames((1, F, 3), 0, 1, 14)}
    yield "filtered_noise", dspfx.make("filtered_noise", sample_rate=sr, n_bands=9, hop=HOP, seed=3), {
        "magnitudes": _frames((1, F, 9), 0, 1, 15)}
    yield "wavetable", dspfx.make("wavetable", sample_rate=sr, n_tables=3, table_size=256, hop=HOP), {
        "f0_hz": _frames((1, F), 100, 900, 16), "weights": _frames((1, F, 3), 0, 1, 17)}
    yield "fm", dspfx.make("fm", sample_rate=sr, hop=HOP), {"f0_hz": _frames((1, F), 100, 900, 18)}
    yield "waveshaper", dspfx.make("waveshaper", sample_rate=sr, n_shapers=2, order=4, hop=HOP), {
        "f0_hz": _frames((1, F), 100, 900, 19), "input_gain": _frames((1, F, 2), 0.2, 1, 20)}
    model = KnobConditioned(amp("bassman", sr), settings=("gain", "treble"))
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.net.parameters():
            p.normal_(0, 0.3)
    yield "knob_conditioned", model, {"gain": _frames((1, F), 0, 10, 21), "treble": _frames((1, F), 0, 10, 22)}


CASES = list(_cases())


@pytest.mark.parametrize("name,unit,controls", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("splits", SPLITS, ids=["-".join(map(str, s)) for s in SPLITS])
def test_blocks_of_any_frames_equal_the_offline_render(name, unit, controls, splits):
    unit = unit.double()
    n = FRAMES * HOP
    x = None if unit.is_synth else _frames((1, 1, n), -0.5, 0.5, 99)
    with torch.no_grad():
        offline = unit(x, n_samples=n, **controls) if unit.is_synth else unit(x, **controls)
        stream = dspfx.Stream(unit, batch=1, channels=1)
        pieces, start = [], 0
        for k in splits:
            block = {key: v[:, start : start + k] for key, v in controls.items()}
            if unit.is_synth:
                pieces.append(stream(n_samples=k * HOP, **block))
            else:
                pieces.append(stream(x[..., start * HOP : (start + k) * HOP], **block))
            start += k
    torch.testing.assert_close(torch.cat(pieces, dim=-1), offline, rtol=0, atol=1e-9)


def test_a_stream_ramps_from_the_previous_block_and_reset_forgets_it():
    unit = dspfx.make("gain").double()
    x = torch.ones(1, 1, 4, dtype=torch.float64)
    stream = dspfx.Stream(unit)
    first = stream(x, gain_db=torch.tensor([[-20.0]], dtype=torch.float64))  # one frame: held
    second = stream(x, gain_db=torch.tensor([[0.0]], dtype=torch.float64))  # from -20 dB to 0 dB
    torch.testing.assert_close(first[0, 0], torch.full((4,), 0.1, dtype=torch.float64))
    expected = 10 ** (torch.tensor([-15.0, -10.0, -5.0, 0.0], dtype=torch.float64) / 20)
    torch.testing.assert_close(second[0, 0], expected)
    stream.reset()
    again = stream(x, gain_db=torch.tensor([[0.0]], dtype=torch.float64))
    torch.testing.assert_close(again[0, 0], torch.ones(4, dtype=torch.float64))
    with pytest.raises(TypeError, match="plain frames"):
        stream(x, gain_db=dspfx.functional.Frames(torch.zeros(1, 1), None))
