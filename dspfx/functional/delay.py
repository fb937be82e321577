"""Integer-sample feedback delay (echo): an exact, vectorised feedback comb with explicit state.

The delay line holds ``buf[n] = x[n] + g[n] * buf[n - D]`` and the echo is read ``D`` samples
later, ``d[n] = buf[n - D]``; the output mixes it with the dry input, ``y = (1 - mix) x + mix d``.

Because ``D`` is an integer, the block (padded to a multiple of ``D``) can be laid out as rows of
``D`` samples, ``(K, D)``; then ``buf[k, j] = x[k, j] + g[k, j] * buf[k - 1, j]`` is a
*first-order* recursion along the row index ``k``, independent for each column ``j``. All
``batch * channels * D`` columns run in one call of :func:`dspfx.functional.iir` (torchlpc's
compiled recursion, exact gradients w.r.t. input, feedback and the carried state), with no Python
loop over samples or blocks. Per-sample feedback stays exact: ``g[k, j]`` is the coefficient of
the sample it belongs to.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from dspfx.functional.control import as_signal, check_signal
from dspfx.functional.recursive import iir
from dspfx.functional.modulation import DelayLoop

__all__ = ["feedback_delay", "pedalboard_delay_samples", "damped_feedback_delay", "damped_delay_state", "damping_pole"]


def pedalboard_delay_samples(delay_seconds: float, sample_rate: float) -> int:
    """The integer delay pedalboard's ``Delay`` uses: ``floor(float32(delay_seconds) * sample_rate)``.

    pedalboard holds the delay in seconds as a float32 and truncates ``seconds * sample_rate``
    (computed in double) to an integer, so a delay given as exactly ``D / sample_rate`` seconds
    may come out as ``D - 1`` samples when float32 rounds it down (``4 / 44100`` s gives 3).
    Checked against pedalboard 0.9.26 on 3336 settings (1 to 3400 samples, 22.05 to 96 kHz).

    Args:
        delay_seconds: delay in seconds (>= 0, finite).
        sample_rate: in Hz (> 0).

    Returns:
        The delay in whole samples (>= 0).
    """
    if not (isinstance(delay_seconds, (int, float)) and math.isfinite(delay_seconds) and delay_seconds >= 0):
        raise ValueError(f"delay_seconds must be a finite number >= 0, got {delay_seconds!r}")
    if not (isinstance(sample_rate, (int, float)) and math.isfinite(sample_rate) and sample_rate > 0):
        raise ValueError(f"sample_rate must be a positive number, got {sample_rate!r}")
    return int(math.floor(float(np.float32(delay_seconds)) * float(sample_rate)))


def _as_gain(value: Tensor | float, name: str, x: Tensor) -> Tensor:
    """A feedback or mix control as a (B|1, 1|C, T|1) tensor of x's dtype."""
    return as_signal(value, x, name)


def _to_columns(v: Tensor, delay: int, rows: int) -> Tensor:
    """(B, C, T) -> (B, C * D, K): zero-pad to K * D samples, sample k * D + j lands at [j, k]."""
    b, c, t = v.shape
    v = F.pad(v, (0, rows * delay - t))
    return v.reshape(b, c, rows, delay).transpose(-1, -2).reshape(b, c * delay, rows)


