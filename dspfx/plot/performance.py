"""A picture of a performance: the notes a render played, the controls it was asked to play
them with, and what the render shows (``dspfx play --plot``).

The render is measured as a recording is (:func:`dspfx.ddsp.expression.note_controls`), so the
picture shows each control as played and as heard, note by note, on the time axis of the
spectrogram above them: where a note misses its control, it shows.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from dspfx.plot.signals import FIGURE_WIDTH_IN, _save, _signal, spectrogram

__all__ = ["performance_report", "check_image_path"]

#: The controls' rows, in :data:`dspfx.ddsp.expression.CONTROL_NAMES` order, with their units.
#: The least span (in the control's unit) a row's axis shows, so that a spread of a hundredth
#: of a decibel does not fill the row.
MIN_SPANS = {"volume": 3.0, "volume_fluctuation": 1.0, "volume_peak_position": 0.2, "vibrato": 0.1, "brightness": 0.5,
             "attack_noise": 3.0}
CONTROL_LABELS = {
    "volume": "volume\n(dB)",
    "volume_fluctuation": "fluctuation\n(dB)",
    "volume_peak_position": "peak\nposition",
    "vibrato": "vibrato\n(st)",
    "brightness": "brightness\n(harmonic)",
    "attack_noise": "attack\nnoise (dB)",
}


def check_image_path(path: str | os.PathLike) -> Path:
    """``path`` as an image file matplotlib writes (by its extension) in an existing folder;
    a clear error otherwise (checked before a render's work)."""
    p = Path(os.fspath(path))
    supported = Figure().canvas.get_supported_filetypes()
    if p.suffix[1:].lower() not in supported:
        raise ValueError(f"cannot write a picture to {str(p)!r}: unknown image extension {p.suffix!r}; "
                         f"expected .png (or one of {sorted(supported)})")
    if not p.resolve().parent.is_dir():
        raise FileNotFoundError(f"picture folder {str(p.resolve().parent)!r} does not exist")
    return p


def performance_report(path: str | os.PathLike, audio: Any, sample_rate: int, notes: Sequence[Any],
                       played: Mapping[str, Any] | None = None, *, title: str = "", dpi: float = 110.0,
                       ) -> tuple[Path, np.ndarray]:
    """Write a picture of a rendered performance and return it with the render's controls.

    Panels, on one time axis: the spectrogram with each note drawn at its written pitch and the
    tracked f0 over it; the loudness with each note's volume; one row per control of
    :data:`~dspfx.ddsp.expression.CONTROL_NAMES`, each note's value as measured on the render
    (filled) and as played (open: asked or the expression generator's), at the note's onset.

    Args:
        path: the image file (written atomically; its extension picks the format).
        audio: the render, ``(samples,)`` (or batched; channel 0 of item 0).
        sample_rate: its rate.
        notes: the notes it played (:class:`dspfx.ddsp.midi.MidiNote`).
        played: ``{control: one value per note}`` it was played with
            (:func:`dspfx.ddsp.play.performance`); controls left out are drawn as measured only.

    Returns:
        ``(path, measured)``: the file and the render's controls ``(notes, 6)``.
    """
    from dspfx.ddsp.expression import CONTROL_NAMES, frame_analysis, note_controls

    p = check_image_path(path)
    if len(notes) == 0:
        raise ValueError("performance_report needs at least one note")
    x = _signal(audio, "audio")
    played = dict(played or {})
    unknown = set(played) - set(CONTROL_NAMES)
    if unknown:
        raise ValueError(f"played: unknown controls {sorted(unknown)}; expected some of {list(CONTROL_NAMES)}")
    values = {}
    for name, v in played.items():
        arr = np.asarray(v, dtype=np.float64).reshape(-1)
        if arr.size != len(notes):
            raise ValueError(f"played[{name!r}]: one value per note ({len(notes)}), got {arr.size}")
        values[name] = arr
    frame_rate = 250.0
    analysis = frame_analysis(x, sample_rate, frame_rate, notes=list(notes))
    measured = note_controls(None, sample_rate, list(notes), frame_rate, analysis=analysis)
    t = np.arange(analysis["loudness_db"].size) / frame_rate
    onsets = np.array([n.start_s for n in notes])

    heights = [3.0, 1.6] + [0.85] * len(CONTROL_NAMES)
    fig = Figure(figsize=(FIGURE_WIDTH_IN, sum(heights) + 0.6), layout="constrained")
    axes = fig.subplots(len(heights), 1, sharex=True, gridspec_kw={"height_ratios": heights})
    spec_ax, loud_ax, rows = axes[0], axes[1], axes[2:]
    spectrogram(spec_ax, x, sample_rate, title=title or "render: notes (white) and tracked f0 (cyan)",
                n_fft=1024, hop=128, vmin_db=-90.0)
    for n in notes:
        hz = 440.0 * 2.0 ** ((n.pitch - 69) / 12.0)
        spec_ax.plot([n.start_s, n.end_s], [hz, hz], color="white", lw=2.0, alpha=0.8, solid_capstyle="butt")
    f0 = np.where(analysis["confidence"] >= 0.5, analysis["f0_hz"], np.nan)
    spec_ax.plot(t, f0, color="cyan", lw=0.8)
    spec_ax.set_xlabel("")
    lowest = 440.0 * 2.0 ** ((min(n.pitch for n in notes) - 69) / 12.0)
    spec_ax.set_ylim(max(20.0, lowest / 2.0), sample_rate / 2.0)

    loud_ax.plot(t, analysis["loudness_db"], color="0.3", lw=0.8, label="loudness")
    for j, n in enumerate(notes):
        loud_ax.plot([n.start_s, n.end_s], [measured[j, 0]] * 2, color="C0", lw=2.0,
                     label="volume heard" if j == 0 else None)
        if "volume" in values:
            loud_ax.plot([n.start_s, n.end_s], [values["volume"][j]] * 2, color="C1", lw=1.2, ls="--",
                         label="volume played" if j == 0 else None)
    loud_ax.set_ylabel("loudness\n(dB)")
    loud_ax.set_ylim(max(-80.0, float(np.min(measured[:, 0])) - 20.0), 0.0)
    loud_ax.legend(loc="lower right", fontsize="small", ncol=3)

    for ax, name in zip(rows, CONTROL_NAMES):
        k = CONTROL_NAMES.index(name)
        ax.plot(onsets, measured[:, k], "o", color="C0", ms=4, label="heard")
        if name in values:
            ax.plot(onsets, values[name], "o", mfc="none", color="C1", ms=6, label="played")
        ax.set_ylabel(CONTROL_LABELS[name], fontsize="small")
        ax.grid(alpha=0.3)
        shown = np.concatenate([measured[:, k], values.get(name, np.zeros(0))])
        shown = shown[np.isfinite(shown)]
        if shown.size:
            lo, hi = float(shown.min()), float(shown.max())
            pad = max(0.1 * (hi - lo), 0.5 * max(0.0, MIN_SPANS[name] - (hi - lo)))
            ax.set_ylim(lo - pad, hi + pad)
    rows[0].legend(loc="upper right", fontsize="small", ncol=2)
    rows[-1].set_xlabel("Time (s)")
    spec_ax.set_xlim(0.0, x.size / sample_rate)
    return _save(fig, p, dpi), measured
