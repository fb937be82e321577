"""Timbre transfer: sing (here: a synthetic voice) into the bundled violin.

    python examples/timbre_transfer.py [--seconds 3] [--autotune 0.0] [--octave-shift auto]

Writes voice.wav (the input), voice_as_violin.wav (the output) and timbre_transfer.png (both
spectrograms with their f0 tracks), and prints how closely the violin follows the input: the f0
error on confident note-on frames, in semitones, against the pitch the model was asked to play
(the input's, moved by the octave shift and the auto-tune), and the correlation of the output's
loudness with the input's. The same from the command line:
``dspfx transfer violin voice.wav voice_as_violin.wav --octave-shift auto --autotune 0.5``.
"""

import argparse

import numpy as np
import torch
from matplotlib.figure import Figure

import dspfx
from dspfx.plot import spectrogram
from dspfx.ddsp.features import loudness_db, pitch
from dspfx.ddsp.instrument import render_voice
from dspfx.ddsp.transfer import load_model, transfer

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--seconds", type=float, default=3.0, help="length of the voice")
parser.add_argument("--octave-shift", default="auto", help="'auto' (toward the violin's register) or whole octaves")
parser.add_argument("--autotune", type=float, default=0.0, help="0 .. 1: pull f0 toward the nearest semitone")
args = parser.parse_args()
octave_shift = args.octave_shift if args.octave_shift == "auto" else int(args.octave_shift)

sr = 16000
voice = render_voice(args.seconds, sr, seed=1, f0_hz=220.0)  # (samples,) float32: a sung "ah", glide and vibrato
violin = load_model("violin")  # the bundled model (dspfx/models/violin.safetensors); any trained path works too
y, feats = transfer(violin, voice, sr, octave_shift=octave_shift, autotune=args.autotune, return_features=True)
print(f"octave shift: {feats['octave_shift']:+d}; note-on frames: {feats['mask'].mean():.0%}")
dspfx.write_audio("voice.wav", voice, sr)
dspfx.write_audio("voice_as_violin.wav", y, sr)

# -- how well the violin follows: f0 and loudness of the output against what was asked -----------
frame_rate = violin.frame_rate
f0_in, conf_in = (t.numpy() for t in pitch(torch.from_numpy(voice), sr, frame_rate))
f0_out, conf_out = (t.numpy() for t in pitch(y, sr, frame_rate))
loud_out = loudness_db(y, sr, frame_rate).numpy()
n = min(f0_in.size, f0_out.size, feats["new_f0_hz"].size)
mask = feats["mask"][:n]
confident = mask & (conf_in[:n] >= 0.85)  # note-on frames where the input's pitch is sure
asked = feats["new_f0_hz"][:n]  # the input's f0 after the octave shift and the auto-tune
f0_l1 = float(np.mean(np.abs(12.0 * np.log2(f0_out[:n][confident] / asked[confident]))))
loudness_r = float(np.corrcoef(feats["loudness_db"][:n][mask], loud_out[:n][mask])[0, 1])
print(f"f0 L1: {f0_l1:.3f} semitones over {confident.mean():.0%} of the frames (confident, note on)")
print(f"loudness correlation: {loudness_r:.3f}")

# -- picture: input and output spectrograms with their f0 tracks ---------------------------------
fig = Figure(figsize=(9, 6), layout="constrained")
top, bottom = fig.subplots(2, 1, sharex=True)
t = np.arange(n) / frame_rate
for ax, audio, f0, conf, title in (
    (top, voice, f0_in, conf_in, "input: synthetic voice"),
    (bottom, y.numpy(), f0_out, conf_out,
     f"output: bundled violin (octave shift {feats['octave_shift']:+d}, autotune {args.autotune:g})"),
):
    spectrogram(ax, audio, sr, title=title, n_fft=1024, hop=128)
    track = np.where(conf[:n] >= 0.85, f0[:n], np.nan)  # only where the tracker is confident
    ax.plot(t, track, color="cyan", linewidth=1.2, label="f0 (tracked)")
    if ax is bottom:
        ax.plot(t, np.where(mask, asked, np.nan), color="white", linewidth=0.8, linestyle="--", label="f0 asked")
    ax.set_ylim(50, sr / 2)
    ax.legend(loc="upper right", fontsize=8)
top.set_xlabel("")
fig.savefig("timbre_transfer.png", dpi=100)
print("wrote voice.wav, voice_as_violin.wav and timbre_transfer.png")
