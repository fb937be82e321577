"""The optimisation core: one loop for every training job in dspfx.

``dspfx.fit`` (a unit against a DI/target pair), ``KnobConditioned.fit_captures`` (a network
that sets an amp's knobs from front-panel settings) and the DDSP trainer all call
:func:`optimise`. What they share lives here, once:

- parameter groups: knobs (the raw parameters behind :class:`~dspfx.unit.Knob`, where a
  knob's whole range spans about 8 units) at ``lr``, every other trainable tensor (network
  weights, learned impulse responses, tables) at ``weights_lr`` (:func:`param_groups`);
- a schedule: ``"cosine"`` (down to 1% of each group's rate), ``"exponential"`` (``decay **
  (step / decay_steps)``, DDSP's) or ``"constant"``; with a time budget the schedule follows
  whichever of steps or time is further along, so a run cut by the clock still anneals;
  an optional linear ``cooldown`` (start, end) over any of them takes the rate down to 1% of its
  scheduled value (the last phase of a warmup-stable-decay run: it brings a run that has been
  training at a steady rate down to its floor in a few thousand steps);
- one NaN/Inf policy: a step whose loss or gradient is not finite is not taken; the module
  goes back to its best state so far, every rate is halved, and the step is counted
  (``skipped_steps``);
- the best state: scored on ``validate()`` when given (before the first step, every
  ``validate_every`` steps and at the end), else on the training loss (right when every step
  sees the whole data); the module is left at it (``restore_best``);
- a wall-clock budget (``max_seconds``): the run stops cleanly after the step that crosses it,
  validated and at its best state;
- a progress bar (tqdm; shown when stderr is a terminal unless ``progress`` says otherwise);
- checkpoints (safetensors: module, optimiser, best state, history) every
  ``checkpoint_every`` steps, resumed when ``resume``;
- torchrun: under an initialised process group (or ``WORLD_SIZE`` > 1, which initialises one:
  nccl on CUDA, gloo on CPU) the ranks start from rank 0's weights, average their gradients
  every step (each rank's ``loss_fn`` draws its own batch), take every decision (NaN, best,
  time) together, and must end with the same weights; only rank 0 writes.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from dspfx.checks import positive_int, positive_number

__all__ = ["optimise", "LoopResult", "param_groups", "SCHEDULES", "CHECKPOINT_FORMAT", "distributed"]

SCHEDULES = ("cosine", "exponential", "constant")
CHECKPOINT_FORMAT = "dspfx.checkpoint/1"
#: Fraction of the starting rate that the cosine schedule ends at.
COSINE_FLOOR = 0.01


@dataclass
class LoopResult:
    """What :func:`optimise` did.

    Attributes:
        history: training loss of every step taken or skipped (averaged over ranks).
        validation_history: ``(step, value)`` of every validation.
        best_loss: the best score (validation, else training loss); the module holds the
            parameters that gave it when ``restore_best``.
        best_step: the step whose parameters scored best (0: before any step).
        skipped_steps: steps not taken because the loss or a gradient was NaN/Inf.
        steps: steps run (a resumed run counts the earlier ones too).
        stopped: ``"steps"``, ``"time"`` (the budget ran out) or ``"patience"``.
        elapsed_s: wall-clock time of this call.
        world_size: processes that trained together.
        lr_scale: what the NaN policy left of the rates (1 = never halved).
    """

    history: list[float] = field(default_factory=list)
    validation_history: list[tuple[int, float]] = field(default_factory=list)
    best_loss: float = math.inf
    best_step: int = 0
    skipped_steps: int = 0
    steps: int = 0
    stopped: str = "steps"
    elapsed_s: float = 0.0
    world_size: int = 1
    lr_scale: float = 1.0


def distributed() -> tuple[bool, int, int]:
    """``(active, rank, world_size)``. Under ``torchrun`` (``WORLD_SIZE`` > 1) without a process
    group yet, one is initialised first (``env://``; nccl when CUDA is available, else gloo)."""
    dist = torch.distributed
    if not dist.is_available():
        return False, 0, 1
    if not dist.is_initialized() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo", init_method="env://")
    if not dist.is_initialized():
        return False, 0, 1
    return True, dist.get_rank(), dist.get_world_size()


def param_groups(module: nn.Module, lr: float, weights_lr: float | None = None) -> list[dict[str, Any]]:
    """Adam groups of ``module``'s trainable parameters: knobs at ``lr``, everything else at
    ``weights_lr`` (default ``lr``). Empty groups are left out.

    Raises:
        ValueError: nothing to train (every parameter frozen), or a rate that is not a
            positive number.
    """
    lr = positive_number(lr, "lr")
    weights_lr = lr if weights_lr is None else positive_number(weights_lr, "weights_lr")
    named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    if not named:
        raise ValueError(f"{type(module).__name__} has no trainable parameters (every knob and weight frozen?)")
    knobs = [p for n, p in named if "raw_knobs." in n]
    ids = {id(p) for p in knobs}
    other = [p for _, p in named if id(p) not in ids]
    if weights_lr == lr:
        return [{"params": knobs + other, "lr": lr, "name": "all"}]
    groups = [{"params": knobs, "lr": lr, "name": "knobs"}, {"params": other, "lr": weights_lr, "name": "weights"}]
    return [g for g in groups if g["params"]]


def _schedule_factor(schedule: str, fraction: float, step: int, decay: float, decay_steps: int) -> float:
    if schedule == "cosine":
        return COSINE_FLOOR + (1.0 - COSINE_FLOOR) * 0.5 * (1.0 + math.cos(math.pi * min(fraction, 1.0)))
    if schedule == "exponential":
        return decay ** (step / decay_steps)
    return 1.0


def _cooldown_factor(cooldown: tuple[int, int] | None, step: int) -> float:
    if cooldown is None or step < cooldown[0]:
        return 1.0
    start, end = cooldown
    return 1.0 - (1.0 - COSINE_FLOOR) * min(1.0, (step - start) / (end - start))


def snapshot(module: nn.Module) -> dict[str, Tensor]:
    """A detached copy of ``module``'s state (parameters and buffers)."""
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@torch.no_grad()
def restore(module: nn.Module, state: dict[str, Tensor]) -> None:
    """Write a :func:`snapshot` back, touching only tensors that changed: frozen knobs keep the
    exact values they were set to."""
    current = module.state_dict(keep_vars=True)
    for key, value in state.items():
        if not torch.equal(current[key], value):
            current[key].copy_(value)


def _all_finite(params: list[Tensor]) -> bool:
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return True
    return bool(torch.isfinite(torch.stack([g.detach().sum() for g in grads])).all()) or all(
        bool(torch.isfinite(g).all()) for g in grads
    )


class _Ranks:
    """The collective operations of a torchrun job (no-ops in a single process)."""

    def __init__(self) -> None:
        self.active, self.rank, self.world = distributed()

    def broadcast_parameters(self, module: nn.Module) -> None:
        if self.active:
            with torch.no_grad():
                for tensor in module.state_dict().values():
                    torch.distributed.broadcast(tensor, 0)

    def average_gradients(self, params: list[Tensor]) -> None:
        if not self.active:
            return
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        torch.distributed.all_reduce(flat)
        flat /= self.world
        offset = 0
        for p, g in zip(params, grads):
            n = g.numel()
            p.grad = flat[offset : offset + n].view_as(p).clone()
            offset += n

    def agree(self, value: float, device: torch.device, op: str = "mean") -> float:
        """The ranks' mean (or rank 0's value, ``op="first"``, or their min)."""
        if not self.active:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=device)
        if op == "first":
            torch.distributed.broadcast(t, 0)
            return float(t)
        reduce = torch.distributed.ReduceOp.MIN if op == "min" else torch.distributed.ReduceOp.SUM
        torch.distributed.all_reduce(t, op=reduce)
        return float(t) / (self.world if op == "mean" else 1)

    def check_agree(self, module: nn.Module) -> None:
        """Every rank must end with the same weights; a desynchronised run would otherwise save
        rank 0's model silently. Compares a float64 fingerprint of each parameter."""
        if not self.active:
            return
        with torch.no_grad():
            rows = []
            for p in module.parameters():
                v = p.detach().double().flatten()
                w = torch.arange(1, v.numel() + 1, dtype=torch.float64, device=v.device) / max(v.numel(), 1)
                rows.append(torch.stack([v.sum(), v.square().sum(), (v * w).sum()]))
            mine = torch.stack(rows)
            gathered = [torch.empty_like(mine) for _ in range(self.world)]
            torch.distributed.all_gather(gathered, mine)
        for r, theirs in enumerate(gathered):
            if not torch.equal(theirs, gathered[0]):
                raise RuntimeError(f"distributed training: rank {r}'s weights differ from rank 0's (a desynchronised run)")


