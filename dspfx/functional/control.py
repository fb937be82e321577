"""Control signals: normalising user-given control values and upsampling them to audio rate.

A control is a tensor shaped ``(batch, frames, dims)``: ``frames`` time steps, ``dims`` values
per step (1 for a plain knob such as ``cutoff_hz``; more for e.g. harmonic amplitudes). A batch
of 1 broadcasts over the audio batch.

Frame timing, the one convention of every unit (``mode="causal"``): ``F`` frames over a block of
``n`` samples sit on a grid of hop ``h = n / F`` (a synth's own ``hop`` when it renders
``frames * hop`` samples); frame ``i`` is reached at sample ``(i + 1) h - 1`` and approached
linearly from frame ``i - 1`` over the ``h`` samples before it. Frame ``-1`` is the last frame
of the previous block (:class:`Frames`, which :class:`dspfx.Stream` hands a unit), or frame 0
itself at the start of a render. Nothing depends on a later frame, so a render in blocks of
whole frames equals the render of all frames at once, time-varying controls included; the
price is one hop of control latency (DDSP's timing). ``mode="align_corners"`` (frame 0 on
sample 0, the last frame on the last sample) is kept for resampling a curve to a length.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["upsample_control", "as_control", "as_signal", "control_frames", "control_hop", "Frames", "split_frames",
           "frame_positions", "CONTROL_MODES"]

#: Modes of :func:`upsample_control`.
CONTROL_MODES = ("causal", "align_corners")


class Frames(NamedTuple):
    """A frame-rate control value together with the value given for the block before it.

    :class:`dspfx.Stream` wraps every time-varying control it is given in one of these, so that
    the unit that reads it can start the block from the previous block's last frame
    (:func:`split_frames`). ``values`` and ``previous`` are as a user gives a control (numbers,
    ``(batch, frames)``, ``(batch, frames, dims)`` ...); ``previous`` is None at the start.
    """

    values: Any
    previous: Any = None


def split_frames(value: Any) -> tuple[Any, Any]:
    """``(values, previous)`` of a control value: a :class:`Frames` is unpacked, anything else
    has no previous block (None)."""
    if isinstance(value, Frames):
        return value.values, value.previous
    return value, None


def frame_positions(frames: int, n_samples: int, mode: str, device: Any = None) -> tuple[Tensor, Tensor]:
    """Where each of ``n_samples`` samples sits between control frames: ``(left, weight)``, the
    index of the frame before it (int64) and the weight of the one after (float64), so that the
    sample's value is ``c[left] + weight * (c[left + 1] - c[left])``.

    ``mode="causal"``: ``frames`` counts the previous block's last frame as row 0 (``F + 1`` rows
    for ``F`` new frames); sample ``t`` sits at ``(t + 1) F / n`` rows past row 0.
    ``mode="align_corners"``: row 0 on sample 0, the last row on the last sample.
    """
    if mode not in CONTROL_MODES:
        raise ValueError(f"mode must be one of {CONTROL_MODES}, got {mode!r}")
    if frames < 2:
        raise ValueError(f"frame_positions needs at least 2 frames to interpolate between, got {frames}")
    t = torch.arange(n_samples, dtype=torch.float64, device=device)
    if mode == "causal":
        pos = (t + 1.0) * ((frames - 1) / n_samples)
    else:
        pos = t * ((frames - 1) / max(n_samples - 1, 1))
    left = pos.floor().clamp(max=frames - 2).long()
    return left, pos - left


def upsample_control(control: Tensor, n_samples: int, *, mode: str, previous: Tensor | None = None) -> Tensor:
    """Upsample a control from frame rate to audio rate by linear interpolation.

    Args:
        control: ``(batch, frames, dims)`` tensor.
        n_samples: number of audio samples wanted (>= 1).
        mode: ``"causal"`` (every unit's convention, see the module docstring: frame ``i`` is
            reached at sample ``(i + 1) n / frames - 1``, approached from ``previous``) or
            ``"align_corners"`` (frame 0 on sample 0, the last frame on the last sample:
            ``torch.nn.functional.interpolate(mode="linear", align_corners=True)``).
        previous: causal mode only: ``(batch|1, 1, dims)``, the frame before ``control``'s first
            (the previous block's last); None: frame 0 itself (a render's start).

    Returns:
        ``(batch, n_samples, dims)`` tensor, same dtype/device. With ``frames == 1`` (and no
        ``previous``) it is an expanded view (no copy); with ``frames == n_samples`` in causal
        mode or align_corners mode the input itself is returned (a causal hop of one sample
        reaches every frame on its own sample). Differentiable with respect to ``control`` and
        ``previous``.

    Raises:
        ValueError: ``control`` is not 3-D, has no frames, ``n_samples < 1``, an unknown mode, or
            a ``previous`` frame of the wrong shape.
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
    if mode not in CONTROL_MODES:
        raise ValueError(f"mode must be one of {CONTROL_MODES}, got {mode!r}")
    n_samples = int(n_samples)
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    batch, frames, dims = control.shape
    if frames < 1:
        raise ValueError(f"control has no frames: shape {tuple(control.shape)}")
    if not control.is_floating_point():
        control = control.to(torch.get_default_dtype())
    if mode == "align_corners" or previous is None:
        if frames == n_samples:
            return control
        if frames == 1:
            return control.expand(batch, n_samples, dims)
    if mode == "align_corners":
        upsampled = F.interpolate(control.transpose(1, 2), size=n_samples, mode="linear", align_corners=True)
        return upsampled.transpose(1, 2)
    if previous is None:
        previous = control[:, :1]
    elif not isinstance(previous, Tensor) or previous.ndim != 3 or previous.shape[1] != 1 or previous.shape[2] != dims \
            or previous.shape[0] not in (1, batch, max(batch, previous.shape[0])):
        raise ValueError(
            f"previous must be the frame before the block, shaped (batch|1, 1, {dims}), got "
            f"{tuple(previous.shape) if isinstance(previous, Tensor) else type(previous).__name__}"
        )
    previous = previous.to(control.dtype)
    rows = max(batch, previous.shape[0])
    seq = torch.cat([previous.expand(rows, 1, dims), control.expand(rows, frames, dims)], dim=1)  # (B, F + 1, D)
    if n_samples % frames == 0:  # a whole hop: one broadcast multiply-add, no gather
        hop = n_samples // frames
        w = torch.arange(1, hop + 1, dtype=seq.dtype, device=seq.device).div(hop).view(1, 1, hop, 1)
        out = seq[:, :-1, None, :] + w * (seq[:, 1:, None, :] - seq[:, :-1, None, :])
        return out.reshape(rows, n_samples, dims)
    left, weight = frame_positions(frames + 1, n_samples, "causal", device=seq.device)
    lo, hi = seq[:, left], seq[:, left + 1]
    return lo + weight.to(seq.dtype).view(1, -1, 1) * (hi - lo)


