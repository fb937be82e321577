"""Band-limited wavetable oscillator: per-octave mip-maps by FFT truncation, crossfaded between
adjacent levels by the fractional octave, linear-interpolated reading with a float64 phase
accumulator."""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["wavetable_mipmaps", "wavetable_oscillator"]


def wavetable_mipmaps(tables: Tensor, sample_rate: float) -> tuple[Tensor, Tensor]:
    """Per-octave band-limited copies of single-cycle tables, by FFT truncation.

    With ``N = table_size`` a table holds harmonics ``1 .. K_max = N/2 - 1`` (its Nyquist bin
    is dropped). Level ``l`` serves ``f0`` in the octave ``(F_{l-1}, F_l]`` with
    ``F_l = F_0 * 2**l`` and ``F_0 = sample_rate / N`` (so level 0 keeps all ``K_max``); it keeps DC and the harmonics
    ``k <= K_l = ceil((sample_rate / 2) / F_l) - 1``, i.e. those with ``k * F_l < sample_rate / 2``,
    so that for every ``f0`` of its octave (its highest included) no kept partial reaches
    Nyquist. Levels continue until ``K_l = 0`` (DC only: ``f0`` at or above Nyquist is silent).

    Args:
        tables: ``(n_tables, table_size)`` single cycles (``table_size`` even, >= 4).
        sample_rate: Hz.

    Returns:
        ``(mipmaps, top_hz)``: ``(n_tables, n_levels, table_size)`` band-limited tables
        (differentiable, linear in ``tables``) and ``(n_levels,)`` float64 ``F_l`` (the highest
        f0 each level serves).
    """
    if not isinstance(tables, Tensor) or tables.ndim != 2 or not tables.is_floating_point():
        raise ValueError(
            "tables must be a real floating tensor shaped (n_tables, table_size), got "
            f"{tuple(tables.shape) if isinstance(tables, Tensor) else type(tables).__name__}"
        )
    size = tables.shape[-1]
    if size < 4 or size % 2:
        raise ValueError(f"table_size must be even and >= 4, got {size}")
    if not sample_rate > 0:
        raise ValueError(f"sample_rate must be > 0, got {sample_rate!r}")
    nyquist = sample_rate / 2
    k_max = size // 2 - 1
    f_0 = nyquist / (k_max + 1)
    tops, keeps = [], []
    level = 0
    while True:
        top = f_0 * 2.0**level
        keep = max(0, math.ceil(nyquist / top - 1e-9) - 1)
        keep = min(keep, k_max)
        tops.append(top)
        keeps.append(keep)
        if keep == 0:
            break
        level += 1
    device = tables.device
    bins = torch.arange(size // 2 + 1, device=device)
    mask = (bins[None, :] <= torch.tensor(keeps, device=device)[:, None]).to(tables.dtype)  # (L, bins)
    spectrum = torch.fft.rfft(tables, dim=-1)  # (T, bins)
    mipmaps = torch.fft.irfft(spectrum[:, None, :] * mask, n=size, dim=-1)  # (T, L, N)
    return mipmaps, torch.tensor(tops, dtype=torch.float64, device=device)


def wavetable_oscillator(
    mipmaps: Tensor,
    top_hz: Tensor,
    f0_hz: Tensor,
    weights: Tensor,
    sample_rate: float,
    phase: Tensor | None = None,
    crossfade: bool = True,
) -> tuple[Tensor, Tensor]:
    """Read mixed wavetables at ``f0_hz``, crossfading between safe mip-map levels per sample.

    The phase (in cycles) is accumulated in float64: ``phase[n] = phase0 + sum_{m<n} f0[m] / sr``,
    wrapped to [0, 1). At each sample ``l`` is the first level whose ``top_hz >= f0`` (the
    richest safe one), and each table is read with linear interpolation at
    ``phase * table_size``; the tables are then mixed by ``weights``.

    Crossfade (default): with ``x = log2(f0 / top_hz[l]) + 1`` in ``(0, 1]``, the fractional
    position of ``f0`` in level ``l``'s octave ``(top_hz[l] / 2, top_hz[l]]``, the output is
    ``(1 - x) * level_l + x * level_{l+1}``: at the bottom of the octave level ``l`` alone, at
    its top level ``l + 1`` alone, which is where the next octave starts, so the timbre is a
    continuous function of ``f0`` (no step at octave boundaries, a glide changes smoothly).
    Both levels are safe for every ``f0`` of the octave (level ``l + 1`` keeps fewer partials),
    so no partial folds back: harmonic ``k`` of the kept band has gain 1 below
    ``K_{l+1}``, ``1 - x`` between ``K_{l+1}`` and ``K_l``. ``crossfade=False``: level ``l``
    alone (the band, hence the timbre, steps by an octave at each boundary).

    Differentiable w.r.t. the mip-maps (hence the tables), the weights and ``f0_hz`` (through
    the interpolation position and, with the crossfade, the mix of the two levels; the level
    choice itself is piecewise constant).

    Args:
        mipmaps: ``(n_tables, n_levels, table_size)`` from :func:`wavetable_mipmaps`.
        top_hz: ``(n_levels,)`` highest f0 of each level (``inf`` for one unlimited level).
        f0_hz: ``(batch|1, 1, n)`` audio-rate fundamental, Hz, >= 0.
        weights: ``(batch|1, n, n_tables)`` audio-rate mixing weights.
        sample_rate: Hz.
        phase: ``(batch, 1, 1)`` phase at the first sample, in cycles (``None``: 0).
        crossfade: crossfade to the next level by the fractional octave (default True).

    Returns:
        ``(y, phase)``: ``(batch, 1, n)`` signal and the phase after the block (float64).
    """
    if mipmaps.ndim != 3:
        raise ValueError(f"mipmaps must be shaped (n_tables, n_levels, table_size), got {tuple(mipmaps.shape)}")
    n_tables, n_levels, size = mipmaps.shape
    if f0_hz.ndim != 3 or f0_hz.shape[1] != 1:
        raise ValueError(f"f0_hz must be shaped (batch|1, 1, samples), got {tuple(f0_hz.shape)}")
    n = f0_hz.shape[-1]
    if weights.ndim != 3 or weights.shape[-1] != n_tables or weights.shape[1] not in (1, n):
        raise ValueError(
            f"weights must be shaped (batch|1, {n} or 1, n_tables={n_tables}), got {tuple(weights.shape)}"
        )
    with torch.no_grad():
        if not bool(torch.isfinite(f0_hz).all()) or float(f0_hz.min()) < 0:
            raise ValueError("f0_hz must be finite and >= 0 Hz")
    batch = max(f0_hz.shape[0], weights.shape[0], phase.shape[0] if phase is not None else 1)
    if phase is None:
        phase = torch.zeros(batch, 1, 1, dtype=torch.float64, device=f0_hz.device)
    increment = f0_hz.to(torch.float64) / sample_rate  # (B|1, 1, n)
    total = torch.cumsum(increment, dim=-1)
    p = phase + (total - increment)  # phase at each sample, exclusive cumulative sum
    p = p - torch.floor(p)
    pos = p * size
    i0 = torch.floor(pos).detach()
    frac = (pos - i0).to(mipmaps.dtype)  # (B, 1, n)
    i0 = i0.long().clamp(0, size - 1)
    i1 = (i0 + 1) % size
    level = (f0_hz.detach().to(torch.float64)[..., None] > top_hz).sum(-1).clamp(max=n_levels - 1)  # (B|1, 1, n)
    flat = mipmaps.reshape(n_tables, n_levels * size)

    def read(level: Tensor) -> Tensor:
        base = level * size
        idx0 = (base + i0).expand(batch, 1, n).reshape(-1)
        idx1 = (base + i1).expand(batch, 1, n).reshape(-1)
        v0 = flat[:, idx0].reshape(n_tables, batch, n)
        v1 = flat[:, idx1].reshape(n_tables, batch, n)
        return v0 + frac[:, 0] * (v1 - v0)  # (T, B, n)

    values = read(level)
    if crossfade and n_levels > 1:
        # fractional octave x in (0, 1]: log2(f0 / (top / 2)); 0 below the octave (f0 <= top / 2,
        # only at level 0) and for an unlimited level (top = inf)
        bottom = top_hz.to(mipmaps.dtype)[level] / 2
        ratio = torch.where(bottom > 0, f0_hz.to(mipmaps.dtype) / bottom, torch.zeros_like(bottom))
        x = torch.log2(ratio.clamp(min=1.0)).clamp(max=1.0)[:, 0]  # (B|1, n)
        if bool((x > 0).any()):
            upper = read((level + 1).clamp(max=n_levels - 1))
            values = values + x * (upper - values)
    w = weights.to(mipmaps.dtype).permute(2, 0, 1)  # (T, B|1, n|1)
    y = (values * w).sum(0).unsqueeze(1)
    new_phase = phase + total[..., -1:]
    new_phase = new_phase - torch.floor(new_phase)
    return y, new_phase
