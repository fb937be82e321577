"""The optimisation core (dspfx.fitting.loop.optimise): groups, schedules, the NaN policy, best
state on validation, the time budget, checkpoints with resume, and torchrun (gloo on CPU)."""

from __future__ import annotations

import math
import os
import time

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

import dspfx
from dspfx.fitting.loop import _schedule_factor, optimise, param_groups


class Quadratic(nn.Module):
    """loss = |w - target|^2: the minimum and the gradient are known exactly."""

    def __init__(self, start: float = 0.0) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.full((3,), start, dtype=torch.float64))

    def loss(self, target: float = 1.0) -> torch.Tensor:
        return (self.w - target).square().sum()


def test_param_groups_put_knobs_and_weights_at_their_own_rates():
    unit = dspfx.Chain(drive=dspfx.make("distortion"), cab=dspfx.make("cabinet", mode="ir", n_taps=64))  # knobs + a learned IR
    groups = param_groups(unit, 0.05, 0.001)
    rates = {g["name"]: g["lr"] for g in groups}
    assert rates == {"knobs": 0.05, "weights": 0.001}
    knob_ids = {id(p) for n, p in unit.named_parameters() if "raw_knobs" in n}
    assert {id(p) for p in groups[0]["params"]} == knob_ids
    assert len(param_groups(unit, 0.05)) == 1  # one rate: one group
    unit.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        param_groups(unit, 0.05)


def test_schedules_end_where_they_say():
    assert _schedule_factor("cosine", 0.0, 0, 0.98, 10000) == pytest.approx(1.0)
    assert _schedule_factor("cosine", 1.0, 100, 0.98, 10000) == pytest.approx(0.01)
    assert _schedule_factor("cosine", 0.5, 50, 0.98, 10000) == pytest.approx(0.505)
    assert _schedule_factor("exponential", 0.1, 20000, 0.98, 10000) == pytest.approx(0.98**2)
    assert _schedule_factor("constant", 0.7, 7, 0.98, 10000) == 1.0


def test_a_cooldown_scales_the_rate_down_linearly_to_one_percent():
    """With a constant gradient each Adam step moves a weight by its rate, so the steps taken
    read the schedule back: full rate before the cool-down, a linear fall, 1% after it."""

    class Slope(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.zeros(1, dtype=torch.float64))

    model = Slope()
    seen = []
    optimise(model, lambda step: model.w.sum(), steps=20, lr=0.1, schedule="constant", cooldown=(5, 15),
             restore_best=False, progress=False, callback=lambda step, loss, m: seen.append(m.w.item()))
    moves = -torch.diff(torch.tensor([0.0, *seen], dtype=torch.float64)) / 0.1
    expected = [1.0 if s < 5 else 1.0 - 0.99 * min(1.0, (s - 5) / 10) for s in range(20)]
    assert moves.tolist() == pytest.approx(expected, rel=1e-6)


def test_optimise_converges_and_keeps_the_best_training_state():
    model = Quadratic()
    result = optimise(model, lambda step: model.loss(), steps=200, lr=0.1, schedule="constant", progress=False)
    assert result.steps == 200 and result.stopped == "steps" and result.skipped_steps == 0
    assert torch.allclose(model.w, torch.ones(3, dtype=torch.float64), atol=1e-3)
    assert result.best_loss == pytest.approx(float(model.loss().detach()), abs=1e-12)


def test_nan_steps_restore_the_best_state_halve_the_rates_and_are_counted():
    model = Quadratic()
    seen_lrs = []

    def loss_fn(step: int) -> torch.Tensor:
        if step in (5, 6):
            return model.loss() * float("nan")
        return model.loss()

    def callback(step, value, module):
        seen_lrs.append(step)

    result = optimise(model, loss_fn, steps=20, lr=0.05, schedule="constant", progress=False, callback=callback)
    assert result.skipped_steps == 2 and result.lr_scale == 0.25
    assert math.isnan(result.history[5]) and math.isnan(result.history[6])
    assert 5 not in seen_lrs and 6 not in seen_lrs  # the callback sees steps taken only
    assert float(model.loss().detach()) < 3.0  # it kept going down after the NaN steps


