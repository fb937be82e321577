"""FM (phase modulation) synth with 2..6 operators, DX7-style algorithms or a free routing."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from dspfx.functional.blep import accumulate_phase
from dspfx.functional.control import as_control, control_hop, upsample_control
from dspfx.functional.fm import FM_ALGORITHMS, check_routing, fm_algorithm, fm_render
from dspfx.registry import register
from dspfx.unit import Knob, Unit

__all__ = ["FM"]


@register
class FM(Unit):
    """FM synth (phase modulation, as on the Yamaha DX7) with ``n_operators`` sine operators.

    Operator ``j`` runs at ``f0_hz * ratios[j]`` and outputs ``s_j = sin(2 pi phi_j + sum of
    I_k s_k over its modulators k)``; carriers add ``levels[j] * s_j`` to the output. The routing
    is feed-forward: ``routing[i][j] = 1`` means operator ``j`` modulates operator ``i`` (``j > i``,
    strictly upper triangular; operator 0 at the bottom like the DX7's operator 1).

    Knob: ``f0_hz`` 20 .. 20000 Hz (default 440), log; may vary in time.

    Extra controls (each ``(batch, frames, n_operators)``, or ``(batch, n_operators)`` constant,
    frames spread over the block and upsampled linearly); when not given the unit's learnable
    ``nn.Parameter`` of the same name is used (saved with :func:`dspfx.save`):

    - ``ratios``: frequency ratios to f0, > 0 (default all 1);
    - ``levels``: carrier output levels (default 1 / number of carriers on carriers, 0 elsewhere);
    - ``indices``: modulation indices in radians, >= 0 (default 1 on modulators, 0 elsewhere).

    Index bound: per sample, Carson's rule (band up to ``f_c + (I + 1) f_m``) with the modulator
    band edges propagated through the routing (:func:`dspfx.functional.fm.clamp_indices`); each
    index is clamped so every operator's band stays below ``(1 - margin) * Nyquist``
    (differentiable where not clamped); a carrier whose own frequency is above that is muted.
    Carson's rule covers ~98 % of the power, so a residue of about -20 dB of the clamped tone
    can still lie beyond the limit.

    Options: ``n_operators`` (2..6, default 6); ``algorithm``: ``"stack"`` (default: every
    operator modulates the next lower one, operator 0 the only carrier), ``"parallel"``,
    ``"pairs"``, or the DX7 numbers 1, 5, 32 (``n_operators=6``); or ``routing`` (``n x n``
    0/1 matrix) with ``carriers`` (0-based indices) instead of an algorithm; ``margin`` (0.05);
    ``hop`` (192: samples per control frame when ``n_samples`` is not given).
    Operator feedback is not implemented (the DX7 feedback is a nonlinear per-sample recursion).
    Phases are carried across blocks.

    >>> fm = dspfx.make("fm", n_operators=2, algorithm="stack", f0_hz=220.0)
    >>> y = fm(n_samples=48000, ratios=torch.tensor([[1.0, 2.0]]), indices=torch.tensor([[0.0, 3.0]]))

    Reference: Chowning, "The synthesis of complex audio spectra by means of frequency
    modulation" (JAES 1973); Yamaha DX7 algorithm chart; Carson's bandwidth rule.
    """

    name = "fm"
    category = "synth"
    is_synth = True
    extra_controls = ("ratios", "levels", "indices")
    f0_hz = Knob(440.0, 20.0, 20000.0, scale="log", unit="Hz", doc="fundamental frequency")

    def __init__(
        self,
        sample_rate: float = 48000,
        n_operators: int = 6,
        algorithm: Any = None,
        routing: list[list[int]] | None = None,
        carriers: list[int] | None = None,
        margin: float = 0.05,
        hop: int = 192,
        **knobs: Any,
    ) -> None:
        if isinstance(n_operators, bool) or not isinstance(n_operators, int) or not 2 <= n_operators <= 6:
            raise ValueError(f"fm: n_operators must be an int in 2 .. 6, got {n_operators!r}")
        if routing is not None:
            if algorithm is not None:
                raise ValueError("fm: give either algorithm= or routing= (with carriers=), not both")
            rows, cs = check_routing(routing, carriers, n_operators)
        else:
            if carriers is not None:
                raise ValueError("fm: carriers= goes with routing=; an algorithm fixes its own carriers")
            if algorithm is not None and algorithm not in FM_ALGORITHMS:
                raise ValueError(f"fm: unknown algorithm {algorithm!r}; expected one of {FM_ALGORITHMS}")
            rows, cs = fm_algorithm("stack" if algorithm is None else algorithm, n_operators)
        if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 0 <= margin < 1:
            raise ValueError(f"fm: margin must be a number in [0, 1), got {margin!r}")
        self.n_operators = n_operators
        self.algorithm = algorithm
        self.routing = [list(r) for r in routing] if routing is not None else None
        self.carriers = list(carriers) if carriers is not None else None
        self.margin = float(margin)
        self.hop = control_hop(sample_rate, hop, "fm")
        self._routing, self._carriers = rows, cs
        super().__init__(sample_rate, **knobs)
        n = n_operators
        levels = torch.zeros(n)
        levels[cs] = 1.0 / len(cs)
        modulators = [k for k in range(n) if any(rows[i][k] for i in range(n))]
        indices = torch.zeros(n)
        indices[modulators] = 1.0
        self.ratios = nn.Parameter(torch.ones(n))
        self.levels = nn.Parameter(levels)
        self.indices = nn.Parameter(indices)

    def init_state(self, batch: int, channels: int) -> Tensor:
        return torch.zeros(batch, self.n_operators, 1, dtype=torch.float64, device=self.device)

    def default_length(self, controls: Mapping[str, Any]) -> int:
        frames = 1
        for key, value in controls.items():
            if isinstance(value, Tensor):
                if value.ndim == 3 or (value.ndim == 2 and key == "f0_hz"):
                    frames = max(frames, int(value.shape[1]))
        return frames * self.hop

    def _extra(self, controls: dict[str, Any], key: str, batch: int, n: int) -> Tensor:
        if key in controls:
            c = as_control(controls[key], batch, dims=self.n_operators, name=f"fm.{key}", dtype=self.dtype, device=self.device)
            if key in ("ratios", "indices"):
                with torch.no_grad():
                    low = float(c.min())
                if (key == "ratios" and low <= 0) or (key == "indices" and low < 0):
                    need = "> 0" if key == "ratios" else ">= 0"
                    raise ValueError(f"fm.{key} must be {need}, got a minimum of {low:g}")
            c = upsample_control(c, n)
        else:
            p = getattr(self, key)
            if key == "ratios":
                p = p.clamp(min=1e-4)
            c = p.reshape(1, 1, -1)
        return c.transpose(1, 2)  # (B|1, N, n|1)

    def process(self, x: Tensor | None, controls: dict[str, Any], state: Tensor) -> tuple[Tensor, Tensor]:
        f0 = controls["f0_hz"]  # (B|1, 1, n)
        batch, n = state.shape[0], f0.shape[-1]
        ratios = self._extra(controls, "ratios", batch, n)
        levels = self._extra(controls, "levels", batch, n)
        indices = self._extra(controls, "indices", batch, n)
        freqs = (f0 * ratios).expand(batch, self.n_operators, n)
        phase, final = accumulate_phase(freqs / self.sample_rate, state)
        y = fm_render(phase, freqs, levels, indices, self._routing, self._carriers, self.sample_rate, self.margin)
        return y, final
