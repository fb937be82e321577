"""Effects: filters, EQ, modulated delays, reverbs, dynamics, distortion."""

from dspfx.effects.distortion import Distortion
from dspfx.effects.filters import BIQUAD_MODES, Biquad
from dspfx.effects.gain import Gain

__all__ = ["Gain", "Distortion", "Biquad", "BIQUAD_MODES"]
