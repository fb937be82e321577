"""The full amp chain: renders every model, front-panel mapping, streaming, spec/save/load."""

import pytest
import torch

import dspfx
from dspfx.amps.amp import AMP_MODELS, FRONT_PANEL, amp, front_panel_controls, set_front_panel
from dspfx.amps.cabinet import Cabinet
from dspfx.amps.power_amp import PowerAmp
from dspfx.amps.preamp import Preamp
from dspfx.amps.tonestack import Tonestack
from dspfx.amps.transformer import OutputTransformer

SR = 48000


@pytest.mark.parametrize("model", list(AMP_MODELS))
def test_every_model_renders_through_every_block(model):
    rig = amp(model, SR)
    assert [type(u) for u in rig.units.values()] == [Preamp, Tonestack, PowerAmp, OutputTransformer, Cabinet]
    assert rig.units["tonestack"].model == model
    x = 0.2 * torch.randn(1, 1, 2400, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y = rig(x)
        louder = rig(x, **front_panel_controls(master=10.0))
    assert torch.isfinite(y).all() and y.abs().max() > 1e-3
    assert louder.square().mean() > y.square().mean()
    assert amp(model, SR, oversample=2).latency_samples == 3 * 51


def test_front_panel_maps_to_the_block_knobs():
    rig = amp("jcm800", SR, gain=10, bass=0, mid=2.5, treble=7.5, presence=0, master=5)
    knobs = rig.knobs()
    assert knobs["preamp.stage1_gain_db"] == pytest.approx(FRONT_PANEL["gain"][2])
    assert knobs["tonestack.bass"] == 0.0 and knobs["tonestack.mid"] == pytest.approx(0.25)
    assert knobs["tonestack.treble"] == pytest.approx(0.75)
    assert knobs["power_amp.presence_db"] == pytest.approx(FRONT_PANEL["presence"][1])
    lo, hi = FRONT_PANEL["master"][1:]
    assert knobs["power_amp.master_db"] == pytest.approx((lo + hi) / 2)
    # controls in a call render the same as knobs set
    x = 0.2 * torch.randn(1, 1, 1200, generator=torch.Generator().manual_seed(1))
    other = amp("jcm800", SR)
    with torch.no_grad():
        via_call = other(x, **front_panel_controls(gain=10, bass=0, mid=2.5, treble=7.5, presence=0, master=5))
        assert torch.allclose(via_call, rig(x), atol=1e-6)
    set_front_panel(other, gain=10, bass=0, mid=2.5, treble=7.5, presence=0, master=5)
    assert other.knobs() == pytest.approx(knobs)


def test_front_panel_tensors_are_differentiable():
    rig = amp("bassman", SR).double()
    x = 0.2 * torch.randn(1, 1, 600, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    gain = torch.tensor([6.0], dtype=torch.float64, requires_grad=True)
    treble = torch.tensor([4.0], dtype=torch.float64, requires_grad=True)
    y = rig(x, **front_panel_controls(gain=gain, treble=treble)).square().sum()
    g_gain, g_treble = torch.autograd.grad(y, [gain, treble])
    assert torch.isfinite(g_gain) and g_gain != 0 and torch.isfinite(g_treble) and g_treble != 0


@pytest.mark.parametrize("block", [7, 64, 4096])
def test_streaming_equals_offline(block):
    rig = amp("jcm800", SR, oversample=2, gain=8)
    x = 0.3 * torch.randn(1, 2, 900, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref = rig(x)
        stream = dspfx.Stream(rig, batch=1, channels=2)
        got = torch.cat([stream(x[..., i : i + block]) for i in range(0, x.shape[-1], block)], dim=-1)
    assert (got - ref).abs().max() < 1e-5


def test_spec_and_file_round_trip(tmp_path):
    rig = amp("blackface", SR, oversample=2, gain=7, presence=8)
    rig.units["preamp"].set(stage2_bias=-0.3)
    x = 0.3 * torch.randn(1, 1, 1200, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        ref = rig(x)
        again = dspfx.build(rig.spec())
        assert torch.allclose(again(x), ref, atol=1e-6)
        dspfx.save(rig, tmp_path / "amp.safetensors")
        loaded = dspfx.load(tmp_path / "amp.safetensors")
        assert loaded.knobs() == pytest.approx(rig.knobs())
        assert loaded.units["tonestack"].model == "blackface" and loaded.units["preamp"].oversample == 2
        assert torch.allclose(loaded(x), ref, atol=1e-6)


def test_errors():
    with pytest.raises(ValueError, match="model"):
        amp("ac30")
    with pytest.raises(KeyError, match="front-panel"):
        front_panel_controls(volume=3)
    with pytest.raises(ValueError, match="0 .. 10"):
        amp("bassman", gain=11)


def test_self_identification_recovers_hidden_front_panel_settings():
    """Fit the front-panel knobs of a default jcm800 chain (every other knob frozen) to a render of
    the same chain with hidden settings. Measured (0.3 s guitar DI, 250 steps): all six within
    0.15 of the hidden value (0-10 scale; gain, presence, master within 0.02), ESR ~2e-7."""
    from dspfx.signals import guitar_di

    x = torch.as_tensor(guitar_di(SR, 0.3)).reshape(1, 1, -1).float()
    hidden = dict(gain=7.0, bass=3.0, mid=6.0, treble=7.0, presence=6.5, master=4.0)
    with torch.no_grad():
        target = amp("jcm800", SR, **hidden)(x)
    rig = amp("jcm800", SR)
    paths = {FRONT_PANEL[k][0]: k for k in hidden}
    rig.freeze(*[p for p in rig.knobs() if p not in paths])
    result = dspfx.fit(rig, x, target, steps=250, lr=0.1, loss="mrstft+esr", align_latency=False, progress=False)
    knobs = rig.knobs()
    for path, name in paths.items():
        lo, hi = FRONT_PANEL[name][1:]
        assert (knobs[path] - lo) / (hi - lo) * 10 == pytest.approx(hidden[name], abs=0.25), name
    assert result.metrics["esr"] < 1e-4
