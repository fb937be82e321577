"""Shape and value checks shared by the whole package: a leaf module (it imports nothing from
dspfx), so that units, io, losses and metrics can all use it without import cycles.

- audio layout: :func:`as_batch` (``(samples,)`` / ``(channels, samples)`` / ``(batch,
  channels, samples)`` -> 3-D), :func:`check_finite`, :func:`prepare_pair` (a prediction and
  its target as 3-D tensors of one dtype);
- arguments: :func:`positive_int`, :func:`positive_number`, :func:`check_sample_rate`.

Every check raises with a message naming what was given and what was expected.
"""

from __future__ import annotations

import math
from numbers import Real
from collections.abc import Sequence
from typing import Any, Union

import numpy as np
import torch

__all__ = [
    "as_batch",
    "check_finite",
    "prepare_pair",
    "real_tensor",
    "as_3d",
    "positive_int",
    "positive_number",
    "check_sample_rate",
    "broadcast_shape",
    "MAX_PLAUSIBLE_CHANNELS",
]

ArrayLike = Union[torch.Tensor, np.ndarray]


# --- arguments ---


def positive_int(value: Any, name: str, *, minimum: int = 1) -> int:
    """``value`` as an int >= ``minimum`` (bools and floats are rejected)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def positive_number(value: Any, name: str, *, allow_zero: bool = False) -> float:
    """``value`` as a finite float > 0 (>= 0 with ``allow_zero``)."""
    if isinstance(value, bool) or not isinstance(value, (Real, np.integer, np.floating)) or not math.isfinite(float(value)):
        raise TypeError(f"{name} must be a finite {'non-negative' if allow_zero else 'positive'} number, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else 'positive'}, got {value!r}")
    return float(value)


def check_sample_rate(sample_rate: Any, name: str = "sample_rate", *, integer: bool = False) -> Any:
    """A sample rate in Hz: a finite positive number (a one-element tensor is accepted), returned
    as float; with ``integer=True`` a whole number of Hz, returned as int (audio files)."""
    if isinstance(sample_rate, torch.Tensor):
        if sample_rate.numel() != 1:
            raise ValueError(f"{name} must be a single number in Hz, got a tensor shaped {tuple(sample_rate.shape)}")
        sample_rate = sample_rate.item()
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (Real, np.integer, np.floating)):
        raise TypeError(f"{name} must be a positive number in Hz, got {sample_rate!r}")
    if not (math.isfinite(float(sample_rate)) and sample_rate > 0):
        raise ValueError(f"{name} must be a positive number in Hz, got {sample_rate!r}")
    if integer:
        if not float(sample_rate).is_integer():
            raise ValueError(f"{name} must be a whole number of Hz, got {sample_rate!r}")
        return int(sample_rate)
    return float(sample_rate)


def broadcast_shape(*shapes: Sequence[int]) -> tuple[int, ...] | None:
    """numpy-style broadcast of shapes, or None when they do not broadcast.

    (Plain python: ``torch.broadcast_shapes`` pulls in sympy on its first call.)
    """
    ndim = max((len(shape) for shape in shapes), default=0)
    out = []
    for dim in range(-ndim, 0):
        sizes = {shape[dim] for shape in shapes if len(shape) >= -dim} - {1}
        if len(sizes) > 1:
            return None
        out.append(sizes.pop() if sizes else 1)
    return tuple(out)


# --- audio layout ---


#: A 2-D array whose first dim is larger than this while its second is not looks like
#: ``(samples, channels)`` (soundfile's layout) rather than ``(channels, samples)``.
MAX_PLAUSIBLE_CHANNELS = 16


# --- shape helpers ---


def _audio_tensor(audio: ArrayLike, name: str) -> torch.Tensor:
    """Tensor view of ``audio`` (ndarray shares memory when it can); floating dtypes only."""
    if isinstance(audio, np.ndarray):
        if not (np.issubdtype(audio.dtype, np.floating)):
            raise TypeError(f"{name} must be a floating-point array, got numpy dtype {audio.dtype}")
        if audio.dtype == np.float16:
            audio = audio.astype(np.float32)
        if not audio.flags.writeable:
            audio = audio.copy()
        return torch.from_numpy(audio)
    if isinstance(audio, torch.Tensor):
        if not audio.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got dtype {audio.dtype}")
        return audio
    raise TypeError(f"{name} must be a torch.Tensor or numpy.ndarray, got {type(audio).__name__}")


def _check_not_transposed(shape: tuple[int, ...], given: tuple[int, ...]) -> None:
    """Reject ``(channels, samples) = shape`` that looks like ``(samples, channels)``."""
    channels, samples = shape
    if channels > MAX_PLAUSIBLE_CHANNELS and samples <= MAX_PLAUSIBLE_CHANNELS:
        raise ValueError(
            f"audio has shape {given}, read as (channels={channels}, samples={samples}); "
            f"this looks like (samples, channels). dspfx uses (channels, samples): "
            f"pass the transpose (audio.transpose(-1, -2), or audio.T for 2-D)"
        )


def as_batch(audio: ArrayLike) -> tuple[torch.Tensor, str]:
    """Normalise audio to the library's ``(batch, channels, samples)`` layout.

    Args:
        audio: floating-point tensor or ndarray shaped ``(samples,)``, ``(channels, samples)``
            or ``(batch, channels, samples)``. A 2-D input is always ``(channels, samples)``;
            one whose first dim is > 16 while its second is <= 16 is rejected as a likely
            ``(samples, channels)`` array (transpose it first).

    Returns:
        ``(tensor, note)``: the audio as a ``(batch, channels, samples)`` tensor of the same
        dtype and device (a view sharing memory where possible; float16 ndarrays become
        float32), and a short note of what was done, e.g. ``"(samples,) -> (1, 1, samples)"``.

    Raises:
        TypeError: not a tensor/ndarray, or not floating point.
        ValueError: 0-D or more than 3-D input, or a 2-D input that looks transposed.
    """
    x = _audio_tensor(audio, "audio")
    shape = tuple(x.shape)
    if x.ndim == 1:
        return x.reshape(1, 1, -1), "(samples,) -> (1, 1, samples)"
    if x.ndim == 2:
        _check_not_transposed(shape, shape)
        return x.unsqueeze(0), "(channels, samples) -> (1, channels, samples)"
    if x.ndim == 3:
        return x, "(batch, channels, samples) unchanged"
    raise ValueError(
        f"audio has shape {shape} ({x.ndim}-D); expected (samples,), (channels, samples) "
        f"or (batch, channels, samples)"
    )


def check_finite(audio: ArrayLike, name: str = "audio") -> None:
    """Raise if ``audio`` holds NaN or Inf values.

    Args:
        audio: tensor or ndarray of any shape.
        name: what to call it in the message (e.g. a file name).

    Raises:
        ValueError: naming how many values are NaN and Inf and the index of the first one.
    """
    if isinstance(audio, torch.Tensor):
        x = audio.detach()
        if not x.is_floating_point() and not x.is_complex():
            return
        if bool(torch.isfinite(x.sum())):  # one fast reduction: NaN/Inf would propagate
            return
        bad = ~torch.isfinite(x)
        n_bad = int(bad.sum())
        if n_bad == 0:
            return
        n_nan = int(torch.isnan(x).sum())
        first = tuple(int(i) for i in torch.nonzero(bad)[0])
    else:
        x = np.asarray(audio)
        if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.complexfloating)):
            return
        bad = ~np.isfinite(x)
        n_bad = int(bad.sum())
        if n_bad == 0:
            return
        n_nan = int(np.isnan(x).sum())
        first = tuple(int(i) for i in np.argwhere(bad)[0])
    raise ValueError(
        f"{name} contains {n_bad} non-finite value{'s' if n_bad != 1 else ''} "
        f"({n_nan} NaN, {n_bad - n_nan} Inf) out of {x.size if isinstance(x, np.ndarray) else x.numel()}; "
        f"first at index {first}; expected finite samples"
    )



# --- prediction / target pairs ---


def real_tensor(x: object, name: str) -> torch.Tensor:
    """Turn ``x`` into a floating tensor (numpy arrays are converted; other types rejected)."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor (or numpy array), got {type(x).__name__}")
    if x.is_complex():
        raise TypeError(f"{name} must be a real tensor, got dtype {x.dtype}")
    if not x.is_floating_point():
        x = x.to(torch.get_default_dtype())
    return x


