"""Tests of dspfx.functional.oscillators against direct float64 (numpy) formulas."""

from __future__ import annotations


import numpy as np
import pytest
import torch

from dspfx.functional.oscillators import (
    accumulate_phase,
    harmonic_ratios,
    harmonic_synthesis,
    normalize_distribution,
    remove_above_nyquist,
    sinusoidal_synthesis,
    wrap_phase,
)

SR = 16000


def _exclusive_phase(freqs: np.ndarray, sr: float, start: np.ndarray | float = 0.0) -> np.ndarray:
    """Phase in cycles along the last axis: start + sum_{j<i} f_j / sr (unwrapped, float64)."""
    inc = freqs / sr
    return start + np.cumsum(inc, axis=-1) - inc


def test_accumulate_phase_matches_float64_cumsum_and_splits_into_blocks():
    rng = np.random.default_rng(0)
    f = torch.tensor(rng.uniform(50, 7000, size=(2, 3, 1000)))
    phase, final = accumulate_phase(f, SR)
    ref = _exclusive_phase(f.numpy(), SR)
    d = np.abs(phase.numpy() - (ref - np.floor(ref)))
    assert np.minimum(d, 1 - d).max() < 1e-12
    assert phase.min() >= 0 and phase.max() < 1
    # two blocks carried through the final phase equal one
    p1, s1 = accumulate_phase(f[..., :377], SR)
    p2, s2 = accumulate_phase(f[..., 377:], SR, s1)
    assert torch.allclose(torch.cat([p1, p2], -1), phase, atol=1e-12)
    assert torch.allclose(s2, final, atol=1e-12)
    # float32 frequencies are accumulated in float64
    p32, _ = accumulate_phase(f.float(), SR)
    assert p32.dtype == torch.float64


def test_wrap_ratios_nyquist_and_normalisation():
    assert torch.allclose(wrap_phase(torch.tensor([-0.25, 0.0, 1.5, 3.0])), torch.tensor([0.75, 0.0, 0.5, 0.0]))
    k = np.arange(1, 11)
    assert np.allclose(harmonic_ratios(10, 1e-3, dtype=torch.float64).numpy(), k * np.sqrt(1 + 1e-3 * k**2))
    assert torch.equal(harmonic_ratios(5, dtype=torch.float64), torch.arange(1.0, 6.0, dtype=torch.float64))
    amps = torch.ones(5)
    freqs = torch.tensor([100.0, 7999.0, 8000.0, 8001.0, 0.0])
    assert torch.equal(remove_above_nyquist(amps, freqs, SR), torch.tensor([1.0, 1.0, 0.0, 0.0, 1.0]))
    d = normalize_distribution(torch.tensor([[1.0, 3.0], [0.0, 0.0]]))
    assert torch.equal(d, torch.tensor([[0.25, 0.75], [0.0, 0.0]]))  # all-zero stays silent, no NaN


def _harmonic_reference(f0, amp, dist, sr, B=0.0):
    """Direct float64 formula: amp * sum_k w_k sin(2 pi m_k phase_1), w masked at Nyquist, renormalised."""
    K = dist.shape[-1]
    k = np.arange(1, K + 1)
    m = k * np.sqrt(1 + B * k**2)
    phase = _exclusive_phase(f0, sr)  # (b, n)
    w = dist * (f0[..., None] * m < sr / 2)
    w = w / np.maximum(w.sum(-1, keepdims=True), 1e-30)
    return amp * (w * np.sin(2 * np.pi * phase[..., None] * m)).sum(-1)


@pytest.mark.parametrize("B", [0.0, 2e-4])
def test_harmonic_synthesis_matches_direct_formula(B):
    rng = np.random.default_rng(1)
    n, K = 3000, 30
    f0 = np.linspace(150, 700, n)[None] * np.ones((2, 1))  # crosses Nyquist for the top harmonics
    amp = rng.uniform(0.2, 1, size=(2, n))
    dist = rng.uniform(0, 1, size=(2, n, K))
    ref = _harmonic_reference(f0, amp, dist, SR, B)
    y, _ = harmonic_synthesis(torch.tensor(f0), torch.tensor(amp), torch.tensor(dist), SR, inharmonicity=B)
    assert np.abs(y.numpy() - ref).max() < 1e-9
    # the same in blocks, carrying the phase
    state = torch.zeros(2, K if B else 1, dtype=torch.float64)
    parts = []
    for lo, hi in [(0, 1), (1, 1000), (1000, 3000)]:
        part, state = harmonic_synthesis(
            torch.tensor(f0[:, lo:hi]), torch.tensor(amp[:, lo:hi]), torch.tensor(dist[:, lo:hi]), SR,
            initial_phase=state, inharmonicity=B,
        )
        parts.append(part)
    assert np.abs(torch.cat(parts, -1).numpy() - ref).max() < 1e-9


