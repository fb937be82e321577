"""Import time of ``import dspfx``, against ``import torch`` (its floor: dspfx is torch plus its
own modules) measured in the same run, each in fresh interpreters, interleaved.

    OMP_NUM_THREADS=1 python benchmarks/imports.py [--repeats 7] [--markdown]

Each measurement is ``python -X importtime -c "import MODULE"`` in a new process; the figure is
the cumulative microseconds of the top-level import (median over repeats). Also listed: whether
the DDSP pipeline (``dspfx.ddsp.*``, before it ``dspfx.train``'s features and data, librosa) was
imported, and dspfx's own modules that took
longest (self time, median).
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys

LINE = re.compile(r"import time:\s+(\d+)\s+\|\s+(\d+)\s+\|(\s*)(\S+)")


def measure(module: str) -> tuple[float, dict[str, int], list[str]]:
    """(cumulative seconds of ``import module``, self microseconds per dspfx module, every module)."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {module}"],
                          capture_output=True, text=True, check=True)
    total, own, names = None, {}, []
    for line in proc.stderr.splitlines():
        m = LINE.match(line)
        if not m:
            continue
        self_us, cumulative_us, indent, name = int(m[1]), int(m[2]), m[3], m[4]
        names.append(name)
        if name.startswith("dspfx"):
            own[name] = self_us
        if name == module and len(indent) == 1:
            total = cumulative_us / 1e6
    if total is None:
        raise RuntimeError(f"no importtime line for {module}")
    return total, own, names


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    times: dict[str, list[float]] = {"dspfx": [], "torch": []}
    own: dict[str, list[int]] = {}
    names: list[str] = []
    for _ in range(args.repeats):
        for module in ("torch", "dspfx"):  # interleaved: drift hits both
            seconds, mine, every = measure(module)
            times[module].append(seconds)
            if module == "dspfx":
                names = every
                for key, value in mine.items():
                    own.setdefault(key, []).append(value)
    dspfx_s, torch_s = statistics.median(times["dspfx"]), statistics.median(times["torch"])
    pipeline = ("dspfx.ddsp.", "dspfx.train.features", "dspfx.train.data", "dspfx.train.trainer", "dspfx.train.ddsp")
    ddsp = sorted({n for n in names if n.startswith(pipeline) or n.split(".")[0] in ("librosa", "pretty_midi")})
    slowest = sorted(((statistics.median(v), k) for k, v in own.items()), reverse=True)[:5]
    rows = [
        ("import dspfx (median)", f"{dspfx_s:.3f} s"),
        ("import torch (median)", f"{torch_s:.3f} s"),
        ("ratio dspfx / torch", f"{dspfx_s / torch_s:.2f}x"),
        ("dspfx's own modules (self time, sum of medians)", f"{sum(statistics.median(v) for v in own.values()) / 1e6:.3f} s"),
        ("DDSP pipeline modules imported", ", ".join(ddsp) if ddsp else "none"),
        ("slowest dspfx modules (self)", ", ".join(f"{k} {us / 1000:.1f} ms" for us, k in slowest)),
    ]
    if args.markdown:
        print("| measure | value |\n|---|---|")
        for key, value in rows:
            print(f"| {key} | {value} |")
    else:
        for key, value in rows:
            print(f"{key:<50} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
