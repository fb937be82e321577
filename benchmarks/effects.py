#!/usr/bin/env python
"""Render speed of EVERY registered effect and amp unit, each against its closest peer measured in the same run.

The registry is iterated (``dspfx.units(category="effect")`` and ``"amp"``; containers are skipped),
so a unit registered later gets a row without editing this script. Every module of
``dspfx.effects`` and ``dspfx.amps`` is imported first, including modules the package
``__init__`` does not star-import yet. A unit is made with its defaults unless :data:`OVERRIDES`
gives construction arguments (an impulse response, a mode, non-trivial knobs; several variants
give several rows). The same white noise (10 s at 48 kHz, mono float32 by default) goes through
the unit and through its peer:

- the unit's pedalboard twin (``unit.to_pedalboard()``) where one exists: the same job, so the ESR
  of the two renders is shown as a check;
- else a scipy.signal / NumPy peer doing the same work (the unit's own biquad, SOS, transfer
  function or taps through ``lfilter`` / ``sosfilt`` / ``fftconvolve``; ESR shown), or a
  numpy ``tanh`` / ``clip`` of the same size for memoryless curves (work of the same size, not
  the same curve: no ESR);
- else the closest pedalboard effect (a Chorus for flanger / vibrato, a Reverb for the other
  reverbs, a NoiseGate for the expander): a similar job, not the same one (no ESR);
- else no peer ("none", ratio empty).

Reported per row: peer ms, dspfx forward ms (under ``torch.no_grad()``), their ratio (below 1:
dspfx is faster), forward+backward ms (every knob parameter and the input requiring grad,
``y = unit(x); y.square().mean().backward()`` timed together), its ratio to the forward, and how
many times faster than real time the forward runs. A unit that fails to construct or render is
listed with its error; the run goes on. Timing helpers, machine line and header come from
``benchmarks/units.py`` (best of ``--repeats`` after one untimed warm-up call).

    python benchmarks/effects.py [--seconds 10] [--repeats 5] [--threads 1] [--only NAME]
                                 [--markdown] [--json PATH]
"""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
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
import scipy  # noqa: E402
import scipy.signal  # noqa: E402
import torch  # noqa: E402

import dspfx  # noqa: E402
import dspfx.amps  # noqa: E402
import dspfx.effects  # noqa: E402
from dspfx.signals import white_noise  # noqa: E402
from dspfx.fitting.metrics import esr  # noqa: E402
from units import (  # noqa: E402  (benchmarks/units.py)
    SAMPLE_RATE,
    best_of_interleaved,
    check_run_args,
    compose_report,
    header,
    machine_info,
    time_dspfx,
)

CATEGORIES = ("effect", "amp")


def _import_all_modules() -> list[str]:
    """Import every module of dspfx.effects and dspfx.amps (so every unit registers); the failures."""
    failures = []
    for pkg in (dspfx.effects, dspfx.amps):
        for mod in pkgutil.iter_modules(pkg.__path__):
            try:
                importlib.import_module(f"{pkg.__name__}.{mod.name}")
            except Exception as exc:  # a module being written elsewhere must not stop the benchmark
                failures.append(f"{pkg.__name__}.{mod.name}: {type(exc).__name__}: {exc}")
    return failures


def _decaying_noise_ir(taps: int) -> np.ndarray:
    """A reverb-like (1, taps) impulse response: seeded noise decaying by 60 dB over its length."""
    rng = np.random.default_rng(1)
    return (rng.standard_normal(taps) * np.exp(-6.9 * np.arange(taps) / taps))[None].astype(np.float64)


