"""A performance's note controls as a JSON file, to edit note by note (MIDI-DDSP's workflow).

``dspfx play INSTRUMENT IN.mid OUT.wav --write-controls FILE.json`` writes the notes it played
and the controls it played each with (:func:`dspfx.ddsp.play.performance`: the expression
generator's, or the ones given); ``--controls FILE.json`` plays them back, edited::

    {"format": "dspfx.note_controls/1", "instrument": "violin",
     "notes": [{"start_s": 0.5, "end_s": 1.0, "pitch": 69, "velocity": 96,
                "controls": {"volume": -21.3, "volume_fluctuation": 2.1,
                             "volume_peak_position": 0.31, "vibrato": 0.12}}, ...]}

A note's ``controls`` may hold any of :data:`dspfx.ddsp.play.PLAYABLE_CONTROLS` (``brightness`` and
``attack_noise`` too); a control left out, or ``null``, is the expression generator's (or the
default). The notes must be those the MIDI track plays (same count, onsets within 1 ms, same
pitches after the octave moves), so a file written for another track or file is refused. Files
are checked before use: at most :data:`MAX_BYTES`, JSON only, finite numbers.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from dspfx.io import atomic_path, read_json

__all__ = ["write_controls", "read_controls", "FORMAT", "MAX_BYTES"]

FORMAT = "dspfx.note_controls/1"
#: Largest controls file read (bytes): 100k notes with six controls fit in about 20 MiB.
MAX_BYTES = 32 * 2**20


def write_controls(path: str | os.PathLike, notes: list[Any], controls: Mapping[str, Any],
                   instrument: str | None = None) -> Path:
    """Write ``notes`` (:class:`~dspfx.ddsp.midi.MidiNote`) and their ``controls`` (``{name:
    one value per note}``) to ``path`` atomically."""
    n = len(notes)
    columns = {k: np.asarray(v, dtype=np.float64).reshape(-1) for k, v in controls.items()}
    for name, col in columns.items():
        if col.shape != (n,):
            raise ValueError(f"control {name!r}: one value per note ({n}) needed, got {col.shape[0]}")
    rows = [{"start_s": round(float(x.start_s), 6), "end_s": round(float(x.end_s), 6), "pitch": int(x.pitch),
             "velocity": int(x.velocity),
             "controls": {k: (round(float(c[i]), 6) if math.isfinite(c[i]) else None) for k, c in columns.items()}}
            for i, x in enumerate(notes)]
    doc = {"format": FORMAT, **({"instrument": instrument} if instrument else {}), "notes": rows}
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(doc, indent=1) + "\n")
    return path


def read_controls(path: str | os.PathLike, notes: list[Any]) -> dict[str, np.ndarray]:
    """The controls of a file :func:`write_controls` wrote (then edited), for the ``notes`` the
    track plays: ``{name: (notes,) array}``, NaN where a note leaves the control unset.

    Raises:
        FileNotFoundError: no file. ValueError: too large, not JSON, another format, notes that
        differ from the track's, unknown controls, values that are not finite numbers.
    """
    from dspfx.ddsp.play import PLAYABLE_CONTROLS

    where = f"controls file {str(Path(path))!r}"
    doc = read_json(path, "controls file", max_bytes=MAX_BYTES, format=FORMAT,
                    hint=" (dspfx play --write-controls writes it)")
    rows = doc.get("notes")
    if not isinstance(rows, list) or len(rows) != len(notes):
        count = len(rows) if isinstance(rows, list) else "no"
        raise ValueError(f"{where} holds {count} notes; the track plays {len(notes)} (write it again from this "
                         "MIDI track with --write-controls)")
    out: dict[str, np.ndarray] = {}
    for i, (row, note) in enumerate(zip(rows, notes)):
        if not isinstance(row, dict) or not isinstance(row.get("controls", {}), dict):
            raise ValueError(f"{where}: note {i} is not an object with a 'controls' object")
        start, pitch = row.get("start_s"), row.get("pitch")
        if (not isinstance(start, (int, float)) or isinstance(start, bool) or abs(float(start) - note.start_s) > 1e-3
                or pitch != note.pitch):
            raise ValueError(f"{where}: note {i} is {pitch!r} at {start!r} s, the track plays {note.pitch} at "
                             f"{note.start_s:.3f} s (a file written for another track or file?)")
        for name, value in row.get("controls", {}).items():
            if name not in PLAYABLE_CONTROLS:
                raise ValueError(f"{where}: note {i}: unknown control {name!r}; playable are {list(PLAYABLE_CONTROLS)}")
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{where}: note {i}: control {name!r} must be a finite number or null, got {value!r}")
            out.setdefault(name, np.full(len(notes), np.nan))[i] = float(value)
    return out
