"""FM (phase modulation) synth with 2..6 operators, DX7-style algorithms or a free routing."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from dspfx.functional.blep import accumulate_phase
from dspfx.functional.control import control_frames, control_hop, upsample_control
from dspfx.functional.fm import (
    FM_ALGORITHMS,
    check_routing,
    fm_algorithm,
    fm_render,
    fm_render_feedback,
    returning_clamp,
)
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
    frames on the block's causal hop grid, upsampled linearly); when not given the unit's learnable
    ``nn.Parameter`` of the same name is used (saved with :func:`dspfx.save`):

    - ``ratios``: frequency ratios to f0, > 0 (default all 1);
    - ``levels``: carrier output levels (default 1 / number of carriers on carriers, 0 elsewhere);
    - ``indices``: modulation indices in radians, >= 0 (default 1 on modulators, 0 elsewhere).

    - ``feedback``: DX7 operator self-feedback ``beta >= 0`` (radians per unit output; default 0):
      ``s_j[t] = sin(2 pi phi_j + modulation + beta_j (s_j[t-1] + s_j[t-2]) / 2)``, for the
      operators in ``feedback_operators`` only (a non-zero entry elsewhere is an error). Around
      ``beta = 1`` a single operator gives the DX7's sawtooth-like spectrum. The recursion runs
      in a compiled loop (numba) with an exact hand-written backward; its last two outputs are
      carried between blocks; ``beta = 0`` renders exactly as an operator without feedback.

    Index bound: per sample, Carson's rule (band up to ``f_c + (I + 1) f_m``) with the modulator
    band edges propagated through the routing (:func:`dspfx.functional.fm.clamp_indices`); each
    index is clamped so every operator's band stays below ``(1 - margin) * Nyquist``
    (differentiable where not clamped; beyond the bound the gradient still reaches the index when
    it points back into range, :func:`dspfx.functional.fm.returning_clamp`, so a fit that
    overshoots recovers); a carrier whose own frequency is above that is muted.
    Carson's rule covers ~98 % of the power, so a residue of about -20 dB of the clamped tone
    can still lie beyond the limit. Feedback bound: a fed-back operator whose argument reaches
    ``e`` Hz gets the band ``K(beta) e``, ``K`` the harmonic beyond which the continuous-time
    self-feedback spectrum (Kepler's equation, ``a_n = 2 J_n(n beta) / (n beta)``) stays
    60 dB below its fundamental (``K(0.5) ~ 9``, ``K(0.9) ~ 47``, ``K(1) ~ 180``); beta is
    clamped per sample (with the same returning gradient) to keep ``K(beta) e`` within the
    limit, and never above 1 (beyond 1
    the DX7 loop turns noisy and no band can be stated), see
    :func:`dspfx.functional.fm.clamp_indices_and_feedback`.

    Options: ``n_operators`` (2..6, default 6); ``algorithm``: ``"stack"`` (default: every
    operator modulates the next lower one, operator 0 the only carrier), ``"parallel"``,
    ``"pairs"``, or the DX7 numbers 1, 5, 32 (``n_operators=6``); or ``routing`` (``n x n``
    0/1 matrix) with ``carriers`` (0-based indices) instead of an algorithm; ``margin`` (0.05);
    ``hop`` (192: samples per control frame when ``n_samples`` is not given);
    ``feedback_operators`` (0-based operators with self-feedback; default: the top operator
    ``n_operators - 1`` for the built-in algorithms, as the DX7's operator 6 in algorithms 1, 5
    and 32; none for a free ``routing``; ``[]`` turns feedback off).
    Phases and the feedback history are carried across blocks.

    >>> fm = dspfx.make("fm", n_operators=2, algorithm="stack", f0_hz=220.0)
    >>> y = fm(n_samples=48000, ratios=torch.tensor([[1.0, 2.0]]), indices=torch.tensor([[0.0, 3.0]]))
    >>> saw = fm(n_samples=48000, indices=torch.tensor([[0.0, 0.0]]), feedback=torch.tensor([[0.0, 1.0]]))

    Reference: Chowning, "The synthesis of complex audio spectra by means of frequency
    modulation" (JAES 1973); Yamaha DX7 algorithm chart; Carson's bandwidth rule.
    """

    name = "fm"
    category = "synth"
    is_synth = True
    extra_controls = ("ratios", "levels", "indices", "feedback")
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
        feedback_operators: list[int] | None = None,
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
        if feedback_operators is None:
            fb_ops = [] if routing is not None else [n_operators - 1]
        else:
            try:
                fb_ops = sorted(int(k) for k in feedback_operators)
            except (TypeError, ValueError):
                raise TypeError(f"fm: feedback_operators must be a list of operator indices, got {feedback_operators!r}") from None
            if len(set(fb_ops)) != len(fb_ops) or any(not 0 <= k < n_operators for k in fb_ops):
                raise ValueError(
                    f"fm: feedback_operators must be distinct operator indices in 0 .. {n_operators - 1}, "
                    f"got {feedback_operators!r}"
                )
        self.feedback_operators = list(feedback_operators) if feedback_operators is not None else None
        self._feedback_ops = fb_ops
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
        self.feedback = nn.Parameter(torch.zeros(n))

    def init_state(self, batch: int, channels: int) -> tuple[Tensor, Tensor]:
        """Operator phases in turns ``(batch, N, 1)`` (float64) and the last two outputs of each
        fed-back operator ``(batch, len(feedback_operators), 2)`` (float64, most recent first)."""
        phase = torch.zeros(batch, self.n_operators, 1, dtype=torch.float64, device=self.device)
        return phase, torch.zeros(batch, len(self._feedback_ops), 2, dtype=torch.float64, device=self.device)

    def default_length(self, controls: Mapping[str, Any]) -> int:
        frames = 1
        for key, value in controls.items():
            if isinstance(value, Tensor):
                if value.ndim == 3 or (value.ndim == 2 and key == "f0_hz"):
                    frames = max(frames, int(value.shape[1]))
        return frames * self.hop

    def _extra(self, controls: dict[str, Any], key: str, batch: int, n: int) -> Tensor:
        if key in controls:
            c, previous = control_frames(controls[key], batch, dims=self.n_operators, name=f"fm.{key}", dtype=self.dtype,
                                         device=self.device)
            if key in ("ratios", "indices", "feedback"):
                with torch.no_grad():
                    low = float(c.min())
                if (key == "ratios" and low <= 0) or (key in ("indices", "feedback") and low < 0):
                    need = "> 0" if key == "ratios" else ">= 0"
                    raise ValueError(f"fm.{key} must be {need}, got a minimum of {low:g}")
            if key == "feedback":
                others = [k for k in range(self.n_operators) if k not in self._feedback_ops]
                with torch.no_grad():
                    stray = bool((c[..., others] != 0).any()) if others else False
                if stray:
                    raise ValueError(
                        f"fm.feedback is non-zero on operators {others} (only feedback_operators="
                        f"{self._feedback_ops} have feedback); give 0 there or set feedback_operators"
                    )
            c = upsample_control(c, n, mode="causal", previous=previous)
        else:
            p = getattr(self, key)
            if key == "ratios":
                p = p.clamp(min=1e-4)
            elif key == "feedback":
                p = returning_clamp(p, low=0.0)  # a fit that pushes it below 0 can come back
            c = p.reshape(1, 1, -1)
        return c.transpose(1, 2)  # (B|1, N, n|1)

    def process(
        self, x: Tensor | None, controls: dict[str, Any], state: tuple[Tensor, Tensor]
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        phase0, fb_state = state
        f0 = controls["f0_hz"]  # (B|1, 1, n)
        batch, n = phase0.shape[0], f0.shape[-1]
        ratios = self._extra(controls, "ratios", batch, n)
        levels = self._extra(controls, "levels", batch, n)
        indices = self._extra(controls, "indices", batch, n)
        freqs = (f0 * ratios).expand(batch, self.n_operators, n)
        phase, final = accumulate_phase(freqs / self.sample_rate, phase0)
        if not self._feedback_ops:
            y = fm_render(phase, freqs, levels, indices, self._routing, self._carriers, self.sample_rate, self.margin)
            return y, (final, fb_state)
        feedback = self._extra(controls, "feedback", batch, n)
        if not (feedback.requires_grad or bool(feedback.detach().any())):
            feedback = None  # exactly 0 and no gradient wanted: no feedback terms at all (same output)
        # exactly 0 with a gradient wanted (e.g. the trainable default): operator_feedback skips
        # the compiled loop and takes the vectorised first-order path (same output, exact gradient)
        y, fb_state = fm_render_feedback(
            phase, freqs, levels, indices, feedback, fb_state, self._routing, self._carriers,
            self._feedback_ops, self.sample_rate, self.margin,
        )
        return y, (final, fb_state.to(torch.float64))
