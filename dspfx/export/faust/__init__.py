"""Plugin export: a chain becomes Faust code, and Faust's toolchain builds an LV2 plugin from it.

:func:`faust_code` writes a self-contained Faust program (``.dsp``) that renders like the unit:
the same formulas (the RBJ cookbook biquad in JUCE's order, the bilinear one-pole, tanh drive),
each knob a control named by its path (``tone.cutoff_hz``), with its range, its current value as
the default and its unit in the label (a knob the unit's mode ignores, a lowpass biquad's
``gain_db``, gets no port: Faust drops controls that reach no output). :func:`export_plugin` writes that file (``format="faust"``)
or also builds an LV2 bundle with Debian's ``faust2lv2`` (``format="lv2"``; it needs g++,
lv2-dev and libboost-dev), its URI ``urn:dspfx:plugin/<name>``. The plugin computes in double
precision (float32 ports), so it renders what dspfx renders in float64.

Exportable (mono in, mono out): every registered effect and amp block but the neural captures:
``gain``, ``trim``, ``invert``, ``distortion``,
``clipping`` (hard curve), ``biquad`` and ``svf`` (every mode), ``one_pole``, ``parametric_eq``,
``ladder`` (every mode, table or tanh saturation), ``tonestack`` (every model), ``bitcrush``, ``static_nonlinearity`` (every curve, its learned
parameters baked in), ``waveshaper_fx``, ``fir``, ``compressor``, ``expander`` (both detectors),
``noise_gate`` and ``limiter`` (no sidechain), ``convolution`` and ``cabinet`` (parametric, or its
impulse response as a direct FIR of at most ``MAX_FIR_TAPS``, 32768: one multiply-add per tap and
sample), ``delay`` (every mode),
``chorus``, ``flanger``, ``vibrato`` and ``phaser`` (their LFOs, float32 phase
included), ``reverb`` (Freeverb, exactly), ``fdn_reverb``, ``noise_reverb`` (its response at the
band decays and gains, baked as a direct FIR; ``mix`` is the port), ``preamp``, ``power_amp`` and ``output_transformer``
(oversampled as in dspfx; so the whole gray-box amp of :func:`dspfx.amps.amp`), the
containers ``chain``, ``parallel`` and ``dry_wet``, and ``knob_conditioned`` (the front-panel
settings as ports, its network baked in, mapping them to the wrapped chain's knobs). One module per family (nonlinear,
filters, dynamics, delays, modulation, reverbs, amps; oversampling writes a core that runs
several steps per sample) holds the emitters. Another unit raises a one-line TypeError naming it and
what to use instead: the neural captures (``wavenet``, ``lstm_amp``) go to ``.nam`` files
(:func:`export_nam`), the synths (a DDSP instrument among them) play with ``dspfx transfer`` and
``dspfx play``.
Exactness against dspfx's render, through the built plugin, is tested in tests/export.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from dspfx.export.faust import amps, delays, dynamics, filters, modulation, nonlinear, reverbs
from dspfx.export.faust._common import slider
from dspfx.export.faust.filters import MAX_FIR_TAPS
from dspfx.unit import Unit

__all__ = ["faust_code", "export_plugin", "plugin_controls", "FAUST_UNITS", "PluginExportError", "URI_PREFIX", "MAX_FIR_TAPS"]

#: The prefix of every exported plugin's URI (``urn:dspfx:plugin/<name>``): stable across builds.
URI_PREFIX = "urn:dspfx:plugin"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


class PluginExportError(RuntimeError):
    """The Faust/LV2 toolchain is missing, or it failed (its message is included)."""


def _chain(unit: Unit, path: str) -> str:
    return "(" + " : ".join(_expression(child, f"{path}{key}.") for key, child in unit.units.items()) + ")"


def _parallel(unit: Unit, path: str) -> str:
    branches = []
    for key, child in unit.units.items():
        branch = _expression(child, f"{path}{key}.")
        if unit.gains:
            branch = f"({branch} : *(ba.db2linear({slider(unit, f'gain_db_{key}', path)})))"
        branches.append(branch)
    return f"(_ <: ({', '.join(branches)}) :> _)"


def _dry_wet(unit: Unit, path: str) -> str:
    wet = _expression(unit.units["wet"], f"{path}wet.")
    mix = slider(unit, "mix", path)
    return f"(_ <: (_, {wet}) : \\(d, w).(d + {mix} * (w - d)))"


#: Unit name -> its Faust emitter ``(unit, path prefix) -> expression``: one module per family.
FAUST_UNITS: dict[str, Callable[[Unit, str], str]] = {
    **nonlinear.EMITTERS, **filters.EMITTERS, **dynamics.EMITTERS, **delays.EMITTERS, **modulation.EMITTERS,
    **reverbs.EMITTERS, **amps.EMITTERS,
    "chain": _chain, "parallel": _parallel, "dry_wet": _dry_wet,
    "knob_conditioned": lambda unit, path: amps.knob_conditioned(unit, path, _expression),
}


def _expression(unit: Unit, path: str) -> str:
    if unit.name in ("wavenet", "lstm_amp"):
        raise TypeError(f"{unit.label} is a neural capture: write it as a .nam file (dspfx.export.export_nam), "
                        "which NAM's plugin plays")
    emitter = FAUST_UNITS.get(unit.name)
    if emitter is None and getattr(unit, "category", None) == "synth":
        raise TypeError(f"{unit.label} is a synth (control signals in, audio out), not an effect a plugin can host; "
                        "play a DDSP instrument or a synth with `dspfx transfer` or `dspfx play`")
    if emitter is None:
        raise TypeError(f"{unit.label} cannot be exported as a plugin yet; exportable units: {', '.join(sorted(FAUST_UNITS))}")
    return emitter(unit, path)


def faust_code(unit: Unit, name: str = "dspfx_chain") -> str:
    """A self-contained Faust program (``.dsp`` text) rendering ``unit``, mono in and out.

    Raises:
        TypeError: a unit (anywhere in the chain) that cannot be exported, named.
        ValueError: a name that is not an identifier.
    """
    if not isinstance(unit, Unit):
        raise TypeError(f"faust_code takes a dspfx Unit, got {type(unit).__name__}")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"a plugin name is an identifier of at most 64 characters (letters, digits, _), got {name!r}")
    body = _expression(unit, "")
    return (f'declare name "{name}";\ndeclare description "exported by dspfx from {unit.label}";\n'
            f'import("stdfaust.lib");\n\nprocess = {body};\n')


def export_plugin(unit: Unit, out: str | os.PathLike, *, format: str = "lv2", name: str = "dspfx_chain") -> Path:
    """Write ``unit`` as a plugin into the folder ``out``: ``NAME.dsp`` (``format="faust"``), or
    that and the LV2 bundle ``NAME.lv2`` built by faust2lv2 (``format="lv2"``). Returns the
    ``.dsp`` path or the bundle's. A bundle already there is replaced only once the new one is built.

    Raises:
        TypeError: a unit that cannot be exported. ValueError: a bad format or name, ``out``
            a file. PluginExportError: faust2lv2 missing or failing.
    """
    from dspfx.io import atomic_path

    if format not in ("faust", "lv2"):
        raise ValueError(f"format must be 'faust' or 'lv2', got {format!r}")
    code = faust_code(unit, name)
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"out={folder} exists and is not a folder")
    if format == "lv2" and shutil.which("faust2lv2") is None:
        raise PluginExportError("faust2lv2 is not installed (Debian: apt-get install faust g++ lv2-dev libboost-dev)")
    folder.mkdir(parents=True, exist_ok=True)
    dsp = folder / f"{name}.dsp"
    with atomic_path(dsp) as tmp:
        Path(tmp).write_text(code)
    if format == "faust":
        return dsp
    with tempfile.TemporaryDirectory(prefix="dspfx-lv2-build-") as build:
        shutil.copy(dsp, Path(build) / dsp.name)
        env = dict(os.environ)
        if code.count("fi.fir(") > 1:  # a long FIR (blocks): g++'s global CSE takes most of the build, for
            # no gain in straight-line code (7200 taps: 26 s -> 9 s); it changes no arithmetic
            env["CXXFLAGS"] = f"{env.get('CXXFLAGS', '')} -fno-gcse".strip()
        done = subprocess.run(["faust2lv2", "-nomidicc", "-double", "-t", "0", "-uri-prefix", URI_PREFIX, dsp.name],
                              cwd=build, capture_output=True, text=True, timeout=600, env=env)
        bundle = Path(build) / f"{name}.lv2"
        if done.returncode != 0 or not bundle.is_dir():
            lines = (done.stderr or done.stdout).strip().splitlines()
            raise PluginExportError(f"faust2lv2 failed on {dsp} (exit {done.returncode}): {lines[-1] if lines else ''}")
        target = folder / bundle.name
        staged = folder / f".{bundle.name}.new"
        shutil.rmtree(staged, ignore_errors=True)
        shutil.copytree(bundle, staged)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(staged, target)
    return target


def plugin_controls(bundle: str | os.PathLike) -> dict[str, str]:
    """Knob path -> LV2 port symbol of a bundle built by :func:`export_plugin` (Faust derives
    the symbols from the paths, e.g. ``tone.cutoff_hz`` -> ``tone_cutoff_hz_3``)."""
    bundle = Path(bundle)
    ttl = bundle / f"{bundle.stem}.ttl"
    if not ttl.is_file():
        raise FileNotFoundError(f"no {ttl.name} in {bundle}: not a bundle built by export_plugin")
    pairs = re.findall(r'lv2:symbol "([^"]+)" ;\s*lv2:name "([^"]+)"', ttl.read_text())
    return {name: symbol for symbol, name in pairs if not re.fullmatch(r"(in|out)\d+", symbol)}
