"""The reamp (capture) signal and what its layout measures on a device's output: blip latency
(known delays recovered exactly, a zero-latency filtered nonlinear device never shifted), the
repeated validation segment, recognising the signal, and the CLI that writes it."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import dspfx
from dspfx.fitting.reamp import REPEAT_ESR_LIMIT, blip_latency, capture_signal, match_capture_signal, repeat_esr

SR = 48000


@pytest.fixture(scope="module")
def signal():
    return capture_signal(SR)


@pytest.fixture(scope="module")
def amp_output(signal):
    """A strongly filtered nonlinear device with no latency: the jcm800 gray-box amp."""
    x, _ = signal
    device = dspfx.amps.amp(model="jcm800", sample_rate=SR)
    with torch.no_grad():
        return device(torch.from_numpy(x).reshape(1, 1, -1))[0, 0].double().numpy()


def test_the_signal_is_deterministic_and_laid_out_as_it_says(signal):
    x, layout = signal
    again, layout_again = capture_signal(SR)
    assert np.array_equal(x, again) and layout == layout_again
    assert x.dtype == np.float32 and x.shape == (layout.length,) and 0.85 < np.abs(x).max() <= 0.9 + 1e-6
    v0, v1 = layout.validation
    r0, r1 = layout.validation_repeat
    assert np.array_equal(x[v0:v1], x[r0:r1]) and v1 - v0 == 8 * SR  # the validation, played twice
    for blip in layout.blips:  # an isolated impulse: silence a second before and after
        assert x[blip] == 0.5
        assert not np.any(x[blip - SR // 2 : blip]) and not np.any(x[blip + 1 : blip + SR // 2])
    assert layout.validation[1] <= layout.blips[0] < layout.blips[1] < layout.training[0] < layout.training[1] <= r0
    assert json.loads(json.dumps(layout.to_dict()))["seconds"] == pytest.approx(70.6)
    x44, layout44 = capture_signal(44100)
    assert layout44.blips[0] == int(round(10.0 * 44100)) and len(x44) == layout44.length
    with pytest.raises(ValueError, match="16 kHz"):
        capture_signal(8000)
    with pytest.raises(ValueError, match="192000 Hz at most"):
        capture_signal(10_000_000)


def test_blips_recover_a_known_latency_exactly_and_never_shift_a_zero_latency_device(signal, amp_output):
    _, layout = signal
    assert blip_latency(amp_output, layout).samples == 0  # resonant, saturating, filtered: still 0
    for delay in (1, 7, 113, 4800):
        delayed = np.concatenate([np.zeros(delay), amp_output])
        found = blip_latency(delayed, layout)
        assert found.samples == delay and found.onsets == (delay, delay)
    noisy = np.concatenate([np.zeros(37), amp_output]) + 1e-4 * np.random.default_rng(0).standard_normal(len(amp_output) + 37)
    assert blip_latency(noisy, layout).samples == 37  # a noise floor 70 dB below the peak


def test_blip_failures_are_named(signal, amp_output):
    x, layout = signal
    with pytest.raises(ValueError, match="record the whole signal"):
        blip_latency(amp_output[: layout.blips[1]], layout)
    silent = amp_output.copy()
    silent[layout.blips[0] : layout.blips[0] + SR // 2] = 0.0
    with pytest.raises(ValueError, match="no response to the blip"):
        blip_latency(silent, layout)
    shifted = amp_output.copy()  # the second blip answered 5 samples later than the first
    b = layout.blips[1]
    shifted[b : b + SR // 2] = np.concatenate([np.zeros(5), amp_output[b : b + SR // 2 - 5]])
    with pytest.raises(ValueError, match="disagree"):
        blip_latency(shifted, layout)
    # capture then reads the response's onset instead (0: the amp answers at once), and warns
    from dspfx.fitting.capture_model import pair_latency

    lag, method, warning = pair_latency(torch.from_numpy(x), torch.from_numpy(shifted), SR, layout)
    assert (lag, method) == (0, "onset (the blips disagreed)") and "disagree" in warning
    assert pair_latency(torch.from_numpy(x), torch.from_numpy(amp_output), SR, layout) == (0, "blips", None)


def test_the_repeated_validation_flags_a_noisy_device(signal, amp_output):
    _, layout = signal
    assert repeat_esr(amp_output, layout) < 1e-5  # deterministic (state left from before: tiny)
    rng = np.random.default_rng(1)
    hiss = amp_output + 0.1 * np.std(amp_output) * rng.standard_normal(amp_output.shape)
    assert repeat_esr(hiss, layout) > REPEAT_ESR_LIMIT  # -20 dB of noise: ESR about 0.02


def test_the_signal_is_recognised_in_a_file(signal, tmp_path):
    x, layout = signal
    assert match_capture_signal(x, SR) == layout
    pcm16 = np.round(x.astype(np.float64) * 32767) / 32767  # a 16-bit file of it
    assert match_capture_signal(pcm16, SR) == layout
    assert match_capture_signal(x[:-1], SR) is None and match_capture_signal(x[::-1], SR) is None
    assert match_capture_signal(x, 44100) is None


def test_cli_writes_the_signal_and_its_layout(tmp_path):
    out = tmp_path / "reamp.wav"
    proc = subprocess.run([sys.executable, "-m", "dspfx", "capture-signal", str(out), "--sample-rate", "44100"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    audio, rate = dspfx.read_audio(out)
    x, layout = capture_signal(44100)
    assert rate == 44100 and np.array_equal(audio.reshape(-1).numpy(), x)
    assert json.loads(out.with_suffix(".json").read_text())["blips"] == list(layout.blips)
    bad = subprocess.run([sys.executable, "-m", "dspfx", "capture-signal", str(out), "--sample-rate", "8000"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "16 kHz" in bad.stderr
