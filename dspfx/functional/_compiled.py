"""Tensors to and from the compiled (numba) kernels.

A kernel runs on C-contiguous numpy arrays of detached CPU tensors; its results go back to the
caller's dtype. These three helpers are that round trip, shared by the ``torch.autograd.Function``
wrappers around the kernels (forward and hand-written backward).

The device policy: a compiled kernel is a CPU path. A function that also has a torch path takes
it for tensors on other devices; one that has none raises :class:`CPUKernelError` (and a unit
running it re-raises naming itself) rather than copying the tensors to the CPU and back behind
the caller's back, which on a GPU costs two transfers and a sync per call.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import torch
from torch import Tensor

__all__ = ["as_numpy", "to_torch", "to_grads", "CPUKernelError"]


class CPUKernelError(RuntimeError):
    """A compiled CPU kernel was handed tensors on another device (it has no path there)."""

Like = Tensor | tuple[torch.dtype, torch.device]


def as_numpy(t: Tensor, dtype: torch.dtype | None = torch.float64) -> np.ndarray:
    """``t`` as a kernel's input: detached, on the CPU, C-contiguous, cast to ``dtype``.

    Args:
        t: any tensor.
        dtype: the array's dtype; ``None`` keeps float32 and float64 (other dtypes become
            float64).

    Returns:
        A numpy array; it shares ``t``'s memory when nothing had to change (kernels must not
        write into their inputs).

    Raises:
        CPUKernelError: ``t`` is not on the CPU.
    """
    if t.device.type != "cpu":
        raise CPUKernelError(
            f"a compiled CPU kernel got a tensor on {t.device}; it has no {t.device.type} path and does not copy "
            "to the CPU behind your back: render this on the CPU (.to('cpu')), or use units that have a torch path"
        )
    if dtype is None:
        dtype = t.dtype if t.dtype in (torch.float32, torch.float64) else torch.float64
    return np.ascontiguousarray(t.detach().to(dtype).numpy())


def to_torch(a: np.ndarray, like: Like) -> Tensor:
    """A kernel's result ``a`` as a tensor on ``like``'s device with ``like``'s dtype.

    Args:
        a: numpy array.
        like: a tensor, or a ``(dtype, device)`` pair (what a ``ctx`` keeps for the backward).
    """
    dtype, device = (like.dtype, like.device) if isinstance(like, Tensor) else like
    return torch.from_numpy(a).to(device=device, dtype=dtype)


def to_grads(grads: Iterable[np.ndarray], likes: Iterable[Like], needs: Iterable[bool]) -> tuple[Tensor | None, ...]:
    """A compiled adjoint's gradients for ``backward``: :func:`to_torch` of each array like its
    input, ``None`` where the input needs no gradient (``ctx.needs_input_grad``); as many entries
    as the shortest of the three."""
    return tuple(to_torch(g, like) if need else None for g, like, need in zip(grads, likes, needs))
