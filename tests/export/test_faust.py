"""Plugin export: the Faust program of a chain, built into an LV2 bundle by faust2lv2 (double
precision inside, float32 ports), renders what dspfx renders in float64, ESR <= 1e-9 (measured
2e-14; dspfx's own float32 render is 1.6e-6 from its float64 one on the EQ bank at random
settings), played with lv2file, at the knobs' values and at seeded random settings given as
control-port values; what cannot export is named."""

from __future__ import annotations

import copy
import shutil

import numpy as np
import pytest
import torch

import dspfx
from dspfx.export.faust import FAUST_UNITS, export_plugin, faust_code, plugin_controls
from dspfx.lv2 import render_lv2

SR = 48000
needs_toolchain = pytest.mark.skipif(
    shutil.which("faust2lv2") is None or shutil.which("lv2file") is None,
    reason="needs faust2lv2 and lv2file (Debian: faust g++ lv2-dev libboost-dev lv2file)",
)


def _serial() -> dspfx.Unit:
    """The bit crusher first (on the input itself: upstream rounding could move a sample across
    a quantisation step), then gains, drives, one-poles and a feedback delay in series."""
    return dspfx.Chain(
        crush=dspfx.make("bitcrush", bit_depth=6.0),
        trim=dspfx.make("trim", scale=0.8, dc=0.01), drive=dspfx.make("distortion", drive_db=12.0),
        clip=dspfx.make("clipping", threshold_db=-3.0), flip=dspfx.make("invert"),
        low=dspfx.make("one_pole", mode="lowpass", cutoff_hz=5000.0), high=dspfx.make("one_pole", mode="highpass", cutoff_hz=40.0),
        echo=dspfx.make("delay", delay_ms=7.3, feedback=0.6, mix=0.4), level=dspfx.make("gain", gain_db=-3.0),
    )


MODES = ("lowpass", "highpass", "bandpass", "notch", "allpass", "peak", "lowshelf", "highshelf")


def _eq() -> dspfx.Unit:
    """Every biquad and svf mode side by side (each branch with a gain), inside a dry/wet mix."""
    branches = {}
    for i, mode in enumerate(MODES):
        for kind in ("biquad", "svf"):
            branches[f"{kind}_{mode}"] = dspfx.make(kind, mode=mode, cutoff_hz=300.0 * (i + 1) * (1.3 if kind == "svf" else 1),
                                                    q=0.5 + 0.3 * i, gain_db=-6.0 + 2.0 * i)
    bank = dspfx.Parallel(gains=True, **branches)
    eq = dspfx.make("parametric_eq", n_peaks=2, highpass=True, lowpass=True, peak1_gain_db=-4.0, low_shelf_gain_db=3.0)
    return dspfx.Chain(eq=eq, bank=dspfx.DryWet(wet=bank, mix=0.7))


def _ladders() -> dspfx.Unit:
    """Every ladder mode, with JUCE's saturation table and with the exact tanh, side by side, and
    every tone-stack model (Bassman, JCM800, blackface), one with a warped bilinear transform."""
    from dspfx.functional.ladder import LADDER_MODES

    branches = {f"{sat}_{mode}": dspfx.make("ladder", mode=mode, saturation=sat, cutoff_hz=400.0 * (i + 1),
                                            resonance=0.15 * i, drive=1.0 + 1.5 * i)
                for i, mode in enumerate(LADDER_MODES) for sat in ("table", "tanh")}
    return dspfx.Parallel(gains=True, **branches,
                          bassman=dspfx.make("tonestack", model="bassman", treble=0.8, bass=0.3),
                          jcm800=dspfx.make("tonestack", model="jcm800", mid=0.2),
                          blackface=dspfx.make("tonestack", model="blackface", warp_hz=1000.0, treble=0.3))


