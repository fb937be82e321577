"""Tests for dspfx.io (audio part): round trips, resampling, atomic writes, error messages."""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from dspfx import io


def _noise(shape, peak=0.9, seed=0, dtype=np.float32):
    return np.random.default_rng(seed).uniform(-peak, peak, shape).astype(dtype)


# --- round trips ---


@pytest.mark.parametrize("shape", [(1000,), (1, 1000), (2, 1000), (1, 2, 1000)])
def test_float_wav_round_trip_is_exact(tmp_path, shape):
    x = _noise(shape, peak=1.5)  # beyond +-1: FLOAT subtype keeps it
    path = tmp_path / "x.wav"
    assert io.write_audio(path, x, 44100) == path
    assert sf.info(path).subtype == "FLOAT"
    y, sr = io.read_audio(path)
    assert sr == 44100
    expected = x.reshape(-1, shape[-1])
    assert y.shape == expected.shape and y.dtype == torch.float32
    assert torch.equal(y, torch.from_numpy(expected))


@pytest.mark.parametrize("channels", [1, 2])
def test_pcm16_round_trip_within_one_lsb(tmp_path, channels):
    x = torch.from_numpy(_noise((channels, 4000), peak=1.0, dtype=np.float64))
    path = tmp_path / "x.wav"
    io.write_audio(path, x, 48000, subtype="PCM_16")
    assert sf.info(path).subtype == "PCM_16"
    y, _ = io.read_audio(path, dtype=torch.float64)
    assert y.shape == (channels, 4000) and y.dtype == torch.float64
    err = (y - x).abs().max().item()
    assert err <= 1.0 / 32768
    assert err > 0  # it really was quantised


def test_flac_defaults_to_soundfile_subtype(tmp_path):
    x = _noise((2, 500), peak=0.5)
    io.write_audio(tmp_path / "x.flac", x, 48000)
    assert sf.info(tmp_path / "x.flac").subtype == sf.default_subtype("FLAC")
    y, _ = io.read_audio(tmp_path / "x.flac")
    assert (y - torch.from_numpy(x)).abs().max() <= 1.0 / 32768


def test_read_mono_averages_channels(tmp_path):
    x = np.stack([np.full(100, 0.5), np.full(100, -0.1)]).astype(np.float32)
    io.write_audio(tmp_path / "s.wav", x, 48000)
    y, _ = io.read_audio(tmp_path / "s.wav", mono=True, dtype=torch.float64)
    assert y.shape == (1, 100)
    np.testing.assert_allclose(y.numpy(), x.astype(np.float64).mean(axis=0, keepdims=True), atol=1e-7)


def test_read_resamples_to_requested_rate(tmp_path):
    sr_in, sr_out, n = 44100, 48000, 44100
    x = 0.5 * np.sin(2 * np.pi * 1000.0 * np.arange(n) / sr_in)
    io.write_audio(tmp_path / "s.wav", x, sr_in)
    y, sr = io.read_audio(tmp_path / "s.wav", sample_rate=sr_out, dtype=torch.float64)
    assert sr == sr_out
    assert y.shape == (1, math.ceil(n * sr_out / sr_in)) == (1, 48000)
    spectrum = np.abs(np.fft.rfft(y[0].numpy() * np.hanning(y.shape[1])))
    freqs = np.fft.rfftfreq(y.shape[1], 1.0 / sr_out)
    assert freqs[np.argmax(spectrum)] == pytest.approx(1000.0, abs=1.0)
    # Same level after resampling (away from the edges).
    assert np.max(np.abs(y[0, 1000:-1000].numpy())) == pytest.approx(0.5, rel=1e-3)


def test_read_same_rate_is_not_resampled(tmp_path):
    x = _noise((1, 300))
    io.write_audio(tmp_path / "s.wav", x, 48000)
    y, sr = io.read_audio(tmp_path / "s.wav", sample_rate=48000)
    assert sr == 48000 and torch.equal(y, torch.from_numpy(x))


