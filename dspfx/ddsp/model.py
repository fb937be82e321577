"""The DDSP model: a recurrent decoder turning f0 and loudness into controls of a
harmonic-plus-noise synth (with a learned reverb), offline and block by block.

- :class:`Decoder`: magenta/ddsp's ``RnnFcDecoder`` (per-input MLP stacks, GRU, MLP, output
  splits), sizes configurable, presets ``"full"`` (about 4.8M parameters) and ``"tiny"``
  (about 0.23M).
- :class:`DDSPModel`: decoder + synth, a container unit (registered as ``ddsp``);
  ``model(f0_hz, loudness_db) -> audio``; ``dspfx.Stream(model)`` renders block by block (GRU
  state, the previous frame's controls, synth phase, noise filter and reverb state carried)
  and equals the offline render; ``dspfx.save`` / ``dspfx.load`` like any unit.
- :func:`spectral_loss`: DDSP's multi-scale spectral loss.

Control timing is that of every dspfx control (:mod:`dspfx.functional.control`): the decoder
gives one set of controls per feature frame; frame ``i``'s values are reached at sample ``(i +
1) * hop - 1`` and approached linearly from frame ``i - 1``'s over the ``hop`` samples before
(frame ``-1`` repeats frame 0 at the start): one hop of control latency. The synth's own units
do the upsampling (the harmonic unit its controls, the filtered noise its per-frame responses).

Reference: Engel, Hantrakul, Gu & Roberts, "DDSP: Differentiable Digital Signal Processing",
ICLR 2020; magenta/ddsp v3 (``RnnFcDecoder``, ``exp_sigmoid``, ``SpectralLoss``).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from dspfx.chain import Chain, Container, Parallel, build
from dspfx.effects.convolution import Convolution
from dspfx.functional.control import Frames, split_frames
from dspfx.functional.conversions import hz_to_midi
from dspfx.registry import register
from dspfx.synths.harmonic import Harmonic
from dspfx.synths.noise import FilteredNoise
from dspfx.unit import Unit

__all__ = [
    "MODEL_FORMAT",
    "PRESETS",
    "exp_sigmoid",
    "spectral_loss",
    "Decoder",
    "DDSPModel",
    "default_synth",
    "convert_legacy",
]

#: ``format`` in the metadata of a model file of the earlier layout (converted on read).
MODEL_FORMAT = "dspfx.ddsp_model/1"

#: Decoder presets: MLP layers per stack, their width, GRU size.
PRESETS: dict[str, dict[str, int]] = {
    "full": {"mlp_layers": 3, "mlp_units": 512, "gru_units": 512},
    "tiny": {"mlp_layers": 0, "mlp_units": 512, "gru_units": 256},
}


def exp_sigmoid(x: Tensor, exponent: float = 10.0, max_value: float = 2.0, threshold: float = 1e-7) -> Tensor:
    """DDSP's output nonlinearity: ``max_value * sigmoid(x) ** ln(exponent) + threshold``."""
    return max_value * torch.sigmoid(x) ** math.log(exponent) + threshold


def spectral_loss(
    prediction: Tensor,
    target: Tensor,
    fft_sizes: tuple[int, ...] = (2048, 1024, 512, 256, 128, 64),
    overlap: float = 0.75,
    mag_weight: float = 1.0,
    logmag_weight: float = 1.0,
) -> Tensor:
    """DDSP's multi-scale spectral loss (``ddsp.losses.SpectralLoss``).

    For each FFT size: magnitude STFT (Hann window, hop ``size * (1 - overlap)``, centred frames
    zero-padded at the ends) of both signals; ``mag_weight * mean|S_t - S_p| + logmag_weight *
    mean|log(S_t + 1e-5) - log(S_p + 1e-5)|``; summed over sizes (DDSP's defaults: 2048 .. 64,
    75% overlap; triple the sizes at 48 kHz).

    Args:
        prediction, target: ``(batch, channels, samples)`` or ``(batch, samples)``, same shape.

    Returns:
        0-d tensor, differentiable.
    """
    if not isinstance(prediction, Tensor) or not isinstance(target, Tensor):
        raise TypeError("spectral_loss takes two tensors (prediction, target)")
    if prediction.shape != target.shape:
        raise ValueError(f"prediction {tuple(prediction.shape)} and target {tuple(target.shape)} differ in shape")
    p = prediction.reshape(-1, prediction.shape[-1])
    t = target.reshape(-1, target.shape[-1])
    total = p.new_zeros(())
    for size in fft_sizes:
        hop = max(1, int(size * (1.0 - overlap)))
        window = torch.hann_window(size, dtype=p.dtype, device=p.device)
        kw = dict(n_fft=size, hop_length=hop, window=window, center=True, pad_mode="constant", return_complex=True)
        sp = torch.stft(p, **kw).abs()
        st = torch.stft(t, **kw).abs()
        if mag_weight:
            total = total + mag_weight * (st - sp).abs().mean()
        if logmag_weight:
            total = total + logmag_weight * (torch.log(st + 1e-5) - torch.log(sp + 1e-5)).abs().mean()
    return total


