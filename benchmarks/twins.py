#!/usr/bin/env python
"""Fidelity and speed of every pedalboard twin, measured against pedalboard in the same run.

Fidelity table: for every pedalboard class that has a dspfx twin (found through the registry,
``dspfx.reference.twin_table()``), the twin is drawn at ``--settings`` settings (default 20): all
twin knobs at their minimum, all at their maximum, two alternating min/max patterns, then seeded
random values across each knob's declared range (uniform in the knob's scale, log or linear).
A knob is a *twin knob* when ``unit.to_pedalboard()`` accepts a value other than its default; the
others (a compressor's knee, say) stay at their default, where pedalboard can represent them.
Each setting renders three signals (white noise at -12 dBFS RMS, a 20 Hz - 20 kHz log sweep at
-6 dBFS, ``dspfx.signals.guitar_di``) at 44.1 and 48 kHz, mono and stereo (a second, different
signal on the right channel), through the twin (float32) and through ``unit.to_pedalboard()``
(pedalboard renders float32). Reported: the WORST ESR per twin per signal over all settings,
rates and channel counts, and which setting gave it.

Speed table: ``benchmarks/units.py``'s rows (10 s of 48 kHz mono noise, best of ``--repeats``,
dspfx forward time / pedalboard time, same run).

    python benchmarks/twins.py [--settings 20] [--seconds 0.5] [--threads 1] [--no-speed]
                               [--markdown] [--write docs/twins.md]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import pedalboard  # noqa: E402
import torch  # noqa: E402

import dspfx  # noqa: E402
from dspfx.reference import twin_table  # noqa: E402
from dspfx.signals import guitar_di, log_sweep, white_noise  # noqa: E402
from dspfx.fitting.metrics import esr  # noqa: E402

import units  # noqa: E402  (benchmarks/units.py: the speed table and its helpers)

RATES = (44100, 48000)
SIGNALS = ("noise", "sweep", "guitar")
# The ESR each twin must reach (issue 5): 1e-6, except the two whose LFO or long recursions
# accumulate float32 rounding differently.
LIMITS = {"Chorus": 1e-5, "Reverb": 1e-5}


def default_plugin(name: str, sample_rate: int) -> Any:
    """A pedalboard object of class ``name`` at its defaults (Convolution gets a 0.1 s IR)."""
    cls = getattr(pedalboard, name)
    if name == "Convolution":
        return cls(units._decaying_noise_ir(int(0.1 * sample_rate)), sample_rate=float(sample_rate))
    return cls()


def signal(kind: str, sample_rate: int, seconds: float, channels: int) -> torch.Tensor:
    """(1, channels, samples) float32: channel 1 differs from channel 0 (other seed or range)."""
    out = []
    for ch in range(channels):
        if kind == "noise":
            out.append(white_noise(seconds, sample_rate, seed=ch, level_db=-12.0)[0, 0])
        elif kind == "sweep":
            lo, hi = (20.0, 20000.0) if ch == 0 else (50.0, 12000.0)
            out.append(log_sweep(lo, min(hi, 0.49 * sample_rate), seconds, sample_rate, amplitude=0.5)[0, 0])
        else:
            out.append(guitar_di(sample_rate=sample_rate, duration_s=seconds, seed=ch)[0, 0])
    return torch.stack(out).unsqueeze(0).float()


def twin_knobs(unit: dspfx.Unit) -> list[str]:
    """Knobs the unit's pedalboard twin can represent (to_pedalboard accepts a non-default value)."""
    free = []
    for key, knob in unit.knob_table().items():
        saved = unit.knobs()[key]
        lo, hi = knob._to_scale(knob.minimum), knob._to_scale(knob.maximum)
        s = lo + 0.37 * (hi - lo)
        value = math.exp(s) if knob.scale == "log" else s
        try:
            unit.set(**{key: value})
            unit.to_pedalboard()
            free.append(key)
        except (ValueError, TypeError):
            pass
        finally:
            unit.set(**{key: saved})
    return free


def settings(unit: dspfx.Unit, keys: list[str], n: int, seed: int) -> list[dict[str, float]]:
    """Edges first (all min, all max, two alternations), then seeded random draws in knob scale."""
    table = unit.knob_table()
    rng = np.random.default_rng(seed)
    out: list[dict[str, float]] = []
    lo = {k: table[k].minimum for k in keys}
    hi = {k: table[k].maximum for k in keys}
    out += [lo, hi]
    out.append({k: (lo[k] if i % 2 == 0 else hi[k]) for i, k in enumerate(keys)})
    out.append({k: (hi[k] if i % 2 == 0 else lo[k]) for i, k in enumerate(keys)})
    while len(out) < n:
        s = {}
        for k in keys:
            knob = table[k]
            a, b = knob._to_scale(knob.minimum), knob._to_scale(knob.maximum)
            v = rng.uniform(a, b)
            s[k] = float(np.clip(math.exp(v) if knob.scale == "log" else v, knob.minimum, knob.maximum))
        out.append(s)
    return out[: max(n, 1)] if keys else [{}]


