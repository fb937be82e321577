"""Training: losses, metrics, latency alignment and the fit loop."""

from dspfx.train.fit import FitResult, fit

__all__ = ["fit", "FitResult"]
