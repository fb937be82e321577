"""Capture-scale fitting: segments, held-out validation, capture checks, harmonic response,
transfer curves, the fit report picture and `dspfx fit`'s capture options."""

import json
import math
import warnings

import numpy as np
import pedalboard
import pytest
import torch

import dspfx
from dspfx.signals import guitar_di
from dspfx.fitting.capture import CaptureWarning, check_capture
from dspfx.fitting.fit import fit
from dspfx.fitting.probes import harmonic_response, transfer_curves

SR = 16000


def _gain_pair(seconds=1.0, early_db=-6.0, late_db=6.0, late_fraction=0.25):
    """A target made by a gain of ``early_db``, except its last part made with ``late_db``."""
    x = guitar_di(sample_rate=SR, duration_s=seconds, seed=2)
    n = x.shape[-1]
    cut = n - int(round(late_fraction * n))
    gains = torch.full((n,), 10 ** (early_db / 20))
    gains[cut:] = 10 ** (late_db / 20)
    return x, x * gains


def test_heldout_end_is_never_trained_on_and_metrics_are_measured_there():
    x, y = _gain_pair()
    unit = dspfx.make("gain", sample_rate=SR, gain_db=-20.0)  # below both: every step towards -6 helps
    shapes = []
    unit.register_forward_pre_hook(lambda mod, args: shapes.append(tuple(args[0].shape)))
    result = fit(unit, x, y, steps=60, lr=0.1, loss="esr", segment_s=0.05, batch_size=3, validation=0.25,
                 warmup_s=0.01, validate_every=1000, progress=False, align_latency=False)
    # trained on the first 75% only: the fitted gain is the early one, not a compromise (the
    # held-out loss, which selects the kept step, keeps improving up to there)
    assert result.knobs["gain_db"] == pytest.approx(-6.0, abs=0.15)  # held-out in training: about -2 dB
    n_heldout = int(round(0.25 * x.shape[-1]))
    assert result.heldout_samples == n_heldout
    # metrics are on the held-out end, where the target is rendered at +6 dB
    expected = (1 - 10 ** ((result.knobs["gain_db"] - 6.0) / 20)) ** 2
    assert result.metrics["esr"] == pytest.approx(expected, rel=1e-3)
    assert set(result.metrics) >= {"esr", "esr_pre_emphasis", "dc_error", "mrstft"}
    # the training renders were batches of short segments with their pre-roll, never the pair
    warm, seg = int(round(0.01 * SR)), int(round(0.05 * SR))
    assert shapes.count((3, 1, warm + seg)) == 60
    assert max(s[-1] for s in shapes) <= n_heldout + warm
    assert [step for step, _ in result.validation_history] == [0, 60]  # before the first, after the last step
    assert result.best_loss == pytest.approx(min(v for _, v in result.validation_history))


def test_segments_are_seeded_and_latency_is_found():
    x, y = _gain_pair(late_db=-6.0)  # one gain throughout
    y = torch.nn.functional.pad(y, (23, 0))[..., : x.shape[-1]]
    runs = [
        fit(dspfx.make("gain", sample_rate=SR), x, y, steps=15, lr=0.05, loss="esr", segment_s=0.05,
            batch_size=2, validation=0.2, seed=3, progress=False)
        for _ in range(2)
    ]
    assert runs[0].latency_samples == 23
    assert runs[0].loss_history == pytest.approx(runs[1].loss_history, rel=1e-6)
    assert runs[0].metrics["esr"] < runs[0].validation_history[0][1]  # it learned something


