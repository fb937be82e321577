"""Guitar-amp blocks: preamp, tone stack, power amp, output transformer, cabinet.

Importing this package registers every amp unit; each module lists its units in ``__all__``.
"""

from dspfx.amps.cabinet import *  # noqa: F401,F403
from dspfx.amps.cabinet import __all__ as _cabinet
from dspfx.amps.tonestack import *  # noqa: F401,F403
from dspfx.amps.tonestack import __all__ as _tonestack

__all__ = [*_tonestack, *_cabinet]
