"""Tests of dspfx.ddsp.expression: the six note controls read back from signals made in code."""

from __future__ import annotations

import numpy as np
import pytest

from dspfx.ddsp.expression import CONTROL_NAMES, frame_analysis, note_controls
from dspfx.ddsp.midi import MidiNote

SR = 16000


def tone(seconds=1.5, f0=330.0, vibrato_st=0.0, rate=6.0, harmonics=(1.0, 0.5, 0.25), env_db=None, start=0.25):
    t = np.arange(int(SR * (seconds + 2 * start))) / SR
    midi = 12 * np.log2(f0 / 440) + 69 + vibrato_st * np.sin(2 * np.pi * rate * t)
    phase = 2 * np.pi * np.cumsum(440 * 2 ** ((midi - 69) / 12)) / SR
    y = sum(a * np.sin((k + 1) * phase) for k, a in enumerate(harmonics))
    gate = ((t >= start) & (t < start + seconds)).astype(float)
    gain = 10 ** ((env_db(t - start) if env_db else -12.0) / 20)
    return 0.3 * y * gate * gain, MidiNote(start, start + seconds, int(round(12 * np.log2(f0 / 440) + 69)), 100)


def controls(y, note):
    return dict(zip(CONTROL_NAMES, note_controls(y, SR, [note])[0]))


@pytest.mark.parametrize("extent", [0.2, 0.5, 1.0])
def test_vibrato_reads_the_extent_of_a_6_hz_modulation(extent):
    y, note = tone(vibrato_st=extent, f0=329.63)
    assert controls(y, note)["vibrato"] == pytest.approx(extent, rel=0.15)


def test_no_vibrato_outside_the_band_or_on_short_notes():
    y, note = tone(f0=329.63)
    assert controls(y, note)["vibrato"] < 0.02
    y, note = tone(f0=329.63, vibrato_st=0.5, rate=1.5)  # too slow: a pitch drift, not vibrato
    assert controls(y, note)["vibrato"] == 0.0
    y, note = tone(seconds=0.18, f0=329.63, vibrato_st=0.5)  # 45 frames
    assert controls(y, note)["vibrato"] == 0.0


def test_a_swell_reads_its_volume_fluctuation_and_peak_position():
    def swell(t):  # -40 dB rising to -10 at 70% of the note, falling back to -30
        return np.interp(t, [0.0, 1.05, 1.5], [-40.0, -10.0, -30.0])

    y, note = tone(env_db=swell, f0=220.0)
    c = controls(y, note)
    assert c["volume_peak_position"] == pytest.approx(0.7, abs=0.05)
    flat_y, flat_note = tone(f0=220.0)
    flat = controls(flat_y, flat_note)
    assert flat["volume_fluctuation"] < 1.0 < 5.0 < c["volume_fluctuation"]
    louder = controls(tone(f0=220.0, env_db=lambda t: -6.0 + 0 * t)[0], flat_note)
    assert louder["volume"] - flat["volume"] == pytest.approx(6.0, abs=0.3)  # loudness in dB follows gain


def test_brightness_is_the_harmonic_centroid():
    y, note = tone(harmonics=(1.0, 0.0, 1.0), f0=250.0)  # harmonics 1 and 3, equal: centroid 2
    assert controls(y, note)["brightness"] == pytest.approx(2.0, abs=0.1)
    dark = controls(*tone(harmonics=[1 / (k + 1) ** 2 for k in range(10)], f0=250.0))["brightness"]
    bright = controls(*tone(harmonics=[1 / (k + 1) ** 0.5 for k in range(10)], f0=250.0))["brightness"]
    assert 1.0 < dark < 2.0 < bright


def test_attack_noise_rises_with_a_noise_burst_at_the_onset():
    y, note = tone(f0=220.0)
    burst = y.copy()
    a = int(note.start_s * SR)
    burst[a: a + int(0.04 * SR)] += 0.05 * np.random.default_rng(0).standard_normal(int(0.04 * SR))
    clean, noisy = controls(y, note)["attack_noise"], controls(burst, note)["attack_noise"]
    assert noisy > clean + 15.0


def test_analysis_shapes_and_reuse():
    y, note = tone()
    a = frame_analysis(y, SR)
    assert a["harmonics"].shape == (a["f0_hz"].size, 20) and a["noise_db"].shape == a["f0_hz"].shape
    assert np.array_equal(note_controls(None, SR, [note], analysis=a), note_controls(y, SR, [note]))
    with pytest.raises(ValueError, match="finite"):
        frame_analysis(np.full(100, np.nan), SR)


def test_a_note_the_tracker_reads_an_octave_up_has_its_harmonics_read_at_the_written_pitch():
    """A written A3 sounding only its harmonics 2 and 4 (equal): the tracker hears A4, whose
    harmonics 1 and 2 give centroid 1.5; read against the note played, harmonics 2 and 4 give 3."""
    y, note = tone(harmonics=(0.0, 1.0, 0.0, 1.0), f0=220.0)
    blind = frame_analysis(y, SR)
    inside = slice(int((note.start_s + 0.1) * 250), int((note.end_s - 0.1) * 250))
    assert np.median(blind["f0_hz"][inside]) == pytest.approx(440.0, rel=0.02)  # the premise: an octave error
    i = CONTROL_NAMES.index("brightness")
    assert note_controls(None, SR, [note], analysis=blind)[0, i] == pytest.approx(1.5, abs=0.1)
    assert controls(y, note)["brightness"] == pytest.approx(3.0, abs=0.15)