def test_validation_in_seconds_early_stopping_and_bad_options():
    x, y = _gain_pair(late_db=-6.0)
    result = fit(dspfx.make("gain", sample_rate=SR), x, y, steps=200, lr=0.5, schedule="constant", loss="esr",
                 validation=0.25, validate_every=1, patience=3, progress=False)
    assert len(result.loss_history) < 200  # stopped once the held-out loss stopped improving
    x2, y2 = _gain_pair(seconds=2.0, late_db=-6.0)
    assert fit(dspfx.make("gain", sample_rate=SR), x2, y2, steps=1, validation=1.0, loss="esr",
               progress=False).heldout_samples == SR  # >= 1: seconds
    with pytest.raises(ValueError, match="longer than the training part"):
        fit(dspfx.make("gain", sample_rate=SR), x, y, steps=1, segment_s=0.9, validation=0.5)
    with pytest.raises(ValueError, match="validation"):
        fit(dspfx.make("gain", sample_rate=SR), x, y, steps=1, validation=-1.0)
    with pytest.raises(ValueError, match="batch_size"):
        fit(dspfx.make("gain", sample_rate=SR), x, y, steps=1, segment_s=0.1, batch_size=0)


def test_weights_lr_trains_a_learned_ir_at_its_own_rate():
    sr = SR
    x = guitar_di(sample_rate=sr, duration_s=0.5, seed=1)
    h = torch.exp(-torch.arange(64) / 8.0) * torch.cos(torch.arange(64) * 0.7)
    y = torch.nn.functional.conv1d(torch.nn.functional.pad(x, (63, 0)), h.flip(-1).reshape(1, 1, -1))
    esrs = {}
    for weights_lr in (1e-5, 0.03):
        cab = dspfx.make("cabinet", sample_rate=sr, mode="ir", n_taps=64)
        result = fit(cab, x, y, steps=150, lr=0.05, weights_lr=weights_lr, loss="esr", segment_s=0.05, batch_size=4,
                     validation=0.2, progress=False, align_latency=False)
        esrs[weights_lr] = result.metrics["esr"]
    assert esrs[0.03] < 1e-2 < 0.3 < esrs[1e-5]  # the taps moved at their own rate


# -- check_capture -----------------------------------------------------------------------------
def _clean_pair():
    x = guitar_di(sample_rate=SR, duration_s=1.0, seed=4)
    board = pedalboard.Pedalboard([pedalboard.Distortion(drive_db=20.0), pedalboard.LowpassFilter(4000.0)])
    return x, torch.from_numpy(board(x[0].numpy(), SR)).unsqueeze(0)


def test_a_clean_capture_passes_without_warnings():
    x, y = _clean_pair()
    with warnings.catch_warnings():
        warnings.simplefilter("error", CaptureWarning)
        report = check_capture(x, y, SR)
    assert report.warnings == [] and abs(report.latency_samples) <= 1  # the low-pass's group delay
    assert report.clipped_fraction == {"di": 0.0, "target": 0.0}


def test_capture_errors_name_the_problem():
    x, y = _clean_pair()
    with pytest.raises(ValueError, match=r"lengths differ.*trim"):
        check_capture(x, y[..., :-100], SR)
    with pytest.warns(CaptureWarning, match="trimmed"):
        report = check_capture(x, y[..., :-100], SR, trim=True)
    assert report.di.shape[-1] == report.target.shape[-1] == x.shape[-1] - 100
    with pytest.raises(ValueError, match=r"44100.*48000"):
        check_capture(x, y, 44100, 48000)
    with pytest.raises(ValueError, match="input \\(DI\\) is silent"):
        check_capture(torch.zeros_like(x), y, SR)
    with pytest.raises(ValueError, match="target is silent"):
        check_capture(x, torch.zeros_like(y), SR)
    bad = y.clone()
    bad[..., 7] = float("inf")
    with pytest.raises(ValueError, match="non-finite"):
        check_capture(x, bad, SR)
    # fit runs the same checks
    with pytest.raises(ValueError, match="silent"):
        fit(dspfx.make("gain", sample_rate=SR), torch.zeros_like(x), y, steps=1)


