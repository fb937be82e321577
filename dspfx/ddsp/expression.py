"""MIDI-DDSP's six note-level expression controls, measured from audio and its notes.

:func:`note_controls` pools a recording's (or a render's) frame analysis over each note; the
same function measures what an instrument was asked to play and what it played, so a control's
effect is the correlation between the two (MIDI-DDSP's control-effect table).

Frame analysis (:func:`frame_analysis`, 250 frames/s): f0 and confidence
(:func:`dspfx.ddsp.features.pitch`), A-weighted loudness (:func:`dspfx.ddsp.features.loudness_db`),
the amplitudes of harmonics 1..K read from a magnitude STFT at ``k * f0``, and the aperiodic
level: the power of the STFT bins farther than a quarter of f0 from every harmonic, in dB.

The controls of a note (frames from its onset to its offset), MIDI-DDSP's definitions (Wu et al.,
ICLR 2022, section 3.1) with the amplitude read as loudness:

- ``volume``: mean loudness (dB);
- ``volume_fluctuation``: its standard deviation (dB);
- ``volume_peak_position``: (frame of the loudest frame - onset) / note length, 0 .. 1;
- ``vibrato``: the peak, between 3 and 9 Hz, of the Hann-windowed amplitude spectrum of the
  pitch deviation from the note (semitones; deviations beyond 2 semitones zeroed, mean
  removed), scaled so that a sine of extent ``A`` semitones reads ``A`` (the pitch tracker's
  64 ms frame averages a 6 Hz vibrato to 78% of its extent; the peak is divided by that
  boxcar's response ``sinc(f T)``); 0 for notes of 50 frames (200 ms) or fewer;
- ``brightness``: the harmonic centroid ``sum(k * h_k) / sum(h_k)`` averaged over the note's
  pitched frames (harmonics of the tracked f0, or of the written pitch where the tracker is an
  octave or a fifth off it);
- ``attack_noise``: the aperiodic level (dB) averaged over the note's first 10 frames (40 ms).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["CONTROL_NAMES", "analysis_fft_size", "OFF_NOTE_SEMITONES", "frame_analysis", "note_controls", "note_pitch_errors", "note_span",
           "VIBRATO_BAND_HZ"]

CONTROL_NAMES = ("volume", "volume_fluctuation", "volume_peak_position", "vibrato", "brightness", "attack_noise")
#: Band where a pitch modulation counts as vibrato (MIDI-DDSP).
VIBRATO_BAND_HZ = (3.0, 9.0)
#: Notes of at most this many frames have no vibrato (MIDI-DDSP).
MIN_VIBRATO_FRAMES = 50
#: Frames of the attack (40 ms at 250 frames/s).
ATTACK_FRAMES = 10


#: A tracked f0 further than this from the written note (semitones) is the tracker's octave (or
#: fifth) error: the harmonics are read at the note's pitch there (:func:`frame_analysis`).
OFF_NOTE_SEMITONES = 3.0


def note_span(note: Any, frames: int, frame_rate: float) -> tuple[int, int]:
    """The frames ``[s, e)`` of a note (``start_s``, ``end_s``) as the controls are read over
    them: from its onset's frame to its offset's, at least one, cut at ``frames`` (``s`` may be
    past the end)."""
    s = int(round(note.start_s * frame_rate))
    return s, min(frames, max(s + 1, int(round(note.end_s * frame_rate))))


def analysis_fft_size(sample_rate: float) -> int:
    """Length of :func:`frame_analysis`'s STFT frame: the power of two at or above 64 ms (1024
    samples at 16 kHz: 15.6 Hz bins, fine enough to part the harmonics of a 60 Hz note)."""
    return 1 << int(np.ceil(np.log2(0.064 * sample_rate)))


def frame_analysis(audio: Any, sample_rate: int, frame_rate: float = 250.0, n_harmonics: int = 20,
                   notes: list[Any] | None = None) -> dict[str, np.ndarray]:
    """Per-frame ``f0_hz``, ``confidence``, ``loudness_db``, ``harmonics`` ``(frames, K)``
    (STFT magnitudes at ``k * f0``) and ``noise_db`` of mono ``audio`` (frame ``i`` centred
    on sample ``i * hop``). With the ``notes`` played, a frame of a note whose tracked f0 is
    more than :data:`OFF_NOTE_SEMITONES` from the written pitch (a weak fundamental read an
    octave off) has its harmonics and its noise read at the written pitch; ``f0_hz`` stays
    the tracker's."""
    from dspfx.ddsp.features import hop_length, loudness_db, pitch
    from dspfx.ddsp.yin import analysis_frame_length

    x = torch.as_tensor(np.asarray(audio, dtype=np.float32)).reshape(-1)
    if x.numel() == 0 or not torch.isfinite(x).all():
        raise ValueError("audio must be a non-empty, finite mono signal")
    hop = hop_length(sample_rate, frame_rate)
    f0, conf = pitch(x, sample_rate, frame_rate)
    loud = loudness_db(x, sample_rate, frame_rate)
    frames = min(f0.numel(), loud.numel())
    n_fft = analysis_fft_size(sample_rate)
    spec = torch.stft(x.double(), n_fft, hop, window=torch.hann_window(n_fft, dtype=torch.float64), center=True,
                      return_complex=True).abs().numpy()[:, :frames].T  # (frames, bins)
    f0n = f0.numpy()[:frames].astype(np.float64)
    f0h = f0n.copy()  # the f0 the harmonics are read at
    for note in notes or ():
        s, e = note_span(note, frames, frame_rate)
        written = 440.0 * 2.0 ** ((note.pitch - 69) / 12.0)
        seg = f0h[s:e]
        seg[np.abs(12.0 * np.log2(np.maximum(seg, 1e-3) / written)) > OFF_NOTE_SEMITONES] = written
    bin_hz = sample_rate / n_fft
    k = np.arange(1, n_harmonics + 1)
    fk = f0h[:, None] * k[None, :]
    idx = np.clip(np.round(fk / bin_hz).astype(int), 0, spec.shape[1] - 1)
    harm = np.take_along_axis(spec, idx, axis=1)
    harm[fk >= sample_rate / 2] = 0.0
    bins = np.arange(spec.shape[1]) * bin_hz
    # distance of each bin to the nearest harmonic of the frame's f0
    ratio = bins[None, :] / np.maximum(f0h[:, None], 1.0)
    near = np.abs(ratio - np.round(ratio)) * f0h[:, None] < np.maximum(0.25 * f0h[:, None], 2 * bin_hz)
    near &= np.round(ratio) >= 1
    power = spec**2
    noise = np.where(near, 0.0, power).sum(axis=1) / (np.hanning(n_fft).sum() ** 2)
    return {
        "f0_hz": f0n, "confidence": conf.numpy()[:frames].astype(np.float64),
        "loudness_db": loud.numpy()[:frames].astype(np.float64), "harmonics": harm,
        "noise_db": 10.0 * np.log10(noise + 1e-10),
        "pitch_window_s": np.float64(analysis_frame_length(sample_rate, 50.0) / sample_rate),
    }


