import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dspfx.functional import as_control, upsample_control

# ----------------------------------------------------------------------------- upsample_control


def test_align_corners_endpoints_exact_and_midpoints_linear():
    torch.manual_seed(0)
    frames = 5
    control = torch.randn(2, frames, 3, dtype=torch.float64)
    n = 4 * (frames - 1) + 1  # frame i lands on sample 4 i
    up = upsample_control(control, n, mode="align_corners")
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
def test_align_corners_matches_np_interp(frames, n_samples):
    rng = np.random.default_rng(frames * 10007 + n_samples)
    control = rng.standard_normal((1, frames, 2))
    up = upsample_control(torch.from_numpy(control), n_samples, mode="align_corners").numpy()
    positions = np.linspace(0.0, frames - 1, n_samples)
    for d in range(2):
        expected = np.interp(positions, np.arange(frames), control[0, :, d])
        np.testing.assert_allclose(up[0, :, d], expected, rtol=0, atol=1e-9)
    assert up[0, 0, 0] == control[0, 0, 0]
    assert up[0, -1, 1] == control[0, -1, 1]


def test_causal_frames_are_reached_at_the_end_of_their_hop():
    """Frame i at sample (i + 1) hop - 1, approached linearly from frame i - 1 (frame -1 =
    frame 0 at a render's start, or the given previous frame): DDSP's timing."""
    torch.manual_seed(0)
    frames, hop = 6, 8
    control = torch.randn(2, frames, 3, dtype=torch.float64)
    up = upsample_control(control, frames * hop, mode="causal")
    torch.testing.assert_close(up[:, hop - 1 :: hop], control, rtol=0, atol=1e-14)
    torch.testing.assert_close(up[:, :hop], control[:, :1].expand(2, hop, 3))  # held at the start
    j = 3  # sample i * hop + j is lerp(frame i - 1, frame i, (j + 1) / hop)
    expected = control[:, :-1] + (j + 1) / hop * (control[:, 1:] - control[:, :-1])
    torch.testing.assert_close(up[:, hop + j :: hop], expected, rtol=0, atol=1e-14)
    previous = torch.randn(2, 1, 3, dtype=torch.float64)
    ramped = upsample_control(control, frames * hop, mode="causal", previous=previous)
    torch.testing.assert_close(ramped[:, j], previous[:, 0] + (j + 1) / hop * (control[:, 0] - previous[:, 0]))
    torch.testing.assert_close(ramped[:, hop:], up[:, hop:], rtol=0, atol=0)


@settings(max_examples=50, deadline=None)
@given(frames=st.integers(1, 20), n_samples=st.integers(1, 3000))
def test_causal_matches_np_interp_on_the_fractional_hop_grid(frames, n_samples):
    rng = np.random.default_rng(frames * 10007 + n_samples)
    control = rng.standard_normal((1, frames, 2))
    previous = rng.standard_normal((1, 1, 2))
    up = upsample_control(torch.from_numpy(control), n_samples, mode="causal",
                          previous=torch.from_numpy(previous)).numpy()
    hop = n_samples / frames
    knots = np.concatenate([[-1.0], (np.arange(frames) + 1) * hop - 1])  # frame -1 at sample -1
    values = np.concatenate([previous[0], control[0]])
    if frames == n_samples:  # a hop of one sample: every frame on its own sample
        values, knots = control[0], np.arange(n_samples, dtype=float)
    for d in range(2):
        expected = np.interp(np.arange(n_samples), knots, values[:, d])
        np.testing.assert_allclose(up[0, :, d], expected, rtol=0, atol=1e-9)


@pytest.mark.parametrize("splits", [(6,), (1, 5), (2, 2, 2), (3, 1, 1, 1)])
def test_causal_blocks_of_whole_frames_equal_one_render(splits):
    """Rendering the frames in consecutive groups, each from the previous group's last frame,
    gives the samples of one render of all frames: the property streaming rests on."""
    torch.manual_seed(1)
    hop = 5
    control = torch.randn(1, sum(splits), 2, dtype=torch.float64)
    whole = upsample_control(control, control.shape[1] * hop, mode="causal")
    pieces, start, previous = [], 0, None
    for k in splits:
        block = control[:, start : start + k]
        pieces.append(upsample_control(block, k * hop, mode="causal", previous=previous))
        previous, start = block[:, -1:], start + k
    torch.testing.assert_close(torch.cat(pieces, dim=1), whole, rtol=0, atol=0)


def test_upsample_single_frame_broadcasts_without_copy():
    control = torch.tensor([[[1.5, -2.0]], [[3.0, 4.0]]])
    for mode in ("causal", "align_corners"):
        up = upsample_control(control, 1000, mode=mode)
        assert up.shape == (2, 1000, 2)
        assert up.stride(1) == 0  # an expanded view
        assert up.data_ptr() == control.data_ptr()
        assert torch.equal(up[:, 537], control[:, 0])


def test_upsample_same_length_is_identity():
    control = torch.randn(1, 64, 1)
    assert upsample_control(control, 64, mode="align_corners") is control
    assert upsample_control(control, 64, mode="causal") is control


def test_upsample_gradcheck():
    control = torch.randn(2, 4, 2, dtype=torch.float64, requires_grad=True)
    previous = torch.randn(2, 1, 2, dtype=torch.float64, requires_grad=True)
    for mode in ("causal", "align_corners"):
        assert torch.autograd.gradcheck(lambda c: upsample_control(c, 23, mode=mode), (control,))
    assert torch.autograd.gradcheck(lambda c, p: upsample_control(c, 23, mode="causal", previous=p), (control, previous))
    assert torch.autograd.gradcheck(lambda c, p: upsample_control(c, 24, mode="causal", previous=p), (control, previous))
    single = torch.randn(2, 1, 1, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda c: upsample_control(c, 7, mode="causal"), (single,))


def test_upsample_errors():
    with pytest.raises(ValueError, match=r"\(batch, frames, dims\)"):
        upsample_control(torch.zeros(2, 10), 100, mode="causal")
    with pytest.raises(ValueError, match="n_samples"):
        upsample_control(torch.zeros(1, 10, 1), 0, mode="causal")
    with pytest.raises(TypeError):
        upsample_control(torch.zeros(1, 10, 1), 10.5, mode="causal")
    with pytest.raises(TypeError):
        upsample_control([[[0.0]]], 10, mode="causal")
    with pytest.raises(ValueError, match="mode"):
        upsample_control(torch.zeros(1, 10, 1), 100, mode="nearest")
    with pytest.raises(TypeError, match="mode"):
        upsample_control(torch.zeros(1, 10, 1), 100)  # the mode is always said
    with pytest.raises(ValueError, match="previous"):
        upsample_control(torch.zeros(1, 10, 2), 100, mode="causal", previous=torch.zeros(1, 1, 3))


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
