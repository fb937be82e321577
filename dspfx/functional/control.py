"""Control signals: normalising user-given control values and upsampling them to audio rate.

A control is a tensor shaped ``(batch, frames, dims)``: ``frames`` time steps spread evenly over
the audio (frame 0 at sample 0, the last frame at the last sample), ``dims`` values per step
(1 for a plain knob such as ``cutoff_hz``; more for e.g. harmonic amplitudes). A batch of 1
broadcasts over the audio batch.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["upsample_control", "as_control", "control_hop"]


def upsample_control(control: Tensor, n_samples: int) -> Tensor:
    """Upsample a control from frame rate to audio rate by linear interpolation.

    Frames are spread evenly over the output: frame 0 lands on sample 0 and frame ``F - 1`` on
    sample ``n_samples - 1`` (``torch.nn.functional.interpolate(mode="linear",
    align_corners=True)`` over the time axis), so the endpoints are reproduced exactly.

    Args:
        control: ``(batch, frames, dims)`` tensor.
        n_samples: number of audio samples wanted (>= 1).

    Returns:
        ``(batch, n_samples, dims)`` tensor, same dtype/device. With ``frames == 1`` it is an
        expanded view (no copy); with ``frames == n_samples`` the input itself is returned.
        Differentiable with respect to ``control``.

    Raises:
        ValueError: ``control`` is not 3-D, has no frames, or ``n_samples < 1``.
        TypeError: ``control`` is not a tensor or ``n_samples`` is not an int.
    """
    if not isinstance(control, Tensor):
        raise TypeError(
            f"control must be a torch.Tensor shaped (batch, frames, dims), got {type(control).__name__}"
        )
    if control.ndim != 3:
        raise ValueError(
            f"control must be shaped (batch, frames, dims), got {control.ndim}-D shape "
            f"{tuple(control.shape)}; use as_control() to normalise scalars, (batch,) or (batch, frames)"
        )
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)):
        raise TypeError(f"n_samples must be an int, got {type(n_samples).__name__}")
    n_samples = int(n_samples)
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    batch, frames, dims = control.shape
    if frames < 1:
        raise ValueError(f"control has no frames: shape {tuple(control.shape)}")
    if frames == n_samples:
        return control
    if frames == 1:
        return control.expand(batch, n_samples, dims)
    if not control.is_floating_point():
        control = control.to(torch.get_default_dtype())
    upsampled = F.interpolate(
        control.transpose(1, 2), size=n_samples, mode="linear", align_corners=True
    )
    return upsampled.transpose(1, 2)


def check_signal(x: Any, name: str = "x") -> Tensor:
    """Check that ``x`` is a real floating tensor shaped (batch, channels, samples) and return it
    (the functional recursions' input check; units check more with :func:`dspfx.unit.check_audio`)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor shaped (batch, channels, samples), got {type(x).__name__}")
    if x.ndim != 3:
        raise ValueError(f"{name} must be shaped (batch, channels, samples), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a real floating tensor, got dtype {x.dtype}")
    return x


def _describe(value: Any) -> str:
    shape = getattr(value, "shape", None)
    if shape is not None:
        return f"{type(value).__name__} shaped {tuple(shape)}"
    return f"{type(value).__name__} {value!r}"


def as_control(
    value: Any,
    batch: int,
    *,
    dims: int = 1,
    name: str = "control",
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Normalise a user-given control value to a ``(batch | 1, frames, dims)`` tensor.

    Accepted forms (``B`` is ``batch`` or 1):

    - python number, 0-d tensor/array: constant -> ``(1, 1, dims)`` (expanded view for dims > 1).
    - 1-D ``(B,)``: one value per batch item, constant in time -> ``(B, 1, 1)``, when
      ``dims == 1``; with ``dims > 1``, a 1-D ``(dims,)`` is one set of values for every item
      and frame -> ``(1, 1, dims)``.
    - 2-D: with ``dims == 1`` it is ``(B, frames)`` -> ``(B, frames, 1)``; with ``dims > 1`` it is
      ``(B, dims)`` constant in time -> ``(B, 1, dims)``.
    - 3-D ``(B, frames, dims)``: returned as is (after dtype/device conversion).

    numpy arrays and lists are accepted too. Gradients flow through tensor inputs.

    Args:
        value: the control value.
        batch: audio batch size the control must match (or broadcast to).
        dims: values per time step.
        name: the control's name, used in error messages.
        dtype: wanted floating dtype; default: the tensor's own floating dtype, else torch's
            default dtype.
        device: wanted device; default: the tensor's own device (CPU for non-tensors).

    Returns:
        Tensor shaped ``(B, frames, dims)``.

    Raises:
        ValueError: wrong number of dimensions, batch size or last dimension, or NaN/Inf values;
            the message names the control and the shape given vs expected.
        TypeError: value cannot be turned into a real tensor.
    """
    if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
        raise ValueError(f"batch must be a positive int, got {batch!r}")
    if isinstance(dims, bool) or not isinstance(dims, (int, np.integer)) or dims < 1:
        raise ValueError(f"dims must be a positive int, got {dims!r}")
    batch, dims = int(batch), int(dims)
    given = _describe(value)

    if isinstance(value, Tensor):
        tensor = value
    else:
        try:
            tensor = torch.as_tensor(value)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise TypeError(
                f"control {name!r} must be a number, tensor or array, got {given}"
            ) from exc
    if tensor.is_complex():
        raise TypeError(f"control {name!r} must be real, got dtype {tensor.dtype}")
    if dtype is None:
        dtype = tensor.dtype if tensor.is_floating_point() else torch.get_default_dtype()
    if tensor.dtype != dtype or (device is not None and tensor.device != torch.device(device)):
        tensor = tensor.to(device=device, dtype=dtype)

    expected = (
        f"a number, (batch,), (batch, frames) or (batch, frames, 1) with batch in (1, {batch})"
        if dims == 1
        else f"a number, ({dims},), (batch, {dims}) or (batch, frames, {dims}) with batch in (1, {batch})"
    )
    if tensor.ndim == 0:
        out = tensor.reshape(1, 1, 1).expand(1, 1, dims)
    elif tensor.ndim == 1 and dims > 1 and tensor.shape[0] == dims:
        out = tensor.reshape(1, 1, dims)  # one set of values for every item and frame
    elif tensor.ndim == 1:
        if dims != 1:
            raise ValueError(
                f"control {name!r}: got 1-D shape {tuple(tensor.shape)}, but this control has "
                f"{dims} values per frame; expected {expected}"
            )
        out = tensor.reshape(-1, 1, 1)
    elif tensor.ndim == 2:
        out = tensor.unsqueeze(-1) if dims == 1 else tensor.unsqueeze(1)
    elif tensor.ndim == 3:
        out = tensor
    else:
        raise ValueError(
            f"control {name!r}: got {tensor.ndim}-D shape {tuple(tensor.shape)}; expected {expected}"
        )

    if out.shape[0] not in (1, batch):
        raise ValueError(
            f"control {name!r}: batch size {out.shape[0]} (shape given {tuple(tensor.shape)}) "
            f"does not match the audio batch {batch}; expected {expected}"
        )
    if out.shape[2] != dims:
        raise ValueError(
            f"control {name!r}: last dimension is {out.shape[2]} (shape given "
            f"{tuple(tensor.shape)}), expected {dims}; expected {expected}"
        )
    if out.shape[1] < 1:
        raise ValueError(f"control {name!r}: has no frames (shape given {tuple(tensor.shape)})")
    if not bool(torch.isfinite(tensor).all()):
        raise ValueError(f"control {name!r} contains NaN or Inf values (shape {tuple(tensor.shape)})")
    return out


def control_hop(sample_rate: Any, hop: Any, owner: str) -> int:
    """Samples per control frame of a synth: ``hop``, or DDSP's 250 frames per second
    (64 at 16 kHz, 192 at 48 kHz) when it is None. Raises ValueError naming ``owner``."""
    if hop is None:
        ok = isinstance(sample_rate, (int, float)) and not isinstance(sample_rate, bool) and sample_rate > 0
        return max(1, int(round(float(sample_rate) / 250.0))) if ok else 1  # a bad rate: Unit says so
    if isinstance(hop, bool) or not isinstance(hop, int) or hop < 1:
        raise ValueError(f"{owner}: hop must be a positive int (samples per control frame), got {hop!r}")
    return hop
