"""Limits on what a spec (a chain file, a JSON spec) may ask for, checked before anything is made.

A spec is data from a file, so it is not trusted: a 90-byte spec asking for a million delay
lines, a sample rate of 1e9 or a chain nested 400 deep would otherwise hang the CPU, allocate
gigabytes or overflow the stack. :func:`check_spec` walks the spec (iteratively) and refuses,
with a message naming the value and the limit, anything outside :class:`Limits`; a caller who
means it raises a limit explicitly:

>>> dspfx.load("big.json", limits=dspfx.Limits(options={"n_lines": 256}))

Paths inside a spec (``impulse_response``) are resolved against the spec file's folder and must
stay inside it unless ``Limits(allow_outside_paths=True)``.

The limits (README's "Limits" table is this one):

=====================  =========================================================
sample_rate            1000 .. 384000 Hz
nesting depth          32 containers
units in one spec      1024
any list option        4096 items
integer options        per name (:data:`OPTION_LIMITS`); others at most 2**20
float options          ``length_s`` at most 60 s
=====================  =========================================================
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Limits", "DEFAULT_LIMITS", "OPTION_LIMITS", "check_spec", "LimitError"]

#: Largest value of each integer option (in every unit that has it), before anything is made.
OPTION_LIMITS: dict[str, float] = {
    "n_lines": 64, "n_harmonics": 2048, "n_sinusoids": 512, "n_bands": 2048, "n_taps": 2**21,
    "n_tables": 256, "table_size": 2**16, "n_shapers": 256, "order": 128, "hidden": 1024, "depth": 16,
    "layers": 16, "n_operators": 16, "n_peaks": 64, "n_stages": 32, "oversample": 16, "hop": 2**16,
    "partition_size": 2**16, "additive_harmonics": 2048, "stereo_spread": 10_000, "ir_channels": 64,
    "length_s": 60.0,
}
#: Options that name a file.
PATH_OPTIONS = ("impulse_response",)


class LimitError(ValueError):
    """A spec asks for more than :class:`Limits` allows (raise the limit explicitly if meant)."""


@dataclass(frozen=True)
class Limits:
    """What a spec may ask for. Every field can be raised by the caller (see the module docstring).

    Attributes:
        min_sample_rate, max_sample_rate: Hz.
        max_depth: containers nested in containers.
        max_units: units in the whole spec.
        max_sequence: items in any list option.
        max_integer: integer options not named in ``options``.
        options: per-option maxima, merged over :data:`OPTION_LIMITS`.
        allow_outside_paths: let file paths in a spec leave the spec file's folder.
    """

    min_sample_rate: float = 1000.0
    max_sample_rate: float = 384_000.0
    max_depth: int = 32
    max_units: int = 1024
    max_sequence: int = 4096
    max_integer: int = 2**20
    options: Mapping[str, float] = field(default_factory=dict)
    allow_outside_paths: bool = False

    def option_limit(self, name: str) -> float | None:
        return self.options.get(name, OPTION_LIMITS.get(name))


DEFAULT_LIMITS = Limits()


def _check_option(unit: str, name: str, value: Any, limits: Limits) -> None:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return
    if isinstance(value, (list, tuple)):
        if len(value) > limits.max_sequence:
            raise LimitError(f"{unit}: option {name!r} has {len(value)} items; the limit is {limits.max_sequence}")
        for item in value:
            if not isinstance(item, (Mapping, list, tuple)):
                _check_option(unit, name, item, limits)
        return
    if isinstance(value, (int, float)):
        limit = limits.option_limit(name)
        if limit is None and isinstance(value, int):
            limit = limits.max_integer
        if isinstance(value, float) and not math.isfinite(value):
            raise LimitError(f"{unit}: option {name!r} is {value}; expected a finite number")
        if limit is not None and abs(value) > limit:
            raise LimitError(
                f"{unit}: option {name}={value!r} is above the limit {limit:g} (raise it with "
                f"dspfx.Limits(options={{{name!r}: ...}}) if you mean it)"
            )


def _resolve_path(unit: str, name: str, value: str, base_dir: Path, limits: Limits) -> str:
    path = Path(value)
    resolved = (path if path.is_absolute() else base_dir / path).resolve()
    if not limits.allow_outside_paths and not resolved.is_relative_to(base_dir.resolve()):
        raise LimitError(
            f"{unit}: option {name}={value!r} points outside the spec's folder {base_dir} (a spec may only "
            f"name files beside it; pass dspfx.Limits(allow_outside_paths=True) to allow it)"
        )
    return str(resolved)


def check_spec(spec: Mapping[str, Any], limits: Limits | None = None,
               base_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Check ``spec`` against ``limits`` without making anything; returns a copy in which file
    paths are resolved against ``base_dir`` (the spec file's folder) when one is given.

    Raises:
        LimitError: (a ValueError) the first value outside the limits, named.
    """
    limits = DEFAULT_LIMITS if limits is None else limits
    base = None if base_dir is None else Path(base_dir)
    root: dict[str, Any] = {}
    stack: list[tuple[Any, dict[str, Any], int]] = [(spec, root, 0)]
    units = 0
    while stack:
        node, out, depth = stack.pop()
        if not isinstance(node, Mapping):
            raise ValueError(f"a spec (or a child spec) is a dict, got {type(node).__name__}")
        units += 1
        if units > limits.max_units:
            raise LimitError(f"the spec holds more than {limits.max_units} units (raise Limits(max_units=...))")
        if depth > limits.max_depth:
            raise LimitError(f"the spec nests containers deeper than {limits.max_depth} (raise Limits(max_depth=...))")
        name = str(node.get("unit", "?"))
        out.update(node)
        rate = node.get("sample_rate")
        if rate is not None:
            if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not (
                limits.min_sample_rate <= rate <= limits.max_sample_rate
            ):
                raise LimitError(
                    f"{name}: sample_rate {rate!r} is outside {limits.min_sample_rate:g} .. "
                    f"{limits.max_sample_rate:g} Hz"
                )
        options = node.get("options")
        if isinstance(options, Mapping):
            options = dict(options)
            for key, value in options.items():
                if isinstance(value, Mapping) and "unit" in value:  # a unit given as an option
                    options[key] = {}
                    stack.append((value, options[key], depth + 1))
                elif key in PATH_OPTIONS and isinstance(value, str) and base is not None:
                    options[key] = _resolve_path(name, key, value, base, limits)
                else:
                    _check_option(name, key, value, limits)
            out["options"] = options
        children = node.get("children")
        if isinstance(children, Mapping):
            out["children"] = {}
            for key, child in children.items():
                out["children"][key] = {}
                stack.append((child, out["children"][key], depth + 1))
    return root