def _dynamics() -> dspfx.Unit:
    """Compressors and expanders (peak and rms detectors, hard and soft knees), a noise gate and a
    limiter, side by side (in series, random settings of the expanders would silence the rest)."""
    return dspfx.Parallel(
        comp=dspfx.make("compressor", threshold_db=-20.0, ratio=4.0, attack_ms=2.0, release_ms=50.0),
        comp_rms=dspfx.make("compressor", detector="rms", threshold_db=-25.0, ratio=3.0, knee_db=6.0, makeup_db=4.0),
        exp=dspfx.make("expander", threshold_db=-30.0, ratio=2.0, knee_db=0.0),
        exp_rms=dspfx.make("expander", detector="rms", threshold_db=-35.0, ratio=3.0, knee_db=8.0),
        gate=dspfx.make("noise_gate", threshold_db=-30.0, ratio=5.0),
        limit=dspfx.make("limiter", threshold_db=-6.0, release_ms=50.0),
    )


def _cabinets() -> dspfx.Unit:
    """A parametric cabinet, an IR cabinet (its own response, 1024 taps), a convolution with a
    decaying noise response (normalised like pedalboard's) and the ``fir`` effect (taps designed
    from its band magnitudes), in series."""
    ir = torch.randn(512, generator=torch.Generator().manual_seed(3)) * torch.exp(-torch.arange(512) / 80.0)
    parametric = dspfx.make("cabinet", sample_rate=SR)
    return dspfx.Chain(cab=parametric, cab_ir=dspfx.make("cabinet", mode="ir", sample_rate=SR,
                                                         impulse_response=parametric.to_ir(1024).detach()),
                       room=dspfx.make("convolution", sample_rate=SR, impulse_response=ir, normalize=True, mix=0.6),
                       tilt=dspfx.make("fir", n_bands=33, magnitudes=torch.linspace(1.0, 0.2, 33).tolist()))


def _shapers() -> dspfx.Unit:
    """The three learnable curves side by side, with parameters moved off their initial values
    (as a fit leaves them), so the baked constants are the learned ones."""
    cheb = dspfx.make("static_nonlinearity", curve="chebyshev", order=6, input_gain_db=6.0, bias=0.1)
    mlp = dspfx.make("static_nonlinearity", curve="mlp", hidden=8, input_gain_db=3.0, bias=-0.2)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        cheb.coefficients.add_(0.2 * torch.randn(cheb.coefficients.shape, generator=g))
        for t in (mlp.w1, mlp.b1, mlp.w2, mlp.b2, mlp.w3, mlp.b3):
            t.add_(0.3 * torch.randn(t.shape, generator=g))
    bank = dspfx.make("waveshaper_fx", n_shapers=4, shaper="both", order=8, hidden=6, mix="learnable")
    with torch.no_grad():
        bank.mix_weights.mul_(torch.tensor([1.0, -0.5, 2.0, 0.3]))
    return dspfx.Parallel(gains=True, tanh=dspfx.make("static_nonlinearity", input_gain_db=12.0, bias=0.3),
                          cheb=cheb, mlp=mlp, newt=dspfx.make("waveshaper_fx"), newt_both=bank)


def _modulation() -> dspfx.Unit:
    """Chorus, flanger, vibrato (both LFO shapes) and phaser side by side; the chorus and the
    phaser with their default float32 LFO phase (pedalboard's, emulated in the plugin) and with
    the exact one; the echo with a fractional delay, with damping, and both."""
    return dspfx.Parallel(
        gains=True,
        chorus=dspfx.make("chorus", rate_hz=3.0, depth=0.5, centre_delay_ms=5.0, feedback=0.4, mix=0.6),
        chorus_exact=dspfx.make("chorus", float32_phase=False, rate_hz=1.3, centre_delay_ms=9.0, feedback=-0.3),
        flanger=dspfx.make("flanger", rate_hz=2.0, depth=0.7, centre_delay_ms=1.5, feedback=-0.6),
        flanger_tri=dspfx.make("flanger", shape="triangle", rate_hz=5.0, depth=0.4, centre_delay_ms=3.0),
        vibrato=dspfx.make("vibrato", rate_hz=7.0, depth_ms=2.0, centre_delay_ms=3.0),
        vibrato_tri=dspfx.make("vibrato", shape="triangle", rate_hz=4.0, depth_ms=4.0, centre_delay_ms=2.0),
        phaser=dspfx.make("phaser", rate_hz=6.0, depth=0.8, centre_frequency_hz=900.0, feedback=0.5, mix=0.7),
        phaser_exact=dspfx.make("phaser", pedalboard_lfo=False, n_stages=4, rate_hz=2.0, feedback=-0.4),
        echo_linear=dspfx.make("delay", interpolation="linear", delay_ms=7.37, feedback=0.6, mix=0.4),
        echo_damped=dspfx.make("delay", damping=True, damping_hz=2500.0, delay_ms=5.3, feedback=0.7),
        echo_tape=dspfx.make("delay", interpolation="linear", damping=True, damping_hz=900.0, delay_ms=11.11),
    )


