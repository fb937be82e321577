#!/usr/bin/env python
"""Gray-box amp vs black-box LSTM on the same DI/target pair and the same wall-clock budget.

The target is a device of a *different structure* from both models: a pedalboard board
``Gain -> LadderFilter -> Distortion -> PeakFilter -> Convolution`` whose convolution is a
cabinet-like impulse response made in code (:func:`cabinet_ir`), fed with
``dspfx.signals.guitar_di`` at 48 kHz: ``--train-seconds`` of training audio (seed 0) and
``--test-seconds`` of held-out audio (seed 1: the same repeating phrase of notes and chords,
different excitation noise, timing, velocities and pick positions). Both models are trained on it
for the same ``--budget`` seconds of wall-clock time each, by the same loop (dspfx's training
core, :func:`dspfx.fitting.optimise`, with the segment drawing written here):

- (a) **gray-box**: ``dspfx.amps.amp(--model)`` (preamp -> tone stack -> power amp -> output
  transformer -> parametric cabinet, every knob learnable; ``--cabinet ir`` swaps in a learnable
  2048-tap FIR cabinet started from the parametric one);
- (b) **black-box**: ``LSTMAmp(hidden=--hidden)`` (Wright et al.; 4513 weights at 32).

Training loop (identical for both): each step draws ``--batch`` random segments of the training
pair; the first ``--warmup`` samples of each run without gradient from the zero state to settle the
model's state (filters, sag, LSTM state), then ``--chunk`` samples run with gradient from that state
(truncated backpropagation through time, as Wright et al.), the loss is taken on them and Adam
takes one step. Loss (``--loss``): ``wright`` = 0.75 * ESR with pre-emphasis (1 - 0.95 z^-1)
+ 0.25 * DC error (Wright et al. 2020, the default), or ``esr+mrstft`` = ESR with pre-emphasis +
MR-STFT. The learning rate follows a cosine over the budget's *time* (down to 1% at the end). A
step with a non-finite loss or gradient is not taken (the core's policy: back to the best state,
rates halved). The model after the last step is scored.

Reported per model: held-out ESR, held-out ESR with pre-emphasis (0.95), MR-STFT (auraloss
defaults at 48 kHz: FFT 1024/2048/512, hops 120/240/50, windows 600/1200/240), DC error, learnable
parameters, steps done in the budget, and render speed: ``--speed-seconds`` (10) of the DI at
48 kHz, batch 1, CPU, ``torch.set_num_threads(--threads)`` (1), forward under ``torch.no_grad()``,
best of ``--repeats`` calls interleaved with the pedalboard board rendering the same audio (the
peer: board, gray-box, LSTM, board, ...), as times real time and as a ratio to the board.

    python benchmarks/amps.py [--budget 120] [--train-seconds 20] [--test-seconds 5]
                              [--model bassman] [--hidden 32] [--loss wright|esr+mrstft]
                              [--quick] [--markdown] [--json PATH]

``--quick`` (a check that everything runs, about a minute): budget 10 s, 4 s train, 2 s
held out, 2 s for the speed test, 2 repeats.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# Benchmark the checkout this script lives in (works without `pip install -e .`).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pedalboard  # noqa: E402
import scipy.signal  # noqa: E402
import torch  # noqa: E402

import dspfx  # noqa: E402
import dspfx.amps  # noqa: E402
import dspfx.signals  # noqa: E402
from dspfx.amps.amp import amp as make_amp  # noqa: E402
from dspfx.amps.lstm import LSTMAmp  # noqa: E402
from dspfx.chain import Chain  # noqa: E402
from dspfx.fitting.metrics import dc_error, esr, mrstft  # noqa: E402

SAMPLE_RATE = 48000
PRE_EMPHASIS = 0.95


# --- the target ---------------------------------------------------------------------------------


def cabinet_ir(sample_rate: int = SAMPLE_RATE, taps: int = 2048) -> np.ndarray:
    """A cabinet-like impulse response, ``(taps,)`` float32, unit energy, made from filters (so,
    like a close-miked speaker, mostly minimum phase): an impulse plus a 0.7 ms early reflection
    at -8 dB (a comb: the mic-to-cone / baffle path), through a 2nd-order 90 Hz high-pass (the
    closed box's low cut), a 110 Hz speaker resonance (a Q 4 band-pass mixed in at +12 dB), a
    2.5 kHz cone peak (a Q 2 band-pass mixed in at 0 dB), a 4th-order 5 kHz Butterworth low-pass
    (the speaker's roll-off) and a 7.5 kHz notch (Q 3, cone break-up). Deliberately not the
    gray-box cabinet's own structure (RBJ biquads, no comb)."""
    fs = sample_rate
    h = np.zeros(taps)
    h[0] = 1.0
    h[int(round(0.0007 * fs))] += 10 ** (-8 / 20)
    h = scipy.signal.sosfilt(scipy.signal.butter(2, 90.0, "highpass", fs=fs, output="sos"), h)
    b, a = scipy.signal.iirpeak(110.0, 4.0, fs=fs)
    h = h + 4.0 * scipy.signal.lfilter(b, a, h)
    b, a = scipy.signal.iirpeak(2500.0, 2.0, fs=fs)
    h = h + 1.0 * scipy.signal.lfilter(b, a, h)
    h = scipy.signal.sosfilt(scipy.signal.butter(4, 5000.0, "lowpass", fs=fs, output="sos"), h)
    b, a = scipy.signal.iirnotch(7500.0, 3.0, fs=fs)
    h = scipy.signal.lfilter(b, a, h)
    h *= np.exp(-np.arange(taps) / (0.01 * fs))  # fade the tail (10 ms) so 2048 taps hold it all
    return (h / np.sqrt(np.sum(h**2))).astype(np.float32)


def target_board(sample_rate: int = SAMPLE_RATE) -> pedalboard.Pedalboard:
    """The device to model: Gain -> LadderFilter -> Distortion -> PeakFilter -> Convolution."""
    return pedalboard.Pedalboard(
        [
            pedalboard.Gain(gain_db=0.0),
            pedalboard.LadderFilter(
                mode=pedalboard.LadderFilter.Mode.LPF12, cutoff_hz=2500.0, resonance=0.3, drive=1.5
            ),
            pedalboard.Distortion(drive_db=12.0),
            pedalboard.PeakFilter(cutoff_frequency_hz=700.0, gain_db=-5.0, q=0.8),
            pedalboard.Convolution(cabinet_ir(sample_rate)[None], sample_rate=sample_rate),
        ]
    )


def make_pair(
    seconds: float, seed: int, board: pedalboard.Pedalboard, scale: float | None
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(DI (1, 1, n), target (1, 1, n), scale): the board's output times ``scale`` (a linear gain
    after the linear last stage; chosen on the training pair so its target peaks at 0.7)."""
    di = dspfx.signals.guitar_di(SAMPLE_RATE, seconds, seed=seed)
    out = board(di[0].numpy(), float(SAMPLE_RATE), reset=True)
    if scale is None:
        scale = 0.7 / float(np.max(np.abs(out)))
    return di, torch.from_numpy(np.ascontiguousarray(out * scale)).reshape(1, 1, -1).float(), scale


# --- the models ---------------------------------------------------------------------------------


def make_models(args: argparse.Namespace) -> dict[str, dspfx.Unit]:
    gray = make_amp(args.model, SAMPLE_RATE)
    if args.cabinet == "ir":
        units = dict(gray.units.items())
        units["cabinet"] = units["cabinet"].to_ir_cabinet(2048)
        gray = Chain(**units)
    return {
        f"gray-box amp ({args.model}, {args.cabinet} cabinet)": gray,
        f"LSTM-{args.hidden} (Wright et al.)": LSTMAmp(SAMPLE_RATE, hidden=args.hidden, seed=args.seed),
    }


def n_learnable(unit: torch.nn.Module) -> int:
    return sum(p.numel() for p in unit.parameters() if p.requires_grad)


def make_loss(kind: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    if kind == "wright":
        return lambda y, t: 0.75 * esr(y, t, pre_emphasis=PRE_EMPHASIS) + 0.25 * dc_error(y, t)
    if kind == "esr+mrstft":
        return lambda y, t: esr(y, t, pre_emphasis=PRE_EMPHASIS) + mrstft(y, t, SAMPLE_RATE)
    raise ValueError(f"--loss must be 'wright' or 'esr+mrstft', got {kind!r}")


def _state_map(state: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    if isinstance(state, torch.Tensor):
        return fn(state)
    if isinstance(state, dict):
        return {k: _state_map(v, fn) for k, v in state.items()}
    if isinstance(state, (tuple, list)):
        return type(state)(_state_map(v, fn) for v in state)
    return state


def train(
    unit: dspfx.Unit, di: torch.Tensor, target: torch.Tensor, args: argparse.Namespace, lr: float
) -> dict[str, Any]:
    """Train ``unit`` for ``args.budget`` seconds of wall-clock time (see the module docstring),
    through dspfx's training core (:func:`dspfx.fitting.optimise`: the cosine schedule follows
    the clock, NaN steps restore the best state and halve the rate), ending at the last state."""
    from dspfx.fitting import optimise

    criterion = make_loss(args.loss)
    g = torch.Generator().manual_seed(args.seed)
    span = args.warmup + args.chunk
    n = di.shape[-1]
    if n < span:
        raise ValueError(f"training audio ({n} samples) is shorter than warm-up + chunk ({span} samples)")

    def loss_fn(step: int) -> torch.Tensor:
        starts = torch.randint(0, n - span + 1, (args.batch,), generator=g).tolist()
        x = torch.cat([di[..., s : s + span] for s in starts])
        t = torch.cat([target[..., s : s + span] for s in starts])
        with torch.no_grad():  # settle the state from zero; no gradient through the warm-up
            _, state = unit.render_block(x[..., : args.warmup], {}, unit.init_state(args.batch, 1))
        state = _state_map(state, lambda s: s.detach())
        y, _ = unit.render_block(x[..., args.warmup :], {}, state)
        return criterion(y, t[..., args.warmup :])

    def report(step: int, value: float, module: torch.nn.Module) -> None:
        if args.verbose and (step + 1) % 20 == 0:
            print(f"    step {step + 1}: loss {value:.4g}", file=sys.stderr, flush=True)

    start = time.perf_counter()
    run = optimise(unit, loss_fn, steps=10**9, lr=lr, weights_lr=lr, schedule="cosine", max_seconds=args.budget,
                   restore_best=False, progress=False, callback=report)
    tail = [v for v in run.history[-20:] if math.isfinite(v)]
    return {
        "steps": run.steps,
        "skipped": run.skipped_steps,
        "train_s": time.perf_counter() - start,
        "final_train_loss": float(np.mean(tail)) if tail else math.nan,
    }


def evaluate(unit: dspfx.Unit, di: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """Held-out metrics of the offline render (from the zero state)."""
    with torch.no_grad():
        y = unit(di)
        if not bool(torch.isfinite(y).all()):
            return {"esr": math.nan, "esr_pre_emphasis": math.nan, "mrstft": math.nan, "dc_error": math.nan}
        return {
            "esr": float(esr(y, target)),
            "esr_pre_emphasis": float(esr(y, target, pre_emphasis=PRE_EMPHASIS)),
            "mrstft": float(mrstft(y, target, SAMPLE_RATE)),
            "dc_error": float(dc_error(y, target)),
        }


def render_speed(
    models: dict[str, dspfx.Unit], board: pedalboard.Pedalboard, seconds: float, repeats: int
) -> tuple[float, dict[str, float]]:
    """Best-of-``repeats`` render times in seconds, interleaved: board, each model, board, ...
    (one untimed warm-up call of each first)."""
    di = dspfx.signals.guitar_di(SAMPLE_RATE, seconds, seed=3)
    di_np = np.ascontiguousarray(di[0].numpy())
    calls: dict[str, Callable[[], Any]] = {"__board__": lambda: board(di_np, float(SAMPLE_RATE), reset=True)}
    for label, unit in models.items():
        def forward(unit: dspfx.Unit = unit) -> Any:
            with torch.no_grad():
                return unit(di)

        calls[label] = forward
    best = {k: math.inf for k in calls}
    for fn in calls.values():
        fn()
    for _ in range(repeats):
        for key, fn in calls.items():
            t0 = time.perf_counter()
            fn()
            best[key] = min(best[key], time.perf_counter() - t0)
    board_s = best.pop("__board__")
    return board_s, best


# --- the run ------------------------------------------------------------------------------------


@dataclass
class Row:
    model: str
    esr: float
    esr_pre_emphasis: float
    mrstft: float
    dc_error: float
    parameters: int
    steps: int
    skipped: int
    train_s: float
    final_train_loss: float
    render_ms: float
    realtime_x: float
    ratio_to_board: float


def run(args: argparse.Namespace) -> tuple[list[Row], dict[str, Any]]:
    torch.manual_seed(args.seed)
    board = target_board()
    di_train, tgt_train, scale = make_pair(args.train_seconds, 0, board, None)
    di_test, tgt_test, _ = make_pair(args.test_seconds, 1, board, scale)
    models = make_models(args)
    rows = []
    for label, unit in models.items():
        if args.verbose:
            print(f"  training {label} for {args.budget:g} s ...", file=sys.stderr, flush=True)
        lr = args.lr_lstm if isinstance(unit, LSTMAmp) else args.lr_gray
        record = train(unit, di_train, tgt_train, args, lr)
        metrics = evaluate(unit, di_test, tgt_test)
        rows.append(Row(label, **metrics, parameters=n_learnable(unit), **record, render_ms=math.nan,
                        realtime_x=math.nan, ratio_to_board=math.nan))
    board_s, times = render_speed(models, board, args.speed_seconds, args.repeats)
    for row in rows:
        row.render_ms = times[row.model] * 1e3
        row.realtime_x = args.speed_seconds / times[row.model]
        row.ratio_to_board = times[row.model] / board_s
    extra = {
        "board_render_ms": board_s * 1e3,
        "board_realtime_x": args.speed_seconds / board_s,
        "target_scale": scale,
        "identity_esr": float(esr(di_test, tgt_test)),
    }
    return rows, extra


def machine_info(args: argparse.Namespace) -> dict[str, Any]:
    uname = platform.uname()
    info: dict[str, Any] = {
        "dspfx": dspfx.__version__,
        "torch": torch.__version__,
        "pedalboard": pedalboard.__version__,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "machine": f"{uname.system} {uname.release} {uname.machine}",
        "torch_threads": torch.get_num_threads(),
    }
    try:
        info["load_average_1min"] = round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        pass
    info["settings"] = {k: v for k, v in vars(args).items() if k not in ("json", "markdown", "verbose")}
    return info


COLUMNS = [
    "model",
    "held-out ESR",
    "ESR pre-emph.",
    "MR-STFT",
    "DC error",
    "parameters",
    "steps in budget",
    "render x real time",
    "render / board",
]


def cells(row: Row) -> list[str]:
    return [
        row.model,
        f"{row.esr:.4f}",
        f"{row.esr_pre_emphasis:.4f}",
        f"{row.mrstft:.3f}",
        f"{row.dc_error:.1e}",
        f"{row.parameters}",
        f"{row.steps}" + (f" ({row.skipped} skipped)" if row.skipped else ""),
        f"{row.realtime_x:.0f}x",
        f"{row.ratio_to_board:.2f}",
    ]


def report(info: dict[str, Any], rows: list[Row], extra: dict[str, Any], markdown: bool, elapsed: float) -> str:
    s = info["settings"]
    head = (
        f"dspfx {info['dspfx']} | torch {info['torch']} | pedalboard {info['pedalboard']} | {info['cpu_count']} CPUs, "
        f"{info['machine']} | torch threads {info['torch_threads']}"
        + (f" | load average {info['load_average_1min']:g} at start" if "load_average_1min" in info else "")
    )
    notes = [
        f"target: pedalboard Gain(0 dB) -> LadderFilter(LPF12, 2.5 kHz, res 0.3, drive 1.5) -> Distortion(12 dB) -> "
        f"PeakFilter(700 Hz, -5 dB, Q 0.8) -> Convolution(2048-tap cabinet-like IR made in code), output x "
        f"{extra['target_scale']:.3g}; DI: dspfx.signals.guitar_di at 48 kHz, {s['train_seconds']:g} s train (seed 0), "
        f"{s['test_seconds']:g} s held out (seed 1); ESR of the DI itself against the held-out target: "
        f"{extra['identity_esr']:.3g}",
        f"training: {s['budget']:g} s wall clock per model, Adam (lr {s['lr_gray']:g} gray-box, {s['lr_lstm']:g} LSTM, "
        f"cosine over the time budget), batch {s['batch']} segments of {s['warmup']} warm-up (no grad) + "
        f"{s['chunk']} trained samples, loss {s['loss']} "
        + ("(0.75 ESR pre-emph. + 0.25 DC)" if s["loss"] == "wright" else "(ESR pre-emph. + MR-STFT)"),
        "held-out metrics on the whole held-out render from the zero state: ESR, ESR after pre-emphasis 1 - 0.95 z^-1, "
        "MR-STFT (auraloss defaults at 48 kHz: FFT 1024/2048/512, hops 120/240/50, windows 600/1200/240), DC error",
        f"render speed: {s['speed_seconds']:g} s of DI at 48 kHz, batch 1, CPU, "
        f"{info['torch_threads']} torch thread(s), "
        f"forward under no_grad, best of {s['repeats']} interleaved with the target board (pedalboard: "
        f"{extra['board_render_ms']:.1f} ms, {extra['board_realtime_x']:.0f}x real time); render / board = model time "
        "/ board time (below 1: faster than the board)",
        "steps in budget depend on the machine's speed and load: compare rows of one run only",
    ]
    if markdown:
        table = ["| " + " | ".join(COLUMNS) + " |", "|:---|" + "|".join(["---:"] * (len(COLUMNS) - 1)) + "|"]
        table += ["| " + " | ".join(cells(r)) + " |" for r in rows]
        bullets = "\n".join(f"- {n}" for n in notes)
        return head + "\n\n" + "\n".join(table) + "\n\n" + bullets + f"\n\nwhole run: {elapsed:.0f} s\n"
    lines = [COLUMNS] + [cells(r) for r in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(COLUMNS))]
    def fmt(line: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths)))

    body = "\n".join([fmt(COLUMNS), "  ".join("-" * w for w in widths)] + [fmt(c) for c in lines[1:]])
    return head + "\n\n" + body + "\n\n" + "\n".join(f"  {n}" for n in notes) + f"\n  whole run: {elapsed:.0f} s\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Gray-box amp vs LSTM on the same DI/target pair and time budget.")
    p.add_argument("--budget", type=float, default=120.0, help="training wall-clock seconds per model (120)")
    p.add_argument("--train-seconds", type=float, default=20.0, help="training audio, seconds (20)")
    p.add_argument("--test-seconds", type=float, default=5.0, help="held-out audio, seconds (5)")
    p.add_argument("--model", default="bassman", help="gray-box amp model: bassman, jcm800, blackface (bassman)")
    p.add_argument("--cabinet", choices=("parametric", "ir"), default="parametric", help="gray-box cabinet")
    p.add_argument("--hidden", type=int, default=32, help="LSTM size (32)")
    p.add_argument("--loss", choices=("wright", "esr+mrstft"), default="wright", help="training loss (wright)")
    p.add_argument("--batch", type=int, default=8, help="segments per step (8)")
    p.add_argument("--warmup", type=int, default=1000, help="warm-up samples per segment, no gradient (1000)")
    p.add_argument("--chunk", type=int, default=2048, help="trained samples per segment (2048, as Wright et al.)")
    p.add_argument("--lr-gray", type=float, default=0.05, help="Adam lr of the gray-box knobs (0.05, as fit)")
    p.add_argument("--lr-lstm", type=float, default=1e-2, help="Adam learning rate of the LSTM (1e-2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--speed-seconds", type=float, default=10.0, help="audio length of the speed test (10)")
    p.add_argument("--repeats", type=int, default=5, help="timed calls per speed figure, best kept (5)")
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (1)")
    p.add_argument("--quick", action="store_true", help="fast check: budget 10 s, 4+2 s audio, 2 s speed test")
    p.add_argument("--markdown", action="store_true", help="print a Markdown table")
    p.add_argument("--json", metavar="PATH", help="also write the settings and rows as JSON")
    p.add_argument("--verbose", action="store_true", help="progress on stderr")
    args = p.parse_args(argv)
    if args.quick:
        args.budget, args.train_seconds, args.test_seconds = 10.0, 4.0, 2.0
        args.speed_seconds, args.repeats = 2.0, 2
    for name in ("budget", "train_seconds", "test_seconds", "speed_seconds", "lr_gray", "lr_lstm"):
        value = getattr(args, name)
        if not (math.isfinite(value) and value > 0):
            p.error(f"--{name.replace('_', '-')} must be a positive number, got {value}")
    for name in ("hidden", "batch", "warmup", "chunk", "repeats", "threads"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    info = machine_info(args)
    rows, extra = run(args)
    elapsed = time.perf_counter() - start
    print(report(info, rows, extra, args.markdown, elapsed), end="")
    if args.json:
        payload = {"info": info, "extra": extra, "whole_run_s": elapsed, "rows": [asdict(r) for r in rows]}
        Path(args.json).write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
