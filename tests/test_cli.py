"""The dspfx command, run as a user would (subprocess) on small inputs."""

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pedalboard
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dspfx
from dspfx.signals import guitar_di


def run(*args, check=True):
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    proc = subprocess.run([sys.executable, "-m", "dspfx", *args], capture_output=True, text=True, env=env, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"dspfx {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    sr = 48000
    x = guitar_di(duration_s=0.5)[0]
    board = pedalboard.Pedalboard([pedalboard.Distortion(drive_db=15.0), pedalboard.PeakFilter(1200.0, 5.0, 1.0)])
    y = board(x.numpy(), sr)
    sf.write(d / "di.wav", x.numpy().T, sr, subtype="FLOAT")
    sf.write(d / "target.wav", y.T, sr, subtype="FLOAT")
    chain = dspfx.from_pedalboard(board, sr)
    dspfx.save(chain, d / "board.safetensors")
    (d / "start.json").write_text(json.dumps(dspfx.Chain(distortion=dspfx.make("distortion"), peak_filter=dspfx.make("biquad")).spec()))
    return d


def test_units_lists_the_registry():
    out = run("units", "--json").stdout
    names = {row["name"] for row in json.loads(out)}
    assert {"gain", "distortion", "biquad", "chain"} <= names
    assert "cutoff_hz" in run("units").stdout
    assert run("units", "--markdown").stdout.strip() == dspfx.registry.markdown_table()


def test_render_matches_pedalboard(files):
    run("render", str(files / "board.safetensors"), str(files / "di.wav"), str(files / "out.wav"))
    y, sr = sf.read(files / "out.wav", always_2d=True)
    ref, _ = sf.read(files / "target.wav", always_2d=True)
    assert sr == 48000
    assert np.sum((y - ref) ** 2) / np.sum(ref**2) < 1e-6
    run("render", str(files / "board.safetensors"), str(files / "di.wav"), str(files / "quiet.wav"), "--set", "distortion.drive_db=0")
    q, _ = sf.read(files / "quiet.wav", always_2d=True)
    assert np.abs(q).max() < np.abs(y).max()


def test_fit_writes_its_files_and_improves(files):
    out = files / "fit"
    proc = run("fit", str(files / "start.json"), str(files / "di.wav"), str(files / "target.wav"), "--out", str(out), "--steps", "40", "--quiet")
    assert "ESR" in proc.stdout
    assert {"fitted.safetensors", "fitted.wav", "report.png", "fit.json"} <= {p.name for p in out.iterdir()}
    record = json.loads((out / "fit.json").read_text())
    assert record["best_loss"] < record["loss_history"][0]
    fitted = dspfx.load(out / "fitted.safetensors")
    assert set(fitted.knobs()) == {"distortion.drive_db", "peak_filter.cutoff_hz", "peak_filter.q", "peak_filter.gain_db"}


def test_fit_minutes_stops_on_the_clock_and_out_is_checked_first(files):
    out = files / "fit-minutes"
    proc = run("fit", str(files / "start.json"), str(files / "di.wav"), str(files / "target.wav"), "--out", str(out),
               "--steps", "100000", "--minutes", "0.02", "--batch-size", "2", "--segment", "0.1", "--quiet")
    record = json.loads((out / "fit.json").read_text())
    assert record["settings"]["stopped"] == "time" and record["settings"]["max_seconds"] == 1.2
    assert len(record["loss_history"]) < 100000
    assert "ESR" in proc.stdout
    (files / "a-file").write_text("x")
    proc = run("fit", str(files / "start.json"), str(files / "di.wav"), str(files / "target.wav"), "--out",
               str(files / "a-file"), "--steps", "100000", check=False)
    assert proc.returncode == 2 and "not a folder" in proc.stderr  # before any fitting
    proc = run("fit", str(files / "start.json"), str(files / "di.wav"), str(files / "target.wav"), "--out",
               str(out), "--minutes", "-1", check=False)
    assert proc.returncode == 2 and "--minutes" in proc.stderr


def test_compare_files_and_processors(files):
    proc = run("compare", str(files / "target.wav"), str(files / "target.wav"), "--json")
    assert json.loads(proc.stdout)["esr"] == 0.0
    proc = run("compare", str(files / "board.safetensors"), str(files / "start.json"), "--input", str(files / "di.wav"), "--json", "--plot", str(files / "cmp.png"))
    assert json.loads(proc.stdout)["esr"] > 1e-3
    assert (files / "cmp.png").exists()


def test_errors_are_reported_not_raised(files):
    proc = run("render", str(files / "missing.json"), str(files / "di.wav"), str(files / "x.wav"), check=False)
    assert proc.returncode == 2 and "no chain file" in proc.stderr and "Traceback" not in proc.stderr
    bad = files / "bad.json"
    bad.write_text(json.dumps({"unit": "biqaud"}))
    proc = run("render", str(bad), str(files / "di.wav"), str(files / "x.wav"), check=False)
    assert proc.returncode == 2 and "Did you mean: biquad" in proc.stderr
    (files / "noise.wav").write_bytes(b"not audio at all")
    proc = run("render", str(files / "board.safetensors"), str(files / "noise.wav"), str(files / "x.wav"), check=False)
    assert proc.returncode == 2 and "noise.wav" in proc.stderr


@pytest.mark.slow
def test_demo_runs_small(tmp_path):
    proc = run("demo", "--out", str(tmp_path), "--steps", "20", "--seconds", "0.5", "--quiet")
    assert "drive.drive_db" in proc.stdout and "true" in proc.stdout
    names = {p.name for p in tmp_path.iterdir()}
    assert {"input.wav", "target.wav", "fitted.wav", "fitted.safetensors", "report.png", "fit.json"} <= names
    assert isinstance(dspfx.load(tmp_path / "fitted.safetensors"), dspfx.Chain)


def test_prepare_train_transfer_from_the_command_line(tmp_path, capsys):
    from dspfx.cli import main
    from dspfx.io import read_audio, write_audio

    sr = 16000
    audio = tmp_path / "audio"
    audio.mkdir()
    t = np.arange(2 * sr) / sr
    write_audio(audio / "tone.wav", (0.3 * np.sin(2 * np.pi * 220 * t) * np.sin(np.pi * t / 2)).astype(np.float32), sr)
    assert main(["prepare", str(audio), str(tmp_path / "data"), "--window-s", "0.5", "--hop-s", "0.5", "--quiet"]) == 0
    assert (tmp_path / "data" / "stats.json").is_file()
    assert main(["train", str(tmp_path / "data"), "--out", str(tmp_path / "run"), "--steps", "1",
                 "--batch-size", "1", "--reverb-s", "0.05", "--quiet"]) == 0
    model = tmp_path / "run" / "model.safetensors"
    assert model.is_file()
    voice = tmp_path / "voice.wav"
    write_audio(voice, (0.2 * np.sin(2 * np.pi * 330 * t[: 22050 // 2])).astype(np.float32), 22050)
    assert main(["transfer", str(model), str(voice), str(tmp_path / "out.wav"), "--octave-shift", "0"]) == 0
    out, rate = read_audio(tmp_path / "out.wav")
    assert rate == 22050 and out.shape[-1] == 22050 // 2 and bool(out.abs().max() > 0)
    # a chain file is not a model: one line, status 2
    spec = tmp_path / "chain.json"
    dspfx.save(dspfx.make("gain"), spec)
    assert main(["transfer", str(spec), str(voice), str(tmp_path / "x.wav")]) == 2
    assert "error" in capsys.readouterr().err


def test_a_fit_that_only_meets_nan_is_one_line_and_exit_2(files, monkeypatch, capsys):
    """FloatingPointError (every step NaN) and CPUKernelError reach the user as one line, exit 2."""
    from dspfx import cli
    from dspfx.functional import CPUKernelError

    for error in (FloatingPointError("fit: every step of x gave a NaN/Inf loss"), CPUKernelError("ladder: a CPU kernel")):
        def boom(args, error=error):
            raise error

        monkeypatch.setattr(cli, "_cmd_units", boom)
        assert cli.main(["units"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and str(error) in err


def test_any_error_is_one_line_and_exit_2_and_debug_shows_the_traceback(monkeypatch, capsys):
    from dspfx import cli

    for error, words in ((PermissionError(13, "Permission denied", "/out/x.wav"), "Permission denied: /out/x.wav"),
                         (RuntimeError("a kernel\nfailed"), "RuntimeError: a kernel failed"),
                         (MemoryError(), "out of memory")):
        def boom(args, error=error):
            raise error

        monkeypatch.setattr(cli, "_cmd_units", boom)
        assert cli.main(["units"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and words in err, err
    with pytest.raises(MemoryError):
        cli.main(["--debug", "units"])


def test_an_output_folder_that_cannot_be_written_is_refused_before_any_work(tmp_path, monkeypatch, capsys):
    """The nearest existing folder must be writable (checked with os.access; faked here, since
    root, as CI runs, may write anywhere)."""
    from dspfx import cli

    monkeypatch.setattr(cli.os, "access", lambda path, mode: Path(path) != tmp_path)
    assert cli.main(["fit", "nothing.json", "in.wav", "t.wav", "--out", str(tmp_path / "new" / "deeper")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{tmp_path} is not writable" in err


_WORDS = ["units", "render", "compare", "capture-signal", "fit", "capture", "transfer", "bogus", "--json", "--markdown",
          "--category", "synth", "in.wav", "/nonexistent/y.wav", "../../etc/passwd", "--sample-rate", "-5", "1e9", "0",
          "--out", "--minutes", "nan", "--model", "auto", "--latency", "-3", "--input", "", "--steps", "99999999999"]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(_WORDS), min_size=0, max_size=6))
def test_fuzzed_command_lines_end_in_exit_0_or_one_line_and_exit_2(tmp_path, monkeypatch, argv):
    from dspfx import cli

    monkeypatch.chdir(tmp_path)  # whatever a command line writes lands here
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main(argv)
        except SystemExit as done:  # argparse: usage errors and --help
            code = done.code
    assert code in (0, 2), (argv, code, err.getvalue())
    if code == 2:
        assert err.getvalue().count("\n") == 1 and "error" in err.getvalue(), (argv, err.getvalue())


def test_render_refuses_a_synth_and_a_missing_output_folder_before_work(files, capsys):
    """A synth given an input used to render one sample and exit 0."""
    from dspfx import cli

    dspfx.save(dspfx.make("harmonic"), files / "synth.safetensors")
    assert cli.main(["render", str(files / "synth.safetensors"), str(files / "di.wav"), str(files / "synth_out.wav")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is a synth" in err and not (files / "synth_out.wav").exists()
    assert cli.main(["render", str(files / "board.safetensors"), str(files / "di.wav"), str(files / "no" / "o.wav")]) == 2
    assert "its folder does not exist" in capsys.readouterr().err
