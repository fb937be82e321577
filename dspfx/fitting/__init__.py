"""Fitting: the one training core and the jobs on top of it that match units to target audio.

- :mod:`~dspfx.fitting.loop`: :func:`optimise`, the optimisation core every training job
  uses (``dspfx.fit``, the knob-conditioned amp, the DDSP trainer): parameter groups with
  their own rates, a schedule, one NaN/Inf policy, best state on validation, a wall-clock
  budget, a progress bar, checkpoints and torchrun;
- :func:`fit` / :class:`FitResult`: a unit's knobs (and learned tensors) fitted to a
  DI/target pair;
- :mod:`~dspfx.fitting.capture`: checks of a DI/target pair before fitting;
- :mod:`~dspfx.fitting.capture_model`: :func:`capture`, a device captured as a model (``dspfx
  capture``); :mod:`~dspfx.fitting.reamp`: the reamp signal and its blips;
- :mod:`~dspfx.fitting.probes`: harmonic levels and transfer curves of a fitted unit;
- :mod:`~dspfx.fitting.losses`, :mod:`~dspfx.fitting.metrics`, :mod:`~dspfx.fitting.latency`.

The DDSP instrument pipeline (features, datasets, decoder, trainer, transfer) is the other
product, in :mod:`dspfx.ddsp`; it trains through the same core.
"""

from dspfx.fitting.capture import CaptureReport, CaptureWarning, check_capture
from dspfx.fitting.capture_model import CaptureResult, capture
from dspfx.fitting.fit import FitResult, fit
from dspfx.fitting.loop import LoopResult, optimise

__all__ = ["fit", "FitResult", "check_capture", "CaptureReport", "CaptureWarning", "optimise", "LoopResult",
           "capture", "CaptureResult"]
