"""The FDN reverb unit: measured decay times, lossless network, gradients, streaming, fit, errors."""

import pytest
import torch

import dspfx
import dspfx.effects.fdn_reverb  # noqa: F401  (registers the unit until dspfx.effects imports it)
from dspfx.effects.fdn_reverb import FDNReverb
from dspfx.functional.decay import rt60
from dspfx.functional.fdn import fdn_line_energy
from dspfx.signals import white_noise

F64 = torch.float64


def _impulse(n, dtype=torch.float32):
    x = torch.zeros(1, 1, n, dtype=dtype)
    x[..., 0] = 1.0
    return x


@pytest.mark.parametrize("t60", [0.4, 1.2])
def test_broadband_rt60_follows_the_knob(t60):
    sr = 16000
    unit = FDNReverb(sr, rt60_low_s=t60, rt60_high_s=t60, mix=1.0)
    with torch.no_grad():
        h = unit(_impulse(int(0.9 * t60 * sr)))[0, 0]
    assert rt60(h, sr) == pytest.approx(t60, rel=0.10)


def test_low_and_high_bands_decay_at_their_own_times():
    sr = 16000
    unit = FDNReverb(sr, rt60_low_s=2.0, rt60_high_s=0.5, crossover_hz=2000.0, mix=1.0)
    with torch.no_grad():
        h = unit(_impulse(int(1.6 * sr)))[0, 0]
    # bands well below / above the crossover, where the shelf sits at its DC / Nyquist gain
    assert rt60(h, sr, band_hz=(60.0, 150.0)) == pytest.approx(2.0, rel=0.10)
    assert rt60(h, sr, band_hz=(5000.0, 7500.0)) == pytest.approx(0.5, rel=0.10)


def test_lossless_when_decay_is_off():
    unit = FDNReverb(16000, decay=False, mix=1.0).double()
    state = unit.init_state(1, 1)
    _, state = unit.render_block(_impulse(4, F64), {}, state)
    e0 = fdn_line_energy(state).detach()
    assert float(e0) == pytest.approx(float(unit.input_gains.detach().square().sum()))
    for _ in range(4):  # 4000 samples: about ten trips round the longest line
        _, state = unit.render_block(torch.zeros(1, 1, 1000, dtype=F64), {}, state)
        assert abs(float(fdn_line_energy(state).detach() / e0) - 1.0) < 1e-6
    # the knobs do nothing without decay
    with torch.no_grad():
        a = unit(_impulse(600, F64), rt60_low_s=0.1)
        b = unit(_impulse(600, F64), rt60_low_s=10.0)
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_learned_matrix_stays_orthogonal():
    unit = FDNReverb(16000, n_lines=6, learn_matrix=True)
    assert unit.options()["matrix"] == "auto"
    with torch.no_grad():
        unit.matrix_skew.normal_()
    a = unit.feedback_matrix().double()
    torch.testing.assert_close(a @ a.T, torch.eye(6, dtype=F64), atol=1e-5, rtol=0)


def test_gradcheck_input_knobs_gains_matrix():
    unit = FDNReverb(8000, delays=[3, 5, 7, 11], learn_matrix=True).double()
    with torch.no_grad():
        unit.matrix_skew.normal_(std=0.3)
    n = 40
    x = torch.randn(2, 1, n, dtype=F64, requires_grad=True)
    low = torch.linspace(0.06, 0.1, 5, dtype=F64).view(1, 5).requires_grad_()  # frames
    high = torch.tensor([0.05, 0.07], dtype=F64, requires_grad=True)  # per batch
    cross = torch.tensor([1500.0], dtype=F64, requires_grad=True)
    mix = torch.tensor([0.7], dtype=F64, requires_grad=True)
    params = {k: p.detach().clone().requires_grad_() for k, p in (("input_gains", unit.input_gains), ("output_gains", unit.output_gains), ("matrix_skew", unit.matrix_skew))}
    keys = list(params)

    def render(x, low, high, cross, mix, *ps):
        return torch.func.functional_call(
            unit, dict(zip(keys, ps)), (x,), {"rt60_low_s": low, "rt60_high_s": high, "crossover_hz": cross, "mix": mix}
        )

    assert torch.autograd.gradcheck(render, (x, low, high, cross, mix, *params.values()))