def test_a_nan_gradient_is_caught_too():
    """A finite loss whose gradient is NaN (0 * d/dw sqrt(w - w) at 0) is a skipped step too."""
    model = Quadratic(0.5)

    def loss_fn(step: int) -> torch.Tensor:
        if step == 3:
            return model.loss() + 0.0 * (model.w - model.w.detach()).sqrt().sum()
        return model.loss()

    result = optimise(model, loss_fn, steps=6, lr=0.01, schedule="constant", progress=False)
    assert math.isfinite(result.history[3]) is False and result.skipped_steps == 1
    assert torch.isfinite(model.w).all() and result.lr_scale == 0.5


def test_best_state_on_validation_and_patience():
    model = Quadratic()
    values = iter([5.0, 1.0, 2.0, 3.0, 4.0, 6.0, 7.0])
    states = {}

    def validate() -> float:
        states[len(states)] = model.w.detach().clone()
        return next(values)

    result = optimise(model, lambda s: model.loss(), steps=100, lr=0.1, validate=validate, validate_every=2,
                      patience=3, progress=False)
    assert result.stopped == "patience" and result.steps == 8  # validations at 0, 2, 4, 6, 8
    assert result.best_step == 2 and result.best_loss == 1.0
    assert torch.equal(model.w, states[1])  # left at the state validated best
    assert [s for s, _ in result.validation_history] == [0, 2, 4, 6, 8]


def test_time_budget_stops_cleanly_at_the_best_state():
    model = Quadratic()

    def slow(step: int) -> torch.Tensor:
        time.sleep(0.02)
        return model.loss()

    t0 = time.perf_counter()
    result = optimise(model, slow, steps=100000, lr=0.05, validate=lambda: float(model.loss()), validate_every=10,
                      max_seconds=0.5, progress=False)
    assert result.stopped == "time" and 5 < result.steps < 100
    assert time.perf_counter() - t0 < 3.0
    assert result.validation_history[-1][0] == result.steps  # validated at the stop
    assert float(model.loss()) == pytest.approx(result.best_loss)


class Killed(Exception):
    pass


def test_checkpoint_resume_continues_exactly(tmp_path):
    """A run killed after its step-6 checkpoint and started again with the same settings ends
    exactly where an uninterrupted run does (weights, Adam moments, schedule, history)."""

    def run(path, kill_at=None):
        torch.manual_seed(0)
        model = nn.Linear(4, 1).double()
        x = torch.randn(64, 4, dtype=torch.float64)
        y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]], dtype=torch.float64)

        def loss_fn(step: int) -> torch.Tensor:
            g = torch.Generator().manual_seed(step + 1)
            idx = torch.randint(0, 64, (8,), generator=g)
            return (model(x[idx]) - y[idx]).square().mean()

        def callback(step, value, module):
            if step == kill_at:
                raise Killed

        result = optimise(model, loss_fn, steps=9, lr=0.05, schedule="cosine", validate=lambda: float(loss_fn(-1)),
                          validate_every=3, restore_best=False, checkpoint=path, checkpoint_every=3,
                          checkpoint_config={"job": "linear"}, progress=False, callback=callback)
        return model, result

    straight, r_straight = run(tmp_path / "a.safetensors")
    with pytest.raises(Killed):
        run(tmp_path / "b.safetensors", kill_at=6)
    resumed, r_resumed = run(tmp_path / "b.safetensors")
    assert r_resumed.steps == 9 and r_resumed.history == r_straight.history
    assert r_resumed.validation_history == r_straight.validation_history
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="another job"):
        torch.manual_seed(0)
        model = nn.Linear(4, 1).double()
        optimise(model, lambda s: model.weight.sum(), steps=10, checkpoint=tmp_path / "b.safetensors",
                 checkpoint_config={"job": "other"}, progress=False)


def test_bad_settings_are_named():
    model = Quadratic()
    for kwargs, match in ((dict(steps=0), "steps"), (dict(steps=5, schedule="linear"), "schedule"),
                          (dict(steps=5, max_seconds=-1.0), "max_seconds"), (dict(steps=5, lr=0.0), "lr"),
                          (dict(steps=5, grad_clip=0.0), "grad_clip"), (dict(steps=5, cooldown=(4, 2)), "cooldown"),
                          (dict(steps=5, cooldown=(1.5, 3)), "cooldown")):
        with pytest.raises((ValueError, TypeError), match=match):
            optimise(model, lambda s: model.loss(), progress=False, **kwargs)
    with pytest.raises(FloatingPointError, match="finite"):
        optimise(model, lambda s: model.loss() * float("nan"), steps=3, progress=False)


