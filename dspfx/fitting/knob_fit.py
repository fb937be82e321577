"""Training of the knob-conditioned amp (:class:`dspfx.amps.conditioned.KnobConditioned`) on
captures of an amp at several front-panel settings: the captures checked and aligned, random
segments with every capture in each batch, through :func:`dspfx.fitting.loop.optimise`."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from dspfx.amps.conditioned import KnobConditioned, KnobFitResult, _check_setting_value
from dspfx.checks import as_batch, check_finite, positive_number
from dspfx.fitting.latency import align, render_latency
from dspfx.fitting.loop import optimise, param_groups
from dspfx.fitting.losses import make_loss
from dspfx.fitting.metrics import esr as esr_metric

__all__ = ["fit_knob_captures"]


def fit_knob_captures(
    model: KnobConditioned,
    captures: Sequence[Any],
    *,
    steps: int = 500,
    batch_size: int = 8,
    segment_s: float | None = None,
    warmup_s: float | None = None,
    lr: float = 0.05,
    weights_lr: float = 0.005,
    loss: Any = "mrstft+esr",
    esr_weight: float = 1.0,
    align_latency: bool = True,
    max_latency: int | None = None,
    sample_rate: float | None = None,
    seed: int = 0,
    progress: bool | None = None,
    max_seconds: float | None = None,
) -> KnobFitResult:
    """:meth:`KnobConditioned.fit_captures` (its docstring has the arguments): trains ``model``
    in place and returns its :class:`KnobFitResult`."""

    t0 = time.perf_counter()
    for key, value in (("steps", steps), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"fit_captures: {key} must be an int >= 1, got {value!r}")
    if isinstance(captures, (Mapping, str, Tensor)) or not isinstance(captures, Sequence) or not captures:
        raise ValueError("fit_captures: captures is a non-empty list of (settings, di, target) tuples")
    device, dtype = model.device, model.dtype
    data: list[tuple[Tensor, Tensor, Tensor]] = []  # (settings (n,), input, target)
    channels = None
    for i, cap in enumerate(captures):
        where = f"capture {i}"
        if isinstance(cap, Mapping):
            extra = set(cap) - {"settings", "input", "target", "sample_rate"}
            if extra or not {"settings", "input", "target"} <= set(cap):
                raise ValueError(f"fit_captures: {where} needs keys settings, input, target (and optionally sample_rate), got {sorted(cap)}")
            settings, inp, tgt, rate = cap["settings"], cap["input"], cap["target"], cap.get("sample_rate", sample_rate)
        elif isinstance(cap, Sequence) and len(cap) in (3, 4):
            settings, inp, tgt = cap[:3]
            rate = cap[3] if len(cap) == 4 else sample_rate
        else:
            raise ValueError(f"fit_captures: {where} must be (settings, di, target[, sample_rate]), got {type(cap).__name__}")
        if rate is not None and rate != model.sample_rate:
            raise ValueError(
                f"fit_captures: {where} is at {rate} Hz but the model renders at {model.sample_rate} Hz; "
                "resample it (dspfx.io.resample) or make the model at that rate"
            )
        if not isinstance(settings, Mapping):
            raise TypeError(f"fit_captures: {where}: settings must be a dict {{name: 0 .. 10}}, got {type(settings).__name__}")
        model.settings_dict(settings)  # unknown names
        missing = [n for n in model.settings if n not in settings]
        if missing:
            raise ValueError(f"fit_captures: {where} gives no value for {missing} (every capture gives all of {model.settings})")
        values = [_check_setting_value(n, settings[n], f"fit_captures: {where}") for n in model.settings]
        pair = []
        for label, audio in (("input", inp), ("target", tgt)):
            a, _ = as_batch(audio)
            if a.shape[0] != 1:
                raise ValueError(f"fit_captures: {where} {label} holds {a.shape[0]} recordings; give one per capture")
            check_finite(a, f"{where} {label}")
            pair.append(a.to(device=device, dtype=dtype))
        inp, tgt = pair
        if inp.shape[-1] != tgt.shape[-1]:
            raise ValueError(
                f"fit_captures: {where}: input and target lengths differ ({inp.shape[-1]} vs {tgt.shape[-1]} "
                "samples); pass a pair recorded together, trimmed to the same length"
            )
        if float(tgt.abs().max()) == 0.0:
            raise ValueError(f"fit_captures: {where}: the target is silent (all zeros)")
        if channels is None:
            channels = (inp.shape[1], tgt.shape[1])
        elif (inp.shape[1], tgt.shape[1]) != channels:
            raise ValueError(
                f"fit_captures: {where} has {inp.shape[1]} input / {tgt.shape[1]} target channels, "
                f"capture 0 has {channels[0]} / {channels[1]}; all captures need the same layout"
            )
        data.append((torch.tensor(values, dtype=dtype, device=device), inp, tgt))

    latencies = []
    for k, (s, inp, tgt) in enumerate(data):
        latency = 0
        if align_latency:
            with torch.no_grad():
                reference = model(inp, s.unsqueeze(0))
            latency = render_latency(reference, tgt, max_latency=max_latency) or 0
            if latency != 0:
                inp, tgt = align(inp, tgt, latency)
                data[k] = (s, inp, tgt)
        latencies.append(int(latency))
    shortest = min(inp.shape[-1] for _, inp, _ in data)
    if segment_s is None:
        segment_samples = min(shortest, max(256, int(round(0.1 * model.sample_rate))))
    else:
        seconds = positive_number(segment_s, "fit_captures: segment_s")
        segment_samples = int(round(seconds * model.sample_rate))
        if not 1 <= segment_samples <= shortest:
            raise ValueError(
                f"fit_captures: segment_s={segment_s} s is {segment_samples} samples; it must lie in 1 .. {shortest} "
                "(the shortest capture)"
            )
    if warmup_s is None:
        warmup_samples = segment_samples // 8
    else:
        warmup_samples = int(round(positive_number(warmup_s, "fit_captures: warmup_s", allow_zero=True) * model.sample_rate))
        if warmup_samples >= segment_samples:
            raise ValueError(f"fit_captures: warmup_s={warmup_s} s must be shorter than the segment ({segment_samples} samples)")

    criterion = make_loss(loss, model.sample_rate, esr_weight=esr_weight)
    if isinstance(criterion, nn.Module):
        criterion = criterion.to(device)
    try:
        groups = param_groups(model, lr, weights_lr)
    except ValueError:
        raise ValueError("fit_captures: nothing to train (the network and every knob are frozen)") from None

    generator = torch.Generator().manual_seed(seed)
    order: list[int] = []

    def loss_fn(step: int) -> Tensor:
        picks = []
        for _ in range(batch_size):
            if not order:
                order.extend(torch.randperm(len(data), generator=generator).tolist())
            picks.append(order.pop())
        xs, ts, ss = [], [], []
        for k in picks:
            s, inp, tgt = data[k]
            start = int(torch.randint(0, inp.shape[-1] - segment_samples + 1, (1,), generator=generator))
            xs.append(inp[..., start : start + segment_samples])
            ts.append(tgt[..., start : start + segment_samples])
            ss.append(s)
        y = model(torch.cat(xs), torch.stack(ss))
        return criterion(y[..., warmup_samples:], torch.cat(ts)[..., warmup_samples:])

    run = optimise(model, loss_fn, steps=steps, groups=groups, schedule="cosine", restore_best=False,
                   max_seconds=max_seconds, progress=progress, desc="fit knob-conditioned")
    history, skipped = run.history, run.skipped_steps
    esrs, esrs_pe = [], []
    with torch.no_grad():
        for s, inp, tgt in data:
            y = model(inp, s.unsqueeze(0))
            esrs.append(float(esr_metric(y, tgt)))
            esrs_pe.append(float(esr_metric(y, tgt, pre_emphasis=0.95)))
    return KnobFitResult(
        model=model,
        esr=esrs,
        esr_pre_emphasis=esrs_pe,
        latency_samples=latencies,
        loss_history=history,
        skipped_steps=skipped,
        elapsed_s=time.perf_counter() - t0,
        settings={
            "steps": steps,
            "batch_size": batch_size,
            "segment_s": segment_samples / model.sample_rate,
            "warmup_s": warmup_samples / model.sample_rate,
            "lr": lr,
            "weights_lr": weights_lr,
            "max_seconds": max_seconds,
            "stopped": run.stopped,
            "loss": loss if isinstance(loss, str) else getattr(loss, "__name__", type(loss).__name__),
            "esr_weight": esr_weight,
            "seed": seed,
        },
    )
