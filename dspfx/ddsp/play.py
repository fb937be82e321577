"""Notes -> audio through a trained instrument, with MIDI-DDSP's note-level controls.

:func:`play` reads a MIDI track (or takes a list of :class:`~dspfx.ddsp.midi.MidiNote`), moves
notes outside the instrument's playing range by octaves, turns each note's controls into frame
features and renders them with the instrument's DDSP model:

- ``volume`` (mean loudness, dB; default: the note's velocity on the instrument's own dynamics,
  :func:`velocity_volumes`), ``volume_fluctuation`` (dB, default 0) and
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
- ``brightness`` (the harmonic centroid, in harmonics) and ``attack_noise`` (the aperiodic level of
  the first 40 ms, dB), when given: the instrument's decoder sets the timbre from pitch and
  loudness, and these shape what it sets (:func:`dspfx.ddsp.shaping.timbre_shaping`): a
  spectral tilt per note, ``k ** -t`` on harmonic ``k``, with ``t`` solved so that the note's
  decoded harmonic centroid is the one asked for, and a noise gain on the note's attack, with
  the onset softened where the level asked is below what the noise alone can reach, all
  corrected by the render's own measurement. The expression generators do not predict them:
  without them the decoder's timbre plays.

These rules make the frames of an instrument that has no learned synthesis generator, and any
instrument's with ``synthesis=None`` (``dspfx play --frames rules``). By default
(``synthesis="auto"``) a bundled instrument's learned synthesis generator (:mod:`dspfx.ddsp.synthesis`) makes the loudness and
the pitch's slow deviation instead (:func:`learned_frames`), the vibrato still by the rule:
closer to the recordings (benchmarks/midi.py). The generator takes the volume controls as
conditions and follows the fluctuation and peak position only loosely, so when a caller gives
either, each note's learned loudness is reshaped to have them (:func:`conform_swell`); the ones
an expression generator predicts stay suggestions. A volume a caller gives is played as asked:
the render's own measurement corrects each such note's loudness (:func:`conform_volume`). The
corrections by the render's measurement live in :mod:`dspfx.ddsp.shaping`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dspfx.ddsp.midi import MidiNote, fit_range, notes_to_frames, read_midi, velocity_db, velocity_loudness
from dspfx.ddsp.model import DDSPModel
from dspfx.ddsp.shaping import (
    TIMBRE_CONTROLS,
    conform_swell,
    conform_volume,
    per_note,
    render_frames,
    swell,
    timbre_shaping,
)

__all__ = ["play", "performance", "velocity_volumes", "PLAYABLE_CONTROLS", "TIMBRE_CONTROLS", "DEFAULTS", "note_frames", "learned_frames", "conform_swell",
           "conform_volume", "timbre_shaping"]

#: Controls :func:`play` renders: all six of :data:`dspfx.ddsp.expression.CONTROL_NAMES`.
PLAYABLE_CONTROLS = ("volume", "volume_fluctuation", "volume_peak_position", "vibrato", "brightness", "attack_noise")
DEFAULTS = {"volume_fluctuation": 0.0, "volume_peak_position": 0.3, "vibrato": 0.15}
VIBRATO_HZ = 5.5
VIBRATO_DELAY_S = 0.25
VIBRATO_FADE_S = 0.2
MIN_VIBRATO_NOTE_S = 0.35


def _with_default(name: str, controls: Mapping[str, Any], n: int) -> np.ndarray:
    """One value per note of a control with a default (:data:`DEFAULTS`): the one given, else it."""
    return per_note(name, controls.get(name, DEFAULTS[name]), n)


def velocity_volumes(notes: list[MidiNote], model: DDSPModel | None = None) -> np.ndarray:
    """Each note's ``volume`` from its velocity: on the instrument's own dynamics when its model
    keeps its dataset's loudness quantiles (:func:`~dspfx.ddsp.midi.velocity_loudness`: velocity
    64 at its median note level), else General MIDI's curve (:func:`~dspfx.ddsp.midi.velocity_db`)."""
    velocities = [x.velocity for x in notes]
    stats = getattr(model, "stats", None) or {}
    if stats.get("loudness_quantiles_db") is None or stats.get("quantile_levels") is None:
        return velocity_db(velocities)
    try:
        return velocity_loudness(velocities, stats["quantile_levels"], stats["loudness_quantiles_db"])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"the model's dataset statistics: {exc}") from None


def _volumes(notes: list[MidiNote], controls: Mapping[str, Any]) -> np.ndarray:
    """Each note's ``volume`` control: the one given, else its velocity's level."""
    return per_note("volume", controls.get("volume", velocity_db([x.velocity for x in notes])), len(notes))


