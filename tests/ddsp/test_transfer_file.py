"""Tests of dspfx.ddsp.transfer_file: chunked file transfer equals the whole-clip transfer."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from dspfx.cli import main
from dspfx.ddsp.transfer import transfer
from dspfx.ddsp.transfer_file import transfer_file

sys.path.insert(0, str(Path(__file__).parent))
from test_transfer import _input, _model  # noqa: E402


@pytest.fixture(scope="module")
def model():
    return _model(stats={"mean_pitch_midi": 60.0, "loudness_quantiles_db": list(np.linspace(-60, -10, 101))})


@pytest.mark.parametrize("rate", [16000, 44100])
def test_chunked_file_transfer_equals_the_whole_clip_transfer(model, tmp_path, rate):
    x = np.stack([_input(rate, 4.5), 0.5 * _input(rate, 4.5)])  # stereo: mixed to mono
    src = tmp_path / "in.wav"
    sf.write(str(src), x.T, rate, subtype="FLOAT")
    stored = sf.read(str(src), dtype="float64")[0].T  # the file's float32 samples
    whole = transfer(model, torch.from_numpy(stored), rate).numpy()
    for chunk_s in (10.0, 1.0, 1.7):
        summary = transfer_file(model, src, tmp_path / "out.wav", chunk_s=chunk_s, progress=False)
        y, r = sf.read(str(tmp_path / "out.wav"), dtype="float32")
        assert r == rate and y.shape == whole.shape
        assert summary.octave_shift == 1 and summary.chunks == int(np.ceil(4.5 / chunk_s))
        # one chunk is the whole clip; seams leave float32 rounding only (yin's path held here)
        assert np.max(np.abs(y - whole)) < 1e-5 * max(1.0, np.abs(whole).max())


def test_bad_outputs_are_refused_before_work_and_leave_nothing(model, tmp_path, monkeypatch):
    src = tmp_path / "in.wav"
    sf.write(str(src), _input(16000, 1.0), 16000)
    with pytest.raises(FileNotFoundError, match="output folder"):
        transfer_file(model, src, tmp_path / "no" / "out.wav", progress=False)
    with pytest.raises(ValueError, match="extension|format"):
        transfer_file(model, src, tmp_path / "out.xyz", progress=False)
    with pytest.raises(ValueError, match="octave_shift"):
        transfer_file(model, src, tmp_path / "out.wav", octave_shift=9, progress=False)
    with pytest.raises(ValueError, match="chunk_s"):
        transfer_file(model, src, tmp_path / "out.wav", chunk_s=0.01, progress=False)
    # an integer format refuses a render beyond full scale: no output file, no temporary left
    import dspfx.stream

    render = dspfx.stream.Stream.__call__
    monkeypatch.setattr(dspfx.stream.Stream, "__call__", lambda self, *a, **k: 100.0 * render(self, *a, **k))
    with pytest.raises(ValueError, match="peaks at"):
        transfer_file(model, src, tmp_path / "out.flac", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.wav"]


def test_truncated_input_warns_and_gives_its_length(model, tmp_path):
    src = tmp_path / "in.wav"
    sf.write(str(src), _input(16000, 2.0), 16000, subtype="PCM_16")
    data = src.read_bytes()
    src.write_bytes(data[: len(data) - 16000])  # 0.5 s cut off, header unchanged
    with pytest.warns(Warning, match="truncated"):
        transfer_file(model, src, tmp_path / "out.wav", progress=False)
    assert sf.info(str(tmp_path / "out.wav")).frames == 24000


def test_cli_transfer_streams_with_progress_and_one_line_errors(model, tmp_path, capsys):
    path = model.save(tmp_path / "m.safetensors")
    src = tmp_path / "in.wav"
    sf.write(str(src), _input(22050, 2.0), 22050)
    assert main(["transfer", str(path), str(src), str(tmp_path / "out.wav"), "--chunk-s", "1"]) == 0
    out = capsys.readouterr()
    assert "wrote" in out.out and "octave shift" in out.out
    assert "rendering" in out.err  # tqdm's bars go to stderr
    assert sf.info(str(tmp_path / "out.wav")).frames == 44100
    assert main(["transfer", str(path), str(src), str(tmp_path / "o.wav"), "--octave-shift", "up"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'up'" in err
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert main(["transfer", str(path), str(src), str(tmp_path / "o.wav"), "--quiet"]) == 0
    assert capsys.readouterr().err == ""
