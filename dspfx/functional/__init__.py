"""Pure differentiable DSP: functions of tensors, no nn.Module, no state kept between calls.

- :mod:`~dspfx.functional.control`: control upsampling and normalisation;
- :mod:`~dspfx.functional.conversions`: dB helpers;
- :mod:`~dspfx.functional.design`: biquad / one-pole designs and frequency responses;
- :mod:`~dspfx.functional.recursive`: the exact time-varying recursive filter :func:`iir` and its
  engines (compiled or torch scan; :mod:`~dspfx.functional.tdf2`, the transposed form);
- :mod:`~dspfx.functional.sos`: second-order-section cascades;
- :mod:`~dspfx.functional.fir`: frequency-sampled FIR design and time-varying FIR filtering;
- :mod:`~dspfx.functional.nonlinear`: clippers, bit crushing, Chebyshev series, curves;
- :mod:`~dspfx.functional.ballistics`, :mod:`~dspfx.functional.dynamics`: the level detector's
  envelope ballistics; compressor, expander, gate, limiter;
- :mod:`~dspfx.functional.delay`: the feedback delay line (echo);
- :mod:`~dspfx.functional.convolution`: FFT convolution with carried history, IR normalisation;
- :mod:`~dspfx.functional.oscillators`, :mod:`~dspfx.functional.wavetable`,
  :mod:`~dspfx.functional.fm` (its operator feedback in :mod:`~dspfx.functional.fm_feedback`),
  :mod:`~dspfx.functional.waveshaper` (and
  :mod:`~dspfx.functional.blep`, imported by name): the synths' oscillators and shapers;
- :mod:`~dspfx.functional.svf`, :mod:`~dspfx.functional.ladder`: the TPT state-variable and
  Moog ladder filters (compiled loops with exact adjoints);
- :mod:`~dspfx.functional.modulation`, :mod:`~dspfx.functional.phaser`: LFOs, the modulated
  fractional delay line, the allpass cascade;
- :mod:`~dspfx.functional.reverb`, :mod:`~dspfx.functional.fdn`,
  :mod:`~dspfx.functional.noise_reverb`, :mod:`~dspfx.functional.decay`: Freeverb, feedback
  delay networks, band-noise impulse responses, RT60 measurement;
- :mod:`~dspfx.functional.tonestack`, :mod:`~dspfx.functional.tube`,
  :mod:`~dspfx.functional.oversample`: the tone-stack circuit, tube curves, polyphase
  oversampling for the amp blocks.
"""

from ._compiled import CPUKernelError  # noqa: F401
from .control import *  # noqa: F401,F403
from .control import __all__ as _control
from .conversions import *  # noqa: F401,F403
from .conversions import __all__ as _conversions
from .convolution import *  # noqa: F401,F403
from .convolution import __all__ as _convolution
from .delay import *  # noqa: F401,F403
from .delay import __all__ as _delay
from .ballistics import *  # noqa: F401,F403
from .ballistics import __all__ as _ballistics
from .dynamics import *  # noqa: F401,F403
from .dynamics import __all__ as _dynamics
from .design import *  # noqa: F401,F403
from .design import __all__ as _design
from .recursive import *  # noqa: F401,F403
from .recursive import __all__ as _recursive
from .sos import *  # noqa: F401,F403
from .sos import __all__ as _sos
from .fir import *  # noqa: F401,F403
from .fir import __all__ as _fir
from .nonlinear import *  # noqa: F401,F403
from .nonlinear import __all__ as _nonlinear
from .oscillators import *  # noqa: F401,F403
from .oscillators import __all__ as _oscillators
from .wavetable import *  # noqa: F401,F403
from .wavetable import __all__ as _wavetable
from .fm import *  # noqa: F401,F403
from .fm import __all__ as _fm
from .svf import *  # noqa: F401,F403
from .svf import __all__ as _svf
from .ladder import *  # noqa: F401,F403
from .ladder import __all__ as _ladder
from .modulation import *  # noqa: F401,F403
from .modulation import __all__ as _modulation
from .phaser import *  # noqa: F401,F403
from .phaser import __all__ as _phaser
from .reverb import *  # noqa: F401,F403
from .reverb import __all__ as _reverb
from .fdn import *  # noqa: F401,F403
from .fdn import __all__ as _fdn
from .decay import *  # noqa: F401,F403
from .decay import __all__ as _decay
from .noise_reverb import *  # noqa: F401,F403
from .noise_reverb import __all__ as _noise_reverb
from .waveshaper import *  # noqa: F401,F403
from .waveshaper import __all__ as _waveshaper
from .tonestack import *  # noqa: F401,F403
from .tonestack import __all__ as _tonestack
from .oversample import *  # noqa: F401,F403
from .oversample import __all__ as _oversample
from .tube import *  # noqa: F401,F403
from .tube import __all__ as _tube

__all__ = ["CPUKernelError", *_control, *_conversions, *_design, *_recursive, *_sos, *_fir, *_nonlinear, *_ballistics, *_dynamics, *_delay, *_convolution,
    *_oscillators, *_wavetable, *_fm, *_svf, *_ladder, *_modulation, *_phaser, *_reverb, *_fdn, *_decay, *_noise_reverb, *_waveshaper, *_tonestack, *_oversample, *_tube,
]
