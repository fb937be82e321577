"""Pure differentiable DSP: functions of tensors, no nn.Module, no state kept between calls.

- :mod:`~dspfx.functional.control`: control upsampling and normalisation;
- :mod:`~dspfx.functional.conversions`: dB helpers;
- :mod:`~dspfx.functional.filters`: biquad / one-pole / FIR design, frequency responses, the
  exact time-varying recursive filter :func:`iir`;
- :mod:`~dspfx.functional.nonlinear`: clippers, bit crushing, Chebyshev series, curves;
- :mod:`~dspfx.functional.dynamics`: envelope ballistics, compressor, expander, gate, limiter;
- :mod:`~dspfx.functional.delay`: the feedback delay line (echo);
- :mod:`~dspfx.functional.convolution`: FFT convolution with carried history, IR normalisation.
"""

from .control import *  # noqa: F401,F403
from .control import __all__ as _control
from .conversions import *  # noqa: F401,F403
from .conversions import __all__ as _conversions
from .convolution import *  # noqa: F401,F403
from .convolution import __all__ as _convolution
from .delay import *  # noqa: F401,F403
from .delay import __all__ as _delay
from .dynamics import *  # noqa: F401,F403
from .dynamics import __all__ as _dynamics
from .filters import *  # noqa: F401,F403
from .filters import __all__ as _filters
from .nonlinear import *  # noqa: F401,F403
from .nonlinear import __all__ as _nonlinear

__all__ = [*_control, *_conversions, *_filters, *_nonlinear, *_dynamics, *_delay, *_convolution]