def test_resample_matches_scipy_and_keeps_dtype():
    from scipy.signal import resample_poly

    x = torch.from_numpy(_noise((2, 3, 441), dtype=np.float64))
    y = io.resample(x, 44100, 48000)
    assert y.dtype == torch.float64 and y.shape == (2, 3, 480)
    np.testing.assert_allclose(y.numpy(), resample_poly(x.numpy(), 160, 147, axis=-1))
    assert io.resample(x.float(), 48000, 16000).dtype == torch.float32
    assert torch.equal(io.resample(x, 48000, 48000), x)


# --- atomic writes ---


def test_atomic_write_failure_leaves_file_and_no_temp(tmp_path):
    path = tmp_path / "keep.wav"
    io.write_audio(path, _noise((2, 256)), 48000)
    before = path.read_bytes()
    seen = []

    def failing_writer(tmp: Path) -> None:
        seen.append(tmp)
        assert tmp.parent == tmp_path and tmp.suffix == ".wav" and tmp != path
        tmp.write_bytes(b"RIFF half a header")
        raise RuntimeError("disk full (simulated)")

    with pytest.raises(RuntimeError, match="simulated"):
        io.atomic_write(path, failing_writer)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["keep.wav"]
    assert seen and not seen[0].exists()


def test_write_audio_failure_midway_keeps_original(tmp_path, monkeypatch):
    path = tmp_path / "keep.wav"
    io.write_audio(path, _noise((1, 256)), 48000)
    before = path.read_bytes()

    def broken_write(file, data, *args, **kwargs):
        Path(file).write_bytes(b"partial")
        raise sf.LibsndfileError(0, prefix="simulated write failure: ")

    monkeypatch.setattr(io.sf, "write", broken_write)
    with pytest.raises(ValueError, match="keep.wav"):
        io.write_audio(path, _noise((1, 512), seed=1), 48000)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["keep.wav"]


