"""DDSP speed: training steps per second and inference real-time factor (tiny and full model).

    python benchmarks/ddsp.py            # full run (CPU, one thread; CUDA rows when available)
    python benchmarks/ddsp.py --quick    # a fast check of the script (small batch, short audio)

Rows:

- training: steps per second of a training step (model forward, multi-scale spectral loss,
  backward, gradient clipping, Adam) on a batch of 16 windows of 4 s at 16 kHz (DDSP's recipe),
  for the ``tiny`` and ``full`` presets (reverb 1 s), on CPU with ``--threads`` threads (default
  1) and on CUDA when ``torch.cuda.is_available()``; twice for dspfx: the bare step, and the
  step as :func:`dspfx.ddsp.trainer.train` takes it, through :func:`dspfx.fitting.optimise`
  (schedule, NaN/Inf checks of the loss and the gradients, clipping, Adam);
- inference: real-time factor (compute seconds per second of audio; below 1 is faster than
  real time) of rendering ``--seconds`` seconds (default 10) of features offline (one call)
  and streaming (``dspfx.Stream(model)``, blocks of 256 samples = 4 frames), batch 1.

Peer (timed in the same run, interleaved with dspfx, best of ``--repeats`` each): a plain-torch
DDSP written as acids-ircam/ddsp_pytorch does it: the same decoder (:class:`Decoder`), harmonic
synth by ``F.interpolate`` of the frame controls + cumulative phase + a sum of sines, filtered
noise by per-frame FFT convolution of noise blocks with linear-phase responses, and an FFT
convolution reverb of the same length. Its streaming figure carries the GRU state and phase
only (no reverb tail: ddsp_pytorch's real-time mode drops it), so it is a lower bound. The
ratio columns are dspfx / peer (below 1: dspfx is faster).

Each figure is the best of ``--repeats`` timings after a warm-up. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dspfx  # noqa: E402
from dspfx.ddsp.model import DDSPModel, Decoder, spectral_loss  # noqa: E402

SR, FR = 16000, 250.0


def features(batch: int, frames: int, device: torch.device, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A melody-like f0 (vibrato, slow glide, 196-880 Hz) and loudness (-60 .. -10 dB)."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(frames) / FR
    base = 60 + 12 * torch.rand(batch, 1, generator=g)
    midi = base + 5 * torch.sin(2 * math.pi * 0.3 * t) + 0.3 * torch.sin(2 * math.pi * 5.5 * t)
    f0 = 440.0 * 2 ** ((midi - 69) / 12)
    loud = -35 + 25 * torch.sin(2 * math.pi * 0.5 * t + torch.rand(batch, 1, generator=g))
    return f0.to(device), loud.to(device)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_time(fn, repeats: int, device: torch.device) -> float:
    fn()  # warm-up
    sync(device)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - t)
    return best


class PeerDDSP(torch.nn.Module):
    """ddsp_pytorch-style DDSP in plain torch (the benchmark's peer), same sizes as DDSPModel."""

    def __init__(self, preset: str, n_harmonics: int = 60, n_bands: int = 65, reverb_s: float = 1.0) -> None:
        super().__init__()
        self.decoder = Decoder(n_harmonics, n_bands, preset)
        self.hop, self.n_bands = int(SR / FR), n_bands
        n = int(reverb_s * SR)
        ir = torch.zeros(n)
        ir[0] = 1.0
        self.ir = torch.nn.Parameter(ir)

    def forward(self, f0: torch.Tensor, loud: torch.Tensor, state: dict | None = None) -> tuple[torch.Tensor, dict]:
        import torch.nn.functional as F

        state = state or {"gru": None, "phase": torch.zeros(f0.shape[0], 1, device=f0.device)}
        controls, gru = self.decoder(f0, loud, state["gru"])
        batch, frames = f0.shape
        n, hop = frames * self.hop, self.hop
        up = lambda x: F.interpolate(x.transpose(1, 2), size=n, mode="linear").transpose(1, 2)  # noqa: E731
        f0_up = up(f0.unsqueeze(-1))  # (B, n, 1)
        k = torch.arange(1, controls["harmonic_distribution"].shape[-1] + 1, device=f0.device)
        dist = controls["harmonic_distribution"] * (f0.unsqueeze(-1) * k < SR / 2)
        dist = dist / dist.sum(-1, keepdim=True).clamp_min(1e-7) * controls["amplitude"].unsqueeze(-1)
        phase = torch.cumsum(2 * math.pi * f0_up / SR, dim=1) + state["phase"].unsqueeze(1)
        harmonic = (torch.sin(phase * k) * up(dist)).sum(-1)
        # noise: linear-phase responses per frame, FFT-convolved with a block of noise each
        mags = controls["noise_magnitudes"]
        ir = torch.fft.irfft(torch.complex(mags, torch.zeros_like(mags)))
        ir = torch.roll(ir, ir.shape[-1] // 2, -1) * torch.hann_window(ir.shape[-1], device=f0.device)
        ir = F.pad(ir, (0, hop - ir.shape[-1])) if ir.shape[-1] < hop else ir
        noise = torch.rand(batch, frames, hop, device=f0.device) * 2 - 1
        size = noise.shape[-1] + ir.shape[-1]
        noise = torch.fft.irfft(torch.fft.rfft(noise, size) * torch.fft.rfft(ir, size), size)[..., :hop]
        y = harmonic + noise.reshape(batch, n)
        size = n + self.ir.numel()
        y = torch.fft.irfft(torch.fft.rfft(y, size) * torch.fft.rfft(self.ir, size), size)[..., :n]
        return y.unsqueeze(1), {"gru": gru, "phase": phase[:, -1] % (2 * math.pi)}


def _step_fn(model: torch.nn.Module, f0, loud, target, opt):
    def step() -> None:
        out = model(f0, loud)
        audio = out[0] if isinstance(out, tuple) else out
        loss = spectral_loss(audio[:, 0], target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 3.0)
        opt.step()

    return step


def interleaved(fns: dict, repeats: int, device: torch.device) -> dict:
    """Best time of each function, timed interleaved (a, b, a, b, ...) after one warm-up each."""
    for fn in fns.values():
        fn()
    best = {key: float("inf") for key in fns}
    for _ in range(repeats):
        for key, fn in fns.items():
            sync(device)
            t = time.perf_counter()
            fn()
            sync(device)
            best[key] = min(best[key], time.perf_counter() - t)
    return best


#: Steps per timed call of the core (one optimise() call: its setup is spread over them).
CORE_STEPS = 3


def _core_step_fn(model: torch.nn.Module, f0, loud, target):
    """CORE_STEPS steps as the DDSP trainer takes them: through dspfx.fitting.optimise (the
    validation is a constant here, so its cost, which the trainer pays every checkpoint_every
    steps, is left out)."""
    from dspfx.fitting import optimise

    def loss_fn(step: int) -> torch.Tensor:
        return spectral_loss(model(f0, loud)[:, 0], target)

    def steps() -> None:
        optimise(model, loss_fn, steps=CORE_STEPS, lr=3e-4, schedule="exponential", decay=0.98, decay_steps=10000,
                 grad_clip=3.0, validate=lambda: 0.0, validate_every=CORE_STEPS, restore_best=False, progress=False)

    return steps


def train_rates(preset: str, device: torch.device, batch: int, window_s: float, repeats: int) -> tuple[float, float, float]:
    """Steps per second of dspfx (bare step, and through the training core) and of the peer."""
    torch.manual_seed(0)
    model = DDSPModel(SR, FR, preset=preset).to(device)
    peer = PeerDDSP(preset).to(device)
    frames = int(window_s * FR)
    f0, loud = features(batch, frames, device)
    target = torch.randn(batch, frames * model.hop, device=device) * 0.05
    fns = {
        "dspfx": _step_fn(model, f0, loud, target, torch.optim.Adam(model.parameters(), lr=3e-4)),
        "core": _core_step_fn(model, f0, loud, target),
        "peer": _step_fn(peer, f0, loud, target, torch.optim.Adam(peer.parameters(), lr=3e-4)),
    }
    best = interleaved(fns, repeats, device)
    return 1.0 / best["dspfx"], CORE_STEPS / best["core"], 1.0 / best["peer"]


def inference_rtfs(preset: str, device: torch.device, seconds: float, repeats: int) -> dict:
    """Real-time factors: dspfx offline and streaming, peer offline and streaming."""
    torch.manual_seed(0)
    model = DDSPModel(SR, FR, preset=preset).to(device).eval()
    peer = PeerDDSP(preset).to(device).eval()
    frames = int(seconds * FR)
    f0, loud = features(1, frames, device)
    block = 256 // model.hop  # frames per 256-sample block

    def streaming() -> None:
        stream = dspfx.Stream(model)
        for i in range(0, frames, block):
            stream(f0_hz=f0[:, i:i + block], loudness_db=loud[:, i:i + block])

    def peer_streaming() -> None:
        state = None
        for i in range(0, frames, block):
            _, state = peer(f0[:, i:i + block], loud[:, i:i + block], state)

    with torch.no_grad():
        best = interleaved({"offline": lambda: model(f0, loud), "peer_offline": lambda: peer(f0, loud),
                            "streaming": streaming, "peer_streaming": peer_streaming}, repeats, device)
    return {key: value / seconds for key, value in best.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="batch 2 x 1 s, 2 s of inference, 1 repeat")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (torch.set_num_threads)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--window-s", type=float, default=4.0)
    p.add_argument("--seconds", type=float, default=10.0, help="audio rendered per inference timing")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--presets", nargs="+", default=["tiny", "full"], choices=["tiny", "full"])
    args = p.parse_args(argv)
    if args.quick:
        args.batch, args.window_s, args.seconds, args.repeats = 2, 1.0, 2.0, 1
    torch.set_num_threads(args.threads)
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    rows = []
    for device in devices:
        where = f"cpu ({args.threads} thread{'s' if args.threads > 1 else ''})" if device.type == "cpu" \
            else torch.cuda.get_device_name(device)
        for preset in args.presets:
            rate, core_rate, peer_rate = train_rates(preset, device, args.batch, args.window_s, args.repeats)
            rtf = inference_rtfs(preset, device, args.seconds, args.repeats)
            rows.append((preset, where, rate, core_rate, peer_rate, rtf))
            print(f"# {preset} on {where}: {rate:.3f} steps/s, {core_rate:.3f} through the core (peer "
                  f"{peer_rate:.3f}), RTF {rtf}", file=sys.stderr, flush=True)
    print(f"DDSP speed: training batch {args.batch} x {args.window_s:g} s at {SR} Hz; inference of "
          f"{args.seconds:g} s, batch 1, streaming in 256-sample blocks; best of {args.repeats}. "
          "RTF = compute time / audio time (< 1: faster than real time).\n")
    print("| model | device | train steps/s | through the core | peer steps/s | time ratio (dspfx/peer) | "
          "core/peer | RTF offline | peer RTF offline | ratio | RTF streaming (256) | peer RTF streaming | ratio |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for preset, where, rate, core_rate, peer_rate, r in rows:
        print(f"| {preset} | {where} | {rate:.3f} | {core_rate:.3f} | {peer_rate:.3f} | {peer_rate / rate:.2f} | "
              f"{peer_rate / core_rate:.2f} | {r['offline']:.4f} | {r['peer_offline']:.4f} | "
              f"{r['offline'] / r['peer_offline']:.2f} | {r['streaming']:.4f} | {r['peer_streaming']:.4f} | "
              f"{r['streaming'] / r['peer_streaming']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
