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

import numba
import numpy as np
import torch
from torch import Tensor

from dspfx.checks import positive_number

__all__ = [
    "hop_length",
    "a_weighting_db",
    "loudness_db",
    "pitch",
    "detect_notes",
    "PITCH_METHODS",
]

PITCH_METHODS = ("yin", "pyin", "crepe")

#: Frames per chunk of the batched difference-function computation (bounds memory).
_CHUNK_FRAMES = 2048
#: Frames per Viterbi segment (bounds the back-pointer memory; scores carry across segments).
_VITERBI_SEGMENT = 1 << 15
#: Candidates (troughs) kept per frame for the Viterbi observation (largest probabilities).
_MAX_CANDIDATES = 8


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


def _frame_length(sample_rate: float, fmin: float) -> int:
    """Analysis frame: about 64 ms (CREPE's 1024 samples at 16 kHz) and at least two periods of
    ``fmin`` (plus two samples), as an even number of samples."""
    two_periods = 2 * int(math.ceil(sample_rate / fmin)) + 2
    return max(two_periods, 2 * int(round(0.032 * sample_rate)))


def _fast_len(n: int) -> int:
    """Smallest 2^a 3^b 5^c >= n (sizes torch's FFT handles fastest)."""
    best = 1 << int(math.ceil(math.log2(n)))
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            p = p35
            while p < n:
                p *= 2
            best = min(best, p)
            p35 *= 3
        p5 *= 5
    return best


def _difference(frames: Tensor, max_lag: int) -> tuple[Tensor, Tensor]:
    """YIN difference and cumulative mean normalised difference (YIN eq. 6 and 8) of ``frames``
    ``(F, N)`` (float32) for lags 0..max_lag.

    The difference is the full-frame ``d(k) = sum_{j<N-k} (x_j - x_{j+k})^2`` divided by the
    overlap ``N - k`` (every lag is centred on the frame centre, and unbiased in length). The
    autocorrelation is an FFT in float32 (speed; its rounding, ~1e-7 of the frame energy, moves
    a refined period by far less than a cent); energies and the rest are float64.
    Returns ``(d, d')`` float64; silent frames give ``d' = 1`` everywhere."""
    n = frames.shape[-1]
    n_fft = _fast_len(n + max_lag)
    spec = torch.fft.rfft(frames, n=n_fft)
    acf = torch.fft.irfft((spec * spec.conj()).real, n=n_fft)[:, : max_lag + 1].to(torch.float64)
    cs = torch.nn.functional.pad(torch.cumsum(frames.square(), dim=-1, dtype=torch.float64), (1, 0))
    lags = torch.arange(max_lag + 1, dtype=torch.float64)
    total = cs[:, n : n + 1]
    # cs[m] = sum_{j<m} x_j^2: sum_{j<N-k} x_j^2 + sum_{j>=k} x_j^2 - 2 acf(k)
    diff = (cs[:, n - max_lag : n + 1].flip(-1) + (total - cs[:, : max_lag + 1]) - 2.0 * acf).clamp_min_(0.0)
    diff /= n - lags
    k = lags[1:]
    cum = torch.cumsum(diff[:, 1:], dim=-1)
    floor = 1e-6 * (total / n) * k + 1e-30
    silent = cum <= floor
    cmndf = torch.ones_like(diff)
    cmndf[:, 1:] = torch.where(silent, 1.0, diff[:, 1:] * k / torch.where(silent, 1.0, cum))
    return diff, cmndf


