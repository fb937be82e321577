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
from dspfx.effects.fdn_reverb import *  # noqa: F401,F403
from dspfx.effects.fdn_reverb import __all__ as _fdn_reverb
from dspfx.effects.noise_reverb import *  # noqa: F401,F403
from dspfx.effects.noise_reverb import __all__ as _noise_reverb
from dspfx.effects.phaser import *  # noqa: F401,F403
from dspfx.effects.phaser import __all__ as _phaser
from dspfx.effects.reverb import *  # noqa: F401,F403
from dspfx.effects.reverb import __all__ as _reverb
from dspfx.effects.modulation import *  # noqa: F401,F403
from dspfx.effects.modulation import __all__ as _modulation
from dspfx.effects.ladder import *  # noqa: F401,F403
from dspfx.effects.ladder import __all__ as _ladder
from dspfx.effects.svf import *  # noqa: F401,F403
from dspfx.effects.svf import __all__ as _svf

__all__ = [*_gain, *_distortion, *_filters, *_svf, *_ladder, *_dynamics, *_delay, *_convolution, *_modulation, *_phaser, *_reverb, *_fdn_reverb, *_noise_reverb]
