"""Tests for dspfx.ddsp.features: loudness (A-weighted, power-averaged) and pitch (YIN/pYIN)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import dspfx.ddsp.features as F

SR = 16000
HOP = 64


def _sine(f: float, seconds: float = 0.5, amplitude: float = 1.0, sr: int = SR, phase: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return amplitude * np.sin(2 * np.pi * f * t + phase)


def _harmonic(f0: np.ndarray, sr: int = SR, n_harmonics: int = 8) -> np.ndarray:
    """Band-limited harmonic tone with a sample-wise f0 (1/k harmonic amplitudes)."""
    phase = 2 * np.pi * np.cumsum(f0) / sr
    out = np.zeros_like(f0)
    for k in range(1, n_harmonics + 1):
        out += np.where(k * f0 < sr / 2, np.sin(k * phase) / k, 0.0)
    return 0.3 * out


def _cents(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return 1200.0 * np.log2(np.asarray(a) / np.asarray(b))


# --- loudness ------------------------------------------------------------------------------------


def test_a_weighting_follows_iec_61672_and_its_table():
    """a_weighting_db is librosa's; checked here against the IEC 61672-1 formula and the
    standard's tabulated values (-19.1 dB at 100 Hz, -3.2 at 500, +1.2 at 2 kHz, -2.5 at 10 kHz)."""
    freqs = np.array([20.0, 100.0, 440.0, 1000.0, 3000.0, 7999.0])
    f2 = freqs**2
    r = 12194.0**2 * f2**2 / ((f2 + 20.6**2) * np.sqrt((f2 + 107.7**2) * (f2 + 737.9**2)) * (f2 + 12194.0**2))
    np.testing.assert_allclose(F.a_weighting_db(freqs), 20 * np.log10(r) + 2.0, atol=0.01)
    table = {100.0: -19.1, 500.0: -3.2, 2000.0: 1.2, 10000.0: -2.5}
    for f, expected in table.items():
        assert abs(float(F.a_weighting_db(f)) - expected) < 0.05, f
    assert abs(F.a_weighting_db(1000.0)) < 0.01  # 0 dB at 1 kHz by definition
    assert F.a_weighting_db(0.0, min_db=None) == -np.inf and F.a_weighting_db(0.0) == -80.0


@pytest.mark.parametrize("f", [440.0, 1000.0, 3000.0])
@pytest.mark.parametrize("amplitude", [1.0, 0.1])
def test_loudness_of_sine_matches_a_weighting(f, amplitude):
    x = torch.tensor(_sine(f, amplitude=amplitude), dtype=torch.float64)
    db = F.loudness_db(x, SR)
    expected = 20 * math.log10(amplitude) + float(F.a_weighting_db(f))
    interior = db[8:-8]  # frames whose window lies inside the signal
    assert torch.all((interior - expected).abs() < 0.1), (interior.min(), interior.max(), expected)


def test_loudness_reference_scales_with_sample_rate():
    """A 1 kHz full-scale sine reads 0 dB at any rate (n_fft scales with the rate)."""
    for sr in (22050, 48000):
        x = torch.tensor(_sine(1000.0, sr=sr))
        db = F.loudness_db(x, sr)
        assert db.shape[-1] == len(x) // F.hop_length(sr, 250)
        assert torch.all(db[8:-8].abs() < 0.1)


def test_loudness_doubling_adds_6_db_and_silence_is_floor():
    rng = np.random.default_rng(0)
    x = torch.tensor(0.05 * rng.standard_normal((2, 4000)))
    one, two = F.loudness_db(x, SR), F.loudness_db(2 * x, SR)
    torch.testing.assert_close(two - one, torch.full_like(one, 20 * math.log10(2)), atol=1e-6, rtol=0)
    silence = F.loudness_db(torch.zeros(4000), SR)
    assert torch.all(silence == -80.0)
    assert torch.all(F.loudness_db(torch.tensor(1e-6 * _sine(1000.0)), SR) == -80.0)


def test_loudness_averages_power_not_db():
    """Two sines of equal power at 1 kHz and 2 kHz: power average, not dB average."""
    x = _sine(1000.0, amplitude=0.5) + _sine(3000.0, amplitude=0.25)
    db = F.loudness_db(torch.tensor(x), SR)[8:-8]
    p = 0.5**2 * 10 ** (F.a_weighting_db(1000.0) / 10) + 0.25**2 * 10 ** (F.a_weighting_db(3000.0) / 10)
    assert torch.all((db - 10 * math.log10(p)).abs() < 0.1)


