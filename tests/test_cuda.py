"""Device-agnostic code: every unit, chain and fit runs on CUDA like on CPU (skipped without a GPU)."""

import pytest
import torch

import dspfx

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def _chain():
    return dspfx.Chain(
        pre=dspfx.make("gain", gain_db=6.0),
        drive=dspfx.make("distortion", drive_db=12.0),
        tone=dspfx.Parallel(
            low=dspfx.make("biquad", mode="lowshelf", cutoff_hz=200.0, gain_db=3.0),
            mid=dspfx.DryWet(dspfx.make("biquad", mode="peak", cutoff_hz=1000.0, gain_db=-6.0)),
        ),
    )


def test_chain_renders_the_same_on_cuda_and_cpu():
    chain = _chain()
    x = 0.3 * torch.randn(2, 2, 48000)
    sweep = torch.logspace(2, 3.5, 50).view(1, -1)
    with torch.no_grad():
        cpu = chain(x, **{"tone.low.cutoff_hz": sweep})
        gpu = chain.to("cuda")(x.cuda(), **{"tone.low.cutoff_hz": sweep.cuda()})
    assert gpu.device.type == "cuda"
    assert torch.allclose(gpu.cpu(), cpu, atol=1e-4)


def test_gradients_and_streaming_on_cuda():
    chain = _chain().to("cuda").double()
    x = 0.3 * torch.randn(1, 1, 4096, dtype=torch.float64, device="cuda")
    chain(x).square().mean().backward()
    grads = [p.grad for p in chain.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    with torch.no_grad():
        stream = dspfx.Stream(chain)
        streamed = torch.cat([stream(b) for b in x.split(1000, dim=-1)], dim=-1)
        assert torch.allclose(streamed, chain(x), atol=1e-9)


def test_fit_runs_on_cuda():
    truth = dspfx.make("biquad", mode="peak", cutoff_hz=2000.0, gain_db=6.0)
    x = 0.3 * torch.randn(1, 1, 24000)
    with torch.no_grad():
        y = truth(x)
    model = dspfx.make("biquad", mode="peak").to("cuda")
    result = dspfx.fit(model, x, y, steps=100, loss="mrstft+esr", progress=False)
    assert result.knobs["cutoff_hz"] == pytest.approx(2000.0, rel=0.05)

