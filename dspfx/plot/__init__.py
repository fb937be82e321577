"""Plots: spectrograms, loss curves, frequency responses, fit/comparison reports, and the
picture of a played performance (:func:`performance_report`).

Built on :class:`matplotlib.figure.Figure` directly (no pyplot state, no display needed: files
are rendered by matplotlib's Agg canvas). The axes-level functions draw on an axes you give
them; :func:`report`, :func:`comparison`, :func:`fit_report` and :func:`performance_report` write one image file, atomically
(:func:`dspfx.io.atomic_write`).

Audio arguments are tensors or ndarrays shaped ``(samples,)``, ``(channels, samples)`` or
``(batch, channels, samples)``; channel 0 of batch item 0 is plotted.
"""

from dspfx.plot.capture import average_spectrum, fit_report, harmonics, transfer_curves
from dspfx.plot.performance import performance_report
from dspfx.plot.signals import (
    FIGURE_WIDTH_IN,
    MAX_FRAMES,
    PANEL_HEIGHT_IN,
    comparison,
    frequency_response,
    loss_curve,
    report,
    spectrogram,
)

__all__ = [
    "spectrogram",
    "loss_curve",
    "frequency_response",
    "report",
    "comparison",
    "average_spectrum",
    "harmonics",
    "transfer_curves",
    "fit_report",
    "performance_report",
    "FIGURE_WIDTH_IN",
    "PANEL_HEIGHT_IN",
    "MAX_FRAMES",
]
