#!/usr/bin/env python
"""Convolution speed: streaming (whole-response FFT per block vs uniformly partitioned) and
offline (dspfx vs pedalboard.Convolution and scipy.signal.fftconvolve), all in one run.

Streaming: a mono float32 stream at 48 kHz in blocks of ``--block`` samples (default 256) through
responses of 0.1, 0.5, 1, 2 and 4 s (decaying noise), under ``torch.no_grad()``:

- ``whole``: the previous method, :func:`dspfx.functional.fft_convolve` per block with the last
  ``taps - 1`` samples as history (an FFT of about the whole response per block);
- ``partitioned``: the ``convolution`` unit through :class:`dspfx.Stream` (uniformly partitioned,
  partitions of ``--partition`` samples, spectra cached; the mix and state handling included).

Both are timed interleaved (whole, partitioned, whole, ...; best of ``--repeats``) over a run of
blocks; reported per block in ms, their ratio, and each one's real-time factor (block duration /
time per block; above 1 is faster than real time). The two renders are checked to agree.

Offline: 10 s of white noise at 48 kHz (mono, float32) through a 1 s response, by the unit
(one FFT convolution, forward under ``torch.no_grad()``), ``pedalboard.Convolution`` and
``scipy.signal.fftconvolve``, interleaved, best of ``--repeats``; ratios to pedalboard (below 1:
dspfx is faster).

    python benchmarks/convolution.py [--repeats 5] [--threads 1] [--block 256] [--partition 256]
                                     [--markdown]
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

# Benchmark the checkout this script lives in (works without `pip install -e .`).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pedalboard  # noqa: E402
import scipy.signal  # noqa: E402
import torch  # noqa: E402

import dspfx  # noqa: E402
from dspfx.effects.convolution import Convolution  # noqa: E402
from dspfx.functional.convolution import fft_convolve  # noqa: E402

SAMPLE_RATE = 48000
IR_SECONDS = (0.1, 0.5, 1.0, 2.0, 4.0)


def decaying_noise_ir(taps: int, seed: int = 0) -> np.ndarray:
    """Gaussian noise under an exponential decay to -60 dB over ``taps`` samples, (1, taps) float32."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((1, taps)) * np.exp(-np.arange(taps) * (6.9 / taps))).astype(np.float32)


def best_interleaved(fns: dict[str, callable], repeats: int) -> dict[str, float]:
    """Best wall time (s) of each function, called in turn (a, b, c, a, b, c, ...) ``repeats`` times
    after one untimed warm-up round."""
    for fn in fns.values():
        fn()
    best = {k: float("inf") for k in fns}
    for _ in range(repeats):
        for key, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            best[key] = min(best[key], time.perf_counter() - t0)
    return best


def streaming_rows(block: int, partition: int, repeats: int) -> list[dict[str, float]]:
    rows = []
    for seconds in IR_SECONDS:
        taps = int(round(seconds * SAMPLE_RATE))
        ir = decaying_noise_ir(taps)
        unit = Convolution(SAMPLE_RATE, impulse_response=ir, partition_size=partition)
        h = unit.effective_impulse_response().detach()
        # enough blocks for a stable figure, fewer for the slow whole-response method
        n_part = 200
        n_whole = min(n_part, max(10, int(40 / seconds)))
        x = torch.from_numpy(np.random.default_rng(1).standard_normal((1, 1, block * n_part)).astype(np.float32))
        # the stream starts warm (history and delay line full), as it would after the first second
        with torch.no_grad():
            stream = dspfx.Stream(unit)
            stream(x[..., :block])
        whole_state = {"history": torch.zeros(1, 1, taps - 1)}

        def run_whole() -> None:
            state = whole_state["history"]
            with torch.no_grad():
                for i in range(n_whole):
                    _, state = fft_convolve(x[..., i * block : (i + 1) * block], h, state)
            whole_state["history"] = state

        def run_partitioned() -> None:
            with torch.no_grad():
                for i in range(n_part):
                    stream(x[..., i * block : (i + 1) * block])

        best = best_interleaved({"whole": run_whole, "partitioned": run_partitioned}, repeats)
        whole_ms = best["whole"] / n_whole * 1e3
        part_ms = best["partitioned"] / n_part * 1e3
        block_ms = block / SAMPLE_RATE * 1e3
        rows.append(
            {
                "ir_s": seconds,
                "taps": taps,
                "whole_ms": whole_ms,
                "partitioned_ms": part_ms,
                "speedup": whole_ms / part_ms,
                "whole_rt": block_ms / whole_ms,
                "partitioned_rt": block_ms / part_ms,
            }
        )
        # the two methods render the same thing
        with torch.no_grad():
            check = torch.from_numpy(np.random.default_rng(2).standard_normal((1, 1, 3 * block)).astype(np.float32))
            s = dspfx.Stream(unit)
            got = torch.cat([s(check[..., i : i + block]) for i in range(0, 3 * block, block)], -1)
            ref, _ = fft_convolve(check, h)
        assert float((got - ref).abs().max()) <= 1e-5 * float(ref.abs().max()), "streaming mismatch"
    return rows


