"""dspfx: differentiable audio units for PyTorch.

Synths, effects and guitar-amp blocks whose knobs are trainable; chains of them that render, fit
to target audio by gradient descent, save and load without pickle, stream block by block, and
compare against pedalboard's reference effects.

>>> import dspfx
>>> eq = dspfx.make("biquad", mode="lowshelf", cutoff_hz=200.0, gain_db=4.0)
>>> amp = dspfx.Chain(drive=dspfx.make("distortion", drive_db=18.0), tone=eq)
>>> y = amp(x)                                  # x: (batch, channels, samples)
>>> result = dspfx.fit(amp, di, target, steps=300)
>>> dspfx.save(amp, "amp.safetensors")
"""

__version__ = "0.1.0"

from dspfx import amps, effects, synths  # noqa: E402,F401  (registers the units)
from dspfx.chain import Chain, DryWet, Parallel, build  # noqa: E402
from dspfx.io import load, read_audio, save, write_audio  # noqa: E402
from dspfx.limits import Limits  # noqa: E402
from dspfx.reference import compare, from_pedalboard, to_pedalboard  # noqa: E402
from dspfx.registry import make, register, units  # noqa: E402
from dspfx.fitting import CaptureResult, FitResult, capture, fit  # noqa: E402
from dspfx.stream import Stream  # noqa: E402
from dspfx.unit import Knob, Unit  # noqa: E402

__all__ = [
    "__version__",
    "Unit",
    "Knob",
    "Stream",
    "register",
    "make",
    "units",
    "Chain",
    "Parallel",
    "DryWet",
    "build",
    "Limits",
    "save",
    "load",
    "read_audio",
    "write_audio",
    "fit",
    "FitResult",
    "capture",
    "CaptureResult",
    "compare",
    "from_pedalboard",
    "to_pedalboard",
    "play",
]


def play(notes_or_midi, instrument, **kwargs):  # type: ignore[no-untyped-def]
    """:func:`dspfx.ddsp.play.play`: notes or a MIDI file played by a DDSP instrument (loaded
    on first use, so ``import dspfx`` stays light). Returns ``(audio, sample_rate)``."""
    from dspfx.ddsp.play import play as _play

    return _play(notes_or_midi, instrument, **kwargs)
