"""Train the bundled "violin" DDSP model shipped in dspfx/models/.

Makes its own data with the bowed-string instrument (:mod:`dspfx.ddsp.instrument`, no
downloads), prepares it (:func:`dspfx.ddsp.data.prepare`), trains the "tiny" DDSP model with the
project's trainer (:func:`dspfx.ddsp.trainer.train`) on CPU within a wall-time budget (the run
is cut into chunks of ``--chunk`` steps; each chunk resumes from the run's checkpoint, so the
run can also be interrupted and restarted), validates on held-out melodies and writes
``dspfx/models/violin.safetensors`` and ``dspfx/models/violin.json`` (command, steps, data
seconds, validation metrics).

    OMP_NUM_THREADS=1 python scripts/train_bundled_model.py --work /tmp/violin-run

Defaults: 240 s of training audio (seed 0) and 24 s of held-out validation audio (seed 7) at
16 kHz, 1 s windows with a 0.5 s hop, batch 8, Adam 1e-3 decayed x0.98 every 10k steps (as
ddsp_pytorch's rate), reverb 0.25 s, at most 3000 steps or 25 minutes.
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
from dspfx.ddsp.instrument import make_dataset  # noqa: E402
from dspfx.ddsp.trainer import train, validate  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", default="/tmp/dspfx-violin-run", help="folder for audio, datasets and the run")
    p.add_argument("--seconds", type=float, default=240.0, help="training audio, seconds")
    p.add_argument("--valid-seconds", type=float, default=24.0, help="held-out validation audio, seconds")
    p.add_argument("--seed", type=int, default=0, help="training melodies' seed (validation uses --valid-seed)")
    p.add_argument("--valid-seed", type=int, default=7)
    p.add_argument("--window-s", type=float, default=1.0)
    p.add_argument("--hop-s", type=float, default=0.5)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--steps", type=int, default=3000, help="most steps")
    p.add_argument("--max-minutes", type=float, default=25.0, help="wall-time budget of the training loop")
    p.add_argument("--chunk", type=int, default=100, help="steps between checkpoints / budget checks")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--reverb-s", type=float, default=0.25)
    p.add_argument("--preset", default="tiny", choices=["tiny", "full"])
    p.add_argument("--out", default=str(ROOT / "dspfx" / "models" / "violin.safetensors"))
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    work = Path(args.work)
    t_start = time.perf_counter()

    audio, valid_audio = work / "audio", work / "valid_audio"
    if not audio.exists():
        make_dataset(audio, args.seconds, seed=args.seed)
    if not valid_audio.exists():
        make_dataset(valid_audio, args.valid_seconds, seed=args.valid_seed, clip_s=args.valid_seconds)
    data, valid = work / "data", work / "valid"
    prepare(audio, data, window_s=args.window_s, hop_s=args.hop_s, progress=False)
    prepare(valid_audio, valid, window_s=args.window_s, hop_s=args.window_s, progress=False)
    valid_set = Dataset(valid)
    print(f"data ready in {time.perf_counter() - t_start:.0f} s: {len(Dataset(data))} training windows, "
          f"{len(valid_set)} validation windows", flush=True)

    run = work / "run"
    t0 = time.perf_counter()
    step, result = 0, None
    while step < args.steps and (time.perf_counter() - t0) / 60.0 < args.max_minutes:
        target = min(args.steps, step + args.chunk)
        result = train(data, run, steps=target, batch_size=args.batch_size, lr=args.lr, preset=args.preset,
                       checkpoint_every=args.chunk, reverb_s=args.reverb_s, valid_data=valid, valid_windows=8,
                       device="cpu", progress=False, seed=args.seed)
        step = result.step
        m = result.metrics
        print(f"step {step}  {(time.perf_counter() - t0) / 60:.1f} min  loss {result.history[-1]:.3f}  "
              f"valid mrstft {m.get('mrstft', float('nan')):.3f}  loudness L1 {m.get('loudness_l1_db', 0):.2f} dB  "
              f"f0 L1 {m.get('f0_l1_semitones', 0):.3f} st", flush=True)
    train_minutes = (time.perf_counter() - t0) / 60.0
    # the run's model file is written with each checkpoint (the latest one); its step is the
    # last validation's (also after an interrupted run restarted with --max-minutes 0)
    model = DDSPModel.load(run / "model.safetensors")
    step = json.loads((run / "metrics.json").read_text())[-1]["step"]
    batch = {k: torch.stack([valid_set[i][k] for i in range(len(valid_set))]) for k in
             ("audio", "f0_hz", "confidence", "loudness_db")}
    metrics = validate(model, batch)
    out = Path(args.out)
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
        "reverb_s": args.reverb_s,
        "train_seconds": args.seconds,
        "train_seed": args.seed,
        "valid_seconds": args.valid_seconds,
        "valid_seed": args.valid_seed,
        "sample_rate": model.sample_rate,
        "frame_rate": model.frame_rate,
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_minutes": round(train_minutes, 1),
        "device": "cpu, 1 thread",
        "validation": {k: round(v, 4) for k, v in metrics.items()},
        "validation_windows": len(valid_set),
        "instrument": "dspfx.ddsp.instrument (bowed string: Helmholtz sawtooth, bow noise, body modes)",
    }
    out.with_suffix(".json").write_text(json.dumps(info, indent=1) + "\n")
    print(json.dumps(info, indent=1))
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB) and {out.with_suffix('.json')}; "
          f"total {(time.perf_counter() - t_start) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
