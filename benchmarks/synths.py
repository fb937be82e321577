#!/usr/bin/env python
"""Throughput of every dspfx synth, forward and forward+backward, with a NumPy peer where one does the same job.

Two configurations, as a training loop would run them:

- batch 1 of 4 s at 48 kHz;
- batch 16 of 4 s at 16 kHz (DDSP's sample rate).

Every synth is driven by per-frame controls at 250 frames per second (DDSP's frame rate: 1000 frames
for 4 s): ``f0_hz`` 220 Hz with a 5 Hz, +-1 % vibrato, an amplitude envelope, and seeded random
frames for the multi-dimensional controls (harmonic distribution, sinusoid amplitudes, noise
magnitudes, wavetable weights, FM indices and FM self-feedback, waveshaper output gains); the
``adsr`` gate is on for 3 s and off for the last 1 s. FM is measured twice, without and with DX7
self-feedback on its top operator (the feedback path runs a per-sample recursion).
Reported per row:

- forward ms (under ``torch.no_grad()``) and throughput, in seconds of audio (batch x 4 s) per
  second of compute;
- forward+backward ms (every control frame tensor that can take a gradient, and the unit's own
  parameters, requiring grad; ``y = unit(n_samples=N, **controls); y.square().mean().backward()``
  timed together), its throughput and its ratio to the forward;
- a peer measured in the same run where one does the same job: a plain NumPy oscillator bank for
  ``harmonic`` (same harmonics, same per-frame f0 / amplitude / distribution upsampled linearly,
  phase by cumsum, the harmonics at or above Nyquist zeroed and the rest renormalised, sum of
  sines; its ESR against the dspfx render is shown as a check), a NumPy naive (aliasing) saw
  for ``oscillator`` (a cheaper job than dspfx's band-limited saw), and torchsynth's ``Voice``
  (when ``import torchsynth`` works) for a subtractive voice of dspfx units: ``oscillator`` (saw)
  times ``adsr`` into a ``svf`` lowpass (and into a ``ladder``), per-item random f0 / cutoff,
  the same batch and length. torchsynth's voice is a different patch (2 VCOs, noise, 6 ADSRs,
  2 LFOs, a modulation matrix, no filter, a batch of random patches on the CPU), so its ratio
  compares jobs of the same size, not the same job. Without torchsynth the row is rendered
  without a peer and the script prints how to install it.

Rows with a peer time the dspfx forward and the peer interleaved (peer, dspfx, peer, dspfx, ...),
the best of each, so a busy machine slows both alike. Every figure is the best of ``--repeats``
timed calls after one untimed warm-up call; a figure whose warm-up took longer than ``--budget``
seconds gets fewer timed calls (at least one), so the default run stays near a minute on a 2-core
machine. ``--only`` restricts the run to rows whose label starts with one of the given names.

    python benchmarks/synths.py [--seconds 4] [--repeats 3] [--budget 2] [--harmonics 60]
                                [--threads 1] [--only harmonic subtractive ...] [--markdown] [--json PATH]

torchsynth 1.0.2 imports ``pkg_resources`` and ``pytorch_lightning.core.lightning`` (gone after
pytorch-lightning 1.6); it runs against torch 2.x when installed beside it without its pins::

    pip install --target /tmp/tsx --no-deps torchsynth==1.0.2 pytorch-lightning==1.6.5 \
        torchmetrics==0.11.4 pyDeprecate==0.3.2 PyYAML tensorboard protobuf absl-py "setuptools<81"
    PYTHONPATH=/tmp/tsx python benchmarks/synths.py
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# Benchmark the checkout this script lives in (works without `pip install -e .`).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import dspfx  # noqa: E402
import dspfx.synths  # noqa: E402,F401  (registers the synths)
from dspfx.synths.ddsp import harmonic_plus_noise  # noqa: E402
from dspfx.fitting.metrics import esr  # noqa: E402
from units import check_run_args, compose_report, cpu_model  # noqa: E402  (benchmarks/units.py, beside this script)

FRAME_RATE = 250  # control frames per second (DDSP)
F0_HZ = 220.0
CONFIGS = [(1, 48000), (16, 16000)]  # (batch, sample rate)


@dataclass
class Row:
    """One line of the table (times in milliseconds; ``None`` where a figure does not apply)."""

    synth: str
    batch: int
    sample_rate: int
    audio_s: float  # batch x seconds
    fwd_ms: float
    fwd_audio_per_s: float
    fwd_bwd_ms: float
    fwd_bwd_audio_per_s: float
    fwd_bwd_over_fwd: float
    grads_finite: bool
    peer: str | None
    peer_ms: float | None
    peer_audio_per_s: float | None
    ratio: float | None  # dspfx forward / peer
    esr_vs_peer: float | None
    timed_calls: int


# --- controls ---------------------------------------------------------------------------------


def frame_controls(batch: int, frames: int, seconds: float, seed: int) -> dict[str, np.ndarray]:
    """Per-frame control frames shared by the dspfx synths and the NumPy peers (float32)."""
    rng = np.random.default_rng(seed)
    t = np.arange(frames) / FRAME_RATE
    f0 = F0_HZ * (1.0 + 0.01 * np.sin(2 * np.pi * 5.0 * t))  # 5 Hz vibrato, +-1 %
    amp = 0.5 + 0.3 * np.sin(2 * np.pi * 0.5 * t + np.arange(batch)[:, None])  # slow envelope per item
    return {
        "f0_hz": np.broadcast_to(f0, (batch, frames)).astype(np.float32),
        "amplitude": amp.astype(np.float32),
        "rand": rng.random((batch, frames, 128), dtype=np.float32),  # sliced for the extra controls
    }


def synth_cases(
    sample_rate: int, batch: int, frames: int, n_harmonics: int, ctl: dict[str, np.ndarray]
) -> list[tuple[str, dspfx.Unit, dict[str, tuple[np.ndarray, bool]]]]:
    """(row label, unit, {control: (frames, whether it takes a gradient)}) for every synth."""
    f0 = ctl["f0_hz"]
    amp = ctl["amplitude"]
    rand = ctl["rand"]
    k = np.arange(1, 17, dtype=np.float32)
    gate = np.zeros((batch, frames), dtype=np.float32)
    gate[:, : frames * 3 // 4] = 1.0
    fm_feedback = np.zeros((batch, frames, 6), dtype=np.float32)
    fm_feedback[..., 5] = rand[..., 22]  # DX7 self-feedback 0 .. 1 rad on operator 6 (the only one allowed)
    voice_f0 = (f0 * (1 + rand[:, :1, 23])).astype(np.float32)  # one note per item: 220 .. 440 Hz with the vibrato
    cutoff = np.broadcast_to(300.0 + 3000.0 * rand[:, :1, 24], (batch, frames)).astype(np.float32)  # per item
    return [
        (
            f"harmonic ({n_harmonics} harmonics)",
            dspfx.make("harmonic", sample_rate=sample_rate, n_harmonics=n_harmonics),
            {"f0_hz": (f0, True), "amplitude": (amp, True), "harmonic_distribution": (rand[..., :n_harmonics], True)},
        ),
        (
            "sinusoidal (16 sinusoids)",
            dspfx.make("sinusoidal", sample_rate=sample_rate, n_sinusoids=16),
            {"frequencies_hz": (f0[..., None] * k, True), "amplitudes": (rand[..., :16] / 16, True)},
        ),
        (
            "filtered_noise (65 bands)",
            dspfx.make("filtered_noise", sample_rate=sample_rate, n_bands=65, seed=0),
            {"magnitudes": (rand[..., :65], True)},
        ),
        (
            "wavetable (4 tables of 2048)",
            dspfx.make("wavetable", sample_rate=sample_rate),
            {"f0_hz": (f0, True), "amplitude": (amp, True), "weights": (rand[..., :4], True)},
        ),
        (
            "fm (6 operators, stack)",
            dspfx.make("fm", sample_rate=sample_rate),
            {"f0_hz": (f0, True), "indices": (rand[..., :6] * 2, True)},
        ),
        (
            "fm (6 operators, stack, feedback on the top operator)",
            dspfx.make("fm", sample_rate=sample_rate),
            {"f0_hz": (f0, True), "indices": (rand[..., :6] * 2, True), "feedback": (fm_feedback, True)},
        ),
        (
            "waveshaper (16 Chebyshev shapers, order 32)",
            dspfx.make("waveshaper", sample_rate=sample_rate, n_shapers=16, order=32),
            {"f0_hz": (f0, True), "output_gain": (rand[..., 6:22] / 16, True)},
        ),
        (
            "oscillator (saw)",
            dspfx.make("oscillator", sample_rate=sample_rate, waveform="saw"),
            {"f0_hz": (f0, True), "amplitude": (amp, True)},
        ),
        (
            "adsr (gate on 3 s, off 1 s)",
            dspfx.make("adsr", sample_rate=sample_rate),
            {"gate": (gate, False)},
        ),
        (
            "subtractive voice (oscillator saw x adsr -> svf lowpass)",
            SubtractiveVoice(sample_rate, "svf"),
            {"f0_hz": (voice_f0, True), "amplitude": (amp, True), "gate": (gate, False), "cutoff_hz": (cutoff, True)},
        ),
        (
            "subtractive (the unit: 2 saws -> svf with filter envelope and key tracking -> adsr)",
            dspfx.make("subtractive", sample_rate=sample_rate),
            {"f0_hz": (voice_f0, True), "amplitude": (amp, True), "gate": (gate, False), "cutoff_hz": (cutoff, True)},
        ),
        (
            "subtractive voice (oscillator saw x adsr -> ladder)",
            SubtractiveVoice(sample_rate, "ladder"),
            {"f0_hz": (voice_f0, True), "amplitude": (amp, True), "gate": (gate, False), "cutoff_hz": (cutoff, True)},
        ),
        (
            f"harmonic_plus_noise ({n_harmonics} harmonics, 65 bands)",
            harmonic_plus_noise(sample_rate, n_harmonics=n_harmonics, n_bands=65, seed=0),
            {
                "harmonic.f0_hz": (f0, True),
                "harmonic.amplitude": (amp, True),
                "harmonic.harmonic_distribution": (rand[..., :n_harmonics], True),
                "noise.magnitudes": (rand[..., :65] * 0.1, True),
            },
        ),
    ]


class SubtractiveVoice(torch.nn.Module):
    """A subtractive voice of dspfx units: ``filter(oscillator * adsr)``, with the controls of each."""

    def __init__(self, sample_rate: int, filter_name: str = "svf") -> None:
        super().__init__()
        self.osc = dspfx.make("oscillator", sample_rate=sample_rate, waveform="saw")
        self.env = dspfx.make("adsr", sample_rate=sample_rate, attack_s=0.01, decay_s=0.2, sustain=0.6, release_s=0.3)
        self.filter = dspfx.make(filter_name, sample_rate=sample_rate)

    def forward(self, n_samples: int, f0_hz: torch.Tensor, amplitude: torch.Tensor, gate: torch.Tensor,
                cutoff_hz: torch.Tensor) -> torch.Tensor:
        voice = self.osc(n_samples=n_samples, f0_hz=f0_hz, amplitude=amplitude)
        voice = voice * self.env(n_samples=n_samples, gate=gate)
        return self.filter(voice, cutoff_hz=cutoff_hz)


TORCHSYNTH_INSTALL = (
    "pip install --target /tmp/tsx --no-deps torchsynth==1.0.2 pytorch-lightning==1.6.5 torchmetrics==0.11.4 "
    "pyDeprecate==0.3.2 PyYAML tensorboard protobuf absl-py 'setuptools<81'; then PYTHONPATH=/tmp/tsx "
    "python benchmarks/synths.py"
)


def torchsynth_voice(batch: int, sample_rate: int, seconds: float) -> Callable[[], Any] | None:
    """torchsynth's Voice rendering a batch of ``batch`` random patches of ``seconds`` (CPU), or None."""
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from torchsynth.config import SynthConfig
            from torchsynth.synth import Voice
    except Exception:
        return None
    config = SynthConfig(batch_size=batch, sample_rate=sample_rate, buffer_size_seconds=seconds, reproducible=False)
    voice = Voice(synthconfig=config)

    def render() -> Any:
        with torch.no_grad():
            return voice()[0]

    return render