def _mlp(in_features: int, units: int, layers: int) -> tuple[nn.Module, int]:
    """DDSP's fc stack: (Dense -> LayerNorm -> LeakyReLU) x layers; identity when layers == 0."""
    if layers == 0:
        return nn.Identity(), in_features
    mods: list[nn.Module] = []
    for i in range(layers):
        mods += [nn.Linear(in_features if i == 0 else units, units), nn.LayerNorm(units), nn.LeakyReLU()]
    return nn.Sequential(*mods), units


class Decoder(nn.Module):
    """DDSP's ``RnnFcDecoder``: f0 and loudness per frame -> synth controls per frame.

    ``f0`` is scaled to ``midi / 127`` and loudness to ``dB / 80 + 1``; each goes through its
    own MLP stack (Dense -> LayerNorm -> LeakyReLU, ``mlp_layers`` deep, ``mlp_units`` wide;
    none for the tiny preset), the two are concatenated, run through a GRU (``gru_units``),
    concatenated again with the stacks' outputs, through an output MLP stack, and a final Linear
    split into the controls:

    - ``amplitude`` ``(batch, frames)``: ``exp_sigmoid`` with max 1 (DDSP uses 2; the
      ``harmonic`` unit's amplitude knob spans 0 .. 1),
    - ``harmonic_distribution`` ``(batch, frames, n_harmonics)``: ``exp_sigmoid`` (the synth
      renormalises it),
    - ``noise_magnitudes`` ``(batch, frames, n_bands)``: ``exp_sigmoid(x - 5)``.

    Args:
        n_harmonics: harmonic distribution size (default 60).
        n_bands: noise magnitudes (default 65).
        preset: ``"tiny"`` (no MLP layers, GRU 256: about 0.23M parameters) or ``"full"`` (3
            layers of 512, GRU 512: about 4.8M); explicit sizes override it.
        mlp_layers, mlp_units, gru_units: sizes.

    >>> decoder = Decoder(preset="tiny")
    >>> controls, state = decoder(f0_hz, loudness_db)   # (batch, frames) each

    Reference: magenta/ddsp ``ddsp.training.decoders.RnnFcDecoder``.
    """

    def __init__(
        self,
        n_harmonics: int = 60,
        n_bands: int = 65,
        preset: str = "tiny",
        *,
        mlp_layers: int | None = None,
        mlp_units: int | None = None,
        gru_units: int | None = None,
    ) -> None:
        super().__init__()
        if preset not in PRESETS:
            raise ValueError(f"unknown decoder preset {preset!r}; expected one of {sorted(PRESETS)}")
        sizes = dict(PRESETS[preset])
        for key, value in (("mlp_layers", mlp_layers), ("mlp_units", mlp_units), ("gru_units", gru_units)):
            if value is not None:
                sizes[key] = value
        for key, value in [("n_harmonics", n_harmonics), ("n_bands", n_bands), *sizes.items()]:
            low = 0 if key == "mlp_layers" else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"Decoder: {key} must be an int >= {low}, got {value!r}")
        self.n_harmonics, self.n_bands, self.preset = n_harmonics, n_bands, preset
        self.mlp_layers, self.mlp_units, self.gru_units = sizes["mlp_layers"], sizes["mlp_units"], sizes["gru_units"]
        self.f0_stack, w_f0 = _mlp(1, self.mlp_units, self.mlp_layers)
        self.loudness_stack, w_ld = _mlp(1, self.mlp_units, self.mlp_layers)
        self.gru = nn.GRU(w_f0 + w_ld, self.gru_units, batch_first=True)
        self.out_stack, w_out = _mlp(w_f0 + w_ld + self.gru_units, self.mlp_units, self.mlp_layers)
        self.dense_out = nn.Linear(w_out, 1 + n_harmonics + n_bands)

    def harmonic_prior(self, rolloff: float = 1.0) -> Decoder:
        """Start the harmonic distribution at a ``1 / k ** rolloff`` spectrum (a sawtooth for 1)
        instead of the flat one an untrained decoder gives, whatever its input: the output
        layer's harmonic rows get that bias and a tenth of their weights. Returns ``self``.

        Why: from the flat start, a model of a nearly sinusoidal instrument can let the noise
        branch take the spectrum and never recover the harmonics (MuseScore General's flute:
        f0 L1 9.8 semitones after 2800 steps, the render mostly noise; with this prior, 0.04
        after 400). :func:`dspfx.ddsp.trainer.train` applies it to every new model.
        """
        if not rolloff >= 0:
            raise ValueError(f"rolloff must be >= 0, got {rolloff}")
        k = torch.arange(1, self.n_harmonics + 1, dtype=torch.float64)
        # exp_sigmoid(b) = 2 * sigmoid(b) ** ln 10 = 1 / k ** rolloff
        p = (0.5 / k**rolloff) ** (1.0 / math.log(10.0))
        rows = slice(1, 1 + self.n_harmonics)
        with torch.no_grad():
            self.dense_out.weight[rows] *= 0.1
            self.dense_out.bias[rows] = torch.log(p / (1.0 - p)).to(self.dense_out.bias.dtype)
        return self

    def config(self) -> dict[str, Any]:
        """JSON-safe constructor arguments."""
        return {
            "n_harmonics": self.n_harmonics, "n_bands": self.n_bands, "preset": self.preset,
            "mlp_layers": self.mlp_layers, "mlp_units": self.mlp_units, "gru_units": self.gru_units,
        }

    def init_state(self, batch: int) -> Tensor:
        """Initial GRU state ``(1, batch, gru_units)`` (zeros)."""
        ref = self.dense_out.weight
        return torch.zeros(1, batch, self.gru_units, dtype=ref.dtype, device=ref.device)

    def forward(
        self, f0_hz: Tensor, loudness_db: Tensor, state: Tensor | None = None
    ) -> tuple[dict[str, Tensor], Tensor]:
        """Controls for ``(batch, frames)`` f0 (Hz) and loudness (dB), from GRU ``state``
        (None: zeros). Returns ``(controls, state)``; running consecutive blocks with the
        returned state equals one call over all frames."""
        f0_hz, loudness_db = _check_features(f0_hz, loudness_db)
        ref = self.dense_out.weight
        f0_hz = f0_hz.to(ref.dtype)
        loudness_db = loudness_db.to(ref.dtype)
        f0 = self.f0_stack((hz_to_midi(f0_hz) / 127.0).unsqueeze(-1))
        ld = self.loudness_stack((loudness_db / 80.0 + 1.0).unsqueeze(-1))
        inputs = torch.cat([f0, ld], dim=-1)
        if state is None:
            state = self.init_state(f0_hz.shape[0])
        x, state = self.gru(inputs, state)
        x = self.out_stack(torch.cat([inputs, x], dim=-1))
        x = self.dense_out(x)
        amp, harm, noise = torch.split(x, [1, self.n_harmonics, self.n_bands], dim=-1)
        controls = {
            "amplitude": exp_sigmoid(amp[..., 0], max_value=1.0).clamp(max=1.0),
            "harmonic_distribution": exp_sigmoid(harm),
            "noise_magnitudes": exp_sigmoid(noise - 5.0),
        }
        return controls, state


