"""Notes -> audio through a trained instrument, with MIDI-DDSP's note-level controls.

:func:`play` reads a MIDI track (or takes a list of :class:`~dspfx.ddsp.midi.MidiNote`), moves
notes outside the instrument's playing range by octaves, turns each note's controls into frame
features and renders them with the instrument's DDSP model:

- ``volume`` (mean loudness, dB; default: the note's velocity through
  :func:`~dspfx.ddsp.midi.velocity_db`), ``volume_fluctuation`` (dB, default 0) and
  ``volume_peak_position`` (0..1, default 0.3) shape the note's loudness: a triangle from its
  onset to its peak and back down to its offset, scaled to that standard deviation around that
  mean, on top of short attack (15 ms) and release (60 ms) ramps; the frames go to the model
  one frame early, as its controls act one hop late, so notes start on time;
- ``vibrato`` (semitones of extent, default 0.15 on notes longer than 0.35 s): a 5.5 Hz sine
  on the note's pitch that fades in over 0.2 s after a 0.25 s onset delay.

Any control may be a number (every note) or a sequence (one value per note). The same
definitions measure the output (:func:`dspfx.ddsp.expression.note_controls`), so a request and
its effect can be compared. A bundled instrument's learned expression generator
(:mod:`dspfx.ddsp.generators`, trained on the instrument's MIDI/audio pairs) chooses the
controls from each note's context; a control given here overrides it. The same notes also play the ``subtractive`` synth voice
(:class:`~dspfx.synths.subtractive.SubtractiveVoice`: gate from the notes, its own envelopes).
``brightness`` and ``attack_noise`` are measured but not yet
playable (the instrument's decoder sets the timbre from pitch and loudness), and the frames come
from these rules, not yet from a learned synthesis generator.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dspfx.ddsp.midi import MidiNote, fit_range, notes_to_frames, read_midi, velocity_db
from dspfx.ddsp.model import DDSPModel

__all__ = ["play", "PLAYABLE_CONTROLS", "DEFAULTS", "note_frames"]

#: Controls :func:`play` renders (the other two of :data:`dspfx.ddsp.expression.CONTROL_NAMES`
#: are measured only).
PLAYABLE_CONTROLS = ("volume", "volume_fluctuation", "volume_peak_position", "vibrato")
DEFAULTS = {"volume_fluctuation": 0.0, "volume_peak_position": 0.3, "vibrato": 0.15}
VIBRATO_HZ = 5.5
VIBRATO_DELAY_S = 0.25
VIBRATO_FADE_S = 0.2
MIN_VIBRATO_NOTE_S = 0.35


def _per_note(name: str, value: Any, n: int) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        arr = np.full(n, float(arr))
    if arr.shape != (n,) or not np.all(np.isfinite(arr)):
        raise ValueError(f"control {name!r}: a finite number or one per note ({n}), got shape {arr.shape}")
    return arr


def _volumes(notes: list[MidiNote], controls: Mapping[str, Any]) -> np.ndarray:
    """Each note's ``volume`` control: the one given, else its velocity's level."""
    return _per_note("volume", controls.get("volume", velocity_db([x.velocity for x in notes])), len(notes))


def note_frames(notes: list[MidiNote], controls: Mapping[str, Any] | None = None, frame_rate: float = 250.0,
                tail_s: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """``(f0_hz, loudness_db)`` frames of ``notes`` played with ``controls`` (see the module
    docstring)."""
    controls = dict(controls or {})
    unknown = set(controls) - set(PLAYABLE_CONTROLS)
    if unknown:
        from dspfx.ddsp.expression import CONTROL_NAMES

        measured = sorted(set(CONTROL_NAMES) - set(PLAYABLE_CONTROLS))
        raise ValueError(f"controls {sorted(unknown)}: playable are {list(PLAYABLE_CONTROLS)}"
                         + (f" ({measured} are measured, not yet playable)" if unknown & set(measured) else ""))
    n = len(notes)
    vol = _volumes(notes, controls)
    fluct = _per_note("volume_fluctuation", controls.get("volume_fluctuation", DEFAULTS["volume_fluctuation"]), n)
    peak = _per_note("volume_peak_position", controls.get("volume_peak_position", DEFAULTS["volume_peak_position"]), n)
    vib = _per_note("vibrato", controls.get("vibrato", DEFAULTS["vibrato"]), n)
    if np.any(fluct < 0) or np.any(vib < 0) or np.any((peak < 0) | (peak > 1)) or np.any((vol < -80) | (vol > 0)):
        raise ValueError("controls out of range: volume -80..0 dB, volume_fluctuation >= 0, "
                         "volume_peak_position 0..1, vibrato >= 0 semitones")
    f0, loud = notes_to_frames(notes, frame_rate, loudness_db=vol, tail_s=tail_s)
    t = np.arange(f0.size) / frame_rate
    midi = 69.0 + 12.0 * np.log2(f0 / 440.0)
    for k, note in enumerate(notes):  # each note touches only its own frames
        a = int(np.searchsorted(t, note.start_s - 1e-9))
        b = int(np.searchsorted(t, note.end_s - 1e-9))
        inside = slice(a, b)
        u = (t[inside] - note.start_s) / max(note.duration_s, 1e-9)
        if fluct[k] > 0 and u.size > 2:
            p = peak[k]
            shape = np.where(u <= p, u / max(p, 1e-9), (1.0 - u) / max(1.0 - p, 1e-9)) if 0 < p < 1 else (
                1.0 - u if p == 0 else u)
            shape = (shape - shape.mean()) / max(shape.std(), 1e-9)
            loud[inside] = np.clip(loud[inside] + fluct[k] * shape, -80.0, 0.0)
        if vib[k] > 0 and note.duration_s > MIN_VIBRATO_NOTE_S:
            tv = t[inside] - note.start_s - VIBRATO_DELAY_S
            fade = np.clip(tv / VIBRATO_FADE_S, 0.0, 1.0)
            midi[inside] += vib[k] * fade * np.sin(2 * np.pi * VIBRATO_HZ * np.maximum(tv, 0.0))
    return 440.0 * 2.0 ** ((midi - 69.0) / 12.0), loud


def _instrument(instrument: str | os.PathLike | DDSPModel) -> tuple[DDSPModel, tuple[int, int] | None, Any]:
    """(model, playing range or None, its bundled expression generator or None)."""
    from dspfx.ddsp.generators import bundled_generator
    from dspfx.ddsp.transfer import bundled_models, load_model

    if isinstance(instrument, DDSPModel):
        return instrument, None, None
    model = load_model(instrument)
    if Path(os.fspath(instrument)).exists():
        return model, None, None
    rng = bundled_models().get(str(instrument), {}).get("range_midi")
    return model, (tuple(rng) if rng else None), bundled_generator(str(instrument))


#: Rate of the ``subtractive`` voice when :func:`play` makes it (its hop, 192, is 250 frames/s).
VOICE_RATE = 48000


def _play_voice(voice: Any, notes: list[MidiNote], controls: Mapping[str, Any] | None) -> tuple[torch.Tensor, int]:
    """Notes through a :class:`dspfx.synths.subtractive.SubtractiveVoice`: f0 frames as for an
    instrument (vibrato included), the gate on while a note is held, the amplitude knob at each
    note's volume (0.5 at -16 dB, the loudest velocity)."""
    frame_rate = voice.sample_rate / voice.hop
    f0, _ = note_frames(notes, controls, frame_rate, tail_s=0.0)
    tail = float(voice.knob_value("release_s").detach().max()) + 0.05
    f0 = np.concatenate([f0, np.full(int(np.ceil(tail * frame_rate)), f0[-1])])
    t = np.arange(f0.size) / frame_rate
    gate, amp = np.zeros(f0.size), np.zeros(f0.size)
    vol = _volumes(notes, controls or {})
    for k, note in enumerate(notes):
        a, b = int(np.searchsorted(t, note.start_s - 1e-9)), int(np.searchsorted(t, note.end_s - 1e-9))
        gate[a:b] = 1.0
        amp[a:] = min(1.0, 0.5 * 10.0 ** ((vol[k] + 16.0) / 20.0))
    ref = voice.knob_value("f0_hz")
    as_t = lambda v: torch.as_tensor(v, dtype=ref.dtype)[None]  # noqa: E731
    with torch.no_grad():
        y = voice(f0_hz=as_t(f0), amplitude=as_t(amp), gate=as_t(gate))
    return y[0, 0].detach().cpu().float(), int(voice.sample_rate)


