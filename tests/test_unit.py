"""The unit contract: knob maps, set/get, freeze, controls, streaming state."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import dspfx
from dspfx.stream import Stream
from dspfx.unit import Knob, Unit, check_audio

KNOBS = [
    Knob(0.0, -60.0, 40.0, unit="dB"),
    Knob(1000.0, 20.0, 20000.0, scale="log", unit="Hz"),
    Knob(0.5, 0.0, 1.0),
    Knob(0.7071, 0.1, 20.0, scale="log"),
]


@pytest.mark.parametrize("knob", KNOBS, ids=repr)
@settings(max_examples=60, deadline=None)
@given(raw=st.floats(-1e6, 1e6, allow_nan=False))
def test_knob_map_stays_in_range_for_any_raw_value(knob, raw):
    for dtype in (torch.float32, torch.float64):
        v = float(knob.to_physical(torch.tensor(raw, dtype=dtype)))
        assert knob.minimum <= v <= knob.maximum


@pytest.mark.parametrize("knob", KNOBS, ids=repr)
@settings(max_examples=60, deadline=None)
@given(u=st.floats(0.0, 1.0))
def test_knob_set_get_round_trip(knob, u):
    lo, hi = knob._to_scale(knob.minimum), knob._to_scale(knob.maximum)
    s = lo + (hi - lo) * u
    value = math.exp(s) if knob.scale == "log" else s
    value = min(max(value, knob.minimum), knob.maximum)
    raw64 = torch.tensor(knob.to_raw(value), dtype=torch.float64)
    assert float(knob.to_physical(raw64)) == pytest.approx(value, rel=1e-12, abs=1e-12)
    raw32 = torch.tensor(knob.to_raw(value), dtype=torch.float32)
    span = knob.maximum - knob.minimum
    assert float(knob.to_physical(raw32)) == pytest.approx(value, rel=2e-6, abs=2e-6 * span)


def test_knob_edges_render_exactly():
    unit = dspfx.make("gain")
    for edge in (-60.0, 40.0):
        unit.set(gain_db=edge)
        assert unit.knobs()["gain_db"] == edge
    mix = dspfx.DryWet(dspfx.make("distortion"), mix=0.0)
    assert mix.knobs()["mix"] == 0.0
    x = torch.randn(1, 1, 64)
    assert torch.equal(mix(x), x)  # mix = 0 is exactly dry


def test_knob_gradient_lives_at_the_edge():
    unit = dspfx.make("gain", gain_db=40.0)
    y = unit(torch.ones(1, 1, 8)).sum()
    y.backward()
    g = unit.raw_knobs["gain_db"].grad
    assert g is not None and float(g) > 0  # straight-through clamp keeps the gradient


def test_out_of_range_and_bad_knob_values_raise():
    unit = dspfx.make("biquad")
    with pytest.raises(ValueError, match=r"cutoff_hz = 5 Hz is out of range: expected 20 \.\. 20000 Hz"):
        unit.set(cutoff_hz=5.0)
    with pytest.raises(ValueError, match="must be finite"):
        unit.set(q=float("nan"))
    with pytest.raises(TypeError, match="takes a number"):
        unit.set(q="high")
    with pytest.raises(KeyError, match="did you mean cutoff_hz"):
        unit.set(cutof_hz=100.0)
    with pytest.raises(ValueError, match="out of range"):
        dspfx.make("gain", gain_db=100.0)
    # nothing is written when one value of a set() call is bad
    unit.set(q=2.0)
    with pytest.raises(ValueError):
        unit.set(q=1.0, gain_db=99.0)
    assert unit.knobs()["q"] == pytest.approx(2.0, rel=1e-6)


def test_set_values_render_exactly_until_the_parameter_moves():
    unit = dspfx.make("gain", gain_db=0.0)
    x = torch.randn(1, 1, 64, generator=torch.Generator().manual_seed(0))
    assert torch.equal(unit(x), x)  # 0 dB is exactly unity gain in float32
    assert float(unit.knob_value("gain_db").detach()) == 0.0
    # ... with the map's gradient
    unit(x).sum().backward()
    assert float(unit.raw_knobs["gain_db"].grad) != 0.0
    torch.optim.SGD(unit.parameters(), lr=0.1).step()
    moved = unit.knobs()["gain_db"]
    assert moved != 0.0  # after a step the value is the map of the new raw parameter
    # knob_value maps in float32, knobs() reports in float64: a few float32 ulps apart
    assert float(unit.knob_value("gain_db").detach()) == pytest.approx(moved, rel=1e-5)
    state = unit.state_dict()
    fresh = dspfx.make("gain", gain_db=0.0)
    fresh.load_state_dict(state)
    assert fresh.knobs()["gain_db"] == pytest.approx(moved, rel=1e-6)


def test_a_copy_keeps_the_set_values_exactly_and_a_trained_copy_moves():
    import copy

    chain = dspfx.Chain(mod=dspfx.make("chorus", rate_hz=3.0, centre_delay_ms=5.0))
    twin = copy.deepcopy(chain).double()
    # the float32 map alone reads these back ~1e-7 off, which an LFO's phase accumulates
    assert twin.knobs() == chain.knobs() and twin.knobs()["mod.rate_hz"] == 3.0
    x = torch.randn(1, 1, 4000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert torch.equal(twin(x), chain.double()(x))
    twin(x).sum().backward()  # a step moves the copy's raw knobs off the set values, not the original's
    torch.optim.SGD(twin.parameters(), lr=0.1).step()
    assert twin.knobs()["mod.rate_hz"] != 3.0 and chain.knobs()["mod.rate_hz"] == 3.0


def test_values_read_back_in_float32_can_be_written_again():
    unit = dspfx.make("biquad", q=0.1)  # 0.1 is not a float32 number
    unit.set(**unit.knobs())
    assert unit.knobs()["q"] == pytest.approx(0.1, rel=1e-6)


def test_descriptor_reads_and_writes_the_physical_value():
    unit = dspfx.make("biquad", cutoff_hz=440.0)
    assert float(unit.cutoff_hz.detach()) == pytest.approx(440.0, rel=1e-6)
    unit.cutoff_hz = 880.0
    assert unit.knobs()["cutoff_hz"] == pytest.approx(880.0, rel=1e-6)
    assert isinstance(type(unit).cutoff_hz, Knob)


def test_freeze_stops_gradients_and_unfreeze_restores_them():
    chain = dspfx.Chain(a=dspfx.make("gain"), b=dspfx.make("distortion"))
    chain.freeze("a.gain_db")
    assert chain.frozen() == ["a.gain_db"]
    chain(torch.randn(1, 1, 32)).pow(2).sum().backward()
    assert chain.units["a"].raw_knobs["gain_db"].grad is None
    assert chain.units["b"].raw_knobs["drive_db"].grad is not None
    chain.unfreeze()
    assert chain.frozen() == []


def test_control_overrides_knob_in_every_accepted_shape():
    unit = dspfx.make("gain", gain_db=0.0)
    x = torch.ones(2, 1, 100)
    assert torch.allclose(unit(x, gain_db=-20.0), 0.1 * x)
    per_batch = unit(x, gain_db=torch.tensor([0.0, -20.0]))
    assert torch.allclose(per_batch[:, 0, 0], torch.tensor([1.0, 0.1]))
    ramp = unit(x, gain_db=torch.tensor([[0.0, -20.0], [-20.0, -20.0]]))  # (batch, frames)
    # the causal hop grid (hop 50): frame 0 held until sample 49, then linear in dB up to frame
    # 1 at sample 99
    assert float(ramp[0, 0, 0]) == pytest.approx(1.0)
    assert float(ramp[0, 0, 49]) == pytest.approx(1.0)
    assert float(ramp[0, 0, -1]) == pytest.approx(0.1)
    assert float(ramp[0, 0, 74]) == pytest.approx(10 ** (-20 * 25 / 50 / 20), rel=1e-5)
    assert torch.allclose(ramp[1], 0.1 * x[1])
    assert unit.knobs()["gain_db"] == 0.0  # the knob itself is untouched


def test_bad_controls_raise_clear_errors():
    unit = dspfx.make("gain")
    x = torch.ones(2, 1, 16)
    with pytest.raises(ValueError, match="outside the knob's range"):
        unit(x, gain_db=80.0)
    with pytest.raises(ValueError, match="NaN|Inf|finite"):
        unit(x, gain_db=torch.tensor([0.0, float("nan")]))
    with pytest.raises(ValueError):
        unit(x, gain_db=torch.zeros(3))  # batch 3 for a batch-2 input
    with pytest.raises(KeyError, match="did you mean gain_db"):
        unit(x, gain_dB=0.0)


@pytest.mark.parametrize(
    "bad, message",
    [
        (torch.ones(16), r"\(batch, channels, samples\), got shape \(16,\)"),
        (torch.ones(1, 16), r"got shape \(1, 16\)"),
        (torch.ones(1, 1, 1, 16), r"got shape \(1, 1, 1, 16\)"),
        (torch.tensor([[[0.0, float("nan"), float("inf")]]]), "2 non-finite values"),
        (torch.ones(1, 1, 4, dtype=torch.int64), "floating"),
        (torch.ones(1, 1, 0), "empty"),
    ],
)
def test_units_reject_bad_audio(bad, message):
    with pytest.raises((ValueError, TypeError), match=message):
        dspfx.make("distortion")(bad)


def test_check_audio_names_bad_values_and_passes_huge_finite_audio():
    """The one-reduction fast path: a sum that overflows (finite audio) still passes, and a lone
    Inf or NaN is still found and named."""
    huge = torch.full((1, 1, 8), 3.0e38)  # the float32 sum overflows to inf
    assert check_audio(huge) is huge
    for bad, what in ((float("inf"), "(0 NaN, 1 Inf)"), (float("nan"), "(1 NaN, 0 Inf)")):
        x = torch.zeros(1, 2, 32)
        x[0, 1, 5] = bad
        with pytest.raises(ValueError, match="1 non-finite value") as info:
            check_audio(x, owner="gain")
        assert "gain: x" in str(info.value) and what in str(info.value) and "(0, 1, 5)" in str(info.value)


def test_renders_without_autograd_follow_every_knob_change():
    """Without autograd a unit keeps its knob controls between calls; every way of changing a
    knob (set, an optimiser step, load_state_dict, a dtype move) is seen by the next render."""
    unit = dspfx.make("gain", gain_db=6.0)
    x = torch.randn(1, 1, 64)
    with torch.no_grad():
        first = unit(x)
        assert torch.equal(unit(x), first)
        assert torch.equal(first, unit(x.clone().requires_grad_()).detach())
    unit.set(gain_db=-6.0)
    with torch.no_grad():
        torch.testing.assert_close(unit(x), x * 10 ** (-6.0 / 20))
    unit(x).sum().backward()
    torch.optim.SGD(unit.parameters(), lr=0.5).step()
    moved = unit.knobs()["gain_db"]
    with torch.no_grad():
        torch.testing.assert_close(unit(x), x * 10 ** (moved / 20))
        unit.load_state_dict(dspfx.make("gain", gain_db=3.0).state_dict())
        torch.testing.assert_close(unit(x), x * 10 ** (unit.knobs()["gain_db"] / 20))
        assert unit.double()(x.double()).dtype == torch.float64


def test_effect_without_input_raises():
    with pytest.raises(TypeError, match="needs input audio"):
        dspfx.make("gain")()


def test_check_audio_accepts_good_audio():
    x = torch.zeros(1, 2, 3)
    assert check_audio(x) is x


def test_stream_carries_state_and_checks_block_shape():
    unit = dspfx.make("biquad", mode="lowpass", cutoff_hz=300.0).double()
    x = torch.randn(1, 2, 1000, dtype=torch.float64)
    stream = Stream(unit, batch=1, channels=2)
    y = torch.cat([stream(x[..., i : i + 100]) for i in range(0, 1000, 100)], dim=-1)
    assert torch.allclose(y, unit(x), atol=1e-12)
    assert stream.samples_done == 1000
    stream.reset()
    assert torch.allclose(stream(x[..., :100]), unit(x[..., :100]), atol=1e-12)
    with pytest.raises(ValueError, match="made for"):
        stream(torch.randn(1, 1, 10, dtype=torch.float64))


def test_units_follow_dtype_and_device_moves():
    unit = dspfx.make("biquad", cutoff_hz=500.0).double()
    assert unit.dtype == torch.float64
    assert unit.knobs()["cutoff_hz"] == 500.0  # a value that was set survives .double()
    y = unit(torch.randn(1, 1, 64, dtype=torch.float64))
    assert y.dtype == torch.float64
    assert unit.knobs()["cutoff_hz"] == pytest.approx(500.0, rel=1e-12)


def test_knob_declaration_errors():
    with pytest.raises(ValueError, match="log-scale"):
        Knob(1.0, 0.0, 2.0, scale="log")
    with pytest.raises(ValueError, match="outside its range"):
        Knob(5.0, 0.0, 2.0)
    with pytest.raises(ValueError, match="minimum < maximum"):
        Knob(1.0, 2.0, 2.0)
    with pytest.raises(ValueError, match="scale"):
        Knob(1.0, 0.0, 2.0, scale="exp")


def test_subclass_knobs_are_collected_in_order_and_inherited():
    class Base(Unit):
        """doc"""

        a = Knob(0.0, 0.0, 1.0)

    class Child(Base):
        """doc"""

        b = Knob(1.0, 0.5, 2.0)

        def process(self, x, controls, state):
            return x * controls["a"] * controls["b"], state

    unit = Child(a=0.5)
    assert list(unit.knob_specs) == ["a", "b"]
    assert unit.knobs() == pytest.approx({"a": 0.5, "b": 1.0})
    assert torch.allclose(unit(torch.ones(1, 1, 4)), torch.full((1, 1, 4), 0.5))


class _Sine(Unit):
    """A toy sine synth (not registered) to exercise the synth side of the contract."""

    name = ""
    is_synth = True
    f0_hz = Knob(440.0, 20.0, 2000.0, scale="log", unit="Hz")

    def init_state(self, batch, channels):
        return torch.zeros(batch, 1, 1, dtype=self.dtype)

    def process(self, x, controls, state):
        f0 = controls["f0_hz"]  # (batch|1, 1, samples): audio rate for synths
        phase = state + torch.cumsum(2 * math.pi * f0 / self.sample_rate, dim=-1)
        return torch.sin(phase - 2 * math.pi * f0[..., :1] / self.sample_rate), phase[..., -1:]

    def default_length(self, controls):
        frames = controls.get("f0_hz")
        return 64 * (frames.shape[-1] if isinstance(frames, torch.Tensor) and frames.ndim == 2 else 1)


def test_synths_render_from_controls_and_stream():
    synth = _Sine(sample_rate=8000).double()
    y = synth(n_samples=800, f0_hz=500.0)
    assert y.shape == (1, 1, 800)
    t = torch.arange(800, dtype=torch.float64) / 8000
    assert torch.allclose(y[0, 0], torch.sin(2 * math.pi * 500 * t), atol=1e-9)
    # frames x hop when no length is given; batch from the control
    assert synth(f0_hz=torch.full((3, 10), 300.0, dtype=torch.float64)).shape == (3, 1, 640)
    # the phase carries across blocks
    stream = Stream(synth)
    blocks = torch.cat([stream(n_samples=100, f0_hz=500.0) for _ in range(8)], dim=-1)
    assert torch.allclose(blocks, y, atol=1e-9)
    # a chain that starts with a synth is a synth
    chain = dspfx.Chain(osc=synth, level=dspfx.make("gain", gain_db=-6.0, sample_rate=8000).double())
    assert chain.is_synth
    assert torch.allclose(chain(n_samples=800, **{"osc.f0_hz": 500.0}), y * 10 ** (-6 / 20), atol=1e-9)


class _Weighted(Unit):
    """A toy effect with an extra (non-knob) control: per-channel weights as frames."""

    name = ""
    extra_controls = ("weights",)
    level = Knob(1.0, 0.0, 2.0)

    def process(self, x, controls, state):
        from dspfx.functional import as_control, upsample_control

        y = x * controls["level"]
        if "weights" in controls:
            w = as_control(controls["weights"], x.shape[0], dims=x.shape[1], name="weights", dtype=x.dtype)
            y = y * upsample_control(w, x.shape[-1], mode="causal").transpose(1, 2)  # (batch, channels, samples)
        return y, state


def test_extra_controls_reach_process_as_given_and_unknown_names_still_raise():
    unit = _Weighted(level=0.5)
    x = torch.ones(1, 2, 10)
    assert torch.allclose(unit(x), 0.5 * x)
    y = unit(x, weights=torch.tensor([[[1.0, 0.0], [1.0, 2.0]]]))  # (batch, frames, channels)
    assert torch.allclose(y[0, 0], torch.full((10,), 0.5))
    assert float(y[0, 1, 0].detach()) == 0.0 and float(y[0, 1, -1].detach()) == pytest.approx(1.0)
    with pytest.raises(KeyError, match="did you mean"):
        unit(x, weight=1.0)
    chain = dspfx.Chain(w=unit)
    assert torch.allclose(chain(x, **{"w.weights": torch.ones(1, 1, 2)}), 0.5 * x)


def test_nan_and_inf_controls_are_rejected_by_name():
    unit = dspfx.make("biquad")
    x = torch.zeros(1, 1, 64)
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match=r"cutoff_hz.* contains NaN or Inf"):
            unit(x, cutoff_hz=torch.tensor([[1000.0, bad]]))
        with pytest.raises(ValueError, match=r"cutoff_hz.* contains NaN or Inf"):
            unit(x, cutoff_hz=bad)


@pytest.mark.parametrize("name", ["gain", "biquad", "parametric_eq", "cabinet", "clipping", "bitcrush"])
def test_renders_under_inference_mode_equal_the_no_grad_render(name):
    # the no-grad caches read tensors' version counters, which inference tensors do not have
    unit = dspfx.make(name)
    x = torch.randn(1, 1, 256, generator=torch.Generator().manual_seed(2)) * 0.3
    with torch.no_grad():
        expected = unit(x)
    with torch.inference_mode():
        first, second = unit(x), unit(x)  # the second call would hit a cache
    with torch.no_grad():
        after = unit(x)  # and a cache filled before inference mode still serves afterwards
    for y in (first, second, after):
        assert torch.equal(y, expected)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", ["gain", "ladder", "biquad", "wavenet"])
def test_half_precision_is_one_clear_error_for_every_kind_of_unit(name, dtype):
    """One dtype policy: float32 and float64 render; half precision is refused by name before any
    kernel runs (it used to fail deep in compiled code in some units, change dtype in others)."""
    unit = dspfx.make(name)
    with pytest.raises(TypeError, match=f"is {dtype}; units render float32 or float64"):
        unit(torch.zeros(1, 1, 64, dtype=dtype))
    assert unit(torch.zeros(1, 1, 64, dtype=torch.float64)).dtype == torch.float64
