"""harmonic_plus_noise: the DDSP synth is exactly the sum of its parts, driven by paths."""

import pytest
import torch

import dspfx
from dspfx.synths import harmonic_plus_noise


def _controls(batch=2, frames=20, n_harmonics=8, n_bands=17):
    g = torch.Generator().manual_seed(0)
    return {
        "harmonic.f0_hz": 200 + 100 * torch.rand(batch, frames, generator=g),
        "harmonic.amplitude": 0.5 * torch.rand(batch, frames, generator=g),
        "harmonic.harmonic_distribution": torch.rand(batch, frames, n_harmonics, generator=g),
        "noise.magnitudes": 0.1 * torch.rand(batch, frames, n_bands, generator=g),
    }


def test_sum_of_harmonic_and_noise_and_streaming():
    synth = harmonic_plus_noise(16000, n_harmonics=8, n_bands=17, seed=3)
    assert synth.is_synth and set(synth.children_units()) == {"harmonic", "noise"}
    controls = _controls()
    y = synth(n_samples=1280, **controls)
    assert y.shape == (2, 1, 1280)
    own = lambda prefix: {k.split(".", 1)[1]: v for k, v in controls.items() if k.startswith(prefix)}  # noqa: E731
    parts = synth.units["harmonic"](n_samples=1280, **own("harmonic.")) + synth.units["noise"](
        n_samples=1280, **own("noise.")
    )
    assert torch.allclose(y, parts, atol=1e-6)
    # streaming with constant controls equals offline
    constant = {k: v[:, :1] for k, v in controls.items()}
    offline = synth(n_samples=1000, **constant)
    stream = dspfx.Stream(synth, batch=2)
    blocks = torch.cat([stream(n_samples=100, **constant) for _ in range(10)], dim=-1)
    assert (blocks - offline).abs().max() <= 1e-5


def test_reverb_option_and_file_round_trip(tmp_path):
    synth = harmonic_plus_noise(16000, n_harmonics=8, n_bands=17, reverb_s=0.05, seed=1)
    assert isinstance(synth, dspfx.Chain) and synth.units["reverb"].impulse_response.shape == (1, 800)
    controls = {("synth." + k): v for k, v in _controls(batch=1).items()}
    y = synth(n_samples=1280, **controls)
    dspfx.save(synth, tmp_path / "ddsp.safetensors")
    again = dspfx.load(tmp_path / "ddsp.safetensors")
    assert torch.allclose(again(n_samples=1280, **controls), y, atol=1e-6)
    y.abs().sum().backward()  # gradients reach the learned impulse response
    assert synth.units["reverb"].impulse_response.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="reverb_s"):
        harmonic_plus_noise(16000, reverb_s=-1.0)