def _check_features(f0_hz: Any, loudness_db: Any) -> tuple[Tensor, Tensor]:
    for name, value in (("f0_hz", f0_hz), ("loudness_db", loudness_db)):
        if not isinstance(value, Tensor) or not value.is_floating_point():
            raise TypeError(f"{name} must be a floating tensor shaped (batch, frames), got {type(value).__name__}")
        if value.ndim != 2 or value.shape[-1] == 0:
            raise ValueError(f"{name} must be shaped (batch, frames) with frames >= 1, got {tuple(value.shape)}")
    if f0_hz.shape != loudness_db.shape:
        raise ValueError(f"f0_hz {tuple(f0_hz.shape)} and loudness_db {tuple(loudness_db.shape)} must have one shape")
    return f0_hz, loudness_db


def default_synth(
    sample_rate: int = 16000, n_harmonics: int = 60, n_bands: int = 65, reverb_s: float | None = 1.0, seed: int = 0
) -> Unit:
    """DDSP's synth as a dspfx chain: ``Parallel(harmonic, noise)`` (as
    :func:`dspfx.synths.harmonic_plus_noise`) followed by a learned convolution reverb of
    ``reverb_s`` seconds starting as the identity (``init="impulse"``: the dry path is tap 0,
    learned like the tail), or no reverb when ``reverb_s`` is None."""
    source = Parallel(
        harmonic=Harmonic(sample_rate=sample_rate, n_harmonics=n_harmonics),
        noise=FilteredNoise(sample_rate=sample_rate, n_bands=n_bands, seed=seed),
    )
    if reverb_s is None:
        return Chain(synth=source)
    if not reverb_s > 0:
        raise ValueError(f"reverb_s must be a positive number of seconds or None, got {reverb_s!r}")
    reverb = Convolution(sample_rate=sample_rate, n_taps=max(1, int(round(reverb_s * sample_rate))),
                         normalize=False, init="impulse")
    return Chain(synth=source, reverb=reverb)


