"""Render expressive MIDI phrases of a sampled instrument with fluidsynth: the data behind the
bundled instruments (and the MIDI/audio pairs a MIDI model trains on).

Writes ``OUT/NNNN.mid`` (the phrase), ``OUT/NNNN.wav`` (mono float, its recording through the
soundfont, from the phrase's start to one second after its last note) and ``OUT/NNNN.json``
(its notes: start, length, pitch, velocity, expression shape, vibrato), plus ``phrases.json``.
Seeded and resumable (existing phrases are kept). See :mod:`dspfx.ddsp.soundfont`.

    apt-get install fluidsynth musescore-general-soundfont timgm6mb-soundfont
    python scripts/make_instrument_data.py violin /tmp/violin-phrases --seconds 720

Cost on this project's 2-core machine: about 1 s per minute of music after the soundfont's
3 s load (MuseScore_General.sf3, 86 MB).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dspfx.ddsp.soundfont import INSTRUMENTS, SOUNDFONTS, SoundfontError, make_phrases  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("instrument", choices=sorted(INSTRUMENTS))
    p.add_argument("out", help="folder for the phrases (created)")
    p.add_argument("--seconds", type=float, default=720.0, help="music to write, seconds (default 720)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--soundfont", default="musescore", help=f"one of {sorted(SOUNDFONTS)} or an .sf2/.sf3 file")
    p.add_argument("--sample-rate", type=int, default=16000)
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    try:
        wavs = make_phrases(args.out, args.instrument, args.seconds, seed=args.seed, soundfont=args.soundfont,
                            sample_rate=args.sample_rate)
    except (SoundfontError, ValueError) as err:
        print(f"make_instrument_data: {err}", file=sys.stderr)
        return 2
    print(f"wrote {len(wavs)} phrases of {args.instrument} to {args.out} in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
