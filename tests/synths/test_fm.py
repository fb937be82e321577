"""Tests of the FM synth (dspfx.synths.fm), dspfx.functional.fm and its operator feedback (dspfx.functional.fm_feedback)."""

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


# -- operator feedback (DX7) ------------------------------------------------------------------

from dspfx.functional.fm import feedback_harmonics, max_feedback, operator_feedback  # noqa: E402


def _reference_feedback(arg, beta, hist):
    """Plain float64 numpy loop of the DX7 recursion y[t] = sin(arg[t] + beta[t] (y[t-1] + y[t-2]) / 2)."""
    y1, y2 = float(hist[0]), float(hist[1])
    out = np.empty(len(arg))
    for t in range(len(arg)):
        out[t] = np.sin(arg[t] + beta[t] * (y1 + y2) / 2)
        y2, y1 = y1, out[t]
    return out


def _feedback_operator(beta, f0, n=SR, margin=0.05, sr=SR):
    """One carrier (operator 0) with self-feedback beta, rendered by the unit."""
    synth = FM(sample_rate=sr, n_operators=2, algorithm="parallel", f0_hz=f0, margin=margin, feedback_operators=[0]).double()
    y = synth(n_samples=n, levels=torch.tensor([[1.0, 0.0]], dtype=D), feedback=torch.tensor([[beta, 0.0]], dtype=D))
    return y[0, 0].detach().numpy()


def test_feedback_loop_matches_a_numpy_reference():
    rng = np.random.default_rng(0)
    n = 3000
    arg = np.cumsum(np.full(n, 2 * np.pi * 220 / SR)) + 0.5 * np.sin(np.arange(n) / 50)
    beta = np.linspace(0.2, 1.4, n)
    hist = rng.standard_normal(2) * 0.5
    y, new = operator_feedback(torch.tensor(arg), torch.tensor(beta), torch.tensor(hist))
    ref = _reference_feedback(arg, beta, hist)
    assert np.abs(y.numpy() - ref).max() < 1e-6
    assert torch.equal(new, y[[-1, -2]])
    # the unit renders the same recursion from its own phase
    y_unit = _feedback_operator(0.9, 220.0, n=n)
    arg_unit = 2 * np.pi * ((np.arange(n) * 220.0 / SR) % 1.0)
    assert np.abs(y_unit - _reference_feedback(arg_unit, np.full(n, 0.9), [0.0, 0.0])).max() < 1e-6


@pytest.mark.parametrize("beta", [0.8, 0.95, 1.0])
def test_feedback_gives_the_sawtooth_like_spectrum(beta):
    # f0 = 100 Hz: 180+ harmonics fit below the limit, so beta is not clamped. The harmonic
    # levels fall monotonically and follow the continuous-time (Kepler) series
    # a_n = 2 J_n(n beta) / (n beta) within 1 dB over the first 6 harmonics.
    y = _feedback_operator(beta, 100.0)
    mag = np.abs(np.fft.rfft(y)) * 2 / len(y)
    h = mag[100 * np.arange(1, 31)]
    assert np.all(np.diff(h) < 0)
    assert h[9] > 0.01 * h[0]  # a rich spectrum: harmonic 10 within -40 dB
    n = np.arange(1, 7)
    kepler = 2 * scipy.special.jv(n, n * beta) / (n * beta)
    assert np.abs(20 * np.log10(h[:6] / kepler)).max() < 1.0


