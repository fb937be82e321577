"""The unit registry: every unit class by its snake_case name.

>>> @dspfx.register
... class Gain(dspfx.Unit): name = "gain"; ...
>>> dspfx.make("gain", gain_db=-6.0)
>>> [u["name"] for u in dspfx.units()]
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import re
from typing import Any, TypeVar

from dspfx.unit import Unit

__all__ = ["register", "make", "units", "get", "markdown_table", "UnknownUnitError"]

_REGISTRY: dict[str, type[Unit]] = {}
#: Units whose module is imported on first use, not by ``import dspfx`` (the DDSP model pulls in
#: nothing heavy, but its package is kept out of a plain import): name -> module.
_LAZY = {"ddsp": "dspfx.ddsp.model"}
_CATEGORIES = ("synth", "effect", "amp", "container")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")

U = TypeVar("U", bound=type[Unit])


class UnknownUnitError(KeyError):
    """Raised for a unit name the registry does not know; the message lists close matches."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def register(cls: U) -> U:
    """Class decorator: add a :class:`~dspfx.Unit` subclass to the registry under ``cls.name``."""
    if not (isinstance(cls, type) and issubclass(cls, Unit)):
        raise TypeError(f"register() takes a dspfx.Unit subclass, got {cls!r}")
    name = cls.name
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"{cls.__name__}.name must be a snake_case string, got {name!r}")
    if cls.category not in _CATEGORIES:
        raise ValueError(f"{cls.__name__}.category must be one of {_CATEGORIES}, got {cls.category!r}")
    if not (cls.__doc__ or "").strip():
        raise ValueError(f"{cls.__name__} needs a docstring: what it models, its knobs, an example, its reference")
    existing = _REGISTRY.get(name)
    if existing is not None and existing is not cls and existing.__qualname__ != cls.__qualname__:
        raise ValueError(f"unit name {name!r} is already taken by {existing.__module__}.{existing.__qualname__}")
    _REGISTRY[name] = cls
    return cls


def get(name: str) -> type[Unit]:
    """The unit class registered under ``name``; unknown names raise with close matches listed."""
    if not isinstance(name, str):
        raise TypeError(f"unit names are strings, got {type(name).__name__} {name!r}")
    if name in _LAZY and name not in _REGISTRY:
        importlib.import_module(_LAZY[name])
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise UnknownUnitError(
            f"unknown unit {name!r}.{hint} Known units: {', '.join(sorted(_REGISTRY))} (see dspfx.units())"
        ) from None


def make(name: str, **options_and_knobs: Any) -> Unit:
    """Make a unit by registry name: ``make("biquad", mode="lowshelf", cutoff_hz=200.0)``.

    Keyword arguments are the unit's constructor options (``sample_rate``, ``mode``, ...) and
    initial knob values in physical units.
    """
    return get(name)(**options_and_knobs)


def _summary(cls: type[Unit]) -> str:
    doc = inspect.getdoc(cls) or ""
    return doc.split("\n\n")[0].replace("\n", " ").strip()


def _option_table(cls: type[Unit]) -> dict[str, Any]:
    out = {}
    for pname, param in inspect.signature(cls.__init__).parameters.items():
        if pname == "self" or param.kind in (param.VAR_KEYWORD, param.VAR_POSITIONAL) or pname in cls._class_knobs:
            continue
        if param.default is inspect.Parameter.empty:
            continue  # a required argument is a child unit (DryWet's wet), not an option
        out[pname] = param.default
    return out


def _default_knobs(cls: type[Unit]) -> dict[str, Any]:
    """Knobs of a unit made with its default options: those declared on the class plus any the
    constructor adds (parametric_eq's per-band knobs). Containers need children: class knobs."""
    if cls.category == "container":
        return dict(cls._class_knobs)
    try:
        return cls().knob_specs
    except Exception:  # a unit whose constructor needs arguments: list what the class declares
        return dict(cls._class_knobs)


def units(category: str | None = None) -> list[dict[str, Any]]:
    """Every registered unit: name, category, summary, options with defaults, and knobs.

    Knobs are given as ``{name: {default, minimum, maximum, scale, unit, doc}}`` for the unit made
    with its default options (options can add knobs, e.g. ``n_peaks``). JSON-safe.
    """
    if category is not None and category not in _CATEGORIES:
        raise ValueError(f"category must be one of {_CATEGORIES}, got {category!r}")
    for module in _LAZY.values():
        importlib.import_module(module)
    rows = []
    for name in sorted(_REGISTRY):
        cls = _REGISTRY[name]
        if category is not None and cls.category != category:
            continue
        rows.append(
            {
                "name": name,
                "category": cls.category,
                "class": f"{cls.__module__}.{cls.__qualname__}",
                "summary": _summary(cls),
                "options": _option_table(cls),
                "knobs": {k: knob.describe() for k, knob in _default_knobs(cls).items()},
            }
        )
    return rows


def markdown_table() -> str:
    """The unit table of the README, generated from the registry."""
    lines = ["| unit | category | options | knobs (default, range) | what it is |", "|---|---|---|---|---|"]
    for row in units():
        knobs = []
        for k, d in row["knobs"].items():
            u = f" {d['unit']}" if d["unit"] else ""
            log = ", log" if d["scale"] == "log" else ""
            knobs.append(f"`{k}` {d['default']:g}{u} ({d['minimum']:g}..{d['maximum']:g}{log})")
        summary = row["summary"].split(". ")[0].rstrip(".")
        options = [f"`{k}={v!r}`" for k, v in row["options"].items() if k != "sample_rate"]
        lines.append(
            f"| `{row['name']}` | {row['category']} | {'<br>'.join(options) or '-'} | {'<br>'.join(knobs) or '-'} "
            f"| {summary} |"
        )
    return "\n".join(lines)
