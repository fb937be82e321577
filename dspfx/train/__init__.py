"""Training: losses, metrics, latency alignment, the fit loop, and the DDSP pieces.

- :func:`fit` / :class:`FitResult`: gradient-descent fitting of a unit's knobs to target audio;
- :mod:`~dspfx.train.features`: loudness (A-weighted) and pitch (fast pYIN-style tracker,
  librosa pyin, optional CREPE) per frame;
- :mod:`~dspfx.train.data`: ``prepare`` a folder of audio into safetensors shards + statistics,
  and the ``Dataset`` that reads them.
"""

from dspfx.train import data, features  # noqa: F401
from dspfx.train.fit import FitResult, fit

__all__ = ["fit", "FitResult", "features", "data"]
