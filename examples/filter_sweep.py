"""Drive a unit's knob with a control: a resonant low-pass swept over a chord, streamed in blocks.

    python examples/filter_sweep.py    # writes sweep.wav and sweep.png
"""

import torch
from matplotlib.figure import Figure

import dspfx
from dspfx.plot import spectrogram
from dspfx.signals import guitar_di

sr = 48000
x = dspfx.make("distortion", drive_db=20.0)(guitar_di(sample_rate=sr, duration_s=4.0))
lowpass = dspfx.make("biquad", mode="lowpass", q=6.0)

# 200 frames from 200 Hz up to 6 kHz and back, on the signal's causal hop grid, upsampled inside.
up = torch.logspace(torch.log10(torch.tensor(200.0)), torch.log10(torch.tensor(6000.0)), 100)
sweep = torch.cat([up, up.flip(0)]).view(1, -1)
with torch.no_grad():
    y = lowpass(x, cutoff_hz=sweep)

    # The same filter streamed in 512-sample blocks with a fixed cutoff equals the offline render.
    stream = dspfx.Stream(lowpass)
    lowpass.set(cutoff_hz=1000.0)
    streamed = torch.cat([stream(block) for block in x.split(512, dim=-1)], dim=-1)
    print("stream vs offline, max abs difference:", float((streamed - lowpass(x)).abs().max()))

dspfx.write_audio("sweep.wav", 0.5 * y[0] / y.abs().max(), sr)
fig = Figure(figsize=(8, 3.5))
spectrogram(fig.add_subplot(), y, sr, title="resonant low-pass swept 200 Hz - 6 kHz")
fig.tight_layout()
fig.savefig("sweep.png")
print("wrote sweep.wav and sweep.png")