@pytest.mark.parametrize("block", [1, 7, 64, 4096])
def test_stream_equals_offline(block):
    unit = FDNReverb(8000, rt60_low_s=0.8, rt60_high_s=0.3, crossover_hz=1000.0, mix=0.6)
    x = white_noise(800 / 8000, 8000, channels=2, seed=3)
    with torch.no_grad():
        offline = unit(x)
        stream = dspfx.Stream(unit, batch=1, channels=2)
        blocks = [stream(x[..., i : i + block]) for i in range(0, x.shape[-1], block)]
    assert (torch.cat(blocks, -1) - offline).abs().max() <= 1e-5


def test_knob_edges_render():
    x = white_noise(0.05, 8000, seed=1)
    for values in ({"rt60_low_s": 0.05, "rt60_high_s": 20.0, "crossover_hz": 50.0, "mix": 0.0},
                   {"rt60_low_s": 20.0, "rt60_high_s": 0.05, "crossover_hz": 20000.0, "mix": 1.0}):
        unit = FDNReverb(8000, **values)
        with torch.no_grad():
            y = unit(x)
        assert torch.isfinite(y).all()
        if values["mix"] == 0.0:
            torch.testing.assert_close(y, x, rtol=0, atol=0)


def test_fit_recovers_the_decay_time():
    sr = 8000
    x = torch.zeros(1, 1, int(0.5 * sr))
    x[..., :200] = white_noise(200 / sr, sr, seed=2)
    target_unit = FDNReverb(sr, rt60_low_s=0.3, rt60_high_s=0.3, mix=1.0)
    with torch.no_grad():
        target = target_unit(x)
    unit = FDNReverb(sr, rt60_low_s=0.8, rt60_high_s=0.8, mix=1.0).freeze("crossover_hz", "mix")
    unit.input_gains.requires_grad_(False)
    unit.output_gains.requires_grad_(False)
    dspfx.fit(unit, x, target, steps=120, lr=0.1, loss="esr", align_latency=False, progress=False)
    k = unit.knobs()
    assert k["rt60_low_s"] == pytest.approx(0.3, rel=0.05)
    assert k["rt60_high_s"] == pytest.approx(0.3, rel=0.05)


def test_save_load_round_trip(tmp_path):
    unit = FDNReverb(16000, n_lines=4, learn_matrix=True, rt60_low_s=1.1, mix=0.5)
    with torch.no_grad():
        unit.matrix_skew.normal_(std=0.2)
        unit.output_gains.mul_(-1.5)
    loaded = dspfx.load(dspfx.save(unit, tmp_path / "fdn.safetensors"))
    assert isinstance(loaded, FDNReverb) and loaded.delay_samples == unit.delay_samples
    x = white_noise(0.05, 16000, seed=4)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), unit(x), rtol=0, atol=1e-6)


def test_bad_input_errors():
    with pytest.raises(ValueError, match="differs from the 3 delays"):
        FDNReverb(n_lines=4, delays=[3, 5, 7])
    with pytest.raises(ValueError, match="delays must be a non-empty list"):
        FDNReverb(delays=[3, 0])
    with pytest.raises(ValueError, match="power-of-two"):
        FDNReverb(n_lines=6, matrix="hadamard")
    with pytest.raises(ValueError, match="matrix must be"):
        FDNReverb(matrix="circulant")
    with pytest.raises(TypeError, match="decay must be True or False"):
        FDNReverb(decay="yes")
    with pytest.raises(ValueError, match="rt60_low_s = 30 s is out of range"):
        FDNReverb(rt60_low_s=30.0)
    unit = FDNReverb()
    with pytest.raises(ValueError, match=r"\(batch, channels, samples\)"):
        unit(torch.zeros(2, 100))
    with pytest.raises(ValueError, match="non-finite"):
        unit(torch.full((1, 1, 10), float("nan")))
    with pytest.raises(ValueError, match="mix spans"):
        unit(torch.zeros(1, 1, 100), mix=torch.tensor([[0.5, 1.2]]))
