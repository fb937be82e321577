"""dspfx.functional.ladder: the compiled ladder loop, its exact adjoint, state and options."""

import numpy as np
import pedalboard
import pytest
import torch

from dspfx.functional.ladder import LADDER_MODES, ladder, ladder_drive_gain, ladder_tanh_table
from dspfx.fitting.metrics import esr


def _noise(n, channels=1, batch=1, seed=0, scale=0.5, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(batch, channels, n, generator=g, dtype=dtype)


@pytest.mark.parametrize("mode", list(LADDER_MODES))
def test_matches_pedalboard_every_mode(mode):
    x = _noise(4000, channels=2, dtype=torch.float32)
    plugin = pedalboard.LadderFilter(
        mode=getattr(pedalboard.LadderFilter.Mode, mode.upper()), cutoff_hz=1200.0, resonance=0.8, drive=4.0
    )
    ref = torch.from_numpy(plugin(x[0].numpy(), 44100))
    y, _ = ladder(x, 1200.0, 0.8, 4.0, 44100, mode)
    assert y.dtype == torch.float32
    assert float(esr(y[0].double(), ref.double())) <= 1e-6


def test_table_is_tanh_at_its_nodes_and_close_between():
    table = ladder_tanh_table()
    nodes = np.linspace(-5.0, 5.0, 128)
    assert np.allclose(table, np.tanh(nodes), atol=1e-15)
    # the table and the exact tanh agree closely for small inputs, and differ slightly
    x = _noise(2000, scale=0.3)
    y_table, _ = ladder(x, 2000.0, 0.5, 2.0, 48000, "lpf24")
    y_exact, _ = ladder(x, 2000.0, 0.5, 2.0, 48000, "lpf24", saturation="tanh")
    diff = float(esr(y_table, y_exact))
    assert 0.0 < diff < 1e-3


def test_drive_gain_formula():
    assert ladder_drive_gain(1.0) == pytest.approx(0.6103 + 0.3903)
    assert ladder_drive_gain(10.0) == pytest.approx(10.0**-2.642 * 0.6103 + 0.3903)


def test_linear_small_signal_lowpass_has_unit_dc_gain_without_feedback_compensation():
    # A tiny DC input into lpf24 at zero resonance: the stages pass DC with gain 1, the loop
    # feeds back 4*0.1*(out - 0.5*in), so DC gain = 1.2 * (1 + 0.2) / (1 + 0.4) with drive 1.
    x = torch.full((1, 1, 20000), 1e-4, dtype=torch.float64)
    y, _ = ladder(x, 2000.0, 0.0, 1.0, 48000, "lpf24", saturation="tanh")
    g1 = ladder_drive_gain(1.0)
    g2 = ladder_drive_gain(1.0)
    # a = g1*x - 0.4*(g2*s4 - 0.5*g1*x), s4 = a at DC  ->  a = g1*x*(1 + 0.2)/(1 + 0.4*g2)
    expected = 1.2 * g1 * 1e-4 * 1.2 / (1.0 + 0.4 * g2)
    assert float(y[0, 0, -1]) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("saturation", ["tanh", "table"])
@pytest.mark.parametrize("mode", ["lpf24", "hpf12", "bpf24"])
def test_gradcheck_time_varying_knobs_and_state(mode, saturation):
    torch.manual_seed(1)
    n = 48
    x = _noise(n, batch=2, seed=2).requires_grad_(True)
    cutoff = (500.0 + 3000.0 * torch.rand(2, 1, n, dtype=torch.float64)).requires_grad_(True)
    resonance = (0.05 + 0.9 * torch.rand(1, 1, n, dtype=torch.float64)).requires_grad_(True)
    drive = (1.2 + 5.0 * torch.rand(2, 1, 1, dtype=torch.float64)).requires_grad_(True)
    state = (0.1 * torch.randn(2, 1, 5, dtype=torch.float64)).requires_grad_(True)

    def f(x, cutoff, resonance, drive, state):
        return ladder(x, cutoff, resonance, drive, 48000, mode, state=state, saturation=saturation)

    assert torch.autograd.gradcheck(f, (x, cutoff, resonance, drive, state), eps=1e-6, atol=1e-6)


def test_state_carries_between_blocks():
    x = _noise(1000, channels=2)
    full, s_full = ladder(x, 700.0, 0.9, 8.0, 48000, "bpf12")
    state = None
    parts = []
    for i in range(0, 1000, 333):
        y, state = ladder(x[..., i : i + 333], 700.0, 0.9, 8.0, 48000, "bpf12", state=state)
        parts.append(y)
    assert torch.allclose(torch.cat(parts, -1), full, atol=1e-12)
    assert torch.allclose(state, s_full, atol=1e-12)


def test_bad_inputs_raise():
    x = _noise(10)
    with pytest.raises(ValueError, match="ladder mode must be one of"):
        ladder(x, 100.0, 0.0, 1.0, 48000, "lpf36")
    with pytest.raises(ValueError, match="saturation"):
        ladder(x, 100.0, 0.0, 1.0, 48000, saturation="cubic")
    with pytest.raises(ValueError, match=r"state must be shaped \(batch, channels, 5\)"):
        ladder(x, 100.0, 0.0, 1.0, 48000, state=torch.zeros(1, 1, 4))
    with pytest.raises(ValueError, match="does not broadcast"):
        ladder(x, torch.ones(3, 1, 10), 0.0, 1.0, 48000)
    with pytest.raises(ValueError, match=r"\(batch, channels, samples\)"):
        ladder(x[0], 100.0, 0.0, 1.0, 48000)


def test_float32_runs_pedalboards_arithmetic_where_float64_drifts_away():
    # At cutoff 20 kHz, resonance 1, drive 100 (44.1 kHz) the self-oscillating loop is chaotic:
    # float64 arithmetic ends far from pedalboard's float32 render, the float32 path stays with it.
    from dspfx.signals import log_sweep

    sr = 44100
    x = log_sweep(20.0, 20000.0, 0.5, sr, amplitude=0.5)
    plugin = pedalboard.LadderFilter(cutoff_hz=20000.0, resonance=1.0, drive=100.0)
    ref = torch.from_numpy(plugin(x[0].numpy(), sr)).double()
    y32, s32 = ladder(x, 20000.0, 1.0, 100.0, sr)
    y64, _ = ladder(x.double(), 20000.0, 1.0, 100.0, sr)
    assert y32.dtype == s32.dtype == torch.float32
    assert float(esr(y32[0].double(), ref)) <= 1e-6
    assert float(esr(y64[0], ref)) > 1e-3
    # away from the chaotic corner both paths agree (float32 rounding only)
    y32, _ = ladder(x, 900.0, 0.5, 3.0, sr, "lpf24")
    y64, _ = ladder(x.double(), 900.0, 0.5, 3.0, sr, "lpf24")
    assert float(esr(y32.double(), y64)) <= 1e-9
