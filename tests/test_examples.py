"""The example scripts run as a user would run them (in a scratch folder) and do what they say."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

EXAMPLES = Path(__file__).parent.parent / "examples"


def run(script, *args, cwd):
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    proc = subprocess.run([sys.executable, str(EXAMPLES / script), *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_filter_sweep(tmp_path):
    out = run("filter_sweep.py", cwd=tmp_path)
    difference = float(out.split("max abs difference:")[1].split()[0])
    assert difference <= 1e-5  # streaming equals offline
    audio, rate = sf.read(tmp_path / "sweep.wav")
    assert rate == 48000 and len(audio) == 4 * 48000
    assert (tmp_path / "sweep.png").stat().st_size > 20_000


@pytest.mark.slow
def test_fit_pedalboard_board(tmp_path):
    out = run("fit_pedalboard_board.py", "--steps", "150", cwd=tmp_path)
    knobs = {line.split()[0]: float(line.split()[1]) for line in out.splitlines() if line.startswith("  ")}
    assert knobs["distortion.drive_db"] == pytest.approx(24.0, abs=0.5)
    assert knobs["peak_filter.cutoff_hz"] == pytest.approx(700.0, rel=0.05)
    assert (tmp_path / "fitted.safetensors").exists()