# --- NumPy peers ------------------------------------------------------------------------------


def upsample_frames(frames: np.ndarray, n: int) -> np.ndarray:
    """Linear interpolation of (batch, frames[, dims]) frames on the causal hop grid of n samples
    (frame i reached at sample (i + 1) n / frames - 1, from frame i - 1; frame -1 = frame 0), as
    dspfx does."""
    n_frames = frames.shape[1]
    if n_frames == 1:
        return np.repeat(frames, n, axis=1)
    rows = np.concatenate([frames[:, :1], frames], axis=1)  # the previous frame first
    pos = (np.arange(n, dtype=np.float64) + 1.0) * (n_frames / n)
    i0 = np.minimum(pos.astype(np.int64), n_frames - 1)
    frac = (pos - i0).astype(np.float32)
    if frames.ndim == 3:
        frac = frac[:, None]
    return rows[:, i0] * (1 - frac) + rows[:, i0 + 1] * frac


def numpy_harmonic_bank(
    f0_frames: np.ndarray, amp_frames: np.ndarray, dist_frames: np.ndarray, n: int, sample_rate: float
) -> np.ndarray:
    """A plain NumPy oscillator bank: the job of the ``harmonic`` synth. Returns (batch, n) float32."""
    f0 = upsample_frames(f0_frames, n)  # (batch, n)
    amp = upsample_frames(amp_frames, n)
    dist = upsample_frames(dist_frames, n)  # (batch, n, K)
    phase = np.cumsum(f0.astype(np.float64) / sample_rate, axis=1)
    phase = np.concatenate([np.zeros_like(phase[:, :1]), phase[:, :-1]], axis=1)  # starts at 0
    phase = (phase - np.floor(phase)).astype(np.float32)
    k = np.arange(1, dist.shape[-1] + 1, dtype=np.float32)
    dist = np.where(f0[..., None] * k < sample_rate / 2, dist, 0.0)  # harmonics at/above Nyquist muted
    dist /= np.maximum(dist.sum(-1, keepdims=True), 1e-7)
    sines = np.sin((2 * np.pi) * (phase[..., None] * k))
    return amp * np.einsum("bnk,bnk->bn", dist, sines)