def test_capture_warnings_for_clipping_dc_and_latency():
    x, y = _clean_pair()
    clipped = (y * (1.0 / 0.3)).clamp(-1.0, 1.0)  # a recording that hit the converter's full scale
    true_fraction = float((clipped.abs() >= 1.0).float().mean())
    with pytest.warns(CaptureWarning, match="target is clipped") as record:
        report = check_capture(x, clipped, SR)
    assert report.clipped_fraction["target"] == pytest.approx(true_fraction, rel=0.1)
    assert f"{100 * report.clipped_fraction['target']:.3g}%" in str(record[0].message)
    with warnings.catch_warnings():  # a hard-clipping pedal at -10 dBFS: its own sound, no warning
        warnings.simplefilter("error", CaptureWarning)
        report = check_capture(x, y.clamp(-0.3, 0.3), SR)
    assert report.clipped_fraction["target"] > 0.01
    with pytest.warns(CaptureWarning, match="di is clipped"):
        check_capture(x.clamp(-0.2, 0.2), y, SR)
    with pytest.warns(CaptureWarning, match="DC offset"):
        report = check_capture(x + 0.05, y, SR)
    assert report.dc_offset["di"] == pytest.approx(0.05, abs=1e-3)
    late = torch.nn.functional.pad(y, (int(0.2 * SR), 0))[..., : y.shape[-1]]
    with pytest.warns(CaptureWarning, match="latency"):
        report = check_capture(x, late, SR)
    assert report.latency_samples == pytest.approx(int(0.2 * SR), abs=1)


# -- harmonic response and transfer curves -----------------------------------------------------
def test_harmonic_response_of_a_quadratic_curve_is_analytic():
    a = 0.3
    levels = [-20.0, -6.0, 0.0]
    h = harmonic_response(lambda x: x + a * x**2, 1000.0, levels, 8, sample_rate=48000)
    assert h.shape == (3, 8)
    for i, level in enumerate(levels):
        amplitude = 10 ** (level / 20)
        assert h[i, 0] == pytest.approx(level, abs=1e-3)  # the fundamental passes unchanged
        assert h[i, 1] == pytest.approx(20 * math.log10(a * amplitude**2 / 2), abs=1e-3)  # a A^2 / 2
        assert np.all(h[i, 2:] < -120)  # nothing above the 2nd


def test_harmonic_response_of_units_plugins_and_nyquist():
    gain = dspfx.make("gain", sample_rate=SR, gain_db=-6.0)
    h = harmonic_response(gain, 500.0, [-10.0], 4)
    assert h[0, 0] == pytest.approx(-16.0, abs=1e-3)
    hp = harmonic_response(pedalboard.Gain(gain_db=-6.0), 500.0, [-10.0], 4, sample_rate=SR)
    assert hp[0, 0] == pytest.approx(-16.0, abs=1e-3)
    # a symmetric curve (pedalboard's tanh distortion) makes no even harmonics
    dist = harmonic_response(pedalboard.Distortion(drive_db=20.0), 500.0, [-10.0], 4, sample_rate=SR)
    assert dist[0, 2] > -40 and dist[0, 1] < -100 and dist[0, 3] < -100
    high = harmonic_response(gain, 3000.0, [0.0], 4)
    assert np.isnan(high[0, 2:]).all() and np.isfinite(high[0, :2]).all()  # 9 kHz and up > Nyquist
    with pytest.raises(ValueError, match="sample_rate"):
        harmonic_response(lambda x: x, 100.0, [0.0])


def test_transfer_curves_of_a_gain_are_lines():
    gain = dspfx.make("gain", sample_rate=SR, gain_db=-6.0)
    curves = transfer_curves(gain, [-20.0, 0.0], f_hz=50.0)
    g = 10 ** (-6 / 20)
    for (x, y), level in zip(curves, [-20.0, 0.0]):
        assert x.size == SR // 50
        assert np.max(np.abs(x)) == pytest.approx(10 ** (level / 20), rel=1e-3)
        assert np.max(np.abs(y - g * x)) < 1e-6


