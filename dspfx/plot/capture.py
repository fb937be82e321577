"""Plots of a capture or an amp fit (:mod:`dspfx.plot`): average spectra, harmonic levels, static
transfer curves, and the fit report that draws them beside the target's."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from dspfx.checks import check_sample_rate
from dspfx.plot.signals import (
    FIGURE_WIDTH_IN,
    PANEL_HEIGHT_IN,
    ArrayLike,
    _error_db,
    _pair,
    _save,
    _FLOOR,
    _signal,
    loss_curve,
)

__all__ = ["average_spectrum", "harmonics", "transfer_curves", "fit_report"]


def _average_spectrum_db(x: np.ndarray, sample_rate: float, n_fft: int) -> tuple[np.ndarray, np.ndarray]:
    """Long-term average spectrum (Welch: Hann frames, 50% overlap, mean power) in dBFS: a
    full-scale sine reads 0 dB. Signals shorter than ``n_fft`` use one zero-padded frame."""
    window = np.hanning(n_fft + 1)[:-1]
    hop = n_fft // 2
    if x.size < n_fft:
        x = np.pad(x, (0, n_fft - x.size))
    n_frames = 1 + (x.size - n_fft) // hop
    idx = np.arange(n_fft)[None, :] + hop * np.arange(n_frames)[:, None]
    power = np.mean(np.abs(np.fft.rfft(x[idx] * window, axis=1)) ** 2, axis=0)
    db = 10.0 * np.log10(np.maximum(power * (2.0 / window.sum()) ** 2, _FLOOR**2))
    return np.fft.rfftfreq(n_fft, 1.0 / sample_rate), db


def average_spectrum(
    ax: Axes,
    signals: Mapping[str, ArrayLike],
    sample_rate: float,
    n_fft: int = 4096,
    title: str = "long-term average spectrum",
) -> list[Line2D]:
    """Draw the long-term average spectrum of each signal (dBFS against log frequency).

    Welch's method: Hann frames of ``n_fft`` samples, 50% overlap, mean power per bin, scaled
    so that a full-scale sine reads 0 dB; the DC bin is left out.

    Args:
        ax: a matplotlib axes.
        signals: name -> audio (``(samples,)``, ``(channels, samples)`` or ``(batch, channels,
            samples)``; channel 0 of item 0), e.g. ``{"target": y, "fitted": y_hat}``.
        sample_rate: in Hz.
        n_fft: frame length in samples.
        title: axes title.

    Returns:
        The drawn lines.
    """
    sr = check_sample_rate(sample_rate)
    if isinstance(n_fft, bool) or not isinstance(n_fft, (int, np.integer)) or n_fft < 8:
        raise ValueError(f"n_fft must be an integer >= 8 (samples), got {n_fft!r}")
    if not isinstance(signals, Mapping) or not signals:
        raise ValueError("signals must be a non-empty mapping name -> audio")
    lines = []
    for name, audio in signals.items():
        f, db = _average_spectrum_db(_signal(audio, str(name)), sr, int(n_fft))
        (line,) = ax.semilogx(f[1:], db[1:], label=str(name), linewidth=1.0)
        lines.append(line)
    ax.set_xlim(max(20.0, sr / n_fft), sr / 2)
    ax.set_xlabel("Frequency (Hz)")
    ax.set_ylabel("Level (dBFS)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="best")
    if title:
        ax.set_title(title)
    return lines


def _as_levels(values: Any, name: str) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().to(torch.float64).numpy()
    return np.asarray(values, dtype=np.float64)


def harmonics(
    ax: Axes,
    levels_db: Sequence[float],
    response_db: ArrayLike,
    reference_db: ArrayLike | None = None,
    title: str = "harmonic response",
    labels: tuple[str, str] = ("model", "reference"),
) -> list[Line2D]:
    """Draw harmonic levels (dB) against harmonic number, one line per input level.

    Args:
        ax: a matplotlib axes.
        levels_db: the input levels, dBFS, shape ``(n_levels,)``.
        response_db: ``(n_levels, n_harmonics)`` output levels, e.g. from
            :func:`dspfx.fitting.fit.harmonic_response`; NaN entries are gaps.
        reference_db: the same measured on a reference (drawn dashed in the same colours).
        title: axes title.
        labels: legend names of the model and the reference.

    Returns:
        The drawn lines.
    """
    levels = np.atleast_1d(_as_levels(levels_db, "levels_db"))
    r = _as_levels(response_db, "response_db")
    if r.ndim != 2 or r.shape[0] != levels.size or r.shape[1] == 0:
        raise ValueError(
            f"response_db has shape {r.shape}; expected (n_levels, n_harmonics) with n_levels = {levels.size}"
        )
    ref = None if reference_db is None else _as_levels(reference_db, "reference_db")
    if ref is not None and ref.shape != r.shape:
        raise ValueError(f"reference_db has shape {ref.shape}; expected {r.shape} like response_db")
    k = np.arange(1, r.shape[1] + 1)
    lines = []
    for i, level in enumerate(levels):
        suffix = f" ({labels[0]})" if ref is not None else ""
        (line,) = ax.plot(k, r[i], "o-", markersize=3, linewidth=1.2, label=f"{level:g} dBFS in{suffix}")
        lines.append(line)
        if ref is not None:
            (dashed,) = ax.plot(k, ref[i], "x--", markersize=4, linewidth=1.0, color=line.get_color(),
                                label=f"{level:g} dBFS in ({labels[1]})")
            lines.append(dashed)
    ax.set_xticks(k)
    ax.set_xlabel("Harmonic")
    ax.set_ylabel("Output level (dBFS)")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper right", fontsize=7, ncol=2 if ref is not None else 1)
    if title:
        ax.set_title(title)
    return lines


def transfer_curves(
    ax: Axes,
    curves: Sequence[tuple[ArrayLike, ArrayLike]],
    levels_db: Sequence[float] | None = None,
    reference: Sequence[tuple[ArrayLike, ArrayLike]] | None = None,
    title: str = "transfer curves",
) -> list[Line2D]:
    """Draw output against input (one period of a slow sine per level).

    Args:
        ax: a matplotlib axes.
        curves: ``(input, output)`` pairs of 1-D arrays, e.g. from
            :func:`dspfx.fitting.fit.transfer_curves`.
        levels_db: the input levels, for the legend.
        reference: the same measured on a reference (drawn dashed).
        title: axes title.

    Returns:
        The drawn lines.
    """
    if not curves:
        raise ValueError("curves is empty; expected at least one (input, output) pair")
    if levels_db is not None and len(levels_db) != len(curves):
        raise ValueError(f"{len(levels_db)} levels_db for {len(curves)} curves; expected one level per curve")
    if reference is not None and len(reference) != len(curves):
        raise ValueError(f"{len(reference)} reference curves for {len(curves)} curves; expected as many")
    lines = []
    for i, (x, y) in enumerate(curves):
        x, y = _as_levels(x, "input").ravel(), _as_levels(y, "output").ravel()
        if x.shape != y.shape or x.size == 0:
            raise ValueError(f"curve {i}: input {x.shape} and output {y.shape}; expected two 1-D arrays of one length")
        label = f"{levels_db[i]:g} dBFS" if levels_db is not None else None
        (line,) = ax.plot(x, y, linewidth=1.2, label=label)
        lines.append(line)
        if reference is not None:
            rx, ry = (_as_levels(v, "reference").ravel() for v in reference[i])
            (dashed,) = ax.plot(rx, ry, "--", linewidth=1.0, color=line.get_color())
            lines.append(dashed)
    ax.axhline(0.0, color="0.6", linewidth=0.6)
    ax.axvline(0.0, color="0.6", linewidth=0.6)
    ax.set_xlabel("Input")
    ax.set_ylabel("Output")
    ax.grid(True, alpha=0.3)
    if levels_db is not None:
        ax.legend(loc="upper left", fontsize=7)
    if title:
        ax.set_title(title + (" (dashed: reference)" if reference is not None else ""))
    return lines


def fit_report(
    path: str | os.PathLike,
    *,
    target: ArrayLike,
    prediction: ArrayLike,
    sample_rate: float,
    harmonic_levels_db: Sequence[float] | None = None,
    harmonics_db: ArrayLike | None = None,
    reference_harmonics_db: ArrayLike | None = None,
    harmonic_f0_hz: float | None = None,
    transfer: Sequence[tuple[ArrayLike, ArrayLike]] | None = None,
    transfer_levels_db: Sequence[float] | None = None,
    reference_transfer: Sequence[tuple[ArrayLike, ArrayLike]] | None = None,
    loss_history: Sequence[float] | Mapping[str, Sequence[float]] | None = None,
    validation_history: Sequence[tuple[int, float]] | None = None,
    title: str = "",
    dpi: float = 100.0,
) -> Path:
    """Write a fit report image for a recorded amp: spectra, harmonic response, transfer
    curves (and the loss curve).

    Panels, in a 2-column grid: the long-term average spectra of ``target`` and ``prediction``
    (held-out audio, :func:`average_spectrum`) titled with their ESR; the harmonic response
    (:func:`harmonics`, with ``harmonics_db``); the transfer curves (:func:`transfer_curves`,
    with ``transfer``); the loss history (:func:`loss_curve`, with ``loss_history``). Panels
    whose data is not given are left out.

    Args:
        path: image file (``.png``; other matplotlib formats by extension). Written atomically.
        target, prediction: audio of the same length (channel 0 of item 0 is used).
        sample_rate: in Hz.
        harmonic_levels_db, harmonics_db, reference_harmonics_db: input levels and the
            ``(n_levels, n_harmonics)`` output levels of the model (and a reference).
        harmonic_f0_hz: the probe's fundamental, for the panel title.
        transfer, transfer_levels_db, reference_transfer: ``(input, output)`` curves.
        loss_history: losses per step, or a mapping name -> losses (e.g. train / held-out).
        validation_history: ``(step, loss)`` of periodic held-out evaluations, drawn on the
            loss panel at their steps (e.g. ``FitResult.validation_history``).
        title: figure title.
        dpi: resolution.

    Returns:
        ``path`` as a :class:`pathlib.Path`.
    """
    sr = check_sample_rate(sample_rate)
    x, y = _pair(target, prediction, "target", "prediction")
    if harmonics_db is not None and harmonic_levels_db is None:
        raise ValueError("harmonics_db needs harmonic_levels_db (the input levels, dBFS)")
    panels = ["spectrum"]
    if harmonics_db is not None:
        panels.append("harmonics")
    if transfer is not None:
        panels.append("transfer")
    if loss_history is not None:
        panels.append("loss")
    rows = math.ceil(len(panels) / 2)
    cols = 1 if len(panels) == 1 else 2
    fig = Figure(figsize=(FIGURE_WIDTH_IN * (1.2 if cols == 2 else 1.0), 1.5 * PANEL_HEIGHT_IN * rows), dpi=dpi,
                 layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for ax, panel in zip(axes, panels):
        if panel == "spectrum":
            average_spectrum(ax, {"target": x, "fitted": y}, sr,
                             title=f"average spectrum, {_error_db(x, x - y)}")
        elif panel == "harmonics":
            at = f" of {harmonic_f0_hz:g} Hz sines" if harmonic_f0_hz else ""
            harmonics(ax, harmonic_levels_db, harmonics_db, reference_harmonics_db, title=f"harmonics{at}")
        elif panel == "transfer":
            transfer_curves(ax, transfer, transfer_levels_db, reference_transfer)
        else:
            loss_curve(ax, loss_history)
            if validation_history:
                steps, values = zip(*validation_history)
                v = np.asarray(values, dtype=np.float64)
                v = np.where(np.isfinite(v) & (v > 0), v, np.nan)
                ax.plot(steps, v, "s-", markersize=3, linewidth=1.2, label="held-out")
                ax.legend(loc="upper right")
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title)
    return _save(fig, path, dpi)
