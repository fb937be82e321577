#!/usr/bin/env python
"""Capture benchmark: dspfx's capture models against NAM's trainer on real third-party devices.

Each development device of issue 13 (guitarix-lv2 and calf-plugins circuit models, played with
lv2apply) gets the reamp signal (``dspfx capture-signal``, 70.6 s at 48 kHz) and returns its
output. On that one pair, with the same wall-clock budget and the same thread count, one after
the other in this run:

- ``dspfx.capture`` with each model asked for (``wavenet`` standard, ``lstm``, ``graybox``,
  ``auto``): its latency from the blips, training on the training part, the second validation
  segment held out;
- NAM's trainer (pip neural-amp-modeler): NAM's standard WaveNet built and initialised by NAM,
  NAM's LightningModule (its default loss, Adam at lr 0.004, ExponentialLR 0.993 per epoch,
  as NAM's trainer sets them), NAM's Dataset (``ny`` 8192, batch 16) over the same training
  part with the same latency, stopped by Lightning's ``max_time``. Its held-out ESR is taken
  on the same segment, at the end of the budget (NAM keeps its best validation checkpoint;
  with one validation per epoch of about a minute here, the last is close to it).

Reported per device and model: held-out ESR, optimiser steps, render speed (x real time, 2 s,
batch 1, no gradient). Devices lv2apply cannot host (gx_amp: "Port 12 has unsupported type")
are listed as such.

    OMP_NUM_THREADS=1 python benchmarks/capture.py [--minutes 5] [--devices scream,muff]
        [--models wavenet,lstm,graybox,hybrid,auto,nam] [--threads 1] [--json PATH]

``--table ROWS [ROWS ...]`` trains nothing: it prints the table (and each model's median) from
the rows of earlier runs, files written by ``--json`` or the JSON lines this script prints; a
device and model found in several files takes the last file's row.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

GX = "http://guitarix.sourceforge.net/plugins/"
CALF = "http://calf.sourceforge.net/plugins/"
#: Issue 13's development devices (the others in those packages are kept for evaluation).
DEVICES = {
    "fuzzface": GX + "gx_fuzzface_#_fuzzface_", "muff": GX + "gx_muff_#_muff_", "bmp": GX + "gx_bmp_#_bmp_",
    "mxrdist": GX + "gx_mxrdist_#_mxrdist_", "scream": GX + "gx_scream_#_scream_",
    "hogsfoot": GX + "gx_hogsfoot_#_hogsfoot_", "rangem": GX + "gx_rangem_#_rangem_",
    "booster": GX + "gxbooster#booster", "studiopre": GX + "gx_studiopre#studiopre",
    "alembic": GX + "gx_alembic#alembic", "gx_amp": GX + "gx_amp#GUITARIX", "tilttone": GX + "gxtilttone#tilttone",
    "calf_saturator": CALF + "Saturator", "calf_tape": CALF + "TapeSimulator",
}
MODELS = ("wavenet", "lstm", "graybox", "hybrid", "auto", "nam")


def _speed(render, sample_rate: int) -> float:
    x = torch.randn(1, 2 * sample_rate) * 0.1
    with torch.no_grad():
        render(x[:, :512])
        t0 = time.perf_counter()
        render(x)
        return 2.0 / (time.perf_counter() - t0)


def nam_trainer(x: np.ndarray, y: np.ndarray, layout, latency: int, seconds: float, seed: int = 0) -> dict:
    """NAM's standard WaveNet trained by NAM's LightningModule for ``seconds``; held-out ESR on
    the layout's repeated validation segment."""
    import pytorch_lightning as pl
    from nam.data import Dataset
    from nam.models._from_nam import _init_wavenet  # NAM's own construction from a .nam config
    from nam.train.lightning_module import LightningModule

    from dspfx.amps.wavenet import wavenet_config
    from dspfx.fitting.losses import esr as dspfx_esr  # the ESR dspfx.capture reports

    torch.manual_seed(seed)
    net = _init_wavenet(wavenet_config("standard"), float(layout.sample_rate))  # NAM's initial weights
    module = LightningModule(net, optimizer_config={"lr": 0.004},
                             scheduler_config={"class": "ExponentialLR", "kwargs": {"gamma": 0.993}})
    start, stop = layout.training
    data = Dataset(torch.from_numpy(x[start:stop]), torch.from_numpy(y[start:stop]), nx=net.receptive_field,
                   ny=8192, delay=latency, require_input_pre_silence=None)
    loader = torch.utils.data.DataLoader(data, batch_size=16, shuffle=True, drop_last=True, num_workers=0)
    steps = {"n": 0}

    class Count(pl.Callback):
        def on_train_batch_end(self, *args, **kwargs):
            steps["n"] += 1

    trainer = pl.Trainer(max_time=datetime.timedelta(seconds=seconds), max_epochs=100_000, accelerator="cpu",
                         logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[Count()])
    t0 = time.perf_counter()
    trainer.fit(module, loader)
    train_s = time.perf_counter() - t0
    v0, v1 = layout.validation_repeat
    net.eval()
    with torch.no_grad():
        prediction = net(torch.from_numpy(x[: v1])[None], pad_start=True)[0].numpy()
    aligned = y[latency : v1 + latency] if latency else y[:v1]
    esr = float(dspfx_esr(torch.from_numpy(prediction[v0:v1][: len(aligned) - v0]), torch.from_numpy(aligned[v0:])))
    return {"heldout_esr": esr, "steps": steps["n"], "train_s": train_s,
            "realtime": _speed(lambda a: net(a, pad_start=True), layout.sample_rate)}


