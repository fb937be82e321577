"""Full amp presets: preamp -> tone stack -> power amp -> output transformer -> cabinet."""

from __future__ import annotations

from typing import Any

from dspfx.amps.cabinet import Cabinet
from dspfx.amps.power_amp import PowerAmp
from dspfx.amps.preamp import Preamp
from dspfx.amps.tonestack import Tonestack
from dspfx.amps.transformer import OutputTransformer
from dspfx.chain import Chain

__all__ = ["amp", "AMP_MODELS", "FRONT_PANEL", "front_panel_controls", "set_front_panel"]

#: Front-panel knob -> (control path in the chain, physical value at 0, physical value at 10);
#: the map is linear in the physical unit (dB for gain/presence/master, pot rotation for the
#: tone stack).
FRONT_PANEL: dict[str, tuple[str, float, float]] = {
    "gain": ("preamp.stage1_gain_db", -6.0, 34.0),
    "bass": ("tonestack.bass", 0.0, 1.0),
    "mid": ("tonestack.mid", 0.0, 1.0),
    "treble": ("tonestack.treble", 0.0, 1.0),
    "presence": ("power_amp.presence_db", -6.0, 12.0),
    "master": ("power_amp.master_db", -30.0, 20.0),
}

#: Per-model starting points (block options and knob values). Voiced by ear from the circuits'
#: published topologies (not fitted): the Bassman's two mild stages and cathode-biased feel, the
#: JCM800's three cascaded stages with a bright cathode bypass, the blackface's clean headroom.
AMP_MODELS: dict[str, dict[str, Any]] = {
    "bassman": {
        "preamp": dict(n_stages=2, cathode_bypass=False, stage1_bias=0.15, stage2_bias=0.25, stage2_gain_db=10.0),
        "power_amp": dict(bias=0.15, sag=0.3, sag_release_ms=200.0, resonance_db=2.0),
        "transformer": dict(drive_db=3.0, hysteresis=0.3, low_hz=40.0, high_hz=12000.0),
        "cabinet": dict(resonance_hz=90.0, upper_mid_hz=2000.0, lowpass_hz=5000.0),
    },
    "jcm800": {
        "preamp": dict(
            n_stages=3, cathode_bypass=True, stage1_bias=0.2, stage2_bias=0.3, stage2_gain_db=18.0,
            stage3_gain_db=12.0, stage3_bias=0.1, stage1_hp_hz=150.0,
        ),
        "power_amp": dict(bias=0.05, sag=0.2, sag_release_ms=120.0, resonance_db=3.0),
        "transformer": dict(drive_db=6.0, hysteresis=0.3, low_hz=60.0, high_hz=10000.0),
        "cabinet": dict(resonance_hz=110.0, upper_mid_hz=2800.0, upper_mid_gain_db=6.0, lowpass_hz=4500.0),
    },
    "blackface": {
        "preamp": dict(n_stages=2, cathode_bypass=False, stage1_bias=0.05, stage2_bias=0.1, stage2_gain_db=6.0),
        "power_amp": dict(bias=0.25, sag=0.15, sag_release_ms=150.0),
        "transformer": dict(drive_db=0.0, hysteresis=0.2, low_hz=30.0, high_hz=14000.0),
        "cabinet": dict(resonance_hz=100.0, upper_mid_hz=2500.0, lowpass_hz=5500.0),
    },
}

_OPTIONS = {"preamp": ("n_stages", "cathode_bypass"), "power_amp": (), "transformer": (), "cabinet": ()}


