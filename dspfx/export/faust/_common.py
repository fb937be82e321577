"""What every Faust emitter shares: numbers, knob sliders, the cookbook biquad."""

from __future__ import annotations

from contextvars import ContextVar

from dspfx.unit import Unit

#: Knob paths whose value a container computes inside the plugin (the knob-conditioned amp's
#: network), mapped to the Faust expression that replaces their slider.
KNOB_EXPRESSIONS: ContextVar[dict[str, str]] = ContextVar("KNOB_EXPRESSIONS", default={})


def number(value: float) -> str:
    text = format(float(value), ".9g")  # float32 values print as set (1.2, not 1.2000000476837158)
    return text if ("." in text or "e" in text or "n" in text) else text + ".0"


def slider(unit: Unit, key: str, path: str) -> str:
    """The knob's control (an ``hslider`` named by its path, with its range, unit and current
    value), or the expression a container computes for it (:data:`KNOB_EXPRESSIONS`)."""
    computed = KNOB_EXPRESSIONS.get().get(f"{path}{key}")
    if computed is not None:
        return f"({computed})"
    knob = unit.knob_specs[key]
    meta = f" [unit:{knob.unit}]" if knob.unit else ""
    meta += " [scale:log]" if knob.scale == "log" else ""
    step = (knob.maximum - knob.minimum) / 100000.0
    return (f'hslider("{path}{key}{meta}", {number(float(unit.knob_value(key).detach()))}, {number(knob.minimum)}, '
            f"{number(knob.maximum)}, {number(step)})")


def clamped_cutoff(cutoff: str, sample_rate: float) -> str:
    """A cutoff clamped into [2 Hz, Nyquist - 100 Hz], as dspfx's designs clamp it."""
    from dspfx.functional.design import MIN_CUTOFF_HZ, NYQUIST_MARGIN_HZ

    return (f"max({number(MIN_CUTOFF_HZ)}, min({cutoff}, "
            f"{number(sample_rate / 2.0 - NYQUIST_MARGIN_HZ)}))")


BIQUAD_DESIGNS = {
    "lowpass": ("0.5 * (1.0 - c)", "1.0 - c", "0.5 * (1.0 - c)", "1.0 + alpha", "-2.0 * c", "1.0 - alpha"),
    "highpass": ("0.5 * (1.0 + c)", "0.0 - (1.0 + c)", "0.5 * (1.0 + c)", "1.0 + alpha", "-2.0 * c", "1.0 - alpha"),
    "bandpass": ("alpha", "0.0", "0.0 - alpha", "1.0 + alpha", "-2.0 * c", "1.0 - alpha"),
    "notch": ("1.0", "-2.0 * c", "1.0", "1.0 + alpha", "-2.0 * c", "1.0 - alpha"),
    "allpass": ("1.0 - alpha", "-2.0 * c", "1.0 + alpha", "1.0 + alpha", "-2.0 * c", "1.0 - alpha"),
    "peak": ("1.0 + alpha * A", "-2.0 * c", "1.0 - alpha * A", "1.0 + alpha / A", "-2.0 * c", "1.0 - alpha / A"),
    "lowshelf": ("A * ((A + 1.0) - (A - 1.0) * c + beta)", "A * 2.0 * ((A - 1.0) - (A + 1.0) * c)",
                 "A * ((A + 1.0) - (A - 1.0) * c - beta)", "(A + 1.0) + (A - 1.0) * c + beta",
                 "-2.0 * ((A - 1.0) + (A + 1.0) * c)", "(A + 1.0) + (A - 1.0) * c - beta"),
    "highshelf": ("A * ((A + 1.0) + (A - 1.0) * c + beta)", "A * (0.0 - 2.0) * ((A - 1.0) + (A + 1.0) * c)",
                  "A * ((A + 1.0) + (A - 1.0) * c - beta)", "(A + 1.0) - (A - 1.0) * c + beta",
                  "2.0 * ((A - 1.0) - (A + 1.0) * c)", "(A + 1.0) - (A - 1.0) * c - beta"),
}


def _cookbook_head(mode: str, cutoff: str, q: str, gain_db: str, sample_rate: float) -> str:
    sr = number(sample_rate)
    head = (f"w0 = {clamped_cutoff(cutoff, sample_rate)} * 6.2831855 / {sr}; c = cos(w0); s = sin(w0); "
            f"q_ = {q}; alpha = s / (q_ * 2.0);")
    if mode in ("peak", "lowshelf", "highshelf"):
        head += f" A = sqrt(pow(10.0, {gain_db} * 0.05));"
    if mode in ("lowshelf", "highshelf"):
        head += " beta = s * sqrt(A) / q_;"
    return head


def cookbook(mode: str, cutoff: str, q: str, gain_db: str, sample_rate: float) -> str:
    """The cookbook design in dspfx's (JUCE's) order, normalised by 1/a0 (Faust's ``fi.tf2``),
    from Faust expressions of the cutoff, q and gain. Negations are written ``0.0 - x``: in
    Faust ``-(x)`` is the function ``_ - x``."""
    head = _cookbook_head(mode, cutoff, q, gain_db, sample_rate)
    b0, b1, b2, a0, a1, a2 = BIQUAD_DESIGNS[mode]
    return (f"(fi.tf2(b0, b1, b2, a1, a2) with {{ {head} k = 1.0 / ({a0}); b0 = ({b0}) * k; b1 = ({b1}) * k; "
            f"b2 = ({b2}) * k; a1 = ({a1}) * k; a2 = ({a2}) * k; }})")


def cookbook_coefficients(mode: str, cutoff: str, q: str, gain_db: str, sample_rate: float) -> tuple[str, ...]:
    """The coefficients of :func:`cookbook` as five Faust expressions ``(b0, b1, b2, a1, a2)``,
    for a recursion written out by hand."""
    head = _cookbook_head(mode, cutoff, q, gain_db, sample_rate)
    b0, b1, b2, a0, a1, a2 = BIQUAD_DESIGNS[mode]
    return tuple(f"(({term}) * k with {{ {head} k = 1.0 / ({a0}); }})" for term in (b0, b1, b2, a1, a2))
