"""Effects: filters, EQ, modulated delays, reverbs, dynamics, distortion.

Importing this package registers every effect unit; each module lists its units in ``__all__``.
"""

from dspfx.effects.convolution import *  # noqa: F401,F403
from dspfx.effects.convolution import __all__ as _convolution
from dspfx.effects.delay import *  # noqa: F401,F403
from dspfx.effects.delay import __all__ as _delay
from dspfx.effects.distortion import *  # noqa: F401,F403
from dspfx.effects.distortion import __all__ as _distortion
from dspfx.effects.dynamics import *  # noqa: F401,F403
from dspfx.effects.dynamics import __all__ as _dynamics
from dspfx.effects.filters import *  # noqa: F401,F403
from dspfx.effects.filters import __all__ as _filters
from dspfx.effects.gain import *  # noqa: F401,F403
from dspfx.effects.gain import __all__ as _gain

__all__ = [*_gain, *_distortion, *_filters, *_dynamics, *_delay, *_convolution]
