"""The ``dspfx`` command (also ``python -m dspfx``).

    dspfx units [--json | --markdown] [--category effect]
    dspfx render CHAIN IN OUT [--set PATH=VALUE ...]
    dspfx fit CHAIN IN TARGET --out DIR [--steps N] [--lr LR] [--loss mrstft] [--restarts N]
              [--segment S] [--batch-size N] [--validation V] [--trim] [--minutes M]
    dspfx compare A B [--input IN] [--plot PNG] [--json]
    dspfx export CHAIN --out DIR [--format faust|lv2] [--name NAME]
    dspfx capture-signal OUT.wav [--sample-rate 48000]
    dspfx capture IN.wav OUT.wav --out DIR [--minutes 5] [--model auto|wavenet|lstm|graybox|hybrid] [--latency N]
    dspfx demo --out DIR [--steps N]
    dspfx prepare AUDIO_DIR DATA [--sample-rate 16000] [--frame-rate 250]
    dspfx train DATA --out RUN [--steps N] [--preset tiny|full] [--minutes M] ...   (torchrun works too)
    dspfx transfer MODEL IN OUT [--octave-shift auto|N] [--autotune A] ...   (MODEL: a file or
                                                        a bundled name, e.g. violin)
    dspfx instruments [--json]

(The DDSP commands, prepare to instruments, are defined in :mod:`dspfx.ddsp.commands`.)

A CHAIN is a chain file: a JSON spec (``.json``) or a saved chain (``.safetensors``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from dspfx.ddsp.commands import add_commands

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


def _seconds(minutes: float | None) -> float | None:
    """--minutes as seconds (checked here, so a bad budget fails before any work)."""
    if minutes is None:
        return None
    if not (minutes > 0 and minutes == minutes and minutes != float("inf")):
        raise ValueError(f"--minutes must be a positive number of minutes, got {minutes!r}")
    return 60.0 * minutes


def _output_folder(path: str) -> Path:
    """An output folder, checked before any work: it may exist (as a folder) or not yet."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {path} exists and is not a folder; give a folder path (it is created if missing)")
    existing = next((p for p in (out, *out.parents) if p.exists()), Path("."))
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"--out {path}: {existing} is not writable; choose a folder you can write to")
    return out


def _cmd_render(args: argparse.Namespace) -> int:
    import torch

    import dspfx

    unit = dspfx.load(args.chain)
    if unit.is_synth:
        raise ValueError(
            f"{args.chain} is a synth ({unit.label}): it makes sound from its controls, not from an input file; "
            "render plays effects, amps and chains of them (play a synth from Python: unit(n_samples=..., **controls))"
        )
    if not Path(args.output).parent.is_dir():
        raise ValueError(f"cannot write {args.output}: its folder does not exist")
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
    import warnings

    import torch

    import dspfx
    from dspfx.io import atomic_path, resample
    from dspfx.plot import fit_report
    from dspfx.fitting.latency import align
    from dspfx.fitting.capture import CaptureWarning, check_capture
    from dspfx.fitting.probes import harmonic_response, transfer_curves

    out = _output_folder(args.out)
    unit = dspfx.load(args.chain)
    if args.freeze:
        unit.freeze(*args.freeze)
    x, rate_x = dspfx.read_audio(args.input)
    target, rate_y = dspfx.read_audio(args.target)
    messages: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CaptureWarning)
        capture = check_capture(x, target, rate_x, rate_y, trim=args.trim, max_latency_ms=None)
        x, target = capture.di[0], capture.target[0]
        if rate_x != unit.sample_rate:
            print(f"note: resampling the pair from {rate_x} Hz to the chain's {unit.sample_rate} Hz", file=sys.stderr)
            x, target = resample(x, rate_x, unit.sample_rate), resample(target, rate_x, unit.sample_rate)
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
            segment_s=args.segment,
            batch_size=args.batch,
            validation=args.validation,
            weights_lr=args.weights_lr,
            max_seconds=_seconds(args.minutes),
        )
    for w in caught:
        if issubclass(w.category, CaptureWarning) and str(w.message) not in messages:
            messages.append(str(w.message))
            print(f"dspfx fit: warning: {w.message}", file=sys.stderr)
    out.mkdir(parents=True, exist_ok=True)
    dspfx.save(unit, out / "fitted.safetensors")
    # render the fitted chain on the aligned pair, as the fit saw it
    x_aligned, target_aligned = align(x.unsqueeze(0), target.unsqueeze(0), result.latency_samples)
    with torch.no_grad():
        y = unit(x_aligned.to(unit.dtype))
    dspfx.write_audio(out / "fitted.wav", y[0], unit.sample_rate)
    heldout = result.heldout_samples
    shown = slice(-heldout, None) if heldout else slice(None)
    extra: dict[str, Any] = {}
    levels, f0 = (-30.0, -20.0, -10.0, 0.0), 220.0
    try:
        harmonics = harmonic_response(unit, f0, levels)
        curves = transfer_curves(unit, (-20.0, -10.0, 0.0))
    except (ValueError, TypeError, RuntimeError) as err:  # e.g. a chain that needs stereo input
        print(f"note: no harmonic response / transfer curves for this chain ({err})", file=sys.stderr)
    else:
        extra = dict(harmonic_levels_db=levels, harmonics_db=harmonics, harmonic_f0_hz=f0,
                     transfer=curves, transfer_levels_db=(-20.0, -10.0, 0.0))
    fit_report(
        out / "report.png",
        target=target_aligned[..., shown],
        prediction=y[..., shown],
        sample_rate=unit.sample_rate,
        loss_history={"train": result.loss_history},
        validation_history=result.validation_history,
        title=f"fit of {args.chain} ({'held-out' if heldout else 'whole pair'})",
        **extra,
    )
    record = result.to_dict()
    record["metrics_on"] = "held-out" if heldout else "whole pair"
    record["sample_rate"] = unit.sample_rate
    record["latency_ms"] = 1000.0 * result.latency_samples / unit.sample_rate
    if "harmonics_db" in extra:
        record["harmonics"] = {"f0_hz": f0, "levels_db": list(levels),
                               "harmonics_db": [[None if v != v else float(v) for v in row] for row in extra["harmonics_db"]]}
    with atomic_path(out / "fit.json") as tmp:
        Path(tmp).write_text(json.dumps(record, indent=2) + "\n")
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


