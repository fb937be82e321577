import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dspfx.functional import as_control, upsample_control

# ----------------------------------------------------------------------------- upsample_control


def test_upsample_endpoints_exact_and_midpoints_linear():
    torch.manual_seed(0)
    frames = 5
    control = torch.randn(2, frames, 3, dtype=torch.float64)
    n = 4 * (frames - 1) + 1  # frame i lands on sample 4 i
    up = upsample_control(control, n)
    assert up.shape == (2, n, 3)
    assert torch.equal(up[:, 0], control[:, 0])
    assert torch.equal(up[:, -1], control[:, -1])
    torch.testing.assert_close(up[:, ::4], control, rtol=0, atol=1e-14)
    mid = 0.5 * (control[:, :-1] + control[:, 1:])
    torch.testing.assert_close(up[:, 2::4], mid, rtol=0, atol=1e-14)
    quarter = 0.75 * control[:, :-1] + 0.25 * control[:, 1:]
    torch.testing.assert_close(up[:, 1::4], quarter, rtol=0, atol=1e-14)


@settings(max_examples=50, deadline=None)
@given(frames=st.integers(2, 20), n_samples=st.integers(2, 3000))
def test_upsample_matches_np_interp(frames, n_samples):
    rng = np.random.default_rng(frames * 10007 + n_samples)
    control = rng.standard_normal((1, frames, 2))
    up = upsample_control(torch.from_numpy(control), n_samples).numpy()
    positions = np.linspace(0.0, frames - 1, n_samples)
    for d in range(2):
        expected = np.interp(positions, np.arange(frames), control[0, :, d])
        np.testing.assert_allclose(up[0, :, d], expected, rtol=0, atol=1e-9)
    assert up[0, 0, 0] == control[0, 0, 0]
    assert up[0, -1, 1] == control[0, -1, 1]


def test_upsample_single_frame_broadcasts_without_copy():
    control = torch.tensor([[[1.5, -2.0]], [[3.0, 4.0]]])
    up = upsample_control(control, 1000)
    assert up.shape == (2, 1000, 2)
    assert up.stride(1) == 0  # an expanded view
    assert up.data_ptr() == control.data_ptr()
    assert torch.equal(up[:, 537], control[:, 0])


def test_upsample_same_length_is_identity():
    control = torch.randn(1, 64, 1)
    assert upsample_control(control, 64) is control


def test_upsample_gradcheck():
    control = torch.randn(2, 4, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda c: upsample_control(c, 23), (control,))
    single = torch.randn(2, 1, 1, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda c: upsample_control(c, 7), (single,))


def test_upsample_errors():
    with pytest.raises(ValueError, match=r"\(batch, frames, dims\)"):
        upsample_control(torch.zeros(2, 10), 100)
    with pytest.raises(ValueError, match="n_samples"):
        upsample_control(torch.zeros(1, 10, 1), 0)
    with pytest.raises(TypeError):
        upsample_control(torch.zeros(1, 10, 1), 10.5)
    with pytest.raises(TypeError):
        upsample_control([[[0.0]]], 10)


# ----------------------------------------------------------------------------- as_control


def test_as_control_scalars():
    out = as_control(440.0, batch=4, name="cutoff_hz")
    assert out.shape == (1, 1, 1) and out.item() == 440.0
    assert out.dtype == torch.float32
    out = as_control(2, batch=4, dims=3)
    assert out.shape == (1, 1, 3) and torch.equal(out, torch.full((1, 1, 3), 2.0))
    out = as_control(torch.tensor(0.25, dtype=torch.float64), batch=2)
    assert out.shape == (1, 1, 1) and out.dtype == torch.float64


def test_as_control_1d_with_dims_is_one_set_of_values():
    values = torch.tensor([0.1, 0.2, 0.3])
    out = as_control(values, batch=4, dims=3, name="magnitudes")
    assert out.shape == (1, 1, 3) and torch.equal(out[0, 0], values)
    with pytest.raises(ValueError, match=r"'magnitudes'.*1-D shape \(2,\)"):
        as_control(torch.zeros(2), batch=4, dims=3, name="magnitudes")


def test_as_control_1d_2d_3d():
    per_item = torch.tensor([1.0, 2.0, 3.0])
    out = as_control(per_item, batch=3)
    assert out.shape == (3, 1, 1)
    assert torch.equal(out[:, 0, 0], per_item)
    assert as_control(torch.tensor([5.0]), batch=3).shape == (1, 1, 1)

    sweep = torch.randn(3, 10)
    out = as_control(sweep, batch=3)
    assert out.shape == (3, 10, 1) and torch.equal(out[..., 0], sweep)

    per_dim = torch.randn(3, 4)
    out = as_control(per_dim, batch=3, dims=4)
    assert out.shape == (3, 1, 4) and torch.equal(out[:, 0], per_dim)

    full = torch.randn(1, 7, 4)
    assert as_control(full, batch=3, dims=4) is full


def test_as_control_numpy_dtype_device_and_grad():
    out = as_control(np.array([[0.1, 0.2, 0.3]]), batch=2, dtype=torch.float32, device="cpu")
    assert out.shape == (1, 3, 1) and out.dtype == torch.float32
    out = as_control(np.array([1, 2]), batch=2)
    assert out.dtype == torch.get_default_dtype()

    value = torch.randn(2, 5, requires_grad=True)
    out = as_control(value, batch=2)
    out.sum().backward()
    assert torch.equal(value.grad, torch.ones(2, 5))


@pytest.mark.parametrize(
    "value, kwargs, pattern",
    [
        (torch.zeros(3), {"batch": 2}, r"'gain_db'.*batch size 3.*\(3,\)"),
        (torch.zeros(3, 10), {"batch": 2}, r"'gain_db'.*batch size 3"),
        (torch.zeros(2, 10, 2), {"batch": 2}, r"'gain_db'.*last dimension is 2.*expected 1"),
        (torch.zeros(2, 3), {"batch": 2, "dims": 4}, r"'gain_db'.*last dimension is 3.*expected 4"),
        (torch.zeros(2), {"batch": 2, "dims": 3}, r"'gain_db'.*1-D shape \(2,\)"),
        (torch.zeros(1, 1, 1, 1), {"batch": 2}, r"'gain_db'.*4-D"),
        (float("nan"), {"batch": 1}, r"'gain_db'.*NaN or Inf"),
        (torch.tensor([1.0, float("inf")]), {"batch": 2}, r"'gain_db'.*NaN or Inf"),
    ],
)
def test_as_control_errors_name_the_control(value, kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        as_control(value, name="gain_db", **kwargs)


def test_as_control_rejects_non_numeric():
    with pytest.raises(TypeError, match="'mix'"):
        as_control("loud", batch=1, name="mix")
