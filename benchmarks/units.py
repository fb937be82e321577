#!/usr/bin/env python
"""Render speed of every dspfx unit with a pedalboard twin, measured against pedalboard in the same run.

For each pedalboard plugin that has a dspfx twin (and for a whole board of them), the plugin is built
with non-trivial settings, its twin is made with ``dspfx.from_pedalboard(plugin, sample_rate)``, and
the same white noise (10 s at 48 kHz, mono float32 by default) is rendered through both. Reported per
row:

- pedalboard ms, dspfx forward ms (under ``torch.no_grad()``) and their ratio (dspfx / pedalboard:
  below 1 means dspfx is faster), plus how many times faster than real time the dspfx forward runs;
- forward+backward ms (knobs and input requiring grad, ``y = unit(x); y.square().mean().backward()`` timed
  together) and its ratio to the forward alone;
- the ESR of the twin's render against pedalboard's (a sanity check that both did the same work).

One extra row renders a peak biquad whose ``cutoff_hz`` is swept per sample (a 1000-frame log
sweep, as a network would drive it); pedalboard has no peer for that, so its ratio is to the static
dspfx biquad of the same run.

Every figure is the best of ``--repeats`` timed calls after one untimed warm-up call each, so
one-time costs (compilation, JIT, first-touch allocation) are excluded. Speed is reported as ratios
to a peer measured in the same run, never asserted.

    python benchmarks/units.py [--seconds 10] [--repeats 5] [--threads 1] [--markdown] [--json PATH]
                               [--device cpu|cuda]
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
import torch  # noqa: E402

import dspfx  # noqa: E402
from dspfx.signals import white_noise  # noqa: E402
from dspfx.fitting.metrics import esr  # noqa: E402

SAMPLE_RATE = 48000
SWEEP_FRAMES = 1000
SWEEP_HZ = (200.0, 4000.0)


@dataclass
class Row:
    """One line of the table (times in milliseconds; ``None`` where a figure does not apply)."""

    unit: str
    pedalboard_class: str
    peer: str
    peer_ms: float | None
    pedalboard_ms: float | None
    dspfx_fwd_ms: float
    ratio: float | None
    realtime_x: float
    fwd_bwd_ms: float
    fwd_bwd_over_fwd: float
    esr_vs_pedalboard: float | None
    grads_finite: bool


# --- the cases --------------------------------------------------------------------------------


def _decaying_noise_ir(taps: int) -> np.ndarray:
    """A reverb-like impulse response: seeded noise decaying by 60 dB over its length."""
    rng = np.random.default_rng(1)
    return (rng.standard_normal(taps) * np.exp(-6.9 * np.arange(taps) / taps)).astype(np.float32)


def pedalboard_cases() -> list[tuple[str, Any]]:
    """(row label, pedalboard plugin or board) for every twin available, with non-trivial settings."""
    peak = dict(cutoff_frequency_hz=1500.0, gain_db=6.0, q=1.2)
    low = dict(cutoff_frequency_hz=200.0, gain_db=4.0, q=0.7071)
    high = dict(cutoff_frequency_hz=6000.0, gain_db=-5.0, q=0.7071)
    return [
        ("gain", pedalboard.Gain(gain_db=4.5)),
        ("distortion", pedalboard.Distortion(drive_db=18.0)),
        ("biquad peak", pedalboard.PeakFilter(**peak)),
        ("biquad lowshelf", pedalboard.LowShelfFilter(**low)),
        ("biquad highshelf", pedalboard.HighShelfFilter(**high)),
        ("one_pole lowpass", pedalboard.LowpassFilter(cutoff_frequency_hz=800.0)),
        ("one_pole highpass", pedalboard.HighpassFilter(cutoff_frequency_hz=120.0)),
        ("clipping hard", pedalboard.Clipping(threshold_db=-12.0)),
        ("invert", pedalboard.Invert()),
        ("bitcrush", pedalboard.Bitcrush(bit_depth=6.0)),
        ("compressor", pedalboard.Compressor(threshold_db=-24.0, ratio=4.0, attack_ms=5.0, release_ms=80.0)),
        ("limiter", pedalboard.Limiter(threshold_db=-12.0, release_ms=60.0)),
        ("noise_gate", pedalboard.NoiseGate(threshold_db=-30.0, ratio=8.0, attack_ms=2.0, release_ms=120.0)),
        ("delay 250 ms", pedalboard.Delay(delay_seconds=0.25, feedback=0.5, mix=0.4)),
        ("delay 2 ms", pedalboard.Delay(delay_seconds=0.002, feedback=0.7, mix=0.5)),
        ("ladder lpf24", pedalboard.LadderFilter(mode=pedalboard.LadderFilter.Mode.LPF24, cutoff_hz=1200.0, resonance=0.5, drive=2.0)),
        ("chorus", pedalboard.Chorus(rate_hz=1.5, depth=0.4, centre_delay_ms=8.0, feedback=0.2, mix=0.5)),
        ("phaser", pedalboard.Phaser(rate_hz=0.8, depth=0.6, centre_frequency_hz=1000.0, feedback=0.3, mix=0.5)),
        ("reverb", pedalboard.Reverb(room_size=0.7, damping=0.4, wet_level=0.4, dry_level=0.6, width=1.0)),
        ("convolution 1 s IR", pedalboard.Convolution(_decaying_noise_ir(48000), sample_rate=48000, mix=0.7)),
        (
            "board: distortion + 3 biquads",
            pedalboard.Pedalboard(
                [
                    pedalboard.Distortion(drive_db=18.0),
                    pedalboard.LowShelfFilter(**low),
                    pedalboard.PeakFilter(**peak),
                    pedalboard.HighShelfFilter(**high),
                ]
            ),
        ),
    ]


def pedalboard_label(plugin: Any) -> str:
    if isinstance(plugin, pedalboard.Pedalboard):
        return f"Pedalboard of {len(plugin)}"
    return type(plugin).__name__


# --- timing -----------------------------------------------------------------------------------


def make_sync(device: torch.device) -> Callable[[], None]:
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def best_of(fn: Callable[[], Any], repeats: int, sync: Callable[[], None]) -> float:
    """Best wall time of ``repeats`` calls of ``fn`` in seconds, after one untimed warm-up call."""
    fn()
    sync()
    best = math.inf
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - start)
    return best


def best_of_interleaved(fns: list[Callable[[], Any]], repeats: int, sync: Callable[[], None]) -> list[float]:
    """Best wall time of each of ``fns`` over ``repeats`` rounds, calling them in turn within a
    round (after one untimed warm-up call each), so that a busy machine slows them alike and
    their ratio stays meaningful."""
    for fn in fns:
        fn()
    sync()
    best = [math.inf] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            sync()
            start = time.perf_counter()
            fn()
            sync()
            best[i] = min(best[i], time.perf_counter() - start)
    return best


def time_dspfx(
    unit: dspfx.Unit, x: torch.Tensor, controls: dict[str, torch.Tensor], repeats: int, sync: Callable[[], None]
) -> tuple[float, float, torch.Tensor, bool]:
    """(forward s, forward+backward s, forward render, whether every gradient came out finite)."""
    out: dict[str, torch.Tensor] = {}

    def forward() -> None:
        with torch.no_grad():
            out["y"] = unit(x, **controls)

    # the input gets a gradient too, as inside a chain (and so that knob-less units have one)
    x_leaf = x.detach().requires_grad_(True)
    leaves = [x_leaf] + [p for p in unit.parameters() if p.requires_grad]
    leaves += [c for c in controls.values() if c.requires_grad]

    def forward_backward() -> None:
        for leaf in leaves:
            leaf.grad = None
        y = unit(x_leaf, **controls)
        y.square().mean().backward()

    fwd = best_of(forward, repeats, sync)
    fwd_bwd = best_of(forward_backward, repeats, sync)
    # a knob may get no gradient by design (delay_ms is a whole number of samples): None is fine
    finite = x_leaf.grad is not None and all(leaf.grad is None or bool(torch.isfinite(leaf.grad).all()) for leaf in leaves)
    return fwd, fwd_bwd, out["y"], finite


def run(args: argparse.Namespace) -> list[Row]:
    device = torch.device(args.device)
    sync = make_sync(device)
    x_cpu = white_noise(args.seconds, SAMPLE_RATE, channels=1, seed=0, level_db=-12.0, dtype=torch.float32)
    x_np = np.ascontiguousarray(x_cpu[0].numpy())  # (channels, samples), what pedalboard renders
    x = x_cpu.to(device)
    rows: list[Row] = []
    static_peak: Row | None = None
    peak_twin: dspfx.Unit | None = None
    for label, plugin in pedalboard_cases():
        pb_out: dict[str, np.ndarray] = {}

        def render_pedalboard(plugin: Any = plugin, pb_out: dict[str, np.ndarray] = pb_out) -> None:
            pb_out["y"] = plugin(x_np, float(SAMPLE_RATE))  # reset=True: every call starts fresh

        pb_s = best_of(render_pedalboard, args.repeats, lambda: None)
        twin = dspfx.from_pedalboard(plugin, SAMPLE_RATE).to(device)
        fwd_s, fwd_bwd_s, y, finite = time_dspfx(twin, x, {}, args.repeats, sync)
        y_ref = torch.from_numpy(np.asarray(pb_out["y"], dtype=np.float32)).unsqueeze(0)
        err = float(esr(y.detach().cpu().double(), y_ref.double()))
        row = Row(
            unit=label,
            pedalboard_class=pedalboard_label(plugin),
            peer="pedalboard",
            peer_ms=pb_s * 1e3,
            pedalboard_ms=pb_s * 1e3,
            dspfx_fwd_ms=fwd_s * 1e3,
            ratio=fwd_s / pb_s,
            realtime_x=args.seconds / fwd_s,
            fwd_bwd_ms=fwd_bwd_s * 1e3,
            fwd_bwd_over_fwd=fwd_bwd_s / fwd_s,
            esr_vs_pedalboard=err,
            grads_finite=finite,
        )
        rows.append(row)
        if label == "biquad peak":
            static_peak = row
            peak_twin = twin

    # Time-varying: the same peak filter with cutoff_hz swept per sample (frames upsampled inside).
    assert static_peak is not None and peak_twin is not None
    knobs = {k: float(v) for k, v in peak_twin.knobs().items()}
    sweep = dspfx.make("biquad", sample_rate=SAMPLE_RATE, mode="peak", **knobs).to(device)
    sweep.freeze("cutoff_hz")  # overridden by the control: its knob takes no part in the render
    lo, hi = SWEEP_HZ
    frames = torch.logspace(math.log10(lo), math.log10(hi), SWEEP_FRAMES, device=device).view(1, SWEEP_FRAMES)
    frames.requires_grad_(True)  # as when a network drives the control
    fwd_s, fwd_bwd_s, _, finite = time_dspfx(sweep, x, {"cutoff_hz": frames}, args.repeats, sync)
    rows.append(
        Row(
            unit=f"biquad peak, cutoff swept ({SWEEP_FRAMES} frames)",
            pedalboard_class="none",
            peer="dspfx biquad peak (static knobs)",
            peer_ms=static_peak.dspfx_fwd_ms,
            pedalboard_ms=None,
            dspfx_fwd_ms=fwd_s * 1e3,
            ratio=fwd_s * 1e3 / static_peak.dspfx_fwd_ms,
            realtime_x=args.seconds / fwd_s,
            fwd_bwd_ms=fwd_bwd_s * 1e3,
            fwd_bwd_over_fwd=fwd_bwd_s / fwd_s,
            esr_vs_pedalboard=None,
            grads_finite=finite,
        )
    )
    return rows


# --- reporting --------------------------------------------------------------------------------


def cpu_model() -> str:
    name = platform.processor()
    if not name or name == platform.machine():
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
    return name or "unknown CPU"


def machine_info(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    uname = platform.uname()
    info: dict[str, Any] = {
        "dspfx": dspfx.__version__,
        "torch": torch.__version__,
        "pedalboard": pedalboard.__version__,
        "python": platform.python_version(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "machine": f"{uname.system} {uname.release} {uname.machine}",
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "seconds": args.seconds,
        "sample_rate": SAMPLE_RATE,
        "repeats": args.repeats,
        "signal": "mono float32 white noise, -12 dBFS RMS, seed 0",
    }
    try:
        info["load_average_1min"] = round(os.getloadavg()[0], 2)  # other work competing for the cores
    except (AttributeError, OSError):
        pass
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def header(info: dict[str, Any]) -> str:
    dev = info["device"] + (f" ({info['gpu']})" if "gpu" in info else "")
    return (
        f"dspfx {info['dspfx']} | torch {info['torch']} | pedalboard {info['pedalboard']} | "
        f"{info['cpu']}, {info['cpu_count']} CPUs, {info['machine']} | dspfx on {dev}, torch threads "
        f"{info['torch_threads']} (pedalboard renders single-threaded)"
        + (f" | load average {info['load_average_1min']:g} at start" if "load_average_1min" in info else "")
        + "\n"
        f"{info['seconds']:g} s of {info['sample_rate'] / 1000:g} kHz {info['signal']}; each figure is the "
        f"best of {info['repeats']} calls after one untimed warm-up call (one-time compile/JIT costs excluded)"
    )


NOTES = [
    "ratio = dspfx forward / pedalboard (below 1: dspfx is faster); x real time = audio seconds / dspfx forward time",
    "dspfx forward runs under torch.no_grad(); fwd+bwd = y = unit(x); y.square().mean().backward() with every "
    "knob and the input requiring grad, timed together",
    "ESR = sum((dspfx - pedalboard)^2) / sum(pedalboard^2) of the two renders (dspfx.fitting.metrics.esr)",
    "board = Pedalboard([Distortion, LowShelfFilter, PeakFilter, HighShelfFilter]) vs its from_pedalboard twin Chain",
    "* no pedalboard peer for a per-sample sweep: the ratio is to the static dspfx biquad peak of the same run; "
    "the cutoff frames (200 Hz -> 4 kHz log sweep) require grad as well",
]

COLUMNS = [
    "unit",
    "pedalboard class",
    "pedalboard ms",
    "dspfx fwd ms",
    "ratio (dspfx/pb)",
    "x real time",
    "fwd+bwd ms",
    "fwd+bwd / fwd",
    "ESR vs pedalboard",
]


def _ms(v: float | None) -> str:
    if v is None:
        return "—"
    return f"{v:.1f}" if v >= 10 else f"{v:.2f}"


def cells(row: Row) -> list[str]:
    ratio = "—" if row.ratio is None else f"{row.ratio:.2f}" + ("" if row.peer == "pedalboard" else "*")
    return [
        row.unit,
        row.pedalboard_class,
        _ms(row.pedalboard_ms),
        _ms(row.dspfx_fwd_ms),
        ratio,
        f"{row.realtime_x:.0f}x",
        _ms(row.fwd_bwd_ms),
        f"{row.fwd_bwd_over_fwd:.2f}" + ("" if row.grads_finite else " (grad NOT finite)"),
        "—" if row.esr_vs_pedalboard is None else f"{row.esr_vs_pedalboard:.1e}",
    ]


def text_table(rows: list[Row]) -> str:
    table = [COLUMNS] + [cells(r) for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]

    def fmt(line: list[str]) -> str:
        # first two columns left-aligned, figures right-aligned
        return "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths))).rstrip()

    out = [fmt(COLUMNS), "  ".join("-" * w for w in widths)]
    out += [fmt(c) for c in table[1:]]
    return "\n".join(out)


def markdown_table(rows: list[Row]) -> str:
    out = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join([":---", ":---"] + ["---:"] * (len(COLUMNS) - 2)) + "|"]
    out += ["| " + " | ".join(c.replace("|", "\\|") for c in cells(r)) + " |" for r in rows]
    return "\n".join(out)


def compose_report(head: str, table: str, notes: list[str], markdown: bool, elapsed_s: float) -> str:
    """A benchmark's printout: header lines, its table (Markdown or text, already made), notes
    and the whole run's time (shared by units.py, effects.py and synths.py)."""
    if markdown:
        head = "\n".join(line + "  " for line in head.splitlines())
        body = "\n".join(f"- {n}" for n in notes)
        return f"{head}\n\n{table}\n\n{body}\n\nwhole run: {elapsed_s:.1f} s\n"
    body = "\n".join(f"  {n}" for n in notes)
    return f"{head}\n\n{table}\n\n{body}\n  whole run: {elapsed_s:.1f} s\n"


