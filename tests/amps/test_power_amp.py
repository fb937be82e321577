"""Power amp: push-pull symmetry vs single-ended, crossover, sag time constant, gradients,
streaming, edges, save/load, errors."""

import numpy as np
import pytest
import torch

import dspfx
import dspfx.amps.power_amp  # noqa: F401  (registers the unit until dspfx.amps imports it)
from dspfx.amps.power_amp import PowerAmp
from dspfx.functional.tube import push_pull

SR = 48000


def _harmonics_db(y, f0=1000.0, n_fft=4800, count=4):
    seg = y[0, 0, -n_fft:].detach().numpy()
    mag = np.abs(np.fft.rfft(seg))
    k0 = int(round(f0 * n_fft / SR))
    levels = np.array([mag[k0 * h] for h in range(1, count + 1)])
    return 20 * np.log10(np.maximum(levels, 1e-300) / levels[0])


def _sine(amp, n, f0=1000.0):
    t = torch.arange(n, dtype=torch.float64) / SR
    return (amp * torch.sin(2 * np.pi * f0 * t)).view(1, 1, -1)


@pytest.mark.parametrize("bias", [0.3, 0.0, -0.1])
def test_push_pull_has_no_even_harmonics_single_ended_does(bias):
    x = _sine(0.8, 9600)
    knobs = dict(master_db=6.0, bias=bias, sag=0.0, presence_db=4.0, resonance_db=3.0)
    with torch.no_grad():
        pp = _harmonics_db(PowerAmp(SR, topology="push_pull", **knobs).double()(x))
        se = _harmonics_db(PowerAmp(SR, topology="single_ended", **knobs).double()(x))
    assert pp[1] < -80.0 and pp[3] < -80.0  # 2nd and 4th
    assert pp[2] > -60.0  # it does distort (odd harmonics)
    assert se[1] > -40.0


def test_class_b_bias_gives_crossover_distortion():
    v = torch.linspace(-0.02, 0.02, 41, dtype=torch.float64)
    # small-signal slope at 0 drops as the bias goes towards cut-off
    slopes = []
    for b in (0.3, 0.0, -0.2):
        y = push_pull(v, b, 0.05)
        slopes.append(float((y[21] - y[19]) / (v[21] - v[19])))
    assert slopes[0] > slopes[1] > slopes[2] and slopes[2] < 0.1 * slopes[0]
    # a quiet sine through a class-B stage distorts more than through class AB
    x = _sine(0.05, 9600)
    with torch.no_grad():
        ab = _harmonics_db(PowerAmp(SR, bias=0.3, sag=0.0).double()(x))
        b = _harmonics_db(PowerAmp(SR, bias=-0.2, sag=0.0).double()(x))
    assert b[2] > ab[2] + 20.0


@pytest.mark.parametrize("release_ms", [40.0, 120.0])
def test_sag_recovers_with_the_release_time_constant(release_ms):
    n_burst, n_probe = 4800, int(0.35 * SR)
    burst = _sine(2.0, n_burst)
    probe = _sine(0.01, n_probe)
    x = torch.cat([burst, probe], dim=-1)
    ref_x = torch.cat([torch.zeros_like(burst), probe], dim=-1)
    unit = PowerAmp(SR, sag=0.4, sag_attack_ms=2.0, sag_release_ms=release_ms).double()
    with torch.no_grad():
        y, ref = unit(x)[0, 0, n_burst:], unit(ref_x)[0, 0, n_burst:]
    period = 48  # one period of 1 kHz
    frames = n_probe // period
    rms = lambda s: s[: frames * period].view(frames, period).square().mean(-1).sqrt()  # noqa: E731
    gain = (rms(y) / rms(ref)).numpy()
    t_ms = (np.arange(frames) + 0.5) * period / SR * 1000.0
    assert gain[2] < 0.9  # the gain drops after the burst ...
    assert gain[-1] > gain[2]  # ... and recovers
    deficit = 1.0 - gain
    window = (t_ms > 5.0) & (t_ms < 1.5 * release_ms)
    slope = np.polyfit(t_ms[window], np.log(deficit[window]), 1)[0]
    tau = -1.0 / slope
    assert tau == pytest.approx(release_ms, rel=0.1)


