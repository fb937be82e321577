"""The learned synthesis generator: notes and their controls -> the frames an instrument plays.

MIDI-DDSP's synthesis generator turns notes and their note-level controls into frame-level
synthesis parameters. Here it predicts, per frame (250 a second), the two features a DDSP
instrument is driven by: the loudness (dB) and the pitch's slow deviation from the written
note (semitones: scoops, the glide of a legato step, settling), from :func:`frame_features`
(where the frame falls in its note, the note and its neighbours, the note's controls), with a
bidirectional GRU over the frames and a linear read-out (:class:`SynthesisGenerator`).

Vibrato is not predicted. Its phase is not set by the notes, so a regression on the pitch
averages it away (MIDI-DDSP samples an autoregressive categorical model to keep it); the
targets are the pitch smoothed over one vibrato period, and :func:`dspfx.ddsp.play.play` adds
the requested vibrato by its rule on top.

:func:`training_frames` measures the targets from MIDI/audio pairs (``NNNN.mid`` beside
``NNNN.wav``, as ``scripts/make_instrument_data.py`` writes): loudness and pitch from the
recording (:mod:`dspfx.ddsp.features`), the controls the recording played
(:func:`dspfx.ddsp.expression.note_controls`), so at play time the controls asked for take
their place. :func:`train_synthesis` fits a generator on random 4 s crops and keeps the state
with the lowest held-out error. Files: safetensors, config and normalisation in the metadata.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from dspfx.ddsp.generators import BiGRUGenerator, fit_keeping_best, midi_audio_pairs

__all__ = ["frame_features", "SynthesisGenerator", "bundled_synthesis", "SYNTHESIS_DIR", "training_frames",
           "train_synthesis", "TrainSynthesisResult", "N_FRAME_FEATURES"]

FORMAT = "dspfx.synthesis_generator/1"
N_FRAME_FEATURES = 12
#: Frames the pitch target is smoothed over: one period of a 5.5 Hz vibrato at 250 frames/s.
SMOOTH_FRAMES = 45
#: A long line's frames are generated in windows of this many frames (4 s, the training crop)
#: with this many frames of context on each side (1 s; see :meth:`SynthesisGenerator.frames`).
WINDOW_FRAMES = 1000
CONTEXT_FRAMES = 250
#: The note controls the frames are conditioned on (the others act elsewhere: vibrato by rule,
#: brightness and attack noise on the decoder's output).
CONDITIONS = ("volume", "volume_fluctuation", "volume_peak_position")


def frame_features(notes: list[Any], controls: dict[str, np.ndarray], frames: int, frame_rate: float = 250.0) -> np.ndarray:
    """``(frames, 12)`` features of a monophonic line at ``frame_rate``: inside a note (0/1), the
    note's pitch ``(p - 60) / 24`` (in a rest, the next note's; after the last, the last's),
    seconds since its onset and to its offset (at most 2; 0 in rests), ``log2`` of its length,
    its volume ``(v + 40) / 20``, fluctuation / 8 and peak position (:data:`CONDITIONS`, one per
    note), the interval from the note before (octaves), the rest before it and the time since
    the last offset in a rest (s, at most 2), the velocity / 127."""
    n = len(notes)
    if n == 0:
        raise ValueError("no notes")
    for name in CONDITIONS:
        if np.asarray(controls[name]).shape != (n,):
            raise ValueError(f"control {name!r}: one value per note ({n}) needed, got {np.asarray(controls[name]).shape}")
    t = np.arange(frames) / frame_rate
    out = np.zeros((frames, N_FRAME_FEATURES), dtype=np.float32)
    starts = np.array([x.start_s for x in notes])
    # the note each frame belongs to: the last one started (the first before any)
    idx = np.clip(np.searchsorted(starts, t, side="right") - 1, 0, n - 1)
    for k, note in enumerate(notes):
        sel = idx == k
        tt = t[sel]
        inside = (tt >= note.start_s) & (tt < note.end_s)
        prev_end = notes[k - 1].end_s if k else note.start_s - 2.0
        nxt = k + 1 < n and tt[~inside].size
        pitch = np.full(tt.size, note.pitch, dtype=np.float64)
        if nxt:  # a rest after this note leads to the next one
            pitch[~inside & (tt >= note.end_s)] = notes[k + 1].pitch
        f = out[sel]
        f[:, 0] = inside
        f[:, 1] = (pitch - 60.0) / 24.0
        f[:, 2] = np.where(inside, np.clip(tt - note.start_s, 0.0, 2.0), 0.0)
        f[:, 3] = np.where(inside, np.clip(note.end_s - tt, 0.0, 2.0), 0.0)
        f[:, 4] = np.log2(max(note.end_s - note.start_s, 1e-3))
        f[:, 5] = (float(controls["volume"][k]) + 40.0) / 20.0
        f[:, 6] = float(controls["volume_fluctuation"][k]) / 8.0
        f[:, 7] = float(controls["volume_peak_position"][k])
        f[:, 8] = (note.pitch - notes[k - 1].pitch) / 12.0 if k else 0.0
        f[:, 9] = np.clip(note.start_s - prev_end, 0.0, 2.0)
        f[:, 10] = np.where(inside, 0.0, np.clip(tt - np.where(tt >= note.end_s, note.end_s, prev_end), 0.0, 2.0))
        f[:, 11] = note.velocity / 127.0
        out[sel] = f
    return out


class SynthesisGenerator(BiGRUGenerator):
    """Bidirectional GRU over a line's frames -> ``(loudness dB, pitch deviation semitones)``
    per frame; ``mean``/``std`` map the normalised outputs to those units."""

    FORMAT = FORMAT
    KIND = "a synthesis generator"
    N_IN = N_FRAME_FEATURES
    N_OUT = 2

    def frames(self, notes: list[Any], controls: dict[str, np.ndarray], frames: int,
               frame_rate: float = 250.0) -> tuple[np.ndarray, np.ndarray]:
        """``(loudness_db, deviation_semitones)`` per frame, loudness clipped to -80..0 dB.

        A long line runs as a batch of overlapping windows (:data:`WINDOW_FRAMES` kept, with
        :data:`CONTEXT_FRAMES` of context on each side): the GRU steps through one window's
        frames instead of the whole line's (6x faster on a 30 s phrase), and each frame sees at
        least as much context as in training (random 4 s crops)."""
        x = torch.from_numpy(frame_features(notes, controls, frames, frame_rate))
        length = WINDOW_FRAMES + 2 * CONTEXT_FRAMES
        with torch.no_grad():
            if frames <= length:
                z = self(x[None])[0]
            else:
                keep = range(0, frames, WINDOW_FRAMES)
                starts = [min(max(k - CONTEXT_FRAMES, 0), frames - length) for k in keep]
                out = self(torch.stack([x[a : a + length] for a in starts]))
                z = torch.cat([out[i, k - a : min(k + WINDOW_FRAMES, frames) - a] for i, (k, a) in enumerate(zip(keep, starts))])
            y = (z * self.std + self.mean).double().numpy()
        return np.clip(y[:, 0], -80.0, 0.0), np.clip(y[:, 1], -2.0, 2.0)


#: Synthesis generators of the bundled instruments: ``<instrument>.safetensors`` (+ ``.json``).
SYNTHESIS_DIR = Path(__file__).resolve().parents[1] / "models" / "synthesis"


def bundled_synthesis(instrument: str) -> SynthesisGenerator | None:
    """The bundled synthesis generator of a bundled instrument, or None."""
    return SynthesisGenerator.bundled(SYNTHESIS_DIR, instrument)


def training_frames(folder: str | os.PathLike | list[tuple[Path, Path]], sample_rate: int = 16000,
                    frame_rate: float = 250.0) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``[(features (frames, 12), targets (frames, 2), pitch weight (frames,)), ...]``, one per
    ``NNNN.mid`` with a recording beside it (or per pair of a list from
    :func:`~dspfx.ddsp.generators.midi_audio_pairs`): the recording's loudness and its pitch deviation
    from the notes, smoothed over :data:`SMOOTH_FRAMES` and clipped to 2 semitones, weighted 1
    where a note sounds with a confident pitch, else 0."""
    from dspfx.ddsp.expression import CONTROL_NAMES, frame_analysis, note_controls
    from dspfx.ddsp.midi import read_midi
    from dspfx.io import read_audio

    out = []
    for midi, audio_path in midi_audio_pairs(folder):
        notes = read_midi(midi)
        audio, _ = read_audio(audio_path, sample_rate, mono=True)
        a = frame_analysis(audio.numpy()[0], sample_rate, frame_rate, notes=notes)
        measured = note_controls(None, sample_rate, notes, frame_rate, analysis=a)
        controls = {c: np.nan_to_num(measured[:, CONTROL_NAMES.index(c)]) for c in CONDITIONS}
        frames = a["loudness_db"].size
        feats = frame_features(notes, controls, frames, frame_rate)
        note_midi = 60.0 + 24.0 * feats[:, 1].astype(np.float64)
        f0 = np.maximum(a["f0_hz"][:frames], 1e-3)
        deviation = np.clip(12.0 * np.log2(f0 / 440.0) + 69.0 - note_midi, -2.0, 2.0)
        weight = ((feats[:, 0] > 0) & (a["confidence"][:frames] >= 0.5)).astype(np.float32)
        kernel = np.ones(SMOOTH_FRAMES)
        smooth = np.convolve(deviation * weight, kernel, "same") / np.maximum(np.convolve(weight, kernel, "same"), 1e-9)
        targets = np.stack([a["loudness_db"][:frames], smooth], axis=1).astype(np.float32)
        out.append((feats, targets, weight))
    if not out:
        raise ValueError(f"{str(folder)!r} holds no MIDI file with a recording beside it (NNNN.mid + NNNN.wav)")
    return out