def _reverbs() -> dspfx.Unit:
    """Freeverb (Jezar's, as dspfx and pedalboard compute it, not Faust's own), frozen too (no
    input reaches the combs); the feedback delay network with Jot's absorption, and one with a
    learned (moved) feedback matrix and no absorption; the noise reverb (its 0.05 s response,
    2400 taps, baked at its band decays and gains: a long direct FIR, blocks nested two deep)."""
    learned = dspfx.make("fdn_reverb", n_lines=6, learn_matrix=True, decay=False, mix=0.4)
    with torch.no_grad():
        learned.matrix_skew.add_(0.1 * torch.randn(6, 6, generator=torch.Generator().manual_seed(3)))
    return dspfx.Chain(gate=dspfx.make("noise_gate", threshold_db=-20.0, release_ms=5.0),
                       verb=dspfx.Parallel(gains=True, room=dspfx.make("reverb", room_size=0.8, damping=0.3, width=0.7),
                                           frozen=dspfx.make("reverb", freeze_mode=True),
                                           fdn=dspfx.make("fdn_reverb", rt60_low_s=1.5, rt60_high_s=0.5, mix=0.5),
                                           fdn_learned=learned,
                                           tail=dspfx.make("noise_reverb", n_bands=4, length_s=0.05, seed=2, mix=0.5,
                                                           decay1_s=0.1, decay4_s=0.05, gain2_db=-6.0)))


def _amp() -> dspfx.Unit:
    """The whole gray-box amp (preamp, tone stack, power amp with sag, output transformer with its
    hysteretic core, cabinet) and a trim: what ``dspfx capture --model graybox`` fits; beside it
    the blocks oversampled (a three-stage preamp with the cathode-bypass shelves at 2x, a
    single-ended power amp at 4x, a transformer at 2x), each delayed by its polyphase filters."""
    return dspfx.Parallel(
        gains=True,
        rig=dspfx.Chain(amp=dspfx.amps.amp(model="jcm800", sample_rate=SR), trim=dspfx.make("trim", scale=-0.7)),
        other=dspfx.Chain(
            pre=dspfx.make("preamp", n_stages=3, cathode_bypass=True, stage1_gain_db=25.0, oversample=2),
            power=dspfx.make("power_amp", topology="single_ended", master_db=6.0, bias=-0.1, oversample=4),
            core=dspfx.make("output_transformer", drive_db=9.0, hysteresis=0.5, oversample=2)),
    )