@numba.njit(cache=True)
def _pyin_candidates(  # pragma: no cover
    yin, raw, min_period, sample_rate, thresholds, beta_probs, boltzmann, no_trough_prob,
    fmin, bins_per_octave, n_bins, cand_bin, cand_prob, cand_f0, n_cand, voiced_prob,
):
    """pYIN trough probabilities (as librosa.pyin / the official pYIN software), per frame.

    yin: (F, L) CMNDF for lags min_period .. min_period + L - 1; raw: (F, L + 2) difference for
    lags min_period - 1 .. min_period + L (parabolic refinement of each trough, YIN step 5, on the
    raw difference: symmetric about a periodic dip, unlike the CMNDF). Writes up to K candidates per
    frame (pitch bin, probability, refined f0), their count and the frame's voiced probability.
    """
    n_frames, n_lags = yin.shape
    k_max = cand_bin.shape[1]
    n_thr = thresholds.shape[0]
    pos = np.empty(n_lags, np.int64)
    prob = np.empty(n_lags)
    decay = np.exp(-boltzmann)
    for t in range(n_frames):
        y = yin[t]
        n_tr = 0
        if n_lags > 1 and y[0] < y[1]:
            pos[n_tr] = 0
            n_tr += 1
        for i in range(1, n_lags - 1):
            if y[i] < y[i - 1] and y[i] <= y[i + 1]:
                pos[n_tr] = i
                n_tr += 1
        n_cand[t] = 0
        voiced_prob[t] = 0.0
        if n_tr == 0:
            continue
        for m in range(n_tr):
            prob[m] = 0.0
        gmin = 0
        for m in range(1, n_tr):
            if y[pos[m]] < y[pos[gmin]]:
                gmin = m
        below_min_mass = 0.0
        for j in range(n_thr):
            s = thresholds[j]
            # troughs below the threshold, in lag order, get a Boltzmann prior over their rank
            n_below = 0
            for m in range(n_tr):
                if y[pos[m]] < s:
                    n_below += 1
            if n_below == 0:
                below_min_mass += beta_probs[j]
                continue
            norm = (1.0 - decay) / (1.0 - decay**n_below)
            rank = 0
            for m in range(n_tr):
                if y[pos[m]] < s:
                    prob[m] += beta_probs[j] * norm * decay**rank
                    rank += 1
        prob[gmin] += no_trough_prob * below_min_mass
        total = 0.0  # the voiced probability counts every trough, kept or not
        for m in range(n_tr):
            total += prob[m]
        # keep the K most probable troughs, merged per pitch bin
        for _ in range(k_max):
            best = -1
            for m in range(n_tr):
                if prob[m] > 0.0 and (best < 0 or prob[m] > prob[best]):
                    best = m
            if best < 0:
                break
            i = pos[best]
            shift = 0.0
            r = raw[t]
            a = r[i + 2] + r[i] - 2.0 * r[i + 1]
            b = 0.5 * (r[i + 2] - r[i])
            if abs(b) < abs(a):
                shift = -b / a
            f0 = sample_rate / (min_period + i + shift)
            bin_ = int(np.round(bins_per_octave * np.log2(f0 / fmin)))
            bin_ = min(max(bin_, 0), n_bins - 1)
            merged = False
            for c in range(n_cand[t]):
                if cand_bin[t, c] == bin_:
                    cand_prob[t, c] += prob[best]
                    merged = True
                    break
            if not merged:
                c = n_cand[t]
                cand_bin[t, c] = bin_
                cand_prob[t, c] = prob[best]
                cand_f0[t, c] = f0
                n_cand[t] += 1
            prob[best] = 0.0
        voiced_prob[t] = min(max(total, 0.0), 1.0)