# Construction arguments per registry name: a list of (row label, kwargs) variants. Units not listed
# are made with their defaults (one row labelled with the name). Knob values follow benchmarks/units.py.
OVERRIDES: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "biquad": [
        ("biquad peak", dict(mode="peak", cutoff_hz=1500.0, gain_db=6.0, q=1.2)),
        ("biquad lowpass", dict(mode="lowpass", cutoff_hz=2000.0, q=0.7071)),
        ("biquad lowshelf", dict(mode="lowshelf", cutoff_hz=200.0, gain_db=4.0, q=0.7071, form="tdf2")),
        ("biquad highshelf", dict(mode="highshelf", cutoff_hz=4000.0, gain_db=-3.0, q=0.7071, form="tdf2")),
    ],
    "one_pole": [("one_pole lowpass", dict(mode="lowpass", cutoff_hz=800.0))],
    "svf": [
        ("svf lowpass", dict(mode="lowpass", cutoff_hz=2000.0, q=0.7071)),
        ("svf peak", dict(mode="peak", cutoff_hz=1500.0, gain_db=6.0, q=1.2)),
    ],
    "clipping": [
        ("clipping hard", dict(curve="hard", threshold_db=-12.0)),
        ("clipping soft", dict(curve="soft", threshold_db=-12.0)),
    ],
    "static_nonlinearity": [("static_nonlinearity tanh", dict(curve="tanh"))],
    "distortion": [("distortion", dict(drive_db=18.0))],
    "gain": [("gain", dict(gain_db=4.5))],
    "trim": [("trim", dict(scale=-0.8, dc=0.01))],
    "bitcrush": [("bitcrush", dict(bit_depth=6.0))],
    "compressor": [("compressor", dict(threshold_db=-24.0, ratio=4.0, attack_ms=5.0, release_ms=80.0))],
    "limiter": [("limiter", dict(threshold_db=-12.0, release_ms=60.0))],
    "noise_gate": [("noise_gate", dict(threshold_db=-30.0, ratio=8.0, attack_ms=2.0, release_ms=120.0))],
    "expander": [("expander", dict(threshold_db=-30.0, ratio=4.0, attack_ms=2.0, release_ms=120.0))],
    "delay": [("delay 250 ms", dict(delay_ms=250.0, feedback=0.5, mix=0.4))],
    "convolution": [("convolution 1 s IR", dict(impulse_response=_decaying_noise_ir(SAMPLE_RATE)))],
    "cabinet": [
        ("cabinet parametric", dict(mode="parametric")),
        ("cabinet ir 4096 taps", dict(mode="ir", impulse_response=_decaying_noise_ir(4096))),
    ],
    "tonestack": [("tonestack bassman", dict(model="bassman"))],
}


@dataclass
class Row:
    """One line of the table (times in milliseconds; ``None`` where a figure does not apply)."""

    unit: str  # row label
    name: str  # registry name
    category: str
    peer: str
    peer_kind: str  # "twin", "same job", "same size", "similar", "none"
    peer_ms: float | None
    dspfx_fwd_ms: float | None
    ratio: float | None
    fwd_bwd_ms: float | None
    fwd_bwd_over_fwd: float | None
    realtime_x: float | None
    esr_vs_peer: float | None
    grads_finite: bool | None
    error: str | None


# --- peers ------------------------------------------------------------------------------------


Peer = tuple[str, str, Callable[[np.ndarray], np.ndarray]]  # (label, kind, render (1, n) float32 -> output)


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().double().numpy()


def _knob(unit: dspfx.Unit, name: str) -> float:
    return float(unit.knob_value(name).detach())


def _sos(sections: list[tuple[torch.Tensor, torch.Tensor]]) -> np.ndarray:
    rows = []
    for b, a in sections:
        b, a = _np(b).reshape(-1), _np(a).reshape(-1)
        rows.append(np.concatenate([b / a[0], a / a[0]]))
    return np.stack(rows)


def _svf_biquad(g: float, k: float, m0: float, m1: float, m2: float) -> tuple[np.ndarray, np.ndarray]:
    """(b, a) of the TPT SVF ``y = m0 v0 + m1 v1 + m2 v2``: the bilinear transform (s = (z-1)/(g(z+1)))
    of ``H(s) = (m0 s^2 + (m0 k + m1) s + m0 + m2) / (s^2 + k s + 1)``."""
    n2, n1, n0 = m0, m0 * k + m1, m0 + m2  # numerator coefficients of s^2, s, 1

    def bilinear(c2: float, c1: float, c0: float) -> np.ndarray:
        # c2 (1 - z^-1)^2 + c1 g (1 - z^-2) + c0 g^2 (1 + z^-1)^2
        return np.array(
            [c2 + c1 * g + c0 * g * g, -2 * c2 + 2 * c0 * g * g, c2 - c1 * g + c0 * g * g], dtype=np.float64
        )

    b, a = bilinear(n2, n1, n0), bilinear(1.0, k, 1.0)
    return b / a[0], a / a[0]


