"""Train a bundled DDSP instrument (violin, flute, trumpet, tenor_sax) shipped in dspfx/models/.

The data are real sampled instruments that no one here made: expressive MIDI phrases
(:mod:`dspfx.ddsp.soundfont`: the whole playing range, legato and detached notes, CC11 swells,
pitch-bend vibrato, rests) played by fluidsynth through Debian's musescore-general-soundfont.
The script renders ``--seconds`` of training phrases (seed ``--seed``) and ``--valid-seconds``
of held-out phrases (seed ``--valid-seed``) with that soundfont, and the same held-out phrases
with another soundfont (``--other-soundfont``, timgm6mb) to show the model generalises to
another recording of the instrument; prepares them (:func:`dspfx.ddsp.data.prepare`); trains
the "tiny" DDSP model with the project's trainer (:func:`dspfx.ddsp.trainer.train`) on CPU
within a wall-time budget (in chunks of ``--chunk`` steps, each resuming from the run's
checkpoint, so an interrupted run restarts where it stopped, and ``--steps`` above the run's
step continues it; the minutes of every invocation add up); validates on both held-out sets
and writes ``dspfx/models/<instrument>.safetensors`` and ``<instrument>.json`` (command, data,
steps, minutes, playing range, validation figures).

    apt-get install fluidsynth musescore-general-soundfont timgm6mb-soundfont
    OMP_NUM_THREADS=1 python scripts/train_bundled_model.py --instrument flute --work /tmp/flute-run

Defaults: 720 s of training music, 120 s held out, 16 kHz, 1 s windows with a 0.5 s hop,
batch 8, Adam 1e-3 (decayed x0.98 every 10k steps, ddsp_pytorch's rate), reverb 0.25 s, at
most 5000 steps or 25 minutes of training. Rendering the phrases takes about a minute,
preparing them (f0 and loudness) two to three. ``--cooldown-from S`` ends the run with a linear
cool-down of the rate from step S to 1% at ``--steps`` (the bundled models: ``--steps 18000
--cooldown-from 15000``, the trumpet ``--steps 16500``, continuing their 15000-step runs).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dspfx.ddsp.data import Dataset, prepare  # noqa: E402
from dspfx.ddsp.model import DDSPModel  # noqa: E402
from dspfx.ddsp.soundfont import INSTRUMENTS, find_soundfont, make_phrases  # noqa: E402
from dspfx.ddsp.trainer import train, validate  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--instrument", required=True, choices=sorted(INSTRUMENTS))
    p.add_argument("--work", default=None, help="folder for audio, datasets and the run (default /tmp/dspfx-<instrument>-run)")
    p.add_argument("--soundfont", default="musescore", help="training soundfont (a name of dspfx.ddsp.soundfont.SOUNDFONTS or a file)")
    p.add_argument("--other-soundfont", default="timgm6mb", help="second soundfont for the generalisation figures")
    p.add_argument("--seconds", type=float, default=720.0, help="training music, seconds")
    p.add_argument("--valid-seconds", type=float, default=120.0, help="held-out music, seconds")
    p.add_argument("--seed", type=int, default=0, help="training phrases' seed (validation uses --valid-seed)")
    p.add_argument("--valid-seed", type=int, default=1)
    p.add_argument("--window-s", type=float, default=1.0)
    p.add_argument("--hop-s", type=float, default=0.5)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--steps", type=int, default=5000, help="most steps")
    p.add_argument("--max-minutes", type=float, default=25.0, help="wall-time budget of the training loop")
    p.add_argument("--chunk", type=int, default=100, help="steps between checkpoints / budget checks")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--decay", type=float, default=0.98, help="the rate is lr * decay ** (step / decay_steps)")
    p.add_argument("--decay-steps", type=int, default=10000)
    p.add_argument("--cooldown-from", type=int, default=None,
                   help="from this step the rate falls linearly to 1%% at --steps (a cool-down; default none)")
    p.add_argument("--reverb-s", type=float, default=0.25)
    p.add_argument("--preset", default="tiny", choices=["tiny", "full"])
    p.add_argument("--out", default=None, help="model file (default dspfx/models/<instrument>.safetensors)")
    args = p.parse_args(argv)
    cooldown = None
    if args.cooldown_from is not None:
        if not 0 <= args.cooldown_from < args.steps:
            p.error(f"--cooldown-from must be in [0, --steps={args.steps}), got {args.cooldown_from}")
        cooldown = (args.cooldown_from, args.steps)
    torch.set_num_threads(1)
    inst = INSTRUMENTS[args.instrument]
    work = Path(args.work or f"/tmp/dspfx-{inst.name}-run")
    t_start = time.perf_counter()

    sets = {"train": (args.soundfont, args.seconds, args.seed), "valid": (args.soundfont, args.valid_seconds, args.valid_seed),
            "valid_other": (args.other_soundfont, args.valid_seconds, args.valid_seed)}
    for name, (font, seconds, seed) in sets.items():
        make_phrases(work / f"{name}_audio", inst.name, seconds, seed=seed, soundfont=font)
        window, hop = (args.window_s, args.hop_s) if name == "train" else (args.window_s, args.window_s)
        prepare(work / f"{name}_audio", work / name, window_s=window, hop_s=hop, progress=False)
    data, valid = work / "train", work / "valid"
    valid_set = Dataset(valid)
    print(f"data ready in {time.perf_counter() - t_start:.0f} s: {len(Dataset(data))} training windows, "
          f"{len(valid_set)} validation windows", flush=True)

    run = work / "run"
    t0 = time.perf_counter()
    step, result = 0, None
    while step < args.steps and (time.perf_counter() - t0) / 60.0 < args.max_minutes:
        target = min(args.steps, step + args.chunk)
        result = train(data, run, steps=target, batch_size=args.batch_size, lr=args.lr, decay=args.decay,
                       decay_steps=args.decay_steps, preset=args.preset, cooldown=cooldown,
                       checkpoint_every=args.chunk, reverb_s=args.reverb_s, valid_data=valid, valid_windows=8,
                       device="cpu", progress=False, seed=args.seed)
        step = result.step
        m = result.metrics
        print(f"step {step}  {(time.perf_counter() - t0) / 60:.1f} min  loss {result.history[-1]:.3f}  "
              f"valid mrstft {m.get('mrstft', float('nan')):.3f}  loudness L1 {m.get('loudness_l1_db', 0):.2f} dB  "
              f"f0 L1 {m.get('f0_l1_semitones', 0):.3f} st", flush=True)
    loop_minutes = (time.perf_counter() - t0) / 60.0
    # the run's model file is written with each checkpoint (the latest one); its step is the
    # last validation's (also after an interrupted run restarted with --max-minutes 0)
    model = DDSPModel.load(run / "model.safetensors")
    step = json.loads((run / "metrics.json").read_text())[-1]["step"]
    # minutes over every invocation on this run folder (a longer run continues the last one)
    log_path = run / "train_minutes.json"
    earlier = json.loads(log_path.read_text()) if log_path.is_file() else []
    log = [*earlier, {"minutes": round(loop_minutes, 2), "steps_to": step}]
    log_path.write_text(json.dumps(log) + "\n")
    train_minutes = sum(x["minutes"] for x in log)
    figures = {}
    for name in ("valid", "valid_other"):
        ds = Dataset(work / name)
        batch = {k: torch.stack([ds[i][k] for i in range(len(ds))]) for k in ("audio", "f0_hz", "confidence", "loudness_db")}
        with torch.no_grad():
            figures[name] = {k: round(v, 4) for k, v in validate(model, batch).items()}
        figures[name]["windows"] = len(ds)
    out = Path(args.out or ROOT / "dspfx" / "models" / f"{inst.name}.safetensors")
    out.parent.mkdir(parents=True, exist_ok=True)
    model.save(out)
    info = {
        "name": out.stem,
        "command": "OMP_NUM_THREADS=1 python scripts/train_bundled_model.py "
                   + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])),
        "preset": args.preset,
        "steps": step,
        "batch_size": args.batch_size,
        "window_s": args.window_s,
        "lr": args.lr,
        "decay": [args.decay, args.decay_steps],
        "cooldown": list(cooldown) if cooldown else None,
        "reverb_s": args.reverb_s,
        "range_midi": [inst.low_midi, inst.high_midi],
        "gm_program": inst.program,
        "soundfont": find_soundfont(args.soundfont).resolve().name,
        "other_soundfont": find_soundfont(args.other_soundfont).resolve().name,
        "train_seconds": args.seconds,
        "train_seed": args.seed,
        "valid_seconds": args.valid_seconds,
        "valid_seed": args.valid_seed,
        "sample_rate": model.sample_rate,
        "frame_rate": model.frame_rate,
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_minutes": round(train_minutes, 1),
        "train_runs": log,
        "device": "cpu, 1 thread",
        "validation": figures["valid"],
        "validation_other_soundfont": figures["valid_other"],
        "instrument": f"{inst.name}, General MIDI program {inst.program} of {find_soundfont(args.soundfont).resolve().name} "
                      "played by fluidsynth (dspfx.ddsp.soundfont)",
    }
    out.with_suffix(".json").write_text(json.dumps(info, indent=1) + "\n")
    print(json.dumps(info, indent=1))
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB) and {out.with_suffix('.json')}; "
          f"total {(time.perf_counter() - t_start) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
