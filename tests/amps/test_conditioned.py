"""KnobConditioned: front-panel settings -> MLP -> amp knobs.

Exactness at a zero last layer, the mapping the network states, per-batch settings, unseen
settings after training on captures of a hidden amp, streaming, save/load, gradcheck, errors.
"""

import pytest
import torch

import dspfx
from dspfx.amps.amp import amp, front_panel_controls
from dspfx.amps.conditioned import KnobConditioned
from dspfx.amps.preamp import Preamp
from dspfx.amps.tonestack import Tonestack
from dspfx.signals import guitar_di
from dspfx.fitting.metrics import esr

SR = 16000


def _di(seconds: float, seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    return torch.as_tensor(guitar_di(SR, seconds, seed=seed)).reshape(1, 1, -1).to(dtype)


@torch.no_grad()
def _randomize_net(model: KnobConditioned, seed: int, std: float = 0.5) -> None:
    g = torch.Generator().manual_seed(seed)
    for p in model.net.parameters():
        p.copy_(std * torch.randn(p.shape, generator=g, dtype=p.dtype))


@torch.no_grad()
def _train_like_step(model: KnobConditioned, seed: int) -> None:
    """Move every raw knob of the chain off its set value, as an optimiser step would."""
    g = torch.Generator().manual_seed(seed)
    for name, p in model.units["amp"].named_parameters():
        if "raw_knobs" in name:
            p.add_(0.2 * torch.randn((), generator=g, dtype=p.dtype))


def test_zero_last_layer_renders_exactly_the_plain_amp():
    x = _di(0.1)
    rig = amp("jcm800", SR, gain=7, treble=3)
    model = KnobConditioned(rig)
    assert model.conditioned == list(rig.knobs())  # every trainable knob
    with torch.no_grad():
        ref = rig(x)
        assert torch.equal(model(x), ref)  # knobs at values set by set(): bit for bit
        assert torch.equal(model(x, {"gain": 0.0, "master": 10.0}), ref)
        both = model(x.repeat(2, 1, 1), {"gain": torch.tensor([1.0, 9.0])})
        assert torch.equal(both[0:1], ref) and torch.equal(both[1:2], ref)
        # knobs moved by training (raw parameters no longer at a set value): still bit for bit
        _train_like_step(model, seed=0)
        moved = rig(x)
        assert not torch.equal(moved, ref)
        assert torch.equal(model(x, {"gain": 3.0, "bass": 8.0}), moved)


def test_model_renders_the_knobs_the_network_states_and_they_move_monotonically():
    rig = amp("bassman", SR)
    model = KnobConditioned(rig, settings=["gain"], hidden=1, layers=1)
    up, down = "preamp.stage1_gain_db", "cabinet.lowpass_hz"
    with torch.no_grad():  # offset = +-2 tanh(2u): increasing / decreasing in the setting
        model.net[0].weight.fill_(2.0)
        model.net[0].bias.zero_()
        model.net[2].weight[model.conditioned.index(up)] = 2.0
        model.net[2].weight[model.conditioned.index(down)] = -2.0
        gains = torch.linspace(0.0, 10.0, 11)
        values = model.knob_values({"gain": gains})
    rising, falling = values[up], values[down]
    assert (rising.diff() > 0).all() and (falling.diff() < 0).all()
    # the knobs the network does not drive stay at the chain's value for every setting
    assert torch.equal(values["tonestack.mid"], torch.full((11,), rig.knobs()["tonestack.mid"]))
    assert float(rising[5]) == pytest.approx(rig.knobs()[up], abs=1e-5)  # gain 5 -> u = 0 -> offset 0
    # and the render is the chain driven by exactly those knob values
    x = _di(0.05)
    with torch.no_grad():
        got = model(x.repeat(2, 1, 1), {"gain": torch.tensor([2.0, 8.0])})
        two = model.knob_values({"gain": torch.tensor([2.0, 8.0])})
        want = rig(x.repeat(2, 1, 1), **two)
    assert torch.equal(got, want)


def test_batch_of_settings_equals_separate_calls():
    model = KnobConditioned(amp("bassman", SR), settings=("gain", "treble", "master")).double()
    _randomize_net(model, seed=1)
    x = _di(0.1, dtype=torch.float64)
    x2 = torch.cat([x, 0.5 * x.flip(-1)])
    a = {"gain": 2.0, "treble": 8.0, "master": 6.0}
    b = {"gain": 9.0, "treble": 1.5, "master": 3.0}
    with torch.no_grad():
        sep = torch.cat([model(x2[0:1], a), model(x2[1:2], b)])
        as_dict = model(x2, {k: torch.tensor([a[k], b[k]], dtype=torch.float64) for k in a})
        as_tensor = model(x2, torch.tensor([[a[k] for k in model.settings], [b[k] for k in model.settings]], dtype=torch.float64))
        as_controls = model(x2, **{k: torch.tensor([a[k], b[k]], dtype=torch.float64) for k in a})
    assert not torch.allclose(sep[0], sep[1])
    assert (as_dict - sep).abs().max() < 1e-12
    assert torch.equal(as_tensor, as_dict) and torch.equal(as_controls, as_dict)


def test_renders_unseen_settings_after_training_on_captures_of_a_hidden_amp():
    """A hidden bassman (voiced differently from the start model: stage-2 gain, power-amp bias,
    transformer drive, cabinet low-pass) is captured at four (gain, treble) settings on 0.5 s of
    guitar DI; a KnobConditioned on a default bassman trains on them, then renders (gain 6,
    treble 5), a setting no capture had, on a different DI. Baseline: the same model with its network frozen, i.e. one
    plain amp fitted to all captures with the same loop (same steps, segments, loss).
    Measured (80 steps, batches of 4 segments of 1024 samples, MR-STFT + ESR): held-out ESR
    0.008 / 0.011 (network seeds 0 / 1) vs 0.077 for the plain amp; training captures ESR
    0.004-0.036 (the quietest capture, gain 1, is the worst). Thresholds: held-out below 0.03
    and below 1/4 of the plain amp's; every training capture below 0.06."""
    di, di_test = _di(0.5, seed=0), _di(0.5, seed=1)
    hidden = amp("bassman", SR)
    hidden.set(**{"preamp.stage2_gain_db": 14.0, "cabinet.lowpass_hz": 4000.0, "power_amp.bias": 0.25, "transformer.drive_db": 5.0})

    @torch.no_grad()
    def capture(settings, x):
        return hidden(x, **front_panel_controls(**settings))

    seen = [dict(gain=1.0, treble=2.0), dict(gain=9.0, treble=3.0), dict(gain=3.0, treble=9.0), dict(gain=8.0, treble=8.0)]
    unseen = dict(gain=6.0, treble=5.0)
    captures = [(s, di, capture(s, di)) for s in seen]
    target = capture(unseen, di_test)
    held_out = {}
    for kind in ("plain", "conditioned"):
        torch.manual_seed(0)  # the network's hidden layers start random
        model = KnobConditioned(amp("bassman", SR), settings=("gain", "treble"))
        if kind == "plain":
            model.net.requires_grad_(False)
        result = model.fit_captures(captures, steps=80, batch_size=4, segment_s=1024 / SR, progress=False)
        assert result.latency_samples == [0, 0, 0, 0] and len(result.esr) == 4
        with torch.no_grad():
            held_out[kind] = float(esr(model(di_test, unseen), target))
        if kind == "conditioned":
            assert max(result.esr) < 0.06, result.esr
            gain_db = model.knob_values({"gain": torch.linspace(0, 10, 6), "treble": torch.full((6,), 5.0)})
            assert (gain_db["preamp.stage1_gain_db"].diff() > 0).all()  # more gain -> more stage-1 gain
    assert held_out["conditioned"] < 0.03, held_out
    assert held_out["conditioned"] < 0.25 * held_out["plain"], held_out


@pytest.mark.parametrize("block", [1, 7, 64, 4096])
def test_streaming_equals_offline(block):
    model = KnobConditioned(amp("jcm800", SR), settings=("gain", "bass"))
    _randomize_net(model, seed=2)
    x = _di(0.05)[..., : {1: 32, 7: 140}.get(block, 800)]  # short for small blocks: one chain call each
    with torch.no_grad():
        ref = model(x, {"gain": 7.0, "bass": 2.0})
        stream = dspfx.Stream(model)
        got = torch.cat([stream(x[..., i : i + block], gain=7.0, bass=2.0) for i in range(0, x.shape[-1], block)], -1)
    assert (got - ref).abs().max() < 1e-5


def test_save_load_and_spec_round_trip_bit_identically(tmp_path):
    rig = amp("blackface", SR, oversample=2)
    rig.freeze("cabinet.notch_hz")
    model = KnobConditioned(rig, settings=("gain", "presence"), hidden=8, defaults={"presence": 7.0})
    assert "cabinet.notch_hz" not in model.conditioned
    _randomize_net(model, seed=3)
    _train_like_step(model, seed=4)
    x = _di(0.05)
    settings = {"gain": torch.tensor([3.0, 8.5]), "presence": 1.0}
    with torch.no_grad():
        ref = model(x.repeat(2, 1, 1), settings)
        dspfx.save(model, tmp_path / "amp.safetensors")
        loaded = dspfx.load(tmp_path / "amp.safetensors")
        rebuilt = dspfx.build(model.spec())
        rebuilt.load_state_dict(model.state_dict())
        assert isinstance(loaded, KnobConditioned)
        assert loaded.settings == ["gain", "presence"] and loaded.defaults == model.defaults
        assert loaded.conditioned == model.conditioned and loaded.units["amp"].frozen() == ["cabinet.notch_hz"]
        assert torch.equal(loaded(x.repeat(2, 1, 1), settings), ref)
        assert torch.equal(loaded(x), model(x))  # the defaults travel too
        assert torch.equal(rebuilt(x.repeat(2, 1, 1), settings), ref)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_gradcheck_settings_network_and_knobs():
    chain = dspfx.Chain(pre=Preamp(SR, n_stages=1), tone=Tonestack(SR))
    model = KnobConditioned(chain, settings=("drive", "tone"), hidden=4, layers=1).double()
    _randomize_net(model, seed=5, std=0.3)
    x = _di(0.02, dtype=torch.float64)[..., 200:264]
    last = model.net[2].weight.detach().clone()
    raw = model.units["amp"].units["pre"].raw_knobs["stage1_gain_db"]

    def render(settings, weight, raw_gain):
        params = {"net.2.weight": weight, "units.amp.units.pre.raw_knobs.stage1_gain_db": raw_gain}
        return torch.func.functional_call(model, params, (x, settings))

    settings = torch.tensor([[3.0, 6.5], [8.0, 2.0]], dtype=torch.float64, requires_grad=True)
    x = x.repeat(2, 1, 1)
    inputs = (settings, last.requires_grad_(True), raw.detach().clone().requires_grad_(True))
    assert torch.autograd.gradcheck(render, inputs, eps=1e-6, atol=1e-6, rtol=1e-4)


def test_errors():
    model = KnobConditioned(amp("bassman", SR), settings=("gain", "treble"))
    x = _di(0.1)
    with pytest.raises(ValueError, match="unknown setting 'gian'.*gain"):
        model(x, {"gian": 3.0})
    with pytest.raises(ValueError, match="unknown setting 'volume'"):
        model(x, volume=3.0)
    with pytest.raises(ValueError, match="'gain' spans 11"):
        model(x, {"gain": 11.0})
    with pytest.raises(ValueError, match="'treble' spans -1"):
        model(x.repeat(2, 1, 1), {"treble": torch.tensor([5.0, -1.0])})
    with pytest.raises(ValueError, match=r"\(2,\) or \(batch, 2\)"):
        model(x, torch.ones(1, 3))
    with pytest.raises(ValueError, match="given twice"):
        model(x, {"gain": 3.0}, gain=4.0)
    with pytest.raises(ValueError, match="batch"):
        model(x, {"gain": torch.tensor([1.0, 2.0, 3.0])})
    with pytest.raises(ValueError, match="snake_case"):
        KnobConditioned(amp("bassman", SR), settings=("Gain",))
    with pytest.raises(ValueError, match="does not have"):
        KnobConditioned(amp("bassman", SR), conditioned=["preamp.nope"])
    with pytest.raises(ValueError, match="out of range"):
        KnobConditioned(amp("bassman", SR), defaults={"gain": 12})
    di, tgt = x[0, 0], x[0, 0] * 0.5
    ok = {"gain": 5.0, "treble": 5.0}
    bad_captures = {
        "lengths differ": [(ok, di, tgt[:-10])],
        "48000 Hz but the model renders at 16000": [(ok, di, tgt, 48000)],
        r"no value for \['treble'\]": [({"gain": 5.0}, di, tgt)],
        "out of range": [({"gain": 5.0, "treble": 10.5}, di, tgt)],
        "unknown setting 'bass'": [({"gain": 5.0, "treble": 5.0, "bass": 1.0}, di, tgt)],
        "silent": [(ok, di, torch.zeros_like(tgt))],
        "same layout": [(ok, di, tgt), (ok, di, torch.stack([tgt, tgt]))],
        "non-empty list": [],
    }
    for message, captures in bad_captures.items():
        with pytest.raises(ValueError, match=message):
            model.fit_captures(captures, steps=1, progress=False)
    with pytest.raises(ValueError, match="44100 Hz"):
        model.fit_captures([(ok, di, tgt)], steps=1, sample_rate=44100, progress=False)
