"""Training a :class:`~dspfx.ddsp.model.DDSPModel` on a prepared dataset (DDSP's recipe), through
:func:`dspfx.fitting.optimise`, the core every training job in dspfx shares.

Adam (learning rate ``lr``, decayed continuously by ``decay`` every ``decay_steps`` steps, as
``tf.keras.optimizers.schedules.ExponentialDecay``; optionally a linear ``cooldown`` at the
end), global gradient-norm clipping, the
multi-scale spectral loss (:func:`dspfx.ddsp.model.spectral_loss`), the core's NaN policy and
best state on validation (the spectral loss of the validation windows, every
``checkpoint_every`` steps), a wall-clock budget (``max_seconds``), safetensors checkpoints
with resume, validation metrics, audio samples and a loss-curve picture. Under ``torchrun``
each rank draws its own batches, the ranks average their gradients, and only rank 0 writes
files.

Files in ``out_dir``: ``checkpoint.safetensors`` (model and optimiser tensors, step and history
in the metadata), ``model.safetensors`` (the model alone, :meth:`DDSPModel.save`, with the
dataset statistics for timbre transfer), ``metrics.json`` (validation history),
``loss.png``, ``samples/step<N>-{render,target}.wav`` and ``samples/step<N>.png``
(spectrograms of target and render, :func:`dspfx.plot.comparison`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from dspfx.io import atomic_path
from dspfx.ddsp.model import DDSPModel, spectral_loss

__all__ = ["train", "validate", "TrainResult"]

#: Frames whose pitch confidence reaches this count in the f0 metrics (DDSP's level).
CONFIDENT = 0.85


class TrainResult(dict):
    """What :func:`train` returns: ``model`` (the trained :class:`DDSPModel`, unwrapped),
    ``step``, ``history`` (loss per step), ``metrics`` (last validation), ``out_dir``,
    ``world_size`` (processes that trained together; under torchrun every rank was checked to
    end with the same weights)."""

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None


def _as_dataset(data: Any) -> Any:
    if isinstance(data, (str, os.PathLike)):
        from dspfx.ddsp.data import Dataset

        return Dataset(data)
    if not hasattr(data, "__len__") or not hasattr(data, "__getitem__"):
        raise TypeError(
            f"data must be a prepared dataset folder or a map-style dataset of dicts, got {type(data).__name__}"
        )
    return data


def _batch(dataset: Any, indices: list[int], device: torch.device) -> dict[str, Tensor]:
    items = [dataset[i] for i in indices]
    keys = ("audio", "f0_hz", "confidence", "loudness_db")
    for key in keys:
        if key not in items[0]:
            raise ValueError(f"dataset items must hold {keys}; item 0 lacks {key!r} (has {sorted(items[0])})")
    return {key: torch.stack([torch.as_tensor(it[key]) for it in items]).to(device=device, dtype=torch.float32)
            for key in keys}


@torch.no_grad()
def validate(model: DDSPModel, batch: Mapping[str, Tensor], pitch_method: str = "yin") -> dict[str, float]:
    """Resynthesis metrics of ``model`` on a batch (DDSP's): ``loudness_l1_db`` (mean |loudness of
    the render - loudness of the target| over frames, dB), ``f0_l1_semitones`` (mean |f0 of the
    render - target f0| over frames with target confidence >= 0.85), ``f0_outlier_ratio`` (of
    those frames, the share whose error exceeds 12 semitones or where the render's pitch
    confidence is below 0.1: no pitch found), ``mrstft`` (the spectral loss). Features of the
    render come from :mod:`dspfx.ddsp.features` (``pitch_method``)."""
    from dspfx.ddsp.features import loudness_db, pitch

    audio = batch["audio"]
    render = model(batch["f0_hz"], batch["loudness_db"])[:, 0, : audio.shape[-1]]
    target = audio[..., : render.shape[-1]]
    sr, fr = model.sample_rate, model.frame_rate
    frames = batch["f0_hz"].shape[-1]
    loud = loudness_db(render, sr, fr)[..., :frames]
    f0, conf = pitch(render, sr, fr, method=pitch_method)
    f0, conf = f0[..., :frames], conf[..., :frames]
    mask = batch["confidence"][..., : f0.shape[-1]] >= CONFIDENT
    err = (12.0 * torch.log2(f0.clamp_min(1e-3) / batch["f0_hz"][..., : f0.shape[-1]].clamp_min(1e-3))).abs()
    n = int(mask.sum())
    return {
        "loudness_l1_db": float((loud - batch["loudness_db"][..., : loud.shape[-1]]).abs().mean()),
        "f0_l1_semitones": float(err[mask].mean()) if n else float("nan"),
        "f0_outlier_ratio": float(((err > 12.0) | (conf < 0.1))[mask].float().mean()) if n else float("nan"),
        "mrstft": float(spectral_loss(render, target)),
    }


def _loss_picture(path: Path, history: list[float], metrics: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dspfx.plot import loss_curve

    fig, ax = plt.subplots(figsize=(7, 4))
    curves: dict[str, Any] = {"train": history}
    if metrics:
        valid = np.full(len(history), np.nan)
        for m in metrics:
            if 0 < m["step"] <= len(history):
                valid[m["step"] - 1] = m["mrstft"]
        if np.isfinite(valid).sum() >= 1:
            curves["valid (MR-STFT)"] = valid
    loss_curve(ax, curves, title="DDSP training loss")
    with atomic_path(path) as tmp:
        fig.savefig(str(tmp), format="png", dpi=100)
    plt.close(fig)


def train(
    data: Any,
    out_dir: str | os.PathLike,
    steps: int = 30000,
    batch_size: int = 16,
    lr: float = 3e-4,
    decay: float = 0.98,
    decay_steps: int = 10000,
    grad_clip: float = 3.0,
    preset: str = "tiny",
    checkpoint_every: int = 1000,
    resume: bool = True,
    progress: bool = True,
    device: str | torch.device | None = None,
    *,
    model: DDSPModel | None = None,
    valid_data: Any = None,
    valid_windows: int = 4,
    sample_every: int | None = None,
    reverb_s: float | None = 1.0,
    seed: int = 0,
    pitch_method: str = "yin",
    weights_lr: float | None = None,
    max_seconds: float | None = None,
    keep_best: bool = True,
    harmonic_prior: bool = True,
    cooldown: tuple[int, int] | None = None,
) -> TrainResult:
    """Train a DDSP model on a dataset (see the module docstring for the recipe and the files).

    Args:
        data: a folder made by :func:`dspfx.ddsp.data.prepare`, or a map-style dataset whose
            items are dicts with ``audio`` ``(samples,)``, ``f0_hz``, ``confidence``,
            ``loudness_db`` ``(frames,)`` (frames = samples / hop).
        out_dir: run folder (created).
        steps: total optimiser steps (a resumed run continues up to this number).
        batch_size: windows per step (per rank under torchrun).
        lr, decay, decay_steps: Adam rate ``lr * decay ** (step / decay_steps)`` of the
            model's knobs, and of everything else unless ``weights_lr`` is given.
        weights_lr: rate of the decoder weights and learned tensors (default ``lr``).
        grad_clip: global gradient-norm clip.
        preset: decoder preset for a new model (``"tiny"`` or ``"full"``).
        checkpoint_every: steps between validations, checkpoints, samples and the picture
            (also at the last step).
        resume: continue from ``out_dir/checkpoint.safetensors`` when present.
        progress: tqdm progress bar (rank 0).
        device: default: CUDA when available, else CPU.
        model: start from this model instead of a new one (its config must match a checkpoint
            being resumed).
        valid_data: validation dataset (default: the first ``valid_windows`` windows of ``data``).
        sample_every: steps between audio samples (default ``checkpoint_every``).
        reverb_s: reverb length of a new model.
        seed: seeds the model initialisation and batch order.
        pitch_method: f0 tracker for the validation metrics.
        max_seconds: wall-clock budget of this call (``dspfx train --minutes``); the run stops
            cleanly, validated and checkpointed.
        keep_best: end at the state with the lowest validation spectral loss (else the last).
        harmonic_prior: start a new model's harmonic distribution at a sawtooth spectrum
            (:meth:`dspfx.ddsp.model.Decoder.harmonic_prior`); a given ``model`` is left as is.
        cooldown: ``(start, end)`` steps over which the rate falls linearly to 1% of the
            schedule's (:func:`dspfx.fitting.optimise`); a resumed run may be given one.

    Returns:
        :class:`TrainResult`.

    Raises:
        ValueError: an empty dataset, a dataset at another sample rate than the model, bad
            settings, a checkpoint of another kind or size.
    """
    from dspfx.checks import positive_int
    from dspfx.fitting.loop import distributed, optimise

    for name, value in (("steps", steps), ("batch_size", batch_size), ("checkpoint_every", checkpoint_every),
                        ("decay_steps", decay_steps)):
        positive_int(value, name)
    if not (lr > 0 and 0 < decay <= 1 and grad_clip > 0):
        raise ValueError(
            f"need lr > 0, 0 < decay <= 1, grad_clip > 0; got lr={lr}, decay={decay}, grad_clip={grad_clip}"
        )
    dataset = _as_dataset(data)
    if len(dataset) == 0:
        raise ValueError("the training dataset is empty (no windows): prepare it from a folder of recordings first")
    valid = _as_dataset(valid_data) if valid_data is not None else dataset
    active, rank, world = distributed()
    writer = rank == 0
    dev = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if active and dev.type == "cuda" and device is None:
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))

    sample_rate = getattr(dataset, "sample_rate", None)
    frame_rate = getattr(dataset, "frame_rate", None)
    stats = getattr(dataset, "stats", None)
    if model is None:
        torch.manual_seed(seed)
        model = DDSPModel(sample_rate or 16000, frame_rate or 250.0, preset=preset, reverb_s=reverb_s, stats=stats)
        if harmonic_prior:
            model.decoder.harmonic_prior()
    elif stats is not None and model.stats is None:
        model.stats = stats
    if sample_rate is not None and sample_rate != model.sample_rate:
        raise ValueError(f"the dataset is at {sample_rate} Hz but the model renders at {model.sample_rate} Hz")
    first = dataset[0]
    if "audio" in first and "f0_hz" in first and len(first["audio"]) != len(first["f0_hz"]) * model.hop:
        raise ValueError(
            f"dataset windows hold {len(first['audio'])} samples and {len(first['f0_hz'])} frames; the model "
            f"needs frames * {model.hop} samples"
        )
    model.to(dev)
    out = Path(out_dir)
    if writer:
        (out / "samples").mkdir(parents=True, exist_ok=True)
    valid_batch = _batch(valid, list(range(min(valid_windows, len(valid)))), dev)
    sample_every = sample_every or checkpoint_every
    metrics_path = out / "metrics.json"
    metrics: list[dict[str, Any]] = []
    if resume and (out / "checkpoint.safetensors").exists() and metrics_path.exists():
        metrics = json.loads(metrics_path.read_text())

    def loss_fn(step: int) -> Tensor:
        gen = torch.Generator().manual_seed(seed * 1_000_003 + step)
        order = torch.randint(len(dataset), (world * batch_size,), generator=gen).tolist()
        batch = _batch(dataset, order[rank * batch_size: (rank + 1) * batch_size], dev)
        audio = model(batch["f0_hz"], batch["loudness_db"])
        return spectral_loss(audio[:, 0], batch["audio"][..., : audio.shape[-1]])

    def validation_loss() -> float:
        render = model(valid_batch["f0_hz"], valid_batch["loudness_db"])[:, 0]
        return float(spectral_loss(render, valid_batch["audio"][..., : render.shape[-1]]))

    def write_samples(at: int) -> None:
        from dspfx.io import write_audio
        from dspfx.plot import comparison

        with torch.no_grad():
            render = model(valid_batch["f0_hz"][:1], valid_batch["loudness_db"][:1])[0]
        write_audio(out / "samples" / f"step{at:07d}-render.wav", render.cpu(), model.sample_rate)
        write_audio(out / "samples" / f"step{at:07d}-target.wav", valid_batch["audio"][:1].cpu(), model.sample_rate)
        target = valid_batch["audio"][0, : render.shape[-1]].cpu()
        comparison(out / "samples" / f"step{at:07d}.png", a=target, b=render[0, : target.shape[-1]].cpu(),
                   sample_rate=model.sample_rate, title=f"step {at}", labels=("target", "render"))

    def on_step(step: int, loss: float, module: torch.nn.Module) -> None:
        at = step + 1
        if writer and at % sample_every == 0 and at % checkpoint_every != 0:
            write_samples(at)

    def on_checkpoint(at: int, run: Any) -> None:
        if at % sample_every == 0 or at == steps or run.stopped != "steps":
            write_samples(at)
        m = validate(model, valid_batch, pitch_method)
        m["step"] = at
        metrics.append(m)
        model.save(out / "model.safetensors")
        with atomic_path(metrics_path) as tmp:
            tmp.write_text(json.dumps(metrics, indent=1) + "\n")
        _loss_picture(out / "loss.png", run.history, metrics)

    model.train()
    run = optimise(
        model, loss_fn, steps=steps, lr=lr, weights_lr=weights_lr, schedule="exponential", decay=decay,
        decay_steps=decay_steps, cooldown=cooldown, grad_clip=grad_clip, validate=validation_loss, validate_every=checkpoint_every,
        restore_best=keep_best, max_seconds=max_seconds, progress=progress, desc="train", callback=on_step,
        checkpoint=out / "checkpoint.safetensors", checkpoint_every=checkpoint_every,
        checkpoint_config={"model": model.config(), "batch_size": batch_size, "seed": seed},
        resume=resume, on_checkpoint=on_checkpoint,
    )
    if writer and keep_best:
        model.save(out / "model.safetensors")  # the best state, which the run ended at
    return TrainResult(model=model, step=run.steps, history=run.history, metrics=metrics[-1] if metrics else {},
                       out_dir=out, world_size=world, stopped=run.stopped, best_step=run.best_step,
                       skipped_steps=run.skipped_steps)
