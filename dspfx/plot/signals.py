"""Plots of signals: spectrograms, loss curves, frequency responses, and the fit and comparison
reports (:mod:`dspfx.plot`)."""
from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Union

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.collections import QuadMesh
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from dspfx.checks import check_sample_rate
from dspfx.checks import as_batch
from dspfx.io import atomic_write

__all__ = ["spectrogram", "loss_curve", "frequency_response", "report", "comparison"]

ArrayLike = Union[torch.Tensor, np.ndarray]

#: Figure width (inches) and height per panel (inches) of :func:`report` and :func:`comparison`.
FIGURE_WIDTH_IN = 10.0
PANEL_HEIGHT_IN = 2.6
#: At most this many spectrogram frames are drawn; longer signals are max-pooled in time.
MAX_FRAMES = 1600
_FLOOR = 1e-12


def _signal(audio: ArrayLike, name: str) -> np.ndarray:
    """Channel 0 of batch item 0, as a float64 numpy vector."""
    try:
        x, _ = as_batch(audio)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{name}: {exc}") from None
    if x.shape[-1] == 0:
        raise ValueError(f"{name} has shape {tuple(x.shape)} with no samples; expected at least one")
    return x[0, 0].detach().cpu().to(torch.float64).numpy()


def _stft_db(x: np.ndarray, sample_rate: float, n_fft: int, hop: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Magnitude in dBFS (a full-scale sine reads 0 dB), shape (bins, frames), with time and
    frequency cell edges. Frames are centred (zero padding of n_fft / 2 each side)."""
    window = np.hanning(n_fft + 1)[:-1]  # periodic Hann
    pad = n_fft // 2
    xp = np.pad(x, (pad, pad + n_fft))
    n_frames = 1 + (len(x) - 1) // hop  # frame m is centred on sample m * hop
    idx = np.arange(n_fft)[None, :] + hop * np.arange(n_frames)[:, None]
    spec = np.abs(np.fft.rfft(xp[idx] * window, axis=1)).T * (2.0 / window.sum())
    db = 20.0 * np.log10(np.maximum(spec, _FLOOR))
    if n_frames > MAX_FRAMES:  # max-pool in time so long signals stay cheap to draw
        k = math.ceil(n_frames / MAX_FRAMES)
        n_keep = math.ceil(n_frames / k) * k
        db = np.pad(db, ((0, 0), (0, n_keep - n_frames)), constant_values=-np.inf)
        db = db.reshape(db.shape[0], -1, k).max(axis=2)
        t_edges = (np.arange(db.shape[1] + 1) * k * hop - hop / 2) / sample_rate
    else:
        t_edges = (np.arange(n_frames + 1) * hop - hop / 2) / sample_rate
    t_edges = np.clip(t_edges, 0.0, None)
    f_centres = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    df = sample_rate / n_fft
    f_edges = np.concatenate([f_centres - df / 2, [f_centres[-1] + df / 2]])
    return db, t_edges, f_edges


def spectrogram(
    ax: Axes,
    audio: ArrayLike,
    sample_rate: float,
    title: str = "",
    n_fft: int = 2048,
    hop: int = 512,
    vmin_db: float = -100.0,
    vmax_db: float | None = None,
) -> QuadMesh:
    """Draw a dB spectrogram with a log frequency axis on ``ax``.

    Magnitudes are in dBFS: a Hann-windowed STFT scaled so that a full-scale sine reads 0 dB.
    The DC bin is left out (log axis); the axis spans ``sample_rate / n_fft`` (at least 20 Hz)
    to Nyquist. Frames are centred; signals longer than ``MAX_FRAMES`` frames are max-pooled
    in time so they draw quickly.

    Args:
        ax: a matplotlib axes.
        audio: tensor/ndarray ``(samples,)``, ``(channels, samples)`` or
            ``(batch, channels, samples)``; channel 0 of item 0 is drawn.
        sample_rate: in Hz.
        title: axes title.
        n_fft: FFT size (window length) in samples.
        hop: hop size in samples.
        vmin_db: bottom of the colour scale, dB.
        vmax_db: top of the colour scale, dB (default: the loudest cell, at least
            ``vmin_db + 1``). Pass the same limits to compare several plots.

    Returns:
        The :class:`~matplotlib.collections.QuadMesh` (for a colorbar).
    """
    sr = check_sample_rate(sample_rate)
    for name, v in (("n_fft", n_fft), ("hop", hop)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive integer (samples), got {v!r}")
    if n_fft < 4:
        raise ValueError(f"n_fft must be at least 4 samples, got {n_fft}")
    x = _signal(audio, "audio")
    db, t_edges, f_edges = _stft_db(x, sr, int(n_fft), int(hop))
    db, f_edges = db[1:], f_edges[1:]  # drop DC: no place for 0 Hz on a log axis
    f_edges[0] = max(f_edges[0], 1e-3)
    if vmax_db is None:
        vmax_db = max(float(np.max(db)), vmin_db + 1.0)
    mesh = ax.pcolormesh(t_edges, f_edges, db, shading="flat", cmap="magma",
                         vmin=vmin_db, vmax=vmax_db, rasterized=True)
    ax.set_yscale("log")
    ax.set_ylim(max(20.0, sr / n_fft), sr / 2)
    ax.set_xlim(t_edges[0], t_edges[-1])
    ax.set_xlabel("Time (s)")
    ax.set_ylabel("Frequency (Hz)")
    if title:
        ax.set_title(title)
    return mesh


def loss_curve(
    ax: Axes,
    history: Sequence[float] | Mapping[str, Sequence[float]] | np.ndarray | torch.Tensor,
    title: str = "loss",
) -> list[Line2D]:
    """Draw a loss history against step on a log y axis, marking the best (lowest) value.

    Args:
        ax: a matplotlib axes.
        history: losses per step (list, ndarray or 1-D tensor), or a mapping name -> losses
            to draw several curves (e.g. ``{"train": ..., "valid": ...}``). NaN/Inf steps
            are left as gaps; values <= 0 cannot be shown on the log axis and are masked.
        title: axes title.

    Returns:
        The drawn lines.
    """
    curves = dict(history) if isinstance(history, Mapping) else {"": history}
    if not curves:
        raise ValueError("history is an empty mapping; expected at least one loss curve")
    lines = []
    for label, values in curves.items():
        if isinstance(values, torch.Tensor):
            values = values.detach().cpu().to(torch.float64).numpy()
        y = np.asarray(values, dtype=np.float64)
        if y.ndim != 1 or y.size == 0:
            name = f"history[{label!r}]" if label else "history"
            raise ValueError(f"{name} has shape {y.shape}; expected a non-empty 1-D sequence of losses")
        y = np.where(np.isfinite(y) & (y > 0), y, np.nan)
        steps = np.arange(y.size)
        (line,) = ax.plot(steps, y, label=label or None, linewidth=1.2)
        lines.append(line)
        if np.any(np.isfinite(y)):
            best = int(np.nanargmin(y))
            ax.plot([best], [y[best]], "o", color=line.get_color(), markersize=4)
            right = best > y.size / 2  # keep the label inside the axes
            ax.annotate(f"best {y[best]:.4g} @ {best}", (best, y[best]), textcoords="offset points",
                        xytext=(-4 if right else 4, 6), ha="right" if right else "left",
                        fontsize=8, color=line.get_color())
    ax.set_yscale("log")
    ax.set_xlabel("Step")
    ax.set_ylabel("Loss")
    ax.grid(True, which="both", alpha=0.3)
    if title:
        ax.set_title(title)
    if any(curves.keys()):
        ax.legend(loc="upper right")
    return lines


def frequency_response(
    ax: Axes,
    freqs_hz: ArrayLike | Sequence[float],
    response_db: ArrayLike | Sequence[float],
    label: str | None = None,
) -> Line2D:
    """Draw a magnitude response (dB) against frequency on a log x axis.

    Call it several times on the same axes to overlay responses (give each a ``label``).

    Args:
        ax: a matplotlib axes.
        freqs_hz: frequencies in Hz, shape ``(n,)``; values <= 0 are not drawn (log axis).
        response_db: magnitudes in dB, shape ``(n,)``.
        label: legend entry.

    Returns:
        The drawn line.
    """
    f = np.asarray(freqs_hz.detach().cpu() if isinstance(freqs_hz, torch.Tensor) else freqs_hz, dtype=np.float64)
    r = np.asarray(
        response_db.detach().cpu() if isinstance(response_db, torch.Tensor) else response_db, dtype=np.float64
    )
    if f.ndim != 1 or r.ndim != 1 or f.shape != r.shape or f.size == 0:
        raise ValueError(
            f"freqs_hz has shape {f.shape} and response_db has shape {r.shape}; "
            f"expected two non-empty 1-D arrays of the same length"
        )
    keep = f > 0
    (line,) = ax.semilogx(f[keep], r[keep], label=label, linewidth=1.2)
    ax.set_xlabel("Frequency (Hz)")
    ax.set_ylabel("Magnitude (dB)")
    ax.grid(True, which="both", alpha=0.3)
    if label is not None:
        ax.legend(loc="best")
    return line


def _save(fig: Figure, path: str | os.PathLike, dpi: float) -> Path:
    p = Path(os.fspath(path))
    fmt = p.suffix[1:].lower() or "png"
    supported = fig.canvas.get_supported_filetypes()
    if fmt not in supported:
        raise ValueError(f"cannot save a figure to {str(p)!r}: unknown image extension {p.suffix!r}; "
                         f"expected .png (or one of {sorted(supported)})")
    return atomic_write(p, lambda tmp: fig.savefig(tmp, format=fmt, dpi=dpi))


def _pair(a: ArrayLike, b: ArrayLike, name_a: str, name_b: str) -> tuple[np.ndarray, np.ndarray]:
    x, y = _signal(a, name_a), _signal(b, name_b)
    if x.shape != y.shape:
        raise ValueError(
            f"{name_a} has {x.size} samples and {name_b} has {y.size} (shapes {tuple(a.shape)} and "
            f"{tuple(b.shape)}); expected the same length: trim or align them first"
        )
    return x, y


def _error_db(reference: np.ndarray, error: np.ndarray) -> str:
    """Error-to-signal ratio as text: sum(e^2) / sum(ref^2), in dB."""
    num, den = float(np.sum(error**2)), float(np.sum(reference**2))
    if den == 0:
        return "ESR n/a (silent reference)"
    if num == 0:
        return "ESR -inf dB (identical)"
    return f"ESR {num / den:.3g} ({10 * math.log10(num / den):.1f} dB)"


def _spectrogram_panels(fig: Figure, axes: list[Axes], signals: list[tuple[np.ndarray, str]],
                        sample_rate: float) -> None:
    """Spectrograms on a shared colour scale set by the first signal, one colorbar."""
    db0 = _stft_db(signals[0][0], sample_rate, 2048, 512)[0][1:]
    vmax = max(float(np.max(db0)), -99.0)
    vmin = vmax - 100.0
    mesh = None
    for ax, (x, name) in zip(axes, signals):
        mesh = spectrogram(ax, x, sample_rate, title=name, vmin_db=vmin, vmax_db=vmax)
        ax.set_xlabel("")
    axes[len(signals) - 1].set_xlabel("Time (s)")
    fig.colorbar(mesh, ax=axes[: len(signals)], label="Level (dBFS)", fraction=0.03, pad=0.01)


def report(
    path: str | os.PathLike,
    *,
    target: ArrayLike,
    prediction: ArrayLike,
    sample_rate: float,
    loss_history: Sequence[float] | Mapping[str, Sequence[float]] | None = None,
    title: str = "",
    dpi: float = 100.0,
) -> Path:
    """Write a fit report image: target, prediction and difference spectrograms (+ loss curve).

    The difference panel is the spectrogram of ``target - prediction`` (in the time domain),
    titled with its error-to-signal ratio; all three panels share the target's colour scale
    (its loudest cell down 100 dB) and one colorbar. With ``loss_history`` a fourth panel shows
    :func:`loss_curve`. The figure is ``FIGURE_WIDTH_IN`` x ``PANEL_HEIGHT_IN`` per panel
    inches at ``dpi`` (1000 x 780 px for 3 panels, 1000 x 1040 px for 4, at 100 dpi).

    Args:
        path: image file (``.png``; other matplotlib formats by extension). Written atomically.
        target: the reference audio, ``(samples,)``, ``(channels, samples)`` or
            ``(batch, channels, samples)``; channel 0 of item 0 is plotted.
        prediction: the model's audio, same number of samples.
        sample_rate: in Hz.
        loss_history: losses per step, or a mapping name -> losses.
        title: figure title.
        dpi: resolution of the image.

    Returns:
        ``path`` as a :class:`pathlib.Path`.

    Raises:
        ValueError: mismatched lengths, bad shapes or an unknown image extension.
    """
    sr = check_sample_rate(sample_rate)
    x, y = _pair(target, prediction, "target", "prediction")
    n_panels = 3 + (loss_history is not None)
    fig = Figure(figsize=(FIGURE_WIDTH_IN, PANEL_HEIGHT_IN * n_panels), dpi=dpi, layout="constrained")
    axes = list(fig.subplots(n_panels, 1))
    _spectrogram_panels(fig, axes, [(x, "target"), (y, "prediction"),
                                    (x - y, f"difference (target - prediction), {_error_db(x, x - y)}")], sr)
    if loss_history is not None:
        loss_curve(axes[3], loss_history)
    if title:
        fig.suptitle(title)
    return _save(fig, path, dpi)


def _waveform(ax: Axes, x: np.ndarray, sample_rate: float, max_points: int = 4000) -> None:
    """Waveform against time; long signals are drawn as a min/max envelope per column."""
    n = x.size
    if n <= 2 * max_points:
        ax.plot(np.arange(n) / sample_rate, x, linewidth=0.8)
        return
    k = math.ceil(n / max_points)
    padded = np.pad(x, (0, (-n) % k), mode="edge").reshape(-1, k)
    t = (np.arange(padded.shape[0]) * k + k / 2) / sample_rate
    ax.fill_between(t, padded.min(axis=1), padded.max(axis=1), linewidth=0.5)


def comparison(
    path: str | os.PathLike,
    *,
    a: ArrayLike,
    b: ArrayLike,
    sample_rate: float,
    title: str = "",
    labels: tuple[str, str] = ("a", "b"),
    dpi: float = 100.0,
) -> Path:
    """Write an image comparing two signals: both spectrograms, their difference, and the
    waveform error ``a - b`` over time.

    Spectrograms share ``a``'s colour scale and one colorbar; the difference panel is titled
    with the error-to-signal ratio ``sum((a - b)^2) / sum(a^2)``. Four panels of
    ``FIGURE_WIDTH_IN`` x ``PANEL_HEIGHT_IN`` inches at ``dpi``.

    Args:
        path: image file (``.png``; other matplotlib formats by extension). Written atomically.
        a: reference audio, ``(samples,)``, ``(channels, samples)`` or
            ``(batch, channels, samples)``; channel 0 of item 0 is plotted.
        b: audio to compare, same number of samples.
        sample_rate: in Hz.
        title: figure title.
        labels: names for ``a`` and ``b`` in the panel titles.
        dpi: resolution of the image.

    Returns:
        ``path`` as a :class:`pathlib.Path`.
    """
    sr = check_sample_rate(sample_rate)
    name_a, name_b = labels
    x, y = _pair(a, b, name_a, name_b)
    fig = Figure(figsize=(FIGURE_WIDTH_IN, PANEL_HEIGHT_IN * 4), dpi=dpi, layout="constrained")
    axes = list(fig.subplots(4, 1))
    err = x - y
    _spectrogram_panels(fig, axes, [(x, name_a), (y, name_b),
                                    (err, f"difference ({name_a} - {name_b}), {_error_db(x, err)}")], sr)
    ax = axes[3]
    _waveform(ax, err, sr)
    peak = float(np.max(np.abs(err)))
    ax.set_title(f"waveform error {name_a} - {name_b} (peak {peak:.3g})")
    ax.set_xlabel("Time (s)")
    ax.set_ylabel("Amplitude")
    ax.set_xlim(0.0, x.size / sr)
    ax.grid(True, alpha=0.3)
    if title:
        fig.suptitle(title)
    return _save(fig, path, dpi)