def _random_settings(unit: dspfx.Unit, seed: int) -> dict[str, float]:
    """Seeded knob values inside each knob's range (log knobs uniform in log), away from the
    ill-conditioned corners (cutoff 30 Hz .. 12 kHz, q 0.3 .. 8, an EQ's high-pass below its
    low-pass: float32 renders of a 30 Hz low-pass differ by ESR 6e-4, and an EQ that cuts
    everything leaves only rounding; a DC offset within 0.05 and a
    clip threshold above -20 dB: a near-constant signal clipped, then high-passed, leaves a
    residue of float32 rounding as large as the output itself; a ladder short of self-oscillation,
    resonance <= 0.9 and drive <= 10, where its loop is chaotic and any rounding grows))."""
    rng = np.random.default_rng(seed)
    values = {}
    for path, knob in unit.knob_table().items():
        low, high = knob.minimum, knob.maximum
        if path.endswith("highpass_hz"):  # a band-pass EQ, not one that cuts everything
            low, high = 20.0, 200.0
        elif path.endswith("lowpass_hz"):
            low, high = 4000.0, 16000.0
        elif path.endswith("rate_hz"):  # an LFO
            low, high = 0.1, 20.0
        elif path.endswith("_hz"):
            low, high = 30.0, 12000.0
        elif path.endswith("q"):
            low, high = 0.3, 8.0
        elif path.endswith("drive_db"):
            high = 30.0
        elif path.endswith(".dc"):
            low, high = -0.05, 0.05
        elif path.endswith("threshold_db"):
            low = -20.0
        elif path.endswith("delay_ms"):
            low, high = 1.0, 200.0  # within the 12000-sample render
        elif path.endswith("feedback"):
            high = 0.9
        elif path.endswith("resonance"):  # short of self-oscillation, where the loop is chaotic
            high = 0.9
        elif path.endswith(".drive"):
            high = 10.0
        elif path.endswith("ratio"):  # an expander at 100:1 turns noise into near-silence
            high = 8.0
        elif path.endswith("bit_depth"):  # below 2 bits the noise input mostly rounds to 0
            low, high = 2.0, 16.0
        low, high = max(low, knob.minimum), min(high, knob.maximum)  # the rules narrow, never widen
        u = rng.uniform()
        values[path] = float(np.exp(np.log(low) + u * (np.log(high) - np.log(low)))) if knob.scale == "log" else float(
            low + u * (high - low))
    return values


@needs_toolchain
@pytest.mark.parametrize("make", [_serial, _eq, _ladders, _dynamics, _cabinets, _shapers, _modulation, _reverbs, _amp],
                         ids=["serial", "eq", "ladders", "dynamics", "cabinets", "shapers", "modulation", "reverbs", "amp"])
def test_the_built_plugin_renders_what_dspfx_renders(make, tmp_path):
    unit = make()
    bundle = export_plugin(unit, tmp_path, name=f"test_{make.__name__.strip('_')}")
    uri = f"urn:dspfx:plugin/{bundle.stem}"
    x = 0.4 * torch.randn(1, 1, 12000, generator=torch.Generator().manual_seed(1))
    ports = plugin_controls(bundle)
    ignored = {f"bank.wet.{kind}_{m}.gain_db" for kind in ("biquad", "svf") for m in MODES[:5]}
    ignored |= {"verb.frozen.room_size", "verb.frozen.damping"}  # a frozen reverb's loop ignores them
    ignored |= {f"verb.fdn_learned.{key}" for key in ("rt60_low_s", "rt60_high_s", "crossover_hz")}  # decay=False
    ignored |= {f"verb.tail.{key}{k}{unit}" for key, unit in (("decay", "_s"), ("gain", "_db")) for k in range(1, 5)}  # baked
    assert set(ports) == set(unit.knob_table()) - ignored  # a port per knob the unit uses, named by its path
    for settings in (None, _random_settings(unit, 0), _random_settings(unit, 1)):
        controls = {}
        if settings is not None:
            settings = {path: value for path, value in settings.items() if path in ports}
            unit.set(**settings)
            controls = {ports[path]: value for path, value in settings.items() if path in ports}
        reference = copy.deepcopy(unit).double()
        # the plugin's ports are float32: render the values it sees (a fractional delay of
        # 7.37 ms is 5e-6 samples off at float32(7.37), ESR 4e-11 with feedback)
        reference.set(**{path: float(np.float32(value)) for path, value in unit.knobs().items()})
        with torch.no_grad():
            ours = reference(x.double())[0, 0].numpy()
        theirs = render_lv2(uri, x[0, 0], SR, controls=controls, host="lv2file", lv2_path=[tmp_path])[0]
        esr = float(np.sum((theirs - ours) ** 2) / np.sum(ours**2))
        assert esr <= 1e-9, (settings, esr)


