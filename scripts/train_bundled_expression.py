"""Train the bundled instruments' expression generators (dspfx/models/expression/<name>.*).

Reads the MIDI/audio pairs that scripts/train_bundled_model.py rendered for an instrument
(``WORK/train_audio`` for training, ``WORK/valid_audio`` held out: phrases of other seeds),
measures the note controls each recording played, trains :class:`dspfx.ddsp.generators.ExpressionGenerator`
and writes it with its held-out figures (Pearson r per control against the measured controls,
and the squared error against predicting the training mean).

    OMP_NUM_THREADS=1 python scripts/train_bundled_expression.py --instrument flute --work /tmp/dspfx-flute-run
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

from dspfx.ddsp.generators import GENERATORS_DIR, train_expression, training_pairs  # noqa: E402
from dspfx.ddsp.soundfont import INSTRUMENTS  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--instrument", required=True, choices=sorted(INSTRUMENTS))
    p.add_argument("--work", default=None, help="train_bundled_model.py's work folder (default /tmp/dspfx-<instrument>-run)")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    work = Path(args.work or f"/tmp/dspfx-{args.instrument}-run")
    train, valid = training_pairs(work / "train_audio"), training_pairs(work / "valid_audio")
    result = train_expression(train, valid, steps=args.steps, seed=args.seed)
    GENERATORS_DIR.mkdir(parents=True, exist_ok=True)
    out = result.generator.save(GENERATORS_DIR / f"{args.instrument}.safetensors")
    info = {
        "instrument": args.instrument,
        "command": "OMP_NUM_THREADS=1 python scripts/train_bundled_expression.py "
                   + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])),
        "train_phrases": len(train), "train_notes": int(sum(len(x) for x, _ in train)),
        "valid_phrases": len(valid), "valid_notes": int(sum(len(x) for x, _ in valid)),
        "steps": result.steps, "seconds": round(result.seconds, 1), "device": "cpu, 1 thread",
        "held_out_pearson_r": {k: round(v, 3) for k, v in result.pearson_r.items()},
        "held_out_mse": round(result.mse, 4), "mean_baseline_mse": round(result.mean_baseline_mse, 4),
    }
    out.with_suffix(".json").write_text(json.dumps(info, indent=1) + "\n")
    print(json.dumps(info, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
