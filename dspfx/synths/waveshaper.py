"""Neural waveshaping (NEWT-style): ``waveshaper`` (sinusoidal exciter at ``f0_hz``) and
``waveshaper_fx`` (the same shaping bank driven by input audio)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from dspfx.checks import positive_int
from dspfx.functional.blep import accumulate_phase
from dspfx.functional.control import control_frames, control_hop, upsample_control
from dspfx.functional.oscillators import phase_dtype
from dspfx.functional.waveshaper import (
    chebyshev_band_orders,
    chebyshev_shaper,
    mlp_shaper,
    shaping_bank,
)
from dspfx.registry import register
from dspfx.unit import Knob, Unit

__all__ = ["Waveshaper", "WaveshaperFX"]

_SHAPERS = ("chebyshev", "mlp", "both")
_MIXES = ("sum", "learnable")
_AFFINE = ("input_gain", "input_offset", "output_gain", "output_offset")


class _ShapingBank(Unit):
    """The learnable bank shared by :class:`Waveshaper` and :class:`WaveshaperFX` (not registered)."""

    extra_controls = _AFFINE

    def __init__(
        self,
        sample_rate: float = 48000,
        n_shapers: int = 16,
        shaper: str = "chebyshev",
        order: int = 32,
        hidden: int = 16,
        depth: int = 3,
        mix: str = "sum",
        **knobs: Any,
    ) -> None:
        owner = type(self).name or type(self).__name__
        self.n_shapers = positive_int(n_shapers, f"{owner}: n_shapers")
        if shaper not in _SHAPERS:
            raise ValueError(f"{owner}: shaper must be one of {_SHAPERS}, got {shaper!r}")
        if mix not in _MIXES:
            raise ValueError(f"{owner}: mix must be one of {_MIXES}, got {mix!r}")
        self.shaper = shaper
        self.order = positive_int(order, f"{owner}: order")
        self.hidden = positive_int(hidden, f"{owner}: hidden")
        self.depth = positive_int(depth, f"{owner}: depth")
        self.mix = mix
        super().__init__(sample_rate, **knobs)
        S = self.n_shapers
        gen = torch.Generator().manual_seed(0)  # a fixed init: the same unit every time
        if shaper in ("chebyshev", "both"):
            k = torch.arange(1, self.order + 1, dtype=torch.float64)
            c = (0.5 + torch.rand(S, self.order, generator=gen, dtype=torch.float64)) / k
            self.coefficients = nn.Parameter((c / c.sum(-1, keepdim=True)).to(self.dtype))
        if shaper in ("mlp", "both"):
            widths = [1] + [self.hidden] * (self.depth - 1) + [1]
            self.mlp_weights = nn.ParameterList()
            self.mlp_biases = nn.ParameterList()
            for w_in, w_out in zip(widths[:-1], widths[1:]):
                scale = 3.0 if w_in == 1 else math.sqrt(6.0 / w_in)  # SIREN-like init
                w = (2 * torch.rand(S, w_out, w_in, generator=gen, dtype=torch.float64) - 1) * scale
                b = (2 * torch.rand(S, w_out, generator=gen, dtype=torch.float64) - 1) * math.pi / 2
                self.mlp_weights.append(nn.Parameter(w.to(self.dtype)))
                self.mlp_biases.append(nn.Parameter(b.to(self.dtype)))
        self.input_gain = nn.Parameter(torch.ones(S, dtype=self.dtype))
        self.input_offset = nn.Parameter(torch.zeros(S, dtype=self.dtype))
        self.output_gain = nn.Parameter(torch.full((S,), 1.0 / S, dtype=self.dtype))
        self.output_offset = nn.Parameter(torch.zeros(S, dtype=self.dtype))
        if mix == "learnable":
            self.mix_weights = nn.Parameter(torch.ones(S, dtype=self.dtype))

    def _affine(self, controls: Mapping[str, Any], key: str, batch: int, n: int) -> Tensor:
        """One affine control as ``(batch|1, S, n|1)``: the call's value or the learnable default."""
        if key in controls:
            c, previous = control_frames(controls[key], batch, dims=self.n_shapers, name=f"{self.label}.{key}",
                                         dtype=self.dtype, device=self.device)
            return upsample_control(c, n, mode="causal", previous=previous).transpose(1, 2)
        return getattr(self, key).reshape(1, self.n_shapers, 1)

    def _shape(self, exciter: Tensor, controls: Mapping[str, Any], batch: int, mask: Tensor | None,
               clamp: bool = False) -> Tensor:
        """Run the bank on ``exciter`` ``(batch, [channels,] n)``; controls broadcast over channels.
        ``clamp``: Chebyshev shapers see ``a x + b`` clamped to ``[-1, 1]`` (arbitrary input)."""
        n = exciter.shape[-1]
        affine = [self._affine(controls, key, batch, n) for key in _AFFINE]
        if exciter.ndim == 3:  # (B, C, n): the shaper axis goes after the channels
            affine = [a.unsqueeze(1) for a in affine]
        cheb = getattr(self, "coefficients", None)
        mlp = (list(self.mlp_weights), list(self.mlp_biases)) if self.shaper != "chebyshev" else None

        def shaper(u: Tensor) -> Tensor:
            v = u.clamp(-1.0, 1.0) if clamp else u
            if cheb is None:
                out = None
            elif mask is not None and not mask.is_floating_point():  # orders kept per sample
                out = chebyshev_shaper(v, cheb, orders=mask)
            else:
                out = chebyshev_shaper(v, cheb, mask)
            if mlp is not None:
                m = mlp_shaper(u, *mlp)
                out = m if out is None else out + m
            return out

        return shaping_bank(exciter, shaper, *affine, mix=getattr(self, "mix_weights", None))