@numba.njit(cache=True)
def _pyin_viterbi(  # pragma: no cover
    cand_bin, cand_prob, n_cand, voiced_prob, n_bins, log_tri, log_stay, log_switch, init,
):
    """Viterbi over 2 * n_bins states (voiced bins, then unvoiced bins) with a local triangular
    pitch transition (log_tri[i, d + w]: log P(bin i -> i + d), rows normalised) and a voicing
    switch probability. Returns the state path and the final (normalised) log scores."""
    n_frames = cand_bin.shape[0]
    half = (log_tri.shape[1] - 1) // 2
    n_states = 2 * n_bins
    back = np.empty((n_frames, n_states), np.int16)
    score = init.copy()
    new = np.empty(n_states)
    to_voiced = np.empty(n_bins)
    to_voiced_src = np.empty(n_bins, np.int64)
    to_unvoiced = np.empty(n_bins)
    to_unvoiced_src = np.empty(n_bins, np.int64)
    obs_voiced = np.full(n_bins, -np.inf)
    for t in range(n_frames):
        # best voicing of each source bin, for a voiced and for an unvoiced destination
        for i in range(n_bins):
            sv = score[i] + log_stay
            su = score[n_bins + i] + log_switch
            if sv >= su:
                to_voiced[i] = sv
                to_voiced_src[i] = i
            else:
                to_voiced[i] = su
                to_voiced_src[i] = n_bins + i
            sv = score[i] + log_switch
            su = score[n_bins + i] + log_stay
            if sv >= su:
                to_unvoiced[i] = sv
                to_unvoiced_src[i] = i
            else:
                to_unvoiced[i] = su
                to_unvoiced_src[i] = n_bins + i
        for c in range(n_cand[t]):
            obs_voiced[cand_bin[t, c]] = np.log(cand_prob[t, c])
        unv = 1.0 - voiced_prob[t]
        log_unvoiced = np.log(unv / n_bins) if unv > 0.0 else -np.inf
        for j in range(n_bins):
            best_v = -np.inf
            arg_v = -1
            best_u = -np.inf
            arg_u = -1
            lo = max(0, j - half)
            hi = min(n_bins - 1, j + half)
            for i in range(lo, hi + 1):
                lt = log_tri[i, j - i + half]
                cu = to_unvoiced[i] + lt
                if cu > best_u or arg_u < 0:
                    best_u = cu
                    arg_u = to_unvoiced_src[i]
                if obs_voiced[j] > -np.inf:
                    cv = to_voiced[i] + lt
                    if cv > best_v or arg_v < 0:
                        best_v = cv
                        arg_v = to_voiced_src[i]
            if obs_voiced[j] > -np.inf:
                new[j] = best_v + obs_voiced[j]
                back[t, j] = arg_v
            else:
                new[j] = -np.inf
                back[t, j] = arg_u
            new[n_bins + j] = best_u + log_unvoiced
            back[t, n_bins + j] = arg_u
        for c in range(n_cand[t]):
            obs_voiced[cand_bin[t, c]] = -np.inf
        top = -np.inf
        for s in range(n_states):
            if new[s] > top:
                top = new[s]
        if top == -np.inf:
            top = 0.0
        for s in range(n_states):
            score[s] = new[s] - top
    path = np.empty(n_frames, np.int64)
    best = 0
    for s in range(n_states):
        if score[s] > score[best]:
            best = s
    path[n_frames - 1] = best
    for t in range(n_frames - 1, 0, -1):
        path[t - 1] = back[t, path[t]]
    return path, score


def _transition_log(n_bins: int, width: int) -> np.ndarray:
    """log of librosa's triangular local transition (odd ``width``, rows normalised)."""
    half = (width - 1) // 2
    offsets = np.arange(-half, half + 1)
    tri = 1.0 - np.abs(offsets) / (half + 1.0)
    dest = np.arange(n_bins)[:, None] + offsets[None, :]
    mat = np.where((dest >= 0) & (dest < n_bins), tri[None, :], 0.0)
    mat = mat / mat.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore"):
        return np.log(mat)


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


