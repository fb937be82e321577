"""The tone stack: circuit-exact response (direct nodal solve), bilinear map, tapers, gradients,
streaming, save/load, knob recovery, errors."""

import math

import numpy as np
import pytest
import scipy.signal
import torch

import dspfx
import dspfx.amps.tonestack  # noqa: F401  (registers the unit until dspfx.amps imports it)
from dspfx.amps.tonestack import Tonestack
from dspfx.functional.tonestack import (
    LOG_TAPER_BASE,
    TONESTACK_MODELS,
    pot_taper,
    tonestack_analog_coefficients,
)

MODELS = list(TONESTACK_MODELS)
# knob settings (bass, mid, treble), edges included
SETTINGS = [
    (0.0, 0.0, 0.0),
    (1.0, 1.0, 1.0),
    (0.5, 0.5, 0.5),
    (0.0, 1.0, 0.3),
    (1.0, 0.0, 0.8),
    (0.2, 0.7, 1.0),
    (0.9, 0.1, 0.0),
    (0.35, 0.6, 0.45),
]
FREQS = np.geomspace(20.0, 5000.0, 20)


def _taper(x: float, taper: str) -> float:
    """The stated pot laws, written independently of the module: linear, and audio taper
    (81^x - 1) / 80 (10 % at half rotation)."""
    return x if taper == "linear" else (81.0**x - 1.0) / 80.0


def nodal_response(model: str, bass: float, mid: float, treble: float, freqs_hz) -> np.ndarray:
    """Direct numerical solve of the tone-stack circuit, one complex linear system per frequency.

    Modified nodal analysis: unknowns are the node voltages of in, n1, out, n2, n3, n5, n4
    (ground is the reference), the source current, and one current per resistor (so a pot
    section of 0 ohm is exact: its branch equation reads V_a - V_b = 0). Capacitors are
    admittances j w C. The source is an ideal 1 V at node "in"; the output node is unloaded.
    """
    c = TONESTACK_MODELS[model]
    t = _taper(treble, c.treble_taper)
    m = _taper(mid, c.mid_taper)
    b = _taper(bass, c.bass_taper)
    if c.mid_wiring == "pot":
        mid_upper = (1 - m) * c.r3_mid
    else:  # wiper tied to the top lug: the upper section is shorted
        mid_upper = 0.0
    nodes = ["in", "n1", "out", "n2", "n3", "n5", "n4"]
    idx = {n: i for i, n in enumerate(nodes)}
    resistors = [
        ("n1", "out", (1 - t) * c.r1_treble),
        ("out", "n2", t * c.r1_treble),
        ("n2", "n3", b * c.r2_bass),
        ("n3", "n5", mid_upper),
        ("n5", "gnd", m * c.r3_mid),
        ("in", "n4", c.r4_slope),
    ]
    capacitors = [("in", "n1", c.c1_treble), ("n4", "n2", c.c2_bass), ("n4", "n5", c.c3_mid)]
    n_v = len(nodes)
    size = n_v + 1 + len(resistors)
    out = []
    for f in np.atleast_1d(freqs_hz):
        w = 2 * math.pi * f
        A = np.zeros((size, size), dtype=complex)
        rhs = np.zeros(size, dtype=complex)
        for p, q, cap in capacitors:
            y = 1j * w * cap
            for u, v in ((p, q), (q, p)):
                if u != "gnd":
                    A[idx[u], idx[u]] += y
                    if v != "gnd":
                        A[idx[u], idx[v]] -= y
        # source: current j_s flows out of node "in" into the circuit; V_in = 1
        k = n_v
        A[idx["in"], k] += -1.0  # KCL at "in": currents leaving through elements = j_s
        A[k, idx["in"]] = 1.0
        rhs[k] = 1.0
        for r_i, (p, q, r) in enumerate(resistors):
            k = n_v + 1 + r_i  # branch current from p to q
            if p != "gnd":
                A[idx[p], k] += 1.0
                A[k, idx[p]] += 1.0
            if q != "gnd":
                A[idx[q], k] -= 1.0
                A[k, idx[q]] -= 1.0
            A[k, k] = -r  # V_p - V_q - R I = 0
        sol = np.linalg.solve(A, rhs)
        out.append(sol[idx["out"]])
    return np.asarray(out)


def _db(h):
    return 20 * np.log10(np.maximum(np.abs(h), 1e-300))