def _vibrato(deviation: np.ndarray, frame_rate: float, window_s: float) -> float:
    if deviation.size <= MIN_VIBRATO_FRAMES:
        return 0.0
    d = np.where(np.abs(deviation) > 2.0, 0.0, deviation)
    d = d - d.mean()
    w = np.hanning(d.size)
    n = 4 * (1 << int(np.ceil(np.log2(d.size))))  # zero-padded: the peak's height is not lost between bins
    amp = np.abs(np.fft.rfft(d * w, n)) * 2.0 / w.sum()
    hz = np.fft.rfftfreq(n, 1.0 / frame_rate)
    peak = int(np.argmax(amp[1:])) + 1
    lo, hi = VIBRATO_BAND_HZ
    if not lo <= hz[peak] <= hi:
        return 0.0
    # the tracker's frame averages the pitch over window_s: a boxcar, sinc(f T) at the vibrato rate
    return float(amp[peak] / np.sinc(hz[peak] * window_s))


def _semitones(f0_hz: np.ndarray, midi_pitch: float) -> np.ndarray:
    """Pitch of ``f0_hz`` in semitones from the MIDI note ``midi_pitch``."""
    return 12.0 * np.log2(np.maximum(f0_hz, 1e-3) / (440.0 * 2 ** ((midi_pitch - 69) / 12.0)))


def note_pitch_errors(audio: Any, sample_rate: int, notes: list[Any], frame_rate: float = 250.0,
                      analysis: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """Each note's pitch error in semitones: the median f0 of the confidently pitched frames
    (confidence >= 0.85) in the middle half of the note, against its MIDI pitch; NaN for a note
    with fewer than 5 such frames. ``(notes,)``.

    Args as :func:`note_controls`; without ``analysis`` only the pitch tracker runs.
    """
    if analysis is None:
        from dspfx.ddsp.features import pitch

        f0_t, conf_t = pitch(torch.as_tensor(np.asarray(audio, dtype=np.float32)).reshape(-1), sample_rate, frame_rate)
        f0, conf = f0_t.numpy(), conf_t.numpy()
    else:
        f0, conf = analysis["f0_hz"], analysis["confidence"]
    out = np.full(len(notes), np.nan)
    for i, n in enumerate(notes):
        a = int((n.start_s + 0.25 * (n.end_s - n.start_s)) * frame_rate)
        b = int((n.start_s + 0.75 * (n.end_s - n.start_s)) * frame_rate)
        sel = conf[a:b] >= 0.85
        if sel.sum() >= 5:
            out[i] = float(_semitones(np.median(f0[a:b][sel]), n.pitch))
    return out


def note_controls(audio: Any, sample_rate: int, notes: list[Any], frame_rate: float = 250.0,
                  analysis: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """The six controls (:data:`CONTROL_NAMES`, in that order) of each note: ``(notes, 6)``.

    Args:
        audio: mono audio (ignored when ``analysis`` is given).
        sample_rate: its rate.
        notes: objects with ``start_s``, ``end_s`` and ``pitch`` (MIDI): :class:`dspfx.ddsp.midi.MidiNote`.
        analysis: a :func:`frame_analysis` of the audio (made with these notes, so that the
            harmonics of a note the tracker reads an octave off are read at its pitch).
    """
    a = analysis if analysis is not None else frame_analysis(audio, sample_rate, frame_rate, notes=notes)
    frames = a["loudness_db"].size
    out = np.zeros((len(notes), len(CONTROL_NAMES)))
    for i, note in enumerate(notes):
        s, e = note_span(note, frames, frame_rate)
        if s >= frames:
            out[i] = np.nan
            continue
        loud = a["loudness_db"][s:e]
        f0 = a["f0_hz"][s:e]
        pitched = a["confidence"][s:e] >= 0.5
        h = a["harmonics"][s:e]
        k = np.arange(1, h.shape[1] + 1)
        centroid = (h * k).sum(axis=1) / np.maximum(h.sum(axis=1), 1e-12)
        deviation = _semitones(f0, note.pitch)
        out[i] = (
            loud.mean(),
            loud.std(),
            int(np.argmax(loud)) / max(1, e - s - 1),
            _vibrato(deviation, frame_rate, float(a["pitch_window_s"])),
            float(centroid[pitched].mean()) if pitched.any() else float(centroid.mean()),
            a["noise_db"][s: min(e, s + ATTACK_FRAMES)].mean(),
        )
    return out
