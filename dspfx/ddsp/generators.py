"""The learned expression generator: notes in context -> the note-level controls to play them with.

MIDI-DDSP's expression generator predicts each note's controls from the notes around it. Here:

- :func:`note_features` describes each note of a line by what a player sees: pitch, length,
  velocity, the rests before and after it, the intervals from the previous and to the next
  note, its place in the phrase (8 numbers);
- :class:`ExpressionGenerator` maps a line's features to the playable controls
  (:data:`dspfx.ddsp.play.PLAYABLE_CONTROLS`) with a bidirectional GRU over the notes (each note
  sees the whole phrase) and a linear read-out, in normalised units. It is deterministic: MIDI-DDSP
  adds an autoregressive GRU and samples, which gives varied takes; trained with a squared
  error, as both are, the prediction is the expected control either way, and one take per file
  is what ``dspfx play`` renders;
- :func:`training_pairs` measures the controls a recording played (:func:`dspfx.ddsp.expression.note_controls`)
  for each MIDI/audio pair of a folder (``NNNN.mid`` beside ``NNNN.wav``, as
  ``scripts/make_instrument_data.py`` writes, or a user's own aligned pairs);
- :func:`train_expression` fits a generator on them within a step or time budget, keeps the
  state with the lowest held-out error, and reports per-control Pearson r on held-out phrases
  against predicting the training mean.

Files: safetensors weights with the config and normalisation in the metadata (no pickle).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable
from typing import Any, Self

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["note_features", "BiGRUGenerator", "midi_audio_pairs", "fit_keeping_best", "ExpressionGenerator", "bundled_generator", "GENERATORS_DIR", "training_pairs", "train_expression", "TrainExpressionResult",
           "N_FEATURES", "TARGETS"]

FORMAT = "dspfx.expression_generator/1"
N_FEATURES = 8
#: The controls the generator predicts, in order.
TARGETS = ("volume", "volume_fluctuation", "volume_peak_position", "vibrato")


def note_features(notes: list[Any]) -> np.ndarray:
    """``(notes, 8)`` features of a monophonic line (objects with ``start_s``, ``end_s``,
    ``pitch``, ``velocity``): pitch ``(p - 60) / 24``, ``log2`` of the length in seconds,
    velocity / 127, the rest before and after (s, at most 2), the intervals from the previous
    and to the next note (octaves), the note's place in the line (0 .. 1)."""
    n = len(notes)
    if n == 0:
        raise ValueError("no notes")
    start = np.array([x.start_s for x in notes], dtype=np.float64)
    end = np.array([x.end_s for x in notes], dtype=np.float64)
    pitch = np.array([x.pitch for x in notes], dtype=np.float64)
    vel = np.array([x.velocity for x in notes], dtype=np.float64)
    rest_before = np.clip(np.concatenate([[2.0], start[1:] - end[:-1]]), 0.0, 2.0)
    rest_after = np.clip(np.concatenate([start[1:] - end[:-1], [2.0]]), 0.0, 2.0)
    up = np.concatenate([[0.0], np.diff(pitch)]) / 12.0
    down = np.concatenate([np.diff(pitch), [0.0]]) / 12.0
    place = np.arange(n) / max(1, n - 1)
    return np.stack([(pitch - 60.0) / 24.0, np.log2(np.maximum(end - start, 1e-3)), vel / 127.0,
                     rest_before, rest_after, up, down, place], axis=1).astype(np.float32)