def test_atomic_path_replaces_and_keeps_permissions(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("old")
    path.chmod(0o640)
    with io.atomic_path(path) as tmp:
        assert tmp.exists() and tmp.suffix == ".txt"
        tmp.write_text("new")
        assert path.read_text() == "old"  # not visible before the block ends
    assert path.read_text() == "new"
    assert (path.stat().st_mode & 0o777) == 0o640
    assert os.listdir(tmp_path) == ["out.txt"]


def test_atomic_path_missing_directory(tmp_path):
    missing = tmp_path / "nope" / "x.wav"
    with pytest.raises(FileNotFoundError, match="nope"):
        with io.atomic_path(missing):
            pass


# --- errors ---


def test_read_missing_file(tmp_path):
    path = tmp_path / "missing.wav"
    with pytest.raises(FileNotFoundError, match="missing.wav"):
        io.read_audio(path)


def test_read_not_audio(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("this is not a wave file\n" * 10)
    with pytest.raises(ValueError, match="notes.wav") as info:
        io.read_audio(path)
    assert "cannot read audio" in str(info.value)
    assert len(str(info.value)) > len(f"cannot read audio from {str(path)!r}: ")  # soundfile's reason


def test_read_empty_file(tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match="empty.wav.*empty"):
        io.read_audio(path)


def test_read_file_without_samples(tmp_path):
    path = tmp_path / "nosamples.wav"
    sf.write(path, np.zeros((0, 1)), 48000, subtype="FLOAT")
    with pytest.raises(ValueError, match="nosamples.wav.*no samples"):
        io.read_audio(path)


def test_read_non_finite_data(tmp_path):
    path = tmp_path / "nan.wav"
    data = np.zeros((100, 2), dtype=np.float32)
    data[10, 1] = np.nan
    data[20, 0] = np.inf
    sf.write(path, data, 48000, subtype="FLOAT")  # bypasses write_audio's check
    with pytest.raises(ValueError, match=r"nan.wav.*2 non-finite values \(1 NaN, 1 Inf\).*\(0, 20\)"):
        io.read_audio(path)


@pytest.mark.parametrize(
    "shape",
    [(), (2, 3, 100), (1, 1, 2, 100), (48000, 2), (1, 1000, 2)],
)
def test_write_rejects_bad_shapes(tmp_path, shape):
    with pytest.raises(ValueError, match=re_shape(shape)) as info:
        io.write_audio(tmp_path / "x.wav", np.zeros(shape, dtype=np.float32), 48000)
    if shape in [(48000, 2), (1, 1000, 2)]:
        assert "transpose" in str(info.value)
    assert not list(tmp_path.iterdir())


def re_shape(shape) -> str:
    import re

    return re.escape(str(tuple(shape)))


def test_write_rejects_non_finite(tmp_path):
    x = np.zeros((2, 100), dtype=np.float32)
    x[1, 7] = np.nan
    with pytest.raises(ValueError, match=r"1 non-finite value \(1 NaN, 0 Inf\).*\(1, 7\)"):
        io.write_audio(tmp_path / "x.wav", x, 48000)
    assert not list(tmp_path.iterdir())


def test_write_missing_parent_dir(tmp_path):
    path = tmp_path / "no_such_dir" / "x.wav"
    with pytest.raises(FileNotFoundError, match="no_such_dir"):
        io.write_audio(path, _noise(100), 48000)
    assert not (tmp_path / "no_such_dir").exists()


def test_write_rejects_unknown_extension_and_subtype(tmp_path):
    with pytest.raises(ValueError, match=r"x\.xyz.*extension"):
        io.write_audio(tmp_path / "x.xyz", _noise(100), 48000)
    with pytest.raises(ValueError, match=r"x\.wav.*'VORBIS'"):
        io.write_audio(tmp_path / "x.wav", _noise(100), 48000, subtype="VORBIS")
    assert not list(tmp_path.iterdir())


def test_write_pcm_rejects_values_beyond_full_scale(tmp_path):
    x = _noise(100, peak=0.5)
    x[3] = 1.25
    with pytest.raises(ValueError, match=r"x\.wav.*PCM_16.*1\.25"):
        io.write_audio(tmp_path / "x.wav", x, 48000, subtype="PCM_16")
    io.write_audio(tmp_path / "x.wav", x, 48000)  # FLOAT keeps it
    assert io.read_audio(tmp_path / "x.wav")[0].max().item() == 1.25


def test_write_rejects_integer_audio_and_bad_rate(tmp_path):
    with pytest.raises(TypeError, match="int16"):
        io.write_audio(tmp_path / "x.wav", np.zeros(10, dtype=np.int16), 48000)
    with pytest.raises(ValueError, match="sample_rate"):
        io.write_audio(tmp_path / "x.wav", _noise(10), 0)


# --- shape helpers ---


@pytest.mark.parametrize(
    ("shape", "expected", "note"),
    [
        ((7,), (1, 1, 7), "(samples,) -> (1, 1, samples)"),
        ((2, 7), (1, 2, 7), "(channels, samples) -> (1, channels, samples)"),
        ((3, 2, 7), (3, 2, 7), "(batch, channels, samples) unchanged"),
    ],
)
def test_as_batch_shapes_and_notes(shape, expected, note):
    x = torch.arange(math.prod(shape), dtype=torch.float64).reshape(shape)
    y, got_note = io.as_batch(x)
    assert y.shape == expected and got_note == note and y.dtype == torch.float64
    assert torch.equal(y.flatten(), x.flatten())
    y_np, _ = io.as_batch(x.numpy())
    assert isinstance(y_np, torch.Tensor) and torch.equal(y_np, y)


def test_as_batch_errors():
    with pytest.raises(ValueError, match=re_shape((1, 2, 3, 4))):
        io.as_batch(torch.zeros(1, 2, 3, 4))
    with pytest.raises(ValueError, match=re_shape((1000, 2))):
        io.as_batch(torch.zeros(1000, 2))
    with pytest.raises(TypeError, match="int64"):
        io.as_batch(torch.zeros(3, dtype=torch.int64))
    with pytest.raises(TypeError, match="list"):
        io.as_batch([0.0, 1.0])


def test_check_finite_counts_and_first_index():
    x = torch.zeros(2, 3, 10)
    io.check_finite(x)  # fine
    x[1, 2, 4] = float("inf")
    x[0, 1, 9] = float("nan")
    x[1, 0, 0] = float("-inf")
    with pytest.raises(ValueError, match=r"^target contains 3 non-finite values \(1 NaN, 2 Inf\).*\(0, 1, 9\)"):
        io.check_finite(x, name="target")
    with pytest.raises(ValueError, match=r"\(0, 1, 9\)"):
        io.check_finite(x.numpy())


def test_a_header_rate_outside_the_limits_is_refused_before_reading(tmp_path):
    """A 1 Hz header (a damaged file) would make a render of its samples allocate gigabytes."""
    import soundfile

    from dspfx.io import read_audio

    soundfile.write(tmp_path / "slow.wav", np.zeros(4800, np.float32), 1, subtype="PCM_16")
    with pytest.raises(ValueError, match="header says 1 Hz, outside 1000 .. 384000 Hz"):
        read_audio(tmp_path / "slow.wav")


def test_a_truncated_file_reads_what_is_there_with_a_warning(tmp_path):
    import soundfile

    from dspfx.io import TruncatedAudioWarning, read_audio

    soundfile.write(tmp_path / "whole.wav", np.full(48000, 0.25, np.float32), 48000, subtype="PCM_16")
    data = (tmp_path / "whole.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(data[: len(data) // 2])
    with pytest.warns(TruncatedAudioWarning, match="truncated: its header declares 96000 bytes"):
        audio, rate = read_audio(tmp_path / "cut.wav")
    assert rate == 48000 and 23000 < audio.shape[-1] < 24100
    with warnings.catch_warnings():
        warnings.simplefilter("error", TruncatedAudioWarning)
        assert read_audio(tmp_path / "whole.wav")[0].shape[-1] == 48000


def test_a_killed_saves_temporary_is_removed_by_the_next_save(tmp_path):
    """SIGKILL leaves the temporary (no handler runs); the next save to that path removes
    temporaries whose process is gone, and leaves a live writer's alone."""
    import signal
    import subprocess
    import sys

    from dspfx.io import atomic_path

    script = (
        "import sys, time; from dspfx.io import atomic_path\n"
        f"with atomic_path({str(tmp_path / 'big.bin')!r}) as tmp:\n"
        "    tmp.write_bytes(b'x' * 1000); print(tmp, flush=True); time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    left = Path(proc.stdout.readline().strip())
    assert left.exists()
    with atomic_path(tmp_path / "big.bin") as tmp:  # the writer is alive: its file stays
        tmp.write_bytes(b"y")
    assert left.exists()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert left.exists()  # nothing cleaned up after a kill ...
    with atomic_path(tmp_path / "big.bin") as tmp:
        tmp.write_bytes(b"z")
    assert not left.exists() and (tmp_path / "big.bin").read_bytes() == b"z"  # ... until the next save
    assert [p.name for p in tmp_path.iterdir()] == ["big.bin"]


def test_read_json_bounds_parses_and_checks_the_format(tmp_path):
    from dspfx.io import read_json

    path = tmp_path / "doc.json"
    path.write_text(json.dumps({"format": "x/1", "a": [1, 2]}))
    assert read_json(path, "doc", format="x/1") == {"format": "x/1", "a": [1, 2]}
    with pytest.raises(ValueError, match=r"doc '.*doc.json': format 'x/1', expected 'y/1' \(hint\)"):
        read_json(path, "doc", format="y/1", hint=" (hint)")
    with pytest.raises(ValueError, match="more than the limit of 10"):
        read_json(path, "doc", max_bytes=10)
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ValueError, match="is not JSON"):
        read_json(path, "doc")
    path.write_bytes(b"\xff\xfe{")
    with pytest.raises(ValueError, match="is not JSON"):
        read_json(path, "doc")
    path.write_text("[1]")
    with pytest.raises(ValueError, match="format 'list'"):
        read_json(path, "doc", format="x/1")
    with pytest.raises(FileNotFoundError, match="no doc at"):
        read_json(tmp_path / "missing.json", "doc")
