import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dspfx.functional import db_to_gain, gain_to_db, power_to_db


def test_db_to_gain_known_levels():
    db = torch.tensor([-40.0, -20.0, -6.0, 0.0, 6.0, 20.0], dtype=torch.float64)
    expected = 10.0 ** (db.numpy() / 20.0)
    np.testing.assert_allclose(db_to_gain(db).numpy(), expected, rtol=1e-14)
    assert db_to_gain(20.0).item() == pytest.approx(10.0, rel=1e-6)
    assert db_to_gain(0.0).item() == 1.0


def test_dtypes_and_python_numbers():
    assert db_to_gain(3.0).dtype == torch.float32
    assert db_to_gain(3).dtype == torch.float32
    assert db_to_gain(torch.tensor([1.0], dtype=torch.float64)).dtype == torch.float64
    assert db_to_gain(torch.tensor([1, 2])).dtype == torch.float32
    assert gain_to_db(torch.tensor([0.5], dtype=torch.float64)).dtype == torch.float64
    assert power_to_db(0.25).dtype == torch.float32


@settings(max_examples=50, deadline=None)
@given(st.floats(min_value=-110.0, max_value=110.0))
def test_round_trip_db_gain_db(db):
    x = torch.tensor(db, dtype=torch.float64)
    assert gain_to_db(db_to_gain(x)).item() == pytest.approx(db, abs=1e-9)


@settings(max_examples=50, deadline=None)
@given(st.floats(min_value=1e-5, max_value=1e5))
def test_round_trip_gain_db_gain_and_power(gain):
    g = torch.tensor(gain, dtype=torch.float64)
    assert db_to_gain(gain_to_db(g)).item() == pytest.approx(gain, rel=1e-12)
    # power is amplitude squared: the same level in dB
    assert power_to_db(g**2).item() == pytest.approx(gain_to_db(g).item(), abs=1e-9)


def test_floor():
    g = torch.tensor([0.0, 1e-9, -1e-9, 1e-3, -1e-3], dtype=torch.float64)
    out = gain_to_db(g)
    assert out[0].item() == pytest.approx(-120.0)
    assert out[1].item() == pytest.approx(-120.0)  # below the floor
    assert out[2].item() == pytest.approx(-120.0)
    assert out[3].item() == pytest.approx(-60.0)
    assert out[4].item() == pytest.approx(-60.0)  # sign ignored
    assert gain_to_db(g, floor_db=-50.0)[3].item() == pytest.approx(-50.0)
    p = torch.tensor([0.0, 1e-13, 1e-6, -1.0], dtype=torch.float64)
    np.testing.assert_allclose(power_to_db(p).numpy(), [-120.0, -120.0, -60.0, -120.0])
    assert power_to_db(p, floor_db=-40.0)[2].item() == pytest.approx(-40.0)
    with pytest.raises(ValueError, match="floor_db"):
        gain_to_db(g, floor_db=math.inf)


def test_gradients_finite_and_analytic():
    db = torch.tensor([-12.0, 0.0, 7.5], dtype=torch.float64, requires_grad=True)
    gain = db_to_gain(db)
    gain.sum().backward()
    np.testing.assert_allclose(db.grad.numpy(), gain.detach().numpy() * math.log(10) / 20, rtol=1e-12)

    g = torch.tensor([0.0, 0.5, 2.0], dtype=torch.float64, requires_grad=True)
    gain_to_db(g).sum().backward()
    assert torch.isfinite(g.grad).all()
    assert g.grad[0].item() == 0.0  # clamped at the floor
    assert g.grad[1].item() == pytest.approx(20 / (math.log(10) * 0.5))
