"""trim: a signed level and a DC offset, y = scale * x + dc."""

from __future__ import annotations

import math

import numpy as np
import pedalboard
import torch

import dspfx


def test_trim_is_the_affine_map_and_agrees_with_pedalboards_gain_and_invert():
    x = torch.randn(2, 2, 4800, generator=torch.Generator().manual_seed(0)) * 0.3
    with torch.no_grad():
        torch.testing.assert_close(dspfx.make("trim", scale=-0.7, dc=0.05)(x), -0.7 * x + 0.05)
        y = dspfx.make("trim", scale=-0.5)(x[:1])[0]
    board = pedalboard.Pedalboard([pedalboard.Gain(gain_db=20 * math.log10(0.5)), pedalboard.Invert()])
    ref = board(x[0].numpy(), 48000)
    assert np.sum((y.numpy() - ref) ** 2) / np.sum(ref**2) < 1e-12


def test_trim_gradients_are_exact_in_float64():
    unit = dspfx.make("trim", scale=1.3, dc=-0.2).double()
    x = torch.randn(1, 1, 32, dtype=torch.float64, requires_grad=True)
    scale = torch.full((1, 32), 1.3, dtype=torch.float64, requires_grad=True)
    dc = torch.full((1, 32), -0.2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, s, d: unit(a, scale=s, dc=d), (x, scale, dc))


def test_trim_round_trips_through_its_spec():
    unit = dspfx.make("trim", scale=-2.5, dc=0.125)
    again = dspfx.build(unit.spec())
    assert again.knobs() == unit.knobs()
