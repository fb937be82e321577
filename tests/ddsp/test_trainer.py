"""Tests of dspfx.ddsp.trainer: steps, checkpoints and resume, files, DDP on CPU, bad input."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from dspfx.ddsp.model import DDSPModel
from dspfx.ddsp.features import loudness_db, pitch
from dspfx.ddsp.trainer import train, validate

SR, FR, HOP = 16000, 250.0, 64


def _window(f0_hz: float, n: int = 4096) -> dict[str, torch.Tensor]:
    t = torch.arange(n, dtype=torch.float64) / SR
    x = 0.3 * sum(torch.sin(2 * math.pi * f0_hz * k * t) / k for k in range(1, 6))
    x = x * torch.hann_window(n, dtype=torch.float64)
    x = x.float()
    f0, conf = pitch(x, SR, FR)
    return {"audio": x, "f0_hz": f0, "confidence": conf, "loudness_db": loudness_db(x, SR, FR)}


@pytest.fixture(scope="module")
def windows() -> list[dict[str, torch.Tensor]]:
    return [_window(f) for f in (196.0, 247.0, 294.0)]


def _model() -> DDSPModel:
    torch.manual_seed(0)
    return DDSPModel(reverb_s=0.01, decoder={"gru_units": 16})


def sawtooth_like(model: DDSPModel) -> DDSPModel:
    """Bias an untrained decoder toward a 1/k harmonic spectrum (the default f0 tracker, like
    YIN generally, can lock onto a subharmonic of a flat 60-harmonic spectrum)."""
    model.decoder.harmonic_prior()
    return model


def test_train_writes_files_and_resume_continues_exactly(windows, tmp_path):
    kw = dict(batch_size=2, lr=1e-3, checkpoint_every=2, progress=False, valid_windows=1, device="cpu")
    first = train(windows, tmp_path / "a", steps=2, model=_model(), **kw)
    assert first.step == 2 and len(first.history) == 2
    for name in ("checkpoint.safetensors", "model.safetensors", "metrics.json", "loss.png"):
        assert (tmp_path / "a" / name).is_file(), name
    assert sorted(p.name for p in (tmp_path / "a" / "samples").iterdir()) == [
        "step0000002-render.wav", "step0000002-target.wav", "step0000002.png"]
    m = first.metrics
    assert set(m) >= {"loudness_l1_db", "f0_l1_semitones", "f0_outlier_ratio", "mrstft"}
    assert all(np.isfinite(m[k]) for k in ("loudness_l1_db", "mrstft"))
    resumed = train(windows, tmp_path / "a", steps=3, model=_model(), **kw)
    straight = train(windows, tmp_path / "b", steps=3, model=_model(), **{**kw, "checkpoint_every": 3})
    assert resumed.step == 3 and len(resumed.history) == 3
    assert resumed.history[:2] == first.history
    for (k, a), b in zip(resumed.model.state_dict().items(), straight.model.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), k
    loaded = DDSPModel.load(tmp_path / "a" / "model.safetensors")
    with torch.no_grad():
        assert torch.equal(loaded(windows[0]["f0_hz"][None], windows[0]["loudness_db"][None]),
                           resumed.model(windows[0]["f0_hz"][None], windows[0]["loudness_db"][None]))


def test_validate_metrics_track_the_rendered_pitch(windows):
    """validate() compares a render's features with the batch's: a model that cannot render the
    target still reports finite metrics, and f0 of a rendered harmonic tone is tracked."""
    model = sawtooth_like(_model())
    batch = {k: torch.stack([w[k] for w in windows]) for k in windows[0]}
    m = validate(model, batch)
    assert m["f0_l1_semitones"] < 1.0  # the synth plays the given f0
    assert 0.0 <= m["f0_outlier_ratio"] <= 1.0 and m["loudness_l1_db"] > 0


def test_bad_inputs_raise_clear_errors(windows, tmp_path):
    with pytest.raises(ValueError, match="empty"):
        train([], tmp_path / "x", steps=1, progress=False)
    with pytest.raises(FileNotFoundError, match="prepare"):
        train(tmp_path / "no_dataset", tmp_path / "x", steps=1, progress=False)
    with pytest.raises(ValueError, match="steps"):
        train(windows, tmp_path / "x", steps=0, progress=False)
    bad = [{**windows[0], "audio": windows[0]["audio"][:-10]}]
    with pytest.raises(ValueError, match="frames"):
        train(bad, tmp_path / "x", steps=1, progress=False, model=_model())
    # a checkpoint of another size in out_dir
    train(windows, tmp_path / "c", steps=1, batch_size=1, progress=False, model=_model(), valid_windows=1)
    other = DDSPModel(reverb_s=0.01, decoder={"gru_units": 8})
    with pytest.raises(ValueError, match="another size"):
        train(windows, tmp_path / "c", steps=2, batch_size=1, progress=False, model=other)


def _ddp_worker(rank: int, world: int, init_file: str, out: str, windows) -> None:
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        torch.manual_seed(rank)  # different inits: DDP must broadcast rank 0's weights
        model = DDSPModel(reverb_s=0.01, decoder={"gru_units": 16})
        result = train(windows, os.path.join(out, "run"), steps=2, batch_size=1, checkpoint_every=2,
                       progress=False, model=model, device="cpu", valid_windows=1)
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in result.model.state_dict().items()},
                  os.path.join(out, f"rank{rank}.safetensors"))
    finally:
        torch.distributed.destroy_process_group()


def test_two_process_gloo_run_agrees(windows, tmp_path):
    from safetensors.torch import load_file

    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), str(tmp_path), windows), nprocs=2, join=True)
    a, b = load_file(str(tmp_path / "rank0.safetensors")), load_file(str(tmp_path / "rank1.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert (tmp_path / "run" / "checkpoint.safetensors").is_file()  # rank 0 wrote
    fresh = DDSPModel(reverb_s=0.01, decoder={"gru_units": 16}).state_dict()
    assert any(not torch.equal(a[k], fresh[k]) for k in a)  # trained


def test_train_from_a_prepared_folder_keeps_its_statistics(tmp_path):
    from dspfx.io import write_audio
    from dspfx.ddsp.data import prepare

    audio = tmp_path / "audio"
    audio.mkdir()
    t = np.arange(2 * SR) / SR
    write_audio(audio / "tone.wav", (0.3 * np.sin(2 * np.pi * 220 * t) * np.sin(np.pi * t / 2)).astype(np.float32), SR)
    prepare(audio, tmp_path / "data", window_s=0.5, hop_s=0.5, progress=False)
    result = train(tmp_path / "data", tmp_path / "run", steps=1, batch_size=1, progress=False,
                   model=_model(), valid_windows=1)
    loaded = DDSPModel.load(tmp_path / "run" / "model.safetensors")
    assert loaded.stats is not None and abs(loaded.stats["mean_pitch_midi"] - 57.0) < 0.2  # 220 Hz
    assert result.step == 1


def test_train_stops_on_its_time_budget_validated_and_saved(windows, tmp_path):
    """max_seconds (`dspfx train --minutes`): the run stops after the step that crosses it, with
    a validation, a checkpoint and the model at its best validation state written."""
    import time

    t0 = time.perf_counter()
    result = train(windows, tmp_path / "t", steps=100000, batch_size=1, checkpoint_every=1000, progress=False,
                   model=_model(), valid_windows=1, device="cpu", max_seconds=1.0)
    assert result.stopped == "time" and 1 <= result.step < 100000
    assert time.perf_counter() - t0 < 30.0
    assert result.metrics["step"] == result.step  # validated at the stop
    for name in ("checkpoint.safetensors", "model.safetensors", "metrics.json"):
        assert (tmp_path / "t" / name).is_file(), name
    assert (tmp_path / "t" / "samples" / f"step{result.step:07d}-render.wav").is_file()  # the stop's samples
