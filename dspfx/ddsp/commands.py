"""The DDSP instrument commands of ``dspfx``: prepare, train, transfer, instruments, play,
train-midi.

    dspfx prepare AUDIO_DIR DATA [--sample-rate 16000] [--frame-rate 250]
    dspfx train DATA --out RUN [--steps N] [--preset tiny|full] [--minutes M] ...   (torchrun works too)
    dspfx transfer MODEL IN OUT [--octave-shift auto|N] [--autotune A] ...   (MODEL: a file or
                                                        a bundled name, e.g. violin)
    dspfx instruments [--json | --markdown]
    dspfx play INSTRUMENT IN.mid OUT.wav [--track N] [--volume DB] [--vibrato ST] [--brightness H] [--attack DB]
                                         [--write-controls F.json] [--controls F.json] [--plot F.png] ...
    dspfx train-midi DATA --out RUN [--minutes M] [--generators expression synthesis]

Registered on the main parser by :func:`add_commands`; nothing heavy is imported until a command
runs (the parser of ``dspfx units`` pays for no feature code).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

__all__ = ["add_commands"]


def _seconds(minutes: float | None) -> float | None:
    from dspfx.cli import _seconds as seconds

    return seconds(minutes)


def _cmd_prepare(args: argparse.Namespace) -> int:
    from dspfx.ddsp.data import prepare

    summary = prepare(
        args.audio_dir, args.data, sample_rate=args.sample_rate, frame_rate=args.frame_rate,
        window_s=args.window_s, hop_s=args.hop_s, pitch_method=args.pitch_method,
        progress=not args.quiet, skip_unreadable=args.skip_unreadable, overwrite=args.overwrite,
    )
    print(summary)
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from dspfx.ddsp.trainer import train

    result = train(
        args.data, args.out, steps=args.steps, batch_size=args.batch_size, lr=args.lr, decay=args.decay,
        grad_clip=args.grad_clip, preset=args.preset, checkpoint_every=args.checkpoint_every,
        resume=not args.no_resume, progress=not args.quiet, device=args.device, reverb_s=args.reverb_s,
        weights_lr=args.weights_lr, max_seconds=_seconds(args.minutes), seed=args.seed,
    )
    import torch

    rank = torch.distributed.get_rank() if torch.distributed.is_available() and torch.distributed.is_initialized() else 0
    metrics = ", ".join(f"{k} {v:.4g}" for k, v in result.metrics.items() if isinstance(v, (int, float)) and k != "step")
    print(f"rank {rank}: trained to step {result.step}, last loss {result.history[-1]:.4g}" if result.history
          else f"rank {rank}: nothing to train (already at step {result.step})")
    if result.world_size > 1:
        print(f"rank {rank}: weights agree on all {result.world_size} ranks")
    if rank == 0:
        if metrics:
            print(f"validation: {metrics}")
        print(f"wrote {result.out_dir}/model.safetensors")
    return 0


def _cmd_transfer(args: argparse.Namespace) -> int:
    from dspfx.ddsp.transfer import load_model
    from dspfx.ddsp.transfer_file import transfer_file

    octave: int | str = "auto"
    if args.octave_shift != "auto":
        try:
            octave = int(args.octave_shift)
        except ValueError:
            raise ValueError(f"--octave-shift takes 'auto' or a whole number of octaves, got {args.octave_shift!r}") from None
    model = load_model(args.model)
    stats = None
    if args.stats:
        from dspfx.ddsp.data import read_stats

        stats = read_stats(args.stats)
    out = transfer_file(
        model, args.input, args.output, chunk_s=args.chunk_s, progress=not args.quiet, threshold=args.threshold,
        octave_shift=octave, quiet_db=args.quiet_db, autotune=args.autotune, pitch_shift_octaves=args.pitch_shift,
        loudness_shift_db=args.loudness_shift, stats=stats, pitch_method=args.pitch_method,
    )
    print(f"wrote {out.output} ({out.seconds:.2f} s at {out.sample_rate} Hz, octave shift {out.octave_shift:+d})")
    return 0


def _cmd_play(args: argparse.Namespace) -> int:
    from dspfx.ddsp.play import play
    from dspfx.io import output_format, write_audio

    output_format(args.output)  # a format soundfile writes, checked before the work
    if not Path(args.output).resolve().parent.is_dir():
        raise FileNotFoundError(f"output folder {str(Path(args.output).resolve().parent)!r} does not exist")
    controls = {name: value for name, value in (
        ("volume", args.volume), ("volume_fluctuation", args.volume_fluctuation),
        ("volume_peak_position", args.peak_position), ("vibrato", args.vibrato), ("brightness", args.brightness),
        ("attack_noise", args.attack)) if value is not None}
    expression: Any = "auto"
    if args.expression:
        from dspfx.ddsp.generators import ExpressionGenerator

        expression = None if args.expression == "none" else ExpressionGenerator.load(args.expression)
    synthesis: Any = None if args.frames == "rules" else "auto"
    if args.synthesis:
        from dspfx.ddsp.synthesis import SynthesisGenerator

        synthesis = SynthesisGenerator.load(args.synthesis)
    elif args.frames == "learned":
        from dspfx.ddsp.synthesis import bundled_synthesis

        synthesis = bundled_synthesis(args.instrument)
        if synthesis is None:
            raise ValueError(f"--frames learned: {args.instrument!r} has no bundled synthesis generator; give one "
                             "with --synthesis FILE (dspfx train-midi writes it)")
    if args.write_controls:
        wrote = Path(args.write_controls)
        if wrote.suffix.lower() != ".json" or not wrote.resolve().parent.is_dir():
            raise ValueError(f"--write-controls {args.write_controls!r}: a .json file in an existing folder")
    if args.plot:
        from dspfx.plot.performance import check_image_path

        check_image_path(args.plot)
    line: Any = args.midi
    if args.controls or args.write_controls or args.plot:
        from dspfx.ddsp.play import performance

        # the track read once (and moved into range once): the file, the render and the written
        # controls all see these notes
        line, planned = performance(args.midi, args.instrument, track=args.track, expression=expression)
    if args.controls:
        import numpy as np

        from dspfx.ddsp.controls_file import read_controls

        edited = read_controls(args.controls, line)
        for name, values in edited.items():  # a value the generator chose anyway is not an edit: it stays a suggestion
            if name in planned:
                values[np.isclose(values, planned[name], rtol=0.0, atol=1e-5)] = np.nan
        controls = {**edited, **controls}  # the flags win over the file
    audio, rate = play(line, args.instrument, controls=controls, track=args.track, expression=expression,
                       synthesis=synthesis)
    write_audio(args.output, audio.reshape(1, -1), rate)
    print(f"wrote {args.output} ({audio.numel() / rate:.2f} s at {rate} Hz)")
    if args.write_controls or args.plot:
        _, played = performance(line, args.instrument, controls=controls, expression=expression)
    if args.write_controls:
        from dspfx.ddsp.controls_file import write_controls

        write_controls(args.write_controls, line, played, instrument=str(args.instrument))
        print(f"wrote {args.write_controls} (the controls of {len(line)} notes; edit and play with --controls)")
    if args.plot:
        from dspfx.plot.performance import performance_report

        performance_report(args.plot, audio, rate, line, played, title=f"{args.instrument}: {Path(args.midi).name}")
        print(f"wrote {args.plot} (the notes, and each note's controls as played and as heard)")
    return 0


#: Share of ``dspfx train-midi --minutes`` the expression generator gets (it converges in seconds;
#: the synthesis generator, over frames, takes the rest).
EXPRESSION_SHARE = 0.1


def _cmd_train_midi(args: argparse.Namespace) -> int:
    import json
    import time

    import numpy as np

    from dspfx.cli import _output_folder
    from dspfx.ddsp.generators import midi_audio_pairs, train_expression, training_pairs
    from dspfx.ddsp.synthesis import train_synthesis, training_frames
    from dspfx.io import atomic_path

    out = _output_folder(args.out)
    files = midi_audio_pairs(args.data)
    if len(files) < 2:
        raise ValueError(f"{args.data!r} holds {len(files)} MIDI/audio pair (NNNN.mid beside NNNN.wav); "
                         "need at least 2 (one held out)")
    if args.minutes is not None and args.minutes <= 0:
        raise ValueError(f"--minutes must be positive, got {args.minutes}")
    order = np.random.default_rng(args.seed).permutation(len(files))
    n_valid = min(len(files) - 1, max(1, int(round(args.valid_fraction * len(files)))))
    valid, train = [files[i] for i in order[:n_valid]], [files[i] for i in order[n_valid:]]
    budget = None if args.minutes is None else 60.0 * args.minutes
    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    written = []

    def write(name: str, generator: Any, info: dict[str, Any]) -> None:
        generator.save(out / f"{name}.safetensors")
        with atomic_path(out / f"{name}.json") as tmp:
            tmp.write_text(json.dumps({"pairs": len(files), "held_out": n_valid, **info}, indent=1) + "\n")
        written.append(str(out / f"{name}.safetensors"))

    if "expression" in args.generators:
        print(f"measuring the note controls of {len(files)} pairs ...", flush=True)
        pairs_train, pairs_valid = training_pairs(train), training_pairs(valid)
        share = None if budget is None else EXPRESSION_SHARE * budget if "synthesis" in args.generators else budget
        e = train_expression(pairs_train, pairs_valid, steps=args.steps, max_seconds=share, seed=args.seed,
                             progress=not args.quiet)
        write("expression", e.generator, {
            "steps": e.steps, "seconds": round(e.seconds, 1),
            "held_out_pearson_r": {k: round(v, 3) for k, v in e.pearson_r.items()},
            "held_out_mse": round(e.mse, 4), "mean_baseline_mse": round(e.mean_baseline_mse, 4)})
        print(f"expression generator: {e.steps} steps in {e.seconds:.0f} s; held-out r: "
              + ", ".join(f"{k} {v:.2f}" for k, v in e.pearson_r.items()), flush=True)
    if "synthesis" in args.generators:
        print(f"measuring the frames of {len(files)} pairs ...", flush=True)
        frames_train, frames_valid = training_frames(train), training_frames(valid)
        left = None if budget is None else max(1.0, budget - (time.perf_counter() - t0))
        r = train_synthesis(frames_train, frames_valid, steps=args.synthesis_steps, max_seconds=left, seed=args.seed,
                            progress=not args.quiet)
        write("synthesis", r.generator, {
            "steps": r.steps, "seconds": round(r.seconds, 1),
            "heldout_loudness_l1_db": round(r.loudness_l1_db, 3),
            "heldout_deviation_l1_semitones": round(r.deviation_l1_semitones, 4),
            "mean_baseline": {"loudness_l1_db": round(r.mean_baseline[0], 3),
                              "deviation_l1_semitones": round(r.mean_baseline[1], 4)}})
        print(f"synthesis generator: {r.steps} steps in {r.seconds:.0f} s; held-out loudness L1 "
              f"{r.loudness_l1_db:.2f} dB (the mean: {r.mean_baseline[0]:.2f}), pitch deviation L1 "
              f"{r.deviation_l1_semitones:.3f} st (the mean: {r.mean_baseline[1]:.3f})", flush=True)
    print("wrote " + ", ".join(written))
    flags = {"expression": "--expression", "synthesis": "--synthesis"}
    print("play with them: dspfx play INSTRUMENT IN.mid OUT.wav "
          + " ".join(f"{flags[n]} {out / f'{n}.safetensors'}" for n in ("expression", "synthesis") if n in args.generators))
    return 0


def _bundled_names() -> str:
    from dspfx.ddsp.transfer import bundled_models

    return ", ".join(bundled_models()) or "none installed"


def _bundled_help() -> str:
    from dspfx.ddsp.transfer import bundled_models

    models = bundled_models()
    if not models:
        return "No bundled models are installed."
    lines = [f"Bundled models (use the name as MODEL): {', '.join(models)}."]
    for name, info in models.items():
        if info.get("instrument"):
            lines.append(f"{name}: {info.get('preset', '?')} model of {info['instrument']}.")
    return " ".join(lines)


_NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


def note_name(midi: int) -> str:
    """Scientific pitch name of a MIDI note (60 -> C4)."""
    return f"{_NOTE_NAMES[int(midi) % 12]}{int(midi) // 12 - 1}"


def instrument_rows() -> list[dict[str, Any]]:
    """One row per bundled instrument: name, playing range, training and validation figures
    (from its JSON description; missing figures are None)."""
    from dspfx.ddsp.transfer import bundled_models

    rows = []
    for name, info in bundled_models().items():
        valid, other = info.get("validation", {}), info.get("validation_other_soundfont", {})
        rng = info.get("range_midi")
        rows.append({
            "name": name,
            "range_midi": rng,
            "range": f"{note_name(rng[0])}-{note_name(rng[1])}" if rng else None,
            "steps": info.get("steps"),
            "train_minutes": info.get("train_minutes"),
            "train_seconds": info.get("train_seconds"),
            "source": info.get("instrument"),
            "loudness_l1_db": valid.get("loudness_l1_db"),
            "f0_l1_semitones": valid.get("f0_l1_semitones"),
            "f0_outlier_ratio": valid.get("f0_outlier_ratio"),
            "spectral_loss": valid.get("mrstft"),
            "other_soundfont_loudness_l1_db": other.get("loudness_l1_db"),
            "other_soundfont_f0_l1_semitones": other.get("f0_l1_semitones"),
            "other_soundfont_spectral_loss": other.get("mrstft"),
        })
    return rows


def instruments_markdown() -> str:
    """The README's table of the bundled instruments (``dspfx instruments --markdown``)."""

    def fmt(v: Any, spec: str) -> str:
        return "-" if v is None else format(v, spec)

    lines = ["| instrument | range | steps | minutes | loudness L1 dB | f0 L1 st | f0 outliers | spectral loss "
             "| other soundfont: loudness L1 dB | f0 L1 st | spectral loss |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in instrument_rows():
        lines.append(
            f"| `{r['name']}` | {r['range'] or '-'} | {fmt(r['steps'], 'd')} | {fmt(r['train_minutes'], '.1f')} | "
            f"{fmt(r['loudness_l1_db'], '.2f')} | {fmt(r['f0_l1_semitones'], '.3f')} | {fmt(r['f0_outlier_ratio'], '.4f')} | "
            f"{fmt(r['spectral_loss'], '.2f')} | {fmt(r['other_soundfont_loudness_l1_db'], '.2f')} | "
            f"{fmt(r['other_soundfont_f0_l1_semitones'], '.3f')} | {fmt(r['other_soundfont_spectral_loss'], '.2f')} |")
    return "\n".join(lines)


def _cmd_instruments(args: argparse.Namespace) -> int:
    import json

    rows = instrument_rows()
    if args.markdown:
        print(instruments_markdown())
        return 0
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    if not rows:
        print("no bundled instruments installed")
        return 0

    def fmt(v: Any, spec: str) -> str:
        return "-" if v is None else format(v, spec)

    print(f"{'name':<11} {'range':<8} {'steps':>6} {'minutes':>7} {'loudness L1 dB':>14} {'f0 L1 st':>9} "
          f"{'spectral':>8} {'other sf':>8}")
    for r in rows:
        print(f"{r['name']:<11} {r['range'] or '-':<8} {fmt(r['steps'], 'd'):>6} {fmt(r['train_minutes'], '.1f'):>7} "
              f"{fmt(r['loudness_l1_db'], '.2f'):>14} {fmt(r['f0_l1_semitones'], '.3f'):>9} "
              f"{fmt(r['spectral_loss'], '.2f'):>8} {fmt(r['other_soundfont_spectral_loss'], '.2f'):>8}")
    print("figures: held-out phrases of the training soundfont, and the same phrases played by another "
          "soundfont ('other sf'); spectral = DDSP's multi-scale spectral loss")
    return 0


def add_commands(sub: Any) -> None:
    """Add the DDSP subcommands to the ``dspfx`` parser's subparsers ``sub``."""
    p = sub.add_parser("prepare", help="DDSP dataset: features and windows of a folder of audio")
    p.add_argument("audio_dir", help="folder of wav/flac/ogg/mp3 files (searched recursively)")
    p.add_argument("data", help="output folder (safetensors shards, manifest.json, stats.json); re-running resumes")
    p.add_argument("--sample-rate", type=int, default=16000)
    p.add_argument("--frame-rate", type=float, default=250.0)
    p.add_argument("--window-s", type=float, default=4.0)
    p.add_argument("--hop-s", type=float, default=1.0)
    p.add_argument("--pitch-method", default="yin", choices=["yin", "pyin", "crepe"])
    p.add_argument("--skip-unreadable", action="store_true", help="warn and skip files that cannot be read")
    p.add_argument("--overwrite", action="store_true", help="start over when DATA holds other settings")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_prepare)

    p = sub.add_parser("train", help="train a DDSP model on a prepared dataset (works under torchrun)")
    p.add_argument("data", help="a folder made by `dspfx prepare`")
    p.add_argument("--out", required=True, help="run folder: checkpoint, model.safetensors, metrics, samples")
    p.add_argument("--steps", type=int, default=30000)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=3e-4, help="learning rate (of the knobs, and of the weights unless --weights-lr)")
    p.add_argument("--weights-lr", type=float, default=None, help="learning rate of the decoder weights and learned tensors")
    p.add_argument("--decay", type=float, default=0.98, help="learning-rate factor per 10k steps")
    p.add_argument("--grad-clip", type=float, default=3.0)
    p.add_argument("--preset", default="tiny", choices=["tiny", "full"])
    p.add_argument("--reverb-s", type=float, default=1.0)
    p.add_argument("--checkpoint-every", type=int, default=1000)
    p.add_argument("--no-resume", action="store_true", help="start from scratch even if RUN has a checkpoint")
    p.add_argument("--minutes", type=float, default=None, help="wall-clock budget: stop cleanly (validated, checkpointed) after this long")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("transfer", help="timbre transfer: play IN with a trained model's instrument",
                       description="Timbre transfer: play IN with a trained model's instrument. " + _bundled_help())
    p.add_argument("model", help="model.safetensors written by `dspfx train`, or a bundled model name "
                                 f"({_bundled_names()})")
    p.add_argument("input", help="monophonic audio, any rate and length")
    p.add_argument("output", help="output audio file (written atomically, at IN's rate)")
    p.add_argument("--threshold", type=float, default=1.0, help="note detection threshold")
    p.add_argument("--octave-shift", default="auto", help="'auto' (toward the training register) or whole octaves")
    p.add_argument("--quiet-db", type=float, default=20.0, help="how much quieter frames outside notes get")
    p.add_argument("--autotune", type=float, default=0.0, help="0..1 pull toward the nearest semitone")
    p.add_argument("--pitch-shift", type=float, default=0.0, help="octaves, -2..2")
    p.add_argument("--loudness-shift", type=float, default=0.0, help="dB, -20..20")
    p.add_argument("--stats", default=None, help="stats.json of the training set (default: the model's own)")
    p.add_argument("--pitch-method", default="yin", choices=["yin", "pyin", "crepe"])
    p.add_argument("--chunk-s", type=float, default=10.0, help="seconds processed at a time (memory is bounded by it)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_transfer)

    p = sub.add_parser("instruments", help="list the bundled instruments: playing range and validation figures")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--json", action="store_true", help="machine-readable listing")
    g.add_argument("--markdown", action="store_true", help="the README's table")
    p.set_defaults(func=_cmd_instruments)

    p = sub.add_parser("play", help="play a MIDI file's melody with an instrument",
                       description="Play one track of a MIDI file (monophonic; in a chord or an overlap the later "
                                   "note wins) with a bundled instrument or a trained model. " + _bundled_help())
    p.add_argument("instrument", help=f"a bundled instrument ({_bundled_names()}) or a model file")
    p.add_argument("midi", help="a Standard MIDI File (.mid)")
    p.add_argument("output", help="output audio file (written atomically, at the instrument's rate)")
    p.add_argument("--track", type=int, default=None, help="track index (default: the first melodic track)")
    p.add_argument("--volume", type=float, default=None, help="mean loudness of every note, dB (-80..0; default: from velocity)")
    p.add_argument("--volume-fluctuation", type=float, default=None, help="loudness swell within a note, dB std (default 0)")
    p.add_argument("--peak-position", type=float, default=None, help="where a note's swell peaks, 0..1 (default 0.3)")
    p.add_argument("--vibrato", type=float, default=None, help="vibrato extent, semitones (default 0.15)")
    p.add_argument("--brightness", type=float, default=None,
                   help="harmonic centroid of every note, in harmonics (>= 1; default: the instrument's own timbre)")
    p.add_argument("--attack", type=float, default=None,
                   help="noise level of every note's first 40 ms, dB (default: the instrument's own)")
    p.add_argument("--plot", default=None, metavar="FILE.png",
                   help="write a picture of the performance: the spectrogram with the notes, the loudness, and "
                        "each note's controls as played and as measured on the render")
    p.add_argument("--expression", default=None,
                   help="an expression generator file (dspfx train-midi), or 'none' for the plain defaults "
                        "(default: a bundled instrument's own)")
    p.add_argument("--frames", choices=["auto", "learned", "rules"], default="auto",
                   help="frames (loudness, pitch) from a bundled instrument's learned synthesis generator ('learned', "
                        "closer to the recordings) or from the notes by rules ('rules'); 'auto' (default): learned "
                        "where the instrument has a generator, else rules")
    p.add_argument("--write-controls", default=None, metavar="FILE.json",
                   help="also write the notes and the controls each was played with, to edit note by note")
    p.add_argument("--controls", default=None, metavar="FILE.json",
                   help="play the notes with the controls of a file --write-controls wrote (and you edited); "
                        "the flags above win over it")
    p.add_argument("--synthesis", default=None,
                   help="a synthesis generator file (dspfx train-midi) making the frames (implies --frames learned)")
    p.set_defaults(func=_cmd_play)

    p = sub.add_parser("train-midi", help="train the expression and synthesis generators on MIDI/audio pairs",
                       description="Train the two generators dspfx play uses on a folder of aligned pairs, NNNN.mid "
                                   "beside NNNN.wav (as scripts/make_instrument_data.py writes): the expression "
                                   "generator (notes in context -> note controls) and the synthesis generator (notes "
                                   "and controls -> frame loudness and pitch deviation). The same pairs are held out "
                                   "for both.")
    p.add_argument("data", help="folder of MIDI/audio pairs")
    p.add_argument("--out", required=True, help="run folder: expression.* and synthesis.* (safetensors + json)")
    p.add_argument("--generators", nargs="+", choices=["expression", "synthesis"], default=["expression", "synthesis"],
                   help="which to train (default both)")
    p.add_argument("--steps", type=int, default=2000, help="most steps of the expression generator")
    p.add_argument("--synthesis-steps", type=int, default=1500, help="most steps of the synthesis generator")
    p.add_argument("--minutes", type=float, default=None,
                   help=f"wall-clock budget of the training (the expression generator gets {EXPRESSION_SHARE:.0%} "
                        "of it when both train)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--valid-fraction", type=float, default=0.15, help="share of the pairs held out")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_train_midi)