def numpy_naive_saw(f0_frames: np.ndarray, amp_frames: np.ndarray, n: int, sample_rate: float) -> np.ndarray:
    """A NumPy naive saw (no band-limiting, aliases): a cheaper job than dspfx's oscillator."""
    f0 = upsample_frames(f0_frames, n)
    amp = upsample_frames(amp_frames, n)
    phase = np.cumsum(f0.astype(np.float64) / sample_rate, axis=1)
    phase = (phase - np.floor(phase)).astype(np.float32)
    return amp * (2 * phase - 1)


# --- timing -----------------------------------------------------------------------------------


def best_of(fn: Callable[[], Any], repeats: int, budget_s: float) -> tuple[float, int]:
    """Best wall time of the timed calls of ``fn`` in seconds after one untimed warm-up call, and how many.

    ``repeats`` calls are timed, fewer (at least one) when the warm-up took longer than ``budget_s``
    divided by ``repeats``."""
    start = time.perf_counter()
    fn()
    warm = time.perf_counter() - start
    calls = max(1, min(repeats, int(budget_s / max(warm, 1e-9))))
    best = math.inf
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best, calls


def best_of_interleaved(
    fn: Callable[[], Any], peer: Callable[[], Any], repeats: int, budget_s: float
) -> tuple[float, float, int]:
    """Best wall times of ``fn`` and ``peer`` timed alternately (peer, fn, peer, fn, ...) after one
    untimed warm-up call of each, and how many timed pairs (fewer when a pair takes over ``budget_s`` / repeats)."""
    start = time.perf_counter()
    peer()
    fn()
    warm = time.perf_counter() - start
    calls = max(1, min(repeats, int(budget_s / max(warm, 1e-9))))
    best_fn = best_peer = math.inf
    for _ in range(calls):
        start = time.perf_counter()
        peer()
        best_peer = min(best_peer, time.perf_counter() - start)
        start = time.perf_counter()
        fn()
        best_fn = min(best_fn, time.perf_counter() - start)
    return best_fn, best_peer, calls


