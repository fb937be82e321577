"""Speed of `dspfx.play`: notes -> audio through each bundled instrument, x real time on one
thread, beside fluidsynth rendering the same MIDI file (TimGM6mb, the peer a MIDI user has) in
the same run.

    OMP_NUM_THREADS=1 python benchmarks/play.py [--seconds 60] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dspfx.ddsp.play import play  # noqa: E402
from dspfx.ddsp.soundfont import INSTRUMENTS, can_render, random_phrase, render_midi, write_midi  # noqa: E402
from dspfx.ddsp.transfer import bundled_models  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(1)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in (n for n in INSTRUMENTS if n in bundled_models()):
            midi = write_midi(random_phrase(name, 4242, args.seconds), Path(tmp) / f"{name}.mid")
            best, seconds = float("inf"), 0.0
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                audio, rate = play(midi, name)
                best = min(best, time.perf_counter() - t0)
                seconds = audio.numel() / rate
            row = {"audio_s": round(seconds, 1), "dspfx_x_real_time": round(seconds / best, 1)}
            if can_render("timgm6mb"):
                peer = float("inf")
                for _ in range(args.repeats):
                    t0 = time.perf_counter()
                    render_midi(midi, Path(tmp) / "peer.wav", "timgm6mb", 16000)
                    peer = min(peer, time.perf_counter() - t0)
                row["fluidsynth_x_real_time"] = round(seconds / peer, 1)
            else:
                row["fluidsynth"] = "not run: needs fluidsynth and timgm6mb-soundfont"
            rows[name] = row
            print(name, row, flush=True)
    print(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