def optimise(
    module: nn.Module,
    loss_fn: Callable[[int], Tensor],
    *,
    steps: int,
    lr: float = 0.05,
    weights_lr: float | None = None,
    groups: list[dict[str, Any]] | None = None,
    schedule: str = "cosine",
    decay: float = 0.98,
    decay_steps: int = 10000,
    cooldown: tuple[int, int] | None = None,
    grad_clip: float | None = None,
    validate: Callable[[], float] | None = None,
    validate_every: int | None = None,
    patience: int | None = None,
    restore_best: bool = True,
    max_seconds: float | None = None,
    progress: bool | None = None,
    desc: str = "train",
    callback: Callable[[int, float, nn.Module], None] | None = None,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 1000,
    checkpoint_config: dict[str, Any] | None = None,
    resume: bool = True,
    on_checkpoint: Callable[[int, LoopResult], None] | None = None,
) -> LoopResult:
    """Train ``module`` by Adam on ``loss_fn`` (see the module docstring for what it does).

    Args:
        module: the unit, chain or model; trained in place and left at its best state.
        loss_fn: ``loss_fn(step) -> 0-d tensor``, drawing its own batch (each rank its own).
        steps: optimiser steps (a resumed run continues up to this number).
        lr: rate of the knobs (raw knob space).
        weights_lr: rate of every other trainable tensor (default ``lr``).
        groups: explicit Adam parameter groups instead of ``lr`` / ``weights_lr``.
        schedule: ``"cosine"``, ``"exponential"`` (with ``decay``, ``decay_steps``) or
            ``"constant"``.
        cooldown: ``(start, end)`` steps: from ``start`` the scheduled rate is scaled down
            linearly, reaching 1% of it at ``end`` and staying there (None: no cool-down).
            Steps count from the run's first, so a resumed run can be given a cool-down.
        grad_clip: clip the global gradient norm to this (None: no clipping).
        validate: ``validate() -> float``, lower is better, run without gradients; None scores
            the parameters by the training loss of the step that used them.
        validate_every: steps between validations (default ``max(1, steps // 20)``).
        patience: stop after this many validations without improvement (None: never).
        restore_best: leave the module at its best state (else at its last).
        max_seconds: wall-clock budget of this call; the run stops after the step that
            crosses it.
        progress: tqdm bar; None shows it when stderr is a terminal (rank 0 only).
        desc: the bar's label.
        callback: ``callback(step, loss, module)`` after every step taken.
        checkpoint: a ``.safetensors`` path written every ``checkpoint_every`` steps and at the
            end (rank 0), and read back first when it exists and ``resume``.
        checkpoint_config: JSON-safe description of the job stored in the checkpoint; a
            checkpoint whose description differs is refused on resume.
        on_checkpoint: ``on_checkpoint(step, result)`` on rank 0 at every checkpoint interval
            (write samples, metrics, pictures).

    Returns:
        a :class:`LoopResult`.

    Raises:
        ValueError: bad settings, nothing to train, a checkpoint of another job.
        FloatingPointError: no step gave a finite loss.
    """
    steps = positive_int(steps, "steps")
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    decay = positive_number(decay, "decay")
    decay_steps = positive_int(decay_steps, "decay_steps")
    if grad_clip is not None:
        grad_clip = positive_number(grad_clip, "grad_clip")
    if cooldown is not None:
        if not (isinstance(cooldown, (tuple, list)) and len(cooldown) == 2
                and all(isinstance(c, int) and not isinstance(c, bool) for c in cooldown)
                and 0 <= cooldown[0] < cooldown[1]):
            raise ValueError(f"cooldown must be (start, end) steps with 0 <= start < end, got {cooldown!r}")
        cooldown = (int(cooldown[0]), int(cooldown[1]))
    if max_seconds is not None:
        max_seconds = positive_number(max_seconds, "max_seconds")
    for name, value in (("validate_every", validate_every), ("patience", patience)):
        if value is not None:
            positive_int(value, name)
    checkpoint_every = positive_int(checkpoint_every, "checkpoint_every")
    every = validate_every if validate_every is not None else max(1, steps // 20)
    if groups is None:
        groups = param_groups(module, lr, weights_lr)
    params = [p for g in groups for p in g["params"]]
    if not params:
        raise ValueError(f"{type(module).__name__}: nothing to train (every parameter frozen)")
    device = params[0].device
    ranks = _Ranks()
    writer = ranks.rank == 0
    optimizer = torch.optim.Adam([{k: v for k, v in g.items() if k != "name"} for g in groups])
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    result = LoopResult(world_size=ranks.world)
    path = Path(checkpoint) if checkpoint is not None else None
    best_state = snapshot(module)
    if path is not None and resume and path.exists():
        best_state = _read_checkpoint(path, module, optimizer, result, checkpoint_config)
    ranks.broadcast_parameters(module)

    if progress is None:
        progress = sys.stderr.isatty()
    from tqdm.auto import tqdm

    bar = tqdm(total=steps, initial=result.steps, disable=not (progress and writer), desc=desc, unit="step", leave=False)
    t0 = time.perf_counter()
    since_best = 0

    def score(value: float, at: int) -> bool:
        nonlocal best_state
        if math.isfinite(value) and value < result.best_loss:
            result.best_loss, result.best_step = value, at
            best_state = snapshot(module)
            return True
        return False

    def run_validation(at: int) -> bool:
        assert validate is not None
        with torch.no_grad():
            value = float(validate()) if writer or not ranks.active else 0.0
        value = ranks.agree(value, device, op="first")
        value = value if math.isfinite(value) else math.inf
        result.validation_history.append((at, value))
        return score(value, at)

    def save(at: int) -> None:
        if path is not None and writer:
            _write_checkpoint(path, module, optimizer, result, best_state, checkpoint_config)
        if on_checkpoint is not None and writer:
            on_checkpoint(at, result)

    try:
        if validate is not None and result.steps == 0:
            run_validation(0)
        while result.steps < steps:
            step = result.steps
            elapsed = time.perf_counter() - t0
            fraction = step / steps if max_seconds is None else max(step / steps, elapsed / max_seconds)
            factor = (_schedule_factor(schedule, fraction, step, decay, decay_steps) * _cooldown_factor(cooldown, step)
                      * result.lr_scale)
            for g, base in zip(optimizer.param_groups, base_lrs):
                g["lr"] = base * factor
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(step)
            finite = ranks.agree(float(bool(torch.isfinite(loss.detach()).all())), device, op="min") > 0
            if finite:
                loss.backward()
                ranks.average_gradients(params)
                finite = _all_finite(params)
            value = ranks.agree(float(loss.detach()), device) if finite else math.nan
            result.history.append(value)
            if finite and validate is None:
                score(value, step)  # the loss of the parameters before this step
            if finite and grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(params, grad_clip)
            if finite:
                optimizer.step()
            else:  # the NaN policy: back to the best state, half the rates, count it
                result.skipped_steps += 1
                result.lr_scale *= 0.5
                optimizer.zero_grad(set_to_none=True)
                restore(module, best_state)
            result.steps = step + 1
            bar.update(1)
            if finite and callback is not None:
                callback(step, value, module)
            if step % 10 == 0:
                bar.set_postfix(loss=f"{value:.4g}", best=f"{result.best_loss:.4g}")
            over_time = max_seconds is not None and ranks.agree(time.perf_counter() - t0, device, op="first") >= max_seconds
            if over_time:  # said before the last checkpoint, so on_checkpoint sees why the run ends
                result.stopped = "time"
            last = result.steps == steps or over_time
            if validate is not None and (result.steps % every == 0 or last):
                since_best = 0 if run_validation(result.steps) else since_best + 1
                if patience is not None and since_best >= patience and not last:
                    result.stopped = "patience"
                    last = True
            if result.steps % checkpoint_every == 0 or last:
                save(result.steps)
            if last:
                break
        if validate is None:  # the parameters after the last step have not been scored yet
            with torch.no_grad():
                value = ranks.agree(float(loss_fn(result.steps)), device)
            score(value, result.steps)
    finally:
        bar.close()
    if not math.isfinite(result.best_loss):
        raise FloatingPointError(f"{desc}: no step gave a finite loss; check the input levels and the ranges")
    if restore_best:
        restore(module, best_state)
    ranks.check_agree(module)
    result.elapsed_s = time.perf_counter() - t0
    return result


# -- checkpoints -------------------------------------------------------------------------------
def _write_checkpoint(path: Path, module: nn.Module, optimizer: torch.optim.Optimizer, result: LoopResult,
                      best_state: dict[str, Tensor], config: dict[str, Any] | None) -> None:
    from dspfx.io import write_safetensors

    tensors = {f"module.{k}": v for k, v in module.state_dict().items()}
    tensors.update({f"best.{k}": v for k, v in best_state.items()})
    opt = optimizer.state_dict()
    for index, state in opt["state"].items():
        for key, value in state.items():
            tensors[f"optimizer.{index}.{key}"] = torch.as_tensor(value)
    record = {k: v for k, v in result.__dict__.items()}
    metadata = {
        "format": CHECKPOINT_FORMAT,
        "config": json.dumps(config),
        "result": json.dumps(record),
        "param_groups": json.dumps(opt["param_groups"]),
    }
    write_safetensors(path, tensors, metadata)


def _read_checkpoint(path: Path, module: nn.Module, optimizer: torch.optim.Optimizer, result: LoopResult,
                     config: dict[str, Any] | None) -> dict[str, Tensor]:
    from dspfx.io import read_safetensors

    tensors, metadata = read_safetensors(path, "training checkpoint")
    if metadata.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a dspfx training checkpoint (format {metadata.get('format')!r}, expected {CHECKPOINT_FORMAT!r})")
    stored = json.loads(metadata.get("config", "null"))
    if stored != json.loads(json.dumps(config)):
        raise ValueError(f"{path} is the checkpoint of another job (a model of another size or other settings); use another folder")
    device = next(module.parameters()).device
    own = module.state_dict()
    wanted = {k[7:]: v for k, v in tensors.items() if k.startswith("module.")}
    if set(wanted) != set(own):
        raise ValueError(f"{path}: the checkpoint's tensors do not match this model")
    module.load_state_dict({k: v.to(device) for k, v in wanted.items()})
    state: dict[int, dict[str, Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value if name == "step" else value.to(device)
    optimizer.load_state_dict({"state": state, "param_groups": json.loads(metadata["param_groups"])})
    record = json.loads(metadata["result"])
    for key, value in record.items():
        if hasattr(result, key) and key not in ("world_size", "elapsed_s", "stopped"):  # a new run: stopped anew
            setattr(result, key, [tuple(v) for v in value] if key == "validation_history" else value)
    return {k[5:]: v.to(device) for k, v in tensors.items() if k.startswith("best.")}