@register
class Waveshaper(_ShapingBank):
    """Neural waveshaping synth (NEWT): a sinusoid at ``f0_hz`` through a bank of learnable shapers.

    ``y = sum_s w_s (g_s f_s(a_s cos(2 pi phase) + b_s) + d_s)`` for ``s = 1 .. n_shapers``. The
    exciter's phase is accumulated in float64 from ``f0 / sample_rate`` and carried between blocks.
    Each shaping function ``f_s`` is a Chebyshev series ``sum_k c[s, k] T_k`` (``shaper="chebyshev"``,
    learnable ``coefficients`` (n_shapers, order)), a small per-shaper MLP with sine activations as
    in NEWT (``"mlp"``: ``depth`` layers of width ``hidden``), or the sum of both (``"both"``). The
    shaper outputs are summed, or weighted by the learnable ``mix_weights`` (``mix="learnable"``,
    NEWT's 1x1 mixer).

    Band limit (Chebyshev): ``T_k(a cos + b)`` only holds harmonics up to ``k``, so every order with
    ``k * f0 >= sample_rate / 2`` gets gain 0 at that sample: no partial reaches Nyquist and nothing
    aliases (exact, any gains and offsets). The input ``a x + b`` is not clamped: keep
    ``|a| + |b| <= 1`` to stay where ``|T_k| <= 1``. MLP shapers are not band-limited.

    Knob: ``f0_hz`` 20 .. 8000 Hz, log (default 220); may vary per frame.

    Extra controls, each ``(batch, frames, n_shapers)`` (or ``(batch, n_shapers)``, constant;
    frames on the block's causal hop grid, upsampled linearly): ``input_gain`` ``a``, ``input_offset`` ``b``,
    ``output_gain`` ``g``, ``output_offset`` ``d``. When not given, the learnable
    ``nn.Parameter`` of the same name (n_shapers,) is used (defaults 1, 0, 1 / n_shapers, 0),
    saved by :func:`dspfx.save`.

    Options: ``n_shapers`` (16), ``shaper`` (``"chebyshev"``), ``order`` (32), ``hidden`` (16),
    ``depth`` (3), ``mix`` (``"sum"``), ``hop`` (samples per control frame when ``n_samples`` is
    not given; default sample_rate / 250: 64 at 16 kHz, 192 at 48 kHz). Default coefficients:
    ``c[s, k] = u / k`` with ``u`` uniform in [0.5, 1.5) from a fixed seed, each row scaled to sum
    1 (distinct, sawtooth-like shapers with ``|f_s| <= 1``). To shape input audio instead of the sinusoid use ``waveshaper_fx``.

    Output: ``(batch, 1, samples)``.

    >>> synth = dspfx.make("waveshaper", sample_rate=16000, n_shapers=8, order=16)
    >>> y = synth(f0_hz=f0_frames, output_gain=gains)  # gains: (batch, frames, 8); frames x 64 samples

    Reference: Hayes, Saitis, Fazekas, "Neural Waveshaping Synthesis", ISMIR 2021; Le Brun,
    "Digital waveshaping synthesis", JAES 1979.
    """

    name = "waveshaper"
    category = "synth"
    is_synth = True
    f0_hz = Knob(220.0, 20.0, 8000.0, scale="log", unit="Hz", doc="exciter frequency")

    def __init__(
        self,
        sample_rate: float = 48000,
        n_shapers: int = 16,
        shaper: str = "chebyshev",
        order: int = 32,
        hidden: int = 16,
        depth: int = 3,
        mix: str = "sum",
        hop: int | None = None,
        **knobs: Any,
    ) -> None:
        self.hop = control_hop(sample_rate, hop, "waveshaper")
        super().__init__(sample_rate, n_shapers=n_shapers, shaper=shaper, order=order, hidden=hidden,
                         depth=depth, mix=mix, **knobs)

    def init_state(self, batch: int, channels: int) -> Tensor:
        """Exciter phase in cycles (float64), ``(batch, 1)``."""
        return torch.zeros(batch, 1, dtype=phase_dtype(self.device), device=self.device)

    def default_length(self, controls: Mapping[str, Any]) -> int:
        frames = 1
        for key, value in controls.items():
            shape = getattr(value, "shape", ())
            if (key in self.extra_controls and len(shape) == 3) or (key == "f0_hz" and len(shape) == 2):
                frames = max(frames, int(shape[1]))
        return frames * self.hop

    def process(self, x: Tensor | None, controls: dict[str, Any], state: Tensor) -> tuple[Tensor, Tensor]:
        if x is not None:
            raise TypeError("waveshaper is a synth driven by its own sinusoid at f0_hz; to shape input audio "
                            "use the unit 'waveshaper_fx'")
        batch = state.shape[0]
        f0 = controls["f0_hz"][:, 0].expand(batch, -1)  # (batch, n), range-checked by the knob
        phase, final = accumulate_phase(f0 / self.sample_rate, state)
        exciter = torch.cos(2 * math.pi * phase)
        # the band mask as its length per sample (a prefix of orders): the compiled bank on the CPU
        mask = chebyshev_band_orders(f0, self.order, self.sample_rate) if self.shaper != "mlp" else None
        y = self._shape(exciter, controls, batch, mask)
        return y.unsqueeze(1), final


