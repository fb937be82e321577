"""Conversions: levels between decibels and linear amplitude or power, and pitch between Hz
and MIDI note numbers (the one pair the whole package uses).

All functions are differentiable and keep the dtype and device of tensor inputs; python numbers
become tensors of torch's default dtype (float32 unless changed).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

__all__ = ["db_to_gain", "gain_to_db", "power_to_db", "hz_to_midi", "midi_to_hz"]


def _as_float_tensor(value: Tensor | float | int, name: str) -> Tensor:
    """Turn a python number or tensor into a floating-point tensor (dtype/device kept)."""
    if isinstance(value, Tensor):
        if value.is_complex():
            raise TypeError(f"{name} must be a real tensor, got dtype {value.dtype}")
        if not value.is_floating_point():
            return value.to(torch.get_default_dtype())
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            return torch.as_tensor(value, dtype=torch.get_default_dtype())
        except (TypeError, ValueError, RuntimeError) as exc:
            raise TypeError(
                f"{name} must be a tensor or a real number, got {type(value).__name__}"
            ) from exc
    return torch.tensor(float(value), dtype=torch.get_default_dtype())


def _floor_value(floor_db: float, scale: float) -> float:
    """Linear floor ``10 ** (floor_db / scale)``, checked to be positive and finite."""
    try:
        floor = 10.0 ** (float(floor_db) / scale)
    except OverflowError:
        floor = math.inf
    if not math.isfinite(floor) or floor <= 0.0:
        raise ValueError(
            f"floor_db must be a finite level in dB giving a positive floor, got floor_db={floor_db}"
        )
    return floor


def db_to_gain(db: Tensor | float) -> Tensor:
    """Convert decibels to linear amplitude gain: ``10 ** (db / 20)``.

    Args:
        db: level in dB, any shape; a python number or a tensor.

    Returns:
        Linear gain, same shape as ``db``. Tensor inputs keep their dtype and device (integer
        tensors become the default float dtype); python numbers give a 0-d tensor of the default
        dtype (float32).

    Reference: the amplitude decibel, as in pedalboard/JUCE ``Decibels::decibelsToGain``
    (without JUCE's -100 dB cut to silence).
    """
    db_t = _as_float_tensor(db, "db")
    return torch.pow(10.0, db_t / 20.0)


def gain_to_db(gain: Tensor | float, floor_db: float = -120.0) -> Tensor:
    """Convert linear amplitude gain to decibels: ``20 * log10(max(|gain|, 10 ** (floor_db / 20)))``.

    Args:
        gain: linear amplitude (sign ignored), any shape.
        floor_db: lowest level returned, in dB; magnitudes below ``10 ** (floor_db / 20)``
            (zero included) map to ``floor_db`` with zero gradient.

    Returns:
        Level in dB, same shape, dtype and device as ``gain``.
    """
    gain_t = _as_float_tensor(gain, "gain")
    floor = _floor_value(floor_db, 20.0)
    return 20.0 * torch.log10(torch.clamp(gain_t.abs(), min=floor))


def power_to_db(power: Tensor | float, floor_db: float = -120.0) -> Tensor:
    """Convert power (energy, squared magnitude) to decibels: ``10 * log10(max(power, 10 ** (floor_db / 10)))``.

    Args:
        power: non-negative power values, any shape; values below the floor (including zero and
            negative values) map to ``floor_db`` with zero gradient.
        floor_db: lowest level returned, in dB.

    Returns:
        Level in dB, same shape, dtype and device as ``power``.
    """
    power_t = _as_float_tensor(power, "power")
    floor = _floor_value(floor_db, 10.0)
    return 10.0 * torch.log10(torch.clamp(power_t, min=floor))


def hz_to_midi(f0_hz: Tensor | np.ndarray | float) -> Tensor | np.ndarray | float:
    """MIDI note number of a frequency: ``12 log2(f / 440) + 69``, floored at 0 (0 Hz and
    anything below 8.18 Hz read 0, as DDSP's ``hz_to_midi``).

    Tensors stay tensors (differentiable, dtype and device kept), numpy arrays stay arrays,
    python numbers give a float.
    """
    if isinstance(f0_hz, Tensor):
        return (12.0 * torch.log2(f0_hz.clamp_min(1e-6) / 440.0) + 69.0).clamp_min(0.0)
    midi = 12.0 * np.log2(np.maximum(np.asarray(f0_hz, dtype=np.float64), 1e-6) / 440.0) + 69.0
    midi = np.maximum(midi, 0.0)
    return float(midi) if np.ndim(midi) == 0 and not isinstance(f0_hz, np.ndarray) else midi


def midi_to_hz(midi: Tensor | np.ndarray | float) -> Tensor | np.ndarray | float:
    """Frequency in Hz of a MIDI note number: ``440 * 2 ** ((midi - 69) / 12)``; same types
    in and out as :func:`hz_to_midi`."""
    if isinstance(midi, Tensor):
        return 440.0 * 2.0 ** ((midi - 69.0) / 12.0)
    hz = 440.0 * 2.0 ** ((np.asarray(midi, dtype=np.float64) - 69.0) / 12.0)
    return float(hz) if np.ndim(hz) == 0 and not isinstance(midi, np.ndarray) else hz
