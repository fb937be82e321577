"""File input/output for dspfx.

Sections:

* shape helpers: :func:`as_batch`, :func:`check_finite` (used across the project);
* atomic writes: :func:`atomic_path`, :func:`atomic_write` (any writer: audio, chain files, plots);
* audio files (over ``soundfile``): :func:`read_audio`, :func:`open_audio`, :func:`write_audio`, :func:`resample` (from
  :mod:`dspfx.resampling`);
* chain files (safetensors + JSON spec, never pickle): :func:`save`, :func:`load`;
* JSON documents (specs, manifests, statistics, controls): :func:`read_json`, bounded in size and
  checked for their format before use.

Audio is ``(channels, samples)`` in files and ``(batch, channels, samples)`` inside the
library; the public edges here also accept ``(samples,)`` and say what they did.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np
import soundfile as sf
import torch

from dspfx.checks import _audio_tensor, _check_not_transposed, as_batch, check_finite, check_sample_rate
from dspfx.resampling import resample  # dspfx.io.resample, as before
from dspfx.limits import DEFAULT_LIMITS, check_spec

if TYPE_CHECKING:
    from dspfx.unit import Unit

__all__ = [
    "as_batch",
    "check_finite",
    "atomic_path",
    "open_audio",
    "output_format",
    "check_peak",
    "atomic_write",
    "read_audio",
    "write_audio",
    "resample",
    "save",
    "load",
    "write_safetensors",
    "read_safetensors",
    "read_json",
    "MAX_JSON_BYTES",
]

PathLike = Union[str, os.PathLike]
ArrayLike = Union[torch.Tensor, np.ndarray]

# --- JSON documents ---

#: Largest JSON document :func:`read_json` reads unless told otherwise.
MAX_JSON_BYTES = 32 * 2**20


def read_json(path: PathLike, what: str, *, max_bytes: int = MAX_JSON_BYTES, format: str | None = None,
              hint: str = "") -> Any:
    """The JSON document at ``path``, parsed only after its size is checked. ``what`` names it in
    the errors ("controls file", "chain spec"); with ``format``, the document must be an object
    whose ``"format"`` is that string (``hint`` is added to that error: what writes the file).

    Raises:
        FileNotFoundError: no file. ValueError: more than ``max_bytes``, not JSON (or nested
        beyond the parser's depth), another format.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no {what} at {str(p)!r}")
    size = p.stat().st_size
    if size > max_bytes:
        raise ValueError(f"{what} {str(p)!r}: {size} bytes, more than the limit of {max_bytes}")
    try:
        doc = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
        raise ValueError(f"{what} {str(p)!r} is not JSON: {err}") from None
    if format is not None and (not isinstance(doc, dict) or doc.get("format") != format):
        found = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise ValueError(f"{what} {str(p)!r}: format {found!r}, expected {format!r}{hint}")
    return doc


# --- atomic writes ---


def _umask() -> int:
    """The process umask, read without changing it where the OS allows."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # fallback: read it by setting it (not thread-safe, rarely reached)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Context manager giving a temporary path to write instead of ``path``.

    The temporary file is created (empty) in the same directory with the same suffix, so
    writers that pick a format from the extension (soundfile, matplotlib) behave as for
    ``path``. When the block exits normally the file is flushed to disk and moved onto
    ``path`` with :func:`os.replace` (atomic on POSIX and Windows); it gets the permissions of
    the file it replaces, or the usual ``0o666 & ~umask`` for a new file. When the block
    raises, the temporary file is removed and ``path`` (if it existed) is untouched. A
    temporary left by a write that was killed (its process gone) is removed by the next write
    to the same path.

    Example::

        with atomic_path("out.wav") as tmp:
            soundfile.write(tmp, data, 48000)

    Args:
        path: destination file. Its directory must exist.

    Yields:
        The temporary file's path.

    Raises:
        FileNotFoundError: the destination directory does not exist.
        IsADirectoryError: ``path`` is a directory.
    """
    dest = Path(os.fspath(path))
    parent = dest.parent
    if not parent.is_dir():
        raise FileNotFoundError(f"cannot write {str(dest)!r}: directory {str(parent)!r} does not exist")
    if dest.is_dir():
        raise IsADirectoryError(f"cannot write {str(dest)!r}: it is a directory, expected a file path")
    _remove_stale_temporaries(dest)
    fd, tmp_name = tempfile.mkstemp(suffix=dest.suffix, prefix=f".{dest.name}.{_TMP_TAG}{os.getpid()}-", dir=parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        try:
            mode = os.stat(dest).st_mode & 0o7777
        except FileNotFoundError:
            mode = 0o666 & ~_umask()
        os.chmod(tmp, mode)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


_TMP_TAG = "dspfx-tmp-"


def _remove_stale_temporaries(dest: Path) -> None:
    """Delete temporaries of earlier writes to ``dest`` whose process is gone (a save killed
    with SIGKILL cannot clean up after itself; the next save to the same path does)."""
    prefix = f".{dest.name}.{_TMP_TAG}"
    for old in dest.parent.glob(f"{glob.escape(prefix)}*"):
        pid_text = old.name[len(prefix):].split("-", 1)[0]
        if not pid_text.isdigit() or int(pid_text) == os.getpid():
            continue
        try:
            os.kill(int(pid_text), 0)  # the writer still runs: leave its file alone
        except ProcessLookupError:
            with contextlib.suppress(OSError):
                old.unlink()
        except PermissionError:  # another user's live process
            continue


def atomic_write(path: PathLike, write_fn: Callable[[Path], Any]) -> Path:
    """Write a file atomically: ``write_fn(tmp_path)`` writes it, then it replaces ``path``.

    See :func:`atomic_path` for the guarantees (same directory and suffix, original untouched
    and temporary removed on any exception).

    Args:
        path: destination file; its directory must exist.
        write_fn: called once with the temporary path; writes the complete file there.

    Returns:
        ``path`` as a :class:`pathlib.Path`.
    """
    with atomic_path(path) as tmp:
        write_fn(tmp)
    return Path(os.fspath(path))


# --- audio files ---

# Extensions whose soundfile format name differs from the upper-cased extension.
_FORMAT_ALIASES = {"AIF": "AIFF", "AIFC": "AIFF", "OGA": "OGG", "OPUS": "OGG"}
# Subtypes that store values outside [-1, 1] as they are (the others clip or wrap).
_FLOAT_SUBTYPES = {"FLOAT", "DOUBLE"}


def _format_for(path: Path) -> str:
    ext = path.suffix[1:].upper()
    fmt = _FORMAT_ALIASES.get(ext, ext)
    if not ext or fmt not in sf.available_formats():
        raise ValueError(
            f"cannot write {str(path)!r}: unknown audio file extension {path.suffix!r}; "
            f"expected one of .wav, .flac, .ogg, .aiff, .mp3 (soundfile formats: "
            f"{', '.join(sorted(sf.available_formats()))})"
        )
    return fmt


#: Most channels an audio file may have (a header claiming more is damaged).
MAX_AUDIO_CHANNELS = 64


class TruncatedAudioWarning(UserWarning):
    """An audio file holds less than its header declares."""


def open_audio(path: PathLike, *, stacklevel: int = 2) -> sf.SoundFile:
    """Open an audio file for reading in blocks (``with open_audio(p) as f: f.read(n)``), with
    the checks :func:`read_audio` makes before reading anything: the file exists, is not a
    directory or empty, is audio, its header's rate is within 1000 .. 384000 Hz and it has at
    most ``MAX_AUDIO_CHANNELS`` channels; a file shorter than its header warns
    (:class:`TruncatedAudioWarning`).

    Returns:
        an open :class:`soundfile.SoundFile` (close it, or use it as a context manager).

    Raises:
        FileNotFoundError, ValueError: as :func:`read_audio`.
    """
    p = Path(os.fspath(path))
    if not p.exists():
        raise FileNotFoundError(f"audio file not found: {str(p)!r}")
    if p.is_dir():
        raise ValueError(f"cannot read audio from {str(p)!r}: it is a directory, expected a file")
    if p.stat().st_size == 0:
        raise ValueError(f"cannot read audio from {str(p)!r}: the file is empty (0 bytes)")
    try:
        f = sf.SoundFile(p)
    except (sf.SoundFileError, RuntimeError, TypeError) as exc:
        raise ValueError(f"cannot read audio from {str(p)!r}: {exc}") from exc
    try:
        low, high = DEFAULT_LIMITS.min_sample_rate, DEFAULT_LIMITS.max_sample_rate
        if not low <= f.samplerate <= high:
            raise ValueError(
                f"cannot read audio from {str(p)!r}: its header says {f.samplerate} Hz, outside {low:g} .. "
                f"{high:g} Hz (a damaged header, or a file that is not audio)"
            )
        if f.channels > MAX_AUDIO_CHANNELS:
            raise ValueError(f"cannot read audio from {str(p)!r}: {f.channels} channels, more than {MAX_AUDIO_CHANNELS}")
        truncated = re.search(r"^data : (\d+) \(should be (\d+)\)", f.extra_info or "", re.MULTILINE)
        if truncated:
            warnings.warn(
                f"{str(p)!r} is truncated: its header declares {truncated.group(1)} bytes of audio, the file "
                f"holds {truncated.group(2)}; reading the {f.frames} frames that are there",
                TruncatedAudioWarning, stacklevel=stacklevel,
            )
    except BaseException:
        f.close()
        raise
    return f


def read_audio(
    path: PathLike,
    sample_rate: int | None = None,
    *,
    mono: bool = False,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, int]:
    """Read an audio file (any format soundfile reads: WAV, FLAC, OGG, AIFF, MP3, ...).

    Args:
        path: the file.
        sample_rate: when given and different from the file's rate, the audio is resampled to
            it with :func:`resample` (``scipy.signal.resample_poly`` with the reduced up/down
            ratio, e.g. 160/147 for 44.1 -> 48 kHz).
        mono: average all channels into one.
        dtype: floating-point torch dtype of the result.

    Returns:
        ``(audio, sample_rate)``: a tensor shaped ``(channels, samples)`` (``(1, samples)``
        when ``mono``), values as stored (integer formats scaled to [-1, 1)), and its rate in
        Hz (``sample_rate`` when given, else the file's).

    Raises:
        FileNotFoundError: no such file.
        ValueError: a directory, an empty file, not audio / unreadable (with soundfile's
            reason), a header rate outside 1000 .. 384000 Hz (a 1 Hz header would make every
            later step allocate gigabytes), more than ``MAX_AUDIO_CHANNELS`` (64) channels, no
            samples, or NaN/Inf in the data.

    Warns:
        TruncatedAudioWarning: the file holds less audio than its header declares (a copy cut
            short); the frames that are there are returned.
    """
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise TypeError(f"dtype must be a floating-point torch dtype, got {dtype!r}")
    target_sr = None if sample_rate is None else check_sample_rate(sample_rate, integer=True)
    p = Path(os.fspath(path))
    with open_audio(p, stacklevel=3) as f:
        try:
            data, file_sr = f.read(dtype="float64", always_2d=True), f.samplerate
        except (sf.SoundFileError, RuntimeError, TypeError) as exc:
            raise ValueError(f"cannot read audio from {str(p)!r}: {exc}") from exc
    if data.shape[0] == 0:
        raise ValueError(f"cannot read audio from {str(p)!r}: it contains no samples")
    data = data.T  # (channels, samples)
    check_finite(data, name=f"audio file {str(p)!r}")
    if mono:
        data = data.mean(axis=0, keepdims=True)
    audio = torch.from_numpy(np.ascontiguousarray(data))
    out_sr = int(file_sr)
    if target_sr is not None and target_sr != out_sr:
        audio = resample(audio, out_sr, target_sr)
        out_sr = target_sr
    return audio.to(dtype), out_sr


def output_format(path: PathLike, subtype: str | None = None) -> tuple[str, str]:
    """``(format, subtype)`` soundfile writes ``path`` with: the format from the extension;
    the subtype given, else ``"FLOAT"`` for ``.wav`` and soundfile's default otherwise (Opus
    for ``.opus``).

    Raises:
        ValueError: unknown extension, or a subtype the format cannot hold.
    """
    p = Path(os.fspath(path))
    fmt = _format_for(p)
    if subtype is None:
        subtype = "FLOAT" if fmt == "WAV" else sf.default_subtype(fmt)
        if fmt == "OGG" and p.suffix.lower() == ".opus":
            subtype = "OPUS"
    subtype = subtype.upper()
    if not sf.check_format(fmt, subtype):
        raise ValueError(
            f"cannot write {str(p)!r}: subtype {subtype!r} is not available for {fmt}; "
            f"expected one of {sorted(sf.available_subtypes(fmt))}"
        )
    return fmt, subtype


def check_peak(path: PathLike, subtype: str, data: np.ndarray) -> None:
    """Refuse samples beyond +-1 for a subtype that cannot hold them (integer PCM, lossy
    codecs would clip or wrap around)."""
    peak = float(np.max(np.abs(data))) if data.size else 0.0
    if subtype not in _FLOAT_SUBTYPES and peak > 1.0:
        raise ValueError(
            f"cannot write {str(os.fspath(path))!r} as {subtype}: audio peaks at {peak:.4g} > 1.0 and would "
            f"clip or wrap around; scale it, clip it, or use subtype='FLOAT' (.wav)"
        )


def write_audio(
    path: PathLike,
    audio: ArrayLike,
    sample_rate: int,
    *,
    subtype: str | None = None,
) -> Path:
    """Write audio to a file, atomically (see :func:`atomic_path`).

    The format comes from the extension (``.wav``, ``.flac``, ``.ogg``, ``.aiff``, ...).

    Args:
        path: destination; its directory must exist.
        audio: floating-point tensor or ndarray shaped ``(samples,)``, ``(channels, samples)``
            or ``(1, channels, samples)``. A 2-D array is never transposed silently: one
            whose first dim is > 16 while its second is <= 16 is rejected as a likely
            ``(samples, channels)`` array.
        sample_rate: in Hz.
        subtype: soundfile subtype (``"PCM_16"``, ``"PCM_24"``, ``"FLOAT"``, ...). Default:
            ``"FLOAT"`` for ``.wav`` (values beyond +-1 survive), soundfile's default
            otherwise (e.g. PCM_16 for FLAC).

    Returns:
        ``path`` as a :class:`pathlib.Path`.

    Raises:
        ValueError: bad shape, no samples, NaN/Inf, unknown extension or subtype, or peak
            above 1.0 for a subtype that cannot hold it (integer PCM, lossy codecs: they would
            clip or wrap around).
        FileNotFoundError: the destination directory does not exist.
    """
    p = Path(os.fspath(path))
    sr = check_sample_rate(sample_rate, integer=True)
    x = _audio_tensor(audio, "audio")
    shape = tuple(x.shape)
    accepted = "(samples,), (channels, samples) or (1, channels, samples)"
    if x.ndim == 1:
        x = x.unsqueeze(0)
    elif x.ndim == 2:
        _check_not_transposed(shape, shape)
    elif x.ndim == 3 and shape[0] == 1:
        x = x[0]
        _check_not_transposed(tuple(x.shape), shape)
    elif x.ndim == 3:
        raise ValueError(
            f"audio has shape {shape}: a batch of {shape[0]} signals; write_audio writes one. "
            f"Expected {accepted}; write each item (audio[i]) to its own file"
        )
    else:
        raise ValueError(f"audio has shape {shape} ({x.ndim}-D); expected {accepted}")
    if x.shape[-1] == 0:
        raise ValueError(f"audio has shape {shape} with no samples; expected at least one sample")
    if x.dtype not in (torch.float32, torch.float64):
        x = x.to(torch.float32)
    data = x.detach().cpu().numpy()
    check_finite(data, name="audio")

    fmt, subtype = output_format(p, subtype)
    check_peak(p, subtype, data)

    def _write(tmp: Path) -> None:
        try:
            sf.write(tmp, np.ascontiguousarray(data.T), sr, subtype=subtype, format=fmt)
        except (sf.SoundFileError, RuntimeError, TypeError) as exc:
            raise ValueError(f"cannot write audio to {str(p)!r}: {exc}") from exc

    return atomic_write(p, _write)


def write_safetensors(path: PathLike, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> Path:
    """Write ``tensors`` (moved to the CPU, made contiguous) and string ``metadata`` to one
    safetensors file, atomically (a temporary file beside ``path`` renamed into place). The one
    writer behind chain files, model files, checkpoints and dataset shards."""
    from safetensors.torch import save_file

    path = Path(path)
    cpu = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(cpu, str(tmp), metadata=metadata)
    return path


def read_safetensors(path: PathLike, what: str = "safetensors file") -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """``(tensors, metadata)`` of a safetensors file (no code runs: safetensors + JSON strings).

    Raises:
        FileNotFoundError: no file. ValueError: not a readable safetensors file (named as
        ``what`` in the message).
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no {what} at {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {key: f.get_tensor(key) for key in f.keys()}
    except Exception as err:  # safetensors raises its own error type for a bad header
        raise ValueError(f"{path} is not a readable {what}: {err}") from None
    return tensors, metadata


# --- chain files --------------------------------------------------------------------------------
#
# A chain file is one safetensors file. Its metadata holds the unit's spec as JSON (unit names,
# options, knob values in physical units); its tensors hold everything learned that is not a knob
# (tables, impulse responses, network weights). Loading never runs code: no pickle anywhere.
# A ``.json`` path holds the spec alone, for units that have nothing but knobs.

CHAIN_FORMAT = "dspfx.unit/1"


def _learned_tensors(unit: Unit) -> dict[str, torch.Tensor]:
    """State-dict entries that are not knobs (knobs travel in the spec)."""
    return {
        key: value.detach().cpu().contiguous()
        for key, value in unit.state_dict().items()
        if not (key.startswith("raw_knobs.") or ".raw_knobs." in key)
    }


def save(unit: Unit, path: str | os.PathLike) -> Path:
    """Write a unit (or a whole chain) to ``path``: a ``.safetensors`` file, or a ``.json`` spec.

    The write is atomic: a temporary file beside ``path`` is renamed into place, so an existing
    file is never left half-written. A unit whose spec :func:`load` would refuse under the
    default :class:`~dspfx.limits.Limits` is refused here too (LimitError), before writing.
    Returns the path written.
    """
    from dspfx import __version__
    from dspfx.unit import Unit

    if not isinstance(unit, Unit):
        raise TypeError(f"save() takes a dspfx Unit, got {type(unit).__name__}")
    path = Path(path)
    spec = unit.spec()
    check_spec(spec)  # a file load would refuse (400 containers deep, say) is not written
    tensors = _learned_tensors(unit)
    if path.suffix == ".json":
        if tensors:
            raise ValueError(
                f"{unit.label} holds learned tensors ({', '.join(list(tensors)[:4])}...) that a .json spec "
                f"cannot keep; save it as .safetensors instead (got {path})"
            )
        text = json.dumps(spec, indent=2) + "\n"
        with atomic_path(path) as tmp:
            Path(tmp).write_text(text)
        return path
    if path.suffix != ".safetensors":
        raise ValueError(f"chain files end in .safetensors (or .json for a spec alone), got {path}")
    metadata = {"format": CHAIN_FORMAT, "spec": json.dumps(spec), "dspfx_version": __version__}
    return write_safetensors(path, tensors, metadata)


def load(path: str | os.PathLike, *, device: str | torch.device | None = None, limits: Any = None) -> Unit:
    """Read a unit written by :func:`save` (``.safetensors``) or a JSON spec file (``.json``).

    The spec is checked against ``limits`` (:class:`dspfx.Limits`: sizes, rates, depth; file
    paths in it stay in the file's folder) before anything is made, and every tensor must be
    finite.
    """
    from dspfx.chain import build

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no chain file at {path}")
    folder = path.resolve().parent
    if path.suffix == ".json":
        spec = read_json(path, "chain spec")
        unit = build(spec, limits=limits, base_dir=folder)
        return unit.to(device) if device is not None else unit
    tensors, metadata = read_safetensors(path)
    if metadata.get("format") == "dspfx.ddsp_model/1" and "config" in metadata:  # the earlier DDSP model file
        from dspfx.ddsp.model import convert_legacy

        unit = convert_legacy(tensors, metadata, path)
        return unit.to(device) if device is not None else unit
    if metadata.get("format") != CHAIN_FORMAT or "spec" not in metadata:
        raise ValueError(
            f"{path} is a safetensors file but not a dspfx chain file (metadata format "
            f"{metadata.get('format')!r}, expected {CHAIN_FORMAT!r})"
        )
    bad = [key for key, t in tensors.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        raise ValueError(f"{path}: tensors {bad[:4]} hold NaN or Inf values; the file is damaged or the model diverged")
    try:
        spec = json.loads(metadata["spec"])
    except (json.JSONDecodeError, RecursionError) as err:
        raise ValueError(f"{path}: its spec is not valid JSON: {err}") from None
    unit = build(spec, limits=limits, base_dir=folder)
    expected = set(_learned_tensors(unit))
    if set(tensors) != expected:
        missing, extra = sorted(expected - set(tensors)), sorted(set(tensors) - expected)
        raise ValueError(f"{path}: tensors do not match the spec (missing {missing}, unexpected {extra})")
    if tensors:
        unit.load_state_dict(tensors, strict=False)
    return unit.to(device) if device is not None else unit
