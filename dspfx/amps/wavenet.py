"""A NAM-compatible WaveNet: the black-box capture model Neural Amp Modeler trains and plays."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from dspfx.registry import register
from dspfx.unit import Unit

__all__ = ["WaveNetAmp", "WAVENET_SIZES", "wavenet_config"]

_FIRST = [2**i for i in range(10)]  # 1 .. 512
_LITE_A = [2**i for i in range(7)]  # 1 .. 64
_LITE_B = [128, 256, 512] + _FIRST

#: NAM's classic WaveNet sizes (two layer arrays, kernel 3, tanh, head scale 0.02):
#: channels of each array and their dilations. ``standard`` has 13,801 weights.
WAVENET_SIZES: dict[str, tuple[tuple[int, int], tuple[list[int], list[int]]]] = {
    "standard": ((16, 8), (_FIRST, _FIRST)),
    "lite": ((12, 6), (_LITE_A, _LITE_B)),
    "feather": ((8, 4), (_LITE_A, _LITE_B)),
    "nano": ((4, 2), (_LITE_A, _LITE_B)),
}
KERNEL_SIZE = 3
HEAD_SCALE = 0.02


def wavenet_config(size: str) -> dict[str, Any]:
    """NAM's ``config`` of a classic WaveNet of ``size``: the layer arrays (written in both the
    classic keys, ``head_size``/``head_bias``/``gated``, that NAM's players read and the
    ``head`` object that neural-amp-modeler 0.13's loader reads), no head, head scale 0.02."""
    if size not in WAVENET_SIZES:
        raise ValueError(f"unknown WaveNet size {size!r}; NAM's sizes are {', '.join(WAVENET_SIZES)}")
    (c1, c2), (d1, d2) = WAVENET_SIZES[size]
    arrays = []
    for input_size, channels, head_size, dilations, bias in ((1, c1, c2, d1, False), (c1, c2, 1, d2, True)):
        arrays.append({
            "input_size": input_size, "condition_size": 1, "head_size": head_size, "channels": channels,
            "kernel_size": KERNEL_SIZE, "dilations": list(dilations), "activation": "Tanh", "gated": False,
            "head_bias": bias, "head": {"out_channels": head_size, "kernel_size": 1, "bias": bias},
        })
    return {"layers": arrays, "head": None, "head_scale": HEAD_SCALE}