def uncovered_synths(labels: list[str]) -> list[str]:
    """Registered synths that no row of :func:`synth_cases` renders (a new synth needs a row)."""
    covered = {label.split(" ")[0] for label in labels} | {"oscillator", "adsr"}
    return [u["name"] for u in dspfx.units(category="synth") if u["name"] not in covered]


def run(args: argparse.Namespace) -> list[Row]:
    rows: list[Row] = []
    for batch, sample_rate in CONFIGS:
        n = int(round(args.seconds * sample_rate))
        frames = max(2, int(round(args.seconds * FRAME_RATE)))
        ctl = frame_controls(batch, frames, args.seconds, seed=0)
        audio_s = batch * n / sample_rate
        cases = synth_cases(sample_rate, batch, frames, args.harmonics, ctl)
        missing = uncovered_synths([label for label, _, _ in cases])
        if missing and batch == CONFIGS[0][0]:
            print(f"  note: registered synths without a row here: {', '.join(missing)}", file=sys.stderr, flush=True)
        if args.only:
            cases = [case for case in cases if any(case[0].startswith(name) for name in args.only)]
        for label, unit, spec in cases:
            controls = {name: torch.from_numpy(np.ascontiguousarray(v)) for name, (v, _) in spec.items()}
            grad_controls = {
                name: c.clone().requires_grad_(spec[name][1]) for name, c in controls.items()
            }
            out: dict[str, torch.Tensor] = {}

            def forward(unit: dspfx.Unit = unit, controls: dict[str, torch.Tensor] = controls) -> None:
                with torch.no_grad():
                    out["y"] = unit(n_samples=n, **controls)

            leaves = [p for p in unit.parameters() if p.requires_grad]
            leaves += [c for c in grad_controls.values() if c.requires_grad]

            def forward_backward(
                unit: dspfx.Unit = unit, controls: dict[str, torch.Tensor] = grad_controls, leaves: list = leaves
            ) -> None:
                for leaf in leaves:
                    leaf.grad = None
                y = unit(n_samples=n, **controls)
                y.square().mean().backward()

            peer = peer_s = err = None
            render_peer: Callable[[], Any] | None = None
            peer_out: dict[str, Any] = {}
            if label.startswith("harmonic ("):

                def render_peer() -> None:
                    peer_out["y"] = numpy_harmonic_bank(
                        ctl["f0_hz"], ctl["amplitude"], ctl["rand"][..., : args.harmonics], n, sample_rate
                    )

                peer = f"NumPy oscillator bank ({args.harmonics} sines)"
            elif label.startswith("oscillator"):

                def render_peer() -> None:
                    peer_out["y"] = numpy_naive_saw(ctl["f0_hz"], ctl["amplitude"], n, sample_rate)

                peer = "NumPy naive saw (aliasing: cheaper job)"
            elif label.startswith("subtractive voice"):
                render_peer = torchsynth_voice(batch, sample_rate, n / sample_rate)
                if render_peer is not None:
                    peer = "torchsynth 1.0.2 Voice (random patches; other job, same size)"
            if render_peer is not None:
                fwd_s, peer_s, calls = best_of_interleaved(forward, render_peer, args.repeats, args.budget)
            else:
                fwd_s, calls = best_of(forward, args.repeats, args.budget)
            fb_s, calls_fb = best_of(forward_backward, args.repeats, args.budget)
            finite = all(leaf.grad is None or bool(torch.isfinite(leaf.grad).all()) for leaf in leaves)
            finite = finite and any(leaf.grad is not None for leaf in leaves)
            y = out["y"]
            if tuple(y.shape) != (batch, 1, n):
                raise RuntimeError(f"{label}: expected a ({batch}, 1, {n}) render, got {tuple(y.shape)}")
            if label.startswith("harmonic ("):
                err = float(esr(y[:, 0].double(), torch.from_numpy(peer_out["y"]).double()))
            rows.append(
                Row(
                    synth=label,
                    batch=batch,
                    sample_rate=sample_rate,
                    audio_s=audio_s,
                    fwd_ms=fwd_s * 1e3,
                    fwd_audio_per_s=audio_s / fwd_s,
                    fwd_bwd_ms=fb_s * 1e3,
                    fwd_bwd_audio_per_s=audio_s / fb_s,
                    fwd_bwd_over_fwd=fb_s / fwd_s,
                    grads_finite=finite,
                    peer=peer,
                    peer_ms=None if peer_s is None else peer_s * 1e3,
                    peer_audio_per_s=None if peer_s is None else audio_s / peer_s,
                    ratio=None if peer_s is None else fwd_s / peer_s,
                    esr_vs_peer=err,
                    timed_calls=min(calls, calls_fb),
                )
            )
            if args.verbose:
                print(f"  done: {label}, batch {batch} at {sample_rate} Hz", file=sys.stderr, flush=True)
    return rows