def _cmd_capture(args: argparse.Namespace) -> int:
    import dspfx
    from dspfx.fitting.capture_model import capture

    folder = _output_folder(args.out)
    x, rate_x = dspfx.read_audio(args.input)
    y, rate_y = dspfx.read_audio(args.output)
    if rate_x != rate_y:
        raise ValueError(f"{args.input} is at {rate_x} Hz but {args.output} at {rate_y} Hz; record both at one rate")
    result = capture(x, y, rate_x, model=args.model, size=args.size, max_seconds=_seconds(args.minutes),
                     latency=args.latency, seed=args.seed, progress=None if not args.quiet else False, out=folder)
    for message in result.warnings:
        print(f"dspfx capture: warning: {message}", file=sys.stderr)
    for name, esr in result.candidates.items():
        print(f"auto: {name} reached held-out ESR {esr:.4g}")
    print(f"{result.model_name}: held-out ESR {result.heldout_esr:.4g} ({result.grade}); latency {result.latency_samples} samples "
          f"({result.latency_method}); {result.steps} steps in {result.train_seconds:.0f} s; renders "
          f"{result.realtime_factor:.1f}x real time")
    if result.repeat_esr is not None:
        print(f"the device's two validation returns differ by ESR {result.repeat_esr:.3g}")
    print(f"wrote {', '.join(sorted(p.name for p in folder.iterdir()))} to {folder}/")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    import dspfx
    from dspfx.export.faust import URI_PREFIX, export_plugin, plugin_controls

    out = _output_folder(args.out)
    unit = dspfx.load(args.chain)
    name = args.name or Path(args.chain).stem.replace("-", "_").replace(".", "_")
    written = export_plugin(unit, out, format=args.format, name=name)
    print(f"wrote {written}")
    if args.format == "lv2":
        ports = plugin_controls(written)
        print(f"URI {URI_PREFIX}/{name}; {len(ports)} controls: " + ", ".join(f"{k} ({v})" for k, v in ports.items()))
        print(f"copy {written.name} into an LV2 folder (~/.lv2 or /usr/lib/lv2) and rescan plugins in the DAW")
    return 0


