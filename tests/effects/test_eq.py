"""The parametric EQ: its response against independently computed RBJ sections, identity at
0 dB, a pedalboard series of shelves and peaks, gradients, streaming, specs/files, a fit."""

import math

import numpy as np
import pedalboard
import pytest
import scipy.signal
import torch

import dspfx
from dspfx.signals import guitar_di
from dspfx.fitting.metrics import esr

SR = 48000


def _noise(n=4800, channels=1, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return 0.3 * torch.randn(1, channels, n, generator=g, dtype=dtype)


def _rbj(kind, fc, q, gain_db, sr):
    """Audio-EQ-Cookbook biquad (b, a), written out here independently of dspfx."""
    w0 = 2 * math.pi * fc / sr
    cw, sw = math.cos(w0), math.sin(w0)
    alpha = sw / (2 * q)
    big_a = 10 ** (gain_db / 40)
    if kind == "peak":
        b = [1 + alpha * big_a, -2 * cw, 1 - alpha * big_a]
        a = [1 + alpha / big_a, -2 * cw, 1 - alpha / big_a]
    elif kind == "lowshelf":
        s = 2 * math.sqrt(big_a) * alpha
        b = [big_a * ((big_a + 1) - (big_a - 1) * cw + s), 2 * big_a * ((big_a - 1) - (big_a + 1) * cw),
             big_a * ((big_a + 1) - (big_a - 1) * cw - s)]
        a = [(big_a + 1) + (big_a - 1) * cw + s, -2 * ((big_a - 1) + (big_a + 1) * cw),
             (big_a + 1) + (big_a - 1) * cw - s]
    elif kind == "highshelf":
        s = 2 * math.sqrt(big_a) * alpha
        b = [big_a * ((big_a + 1) + (big_a - 1) * cw + s), -2 * big_a * ((big_a - 1) + (big_a + 1) * cw),
             big_a * ((big_a + 1) + (big_a - 1) * cw - s)]
        a = [(big_a + 1) - (big_a - 1) * cw + s, 2 * ((big_a - 1) - (big_a + 1) * cw),
             (big_a + 1) - (big_a - 1) * cw - s]
    elif kind == "highpass":
        b = [(1 + cw) / 2, -(1 + cw), (1 + cw) / 2]
        a = [1 + alpha, -2 * cw, 1 - alpha]
    elif kind == "lowpass":
        b = [(1 - cw) / 2, 1 - cw, (1 - cw) / 2]
        a = [1 + alpha, -2 * cw, 1 - alpha]
    return np.array(b), np.array(a)


def _design_sections(k, n_peaks, highpass, lowpass, sr=SR):
    out = []
    if highpass:
        out.append(_rbj("highpass", k["highpass_hz"], 0.7071, 0.0, sr))
    out.append(_rbj("lowshelf", k["low_shelf_hz"], 0.7071, k["low_shelf_gain_db"], sr))
    for i in range(1, n_peaks + 1):
        out.append(_rbj("peak", k[f"peak{i}_hz"], k[f"peak{i}_q"], k[f"peak{i}_gain_db"], sr))
    out.append(_rbj("highshelf", k["high_shelf_hz"], 0.7071, k["high_shelf_gain_db"], sr))
    if lowpass:
        out.append(_rbj("lowpass", k["lowpass_hz"], 0.7071, 0.0, sr))
    return out


SETTINGS = dict(
    highpass_hz=40.0,
    low_shelf_hz=120.0,
    low_shelf_gain_db=5.0,
    peak1_hz=300.0,
    peak1_gain_db=-9.0,
    peak1_q=2.5,
    peak2_hz=1100.0,
    peak2_gain_db=6.0,
    peak2_q=0.7,
    peak3_hz=3500.0,
    peak3_gain_db=-4.0,
    peak3_q=4.0,
    high_shelf_hz=7000.0,
    high_shelf_gain_db=-6.5,
    lowpass_hz=16000.0,
)


@pytest.mark.parametrize("highpass, lowpass", [(False, False), (True, True)])
def test_impulse_response_matches_the_product_of_rbj_sections(highpass, lowpass):
    dropped = {k for k, on in (("highpass_hz", highpass), ("lowpass_hz", lowpass)) if not on}
    settings = {k: v for k, v in SETTINGS.items() if k not in dropped}
    eq = dspfx.make("parametric_eq", highpass=highpass, lowpass=lowpass).double()
    eq.set(**settings)
    impulse = torch.zeros(1, 1, SR, dtype=torch.float64)
    impulse[..., 0] = 1.0
    with torch.no_grad():
        ir = eq(impulse)[0, 0].numpy()
    spectrum = np.fft.rfft(ir)  # 1 Hz bins
    freqs = np.unique(np.round(np.geomspace(25.0, 20000.0, 300)))
    measured = 20 * np.log10(np.abs(spectrum[freqs.astype(int)]))
    h = np.ones(len(freqs), complex)
    for b, a in _design_sections(settings, 3, highpass, lowpass):
        h *= scipy.signal.freqz(b, a, worN=freqs, fs=SR)[1]
    design = 20 * np.log10(np.abs(h))
    assert np.ptp(design) > 10  # a response with some shape to it
    np.testing.assert_allclose(measured, design, atol=0.1)
    # the unit's own frequency_response agrees with the design too
    _, db = eq.frequency_response(torch.tensor(freqs))
    np.testing.assert_allclose(db.detach().numpy(), design, atol=1e-8)


def test_all_gains_at_zero_db_is_the_identity():
    eq = dspfx.make("parametric_eq", n_peaks=4).double()
    eq.set(low_shelf_hz=60.0, peak1_hz=150.0, peak1_q=10.0, peak3_hz=5000.0, peak4_q=0.1, high_shelf_hz=15000.0)
    for key in eq.knobs():
        if key.endswith("gain_db"):
            assert eq.knobs()[key] == 0.0
    x = _noise(n=8000, channels=2)
    with torch.no_grad():
        assert (eq(x) - x).abs().max() <= 1e-6
    _, db = eq.frequency_response()
    assert db.abs().max() <= 1e-9


def test_shelves_and_peaks_match_a_pedalboard_series():
    # no single pedalboard twin, but shelves + peaks equal pedalboard's filters in series
    for sr in (44100, 48000):
        eq = dspfx.make("parametric_eq", n_peaks=2, sample_rate=sr, low_shelf_hz=150.0, low_shelf_gain_db=-6.0,
                        peak1_hz=800.0, peak1_gain_db=7.0, peak1_q=1.5, peak2_hz=20000.0, peak2_gain_db=-24.0,
                        peak2_q=20.0, high_shelf_hz=20.0, high_shelf_gain_db=24.0)
        k = eq.knobs()
        board = pedalboard.Pedalboard([
            pedalboard.LowShelfFilter(cutoff_frequency_hz=k["low_shelf_hz"], gain_db=k["low_shelf_gain_db"], q=0.7071),
            pedalboard.PeakFilter(cutoff_frequency_hz=k["peak1_hz"], gain_db=k["peak1_gain_db"], q=k["peak1_q"]),
            pedalboard.PeakFilter(cutoff_frequency_hz=k["peak2_hz"], gain_db=k["peak2_gain_db"], q=k["peak2_q"]),
            pedalboard.HighShelfFilter(
                cutoff_frequency_hz=k["high_shelf_hz"], gain_db=k["high_shelf_gain_db"], q=0.7071
            ),
        ])
        guitar = guitar_di(sample_rate=sr, duration_s=1.0)[0]
        for x in (_noise(n=sr // 2, channels=2, dtype=torch.float32)[0], guitar):
            ref = torch.from_numpy(board(x.numpy(), sr))
            with torch.no_grad():
                y = eq(x.unsqueeze(0))[0]
            assert float(esr(y.double(), ref.double())) <= 1e-6


def test_every_knob_edge_renders():
    eq = dspfx.make("parametric_eq", n_peaks=2, highpass=True, lowpass=True)
    x = _noise(n=2000, dtype=torch.float32)
    table = eq.knob_specs
    for edge in ("minimum", "maximum"):
        eq.set(**{k: getattr(knob, edge) for k, knob in table.items()})
        assert all(eq.knobs()[k] == pytest.approx(getattr(knob, edge), rel=1e-6) for k, knob in table.items())
        with torch.no_grad():
            assert torch.isfinite(eq(x)).all()


def test_gradcheck_every_knob_and_time_varying_controls():
    eq = dspfx.make("parametric_eq", n_peaks=1, highpass=True, lowpass=True).double()
    eq.set(highpass_hz=50.0, low_shelf_gain_db=3.0, peak1_gain_db=-5.0, peak1_q=2.0, high_shelf_gain_db=4.0,
           lowpass_hz=9000.0)
    x = _noise(n=48)
    names = list(eq.knob_specs)
    assert len(names) == 9
    raws = tuple(eq.raw_knobs[k].detach().clone().requires_grad_(True) for k in names)

    def render(*raw):
        return eq(x, **{k: eq.knob_specs[k].to_physical(r) for k, r in zip(names, raw)})

    assert torch.autograd.gradcheck(render, raws, eps=1e-6, atol=1e-6)
    xg = x.clone().requires_grad_(True)
    hz = torch.tensor([[300.0, 2000.0, 700.0]], dtype=torch.float64, requires_grad=True)
    gain = torch.tensor([[6.0, -12.0]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x, f, g: eq(x, peak1_hz=f, high_shelf_gain_db=g), (xg, hz, gain), eps=1e-6, atol=1e-6
    )


@pytest.mark.parametrize("block", [1, 7, 64, 4096])
def test_streaming_equals_offline(block):
    eq = dspfx.make("parametric_eq", highpass=True, **{k: v for k, v in SETTINGS.items() if k != "lowpass_hz"})
    x = _noise(n={1: 400, 7: 1000}.get(block, 5000), channels=2, dtype=torch.float32)
    with torch.no_grad():
        offline = eq(x)
        stream = dspfx.Stream(eq, batch=1, channels=2)
        streamed = torch.cat([stream(x[..., i : i + block]) for i in range(0, x.shape[-1], block)], dim=-1)
    assert (streamed - offline).abs().max() <= 1e-5


@pytest.mark.parametrize("options", [dict(), dict(n_peaks=5, highpass=True), dict(n_peaks=0, lowpass=True)])
def test_spec_and_file_round_trips_keep_options(tmp_path, options):
    eq = dspfx.make("parametric_eq", sample_rate=44100, **options)
    rng = np.random.default_rng(1)
    eq.set(**{k: float(np.exp(rng.uniform(np.log(knob.minimum), np.log(knob.maximum)))) if knob.scale == "log"
              else float(rng.uniform(knob.minimum, knob.maximum)) for k, knob in eq.knob_specs.items()})
    spec = eq.spec()
    assert spec["options"] == {"n_peaks": 3, "highpass": False, "lowpass": False, **options}
    x = _noise(n=2000, dtype=torch.float32)
    with torch.no_grad():
        ref = eq(x)
        built = dspfx.build(spec)
        assert built.knobs() == pytest.approx(eq.knobs())
        assert torch.allclose(built(x), ref, atol=1e-6)
        for name in ("eq.safetensors", "eq.json"):
            dspfx.save(eq, tmp_path / name)
            loaded = dspfx.load(tmp_path / name)
            assert loaded.options() == eq.options() and list(loaded.knobs()) == list(eq.knobs())
            assert torch.allclose(loaded(x), ref, atol=1e-6)


def test_default_peaks_are_log_spaced_over_the_mids():
    k = dspfx.make("parametric_eq", n_peaks=5).knobs()
    peaks = [k[f"peak{i}_hz"] for i in range(1, 6)]
    assert peaks == pytest.approx([250.0, 500.0, 1000.0, 2000.0, 4000.0], rel=1e-5)
    assert dspfx.make("parametric_eq", n_peaks=1).knobs()["peak1_hz"] == pytest.approx(1000.0, rel=1e-5)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="n_peaks must be an int in 0 .. 16, got 17"):
        dspfx.make("parametric_eq", n_peaks=17)
    with pytest.raises(ValueError, match="n_peaks"):
        dspfx.make("parametric_eq", n_peaks="3")
    with pytest.raises(TypeError, match="highpass must be True or False"):
        dspfx.make("parametric_eq", highpass="yes")
    with pytest.raises(TypeError, match="unknown knob or option 'peak4_hz'"):
        dspfx.make("parametric_eq", n_peaks=3, peak4_hz=100.0)
    with pytest.raises(TypeError, match="unknown knob or option 'lowpass_hz'"):
        dspfx.make("parametric_eq", lowpass_hz=100.0)  # the cut is not enabled
    with pytest.raises(ValueError, match="peak1_gain_db = 30 dB is out of range"):
        dspfx.make("parametric_eq", peak1_gain_db=30.0)
    eq = dspfx.make("parametric_eq")
    x = _noise(n=100, dtype=torch.float32)
    with pytest.raises(ValueError, match="outside the knob's range"):
        eq(x, peak2_hz=torch.tensor([[100.0, 30000.0]]))
    with pytest.raises(KeyError, match="peak9_q"):
        eq(x, peak9_q=1.0)


def test_fit_recovers_a_peak_frequency_and_gain():
    x = _noise(n=SR // 4, dtype=torch.float32, seed=3)
    truth = dspfx.make("parametric_eq", n_peaks=1, peak1_hz=2200.0, peak1_gain_db=7.0, peak1_q=2.0,
                       low_shelf_gain_db=-3.0)
    with torch.no_grad():
        target = truth(x)
    model = dspfx.make("parametric_eq", n_peaks=1, peak1_q=2.0, low_shelf_gain_db=-3.0)  # peak at 1 kHz, 0 dB
    model.freeze()
    model.unfreeze("peak1_hz", "peak1_gain_db")
    result = dspfx.fit(model, x, target, steps=80, lr=0.05, loss="esr", progress=False)
    assert result.knobs["peak1_hz"] == pytest.approx(2200.0, rel=0.01)
    assert result.knobs["peak1_gain_db"] == pytest.approx(7.0, abs=0.1)
    assert result.metrics["esr"] < 1e-3


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_no_grad_render_is_bit_identical_to_the_per_section_path(dtype):
    eq = dspfx.make(
        "parametric_eq", n_peaks=3, highpass=True, lowpass=True, peak1_gain_db=6.0, peak2_q=8.0,
        low_shelf_gain_db=-5.0, lowpass_hz=9000.0,
    ).to(dtype)
    x = torch.randn(1, 2, 3000, generator=torch.Generator().manual_seed(0), dtype=torch.float64).to(dtype)
    with torch.no_grad():
        fused = eq(x)  # static knobs, no grad: one compiled pass over the cascade
    per_section = eq(x)  # knob parameters require grad: iir section by section
    assert per_section.requires_grad
    assert torch.equal(fused, per_section.detach())


def test_kept_design_follows_knob_changes_and_call_controls():
    # without autograd the design is kept while the knobs stay put; set(), an optimiser-style
    # in-place step and a control given in the call are all designed afresh
    eq = dspfx.make("parametric_eq", n_peaks=2, peak1_gain_db=6.0)
    x = torch.randn(1, 1, 2000, generator=torch.Generator().manual_seed(1))

    def reference() -> torch.Tensor:
        return eq(x).detach()  # grad enabled: designed from the knobs every call

    with torch.no_grad():
        first, again = eq(x), eq(x)
    assert torch.equal(first, again) and torch.equal(first, reference())
    eq.set(peak1_gain_db=-4.0)
    with torch.no_grad():
        changed = eq(x)
    assert not torch.equal(changed, first) and torch.equal(changed, reference())
    with torch.no_grad():
        eq.raw_knobs["high_shelf_gain_db"].add_(0.5)
        stepped = eq(x)
    assert not torch.equal(stepped, changed) and torch.equal(stepped, reference())
    with torch.no_grad():
        called = eq(x, peak2_gain_db=torch.tensor(9.0))
    assert not torch.equal(called, stepped) and torch.equal(called, eq(x, peak2_gain_db=torch.tensor(9.0)).detach())