# --- reporting --------------------------------------------------------------------------------


def torchsynth_status() -> str:
    """Whether torchsynth (the peer of the subtractive voice) imports here; never installed by this script."""
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import torchsynth
            import torchsynth.synth  # noqa: F401  (pkg_resources, pytorch_lightning)
    except Exception as exc:  # ImportError of torchsynth or of one of its dependencies
        return f"not usable ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
    return f"torchsynth {getattr(torchsynth, '__version__', '?')} (peer of the subtractive voice)"


def machine_info(args: argparse.Namespace) -> dict[str, Any]:
    uname = platform.uname()
    info: dict[str, Any] = {
        "dspfx": dspfx.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "machine": f"{uname.system} {uname.release} {uname.machine}",
        "torch_threads": torch.get_num_threads(),
        "seconds": args.seconds,
        "frame_rate": FRAME_RATE,
        "repeats": args.repeats,
        "budget_s": args.budget,
        "harmonics": args.harmonics,
        "torchsynth": torchsynth_status(),
    }
    try:
        info["load_average_1min"] = round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        pass
    return info


def header(info: dict[str, Any]) -> str:
    return (
        f"dspfx {info['dspfx']} | torch {info['torch']} | numpy {info['numpy']} | {info['cpu']}, "
        f"{info['cpu_count']} CPUs, {info['machine']} | torch threads {info['torch_threads']}"
        + (f" | load average {info['load_average_1min']:g} at start" if "load_average_1min" in info else "")
        + "\n"
        f"{info['seconds']:g} s per batch item, float32, controls at {info['frame_rate']} frames/s; each figure is "
        f"the best of up to {info['repeats']} calls (fewer when one call takes over {info['budget_s']:g} s / "
        f"{info['repeats']}) after one untimed warm-up call | torchsynth: {info['torchsynth']}"
    )


