"""Tests of the FM synth (dspfx.synths.fm) and dspfx.functional.fm."""

import numpy as np
import pytest
import scipy.special
import torch

import dspfx
import dspfx.synths.fm  # noqa: F401  (registers the unit)
from dspfx.functional.blep import accumulate_phase
from dspfx.functional.fm import clamp_indices, fm_algorithm, fm_render
from dspfx.synths.fm import FM

SR = 48000
D = torch.float64


def _two_op(index, fc=6.0, fm=1.0, f0=1000.0, n=SR, sr=SR, margin=0.05):
    synth = FM(sample_rate=sr, n_operators=2, f0_hz=f0, margin=margin).double()
    y = synth(
        n_samples=n,
        ratios=torch.tensor([[fc, fm]], dtype=D),
        levels=torch.tensor([[1.0, 0.0]], dtype=D),
        indices=torch.tensor([[0.0, index]], dtype=D),
    )
    return y[0, 0].detach().numpy()


@pytest.mark.parametrize("index", [0.5, 2.0, 4.0])
def test_two_operator_sidebands_are_bessel_values(index):
    # carrier 6 kHz, modulator 1 kHz: every sideband on an exact 1 Hz bin of a 1 s window
    y = _two_op(index)
    mag = np.abs(np.fft.rfft(y)) * 2 / len(y)
    for n in range(-3, 5):
        expected = abs(scipy.special.jv(n, index))
        if expected < 1e-3:
            continue
        got = mag[6000 + 1000 * n]
        assert abs(20 * np.log10(got / expected)) < 0.1, (n, got, expected)


def test_index_clamp_keeps_the_spectrum_below_nyquist():
    # carrier 10 kHz, modulator 5 kHz, index 10 asked: Carson band reaches 65 kHz
    # every true component is a multiple of 5 kHz; aliases of them are not (48k grid)
    def off_grid_fraction(y):
        p = np.abs(np.fft.rfft(y)) ** 2
        k = np.arange(len(p))
        on = (k % 5000 == 0)
        return p[~on].sum() / p.sum()

    clamped = _two_op(10.0, fc=10.0, fm=5.0)
    assert off_grid_fraction(clamped) < 0.01  # Carson's rule: >= 98 % of the power in band
    # the same patch without the clamp folds most of its power back
    phase, _ = accumulate_phase(torch.tensor([[[10000.0], [5000.0]]], dtype=D).expand(1, 2, SR) / SR, torch.zeros(1, 2, 1, dtype=D))
    freqs = torch.tensor([[[10000.0], [5000.0]]], dtype=D)
    r, c = fm_algorithm("stack", 2)
    raw = fm_render(phase, freqs, torch.tensor([[[1.0], [0.0]]], dtype=D), torch.tensor([[[0.0], [10.0]]], dtype=D), r, c, SR, None)
    assert off_grid_fraction(raw[0, 0].numpy()) > 0.2
    # the clamp is Carson's bound: f_c + (I + 1) f_m = (1 - margin) Nyquist
    idx = clamp_indices(freqs.expand(1, 2, 4), torch.tensor([[[0.0], [10.0]]], dtype=D), r, SR, 0.05)
    assert torch.allclose(idx[0, 1], torch.full((4,), (0.95 * 24000 - 10000) / 5000 - 1, dtype=D))
    # an index within the bound is untouched
    idx = clamp_indices(freqs.expand(1, 2, 4), torch.tensor([[[0.0], [1.0]]], dtype=D), r, SR, 0.05)
    assert torch.all(idx[0, 1] == 1.0)


@pytest.mark.parametrize("algorithm", ["stack", "pairs", "parallel", 1])
def test_algorithms_bound_every_operator_band(algorithm):
    r, c = fm_algorithm(algorithm, 6)
    freqs = torch.tensor([1.0, 2.0, 3.0, 0.5, 7.0, 1.5], dtype=D).reshape(1, 6, 1) * 800
    idx = clamp_indices(freqs, torch.full((1, 6, 1), 50.0, dtype=D), r, SR, 0.05)
    # recompute band edges from the clamped indices
    edge = [None] * 6
    for k in range(5, -1, -1):
        edge[k] = freqs[0, k, 0] + sum((idx[0, m, 0] + 1) * edge[m] for m in range(k + 1, 6) if r[k][m] and idx[0, m, 0] > 0)
        assert edge[k] <= 0.95 * 24000 + 1e-6
    assert (idx > 0).sum() >= 1  # something modulates (the bound is not met by zeroing everything)
    assert all(k in c for k in ([0, 2] if algorithm == 1 else [0]))


