"""Making a render play the controls asked of it, by the render's own measurement.

:func:`dspfx.ddsp.play.play` makes an instrument's frames from the notes and their controls; the
decoder then sets the timbre from pitch and loudness, and the reverb and the neighbouring notes
add to what each note measures. What a caller asks for is therefore checked on the render, with
the definitions that measure a recording (:func:`dspfx.ddsp.expression.note_controls`), and
corrected:

- :func:`conform_swell`: a learned loudness curve reshaped to an asked volume fluctuation and
  peak position;
- :func:`conform_volume`: each asked note's loudness moved until the render's mean is the one
  asked (:data:`VOLUME_PASSES` renders);
- :func:`timbre_shaping`: ``brightness`` by a spectral tilt on the decoder's harmonics, and
  ``attack_noise`` by a gain on the noise of the note's attack, with the note's onset softened
  where the asked level is below what the noise gain alone can reach.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from dspfx.ddsp.expression import (
    ATTACK_FRAMES,
    CONTROL_NAMES,
    analysis_fft_size,
    frame_analysis,
    note_controls,
    note_span,
)
from dspfx.ddsp.midi import MidiNote
from dspfx.ddsp.model import DDSPModel

__all__ = ["TIMBRE_CONTROLS", "swell", "conform_swell", "conform_volume", "timbre_shaping", "soften_onsets", "render_frames",
           "sent_span"]

#: The two controls that shape the decoder's timbre (only when given; :func:`timbre_shaping`).
TIMBRE_CONTROLS = ("brightness", "attack_noise")
#: Bounds of the spectral tilt exponent and of the attack's noise gain (dB).
TILT_RANGE = (-4.0, 8.0)
NOISE_GAIN_RANGE_DB = (-40.0, 40.0)
#: Renders that correct the timbre controls by the render's own measurement.
TIMBRE_PASSES = 3
#: Renders that correct an asked volume by the render's own measurement (:func:`conform_volume`).
VOLUME_PASSES = 2
#: Lengths (frames: 24, 48 and 100 ms at 250 frames/s) of the onset softenings tried, shortest
#: first, on a note whose asked attack noise is below what the noise gain alone reaches
#: (:func:`soften_onsets`).
ONSET_SOFTENING_FRAMES = (6, 12, 25)
#: A note is softened while the floor (its attack with the least noise) is above the level asked
#: less this margin (dB), which the noise gain then makes up.
SOFTENING_MARGIN_DB = 1.0


def per_note(name: str, value: Any, n: int) -> np.ndarray:
    """A control as one finite value per note (a number is every note's)."""
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        arr = np.full(n, float(arr))
    if arr.shape != (n,) or not np.all(np.isfinite(arr)):
        raise ValueError(f"control {name!r}: a finite number or one per note ({n}), got shape {arr.shape}")
    return arr


def model_frames(model: DDSPModel, frames: np.ndarray) -> torch.Tensor:
    """Frames as a ``(1, frames)`` tensor in the model's dtype."""
    return torch.as_tensor(frames, dtype=next(model.parameters()).dtype)[None]


def render_frames(model: DDSPModel, f0: np.ndarray, loud: np.ndarray, **shaping: np.ndarray) -> torch.Tensor:
    """The model's render of ``(f0, loud)`` frames and its shaping frames (``harmonic_tilt``,
    ``noise_gain_db``): ``(samples,)`` float32, without gradients."""
    with torch.no_grad():
        y = model(model_frames(model, f0), model_frames(model, loud), **{k: model_frames(model, v) for k, v in shaping.items()})
    return y[0, 0].detach().cpu().float()


def sent_span(note: MidiNote, frames: int, frame_rate: float) -> tuple[int, int]:
    """The note's frames in the frames given to the model (a frame early, as :func:`~dspfx.ddsp.play.play` sends them)."""
    a = max(0, int(round(note.start_s * frame_rate)) - 1)
    return a, min(frames, max(a + 1, int(round(note.end_s * frame_rate)) - 1))


def swell(u: np.ndarray, peak: float) -> np.ndarray:
    """A triangle over a note's place ``u`` (0 .. 1) peaking at ``peak``, zero mean and unit std."""
    shape = np.where(u <= peak, u / max(peak, 1e-9), (1.0 - u) / max(1.0 - peak, 1e-9)) if 0 < peak < 1 else (
        1.0 - u if peak == 0 else u)
    return (shape - shape.mean()) / max(shape.std(), 1e-9)


#: Share of an asked fluctuation that the asked swell carries when a learned curve is conformed
#: (:func:`conform_swell`); the learned curve's own movement (attack, decay) makes up the rest.
SWELL_SHARE = 0.8


def conform_swell(loud: np.ndarray, notes: list[MidiNote], fluctuation: np.ndarray, peak: np.ndarray,
                  frame_rate: float = 250.0, which: np.ndarray | None = None) -> np.ndarray:
    """Loudness frames whose notes have the asked ``volume_fluctuation`` (std, dB) and
    ``volume_peak_position``, keeping each note's mean and as much of its own shape as fits:
    over a note's frames (as :func:`~dspfx.ddsp.expression.note_controls` reads them),
    ``mean + b (l - mean) + a s`` with ``s`` the asked swell (:func:`swell`), ``a`` =
    :data:`SWELL_SHARE` of the asked std and ``b`` (at most 1) making the std the asked one; a
    curve too flat for that keeps ``b = 1`` and a larger ``a``. ``which``: the notes to reshape
    (a mask; default all)."""
    out = np.array(loud, dtype=np.float64)
    for k, note in enumerate(notes):
        if which is not None and not which[k]:
            continue
        s, e = note_span(note, out.size, frame_rate)
        if e - s < 3:
            continue
        seg = out[s:e]
        r = seg - seg.mean()
        sw = swell(np.arange(e - s) / (e - s - 1), float(peak[k]))
        want, v, c = float(fluctuation[k]), float(np.mean(r * r)), float(np.mean(r * sw))
        a = SWELL_SHARE * want
        # std(b r + a s) = want: v b^2 + 2 a c b + a^2 - want^2 = 0, the root b >= 0
        b = (-a * c + np.sqrt(max(a * a * c * c - v * (a * a - want * want), 0.0))) / v if v > 1e-12 else np.inf
        if b > 1.0:  # the learned curve is flatter than asked: keep it whole, the swell does the rest
            b = 1.0
            a = -c + np.sqrt(max(c * c - v + want * want, 0.0))
        out[s:e] = np.clip(seg.mean() + b * r + a * sw, -80.0, 0.0)
    return out


def conform_volume(model: DDSPModel, notes: list[MidiNote], f0: np.ndarray, loud: np.ndarray,
                   volume: np.ndarray, which: np.ndarray) -> np.ndarray:
    """Loudness frames (as :func:`play` sends them) in which the notes of ``which`` (a mask)
    play their asked ``volume``: the decoder's output level is not its input loudness, and the
    reverb and the neighbouring notes add to a note's level, so each such note's frames move by
    the difference between the asked mean loudness and the render's, as
    :func:`~dspfx.ddsp.expression.note_controls` measures it (:data:`VOLUME_PASSES` renders)."""
    from dspfx.ddsp.features import loudness_db

    out = np.array(loud, dtype=np.float64)
    fr = model.frame_rate
    spans = [sent_span(note, out.size, fr) for note in notes]
    for _ in range(VOLUME_PASSES):
        level = loudness_db(render_frames(model, f0, out), model.sample_rate, fr).numpy()
        for j, note in enumerate(notes):
            s, e = note_span(note, level.size, fr)
            if not which[j] or s >= level.size or not np.isfinite(volume[j]):
                continue
            a, b = spans[j]
            out[a:b] = np.clip(out[a:b] + (volume[j] - level[s:e].mean()), -80.0, 0.0)
    return out


def timbre_shaping(model: DDSPModel, notes: list[MidiNote], f0: np.ndarray, loud: np.ndarray,
                   timbre: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, np.ndarray]]:
    """Render ``(f0, loud)`` frames (as :func:`~dspfx.ddsp.play.play` sends them) with the
    notes' ``brightness`` and ``attack_noise`` (:data:`TIMBRE_CONTROLS`, a number or one per
    note). Returns the audio and the frames it was rendered from besides ``f0``:
    ``loudness_db`` and the shaping frames (``harmonic_tilt``, ``noise_gain_db``; see
    :class:`DDSPModel`).

    - brightness: per note, the tilt ``t`` (within :data:`TILT_RANGE`) whose harmonic centroid,
      ``sum(k w_k k^-t) / sum(w_k k^-t)`` over the harmonics :func:`~dspfx.ddsp.expression.note_controls`
      reads (below Nyquist, at most 20) averaged over the note's frames of the decoder's weights
      ``w``, is the goal (bisection; a centroid out of reach gets the bound's); the goal starts
      at the asked centroid and moves by the difference between it and the render's measured
      one (the reverb and the noise move it; a reading more than 1.5 times off, a pitch
      tracker's octave error, is ignored), :data:`TIMBRE_PASSES` times in all;
    - attack_noise: the aperiodic level of a note's first 40 ms is the noise synth's plus a
      floor the noise cannot move: the harmonics' energy spread by a fast onset, the previous
      note carried into a legato change, the learned reverb's smearing of both. One render with
      the least noise gain (:data:`NOISE_GAIN_RANGE_DB`) reads the floor; a note whose floor is
      above the level asked has its onset softened (:func:`soften_onsets`, the lengths of
      :data:`ONSET_SOFTENING_FRAMES` in turn, a render each, until it is
      :data:`SOFTENING_MARGIN_DB` below; each note keeps its mean loudness). The longest is the
      most a note gets: a quiet note just after a loud one keeps some of the loud one in its
      attack (on a legato violin line, -70 and -75 dB asked on notes 16 and 15 dB quieter than
      the one before read -62 and -52). Then a gain on the noise of each note's attack (its
      first 40 ms, and the 32 ms that their analysis windows reach past them) is solved in
      power, ``floor + g * noise = asked``, from the render's measured level,
      :data:`TIMBRE_PASSES` times.
    """
    n, frames, fr = len(notes), f0.size, model.frame_rate
    spans = [sent_span(note, frames, fr) for note in notes]

    def measure(audio: torch.Tensor, control: str) -> np.ndarray:
        analysis = frame_analysis(audio.numpy(), model.sample_rate, fr, notes=notes)
        return note_controls(None, model.sample_rate, notes, fr, analysis=analysis)[:, CONTROL_NAMES.index(control)]

    shaping: dict[str, np.ndarray] = {}
    wanted = {}
    for name in TIMBRE_CONTROLS:
        if name in timbre:
            wanted[name] = per_note(name, timbre[name], n)
    if "brightness" in wanted and np.any(wanted["brightness"] < 1.0):
        raise ValueError("control 'brightness' is a harmonic centroid: 1 (the fundamental alone) or more")
    if "brightness" in wanted:
        with torch.no_grad():
            out, _ = model.decoder(model_frames(model, f0), model_frames(model, loud))
        w = out["harmonic_distribution"][0].double().numpy()[:, :20]
        k = np.arange(1, w.shape[1] + 1)
        w = np.where(k[None] * f0[:, None] < model.sample_rate / 2.0, w, 0.0)
        tilt = np.zeros(frames)
        goal = wanted["brightness"].copy()  # in the decoder's centroid, corrected by what the render shows
        for rep in range(TIMBRE_PASSES):
            for j, (a, b) in enumerate(spans):
                lo, hi = TILT_RANGE
                for _ in range(40):  # the centroid falls as the tilt rises
                    mid = 0.5 * (lo + hi)
                    v = w[a:b] * k[None] ** -mid
                    centroid = float(np.mean((v * k).sum(1) / np.maximum(v.sum(1), 1e-30)))
                    lo, hi = (mid, hi) if centroid > goal[j] else (lo, mid)
                tilt[a:b] = 0.5 * (lo + hi)
            shaping["harmonic_tilt"] = tilt
            if rep < TIMBRE_PASSES - 1:
                seen = measure(render_frames(model, f0, loud, **shaping), "brightness")
                # a small bias (reverb, noise) is corrected; a reading far off is the pitch
                # tracker's octave error on a weak fundamental (twice the centroid), not the timbre
                plausible = np.isfinite(seen) & (np.abs(np.log(np.maximum(seen, 1e-9) / wanted["brightness"])) < np.log(1.5))
                goal = np.where(plausible, np.maximum(goal + wanted["brightness"] - np.nan_to_num(seen), 1.0), goal)
    if "attack_noise" not in wanted:
        return render_frames(model, f0, loud, **shaping), {"loudness_db": np.asarray(loud, dtype=np.float64), **shaping}
    audio, loud = _attack_noise(model, f0, loud, shaping, wanted["attack_noise"], spans,
                                lambda audio: measure(audio, "attack_noise"))
    return audio, {"loudness_db": loud, **shaping}