def feedback_delay(
    x: Tensor,
    delay_samples: int,
    feedback: Tensor | float,
    mix: Tensor | float,
    state: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Feedback delay (echo) with an integer delay: pedalboard's ``Delay`` recursion.

    Per sample ``n`` (``D = delay_samples``, ``g = feedback``)::

        d[n]   = buf[n - D]                  # the echo, read before writing
        buf[n] = x[n] + g[n] * d[n]          # written back into the line
        y[n]   = (1 - mix[n]) * x[n] + mix[n] * d[n]

    so the wet path is the feedback comb ``d[n] = x[n - D] + g[n - D] d[n - D]``: an impulse
    gives ``mix * g**(k - 1)`` at ``k * D`` samples. Computed exactly as a first-order recursion
    along rows of ``D`` samples (see the module docstring), one :func:`iir` call per block.

    Args:
        x: ``(batch, channels, samples)`` real tensor.
        delay_samples: the delay ``D``, an int >= 1 (not differentiable).
        feedback: ``g``, a float or a tensor broadcastable to ``(batch, channels, samples)``
            (per-sample values exact). The loop is stable for ``|g| < 1``; ``|g| = 1`` repeats
            an echo forever at constant level (marginally stable); larger values blow up.
        mix: wet fraction, same shapes as ``feedback``; 0 is dry, 1 is the echo only.
        state: the delay line's last ``D`` values ``buf[n0 - D .. n0 - 1]`` before the block,
            ``(batch, channels, D)``, OLDEST first; ``None`` means silence.

    Returns:
        ``(y, state)``: ``y`` shaped like ``x``, and the line's last ``D`` values after the block
        (same layout), so that rendering in blocks with the carried state equals rendering at
        once. Differentiable w.r.t. ``x``, ``feedback``, ``mix`` and ``state``.

    Raises:
        TypeError: non-tensor ``x``, non-integer ``delay_samples``, complex inputs.
        ValueError: bad shapes, ``delay_samples < 1``.

    Reference: pedalboard ``Delay`` (JUCE ``dsp::DelayLine`` without interpolation).
    """
    check_signal(x)
    if isinstance(delay_samples, bool) or not isinstance(delay_samples, (int, np.integer)):
        raise TypeError(f"delay_samples must be an int, got {type(delay_samples).__name__} {delay_samples!r}")
    delay = int(delay_samples)
    if delay < 1:
        raise ValueError(f"delay_samples must be >= 1, got {delay}")
    batch, channels, n = x.shape
    g = _as_gain(feedback, "feedback", x)
    m = _as_gain(mix, "mix", x)
    if state is None:
        state = x.new_zeros(batch, channels, delay)
    else:
        if not isinstance(state, Tensor):
            raise TypeError(f"state must be a tensor shaped (batch, channels, {delay}), got {type(state).__name__}")
        if tuple(state.shape) != (batch, channels, delay):
            raise ValueError(
                f"state must be shaped (batch, channels, delay_samples) = {(batch, channels, delay)}, "
                f"got {tuple(state.shape)}"
            )
        state = state.to(x.dtype)
    if n == 0:
        return x, state

    if n <= delay:
        # every sample reads the line before the block: no recursion inside the block
        buf = x + g * state[..., :n]
    else:
        rows = -(-n // delay)
        x_cols = _to_columns(x, delay, rows)  # (B, C*D, K)
        if g.shape[-1] == 1:
            coef = g.reshape(g.shape[0], g.shape[1], 1, 1).expand(g.shape[0], g.shape[1], delay, 1)
            coef = coef.reshape(g.shape[0], g.shape[1] * delay, 1, 1)
        else:
            coef = _to_columns(g, delay, rows).unsqueeze(-1)  # (B|1, C|1 * D, K, 1)
        if coef.shape[1] != channels * delay:
            coef = coef.reshape(coef.shape[0], -1, delay, coef.shape[2], 1)
            coef = coef.expand(coef.shape[0], channels, delay, coef.shape[3], 1)
            coef = coef.reshape(coef.shape[0], channels * delay, coef.shape[3], 1)
        a = torch.cat([torch.ones_like(coef), -coef], dim=-1)
        one = torch.ones(1, dtype=x.dtype, device=x.device)
        hist = state.reshape(batch, channels * delay, 1)
        buf_cols, _ = iir(x_cols, one, a, (x.new_zeros(batch, channels * delay, 0), hist))
        buf = buf_cols.reshape(batch, channels, delay, rows).transpose(-1, -2).reshape(batch, channels, -1)[..., :n]
    line = torch.cat([state, buf], dim=-1)  # buf[n0 - D .. n0 + n - 1]
    echo = line[..., :n]
    y = (1 - m) * x + m * echo
    return y, line[..., n:]


# ============================================================================ fractional, damped echo


def damping_pole(damping_hz: Tensor | float, sample_rate: float) -> Tensor:
    """Pole of the one-pole lowpass in the echo loop: ``p = exp(-2 pi damping_hz / sample_rate)``.

    The filter ``z[n] = (1 - p) w[n] + p z[n-1]`` (impulse-invariant one-pole, unity gain at DC)
    loses ``1 - |H|`` per trip around the loop at each frequency, so the repeats get darker.

    Args:
        damping_hz: cutoff in Hz (a number or a tensor), > 0.
        sample_rate: in Hz.

    Returns:
        ``p`` in ``(0, 1)``, same shape (a 0-d tensor for a number); differentiable.
    """
    if not (isinstance(sample_rate, (int, float)) and math.isfinite(sample_rate) and sample_rate > 0):
        raise ValueError(f"sample_rate must be a positive number, got {sample_rate!r}")
    fc = damping_hz if isinstance(damping_hz, Tensor) else torch.tensor(float(damping_hz), dtype=torch.float64)
    return torch.exp(-2.0 * math.pi * fc / float(sample_rate))


def damped_delay_state(
    batch: int,
    channels: int,
    max_delay_samples: float,
    *,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> tuple[Tensor, Tensor]:
    """Silent state of :func:`damped_feedback_delay`: ``(history, damping_state)`` shaped
    ``(batch, channels, ceil(max_delay_samples) + 1)`` and ``(batch, channels, 1)``."""
    ok = isinstance(max_delay_samples, (int, float)) and math.isfinite(max_delay_samples)
    if not (ok and max_delay_samples >= 1):
        raise ValueError(f"max_delay_samples must be a finite number >= 1, got {max_delay_samples!r}")
    length = int(math.ceil(max_delay_samples)) + 1
    return (
        torch.zeros(batch, channels, length, dtype=dtype, device=device),
        torch.zeros(batch, channels, 1, dtype=dtype, device=device),
    )


def damped_feedback_delay(
    x: Tensor,
    delay_samples: Tensor | float,
    feedback: Tensor | float,
    mix: Tensor | float,
    damping: Tensor | float = 0.0,
    state: tuple[Tensor, Tensor] | None = None,
    *,
    max_delay_samples: float | None = None,
) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """Feedback echo with a fractional (per-sample, differentiable) delay and a one-pole lowpass
    in the loop.

    Per sample ``n`` (``d`` the delay in samples, ``p`` the damping pole)::

        w[n]   = buf(n - d)                              # read first: linear interpolation
        z[n]   = (1 - p[n]) * w[n] + p[n] * z[n - 1]     # damping (p = 0: off)
        buf[n] = x[n] + g[n] * z[n]                      # then write
        y[n]   = (1 - mix[n]) * x[n] + mix[n] * w[n]

    With a whole-sample ``d`` and ``p = 0`` this is exactly :func:`feedback_delay`
    (pedalboard's ``Delay``). The delay is clamped into ``[1, L - 1]`` samples (``L`` the
    history length; a read needs at least one sample of delay); the gradient is zero where the
    clamp acts. The loop runs in a compiled kernel (numba; the delay line shared with
    :func:`dspfx.functional.modulation.modulated_delay`, :class:`~dspfx.functional.modulation.DelayLoop`,
    here reading before writing, with the loop filter, in float64 for every input dtype) with an
    exact hand-written backward (adjoint loop backwards in time) w.r.t. the input, the delay
    (through the interpolation slope), feedback, mix, the damping pole and the state. CPU
    kernels only: tensors on another device raise :class:`~dspfx.functional.CPUKernelError`.

    Args:
        x: ``(batch, channels, samples)`` real tensor.
        delay_samples: fractional delay (>= 1 sample), number or tensor broadcastable to ``x``.
        feedback: ``g``, broadcastable to ``x``; stable for ``|g| < 1``.
        mix: wet fraction, broadcastable to ``x``.
        damping: the pole ``p`` in ``[0, 1)`` (see :func:`damping_pole`), broadcastable to ``x``.
        state: ``(history, damping_state)`` from :func:`damped_delay_state` or a previous block
            (the line's last ``L`` values, oldest first, and the filter's last output); ``None``
            means silence (then ``max_delay_samples`` is required).
        max_delay_samples: longest delay, sets ``L = ceil(max) + 1`` when ``state`` is None.

    Returns:
        ``(y, state)``; blocks with the carried state equal one call.

    Reference: pedalboard ``Delay`` (the integer, undamped case); the damped loop is the classic
    "tape echo" with a lowpass in the feedback path (Zoelzer, DAFX, ch. 2).
    """
    check_signal(x)
    batch, channels, n = x.shape
    if state is None:
        if max_delay_samples is None:
            raise ValueError("damped_feedback_delay needs max_delay_samples when no state is given")
        state = damped_delay_state(batch, channels, max_delay_samples, dtype=x.dtype, device=x.device)
    if not (isinstance(state, (tuple, list)) and len(state) == 2 and all(isinstance(s, Tensor) for s in state)):
        raise TypeError("state must be a (history, damping_state) pair of tensors from damped_delay_state")
    hist, z0 = state
    if hist.ndim != 3 or tuple(hist.shape[:2]) != (batch, channels) or hist.shape[-1] < 2:
        raise ValueError(f"state history must be shaped ({batch}, {channels}, L >= 2), got {tuple(hist.shape)}")
    if tuple(z0.shape) != (batch, channels, 1):
        raise ValueError(f"state damping_state must be shaped {(batch, channels, 1)}, got {tuple(z0.shape)}")
    length = hist.shape[-1]
    signals = []
    for value, name in ((delay_samples, "delay_samples"), (feedback, "feedback"), (mix, "mix"), (damping, "damping")):
        signals.append(_as_gain(value, name, x).expand(x.shape))
    if n == 0:
        return x, (hist, z0)
    rows = batch * channels
    cpu = torch.device("cpu")
    args = [t.to(cpu).reshape(rows, -1) for t in (x, *signals, hist.to(x.dtype))]
    args.append(z0.to(x.dtype).to(cpu).reshape(rows))
    x_r, d_r, g_r, m_r, p_r, hist_r, z0_r = args
    # the shared delay-line loop: read first (delays >= 1 sample), then write; the one-pole
    # lowpass always runs (p = 0 passes the echo unchanged); float64 arithmetic for every dtype
    y, hist_out, z_out = DelayLoop.apply(x_r, d_r, g_r, m_r, p_r, hist_r, z0_r, 1.0, False, 1.0, False)
    return y.reshape(batch, channels, n).to(x.device), (
        hist_out.reshape(batch, channels, length).to(x.device),
        z_out.reshape(batch, channels, 1).to(x.device),
    )