NOTES = [
    "audio/s = seconds of audio rendered (batch x length) per second of compute; ratio = dspfx fwd / peer "
    "(below 1: dspfx is faster)",
    "fwd runs under torch.no_grad(); fwd+bwd = y = unit(n_samples=N, **controls); y.square().mean().backward() with "
    "every control frame tensor (except the adsr gate) and the unit's parameters requiring grad, timed together",
    "f0 220 Hz with a 5 Hz +-1 % vibrato; amplitude 0.5 +- 0.3 at 0.5 Hz; multi-dimensional controls seeded uniform "
    "random frames",
    "ESR vs peer (harmonic only) = sum((dspfx - numpy)^2) / sum(numpy^2): both renders did the same job",
    "the naive saw does not band-limit (it aliases): it is a cheaper job than the dspfx oscillator",
    "rows with a peer: dspfx fwd and the peer timed interleaved (peer, dspfx, ...), best of each",
    "subtractive voice: dspfx oscillator (saw) x adsr -> svf / ladder vs torchsynth's Voice (2 VCOs, noise, ADSRs, "
    "LFOs, no filter; random patches): the same batch and length, not the same patch",
]

COLUMNS = [
    "synth",
    "batch x rate",
    "fwd ms",
    "fwd audio/s",
    "fwd+bwd ms",
    "fwd+bwd audio/s",
    "fwd+bwd / fwd",
    "peer",
    "peer ms",
    "peer audio/s",
    "ratio (dspfx/peer)",
    "ESR vs peer",
]