def as_signal(
    value: Any,
    x: Tensor | None,
    name: str,
    *,
    channels: bool = True,
    integers: bool = False,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """A number or a tensor broadcastable to audio ``x`` (batch, channels, samples) as a 3-D
    ``(batch|1, channels|1, samples|1)`` tensor of ``x``'s dtype and device: the one argument
    check of the functional DSP (gains, mixes, cutoffs, thresholds given per sample or not).

    Args:
        value: a python number or a real tensor of at most 3 dims (leading dims of size 1 are
            added).
        x: the audio it must broadcast against; None checks the form only (then ``dtype`` and
            ``device`` say what to make).
        name: what to call it in messages.
        channels: False when the value may not vary over channels.
        integers: accept integer tensors too (converted).

    Raises:
        TypeError: not a number or a real tensor. ValueError: more than 3 dims, or a dimension
        that is neither 1 nor ``x``'s (named in the message).
    """
    if x is not None:
        dtype, device = x.dtype, x.device
    if dtype is None:
        dtype = torch.get_default_dtype()
    if not isinstance(value, Tensor):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise TypeError(f"{name} must be a number or a tensor, got {type(value).__name__}")
        return torch.tensor(float(value), dtype=dtype, device=device).reshape(1, 1, 1)
    if value.is_complex() or not (value.is_floating_point() or (integers and value.dtype in (torch.int32, torch.int64))):
        raise TypeError(f"{name} must be a real floating tensor, got dtype {value.dtype}")
    if value.ndim > 3:
        where = f"x shaped {tuple(x.shape)}" if x is not None else "(batch, channels, samples)"
        raise ValueError(f"{name} must broadcast to {where}, got shape {tuple(value.shape)} ({value.ndim} dims)")
    shape = (1,) * (3 - value.ndim) + tuple(value.shape)
    if x is not None:
        allowed = (x.shape[0], x.shape[1] if channels else 1, x.shape[2])
        for size, target, dim in zip(shape, allowed, ("batch", "channels", "samples")):
            if size not in (1, target):
                raise ValueError(
                    f"{name} shaped {tuple(value.shape)} does not broadcast to x shaped {tuple(x.shape)}: "
                    f"its {dim} dimension is {size}, expected 1 or {target}"
                )
    return value.to(dtype=dtype, device=device if device is not None else value.device).reshape(shape)


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


def control_frames(
    value: Any,
    batch: int,
    *,
    dims: int = 1,
    name: str = "control",
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> tuple[Tensor, Tensor | None]:
    """A control value as ``(frames, previous)``: ``frames`` from :func:`as_control`, and the
    previous block's last frame ``(batch|1, 1, dims)`` when the value is a :class:`Frames`
    carrying one (else None). Hand both to :func:`upsample_control` (``mode="causal"``)."""
    values, before = split_frames(value)
    frames = as_control(values, batch, dims=dims, name=name, dtype=dtype, device=device)
    if before is None:
        return frames, None
    previous = as_control(before, batch, dims=dims, name=f"{name} (previous block)", dtype=frames.dtype,
                          device=frames.device)[:, -1:]
    return frames, previous


def control_hop(sample_rate: Any, hop: Any, owner: str) -> int:
    """Samples per control frame of a synth: ``hop``, or DDSP's 250 frames per second
    (64 at 16 kHz, 192 at 48 kHz) when it is None. Raises ValueError naming ``owner``."""
    if hop is None:
        ok = isinstance(sample_rate, (int, float)) and not isinstance(sample_rate, bool) and sample_rate > 0
        return max(1, int(round(float(sample_rate) / 250.0))) if ok else 1  # a bad rate: Unit says so
    if isinstance(hop, bool) or not isinstance(hop, int) or hop < 1:
        raise ValueError(f"{owner}: hop must be a positive int (samples per control frame), got {hop!r}")
    return hop