class _Layer(nn.Module):
    """One dilated layer: ``z = tanh(conv(x) + mix(c))``; residual ``x + 1x1(z)``; head ``z``."""

    def __init__(self, channels: int, dilation: int) -> None:
        super().__init__()
        self.dilation = dilation
        self.conv = nn.Conv1d(channels, channels, KERNEL_SIZE, dilation=dilation)
        self.mixer = nn.Conv1d(1, channels, 1, bias=False)
        self.out = nn.Conv1d(channels, channels, 1)

    def forward(self, x: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        z = self.conv(x)
        n = z.shape[-1]
        z = torch.tanh(z + self.mixer(c[..., -n:]))
        return x[..., -n:] + self.out(z), z

    def nam_weights(self) -> list[Tensor]:
        return [self.conv.weight, self.conv.bias, self.mixer.weight, self.out.weight, self.out.bias]


class _LayerArray(nn.Module):
    def __init__(self, input_size: int, channels: int, head_size: int, dilations: list[int], head_bias: bool) -> None:
        super().__init__()
        self.rechannel = nn.Conv1d(input_size, channels, 1, bias=False)
        self.layers = nn.ModuleList(_Layer(channels, d) for d in dilations)
        self.head = nn.Conv1d(channels, head_size, 1, bias=head_bias)

    def forward(self, x: Tensor, c: Tensor, head: Tensor | None) -> tuple[Tensor, Tensor]:
        x = self.rechannel(x)
        for layer in self.layers:
            x, z = layer(x, c)
            n = z.shape[-1]
            head = z if head is None else head[..., -n:] + z
        assert head is not None
        return self.head(head), x

    def nam_weights(self) -> list[Tensor]:
        out = [self.rechannel.weight]
        for layer in self.layers:
            out += layer.nam_weights()
        out.append(self.head.weight)
        if self.head.bias is not None:
            out.append(self.head.bias)
        return out


@register
class WaveNetAmp(Unit):
    """Black-box amp or pedal model: Neural Amp Modeler's WaveNet, weight for weight.

    Two stacks of dilated causal convolutions (kernel 3, tanh): every layer adds its input
    convolution to a 1x1 mix of the input signal, a 1x1 convolution of the result feeds the
    residual stream, and the activations summed over the layers form the head, rechannelled
    per stack and scaled by 0.02 at the end. The sizes are NAM's classic ones (``standard``:
    channels 16 and 8, dilations 1..512 twice, 13,801 weights, receptive field 4,093 samples;
    ``lite``, ``feather``, ``nano``: fewer channels and shorter first stacks), so the unit
    exports to a ``.nam`` file that NAM's plugin plays (:func:`dspfx.export.nam.export_nam`)
    and renders exactly what NAM's own loader renders from it.

    Knobs: none; the learnable tensors are the convolutions' weights (saved by
    :func:`dspfx.save`). Initial weights come from ``seed`` (PyTorch's default ranges).

    Options:
        size: ``"standard"`` (default), ``"lite"``, ``"feather"`` or ``"nano"``.
        seed: seed of the initial weights (default 0).

    Channels: mono; C channels run as C mono signals with the same weights. State
    (streaming): the last ``receptive_field - 1`` input samples (zeros at the start, as NAM
    pads), so block-by-block rendering equals the offline render.

    >>> amp = dspfx.make("wavenet", size="standard")
    >>> y = amp(x)                                   # x: (batch, channels, samples)

    Reference: S. Atkinson, Neural Amp Modeler (neural-amp-modeler, ``nam.models.wavenet``);
    E.-P. Damskägg, L. Juvela, V. Välimäki, "Real-time modeling of audio distortion circuits with
    deep learning", SMC 2019; van den Oord et al., "WaveNet", 2016.
    """

    name = "wavenet"
    category = "amp"
    #: NAM's name for this architecture in a ``.nam`` file.
    nam_architecture = "WaveNet"

    def __init__(self, sample_rate: float = 48000, size: str = "standard", seed: int = 0, **knobs: Any) -> None:
        if size not in WAVENET_SIZES:
            raise ValueError(f"wavenet option size must be one of {', '.join(WAVENET_SIZES)}, got {size!r}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"wavenet option seed must be an int, got {seed!r}")
        self.size, self.seed = size, seed
        super().__init__(sample_rate, **knobs)
        (c1, c2), (d1, d2) = WAVENET_SIZES[size]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.arrays = nn.ModuleList([
                _LayerArray(1, c1, c2, d1, head_bias=False),
                _LayerArray(c1, c2, 1, d2, head_bias=True),
            ])
        self.to(dtype=self.dtype, device=self.device)
        self.register_buffer("head_scale", torch.tensor(HEAD_SCALE, dtype=self.dtype, device=self.device))
        self.receptive_field = 1 + sum((KERNEL_SIZE - 1) * sum(d) for d in (d1, d2))

    @property
    def n_parameters(self) -> int:
        """Number of learnable scalars (13,801 for ``standard``)."""
        return sum(p.numel() for p in self.parameters())

    def init_state(self, batch: int, channels: int) -> Tensor:
        """The last ``receptive_field - 1`` input samples, ``(batch * channels, 1, R - 1)``: zeros."""
        ref = self.arrays[0].rechannel.weight
        return torch.zeros(batch * channels, 1, self.receptive_field - 1, dtype=ref.dtype, device=ref.device)

    def process(self, x: Tensor, controls: dict[str, Tensor], state: Any) -> tuple[Tensor, Any]:
        batch, channels, n = x.shape
        ref = self.arrays[0].rechannel.weight
        if not isinstance(state, Tensor) or tuple(state.shape) != (batch * channels, 1, self.receptive_field - 1):
            raise ValueError(
                f"wavenet: state must be the (batch * channels, 1, {self.receptive_field - 1}) history from "
                f"init_state({batch}, {channels}), got {tuple(state.shape) if isinstance(state, Tensor) else type(state).__name__}"
            )
        signal = torch.cat([state.to(ref.dtype), x.to(ref.dtype).reshape(batch * channels, 1, n)], dim=-1)
        y, head = signal, None
        for array in self.arrays:
            head, y = array(y, signal, head)
        out = (self.head_scale * head).reshape(batch, channels, n)
        return out.to(x.dtype), signal[..., signal.shape[-1] - (self.receptive_field - 1):]

    # -- NAM's flat weight list --------------------------------------------------------------------
    def nam_config(self) -> dict[str, Any]:
        """The ``config`` of NAM's WaveNet for this unit's size."""
        return wavenet_config(self.size)

    def nam_weights(self) -> Tensor:
        """Every weight in NAM's export order (per stack: rechannel, then per layer conv weight
        and bias, input mixer, 1x1 weight and bias, then the head rechannel), then the head
        scale: one flat float32 tensor."""
        parts = [t.detach().reshape(-1) for array in self.arrays for t in array.nam_weights()]
        parts.append(self.head_scale.detach().reshape(1))
        return torch.cat([p.to(torch.float32).cpu() for p in parts])

    @torch.no_grad()
    def load_nam_weights(self, weights: Any) -> WaveNetAmp:
        """Write a flat weight list in NAM's order (as :meth:`nam_weights` gives); returns ``self``."""
        flat = torch.as_tensor(weights, dtype=torch.float64).reshape(-1)
        tensors = [t for array in self.arrays for t in array.nam_weights()]
        expected = sum(t.numel() for t in tensors) + 1
        if flat.numel() != expected:
            raise ValueError(f"a {self.size} WaveNet takes {expected} weights (head scale last), got {flat.numel()}")
        i = 0
        for t in tensors:
            t.copy_(flat[i : i + t.numel()].reshape(t.shape).to(t.dtype))
            i += t.numel()
        self.head_scale.fill_(float(flat[i]))
        return self

    def extra_repr(self) -> str:
        return f"sample_rate={self.sample_rate}, size={self.size!r}, parameters={self.n_parameters}"