def _split_synth(synth: Unit) -> tuple[Parallel, Harmonic, FilteredNoise, list[tuple[str, Unit]]]:
    """The source (Parallel of harmonic + noise) and the effects after it."""
    effects: list[tuple[str, Unit]] = []
    source = synth
    if isinstance(synth, Chain):
        items = list(synth.units.items())
        source = items[0][1]
        effects = items[1:]
    ok = isinstance(source, Parallel) and set(source.units) == {"harmonic", "noise"}
    if ok:
        harmonic, noise = source.units["harmonic"], source.units["noise"]
        ok = isinstance(harmonic, Harmonic) and isinstance(noise, FilteredNoise)
    if not ok or any(u.is_synth for _, u in effects):
        raise ValueError(
            "DDSPModel needs a harmonic-plus-noise synth: Parallel(harmonic=Harmonic, noise=FilteredNoise), "
            f"alone or first in a Chain followed by effects (e.g. a reverb); got {type(synth).__name__} "
            f"with spec units {_spec_names(synth.spec())}"
        )
    if noise.seed is None:
        raise ValueError(
            "DDSPModel needs a seeded FilteredNoise (seed=int) so that streaming and offline renders agree"
        )
    return source, harmonic, noise, effects


def _spec_names(spec: dict[str, Any]) -> list[str]:
    out = [spec.get("unit", "?")]
    for child in spec.get("children", {}).values():
        out += _spec_names(child)
    return out