def test_harmonic_synthesis_constant_path_equals_per_sample_path():
    n, K = 500, 12
    f0 = torch.full((1, n), 1100.0, dtype=torch.float64)  # harmonics 8.. above Nyquist at 16 kHz
    dist = torch.rand(1, 1, K, dtype=torch.float64)
    amp = torch.full((1, n), 0.7, dtype=torch.float64)
    y_view, _ = harmonic_synthesis(f0[:, :1].expand(1, n), amp, dist.expand(1, n, K), SR)
    y_full, _ = harmonic_synthesis(f0.clone(), amp, dist.expand(1, n, K).clone(), SR)
    assert torch.allclose(y_view, y_full, atol=1e-12)
    ref = _harmonic_reference(f0.numpy(), amp.numpy(), dist.expand(1, n, K).numpy(), SR)
    assert np.abs(y_view.numpy() - ref).max() < 1e-9


def test_sinusoidal_synthesis_matches_direct_formula_and_mutes_above_nyquist():
    rng = np.random.default_rng(2)
    n, K = 2000, 5
    freqs = rng.uniform(100, 7000, size=(1, n, K))
    freqs[..., 4] = np.linspace(7000, 9000, n)  # crosses Nyquist half way
    amps = rng.uniform(0, 1, size=(1, n, K))
    phase = _exclusive_phase(np.moveaxis(freqs, 1, -1), SR)  # (1, K, n)
    ref = (amps * (freqs < SR / 2) * np.sin(2 * np.pi * np.moveaxis(phase, -1, 1))).sum(-1)
    y, final = sinusoidal_synthesis(torch.tensor(freqs), torch.tensor(amps), SR)
    assert np.abs(y.numpy() - ref).max() < 1e-9
    assert final.shape == (1, K)


def test_gradcheck_harmonic_and_sinusoidal_synthesis():
    n, K = 64, 6
    f0 = torch.linspace(300, 500, n, dtype=torch.float64)[None].requires_grad_()
    amp = torch.linspace(0.2, 0.9, n, dtype=torch.float64)[None].requires_grad_()
    dist = torch.rand(1, n, K, dtype=torch.float64).add(0.1).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b, c: harmonic_synthesis(a, b, c, SR)[0], (f0, amp, dist))
    assert torch.autograd.gradcheck(
        lambda a, b, c: harmonic_synthesis(a, b, c, SR, inharmonicity=1e-3)[0], (f0, amp, dist)
    )
    freqs = torch.rand(1, n, K, dtype=torch.float64).mul(3000).add(100).requires_grad_()
    amps = torch.rand(1, n, K, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: sinusoidal_synthesis(a, b, SR)[0], (freqs, amps))


# --- the compiled harmonic bank (frames interpolated inside, numba forward + adjoint) ------------

from dspfx.functional import oscillators  # noqa: E402
from dspfx.functional.control import upsample_control  # noqa: E402


@pytest.mark.parametrize("dist_batch, f0_batch", [(2, 2), (1, 2), (2, 1)])
def test_frames_are_interpolated_like_upsample_control(dist_batch, f0_batch, mode="causal"):
    rng = np.random.default_rng(3)
    n, K, frames = 700, 24, 9
    f0 = torch.tensor(np.linspace(200, 900, n)[None] * rng.uniform(0.8, 1.2, size=(f0_batch, 1)))
    amp = torch.tensor(rng.uniform(0.2, 1, size=(2, n)))
    dist = torch.tensor(rng.uniform(0, 1, size=(dist_batch, frames, K)))
    state = torch.tensor([[0.25], [0.6]], dtype=torch.float64)
    y, final = harmonic_synthesis(f0, amp, dist, SR, initial_phase=state)
    y_up, final_up = harmonic_synthesis(f0, amp, upsample_control(dist, n, mode="causal"), SR, initial_phase=state)
    assert y.shape == (2, n) and torch.equal(final, final_up)
    assert (y - y_up).abs().max() < 1e-12
    # against the direct formula (float64), with the start phase
    phase = state.numpy() + _exclusive_phase(f0.numpy() + 0 * amp.numpy(), SR)
    w = upsample_control(dist, n, mode="causal").numpy() * (f0.numpy()[..., None] * np.arange(1, K + 1) < SR / 2)
    w = w / np.maximum(w.sum(-1, keepdims=True), 1e-30)
    direct = amp.numpy() * (w * np.sin(2 * np.pi * phase[..., None] * np.arange(1, K + 1))).sum(-1)
    assert np.abs(y.numpy() - direct).max() < 1e-9


