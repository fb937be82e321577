"""Linear filters: the RBJ-cookbook biquad, first-order low/high-pass, a parametric EQ, and a
time-varying FIR designed from band magnitudes."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as TF
from torch import Tensor, nn

from dspfx.functional.control import control_frames
from dspfx.functional.design import NYQUIST_MARGIN_HZ, ONE_POLE_MODES, biquad_coefficients, frequency_response, one_pole_coefficients
from dspfx.functional.fir import fir_design_options, fir_filter, fir_from_magnitudes
from dspfx.functional.recursive import iir
from dspfx.functional.sos import sos_filter
from dspfx.registry import register
from dspfx.unit import Knob, Unit

__all__ = ["Biquad", "BIQUAD_MODES", "OnePole", "ParametricEQ", "FIR"]

BIQUAD_MODES = ("lowpass", "highpass", "bandpass", "notch", "allpass", "peak", "lowshelf", "highshelf")

#: Shelves start where shelves usually sit (a 1 kHz "low shelf" is an odd default, and a fit
#: started there can settle with the shelf in the midrange); the other modes start at 1 kHz.
SHELF_DEFAULT_CUTOFF_HZ = {"lowshelf": 200.0, "highshelf": 5000.0}

# pedalboard class name <-> biquad mode, for the twins
_PEDALBOARD_MODES = {"PeakFilter": "peak", "LowShelfFilter": "lowshelf", "HighShelfFilter": "highshelf"}


@register
class Biquad(Unit):
    """Second-order IIR filter (RBJ Audio-EQ-Cookbook designs); every knob may vary per sample.

    Options:
        mode: ``"lowpass"``, ``"highpass"``, ``"bandpass"`` (0 dB peak), ``"notch"``,
            ``"allpass"``, ``"peak"`` (default), ``"lowshelf"``, ``"highshelf"``.
        form: ``"df1"`` (default, direct form I) or ``"tdf2"`` (transposed direct form II in
            JUCE's operation order: float32 renders round exactly like pedalboard's, which
            matters at ill-conditioned settings such as a 20 Hz shelf at Q 20; twins made by
            ``dspfx.from_pedalboard`` use it). Same filter, same gradients; the state differs
            (two TDF-II states instead of four histories).

    Knobs:
        cutoff_hz: 20 .. 20000 Hz (log, default 1000; a lowshelf starts at 200, a highshelf at
            5000): centre or corner frequency; clamped inside the design to
            [2, sample_rate/2 - 100] Hz like JUCE.
        q: 0.1 .. 20 (log, default 0.7071): quality factor (shelves: the cookbook's Q form).
        gain_db: -24 .. +24 dB (default 0): used by peak and shelves only.

    Time-varying knobs are exact: the filter is run as a direct-form-I difference equation with
    per-sample coefficients (FIR numerator, then an all-pole denominator through torchlpc, whose
    backward pass is exact), so gradients hold for sweeps too.

    >>> eq = dspfx.make("biquad", mode="lowshelf", cutoff_hz=200.0, gain_db=4.0)
    >>> y = eq(x, cutoff_hz=torch.linspace(200, 2000, 50).view(1, -1))   # a sweep over 50 frames

    Reference: R. Bristow-Johnson, "Cookbook formulae for audio EQ biquad filter coefficients";
    twins of ``pedalboard.PeakFilter``, ``LowShelfFilter`` and ``HighShelfFilter``.
    """

    name = "biquad"
    category = "effect"
    pedalboard_classes = tuple(_PEDALBOARD_MODES)
    cutoff_hz = Knob(1000.0, 20.0, 20000.0, scale="log", unit="Hz", doc="centre or corner frequency")
    q = Knob(0.7071, 0.1, 20.0, scale="log", doc="quality factor")
    gain_db = Knob(0.0, -24.0, 24.0, unit="dB", doc="gain of peak and shelf modes")

    def __init__(self, sample_rate: float = 48000, mode: str = "peak", form: str = "df1", **knobs: Any) -> None:
        if mode not in BIQUAD_MODES:
            raise ValueError(f"biquad mode must be one of {', '.join(BIQUAD_MODES)}; got {mode!r}")
        if form not in ("df1", "tdf2"):
            raise ValueError(f"biquad form must be 'df1' or 'tdf2', got {form!r}")
        self.mode = mode
        self.form = form
        if mode in SHELF_DEFAULT_CUTOFF_HZ and "cutoff_hz" not in knobs:
            knobs["cutoff_hz"] = SHELF_DEFAULT_CUTOFF_HZ[mode]
        super().__init__(sample_rate, **knobs)

    def init_state(self, batch: int, channels: int) -> Any:
        zeros = torch.zeros(batch, channels, 2, dtype=self.dtype, device=self.device)
        return zeros if self.form == "tdf2" else (zeros, zeros.clone())

    def coefficients(self, controls: dict[str, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        """(b, a) for the given controls, or for the current knobs when none are given."""
        if controls is None:
            controls = {k: self.knob_value(k) for k in self.knob_specs}
        return biquad_coefficients(
            self.mode, controls["cutoff_hz"], controls["q"], controls["gain_db"], self.sample_rate
        )

    def process(self, x: Tensor, controls: dict[str, Tensor], state: Any) -> tuple[Tensor, Any]:
        b, a = self._design(controls)  # (batch|1, 1, samples|1, 3)
        return iir(x, b, a, state, form=self.form)

    def _design(self, controls: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """:meth:`coefficients`, kept between gradient-free calls while the knobs stay put
        (:meth:`Unit.kept_design`)."""
        return self.kept_design(controls, self.coefficients, key=(self.mode, self.sample_rate))

    def frequency_response(self, freqs_hz: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(freqs_hz, magnitude in dB) of the current knobs; 512 log-spaced points by default."""
        if freqs_hz is None:
            freqs_hz = torch.logspace(1, torch.log10(torch.tensor(self.sample_rate / 2)).item(), 512, dtype=self.dtype)
        b, a = self.coefficients()
        h = frequency_response(b, a, freqs_hz, self.sample_rate)
        return freqs_hz, 20 * torch.log10(h.abs().clamp_min(1e-12))

    @classmethod
    def from_pedalboard(cls, plugin: Any, sample_rate: float) -> Unit:
        return cls(
            sample_rate=sample_rate,
            mode=_PEDALBOARD_MODES[type(plugin).__name__],
            form="tdf2",
            cutoff_hz=plugin.cutoff_frequency_hz,
            q=plugin.q,
            gain_db=plugin.gain_db,
        )

    def to_pedalboard(self) -> Any:
        import pedalboard

        names = {mode: name for name, mode in _PEDALBOARD_MODES.items()}
        if self.mode not in names:
            raise ValueError(
                f"biquad mode {self.mode!r} has no pedalboard twin (twins exist for modes: {', '.join(names)})"
            )
        k = self.knobs()
        return getattr(pedalboard, names[self.mode])(cutoff_frequency_hz=k["cutoff_hz"], gain_db=k["gain_db"], q=k["q"])


def _default_freqs(sample_rate: float, dtype: torch.dtype, n: int = 512) -> Tensor:
    return torch.logspace(1.0, math.log10(sample_rate / 2.0), n, dtype=dtype)


def _to_db(h: Tensor) -> Tensor:
    return 20.0 * torch.log10(h.abs().clamp_min(1e-12))


# ============================================================================ one-pole


_ONE_POLE_PEDALBOARD = {"LowpassFilter": "lowpass", "HighpassFilter": "highpass"}


@register
class OnePole(Unit):
    """First-order (6 dB/octave) bilinear lowpass or highpass; the cutoff may vary per sample.

    With ``n = tan(pi * cutoff_hz / sample_rate)``: lowpass ``b = [n, n] / (n + 1)``, highpass
    ``b = [1, -1] / (n + 1)``, both ``a = [1, (n - 1) / (n + 1)]`` (-3 dB at the cutoff).

    Options:
        mode: ``"lowpass"`` (default) or ``"highpass"``.

    Knobs:
        cutoff_hz: 20 .. 20000 Hz (log, default 1000): the -3 dB corner. Like pedalboard, the
            cutoff is not clamped where it lies below Nyquist (at 44.1 kHz a 20 kHz lowpass is
            the exact bilinear design); it is kept at least 100 Hz below Nyquist only at sample
            rates where the range would otherwise reach it (below 40.2 kHz), where the design
            does not exist.

    Time-varying cutoffs are exact (per-sample coefficients through :func:`dspfx.functional.iir`).

    >>> lp = dspfx.make("one_pole", mode="lowpass", cutoff_hz=800.0)
    >>> y = lp(x, cutoff_hz=torch.linspace(200, 4000, 40).view(1, -1))   # a sweep over 40 frames

    Reference: JUCE ``IIR::Coefficients::makeFirstOrderLowPass/HighPass``; twin of
    ``pedalboard.LowpassFilter`` and ``pedalboard.HighpassFilter`` (``cutoff_frequency_hz``).
    """

    name = "one_pole"
    category = "effect"
    pedalboard_classes = tuple(_ONE_POLE_PEDALBOARD)
    cutoff_hz = Knob(1000.0, 20.0, 20000.0, scale="log", unit="Hz", doc="-3 dB corner frequency")

    def __init__(self, sample_rate: float = 48000, mode: str = "lowpass", **knobs: Any) -> None:
        if mode not in ONE_POLE_MODES:
            raise ValueError(f"one_pole mode must be one of {', '.join(ONE_POLE_MODES)}; got {mode!r}")
        self.mode = mode
        super().__init__(sample_rate, **knobs)

    def init_state(self, batch: int, channels: int) -> tuple[Tensor, Tensor]:
        zeros = torch.zeros(batch, channels, 1, dtype=self.dtype, device=self.device)
        return zeros, zeros.clone()

    @property
    def max_cutoff_hz(self) -> float:
        """Highest cutoff the design uses: Nyquist - 100 Hz (reached only below 40.2 kHz)."""
        return max(self.sample_rate / 2.0 - NYQUIST_MARGIN_HZ, 0.45 * self.sample_rate)

    def coefficients(self, controls: dict[str, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        """(b, a) for the given controls, or for the current knob when none are given."""
        cutoff = self.knob_value("cutoff_hz") if controls is None else controls["cutoff_hz"]
        cutoff = torch.clamp(cutoff, max=self.max_cutoff_hz)
        return one_pole_coefficients(self.mode, cutoff, self.sample_rate)

    def process(self, x: Tensor, controls: dict[str, Tensor], state: Any) -> tuple[Tensor, Any]:
        b, a = self.coefficients(controls)  # (batch|1, 1, samples|1, 2)
        return iir(x, b, a, state)

    def frequency_response(self, freqs_hz: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(freqs_hz, magnitude in dB) of the current knob; 512 log-spaced points by default."""
        if freqs_hz is None:
            freqs_hz = _default_freqs(self.sample_rate, self.dtype)
        b, a = self.coefficients()
        return freqs_hz, _to_db(frequency_response(b, a, freqs_hz, self.sample_rate))

    @classmethod
    def from_pedalboard(cls, plugin: Any, sample_rate: float) -> Unit:
        return cls(
            sample_rate=sample_rate,
            mode=_ONE_POLE_PEDALBOARD[type(plugin).__name__],
            cutoff_hz=plugin.cutoff_frequency_hz,
        )

    def to_pedalboard(self) -> Any:
        import pedalboard

        names = {mode: name for name, mode in _ONE_POLE_PEDALBOARD.items()}
        return getattr(pedalboard, names[self.mode])(cutoff_frequency_hz=self.knobs()["cutoff_hz"])


# ============================================================================ parametric EQ

#: Q of the shelves (cookbook Q form) and of the optional 12 dB/octave cuts.
EQ_FIXED_Q = 0.7071
#: Largest number of peaking bands a ParametricEQ takes.
EQ_MAX_PEAKS = 16

_FREQ_RANGE = (20.0, 20000.0)
_GAIN_RANGE = (-24.0, 24.0)
_Q_RANGE = (0.1, 20.0)


def _freq_knob(default: float, doc: str) -> Knob:
    return Knob(default, *_FREQ_RANGE, scale="log", unit="Hz", doc=doc)


def _gain_knob(doc: str) -> Knob:
    return Knob(0.0, *_GAIN_RANGE, unit="dB", doc=doc)


@register
class ParametricEQ(Unit):
    """Parametric equaliser: low shelf, ``n_peaks`` peaking bands and a high shelf, with optional
    12 dB/octave high-pass and low-pass cuts; every knob may vary per sample.

    A cascade of RBJ-cookbook biquads (``dspfx.functional.biquad_coefficients``), in the order
    high-pass, low shelf, peak 1 .. N, high shelf, low-pass, each run exactly (time-varying
    included) through :func:`dspfx.functional.iir` with its own state, so the EQ streams.

    Options:
        n_peaks: number of peaking bands, 0 .. 16 (default 3).
        highpass, lowpass: add the second-order Butterworth (Q 0.7071) cuts (default False).

    Knobs (added per instance, so ``knobs()`` and the spec list them):
        highpass_hz: 20 .. 20000 Hz (log, default 20), only with ``highpass=True``.
        low_shelf_hz: 20 .. 20000 Hz (log, default 100); low_shelf_gain_db: -24 .. 24 dB (0).
        peak<i>_hz: 20 .. 20000 Hz (log; defaults log-spaced from 250 Hz to 4 kHz);
        peak<i>_gain_db: -24 .. 24 dB (0); peak<i>_q: 0.1 .. 20 (log, default 1).
        high_shelf_hz: 20 .. 20000 Hz (log, default 8000); high_shelf_gain_db: -24 .. 24 dB (0).
        lowpass_hz: 20 .. 20000 Hz (log, default 20000), only with ``lowpass=True``.
    Shelves use the cookbook's Q form with Q 0.7071 (``gain_db / 2`` at the corner). All gains
    at 0 dB (and no cuts) give the identity. Cutoffs are clamped into [2 Hz, Nyquist - 100 Hz]
    inside the design, like the biquad.

    >>> eq = dspfx.make("parametric_eq", n_peaks=2, highpass=True, highpass_hz=40.0, peak1_gain_db=-4.0)
    >>> y = eq(x, peak2_gain_db=torch.linspace(0.0, 6.0, 20).view(1, -1))

    Reference: R. Bristow-Johnson, "Cookbook formulae for audio EQ biquad filter coefficients";
    the shelves and peaks equal ``pedalboard.LowShelfFilter``/``PeakFilter``/``HighShelfFilter``
    in series (``pedalboard.Pedalboard``).
    """

    name = "parametric_eq"
    category = "effect"

    def __init__(
        self,
        sample_rate: float = 48000,
        n_peaks: int = 3,
        highpass: bool = False,
        lowpass: bool = False,
        **knobs: Any,
    ) -> None:
        if isinstance(n_peaks, bool) or not isinstance(n_peaks, int) or not 0 <= n_peaks <= EQ_MAX_PEAKS:
            raise ValueError(f"parametric_eq n_peaks must be an int in 0 .. {EQ_MAX_PEAKS}, got {n_peaks!r}")
        for opt, value in (("highpass", highpass), ("lowpass", lowpass)):
            if not isinstance(value, bool):
                raise TypeError(f"parametric_eq option {opt} must be True or False, got {value!r}")
        self.n_peaks = n_peaks
        self.highpass = highpass
        self.lowpass = lowpass
        super().__init__(sample_rate)
        for key, knob in self._knob_layout():
            self.add_knob(key, knob)
        unknown = [k for k in knobs if k not in self._knobs]
        if unknown:
            raise TypeError(self._unknown_message(unknown[0], "knob or option"))
        if knobs:
            self.set(**knobs)

    def _knob_layout(self) -> list[tuple[str, Knob]]:
        out: list[tuple[str, Knob]] = []
        if self.highpass:
            out.append(("highpass_hz", _freq_knob(20.0, "high-pass cut corner (12 dB/octave)")))
        out.append(("low_shelf_hz", _freq_knob(100.0, "low shelf corner")))
        out.append(("low_shelf_gain_db", _gain_knob("low shelf gain")))
        for i in range(1, self.n_peaks + 1):
            frac = (i - 1) / (self.n_peaks - 1) if self.n_peaks > 1 else 0.5
            freq = 250.0 * 16.0**frac
            out.append((f"peak{i}_hz", _freq_knob(freq, f"centre of peak {i}")))
            out.append((f"peak{i}_gain_db", _gain_knob(f"gain of peak {i} at its centre")))
            out.append((f"peak{i}_q", Knob(1.0, *_Q_RANGE, scale="log", doc=f"quality factor of peak {i}")))
        out.append(("high_shelf_hz", _freq_knob(8000.0, "high shelf corner")))
        out.append(("high_shelf_gain_db", _gain_knob("high shelf gain")))
        if self.lowpass:
            out.append(("lowpass_hz", _freq_knob(20000.0, "low-pass cut corner (12 dB/octave)")))
        return out

    def section_names(self) -> list[str]:
        """Names of the second-order sections, in processing order."""
        names = ["highpass"] if self.highpass else []
        names += ["low_shelf"] + [f"peak{i}" for i in range(1, self.n_peaks + 1)] + ["high_shelf"]
        return names + (["lowpass"] if self.lowpass else [])

    def sections(self, controls: dict[str, Tensor] | None = None) -> list[tuple[Tensor, Tensor]]:
        """(b, a) of every section, in processing order, for the given controls or the knobs."""
        if controls is None:
            controls = {k: self.knob_value(k) for k in self._knobs}
        sr = self.sample_rate
        zero = torch.zeros((), dtype=self.dtype, device=self.device)
        out = []
        for name in self.section_names():
            if name in ("highpass", "lowpass"):
                out.append(biquad_coefficients(name, controls[f"{name}_hz"], EQ_FIXED_Q, zero, sr))
            elif name in ("low_shelf", "high_shelf"):
                mode = name.replace("_", "")
                gain = controls[f"{name}_gain_db"]
                out.append(biquad_coefficients(mode, controls[f"{name}_hz"], EQ_FIXED_Q, gain, sr))
            else:
                out.append(
                    biquad_coefficients(
                        "peak", controls[f"{name}_hz"], controls[f"{name}_q"], controls[f"{name}_gain_db"], sr
                    )
                )
        return out

    def init_state(self, batch: int, channels: int) -> tuple[tuple[Tensor, Tensor], ...]:
        zeros = torch.zeros(batch, channels, 2, dtype=self.dtype, device=self.device)
        return tuple((zeros.clone(), zeros.clone()) for _ in self.section_names())

    def process(self, x: Tensor, controls: dict[str, Tensor], state: Any) -> tuple[Tensor, Any]:
        # one compiled pass over the cascade when static and gradient-free; else iir per section
        return sos_filter(x, self.kept_design(controls, self.sections, key=self.sample_rate), state)

    def frequency_response(self, freqs_hz: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(freqs_hz, magnitude in dB) of the current knobs: the product of the sections'
        responses; 512 log-spaced points by default."""
        if freqs_hz is None:
            freqs_hz = _default_freqs(self.sample_rate, self.dtype)
        h = None
        for b, a in self.sections():
            hs = frequency_response(b, a, freqs_hz, self.sample_rate)
            h = hs if h is None else h * hs
        return freqs_hz, _to_db(h)

    def options(self) -> dict[str, Any]:
        return {"n_peaks": self.n_peaks, "highpass": self.highpass, "lowpass": self.lowpass}


# ============================================================================ FIR


def _softplus_inverse(v: Tensor) -> Tensor:
    # softplus(r) = log(1 + e^r)  <=>  r = v + log(1 - e^-v)
    return v + torch.log(-torch.expm1(-v))


#: Smallest magnitude the learnable (softplus) parameter stores; 0 is written as this (-140 dB).
FIR_MIN_MAGNITUDE = 1e-7


@register
class FIR(Unit):
    """Time-varying linear-phase FIR filter designed by frequency sampling from band magnitudes
    (the filter of DDSP's filtered-noise synth, as an effect).

    ``n_bands`` linear magnitudes sample the amplitude response at frequencies spaced linearly
    from 0 Hz to Nyquist; :func:`dspfx.functional.fir_from_magnitudes` turns them into a
    symmetric, Hann-windowed impulse response of ``n_taps`` taps (inverse real FFT, rolled to be
    causal): linear phase, a delay of ``n_taps // 2`` samples (``latency_samples``).

    Options:
        n_bands: number of magnitude bands (>= 2, default 65).
        n_taps: impulse-response length (default ``2 * (n_bands - 1)``).
        window: ``"hann"`` (default) or ``"rectangular"``.
        magnitudes: initial magnitudes, ``n_bands`` numbers >= 0 (default all 1: a pure delay).
            The spec records the current magnitudes here, so ``dspfx.build(unit.spec())``
            renders like the unit.

    Controls (no scalar knobs):
        magnitudes: the learnable parameter ``raw_magnitudes`` (shape ``(n_bands,)``) mapped by
            softplus, so magnitudes stay >= 0 (0 is stored as 1e-7, -140 dB); read them with
            ``unit.magnitudes``, write with ``unit.set_magnitudes(values)``. A call
            ``unit(x, magnitudes=frames)`` overrides them with linear magnitudes >= 0 shaped
            ``(n_bands,)``, ``(batch|1, n_bands)`` or ``(batch|1, frames, n_bands)``; frames are
            on the block's causal hop grid like every control.

    Time variation: the impulse response at each sample is the linear interpolation of the two
    frames around it (the same linear upsampling as every control; the design is linear in the
    magnitudes, so this equals designing from the per-sample interpolated magnitudes). It is
    computed segment by segment with FFT convolutions (:func:`dspfx.functional.fir_filter`),
    not by overlap-add of input frames, so no output tail crosses a block boundary: the stream
    state is just the last ``n_taps - 1`` input samples. Streaming equals offline for static
    magnitudes; frames given to a block apply to that block.

    >>> fir = dspfx.make("fir", n_bands=65)
    >>> y = fir(x, magnitudes=mags)          # mags: (batch, frames, 65), linear, >= 0

    Reference: Engel et al., "DDSP: Differentiable Digital Signal Processing" (ICLR 2020),
    filtered noise (``ddsp.core.frequency_filter``: 65 bands, 128 Hann-windowed taps).
    """

    name = "fir"
    extra_controls = ("magnitudes",)
    category = "effect"

    def __init__(
        self,
        sample_rate: float = 48000,
        n_bands: int = 65,
        n_taps: int | None = None,
        window: str = "hann",
        magnitudes: Any = None,
        **knobs: Any,
    ) -> None:
        n_taps = fir_design_options("fir", n_bands, n_taps, window)
        self.n_bands = n_bands
        self.n_taps = n_taps
        self.window = window
        super().__init__(sample_rate, **knobs)  # FIR has no scalar knobs: any given is an error
        ones = torch.ones(n_bands, dtype=torch.float64)
        self.raw_magnitudes = nn.Parameter(_softplus_inverse(ones).to(self.dtype))
        if magnitudes is not None:
            self.set_magnitudes(magnitudes)

    # -- magnitudes ------------------------------------------------------------------------
    @property
    def magnitudes(self) -> Tensor:
        """The current linear band magnitudes, ``(n_bands,)``, differentiable (softplus of
        ``raw_magnitudes``)."""
        return TF.softplus(self.raw_magnitudes)

    def _check_magnitudes(self, values: Tensor, what: str) -> None:
        with torch.no_grad():
            if not torch.isfinite(values).all():
                raise ValueError(f"{what} must be finite")
            low = float(values.min()) if values.numel() else 0.0
        if low < 0.0:
            raise ValueError(f"{what} are linear amplitudes and must be >= 0, got a minimum of {low:g}")

    @torch.no_grad()
    def set_magnitudes(self, values: Any) -> FIR:
        """Write the band magnitudes (linear, >= 0, ``n_bands`` values); returns ``self``."""
        v = torch.as_tensor(values, dtype=torch.float64).detach().cpu()
        if v.shape != (self.n_bands,):
            raise ValueError(f"fir magnitudes must hold n_bands = {self.n_bands} values, got shape {tuple(v.shape)}")
        self._check_magnitudes(v, "fir magnitudes")
        raw = _softplus_inverse(v.clamp_min(FIR_MIN_MAGNITUDE))
        self.raw_magnitudes.copy_(raw.to(self.raw_magnitudes))
        return self

    def options(self) -> dict[str, Any]:
        raw = self._parameters.get("raw_magnitudes")  # absent while __init__ still runs
        mags = None if raw is None else [float(v) for v in TF.softplus(raw.detach().double()).cpu()]
        return {"n_bands": self.n_bands, "n_taps": self.n_taps, "window": self.window, "magnitudes": mags}

    # -- rendering -------------------------------------------------------------------------
    @property
    def latency_samples(self) -> int:
        return self.n_taps // 2

    def impulse_response(self, magnitudes: Tensor | None = None) -> Tensor:
        """Taps designed from ``magnitudes`` (``(..., n_bands)``), or from the unit's own."""
        mags = self.magnitudes if magnitudes is None else magnitudes
        return fir_from_magnitudes(mags, self.n_taps, self.window)

    def init_state(self, batch: int, channels: int) -> Tensor:
        return torch.zeros(batch, channels, self.n_taps - 1, dtype=self.dtype, device=self.device)


    def process(self, x: Tensor, controls: dict[str, Any], state: Any) -> tuple[Tensor, Any]:
        """``controls["magnitudes"]``, when the call gives it: frames on the block's causal hop
        grid, ``(batch|1, frames, n_bands)`` (or ``(n_bands,)``, ``(batch, n_bands)``)."""
        frames = controls.get("magnitudes")
        previous_taps = None
        if frames is not None:
            mags, previous = control_frames(
                frames, x.shape[0], dims=self.n_bands, name="fir.magnitudes", dtype=self.dtype, device=self.device
            )
            self._check_magnitudes(mags, "fir.magnitudes control values")
            if previous is not None:
                previous_taps = self.impulse_response(previous)
            elif mags.shape[1] > 1 and not (torch.is_grad_enabled() and mags.requires_grad):
                # constant frames: design once and convolve once (the time-varying path's
                # interpolation of equal frames gives the same response at every sample)
                if bool((mags == mags[:, :1]).all()):
                    mags = mags[:, :1]
        else:
            mags = self.magnitudes.reshape(1, 1, self.n_bands)
        return fir_filter(x, self.impulse_response(mags), state, previous=previous_taps)

    def frequency_response(self, freqs_hz: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(freqs_hz, magnitude in dB) of the current magnitudes' taps; 512 log-spaced points by
        default."""
        if freqs_hz is None:
            freqs_hz = _default_freqs(self.sample_rate, self.dtype)
        taps = self.impulse_response()
        one = torch.ones(1, dtype=taps.dtype, device=taps.device)
        return freqs_hz, _to_db(frequency_response(taps, one, freqs_hz, self.sample_rate))