def test_sag_zero_means_no_gain_change():
    x = torch.cat([_sine(2.0, 2400), _sine(0.01, 2400)], -1)
    unit = PowerAmp(SR, sag=0.0).double()
    assert torch.equal(unit.sag_gain(x), torch.ones_like(x))


def test_gradcheck_time_varying():
    unit = PowerAmp(SR, oversample=2).double()
    gen = torch.Generator().manual_seed(0)
    x = (0.7 * torch.randn(1, 1, 48, dtype=torch.float64, generator=gen)).requires_grad_()
    master = torch.tensor([[3.0, 9.0, 6.0]], dtype=torch.float64, requires_grad=True)
    bias = torch.tensor([0.05], dtype=torch.float64, requires_grad=True)
    sag = torch.tensor([0.3], dtype=torch.float64, requires_grad=True)
    release = torch.tensor([[10.0, 30.0]], dtype=torch.float64, requires_grad=True)
    presence = torch.tensor([4.0], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x, m, b, s, r, p: unit(x, master_db=m, bias=b, sag=s, sag_release_ms=r, presence_db=p),
        (x, master, bias, sag, release, presence), eps=1e-6, atol=1e-6,
    )
    unit.set(sag_attack_ms=1.0, sag_release_ms=5.0, resonance_db=3.0)
    y = unit(x.detach()).square().sum()
    grads = torch.autograd.grad(y, list(unit.raw_knobs.values()))
    assert all(torch.isfinite(g) and g != 0 for g in grads)


@pytest.mark.parametrize("block", [1, 7, 64, 4096])
@pytest.mark.parametrize("oversample", [1, 2])
def test_streaming_equals_offline(block, oversample):
    n = 200 if block == 1 else 800
    x = 0.8 * torch.randn(1, 2, n, generator=torch.Generator().manual_seed(1))
    unit = PowerAmp(SR, oversample=oversample, master_db=6.0, sag=0.4, sag_release_ms=10.0, presence_db=5.0)
    with torch.no_grad():
        ref = unit(x)
        stream = dspfx.Stream(unit, batch=1, channels=2)
        got = torch.cat([stream(x[..., i : i + block]) for i in range(0, n, block)], dim=-1)
    assert (got - ref).abs().max() < 1e-5


def test_every_edge_renders():
    x = torch.randn(2, 1, 512, generator=torch.Generator().manual_seed(2))
    for topology in ("push_pull", "single_ended"):
        unit = PowerAmp(44100, topology=topology)
        for edge in ("minimum", "maximum"):
            unit.set(**{k: getattr(knob, edge) for k, knob in unit.knob_specs.items()})
            assert torch.isfinite(unit(x)).all()


def test_spec_and_file_round_trip(tmp_path):
    x = torch.randn(1, 1, 800, generator=torch.Generator().manual_seed(3))
    unit = PowerAmp(SR, topology="single_ended", oversample=4, presence_hz=2500.0, bias=0.3, sag=0.1)
    with torch.no_grad():
        ref = unit(x)
        assert torch.allclose(dspfx.build(unit.spec())(x), ref, atol=1e-6)
        dspfx.save(unit, tmp_path / "pa.safetensors")
        again = dspfx.load(tmp_path / "pa.safetensors")
        assert isinstance(again, PowerAmp) and again.topology == "single_ended" and again.presence_hz == 2500.0
        assert again.knobs() == pytest.approx(unit.knobs())
        assert torch.allclose(again(x), ref, atol=1e-6)


def test_errors():
    with pytest.raises(ValueError, match="topology"):
        PowerAmp(SR, topology="class_d")
    with pytest.raises(ValueError, match="oversample"):
        PowerAmp(SR, oversample=8)
    with pytest.raises(ValueError, match="presence_hz"):
        PowerAmp(SR, presence_hz=-1.0)