def test_compiled_bank_equals_the_torch_path_and_gradients(monkeypatch):
    torch.manual_seed(4)
    n, K = 300, 40
    f0 = torch.linspace(250, 1200, n, dtype=torch.float64)[None].repeat(2, 1).requires_grad_()
    amp = torch.rand(2, n, dtype=torch.float64).add(0.1).requires_grad_()
    # frames at a control rate, and per sample (the DDSP model's audio-rate distribution)
    for frames, normalize in ((6, True), (6, False), (n, True)):
        dist = torch.rand(2, frames, K, dtype=torch.float64).requires_grad_()
        y = harmonic_synthesis(f0, amp, dist, SR, normalize=normalize)[0]
        grads = torch.autograd.grad(y.square().sum(), (f0, amp, dist))
        monkeypatch.setattr(oscillators, "_COMPILED_BANK", False)
        y_torch = harmonic_synthesis(f0, amp, dist, SR, normalize=normalize)[0]
        grads_torch = torch.autograd.grad(y_torch.square().sum(), (f0, amp, dist))
        monkeypatch.setattr(oscillators, "_COMPILED_BANK", True)
        assert (y - y_torch).abs().max() < 1e-10
        for a, b in zip(grads, grads_torch):
            assert (a - b).abs().max() < 1e-8 * max(1.0, float(b.abs().max()))


def test_gradcheck_compiled_bank_with_frames_and_constant_distribution():
    n, K = 48, 7
    f0 = torch.linspace(900, 2600, n, dtype=torch.float64)[None].requires_grad_()  # crosses Nyquist for k >= 4
    amp = torch.linspace(0.3, 0.8, n, dtype=torch.float64)[None].requires_grad_()
    frames = torch.rand(1, 4, K, dtype=torch.float64).add(0.1).requires_grad_()
    const = torch.rand(2, 1, K, dtype=torch.float64).add(0.1).requires_grad_()
    state = torch.tensor([[0.1], [0.7]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b, c: harmonic_synthesis(a, b, c, SR)[0], (f0, amp, frames))
    per_sample = torch.rand(1, n, K, dtype=torch.float64).add(0.1).requires_grad_()  # the masked-sum path
    assert torch.autograd.gradcheck(lambda a, c: harmonic_synthesis(a, amp.detach(), c, SR)[0], (f0, per_sample))
    assert torch.autograd.gradcheck(
        lambda a, c, s: harmonic_synthesis(a, amp.detach(), c, SR, initial_phase=s, normalize=False)[0],
        (f0, const, state),
    )


def test_compiled_bank_keeps_harmonic_100_accurate_over_60_s_at_48k():
    # only harmonic 100 (at 19.2 .. 21.6 kHz, below Nyquist): its phase stays within 1e-3 rad of a
    # float64 reference after 60 s (the harmonic's phase is 100x the fundamental's)
    sr, n, K = 48000, 48000 * 60, 100
    f0 = torch.linspace(192.0, 216.0, 61, dtype=torch.float32).view(1, 61, 1)
    f0 = upsample_control(f0, n, mode="causal")[..., 0]  # (1, n) float32, as the unit gets it
    dist = torch.zeros(1, 1, K)
    dist[..., -1] = 1.0
    y, _ = harmonic_synthesis(f0, torch.ones(1, 1), dist, sr)
    phase = torch.cumsum(f0[0].double() / sr, 0) - f0[0].double() / sr
    ref = torch.sin(2 * np.pi * torch.frac(100 * phase))
    err = (y[0].double() - ref).abs().max()  # |sin a - sin b| <= |a - b|: a bound on the phase error
    assert y.dtype == torch.float32 and float(err) < 1e-3


def test_compiled_sinusoid_bank_equals_the_torch_path_with_gradients(monkeypatch):
    torch.manual_seed(8)
    n, K = 400, 5
    freqs = (torch.rand(2, n, K, dtype=torch.float64) * 9000 + 100).requires_grad_()  # some above Nyquist
    amps = torch.rand(1, n, K, dtype=torch.float64).requires_grad_()
    start = torch.rand(2, K, dtype=torch.float64).requires_grad_()
    outs = []
    for compiled in (True, False):
        monkeypatch.setattr(oscillators, "_COMPILED_BANK", compiled)
        y, final = sinusoidal_synthesis(freqs, amps, SR, initial_phase=start)
        outs.append((y, final, *torch.autograd.grad(y.square().sum() + final.sum(), (freqs, amps, start))))
    for a, b in zip(*outs):
        assert (a - b).abs().max() < 1e-9 * max(1.0, float(b.detach().abs().max()))
    monkeypatch.setattr(oscillators, "_COMPILED_BANK", True)
    short = [t.detach()[:, :40].clone().requires_grad_() for t in (freqs, amps)]
    assert torch.autograd.gradcheck(
        lambda f, a, s: sinusoidal_synthesis(f, a, SR, initial_phase=s)[0], (*short, start)
    )