def as_3d(x: torch.Tensor, name: str) -> torch.Tensor:
    """Add leading dims to a ``(samples,)`` or ``(channels, samples)`` tensor."""
    if x.dim() == 1:
        return x[None, None, :]
    if x.dim() == 2:
        return x[None, :, :]
    if x.dim() == 3:
        return x
    raise ValueError(
        f"{name} must be shaped (batch, channels, samples), (channels, samples) or (samples,), "
        f"got shape {tuple(x.shape)}"
    )


def prepare_pair(prediction: object, target: object) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate and bring ``prediction`` and ``target`` to 3-D tensors of one dtype.

    Raises:
        TypeError: if either is not a real tensor.
        ValueError: if their shapes (after adding leading dims) differ, or if they are empty.
    """
    p = real_tensor(prediction, "prediction")
    t = real_tensor(target, "target")
    p3, t3 = as_3d(p, "prediction"), as_3d(t, "target")
    if p3.shape != t3.shape:
        raise ValueError(
            f"prediction and target must have the same shape, got prediction "
            f"{tuple(p.shape)} and target {tuple(t.shape)}"
        )
    if p3.shape[-1] == 0:
        raise ValueError(f"prediction and target are empty (shape {tuple(p.shape)})")
    if p3.device != t3.device:
        raise ValueError(
            f"prediction and target must be on the same device, got {p3.device} and {t3.device}"
        )
    dtype = torch.promote_types(p3.dtype, t3.dtype)
    return p3.to(dtype), t3.to(dtype)
