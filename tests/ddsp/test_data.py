"""Tests for dspfx.ddsp.data: prepare() a folder of audio, resume, statistics, Dataset."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import soundfile as sf
import torch

import dspfx.ddsp.data as data
import dspfx.ddsp.features as features
from dspfx.io import write_audio

SR = 16000


def _tone(f0: float, seconds: float, sr: int = SR, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return amplitude * sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 5))


@pytest.fixture
def folder(tmp_path):
    """Three short recordings: 440 Hz mono WAV at 16 kHz, 440 Hz stereo FLAC at 22.05 kHz,
    440 Hz OGG at 16 kHz."""
    src = tmp_path / "audio"
    src.mkdir()
    write_audio(src / "a.wav", _tone(440.0, 2.5), SR)
    stereo = np.stack([_tone(440.0, 1.6, sr=22050), 0.5 * _tone(440.0, 1.6, sr=22050)])
    write_audio(src / "b.flac", stereo, 22050)
    write_audio(src / "c.ogg", _tone(440.0, 1.2), SR)
    (src / "notes.txt").write_text("not audio: ignored")
    return src


def test_prepare_then_load(folder, tmp_path):
    out = tmp_path / "data"
    summary = data.prepare(folder, out, window_s=1.0, hop_s=0.5, progress=False)
    # windows: a.wav 2.5 s -> frames 625: starts 0,125,...,375 -> 4; b.flac 1.6 s -> 400 frames
    # -> 0,125,150? (400-250)//125+1 = 2; c.ogg 1.2 s -> 300 frames -> 1
    assert sorted(summary.processed) == ["a.wav", "b.flac", "c.ogg"]
    assert summary.n_windows == 4 + 2 + 1
    ds = data.Dataset(out)
    assert len(ds) == 7 and ds.sample_rate == SR and ds.hop == 64
    item = ds[0]
    assert set(item) == {"audio", "f0_hz", "confidence", "loudness_db"}
    assert item["audio"].shape == (16000,) and item["audio"].dtype == torch.float32
    for key in ("f0_hz", "confidence", "loudness_db"):
        assert item[key].shape == (250,)
    # windows hold the features of the audio they carry (frame j centred on sample j * hop)
    loud = features.loudness_db(item["audio"], SR)
    torch.testing.assert_close(loud[10:-10], item["loudness_db"][10:-10], atol=0.05, rtol=0)
    stats = ds.stats
    assert stats is not None and stats == data.load_stats(out)
    assert abs(stats["mean_pitch_midi"] - 69.0) < 0.1
    assert stats["n_files"] == 3 and stats["n_windows"] == 7
    q = np.array(stats["loudness_quantiles_db"])
    assert len(q) == 101 and np.all(np.diff(q) >= 0) and -40 < q[50] < 0
    assert stats["n_confident_frames"] > 0.8 * stats["n_frames"]
    # stereo mixed to mono, resampled: b.flac windows hold 440 Hz at 16 kHz
    b = [ds[i] for i in range(len(ds)) if ds.shards[ds._index[i][0]].name.startswith("b-")]
    assert len(b) == 2
    spectrum = np.abs(np.fft.rfft(b[0]["audio"].numpy()))
    assert abs(np.argmax(spectrum) * SR / 16000 - 440.0) <= 1.0
    assert torch.utils.data.DataLoader(ds, batch_size=4).__iter__().__next__()["audio"].shape == (4, 16000)


def test_short_file_is_padded_to_one_window(tmp_path):
    src = tmp_path / "audio"
    src.mkdir()
    write_audio(src / "short.wav", _tone(220.0, 0.5), SR)
    summary = data.prepare(src, tmp_path / "data", window_s=1.0, progress=False)
    ds = data.Dataset(tmp_path / "data")
    assert summary.n_windows == 1 and ds[0]["audio"].shape == (16000,)
    assert torch.all(ds[0]["audio"][8000:] == 0) and torch.all(ds[0]["loudness_db"][140:] == -80)
    assert abs(ds.stats["mean_pitch_midi"] - 57.0) < 0.1


class _Interrupted(Exception):
    """Stands for a crash or Ctrl-C in the middle of a run."""


def test_resume_skips_done_files(folder, tmp_path, monkeypatch):
    out = tmp_path / "data"
    calls = []
    crash = [True]
    real_pitch = data.pitch

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2 and crash[0]:
            raise _Interrupted  # the run dies during the second file
        return real_pitch(*args, **kwargs)

    monkeypatch.setattr(data, "pitch", interrupted)
    with pytest.raises(_Interrupted):
        data.prepare(folder, out, window_s=1.0, hop_s=0.5, progress=False)
    manifest = json.loads((out / "manifest.json").read_text())
    assert list(manifest["files"]) == ["a.wav"]
    shard = out / "shards" / manifest["files"]["a.wav"]["shards"][0]
    mtime = shard.stat().st_mtime_ns
    assert not list(out.glob("**/.*.safetensors"))  # no temporary files left behind

    calls.clear()
    crash[0] = False
    summary = data.prepare(folder, out, window_s=1.0, hop_s=0.5, progress=False)
    assert len(calls) == 2  # only b.flac and c.ogg analysed
    assert summary.reused == ["a.wav"] and sorted(summary.processed) == ["b.flac", "c.ogg"]
    assert shard.stat().st_mtime_ns == mtime
    assert summary.n_windows == 7

    calls.clear()
    again = data.prepare(folder, out, window_s=1.0, hop_s=0.5, progress=False)
    assert calls == [] and again.processed == [] and again.n_windows == 7

    # a file removed from the folder leaves the dataset; a changed file is redone
    (folder / "c.ogg").unlink()
    write_audio(folder / "a.wav", _tone(440.0, 1.5), SR)
    changed = data.prepare(folder, out, window_s=1.0, hop_s=0.5, progress=False)
    assert changed.removed == ["c.ogg"] and changed.processed == ["a.wav"] and changed.reused == ["b.flac"]
    assert changed.n_windows == 2 + 2 and len(data.Dataset(out)) == 4
    assert len(list((out / "shards").glob("*.safetensors"))) == 2
    assert len(list((out / "features").glob("*.safetensors"))) == 2

    with pytest.raises(ValueError, match="other settings"):
        data.prepare(folder, out, window_s=2.0, progress=False)
    redone = data.prepare(folder, out, window_s=2.0, hop_s=0.5, progress=False, overwrite=True)
    assert len(redone.processed) == 2 and len(data.Dataset(out)) == redone.n_windows


def test_silent_file_warns_and_is_skipped(folder, tmp_path):
    write_audio(folder / "silence.wav", np.zeros(SR), SR)
    with pytest.warns(UserWarning, match="silent.*silence.wav"):
        summary = data.prepare(folder, tmp_path / "data", window_s=1.0, hop_s=0.5, progress=False)
    assert summary.skipped == {"silence.wav": "silent"}
    assert summary.stats["n_files_skipped"] == 1 and summary.n_windows == 7


def test_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("hi")
    with pytest.raises(ValueError, match="no audio files"):
        data.prepare(empty, tmp_path / "o1", progress=False)
    with pytest.raises(FileNotFoundError, match="not found"):
        data.prepare(tmp_path / "missing", tmp_path / "o2", progress=False)

    bad = tmp_path / "bad"
    bad.mkdir()
    write_audio(bad / "good.wav", _tone(300.0, 1.0), SR)
    (bad / "broken.flac").write_bytes(b"this is not a flac file" * 10)
    with pytest.raises(ValueError, match="broken.flac"):
        data.prepare(bad, tmp_path / "o3", window_s=1.0, progress=False)
    with pytest.warns(UserWarning, match="broken.flac"):
        summary = data.prepare(bad, tmp_path / "o3", window_s=1.0, progress=False, skip_unreadable=True)
    assert summary.n_windows == 1 and "broken.flac" in summary.skipped

    silent = tmp_path / "silent"
    silent.mkdir()
    write_audio(silent / "s.wav", np.zeros(8000), SR)
    with pytest.warns(UserWarning, match="silent"), pytest.raises(ValueError, match="no usable audio"):
        data.prepare(silent, tmp_path / "o4", window_s=0.5, progress=False)

    with pytest.raises(ValueError, match="unknown pitch_method"):
        data.prepare(bad, tmp_path / "o5", pitch_method="swipe", progress=False)
    with pytest.raises(ValueError, match="window_s"):
        data.prepare(bad, tmp_path / "o5", window_s=0.0, progress=False)
    with pytest.raises(FileNotFoundError, match="prepare"):
        data.Dataset(tmp_path / "o5")
    with pytest.raises(FileNotFoundError, match="stats.json"):
        data.load_stats(tmp_path / "nothing")


def test_mp3_is_read(tmp_path):
    if "MP3" not in sf.available_formats():  # pragma: no cover
        pytest.skip("libsndfile without MP3")
    src = tmp_path / "audio"
    src.mkdir()
    write_audio(src / "m.mp3", _tone(440.0, 1.2), SR)
    summary = data.prepare(src, tmp_path / "data", window_s=1.0, progress=False)
    assert summary.n_windows == 1
    assert abs(summary.stats["mean_pitch_midi"] - 69.0) < 0.1
    assert math.isfinite(summary.stats["mean_note_loudness_db"])


def test_a_tampered_dataset_is_refused_by_name_not_followed(folder, tmp_path):
    """A manifest is data: a shard named ../../x must not open a file outside shards/, a
    truncated shard is named, and a stats file of another schema is refused (it was ignored)."""
    out = tmp_path / "data"
    data.prepare(folder, out, window_s=1.0, hop_s=0.5, progress=False)
    manifest_path = out / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    good = json.dumps(manifest)
    first = next(iter(manifest["files"].values()))
    shard = out / "shards" / first["shards"][0]
    for name in ("../manifest.json", "/etc/passwd", "../../outside.safetensors"):
        first["shards"][0] = name
        manifest_path.write_text(json.dumps(manifest))
        with pytest.raises(ValueError, match="plain .safetensors file names"):
            data.Dataset(out)
    manifest_path.write_text(good)
    manifest["settings"]["sample_rate"] = 1
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="sample_rate must be an int in 1000"):
        data.Dataset(out)
    manifest_path.write_text(good)
    shard.write_bytes(shard.read_bytes()[:100])
    with pytest.raises(ValueError, match="cannot be read"):
        data.Dataset(out)
    stats = tmp_path / "stats.json"
    stats.write_text(json.dumps({"mean_pitch": 60}))
    with pytest.raises(ValueError, match="dataset statistics .*: format None, expected"):
        data.read_stats(stats)
    stats.write_text(json.dumps({"format": data.STATS_FORMAT, "mean_pitch_midi": "sixty"}))
    with pytest.raises(ValueError, match="mean_pitch_midi must be"):
        data.read_stats(stats)