def _pedalboard_like(cls: Any, unit: dspfx.Unit, rename: dict[str, str] | None = None) -> Any:
    """A pedalboard plugin given the unit's knob values wherever a parameter has the same name
    (or the name in ``rename``); plugin defaults otherwise, or entirely if a value is refused."""
    rename = rename or {}
    kwargs = {}
    for knob in unit.knob_specs:
        pname = rename.get(knob, knob)
        if hasattr(cls, pname):
            kwargs[pname] = _knob(unit, knob)
    try:
        return cls(**kwargs)
    except Exception:
        return cls()


def _pb_render(plugin: Any) -> Callable[[np.ndarray], np.ndarray]:
    return lambda x: plugin(x, float(SAMPLE_RATE))  # reset=True: every call starts fresh


def find_peer(name: str, unit: dspfx.Unit, n: int) -> Peer | None:
    """The closest peer of a unit (see the module docstring), or None."""
    to_pedalboard = getattr(unit, "to_pedalboard", None)
    if callable(to_pedalboard):
        try:
            plugin = to_pedalboard()
        except Exception:  # no twin for this unit (or for its options)
            plugin = None
        if plugin is not None:
            return f"pedalboard {type(plugin).__name__} (twin)", "twin", _pb_render(plugin)
    mode = getattr(unit, "mode", None)
    sig = scipy.signal
    if name in ("biquad", "one_pole", "tonestack") and hasattr(unit, "coefficients"):
        b, a = (_np(c).reshape(-1) for c in unit.coefficients())
        order = len(a) - 1
        return f"scipy lfilter (order {order})", "same job", lambda x: sig.lfilter(b, a, x, axis=-1)
    if name == "svf":
        b, a = _svf_biquad(*(float(c.detach()) for c in unit.coefficients()))
        return "scipy lfilter (equivalent biquad)", "same job", lambda x: sig.lfilter(b, a, x, axis=-1)
    if name == "parametric_eq" or (name == "cabinet" and mode == "parametric"):
        sos = _sos(unit.sections())
        return f"scipy sosfilt ({len(sos)} sections)", "same job", lambda x: sig.sosfilt(sos, x, axis=-1)
    if name == "fir":
        h = _np(unit.impulse_response()).reshape(-1)
        return f"scipy oaconvolve ({len(h)} taps)", "same job", lambda x: sig.oaconvolve(x, h[None], axes=-1)[:, :n]
    if name in ("convolution", "cabinet") and hasattr(unit, "effective_impulse_response"):
        h = _np(unit.effective_impulse_response())[:1]
        return (
            f"scipy fftconvolve ({h.shape[-1]} taps)",
            "same job",
            lambda x: sig.fftconvolve(x, h, axes=-1)[:, :n],
        )
    if name == "trim":
        scale, dc = _knob(unit, "scale"), _knob(unit, "dc")
        return "numpy scale * x + dc", "same job", lambda x: x * scale + dc
    if name == "static_nonlinearity" or name == "clipping":
        if getattr(unit, "curve", None) == "hard":
            return "numpy clip (same size)", "same size", lambda x: np.clip(x * 2.0, -1.0, 1.0)
        return "numpy tanh (same size)", "same size", lambda x: np.tanh(x * 2.0)
    if name in ("expander", "noise_gate"):
        return "pedalboard NoiseGate", "similar", _pb_render(_pedalboard_like(pedalboard.NoiseGate, unit))
    if name in ("fdn_reverb", "noise_reverb", "reverb"):
        return "pedalboard Reverb", "similar", _pb_render(pedalboard.Reverb())
    if name in ("flanger", "vibrato", "chorus"):
        plugin = _pedalboard_like(pedalboard.Chorus, unit)
        return "pedalboard Chorus", "similar", _pb_render(plugin)
    if name == "ladder":
        return "pedalboard LadderFilter", "similar", _pb_render(_pedalboard_like(pedalboard.LadderFilter, unit))
    if name == "phaser":
        return "pedalboard Phaser", "similar", _pb_render(_pedalboard_like(pedalboard.Phaser, unit))
    if name == "delay":
        return "pedalboard Delay", "similar", _pb_render(pedalboard.Delay())
    if name == "wavenet":
        try:
            from nam.models import init_from_nam
        except ImportError:  # neural-amp-modeler not installed: no peer
            return None
        from dspfx.export.nam import nam_dict

        model = init_from_nam(nam_dict(unit)).eval()  # NAM's own WaveNet, the same weights

        def render_nam(x: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return model(torch.from_numpy(x).float()).numpy()

        return "NAM WaveNet (neural-amp-modeler, same weights)", "same job", render_nam
    return None


# --- the run ----------------------------------------------------------------------------------


def cases(only: str | None) -> list[tuple[str, str, str, dict[str, Any]]]:
    """(row label, registry name, category, constructor kwargs) for every registered effect / amp."""
    out = []
    for category in CATEGORIES:
        for entry in dspfx.units(category=category):
            name = entry["name"]
            if only is not None and name != only:
                continue
            for label, kwargs in OVERRIDES.get(name, [(name, {})]):
                out.append((label, name, category, kwargs))
    return out


def _error(exc: BaseException) -> str:
    msg = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {msg}"[:200]


def run(args: argparse.Namespace) -> list[Row]:
    sync = lambda: None  # noqa: E731  (CPU)
    x = white_noise(args.seconds, SAMPLE_RATE, channels=1, seed=0, level_db=-12.0, dtype=torch.float32)
    x_np = np.ascontiguousarray(x[0].numpy())  # (channels, samples)
    n = x.shape[-1]
    rows: list[Row] = []
    for label, name, category, kwargs in cases(args.only):
        row = Row(label, name, category, "none", "none", None, None, None, None, None, None, None, None, None)
        rows.append(row)
        if args.verbose:
            print(f"  {label} ...", file=sys.stderr, flush=True)
        try:
            unit = dspfx.make(name, sample_rate=SAMPLE_RATE, **kwargs)
        except Exception as exc:
            row.error = "construction: " + _error(exc)
            continue
        try:
            fwd_s, fwd_bwd_s, y, finite = time_dspfx(unit, x, {}, args.repeats, sync)
        except Exception as exc:
            row.error = "render: " + _error(exc)
            continue
        row.dspfx_fwd_ms = fwd_s * 1e3
        row.fwd_bwd_ms = fwd_bwd_s * 1e3
        row.fwd_bwd_over_fwd = fwd_bwd_s / fwd_s
        row.realtime_x = args.seconds / fwd_s
        row.grads_finite = finite
        try:
            peer = find_peer(name, unit, n)
            if peer is None:
                continue
            row.peer, row.peer_kind, render = peer
            out: dict[str, np.ndarray] = {}

            def render_peer(render: Callable = render, out: dict = out) -> None:
                out["y"] = render(x_np)

            def forward(unit: dspfx.Unit = unit) -> None:
                with torch.no_grad():
                    unit(x)

            # the ratio is timed interleaved (peer, dspfx, peer, ...): both see the same machine load
            peer_s, fwd_s = best_of_interleaved([render_peer, forward], args.repeats, sync)
            row.peer_ms = peer_s * 1e3
            row.dspfx_fwd_ms = min(row.dspfx_fwd_ms, fwd_s * 1e3)
            row.realtime_x = args.seconds / (row.dspfx_fwd_ms / 1e3)
            row.ratio = row.dspfx_fwd_ms / row.peer_ms
            if row.peer_kind in ("twin", "same job"):
                y_ref = np.asarray(out["y"], dtype=np.float64).reshape(1, 1, -1)[..., :n]
                y_dsp = y.detach().double()[:, :1]
                if y_ref.shape[-1] == y_dsp.shape[-1]:
                    row.esr_vs_peer = float(esr(y_dsp, torch.from_numpy(y_ref)))
        except Exception as exc:
            row.error = f"peer {row.peer}: " + _error(exc)
    return rows


# --- reporting --------------------------------------------------------------------------------


NOTES = [
    "ratio = dspfx forward / peer (below 1: dspfx is faster); x real time = audio seconds / dspfx forward time",
    "dspfx forward runs under torch.no_grad(); fwd+bwd = y = unit(x); y.square().mean().backward() with every "
    "knob and the input requiring grad, timed together",
    "peer kinds: (twin) the unit's pedalboard twin, same job; scipy / numpy peers marked 'same job' filter with "
    "the unit's own coefficients or taps (float64 coefficients: scipy renders in float64); '(same size)' numpy "
    "curves do work of the same size, not the same curve; the rest (pedalboard Chorus / Reverb / NoiseGate for "
    "units without a twin) are the closest pedalboard effect, a similar but not the same job",
    "ESR = sum((dspfx - peer)^2) / sum(peer^2), shown for twins and same-job peers only (a check that both did "
    "the same work)",
]

COLUMNS = [
    "unit",
    "peer",
    "peer ms",
    "dspfx fwd ms",
    "ratio (dspfx/peer)",
    "fwd+bwd ms",
    "fwd+bwd / fwd",
    "x real time",
    "ESR vs peer",
]


def _ms(v: float | None) -> str:
    if v is None:
        return "—"
    return f"{v:.0f}" if v >= 100 else (f"{v:.1f}" if v >= 10 else f"{v:.2f}")


def cells(row: Row) -> list[str]:
    if row.error is not None and row.dspfx_fwd_ms is None:
        return [row.unit, f"ERROR {row.error}"] + ["—"] * (len(COLUMNS) - 2)
    peer = row.peer if row.error is None else f"{row.peer} (ERROR {row.error})"
    fb = "—" if row.fwd_bwd_over_fwd is None else f"{row.fwd_bwd_over_fwd:.2f}"
    if row.grads_finite is False:
        fb += " (grad NOT finite)"
    return [
        row.unit,
        peer,
        _ms(row.peer_ms),
        _ms(row.dspfx_fwd_ms),
        "" if row.ratio is None else f"{row.ratio:.2f}",
        _ms(row.fwd_bwd_ms),
        fb,
        "—" if row.realtime_x is None else f"{row.realtime_x:.0f}x",
        "—" if row.esr_vs_peer is None else f"{row.esr_vs_peer:.1e}",
    ]


def text_table(rows: list[Row]) -> str:
    table = [COLUMNS] + [cells(r) for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]

    def fmt(line: list[str]) -> str:
        return "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths))).rstrip()

    return "\n".join([fmt(COLUMNS), "  ".join("-" * w for w in widths)] + [fmt(c) for c in table[1:]])


def markdown_table(rows: list[Row]) -> str:
    out = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join([":---", ":---"] + ["---:"] * (len(COLUMNS) - 2)) + "|"]
    out += ["| " + " | ".join(c.replace("|", "\\|") for c in cells(r)) + " |" for r in rows]
    return "\n".join(out)


