"""Fit a dspfx chain to audio rendered by a pedalboard board, then check the fit against it.

    python examples/fit_pedalboard_board.py [--steps 300]
"""

import argparse

import pedalboard
import torch

import dspfx
from dspfx.signals import guitar_di

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=300)
args = parser.parse_args()

sr = 48000
board = pedalboard.Pedalboard(
    [pedalboard.Distortion(drive_db=24.0), pedalboard.PeakFilter(cutoff_frequency_hz=700.0, gain_db=-5.0, q=2.0)]
)
di = guitar_di(sample_rate=sr, duration_s=2.0)  # (1, 1, samples), made in code
target = torch.from_numpy(board(di[0].numpy(), sr)).unsqueeze(0)

# The twin with the board's structure, its knobs at their defaults.
chain = dspfx.Chain(distortion=dspfx.make("distortion"), peak_filter=dspfx.make("biquad", mode="peak"))
result = dspfx.fit(chain, di, target, steps=args.steps)
print(result.summary())
for path, value in result.knobs.items():
    print(f"  {path:<24} {value:9.4g}")

# The fitted chain next to the board it imitates: ESR, SNR, latency found.
print(dspfx.compare(chain, board, di[0], sr).metrics())
dspfx.save(chain, "fitted.safetensors")