def _cmd_capture_signal(args: argparse.Namespace) -> int:
    from dspfx.fitting.reamp import capture_signal
    from dspfx.io import atomic_path, write_audio

    audio, layout = capture_signal(args.sample_rate)
    out = Path(args.output)
    write_audio(out, audio, layout.sample_rate)
    record = layout.to_dict()
    with atomic_path(out.with_suffix(".json")) as tmp:
        Path(tmp).write_text(json.dumps(record, indent=2) + "\n")
    sr = layout.sample_rate
    print(f"wrote {out} ({layout.length / sr:.1f} s at {sr} Hz) and {out.with_suffix('.json')} (its layout)")
    print(f"  validation {layout.validation[0] / sr:.1f}-{layout.validation[1] / sr:.1f} s, blips at "
          f"{', '.join(f'{b / sr:.1f}' for b in layout.blips)} s, training {layout.training[0] / sr:.1f}-"
          f"{layout.training[1] / sr:.1f} s, validation again {layout.validation_repeat[0] / sr:.1f}-"
          f"{layout.validation_repeat[1] / sr:.1f} s")
    print("  play it through the device (reamp) and record the whole output, starting with the file")
    return 0


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


class _OneLineParser(argparse.ArgumentParser):
    """Usage errors as one line and exit 2, like every other error (``--help`` shows the usage)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from dspfx import __version__

    parser = _OneLineParser(prog="dspfx", description="Differentiable audio units: render, fit, compare.")
    parser.add_argument("--version", action="version", version=f"dspfx {__version__}")
    parser.add_argument("--debug", action="store_true", help="on an error, show the traceback (else one line, exit 2)")
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
    p.add_argument("--segment", type=float, default=None, metavar="SECONDS", help="train on random segments this long")
    p.add_argument("--batch-size", "--batch", dest="batch", type=int, default=1, help="segments per step (with --segment)")
    p.add_argument("--validation", type=float, default=None, metavar="V",
                   help="hold out the end of the pair: a fraction (< 1) or seconds (>= 1); metrics are measured there")
    p.add_argument("--weights-lr", type=float, default=None, help="learning rate of learned IRs/weights (default --lr)")
    p.add_argument("--trim", action="store_true", help="cut input and target to the shorter length instead of failing")
    p.add_argument("--minutes", type=float, default=None, help="wall-clock budget: stop cleanly at the best state after this long")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_fit)

    p = sub.add_parser("capture", help="capture a device (amp, pedal) from what went in and what came out")
    p.add_argument("input", help="what was played into the device (a DI, or the capture-signal file)")
    p.add_argument("output", help="what the device gave back, recorded with it (same rate and length)")
    p.add_argument("--out", required=True, help="folder: model.safetensors, capture.json, report.png (model.nam)")
    p.add_argument("--minutes", type=float, default=5.0, help="training budget (default 5)")
    p.add_argument("--model", default="wavenet", choices=["auto", "wavenet", "lstm", "graybox", "hybrid"],
                   help="auto: the gray-box for a fifth of the budget, then the WaveNet; the better kept")
    p.add_argument("--size", default="standard", choices=["standard", "lite", "feather", "nano"], help="WaveNet size")
    p.add_argument("--latency", type=int, default=None, help="the device's latency in samples, when known")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_capture)

    p = sub.add_parser("capture-signal", help="write the standard reamp signal (and its layout) to play through a device")
    p.add_argument("output", help="audio file to write (.wav, float32; written atomically), its layout beside it as .json")
    p.add_argument("--sample-rate", type=int, default=48000, help="Hz, 16000 .. 192000 (default 48000)")
    p.set_defaults(func=_cmd_capture_signal)

    p = sub.add_parser("export", help="write a chain as a Faust program or build it into an LV2 plugin")
    p.add_argument("chain", help="a .json spec or a .safetensors chain file")
    p.add_argument("--format", default="lv2", choices=["faust", "lv2"], help="lv2 (default) builds with faust2lv2")
    p.add_argument("--out", required=True, help="folder for NAME.dsp (and NAME.lv2)")
    p.add_argument("--name", default=None, help="plugin name, an identifier (default: the chain file's stem)")
    p.set_defaults(func=_cmd_export)

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

    add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print(f"dspfx {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # every error is one line and exit 2; --debug shows the traceback
        if args.debug:
            raise
        print(f"dspfx {args.command}: error: {_one_line(err)}", file=sys.stderr)
        return 2


def _one_line(err: BaseException) -> str:
    """The error's message on one line; errors that are not about the input say what they are."""
    if isinstance(err, KeyError) and err.args:
        message = str(err.args[0])
    elif isinstance(err, OSError) and err.strerror:
        message = f"{err.strerror}: {err.filename}" if err.filename else err.strerror
    elif isinstance(err, MemoryError):
        message = "out of memory (the input or a size asked for is too large for this machine)"
    else:
        message = str(err) or type(err).__name__
    if not isinstance(err, (ValueError, TypeError, KeyError, OSError, FloatingPointError, MemoryError)):
        message = f"{type(err).__name__}: {message}"
    return " ".join(message.split())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