def _assert_same_response(got: np.ndarray, want: np.ndarray, tol_db: float = 0.01):
    # where the circuit is silent (blackface with every knob at 0: the output is shorted to
    # ground) the responses must both be zero; elsewhere they agree within tol_db
    loud = np.abs(want) > 1e-9
    assert np.all(np.abs(got[~loud]) < 1e-9)
    if loud.any():
        err = np.abs(_db(got[loud]) - _db(want[loud]))
        assert err.max() < tol_db, err.max()


# ---------------------------------------------------------------------------- circuit exactness


@pytest.mark.parametrize("model", MODELS)
def test_analog_response_equals_direct_nodal_solve(model):
    for bass, mid, treble in SETTINGS:
        unit = Tonestack(48000, model=model, bass=bass, mid=mid, treble=treble).double()
        got = unit.complex_response(FREQS, analog=True).detach().numpy()
        want = nodal_response(model, bass, mid, treble, FREQS)
        _assert_same_response(got, want)
        # the complex values agree too (phase included)
        assert np.allclose(got, want, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("sample_rate", [44100, 48000])
def test_digital_response_is_the_bilinear_map_of_the_circuit(model, sample_rate):
    # H_d(e^{jw}) = H_a(j c tan(w/2)): the digital filter equals the nodal solve at the warped
    # frequency (to 1e-6 dB at all 20 frequencies); at the frequency itself the plain transform
    # stays within 0.01 dB up to 500 Hz (the warping grows as f^2 above), and the warped one is
    # exact at its warping frequency
    for bass, mid, treble in SETTINGS:
        for warp_hz in (None, 1000.0):
            unit = Tonestack(sample_rate, model=model, warp_hz=warp_hz, bass=bass, mid=mid, treble=treble).double()
            got = unit.complex_response(FREQS).detach().numpy()
            if warp_hz is None:
                c = 2 * sample_rate
            else:
                c = 2 * math.pi * warp_hz / math.tan(math.pi * warp_hz / sample_rate)
            warped = c * np.tan(math.pi * FREQS / sample_rate) / (2 * math.pi)
            want = nodal_response(model, bass, mid, treble, warped)
            _assert_same_response(got, want, tol_db=1e-6)
            if warp_hz is None:
                near = FREQS <= 500.0
                _assert_same_response(got[near], nodal_response(model, bass, mid, treble, FREQS[near]))
            else:
                at = np.array([warp_hz])
                got_at = unit.complex_response(at).detach().numpy()
                _assert_same_response(got_at, nodal_response(model, bass, mid, treble, at), tol_db=1e-6)


def test_closed_form_is_yeh_and_smith_eq_1_2():
    # the coefficients printed by Yeh & Smith (DAFx 2006) for the 5F6-A, in t, m, l
    c = TONESTACK_MODELS["bassman"]
    R1, R2, R3, R4, C1, C2, C3 = c.r1_treble, c.r2_bass, c.r3_mid, c.r4_slope, c.c1_treble, c.c2_bass, c.c3_mid
    for t, m, L in [(0.3, 0.6, 0.2), (1.0, 0.0, 1.0), (0.0, 1.0, 0.0), (0.7, 0.4, 0.9)]:
        b1 = t * C1 * R1 + m * C3 * R3 + L * (C1 * R2 + C2 * R2) + (C1 * R3 + C2 * R3)
        b2 = (t * (C1 * C2 * R1 * R4 + C1 * C3 * R1 * R4) - m**2 * (C1 * C3 * R3**2 + C2 * C3 * R3**2)
              + m * (C1 * C3 * R1 * R3 + C1 * C3 * R3**2 + C2 * C3 * R3**2)
              + L * (C1 * C2 * R1 * R2 + C1 * C2 * R2 * R4 + C1 * C3 * R2 * R4)
              + L * m * (C1 * C3 * R2 * R3 + C2 * C3 * R2 * R3)
              + (C1 * C2 * R1 * R3 + C1 * C2 * R3 * R4 + C1 * C3 * R3 * R4))
        b3 = (L * m * (C1 * C2 * C3 * R1 * R2 * R3 + C1 * C2 * C3 * R2 * R3 * R4)
              - m**2 * (C1 * C2 * C3 * R1 * R3**2 + C1 * C2 * C3 * R3**2 * R4)
              + m * (C1 * C2 * C3 * R1 * R3**2 + C1 * C2 * C3 * R3**2 * R4)
              + t * C1 * C2 * C3 * R1 * R3 * R4 - t * m * C1 * C2 * C3 * R1 * R3 * R4
              + t * L * C1 * C2 * C3 * R1 * R2 * R4)
        a1 = (C1 * R1 + C1 * R3 + C2 * R3 + C2 * R4 + C3 * R4) + m * C3 * R3 + L * (C1 * R2 + C2 * R2)
        a2 = (m * (C1 * C3 * R1 * R3 - C2 * C3 * R3 * R4 + C1 * C3 * R3**2 + C2 * C3 * R3**2)
              + L * m * (C1 * C3 * R2 * R3 + C2 * C3 * R2 * R3) - m**2 * (C1 * C3 * R3**2 + C2 * C3 * R3**2)
              + L * (C1 * C2 * R2 * R4 + C1 * C2 * R1 * R2 + C1 * C3 * R2 * R4 + C2 * C3 * R2 * R4)
              + (C1 * C2 * R1 * R4 + C1 * C3 * R1 * R4 + C1 * C2 * R3 * R4 + C1 * C2 * R1 * R3
                 + C1 * C3 * R3 * R4 + C2 * C3 * R3 * R4))
        a3 = (L * m * (C1 * C2 * C3 * R1 * R2 * R3 + C1 * C2 * C3 * R2 * R3 * R4)
              - m**2 * (C1 * C2 * C3 * R1 * R3**2 + C1 * C2 * C3 * R3**2 * R4)
              + m * (C1 * C2 * C3 * R3**2 * R4 + C1 * C2 * C3 * R1 * R3**2 - C1 * C2 * C3 * R1 * R3 * R4)
              + L * C1 * C2 * C3 * R1 * R2 * R4 + C1 * C2 * C3 * R1 * R3 * R4)
        # Yeh's l is the bass section fraction: invert the audio taper to get the pot rotation
        bass = math.log1p(L * (LOG_TAPER_BASE - 1)) / math.log(LOG_TAPER_BASE)
        args = (torch.tensor(v, dtype=torch.float64) for v in (t, m, bass))
        b, a = tonestack_analog_coefficients("bassman", *args)
        np.testing.assert_allclose(b.numpy(), [0.0, b1, b2, b3], rtol=1e-12)
        np.testing.assert_allclose(a.numpy(), [1.0, a1, a2, a3], rtol=1e-12)


def test_pot_tapers():
    x = torch.linspace(0, 1, 11, dtype=torch.float64)
    assert torch.equal(pot_taper(x, "linear"), x)
    log = pot_taper(x, "log")
    assert float(log[0]) == 0.0 and float(log[-1]) == pytest.approx(1.0, abs=1e-15)
    assert float(log[5]) == pytest.approx(0.1)  # audio taper: 10 % at half rotation
    assert torch.all(log[1:] > log[:-1])
    with pytest.raises(ValueError, match="taper"):
        pot_taper(x, "reverse_log")


def test_filter_equals_scipy_lfilter_and_knobs_do_what_they_say():
    x = torch.randn(1, 1, 2000, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    unit = Tonestack(48000, model="jcm800", bass=0.3, mid=0.8, treble=0.6).double()
    b, a = unit.coefficients()
    want = scipy.signal.lfilter(b.detach().numpy(), a.detach().numpy(), x[0, 0].numpy())
    np.testing.assert_allclose(unit(x)[0, 0].detach().numpy(), want, atol=1e-10)

    def level(**k):
        _, db = Tonestack(48000, **k).double().frequency_response(torch.tensor([60.0, 600.0, 6000.0]))
        return db

    lo, hi = level(bass=0.1), level(bass=0.9)
    assert hi[0] - lo[0] > 6  # bass lifts the lows ...
    lo, hi = level(treble=0.1), level(treble=0.9)
    assert hi[2] - lo[2] > 6  # ... treble the highs ...
    lo, hi = level(mid=0.1), level(mid=0.9)
    assert hi[1] - lo[1] > 3  # ... mid the middle


# ---------------------------------------------------------------------------- the contract


def test_gradcheck_input_and_time_varying_knobs():
    gen = torch.Generator().manual_seed(1)
    unit = Tonestack(48000, model="bassman").double()
    x = torch.randn(1, 1, 64, dtype=torch.float64, generator=gen, requires_grad=True)
    bass = torch.tensor([[0.2, 0.6, 0.4]], dtype=torch.float64, requires_grad=True)
    mid = torch.tensor([[0.7, 0.3]], dtype=torch.float64, requires_grad=True)
    treble = torch.tensor([0.55], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x, b, m, t: unit(x, bass=b, mid=m, treble=t), (x, bass, mid, treble), eps=1e-6, atol=1e-6
    )
    # and through the knobs themselves (the raw parameters)
    unit.set(bass=0.3, mid=0.6, treble=0.7)
    y = unit(x.detach()).square().sum()
    grads = torch.autograd.grad(y, [unit.raw_knobs[k] for k in ("bass", "mid", "treble")])
    assert all(torch.isfinite(g) and g != 0 for g in grads)


@pytest.mark.parametrize("block", [1, 7, 64, 4096])
def test_streaming_equals_offline(block):
    x = torch.randn(1, 2, 700, generator=torch.Generator().manual_seed(2))
    unit = Tonestack(48000, model="blackface", bass=0.8, mid=0.2, treble=0.9)
    with torch.no_grad():
        ref = unit(x)
        stream = dspfx.Stream(unit, batch=1, channels=2)
        got = torch.cat([stream(x[..., i : i + block]) for i in range(0, x.shape[-1], block)], dim=-1)
    assert (got - ref).abs().max() < 1e-5


@pytest.mark.parametrize("model", MODELS)
def test_every_edge_renders(model):
    x = torch.randn(2, 1, 512, generator=torch.Generator().manual_seed(3))
    for setting in [(0.0, 0.0, 0.0), (1.0, 1.0, 1.0), (0.0, 1.0, 0.0), (1.0, 0.0, 1.0)]:
        unit = Tonestack(48000, model=model, **dict(zip(("bass", "mid", "treble"), setting)))
        y = unit(x)
        assert torch.isfinite(y).all() and y.abs().max() <= 2 * x.abs().max()


def test_spec_and_file_round_trip(tmp_path):
    x = torch.randn(1, 1, 800, generator=torch.Generator().manual_seed(4))
    unit = Tonestack(44100, model="jcm800", warp_hz=2000.0, bass=0.25, mid=0.0, treble=1.0)
    with torch.no_grad():
        ref = unit(x)
        for name in ("ts.safetensors", "ts.json"):
            dspfx.save(unit, tmp_path / name)
            again = dspfx.load(tmp_path / name)
            assert isinstance(again, Tonestack) and again.model == "jcm800" and again.warp_hz == 2000.0
            assert again.knobs() == pytest.approx(unit.knobs())
            assert torch.allclose(again(x), ref, atol=1e-6)


def test_fit_recovers_hidden_knobs():
    sr = 48000
    x = torch.randn(1, 1, sr // 4, generator=torch.Generator().manual_seed(5))
    hidden = dict(bass=0.3, mid=0.75, treble=0.65)
    with torch.no_grad():
        target = Tonestack(sr, model="bassman", **hidden)(x)
    model = Tonestack(sr, model="bassman")
    result = dspfx.fit(model, x, target, steps=150, lr=0.05, loss="esr", align_latency=False, progress=False)
    for k, v in hidden.items():
        assert result.knobs[k] == pytest.approx(v, abs=0.05), (k, result.knobs)


def test_bad_knobs_and_models_raise():
    with pytest.raises(ValueError, match="model"):
        Tonestack(48000, model="plexi")
    with pytest.raises(ValueError, match="out of range"):
        Tonestack(48000, bass=1.2)
    with pytest.raises(ValueError, match="out of range"):
        Tonestack(48000).set(treble=-0.1)
    with pytest.raises(ValueError, match="outside the knob's range"):
        Tonestack(48000)(torch.zeros(1, 1, 16), mid=torch.tensor([[0.5, 1.5]]))
    with pytest.raises(ValueError, match="warp_hz"):
        Tonestack(48000, warp_hz=30000.0)
    with pytest.raises(TypeError, match="warp_hz"):
        Tonestack(48000, warp_hz="1k")
    with pytest.raises(TypeError, match="unknown"):
        Tonestack(48000, volume=0.5)


def test_float32_render_equals_float64_render():
    # the design and the recursion run in float64: a float32 unit only rounds its output
    x = torch.randn(1, 2, 8000, generator=torch.Generator().manual_seed(6))
    for model in MODELS:
        unit = Tonestack(48000, model=model, bass=1.0, mid=1.0, treble=1.0)
        with torch.no_grad():
            y32 = unit(x)
            y64 = unit.double()(x.double())
        assert y32.dtype == torch.float32
        assert (y32.double() - y64).abs().max() < 1e-6 * max(1.0, float(y64.abs().max()))