@dataclass
class FidelityRow:
    pedalboard_class: str
    unit: str
    knobs: list[str]
    settings: int
    worst: dict[str, float]
    worst_setting: dict[str, str]
    skipped: int
    limit: float

    @property
    def passed(self) -> bool:
        return all(v <= self.limit for v in self.worst.values())


def fidelity(args: argparse.Namespace) -> list[FidelityRow]:
    rows = []
    for name, cls in sorted(twin_table().items()):
        worst = {s: 0.0 for s in SIGNALS}
        where = {s: "" for s in SIGNALS}
        skipped = 0
        keys: list[str] = []
        n_settings = 0
        for sample_rate in RATES:
            base = dspfx.from_pedalboard(default_plugin(name, sample_rate), sample_rate)
            keys = twin_knobs(base)
            draws = settings(base, keys, args.settings, seed=sample_rate)
            n_settings = len(draws)
            signals = {(kind, ch): signal(kind, sample_rate, args.seconds, ch) for kind in SIGNALS for ch in (1, 2)}
            for i, values in enumerate(draws):
                unit = dspfx.from_pedalboard(default_plugin(name, sample_rate), sample_rate)
                try:
                    unit.set(**values)
                    plugin = unit.to_pedalboard()
                except (ValueError, TypeError):
                    skipped += 1
                    continue
                for (kind, channels), x in signals.items():
                    with torch.no_grad():
                        y = unit(x)[0].numpy()
                    ref = plugin(np.ascontiguousarray(x[0].numpy()), float(sample_rate))
                    e = float(esr(torch.from_numpy(y).double(), torch.from_numpy(np.asarray(ref)).double()))
                    if e > worst[kind] or not where[kind]:
                        worst[kind] = max(e, worst[kind])
                        where[kind] = f"#{i} {sample_rate} Hz {'stereo' if channels == 2 else 'mono'}"
        rows.append(
            FidelityRow(
                pedalboard_class=name,
                unit=cls.name,
                knobs=keys,
                settings=n_settings,
                worst=worst,
                worst_setting=where,
                skipped=skipped,
                limit=LIMITS.get(name, 1e-6),
            )
        )
    return rows


def fidelity_table(rows: list[FidelityRow]) -> str:
    head = "| pedalboard class | dspfx unit | twin knobs | settings | " + " | ".join(
        f"worst ESR, {s}" for s in SIGNALS
    ) + " | limit | pass |"
    lines = [head, "|" + "---|" * (6 + len(SIGNALS))]
    for r in rows:
        cells = [f"{r.worst[s]:.1e}" for s in SIGNALS]
        lines.append(
            f"| {r.pedalboard_class} | {r.unit} | {', '.join(r.knobs) or '-'} | {r.settings} x 2 rates"
            + (f" ({r.skipped} not representable)" if r.skipped else "")
            + f" | {' | '.join(cells)} | {r.limit:.0e} | {'yes' if r.passed else '**NO**'} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--settings", type=int, default=20, help="settings per twin per sample rate (default 20)")
    p.add_argument("--seconds", type=float, default=0.5, help="length of each test signal (default 0.5 s)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats for the speed table (default 3)")
    p.add_argument("--no-speed", action="store_true", help="skip the speed table")
    p.add_argument("--write", type=Path, default=None, help="also write the report (markdown) to this file")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    rows = fidelity(args)
    parts = [
        f"## Fidelity (dspfx {dspfx.__version__}, pedalboard {pedalboard.__version__}, torch {torch.__version__})",
        "",
        f"Worst ESR over {args.settings} settings per rate (edges first, then seeded random), 44.1 and 48 kHz, "
        f"mono and stereo, {args.seconds:g} s signals, float32. "
        f"Command: `python benchmarks/twins.py --settings {args.settings} --seconds {args.seconds:g}`.",
        "",
        fidelity_table(rows),
    ]
    if not args.no_speed:
        speed_args = units.parse_args(["--seconds", "10", "--repeats", str(args.repeats), "--threads", str(args.threads)])
        speed_rows = units.run(speed_args)
        parts += [
            "",
            "## Speed (10 s of 48 kHz mono white noise, forward, best of "
            f"{args.repeats}, {args.threads} thread(s); ratio = dspfx / pedalboard, below 1 is faster)",
            "",
            f"Machine: {units.cpu_model()}. Command: `python benchmarks/units.py --markdown`.",
            "",
            units.markdown_table(speed_rows),
        ]
    report = "\n".join(parts) + f"\n\n(took {time.perf_counter() - start:.0f} s)\n"
    print(report)
    if args.write is not None:
        from dspfx.io import atomic_write

        args.write.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(args.write, lambda tmp: tmp.write_text(report))
    failed = [r.pedalboard_class for r in rows if not r.passed]
    if failed:
        print(f"twins above their ESR limit: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
