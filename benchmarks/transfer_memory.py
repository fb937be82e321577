"""Peak memory and speed of `dspfx transfer` on a long file (issue: untrusted input, "a 1-hour
file under 1 GB resident").

Writes a stereo 44.1 kHz WAV of ``--minutes`` of a synthetic melody (the bowed string of
dspfx.ddsp.instrument, repeated; written in blocks, never held whole), then runs ``dspfx transfer
violin IN OUT`` in a child process and reports its peak resident memory (ru_maxrss) and speed,
beside the same for the whole-clip Python call ``dspfx.ddsp.transfer.transfer`` (which holds the
file at its rate in float64) on ``--peer-minutes`` of the same audio, as the peer.

    OMP_NUM_THREADS=1 python benchmarks/transfer_memory.py --minutes 60
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RATE = 44100


def write_long(path: Path, minutes: float) -> None:
    from dspfx.ddsp.instrument import random_melody, render_melody

    clip = render_melody(random_melody(30.0, 11), RATE, 11, seconds=30.0).astype(np.float32)
    total = int(minutes * 60 * RATE)
    with sf.SoundFile(str(path), "w", RATE, 2, subtype="PCM_16") as f:
        done = 0
        while done < total:
            n = min(clip.size, total - done)
            f.write(np.stack([clip[:n], 0.8 * clip[:n]], axis=1))
            done += n


def child(code: str) -> tuple[float, float]:
    """(peak RSS in MB, wall seconds) of a python child running ``code`` (it reports its own
    ru_maxrss at the end, so each measurement is its own process's)."""
    t0 = time.perf_counter()
    code += "\nimport resource; print('MAXRSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    kb = int(proc.stdout.split("MAXRSS")[-1].split()[0])
    return kb / 1024.0, time.perf_counter() - t0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=60.0)
    p.add_argument("--peer-minutes", type=float, default=5.0)
    p.add_argument("--chunk-s", type=float, default=None, help="dspfx transfer --chunk-s (default: its own)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.wav", Path(tmp) / "out.wav"
        rows = {}
        for name, minutes in (("dspfx transfer (chunked)", args.minutes), ("transfer() whole clip", args.peer_minutes)):
            write_long(src, minutes)
            chunk = "" if args.chunk_s is None else f", '--chunk-s', '{args.chunk_s}'"
            if name.startswith("dspfx"):
                code = (f"from dspfx.cli import main; rc = main(['transfer', 'violin', {str(src)!r}, "
                        f"{str(dst)!r}, '--quiet'{chunk}]); assert rc == 0")
            else:
                code = ("import torch; from dspfx.io import read_audio, write_audio; "
                        "from dspfx.ddsp.transfer import load_model, transfer; "
                        f"x, sr = read_audio({str(src)!r}); y = transfer(load_model('violin'), x, sr); "
                        f"write_audio({str(dst)!r}, y, sr)")
            mb, wall = child(code)
            info = sf.info(str(dst))
            assert abs(info.frames - int(minutes * 60 * RATE)) == 0, (info.frames, minutes)
            rows[name] = {"minutes": minutes, "peak_rss_mb": round(mb, 1), "wall_s": round(wall, 1),
                          "x_real_time": round(minutes * 60 / wall, 1)}
            print(name, rows[name], flush=True)
    print(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
