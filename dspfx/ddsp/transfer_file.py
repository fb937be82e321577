"""Timbre transfer of an audio file of any length, in chunks, with bounded memory and progress.

:func:`transfer_file` runs :func:`dspfx.ddsp.transfer.transfer`'s pipeline on a file without
holding it whole at its own rate:

1. the file is read in blocks of ``chunk_s`` seconds (:func:`dspfx.io.open_audio`), mixed to
   mono and resampled to the model's rate as it streams (:class:`dspfx.resampling.StreamResampler`,
   sample-exact against resampling the whole file);
2. f0, confidence and loudness are computed chunk by chunk as the audio arrives, each chunk with
   ``CONTEXT_S`` of audio either side so its frames see what they would in one pass (the pitch
   tracker's Viterbi path can still differ within a few frames of a seam); only the frames are
   kept (a few MB an hour), never the audio;
3. the whole-file adjustments (note detection, octave shift, loudness matching) run on the frame
   features (a few MB an hour);
4. the model renders chunk by chunk through :class:`dspfx.Stream` (its state carried, equal to
   the offline render), each chunk resampled back to the file's rate as it streams and written
   to the output (atomically: a temporary file renamed into place at the end).

A file shorter than one chunk gives the same result as :func:`~dspfx.ddsp.transfer.transfer` on
the whole clip (to float32 rounding). Peak memory for a one-hour file is measured in
``tests/ddsp/test_transfer_file.py``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dspfx.ddsp.model import DDSPModel
from dspfx.ddsp.transfer import adjust_features, check_shifts

__all__ = ["transfer_file", "TransferFileSummary", "CONTEXT_S"]

#: Audio either side of each feature chunk: longer than the pitch tracker's and the loudness
#: STFT's frames (64 ms, 128 ms) by far.
CONTEXT_S = 1.0


@dataclass
class TransferFileSummary:
    """What :func:`transfer_file` did: paths, the input's length and rate, the octave shift
    applied, the chunks processed."""

    input: Path
    output: Path
    seconds: float
    sample_rate: int
    octave_shift: int
    chunks: int


def _progress(total: int, desc: str, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="s", disable=not enabled, leave=False)


class _FeatureChunks:
    """Frame features of a model-rate signal that arrives in pieces: chunks of ``chunk_frames``
    frames are analysed as soon as ``CONTEXT_S`` of audio after them has arrived, each with that
    much audio either side; only the samples later chunks need are kept."""

    def __init__(self, model: DDSPModel, chunk_frames: int, pitch_method: str) -> None:
        self.model, self.chunk_frames, self.pitch_method = model, chunk_frames, pitch_method
        self.hop = model.hop
        self.context = int(math.ceil(CONTEXT_S * model.frame_rate))
        self.buffer = np.zeros(0, dtype=np.float32)
        self.base = 0  # frame whose first sample is buffer[0]
        self.done = 0  # frames analysed
        self.received = 0  # samples received
        self.parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def _analyse(self, frames_total: int | None) -> None:
        from dspfx.ddsp.features import loudness_db, pitch

        hop, sr, fr = self.hop, self.model.sample_rate, self.model.frame_rate
        while True:
            k = self.done
            available = self.received // hop  # whole frames of samples received
            end = k + self.chunk_frames
            if frames_total is None:
                if available < end + self.context:
                    return
                n = self.chunk_frames
            else:
                if k >= frames_total:
                    return
                n = min(self.chunk_frames, frames_total - k)
            a = max(0, k - self.context)
            b = k + n + self.context if frames_total is None else min(frames_total, k + n + self.context)
            seg = np.zeros((b - a) * hop, dtype=np.float32)
            got = self.buffer[(a - self.base) * hop: (b - self.base) * hop]
            seg[: got.size] = got
            x = torch.from_numpy(seg).to(torch.float64)
            p, c = pitch(x, sr, fr, method=self.pitch_method)
            ld = loudness_db(x, sr, fr)
            self.parts.append(tuple(t.numpy()[k - a: k - a + n].astype(np.float64) for t in (p, c, ld)))
            self.done = k + n
            drop = max(0, self.done - self.context - self.base)
            self.buffer = self.buffer[drop * hop:]
            self.base += drop

    def feed(self, y: np.ndarray) -> None:
        self.buffer = np.concatenate([self.buffer, y.astype(np.float32)])
        self.received += y.size
        self._analyse(None)

    def finish(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        frames = max(1, math.ceil(self.received / self.hop))
        self._analyse(frames)
        return tuple(np.concatenate([p[i] for p in self.parts]) for i in range(3))  # type: ignore[return-value]


def _read_features(path: Path, model: DDSPModel, chunk_s: float, pitch_method: str, progress: bool
                   ) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], int, int]:
    """Frame features (f0, confidence, loudness) of the file mixed to mono at the model's rate,
    computed as it is read; the file's own length and rate."""
    from dspfx.io import check_finite, open_audio
    from dspfx.resampling import StreamResampler

    chunk_frames = max(1, int(round(chunk_s * model.frame_rate)))
    features = _FeatureChunks(model, chunk_frames, pitch_method)
    with open_audio(path) as f:
        rate, declared = int(f.samplerate), int(f.frames)
        resampler, n_in = StreamResampler(rate, model.sample_rate), 0
        with _progress(declared // rate, f"analysing {path.name}", progress) as bar:
            for data in f.blocks(blocksize=max(1, int(chunk_s * rate)), dtype="float64", always_2d=True):
                check_finite(data, name=f"audio file {str(path)!r}")
                features.feed(resampler.feed(data.mean(axis=1)))
                n_in += data.shape[0]
                bar.update(data.shape[0] // rate)
    if n_in == 0:
        raise ValueError(f"cannot read audio from {str(path)!r}: it contains no samples")
    features.feed(resampler.finish())
    return features.finish(), n_in, rate


def transfer_file(
    model: DDSPModel,
    input_path: str | os.PathLike,
    output_path: str | os.PathLike,
    *,
    chunk_s: float = 10.0,
    progress: bool = True,
    subtype: str | None = None,
    threshold: float = 1.0,
    octave_shift: int | str = "auto",
    quiet_db: float = 20.0,
    autotune: float = 0.0,
    pitch_shift_octaves: float = 0.0,
    loudness_shift_db: float = 0.0,
    stats: dict[str, Any] | None = None,
    pitch_method: str = "yin",
) -> TransferFileSummary:
    """Render the audio file ``input_path`` with ``model``'s timbre into ``output_path`` (mono, at
    the input's rate and length), ``chunk_s`` seconds at a time (see the module docstring).

    The options after ``subtype`` are :func:`dspfx.ddsp.transfer.transfer`'s. ``subtype`` is the
    output's soundfile subtype (default ``FLOAT`` for ``.wav``; an integer subtype refuses a
    render beyond full scale). The output path is checked before any work.

    Raises:
        TypeError: ``model`` is not a DDSPModel.
        ValueError: bad shifts or chunk length, unreadable input (as :func:`dspfx.io.read_audio`),
            an output format that cannot hold the render.
        FileNotFoundError: the input, or the output's folder, does not exist.
    """
    import soundfile as sf

    from dspfx.io import atomic_path, check_peak, output_format
    from dspfx.resampling import StreamResampler
    from dspfx.stream import Stream

    if not isinstance(model, DDSPModel):
        raise TypeError(f"model must be a DDSPModel (DDSPModel.load(path)), got {type(model).__name__}")
    check_shifts(octave_shift, pitch_shift_octaves, loudness_shift_db)
    if not (1.0 <= float(chunk_s) <= 600.0):
        raise ValueError(f"chunk_s {chunk_s}: expected 1 .. 600 seconds")
    src, dst = Path(os.fspath(input_path)), Path(os.fspath(output_path))
    fmt, subtype = output_format(dst, subtype)
    if not dst.parent.is_dir():
        raise FileNotFoundError(f"output folder {str(dst.parent)!r} does not exist")

    (f0, conf, loud), n_in, rate = _read_features(src, model, chunk_s, pitch_method, progress)
    chunk_frames = max(1, int(round(chunk_s * model.frame_rate)))
    new_f0, new_loud, _, shift = adjust_features(
        model, f0, conf, loud, threshold=threshold, octave_shift=octave_shift, quiet_db=quiet_db, autotune=autotune,
        pitch_shift_octaves=pitch_shift_octaves, loudness_shift_db=loudness_shift_db, stats=stats)

    ref = next(model.parameters())
    stream, back = Stream(model), StreamResampler(model.sample_rate, rate)
    frames, written, chunks = new_f0.size, 0, 0
    with atomic_path(dst) as tmp, sf.SoundFile(tmp, "w", rate, 1, subtype=subtype, format=fmt) as out:

        def write(z: np.ndarray) -> None:
            nonlocal written
            z = z[: n_in - written]
            check_peak(dst, subtype, z)
            out.write(z.astype(np.float32))
            written += z.size

        with _progress(frames // int(model.frame_rate), "rendering", progress) as bar, torch.no_grad():
            for k in range(0, frames, chunk_frames):
                f0_t = torch.as_tensor(new_f0[k: k + chunk_frames], dtype=ref.dtype, device=ref.device)[None]
                loud_t = torch.as_tensor(new_loud[k: k + chunk_frames], dtype=ref.dtype, device=ref.device)[None]
                block = stream(f0_hz=f0_t, loudness_db=loud_t)[0, 0].detach().cpu().to(torch.float64).numpy()
                write(back.feed(block))
                chunks += 1
                bar.update(f0_t.shape[-1] // int(model.frame_rate))
        write(back.finish())
        if written < n_in:
            write(np.zeros(n_in - written))
    return TransferFileSummary(src, dst, n_in / rate, rate, shift, chunks)
