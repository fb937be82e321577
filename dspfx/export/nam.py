"""``.nam`` files: a capture model for Neural Amp Modeler's plugin and players.

A ``.nam`` file is JSON: ``version``, ``architecture`` (the model's class name), ``config``,
``weights`` (one flat list of floats in NAM's order), ``sample_rate`` and ``metadata``. dspfx
writes the WaveNet (:class:`~dspfx.amps.wavenet.WaveNetAmp`, NAM's classic sizes) and the LSTM
(:class:`~dspfx.amps.lstm.LSTMAmp` with ``skip=False``, NAM's layout). A unit that NAM can play
says so with ``nam_architecture``, ``nam_config()`` and ``nam_weights()``. NAM's own loader
(``nam.models.init_from_nam``) renders the file as dspfx renders the unit
(tests/export/test_nam.py).
"""

from __future__ import annotations

import datetime
import json
import math
import os
from pathlib import Path
from typing import Any

from dspfx.io import atomic_path
from dspfx.unit import Unit

__all__ = ["export_nam", "nam_dict", "NAM_FILE_VERSION", "METADATA_KEYS"]

#: The file version written: the classic WaveNet layout, read by NAM's players and by
#: neural-amp-modeler's loader.
NAM_FILE_VERSION = "0.5.4"
#: Metadata NAM's players show; others are refused (a typo would be dropped silently there).
METADATA_KEYS = ("name", "modeled_by", "gear_make", "gear_model", "gear_type", "tone_type",
                 "input_level_dbu", "output_level_dbu", "loudness", "gain", "training")


def nam_dict(unit: Unit, metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``.nam`` content of ``unit`` as a dict (see the module docstring).

    Raises:
        TypeError: a unit NAM cannot play (a gray-box chain becomes a plugin through the
            plugin export instead).
        ValueError: non-finite weights, unknown metadata keys, an LSTM with a skip connection.
    """
    if not (isinstance(unit, Unit) and isinstance(getattr(unit, "nam_architecture", None), str)):
        raise TypeError(
            f"{getattr(unit, 'label', type(unit).__name__)} cannot be written as a .nam file: NAM plays its WaveNet "
            "(dspfx.make('wavenet')) and LSTM (dspfx.make('lstm_amp', skip=False)); export a gray-box chain as a "
            "plugin instead"
        )
    weights = [float(w) for w in unit.nam_weights()]
    if not all(math.isfinite(w) for w in weights):
        raise ValueError(f"{unit.label} has non-finite weights; refusing to export it")
    meta = dict(metadata or {})
    unknown = sorted(set(meta) - set(METADATA_KEYS))
    if unknown:
        raise ValueError(f"unknown .nam metadata {unknown}; NAM reads {', '.join(METADATA_KEYS)}")
    now = datetime.datetime.now()
    meta["date"] = {"year": now.year, "month": now.month, "day": now.day, "hour": now.hour,
                    "minute": now.minute, "second": now.second}
    return {
        "version": NAM_FILE_VERSION,
        "architecture": unit.nam_architecture,
        "config": unit.nam_config(),
        "weights": weights,
        "sample_rate": float(unit.sample_rate),
        "metadata": meta,
    }


def export_nam(unit: Unit, path: str | os.PathLike, *, metadata: dict[str, Any] | None = None) -> Path:
    """Write ``unit`` to ``path`` (``.nam``, atomically: a temporary file renamed into place).

    >>> export_nam(dspfx.make("wavenet", size="standard"), "amp.nam", metadata={"name": "my amp"})
    """
    path = Path(path)
    if path.suffix != ".nam":
        raise ValueError(f".nam files end in .nam, got {path}")
    text = json.dumps(nam_dict(unit, metadata))
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)
    return path