class BiGRUGenerator(nn.Module):
    """A bidirectional GRU over a sequence (notes or frames) and a linear read-out, its outputs
    normalised by ``mean`` and ``std`` (one per output), saved as safetensors with its format,
    config and normalisation (no pickle). Subclasses set :attr:`FORMAT`, :attr:`KIND` (for the
    error on a wrong file) and their input and output widths."""

    FORMAT = ""
    KIND = ""
    N_IN = 0
    N_OUT = 0

    def __init__(self, hidden: int = 64, mean: Any = None, std: Any = None) -> None:
        super().__init__()
        if isinstance(hidden, bool) or not isinstance(hidden, int) or not 1 <= hidden <= 1024:
            raise ValueError(f"hidden must be an int in 1..1024, got {hidden!r}")
        self.hidden = hidden
        self.gru = nn.GRU(self.N_IN, hidden, batch_first=True, bidirectional=True)
        self.out = nn.Linear(2 * hidden, self.N_OUT)
        self.register_buffer("mean", torch.as_tensor(mean if mean is not None else np.zeros(self.N_OUT), dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(std if std is not None else np.ones(self.N_OUT), dtype=torch.float32))

    def forward(self, features: Tensor) -> Tensor:
        """``(batch, steps, N_IN)`` -> normalised ``(batch, steps, N_OUT)``."""
        h, _ = self.gru(features)
        return self.out(h)

    def save(self, path: str | os.PathLike) -> Path:
        from dspfx.io import write_safetensors

        meta = {"format": self.FORMAT, "config": json.dumps({"hidden": self.hidden})}
        return write_safetensors(Path(path), {k: v.detach() for k, v in self.state_dict().items()}, meta)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Self:
        from dspfx.io import read_safetensors

        tensors, meta = read_safetensors(Path(path))
        if meta.get("format") != cls.FORMAT:
            raise ValueError(f"{str(path)!r} is not {cls.KIND} file (format {meta.get('format')!r}, "
                             f"expected {cls.FORMAT!r})")
        config = json.loads(meta.get("config", "{}"))
        gen = cls(int(config.get("hidden", 64)))
        for name, t in tensors.items():
            if not torch.isfinite(t).all():
                raise ValueError(f"{str(path)!r}: tensor {name!r} holds NaN or Inf")
        gen.load_state_dict(tensors)
        return gen.eval()

    @classmethod
    def bundled(cls, folder: Path, instrument: str) -> Self | None:
        """``folder/<instrument>.safetensors`` loaded, or None when there is none."""
        path = folder / f"{instrument}.safetensors"
        return cls.load(path) if path.is_file() else None


def midi_audio_pairs(folder: str | os.PathLike | list[tuple[Path, Path]]) -> list[tuple[Path, Path]]:
    """``(NNNN.mid, its recording)`` for each MIDI file of ``folder`` with a ``.wav`` or ``.flac``
    of the same name beside it, in name order (a list of such pairs is returned as it is: a
    caller that splits a folder's pairs passes each part on)."""
    if isinstance(folder, list):
        return folder
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"no folder of MIDI/audio pairs at {str(root)!r}")
    pairs = []
    for midi in sorted(root.glob("*.mid")):
        audio = next((midi.with_suffix(s) for s in (".wav", ".flac") if midi.with_suffix(s).is_file()), None)
        if audio is not None:
            pairs.append((midi, audio))
    return pairs


def fit_keeping_best(gen: nn.Module, opt: torch.optim.Optimizer, steps: int, batch_loss: Callable[[], Tensor],
                     valid_error: Callable[[], float], *, what: str, progress: bool = False,
                     max_seconds: float | None = None, clip_norm: float | None = None) -> int:
    """The generators' training loop: ``steps`` optimiser steps on ``batch_loss()`` (gradient
    norm clipped to ``clip_norm`` if given); every 50 steps and at the last, ``valid_error()``,
    the state with the lowest kept; stops after the check that crosses ``max_seconds``. The
    kept state is restored and ``gen`` left in eval mode. ``progress``: a bar of the steps
    (stderr) named by ``what``. Returns the steps taken."""
    bar = range(1, steps + 1)
    if progress:
        from tqdm import tqdm

        bar = tqdm(bar, desc=f"training the {what}", unit="step", leave=False)
    t0, best, best_state, step = time.perf_counter(), float("inf"), None, 0
    for step in bar:
        loss = batch_loss()
        opt.zero_grad()
        loss.backward()
        if clip_norm is not None:
            nn.utils.clip_grad_norm_(gen.parameters(), clip_norm)
        opt.step()
        if step % 50 == 0 or step == steps:
            e = valid_error()
            if e < best:
                best, best_state = e, {k: v.clone() for k, v in gen.state_dict().items()}
            if max_seconds is not None and time.perf_counter() - t0 > max_seconds:
                break
    if best_state is not None:
        gen.load_state_dict(best_state)
    gen.eval()
    return step


class ExpressionGenerator(BiGRUGenerator):
    """Bidirectional GRU over a line's notes -> :data:`TARGETS` per note.

    ``mean`` and ``std`` (one per target) map the network's normalised outputs to control units;
    :meth:`predict` takes notes and returns ``{control: (notes,) array}`` clipped to the
    controls' ranges.
    """

    FORMAT = FORMAT
    KIND = "an expression generator"
    N_IN = N_FEATURES
    N_OUT = len(TARGETS)

    def predict(self, notes: list[Any]) -> dict[str, np.ndarray]:
        with torch.no_grad():
            z = self(torch.from_numpy(note_features(notes))[None])[0]
        values = (z * self.std + self.mean).numpy().astype(np.float64)
        lo = np.array([-80.0, 0.0, 0.0, 0.0])
        hi = np.array([0.0, 40.0, 1.0, 2.0])
        values = np.clip(values, lo, hi)
        return {name: values[:, i] for i, name in enumerate(TARGETS)}


#: Expression generators of the bundled instruments: ``<instrument>.safetensors`` (+ ``.json``).
GENERATORS_DIR = Path(__file__).resolve().parents[1] / "models" / "expression"


