"""`dspfx train` under torchrun: two CPU processes (gloo) train a few steps and end with the same
weights (the trainer compares a fingerprint of every parameter across ranks and each rank says so)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

SR = 16000


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    from dspfx.io import write_audio
    from dspfx.ddsp.data import prepare

    root = tmp_path_factory.mktemp("torchrun")
    audio = root / "audio"
    audio.mkdir()
    t = np.arange(2 * SR) / SR
    for i, f0 in enumerate((196.0, 330.0)):
        tone = 0.3 * np.sin(2 * np.pi * f0 * t) * np.sin(np.pi * t / 2) ** 2
        write_audio(audio / f"tone{i}.wav", tone.astype(np.float32), SR)
    prepare(audio, root / "data", window_s=0.5, hop_s=0.5, progress=False)
    return root


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not built in")
def test_two_process_torchrun_trains_and_ranks_agree(data):
    run = data / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    # `--standalone` picks a free port on this machine; `-m dspfx` is the installed CLI
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "dspfx", "train", str(data / "data"), "--out", str(run), "--steps", "3", "--batch-size", "1",
           "--reverb-s", "0.01", "--checkpoint-every", "3", "--device", "cpu", "--quiet"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300,
                          cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for rank in (0, 1):
        assert f"rank {rank}: trained to step 3" in proc.stdout, proc.stdout
        assert f"rank {rank}: weights agree on all 2 ranks" in proc.stdout, proc.stdout
    assert proc.stdout.count("wrote ") == 1  # only rank 0 writes
    from dspfx.ddsp.model import DDSPModel

    model = DDSPModel.load(run / "model.safetensors")
    fresh = DDSPModel(model.sample_rate, model.frame_rate, preset="tiny", reverb_s=0.01)
    assert any(not torch.equal(a, b) for a, b in zip(model.state_dict().values(), fresh.state_dict().values()))