def offline_row(repeats: int) -> dict[str, float]:
    n = 10 * SAMPLE_RATE
    ir = decaying_noise_ir(SAMPLE_RATE)
    x_np = np.random.default_rng(3).standard_normal((1, n)).astype(np.float32)
    x = torch.from_numpy(x_np).unsqueeze(0)
    unit = Convolution(SAMPLE_RATE, impulse_response=ir)
    plugin = unit.to_pedalboard()
    h = unit.effective_impulse_response().detach().numpy()

    def run_dspfx() -> None:
        with torch.no_grad():
            unit(x)

    best = best_interleaved(
        {
            "pedalboard": lambda: plugin(x_np, SAMPLE_RATE),
            "dspfx": run_dspfx,
            "scipy": lambda: scipy.signal.fftconvolve(x_np, h, axes=-1)[:, :n],
        },
        repeats,
    )
    with torch.no_grad():
        y = unit(x)[0].numpy()
    expected = plugin(x_np, SAMPLE_RATE)
    esr = float(np.sum((y - expected) ** 2) / np.sum(expected**2))
    return {
        "pedalboard_ms": best["pedalboard"] * 1e3,
        "dspfx_ms": best["dspfx"] * 1e3,
        "scipy_ms": best["scipy"] * 1e3,
        "dspfx_vs_pedalboard": best["dspfx"] / best["pedalboard"],
        "scipy_vs_pedalboard": best["scipy"] / best["pedalboard"],
        "dspfx_vs_scipy": best["dspfx"] / best["scipy"],
        "esr_vs_pedalboard": esr,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--block", type=int, default=256)
    parser.add_argument("--partition", type=int, default=256)
    parser.add_argument("--markdown", action="store_true", help="print markdown tables")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, pedalboard "
        f"{pedalboard.__version__}, {args.threads} thread(s), {SAMPLE_RATE} Hz, float32 mono"
    )
    sep = " | " if args.markdown else "  "
    print(f"\nStreaming, blocks of {args.block} samples, partitions of {args.partition} (per block; best of {args.repeats})")
    head = ["IR s", "taps", "whole ms", "partitioned ms", "speedup", "whole xRT", "partitioned xRT"]
    print(sep.join(f"{h:>14}" for h in head))
    if args.markdown:
        print(sep.join(["---:"] * len(head)))
    for r in streaming_rows(args.block, args.partition, args.repeats):
        print(
            sep.join(
                f"{v:>14}"
                for v in (
                    f"{r['ir_s']:g}",
                    r["taps"],
                    f"{r['whole_ms']:.3f}",
                    f"{r['partitioned_ms']:.3f}",
                    f"{r['speedup']:.1f}x",
                    f"{r['whole_rt']:.1f}",
                    f"{r['partitioned_rt']:.1f}",
                )
            )
        )
    o = offline_row(args.repeats)
    print(f"\nOffline, 10 s at {SAMPLE_RATE} Hz through a 1 s response (best of {args.repeats}, interleaved)")
    print(
        f"pedalboard {o['pedalboard_ms']:.1f} ms, dspfx {o['dspfx_ms']:.1f} ms, scipy fftconvolve "
        f"{o['scipy_ms']:.1f} ms; dspfx/pedalboard {o['dspfx_vs_pedalboard']:.2f}x, "
        f"scipy/pedalboard {o['scipy_vs_pedalboard']:.2f}x, dspfx/scipy {o['dspfx_vs_scipy']:.2f}x; "
        f"ESR vs pedalboard {o['esr_vs_pedalboard']:.1e}"
    )


if __name__ == "__main__":
    main()
