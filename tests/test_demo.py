"""The main job: the demo's chain, fitted from its defaults, recovers pedalboard's hidden settings."""

import json

import pytest
import soundfile as sf

import dspfx
from dspfx.demo import TRUE_SETTINGS, run_demo

# Tolerances per knob: cutoffs and Q within 2 %, gains and drive within 0.25 dB.
RELATIVE = {"low.cutoff_hz", "mid.cutoff_hz", "high.cutoff_hz", "mid.q"}


@pytest.mark.slow
def test_demo_recovers_the_true_knobs(tmp_path):
    lines = []
    summary = run_demo(tmp_path, progress=False, echo=lines.append)  # the defaults of `make demo`
    fitted = {row["knob"]: row["fitted"] for row in summary["knobs"]}
    for path, true in TRUE_SETTINGS.items():
        if path in RELATIVE:
            assert fitted[path] == pytest.approx(true, rel=0.02), path
        else:
            assert fitted[path] == pytest.approx(true, abs=0.25), path
    assert summary["metrics"]["esr"] < 1e-4
    assert summary["fit"]["latency_samples"] == 0
    # the printed table names every knob with its true and fitted value
    table = "\n".join(lines)
    for path in TRUE_SETTINGS:
        assert path in table
    # the files it promises, readable
    chain = dspfx.load(tmp_path / "fitted.safetensors")
    assert chain.knobs()["mid.cutoff_hz"] == pytest.approx(fitted["mid.cutoff_hz"], rel=1e-6)
    for name in ("input.wav", "target.wav", "fitted.wav"):
        audio, rate = sf.read(tmp_path / name)
        assert rate == 48000 and len(audio) == 96000
    assert (tmp_path / "report.png").stat().st_size > 50_000
    assert json.loads((tmp_path / "fit.json").read_text())["metrics"]["esr"] == summary["metrics"]["esr"]
