"""Pure differentiable DSP: functions of tensors, no nn.Module, no state kept between calls."""

from .control import as_control, upsample_control
from .conversions import db_to_gain, gain_to_db, power_to_db
from .filters import (
    BIQUAD_MODES,
    ONE_POLE_MODES,
    biquad_coefficients,
    frequency_response,
    iir,
    one_pole_coefficients,
)

__all__ = [
    "as_control",
    "upsample_control",
    "db_to_gain",
    "gain_to_db",
    "power_to_db",
    "BIQUAD_MODES",
    "ONE_POLE_MODES",
    "biquad_coefficients",
    "one_pole_coefficients",
    "frequency_response",
    "iir",
]
