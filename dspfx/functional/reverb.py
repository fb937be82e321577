"""Freeverb: the comb bank and the allpass chain of Jezar's Freeverb, as exact autograd Functions.

One Freeverb network (one per output channel) is 8 lowpass-feedback combs in parallel, summed, then
4 "allpasses" in series. With ``u`` the (already scaled) input, a comb of length ``L`` with
feedback ``f[t]`` and damping ``d[t]`` computes, per sample,

    o[t] = w[t - L]                          (read the delay line)
    s[t] = (1 - d[t]) * o[t] + d[t] * s[t-1]    (one-pole lowpass in the loop)
    w[t] = u[t] + f[t] * s[t]                (write the delay line)

and returns ``o``; the bank returns the sum of its combs. An allpass of length ``M`` computes
``b[t] = v[t - M]``, ``out[t] = b[t] - a[t]``, ``v[t] = a[t] + 0.5 * b[t]`` (Freeverb's allpass,
``(1.5 z^-M - 1) / (1 - 0.5 z^-M)``, is not exactly allpass: it is what Freeverb and JUCE compute).

State is explicit and holds no indices: each delay line's state is the last ``L`` values written,
oldest first (``w[-L] .. w[-1]``), packed side by side for the 8 combs (``comb_history``, shape
``(rows, sum(L))``), with the one-pole memories ``s[-1]`` (``comb_lowpass``, ``(rows, 8)``) and the
allpass lines likewise (``allpass_history``, ``(rows, sum(M))``). Rendering in blocks therefore
equals rendering at once, and the gradient w.r.t. the initial state is an ordinary tensor
gradient.

The recursions run in compiled numba loops (``cache=True``), computing in float64 whatever the
input dtype. Their backward passes are hand-written adjoint loops run backwards in time (also
numba): exact gradients w.r.t. the input, the per-sample feedback and damping, the initial state,
and through the returned state. They run on the CPU only: tensors on another device raise
:class:`~dspfx.functional.CPUKernelError` (the loops are sequential in time: a GPU gains nothing there).

Reference: Jezar at Dreampoint, Freeverb (public domain, 2000); JUCE ``juce::Reverb``, used by
``pedalboard.Reverb``; the formulas in ``shared/reference/pedalboard.md``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from numba import njit
from torch import Tensor

from dspfx.functional._compiled import as_numpy, to_torch

__all__ = [
    "FREEVERB_COMB_LENGTHS",
    "FREEVERB_ALLPASS_LENGTHS",
    "FREEVERB_STEREO_SPREAD",
    "FREEVERB_INPUT_GAIN",
    "freeverb_lengths",
    "freeverb_feedback",
    "freeverb_damp",
    "freeverb_rt60",
    "comb_bank",
    "allpass_chain",
    "freeverb_network",
]

#: Comb delay lengths in samples at 44.1 kHz (Freeverb's tuning).
FREEVERB_COMB_LENGTHS = (1116, 1188, 1277, 1356, 1422, 1491, 1557, 1617)
#: Allpass delay lengths in samples at 44.1 kHz, in processing order.
FREEVERB_ALLPASS_LENGTHS = (556, 441, 341, 225)
#: Samples (at 44.1 kHz) added to every delay line of the right channel's network.
FREEVERB_STEREO_SPREAD = 23
#: Input gain (``fixedgain``): the network's input is ``0.015 * x`` (mono) or ``0.015 * (L + R)``.
FREEVERB_INPUT_GAIN = 0.015


def freeverb_lengths(sample_rate: float, lengths_44k: Sequence[int], spread: int = 0) -> tuple[int, ...]:
    """Delay lengths at ``sample_rate``: ``int(int(sample_rate) * (length + spread) / 44100)``.

    This is JUCE's scaling (integer sample rate, integer division), spread included before the
    scaling. Every length is at least 1.

    Args:
        sample_rate: Hz.
        lengths_44k: lengths in samples at 44.1 kHz.
        spread: samples (at 44.1 kHz) added before scaling (23 for Freeverb's right channel).
    """
    sr = int(sample_rate)
    out = tuple(max(1, (sr * (int(n) + int(spread))) // 44100) for n in lengths_44k)
    return out


def freeverb_feedback(room_size: Tensor | float) -> Tensor | float:
    """Comb feedback ``0.28 * room_size + 0.7`` (room_size 0..1 -> 0.7..0.98)."""
    return 0.28 * room_size + 0.7


def freeverb_damp(damping: Tensor | float) -> Tensor | float:
    """One-pole coefficient in the comb loop, ``0.4 * damping`` (damping 0..1 -> 0..0.4)."""
    return 0.4 * damping


def freeverb_rt60(
    room_size: float,
    sample_rate: float,
    comb_lengths: Sequence[int] = FREEVERB_COMB_LENGTHS,
    damping: float = 0.0,
    freq_hz: float = 0.0,
    method: str = "edc",
) -> float:
    """Predicted reverberation time (s) of the comb bank from its loop gains.

    A comb of length ``L`` passes its loop once every ``L / sr`` seconds with gain
    ``a = g * |H(f)|`` (``g = 0.28 * room_size + 0.7`` the feedback, ``H`` the loop's one-pole
    ``(1 - d) / (1 - d e^{-jw})`` with ``d = 0.4 * damping``: 1 at DC, and everywhere for damping
    0), so its echoes fall by 60 dB after ``T60_L = -3 * L / (sr * log10(a))``.

    - ``method="mean"``: that formula with the mean comb length (the simple estimate; the
      measured Schroeder decay of Freeverb is about 4-6 % longer).
    - ``method="edc"`` (default): the bank's energy decay curve as the combs' sum. Comb ``k``
      carries echoes of energy ``a^(2m)`` every ``L_k`` samples, so its mean power is
      ``a^(2 t sr / L_k) / L_k`` and its backward-integrated energy
      ``EDC_k(t) = a^(2 t sr / L_k) / (-2 ln a)``: the same weight for every comb. The bank's
      curve ``EDC(t) ~ sum_k exp(-2 |ln a| sr t / L_k)`` is fitted by a line between -5 and
      -35 dB, as a measurement would (ISO 3382 T30); T60 = -60 dB / slope. The longer combs
      dominate later, so this is longer than the mean-length figure. It matches the measured
      impulse responses to about 1 % (the allpasses, which decay by a factor 0.5 every
      5-13 ms, only smear the onset).

    Args:
        room_size: 0..1.
        sample_rate: Hz.
        comb_lengths: comb lengths at 44.1 kHz (scaled to ``sample_rate`` here).
        damping: 0..1 (the damping knob, not the coefficient).
        freq_hz: frequency at which the loop gain is taken (0: DC, where damping has no effect).
        method: ``"edc"`` or ``"mean"``.

    Returns:
        T60 in seconds (``inf`` when the loop gain is 1, i.e. no decay).
    """
    if method not in ("edc", "mean"):
        raise ValueError(f"freeverb_rt60 method must be 'edc' or 'mean', got {method!r}")
    lengths = np.asarray(freeverb_lengths(sample_rate, comb_lengths), dtype=np.float64)
    g = 0.28 * room_size + 0.7
    d = 0.4 * damping
    w = 2.0 * math.pi * freq_hz / sample_rate
    h = (1.0 - d) / abs(1.0 - d * complex(math.cos(w), -math.sin(w)))
    loop = g * h
    if loop >= 1.0:
        return math.inf
    if method == "mean":
        return -3.0 * float(lengths.mean()) / (sample_rate * math.log10(loop))
    rates = -2.0 * math.log(loop) * sample_rate / lengths  # energy decay rates, 1/s
    t_end = 4.0 * math.log(10.0) / rates.min()  # the slowest comb alone at -40 dB
    t = np.linspace(0.0, t_end, 20001)
    edc = 10.0 * np.log10(np.exp(-np.outer(t, rates)).mean(axis=1))
    fit = (edc <= -5.0) & (edc >= -35.0)
    slope = np.polyfit(t[fit], edc[fit], 1)[0]
    return float(-60.0 / slope)


# --------------------------------------------------------------------------------------------
# compiled loops (float64 inside)
# --------------------------------------------------------------------------------------------


@njit(cache=True)
def _comb_forward(u, fb, dmp, hist, last, lengths, offsets):  # pragma: no cover - compiled
    # u, fb, dmp: (rows, n) float64; hist: (rows, sum L); last: (rows, K). The combs run side by
    # side in one time loop (row k of `lines` is comb k's w: its history, then what it writes).
    rows, n = u.shape
    k_combs = lengths.shape[0]
    y = np.empty((rows, n))
    new_hist = np.empty_like(hist)
    new_last = np.empty_like(last)
    lines = np.empty((k_combs, lengths.max() + n))
    lowpass = np.empty(k_combs)
    for r in range(rows):
        for k in range(k_combs):
            lines[k, : lengths[k]] = hist[r, offsets[k] : offsets[k] + lengths[k]]
            lowpass[k] = last[r, k]
        for t in range(n):
            x = u[r, t]
            f = fb[r, t]
            d = dmp[r, t]
            c = 1.0 - d
            acc = 0.0
            for k in range(k_combs):
                o = lines[k, t]
                s = o * c + lowpass[k] * d
                lowpass[k] = s
                lines[k, lengths[k] + t] = x + f * s
                acc += o
            y[r, t] = acc
        for k in range(k_combs):
            new_hist[r, offsets[k] : offsets[k] + lengths[k]] = lines[k, n : n + lengths[k]]
            new_last[r, k] = lowpass[k]
    return y, new_hist, new_last


@njit(cache=True)
def _comb_backward(u, fb, dmp, hist, last, lengths, offsets, gy, g_hist_out, g_last_out):  # pragma: no cover
    rows, n = u.shape
    k_combs = lengths.shape[0]
    gu = np.zeros((rows, n))
    gfb = np.zeros((rows, n))
    gdmp = np.zeros((rows, n))
    g_hist = np.empty_like(hist)
    g_last = np.empty_like(last)
    for r in range(rows):
        for k in range(k_combs):
            L = lengths[k]
            off = offsets[k]
            # forward again, keeping the line w and the lowpass memories s (s_all[t+1] = s[t])
            w = np.empty(L + n)
            w[:L] = hist[r, off : off + L]
            s_all = np.empty(n + 1)
            s = last[r, k]
            s_all[0] = s
            for t in range(n):
                o = w[t]
                d = dmp[r, t]
                s = o * (1.0 - d) + s * d
                s_all[t + 1] = s
                w[L + t] = u[r, t] + fb[r, t] * s
            # adjoint, backwards in time
            gw = np.zeros(L + n)
            gw[n : n + L] += g_hist_out[r, off : off + L]
            gs = g_last_out[r, k]  # gradient reaching s[t] from later samples
            for t in range(n - 1, -1, -1):
                g = gw[L + t]  # w[L+t] = u[t] + fb[t] * s[t]
                gu[r, t] += g
                gfb[r, t] += g * s_all[t + 1]
                gs_t = gs + g * fb[r, t]
                d = dmp[r, t]
                o = w[t]  # s[t] = o[t] (1 - d[t]) + s[t-1] d[t]
                gw[t] += gy[r, t] + gs_t * (1.0 - d)
                gdmp[r, t] += gs_t * (s_all[t] - o)
                gs = gs_t * d
            g_hist[r, off : off + L] = gw[:L]
            g_last[r, k] = gs
    return gu, gfb, gdmp, g_hist, g_last


@njit(cache=True)
def _allpass_forward(a, hist, lengths, offsets):  # pragma: no cover - compiled
    rows, n = a.shape
    y = a.copy()
    new_hist = np.empty_like(hist)
    for r in range(rows):
        for k in range(lengths.shape[0]):
            M = lengths[k]
            off = offsets[k]
            v = np.empty(M + n)
            v[:M] = hist[r, off : off + M]
            for t in range(n):
                b = v[t]
                x = y[r, t]
                v[M + t] = x + 0.5 * b
                y[r, t] = b - x
            new_hist[r, off : off + M] = v[n : n + M]
    return y, new_hist


@njit(cache=True)
def _allpass_backward(gy, g_hist_out, lengths, offsets):  # pragma: no cover - compiled
    rows, n = gy.shape
    g = gy.copy()  # gradient w.r.t. the current stage's output, then its input
    g_hist = np.empty_like(g_hist_out)
    for r in range(rows):
        for k in range(lengths.shape[0] - 1, -1, -1):
            M = lengths[k]
            off = offsets[k]
            gv = np.zeros(M + n)
            gv[n : n + M] += g_hist_out[r, off : off + M]
            for t in range(n - 1, -1, -1):
                g_out = g[r, t]
                g_write = gv[M + t]  # v[M+t] = a[t] + 0.5 b[t]; out[t] = b[t] - a[t]; b[t] = v[t]
                g[r, t] = g_write - g_out
                gv[t] += 0.5 * g_write + g_out
            g_hist[r, off : off + M] = gv[:M]
    return g, g_hist


# --------------------------------------------------------------------------------------------
# autograd Functions
# --------------------------------------------------------------------------------------------


def _np64(t: Tensor, rows: int | None = None, n: int | None = None) -> np.ndarray:
    """float64 contiguous numpy copy of a detached tensor, broadcast to (rows, n) when asked."""
    return as_numpy(t if rows is None else t.expand(rows, n))


def _layout(lengths: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    lengths_np = np.asarray(lengths, dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths_np)[:-1]]).astype(np.int64)
    return lengths_np, offsets


def _reduce_to(grad: Tensor, shape: torch.Size) -> Tensor:
    """Sum a (rows, n) gradient down to a broadcast input's shape (rows|1, n|1)."""
    if shape[0] == 1 and grad.shape[0] != 1:
        grad = grad.sum(0, keepdim=True)
    if shape[1] == 1 and grad.shape[1] != 1:
        grad = grad.sum(1, keepdim=True)
    return grad


class _CombBank(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, feedback, damp, history, lowpass, lengths):
        rows, n = u.shape
        lengths_np, offsets = _layout(lengths)
        arrays = (_np64(u), _np64(feedback, rows, n), _np64(damp, rows, n), _np64(history), _np64(lowpass))
        y, new_hist, new_last = _comb_forward(*arrays, lengths_np, offsets)
        ctx.save_for_backward(u, feedback, damp, history, lowpass)
        ctx.lengths = lengths
        return to_torch(y, u), to_torch(new_hist, history), to_torch(new_last, lowpass)

    @staticmethod
    def backward(ctx, gy, g_hist, g_last):
        u, feedback, damp, history, lowpass = ctx.saved_tensors
        rows, n = u.shape
        lengths_np, offsets = _layout(ctx.lengths)
        gy = torch.zeros_like(u) if gy is None else gy
        g_hist = torch.zeros_like(history) if g_hist is None else g_hist
        g_last = torch.zeros_like(lowpass) if g_last is None else g_last
        out = _comb_backward(
            _np64(u), _np64(feedback, rows, n), _np64(damp, rows, n), _np64(history), _np64(lowpass),
            lengths_np, offsets, _np64(gy), _np64(g_hist), _np64(g_last),
        )
        gu, gfb, gd, gh, gl = out
        return (
            to_torch(gu, u),
            _reduce_to(to_torch(gfb, feedback), feedback.shape),
            _reduce_to(to_torch(gd, damp), damp.shape),
            to_torch(gh, history),
            to_torch(gl, lowpass),
            None,
        )


class _AllpassChain(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, history, lengths):
        lengths_np, offsets = _layout(lengths)
        y, new_hist = _allpass_forward(_np64(a), _np64(history), lengths_np, offsets)
        ctx.lengths = lengths
        ctx.like = (a.shape, history.shape, a.dtype, a.device)
        return to_torch(y, a), to_torch(new_hist, history)

    @staticmethod
    def backward(ctx, gy, g_hist):
        lengths_np, offsets = _layout(ctx.lengths)
        a_shape, h_shape, dtype, device = ctx.like
        if gy is None:
            gy = torch.zeros(a_shape, dtype=dtype, device=device)
        if g_hist is None:
            g_hist = torch.zeros(h_shape, dtype=dtype, device=device)
        ga, gh = _allpass_backward(_np64(gy), _np64(g_hist), lengths_np, offsets)
        return to_torch(ga, gy), to_torch(gh, g_hist), None


def _check_lengths(lengths: Sequence[int], what: str) -> tuple[int, ...]:
    try:
        out = tuple(int(v) for v in lengths)
    except TypeError:
        raise TypeError(f"{what} must be a sequence of ints, got {lengths!r}") from None
    if not out or any(v < 1 for v in out) or any(int(v) != v for v in lengths):
        raise ValueError(f"{what} must be a non-empty sequence of ints >= 1, got {tuple(lengths)!r}")
    return out


def _check_rows(t: Tensor, name: str, rows: int, n: int, like: Tensor) -> Tensor:
    if not isinstance(t, Tensor):
        t = torch.as_tensor(t, dtype=like.dtype, device=like.device)
    if t.ndim == 0:
        t = t.reshape(1, 1)
    if t.ndim != 2 or t.shape[0] not in (1, rows) or t.shape[1] not in (1, n):
        raise ValueError(f"{name} must be shaped (rows|1, samples|1) = ({rows}|1, {n}|1), got {tuple(t.shape)}")
    return t.to(like.dtype)


def comb_bank(
    u: Tensor,
    feedback: Tensor | float,
    damp: Tensor | float,
    history: Tensor,
    lowpass: Tensor,
    lengths: Sequence[int],
) -> tuple[Tensor, Tensor, Tensor]:
    """Sum of parallel lowpass-feedback combs (Freeverb's comb bank), with explicit state.

    Args:
        u: input, ``(rows, samples)``.
        feedback: loop gain ``f``, ``(rows|1, samples|1)`` or a number; per sample allowed.
        damp: one-pole coefficient ``d`` in the loop (0: no lowpass), same shapes as ``feedback``.
        history: ``(rows, sum(lengths))``: each comb's last ``L`` written values, oldest first,
            combs side by side in the order of ``lengths``.
        lowpass: ``(rows, len(lengths))``: each comb's one-pole memory.
        lengths: comb delay lengths in samples.

    Returns:
        ``(y, history, lowpass)``: the summed comb outputs ``(rows, samples)`` and the state after
        the block. Exact gradients (hand-written adjoint) w.r.t. all tensor inputs.

    Devices: CPU only (a compiled numba loop); tensors on another device raise
    :class:`~dspfx.functional.CPUKernelError` (nothing is copied to the CPU behind the caller's back).
    Gradients: exact (hand-written adjoint) w.r.t. all tensor inputs.
    """
    lengths = _check_lengths(lengths, "comb lengths")
    if not isinstance(u, Tensor) or u.ndim != 2:
        raise ValueError(f"comb_bank input must be a tensor shaped (rows, samples), got {getattr(u, 'shape', u)!r}")
    rows, n = u.shape
    feedback = _check_rows(feedback, "feedback", rows, n, u)
    damp = _check_rows(damp, "damp", rows, n, u)
    if tuple(history.shape) != (rows, sum(lengths)) or tuple(lowpass.shape) != (rows, len(lengths)):
        raise ValueError(
            f"comb state must be shaped ({rows}, {sum(lengths)}) and ({rows}, {len(lengths)}), got "
            f"{tuple(history.shape)} and {tuple(lowpass.shape)}"
        )
    return _CombBank.apply(u, feedback, damp, history.to(u.dtype), lowpass.to(u.dtype), lengths)


def allpass_chain(a: Tensor, history: Tensor, lengths: Sequence[int]) -> tuple[Tensor, Tensor]:
    """Freeverb's allpasses in series (``out = b - a``, ``write a + 0.5 b``), with explicit state.

    Args:
        a: input, ``(rows, samples)``.
        history: ``(rows, sum(lengths))``: each line's last ``M`` written values, oldest first.
        lengths: allpass delay lengths in samples, in processing order.

    Returns:
        ``(y, history)``; exact gradients w.r.t. ``a`` and ``history``.

    Devices: CPU only (a compiled numba loop); tensors on another device raise
    :class:`~dspfx.functional.CPUKernelError` (nothing is copied to the CPU behind the caller's back).
    Gradients: exact (hand-written adjoint) w.r.t. ``a`` and ``history``.
    """
    lengths = _check_lengths(lengths, "allpass lengths")
    if not isinstance(a, Tensor) or a.ndim != 2:
        raise ValueError(f"allpass_chain input must be a tensor shaped (rows, samples), got {getattr(a, 'shape', a)!r}")
    if tuple(history.shape) != (a.shape[0], sum(lengths)):
        raise ValueError(f"allpass state must be shaped ({a.shape[0]}, {sum(lengths)}), got {tuple(history.shape)}")
    return _AllpassChain.apply(a, history.to(a.dtype), lengths)


def freeverb_network(
    u: Tensor,
    feedback: Tensor | float,
    damp: Tensor | float,
    state: tuple[Tensor, Tensor, Tensor],
    comb_lengths: Sequence[int],
    allpass_lengths: Sequence[int],
) -> tuple[Tensor, tuple[Tensor, Tensor, Tensor]]:
    """One Freeverb network: :func:`comb_bank` then :func:`allpass_chain`.

    Args:
        u: scaled input ``(rows, samples)``.
        feedback, damp: as in :func:`comb_bank`.
        state: ``(comb_history, comb_lowpass, allpass_history)``.
        comb_lengths, allpass_lengths: delay lengths in samples (already scaled to the rate).

    Returns:
        ``(wet, state)`` with wet ``(rows, samples)``.
    """
    comb_hist, comb_lp, ap_hist = state
    y, comb_hist, comb_lp = comb_bank(u, feedback, damp, comb_hist, comb_lp, comb_lengths)
    y, ap_hist = allpass_chain(y, ap_hist, allpass_lengths)
    return y, (comb_hist, comb_lp, ap_hist)
