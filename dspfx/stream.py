"""Block-by-block rendering: :class:`Stream` carries a unit's state, and the previous block's
time-varying controls, from one block to the next."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from dspfx.functional.control import Frames
from dspfx.unit import Unit, check_audio

__all__ = ["Stream"]


class Stream:
    """Render a unit block by block, carrying its state between blocks.

    >>> stream = dspfx.Stream(unit, batch=1, channels=2)
    >>> for block in blocks:                # each (1, 2, n), any n
    ...     out = stream(block)

    Rendering a signal in blocks of any size equals the offline render, with time-varying
    controls too: a control given to a call holds that block's frames (``(batch, frames)``,
    ``(batch, frames, dims)``), on the block's causal hop grid, and the stream hands the unit
    the frames given to the previous call along with them (:class:`dspfx.functional.Frames`),
    so each block starts from where the last one ended. Split the offline frames into
    consecutive groups and render each group's share of the samples (frames x hop), and the
    blocks equal the offline render. A number or a ``(batch,)`` tensor is a constant for its
    block (no ramp from the previous block).
    """

    def __init__(self, unit: Unit, batch: int = 1, channels: int = 1) -> None:
        if not isinstance(unit, Unit):
            raise TypeError(f"Stream needs a dspfx Unit, got {type(unit).__name__}")
        self.unit = unit
        self.batch = batch
        self.channels = channels
        self.state = unit.init_state(batch, channels)
        self.samples_done = 0
        self.last_frames: dict[str, Any] = {}

    def reset(self) -> None:
        """Start again from the initial state."""
        self.state = self.unit.init_state(self.batch, self.channels)
        self.samples_done = 0
        self.last_frames = {}

    def _with_previous(self, controls: dict[str, Any]) -> dict[str, Any]:
        """Wrap each time-varying control (a tensor or array of 2 or more dims) with the value
        given for it to the previous block; remember this block's values for the next."""
        out: dict[str, Any] = {}
        remembered: dict[str, Any] = {}
        for path, value in controls.items():
            if isinstance(value, Frames):
                raise TypeError(f"Stream({self.unit.label}): give {path!r} as plain frames; the stream adds the previous block's")
            if getattr(value, "ndim", 0) >= 2:
                out[path] = Frames(value, self.last_frames.get(path))
                remembered[path] = value
            else:
                out[path] = value
        self.last_frames = remembered
        return out

    def __call__(self, x: Tensor | None = None, n_samples: int | None = None, **controls: Any) -> Tensor:
        if x is not None:
            check_audio(x, owner=f"Stream({self.unit.label})")
            if (x.shape[0], x.shape[1]) != (self.batch, self.channels):
                raise ValueError(
                    f"Stream({self.unit.label}) was made for (batch={self.batch}, channels={self.channels}), "
                    f"got a block shaped {tuple(x.shape)}"
                )
        elif not self.unit.is_synth:
            raise TypeError(f"Stream({self.unit.label}): an effect needs an input block")
        y, self.state = self.unit.render_block(x, self._with_previous(controls), self.state, n_samples=n_samples)
        self.samples_done += y.shape[-1]
        return y
