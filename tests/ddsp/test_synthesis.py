"""The learned synthesis generator (dspfx.ddsp.synthesis): frame features of a line, a fit of a
known notes -> frames mapping, the file round trip, the bundled generators, and play with them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dspfx.ddsp.midi import MidiNote
from dspfx.ddsp.synthesis import (
    N_FRAME_FEATURES,
    SynthesisGenerator,
    bundled_synthesis,
    frame_features,
    train_synthesis,
)

FR = 250.0


def _controls(n, volume=-20.0):
    return {"volume": np.full(n, volume), "volume_fluctuation": np.zeros(n), "volume_peak_position": np.full(n, 0.3)}


def test_frame_features_place_each_frame_in_its_note():
    notes = [MidiNote(0.2, 0.6, 60, 64), MidiNote(1.0, 1.5, 72, 127)]
    f = frame_features(notes, _controls(2), 500)
    assert f.shape == (500, N_FRAME_FEATURES)
    t = np.arange(500) / FR
    inside = ((t >= 0.2) & (t < 0.6)) | ((t >= 1.0) & (t < 1.5))
    assert np.array_equal(f[:, 0] > 0, inside)
    i = int(0.3 * FR)  # 0.1 s into the first note, 0.3 s before its end
    assert f[i, 2] == pytest.approx(0.1, abs=1e-6) and f[i, 3] == pytest.approx(0.3, abs=1e-6)
    rest = int(0.8 * FR)  # between the notes: the next note's pitch, 0.2 s since the last offset
    assert f[rest, 1] == pytest.approx((72 - 60) / 24) and f[rest, 10] == pytest.approx(0.2, abs=1e-6)
    second = int(1.2 * FR)
    assert f[second, 8] == pytest.approx(1.0) and f[second, 9] == pytest.approx(0.4) and f[second, 11] == pytest.approx(1.0)
    assert f[i, 5] == pytest.approx(1.0)  # volume -20 dB -> (v + 40) / 20
    with pytest.raises(ValueError, match="one value per note \\(2\\)"):
        frame_features(notes, {**_controls(2), "volume": [1.0]}, 10)


def _phrase(seed, rate=50.0):
    """A line with a known expression, at 50 frames/s (a short sequence, a quick fit): the
    loudness falls 10 dB a second from the note's volume, -60 dB in rests; the pitch scoops up
    from half a semitone below, time constant 0.1 s."""
    rng = np.random.default_rng(seed)
    notes, t = [], 0.1
    for _ in range(6):
        length = rng.uniform(0.2, 0.6)
        notes.append(MidiNote(t, t + length, int(rng.integers(60, 72)), 90))
        t += length + rng.uniform(0.0, 0.2)
    controls = {**_controls(len(notes)), "volume": rng.uniform(-35.0, -10.0, len(notes))}
    frames = int((t + 0.2) * rate)
    x = frame_features(notes, controls, frames, rate)
    inside = x[:, 0] > 0
    onset = x[:, 2]
    volume = x[:, 5] * 20.0 - 40.0
    loud = np.where(inside, volume - 10.0 * onset, -60.0)
    dev = np.where(inside, -0.5 * np.exp(-onset / 0.1), 0.0)
    return x, np.stack([loud, dev], 1).astype(np.float32), inside.astype(np.float32)


def test_the_generator_learns_a_known_notes_to_frames_mapping():
    train = [_phrase(s) for s in range(24)]
    valid = [_phrase(100 + s) for s in range(4)]
    result = train_synthesis(train, valid, steps=200, hidden=24, batch_size=8, crop_frames=100, lr=1e-2, seed=0)
    assert result.steps == 200
    # measured: loudness 0.77 dB and deviation 0.006 semitone, against 14.7 dB and 0.097 for the mean
    assert result.loudness_l1_db < 2.0 and result.loudness_l1_db < 0.2 * result.mean_baseline[0], result
    assert result.deviation_l1_semitones < 0.25 * result.mean_baseline[1], result


def test_file_round_trip_and_a_wrong_file(tmp_path):
    gen = SynthesisGenerator(hidden=8, mean=[-30.0, 0.0], std=[10.0, 0.2])
    with torch.no_grad():
        for p in gen.parameters():
            p.add_(0.1)
    notes = [MidiNote(0.1, 0.5, 64, 90)]
    before = gen.frames(notes, _controls(1), 200)
    gen.save(tmp_path / "g.safetensors")
    after = SynthesisGenerator.load(tmp_path / "g.safetensors").frames(notes, _controls(1), 200)
    assert np.array_equal(before[0], after[0]) and np.array_equal(before[1], after[1])
    from dspfx.ddsp.generators import ExpressionGenerator

    ExpressionGenerator(8).save(tmp_path / "e.safetensors")
    with pytest.raises(ValueError, match="not a synthesis generator file"):
        SynthesisGenerator.load(tmp_path / "e.safetensors")


@pytest.mark.parametrize("name", ["violin", "flute", "trumpet", "tenor_sax"])
def test_bundled_generators_play_the_volume_asked(name):
    """A bundled instrument played through its synthesis generator: the frames differ from the
    rules', and the volume asked per note comes back out of the render (r > 0.95; measured
    0.98-1.00 on flute phrases)."""
    from dspfx.ddsp.expression import note_controls
    from dspfx.ddsp.play import play

    gen = bundled_synthesis(name)
    assert gen is not None
    rng = np.random.default_rng(3)
    notes = [MidiNote(0.2 + 0.7 * k, 0.8 + 0.7 * k, int(p), 90) for k, p in enumerate(rng.integers(62, 74, 6))]
    volumes = [-36.0, -16.0, -28.0, -12.0, -32.0, -22.0]
    learned, rate = play(notes, name, synthesis=gen, controls={"volume": volumes, "vibrato": 0.0}, playing_range=None)
    rules, _ = play(notes, name, controls={"volume": volumes, "vibrato": 0.0}, playing_range=None, synthesis=None)
    assert learned.shape == rules.shape and not torch.allclose(learned, rules)
    measured = note_controls(learned.numpy(), rate, notes)[:, 0]
    assert np.corrcoef(volumes, measured)[0, 1] > 0.95, measured


def test_cli_plays_with_the_learned_frames(tmp_path):
    import mido
    import soundfile as sf

    import dspfx
    from dspfx.cli import main

    mid, track, now = mido.MidiFile(type=0, ticks_per_beat=480), mido.MidiTrack(), 0
    for start, end, pitch in [(0.0, 0.5, 69), (0.5, 1.0, 72), (1.25, 2.0, 76)]:  # 960 ticks a second
        track.append(mido.Message("note_on", note=pitch, velocity=96, time=int(start * 960) - now))
        track.append(mido.Message("note_off", note=pitch, velocity=0, time=int((end - start) * 960)))
        now = int(end * 960)
    mid.tracks.append(track)
    src = tmp_path / "tune.mid"
    mid.save(str(src))
    assert main(["play", "flute", str(src), str(tmp_path / "a.wav"), "--frames", "learned"]) == 0
    y, _ = sf.read(str(tmp_path / "a.wav"), dtype="float32")
    learned, _ = dspfx.play(src, "flute")  # the default: a bundled instrument's generator
    rules, _ = dspfx.play(src, "flute", synthesis=None)
    assert np.allclose(learned.numpy(), y, atol=1e-6) and not np.allclose(rules.numpy(), y, atol=1e-3)
    assert main(["play", "flute", str(src), str(tmp_path / "r.wav"), "--frames", "rules"]) == 0
    assert np.allclose(rules.numpy(), sf.read(str(tmp_path / "r.wav"), dtype="float32")[0], atol=1e-6)


def test_the_subtractive_voice_refuses_a_synthesis_generator():
    from dspfx.ddsp.play import play

    gen = SynthesisGenerator(hidden=8)
    with pytest.raises(ValueError, match="subtractive voice plays the notes by its own envelopes"):
        play([MidiNote(0.0, 0.3, 60, 90)], "subtractive", synthesis=gen)


def test_conform_swell_gives_each_note_the_asked_fluctuation_and_peak():
    """Analytic: over a note's frames the conformed loudness has the asked std exactly, its
    mean unchanged and its loudest frame at the asked place; a flat curve becomes the swell."""
    from dspfx.ddsp.play import conform_swell

    rate = 250.0
    notes = [MidiNote(0.2, 1.0, 60, 90), MidiNote(1.2, 2.2, 62, 90), MidiNote(2.4, 3.0, 64, 90)]
    t = np.arange(int(3.4 * rate)) / rate
    loud = np.full(t.size, -70.0)
    for k, n in enumerate(notes[:2]):  # a learned-looking note: fast attack, slow decay, ripple
        inside = (t >= n.start_s) & (t < n.end_s)
        u = t[inside] - n.start_s
        loud[inside] = -20.0 - 12.0 * np.exp(-u / 0.02) - 4.0 * u + 0.5 * np.sin(2 * np.pi * 3 * u + k)
    loud[(t >= 2.4) & (t < 3.0)] = -25.0  # flat
    fluct, peak = np.array([3.0, 0.5, 4.0]), np.array([0.7, 0.2, 0.4])
    out = conform_swell(loud, notes, fluct, peak, rate)
    for k, n in enumerate(notes):
        s, e = int(round(n.start_s * rate)), int(round(n.end_s * rate))
        seg, before = out[s:e], loud[s:e]
        assert abs(seg.std() - fluct[k]) < 1e-9 and abs(seg.mean() - before.mean()) < 1e-9
        if fluct[k] >= 3.0:  # a swell that carries most of the movement sets the peak
            assert abs(np.argmax(seg) / (e - s - 1) - peak[k]) < 0.05, (k, np.argmax(seg) / (e - s - 1))
    assert np.array_equal(out[: int(0.2 * rate)], loud[: int(0.2 * rate)])  # rests untouched


def test_asked_swells_are_played_with_the_learned_frames():
    """Given by the caller, fluctuation and peak position shape the learned loudness (the
    render's peak lands within 0.15 of the asked place); predicted ones stay suggestions."""
    from dspfx.ddsp.expression import CONTROL_NAMES, note_controls
    from dspfx.ddsp.play import play

    notes = [MidiNote(0.1 + 0.9 * k, 0.9 + 0.9 * k, p, 90) for k, p in enumerate((67, 69, 72, 71))]
    peaks = [0.2, 0.8, 0.5, 0.75]
    asked = {"volume_fluctuation": 5.0, "volume_peak_position": peaks, "vibrato": 0.0}
    audio, rate = play(notes, "flute", controls=asked, playing_range=None)
    got = note_controls(audio.numpy(), rate, notes)[:, CONTROL_NAMES.index("volume_peak_position")]
    assert np.all(np.abs(got - peaks) < 0.15), got
    plain, _ = play(notes, "flute", controls={"vibrato": 0.0}, playing_range=None)
    assert not torch.allclose(plain, audio)


def test_a_long_line_runs_in_windows_with_every_frame_kept_once():
    """A memoryless GRU (update gate shut, no recurrent weights): the windowed run equals the
    whole-line run exactly, so the windows' offsets and the frames kept from each are right."""
    from dspfx.ddsp.synthesis import CONTEXT_FRAMES, WINDOW_FRAMES

    gen = SynthesisGenerator(hidden=8, mean=[-30.0, 0.0], std=[10.0, 0.2])
    h = gen.hidden
    with torch.no_grad():
        for name, p in gen.gru.named_parameters():
            p.normal_(0.0, 0.5, generator=torch.Generator().manual_seed(len(name)))
            if name.startswith("weight_hh"):
                p.zero_()
            if name.startswith("bias_ih"):
                p[h : 2 * h] = -100.0  # the update gate z = 0: h_t depends on x_t alone
            if name.startswith("bias_hh"):
                p.zero_()
    rng = np.random.default_rng(1)
    notes, t = [], 0.1
    while t < 16.0:  # 4000 frames and more: four or five windows
        length = rng.uniform(0.2, 0.8)
        notes.append(MidiNote(t, t + length, int(rng.integers(55, 80)), 90))
        t += length + rng.uniform(0.0, 0.3)
    frames = int((t + 0.3) * 250)
    assert frames > 3 * WINDOW_FRAMES + 2 * CONTEXT_FRAMES
    controls = _controls(len(notes))
    windowed = gen.frames(notes, controls, frames)
    with torch.no_grad():
        z = gen(torch.from_numpy(frame_features(notes, controls, frames))[None])[0] * gen.std + gen.mean
    whole = np.clip(z[:, 0].double().numpy(), -80.0, 0.0), np.clip(z[:, 1].double().numpy(), -2.0, 2.0)
    for a, b in zip(windowed, whole):
        assert a.shape == (frames,) and np.allclose(a, b, atol=1e-5)
