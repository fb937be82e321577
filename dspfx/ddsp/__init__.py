"""DDSP instruments: pitch and loudness (or notes) -> a decoder -> synth units -> audio.

- :mod:`~dspfx.ddsp.features`: loudness (A-weighted) and pitch (a fast pYIN-style tracker,
  librosa's pyin, optional CREPE) per frame;
- :mod:`~dspfx.ddsp.data`: ``prepare`` a folder of recordings into safetensors shards and
  statistics, and the ``Dataset`` that reads them;
- :mod:`~dspfx.ddsp.model`: the decoder and :class:`~dspfx.ddsp.model.DDSPModel`;
- :mod:`~dspfx.ddsp.trainer`: training on a prepared dataset (through
  :func:`dspfx.fitting.optimise`, the same core as every other training job);
- :mod:`~dspfx.ddsp.transfer`: timbre transfer and the bundled models;
  :mod:`~dspfx.ddsp.transfer_file`: the same for a file of any length, in chunks;
- :mod:`~dspfx.ddsp.soundfont`: expressive MIDI phrases played by sampled instruments through
  fluidsynth, the bundled instruments' training data;
- :mod:`~dspfx.ddsp.instrument`: a bowed string made in code (exact, analytic tests);
- :mod:`~dspfx.ddsp.midi`, :mod:`~dspfx.ddsp.expression`, :mod:`~dspfx.ddsp.play`: MIDI input,
  MIDI-DDSP's note-level controls measured from audio, and notes played by an instrument;
- :mod:`~dspfx.ddsp.commands`: the ``dspfx`` commands prepare, train, transfer, instruments, play.

Nothing here is imported by ``import dspfx``: the feature code compiles numba kernels and the
data pipeline reads shards, and a user who renders a chain pays for neither. Submodules load
on first use (``dspfx.ddsp.features`` after ``import dspfx.ddsp`` works).
"""

import importlib
from typing import Any

_SUBMODULES = ("features", "data", "model", "trainer", "transfer", "transfer_file", "soundfont", "instrument", "commands", "midi", "expression", "play")

__all__ = list(_SUBMODULES)


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"dspfx.ddsp.{name}")
    raise AttributeError(f"module 'dspfx.ddsp' has no attribute {name!r}")