@dataclass
class TrainSynthesisResult:
    """A trained generator, its steps and seconds, and its held-out mean absolute errors
    (loudness dB, pitch deviation semitones) beside those of predicting the training mean."""

    generator: SynthesisGenerator
    steps: int
    seconds: float
    loudness_l1_db: float
    deviation_l1_semitones: float
    mean_baseline: tuple[float, float]


def _crop(item: tuple[np.ndarray, np.ndarray, np.ndarray], length: int, rng: np.random.Generator):
    x, y, w = item
    if len(x) <= length:
        pad = length - len(x)
        return (np.pad(x, ((0, pad), (0, 0))), np.pad(y, ((0, pad), (0, 0))), np.pad(w, (0, pad)),
                np.pad(np.ones(len(x), np.float32), (0, pad)))
    a = int(rng.integers(0, len(x) - length + 1))
    return x[a : a + length], y[a : a + length], w[a : a + length], np.ones(length, np.float32)


def train_synthesis(train: list, valid: list, *, steps: int = 1500, max_seconds: float | None = None, lr: float = 3e-3,
                    hidden: int = 64, batch_size: int = 16, crop_frames: int = 1000, seed: int = 0,
                    progress: bool = False) -> TrainSynthesisResult:
    """Fit a :class:`SynthesisGenerator` on ``train`` (from :func:`training_frames`): Adam on the
    mean absolute error in normalised units (the pitch weighted), random crops of
    ``crop_frames``; the state with the lowest ``valid`` error (every 50 steps) is kept.
    ``progress``: a progress bar of the steps (stderr)."""
    if not train or not valid:
        raise ValueError("need training and validation phrases")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    ys = np.concatenate([y for _, y, _ in train])
    mean, std = ys.mean(axis=0), np.maximum(ys.std(axis=0), 1e-3)
    gen = SynthesisGenerator(hidden, mean, std)
    opt = torch.optim.Adam(gen.parameters(), lr=lr)

    def loss_of(items: list, length: int, r: np.random.Generator) -> tuple[Tensor, Tensor]:
        parts = [_crop(item, length, r) for item in items]
        x, y, w, m = (torch.from_numpy(np.stack(p)) for p in zip(*parts))
        err = (gen(x) - (y - gen.mean) / gen.std).abs()
        return ((err[..., 0] * m).sum() / m.sum() + (err[..., 1] * w).sum() / w.sum().clamp(min=1.0)), err

    longest = max(len(x) for x, _, _ in valid)
    def valid_error() -> float:
        with torch.no_grad():
            return float(loss_of(valid, longest, rng)[0])

    t0 = time.perf_counter()
    step = fit_keeping_best(
        gen, opt, steps,
        lambda: loss_of([train[i] for i in rng.integers(0, len(train), batch_size)], crop_frames, rng)[0],
        valid_error, what="synthesis generator", progress=progress, max_seconds=max_seconds, clip_norm=3.0)
    errors, baseline = [], []
    with torch.no_grad():
        for x, y, w in valid:
            pred = gen(torch.from_numpy(x)[None])[0] * gen.std + gen.mean
            d = (pred.numpy() - y)
            errors.append((np.abs(d[:, 0]).mean(), (np.abs(d[:, 1]) * w).sum() / max(w.sum(), 1.0)))
            b = mean[None] - y
            baseline.append((np.abs(b[:, 0]).mean(), (np.abs(b[:, 1]) * w).sum() / max(w.sum(), 1.0)))
    e, b = np.mean(errors, axis=0), np.mean(baseline, axis=0)
    return TrainSynthesisResult(gen, step, time.perf_counter() - t0, float(e[0]), float(e[1]), (float(b[0]), float(b[1])))
