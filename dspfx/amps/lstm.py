"""Black-box amp baseline: the single-layer LSTM with a skip connection of Wright et al."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from dspfx.registry import register
from dspfx.unit import Unit

__all__ = ["LSTMAmp", "lstm_parameter_count"]


def lstm_parameter_count(hidden: int) -> int:
    """Learnable parameters of :class:`LSTMAmp` with ``hidden`` units (mono input).

    ``4 H (1 + H + 2) + (H + 1)``: the LSTM's input weights ``W_ih`` (4H x 1), recurrent
    weights ``W_hh`` (4H x H) and its two bias vectors ``b_ih``, ``b_hh`` (4H each, as in
    ``torch.nn.LSTM``; their sum is what acts, so ``4 H`` of them are redundant), plus the
    output layer's weights (H) and bias (1). ``hidden=32``: 4513; ``hidden=16``: 1233.

    Args:
        hidden: LSTM size H (an int >= 1).

    Returns:
        the count, an int.
    """
    _check_hidden(hidden)
    return 4 * hidden * (1 + hidden + 2) + hidden + 1


def _check_hidden(hidden: Any) -> None:
    if isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 1:
        raise ValueError(f"lstm_amp option hidden must be an int >= 1 (LSTM units), got {hidden!r}")


@register
class LSTMAmp(Unit):
    """Black-box amp or pedal model: a single-layer LSTM over the raw samples, a linear output
    layer and a skip connection (Wright, Damskägg & Välimäki).

    Per sample ``n`` and per channel: ``(h[n], c[n]) = LSTM(x[n], (h[n-1], c[n-1]))`` and
    ``y[n] = x[n] + w . h[n] + b``. The network learns the difference between the device's
    output and its input; a fresh unit starts close to (not exactly) the identity.

    Knobs: none. The learnable parameters are the network's weights, ``nn.Parameter`` tensors
    (``lstm.weight_ih_l0``, ``lstm.weight_hh_l0``, ``lstm.bias_ih_l0``, ``lstm.bias_hh_l0``,
    ``output.weight``, ``output.bias``), written by :func:`dspfx.save` into the safetensors
    file (no pickle). Count: ``4 H (H + 3) + H + 1`` (:func:`lstm_parameter_count`), 4513 for
    ``hidden=32``. The initial weights are drawn from ``seed`` (PyTorch's default ranges,
    uniform in ``+-1/sqrt(H)``), so two fresh units with the same options are identical.

    Options:
        hidden: LSTM size H (default 32; Wright et al. use 16-64 for amps, 32 is their
            usual real-time choice).
        seed: seed of the initial weights (default 0).
        skip: the skip connection (default True, as Wright et al.). ``skip=False`` is NAM's
            LSTM, ``y[n] = w . h[n] + b``, which :func:`dspfx.export.export_nam` writes as a
            ``.nam`` file (:meth:`nam_weights`); :func:`dspfx.capture` trains this one.

    Channels: mono in, mono out per channel. A stereo (or C-channel) input is modelled per
    channel with the same weights (the channels are folded into the batch), so left and right
    never mix; a model of a mono amp applied to stereo behaves like two identical amps.

    State (streaming): the LSTM's hidden and cell state ``(h, c)``, each shaped
    ``(1, batch * channels, H)``, zeros at the start; carried by :class:`dspfx.Stream`, so a
    block-by-block render equals the offline one. The sample rate is not used by the maths,
    but a trained model is only valid at the rate it was trained at (48 kHz in the paper).

    Training: by gradient descent with truncated backpropagation through time on random
    segments of the DI/target pair, as in the paper: each segment (0.5 s there) first runs
    ~1000 samples without gradient to settle the state, then the rest is split into chunks
    of ~2048 samples with an optimiser step after each, the state carried (detached) from
    chunk to chunk; loss ``0.75 * ESR(pre-emphasised) + 0.25 * DC error``
    (:mod:`dspfx.fitting.metrics`), Adam. A plain :func:`dspfx.fit` over whole signals also
    works (full BPTT), but costs memory proportional to the length.

    A float64 input through a float32 unit (or the reverse) is cast to the weights' dtype and
    the output cast back; call ``unit.double()`` for float64 maths.

    >>> amp = dspfx.make("lstm_amp", hidden=32)
    >>> y = amp(x)                                   # x: (batch, channels, samples)

    Reference: A. Wright, E.-P. Damskägg, V. Välimäki, "Real-time black-box modelling with
    recurrent neural networks", DAFx 2019; A. Wright, E.-P. Damskägg, L. Juvela, V. Välimäki,
    "Real-time guitar amplifier emulation with deep learning", Applied Sciences 10(3), 2020.
    """

    name = "lstm_amp"
    category = "amp"

    #: NAM's name for this architecture in a ``.nam`` file.
    nam_architecture = "LSTM"

    def __init__(self, sample_rate: float = 48000, hidden: int = 32, seed: int = 0, skip: bool = True,
                 **knobs: Any) -> None:
        _check_hidden(hidden)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"lstm_amp option seed must be an int, got {seed!r}")
        if not isinstance(skip, bool):
            raise ValueError(f"lstm_amp option skip must be True or False, got {skip!r}")
        self.hidden = hidden
        self.seed = seed
        self.skip = skip
        super().__init__(sample_rate, **knobs)
        dtype, device = self.dtype, self.device
        self.lstm = nn.LSTM(1, hidden, num_layers=1, batch_first=True, dtype=dtype, device=device)
        self.output = nn.Linear(hidden, 1, dtype=dtype, device=device)
        g = torch.Generator().manual_seed(seed)
        bound = 1.0 / math.sqrt(hidden)
        with torch.no_grad():
            for p in (*self.lstm.parameters(), *self.output.parameters()):
                p.copy_((torch.rand(p.shape, generator=g, dtype=torch.float64) * 2 - 1) * bound)

    @property
    def n_parameters(self) -> int:
        """Number of learnable scalars (equals :func:`lstm_parameter_count` of ``hidden``)."""
        return sum(p.numel() for p in self.parameters())

    def init_state(self, batch: int, channels: int) -> tuple[Tensor, Tensor]:
        """Zero hidden and cell state ``(h, c)``, each ``(1, batch * channels, hidden)``."""
        weight = self.lstm.weight_hh_l0
        zeros = torch.zeros(1, batch * channels, self.hidden, dtype=weight.dtype, device=weight.device)
        return zeros, zeros.clone()

    def process(self, x: Tensor, controls: dict[str, Tensor], state: Any) -> tuple[Tensor, Any]:
        """Run the LSTM over one block.

        Args:
            x: (batch, channels, samples).
            controls: unused (no knobs).
            state: ``(h, c)`` from :meth:`init_state` or the previous block.

        Returns:
            (y (batch, channels, samples) in x's dtype, new ``(h, c)``).
        """
        batch, channels, n = x.shape
        weight = self.lstm.weight_hh_l0
        if not (isinstance(state, tuple) and len(state) == 2 and all(isinstance(s, Tensor) for s in state)):
            raise TypeError(
                f"lstm_amp: state must be a tuple (h, c) of tensors from init_state, got {type(state).__name__}"
            )
        expected = (1, batch * channels, self.hidden)
        if tuple(state[0].shape) != expected or tuple(state[1].shape) != expected:
            raise ValueError(
                f"lstm_amp: state shaped {tuple(state[0].shape)}, {tuple(state[1].shape)} does not fit an input of "
                f"batch {batch} x channels {channels}: expected {expected} each (use init_state(batch, channels))"
            )
        seq = x.to(weight.dtype).reshape(batch * channels, n, 1)
        h, (h_n, c_n) = self.lstm(seq, (state[0].to(weight.dtype), state[1].to(weight.dtype)))
        y = self.output(h)
        if self.skip:  # the network learns output - input
            y = y + seq
        return y.reshape(batch, channels, n).to(x.dtype), (h_n, c_n)

    def nam_config(self) -> dict[str, int]:
        """The ``config`` of NAM's LSTM for this unit."""
        return {"input_size": 1, "hidden_size": self.hidden, "num_layers": 1}

    def nam_weights(self) -> Tensor:
        """The weights as one flat float32 vector in NAM's order: the ``[W_ih | W_hh]`` matrix
        (4H x (1 + H), gates i, f, g, o as torch), the summed bias ``b_ih + b_hh``, the initial
        hidden and cell states (zeros: a render starts there, as this unit's does), then the
        head's weights and bias.

        Raises:
            ValueError: with the skip connection, which NAM's LSTM lacks.
        """
        if self.skip:
            raise ValueError(
                "lstm_amp with skip=True has a skip connection NAM's LSTM lacks; train "
                "dspfx.make('lstm_amp', skip=False) (what dspfx.capture trains) to export it"
            )
        lstm = self.lstm
        zeros = torch.zeros(2 * self.hidden, dtype=lstm.weight_hh_l0.dtype, device=lstm.weight_hh_l0.device)
        parts = [torch.cat([lstm.weight_ih_l0, lstm.weight_hh_l0], dim=1), lstm.bias_ih_l0 + lstm.bias_hh_l0, zeros,
                 self.output.weight, self.output.bias]
        return torch.cat([t.detach().reshape(-1) for t in parts]).to("cpu", torch.float32)

    def extra_repr(self) -> str:
        return (f"sample_rate={self.sample_rate}, hidden={self.hidden}, seed={self.seed}, skip={self.skip}, "
                f"parameters={self.n_parameters}")