def test_fit_report_picture(tmp_path):
    from dspfx.plot import fit_report

    x, y = _clean_pair()
    unit = dspfx.make("distortion", sample_rate=SR, drive_db=20.0)
    levels = [-20.0, 0.0]
    path = fit_report(tmp_path / "r.png", target=y, prediction=unit(x).detach(), sample_rate=SR,
                      harmonic_levels_db=levels, harmonics_db=harmonic_response(unit, 200.0, levels),
                      reference_harmonics_db=harmonic_response(pedalboard.Distortion(drive_db=20.0), 200.0, levels,
                                                               sample_rate=SR),
                      transfer=transfer_curves(unit, levels), transfer_levels_db=levels,
                      loss_history=[1.0, 0.5, 0.2], validation_history=[(0, 1.0), (2, 0.3)])
    assert path.stat().st_size > 10_000
    with pytest.raises(ValueError, match="harmonic_levels_db"):
        fit_report(tmp_path / "bad.png", target=y, prediction=y, sample_rate=SR, harmonics_db=np.zeros((2, 8)))


def test_average_spectrum_reads_a_full_scale_sine_at_0_db():
    from matplotlib.figure import Figure

    from dspfx.plot import average_spectrum

    t = np.arange(SR) / SR
    ax = Figure().subplots()
    (line,) = average_spectrum(ax, {"sine": np.sin(2 * np.pi * 1000.0 * t)}, SR)
    f, db = line.get_data()
    assert f[np.argmax(db)] == pytest.approx(1000.0, abs=SR / 4096)
    assert np.max(db) == pytest.approx(0.0, abs=0.2)  # Hann scalloping is under 1.5 dB, here on a bin


# -- the command line --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def capture_files(tmp_path_factory):
    from dspfx.io import write_audio

    d = tmp_path_factory.mktemp("fitcap")
    x, y = _clean_pair()
    write_audio(d / "di.wav", x[0], SR)
    write_audio(d / "amp.wav", y[0], SR)
    write_audio(d / "short.wav", y[0, :, :-50], SR)
    write_audio(d / "amp44.wav", y[0], 44100)
    chain = dspfx.Chain(drive=dspfx.make("distortion", sample_rate=SR),
                        tone=dspfx.make("biquad", sample_rate=SR, mode="lowpass"))
    dspfx.save(chain, d / "start.json")
    return d


def test_cli_fit_with_segments_and_validation(capture_files, capsys):
    from dspfx.cli import main

    d = capture_files
    out = d / "out"
    code = main(["fit", str(d / "start.json"), str(d / "di.wav"), str(d / "amp.wav"), "--out", str(out),
                 "--steps", "20", "--segment", "0.1", "--batch", "2", "--validation", "0.25", "--quiet"])
    assert code == 0, capsys.readouterr().err
    record = json.loads((out / "fit.json").read_text())
    assert record["metrics_on"] == "held-out"
    assert record["heldout_samples"] == int(round(0.25 * SR))
    assert {"esr", "esr_pre_emphasis", "dc_error", "mrstft"} <= set(record["metrics"])
    assert abs(record["latency_samples"]) <= 1 and "latency_ms" in record
    assert record["settings"]["segment_s"] == 0.1 and record["settings"]["batch_size"] == 2
    assert len(record["harmonics"]["harmonics_db"]) == 4
    assert (out / "report.png").stat().st_size > 10_000
    assert "held-out" in capsys.readouterr().out


def test_cli_fit_capture_errors(capture_files, capsys):
    from dspfx.cli import main

    d = capture_files
    args = ["--out", str(d / "bad"), "--steps", "2", "--quiet"]
    assert main(["fit", str(d / "start.json"), str(d / "di.wav"), str(d / "short.wav"), *args]) == 2
    err = capsys.readouterr().err
    assert "lengths differ" in err and "--trim" in err
    assert main(["fit", str(d / "start.json"), str(d / "di.wav"), str(d / "short.wav"), *args, "--trim"]) == 0
    assert "trimmed" in capsys.readouterr().err
    assert main(["fit", str(d / "start.json"), str(d / "di.wav"), str(d / "amp44.wav"), *args]) == 2
    err = capsys.readouterr().err
    assert "16000" in err and "44100" in err