def soften_onsets(loud: np.ndarray, spans: list[tuple[int, int]], lengths: np.ndarray) -> np.ndarray:
    """Loudness frames with each note's onset softened over ``lengths[j]`` frames (0: left as it
    is): a raised-cosine dip, the note rising over its first frames (at most half of them) as the
    frames before it fall into it (no further back than the previous note's start). A fast onset
    spreads the harmonics' energy over the spectrum, and a legato change carries the previous
    note into the new one's first frames; both read as the attack's aperiodic level, which the
    dip lowers, as a softer tonguing or bow change does. Each note's mean loudness over its span
    is kept: what a dip takes from it, the rest of its frames make up (up to 0 dB)."""
    loud = np.asarray(loud, dtype=np.float64)
    out, dipped = loud.copy(), np.zeros(loud.size, dtype=bool)
    for j, (a, b) in enumerate(spans):
        m = min(int(lengths[j]), (b - a) // 2)
        if m < 1:
            continue
        rise = 0.5 - 0.5 * np.cos(np.pi * np.arange(1, m + 1) / (m + 1))
        out[a:a + m] += 20.0 * np.log10(rise)
        dipped[a:a + m] = True
        q = min(m, a - (spans[j - 1][0] if j else 0))
        if q > 0:
            out[a - q:a] += 20.0 * np.log10(rise[::-1][m - q:])
            dipped[a - q:a] = True
    out = np.maximum(out, -80.0)
    for a, b in spans:
        body = ~dipped[a:b]
        lost = float((out[a:b] - loud[a:b]).sum())
        if lost < 0 and body.any():
            seg = out[a:b]
            seg[body] = np.minimum(seg[body] - lost / body.sum(), 0.0)
    return out


def _attack_noise(model: DDSPModel, f0: np.ndarray, loud: np.ndarray, shaping: dict[str, np.ndarray],
                  wanted: np.ndarray, spans: list[tuple[int, int]], measure: Any) -> tuple[torch.Tensor, np.ndarray]:
    """The render whose notes' attacks have the ``wanted`` aperiodic level (dB), and its loudness
    frames (``shaping`` gains ``noise_gain_db``); see :func:`timbre_shaping`."""
    n, frames = wanted.size, f0.size
    lo, hi = NOISE_GAIN_RANGE_DB
    # the gain covers what the attack's measurement reads: its frames, their analysis windows'
    # reach past the last of them (32 ms at 16 kHz) and a frame more, as the gain ramps between frames
    reach = ATTACK_FRAMES + analysis_fft_size(model.sample_rate) // 2 // model.hop + 1

    def render(gains: np.ndarray, loudness: np.ndarray) -> torch.Tensor:
        gain = np.zeros(frames)
        for j, (a, _) in enumerate(spans):
            gain[a: a + reach] = gains[j]
        shaping["noise_gain_db"] = gain
        return render_frames(model, f0, loudness, **shaping)

    # the floor: each attack with the least noise; softer onsets where it is above the level asked
    least = np.full(n, lo)
    floor = measure(render(least, loud))
    base, lengths = loud, np.zeros(n, dtype=int)
    for length in ONSET_SOFTENING_FRAMES:
        short = floor > wanted - SOFTENING_MARGIN_DB
        if not short.any():
            break
        lengths[short] = length
        loud = soften_onsets(base, spans, lengths)
        floor = measure(render(least, loud))
    # the aperiodic power is the floor's plus the noise's, which the gain scales
    floor_power, want = 10.0 ** (floor / 10.0), 10.0 ** (wanted / 10.0)
    gains = np.zeros(n)
    audio = render(gains, loud)
    for _ in range(TIMBRE_PASSES):
        now = 10.0 ** (measure(audio) / 10.0)
        noise = np.maximum(now - floor_power, 1e-3 * now)
        step = 10.0 * np.log10(np.maximum(want - floor_power, 1e-6 * want) / noise)
        gains = np.clip(gains + np.nan_to_num(step), lo, hi)
        audio = render(gains, loud)
    return audio, loud