def play(notes_or_midi: str | os.PathLike | Sequence[MidiNote], instrument: str | os.PathLike | DDSPModel, *,
         controls: Mapping[str, Any] | None = None, track: int | None = None,
         playing_range: tuple[int, int] | None = None, expression: Any = "auto") -> tuple[torch.Tensor, int]:
    """Render notes (a MIDI file's track, or :class:`MidiNote` objects) with an instrument: a
    bundled name, a model file, a :class:`DDSPModel`, or the ``subtractive`` synth voice (the
    name, made at 48 kHz with its default knobs, or a
    :class:`~dspfx.synths.subtractive.SubtractiveVoice` with yours).

    Args:
        controls: ``{name: number or one value per note}`` for :data:`PLAYABLE_CONTROLS`.
        track: the MIDI track (default: the first melodic one; see :func:`dspfx.ddsp.midi.read_midi`).
        playing_range: MIDI notes the instrument plays (default: a bundled instrument's range;
            none for other models); notes outside it move by octaves, with a warning.
        expression: an :class:`~dspfx.ddsp.generators.ExpressionGenerator` choosing each
            note's controls from its context; ``"auto"``: the bundled instrument's own (none
            for other models); ``None``: the plain defaults. ``controls`` override it.

    Returns:
        ``(audio (samples,) float32, sample_rate)``: the notes plus half a second of release.
    """
    from dspfx.synths.subtractive import SubtractiveVoice

    voice = None
    if isinstance(instrument, SubtractiveVoice) or (isinstance(instrument, str) and instrument == "subtractive"):
        import dspfx

        voice = instrument if isinstance(instrument, SubtractiveVoice) else dspfx.make("subtractive", sample_rate=VOICE_RATE)
        model, rng, generator = None, None, None
    else:
        model, rng, generator = _instrument(instrument)
    if expression != "auto":
        generator = expression
    if isinstance(notes_or_midi, (str, os.PathLike)):
        notes = read_midi(notes_or_midi, track=track)
    else:
        notes = sorted(notes_or_midi, key=lambda x: x.start_s)
        if not notes or not all(isinstance(x, MidiNote) for x in notes):
            raise ValueError("play needs a MIDI file or a non-empty list of MidiNote")
    rng = playing_range or rng
    if rng is not None:
        notes = fit_range(notes, *rng)
    if generator is not None:
        controls = {**generator.predict(notes), **dict(controls or {})}
    if voice is not None:
        return _play_voice(voice, notes, controls)
    f0, loud = note_frames(notes, controls, model.frame_rate)
    # the model reaches frame i's controls one hop late (dspfx.ddsp.model): give them a frame early
    f0, loud = np.append(f0[1:], f0[-1]), np.append(loud[1:], loud[-1])
    ref = next(model.parameters())
    with torch.no_grad():
        y = model(torch.as_tensor(f0, dtype=ref.dtype)[None], torch.as_tensor(loud, dtype=ref.dtype)[None])
    return y[0, 0].detach().cpu().float(), model.sample_rate