def test_feedback_zero_is_exactly_the_plain_operator():
    # the top operator runs through the feedback loop with beta = 0 (a feedback that wants a
    # gradient forces the loop): bit-identical to the operators without feedback
    kw = dict(sample_rate=SR, n_operators=4, algorithm="stack", f0_hz=330.0)
    ctl = dict(ratios=torch.tensor([[1.0, 2.0, 1.5, 3.5]]), indices=torch.tensor([[0.0, 2.0, 1.0, 1.2]]))
    f0 = torch.tensor([[300.0, 2000.0, 150.0]])
    for dtype in (torch.float32, D):
        looped = FM(**kw).to(dtype)
        plain = FM(feedback_operators=[], **kw).to(dtype)
        assert looped._feedback_ops == [3] and plain._feedback_ops == []
        zero = torch.zeros(1, 4, dtype=dtype, requires_grad=True)
        y_loop = looped(n_samples=2000, f0_hz=f0, feedback=zero, **ctl)
        assert y_loop.requires_grad  # the loop ran (a gradient w.r.t. beta exists at 0)
        y_default = looped(n_samples=2000, f0_hz=f0, **ctl)  # the learnable default, 0
        with torch.no_grad():
            y_plain = plain(n_samples=2000, f0_hz=f0, **ctl)
            y_fast = looped(n_samples=2000, f0_hz=f0, **ctl)  # no gradient wanted: loop skipped
        assert torch.equal(y_loop.detach(), y_plain)
        assert torch.equal(y_default.detach(), y_plain) and torch.equal(y_fast, y_plain)
        grad = torch.autograd.grad(y_loop.sum(), zero)[0]
        assert grad[0, 3] != 0 and torch.all(grad[0, :3] == 0)


def test_feedback_history_is_carried_through_silent_blocks():
    # a block with beta = 0 rendered without the loop still hands on the operator's last outputs
    synth = FM(sample_rate=SR, n_operators=2, algorithm="stack", f0_hz=220.0).double()
    ctl = dict(ratios=torch.tensor([[1.0, 2.0]], dtype=D), indices=torch.tensor([[0.0, 1.0]], dtype=D))
    on = torch.tensor([[0.0, 0.9]], dtype=D)
    outs = []
    for force_loop in (False, True):
        stream = dspfx.Stream(synth)
        off = torch.zeros(1, 2, dtype=D, requires_grad=force_loop)
        a = stream(n_samples=101, feedback=off, **ctl)
        b = stream(n_samples=300, feedback=on, **ctl)
        outs.append(torch.cat([a, b], -1).detach())
    assert (outs[0] - outs[1]).abs().max() < 1e-12
    assert (outs[0][..., 101:] - outs[0][..., :101].mean()).abs().max() > 0.1  # not trivially silent


def test_feedback_streaming_equals_offline():
    synth = FM(sample_rate=SR, n_operators=3, algorithm="stack", f0_hz=220.0)
    ctl = dict(ratios=torch.tensor([[1.0, 2.0, 3.0]]), indices=torch.tensor([[0.0, 1.0, 0.8]]),
               feedback=torch.tensor([[0.0, 0.0, 0.9]]))
    n = 4096
    with torch.no_grad():
        y = synth(n_samples=n, **ctl)
        for block in (1, 7, 64, 4096):
            m = 300 if block == 1 else n
            stream = dspfx.Stream(synth)
            out = torch.cat([stream(n_samples=min(block, m - i), **ctl) for i in range(0, m, block)], dim=-1)
            assert (out - y[..., :m]).abs().max() < 1e-5, block


def test_feedback_gradcheck_phase_beta_and_state():
    torch.manual_seed(0)
    arg = torch.randn(2, 24, dtype=D, requires_grad=True)
    beta = (torch.rand(2, 24, dtype=D) * 1.5).requires_grad_()
    hist = torch.randn(2, 2, dtype=D, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b, h: operator_feedback(a, b, h), (arg, beta, hist))
    for n in (1, 2):  # the shortest blocks: history reached through both taps
        assert torch.autograd.gradcheck(lambda a, b, h: operator_feedback(a, b, h), (arg[:, :n], beta[:, :n], hist))
    # through the unit: f0 (frequency -> phase), the feedback control, the carried state
    synth = FM(sample_rate=8000, n_operators=2, algorithm="stack", f0_hz=300.0).double()
    ratios = torch.tensor([[1.0, 1.5]], dtype=D)
    f0 = torch.tensor([[300.0, 330.0]], dtype=D, requires_grad=True)
    # operator 1's feedback, 2 frames, below its bound here (~0.09 .. 0.13: beyond it the clamp's
    # returning gradient is a straight-through estimate, not the derivative, see test_returning_clamp_*)
    fb = torch.tensor([[0.04, 0.07]], dtype=D, requires_grad=True)

    def render(f, b):
        return synth(n_samples=40, f0_hz=f, ratios=ratios, feedback=torch.stack([torch.zeros_like(b), b], -1))

    assert torch.autograd.gradcheck(render, (f0, fb))
    phase, _ = synth.init_state(1, 1)
    state = torch.tensor([[[0.3, -0.2]]], dtype=D, requires_grad=True)
    ctl = dict(ratios=ratios, feedback=torch.tensor([[0.0, 0.9]], dtype=D))
    assert torch.autograd.gradcheck(lambda s: synth.render_block(None, ctl, (phase, s), n_samples=40)[0], (state,))