@needs_toolchain
def test_the_knob_conditioned_amp_plays_its_front_panel_through_its_network_inside_the_plugin(tmp_path):
    from dspfx.amps.conditioned import KnobConditioned

    model = KnobConditioned(model="jcm800", sample_rate=SR, settings=("gain", "treble"), hidden=8,
                            conditioned=["preamp.stage1_gain_db", "tonestack.treble", "cabinet.lowpass_hz"],
                            defaults={"gain": 7.0})
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():  # a trained network (a new one's last layer is zero: no offsets)
        for p in model.net.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g))
    bundle = export_plugin(model, tmp_path, name="test_conditioned")
    ports = plugin_controls(bundle)
    # the front panel, and the chain's knobs the network does not move
    assert set(ports) == {"gain", "treble"} | (set(model.knob_table()) - {f"amp.{p}" for p in model.conditioned})
    x = 0.4 * torch.randn(1, 1, 12000, generator=torch.Generator().manual_seed(1))
    reference = copy.deepcopy(model).double()
    for settings in ({}, {"gain": 2.5, "treble": 8.0}, {"gain": 9.0, "treble": 1.0}):
        with torch.no_grad():
            ours = reference(x.double(), settings)[0, 0].numpy()
        theirs = render_lv2(f"urn:dspfx:plugin/{bundle.stem}", x[0, 0], SR, host="lv2file", lv2_path=[tmp_path],
                            controls={ports[k]: v for k, v in settings.items()})[0]
        esr = float(np.sum((theirs - ours) ** 2) / np.sum(ours**2))
        assert esr <= 1e-9, (settings, esr)


def test_the_faust_program_names_knobs_by_path_with_ranges_and_current_values():
    code = faust_code(dspfx.Chain(tone=dspfx.make("biquad", mode="lowshelf", cutoff_hz=200.0, gain_db=4.0)), name="eq")
    assert 'declare name "eq";' in code
    assert 'hslider("tone.cutoff_hz [unit:Hz] [scale:log]", 200.0, 20.0, 20000.0' in code
    assert 'hslider("tone.gain_db [unit:dB]", 4.0, -24.0, 24.0' in code


def test_what_cannot_be_exported_is_named(tmp_path):
    with pytest.raises(TypeError, match="write it as a .nam file"):
        faust_code(dspfx.Chain(amp=dspfx.make("wavenet", size="nano")))
    with pytest.raises(TypeError, match="is a synth .* play a DDSP instrument or a synth with `dspfx transfer` or `dspfx play`"):
        faust_code(dspfx.Chain(voice=dspfx.make("harmonic")))
    with pytest.raises(TypeError, match="only the hard clipping curve"):
        faust_code(dspfx.make("clipping", curve="soft"))
    with pytest.raises(ValueError, match="identifier"):
        faust_code(dspfx.make("gain"), name="my plugin")
    long_ir = dspfx.make("cabinet", mode="ir", impulse_response=torch.randn(32769) * 0.01)
    with pytest.raises(TypeError, match="32769 taps; a plugin writes at most 32768 as a direct FIR"):
        faust_code(long_ir)
    with pytest.raises(TypeError, match="96000 taps; .* a shorter length_s"):  # the noise reverb's default 2 s
        faust_code(dspfx.make("noise_reverb", n_bands=2))
    with pytest.raises(ValueError, match="format"):
        export_plugin(dspfx.make("gain"), tmp_path, format="vst3")
    assert "gain" in FAUST_UNITS and export_plugin(dspfx.make("gain"), tmp_path, format="faust").suffix == ".dsp"


def test_cli_export_writes_the_faust_program_and_names_errors_in_one_line(tmp_path, capsys):
    from dspfx import cli

    dspfx.save(dspfx.Chain(drive=dspfx.make("distortion"), level=dspfx.make("gain")), tmp_path / "my-rig.json")
    assert cli.main(["export", str(tmp_path / "my-rig.json"), "--format", "faust", "--out", str(tmp_path / "out")]) == 0
    assert 'declare name "my_rig";' in (tmp_path / "out" / "my_rig.dsp").read_text()
    dspfx.save(dspfx.make("noise_reverb", n_bands=2), tmp_path / "reverb.json")
    capsys.readouterr()
    assert cli.main(["export", str(tmp_path / "reverb.json"), "--format", "faust", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "96000 taps; a plugin writes at most 32768" in err
