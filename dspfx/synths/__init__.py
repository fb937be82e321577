"""Synths: harmonic (additive), filtered noise, sinusoidal, wavetable, FM, waveshaping, subtractive.

Importing this package registers every synth unit; each module lists its units in ``__all__``.
"""

from dspfx.synths.ddsp import *  # noqa: F401,F403
from dspfx.synths.ddsp import __all__ as _ddsp
from dspfx.synths.fm import *  # noqa: F401,F403
from dspfx.synths.fm import __all__ as _fm
from dspfx.synths.harmonic import *  # noqa: F401,F403
from dspfx.synths.harmonic import __all__ as _harmonic
from dspfx.synths.noise import *  # noqa: F401,F403
from dspfx.synths.noise import __all__ as _noise
from dspfx.synths.subtractive import *  # noqa: F401,F403
from dspfx.synths.subtractive import __all__ as _subtractive
from dspfx.synths.wavetable import *  # noqa: F401,F403
from dspfx.synths.wavetable import __all__ as _wavetable
from dspfx.synths.waveshaper import *  # noqa: F401,F403
from dspfx.synths.waveshaper import __all__ as _waveshaper

__all__ = [*_harmonic, *_noise, *_wavetable, *_fm, *_subtractive, *_waveshaper, *_ddsp]
