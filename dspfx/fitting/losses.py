"""Training losses: multi-resolution STFT (auraloss) scaled to the sample rate, ESR, their sum.

All losses take ``(prediction, target)`` shaped ``(batch, channels, samples)`` (``(channels,
samples)`` and ``(samples,)`` get leading dims added), work in float32 and float64 on any
device, and return a 0-d tensor that can be back-propagated.

References: Yamamoto, Song & Kim, "Parallel WaveGAN", ICASSP 2020 (multi-resolution STFT loss);
Steinmetz & Reiss, "auraloss: audio-focused loss functions in PyTorch", DMRN 2020; Wright,
Damskägg & Välimäki, "Real-time black-box modelling with recurrent neural networks", DAFx 2019
(ESR with pre-emphasis).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from numbers import Real

import torch
from auraloss.freq import MultiResolutionSTFTLoss
from torch import nn

from dspfx.checks import prepare_pair

__all__ = [
    "esr",
    "apply_pre_emphasis",
    "AURALOSS_RESOLUTIONS",
    "default_resolutions",
    "MRSTFTLoss",
    "ESRLoss",
    "ScaledMSELoss",
    "CombinedLoss",
    "make_loss",
    "LOSS_NAMES",
]

#: auraloss' MultiResolutionSTFTLoss defaults, meant for 44.1-48 kHz audio.
AURALOSS_RESOLUTIONS: dict[str, list[int]] = {
    "fft_sizes": [1024, 2048, 512],
    "hop_sizes": [120, 240, 50],
    "win_lengths": [600, 1200, 240],
}

#: Reference sample rate of :data:`AURALOSS_RESOLUTIONS`.
REFERENCE_SAMPLE_RATE = 48000.0

#: Names accepted by :func:`make_loss`.
LOSS_NAMES = ("mrstft", "esr", "mrstft+esr")


def default_resolutions(sample_rate: float | None) -> dict[str, list[int]]:
    """MR-STFT resolutions whose windows span the same time at any sample rate.

    auraloss' defaults (FFT 1024/2048/512, hops 120/240/50, windows 600/1200/240 samples, i.e.
    windows of 12.5/25/5 ms at 48 kHz) are scaled by ``sample_rate / 48000``: window lengths
    and hops are rounded to the nearest integer, halves up (windows >= 2, hops >= 1); each FFT
    size is the scaled default rounded to the nearest power of two, doubled if needed until it
    is at least the window length.

    Args:
        sample_rate: in Hz, or None to get auraloss' defaults unchanged.

    Returns:
        ``{"fft_sizes": [...], "hop_sizes": [...], "win_lengths": [...]}`` (lists of ints, one
        entry per resolution).
    """
    if sample_rate is None:
        return {key: list(value) for key, value in AURALOSS_RESOLUTIONS.items()}
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, Real):
        raise TypeError(f"sample_rate must be a number in Hz or None, got {sample_rate!r}")
    if not math.isfinite(float(sample_rate)) or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive number of Hz, got {sample_rate!r}")
    scale = float(sample_rate) / REFERENCE_SAMPLE_RATE
    fft_sizes, hop_sizes, win_lengths = [], [], []
    for fft, hop, win in zip(*AURALOSS_RESOLUTIONS.values()):
        win_s = max(2, math.floor(win * scale + 0.5))  # round half up
        hop_s = max(1, math.floor(hop * scale + 0.5))
        fft_s = 2 ** max(1, round(math.log2(fft * scale)))
        while fft_s < win_s:
            fft_s *= 2
        fft_sizes.append(int(fft_s))
        hop_sizes.append(int(hop_s))
        win_lengths.append(int(win_s))
    return {"fft_sizes": fft_sizes, "hop_sizes": hop_sizes, "win_lengths": win_lengths}


def _check_coefficient(coefficient: object) -> float:
    if isinstance(coefficient, bool) or not isinstance(coefficient, Real):
        raise TypeError(
            f"pre_emphasis must be a real number (e.g. 0.95) or None, got {coefficient!r}"
        )
    c = float(coefficient)
    if not math.isfinite(c):
        raise ValueError(f"pre_emphasis must be finite, got {coefficient!r}")
    return c


def apply_pre_emphasis(x: torch.Tensor, coefficient: float) -> torch.Tensor:
    """First-order pre-emphasis high-pass ``H(z) = 1 - c z^-1`` along the last axis.

    ``y[n] = x[n] - c * x[n - 1]`` with ``x[-1] = 0`` (zero initial state), i.e. the same as
    ``scipy.signal.lfilter([1, -c], [1], x)``.

    Args:
        x: tensor ``(..., samples)``.
        coefficient: ``c``; Wright et al. use 0.95.

    Returns:
        Tensor shaped like ``x``.
    """
    c = _check_coefficient(coefficient)
    delayed = torch.nn.functional.pad(x[..., :-1], (1, 0))
    return x - c * delayed


def esr(
    prediction: torch.Tensor,
    target: torch.Tensor,
    *,
    pre_emphasis: float | None = None,
    eps: float = 1e-10,
) -> torch.Tensor:
    """Error-to-signal ratio ``sum((t - p)^2) / (sum(t^2) + eps)`` over all elements.

    Args:
        prediction: ``(batch, channels, samples)`` (or 2-D / 1-D), the model output.
        target: same shape, the reference signal.
        pre_emphasis: if given, coefficient ``c`` of the first-order high-pass
            ``H(z) = 1 - c z^-1`` applied to both signals first (Wright et al. 2019 use 0.95).
        eps: added to the denominator so a silent target gives a finite value.

    Returns:
        0-d tensor; 0 for a perfect prediction, 1 for a silent prediction.

    Reference: Wright, Damskägg & Välimäki, "Real-time black-box modelling with recurrent
    neural networks", DAFx 2019.
    """
    p, t = prepare_pair(prediction, target)
    if pre_emphasis is not None:
        p = apply_pre_emphasis(p, pre_emphasis)
        t = apply_pre_emphasis(t, pre_emphasis)
    return torch.sum((t - p) ** 2) / (torch.sum(t**2) + eps)



class MRSTFTLoss(nn.Module):
    """Multi-resolution STFT loss (auraloss) with resolutions chosen for the sample rate.

    Wraps :class:`auraloss.freq.MultiResolutionSTFTLoss` (spectral convergence + log-magnitude
    L1 per resolution, averaged) with :func:`default_resolutions` ``(sample_rate)``; explicit
    ``fft_sizes`` / ``hop_sizes`` / ``win_lengths`` in ``auraloss_kwargs`` override them.

    Around auraloss it adds: 1-D / 2-D inputs, float64 (the STFT windows and any filterbank
    follow the input's dtype and device), non-contiguous inputs, and signals shorter than half
    the largest FFT (zero-padded at the end to ``max(fft_sizes) // 2 + 1`` samples, since
    auraloss' reflect padding needs more samples than that). Silence is safe: auraloss clamps
    the power spectrum at ``eps`` (1e-8) before the square root and the log, so all-zero
    prediction and target give a loss of 0 with finite (zero) gradients. With ``scale="mel"``
    (or ``"chroma"``) the filterbank's empty bands, which would give ``log(0)`` and a NaN, are
    dropped.

    Args:
        sample_rate: in Hz, or None for auraloss' defaults (meant for 44.1-48 kHz).
        **auraloss_kwargs: passed to ``MultiResolutionSTFTLoss`` (``w_sc``, ``w_log_mag``,
            ``w_lin_mag``, ``scale="mel"`` with ``n_bins``, ``perceptual_weighting``, ...).

    Example:
        >>> loss = MRSTFTLoss(sample_rate=16000)
        >>> value = loss(prediction, target)  # (batch, channels, samples) each
    """

    def __init__(self, sample_rate: float | None = None, **auraloss_kwargs) -> None:
        super().__init__()
        resolutions = default_resolutions(sample_rate)
        for key in resolutions:
            if key in auraloss_kwargs:
                resolutions[key] = [int(v) for v in auraloss_kwargs.pop(key)]
        lengths = {len(v) for v in resolutions.values()}
        if len(lengths) != 1:
            raise ValueError(
                f"fft_sizes, hop_sizes and win_lengths must have the same length, got {resolutions}"
            )
        if sample_rate is not None and "sample_rate" not in auraloss_kwargs:
            auraloss_kwargs["sample_rate"] = float(sample_rate)
        self.sample_rate = sample_rate
        self.resolutions = resolutions
        with warnings.catch_warnings():
            # librosa warns about empty mel bands; they are dropped below
            warnings.filterwarnings("ignore", message="Empty filters detected")
            self.loss = MultiResolutionSTFTLoss(**resolutions, **auraloss_kwargs)
        # With scale="mel"/"chroma", auraloss projects magnitudes with a filterbank whose empty
        # rows (too many mel bands for a small FFT) give log(0) = -inf and a NaN loss: drop them.
        for stft_loss in self.loss.stft_losses:
            fb = getattr(stft_loss, "fb", None)
            if isinstance(fb, torch.Tensor):
                keep = fb.abs().sum(dim=-1).reshape(-1) > 0
                stft_loss.fb = fb[..., keep, :]
        self._min_length = max(resolutions["fft_sizes"]) // 2 + 1

    def extra_repr(self) -> str:
        return f"sample_rate={self.sample_rate}, resolutions={self.resolutions}"

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss between ``prediction`` and ``target``, each ``(batch, channels, samples)``.

        Returns:
            0-d tensor (0 for equal signals).
        """
        p, t = prepare_pair(prediction, target)
        if p.shape[-1] < self._min_length:
            pad = self._min_length - p.shape[-1]
            p = nn.functional.pad(p, (0, pad))
            t = nn.functional.pad(t, (0, pad))
        # auraloss keeps its windows as plain attributes (float32, moved to the device only) and
        # its filterbanks as float32 buffers: bring them to the input's dtype and device.
        self.loss.to(device=p.device, dtype=p.dtype)
        for stft_loss in self.loss.stft_losses:
            stft_loss.window = stft_loss.window.to(device=p.device, dtype=p.dtype)
        return self.loss(p.contiguous(), t.contiguous())


class ESRLoss(nn.Module):
    """Error-to-signal ratio loss, optionally with first-order pre-emphasis.

    ``sum((t - p)^2) / (sum(t^2) + eps)`` over all elements, both signals first filtered by
    ``H(z) = 1 - c z^-1`` when ``pre_emphasis=c`` is given. See :func:`esr`.

    Args:
        pre_emphasis: coefficient ``c`` (Wright et al. 2019 use 0.95) or None.
        eps: added to the denominator.

    Example:
        >>> loss = ESRLoss(pre_emphasis=0.95)
        >>> value = loss(prediction, target)
    """

    def __init__(self, pre_emphasis: float | None = None, eps: float = 1e-10) -> None:
        super().__init__()
        if pre_emphasis is not None:
            if isinstance(pre_emphasis, bool) or not isinstance(pre_emphasis, Real):
                raise TypeError(f"pre_emphasis must be a number or None, got {pre_emphasis!r}")
            pre_emphasis = float(pre_emphasis)
        self.pre_emphasis = pre_emphasis
        self.eps = float(eps)

    def extra_repr(self) -> str:
        return f"pre_emphasis={self.pre_emphasis}"

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """ESR of ``prediction`` against ``target`` (each ``(batch, channels, samples)``)."""
        return esr(prediction, target, pre_emphasis=self.pre_emphasis, eps=self.eps)


class ScaledMSELoss(nn.Module):
    """Mean squared error divided by a fixed energy: ``mean((t - p)^2) / energy``.

    With ``energy`` the mean square of the whole training target this is the training set's ESR
    scale, but every batch is divided by the same number, so loud segments weigh more than quiet
    ones, as they do in a held-out ESR over a whole recording (it is NAM's MSE, scaled). The
    per-batch :class:`ESRLoss` divides each batch by its own energy and so weighs a batch of
    quiet sweeps as much as one of loud chords: trained on gx_muff's reamp pair for 200 steps
    (same seed and steps), the held-out ESR was 0.0182 with it and 0.0142 with this loss.

    Args:
        energy: the divisor, > 0 (e.g. ``mean(target ** 2)`` over the training audio).
    """

    def __init__(self, energy: float) -> None:
        super().__init__()
        energy = float(energy)
        if not math.isfinite(energy) or energy <= 0:
            raise ValueError(f"ScaledMSELoss: energy must be a finite number > 0, got {energy!r}")
        self.energy = energy

    def extra_repr(self) -> str:
        return f"energy={self.energy:.4g}"

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        p, t = prepare_pair(prediction, target)
        return torch.mean((t - p) ** 2) / self.energy


def _check_weight(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a number, got {value!r}")
    w = float(value)
    if not math.isfinite(w) or w < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return w


class CombinedLoss(nn.Module):
    """``mrstft_weight * MR-STFT + esr_weight * ESR``.

    Terms with weight 0 are not computed. ``pre_emphasis`` applies to the ESR term only.

    Args:
        sample_rate: in Hz, for the MR-STFT resolutions (None: auraloss' defaults).
        mrstft_weight: weight of :class:`MRSTFTLoss` (>= 0).
        esr_weight: weight of :class:`ESRLoss` (>= 0).
        pre_emphasis: ESR pre-emphasis coefficient or None.

    Raises:
        ValueError: if a weight is negative or both are 0.

    Example:
        >>> loss = CombinedLoss(sample_rate=48000, esr_weight=0.1, pre_emphasis=0.95)
        >>> value = loss(prediction, target)
    """

    def __init__(
        self,
        sample_rate: float | None = None,
        mrstft_weight: float = 1.0,
        esr_weight: float = 0.0,
        pre_emphasis: float | None = None,
    ) -> None:
        super().__init__()
        self.mrstft_weight = _check_weight(mrstft_weight, "mrstft_weight")
        self.esr_weight = _check_weight(esr_weight, "esr_weight")
        if self.mrstft_weight == 0 and self.esr_weight == 0:
            raise ValueError(
                "CombinedLoss needs mrstft_weight > 0 or esr_weight > 0, got both 0"
            )
        self.mrstft = MRSTFTLoss(sample_rate) if self.mrstft_weight > 0 else None
        self.esr = ESRLoss(pre_emphasis) if self.esr_weight > 0 else None

    def extra_repr(self) -> str:
        return f"mrstft_weight={self.mrstft_weight}, esr_weight={self.esr_weight}"

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Weighted sum of the terms for ``prediction`` against ``target``."""
        total = None
        if self.mrstft is not None:
            total = self.mrstft_weight * self.mrstft(prediction, target)
        if self.esr is not None:
            term = self.esr_weight * self.esr(prediction, target)
            total = term if total is None else total + term
        return total


class _CallableLoss(nn.Module):
    """Wraps a plain ``fn(prediction, target) -> Tensor`` as an ``nn.Module``."""

    def __init__(self, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def extra_repr(self) -> str:
        return f"fn={getattr(self.fn, '__name__', repr(self.fn))}"

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.fn(prediction, target)


def make_loss(
    loss: str | Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    sample_rate: float | None,
    esr_weight: float = 0.0,
    *,
    pre_emphasis: float | None = None,
) -> nn.Module:
    """Build a loss module from a name or a callable.

    Args:
        loss: one of

            - ``"mrstft"``: :class:`MRSTFTLoss`; with ``esr_weight > 0`` the ESR term is added
              (:class:`CombinedLoss`).
            - ``"esr"``: :class:`ESRLoss` alone (``esr_weight`` is ignored).
            - ``"mrstft+esr"``: :class:`CombinedLoss` with weights 1 and ``esr_weight``
              (1.0 when ``esr_weight`` is 0).
            - an ``nn.Module`` (returned as is) or any callable ``fn(prediction, target)``
              returning a 0-d tensor (wrapped in an ``nn.Module``).
        sample_rate: in Hz, for the MR-STFT resolutions (None: auraloss' defaults).
        esr_weight: weight of the ESR term (see above).
        pre_emphasis: ESR pre-emphasis coefficient (e.g. 0.95) or None.

    Returns:
        An ``nn.Module`` called as ``module(prediction, target)``.

    Raises:
        ValueError: for an unknown name (the message lists the valid ones).
        TypeError: for something that is neither a string nor callable.
    """
    if isinstance(loss, str):
        key = loss.strip().lower().replace(" ", "")
        esr_weight = _check_weight(esr_weight, "esr_weight")
        if key == "mrstft":
            if esr_weight > 0:
                return CombinedLoss(sample_rate, 1.0, esr_weight, pre_emphasis)
            return MRSTFTLoss(sample_rate)
        if key == "esr":
            return ESRLoss(pre_emphasis)
        if key in ("mrstft+esr", "esr+mrstft"):
            return CombinedLoss(sample_rate, 1.0, esr_weight or 1.0, pre_emphasis)
        raise ValueError(
            f"unknown loss {loss!r}; expected one of {', '.join(repr(n) for n in LOSS_NAMES)} "
            f"or a callable fn(prediction, target) -> Tensor"
        )
    if isinstance(loss, nn.Module):
        return loss
    if callable(loss):
        return _CallableLoss(loss)
    raise TypeError(
        f"loss must be one of {', '.join(repr(n) for n in LOSS_NAMES)} or a callable "
        f"fn(prediction, target) -> Tensor, got {type(loss).__name__}"
    )
