"""The noise reverb unit: measured decay, gradients, streaming, fit, seeds, save/load, errors."""

import pytest
import torch

import dspfx
import dspfx.effects.noise_reverb  # noqa: F401  (registers the unit until dspfx.effects imports it)
from dspfx.effects.noise_reverb import NoiseReverb
from dspfx.functional.decay import rt60
from dspfx.signals import white_noise

F64 = torch.float64


def test_rendered_impulse_decays_at_the_knob():
    sr = 16000
    unit = NoiseReverb(sr, n_bands=4, length_s=1.0, mix=1.0, **{f"decay{k}_s": 0.6 for k in range(1, 5)})
    x = torch.zeros(1, 1, sr)
    x[..., 0] = 1.0
    with torch.no_grad():
        y = unit(x)[0, 0]
    torch.testing.assert_close(y, unit.impulse_response()[0], atol=1e-6, rtol=0)
    assert rt60(y, sr) == pytest.approx(0.6, rel=0.10)


def test_same_seed_same_response():
    a = NoiseReverb(16000, n_bands=6, length_s=0.1, seed=5).impulse_response()
    b = NoiseReverb(16000, n_bands=6, length_s=0.1, seed=5).impulse_response()
    c = NoiseReverb(16000, n_bands=6, length_s=0.1, seed=6).impulse_response()
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    assert not torch.allclose(a, c)


def test_gradcheck_input_decays_gains_mix():
    unit = NoiseReverb(8000, n_bands=3, length_s=0.004).double()  # 32 taps
    x = torch.randn(2, 2, 40, dtype=F64, requires_grad=True)
    d1 = torch.tensor([0.06, 0.09], dtype=F64, requires_grad=True)  # per batch
    g2 = torch.tensor([-3.0], dtype=F64, requires_grad=True)
    mix = torch.tensor([0.6], dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, d, g, m: unit(x, decay1_s=d, gain2_db=g, mix=m), (x, d1, g2, mix))
    decays = torch.tensor([0.06, 0.1, 0.2], dtype=F64, requires_grad=True)
    gains = torch.tensor([[0.0, -6.0, 3.0], [1.0, 2.0, -1.0]], dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, d, g: unit(x, decays_s=d, gains_db=g), (x, decays, gains))


@pytest.mark.parametrize("block", [1, 7, 64, 4096])
def test_stream_equals_offline(block):
    unit = NoiseReverb(16000, n_bands=6, length_s=0.02, mix=0.7, decay2_s=0.2, gain3_db=-6.0)
    x = white_noise(500 / 16000, 16000, channels=2, seed=2)
    with torch.no_grad():
        offline = unit(x)
        stream = dspfx.Stream(unit, batch=1, channels=2)
        blocks = [stream(x[..., i : i + block]) for i in range(0, x.shape[-1], block)]
    assert (torch.cat(blocks, -1) - offline).abs().max() <= 1e-5


def test_fit_recovers_a_decay_time():
    sr = 8000
    x = torch.zeros(1, 1, sr // 2)
    x[..., :100] = white_noise(100 / sr, sr, seed=1)
    same = {f"decay{k}_s": 0.25 for k in range(1, 5)}
    target_unit = NoiseReverb(sr, n_bands=4, length_s=0.4, mix=1.0, **same)
    with torch.no_grad():
        target = target_unit(x)
    unit = NoiseReverb(sr, n_bands=4, length_s=0.4, mix=1.0)  # decays start at 1 s
    unit.freeze(*[k for k in unit.knobs() if not k.startswith("decay3")])
    dspfx.fit(unit, x, target, steps=60, lr=0.1, loss="esr", align_latency=False, progress=False)
    assert unit.knobs()["decay3_s"] == pytest.approx(0.25, rel=0.05)


def test_save_load_round_trip(tmp_path):
    unit = NoiseReverb(16000, n_bands=5, length_s=0.1, seed=9, decay2_s=0.3, gain4_db=-9.0, mix=0.5)
    loaded = dspfx.load(dspfx.save(unit, tmp_path / "noise_reverb.json"))
    assert isinstance(loaded, NoiseReverb) and loaded.options() == unit.options()
    assert loaded.knobs() == pytest.approx(unit.knobs())
    loaded2 = dspfx.load(dspfx.save(unit, tmp_path / "noise_reverb.safetensors"))
    x = white_noise(0.05, 16000, seed=3)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), unit(x), atol=1e-6, rtol=0)
        torch.testing.assert_close(loaded2(x), unit(x), atol=1e-6, rtol=0)


def test_knob_edges_render():
    x = white_noise(0.02, 8000, seed=1)
    for d, g, m in ((0.05, -60.0, 0.0), (10.0, 12.0, 1.0)):
        unit = NoiseReverb(8000, n_bands=2, length_s=0.05, decay1_s=d, decay2_s=d, gain1_db=g, gain2_db=g, mix=m)
        with torch.no_grad():
            y = unit(x)
        assert torch.isfinite(y).all()
        if m == 0.0:
            torch.testing.assert_close(y, x, atol=0, rtol=0)


def test_bad_input_errors():
    with pytest.raises(ValueError, match="n_bands must be"):
        NoiseReverb(n_bands=0)
    with pytest.raises(ValueError, match="length_s must be"):
        NoiseReverb(length_s=-1.0)
    with pytest.raises(ValueError, match="min_hz"):
        NoiseReverb(8000, min_hz=5000.0)
    with pytest.raises(ValueError, match="decay1_s = 20 s is out of range"):
        NoiseReverb(decay1_s=20.0)
    with pytest.raises(TypeError, match="unknown knob or option"):
        NoiseReverb(n_bands=2, decay3_s=1.0)
    unit = NoiseReverb(8000, n_bands=2, length_s=0.01)
    with pytest.raises(ValueError, match=r"\(batch, channels, samples\)"):
        unit(torch.zeros(100))
    with pytest.raises(ValueError, match="non-finite"):
        unit(torch.full((1, 1, 10), float("nan")))
    with pytest.raises(ValueError, match="one value per block"):
        unit(torch.zeros(1, 1, 100), decay1_s=torch.tensor([[0.5, 1.0]]))
    with pytest.raises(ValueError, match="decays_s must be shaped"):
        unit(torch.zeros(1, 1, 100), decays_s=torch.ones(3))
    with pytest.raises(ValueError, match="gains_db must be finite and inside"):
        unit(torch.zeros(1, 1, 100), gains_db=torch.tensor([0.0, 40.0]))