def test_streaming_equals_offline():
    synth = FM(sample_rate=SR, n_operators=4, algorithm="pairs", f0_hz=330.0)
    with torch.no_grad():
        synth.ratios.copy_(torch.tensor([1.0, 2.0, 1.5, 3.5]))
        synth.indices.copy_(torch.tensor([0.0, 2.0, 0.0, 1.2]))
    n = 4096
    with torch.no_grad():
        y = synth(n_samples=n)
        for block in (1, 7, 64, 4096):
            m = 700 if block == 1 else n
            stream = dspfx.Stream(synth)
            out = torch.cat([stream(n_samples=min(block, m - i)) for i in range(0, m, block)], dim=-1)
            assert (out - y[..., :m]).abs().max() < 1e-5, block


def test_gradcheck_levels_and_indices():
    synth = FM(sample_rate=8000, n_operators=3, algorithm="stack", f0_hz=300.0).double()
    ratios = torch.tensor([[1.0, 2.0, 0.5]], dtype=D)

    def render(levels, indices):
        return synth(n_samples=32, ratios=ratios, levels=levels, indices=indices)

    levels = torch.tensor([[[0.8, 0.1, 0.0], [0.5, 0.2, 0.3]]], dtype=D, requires_grad=True)
    indices = torch.tensor([[[0.2, 1.3, 0.7], [0.2, 0.9, 1.1]]], dtype=D, requires_grad=True)
    assert torch.autograd.gradcheck(render, (levels, indices))
    # f0 too (through phase and the clamp)
    f0 = torch.tensor([[300.0, 320.0]], dtype=D, requires_grad=True)
    assert torch.autograd.gradcheck(lambda f: synth(n_samples=32, f0_hz=f, ratios=ratios, indices=indices.detach()), (f0,))


def test_fit_recovers_levels_and_indices():
    torch.manual_seed(0)
    sr = 8000
    ratios = torch.tensor([[1.0, 2.0]])
    target_synth = FM(sample_rate=sr, n_operators=2, f0_hz=200.0)
    with torch.no_grad():
        target = target_synth(n_samples=sr // 8, ratios=ratios, levels=torch.tensor([[0.7, 0.0]]), indices=torch.tensor([[0.0, 1.6]]))
    synth = FM(sample_rate=sr, n_operators=2, f0_hz=200.0)
    with torch.no_grad():
        synth.levels.copy_(torch.tensor([0.3, 0.0]))
        synth.indices.copy_(torch.tensor([0.0, 0.8]))
    opt = torch.optim.Adam([synth.levels, synth.indices], lr=0.03)
    for _ in range(150):
        opt.zero_grad()
        loss = torch.mean((synth(n_samples=sr // 8, ratios=ratios) - target) ** 2)
        loss.backward()
        opt.step()
    assert abs(float(synth.levels.detach()[0]) - 0.7) < 0.01
    assert abs(float(synth.indices.detach()[1]) - 1.6) < 0.02


def test_defaults_spec_and_length():
    synth = dspfx.make("fm")
    assert synth.n_operators == 6 and synth.category == "synth"
    y = synth(f0_hz=torch.full((2, 5), 220.0))
    assert y.shape == (2, 1, 5 * 192)
    assert torch.isfinite(y).all()
    built = dspfx.build(dspfx.make("fm", n_operators=3, routing=[[0, 1, 1], [0, 0, 0], [0, 0, 0]], carriers=[0]).spec())
    assert built._routing == [[0, 1, 1], [0, 0, 0], [0, 0, 0]] and built._carriers == [0]


def test_errors():
    with pytest.raises(ValueError, match="n_operators"):
        FM(n_operators=7)
    with pytest.raises(ValueError, match="unknown algorithm"):
        FM(algorithm="ring")
    with pytest.raises(ValueError, match="n_operators=6"):
        FM(n_operators=4, algorithm=1)
    with pytest.raises(ValueError, match="j > i"):
        FM(n_operators=2, routing=[[0, 0], [1, 0]], carriers=[0])
    with pytest.raises(ValueError, match="carriers"):
        FM(n_operators=2, routing=[[0, 1], [0, 0]])
    with pytest.raises(ValueError, match="either"):
        FM(n_operators=2, algorithm="stack", routing=[[0, 1], [0, 0]], carriers=[0])
    with pytest.raises(ValueError, match="margin"):
        FM(margin=1.5)
    synth = FM(n_operators=2)
    with pytest.raises(ValueError, match="outside the knob"):
        synth(n_samples=10, f0_hz=-5.0)
    with pytest.raises(ValueError, match="NaN"):
        synth(n_samples=10, f0_hz=torch.tensor([float("nan")]))
    with pytest.raises(ValueError, match="last dimension"):
        synth(n_samples=10, ratios=torch.ones(1, 1, 3))
    with pytest.raises(ValueError, match="ratios must be > 0"):
        synth(n_samples=10, ratios=torch.tensor([[1.0, -2.0]]))
    with pytest.raises(ValueError, match="indices must be >= 0"):
        synth(n_samples=10, indices=torch.tensor([[0.0, -1.0]]))