def test_loudness_shapes_and_frames():
    x = torch.randn(3, 1000, dtype=torch.float32)
    db = F.loudness_db(x, SR)
    assert db.shape == (3, 1000 // HOP) and db.dtype == torch.float32
    assert F.loudness_db(x[0], SR).shape == (1000 // HOP,)
    torch.testing.assert_close(F.loudness_db(x[1], SR), db[1])
    assert F.loudness_db(np.zeros(640), SR).shape == (10,)


def test_loudness_frame_centre_convention():
    """A click at sample i * hop is loudest in frame i."""
    x = torch.zeros(2048, dtype=torch.float64)
    x[10 * HOP] = 1.0
    assert int(F.loudness_db(x, SR).argmax()) == 10


def test_loudness_gradcheck():
    rng = np.random.default_rng(1)
    x = torch.tensor(0.3 * rng.standard_normal(256), requires_grad=True)
    assert torch.autograd.gradcheck(lambda a: F.loudness_db(a, SR, n_fft=128), (x,), eps=1e-6, atol=1e-5)


def test_loudness_bad_input():
    with pytest.raises(ValueError, match="NaN"):
        F.loudness_db(torch.tensor([0.0, float("nan")] * 100), SR)
    with pytest.raises(ValueError, match="at least one frame"):
        F.loudness_db(torch.zeros(10), SR)
    with pytest.raises(TypeError, match="torch.Tensor or numpy"):
        F.loudness_db([0.0] * 1000, SR)
    with pytest.raises(ValueError, match="positive"):
        F.loudness_db(torch.zeros(1000), -16000)


# --- pitch ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("f", [50.0, 82.4, 196.0, 440.0, 739.99, 1000.0])
def test_pitch_of_sine_within_10_cents(f):
    x = torch.tensor(_sine(f, seconds=0.4, amplitude=0.5))
    f0, conf = F.pitch(x, SR)
    assert f0.shape == conf.shape == (len(x) // HOP,)
    interior = slice(10, -10)
    assert np.abs(_cents(f0[interior].numpy(), f)).max() < 10.0
    assert conf[interior].min() > 0.9


def test_pitch_of_sine_float32_and_batch():
    x = torch.tensor(np.stack([_sine(110.0, 0.3), _sine(660.0, 0.3)]), dtype=torch.float32)
    f0, conf = F.pitch(x, SR)
    assert f0.shape == (2, x.shape[-1] // HOP) and f0.dtype == torch.float32
    assert np.abs(_cents(f0[0, 10:-10].numpy(), 110.0)).max() < 10
    assert np.abs(_cents(f0[1, 10:-10].numpy(), 660.0)).max() < 10
    single, _ = F.pitch(x[1], SR)
    torch.testing.assert_close(single, f0[1])


def test_pitch_frames_match_loudness():
    for n in (640, 1000, 4033):
        x = torch.tensor(_sine(300.0, seconds=n / SR))
        f0, conf = F.pitch(x, SR)
        assert f0.shape == conf.shape == F.loudness_db(x, SR).shape == (n // HOP,)


def test_pitch_tracks_vibrato_and_agrees_with_pyin():
    """Harmonic tone, 220 Hz with +-40 cents vibrato at 5 Hz and a glide: within 10 cents of the
    true f0 and of librosa.pyin on confident frames."""
    n = int(0.6 * SR)  # short: pyin is slow
    t = np.arange(n) / SR
    f0_true = 220.0 * 2 ** ((0.4 * np.sin(2 * np.pi * 5 * t) + 2.0 * t) / 12)
    x = torch.tensor(_harmonic(f0_true))
    f0, conf = F.pitch(x, SR)
    truth = f0_true[np.arange(len(f0)) * HOP]
    interior = slice(10, -10)
    err = _cents(f0.numpy(), truth)[interior]
    assert np.abs(err).max() < 10.0, np.abs(err).max()
    assert conf[interior].min() > 0.85
    f0_pyin, conf_pyin = F.pitch(x, SR, method="pyin")
    assert f0_pyin.shape == f0.shape
    # pyin's voiced probability of a clean tone is ~0.8-0.9 (its threshold spread); 0.5 is its
    # own voicing decision level
    confident = (conf_pyin.numpy() > 0.5) & (conf.numpy() > 0.85)
    assert confident.sum() > 0.8 * len(f0)
    diff = _cents(f0.numpy(), f0_pyin.numpy())[confident]
    assert np.abs(diff).max() < 10.0, np.abs(diff).max()  # pyin is quantised to 10-cent bins


def test_pitch_confidence_low_for_silence_and_noise():
    rng = np.random.default_rng(0)
    tone = _sine(330.0, seconds=0.5, amplitude=0.5)
    x = np.concatenate([np.zeros(4000), tone, 0.3 * rng.standard_normal(8000)])
    f0, conf = F.pitch(torch.tensor(x), SR)
    frames = np.arange(len(f0)) * HOP
    silent = frames < 4000 - 512
    voiced = (frames > 4000 + 512) & (frames < 12000 - 512)
    noisy = frames > 12000 + 512
    assert conf[silent].max() < 0.05
    assert conf[noisy].median() < 0.2
    assert conf[voiced].min() > 0.9
    assert np.all(np.isfinite(f0.numpy())) and f0.min() > 0
    assert np.abs(_cents(f0[voiced].numpy(), 330.0)).max() < 10


def test_pitch_bad_input():
    x = torch.tensor(_sine(440.0, 0.1))
    with pytest.raises(ValueError, match="NaN"):
        F.pitch(torch.where(torch.arange(len(x)) == 5, float("nan"), x), SR)
    with pytest.raises(ValueError, match="too low for fmax"):
        F.pitch(x, 8000, fmax=5000.0)
    with pytest.raises(ValueError, match="fmin"):
        F.pitch(x, SR, fmin=500.0, fmax=400.0)
    with pytest.raises(ValueError, match="unknown pitch method"):
        F.pitch(x, SR, method="swipe")
    with pytest.raises(ValueError, match="at least one frame"):
        F.pitch(x[:10], SR)
    with pytest.raises(ValueError, match="0-d"):
        F.pitch(torch.tensor(1.0), SR)
    with pytest.raises(ValueError, match="frame_length"):
        F.pitch(x, SR, frame_length=64)


def test_crepe_without_torchcrepe_says_what_to_install():
    try:
        import torchcrepe  # noqa: F401
    except Exception:
        pass
    else:  # pragma: no cover
        pytest.skip("torchcrepe is installed here")
    with pytest.raises(ImportError, match="pip install torchcrepe"):
        F.pitch(torch.tensor(_sine(440.0, 0.1)), SR, method="crepe")


def test_detect_notes():
    conf = np.r_[np.zeros(100), np.ones(200), np.zeros(100)]
    loud = np.r_[np.full(100, -80.0), np.full(200, -20.0), np.full(100, -80.0)]
    mask, ratio = F.detect_notes(loud, conf)
    assert mask[130:270].all() and not mask[:80].any() and not mask[320:].any()
    assert ratio.shape == (400,)
    with pytest.raises(ValueError, match="equal length"):
        F.detect_notes(loud, conf[:10])


def test_features_of_dspfx_harmonic_synth_round_trip():
    """features -> synth -> features: same frame count, and the f0 read back from the dspfx
    harmonic synth's render is the f0 it was driven with (vibrato +-30 cents at 5 Hz)."""
    import dspfx.synths.harmonic  # noqa: F401  (registers the unit)
    from dspfx import make

    frames = 100
    t = np.arange(frames) / 250.0
    f0_frames = torch.tensor(330.0 * 2 ** (0.3 / 12 * np.sin(2 * np.pi * 5 * t)))[None]
    synth = make("harmonic", sample_rate=SR, n_harmonics=20).double()
    with torch.no_grad():
        y = synth(f0_hz=f0_frames, amplitude=0.4)[0, 0]
    assert y.shape == (frames * HOP,)
    f0, conf = F.pitch(y, SR)
    loud = F.loudness_db(y, SR)
    assert f0.shape == loud.shape == (frames,)
    err = _cents(f0[10:-10].numpy(), f0_frames[0, 10:-10].numpy())
    assert np.abs(err).max() < 10.0, np.abs(err).max()
    assert conf[10:-10].min() > 0.85
