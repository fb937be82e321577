"""MIDI -> audio through the bundled instruments, measured as MIDI-DDSP measures it, on held-out
phrases (seeds no training used) of each instrument.

For each instrument, on ``--phrases`` held-out phrases (dspfx.ddsp.soundfont, seed 900000 + k):

- control effect: each playable control set to seeded random values per note, the others as
  the instrument's expression generator predicts them (one control of a generated performance
  edited, as a MIDI-DDSP user does), the render's controls re-extracted with the same definitions
  (dspfx.ddsp.expression.note_controls), Pearson r between requested and measured (MIDI-DDSP's
  table: violin volume .99, fluctuation .84, peak position .80, vibrato .86, brightness .96,
  attack .97). Brightness and attack noise are drawn within the range of the phrase's
  recording (its notes' lowest to highest), and attack noise also from the render's own level
  to 25 dB above it ("attack, raised"). Attack noise is an absolute level, so the range it is
  drawn from goes with the recording's volumes, which the generator plays (session 11 played
  the velocities' levels, a median 9-12 dB louder, and measured r 0.44-0.82);
- the frames from the rules (dspfx.ddsp.play.note_frames) or from the instrument's learned
  synthesis generator (dspfx.ddsp.synthesis, ``--frames learned``, the default, as dspfx play;
  the controls asked for reshape its loudness, dspfx.ddsp.shaping.conform_swell): the control
  effect and the timing are measured with ``--frames``, the realism with both;
- timing and pitch of `dspfx.play` with its defaults (the bundled expression generator): note
  onsets detected in the render (dspfx.ddsp.onsets.note_onsets: attacks and pitch changes)
  against the MIDI onsets, F-measure within 50 ms and the share within 20 ms, and the same
  detector's F-measure on the recording of the phrase (its ceiling); both also with librosa's
  level-based detector (4 ms hop, backtracked), which misses slurred changes and fires on a
  wind's breath; a slurred note's pitch change timed by the pitch itself
  (dspfx.ddsp.onsets.pitch_change_delays: when the tracked pitch passes halfway between the two
  notes), the median delay after the note-on and the share within 20 ms, on the render and
  (the median) on the recording; the median pitch error of each note's middle half (no
  vibrato requested), in cents;
- realism: DDSP's multi-scale spectral loss against the recording of the same phrase by
  MuseScore General (what the instrument was trained on), for `dspfx.play`, for the same
  instrument driven by flat f0/loudness from the notes (no expression), and for fluidsynth
  playing the phrase with another soundfont (TimGM6mb);
- speed: `dspfx.play` x real time on one thread.

    OMP_NUM_THREADS=1 python benchmarks/midi.py [--phrases 8] [--instruments violin flute ...] [--frames learned|rules]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dspfx.ddsp.expression import CONTROL_NAMES, frame_analysis, note_controls, note_pitch_errors  # noqa: E402
from dspfx.ddsp.midi import MidiNote  # noqa: E402
from dspfx.ddsp.model import spectral_loss  # noqa: E402
from dspfx.ddsp.onsets import note_onsets, onset_scores, pitch_change_delays  # noqa: E402
from dspfx.ddsp.play import PLAYABLE_CONTROLS, play  # noqa: E402
from dspfx.ddsp.soundfont import INSTRUMENTS, random_phrase, render_phrases  # noqa: E402
from dspfx.ddsp.transfer import bundled_models, load_model  # noqa: E402

SR = 16000
HELD_OUT_SEED = 900_000


def _notes(phrase) -> list[MidiNote]:
    return [MidiNote(n.start_s, n.start_s + n.duration_s, n.pitch, n.velocity) for n in phrase.notes]


def _onset_scores(audio: np.ndarray, notes: list[MidiNote]) -> tuple[float, float, float, np.ndarray]:
    """F-measure at 50 ms and share within 20 ms of dspfx's note-onset detector, the F-measure
    at 50 ms of librosa's level-based one (for comparison), and the slurred notes' pitch-change
    delays (s; NaN for the others)."""
    import librosa

    ref = np.array([n.start_s for n in notes])
    analysis = frame_analysis(audio, SR)
    found = note_onsets(analysis=analysis)
    at50, at20 = onset_scores(found, ref, 0.05), onset_scores(found, ref, 0.02)
    level = librosa.onset.onset_detect(y=audio.astype(np.float32), sr=SR, units="time", hop_length=64, backtrack=True)
    return (at50["f_measure"], at20["recall"], onset_scores(level, ref, 0.05)["f_measure"],
            pitch_change_delays(analysis["f0_hz"], notes))


def _loss(a: np.ndarray, b: np.ndarray) -> float:
    n = min(a.size, b.size)
    return float(spectral_loss(torch.from_numpy(a[:n].astype(np.float32))[None], torch.from_numpy(b[:n].astype(np.float32))[None]))


def run(name: str, phrases: int, tmp: Path, frames: str = "rules") -> dict:
    from dspfx.ddsp.generators import bundled_generator
    from dspfx.ddsp.synthesis import bundled_synthesis

    model = load_model(name)
    generator = bundled_generator(name)
    synthesis = bundled_synthesis(name) if frames == "learned" else None
    rng = np.random.default_rng(7)
    effects = (*PLAYABLE_CONTROLS, "attack_noise_raised")
    requested = {c: [] for c in effects}
    measured = {c: [] for c in effects}
    ref_f50, ref_level, f50, level50, w20, cents, seconds, compute = [], [], [], [], [], [], 0.0, 0.0
    slurs, ref_slurs = [], []
    losses = {"dspfx.play": [], "rules": [], "learned": [], "flat": [], "fluidsynth TimGM6mb": []}
    spans = {"volume": (-40.0, -12.0), "volume_fluctuation": (0.0, 8.0), "volume_peak_position": (0.05, 0.95),
             "vibrato": (0.0, 0.6)}
    for k in range(phrases):
        phrase = random_phrase(name, HELD_OUT_SEED + k, 10.0)
        notes = _notes(phrase)
        ref_path = render_phrases([phrase], [tmp / "ref.wav"])[0]
        other_path = render_phrases([phrase], [tmp / "other.wav"], "timgm6mb")[0]
        ref = sf.read(str(ref_path), dtype="float32")[0]
        scores = _onset_scores(ref, notes)  # the detector's ceiling: the recording itself
        ref_f50.append(scores[0])
        ref_slurs += list(scores[3][np.isfinite(scores[3])])
        ref_level.append(scores[2])
        other = sf.read(str(other_path), dtype="float32")[0]
        recorded = note_controls(ref, SR, notes)
        for timbre in ("brightness", "attack_noise"):
            column = recorded[:, CONTROL_NAMES.index(timbre)]
            spans[timbre] = (float(np.nanmin(column)), float(np.nanmax(column)))
        plain, _ = play(notes, model, controls={"vibrato": 0.0}, playing_range=None, expression=generator,
                        synthesis=synthesis)
        own_attack = note_controls(plain.numpy(), SR, notes)[:, CONTROL_NAMES.index("attack_noise")]
        for effect in effects:
            control = "attack_noise" if effect == "attack_noise_raised" else effect
            values = rng.uniform(*spans[control], len(notes)) if effect == control else (
                own_attack + rng.uniform(0.0, 25.0, len(notes)))
            # the others fixed: no vibrato; a 6 dB swell where the peak position is asked (a flat note has none)
            fixed = {"vibrato": 0.0} if control != "vibrato" else {}
            if control == "volume_peak_position":
                fixed["volume_fluctuation"] = 6.0
            audio, _ = play(notes, model, controls={control: values, **fixed}, playing_range=None,
                            expression=generator, synthesis=synthesis)
            got = note_controls(audio.numpy(), SR, notes)[:, CONTROL_NAMES.index(control)]
            # vibrato starts 0.25 s into a note and fades in over 0.2 s: only longer notes can show it
            long = np.array([n.duration_s > (0.7 if control == "vibrato" else 0.25) for n in notes])
            keep = long & np.isfinite(got) & np.isfinite(values)
            requested[effect] += list(values[keep])
            measured[effect] += list(got[keep])
        t0 = time.perf_counter()
        audio, _ = play(notes, name, synthesis=synthesis)
        compute += time.perf_counter() - t0
        timed = "learned" if synthesis is not None else "rules"  # the other way is rendered here
        for label, way in (("rules", None), ("learned", "auto")):
            rendered = audio if label == timed else play(notes, name, synthesis=way)[0]
            losses[label].append(_loss(rendered.numpy(), ref))
        seconds += audio.numel() / SR
        audio = audio.numpy()
        f, w, lev, delays = _onset_scores(audio, notes)
        slurs += list(delays[np.isfinite(delays)])
        f50.append(f)
        w20.append(w)
        level50.append(lev)
        still, _ = play(notes, name, controls={"vibrato": 0.0}, synthesis=synthesis)
        errors = note_pitch_errors(still.numpy(), SR, notes)
        cents += list(100.0 * errors[np.isfinite(errors)])
        flat, _ = play(notes, model, expression=None, controls={"vibrato": 0.0})
        losses["dspfx.play"].append(_loss(audio, ref))
        losses["flat"].append(_loss(flat.numpy(), ref))
        losses["fluidsynth TimGM6mb"].append(_loss(other, ref))
    return {
        "control_effect_r": {c: round(float(np.corrcoef(requested[c], measured[c])[0, 1]), 3) for c in effects},
        "onset_f_measure_50ms": round(float(np.mean(f50)), 3),
        "onsets_within_20ms": round(float(np.mean(w20)), 3),
        "recording_onset_f_measure_50ms": round(float(np.mean(ref_f50)), 3),
        "slur_pitch_delay_ms_median": round(1000.0 * float(np.median(slurs)), 1) if slurs else None,
        "slurs_within_20ms": round(float(np.mean(np.abs(slurs) <= 0.02)), 3) if slurs else None,
        "recording_slur_pitch_delay_ms_median": round(1000.0 * float(np.median(ref_slurs)), 1) if ref_slurs else None,
        "slurs": len(slurs),
        "level_detector_onset_f_measure_50ms": round(float(np.mean(level50)), 3),
        "level_detector_recording_onset_f_measure_50ms": round(float(np.mean(ref_level)), 3),
        "median_abs_pitch_error_cents": round(float(np.median(np.abs(cents))), 2),
        "spectral_loss": {k: round(float(np.mean(v)), 3) for k, v in losses.items()},
        "x_real_time": round(seconds / compute, 1),
        "phrases": phrases,
        "frames": frames if synthesis is not None else "rules",
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--phrases", type=int, default=8)
    p.add_argument("--instruments", nargs="*", default=[n for n in INSTRUMENTS if n in bundled_models()])
    p.add_argument("--frames", choices=["learned", "rules"], default="learned")
    args = p.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.instruments:
            rows[name] = run(name, args.phrases, Path(tmp), args.frames)
            print(name, json.dumps(rows[name]), flush=True)
    print(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