def print_table(rows: list[dict], devices: list[str], models: list[str]) -> None:
    """The markdown table (held-out ESR, steps, render speed per device and model; a trainer's
    refusal as its error) and each model's median over the devices it captured."""
    print("\n| device | " + " | ".join(models) + " |\n|---|" + "---|" * len(models))
    for name in devices:
        cells = {r["model"]: r for r in rows if r.get("device") == name and "model" in r}
        if not cells:
            print(f"| {name} | " + " | ".join("n/a" for _ in models) + " |")
            continue
        print(f"| {name} | " + " | ".join(_cell(cells.get(m)) for m in models) + " |")
    nam = {r["device"]: r["heldout_esr"] for r in rows if r.get("model") == "nam" and "heldout_esr" in r}
    for model in models:
        values = {r["device"]: r["heldout_esr"] for r in rows if r.get("model") == model and "heldout_esr" in r}
        if not values:
            continue
        line = f"median held-out ESR, {model}: {statistics.median(values.values()):.4f} over {len(values)} devices"
        both = [d for d in values if d in nam]
        if model != "nam" and both:
            line += f"; lower than NAM's trainer on {sum(values[d] < nam[d] for d in both)} of the {len(both)} it trains on"
        print(line)


def _cell(row: dict | None) -> str:
    if row is None:
        return "-"
    if "error" in row:
        return row["error"]
    return f"{row['heldout_esr']:.4f} ({row['steps']} st, {row['realtime']:.0f}x)"


def read_rows(paths: list[Path]) -> list[dict]:
    """Rows from ``--json`` files or this script's printed JSON lines; a device and model seen
    again replaces the earlier row."""
    rows: dict[tuple[str, str], dict] = {}
    for path in paths:
        text = path.read_text()
        try:
            found = json.loads(text)["rows"]
        except (ValueError, KeyError, TypeError):
            found = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
        for row in found:
            if "model" in row:
                rows[(row["device"], row["model"])] = row
    return list(rows.values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--devices", default=",".join(DEVICES))
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--table", type=Path, nargs="+", metavar="ROWS", help="print the table of earlier runs' rows")
    args = parser.parse_args(argv)
    if args.table:
        missing = [str(p) for p in args.table if not p.is_file()]
        if missing:
            parser.error(f"--table: no such rows file: {', '.join(missing)}")
        try:
            rows = read_rows(args.table)
        except (OSError, ValueError) as err:
            parser.error(f"--table: cannot read the rows ({err})")
        if not rows:
            parser.error(f"--table: no capture rows (JSON with a 'model') in {', '.join(map(str, args.table))}")
        seen = {r["device"] for r in rows}
        print_table(rows, [d for d in DEVICES if d in seen], [m for m in MODELS if any(r["model"] == m for r in rows)])
        return 0
    torch.set_num_threads(args.threads)
    import dspfx
    from dspfx.fitting.capture_model import pair_latency
    from dspfx.fitting.reamp import capture_signal
    from dspfx.lv2 import LV2Error, render_lv2

    devices = [d for d in args.devices.split(",") if d]
    models = [m for m in args.models.split(",") if m]
    unknown = sorted(set(devices) - set(DEVICES)) + sorted(set(models) - set(MODELS))
    if unknown:
        print(f"unknown devices/models {unknown}; devices: {', '.join(DEVICES)}; models: {', '.join(MODELS)}",
              file=sys.stderr)
        return 2
    sr, budget = 48000, 60.0 * args.minutes
    x, layout = capture_signal(sr)
    rows = []
    print(f"# capture benchmark: {budget:.0f} s per model, {args.threads} thread(s), torch {torch.__version__}, "
          f"{os.cpu_count()} cpus", flush=True)
    for name in devices:
        try:
            y = render_lv2(DEVICES[name], x, sr)[0]
        except LV2Error as err:
            rows.append({"device": name, "error": str(err)})
            print(f"{name}: {err}", flush=True)
            continue
        latency, method, warning = pair_latency(torch.from_numpy(x), torch.from_numpy(y), sr, layout)
        if warning:
            print(f"{name}: {warning}", flush=True)
        for model in models:
            try:
                if model == "nam":
                    row = nam_trainer(x, y, layout, latency, budget)
                else:
                    result = dspfx.capture(x, y, sr, model=model, max_seconds=budget, progress=False)
                    row = {"heldout_esr": result.heldout_esr, "steps": result.steps, "train_s": result.train_seconds,
                           "realtime": result.realtime_factor, "chosen": result.model_name,
                           **({"candidates": result.candidates} if result.candidates else {})}
            except Exception as err:  # a trainer that refuses the pair (NAM: "Output clipped.") is a result too
                row = {"error": f"{type(err).__name__}: {err}"}
            row.update(device=name, model=model, latency=latency)
            rows.append(row)
            print(json.dumps(row), flush=True)
    print_table(rows, devices, models)
    if args.json:
        args.json.write_text(json.dumps({"minutes": args.minutes, "threads": args.threads, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
