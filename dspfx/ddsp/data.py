"""DDSP datasets: a folder of recordings -> windows of audio and features in safetensors shards.

:func:`prepare` reads every audio file under a folder (``.wav``, ``.flac``, ``.ogg``, ``.mp3``,
``.aif(f)``), mixes it to mono, resamples it, extracts f0, confidence and loudness over the whole
file (:mod:`dspfx.ddsp.features`, frame ``i`` centred on sample ``i * hop``), cuts windows and
writes them as safetensors shards. :class:`Dataset` reads them back lazily.

Layout of ``out_dir``::

    manifest.json                  settings + one entry per source file done (resume)
    stats.json                     dataset statistics for timbre transfer
    shards/<stem>-<hash>-<part>.safetensors   windows of one source file
    features/<stem>-<hash>.safetensors        whole-file features of one source file

Every file is written atomically (:func:`dspfx.io.atomic_path`), and the manifest is updated
after each source file, so an interrupted run resumes where it stopped: files listed in the
manifest with the same size and modification time (and whose shards exist) are skipped, files
that changed are redone, and files no longer in the folder are dropped from the dataset.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch

from dspfx.io import atomic_path, read_audio, read_json, read_safetensors, write_safetensors
from dspfx.limits import DEFAULT_LIMITS, OPTION_LIMITS
from dspfx.ddsp.features import PITCH_METHODS, detect_notes, hop_length, loudness_db, pitch
from dspfx.functional.conversions import hz_to_midi

__all__ = ["prepare", "Dataset", "PrepareSummary", "AUDIO_EXTENSIONS", "load_stats", "read_stats"]

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".aif", ".aiff")
DATASET_FORMAT = "dspfx.dataset/1"
STATS_FORMAT = "dspfx.dataset_stats/1"
#: Frames whose pitch confidence is at least this count as "confident" (DDSP's metric level).
CONFIDENCE_THRESHOLD = 0.85
FEATURE_KEYS = ("audio", "f0_hz", "confidence", "loudness_db")


@dataclass
class PrepareSummary:
    """What :func:`prepare` did.

    Attributes:
        out_dir: the dataset folder.
        processed: source files (relative paths) read and written in this run.
        reused: files already done by an earlier run (skipped: resume).
        removed: files of an earlier run no longer in ``audio_dir`` (their shards deleted).
        skipped: ``{file: reason}`` for files left out (silent, unreadable when skipping).
        n_windows: windows in the whole dataset.
        stats: the statistics written to ``stats.json``.
    """

    out_dir: Path
    processed: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    n_windows: int = 0
    stats: dict[str, Any] = field(default_factory=dict)


def _file_id(rel: str) -> str:
    stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in Path(rel).stem)[:40]
    return f"{stem}-{hashlib.sha1(rel.encode('utf-8')).hexdigest()[:10]}"


def _write_json(path: Path, data: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(data, indent=1) + "\n")


def _save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, Any]) -> None:
    meta = {key: value if isinstance(value, str) else json.dumps(value) for key, value in metadata.items()}
    write_safetensors(path, tensors, meta)


def _read_file(path: Path, sample_rate: int) -> torch.Tensor:
    """Mono float32 audio at ``sample_rate``; soundfile (MP3 too with libsndfile >= 1.1), else
    librosa/audioread for formats this libsndfile lacks."""
    try:
        audio, _ = read_audio(path, sample_rate, mono=True)
        return audio[0]
    except ValueError as err:
        fmt = {".mp3": "MP3", ".ogg": "OGG", ".oga": "OGG"}.get(path.suffix.lower())
        if fmt is None or fmt in sf.available_formats():
            raise
        try:  # libsndfile without this codec: try audioread through librosa
            import librosa

            y, _ = librosa.load(str(path), sr=sample_rate, mono=True)
        except Exception as err2:
            raise ValueError(
                f"cannot read {str(path)!r}: libsndfile {sf.__libsndfile_version__} has no {fmt} support "
                f"and librosa/audioread failed too ({err2}); convert it to WAV or FLAC"
            ) from err
        return torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32))


def _list_audio(audio_dir: Path) -> list[Path]:
    return sorted(
        p
        for p in audio_dir.rglob("*")
        if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS and not p.name.startswith(".")
    )


def _windows(n_frames: int, window_frames: int, hop_frames: int) -> list[int]:
    if n_frames <= window_frames:
        return [0]
    return list(range(0, n_frames - window_frames + 1, hop_frames))


def prepare(
    audio_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    sample_rate: int = 16000,
    frame_rate: float = 250.0,
    window_s: float = 4.0,
    hop_s: float = 1.0,
    pitch_method: str = "yin",
    progress: bool = True,
    *,
    shard_windows: int = 256,
    skip_unreadable: bool = False,
    overwrite: bool = False,
) -> PrepareSummary:
    """Turn a folder of recordings into a DDSP training set (resumable).

    Each file under ``audio_dir`` (recursively; extensions in :data:`AUDIO_EXTENSIONS`) is
    mixed to mono (channel mean), resampled to ``sample_rate`` (polyphase,
    :func:`dspfx.io.resample`), and analysed whole: f0 and confidence (:func:`pitch` with
    ``pitch_method``) and A-weighted loudness (:func:`loudness_db`), ``hop =
    round(sample_rate / frame_rate)``. Windows of ``window_s`` seconds every ``hop_s`` seconds
    (both rounded to whole frames) are cut at frame boundaries, so window frame ``j`` is
    centred on window sample ``j * hop``; a file shorter than one window gives one window
    padded with silence (its features computed on the padded audio). A file whose loudness
    never rises above the -80 dB floor is silent: it is skipped with a warning.

    Written to ``out_dir`` (created if needed; see the module docstring for the layout): per
    source file, shards of at most ``shard_windows`` windows with tensors ``audio``
    ``(windows, window_samples)``, ``f0_hz``, ``confidence``, ``loudness_db``
    ``(windows, window_frames)`` (float32) and JSON metadata (``format``, ``sample_rate``,
    ``frame_rate``, ``hop``, ``source``, ``offsets_s``); the whole-file features; the manifest;
    and ``stats.json``: ``mean_pitch_midi`` (over frames with confidence >= 0.85),
    ``loudness_quantiles_db`` (101 quantiles, 0..1, over note-on frames found by
    :func:`dspfx.ddsp.features.detect_notes` per file), mean/std note loudness, counts.

    Args:
        audio_dir: folder of recordings of one instrument.
        out_dir: dataset folder.
        sample_rate: Hz (default 16000, DDSP's).
        frame_rate: feature frames per second (default 250).
        window_s: window length in seconds (default 4).
        hop_s: window hop in seconds (default 1).
        pitch_method: ``"yin"`` (fast, default), ``"pyin"`` or ``"crepe"``.
        progress: show a tqdm progress bar.
        shard_windows: most windows per shard file.
        skip_unreadable: warn and skip unreadable files instead of raising.
        overwrite: start over when ``out_dir`` holds a dataset made with other settings.

    Returns:
        :class:`PrepareSummary`.

    Raises:
        FileNotFoundError/NotADirectoryError: ``audio_dir`` missing or not a folder.
        ValueError: no audio files, an unreadable file (named), every file silent, bad
            settings, or ``out_dir`` prepared with other settings (without ``overwrite``).
    """
    from tqdm.auto import tqdm

    src = Path(audio_dir)
    if not src.exists():
        raise FileNotFoundError(f"audio folder not found: {str(src)!r}")
    if not src.is_dir():
        raise NotADirectoryError(f"audio_dir must be a folder of recordings, got the file {str(src)!r}")
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive int (Hz), got {sample_rate!r}")
    if pitch_method not in PITCH_METHODS:
        raise ValueError(f"unknown pitch_method {pitch_method!r}; expected one of {PITCH_METHODS}")
    hop = hop_length(sample_rate, frame_rate)
    for name, value in (("window_s", window_s), ("hop_s", hop_s)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or not math.isfinite(value):
            raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
    window_frames = int(round(window_s * sample_rate / hop))
    hop_frames = int(round(hop_s * sample_rate / hop))
    if window_frames < 1 or hop_frames < 1:
        raise ValueError(
            f"window_s = {window_s} s and hop_s = {hop_s} s must each hold at least one frame "
            f"({hop / sample_rate * 1000:.2f} ms)"
        )
    if isinstance(shard_windows, bool) or not isinstance(shard_windows, int) or shard_windows < 1:
        raise ValueError(f"shard_windows must be a positive int, got {shard_windows!r}")
    window_samples = window_frames * hop

    files = _list_audio(src)
    if not files:
        raise ValueError(
            f"no audio files in {str(src)!r}: expected files ending in {', '.join(AUDIO_EXTENSIONS)}"
        )

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "shards").mkdir(exist_ok=True)
    (out / "features").mkdir(exist_ok=True)
    settings = {
        "sample_rate": int(sample_rate), "frame_rate": float(frame_rate), "hop": hop,
        "window_frames": window_frames, "hop_frames": hop_frames, "window_samples": window_samples,
        "pitch_method": pitch_method,
    }
    manifest_path = out / "manifest.json"
    manifest: dict[str, Any] = {"format": DATASET_FORMAT, "settings": settings, "files": {}}
    if manifest_path.exists():
        try:
            old = read_json(manifest_path, "manifest", format=DATASET_FORMAT)
        except ValueError as err:
            raise ValueError(f"{manifest_path} is not a dspfx dataset manifest ({err}); use another out_dir") from None
        if old.get("settings") != settings and not overwrite:
            raise ValueError(
                f"{str(out)!r} holds a dataset prepared with other settings ({old.get('settings')}); "
                f"now {settings}. Use another out_dir, or overwrite=True to start over"
            )
        if old.get("settings") == settings:
            manifest = old
        else:
            for sub in ("shards", "features"):
                for p in (out / sub).glob("*.safetensors"):
                    p.unlink()

    summary = PrepareSummary(out_dir=out)
    bar = tqdm(files, desc="prepare", unit="file", disable=not progress)
    for path in bar:
        rel = path.relative_to(src).as_posix()
        stat = path.stat()
        entry = manifest["files"].get(rel)
        if (
            entry is not None and entry.get("size") == stat.st_size and entry.get("mtime_ns") == stat.st_mtime_ns
            and all((out / "shards" / s).exists() for s in entry.get("shards", []))
        ):
            summary.reused.append(rel)
            if entry.get("status") != "ok":
                summary.skipped[rel] = entry.get("status", "skipped")
            continue
        bar.set_postfix_str(rel[-30:])
        try:
            audio = _read_file(path, int(sample_rate))
        except (ValueError, sf.SoundFileError, RuntimeError) as err:
            if not skip_unreadable:
                raise ValueError(f"unreadable audio file {str(path)!r}: {err}") from err
            warnings.warn(f"skipping unreadable audio file {str(path)!r}: {err}", stacklevel=2)
            summary.skipped[rel] = f"unreadable: {err}"
            continue  # not recorded: retried on the next run
        if audio.shape[-1] < window_samples:
            audio = torch.nn.functional.pad(audio, (0, window_samples - audio.shape[-1]))
        loud = loudness_db(audio, sample_rate, frame_rate)
        entry = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "shards": [], "windows": 0}
        if float(loud.max()) <= -80.0 + 1e-6:
            warnings.warn(f"skipping silent audio file {str(path)!r} (loudness never above -80 dB)", stacklevel=2)
            summary.skipped[rel] = "silent"
            entry["status"] = "silent"
        else:
            f0, conf = pitch(audio, sample_rate, frame_rate, method=pitch_method)
            n_frames = loud.shape[-1]
            starts = _windows(n_frames, window_frames, hop_frames)
            fid = _file_id(rel)
            whole = {"f0_hz": f0.float(), "confidence": conf.float(), "loudness_db": loud.float()}
            meta = {
                "format": DATASET_FORMAT + "/features", "sample_rate": int(sample_rate),
                "frame_rate": float(frame_rate), "hop": hop, "source": rel,
            }
            _save_tensors(out / "features" / f"{fid}.safetensors", whole, meta)
            for part, first in enumerate(range(0, len(starts), shard_windows)):
                chunk = starts[first : first + shard_windows]
                tensors = {
                    "audio": torch.stack([audio[s * hop : s * hop + window_samples] for s in chunk]).float(),
                    **{k: torch.stack([v[s : s + window_frames] for s in chunk]) for k, v in whole.items()},
                }
                name = f"{fid}-{part:03d}.safetensors"
                _save_tensors(out / "shards" / name, tensors, {
                    **meta, "format": DATASET_FORMAT, "offsets_s": [s * hop / sample_rate for s in chunk],
                    "window_frames": window_frames,
                })
                entry["shards"].append(name)
            entry["windows"] = len(starts)
            entry["features"] = f"{fid}.safetensors"
            entry["status"] = "ok"
        old_entry = manifest["files"].get(rel)
        manifest["files"][rel] = entry
        _write_json(manifest_path, manifest)
        if old_entry is not None:  # the file changed: drop shards the new entry does not reuse
            _delete_outputs(out, old_entry, keep=set(entry["shards"]))
        summary.processed.append(rel)
    bar.close()

    current = {path.relative_to(src).as_posix() for path in files}
    for rel in [rel for rel in manifest["files"] if rel not in current]:
        old_entry = manifest["files"].pop(rel)
        _write_json(manifest_path, manifest)
        _delete_outputs(out, old_entry, keep=set())
        summary.removed.append(rel)

    stats = _statistics(out, manifest)
    if stats["n_windows"] == 0:
        raise ValueError(
            f"no usable audio in {str(src)!r}: every file was skipped ({summary.skipped}); "
            f"expected at least one non-silent, readable recording"
        )
    _write_json(out / "stats.json", stats)
    summary.n_windows = stats["n_windows"]
    summary.stats = stats
    return summary


def _delete_outputs(out: Path, entry: dict[str, Any], keep: set[str]) -> None:
    """Remove the shards (not in ``keep``) and whole-file features an old manifest entry lists."""
    for name in entry.get("shards", []):
        if name not in keep:
            (out / "shards" / name).unlink(missing_ok=True)
    if entry.get("features") and not keep:
        (out / "features" / entry["features"]).unlink(missing_ok=True)


def _statistics(out: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Dataset statistics over the whole-file features of every file done."""
    pitches, note_loudness = [], []
    n_frames = n_windows = n_files = 0
    skipped = 0
    for rel, entry in manifest["files"].items():
        if entry.get("status") != "ok":
            skipped += 1
            continue
        feats, _ = read_safetensors(out / "features" / entry["features"], "feature file")
        f0, conf, loud = (feats[k].double().numpy() for k in ("f0_hz", "confidence", "loudness_db"))
        confident = conf >= CONFIDENCE_THRESHOLD
        pitches.append(hz_to_midi(f0[confident]))
        mask, _ = detect_notes(loud, conf)
        note_loudness.append(loud[mask])
        n_frames += len(f0)
        n_windows += int(entry["windows"])
        n_files += 1
    pitch_all = np.concatenate(pitches) if pitches else np.zeros(0)
    loud_all = np.concatenate(note_loudness) if note_loudness else np.zeros(0)
    levels = np.linspace(0.0, 1.0, 101)
    settings = manifest["settings"]
    return {
        "format": STATS_FORMAT,
        "sample_rate": settings["sample_rate"],
        "frame_rate": settings["frame_rate"],
        "pitch_method": settings["pitch_method"],
        "confidence_threshold": CONFIDENCE_THRESHOLD,
        "mean_pitch_midi": float(pitch_all.mean()) if pitch_all.size else None,
        "std_pitch_midi": float(pitch_all.std()) if pitch_all.size else None,
        "quantile_levels": levels.tolist(),
        "loudness_quantiles_db": np.quantile(loud_all, levels).tolist() if loud_all.size else None,
        "mean_note_loudness_db": float(loud_all.mean()) if loud_all.size else None,
        "std_note_loudness_db": float(loud_all.std()) if loud_all.size else None,
        "n_files": n_files,
        "n_files_skipped": skipped,
        "n_windows": n_windows,
        "n_frames": n_frames,
        "n_confident_frames": int(pitch_all.size),
        "n_note_frames": int(loud_all.size),
        "duration_s": n_frames / settings["frame_rate"],
    }


def load_stats(out_dir: str | os.PathLike) -> dict[str, Any]:
    """Read ``stats.json`` of a dataset made by :func:`prepare`."""
    path = Path(out_dir) / "stats.json"
    if not path.exists():
        raise FileNotFoundError(f"no stats.json in {str(Path(out_dir))!r}: run dspfx.ddsp.data.prepare first")
    return read_stats(path)


def _bounded_int(value: Any, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"settings.{name} must be an int in {low} .. {high}, got {value!r}")
    return value


def _shard_path(root: Path, name: Any) -> Path:
    """A shard named in the manifest: a plain file name inside ``root/shards`` (a manifest is
    data; a name such as ``../../etc/x`` must not open a file elsewhere)."""
    if not isinstance(name, str) or Path(name).name != name or name in ("", ".", "..") or not name.endswith(".safetensors"):
        raise ValueError(f"the manifest names a shard {name!r}; shards are plain .safetensors file names in shards/")
    return root / "shards" / name


#: Keys of ``stats.json`` and their types (a file of another schema is refused, not ignored).
STATS_SCHEMA = {"mean_pitch_midi": (int, float), "loudness_quantiles_db": list, "quantile_levels": list}


def read_stats(path: str | os.PathLike) -> dict[str, Any]:
    """Read a ``stats.json`` file (``dspfx transfer --stats``): its format and the types of the
    statistics transfer uses are checked (a file of another schema was silently ignored)."""
    stats = read_json(path, "dataset statistics", format=STATS_FORMAT, hint=" (dspfx.ddsp.data.prepare writes it)")
    for key, kind in STATS_SCHEMA.items():
        if key in stats and stats[key] is not None and not isinstance(stats[key], kind):
            raise ValueError(f"{path}: {key} must be {getattr(kind, '__name__', 'a number')}, got {stats[key]!r}")
    return stats


class Dataset(torch.utils.data.Dataset):
    """Windows of a dataset made by :func:`prepare`, read lazily from its shards.

    ``dataset[i]`` is a dict of float32 tensors: ``audio`` ``(window_samples,)``, ``f0_hz``,
    ``confidence``, ``loudness_db`` ``(window_frames,)``. Only the shard headers are read at
    construction; each item reads one row of each tensor (safetensors slices, memory-mapped).

    Attributes: ``sample_rate``, ``frame_rate``, ``hop``, ``window_samples``, ``window_frames``,
    ``stats`` (``stats.json``, or None), ``shards`` (paths).

    Args:
        out_dir: folder written by :func:`prepare`.

    Raises:
        FileNotFoundError: no manifest (not prepared).
        ValueError: not a dspfx dataset, or no windows.
    """

    def __init__(self, out_dir: str | os.PathLike) -> None:
        from safetensors import safe_open

        self.root = Path(out_dir)
        manifest_path = self.root / "manifest.json"
        if not manifest_path.exists():
            raise FileNotFoundError(
                f"{str(self.root)!r} is not a prepared dataset (no manifest.json); run dspfx.ddsp.data.prepare first"
            )
        try:
            manifest = read_json(manifest_path, "manifest", format=DATASET_FORMAT)
            settings = manifest["settings"]
            self.sample_rate: int = _bounded_int(settings["sample_rate"], "sample_rate",
                                                 int(DEFAULT_LIMITS.min_sample_rate), int(DEFAULT_LIMITS.max_sample_rate))
            self.frame_rate: float = float(settings["frame_rate"])
            self.hop: int = _bounded_int(settings["hop"], "hop", 1, int(OPTION_LIMITS["hop"]))
            self.window_samples: int = _bounded_int(settings["window_samples"], "window_samples", 1, 2**24)
            self.window_frames: int = _bounded_int(settings["window_frames"], "window_frames", 1, 2**20)
            entries = list(manifest["files"].values())
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as err:
            raise ValueError(f"{manifest_path} is not a usable dspfx dataset manifest ({err})") from None
        self.shards: list[Path] = []
        self._index: list[tuple[int, int]] = []
        for entry in entries:
            for name in entry.get("shards", []) if isinstance(entry, dict) else ():
                path = _shard_path(self.root, name)
                try:
                    with safe_open(str(path), framework="pt") as f:
                        meta = f.metadata() or {}
                        if meta.get("format") != DATASET_FORMAT or set(f.keys()) != set(FEATURE_KEYS):
                            raise ValueError("not a dspfx dataset shard")
                        rows = f.get_slice("audio").get_shape()[0]
                except Exception as err:  # safetensors' own error type for a truncated or foreign file
                    raise ValueError(f"dataset shard {path} cannot be read ({err}); run prepare again") from None
                self._index.extend((len(self.shards), r) for r in range(rows))
                self.shards.append(path)
        if not self._index:
            raise ValueError(f"dataset {str(self.root)!r} holds no windows")
        stats_path = self.root / "stats.json"
        self.stats: dict[str, Any] | None = read_stats(stats_path) if stats_path.exists() else None

    def __len__(self) -> int:
        return len(self._index)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        from safetensors import safe_open

        if not -len(self) <= index < len(self):
            raise IndexError(f"window index {index} out of range for a dataset of {len(self)} windows")
        shard, row = self._index[index]
        with safe_open(str(self.shards[shard]), framework="pt") as f:
            return {key: f.get_slice(key)[row : row + 1][0].clone() for key in FEATURE_KEYS}

    def __repr__(self) -> str:
        return (
            f"Dataset({str(self.root)!r}, windows={len(self)}, sample_rate={self.sample_rate}, "
            f"frame_rate={self.frame_rate}, window_samples={self.window_samples})"
        )