def _yin(
    x: np.ndarray, sample_rate: float, hop: int, fmin: float, fmax: float, frame_length: int,
    resolution: float, max_transition_rate: float, switch_prob: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Batched YIN/pYIN tracker on ``x`` ``(B, n)`` float64 -> (f0, confidence) ``(B, frames)``."""
    from scipy.special import betainc

    batch, n = x.shape
    n_frames = n // hop
    min_period = max(2, int(math.floor(sample_rate / fmax)))
    max_period = min(int(math.ceil(sample_rate / fmin)) + 1, frame_length - 3)
    bins_per_semitone = int(math.ceil(1.0 / resolution))
    bins_per_octave = 12 * bins_per_semitone
    n_bins = int(math.floor(bins_per_octave * math.log2(fmax / fmin))) + 1
    if 2 * n_bins > np.iinfo(np.int16).max:
        raise ValueError(
            f"resolution {resolution} semitones over {fmin}..{fmax} Hz gives {n_bins} pitch bins; at most "
            f"{np.iinfo(np.int16).max // 2} are supported: use a coarser resolution"
        )
    thresholds = np.linspace(0.0, 1.0, 101)
    beta_probs = np.diff(betainc(2.0, 18.0, thresholds))
    thresholds = thresholds[1:]

    xt = torch.nn.functional.pad(torch.from_numpy(x).to(torch.float32), (frame_length // 2, frame_length // 2))
    frames = xt.unfold(-1, frame_length, hop)[:, :n_frames]  # (B, F, N), frame i centred on i * hop
    frames = frames.reshape(batch * n_frames, frame_length)
    total = frames.shape[0]
    cand_bin = np.zeros((total, _MAX_CANDIDATES), np.int32)
    cand_prob = np.zeros((total, _MAX_CANDIDATES))
    cand_f0 = np.zeros((total, _MAX_CANDIDATES))
    n_cand = np.zeros(total, np.int64)
    voiced = np.zeros(total)
    for start in range(0, total, _CHUNK_FRAMES):
        stop = min(total, start + _CHUNK_FRAMES)
        raw, yin = _difference(frames[start:stop], max_period + 1)
        _pyin_candidates(
            np.ascontiguousarray(yin[:, min_period : max_period + 1].numpy()),
            np.ascontiguousarray(raw[:, min_period - 1 : max_period + 2].numpy()),
            float(min_period), float(sample_rate), thresholds, beta_probs,
            2.0, 0.01, float(fmin), float(bins_per_octave), n_bins, cand_bin[start:stop],
            cand_prob[start:stop], cand_f0[start:stop], n_cand[start:stop], voiced[start:stop],
        )
    cand_bin = cand_bin.reshape(batch, n_frames, -1)
    cand_prob = cand_prob.reshape(batch, n_frames, -1)
    cand_f0 = cand_f0.reshape(batch, n_frames, -1)
    n_cand = n_cand.reshape(batch, n_frames)
    voiced = voiced.reshape(batch, n_frames)

    semitones_per_frame = max_transition_rate * 12.0 * hop / sample_rate
    width = 2 * max(1, int(math.ceil(semitones_per_frame * bins_per_semitone))) + 1
    log_tri = _transition_log(n_bins, width)
    log_stay, log_switch = math.log(1.0 - switch_prob), math.log(switch_prob)
    centres = fmin * 2.0 ** (np.arange(n_bins) / bins_per_octave)
    f0 = np.empty((batch, n_frames))
    confidence = np.empty((batch, n_frames))
    for b in range(batch):
        init = np.full(2 * n_bins, -math.log(2 * n_bins))
        path = np.empty(n_frames, np.int64)
        for s in range(0, n_frames, _VITERBI_SEGMENT):
            e = min(n_frames, s + _VITERBI_SEGMENT)
            path[s:e], init = _pyin_viterbi(
                cand_bin[b, s:e], cand_prob[b, s:e], n_cand[b, s:e], voiced[b, s:e], n_bins,
                log_tri, log_stay, log_switch, init,
            )
        bins = path % n_bins
        out = centres[bins]
        # refined (parabolic) f0 of the trough in the decoded bin, where there is one
        match = (cand_bin[b] == bins[:, None]) & (np.arange(cand_bin.shape[-1])[None, :] < n_cand[b][:, None])
        has = match.any(axis=1)
        idx = match.argmax(axis=1)
        out[has] = cand_f0[b][np.arange(n_frames), idx][has]
        f0[b] = out
        confidence[b] = np.where(path < n_bins, voiced[b], 0.0)
    return f0, confidence


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
        frame_length = _frame_length(sr, fmin)
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
        f0, conf = _yin(flat, sr, hop, fmin, fmax, frame_length, resolution, max_transition_rate, switch_prob)
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
