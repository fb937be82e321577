"""The main job, end to end: fit a dspfx chain to audio rendered by pedalboard.

A guitar-like DI is made in code (plucked strings, single notes then strummed chords), a target is
rendered through a pedalboard board of Distortion and three EQ filters with fixed settings, and
the dspfx twin of that board is fitted to it from its default knobs. The recovered knobs are
printed next to the true ones, and the renders, the fitted chain and a report picture are written.

Run it with ``make demo`` or ``dspfx demo --out DIR``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

__all__ = ["TRUE_SETTINGS", "run_demo", "target_board", "twin_chain"]

#: The hidden settings of the target board, by dspfx knob path.
TRUE_SETTINGS: dict[str, float] = {
    "drive.drive_db": 20.0,
    "low.cutoff_hz": 180.0,
    "low.gain_db": -5.0,
    "mid.cutoff_hz": 900.0,
    "mid.gain_db": 6.0,
    "mid.q": 1.4,
    "high.cutoff_hz": 3500.0,
    "high.gain_db": -8.0,
}

#: Knobs left at their (true) defaults during the fit: shelf slopes.
FROZEN = ("low.q", "high.q")


def target_board() -> Any:
    """The pedalboard board that makes the target: Distortion -> low shelf -> peak -> high shelf."""
    import pedalboard

    s = TRUE_SETTINGS
    return pedalboard.Pedalboard(
        [
            pedalboard.Distortion(drive_db=s["drive.drive_db"]),
            pedalboard.LowShelfFilter(cutoff_frequency_hz=s["low.cutoff_hz"], gain_db=s["low.gain_db"], q=0.7071),
            pedalboard.PeakFilter(cutoff_frequency_hz=s["mid.cutoff_hz"], gain_db=s["mid.gain_db"], q=s["mid.q"]),
            pedalboard.HighShelfFilter(cutoff_frequency_hz=s["high.cutoff_hz"], gain_db=s["high.gain_db"], q=0.7071),
        ]
    )


def twin_chain(sample_rate: int = 48000):
    """The dspfx chain with the board's structure, every knob at its default."""
    from dspfx import Chain, make

    return Chain(
        drive=make("distortion", sample_rate=sample_rate),
        low=make("biquad", sample_rate=sample_rate, mode="lowshelf"),
        mid=make("biquad", sample_rate=sample_rate, mode="peak"),
        high=make("biquad", sample_rate=sample_rate, mode="highshelf"),
    )


def run_demo(
    out_dir: str | Path = "demo-out",
    *,
    steps: int = 300,
    duration_s: float = 2.0,
    sample_rate: int = 48000,
    seed: int = 0,
    progress: bool | None = None,
    echo: Any = print,
) -> dict[str, Any]:
    """Run the demo and write its files into ``out_dir``; returns the summary (also fit.json).

    Files: ``input.wav`` (the DI), ``target.wav`` (pedalboard's render), ``fitted.wav`` (the
    fitted chain's render), ``fitted.safetensors`` (the chain), ``report.png`` and ``fit.json``.
    """
    import numpy as np

    from dspfx import fit, save, write_audio
    from dspfx.plot import report
    from dspfx.signals import guitar_di

    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    di = guitar_di(sample_rate=sample_rate, duration_s=duration_s, seed=seed)  # (1, 1, samples)
    target = torch.from_numpy(target_board()(di[0].numpy().astype(np.float32), float(sample_rate))).unsqueeze(0)

    chain = twin_chain(sample_rate).freeze(*FROZEN)
    start = chain.knobs()
    echo(f"dspfx demo: fitting a {len(chain)}-unit chain to {duration_s:g} s of pedalboard audio ({steps} steps)")
    result = fit(chain, di, target, steps=steps, lr=0.05, loss="mrstft", progress=progress, seed=seed)

    fitted = chain(di).detach()
    write_audio(out / "input.wav", di[0], sample_rate)
    write_audio(out / "target.wav", target[0], sample_rate)
    write_audio(out / "fitted.wav", fitted[0], sample_rate)
    save(chain, out / "fitted.safetensors")
    report(
        out / "report.png",
        target=target,
        prediction=fitted,
        sample_rate=sample_rate,
        loss_history=result.loss_history,
        title=f"dspfx demo: chain fitted to pedalboard (ESR {result.metrics['esr']:.2e})",
    )

    rows = []
    echo(f"\n{'knob':<16}{'start':>10}{'true':>10}{'fitted':>10}{'error':>10}")
    for path, true in TRUE_SETTINGS.items():
        got = result.knobs[path]
        err = got - true
        rel = f"{100 * err / true:+.2f}%" if "cutoff" in path or path.endswith(".q") else f"{err:+.3f}"
        rows.append({"knob": path, "start": start[path], "true": true, "fitted": got})
        echo(f"{path:<16}{start[path]:>10.4g}{true:>10.4g}{got:>10.4g}{rel:>10}")
    m = result.metrics
    echo(
        f"\nESR {m['esr']:.3e}   MR-STFT {m['mrstft']:.4f}   SNR {m['snr_db']:.1f} dB   "
        f"({result.elapsed_s:.1f} s fitting, {time.perf_counter() - t0:.1f} s in all)"
    )
    summary = {
        "knobs": rows,
        "metrics": m,
        "fit": result.to_dict(),
        "files": sorted(p.name for p in out.iterdir()) + ["fit.json"],
    }
    from dspfx.io import atomic_path

    with atomic_path(out / "fit.json") as tmp:
        Path(tmp).write_text(json.dumps(summary, indent=2) + "\n")
    echo(f"wrote {', '.join(sorted(set(summary['files'])))} to {out}/")
    return summary
