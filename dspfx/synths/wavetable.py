"""Wavetable synth: learnable single-cycle tables mixed by per-frame weights, band-limited by
per-octave mip-maps."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from dspfx.functional.control import control_frames, control_hop, upsample_control
from dspfx.functional.wavetable import wavetable_mipmaps, wavetable_oscillator
from dspfx.registry import register
from dspfx.unit import Knob, Unit

__all__ = ["Wavetable"]


def _initial_tables(n_tables: int, table_size: int) -> Tensor:
    """Sine, saw, square, triangle (cycled), each holding the harmonics below the table's Nyquist."""
    phase = torch.arange(table_size, dtype=torch.float64) / table_size
    k = torch.arange(1, table_size // 2, dtype=torch.float64)[:, None]
    arg = 2 * math.pi * k * phase
    sine = torch.sin(2 * math.pi * phase)
    saw = (2 / math.pi) * (torch.sin(arg) * ((-1.0) ** (k + 1)) / k).sum(0)
    odd = (k % 2 == 1).to(torch.float64)
    square = (4 / math.pi) * (torch.sin(arg) * odd / k).sum(0)
    triangle = (8 / math.pi**2) * (torch.sin(arg) * odd * torch.where(k % 4 == 1, 1.0, -1.0) / k**2).sum(0)
    shapes = [sine, saw, square, triangle]
    return torch.stack([shapes[i % 4] for i in range(n_tables)])


@register
class Wavetable(Unit):
    """Wavetable synth: ``n_tables`` learnable single-cycle tables mixed by per-frame weights,
    read with linear interpolation at ``f0_hz``, band-limited so that no partial folds back.

    Band-limiting: per-octave mip-maps built by FFT truncation of each table
    (:func:`dspfx.functional.wavetable_mipmaps`): level ``l`` keeps the harmonics below Nyquist
    for the highest f0 of its octave; per sample, the richest safe level for ``f0_hz`` is
    crossfaded with the next one by the fractional octave of ``f0`` (level ``l`` alone at the
    bottom of its octave, level ``l + 1`` alone at the top), so the timbre changes continuously
    with f0 (a glide has no step at octave boundaries) and no partial folds back; the partials
    kept by level ``l`` only fade out over the octave. Phase is accumulated in float64 and
    carried across blocks. Output: ``amplitude * sum_t weights_t * table_t(phase)``,
    ``(batch, 1, samples)``.

    Options:
        n_tables: number of tables (default 4; initialised as sine, saw, square, triangle,
            cycled), the learnable parameter ``tables`` ``(n_tables, table_size)``.
        table_size: samples per cycle (even, >= 4, default 2048).
        hop: samples per control frame when ``n_samples`` is not given (default
            ``sample_rate // 250``: 64 at 16 kHz, 192 at 48 kHz).

    Knobs:
        f0_hz: 20 .. 20000 Hz (log, default 440): fundamental; f0 at or above Nyquist is
            silent (only the table's DC remains).
        amplitude: 0 .. 1 (linear, default 0.5): output gain.

    Controls:
        weights: ``(batch|1, frames, n_tables)`` (or ``(batch|1, n_tables)`` constant) real
            mixing weights, frames on the block's causal hop grid; default: the learnable
            parameter ``weights`` ``(n_tables,)``, initially one-hot on the first table (a sine).

    >>> osc = dspfx.make("wavetable", sample_rate=48000)
    >>> y = osc(n_samples=48000, f0_hz=220.0, weights=w)   # w: (batch, frames, 4)

    Reference: Engel et al., DDSP (ICLR 2020) ``ddsp.synths.Wavetable`` (learnable tables,
    linear interpolation); mip-mapped band-limiting as in classic wavetable synthesis
    (e.g. Puckette, "The Theory and Technique of Electronic Music", 2007, ch. 2 and 10).
    """

    name = "wavetable"
    category = "synth"
    is_synth = True
    extra_controls = ("weights",)
    f0_hz = Knob(440.0, 20.0, 20000.0, scale="log", unit="Hz", doc="fundamental frequency")
    amplitude = Knob(0.5, 0.0, 1.0, doc="output gain")

    def __init__(
        self,
        sample_rate: float = 48000,
        n_tables: int = 4,
        table_size: int = 2048,
        hop: int | None = None,
        **knobs: Any,
    ) -> None:
        if isinstance(n_tables, bool) or not isinstance(n_tables, int) or n_tables < 1:
            raise ValueError(f"wavetable n_tables must be an int >= 1, got {n_tables!r}")
        if isinstance(table_size, bool) or not isinstance(table_size, int) or table_size < 4 or table_size % 2:
            raise ValueError(f"wavetable table_size must be an even int >= 4, got {table_size!r}")
        self.n_tables = n_tables
        self.table_size = table_size
        self.hop = control_hop(sample_rate, hop, "wavetable")
        super().__init__(sample_rate, **knobs)
        self.tables = nn.Parameter(_initial_tables(n_tables, table_size).to(self.dtype))
        w = torch.zeros(n_tables, dtype=self.dtype)
        w[0] = 1.0
        self.weights = nn.Parameter(w)

    @torch.no_grad()
    def set_tables(self, values: Any) -> Wavetable:
        """Write the tables, ``(n_tables, table_size)`` finite values; returns ``self``."""
        v = torch.as_tensor(values, dtype=torch.float64)
        if v.shape != (self.n_tables, self.table_size):
            raise ValueError(
                f"wavetable tables must be shaped (n_tables, table_size) = ({self.n_tables}, {self.table_size}), "
                f"got {tuple(v.shape)}"
            )
        if not bool(torch.isfinite(v).all()):
            raise ValueError("wavetable tables must be finite")
        self.tables.copy_(v.to(self.tables))
        return self

    def mipmaps(self) -> tuple[Tensor, Tensor]:
        """The band-limited levels of the current tables and the highest f0 each serves.

        Recomputed (differentiably) whenever the tables need a gradient; otherwise (inference,
        streaming, frozen tables) cached until the tables change, so small blocks stay cheap.
        """
        tables = self.tables
        if torch.is_grad_enabled() and tables.requires_grad:
            return wavetable_mipmaps(tables, self.sample_rate)
        key = (tables.data_ptr(), tables._version, tables.dtype, tables.device, self.sample_rate)
        cached = self.__dict__.get("_mipmap_cache")
        if cached is None or cached[0] != key:
            with torch.no_grad():
                cached = (key, wavetable_mipmaps(tables.detach(), self.sample_rate))
            self.__dict__["_mipmap_cache"] = cached
        return cached[1]

    def default_length(self, controls: Mapping[str, Any]) -> int:
        frames = 1
        for key in ("f0_hz", "amplitude"):
            v = controls.get(key)
            if isinstance(v, Tensor) and v.ndim >= 2:
                frames = max(frames, int(v.shape[1]))
        v = controls.get("weights")
        if isinstance(v, Tensor) and v.ndim == 3:
            frames = max(frames, int(v.shape[1]))
        if frames == 1 and not any(isinstance(controls.get(k), Tensor) for k in ("f0_hz", "amplitude", "weights")):
            raise ValueError(f"{self.label}: give n_samples= or per-frame controls (batch, frames)")
        return frames * self.hop

    def init_state(self, batch: int, channels: int) -> Tensor:
        return torch.zeros(batch, 1, 1, dtype=torch.float64, device=self.device)

    def process(self, x: Tensor | None, controls: dict[str, Any], state: Tensor) -> tuple[Tensor, Tensor]:
        """Render one block: controls ``f0_hz`` and ``amplitude`` audio rate ``(batch|1, 1, n)``,
        ``weights`` as given (or the learnable default); ``state`` is the phase in cycles."""
        f0 = controls["f0_hz"]
        n = f0.shape[-1]
        batch = state.shape[0]
        value = controls.get("weights")
        if value is None:
            w = self.weights.reshape(1, 1, self.n_tables)
        else:
            w, previous = control_frames(value, batch, dims=self.n_tables, name="wavetable.weights",
                                         dtype=self.dtype, device=self.device)
            if w.shape[1] > 1 or previous is not None:
                w = upsample_control(w, n, mode="causal", previous=previous)
        mipmaps, top_hz = self.mipmaps()
        y, phase = wavetable_oscillator(mipmaps, top_hz, f0, w, self.sample_rate, state)
        return y * controls["amplitude"], phase
