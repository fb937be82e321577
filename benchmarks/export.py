#!/usr/bin/env python
"""Render speed of exported plugins: each exportable unit built into an LV2 bundle
(``dspfx.export.export_plugin``, Faust in double precision), played by lv2file, beside dspfx's
own render and pedalboard's twin where one exists, in one run.

The same white noise (``--seconds``, 48 kHz mono float32) goes through each. lv2file's time is
its wall time less that of the same plugin on 0.1 s (process start-up, plugin load, file I/O),
so what is left is mostly the plugin's processing plus reading and writing the audio. dspfx
and pedalboard are timed in process (best of ``--repeats``), one thread. Reported as x real
time and the ratio plugin / dspfx (above 1: the plugin is faster), with the plugin's build time
(Faust and g++, which grows with an impulse response's taps).

    OMP_NUM_THREADS=1 python benchmarks/export.py [--seconds 30] [--repeats 3] [--markdown]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

SR = 48000


def units():
    import dspfx

    return {
        "gain": dspfx.make("gain", gain_db=-6.0),
        "distortion": dspfx.make("distortion", drive_db=20.0),
        "clipping": dspfx.make("clipping", threshold_db=-6.0),
        "biquad (peak)": dspfx.make("biquad", mode="peak", cutoff_hz=1200.0, gain_db=6.0),
        "svf (lowpass)": dspfx.make("svf", mode="lowpass", cutoff_hz=1200.0, q=2.0),
        "one_pole": dspfx.make("one_pole", cutoff_hz=3000.0),
        "ladder (lpf24, table)": dspfx.make("ladder", mode="lpf24", cutoff_hz=1200.0, resonance=0.5, drive=4.0),
        "tonestack (bassman)": dspfx.make("tonestack", model="bassman"),
        "compressor": dspfx.make("compressor", threshold_db=-20.0, ratio=4.0),
        "cabinet (parametric)": dspfx.make("cabinet", sample_rate=SR),
        "cabinet (IR, 1024 taps)": dspfx.make("cabinet", mode="ir", sample_rate=SR,
                                              impulse_response=dspfx.make("cabinet", sample_rate=SR).to_ir(1024).detach()),
        "convolution (8192 taps)": dspfx.make("convolution", sample_rate=SR, impulse_response=torch.randn(
            8192, generator=torch.Generator().manual_seed(0)) * torch.exp(-torch.arange(8192) / 2000.0), mix=0.5),
        "noise_reverb (0.25 s, 12000 taps)": dspfx.make("noise_reverb", sample_rate=SR, length_s=0.25, mix=0.3,
                                                        **{f"decay{k}_s": 0.25 for k in range(1, 13)}),
        "parametric_eq (3 peaks)": dspfx.make("parametric_eq", n_peaks=3, peak1_gain_db=4.0),
        "delay": dspfx.make("delay", delay_ms=250.0, feedback=0.5, mix=0.5),
        "delay (linear, damped)": dspfx.make("delay", interpolation="linear", damping=True, delay_ms=250.0,
                                             feedback=0.5, mix=0.5),
        "chorus": dspfx.make("chorus", rate_hz=1.5, depth=0.5, mix=0.5),
        "phaser": dspfx.make("phaser", rate_hz=1.0, depth=0.7, feedback=0.5),
        "reverb (Freeverb)": dspfx.make("reverb", room_size=0.7),
        "fdn_reverb (8 lines)": dspfx.make("fdn_reverb"),
        "waveshaper_fx (16 x order 32)": dspfx.make("waveshaper_fx"),
        "amp (jcm800 gray-box)": dspfx.amps.amp(model="jcm800", sample_rate=SR),
        "amp (jcm800, blocks at 2x)": dspfx.amps.amp(model="jcm800", sample_rate=SR, oversample=2),
        "chain (drive, eq, level)": dspfx.Chain(drive=dspfx.make("distortion", drive_db=18.0),
                                                eq=dspfx.make("parametric_eq", n_peaks=2),
                                                level=dspfx.make("gain", gain_db=-8.0)),
    }


def _lv2file_seconds(uri: str, wav: Path, out: Path, bundles: Path) -> float:
    import os

    env = dict(os.environ, LV2_PATH=f"{bundles}:/usr/lib/lv2")
    t0 = time.perf_counter()
    subprocess.run(["lv2file", "--ignore-clipping", "-i", str(wav), "-o", str(out), uri], env=env, check=True,
                   capture_output=True)
    return time.perf_counter() - t0


def _best(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--only", nargs="*", default=None, help="units whose label starts with one of these")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    from dspfx.export.faust import URI_PREFIX, export_plugin

    n = int(args.seconds * SR)
    x = (0.3 * np.random.default_rng(0).standard_normal(n)).astype(np.float32)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        sf.write(folder / "long.wav", x, SR, subtype="FLOAT")
        sf.write(folder / "short.wav", x[: SR // 10], SR, subtype="FLOAT")
        for i, (label, unit) in enumerate(units().items()):
            if args.only and not any(label.startswith(prefix) for prefix in args.only):
                continue
            name = f"bench_{i}"
            t0 = time.perf_counter()
            export_plugin(unit, folder / "bundles", name=name)
            build = time.perf_counter() - t0
            uri = f"{URI_PREFIX}/{name}"
            startup = min(_lv2file_seconds(uri, folder / "short.wav", folder / "o.wav", folder / "bundles")
                          for _ in range(args.repeats))
            plugin = min(_lv2file_seconds(uri, folder / "long.wav", folder / "o.wav", folder / "bundles")
                         for _ in range(args.repeats)) - startup
            audio = torch.from_numpy(x).reshape(1, 1, -1)
            with torch.no_grad():
                ours = _best(lambda: unit(audio), args.repeats)
            board = None
            try:
                twin = unit.to_pedalboard()
                board = _best(lambda: twin(x[None], SR), args.repeats)
            except (TypeError, ValueError):  # no twin (a unit, or a mode of it, pedalboard lacks)
                pass
            rows.append((label, args.seconds / max(plugin, 1e-9), args.seconds / ours,
                         None if board is None else args.seconds / board, build))
    header = "| unit | LV2 plugin (x real time) | dspfx | pedalboard twin | plugin / dspfx | build (s) |"
    print(header if args.markdown else header.replace("|", " ").strip())
    if args.markdown:
        print("|---|---|---|---|---|---|")
    for label, plugin, ours, board, build in rows:
        cells = [label, f"{plugin:.0f}x", f"{ours:.0f}x", "-" if board is None else f"{board:.0f}x", f"{plugin / ours:.2f}",
                 f"{build:.0f}"]
        print("| " + " | ".join(cells) + " |" if args.markdown else "  ".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
