"""The YIN / pYIN pitch tracker behind :func:`dspfx.ddsp.features.pitch` (``method="yin"``).

YIN's cumulative mean normalised difference (de Cheveigné & Kawahara 2002) per frame, batched
through an FFT autocorrelation (:func:`difference`); pYIN's trough candidates with their
beta-distributed threshold probabilities (Mauch & Dixon 2014, as librosa implements them) and
its Viterbi decoding over pitch bins and voicing (:func:`yin_track`). The two inner loops are
numba-compiled. Frames follow :mod:`dspfx.ddsp.features`' convention (frame ``i`` centred on
sample ``i * hop``).
"""

from __future__ import annotations

import math

import numba
import numpy as np
import torch
from torch import Tensor

__all__ = ["analysis_frame_length", "difference", "yin_track"]

#: Frames per chunk of the batched difference-function computation (bounds memory).
_CHUNK_FRAMES = 2048
#: Frames per Viterbi segment (bounds the back-pointer memory; scores carry across segments).
_VITERBI_SEGMENT = 1 << 15
#: Candidates (troughs) kept per frame for the Viterbi observation (largest probabilities).
_MAX_CANDIDATES = 8


def analysis_frame_length(sample_rate: float, fmin: float) -> int:
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


def difference(frames: Tensor, max_lag: int) -> tuple[Tensor, Tensor]:
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


def yin_track(
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
        raw, yin = difference(frames[start:stop], max_period + 1)
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
