"""Timbre transfer: play any monophonic audio back with a trained DDSP model's timbre.

The DDSP timbre-transfer colab's pipeline (magenta/ddsp ``colab/demos/timbre_transfer``):

1. f0, confidence and loudness of the input (:mod:`dspfx.ddsp.features`) at the model's rate;
2. note detection (:func:`dspfx.ddsp.features.detect_notes`, ``threshold``);
3. octave shift of f0 toward the training set's mean pitch (:func:`octave_shift_toward`);
4. loudness mapped by quantile matching onto the training set's note loudness distribution
   (:func:`quantile_match`) over note-on frames; frames outside notes lowered by
   ``quiet_db * (1 - ratio)`` (the detector's per-frame note ratio, clipped to [0, 1]);
5. optional auto-tune (:func:`tuning_offset`, :func:`autotune_midi`): pull f0 toward the nearest
   semitone of the clip's own tuning by ``autotune`` in [0, 1];
6. manual shifts: ``pitch_shift_octaves`` and ``loudness_shift_db``;
7. the model renders the adjusted features; the result is resampled back to the input's rate
   and trimmed to the input's length.

Steps 3-4 need the dataset statistics (``dspfx.ddsp.data.load_stats``): the ``stats`` argument,
else the statistics stored in the model file; without either they are skipped.

Bundled models: :func:`bundled_models` lists the models shipped in ``dspfx/models/`` (e.g.
``"violin"``, trained by ``scripts/train_bundled_model.py`` on :mod:`dspfx.ddsp.instrument`),
and :func:`resolve_model` / :func:`load_model` accept such a name wherever a model path goes
(``dspfx transfer violin IN OUT``).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from dspfx.ddsp.model import DDSPModel
from dspfx.functional.conversions import hz_to_midi, midi_to_hz

__all__ = [
    "bundled_models", "resolve_model", "load_model", "transfer", "octave_shift_toward", "quantile_match",
    "tuning_offset", "autotune_midi", "TransferFeatures", "adjust_features", "check_shifts",
]


#: Folder of the models shipped with dspfx (``<name>.safetensors`` + ``<name>.json``).
MODELS_DIR = Path(__file__).resolve().parents[1] / "models"


def bundled_models() -> dict[str, dict[str, Any]]:
    """The models shipped in ``dspfx/models/``: ``{name: info}``, where ``info`` is the model's
    JSON description (training command, steps, validation metrics; ``{}`` if absent) plus
    ``"path"`` (the ``.safetensors`` file)."""
    out: dict[str, dict[str, Any]] = {}
    if not MODELS_DIR.is_dir():
        return out
    for path in sorted(MODELS_DIR.glob("*.safetensors")):
        info_path = path.with_suffix(".json")
        try:
            info = json.loads(info_path.read_text()) if info_path.exists() else {}
        except (OSError, ValueError):
            info = {}
        out[path.stem] = {**info, "path": str(path)}
    return out


def resolve_model(name_or_path: str | os.PathLike) -> Path:
    """The model file for a bundled model name (``"violin"``) or a path.

    An existing path wins over a bundled name; a name without a file is looked up among
    :func:`bundled_models`.

    Raises:
        FileNotFoundError: neither a file nor a bundled name (the message lists the names).
    """
    path = Path(name_or_path)
    if path.exists():
        return path
    models = bundled_models()
    key = str(name_or_path)
    if key in models:
        return Path(models[key]["path"])
    names = ", ".join(sorted(models)) or "none installed"
    raise FileNotFoundError(
        f"no model file at {key!r} and no bundled model of that name (bundled models: {names})"
    )


def load_model(name_or_path: str | os.PathLike, *, device: str | Any = None) -> DDSPModel:
    """:meth:`DDSPModel.load` of :func:`resolve_model` (a bundled name or a path)."""
    return DDSPModel.load(resolve_model(name_or_path), device=device)


#: Largest manual octave shift: four octaves move a voice out of every instrument's range.
MAX_OCTAVE_SHIFT = 4


def octave_shift_toward(f0_hz: Any, mask: Any, target_midi: float) -> int:
    """Whole octaves that bring the mean pitch (MIDI, over ``mask`` frames; all frames when the
    mask is empty) nearest to ``target_midi``: ``round((target - mean) / 12)``."""
    f0 = np.asarray(f0_hz, dtype=np.float64)
    m = np.asarray(mask, dtype=bool)
    sel = f0[m] if m.any() else f0
    sel = sel[sel > 0]
    if sel.size == 0:
        return 0
    mean = float(np.mean(hz_to_midi(sel)))
    return int(np.round((float(target_midi) - mean) / 12.0))


def quantile_match(loudness_db: Any, mask: Any, target_quantiles: Any, levels: Any = None) -> np.ndarray:
    """Map loudness onto a target distribution by quantile (histogram) matching.

    The input's quantiles at ``levels`` are taken over the ``mask`` frames (all frames if none);
    every frame's value goes through the input's empirical CDF (piecewise linear between those
    quantiles, clamped at the ends) and then the target's inverse CDF (``target_quantiles`` at
    ``levels``).

    Args:
        loudness_db: ``(frames,)``.
        mask: ``(frames,)`` booleans: the note-on frames defining the input distribution.
        target_quantiles: increasing dB values at ``levels``.
        levels: quantile levels in [0, 1] (default evenly spaced, as many as the quantiles).

    Returns:
        ``(frames,)`` float64 ndarray.
    """
    loud = np.asarray(loudness_db, dtype=np.float64)
    m = np.asarray(mask, dtype=bool)
    target = np.asarray(target_quantiles, dtype=np.float64)
    levels = np.linspace(0.0, 1.0, target.size) if levels is None else np.asarray(levels, dtype=np.float64)
    if target.ndim != 1 or target.size < 2 or levels.shape != target.shape:
        raise ValueError(
            f"target_quantiles and levels must be 1-D of one length >= 2, got {target.shape}, {levels.shape}"
        )
    source = np.quantile(loud[m] if m.any() else loud, levels)
    source = np.maximum.accumulate(source + np.arange(source.size) * 1e-9)  # strictly increasing for interp
    cdf = np.interp(loud, source, levels)
    return np.interp(cdf, levels, target)


def tuning_offset(f0_midi: Any, confidence: Any, mask: Any) -> float:
    """The clip's tuning offset in semitones (1-cent grid over -0.5 .. 0.5), as the colab's
    ``get_tuning_factor``: the offset minimising the (standardised) sum of the
    confidence-weighted mean distance to the offset grid's nearest notes and the weighted rate
    of note changes between consecutive note-on frames."""
    midi = np.asarray(f0_midi, dtype=np.float64)
    m = np.asarray(mask, dtype=bool)
    if m.sum() < 2:
        return 0.0
    factors = np.linspace(-0.5, 0.5, 101)
    diffs = (midi[m][:, None] - factors[None, :]) % 1.0
    diffs[diffs > 0.5] -= 1.0
    weights = np.asarray(confidence, dtype=np.float64)[m][:, None]
    cost_diffs = np.mean(weights * np.abs(diffs), axis=0)
    notes = np.round(midi[m][:, None] - diffs, 6)
    cost_deltas = np.mean(weights[:-1] * (np.diff(notes, axis=0) != 0), axis=0)

    def norm(x: np.ndarray) -> np.ndarray:
        s = x.std()
        return (x - x.mean()) / s if s > 0 else x - x.mean()

    return float(factors[int(np.argmin(norm(cost_deltas) + norm(cost_diffs)))])


def autotune_midi(f0_midi: Any, offset: float, amount: float) -> np.ndarray:
    """Pull each f0 (MIDI) toward the nearest note of the grid ``offset + integers`` by
    ``amount`` in [0, 1] (1: exactly on the note; chromatic)."""
    midi = np.asarray(f0_midi, dtype=np.float64)
    if not 0.0 <= amount <= 1.0:
        raise ValueError(f"autotune amount must be in [0, 1], got {amount}")
    diff = (midi - offset) % 1.0
    diff = np.where(diff > 0.5, diff - 1.0, diff)
    return midi - amount * diff


class TransferFeatures(dict):
    """Features of a transfer (``f0_hz``, ``loudness_db`` before and after adjustment, ``mask``,
    ``octave_shift``), returned by :func:`transfer` with ``return_features=True``."""


def check_shifts(octave_shift: Any, pitch_shift_octaves: float, loudness_shift_db: float) -> None:
    """Refuse shifts outside their ranges (before any work): ``octave_shift`` ``"auto"`` or a
    whole number within ``MAX_OCTAVE_SHIFT``, ``pitch_shift_octaves`` -2 .. 2,
    ``loudness_shift_db`` -20 .. 20."""
    if not -2 <= pitch_shift_octaves <= 2 or not -20 <= loudness_shift_db <= 20:
        raise ValueError(
            f"pitch_shift_octaves must be in -2..2 and loudness_shift_db in -20..20, got "
            f"{pitch_shift_octaves}, {loudness_shift_db}"
        )
    if octave_shift == "auto":
        return
    if not isinstance(octave_shift, (int, np.integer)) or isinstance(octave_shift, bool):
        raise ValueError(f"octave_shift must be 'auto' or an int, got {octave_shift!r}")
    if abs(int(octave_shift)) > MAX_OCTAVE_SHIFT:
        raise ValueError(
            f"octave_shift {int(octave_shift)} is beyond +-{MAX_OCTAVE_SHIFT} octaves: it moves the voice outside any "
            "instrument's range (the model would play near-silence); use 'auto' or a smaller shift"
        )


def adjust_features(
    model: DDSPModel, f0_np: np.ndarray, conf_np: np.ndarray, loud_np: np.ndarray, *, threshold: float = 1.0,
    octave_shift: int | str = "auto", quiet_db: float = 20.0, autotune: float = 0.0, pitch_shift_octaves: float = 0.0,
    loudness_shift_db: float = 0.0, stats: dict[str, Any] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Steps 2-6 of the pipeline on whole-clip features (float64 frames): note detection, octave
    shift, loudness quantile matching, auto-tune, manual shifts.

    Returns:
        ``(new_f0_hz, new_loudness_db, note_mask, octave_shift)``.
    """
    from dspfx.ddsp.features import detect_notes

    check_shifts(octave_shift, pitch_shift_octaves, loudness_shift_db)
    mask, ratio = detect_notes(loud_np, conf_np, threshold=threshold)
    stats = stats if stats is not None else model.stats
    new_f0, new_loud = f0_np.copy(), loud_np.copy()
    shift = 0
    if octave_shift == "auto":
        if stats and stats.get("mean_pitch_midi") is not None:
            shift = octave_shift_toward(f0_np, mask, stats["mean_pitch_midi"])
    else:
        shift = int(octave_shift)
    new_f0 = new_f0 * 2.0**shift
    if stats and stats.get("loudness_quantiles_db") is not None and mask.any():
        new_loud = quantile_match(loud_np, mask, stats["loudness_quantiles_db"], stats.get("quantile_levels"))
        new_loud[~mask] -= quiet_db * (1.0 - np.clip(ratio[~mask], 0.0, 1.0))
    if autotune:
        midi = hz_to_midi(np.maximum(new_f0, 1e-3))
        tuned = autotune_midi(midi, tuning_offset(midi, conf_np, mask), float(autotune))
        new_f0 = midi_to_hz(tuned)
    new_f0 = new_f0 * 2.0**pitch_shift_octaves
    new_loud = np.clip(new_loud + loudness_shift_db, -80.0, 0.0)
    return new_f0, new_loud, mask, shift