@register
class DDSPModel(Container):
    """DDSP timbre model: a recurrent decoder that plays a harmonic-plus-noise synth.

    A container unit (like the knob-conditioned amp): its child ``synth`` is a dspfx unit,
    ``Parallel(harmonic=Harmonic, noise=FilteredNoise)`` alone or first in a ``Chain`` followed
    by effects (default :func:`default_synth`: a learned convolution reverb); the
    :class:`Decoder` turns f0 and loudness per frame into the synth's controls, handed to its
    units' own ``process()`` on the causal hop grid of every dspfx control (frame ``i`` reached
    at sample ``(i + 1) hop - 1``; the GRU state and the previous frame's controls are carried in
    the state, so ``dspfx.Stream`` renders block by block exactly as offline). It saves with
    ``dspfx.save`` (safetensors + JSON spec) and loads with ``dspfx.load``; files of the earlier
    format (``dspfx.ddsp_model/1``) are converted on read.

    ``audio = model(f0_hz, loudness_db)``: ``(batch, frames)`` features at ``frame_rate``
    (``hop = sample_rate / frame_rate`` samples per frame) -> ``(batch, 1, frames * hop)``.
    Controls by path reach the synth (``model(f0, loud, **{"synth.reverb.mix": 0.2})``).
    Two optional ``(batch, frames)`` controls shape the decoder's output before the synth plays
    it (:func:`dspfx.ddsp.play` uses them for MIDI-DDSP's brightness and attack noise):
    ``harmonic_tilt`` multiplies harmonic ``k``'s weight by ``k ** -tilt`` (positive: darker;
    the harmonic synth renormalises the distribution, so the level stays) and ``noise_gain_db``
    scales the filtered noise.

    Args:
        sample_rate: Hz (default 16000).
        frame_rate: feature frames per second (default 250: hop 64 at 16 kHz); ``sample_rate /
            frame_rate`` must be an integer.
        n_harmonics, n_bands: control sizes (default 60, 65).
        preset: decoder preset (``"tiny"`` default, or ``"full"``); ``decoder``: extra
            :class:`Decoder` keyword arguments (``mlp_layers``, ``mlp_units``, ``gru_units``).
        reverb_s: learned reverb length in seconds for the default synth (default 1.0; DDSP: 3).
        synth: a dspfx unit or a spec dict (``unit.spec()``) replacing the default synth; its
            harmonic/noise sizes must match ``n_harmonics`` / ``n_bands``.
        stats: dataset statistics (``dspfx.ddsp.data.load_stats``), kept in the model file for
            timbre transfer.

    >>> model = DDSPModel(preset="tiny")
    >>> audio = model(f0_hz, loudness_db)          # (batch, frames) -> (batch, 1, frames * 64)
    >>> stream = dspfx.Stream(model)
    >>> block = stream(f0_hz=f0_block, loudness_db=loudness_block)

    Reference: Engel et al., "DDSP", ICLR 2020 (``Autoencoder`` without encoder, RnnFcDecoder,
    Harmonic + FilteredNoise + Reverb).
    """

    name = "ddsp"
    category = "synth"
    is_synth = True
    extra_controls = ("f0_hz", "loudness_db", "harmonic_tilt", "noise_gain_db")
    #: the GRU carries the features' past: a stream's previous block is not needed; the shaping
    #: controls act on the decoder's frames, which carry their own previous frame
    unframed_controls = ("f0_hz", "loudness_db", "harmonic_tilt", "noise_gain_db")

    def __init__(
        self,
        sample_rate: int = 16000,
        frame_rate: float = 250.0,
        n_harmonics: int = 60,
        n_bands: int = 65,
        preset: str = "tiny",
        *,
        decoder: dict[str, Any] | None = None,
        reverb_s: float | None = 1.0,
        synth: Unit | dict[str, Any] | None = None,
        stats: dict[str, Any] | None = None,
    ) -> None:
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate <= 0:
            raise ValueError(f"sample_rate must be a positive int (Hz), got {sample_rate!r}")
        hop = sample_rate / float(frame_rate)
        if not frame_rate > 0 or abs(hop - round(hop)) > 1e-9 or round(hop) < 1:
            raise ValueError(
                f"sample_rate / frame_rate must be a whole number of samples, got {sample_rate} / {frame_rate}"
            )
        if synth is None:
            synth = default_synth(sample_rate, n_harmonics, n_bands, reverb_s)
        elif isinstance(synth, dict):
            synth = build(synth)
        if not isinstance(synth, Unit):
            raise TypeError(f"synth must be a dspfx Unit or a spec dict, got {type(synth).__name__}")
        if synth.sample_rate != sample_rate:
            raise ValueError(f"synth renders at {synth.sample_rate} Hz but the model at {sample_rate} Hz")
        _, harmonic, noise, _ = _split_synth(synth)
        if harmonic.n_harmonics != n_harmonics or noise.n_bands != n_bands:
            raise ValueError(
                f"synth has {harmonic.n_harmonics} harmonics and {noise.n_bands} noise bands; the decoder "
                f"makes {n_harmonics} and {n_bands}"
            )
        super().__init__({"synth": synth})
        self.frame_rate, self.hop = float(frame_rate), int(round(hop))
        self.decoder = Decoder(n_harmonics, n_bands, preset, **(decoder or {}))
        self.stats = stats
        self._paths = _synth_paths(synth)

    @property
    def synth(self) -> Unit:
        """The synth unit the decoder plays."""
        return self.units["synth"]

    # -- configuration ---------------------------------------------------------------------------
    def options(self) -> dict[str, Any]:
        d = self.decoder.config()
        n_harmonics, n_bands, preset = d.pop("n_harmonics"), d.pop("n_bands"), d.pop("preset")
        return {"frame_rate": self.frame_rate, "n_harmonics": n_harmonics, "n_bands": n_bands, "preset": preset,
                "decoder": d, "stats": self.stats}

    @classmethod
    def _from_children(cls, children: dict[str, Unit], options: dict[str, Any]) -> Unit:
        if set(children) != {"synth"}:
            raise ValueError(f"ddsp spec needs exactly one child named 'synth', got {sorted(children)}")
        synth = children["synth"]
        return cls(synth.sample_rate, synth=synth, **options)

    def config(self) -> dict[str, Any]:
        """JSON-safe description from which :meth:`from_config` rebuilds the model (fresh weights)."""
        return {"sample_rate": self.sample_rate, **self.options(), "synth": self.synth.spec()}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> DDSPModel:
        """Build a model (fresh weights) from :meth:`config`."""
        return cls(
            config["sample_rate"], config["frame_rate"], config["n_harmonics"], config["n_bands"], config["preset"],
            decoder=config.get("decoder"), synth=config["synth"], stats=config.get("stats"),
        )

    # -- rendering -------------------------------------------------------------------------------
    def init_state(self, batch: int, channels: int = 1) -> dict[str, Any]:
        """GRU state, the previous frame's controls (None before the first block), synth states."""
        return {"gru": self.decoder.init_state(batch), "previous": None, "synth": self.synth.init_state(batch, 1)}

    def default_length(self, controls: Mapping[str, Any]) -> int:
        f0 = controls.get("f0_hz")
        if not isinstance(f0, Tensor) or f0.ndim != 2:
            raise ValueError(f"{self.label}: give f0_hz and loudness_db shaped (batch, frames)")
        return int(f0.shape[-1]) * self.hop

    def forward(self, f0_hz: Tensor | None = None, loudness_db: Tensor | None = None, **controls: Any) -> Tensor:
        """Render ``(batch, frames)`` f0 (Hz) and loudness (dB) to ``(batch, 1, frames * hop)`` audio."""
        f0_hz, loudness_db = _check_features(f0_hz, loudness_db)
        return super().forward(None, f0_hz=f0_hz, loudness_db=loudness_db, **controls)

    def render_block(self, x: Tensor | None, controls: Mapping[str, Any], state: Any,
                     n_samples: int | None = None) -> tuple[Tensor, Any]:
        """One block of frames from ``state``: the decoder's controls for the block go to the
        synth's units as frames on the causal grid, starting from the previous block's."""
        if x is not None:
            raise TypeError(f"{self.label} is a synth: it renders from f0_hz and loudness_db, not from input audio")
        own, per_child = self.split_controls(controls)
        f0_hz, loudness_db = _check_features(split_frames(own.get("f0_hz"))[0], split_frames(own.get("loudness_db"))[0])
        n = f0_hz.shape[-1] * self.hop
        if n_samples is not None and n_samples != n:
            raise ValueError(f"{self.label}: {f0_hz.shape[-1]} frames render {n} samples, not n_samples={n_samples}")
        out, gru = self.decoder(f0_hz, loudness_db, state["gru"])
        knob = self._paths["harmonic"].knob_specs["f0_hz"]
        ref = self.decoder.dense_out.weight
        current = {
            "f0_hz": f0_hz.to(ref.dtype).clamp(knob.minimum, knob.maximum),
            "amplitude": out["amplitude"],
            "harmonic_distribution": out["harmonic_distribution"],
            "magnitudes": out["noise_magnitudes"],
        }
        tilt, gain_db = (self._shaping(own, key, f0_hz) for key in ("harmonic_tilt", "noise_gain_db"))
        if tilt is not None:
            k = torch.arange(1, self.decoder.n_harmonics + 1, dtype=ref.dtype, device=ref.device)
            current["harmonic_distribution"] = current["harmonic_distribution"] * torch.exp(-tilt * torch.log(k))
        if gain_db is not None:
            current["magnitudes"] = current["magnitudes"] * torch.pow(10.0, gain_db / 20.0)
        previous = state["previous"]
        synth_controls = dict(per_child.get("synth", {}))
        for key, value in current.items():
            path = self._paths[key]
            synth_controls[path] = value if previous is None else Frames(value, previous[key])
        y, synth_state = self.synth.render_block(None, synth_controls, state["synth"], n_samples=n)
        new_state = {"gru": gru, "previous": {k: v[:, -1:] for k, v in current.items()}, "synth": synth_state}
        return y, new_state

    def _shaping(self, own: Mapping[str, Any], key: str, f0_hz: Tensor) -> Tensor | None:
        """A shaping control (``harmonic_tilt``, ``noise_gain_db``) as ``(batch, frames, 1)``, or None."""
        value = split_frames(own.get(key))[0]
        if value is None:
            return None
        if not isinstance(value, Tensor) or value.shape != f0_hz.shape:
            raise ValueError(f"{self.label}: {key} must be a tensor shaped like f0_hz {tuple(f0_hz.shape)}, got "
                             f"{tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__}")
        return value.to(self.decoder.dense_out.weight.dtype).unsqueeze(-1)

    # -- files -----------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """``dspfx.save(self, path)``: one ``.safetensors`` file (spec in the metadata, every
        learned tensor, decoder weights included)."""
        from dspfx.io import save

        return save(self, path)

    @classmethod
    def load(cls, path: str | os.PathLike, *, device: str | torch.device | None = None) -> DDSPModel:
        """``dspfx.load(path)``, checked to hold a DDSP model (files of the earlier
        ``dspfx.ddsp_model/1`` format are converted on read).

        Raises:
            FileNotFoundError: no file. ValueError: not a safetensors file, a file of another
            kind (e.g. a chain of effects, a training checkpoint), or weights that do not match
            the stored configuration.
        """
        from dspfx.io import load

        model = load(path, device=device)
        if not isinstance(model, DDSPModel):
            raise ValueError(f"{path} holds a {model.label!r} unit, not a DDSP model (a dspfx chain file: load it with dspfx.load)")
        return model


def _synth_paths(synth: Unit) -> dict[str, Any]:
    """Control paths in ``synth`` of what the decoder drives, and the harmonic unit itself."""
    prefix = ""
    if isinstance(synth, Chain):
        prefix = next(iter(synth.units)) + "."
    _, harmonic, _, _ = _split_synth(synth)
    return {
        "f0_hz": f"{prefix}harmonic.f0_hz",
        "amplitude": f"{prefix}harmonic.amplitude",
        "harmonic_distribution": f"{prefix}harmonic.harmonic_distribution",
        "magnitudes": f"{prefix}noise.magnitudes",
        "harmonic": harmonic,
    }


def convert_legacy(tensors: dict[str, Tensor], metadata: dict[str, str], path: Any) -> DDSPModel:
    """A model from a file of the earlier ``dspfx.ddsp_model/1`` format (its config in the
    metadata; the synth's tensors under ``synth.``, now ``units.synth.``)."""
    model = DDSPModel.from_config(json.loads(metadata["config"]))
    renamed = {("units." + k if k.startswith("synth.") else k): v for k, v in tensors.items()}
    expected = set(model.state_dict())
    if set(renamed) != expected:
        missing, extra = sorted(expected - set(renamed))[:5], sorted(set(renamed) - expected)[:5]
        raise ValueError(f"{path}: weights do not match its configuration (missing {missing}, unexpected {extra})")
    model.load_state_dict(renamed)
    return model