def test_feedback_bound_keeps_the_spectrum_below_nyquist():
    # K(beta): beyond harmonic K the Kepler series is 60 dB below the fundamental
    betas = torch.tensor([0.0, 0.3, 0.5, 0.9, 1.0], dtype=D)
    K = feedback_harmonics(betas)
    assert K[0] == 1.0 and torch.all(torch.diff(K) > 0)
    for b, k in zip(betas[1:].tolist(), K[1:].tolist()):
        nu = np.array([k * 1.05])
        tail = abs(2 * scipy.special.jv(nu, nu * b) / (nu * b))[0] / abs(2 * scipy.special.jv(1, b) / b)
        assert 20 * np.log10(tail) < -60
    assert torch.allclose(max_feedback(K), betas, atol=1e-9)  # inverse
    # requested beta = 1 at high f0: clamped, the aliases (off the f0 grid, 48 kHz is no multiple of
    # f0) stay 60 dB below; the unclamped loop aliases above that
    def off_grid_db(y, f):
        p = np.abs(np.fft.rfft(y[SR // 4:])) ** 2  # steady state, 1 s: 1 Hz bins
        k = np.arange(len(p))
        return 10 * np.log10(p[k % f != 0].sum() / p.sum())

    for f0 in (2300, 4100, 7100):
        n = SR + SR // 4
        assert off_grid_db(_feedback_operator(1.0, float(f0), n=n), f0) < -60
    t = torch.arange(SR + SR // 4, dtype=D) * 7100 / SR
    raw, _ = operator_feedback(2 * np.pi * (t - torch.floor(t)), torch.tensor(1.0, dtype=D), torch.zeros(2, dtype=D))
    assert off_grid_db(raw.numpy(), 7100) > -40


def test_feedback_bound_in_a_stack_keeps_every_band_within_the_limit():
    # a fed-back modulator: its band K(beta) f widens the Carson edge seen by the carrier
    freqs = torch.tensor([1000.0, 3000.0], dtype=D).reshape(1, 2, 1)
    r, _ = fm_algorithm("stack", 2)
    from dspfx.functional.fm import clamp_indices_and_feedback
    idx, fb = clamp_indices_and_feedback(freqs, torch.tensor([[[0.0], [5.0]]], dtype=D), r, SR, 0.05,
                                         torch.tensor([[[0.0], [1.0]]], dtype=D), [1])
    limit = 0.95 * 24000
    e1 = feedback_harmonics(fb[0, 1, 0]) * 3000
    assert 0 < fb[0, 1, 0] < 1 and idx[0, 1, 0] > 0  # both kept, both reduced
    assert e1 <= limit + 1e-6
    assert 1000 + (idx[0, 1, 0] + 1) * e1 <= limit + 1e-6
    # the feedback leaves room for the requested index: I = 5 fits at the clamped beta
    assert abs(float(idx[0, 1, 0]) - 5.0) < 1e-9


def test_feedback_fit_recovers_beta():
    # f0 = 100 Hz at 8 kHz: the bound allows beta up to ~0.87, so the target's 0.7 is not clamped
    sr = 8000
    target = torch.tensor(_feedback_operator(0.7, 100.0, n=sr // 8, sr=sr), dtype=torch.float32)
    synth = FM(sample_rate=sr, n_operators=2, algorithm="parallel", f0_hz=100.0, feedback_operators=[0])
    with torch.no_grad():
        synth.levels.copy_(torch.tensor([1.0, 0.0]))
        synth.feedback.copy_(torch.tensor([0.2, 0.0]))
    opt = torch.optim.Adam([synth.feedback], lr=0.02)
    for _ in range(150):
        opt.zero_grad()
        loss = torch.mean((synth(n_samples=sr // 8)[0, 0] - target) ** 2)
        loss.backward()
        opt.step()
    assert abs(float(synth.feedback.detach()[0]) - 0.7) < 0.01


def test_feedback_errors():
    with pytest.raises(ValueError, match="feedback_operators"):
        FM(n_operators=2, feedback_operators=[2])
    with pytest.raises(ValueError, match="feedback_operators"):
        FM(n_operators=2, feedback_operators=[1, 1])
    with pytest.raises(TypeError, match="feedback_operators"):
        FM(n_operators=2, feedback_operators=["top"])
    synth = FM(n_operators=2)  # feedback on operator 1 only
    with pytest.raises(ValueError, match="feedback must be >= 0"):
        synth(n_samples=10, feedback=torch.tensor([[0.0, -0.5]]))
    with pytest.raises(ValueError, match="non-zero on operators"):
        synth(n_samples=10, feedback=torch.tensor([[0.5, 0.0]]))
    with pytest.raises(ValueError, match="NaN"):
        synth(n_samples=10, feedback=torch.tensor([[0.0, float("nan")]]))
    with pytest.raises(ValueError, match="history"):
        operator_feedback(torch.zeros(5), torch.zeros(5), torch.zeros(3))
    assert FM(n_operators=2, routing=[[0, 1], [0, 0]], carriers=[0])._feedback_ops == []
    assert dspfx.build(FM(n_operators=3, feedback_operators=[0, 2]).spec())._feedback_ops == [0, 2]


# --- zero feedback: the vectorised path; the returning clamp (session 3) ------------------------

from dspfx.functional import fm_feedback as fm_functional  # noqa: E402
from dspfx.functional.fm import returning_clamp  # noqa: E402


def test_zero_feedback_skips_the_loop_with_the_same_output_and_gradients(monkeypatch):
    torch.manual_seed(1)
    arg = torch.randn(2, 50, dtype=D, requires_grad=True)
    beta = torch.zeros(2, 50, dtype=D, requires_grad=True)
    hist = torch.randn(2, 2, dtype=D, requires_grad=True)
    g = torch.randn(2, 50, dtype=D)
    # the loop's output and gradients at beta = 0 (the compiled recursion, called directly)
    fb = fm_functional._FeedbackPhase.apply(arg, beta, hist)
    y_loop = torch.sin(arg + fb)
    grads_loop = torch.autograd.grad((y_loop * g).sum(), (arg, beta, hist))
    calls = []
    monkeypatch.setattr(fm_functional._FeedbackPhase, "apply", lambda *a: calls.append(1))
    y, new_hist = operator_feedback(arg, beta, hist)
    grads = torch.autograd.grad((y * g).sum(), (arg, beta, hist))
    assert not calls  # the vectorised path
    assert torch.equal(y, y_loop) and torch.equal(new_hist, y_loop[:, [-1, -2]])
    for a, b in zip(grads, grads_loop):
        assert torch.allclose(a, b, atol=1e-13)
    assert grads[1].abs().sum() > 0  # d y / d beta at 0 is not zero
    # the unit's trainable default (feedback 0, requires grad): the same render as without gradients
    synth = FM(sample_rate=8000, n_operators=2, f0_hz=300.0).double()
    y_grad = synth(n_samples=400)
    y_grad.square().sum().backward()
    assert not calls and synth.feedback.grad is not None
    with torch.no_grad():
        assert torch.equal(synth(n_samples=400), y_grad.detach())


def test_zero_feedback_gradcheck_against_the_loop():
    # gradcheck perturbs beta away from 0, so its numerical side runs the compiled loop
    torch.manual_seed(2)
    arg = torch.randn(1, 20, dtype=D, requires_grad=True)
    beta = torch.zeros(1, 20, dtype=D, requires_grad=True)
    hist = torch.randn(1, 2, dtype=D, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b, h: operator_feedback(a, b, h), (arg, beta, hist))


def test_returning_clamp_passes_the_gradient_back_into_range_only():
    x = torch.tensor([-1.0, 0.5, 3.0], dtype=D, requires_grad=True)
    high = torch.tensor([2.0, 2.0, 2.0], dtype=D, requires_grad=True)
    y = returning_clamp(x, low=0.0, high=high)
    assert torch.equal(y, torch.clamp(x, 0.0, 2.0))
    # gradient +1 everywhere: descent lowers x, i.e. back into range for x = 3 (above), away for -1
    gx, gh = torch.autograd.grad(y.sum(), (x, high))
    assert gx.tolist() == [0.0, 1.0, 1.0] and gh.tolist() == [0.0, 0.0, 1.0]
    # gradient -1: descent raises x, back into range for x = -1 (below), away for 3
    gx, gh = torch.autograd.grad(-returning_clamp(x, low=0.0, high=high).sum(), (x, high))
    assert gx.tolist() == [-1.0, -1.0, 0.0] and gh.tolist() == [0.0, 0.0, -1.0]
    # a plain clamp passes nothing beyond its bounds (what the returning clamp is for)
    assert torch.autograd.grad(torch.clamp(x, 0.0, 2.0).sum(), x)[0].tolist() == [0.0, 1.0, 0.0]


def test_index_clamp_gradient_points_back_into_range():
    # operator 1 (2 kHz) modulates operator 0 (1 kHz) at 8 kHz: Carson's bound is I <= 0.4
    freqs = torch.tensor([[[1000.0], [2000.0]]], dtype=D)
    r, _ = fm_algorithm("stack", 2)
    bound = (0.95 * 4000 - 1000) / 2000 - 1
    for requested, weight, passes in [(1.5, 1.0, True), (1.5, -1.0, False), (0.2, -1.0, True)]:
        idx = torch.tensor([[[0.0], [requested]]], dtype=D, requires_grad=True)
        out = clamp_indices(freqs, idx, r, 8000, 0.05)
        assert float(out.detach()[0, 1, 0]) == pytest.approx(min(requested, bound))
        (grad,) = torch.autograd.grad(weight * out[0, 1, 0], idx)
        assert float(grad[0, 1, 0]) == (weight if passes else 0.0)


def test_fits_that_start_beyond_the_bounds_recover():
    sr = 8000
    # index: target 0.3 below Carson's bound 0.4; the fit starts at 1.5, clamped to the bound
    ratios = torch.tensor([[1.0, 2.0]])
    levels = torch.tensor([[0.7, 0.0]])
    with torch.no_grad():
        target = FM(sample_rate=sr, n_operators=2, f0_hz=1000.0)(
            n_samples=sr // 8, ratios=ratios, levels=levels, indices=torch.tensor([[0.0, 0.3]]))
    synth = FM(sample_rate=sr, n_operators=2, f0_hz=1000.0)
    with torch.no_grad():
        synth.indices.copy_(torch.tensor([0.0, 1.5]))
    opt = torch.optim.Adam([synth.indices], lr=0.03)
    for _ in range(120):
        opt.zero_grad()
        loss = torch.mean((synth(n_samples=sr // 8, ratios=ratios, levels=levels) - target) ** 2)
        loss.backward()
        opt.step()
    assert abs(float(synth.indices.detach()[1]) - 0.3) < 0.01
    # feedback: target 0.7 (bound ~0.87 at f0 = 100 Hz); fits from above the bound and from below 0
    target = torch.tensor(_feedback_operator(0.7, 100.0, n=sr // 8, sr=sr), dtype=torch.float32)
    for start in (1.4, -0.3):
        synth = FM(sample_rate=sr, n_operators=2, algorithm="parallel", f0_hz=100.0, feedback_operators=[0])
        with torch.no_grad():
            synth.levels.copy_(torch.tensor([1.0, 0.0]))
            synth.feedback.copy_(torch.tensor([start, 0.0]))
        opt = torch.optim.Adam([synth.feedback], lr=0.02)
        for _ in range(150):
            opt.zero_grad()
            loss = torch.mean((synth(n_samples=sr // 8)[0, 0] - target) ** 2)
            loss.backward()
            opt.step()
        assert abs(float(synth.feedback.detach()[0]) - 0.7) < 0.01, start