def transfer(
    model: DDSPModel,
    audio: Any,
    sample_rate: int,
    *,
    threshold: float = 1.0,
    octave_shift: int | str = "auto",
    quiet_db: float = 20.0,
    autotune: float = 0.0,
    pitch_shift_octaves: float = 0.0,
    loudness_shift_db: float = 0.0,
    stats: dict[str, Any] | None = None,
    pitch_method: str = "yin",
    return_features: bool = False,
) -> Tensor | tuple[Tensor, TransferFeatures]:
    """Render ``audio`` (any monophonic source) with ``model``'s timbre (the colab pipeline,
    see the module docstring).

    Args:
        model: a trained :class:`DDSPModel`.
        audio: ``(samples,)`` or ``(channels, samples)`` (channels are averaged) tensor/ndarray.
        sample_rate: its rate in Hz (any; resampled to the model's and back).
        threshold: note detection threshold (colab default 1.0; higher is stricter).
        octave_shift: ``"auto"`` (toward the training set's mean pitch; 0 without statistics) or
            a whole number of octaves, at most ``MAX_OCTAVE_SHIFT`` (4) either way.
        quiet_db: dB removed outside notes (scaled by ``1 - note ratio``); needs statistics.
        autotune: 0 .. 1, pull toward the nearest semitone of the clip's tuning.
        pitch_shift_octaves: manual shift, -2 .. 2 octaves.
        loudness_shift_db: manual shift, -20 .. 20 dB.
        stats: dataset statistics (default: ``model.stats``).
        pitch_method: f0 tracker (``"yin"`` default, ``"pyin"``, ``"crepe"``).
        return_features: also return the features used.

    Returns:
        ``(samples,)`` float32 tensor at ``sample_rate``, as long as the input (and the features
        when asked).
    """
    from dspfx.io import resample
    from dspfx.ddsp.features import loudness_db, pitch

    if not isinstance(model, DDSPModel):
        raise TypeError(f"model must be a DDSPModel (DDSPModel.load(path)), got {type(model).__name__}")
    check_shifts(octave_shift, pitch_shift_octaves, loudness_shift_db)
    x = torch.as_tensor(audio).detach().to(torch.float64).cpu()
    if x.ndim == 2:
        x = x.mean(0)
    if x.ndim != 1 or x.numel() == 0:
        raise ValueError(f"audio must be (samples,) or (channels, samples) with samples > 0, got {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError("audio holds NaN or Inf")
    n_in = x.numel()
    y = resample(x, int(sample_rate), model.sample_rate) if sample_rate != model.sample_rate else x
    hop = model.hop
    frames = max(1, math.ceil(y.numel() / hop))
    y = torch.nn.functional.pad(y, (0, frames * hop - y.numel()))
    f0, conf = pitch(y, model.sample_rate, model.frame_rate, method=pitch_method)
    loud = loudness_db(y, model.sample_rate, model.frame_rate)
    f0_np, conf_np, loud_np = (t.numpy().astype(np.float64) for t in (f0, conf, loud))
    new_f0, new_loud, mask, shift = adjust_features(
        model, f0_np, conf_np, loud_np, threshold=threshold, octave_shift=octave_shift, quiet_db=quiet_db,
        autotune=autotune, pitch_shift_octaves=pitch_shift_octaves, loudness_shift_db=loudness_shift_db, stats=stats)
    ref = next(model.parameters())
    f0_t = torch.as_tensor(new_f0, dtype=ref.dtype, device=ref.device)[None]
    loud_t = torch.as_tensor(new_loud, dtype=ref.dtype, device=ref.device)[None]
    with torch.no_grad():
        out = model(f0_t, loud_t)[0, 0].detach().cpu().to(torch.float64)
    if sample_rate != model.sample_rate:
        out = resample(out, model.sample_rate, int(sample_rate))
    out = torch.nn.functional.pad(out, (0, max(0, n_in - out.numel())))[:n_in].to(torch.float32)
    if return_features:
        feats = TransferFeatures(f0_hz=f0_np, loudness_db=loud_np, new_f0_hz=new_f0, new_loudness_db=new_loud,
                                 mask=mask, octave_shift=shift)
        return out, feats
    return out
