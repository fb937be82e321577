"""Tests of dspfx.ddsp.shaping: the frames reshaped so that a render plays the controls asked
of it (the end-to-end checks through an instrument are in test_play.py)."""

from __future__ import annotations

import numpy as np
import pytest

from dspfx.ddsp.shaping import soften_onsets


def _legato():
    """A note after silence (frames 10..40), a legato one (40..70), a short one after a gap (80..88)."""
    loud = np.full(100, -80.0)
    loud[10:70] = -20.0
    loud[80:88] = -26.0
    return loud, [(10, 40), (40, 70), (80, 88)]


def test_no_length_leaves_the_frames():
    loud, spans = _legato()
    assert np.array_equal(soften_onsets(loud, spans, np.zeros(3, dtype=int)), loud)


def test_a_dip_falls_into_each_onset_and_rises_out_of_it():
    loud, spans = _legato()
    out = soften_onsets(loud, spans, np.array([0, 6, 0]))
    # the legato note rises over its first 6 frames, the previous note falls over its last 6
    assert np.all(np.diff(out[40:46]) > 0) and np.all(out[40:46] < loud[40:46])
    assert np.all(np.diff(out[34:40]) < 0) and np.all(out[34:40] < loud[34:40])
    assert out[39] == pytest.approx(out[40])  # symmetric about the onset
    # the dips are raised cosines in amplitude
    rise = 0.5 - 0.5 * np.cos(np.pi * np.arange(1, 7) / 7)
    assert np.allclose(out[40:46], loud[40:46] + 20 * np.log10(rise))
    # a note with no length asked keeps its onset; frames outside every span are untouched
    assert np.array_equal(out[80:100], loud[80:100]) and np.array_equal(out[:10], loud[:10])


def test_each_note_keeps_its_mean_loudness():
    loud, spans = _legato()
    out = soften_onsets(loud, spans, np.array([4, 6, 2]))
    for a, b in spans:
        assert out[a:b].mean() == pytest.approx(loud[a:b].mean(), abs=1e-9)
    # made up by the undipped frames, which rise
    assert out[20] > loud[20] and out[60] > loud[60]


def test_dips_are_bounded_by_the_note_and_the_previous_note():
    loud, spans = _legato()
    out = soften_onsets(loud, spans, np.array([0, 0, 25]))
    # the short note (8 frames) rises over at most half of itself
    assert np.all(np.diff(out[80:84]) > 0) and np.allclose(out[84:88], out[84])
    # before it is a gap of silence: nothing to fall, and nothing below -80 dB
    assert np.array_equal(out[70:80], loud[70:80]) and out.min() >= -80.0
    # a long dip on the first note of a line cannot reach before the start
    out = soften_onsets(loud, spans, np.array([25, 25, 0]))
    assert np.array_equal(out[:10], loud[:10])
    # nor a legato note's before the previous note's start: 25 frames back from 40 is 15, inside
    # the first note (10..40); the first note's own rise covers 10..25
    assert np.all(out[15:25] < loud[15:25])


def test_the_made_up_level_stops_at_full_scale():
    loud = np.full(40, -1.0)
    out = soften_onsets(loud, [(0, 20), (20, 40)], np.array([0, 10]))
    assert out.max() <= 0.0
