"""Guitar-amp blocks: preamp, tone stack, power amp, output transformer, cabinet, and
:func:`amp`, the full amp chain with front-panel knobs, and :class:`KnobConditioned`, which maps
front-panel settings (0-10) through a small network to the chain's knobs; :class:`LSTMAmp`
(Wright et al.'s LSTM) and :class:`WaveNetAmp` (Neural Amp Modeler's WaveNet) are the black-box
models that gray-box fits are compared against.

Importing this package registers every amp unit; each module lists its units in ``__all__``.
"""

from dspfx.amps.cabinet import *  # noqa: F401,F403
from dspfx.amps.cabinet import __all__ as _cabinet
from dspfx.amps.power_amp import *  # noqa: F401,F403
from dspfx.amps.power_amp import __all__ as _power_amp
from dspfx.amps.preamp import *  # noqa: F401,F403
from dspfx.amps.preamp import __all__ as _preamp
from dspfx.amps.tonestack import *  # noqa: F401,F403
from dspfx.amps.tonestack import __all__ as _tonestack
from dspfx.amps.transformer import *  # noqa: F401,F403
from dspfx.amps.transformer import __all__ as _transformer
from dspfx.amps.amp import *  # noqa: F401,F403,E402  (last: ``dspfx.amps.amp`` is the function)
from dspfx.amps.amp import __all__ as _amp  # noqa: E402
from dspfx.amps.conditioned import *  # noqa: F401,F403,E402
from dspfx.amps.conditioned import __all__ as _conditioned  # noqa: E402
from dspfx.amps.lstm import *  # noqa: F401,F403,E402
from dspfx.amps.lstm import __all__ as _lstm  # noqa: E402
from dspfx.amps.wavenet import *  # noqa: F401,F403,E402
from dspfx.amps.wavenet import __all__ as _wavenet  # noqa: E402

__all__ = [*_preamp, *_tonestack, *_power_amp, *_transformer, *_cabinet, *_amp, *_conditioned, *_lstm, *_wavenet]
