"""Training a :class:`~dspfx.ddsp.model.DDSPModel` on a prepared dataset (DDSP's recipe).

Adam (learning rate ``lr``, decayed continuously by ``decay`` every ``decay_steps`` steps, as
``tf.keras.optimizers.schedules.ExponentialDecay``), global gradient-norm clipping, the
multi-scale spectral loss (:func:`dspfx.ddsp.model.spectral_loss`), safetensors checkpoints with
resume, validation metrics, audio samples and a loss-curve picture. Under ``torchrun`` (a
process group initialised), the model is wrapped in DistributedDataParallel, each rank draws its
own batches, and only rank 0 writes files.

Files in ``out_dir``: ``checkpoint.safetensors`` (model and optimiser tensors, step and history
in the metadata), ``model.safetensors`` (the model alone, :meth:`DDSPModel.save`, with the
dataset statistics for timbre transfer), ``metrics.json`` (validation history),
``loss.png``, ``samples/step<N>-{render,target}.wav`` and ``samples/step<N>.png``
(spectrograms of target and render, :func:`dspfx.plot.comparison`).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from dspfx.io import atomic_path
from dspfx.ddsp.model import DDSPModel, spectral_loss

__all__ = ["CHECKPOINT_FORMAT", "train", "validate", "TrainResult"]

CHECKPOINT_FORMAT = "dspfx.ddsp_checkpoint/1"
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


def _is_distributed() -> bool:
    """True under an initialised process group; under ``torchrun`` (``WORLD_SIZE`` > 1 in the
    environment) without one, initialise it first (``env://``; nccl with CUDA, else gloo)."""
    if not torch.distributed.is_available():
        return False
    if not torch.distributed.is_initialized() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo", init_method="env://")
    return torch.distributed.is_initialized()


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


def _write_checkpoint(path: Path, model: DDSPModel, optimizer: torch.optim.Optimizer, step: int,
                      history: list[float], metrics: list[dict[str, Any]]) -> None:
    from safetensors.torch import save_file

    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    opt = optimizer.state_dict()
    for index, state in opt["state"].items():
        for key, value in state.items():
            tensors[f"optimizer.{index}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
    metadata = {
        "format": CHECKPOINT_FORMAT, "step": str(step), "config": json.dumps(model.config()),
        "history": json.dumps(history), "metrics": json.dumps(metrics),
        "param_groups": json.dumps(opt["param_groups"]),
    }
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def _read_checkpoint(path: Path, model: DDSPModel, optimizer: torch.optim.Optimizer) -> tuple[int, list[float], list]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {key: f.get_tensor(key) for key in f.keys()}
    except Exception as err:
        raise ValueError(f"{path} is not a readable safetensors checkpoint: {err}") from None
    if metadata.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a DDSP training checkpoint (format {metadata.get('format')!r})")
    if json.loads(metadata["config"])["decoder"] != model.config()["decoder"]:
        raise ValueError(f"{path} holds a model of another size than the one asked for; use another out_dir")
    device = next(model.parameters()).device
    model.load_state_dict({k[6:]: v.to(device) for k, v in tensors.items() if k.startswith("model.")})
    state: dict[int, dict[str, Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value if name == "step" else value.to(device)
    groups = json.loads(metadata["param_groups"])
    optimizer.load_state_dict({"state": state, "param_groups": groups})
    return int(metadata["step"]), json.loads(metadata["history"]), json.loads(metadata["metrics"])


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
) -> TrainResult:
    """Train a DDSP model on a dataset (see the module docstring for the recipe and the files).

    Args:
        data: a folder made by :func:`dspfx.ddsp.data.prepare`, or a map-style dataset whose
            items are dicts with ``audio`` ``(samples,)``, ``f0_hz``, ``confidence``,
            ``loudness_db`` ``(frames,)`` (frames = samples / hop).
        out_dir: run folder (created).
        steps: total optimiser steps (a resumed run continues up to this number).
        batch_size: windows per step (per rank under torchrun).
        lr, decay, decay_steps: Adam rate ``lr * decay ** (step / decay_steps)``.
        grad_clip: global gradient-norm clip.
        preset: decoder preset for a new model (``"tiny"`` or ``"full"``).
        checkpoint_every: steps between checkpoints, validation, samples and the picture
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

    Returns:
        :class:`TrainResult`.

    Raises:
        ValueError: an empty dataset, a dataset at another sample rate than the model, bad
            settings, a checkpoint of another kind or size.
    """
    for name, value in (("steps", steps), ("batch_size", batch_size), ("checkpoint_every", checkpoint_every),
                        ("decay_steps", decay_steps)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    if not (lr > 0 and 0 < decay <= 1 and grad_clip > 0):
        raise ValueError(
            f"need lr > 0, 0 < decay <= 1, grad_clip > 0; got lr={lr}, decay={decay}, grad_clip={grad_clip}"
        )
    dataset = _as_dataset(data)
    if len(dataset) == 0:
        raise ValueError("the training dataset is empty (no windows): prepare it from a folder of recordings first")
    valid = _as_dataset(valid_data) if valid_data is not None else dataset
    distributed = _is_distributed()
    rank = torch.distributed.get_rank() if distributed else 0
    world = torch.distributed.get_world_size() if distributed else 1
    writer = rank == 0
    dev = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if distributed and dev.type == "cuda" and device is None:
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))

    sample_rate = getattr(dataset, "sample_rate", None)
    frame_rate = getattr(dataset, "frame_rate", None)
    stats = getattr(dataset, "stats", None)
    if model is None:
        torch.manual_seed(seed)
        model = DDSPModel(sample_rate or 16000, frame_rate or 250.0, preset=preset, reverb_s=reverb_s, stats=stats)
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
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    out = Path(out_dir)
    ckpt = out / "checkpoint.safetensors"
    step, history, metrics = 0, [], []
    if resume and ckpt.exists():
        step, history, metrics = _read_checkpoint(ckpt, model, optimizer)
    if writer:
        (out / "samples").mkdir(parents=True, exist_ok=True)
    net: torch.nn.Module = model
    if distributed:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None,
                                      find_unused_parameters=True)
    valid_batch = _batch(valid, list(range(min(valid_windows, len(valid)))), dev) if writer else None
    sample_every = sample_every or checkpoint_every
    bar = None
    if progress and writer:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, initial=step, desc="train", unit="step")

    def finish_interval(at: int) -> None:
        m = validate(model, valid_batch, pitch_method)
        m["step"] = at
        metrics.append(m)
        _write_checkpoint(ckpt, model, optimizer, at, history, metrics)
        model.save(out / "model.safetensors")
        (out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
        _loss_picture(out / "loss.png", history, metrics)

    def write_samples(at: int) -> None:
        from dspfx.io import write_audio

        with torch.no_grad():
            render = model(valid_batch["f0_hz"][:1], valid_batch["loudness_db"][:1])[0]
        write_audio(out / "samples" / f"step{at:07d}-render.wav", render.cpu(), model.sample_rate)
        write_audio(out / "samples" / f"step{at:07d}-target.wav", valid_batch["audio"][:1].cpu(), model.sample_rate)
        from dspfx.plot import comparison

        target = valid_batch["audio"][0, : render.shape[-1]].cpu()
        comparison(out / "samples" / f"step{at:07d}.png", a=target, b=render[0, : target.shape[-1]].cpu(),
                   sample_rate=model.sample_rate, title=f"step {at}", labels=("target", "render"))

    t0, start_step = time.perf_counter(), step
    net.train()
    while step < steps:
        gen = torch.Generator().manual_seed(seed * 1_000_003 + step)
        order = torch.randint(len(dataset), (world * batch_size,), generator=gen).tolist()
        batch = _batch(dataset, order[rank * batch_size: (rank + 1) * batch_size], dev)
        for group in optimizer.param_groups:
            group["lr"] = lr * decay ** (step / decay_steps)
        audio = net(batch["f0_hz"], batch["loudness_db"])
        loss = spectral_loss(audio[:, 0], batch["audio"][..., : audio.shape[-1]])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        if torch.isfinite(grad_norm):
            optimizer.step()
        value = loss.detach()
        if distributed:
            torch.distributed.all_reduce(value)
            value = value / world
        history.append(float(value))
        step += 1
        if bar is not None:
            bar.update(1)
            rate = (step - start_step) / (time.perf_counter() - t0)
            bar.set_postfix(loss=f"{history[-1]:.3f}", steps_per_s=f"{rate:.2f}")
        if writer:
            if step % sample_every == 0 or step == steps:
                write_samples(step)
            if step % checkpoint_every == 0 or step == steps:
                finish_interval(step)
    if bar is not None:
        bar.close()
    if distributed:
        _check_ranks_agree(model, world)
        torch.distributed.barrier()
    return TrainResult(model=model, step=step, history=history, metrics=metrics[-1] if metrics else {}, out_dir=out,
                       world_size=world)


def _check_ranks_agree(model: torch.nn.Module, world: int) -> None:
    """Every rank must end with the same weights (DDP averages gradients and starts from rank 0's
    weights); a desynchronised run would otherwise save rank 0's model silently. Compares a
    float64 fingerprint of each parameter (sum, sum of squares, a position-weighted sum) across
    ranks and raises if any differs."""
    with torch.no_grad():
        rows = []
        for p in model.parameters():
            v = p.detach().double().flatten()
            w = torch.arange(1, v.numel() + 1, dtype=torch.float64, device=v.device) / v.numel()
            rows.append(torch.stack([v.sum(), v.square().sum(), (v * w).sum()]))
        mine = torch.stack(rows)
        gathered = [torch.empty_like(mine) for _ in range(world)]
        torch.distributed.all_gather(gathered, mine)
    for r, theirs in enumerate(gathered):
        if not torch.equal(theirs, gathered[0]):
            raise RuntimeError(f"distributed training: rank {r}'s weights differ from rank 0's after training (a desynchronised run)")
