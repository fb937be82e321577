"""The distortion family: clipping, invert, bitcrush, static_nonlinearity (and distortion).

pedalboard twins, analytic properties of each curve, gradients, streaming, spec/file round trips,
bad inputs.
"""

import functools
import math

import numpy as np
import pedalboard
import pytest
import torch
from torch.func import functional_call

import dspfx
from dspfx.effects import Bitcrush, Clipping, Invert, StaticNonlinearity
from dspfx.functional.nonlinear import CLIP_CURVES
from dspfx.signals import guitar_di
from dspfx.fitting.metrics import esr


def _noise(n=4800, channels=1, seed=0, dtype=torch.float64, scale=0.5):
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(1, channels, n, generator=g, dtype=dtype)


@functools.lru_cache(maxsize=None)
def _guitar(sample_rate, channels):
    """(channels, samples) float32 guitar DI, 0.5 s; stereo takes a second performance."""
    parts = [guitar_di(sample_rate=sample_rate, duration_s=0.5, seed=seed)[0, 0] for seed in range(channels)]
    return torch.stack(parts)


def _signals(sample_rate, channels, gain):
    noise = _noise(n=sample_rate // 4, channels=channels, seed=channels, dtype=torch.float32)[0]
    return [gain * noise, gain * _guitar(sample_rate, channels)]


# --- pedalboard twins ----------------------------------------------------------------------------

TWIN_SETTINGS = [
    (pedalboard.Clipping, dict(threshold_db=-6.0), 2.0),
    (pedalboard.Clipping, dict(threshold_db=0.0), 4.0),
    (pedalboard.Clipping, dict(threshold_db=-60.0), 1.0),
    (pedalboard.Clipping, dict(threshold_db=-17.3), 1.0),
    (pedalboard.Invert, dict(), 1.0),
    (pedalboard.Bitcrush, dict(bit_depth=0.0), 1.0),
    (pedalboard.Bitcrush, dict(bit_depth=0.5), 1.0),
    (pedalboard.Bitcrush, dict(bit_depth=1.0), 1.0),
    (pedalboard.Bitcrush, dict(bit_depth=8.0), 1.0),
    (pedalboard.Bitcrush, dict(bit_depth=16.0), 1.0),
    (pedalboard.Bitcrush, dict(bit_depth=32.0), 1.0),
    (pedalboard.Bitcrush, dict(bit_depth=3.7), 1.0),
    (pedalboard.Bitcrush, dict(bit_depth=12.25), 1.0),
]


@pytest.mark.parametrize("channels", [1, 2], ids=["mono", "stereo"])
@pytest.mark.parametrize("sample_rate", [44100, 48000])
@pytest.mark.parametrize(
    "cls, settings, gain",
    TWIN_SETTINGS,
    ids=lambda v: getattr(v, "__name__", str(v)) if not isinstance(v, float) else "",
)
def test_twins_match_pedalboard_on_noise_and_guitar(cls, settings, gain, sample_rate, channels):
    plugin = cls(**settings)
    twin = dspfx.from_pedalboard(plugin, sample_rate=sample_rate)
    back = dspfx.to_pedalboard(twin)
    assert type(back) is cls
    for key, value in settings.items():
        assert getattr(back, key) == pytest.approx(value, rel=1e-6, abs=1e-6)
    for x in _signals(sample_rate, channels, gain):
        ref = torch.from_numpy(plugin(x.numpy(), sample_rate))
        with torch.no_grad():
            y = twin(x.unsqueeze(0))[0]
        assert y.shape == ref.shape
        assert float(esr(y.double(), ref.double())) <= 1e-6
        if cls is not pedalboard.Invert:
            assert not torch.equal(ref, x)  # the setting does something to this signal


def test_bitcrush_twin_is_bit_identical_in_float32_at_integer_depths():
    x = _noise(n=48000, channels=2, dtype=torch.float32)[0]
    for bits in (1.0, 8.0, 16.0, 32.0):
        ref = torch.from_numpy(pedalboard.Bitcrush(bit_depth=bits)(x.numpy(), 48000))
        with torch.no_grad():
            y = dspfx.make("bitcrush", bit_depth=bits)(x.unsqueeze(0))[0]
        assert torch.equal(y, ref)


def test_twins_refuse_what_they_cannot_be():
    with pytest.raises(ValueError, match="clipping curve 'soft' has no pedalboard twin"):
        dspfx.to_pedalboard(dspfx.make("clipping", curve="soft"))
    with pytest.raises(ValueError, match=r"threshold_db = 6 dB is out of range: expected -60 \.\. 0 dB"):
        dspfx.from_pedalboard(pedalboard.Clipping(threshold_db=6.0), sample_rate=48000)
    with pytest.raises(ValueError, match=r"bit_depth = 33 bits is out of range: expected 0 \.\. 32 bits"):
        dspfx.make("bitcrush", bit_depth=33.0)
    with pytest.raises(TypeError, match="no pedalboard twin"):
        dspfx.to_pedalboard(dspfx.make("static_nonlinearity"))


def test_new_units_are_registered_with_their_knobs():
    listed = {u["name"]: u for u in dspfx.units()}
    assert {"clipping", "invert", "bitcrush", "static_nonlinearity", "distortion"} <= set(listed)
    assert dspfx.make("clipping").knobs() == pytest.approx({"threshold_db": -6.0})
    assert dspfx.make("bitcrush").knobs() == pytest.approx({"bit_depth": 8.0})
    assert dspfx.make("invert").knobs() == {}
    assert isinstance(dspfx.make("static_nonlinearity", curve="mlp"), StaticNonlinearity)


# --- analytic properties -------------------------------------------------------------------------


@pytest.mark.parametrize("curve", CLIP_CURVES)
@pytest.mark.parametrize("threshold_db", [0.0, -6.0, -60.0])
def test_clipping_saturates_at_the_threshold(curve, threshold_db):
    unit = Clipping(curve=curve, threshold_db=threshold_db).double()
    unit.set(threshold_db=threshold_db)
    t = 10 ** (threshold_db / 20)
    x = torch.linspace(-1000 * t, 1000 * t, 20001, dtype=torch.float64).view(1, 1, -1)
    y = unit(x).detach()
    assert float(y.abs().max()) <= t * (1 + 1e-12)
    assert float(y.abs().max()) == pytest.approx(t, rel=1e-3)  # reached (asymptotically for soft)
    assert torch.allclose(unit(-x), -y, rtol=0, atol=0)
    small = torch.tensor([1e-6 * t], dtype=torch.float64).view(1, 1, 1)
    assert float(unit(small).detach()) == pytest.approx(1e-6 * t, rel=1e-6)  # slope 1 at 0, every curve


def test_clipping_threshold_gradient_is_exact():
    x = _noise(n=500, seed=3)
    th = torch.tensor(-9.0, dtype=torch.float64, requires_grad=True)
    unit = Clipping(curve="hard").double()
    (g,) = torch.autograd.grad(unit(x, threshold_db=th).sum(), th)
    t = 10 ** (-9.0 / 20)
    clipped = x.abs() > t
    expected = float((torch.sign(x) * clipped).sum()) * t * math.log(10) / 20
    assert float(g) == pytest.approx(expected, rel=1e-12)
    assert int(clipped.sum()) > 50


def test_invert_negates_exactly():
    x = _noise(channels=2, dtype=torch.float32)
    assert torch.equal(Invert()(x), -x)


def test_bitcrush_unit_steps_and_time_varying_depth():
    x = _noise(n=1000, channels=2)
    unit = Bitcrush().double()
    depth = torch.tensor([[3.0, 9.0]], dtype=torch.float64)  # two frames: the first half 3 bits
    y = unit(x, bit_depth=depth)
    # frames are spread over the block and upsampled linearly: check the ends, where they are exact
    assert torch.equal(y[..., 0], torch.round(x[..., 0] * 8) / 8)
    assert torch.equal(y[..., -1], torch.round(x[..., -1] * 512) / 512)


def _harmonics_db(y, fundamental_bin, count):
    spectrum = np.abs(np.fft.rfft(y.detach().numpy().ravel()))
    ref = spectrum[fundamental_bin]
    return [20 * np.log10(spectrum[k * fundamental_bin] / ref + 1e-300) for k in range(1, count + 1)]


def test_tanh_curve_has_no_even_harmonics_without_bias_and_has_them_with_bias():
    sr, n, cycles = 48000, 4800, 10  # 100 Hz, an integer number of periods: exact bins
    x = 0.8 * torch.sin(2 * math.pi * cycles * torch.arange(n, dtype=torch.float64) / n).view(1, 1, -1)
    unit = StaticNonlinearity(sr, curve="tanh").double()
    unit.set(input_gain_db=12.0, bias=0.0)
    h = _harmonics_db(unit(x), cycles, 8)
    assert max(h[1::2]) < -100  # 2nd, 4th, 6th, 8th
    assert h[2] > -40  # 3rd harmonic is there
    unit.set(bias=0.3)
    h = _harmonics_db(unit(x), cycles, 8)
    assert h[1] > -40 and h[3] > -60
    assert float(unit(torch.zeros(1, 1, 4, dtype=torch.float64)).detach().abs().max()) == 0.0  # silence stays silent


@pytest.mark.parametrize("k", [0, 1, 2, 3, 5, 8])
def test_chebyshev_basis_turns_cos_into_cos_k(k):
    unit = StaticNonlinearity(curve="chebyshev", order=8).double()
    unit.set(input_gain_db=0.0, output_gain_db=0.0, bias=0.0)  # exact in float64
    with torch.no_grad():
        unit.coefficients.zero_()
        unit.coefficients[k] = 1.0
    theta = torch.linspace(0, 6 * math.pi, 1000, dtype=torch.float64).view(1, 1, -1)
    y = unit(torch.cos(theta))
    np.testing.assert_allclose(y.detach().numpy(), torch.cos(k * theta).numpy(), atol=1e-6)


def test_chebyshev_and_mlp_start_at_or_near_identity():
    x = torch.linspace(-1, 1, 201, dtype=torch.float64).view(1, 1, -1)
    cheb = StaticNonlinearity(curve="chebyshev").double()
    cheb.set(input_gain_db=0.0, output_gain_db=0.0)
    assert torch.allclose(cheb(x), x, atol=1e-9)
    assert cheb.coefficients.shape == (9,)
    mlp = StaticNonlinearity(curve="mlp", hidden=16).double()
    mlp.set(input_gain_db=0.0, output_gain_db=0.0)
    err = float((mlp(x) - x).detach().abs().max())
    assert 0 < err < 0.05


# --- gradients -----------------------------------------------------------------------------------


@pytest.mark.parametrize("curve", CLIP_CURVES)
def test_clipping_gradcheck_float64(curve):
    unit = Clipping(curve=curve).double()
    x = _noise(n=30, seed=4)
    # away from the kinks of the hard and cubic curves for thresholds in [-9, -3] dB
    x = torch.where((x.abs() > 0.3) & (x.abs() < 1.1), x * 1.8, x).requires_grad_(True)
    th = torch.tensor([[-9.0, -3.0]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, t: unit(a, threshold_db=t), (x, th), eps=1e-6, atol=1e-7)


def test_bitcrush_unit_gradients_are_the_stated_estimator():
    unit = Bitcrush(bit_depth=5.0).double()
    unit.set(bit_depth=5.0)
    x = _noise(n=400, seed=5).requires_grad_(True)
    y = unit(x)
    gx, graw = torch.autograd.grad(y.sum(), (x, unit.raw_knobs["bit_depth"]))
    assert torch.equal(gx, torch.ones_like(x))
    knob = unit.knob_specs["bit_depth"]
    raw = unit.raw_knobs["bit_depth"].detach().requires_grad_(True)
    (dvalue,) = torch.autograd.grad(knob.to_physical(raw), raw)
    expected = -math.log(2) * float((y - x).detach().sum()) * float(dvalue)
    assert float(graw) == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("curve", ["tanh", "chebyshev", "mlp"])
def test_static_nonlinearity_gradcheck_float64(curve):
    torch.manual_seed(0)
    unit = StaticNonlinearity(curve=curve, order=5, hidden=4).double()
    x = (0.4 * torch.randn(1, 2, 12, dtype=torch.float64)).requires_grad_(True)
    gi = torch.tensor([[2.0, 5.0]], dtype=torch.float64, requires_grad=True)
    go = torch.tensor(-3.0, dtype=torch.float64, requires_grad=True)
    bias = torch.tensor([0.2], dtype=torch.float64, requires_grad=True)
    params = {k: p.detach().clone().requires_grad_(True) for k, p in unit.named_parameters() if "raw_knobs" not in k}
    names = list(params)

    def render(x, gi, go, bias, *weights):
        return functional_call(
            unit, dict(zip(names, weights)), (x,), dict(input_gain_db=gi, output_gain_db=go, bias=bias)
        )

    inputs = (x, gi, go, bias, *params.values())
    assert torch.autograd.gradcheck(render, inputs, eps=1e-6, atol=1e-7)
    assert len(names) == {"tanh": 0, "chebyshev": 1, "mlp": 6}[curve]


# --- streaming, specs, files ---------------------------------------------------------------------

STREAM_UNITS = [
    ("clipping", dict(curve="hard", threshold_db=-10.0)),
    ("clipping", dict(curve="cubic", threshold_db=-3.0)),
    ("clipping", dict(curve="arctan", threshold_db=-20.0)),
    ("invert", dict()),
    ("bitcrush", dict(bit_depth=4.5)),
    ("static_nonlinearity", dict(curve="tanh", input_gain_db=9.0, bias=0.25)),
    ("static_nonlinearity", dict(curve="chebyshev", order=4, bias=-0.1)),
    ("static_nonlinearity", dict(curve="mlp", hidden=8, input_gain_db=6.0)),
    ("distortion", dict(drive_db=20.0)),
]


@pytest.mark.parametrize("block", [1, 7, 64, 4096])
@pytest.mark.parametrize("name, settings", STREAM_UNITS, ids=lambda v: str(v) if isinstance(v, str) else "")
def test_streaming_in_blocks_equals_offline(name, settings, block):
    unit = dspfx.make(name, **settings)
    x = _noise(n=2000 if block > 1 else 300, channels=2, dtype=torch.float32)
    with torch.no_grad():
        offline = unit(x)
        stream = dspfx.Stream(unit, batch=1, channels=2)
        streamed = torch.cat([stream(x[..., i : i + block]) for i in range(0, x.shape[-1], block)], dim=-1)
    assert (streamed - offline).abs().max() <= 1e-5


@pytest.mark.parametrize("name, settings", STREAM_UNITS, ids=lambda v: str(v) if isinstance(v, str) else "")
def test_spec_and_file_round_trips_render_identically(name, settings, tmp_path):
    torch.manual_seed(7)
    unit = dspfx.make(name, **settings)
    learned = [p for k, p in unit.named_parameters() if "raw_knobs" not in k]
    with torch.no_grad():
        for p in learned:  # move away from the initial weights so the file has to carry them
            p.add_(0.1 * torch.randn_like(p))
    x = _noise(n=2048, dtype=torch.float32)
    with torch.no_grad():
        ref = unit(x)
        rebuilt = dspfx.build(unit.spec())
        assert rebuilt.options() == unit.options()
        if not learned:
            assert torch.equal(rebuilt(x), ref)
        files = ["u.safetensors"] + ([] if learned else ["u.json"])
        for file in files:
            dspfx.save(unit, tmp_path / file)
            loaded = dspfx.load(tmp_path / file)
            assert type(loaded) is type(unit) and loaded.options() == unit.options()
            assert torch.equal(loaded(x), ref)
    if learned:
        with pytest.raises(ValueError, match="save it as .safetensors"):
            dspfx.save(unit, tmp_path / "u.json")


def test_static_nonlinearity_fit_recovers_input_gain_and_bias():
    sr = 48000
    x = _noise(n=sr // 4, dtype=torch.float32, seed=11, scale=0.3)
    truth = StaticNonlinearity(sr, curve="tanh", input_gain_db=12.0, output_gain_db=-4.0, bias=0.3)
    with torch.no_grad():
        target = truth(x)
    model = StaticNonlinearity(sr, curve="tanh").freeze("output_gain_db")
    model.set(output_gain_db=-4.0)
    result = dspfx.fit(model, x, target, steps=200, lr=0.05, loss="esr", align_latency=False, progress=False)
    k = result.knobs
    assert k["input_gain_db"] == pytest.approx(12.0, abs=0.1)
    assert k["bias"] == pytest.approx(0.3, abs=0.01)
    assert result.metrics["esr"] < 1e-4


# --- bad inputs ----------------------------------------------------------------------------------


def test_bad_options_knobs_and_shapes_raise():
    with pytest.raises(ValueError, match="clipping curve must be one of hard, soft, cubic, arctan; got 'fuzz'"):
        dspfx.make("clipping", curve="fuzz")
    with pytest.raises(ValueError, match=r"threshold_db = 3 dB is out of range: expected -60 \.\. 0 dB"):
        dspfx.make("clipping", threshold_db=3.0)
    with pytest.raises(ValueError, match=r"bit_depth = 40 bits is out of range"):
        dspfx.make("bitcrush", bit_depth=40.0)
    with pytest.raises(ValueError, match="bit_depth = -1 bits is out of range"):
        dspfx.make("bitcrush", bit_depth=-1.0)
    with pytest.raises(ValueError, match="static_nonlinearity curve must be one of tanh, chebyshev, mlp; got 'relu'"):
        dspfx.make("static_nonlinearity", curve="relu")
    with pytest.raises(ValueError, match="option order must be an int >= 0, got -1"):
        dspfx.make("static_nonlinearity", curve="chebyshev", order=-1)
    with pytest.raises(ValueError, match="option hidden must be an int >= 1, got 0"):
        dspfx.make("static_nonlinearity", curve="mlp", hidden=0)
    with pytest.raises(ValueError, match=r"bias = 2 is out of range"):
        dspfx.make("static_nonlinearity", bias=2.0)
    with pytest.raises(TypeError, match="unknown knob or option 'drive_db'"):
        dspfx.make("clipping", drive_db=3.0)
    with pytest.raises(ValueError, match=r"control clipping.threshold_db spans .* outside the knob's range"):
        dspfx.make("clipping")(torch.zeros(1, 1, 8), threshold_db=5.0)
    with pytest.raises(ValueError, match=r"must be shaped \(batch, channels, samples\)"):
        dspfx.make("bitcrush")(torch.zeros(16))


# --- the no-autograd fast path (cached dB conversions, scalar operands) equals the autograd path --


def _bits(y):
    return y.contiguous().view(torch.int32 if y.dtype == torch.float32 else torch.int64)


FAST_CASES = [
    ("clipping", dict(curve=c, threshold_db=t)) for c in CLIP_CURVES for t in (-60.0, -12.0, 0.0)
] + [
    ("bitcrush", dict(bit_depth=b)) for b in (0.0, 6.0, 23.7, 32.0)
] + [
    ("distortion", dict(drive_db=d)) for d in (0.0, 18.0, 60.0)
] + [
    ("static_nonlinearity", dict(curve=c, input_gain_db=gi, output_gain_db=go, bias=b))
    for c in ("tanh", "chebyshev", "mlp")
    for gi, go, b in ((0.0, 0.0, 0.0), (-24.0, 24.0, -1.0), (48.0, -48.0, 0.3))
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name,settings", FAST_CASES)
def test_no_grad_render_is_bit_identical_to_the_autograd_render(name, settings, dtype):
    unit = dspfx.make(name, **settings).to(dtype)
    x = _noise(2000, channels=2, dtype=dtype, scale=1.5)
    x[0, 0, :4] = torch.tensor([0.0, -0.0, 1e-6, -1e-6], dtype=dtype)
    slow = unit(x).detach()
    with torch.no_grad():
        first, again = unit(x), unit(x)  # the second call reuses the cached controls and gains
    assert torch.equal(_bits(first), _bits(slow)) and torch.equal(_bits(again), _bits(slow))
    # a knob change invalidates the caches
    knob = next(iter(unit.knob_specs))
    spec = unit.knob_specs[knob]
    unit.set(**{knob: 0.5 * (spec.minimum + spec.maximum) + 0.1})
    slow = unit(x).detach()
    with torch.no_grad():
        assert torch.equal(_bits(unit(x)), _bits(slow))
    with torch.inference_mode():
        assert torch.equal(_bits(unit(x)), _bits(slow))