def front_panel_controls(**settings: Any) -> dict[str, Any]:
    """Control paths and physical values for front-panel settings (0 .. 10).

    Args:
        **settings: any of ``gain``, ``bass``, ``mid``, ``treble``, ``presence``, ``master``,
            numbers or tensors (``(batch,)`` or ``(batch, frames)``) in ``[0, 10]``.

    Returns:
        ``{path: value}`` to pass to a chain made by :func:`amp` as controls
        (``chain(x, **front_panel_controls(gain=7))``); tensors stay differentiable.

    Raises:
        KeyError: an unknown knob (the message lists the valid ones); ValueError: a number
            outside ``[0, 10]``.
    """
    out = {}
    for key, value in settings.items():
        if key not in FRONT_PANEL:
            raise KeyError(f"amp: unknown front-panel knob {key!r}; valid: {', '.join(FRONT_PANEL)}")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and not 0.0 <= value <= 10.0:
            raise ValueError(f"amp: front-panel {key} must lie in 0 .. 10, got {value!r}")
        path, lo, hi = FRONT_PANEL[key]
        out[path] = lo + (hi - lo) * value / 10.0
    return out


def set_front_panel(chain: Chain, **settings: float) -> Chain:
    """Write front-panel settings (0 .. 10) into the knobs of a chain made by :func:`amp`."""
    for path, value in front_panel_controls(**settings).items():
        block, _, knob = path.partition(".")
        chain.units[block].set(**{knob: float(value)})
    return chain


def amp(
    model: str = "bassman",
    sample_rate: float = 48000,
    oversample: int = 1,
    gain: float = 5.0,
    bass: float = 5.0,
    mid: float = 5.0,
    treble: float = 5.0,
    presence: float = 5.0,
    master: float = 5.0,
) -> Chain:
    """A full guitar amp as a :class:`dspfx.Chain` of the amp blocks, named

    ``preamp`` (:class:`~dspfx.amps.preamp.Preamp`) -> ``tonestack``
    (:class:`~dspfx.amps.tonestack.Tonestack` of ``model``) -> ``power_amp``
    (:class:`~dspfx.amps.power_amp.PowerAmp`) -> ``transformer``
    (:class:`~dspfx.amps.transformer.OutputTransformer`) -> ``cabinet``
    (:class:`~dspfx.amps.cabinet.Cabinet`, parametric).

    Front-panel knobs (0 .. 10, see :data:`FRONT_PANEL`; linear in the physical unit):
    gain -> ``preamp.stage1_gain_db`` (-6 .. 34 dB); bass, mid, treble -> ``tonestack.bass``,
    ``.mid``, ``.treble`` (pot rotation 0 .. 1); presence -> ``power_amp.presence_db``
    (-6 .. 12 dB); master -> ``power_amp.master_db`` (-30 .. 20 dB). Every other knob of
    the blocks stays available by path (``"preamp.stage2_bias"``, ``"cabinet.lowpass_hz"``).

    Args:
        model: ``"bassman"``, ``"jcm800"`` or ``"blackface"`` (:data:`AMP_MODELS`: the tone
            stack's circuit and the blocks' starting voicing).
        sample_rate: Hz.
        oversample: 1, 2 or 4, for the three nonlinear blocks (each adds 51 samples of
            latency when > 1; ``chain.latency_samples`` says the total).
        gain, bass, mid, treble, presence, master: front-panel settings, 0 .. 10.

    Returns:
        the chain (spec/save/load like any chain).

    >>> rig = dspfx.amps.amp("jcm800", gain=8, treble=6)
    >>> y = rig(x, **front_panel_controls(master=7))   # from dspfx.amps.amp import front_panel_controls
    """
    if model not in AMP_MODELS:
        raise ValueError(f"amp: model must be one of {', '.join(AMP_MODELS)}; got {model!r}")
    voice = AMP_MODELS[model]
    pre = dict(voice["preamp"])
    pre_opts = {k: pre.pop(k) for k in _OPTIONS["preamp"] if k in pre}
    chain = Chain(
        preamp=Preamp(sample_rate, oversample=oversample, **pre_opts, **pre),
        tonestack=Tonestack(sample_rate, model=model),
        power_amp=PowerAmp(sample_rate, oversample=oversample, **voice["power_amp"]),
        transformer=OutputTransformer(sample_rate, oversample=oversample, **voice["transformer"]),
        cabinet=Cabinet(sample_rate, **voice["cabinet"]),
    )
    return set_front_panel(chain, gain=gain, bass=bass, mid=mid, treble=treble, presence=presence, master=master)