def test_fit_stops_on_its_time_budget():
    unit = dspfx.make("distortion", drive_db=5.0)
    x = torch.randn(1, 1, 4800) * 0.3
    target = dspfx.make("distortion", drive_db=20.0)(x).detach()
    t0 = time.perf_counter()
    result = dspfx.fit(unit, x, target, steps=100000, max_seconds=1.0, progress=False, loss="esr")
    assert result.settings["stopped"] == "time" and time.perf_counter() - t0 < 5.0
    assert result.metrics["esr"] < 0.5  # it went somewhere in its second


def _fit_worker(rank: int, world: int, init_file: str, out: str) -> None:
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        x = torch.randn(1, 1, 24000) * 0.3
        target = dspfx.make("distortion", drive_db=20.0)(x).detach()
        unit = dspfx.make("distortion", drive_db=3.0 + rank)  # different starts: rank 0's wins
        result = dspfx.fit(unit, x, target, steps=20, segment_s=0.05, batch_size=2, seed=rank, progress=False,
                           loss="esr", sample_rate=48000)
        with open(os.path.join(out, f"rank{rank}.txt"), "w") as f:
            f.write(repr(unit.knobs()["drive_db"]) + " " + repr(result.loss_history[-1]))
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not built in")
def test_fit_under_two_gloo_ranks_ends_with_the_same_knobs(tmp_path):
    """Each rank draws its own segments (seed=rank); gradients are averaged, so the knobs stay
    identical on both ranks (and the core checks it), and the averaged loss history agrees."""
    mp.spawn(_fit_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    a = (tmp_path / "rank0.txt").read_text().split()
    b = (tmp_path / "rank1.txt").read_text().split()
    assert a == b
    assert abs(float(a[0]) - 3.0) > 0.5  # it moved from rank 0's start


def test_fit_resumes_from_its_checkpoint(tmp_path):
    """A fit killed after its checkpoint and run again with the same settings ends where an
    uninterrupted fit does (the unit's spec, steps and seed name the job)."""
    torch.manual_seed(0)
    x = torch.randn(1, 1, 4800, dtype=torch.float64) * 0.3
    target = dspfx.make("distortion", drive_db=20.0).double()(x).detach()

    def run(path, kill_at=None):
        unit = dspfx.make("distortion", drive_db=5.0).double()

        def callback(step, value, module):
            if step == kill_at:
                raise Killed

        result = dspfx.fit(unit, x, target, steps=12, loss="esr", schedule="cosine", progress=False,
                           checkpoint=path, checkpoint_every=4, callback=callback)
        return unit, result

    straight, r_straight = run(tmp_path / "a.safetensors")
    with pytest.raises(Killed):
        run(tmp_path / "b.safetensors", kill_at=9)
    resumed, r_resumed = run(tmp_path / "b.safetensors")
    assert r_resumed.loss_history == r_straight.loss_history
    assert resumed.knobs() == straight.knobs()
    with pytest.raises(ValueError, match="restarts"):
        dspfx.fit(dspfx.make("distortion"), x.float(), target.float(), steps=2, restarts=2, checkpoint=tmp_path / "c.safetensors")


def test_a_run_stopped_by_the_clock_resumes_to_its_steps(tmp_path):
    model = Quadratic()

    def slow(step: int) -> torch.Tensor:
        time.sleep(0.01)
        return model.loss()

    first = optimise(model, slow, steps=400, lr=0.05, validate=lambda: float(model.loss().detach()), validate_every=5,
                     max_seconds=0.3, checkpoint=tmp_path / "c.safetensors", checkpoint_every=5, progress=False)
    assert first.stopped == "time" and first.steps < 400
    again = Quadratic()
    second = optimise(again, lambda s: again.loss(), steps=400, lr=0.05, validate=lambda: float(again.loss().detach()),
                      validate_every=5, checkpoint=tmp_path / "c.safetensors", checkpoint_every=5, progress=False)
    assert second.stopped == "steps" and second.steps == 400
    assert second.history[: first.steps] == first.history