def _ms(v: float | None) -> str:
    if v is None:
        return "—"
    return f"{v:.0f}" if v >= 100 else (f"{v:.1f}" if v >= 10 else f"{v:.2f}")


def _rate(v: float | None) -> str:
    if v is None:
        return "—"
    return f"{v:.0f}" if v >= 10 else f"{v:.2f}"


def cells(row: Row) -> list[str]:
    return [
        row.synth,
        f"{row.batch} x {row.sample_rate / 1000:g} kHz",
        _ms(row.fwd_ms),
        _rate(row.fwd_audio_per_s),
        _ms(row.fwd_bwd_ms),
        _rate(row.fwd_bwd_audio_per_s),
        f"{row.fwd_bwd_over_fwd:.2f}" + ("" if row.grads_finite else " (grad NOT finite)"),
        row.peer or "—",
        _ms(row.peer_ms),
        _rate(row.peer_audio_per_s),
        "—" if row.ratio is None else f"{row.ratio:.2f}",
        "—" if row.esr_vs_peer is None else f"{row.esr_vs_peer:.1e}",
    ]


def text_table(rows: list[Row]) -> str:
    table = [COLUMNS] + [cells(r) for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
    left = {0, 1, 7}

    def fmt(line: list[str]) -> str:
        return "  ".join(c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths))).rstrip()

    return "\n".join([fmt(COLUMNS), "  ".join("-" * w for w in widths)] + [fmt(c) for c in table[1:]])


def markdown_table(rows: list[Row]) -> str:
    align = [":---" if i in (0, 1, 7) else "---:" for i in range(len(COLUMNS))]
    out = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join(align) + "|"]
    out += ["| " + " | ".join(c.replace("|", "\\|") for c in cells(r)) + " |" for r in rows]
    return "\n".join(out)


def report(info: dict[str, Any], rows: list[Row], markdown: bool, elapsed_s: float) -> str:
    table = markdown_table(rows) if markdown else text_table(rows)
    return compose_report(header(info), table, NOTES, markdown, elapsed_s)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Throughput of the dspfx synths, with NumPy peers in the same run.")
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each batch item in seconds (4)")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per figure at most; the best is kept (3)")
    parser.add_argument(
        "--budget", type=float, default=2.0, help="seconds of timed calls aimed at per figure; at least one call (2)"
    )
    parser.add_argument("--harmonics", type=int, default=60, help="harmonics of harmonic / harmonic_plus_noise (60)")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (1; NumPy peers use one core)")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table instead of plain text")
    parser.add_argument("--json", metavar="PATH", help="also write the machine info and rows as JSON to PATH")
    parser.add_argument("--verbose", action="store_true", help="print progress to stderr")
    parser.add_argument(
        "--only", nargs="+", metavar="NAME",
        help="only the rows whose label starts with one of these (e.g. harmonic fm)",
    )
    args = parser.parse_args(argv)
    check_run_args(parser, args)
    if not (math.isfinite(args.budget) and args.budget >= 0):
        parser.error(f"--budget must be a number >= 0, got {args.budget}")
    if not 1 <= args.harmonics <= 128:
        parser.error(f"--harmonics must be in 1 .. 128, got {args.harmonics}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    info = machine_info(args)
    if not info["torchsynth"].startswith("torchsynth"):
        print(f"note: torchsynth {info['torchsynth']}; the subtractive voice rows run without their peer. To add it: "
              f"{TORCHSYNTH_INSTALL}", file=sys.stderr, flush=True)
    rows = run(args)
    elapsed = time.perf_counter() - start
    print(report(info, rows, args.markdown, elapsed), end="")
    if args.json:
        payload = {"info": info, "notes": NOTES, "whole_run_s": elapsed, "rows": [asdict(r) for r in rows]}
        Path(args.json).write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