def bundled_generator(instrument: str) -> ExpressionGenerator | None:
    """The bundled expression generator of a bundled instrument, or None."""
    return ExpressionGenerator.bundled(GENERATORS_DIR, instrument)


def training_pairs(folder: str | os.PathLike | list[tuple[Path, Path]], sample_rate: int = 16000,
                   min_notes: int = 2) -> list[tuple[np.ndarray, np.ndarray]]:
    """``[(features (notes, 8), controls (notes, 4)), ...]``, one per ``NNNN.mid`` that has a
    recording beside it (``.wav``/``.flac``), its controls measured from the recording; or one
    per pair of a list from :func:`midi_audio_pairs`."""
    from dspfx.ddsp.expression import CONTROL_NAMES, note_controls
    from dspfx.ddsp.midi import read_midi
    from dspfx.io import read_audio

    index = [CONTROL_NAMES.index(t) for t in TARGETS]
    pairs = []
    for midi, audio_path in midi_audio_pairs(folder):
        notes = read_midi(midi)
        if len(notes) < min_notes:
            continue
        audio, _ = read_audio(audio_path, sample_rate, mono=True)
        controls = note_controls(audio.numpy()[0], sample_rate, notes)[:, index]
        keep = np.all(np.isfinite(controls), axis=1)
        if keep.sum() >= min_notes:
            pairs.append((note_features(notes)[keep], controls[keep].astype(np.float32)))
    if not pairs:
        raise ValueError(f"{str(folder)!r} holds no MIDI file with a recording beside it (NNNN.mid + NNNN.wav)")
    return pairs


@dataclass
class TrainExpressionResult:
    """A trained generator, its steps and seconds, and held-out figures: Pearson r between the
    predicted and the measured controls, per control, for the generator and for predicting
    the training mean (r undefined: 0)."""

    generator: ExpressionGenerator
    steps: int
    seconds: float
    pearson_r: dict[str, float]
    mse: float
    mean_baseline_mse: float


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if a.std() < 1e-9 or b.std() < 1e-9:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def train_expression(train: list[tuple[np.ndarray, np.ndarray]], valid: list[tuple[np.ndarray, np.ndarray]], *,
                     steps: int = 2000, max_seconds: float | None = None, lr: float = 3e-3, hidden: int = 64,
                     batch_size: int = 16, seed: int = 0, progress: bool = False) -> TrainExpressionResult:
    """Fit an :class:`ExpressionGenerator` on ``train`` pairs (from :func:`training_pairs`),
    Adam with a squared error in normalised units, phrases batched with padding masked out;
    the state with the lowest ``valid`` error (checked every 50 steps) is kept. ``progress``:
    a progress bar of the steps (stderr)."""
    if not train or not valid:
        raise ValueError("need training and validation pairs")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    all_y = np.concatenate([y for _, y in train])
    mean, std = all_y.mean(axis=0), np.maximum(all_y.std(axis=0), 1e-3)
    gen = ExpressionGenerator(hidden, mean, std)
    opt = torch.optim.Adam(gen.parameters(), lr=lr)

    def batch(items: list[tuple[np.ndarray, np.ndarray]]) -> tuple[Tensor, Tensor, Tensor]:
        n = max(x.shape[0] for x, _ in items)
        xs = torch.zeros(len(items), n, N_FEATURES)
        ys = torch.zeros(len(items), n, len(TARGETS))
        mask = torch.zeros(len(items), n, 1)
        for i, (x, y) in enumerate(items):
            xs[i, : len(x)] = torch.from_numpy(x)
            ys[i, : len(y)] = (torch.from_numpy(y) - gen.mean) / gen.std
            mask[i, : len(x)] = 1.0
        return xs, ys, mask

    def error(items: list[tuple[np.ndarray, np.ndarray]]) -> float:
        xs, ys, mask = batch(items)
        with torch.no_grad():
            return float(((gen(xs) - ys) ** 2 * mask).sum() / (mask.sum() * len(TARGETS)))

    def batch_loss() -> Tensor:
        xs, ys, mask = batch([train[i] for i in rng.integers(0, len(train), batch_size)])
        return ((gen(xs) - ys) ** 2 * mask).sum() / (mask.sum() * len(TARGETS))

    t0 = time.perf_counter()
    step = fit_keeping_best(gen, opt, steps, batch_loss, lambda: error(valid), what="expression generator",
                            progress=progress, max_seconds=max_seconds)
    xs, ys, mask = batch(valid)
    with torch.no_grad():
        pred = gen(xs)
    m = mask[..., 0].bool()
    p, y = pred[m].numpy(), ys[m].numpy()
    r = {name: _pearson(p[:, i], y[:, i]) for i, name in enumerate(TARGETS)}
    return TrainExpressionResult(gen, step, time.perf_counter() - t0, r, float(((p - y) ** 2).mean()),
                                 float((y ** 2).mean()))