def note_frames(notes: list[MidiNote], controls: Mapping[str, Any] | None = None, frame_rate: float = 250.0,
                tail_s: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """``(f0_hz, loudness_db)`` frames of ``notes`` played with ``controls`` (see the module
    docstring)."""
    controls = dict(controls or {})
    unknown = set(controls) - set(PLAYABLE_CONTROLS)
    if unknown:
        from dspfx.ddsp.expression import CONTROL_NAMES

        raise ValueError(f"controls {sorted(unknown)}: playable are {list(CONTROL_NAMES)}")
    n = len(notes)
    vol = _volumes(notes, controls)
    fluct, peak, vib = (_with_default(name, controls, n) for name in ("volume_fluctuation", "volume_peak_position", "vibrato"))
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
            loud[inside] = np.clip(loud[inside] + fluct[k] * swell(u, float(peak[k])), -80.0, 0.0)
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


def learned_frames(synthesis: Any, notes: list[MidiNote], controls: Mapping[str, Any] | None,
                   frame_rate: float = 250.0, tail_s: float = 0.5, conform: Any = False) -> tuple[np.ndarray, np.ndarray]:
    """``(f0_hz, loudness_db)`` of ``notes`` from a learned
    :class:`~dspfx.ddsp.synthesis.SynthesisGenerator`: its loudness and its pitch deviation
    inside the notes, the vibrato added by :func:`note_frames`' rule. ``conform`` (True, or a
    mask of notes): those notes' loudness is then made to have the asked volume fluctuation and
    peak position (:func:`conform_swell`; :func:`play` does it for the notes a caller gives them)."""
    controls = dict(controls or {})
    f0, _ = note_frames(notes, controls, frame_rate, tail_s)
    conditions = {"volume": _volumes(notes, controls),
                  **{name: _with_default(name, controls, len(notes)) for name in ("volume_fluctuation", "volume_peak_position")}}
    loud, deviation = synthesis.frames(notes, conditions, f0.size, frame_rate)
    which = np.broadcast_to(np.asarray(conform, dtype=bool), (len(notes),))
    if which.any():
        loud = conform_swell(loud, notes, conditions["volume_fluctuation"], conditions["volume_peak_position"],
                             frame_rate, which)
    t = np.arange(f0.size) / frame_rate
    inside = np.zeros(f0.size, dtype=bool)
    for note in notes:
        inside |= (t >= note.start_s) & (t < note.end_s)
    return f0 * 2.0 ** (np.where(inside, deviation, 0.0) / 12.0), loud


def _resolve(instrument: Any) -> tuple[Any, DDSPModel | None, tuple[int, int] | None, Any]:
    """(the subtractive voice or None, the model or None, its playing range, its expression generator)."""
    from dspfx.synths.subtractive import SubtractiveVoice

    if isinstance(instrument, SubtractiveVoice) or (isinstance(instrument, str) and instrument == "subtractive"):
        import dspfx

        voice = instrument if isinstance(instrument, SubtractiveVoice) else dspfx.make("subtractive", sample_rate=VOICE_RATE)
        return voice, None, None, None
    return (None, *_instrument(instrument))


def _merge(notes: list[MidiNote], generator: Any, controls: Mapping[str, Any] | None, volumes: np.ndarray
           ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The controls each note is played with (the generator's, or the defaults, where ``controls``
    gives none or NaN for a note; ``volumes``: the velocities' levels) and, per control, which
    notes were given one."""
    n = len(notes)
    given: dict[str, np.ndarray] = {}
    for name, value in (controls or {}).items():
        if name not in PLAYABLE_CONTROLS:
            raise ValueError(f"controls [{name!r}]: playable are {list(PLAYABLE_CONTROLS)}")
        try:
            arr = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"control {name!r}: a number or one per note ({n}), got {value!r}") from None
        arr = np.full(n, float(arr)) if arr.ndim == 0 else arr
        if arr.shape != (n,) or np.any(np.isinf(arr)):
            raise ValueError(f"control {name!r}: a finite number or one per note ({n}; NaN leaves a note to the "
                             f"expression generator or the default), got shape {arr.shape}")
        given[name] = arr
    base = generator.predict(notes) if generator is not None else {}
    merged: dict[str, np.ndarray] = {k: np.asarray(v, dtype=np.float64) for k, v in base.items()}
    asked = {}
    for name, arr in given.items():
        mask = np.isfinite(arr)
        if not mask.any():
            continue
        asked[name] = mask
        if name in base:
            fill = merged[name]
        elif name == "volume":
            fill = volumes
        elif name in DEFAULTS:
            fill = np.full(n, DEFAULTS[name])
        elif not mask.all():  # a timbre control: the decoder's own timbre has no per-note value to fill in
            raise ValueError(f"control {name!r} is given for {int(mask.sum())} of {n} notes: give it for every note or none")
        else:
            fill = arr
        merged[name] = np.where(mask, arr, fill)
    merged.setdefault("volume", np.asarray(volumes, dtype=np.float64))
    return merged, asked


def performance(notes_or_midi: str | os.PathLike | Sequence[MidiNote], instrument: Any, *,
                controls: Mapping[str, Any] | None = None, track: int | None = None,
                playing_range: tuple[int, int] | None = None, expression: Any = "auto"
                ) -> tuple[list[MidiNote], dict[str, np.ndarray]]:
    """The notes :func:`play` plays (read, sorted, moved into the playing range) and the controls
    it plays them with: one value per note for each control the expression generator predicts or
    ``controls`` gives (arguments as :func:`play`); the others take their defaults in the render.
    ``dspfx play --write-controls`` saves them for editing (:mod:`dspfx.ddsp.controls_file`)."""
    _, model, rng, generator = _resolve(instrument)
    notes = _line(notes_or_midi, track, playing_range or rng)
    return notes, _merge(notes, generator if expression == "auto" else expression, controls,
                         velocity_volumes(notes, model))[0]


def _line(notes_or_midi: Any, track: int | None, rng: tuple[int, int] | None) -> list[MidiNote]:
    if isinstance(notes_or_midi, (str, os.PathLike)):
        notes = read_midi(notes_or_midi, track=track)
    else:
        notes = sorted(notes_or_midi, key=lambda x: x.start_s)
        if not notes or not all(isinstance(x, MidiNote) for x in notes):
            raise ValueError("play needs a MIDI file or a non-empty list of MidiNote")
    return fit_range(notes, *rng) if rng is not None else notes


def play(notes_or_midi: str | os.PathLike | Sequence[MidiNote], instrument: str | os.PathLike | DDSPModel, *,
         controls: Mapping[str, Any] | None = None, track: int | None = None,
         playing_range: tuple[int, int] | None = None, expression: Any = "auto",
         synthesis: Any = "auto") -> tuple[torch.Tensor, int]:
    """Render notes (a MIDI file's track, or :class:`MidiNote` objects) with an instrument: a
    bundled name, a model file, a :class:`DDSPModel`, or the ``subtractive`` synth voice (the
    name, made at 48 kHz with its default knobs, or a
    :class:`~dspfx.synths.subtractive.SubtractiveVoice` with yours).

    Args:
        controls: ``{name: number or one value per note}`` for :data:`PLAYABLE_CONTROLS`; a NaN
            leaves that note to the expression generator (or the default).
        track: the MIDI track (default: the first melodic one; see :func:`dspfx.ddsp.midi.read_midi`).
        playing_range: MIDI notes the instrument plays (default: a bundled instrument's range;
            none for other models); notes outside it move by octaves, with a warning.
        expression: an :class:`~dspfx.ddsp.generators.ExpressionGenerator` choosing each
            note's controls from its context; ``"auto"``: the bundled instrument's own (none
            for other models); ``None``: the plain defaults. ``controls`` override it.
        synthesis: a :class:`~dspfx.ddsp.synthesis.SynthesisGenerator` making the frames
            (loudness and pitch deviation) from the notes and their controls; ``"auto"``
            (default): a bundled instrument's own, the rules for other models; ``None``:
            :func:`note_frames`' rules.

    Returns:
        ``(audio (samples,) float32, sample_rate)``: the notes plus half a second of release.
    """
    voice, model, rng, generator = _resolve(instrument)
    if expression != "auto":
        generator = expression
    notes = _line(notes_or_midi, track, playing_range or rng)
    merged, asked = _merge(notes, generator, controls, velocity_volumes(notes, model))
    if voice is not None:
        if synthesis is not None and not (isinstance(synthesis, str) and synthesis == "auto"):
            raise ValueError("a synthesis generator makes a DDSP instrument's frames; the subtractive voice plays "
                             "the notes by its own envelopes")
        if set(merged) & set(TIMBRE_CONTROLS):
            raise ValueError(f"controls {sorted(set(merged) & set(TIMBRE_CONTROLS))} shape a DDSP instrument's "
                             "timbre; the subtractive voice's timbre is its knobs (filter, oscillators)")
        return _play_voice(voice, notes, merged)
    if isinstance(synthesis, str) and synthesis == "auto":
        from dspfx.ddsp.synthesis import bundled_synthesis

        synthesis = bundled_synthesis(str(instrument)) if isinstance(instrument, str) else None
    if synthesis is not None:
        swells = [asked[k] for k in ("volume_fluctuation", "volume_peak_position") if k in asked]
        f0, loud = learned_frames(synthesis, notes, merged, model.frame_rate,
                                  conform=np.logical_or.reduce(swells) if swells else False)
    else:
        f0, loud = note_frames(notes, merged, model.frame_rate)
    # the model reaches frame i's controls one hop late (dspfx.ddsp.model): give them a frame early
    f0, loud = np.append(f0[1:], f0[-1]), np.append(loud[1:], loud[-1])
    if "volume" in asked:
        loud = conform_volume(model, notes, f0, loud, merged["volume"], asked["volume"])
    timbre = {k: v for k, v in merged.items() if k in TIMBRE_CONTROLS}
    if timbre:
        return timbre_shaping(model, notes, f0, loud, timbre)[0], model.sample_rate
    return render_frames(model, f0, loud), model.sample_rate