@register
class WaveshaperFX(_ShapingBank):
    """Neural waveshaping of input audio: NEWT's shaping bank as an effect.

    Every channel of ``x`` goes through ``y = sum_s w_s (g_s f_s(a_s x + b_s) + d_s)``, the same
    bank as the ``waveshaper`` synth (learnable Chebyshev series and/or sine MLPs, affine controls
    ``input_gain``, ``input_offset``, ``output_gain``, ``output_offset`` shaped
    ``(batch, frames, n_shapers)``, broadcast over channels; learnable parameter defaults 1, 0,
    1 / n_shapers, 0). Memoryless, so it streams trivially. No band limit: the input is
    arbitrary, so orders above Nyquist cannot be masked (oversample around it if needed).
    Chebyshev shapers see ``a x + b`` clamped to ``[-1, 1]``, their domain: ``T_k`` grows as
    ``x**k`` outside it (order 32 at 1.05 gave 388), so a louder input clips there instead.

    No knobs. Options as ``waveshaper``: ``n_shapers`` (16), ``shaper`` (``"chebyshev"``,
    ``"mlp"``, ``"both"``), ``order`` (32), ``hidden`` (16), ``depth`` (3), ``mix`` (``"sum"``).

    >>> fx = dspfx.make("waveshaper_fx", n_shapers=4, order=8)
    >>> y = fx(x, input_gain=torch.full((1, 4), 0.8))

    Reference: Hayes, Saitis, Fazekas, "Neural Waveshaping Synthesis", ISMIR 2021.
    """

    name = "waveshaper_fx"
    category = "effect"

    def process(self, x: Tensor | None, controls: dict[str, Any], state: Any) -> tuple[Tensor, Any]:
        return self._shape(x, controls, x.shape[0], None, clamp=True), state
