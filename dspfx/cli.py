"""The ``dspfx`` command (also ``python -m dspfx``).

    dspfx units [--json | --markdown] [--category effect]
    dspfx render CHAIN IN OUT [--set PATH=VALUE ...]
    dspfx fit CHAIN IN TARGET --out DIR [--steps N] [--lr LR] [--loss mrstft] [--restarts N]
    dspfx compare A B [--input IN] [--plot PNG] [--json]
    dspfx demo --out DIR [--steps N]

A CHAIN is a chain file: a JSON spec (``.json``) or a saved chain (``.safetensors``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["main"]


def _parse_settings(items: list[str]) -> dict[str, float]:
    out = {}
    for item in items:
        path, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"dspfx: --set takes PATH=VALUE (e.g. tone.gain_db=3), got {item!r}")
        try:
            out[path] = float(value)
        except ValueError:
            raise SystemExit(f"dspfx: --set {path}: {value!r} is not a number") from None
    return out


def _cmd_units(args: argparse.Namespace) -> int:
    from dspfx.registry import markdown_table, units

    rows = units(args.category)
    if args.json:
        print(json.dumps(rows, indent=2))
    elif args.markdown:
        print(markdown_table())
    else:
        for row in rows:
            print(f"{row['name']:<12} {row['category']:<10} {row['summary']}")
            for key, k in row["knobs"].items():
                u = f" {k['unit']}" if k["unit"] else ""
                print(f"    {key:<14} {k['default']:>9g}{u:<4} {k['minimum']:g} .. {k['maximum']:g} ({k['scale']})")
            for key, default in row["options"].items():
                if key != "sample_rate":
                    print(f"    option {key} = {default!r}")
    return 0


def _cmd_render(args: argparse.Namespace) -> int:
    import torch

    import dspfx

    unit = dspfx.load(args.chain)
    if args.set:
        unit.set(**_parse_settings(args.set))
    audio, rate = dspfx.read_audio(args.input, sample_rate=unit.sample_rate)
    with torch.no_grad():
        y = unit(audio.unsqueeze(0).to(unit.dtype))
    dspfx.write_audio(args.output, y[0], unit.sample_rate)
    note = f" (resampled from {rate} Hz)" if rate != unit.sample_rate else ""
    print(f"rendered {args.input}{note} through {unit.label} -> {args.output}")
    return 0


def _cmd_fit(args: argparse.Namespace) -> int:
    import torch

    import dspfx
    from dspfx.io import atomic_path
    from dspfx.plot import report
    from dspfx.train.align import align

    unit = dspfx.load(args.chain)
    if args.freeze:
        unit.freeze(*args.freeze)
    x, _ = dspfx.read_audio(args.input, sample_rate=unit.sample_rate)
    target, _ = dspfx.read_audio(args.target, sample_rate=unit.sample_rate)
    n = min(x.shape[-1], target.shape[-1])
    if x.shape[-1] != target.shape[-1]:
        print(f"note: input has {x.shape[-1]} samples, target {target.shape[-1]}; using the first {n}", file=sys.stderr)
    x, target = x[..., :n], target[..., :n]
    result = dspfx.fit(
        unit,
        x,
        target,
        steps=args.steps,
        lr=args.lr,
        loss=args.loss,
        esr_weight=args.esr_weight,
        restarts=args.restarts,
        seed=args.seed,
        align_latency=not args.no_align,
        progress=None if not args.quiet else False,
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    dspfx.save(unit, out / "fitted.safetensors")
    # render the fitted chain on the aligned pair, as the fit saw it
    x_aligned, target_aligned = align(x.unsqueeze(0), target.unsqueeze(0), result.latency_samples)
    with torch.no_grad():
        y = unit(x_aligned.to(unit.dtype))
    dspfx.write_audio(out / "fitted.wav", y[0], unit.sample_rate)
    report(
        out / "report.png",
        target=target_aligned,
        prediction=y,
        sample_rate=unit.sample_rate,
        loss_history=result.loss_history,
        title=f"fit of {args.chain}",
    )
    with atomic_path(out / "fit.json") as tmp:
        Path(tmp).write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    print(result.summary())
    for key, value in result.knobs.items():
        print(f"  {key:<24} {value:.6g}")
    print(f"wrote fitted.safetensors, fitted.wav, report.png, fit.json to {out}/")
    return 0


def _load_processor(path: str) -> Any:
    p = Path(path)
    if p.suffix.lower() in (".vst3", ".component"):
        import pedalboard

        return pedalboard.load_plugin(str(p))
    import dspfx

    return dspfx.load(p)


def _cmd_compare(args: argparse.Namespace) -> int:
    import dspfx

    if args.input is None:
        a, ra = dspfx.read_audio(args.a)
        b, rb = dspfx.read_audio(args.b)
        if ra != rb:
            raise SystemExit(f"dspfx compare: {args.a} is at {ra} Hz but {args.b} is at {rb} Hz")
        n = min(a.shape[-1], b.shape[-1])
        result = dspfx.compare(lambda _: a[..., :n], lambda _: b[..., :n], a[..., :n], ra, plot=args.plot)
    else:
        pa, pb = _load_processor(args.a), _load_processor(args.b)
        rate = next((p.sample_rate for p in (pa, pb) if isinstance(p, dspfx.Unit)), None)
        x, rate = dspfx.read_audio(args.input, sample_rate=rate)
        result = dspfx.compare(pa, pb, x, rate, plot=args.plot)
    metrics = result.metrics()
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        for key, value in metrics.items():
            print(f"{key:<18} {value:.6g}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from dspfx.demo import run_demo

    run_demo(args.out, steps=args.steps, duration_s=args.seconds, seed=args.seed, progress=None if not args.quiet else False)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from dspfx import __version__

    parser = argparse.ArgumentParser(prog="dspfx", description="Differentiable audio units: render, fit, compare.")
    parser.add_argument("--version", action="version", version=f"dspfx {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("units", help="list the registered units and their knobs")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--json", action="store_true", help="machine-readable listing")
    g.add_argument("--markdown", action="store_true", help="the README's unit table")
    p.add_argument("--category", choices=["synth", "effect", "amp", "container"])
    p.set_defaults(func=_cmd_units)

    p = sub.add_parser("render", help="render an audio file through a chain file")
    p.add_argument("chain", help="chain file (.json spec or .safetensors)")
    p.add_argument("input", help="input audio file")
    p.add_argument("output", help="output audio file (written atomically)")
    p.add_argument("--set", action="append", default=[], metavar="PATH=VALUE", help="override a knob, e.g. tone.gain_db=3")
    p.set_defaults(func=_cmd_render)

    p = sub.add_parser("fit", help="fit a chain's knobs so it turns IN into TARGET")
    p.add_argument("chain")
    p.add_argument("input")
    p.add_argument("target")
    p.add_argument("--out", required=True, help="folder for fitted.safetensors, fitted.wav, report.png, fit.json")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--loss", default="mrstft", choices=["mrstft", "esr", "mrstft+esr"])
    p.add_argument("--esr-weight", type=float, default=0.0)
    p.add_argument("--restarts", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--freeze", nargs="*", default=[], metavar="PATH", help="knobs to keep fixed")
    p.add_argument("--no-align", action="store_true", help="do not remove the target's latency")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_fit)

    p = sub.add_parser("compare", help="compare two renders (audio files), or two processors on one input")
    p.add_argument("a", help="audio file, or with --input a chain file / VST3 plugin")
    p.add_argument("b", help="the reference: audio file, or with --input a chain file / VST3 plugin")
    p.add_argument("--input", help="render this audio through A and B, then compare")
    p.add_argument("--plot", help="write a comparison picture (PNG)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_compare)

    p = sub.add_parser("demo", help="fit a chain to a pedalboard render and write a report")
    p.add_argument("--out", default="demo-out")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError, KeyError, FileNotFoundError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"dspfx {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
