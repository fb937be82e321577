"""Output transformer: hysteresis loop (and its absence at 0), play operator, band limits,
gradients, streaming, edges, save/load."""

import numpy as np
import pytest
import scipy.signal
import torch

import dspfx
import dspfx.amps.transformer  # noqa: F401  (registers the unit until dspfx.amps imports it)
from dspfx.amps.transformer import OutputTransformer
from dspfx.functional.tube import hysteresis_core, play_operator

SR = 48000


def _loop_area(x, y):
    """Shoelace area enclosed by the closed curve (x, y) (1-D arrays, one period)."""
    x, y = np.asarray(x), np.asarray(y)
    return 0.5 * abs(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y))


def _slow_sine(amp, f0=25.0, periods=2):
    n = int(SR / f0) * periods
    t = torch.arange(n, dtype=torch.float64) / SR
    return (amp * torch.sin(2 * np.pi * f0 * t)).view(1, 1, -1), int(SR / f0)


def test_core_loop_opens_with_hysteresis_and_vanishes_at_zero():
    u, period = _slow_sine(2.0)
    areas = {}
    for h in (0.0, 0.5, 1.0):
        y, _ = hysteresis_core(u, h, 0.3)
        xs, ys = u[0, 0, -period:].numpy(), y[0, 0, -period:].numpy()
        areas[h] = _loop_area(xs, ys)
        if h > 0:
            # the rising and falling branches differ: at u = 0 the output is h*tanh(-r) going up
            # and h*tanh(+r) going down
            rising = ys[np.argmin(np.abs(xs[: period // 4]))]  # first quarter: rising through 0
            falling = ys[period // 2 + np.argmin(np.abs(xs[period // 4 : 3 * period // 4])) - period // 4]
            assert rising == pytest.approx(h * np.tanh(-0.3), abs=2e-3)
            assert falling == pytest.approx(h * np.tanh(0.3), abs=2e-3)
        else:
            assert torch.allclose(y, torch.tanh(u), atol=1e-15)
    assert areas[0.0] < 1e-12
    assert areas[0.5] > 0.1
    assert areas[1.0] == pytest.approx(2 * areas[0.5], rel=1e-9)  # the area is linear in h


def test_play_operator_matches_its_definition_and_streams():
    gen = torch.Generator().manual_seed(0)
    u = torch.randn(2, 1, 300, dtype=torch.float64, generator=gen).cumsum(-1) * 0.1
    r = 0.2
    p, state = play_operator(u, r)
    ref = np.empty(300)
    for b in range(2):
        q = 0.0
        for n, v in enumerate(u[b, 0].numpy()):
            q = min(max(q, v - r), v + r)
            ref[n] = q
        assert np.allclose(p[b, 0].numpy(), ref, atol=1e-14)
    parts, s = [], None
    for i in range(0, 300, 11):
        q, s = play_operator(u[..., i : i + 11], r, s)
        parts.append(q)
    assert torch.allclose(torch.cat(parts, -1), p, atol=1e-14) and torch.allclose(s, state)


def test_play_operator_gradcheck_with_state():
    gen = torch.Generator().manual_seed(1)
    u = torch.randn(1, 2, 40, dtype=torch.float64, generator=gen).requires_grad_()
    r = torch.tensor([[[0.3]]], dtype=torch.float64, requires_grad=True)
    jitter = 0.05 * torch.rand(1, 1, 40, generator=gen, dtype=torch.float64)
    r_t = (0.2 + jitter).requires_grad_()
    s0 = torch.tensor([[[0.1], [-0.2]]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda u, r, s: play_operator(u, r, s)[0], (u, r, s0))
    assert torch.autograd.gradcheck(lambda u, r, s: hysteresis_core(u, 0.4, r, s)[0], (u, r_t, s0))


def test_unit_loop_grows_with_hysteresis():
    # at 400 Hz the phase lead of the 5 Hz low cut and the lag of the high cut nearly cancel,
    # so with hysteresis 0 the unit's curve is almost single-valued
    x, period = _slow_sine(0.8, f0=400.0, periods=20)
    areas = []
    for h in (0.0, 0.3, 0.6):
        unit = OutputTransformer(SR, drive_db=6.0, hysteresis=h, width=0.3, low_hz=5.0, high_hz=22000.0).double()
        with torch.no_grad():
            y = unit(x)
        areas.append(_loop_area(x[0, 0, -period:].numpy(), y[0, 0, -period:].numpy()))
    # measured: 0.011, 0.067, 0.145
    assert areas[0] < areas[1] < areas[2]
    assert areas[2] > 8 * areas[0]


def test_band_limits_at_both_ends():
    unit = OutputTransformer(SR, drive_db=-24.0, hysteresis=0.0, low_hz=60.0, high_hz=8000.0).double()
    n = 1 << 14
    impulse = torch.zeros(1, 1, n, dtype=torch.float64)
    impulse[..., 0] = 1e-3  # small: the core is linear
    with torch.no_grad():
        h = unit(impulse)[0, 0].numpy() / 1e-3
    f = [60.0, 1000.0, 8000.0]
    _, resp = scipy.signal.freqz(h, worN=f, fs=SR)
    db = 20 * np.log10(np.abs(resp))
    assert db[1] == pytest.approx(0.0, abs=0.1)
    assert db[0] == pytest.approx(-3.0, abs=0.2) and db[2] == pytest.approx(-3.0, abs=0.3)


def test_gradcheck_time_varying():
    unit = OutputTransformer(SR, oversample=2).double()
    gen = torch.Generator().manual_seed(2)
    x = (0.5 * torch.randn(1, 1, 48, dtype=torch.float64, generator=gen)).requires_grad_()
    drive = torch.tensor([[3.0, 9.0]], dtype=torch.float64, requires_grad=True)
    hyst = torch.tensor([[0.3, 0.6, 0.5]], dtype=torch.float64, requires_grad=True)
    width = torch.tensor([0.2], dtype=torch.float64, requires_grad=True)
    low = torch.tensor([40.0], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x, d, h, w, lo: unit(x, drive_db=d, hysteresis=h, width=w, low_hz=lo),
        (x, drive, hyst, width, low), eps=1e-6, atol=1e-6,
    )
    y = unit(x.detach()).square().sum()
    grads = torch.autograd.grad(y, list(unit.raw_knobs.values()))
    assert all(torch.isfinite(g) and g != 0 for g in grads)


@pytest.mark.parametrize("block", [1, 7, 64, 4096])
@pytest.mark.parametrize("oversample", [1, 2])
def test_streaming_equals_offline(block, oversample):
    n = 200 if block == 1 else 800
    x = 0.8 * torch.randn(1, 2, n, generator=torch.Generator().manual_seed(3))
    unit = OutputTransformer(SR, oversample=oversample, drive_db=12.0, hysteresis=0.7, width=0.2)
    with torch.no_grad():
        ref = unit(x)
        stream = dspfx.Stream(unit, batch=1, channels=2)
        got = torch.cat([stream(x[..., i : i + block]) for i in range(0, n, block)], dim=-1)
    assert (got - ref).abs().max() < 1e-5


def test_every_edge_renders_and_round_trip(tmp_path):
    x = torch.randn(2, 1, 512, generator=torch.Generator().manual_seed(4))
    unit = OutputTransformer(44100)
    for edge in ("minimum", "maximum"):
        unit.set(**{k: getattr(knob, edge) for k, knob in unit.knob_specs.items()})
        assert torch.isfinite(unit(x)).all()
    unit = OutputTransformer(SR, oversample=4, drive_db=10.0, hysteresis=0.8, width=0.05, high_hz=9000.0)
    with torch.no_grad():
        ref = unit(x)
        assert torch.allclose(dspfx.build(unit.spec())(x), ref, atol=1e-6)
        dspfx.save(unit, tmp_path / "ot.safetensors")
        again = dspfx.load(tmp_path / "ot.safetensors")
        assert isinstance(again, OutputTransformer) and again.oversample == 4
        assert again.knobs() == pytest.approx(unit.knobs())
        assert torch.allclose(again(x), ref, atol=1e-6)
    with pytest.raises(ValueError, match="oversample"):
        OutputTransformer(SR, oversample=5)
