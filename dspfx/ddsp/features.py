"""DDSP input features: A-weighted loudness and fundamental frequency, per frame.

Frame convention (shared by every function here and by :mod:`dspfx.ddsp.data`):

- ``hop = round(sample_rate / frame_rate)`` samples (64 at 16 kHz / 250 frames per second, the
  same rounding as the synths' default hop, :func:`dspfx.functional.control.control_hop`);
- frame ``i`` is centred on sample ``i * hop`` (the analysis window is zero-padded by half its
  length at both ends of the signal, like ``librosa``'s ``center=True, pad_mode="constant"``);
- a signal of ``n`` samples has ``n // hop`` frames, so features -> synth
  (``n_samples = frames * hop``) gives back a signal of the length the features came from
  (when ``n`` is a multiple of ``hop``).

Loudness reference: **0 dB is a full-scale sine** (amplitude 1.0) at a frequency where the
A-weighting is 0 dB (1 kHz). A sine of amplitude ``a`` at ``f`` Hz reads
``20 log10(a) + A(f)`` dB, with ``A(f)`` the IEC 61672 A-weighting in dB
(:func:`a_weighting_db`, same formula as ``librosa.A_weighting``). Values are floored at
-80 dB (DDSP's 80 dB range), so ordinary recordings fall in [-80, 0] and DDSP's input scaling
``loudness / 80 + 1`` maps them into [0, 1].
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from dspfx.checks import positive_number
from dspfx.ddsp.yin import analysis_frame_length, yin_track

__all__ = [
    "hop_length",
    "a_weighting_db",
    "loudness_db",
    "pitch",
    "detect_notes",
    "PITCH_METHODS",
]

PITCH_METHODS = ("yin", "pyin", "crepe")



# --- argument checks ------------------------------------------------------------------------------


def hop_length(sample_rate: float, frame_rate: float = 250.0) -> int:
    """Samples per feature frame: ``round(sample_rate / frame_rate)`` (64 at 16 kHz, 250 Hz).

    Raises:
        ValueError/TypeError: non-positive rates, or a frame rate above the sample rate.
    """
    sr = positive_number(sample_rate, "sample_rate")
    fr = positive_number(frame_rate, "frame_rate")
    hop = int(round(sr / fr))
    if hop < 1:
        raise ValueError(
            f"frame_rate {frame_rate} Hz is above sample_rate {sample_rate} Hz; expected fewer frames than samples"
        )
    return hop


def _as_audio(audio: Any, sample_rate: float, frame_rate: float) -> tuple[Tensor, int]:
    """Validate ``audio`` shaped ``(..., samples)``; return it as a float tensor and the hop."""
    if isinstance(audio, np.ndarray):
        audio = torch.from_numpy(np.ascontiguousarray(audio))
    if not isinstance(audio, Tensor):
        raise TypeError(
            f"audio must be a torch.Tensor or numpy array shaped (..., samples), got {type(audio).__name__}"
        )
    if audio.is_complex():
        raise TypeError(f"audio must be real, got dtype {audio.dtype}")
    if not audio.is_floating_point():
        audio = audio.to(torch.get_default_dtype())
    if audio.ndim == 0:
        raise ValueError("audio is a 0-d tensor; expected (samples,) or (batch, samples)")
    hop = hop_length(sample_rate, frame_rate)
    if audio.shape[-1] < hop:
        raise ValueError(
            f"audio has {audio.shape[-1]} samples (shape {tuple(audio.shape)}); at least one frame "
            f"(hop = {hop} samples at {sample_rate} Hz, {frame_rate} frames/s) is needed"
        )
    if audio.numel() and not bool(torch.isfinite(audio.detach()).all()):
        n_bad = int((~torch.isfinite(audio.detach())).sum())
        raise ValueError(f"audio contains {n_bad} NaN/Inf values (shape {tuple(audio.shape)}); expected finite samples")
    return audio, hop


# --- loudness -------------------------------------------------------------------------------------


def a_weighting_db(frequencies_hz: np.ndarray | Tensor | float, min_db: float | None = -80.0) -> np.ndarray:
    """IEC 61672-1 A-weighting in dB (0 dB at 1 kHz): ``librosa.A_weighting``.

    ``A(f) = 20 log10(12194^2 f^4 / ((f^2 + 20.6^2) sqrt((f^2 + 107.7^2)(f^2 + 737.9^2))
    (f^2 + 12194^2))) + 2.0``, clipped below at ``min_db`` (None: no clip; DC gives -inf).

    Args:
        frequencies_hz: frequencies in Hz (any shape).
        min_db: lower clip in dB (librosa's and DDSP's default -80).

    Returns:
        float64 ndarray of the same shape, in dB.
    """
    import librosa  # imported here: librosa takes about a second to import

    if isinstance(frequencies_hz, Tensor):
        frequencies_hz = frequencies_hz.detach().cpu().numpy()
    f = np.asarray(frequencies_hz, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return np.asarray(librosa.A_weighting(f, min_db=min_db), dtype=np.float64)


def loudness_db(
    audio: Tensor | np.ndarray,
    sample_rate: float,
    frame_rate: float = 250.0,
    n_fft: int | None = None,
    floor_db: float = -80.0,
    ref_db: float = 0.0,
) -> Tensor:
    """A-weighted loudness per frame, in dB (DDSP's ``compute_loudness``, power averaged).

    Power STFT (periodic Hann window of ``n_fft`` samples, hop ``round(sample_rate /
    frame_rate)``, frame ``i`` centred on sample ``i * hop``, zero padding at the ends), each bin
    weighted by the A-weighting curve (in power), **averaged over bins in power**, then
    converted to dB and floored. The average is scaled so that a full-scale sine (amplitude 1)
    at 1 kHz reads 0 dB: ``10 log10(sum_k W_k |X_k|^2 / (n_fft * sum(w^2) / 4)) - ref_db``
    (Parseval: the denominator is the one-sided power of such a sine), i.e. a sine of
    amplitude ``a`` at ``f`` reads ``20 log10(a) + A(f)``.

    Args:
        audio: ``(samples,)``, ``(batch, samples)`` or any ``(..., samples)`` tensor/ndarray.
        sample_rate: Hz.
        frame_rate: frames per second (default 250, DDSP's).
        n_fft: FFT size; default ``512 * sample_rate / 16000`` rounded to an even number (512 at
            16 kHz, DDSP's; 1536 at 48 kHz).
        floor_db: lower limit of the result (default -80 dB: DDSP's 80 dB range).
        ref_db: subtracted from the result (0: the full-scale-sine reference above).

    Returns:
        ``(..., samples // hop)`` tensor of dB values, dtype and device of ``audio``.
        Differentiable with respect to ``audio`` (zero gradient where floored).

    Raises:
        TypeError/ValueError: not a real tensor/array, NaN/Inf, fewer samples than one hop,
            bad rates or ``n_fft``.
    """
    x, hop = _as_audio(audio, sample_rate, frame_rate)
    if n_fft is None:
        n_fft = max(2, 2 * int(round(256 * float(sample_rate) / 16000.0)))
    if isinstance(n_fft, bool) or not isinstance(n_fft, (int, np.integer)) or n_fft < 2:
        raise ValueError(f"n_fft must be an int >= 2, got {n_fft!r}")
    n_fft = int(n_fft)
    lead, n = x.shape[:-1], x.shape[-1]
    n_frames = n // hop
    flat = x.reshape(-1, n)
    window = torch.hann_window(n_fft, periodic=True, dtype=x.dtype, device=x.device)
    spec = torch.stft(
        flat, n_fft, hop_length=hop, win_length=n_fft, window=window, center=True,
        pad_mode="constant", return_complex=True,
    )[..., :n_frames]  # (B, bins, frames): frame i centred on sample i * hop
    power = spec.real**2 + spec.imag**2
    freqs = np.fft.rfftfreq(n_fft, 1.0 / float(sample_rate))
    weights = torch.as_tensor(10.0 ** (a_weighting_db(freqs) / 10.0), dtype=x.dtype, device=x.device)
    weighted = (power * weights[:, None]).sum(dim=-2)
    reference = n_fft * float(window.double().pow(2).sum()) / 4.0
    amin = 10.0 ** ((float(floor_db) + float(ref_db)) / 10.0) * 1e-3
    db = 10.0 * torch.log10(torch.clamp(weighted / reference, min=amin)) - float(ref_db)
    db = torch.clamp(db, min=float(floor_db))
    return db.reshape(*lead, n_frames)


# --- pitch: batched YIN difference function + pYIN-style probabilities + Viterbi ------------------


def _check_pitch_args(sample_rate: float, fmin: Any, fmax: Any) -> tuple[float, float]:
    fmin = positive_number(fmin, "fmin")
    fmax = positive_number(fmax, "fmax")
    if fmin >= fmax:
        raise ValueError(f"fmin ({fmin} Hz) must be below fmax ({fmax} Hz)")
    nyquist = float(sample_rate) / 2.0
    if fmax >= nyquist:
        raise ValueError(
            f"sample_rate {sample_rate} Hz is too low for fmax = {fmax} Hz: fmax must be below "
            f"the Nyquist frequency {nyquist} Hz; lower fmax or use a higher sample rate"
        )
    if float(sample_rate) / fmax < 2.0:
        raise ValueError(f"fmax = {fmax} Hz gives a period under 2 samples at {sample_rate} Hz; lower fmax")
    return fmin, fmax


def pitch(
    audio: Tensor | np.ndarray,
    sample_rate: float,
    frame_rate: float = 250.0,
    method: str = "yin",
    fmin: float = 50.0,
    fmax: float = 2000.0,
    *,
    frame_length: int | None = None,
    resolution: float = 0.2,
    max_transition_rate: float = 35.92,
    switch_prob: float = 0.01,
) -> tuple[Tensor, Tensor]:
    """Fundamental frequency and confidence per frame.

    ``method="yin"`` (default): a batched probabilistic YIN tracker (Mauch & Dixon, "pYIN: a
    fundamental frequency estimator using probabilistic threshold distributions", ICASSP 2014;
    de Cheveigné & Kawahara, "YIN", JASA 2002):

    1. frames of ``frame_length`` samples (default: about 64 ms, like CREPE's 1024 samples at
       16 kHz, and at least two periods of ``fmin``), frame ``i`` centred on sample ``i * hop``;
    2. the cumulative mean normalised difference function of all frames at once (torch: one
       float32 FFT autocorrelation per frame, energies in float64; the difference is taken over
       the whole frame and divided by the overlap, so every lag is centred on the frame centre);
    3. pYIN's threshold distribution (Beta(2, 18) over 100 thresholds, Boltzmann prior over the
       troughs below each threshold, 0.01 to the global minimum when none is): a probability per
       trough; troughs are refined by parabolic interpolation and binned on a pitch grid of
       ``resolution`` semitones (default 0.2: 20 cents);
    4. Viterbi decoding (numba) over voiced and unvoiced copies of the grid, triangular pitch
       transitions of at most ``max_transition_rate`` octaves per second, voicing switch
       probability ``switch_prob`` (pYIN's HMM). The f0 of a frame is the parabolic-refined
       trough in the decoded bin (not quantised to the grid); frames decoded as unvoiced carry
       the path's pitch (the refined trough in that bin if any, else the bin centre), so f0 is
       defined everywhere (what DDSP's decoder needs).

    The confidence is pYIN's voiced probability of the frame (the sum of its trough
    probabilities, in [0, 1]) where the Viterbi path is voiced, and 0 where it decodes the frame
    as unvoiced (so a confident frame is one whose f0 the tracker stands by); silence and noise
    give values near 0. Very long signals are decoded in Viterbi segments of 2^15 frames (131 s
    at 250 frames/s) whose scores carry over (bounded memory).

    ``method="pyin"``: ``librosa.pyin`` with the same frames (``frame_length``, hop, centring;
    ``fill_na=None`` so unvoiced frames carry the best-guess pitch), 10-cent resolution, the
    same confidence (voiced probability where pyin's voicing flag is set, else 0). Slow (the
    reference). ``method="crepe"``: torchcrepe (optional extra), Viterbi decoding, its
    periodicity as the confidence.

    Args:
        audio: ``(samples,)`` or ``(batch, samples)`` (any ``(..., samples)``) tensor/ndarray.
        sample_rate: Hz.
        frame_rate: frames per second (hop ``round(sample_rate / frame_rate)``).
        method: ``"yin"``, ``"pyin"`` or ``"crepe"``.
        fmin, fmax: search range in Hz (default 50 to 2000; fmax below Nyquist).
        frame_length: analysis frame in samples (yin/pyin); default as in step 1.
        resolution: Viterbi pitch grid step in semitones (yin; pyin uses 0.1).
        max_transition_rate: octaves per second (yin, pyin).
        switch_prob: voicing switch probability per frame (yin, pyin).

    Returns:
        ``(f0_hz, confidence)``, each ``(..., samples // hop)``, dtype and device of ``audio``.
        Not differentiable (computed on detached CPU float64 copies).

    Raises:
        ValueError: NaN/Inf audio, fewer samples than one hop, fmin >= fmax, fmax at or above
            Nyquist, unknown method, frame too short for ``fmin``.
        TypeError: audio not a real tensor/array.
        ImportError: ``method="crepe"`` without torchcrepe installed.
    """
    if method not in PITCH_METHODS:
        raise ValueError(f"unknown pitch method {method!r}; expected one of {PITCH_METHODS}")
    x, hop = _as_audio(audio, sample_rate, frame_rate)
    sr = float(sample_rate)
    fmin, fmax = _check_pitch_args(sr, fmin, fmax)
    lead, n = x.shape[:-1], x.shape[-1]
    n_frames = n // hop
    flat = x.detach().reshape(-1, n).to(device="cpu", dtype=torch.float64).numpy()
    if frame_length is None:
        frame_length = analysis_frame_length(sr, fmin)
    if isinstance(frame_length, bool) or not isinstance(frame_length, (int, np.integer)):
        raise TypeError(f"frame_length must be an int (samples), got {frame_length!r}")
    frame_length = int(frame_length)
    if frame_length < int(math.ceil(sr / fmin)) + 3:
        raise ValueError(
            f"frame_length {frame_length} is too short for fmin = {fmin} Hz at {sr} Hz: it must hold "
            f"a period of fmin plus 3 samples ({int(math.ceil(sr / fmin)) + 3}); raise it or raise fmin"
        )
    resolution = positive_number(resolution, "resolution")
    max_transition_rate = positive_number(max_transition_rate, "max_transition_rate")
    switch_prob = positive_number(switch_prob, "switch_prob")
    if switch_prob >= 1:
        raise ValueError(f"switch_prob must be in (0, 1), got {switch_prob}")

    if method == "yin":
        f0, conf = yin_track(flat, sr, hop, fmin, fmax, frame_length, resolution, max_transition_rate, switch_prob)
    elif method == "pyin":
        import librosa

        f0, voiced_flag, conf = librosa.pyin(
            flat, fmin=fmin, fmax=fmax, sr=sr, frame_length=frame_length, hop_length=hop, center=True,
            pad_mode="constant", fill_na=None, max_transition_rate=max_transition_rate, switch_prob=switch_prob,
        )
        f0, conf = f0[..., :n_frames], np.where(voiced_flag, conf, 0.0)[..., :n_frames]
    else:
        f0, conf = _crepe(flat, sr, hop, fmin, fmax, n_frames, x.device)
    out = dict(dtype=x.dtype if x.is_floating_point() else torch.float32, device=x.device)
    f0_t = torch.as_tensor(np.ascontiguousarray(f0)).to(**out).reshape(*lead, n_frames)
    conf_t = torch.as_tensor(np.ascontiguousarray(conf)).to(**out).reshape(*lead, n_frames)
    return f0_t, conf_t


def _crepe(
    x: np.ndarray, sr: float, hop: int, fmin: float, fmax: float, n_frames: int, device: torch.device
) -> tuple[np.ndarray, np.ndarray]:
    """torchcrepe (optional): full model, Viterbi decoding, periodicity as confidence."""
    try:
        import torchcrepe  # type: ignore[import-not-found]
    except Exception as err:  # ImportError, or torchaudio failing to load underneath
        raise ImportError(
            f"pitch(method='crepe') needs the optional torchcrepe package, which could not be imported "
            f"({type(err).__name__}: {err}). Install it with `pip install torchcrepe` (the dspfx "
            f"'crepe' extra), or use method='yin' (default, fast) or method='pyin' (librosa)"
        ) from err
    audio = torch.from_numpy(x).to(torch.float32)
    if int(sr) != 16000:
        from dspfx.io import resample

        audio = resample(audio, int(sr), 16000)
    crepe_hop = max(1, int(round(16000 * hop / sr)))
    rows = [
        torchcrepe.predict(
            audio[i : i + 1], 16000, hop_length=crepe_hop, fmin=fmin, fmax=min(fmax, 8000.0), model="full",
            decoder=torchcrepe.decode.viterbi, return_periodicity=True, device=str(device), pad=True,
        )
        for i in range(audio.shape[0])
    ]
    f0 = torch.cat([r[0] for r in rows]).cpu().double().numpy()
    periodicity = torch.cat([r[1] for r in rows]).cpu().double().numpy()
    if f0.shape[-1] < n_frames:  # pad by holding the last value
        pad = n_frames - f0.shape[-1]
        f0 = np.concatenate([f0, np.repeat(f0[..., -1:], pad, axis=-1)], axis=-1)
        periodicity = np.concatenate([periodicity, np.repeat(periodicity[..., -1:], pad, axis=-1)], axis=-1)
    return f0[..., :n_frames], periodicity[..., :n_frames]


# --- note detection (DDSP colab) ---------------------------------------------------------------


def detect_notes(
    loudness: Tensor | np.ndarray,
    confidence: Tensor | np.ndarray,
    threshold: float = 1.0,
    smoothing: int = 40,
    floor_db: float = -80.0,
    confidence_level: float = 0.7,
) -> tuple[np.ndarray, np.ndarray]:
    """Note-on frames, as the DDSP timbre-transfer colab's ``detect_notes``.

    ``ratio = smooth(confidence^2, smoothing frames) * (loudness - floor_db) /
    ((mean(loudness) - floor_db) * confidence_level^2)``; a frame is "on" where
    ``ratio >= threshold``. The moving average is centred, over ``smoothing`` frames.

    Args:
        loudness: ``(frames,)`` loudness in dB (:func:`loudness_db`).
        confidence: ``(frames,)`` pitch confidence in [0, 1] (:func:`pitch`).
        threshold: note threshold (default 1.0; higher is stricter).
        smoothing: moving-average length in frames (default 40; at most the clip's length).
        floor_db: loudness floor (default -80 dB).
        confidence_level: default 0.7.

    Returns:
        ``(mask, ratio)``: boolean ndarray and float64 ndarray shaped ``(frames,)``.
    """
    loud = np.asarray(loudness.detach().cpu() if isinstance(loudness, Tensor) else loudness, dtype=np.float64)
    conf = np.asarray(confidence.detach().cpu() if isinstance(confidence, Tensor) else confidence, dtype=np.float64)
    if loud.ndim != 1 or loud.shape != conf.shape:
        raise ValueError(
            f"loudness and confidence must be 1-D and of equal length (frames,), got shapes "
            f"{loud.shape} and {conf.shape}"
        )
    if loud.size == 0:
        raise ValueError("loudness has no frames")
    smoothing = max(1, min(int(smoothing), loud.size))  # a clip shorter than the window: the whole clip
    kernel = np.ones(smoothing) / smoothing
    smooth = np.convolve(conf**2, kernel, mode="same")
    level = (loud.mean() - floor_db) * confidence_level**2
    ratio = smooth * (loud - floor_db) / max(level, 1e-12)
    return ratio >= threshold, ratio
