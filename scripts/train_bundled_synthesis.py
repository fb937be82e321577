"""Train the synthesis generators of the bundled instruments (dspfx/models/synthesis/NAME.*).

Each is trained on the instrument's MIDI/audio pairs (the phrases ``scripts/train_bundled_model.py``
renders with MuseScore General: ``WORK/train_audio``, held out ``WORK/valid_audio``, with
``WORK`` its ``--work`` folder, default ``/tmp/dspfx-NAME-run``):
:func:`dspfx.ddsp.synthesis.training_frames` measures each recording's loudness, its pitch's
slow deviation from the notes and the controls it played; :func:`dspfx.ddsp.synthesis.train_synthesis`
fits the generator on one thread within ``--max-seconds``. Writes ``NAME.safetensors`` and
``NAME.json`` (command, steps, seconds, held-out errors against predicting the mean).

    OMP_NUM_THREADS=1 python scripts/train_bundled_synthesis.py [--instruments violin flute ...]
        [--steps 1500] [--max-seconds 400]

Measuring the frames takes about 20 s per instrument (12 minutes of music), training about 7
minutes (1000 steps) on one thread.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dspfx.ddsp.soundfont import INSTRUMENTS  # noqa: E402
from dspfx.ddsp.synthesis import SYNTHESIS_DIR, train_synthesis, training_frames  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--instruments", nargs="*", default=["violin", "flute", "trumpet", "tenor_sax"], choices=sorted(INSTRUMENTS))
    p.add_argument("--work", default="/tmp/dspfx-{name}-run", help="each instrument's data folder ({name} is replaced)")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--max-seconds", type=float, default=400.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(SYNTHESIS_DIR))
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in args.instruments:
        work = Path(args.work.format(name=name))
        train, valid = training_frames(work / "train_audio"), training_frames(work / "valid_audio")
        result = train_synthesis(train, valid, steps=args.steps, max_seconds=args.max_seconds, seed=args.seed)
        result.generator.save(out / f"{name}.safetensors")
        info = {
            "name": name,
            "command": "OMP_NUM_THREADS=1 python scripts/train_bundled_synthesis.py "
                       + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])),
            "train_phrases": len(train), "valid_phrases": len(valid), "steps": result.steps,
            "seconds": round(result.seconds, 1), "device": "cpu, 1 thread",
            "heldout_loudness_l1_db": round(result.loudness_l1_db, 3),
            "heldout_deviation_l1_semitones": round(result.deviation_l1_semitones, 4),
            "mean_baseline": {"loudness_l1_db": round(result.mean_baseline[0], 3),
                              "deviation_l1_semitones": round(result.mean_baseline[1], 4)},
            "parameters": sum(p.numel() for p in result.generator.parameters()),
        }
        (out / f"{name}.json").write_text(json.dumps(info, indent=1) + "\n")
        print(json.dumps(info), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
