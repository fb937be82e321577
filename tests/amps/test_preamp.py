"""Preamp: even harmonics from the bias, symmetry at bias 0, oversampling, gradients,
streaming, edges, save/load, errors."""

import numpy as np
import pytest
import torch

import dspfx
import dspfx.amps.preamp  # noqa: F401  (registers the unit until dspfx.amps imports it)
from dspfx.amps.preamp import Preamp
from dspfx.functional.tube import triode_curve

SR = 48000


def _harmonics_db(y, f0=1000.0, n_fft=4800, count=5):
    """Levels of harmonics 1..count relative to the fundamental (dB), last n_fft samples."""
    seg = y[0, 0, -n_fft:].detach().numpy()  # whole periods: exact bins
    mag = np.abs(np.fft.rfft(seg))
    k0 = int(round(f0 * n_fft / SR))
    levels = np.array([mag[k0 * h] for h in range(1, count + 1)])
    return 20 * np.log10(np.maximum(levels, 1e-300) / levels[0])


def _sine(amp, n=9600, f0=1000.0):
    t = torch.arange(n, dtype=torch.float64) / SR
    return (amp * torch.sin(2 * np.pi * f0 * t)).view(1, 1, -1)


def _stage(**knobs):
    base = dict(stage1_gain_db=12.0, stage1_hp_hz=20.0, stage1_lp_hz=20000.0, stage1_asymmetry=0.0)
    base.update(knobs)
    return Preamp(SR, n_stages=1, **base).double()


def test_biased_stage_makes_even_harmonics_and_bias_zero_none():
    x = _sine(0.5)
    with torch.no_grad():
        biased = _harmonics_db(_stage(stage1_bias=0.3)(x))
        symmetric = _harmonics_db(_stage(stage1_bias=0.0)(x))
        asym = _harmonics_db(_stage(stage1_bias=0.0, stage1_asymmetry=1.0)(x))
    assert biased[1] > -40.0 and asym[1] > -40.0  # 2nd harmonic
    assert symmetric[1] < -80.0 and symmetric[3] < -80.0  # 2nd, 4th
    assert symmetric[2] > -40.0  # still distorting: odd harmonics


def test_even_harmonics_move_with_level():
    unit = _stage(stage1_bias=0.3)
    with torch.no_grad():
        quiet = _harmonics_db(unit(_sine(0.05)))
        loud = _harmonics_db(unit(_sine(0.5)))
    assert abs(quiet[1] - loud[1]) > 3.0


def test_curve_is_tanh_at_rest_and_silence_maps_to_zero():
    u = torch.linspace(-3, 3, 101, dtype=torch.float64)
    assert torch.allclose(triode_curve(u, 0.0, 0.0), torch.tanh(u), atol=1e-15)
    assert triode_curve(torch.zeros(1, dtype=torch.float64), 0.7, 2.0).abs().max() == 0
    y = triode_curve(u, 0.0, 1.0)
    assert y[-1] < -y[0]  # positive side clips harder


def test_oversampling_lowers_preamp_aliasing():
    sr = SR
    n = 9600
    t = torch.arange(n, dtype=torch.float64) / sr
    x = (0.5 * torch.sin(2 * np.pi * 5000 * t)).view(1, 1, -1)

    def alias(y):
        p = np.abs(np.fft.rfft(y[0, 0, -4800:].detach().numpy())) ** 2
        f = np.fft.rfftfreq(4800, 1 / sr)
        h = np.round(f) % 5000 == 0
        return 10 * np.log10(p[(~h) & (f < 20000)].sum() / p[h].sum())

    knobs = dict(stage1_gain_db=30.0, stage1_bias=0.2, stage1_hp_hz=20.0, stage1_lp_hz=20000.0)
    with torch.no_grad():
        a1 = alias(Preamp(sr, n_stages=1, oversample=1, **knobs).double()(x))
        a4 = alias(Preamp(sr, n_stages=1, oversample=4, **knobs).double()(x))
    assert a4 < a1 - 15.0


def test_gradcheck_time_varying():
    unit = Preamp(SR, n_stages=2, oversample=2, cathode_bypass=True).double()
    gen = torch.Generator().manual_seed(0)
    x = (0.3 * torch.randn(1, 1, 48, dtype=torch.float64, generator=gen)).requires_grad_()
    gain = torch.tensor([[18.0, 25.0, 21.0]], dtype=torch.float64, requires_grad=True)
    bias = torch.tensor([0.1], dtype=torch.float64, requires_grad=True)
    lp = torch.tensor([[6000.0, 9000.0]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x, g, b, lp: unit(x, stage1_gain_db=g, stage2_bias=b, stage1_lp_hz=lp),
        (x, gain, bias, lp), eps=1e-6, atol=1e-6,
    )
    y = unit(x.detach()).square().sum()
    grads = torch.autograd.grad(y, list(unit.raw_knobs.values()))
    assert all(torch.isfinite(g) and g != 0 for g in grads)


@pytest.mark.parametrize("block", [1, 7, 64, 4096])
@pytest.mark.parametrize("oversample", [1, 4])
def test_streaming_equals_offline(block, oversample):
    n = 150 if block == 1 else 600  # block 1: one python call per sample, keep it short
    x = 0.5 * torch.randn(1, 2, n, generator=torch.Generator().manual_seed(1))
    unit = Preamp(SR, n_stages=3, oversample=oversample, cathode_bypass=True, stage1_gain_db=30.0)
    with torch.no_grad():
        ref = unit(x)
        stream = dspfx.Stream(unit, batch=1, channels=2)
        got = torch.cat([stream(x[..., i : i + block]) for i in range(0, x.shape[-1], block)], dim=-1)
    assert (got - ref).abs().max() < 1e-5


def test_every_edge_renders_and_latency():
    x = torch.randn(2, 1, 512, generator=torch.Generator().manual_seed(2))
    unit = Preamp(44100, n_stages=2, cathode_bypass=True)
    for edge in ("minimum", "maximum"):
        unit.set(**{k: getattr(knob, edge) for k, knob in unit.knob_specs.items()})
        assert torch.isfinite(unit(x)).all()
    assert Preamp(SR).latency_samples == 0 and Preamp(SR, oversample=2).latency_samples == 51


def test_spec_and_file_round_trip(tmp_path):
    x = torch.randn(1, 1, 800, generator=torch.Generator().manual_seed(3))
    unit = Preamp(SR, n_stages=3, oversample=2, cathode_bypass=True, stage2_bias=-0.4, stage3_gain_db=30.0)
    with torch.no_grad():
        ref = unit(x)
        again = dspfx.build(unit.spec())
        assert torch.allclose(again(x), ref, atol=1e-6)
        dspfx.save(unit, tmp_path / "pre.safetensors")
        again = dspfx.load(tmp_path / "pre.safetensors")
        assert isinstance(again, Preamp) and again.n_stages == 3 and again.oversample == 2 and again.cathode_bypass
        assert again.knobs() == pytest.approx(unit.knobs())
        assert torch.allclose(again(x), ref, atol=1e-6)


def test_errors():
    with pytest.raises(ValueError, match="n_stages"):
        Preamp(SR, n_stages=0)
    with pytest.raises(ValueError, match="oversample"):
        Preamp(SR, oversample=3)
    with pytest.raises(TypeError, match="stage3_gain_db"):
        Preamp(SR, n_stages=2, stage3_gain_db=10.0)
    with pytest.raises(ValueError, match="out of range"):
        Preamp(SR, stage1_bias=2.0)
