"""Memoryless nonlinearities: clippers, a bit crusher, Chebyshev series, biased and learned curves.

Every function here is pure and differentiable (the bit crusher through a stated
straight-through estimator) and works on tensors of any shape; parameters broadcast against the
signal, so a per-sample control ``(batch|1, 1, samples|1)`` drives them like a constant does.

Conventions shared by the soft clippers: ``threshold`` is the linear output ceiling ``t > 0``;
each curve has slope 1 at the origin and saturates at ``+-t``:

- ``"hard"``:   ``clamp(x, -t, t)``
- ``"soft"``:   ``t * tanh(x / t)``
- ``"cubic"``:  ``t * g(x / t)`` with ``g(u) = u - 4 u^3 / 27`` for ``|u| <= 3/2``, ``sign(u)``
  beyond: the classic cubic soft clipper ``v - v^3 / 3`` (``v = 2u/3``) scaled by 3/2, so it
  reaches the ceiling exactly at ``|x| = 1.5 t`` with zero slope and stays flat beyond.
- ``"arctan"``: ``t * (2 / pi) * atan(pi x / (2 t))``
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

__all__ = [
    "CLIP_CURVES",
    "hard_clip",
    "soft_clip",
    "cubic_clip",
    "arctan_clip",
    "clip",
    "bitcrush",
    "chebyshev_polynomials",
    "chebyshev_series",
    "biased_curve",
    "tanh_curve",
    "mlp_curve",
]

CLIP_CURVES = ("hard", "soft", "cubic", "arctan")

_LN2 = math.log(2.0)


def _as_tensor_like(value: Tensor | float, x: Tensor, name: str) -> Tensor:
    if isinstance(value, Tensor):
        if not value.is_floating_point():
            return value.to(dtype=x.dtype, device=x.device)
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a tensor or a real number, got {type(value).__name__}")
    return torch.tensor(float(value), dtype=x.dtype, device=x.device)


# half types compute scalar operands differently (e.g. division as a reciprocal multiply): not bit-identical
_FAST_DTYPES = (torch.float32, torch.float64)


def _static_scalar(value: Tensor, x: Tensor) -> float | None:
    """``value`` as a python float when the fast no-autograd path may use it, else ``None``.

    The fast path (scalar operands, in-place ops on a fresh output buffer) is taken only under
    ``torch.no_grad()`` for a one-element CPU parameter of ``x``'s dtype (float32 or float64)
    that does not widen ``x``'s shape (a static knob control ``(1, 1, 1)`` against
    ``(batch, channels, samples)``), outside torch.func transforms. A float32/float64 scalar
    operand is applied in the tensor's dtype, so every element is computed by the same
    operations on the same values as the broadcast-tensor path: the outputs are bit-identical
    (checked in the tests).
    """
    if (
        torch.is_grad_enabled()
        or value.numel() != 1
        or value.ndim > x.ndim
        or value.dtype != x.dtype
        or x.dtype not in _FAST_DTYPES
        or value.device.type != "cpu"
        or x.device.type != "cpu"
        or _is_transformed(x)
        or _is_transformed(value)
    ):
        return None
    return value.item()


def _is_transformed(t: Tensor) -> bool:
    """True for a torch.func (vmap / grad / jvp) wrapper, where ``.item()`` is not allowed."""
    return torch._C._functorch.is_functorch_wrapped_tensor(t)


def _check_signal(x: Tensor, name: str = "x") -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor, got dtype {x.dtype}")


def hard_clip(x: Tensor, threshold: Tensor | float) -> Tensor:
    """Hard clipper: ``y = clamp(x, -t, t)``.

    Args:
        x: signal, any shape.
        threshold: linear ceiling ``t > 0``, broadcastable against ``x``.

    Returns:
        the clipped signal (the broadcast shape of ``x`` and ``threshold``).

    Gradients are exact away from the kinks ``|x| = t``: ``dy/dx = 1`` inside, ``0`` where
    clipped; ``dy/dt = sign(x)`` where clipped, ``0`` inside.

    Reference: ``pedalboard.Clipping`` (hard clip at ``+-10**(threshold_db/20)``).
    """
    _check_signal(x)
    t = _as_tensor_like(threshold, x, "threshold")
    tf = _static_scalar(t, x)
    if tf is not None:  # scalar bounds: clamp with tensor bounds is a slow broadcasting kernel
        return torch.clamp(x, min=-tf, max=tf)
    return torch.clamp(x, min=-t, max=t)


def soft_clip(x: Tensor, threshold: Tensor | float = 1.0) -> Tensor:
    """tanh soft clipper with slope 1 at 0 and asymptote ``+-t``: ``y = t * tanh(x / t)``.

    Args:
        x: signal, any shape.
        threshold: linear ceiling ``t > 0``, broadcastable against ``x``.

    Returns:
        the clipped signal, broadcast shape.
    """
    _check_signal(x)
    t = _as_tensor_like(threshold, x, "threshold")
    tf = _static_scalar(t, x)
    if tf is not None:  # the same operations, in place on one fresh buffer
        return torch.div(x, tf).tanh_().mul_(tf)
    return t * torch.tanh(x / t)


def cubic_clip(x: Tensor, threshold: Tensor | float = 1.0) -> Tensor:
    """Cubic soft clipper with slope 1 at 0, flat at ``+-t`` for ``|x| >= 1.5 t``.

    ``y = t * (u - 4 u^3 / 27)`` with ``u = clamp(x / t, -3/2, 3/2)``: the classic
    ``v - v^3 / 3`` curve (J. O. Smith, *Physical Audio Signal Processing*, "cubic soft
    clipper") rescaled so its knee lands at the threshold. Continuous with a continuous first
    derivative, so gradients are smooth everywhere.

    Args:
        x: signal, any shape.
        threshold: linear ceiling ``t > 0``, broadcastable against ``x``.

    Returns:
        the clipped signal, broadcast shape.
    """
    _check_signal(x)
    t = _as_tensor_like(threshold, x, "threshold")
    tf = _static_scalar(t, x)
    if tf is not None:  # the same operations in the same order, on two fresh buffers
        u = torch.div(x, tf).clamp_(-1.5, 1.5)
        w = torch.mul(u, 4.0 / 27.0).mul_(u).mul_(u)
        return torch.sub(u, w, out=w).mul_(tf)
    u = torch.clamp(x / t, -1.5, 1.5)
    return t * (u - (4.0 / 27.0) * u * u * u)


def arctan_clip(x: Tensor, threshold: Tensor | float = 1.0) -> Tensor:
    """Arctangent soft clipper with slope 1 at 0 and asymptote ``+-t``.

    ``y = t * (2 / pi) * atan(pi x / (2 t))``.

    Args:
        x: signal, any shape.
        threshold: linear ceiling ``t > 0``, broadcastable against ``x``.

    Returns:
        the clipped signal, broadcast shape.
    """
    _check_signal(x)
    t = _as_tensor_like(threshold, x, "threshold")
    tf = _static_scalar(t, x)
    if tf is not None:  # the same operations; t * (2 / pi) rounded in the tensor's dtype as before
        k = (t * (2.0 / math.pi)).item()
        return torch.mul(x, 0.5 * math.pi).div_(tf).atan_().mul_(k)
    return t * (2.0 / math.pi) * torch.atan((0.5 * math.pi) * x / t)


_CLIPPERS = {"hard": hard_clip, "soft": soft_clip, "cubic": cubic_clip, "arctan": arctan_clip}


def clip(x: Tensor, threshold: Tensor | float, curve: str = "hard") -> Tensor:
    """Clip ``x`` at the linear ceiling ``threshold`` with one of :data:`CLIP_CURVES`.

    Args:
        x: signal, any shape.
        threshold: linear ceiling ``t > 0``, broadcastable against ``x``.
        curve: ``"hard"``, ``"soft"`` (tanh), ``"cubic"`` or ``"arctan"`` (see the module doc).

    Returns:
        the clipped signal, broadcast shape.
    """
    if curve not in _CLIPPERS:
        raise ValueError(f"clip curve must be one of {', '.join(CLIP_CURVES)}; got {curve!r}")
    return _CLIPPERS[curve](x, threshold)


def bitcrush(x: Tensor, bit_depth: Tensor | float) -> Tensor:
    """Quantise to steps of ``2**-bit_depth``: ``y = round_half_even(x * s) * (1 / s)``, ``s = 2**b``.

    ``bit_depth`` may be fractional (``s`` is then not a power of two). The output is computed
    as ``round(x * s) * (1 / s)``, the same operation order as pedalboard/JUCE, so a float32
    render is bit-identical to ``pedalboard.Bitcrush`` for the same float32 ``s``.

    Gradients (straight-through estimators; the staircase itself has zero derivative almost
    everywhere):

    - w.r.t. ``x``: identity, ``dy/dx = 1``.
    - w.r.t. ``bit_depth``: the quantisation-noise model. The error ``e = y - x`` is treated as
      noise whose amplitude is proportional to the step ``2**-b`` (its power ``step^2 / 12``
      falls 6.02 dB per bit), i.e. ``y(b') = x + e * 2**-(b' - b)`` near ``b``, which gives
      ``dy/db = -ln(2) * e``. Along this estimator ``d/db sum(e^2) = -2 ln(2) sum(e^2)``: more
      bits always lower the error, as they do on average.

    Forward values are exact (the estimator terms are added as exact zeros).

    Args:
        x: signal, any shape.
        bit_depth: bits ``b`` (any real; the units use 1 .. 32), broadcastable against ``x``.

    Returns:
        the quantised signal, broadcast shape.

    Reference: ``pedalboard.Bitcrush`` (juce-free formula in the pedalboard notes).
    """
    _check_signal(x)
    b = _as_tensor_like(bit_depth, x, "bit_depth")
    if (
        not torch.is_grad_enabled()
        and b.numel() == 1
        and b.ndim <= x.ndim
        and x.dtype in _FAST_DTYPES
        and x.device.type == b.device.type == "cpu"
        and not (_is_transformed(x) or _is_transformed(b))
    ):
        return _bitcrush_static(x, *_bitcrush_steps(b, x.dtype))
    with torch.no_grad():
        scale = torch.pow(torch.tensor(2.0, dtype=b.dtype, device=b.device), b.detach()).to(x.dtype)
        q = torch.round(x.detach() * scale) * torch.reciprocal(scale)
        e = q - x.detach()
    # Straight-through: value q exactly; d/dx = 1; d/db = -ln2 * e (noise-model estimator).
    through_x = x - x.detach()
    through_b = e * torch.expm1(-_LN2 * (b - b.detach()))
    return q + through_x + through_b


def _bitcrush_steps(b: Tensor, dtype: torch.dtype) -> tuple[float, float]:
    """``(s, 1 / s)`` with ``s = 2**b`` for a one-element ``b``, as the autograd path rounds them
    (``s`` computed in ``b``'s dtype, cast to the signal's ``dtype``, reciprocal in that dtype)."""
    scale = torch.pow(torch.tensor(2.0, dtype=b.dtype, device=b.device), b).to(dtype)
    return scale.item(), torch.reciprocal(scale).item()


_ZEROS = {dtype: torch.zeros((), dtype=dtype) for dtype in _FAST_DTYPES}


def _bitcrush_static(x: Tensor, s: float, r: float) -> Tensor:
    """:func:`bitcrush`'s forward value without autograd (float32/float64 CPU ``x``, steps from
    :func:`_bitcrush_steps`): the same ``round(x * s) * (1 / s)`` with scalar operands on one
    fresh buffer (4 passes instead of ~12).

    The straight-through terms of the autograd path add ``x - x`` and ``e * 0``, which turn a
    ``-0`` into ``+0`` and any non-finite value (an infinite input, ``x * s`` overflowing) into
    NaN; adding the product to ``+0`` and the rare NaN fill reproduce that bit for bit.
    """
    y = torch.mul(x, s).round_()
    # 0 + r * round(x * s): the product rounded once as before, and -0 -> +0, in one pass
    torch.add(_ZEROS[y.dtype], y, alpha=r, out=y)
    if y.numel():
        low, high = torch.aminmax(y)
        if not math.isfinite((high - low).item()):  # inf or NaN somewhere (NaN hides an inf from aminmax)
            y.add_(y - y)  # inf -> NaN (finite values unchanged), as the straight-through terms give
    return y


def chebyshev_polynomials(x: Tensor, order: int) -> Tensor:
    """Chebyshev polynomials of the first kind ``T_0 .. T_order`` at ``x``.

    By the recurrence ``T_0 = 1``, ``T_1 = x``, ``T_{k+1} = 2 x T_k - T_{k-1}``, so
    ``T_k(cos theta) = cos(k theta)``.

    Args:
        x: points, any shape (the polynomials are defined everywhere; waveshapers clamp to
            ``[-1, 1]`` first, see :func:`chebyshev_series`).
        order: highest degree, an int ``>= 0``.

    Returns:
        tensor shaped ``(*x.shape, order + 1)``; ``[..., k]`` holds ``T_k(x)``.
    """
    _check_signal(x)
    if isinstance(order, bool) or not isinstance(order, int) or order < 0:
        raise ValueError(f"order must be an int >= 0, got {order!r}")
    terms = [torch.ones_like(x)]
    if order >= 1:
        terms.append(x)
    for _ in range(1, order):
        terms.append(2.0 * x * terms[-1] - terms[-2])
    return torch.stack(terms, dim=-1)


def chebyshev_series(x: Tensor, coefficients: Tensor) -> Tensor:
    """Chebyshev waveshaper: ``y = sum_k c_k T_k(clamp(x, -1, 1))``.

    A sine of amplitude 1 through ``T_k`` comes out as its k-th harmonic, so ``c`` sets the
    harmonic amplitudes directly at full level (Le Brun, "Digital waveshaping synthesis",
    JAES 1979).

    Args:
        x: signal, any shape.
        coefficients: ``(order + 1,)`` weights ``c_0 .. c_order``.

    Returns:
        the shaped signal, shaped like ``x``.
    """
    _check_signal(x)
    if not isinstance(coefficients, Tensor) or coefficients.ndim != 1 or coefficients.numel() == 0:
        got = tuple(coefficients.shape) if isinstance(coefficients, Tensor) else type(coefficients).__name__
        raise ValueError(f"coefficients must be a 1-D tensor (order + 1,), got {got}")
    order = coefficients.numel() - 1
    t = chebyshev_polynomials(torch.clamp(x, -1.0, 1.0), order)
    return (t * coefficients.to(x.dtype)).sum(-1)


def biased_curve(
    curve: Callable[[Tensor], Tensor],
    x: Tensor,
    input_gain: Tensor | float,
    output_gain: Tensor | float,
    bias: Tensor | float,
) -> Tensor:
    """A static curve ``f`` with drive, level and an operating-point bias.

    ``y = output_gain * (f(input_gain * x + bias) - f(bias) + f(0))``

    ``bias`` moves the operating point along the curve (a tube's grid bias: an asymmetric curve,
    so even harmonics), and the output is shifted back so that silence still maps to ``f(0)``
    (zero for odd curves such as tanh: no DC step from the bias).

    Args:
        curve: a function of tensors, ``f(u) -> tensor`` of the same shape, memoryless.
        x: signal, any shape.
        input_gain, output_gain: linear gains, broadcastable against ``x``.
        bias: offset added at the curve's input (curve-input units), broadcastable.

    Returns:
        the shaped signal, broadcast shape.
    """
    _check_signal(x)
    gi = _as_tensor_like(input_gain, x, "input_gain")
    go = _as_tensor_like(output_gain, x, "output_gain")
    b = _as_tensor_like(bias, x, "bias")
    zero = torch.zeros((), dtype=x.dtype, device=x.device)
    gif, gof, bf = (_static_scalar(v, x) for v in (gi, go, b))
    if gif is not None and gof is not None and bf is not None:
        # the same operations on the same values, scalars applied in place on fresh buffers
        if curve is torch.tanh:
            # ((tanh(x * gi + b) - tanh(b)) + tanh(0)) * go with tanh(0) = +0, skipping the exact
            # no-ops: x * 1 = x; a zero b or tanh(b) changes only the sign of a zero, which the
            # final + 0 normalises (-0 + 0 = +0) exactly as before
            fb = torch.tanh(b).item()
            u = x if gif == 1.0 else torch.mul(x, gif)
            if bf != 0.0:
                u = u.add_(bf) if u is not x else torch.add(x, bf)
            v = torch.tanh(u) if u is x else u.tanh_()
            if fb != 0.0:
                v.sub_(fb)
            v.add_(0.0)
            return v if gof == 1.0 else v.mul_(gof)
        u = torch.mul(x, gif).add_(bf)
        fu, fb, f0 = curve(u), curve(b), curve(zero)
        if fb.numel() == 1 and fb.ndim <= fu.ndim and fb.dtype == fu.dtype and f0.dtype == fu.dtype:
            return (fu - fb.item()).add_(f0.item()).mul_(gof)  # fresh buffer: curve may return u's storage
        return go * (fu - fb + f0)
    return go * (curve(gi * x + b) - curve(b) + curve(zero))


def tanh_curve(x: Tensor, input_gain: Tensor | float, output_gain: Tensor | float, bias: Tensor | float) -> Tensor:
    """Asymmetric tanh: ``y = output_gain * (tanh(input_gain * x + bias) - tanh(bias))``.

    Odd in ``x`` (only odd harmonics) when ``bias = 0``; even harmonics appear when it is not.

    Args:
        x: signal, any shape.
        input_gain, output_gain: linear gains, broadcastable against ``x``.
        bias: operating-point offset at the tanh input, broadcastable.

    Returns:
        the shaped signal, broadcast shape.
    """
    return biased_curve(torch.tanh, x, input_gain, output_gain, bias)


def mlp_curve(x: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor, w3: Tensor, b3: Tensor) -> Tensor:
    """A tiny per-sample MLP transfer curve with a skip path: ``y = x + MLP(x)``.

    ``h1 = tanh(x w1 + b1)``, ``h2 = tanh(h1 w2 + b2)``, ``MLP(x) = h2 . w3 + b3``
    (1 -> hidden -> hidden -> 1, tanh activations). With ``w3`` and ``b3`` near zero the curve
    is near the identity, which is how a learned waveshaper starts (the skip keeps every layer's
    gradient alive from the first step).

    Args:
        x: signal, any shape.
        w1, b1: ``(hidden,)`` first layer (weights from the single input) and its biases.
        w2: ``(hidden, hidden)`` second layer weights (``h2 = h1 @ w2 + b2``); b2: ``(hidden,)``.
        w3: ``(hidden,)`` output weights; b3: ``(1,)`` output bias.

    Returns:
        the shaped signal, shaped like ``x``.
    """
    _check_signal(x)
    hidden = w1.shape[-1]
    if w1.shape != (hidden,) or b1.shape != (hidden,) or w2.shape != (hidden, hidden) or b2.shape != (hidden,):
        raise ValueError(
            f"mlp_curve weights must be w1, b1, b2 (hidden,) and w2 (hidden, hidden); got "
            f"{tuple(w1.shape)}, {tuple(b1.shape)}, {tuple(w2.shape)}, {tuple(b2.shape)}"
        )
    if w3.shape != (hidden,) or b3.numel() != 1:
        raise ValueError(
            f"mlp_curve output weights must be w3 (hidden,) and b3 (1,); got {tuple(w3.shape)}, {tuple(b3.shape)}"
        )
    h = torch.tanh(x.unsqueeze(-1) * w1 + b1)
    h = torch.tanh(h @ w2 + b2)
    return x + (h @ w3.unsqueeze(-1)).squeeze(-1) + b3.reshape(())