def report(info: dict[str, Any], rows: list[Row], markdown: bool, elapsed_s: float) -> str:
    notes = list(NOTES)
    if info.get("import_failures"):
        notes.append("modules that failed to import (their units are missing): " + "; ".join(info["import_failures"]))
    table = markdown_table(rows) if markdown else text_table(rows)
    return compose_report(header(info), table, notes, markdown, elapsed_s)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Render time of every dspfx effect and amp unit against its closest peer, in the same run.",
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the test signal in seconds (10)")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per figure; the best is kept (5)")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch.set_num_threads (1: pedalboard renders single-threaded)"
    )
    parser.add_argument("--only", metavar="NAME", help="benchmark only the unit registered under NAME")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table instead of plain text")
    parser.add_argument("--json", metavar="PATH", help="also write the machine info and rows as JSON to PATH")
    parser.add_argument("--verbose", action="store_true", help="print progress to stderr")
    args = parser.parse_args(argv)
    check_run_args(parser, args)
    args.device = "cpu"  # machine_info (benchmarks/units.py) reads it; peers render on the CPU
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    failures = _import_all_modules()
    if args.only is not None:
        known = [u["name"] for c in CATEGORIES for u in dspfx.units(category=c)]
        if args.only not in known:
            print(f"--only: no effect or amp unit named {args.only!r}; known: {', '.join(known)}", file=sys.stderr)
            return 2
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    info = machine_info(args, torch.device("cpu"))
    info["scipy"] = scipy.__version__
    info["import_failures"] = failures
    rows = run(args)
    elapsed = time.perf_counter() - start
    print(report(info, rows, args.markdown, elapsed), end="")
    if args.json:
        payload = {"info": info, "notes": NOTES, "whole_run_s": elapsed, "rows": [asdict(r) for r in rows]}
        Path(args.json).write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