def check_run_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """The checks every benchmark makes of --seconds, --repeats and --threads."""
    if not (math.isfinite(args.seconds) and args.seconds > 0):
        parser.error(f"--seconds must be a positive number, got {args.seconds}")
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    if args.threads < 1:
        parser.error(f"--threads must be at least 1, got {args.threads}")


def report(info: dict[str, Any], rows: list[Row], markdown: bool, elapsed_s: float) -> str:
    table = markdown_table(rows) if markdown else text_table(rows)
    return compose_report(header(info), table, NOTES, markdown, elapsed_s)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Render time of dspfx units against their pedalboard twins, in the same run.",
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the test signal in seconds (10)")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per figure; the best is kept (5)")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch.set_num_threads (1: pedalboard renders single-threaded)"
    )
    parser.add_argument("--device", default="cpu", help="where dspfx renders: cpu (default) or cuda[:N]")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table instead of plain text")
    parser.add_argument("--json", metavar="PATH", help="also write the machine info and rows as JSON to PATH")
    args = parser.parse_args(argv)
    check_run_args(parser, args)
    try:
        device = torch.device(args.device)
    except RuntimeError:
        parser.error(f"--device must be cpu or cuda[:N], got {args.device!r}")
    if device.type not in ("cpu", "cuda"):
        parser.error(f"--device must be cpu or cuda[:N], got {args.device!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda was asked for, but torch sees no CUDA device (torch.cuda.is_available() is False)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    info = machine_info(args, torch.device(args.device))
    rows = run(args)
    elapsed = time.perf_counter() - start
    print(report(info, rows, args.markdown, elapsed), end="")
    if args.json:
        payload = {"info": info, "notes": NOTES, "whole_run_s": elapsed, "rows": [asdict(r) for r in rows]}
        Path(args.json).write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
