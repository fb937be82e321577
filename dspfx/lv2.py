"""Render audio through an LV2 plugin with ``lv2apply`` (Debian's lilv-utils).

Third-party circuit models (guitarix-lv2's pedals and amps, calf-plugins) are the devices a
capture is tested and benchmarked against: :func:`render_lv2` plays audio through one, so a
test can capture a device no one here wrote. ``lv2apply`` runs the plugin offline on a WAV file
at the file's rate; controls not given keep the plugin's defaults.

>>> y = render_lv2("http://guitarix.sourceforge.net/plugins/gx_scream_#_scream_", x, 48000)
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from dspfx.checks import check_sample_rate

__all__ = ["render_lv2", "lv2apply_available", "LV2Error", "LV2_TIMEOUT_S"]

#: Longest a render may take, in seconds, before it is stopped (a plugin that hangs).
LV2_TIMEOUT_S = 300.0
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:[^\s]+$")
_SYMBOL = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class LV2Error(RuntimeError):
    """lv2apply is missing, or it failed on this plugin (its message is included)."""


def lv2apply_available() -> bool:
    """Whether ``lv2apply`` is on the PATH (Debian: ``apt-get install lilv-utils``)."""
    return shutil.which("lv2apply") is not None


def render_lv2(
    uri: str,
    audio: Any,
    sample_rate: int,
    *,
    controls: dict[str, float] | None = None,
    timeout_s: float = LV2_TIMEOUT_S,
    host: str = "lv2apply",
    lv2_path: list[str | os.PathLike] | None = None,
) -> np.ndarray:
    """``audio`` played through the LV2 plugin ``uri``.

    Args:
        uri: the plugin's URI (``lv2ls`` lists them).
        audio: ``(samples,)`` or ``(channels, samples)`` float audio (numpy or torch).
        sample_rate: its rate in Hz (the plugin runs at it).
        controls: control port symbol -> value; the others keep their defaults.
        timeout_s: stop the plugin after this long.
        host: ``"lv2apply"`` (lilv-utils) or ``"lv2file"`` (Debian's lv2file, which offers
            the urid:map feature that Faust-built plugins require and lv2apply lacks).
        lv2_path: extra folders searched for bundles (put before ``LV2_PATH``).

    Returns:
        float32 ``(channels, samples)``: as many channels as the plugin has outputs.

    Raises:
        LV2Error: lv2apply is not installed, fails (an unknown URI, a port type it cannot
            connect), or runs past ``timeout_s``.
        ValueError: an empty or non-finite input, a malformed URI or control symbol.
    """
    import soundfile as sf

    sr = check_sample_rate(sample_rate, integer=True)
    if not isinstance(uri, str) or not _URI.match(uri):
        raise ValueError(f"uri must be an LV2 plugin URI such as http://example.org/plugin, got {uri!r}")
    x = np.asarray(audio.detach().cpu() if hasattr(audio, "detach") else audio, dtype=np.float32)
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2 or x.shape[-1] == 0:
        raise ValueError(f"audio must be (samples,) or (channels, samples) and not empty, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("audio contains NaN or inf")
    if host not in ("lv2apply", "lv2file"):
        raise ValueError(f"host must be 'lv2apply' or 'lv2file', got {host!r}")
    args = []
    for symbol, value in (controls or {}).items():
        if not isinstance(symbol, str) or not _SYMBOL.match(symbol):
            raise ValueError(f"control symbols are identifiers such as 'drive', got {symbol!r}")
        args += ["-c", symbol, repr(float(value))] if host == "lv2apply" else ["-p", f"{symbol}:{float(value)!r}"]
    exe = shutil.which(host)
    if exe is None:
        raise LV2Error(f"{host} is not installed (Debian: apt-get install {'lilv-utils' if host == 'lv2apply' else 'lv2file'})")
    env = dict(os.environ)
    if lv2_path:
        env["LV2_PATH"] = os.pathsep.join([*(str(Path(p).resolve()) for p in lv2_path),
                                           env.get("LV2_PATH", "/usr/lib/lv2")])
    with tempfile.TemporaryDirectory(prefix="dspfx-lv2-") as tmp:
        src, dst = Path(tmp) / "in.wav", Path(tmp) / "out.wav"
        sf.write(src, x.T, sr, subtype="FLOAT")
        try:
            if host == "lv2file":
                args.append("--ignore-clipping")  # lv2file clamps its output to +-1 otherwise
            done = subprocess.run([exe, "-i", str(src), "-o", str(dst), *args, uri], capture_output=True,
                                  text=True, timeout=timeout_s, env=env)
        except subprocess.TimeoutExpired:
            raise LV2Error(f"{host} on {uri} ran past {timeout_s:g} s and was stopped") from None
        if done.returncode != 0 or not dst.exists():
            message = (done.stderr or done.stdout).strip().splitlines()
            raise LV2Error(f"{host} failed on {uri} (exit {done.returncode}): {message[-1] if message else 'no message'}")
        y, rate = sf.read(dst, dtype="float32", always_2d=True)
    if rate != sr:
        raise LV2Error(f"{host} wrote {rate} Hz for a {sr} Hz input")
    return np.ascontiguousarray(y.T)
