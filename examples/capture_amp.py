"""Capture an amp: record it at a few front-panel settings, fit one model that plays every setting.

    python examples/capture_amp.py [--steps 300] [--seconds 6] [--out capture]

The workflow a user follows with a real amp, on audio made in code so it runs anywhere:

1. record the DI (what the guitar sends) and the amp's output together, at 3-4 settings of the
   knobs you care about (here gain and treble, 0 .. 10): one DI/amp pair of WAV files per setting;
2. check every pair (`check_capture`: rates, lengths, silence, clipping, DC, latency);
3. fit one capture with `dspfx.fit` (random segments, a held-out tail) and look at `fit_report`;
4. train a knob-conditioned model on all captures (`KnobConditioned.fit_captures`), starting
   from that fit: a small network moves the amp's knobs with the settings;
5. render a setting no capture had and compare it with the amp at that setting.

The "real amp" is a pedalboard board of another structure than the dspfx amp model (a tanh
distortion whose drive follows the gain, a treble shelf, fixed filters): it stands in for the
hardware and for the recordings; nothing below looks inside it.
"""

import argparse
from pathlib import Path

import pedalboard
import torch

import dspfx
from dspfx.amps.amp import amp
from dspfx.amps.conditioned import KnobConditioned
from dspfx.plot import fit_report
from dspfx.signals import guitar_di
from dspfx.fitting.capture import check_capture
from dspfx.fitting.probes import harmonic_response, transfer_curves
from dspfx.fitting.metrics import esr

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--steps", type=int, default=300, help="optimiser steps of each fit")
parser.add_argument("--seconds", type=float, default=6.0, help="length of each capture")
parser.add_argument("--out", default="capture", help="folder for the captures, the model and the report")
args = parser.parse_args()

sr = 22050
out = Path(args.out)
out.mkdir(parents=True, exist_ok=True)


# -- 0. the stand-in "real amp" -------------------------------------------------------------------
def real_amp(gain: float, treble: float) -> pedalboard.Pedalboard:
    """The hardware at front-panel settings gain and treble (0 .. 10)."""
    return pedalboard.Pedalboard([
        pedalboard.HighpassFilter(cutoff_frequency_hz=90.0),
        pedalboard.Distortion(drive_db=6.0 + 2.4 * gain),  # 6 .. 30 dB of drive into tanh
        pedalboard.HighShelfFilter(cutoff_frequency_hz=1800.0, gain_db=1.6 * (treble - 5.0)),  # -8 .. +8 dB
        pedalboard.LowpassFilter(cutoff_frequency_hz=4500.0),  # the speaker's roll-off
        pedalboard.Gain(gain_db=-8.0),
    ])


def record(settings: dict[str, float], di: torch.Tensor) -> torch.Tensor:
    """What the interface records from the amp's output: (1, 1, samples)."""
    return torch.from_numpy(real_amp(**settings)(di[0].numpy(), float(sr))).unsqueeze(0)


# -- 1. captures: a DI and the amp's output per setting, as WAV files ------------------------------
seen = [dict(gain=1.0, treble=2.0), dict(gain=9.0, treble=3.0), dict(gain=3.0, treble=9.0), dict(gain=8.0, treble=8.0)]
di = guitar_di(sample_rate=sr, duration_s=args.seconds, seed=0)  # (1, 1, samples): riffs, then chords
for s in seen:
    name = f"g{s['gain']:g}_t{s['treble']:g}"
    dspfx.write_audio(out / f"di_{name}.wav", di[0], sr)
    dspfx.write_audio(out / f"amp_{name}.wav", record(s, di)[0], sr)

# -- 2. read the files back as a user would, and check every pair ----------------------------------
captures = []
for s in seen:
    name = f"g{s['gain']:g}_t{s['treble']:g}"
    x, rate_x = dspfx.read_audio(out / f"di_{name}.wav")
    y, rate_y = dspfx.read_audio(out / f"amp_{name}.wav")
    report = check_capture(x, y, rate_x, rate_y)  # raises for unusable pairs, warns for doubtful ones
    print(f"capture {name}: peak DI {report.peak_db['di']:.1f} dBFS, amp {report.peak_db['target']:.1f} dBFS, "
          f"latency {report.latency_samples} samples, {len(report.warnings)} warnings")
    captures.append((s, report.di, report.target))

# -- 3. fit one capture: the amp's voicing at one setting ------------------------------------------
settings, x, y = captures[1]  # the high-gain capture
rig = amp("bassman", sample_rate=sr, **settings)  # a gray-box amp started at the same front panel
# the fit measures the capture's latency against the amp's own render and removes it (a lag of a
# sample or two is phase, left to the knobs; a real interface's latency is tens of samples)
result = dspfx.fit(rig, x, y, steps=args.steps, lr=0.03, loss="mrstft+esr", segment_s=0.25, batch_size=4,
                   validation=0.25, validate_every=20, seed=0, progress=False)
print(result.summary())
print(f"one capture, held-out ESR: {result.metrics['esr']:.4f}")
n_held = result.heldout_samples
with torch.no_grad():
    prediction = rig(x)[..., -n_held:]
levels = (-30.0, -20.0, -10.0, 0.0)
board = real_amp(**settings)
fit_report(
    out / "report.png", target=y[..., -n_held:], prediction=prediction, sample_rate=sr,
    harmonic_levels_db=levels, harmonic_f0_hz=220.0,
    harmonics_db=harmonic_response(rig, 220.0, levels),
    reference_harmonics_db=harmonic_response(board, 220.0, levels, sample_rate=sr),
    transfer=transfer_curves(rig), reference_transfer=transfer_curves(board, sample_rate=sr),
    loss_history=result.loss_history, validation_history=result.validation_history,
    title=f"bassman model fitted to the amp at gain {settings['gain']:g}, treble {settings['treble']:g}",
)

# -- 4. all captures: a knob-conditioned model that starts as the fitted amp ------------------------
torch.manual_seed(0)  # the network's hidden layers start random; its last layer starts at zero
model = KnobConditioned(rig, settings=("gain", "treble"))
knob_fit = model.fit_captures(captures, steps=args.steps, batch_size=4, segment_s=0.25, progress=False)
print(knob_fit.summary())  # ESR of the trained model on each capture
dspfx.save(model, out / "amp.safetensors")

# -- 5. a setting no capture had, on a DI the model never heard ------------------------------------
unseen = dict(gain=6.0, treble=5.0)
di_new = guitar_di(sample_rate=sr, duration_s=min(args.seconds, 3.0), seed=1)
loaded = dspfx.load(out / "amp.safetensors")  # the saved file renders the same
with torch.no_grad():
    rendered = loaded(di_new, unseen)
truth = record(unseen, di_new)
dspfx.write_audio(out / "unseen_model.wav", rendered[0], sr)
dspfx.write_audio(out / "unseen_amp.wav", truth[0], sr)
print(f"unseen setting gain {unseen['gain']:g}, treble {unseen['treble']:g}: ESR {float(esr(rendered, truth)):.4f}")
print(f"wrote {out}/amp.safetensors and {out}/report.png")
