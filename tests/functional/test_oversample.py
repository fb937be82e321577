"""Polyphase oversampling: aliasing reduction, filter specs, latency, streaming, gradients."""

import numpy as np
import pytest
import scipy.signal
import torch

from dspfx.functional.oversample import (
    PASSBAND_RIPPLE_DB,
    STOPBAND_DB,
    downsample,
    init_oversample_state,
    oversample_latency,
    oversample_taps,
    oversampled,
    upsample,
)

SR = 48000
DRIVE = 10 ** (30 / 20)  # +30 dB


def _aliasing_db(y, n_fft=4800):
    """Energy at non-harmonic bins below 20 kHz relative to the harmonics of 5 kHz (dB)."""
    seg = y[0, 0, -n_fft:].numpy()  # 500 whole periods of 5 kHz: no window needed
    power = np.abs(np.fft.rfft(seg)) ** 2
    f = np.fft.rfftfreq(n_fft, 1 / SR)
    harmonic = np.round(f) % 5000 == 0
    alias = (~harmonic) & (f < 20000)
    return 10 * np.log10(power[alias].sum() / power[harmonic].sum())


def _sine(n=9600, amp=0.5, f=5000.0):
    t = torch.arange(n, dtype=torch.float64) / SR
    return (amp * torch.sin(2 * np.pi * f * t)).view(1, 1, -1)


def test_oversampling_lowers_aliasing_of_a_driven_sine():
    x = _sine()
    drive = lambda v: torch.tanh(DRIVE * v)  # noqa: E731
    base = _aliasing_db(oversampled(drive, x, 1)[0])
    two = _aliasing_db(oversampled(drive, x, 2)[0])
    four = _aliasing_db(oversampled(drive, x, 4)[0])
    # measured: -15.0, -25.0, -40.8 dB
    assert base > -20.0  # plain tanh at 48 kHz aliases badly
    assert two < base - 8.0
    assert four < base - 20.0


@pytest.mark.parametrize("factor", [2, 4])
def test_filter_passband_and_stopband(factor):
    h = oversample_taps(factor, torch.float64).numpy()
    assert len(h) % factor == 1 and np.allclose(h, h[::-1])  # odd, linear phase
    high = factor * SR
    f_pass = np.linspace(0.0, 0.45 * SR, 400)
    f_stop = np.linspace(0.55 * SR, high / 2, 2000)
    _, hp = scipy.signal.freqz(h, worN=f_pass, fs=high)
    _, hs = scipy.signal.freqz(h, worN=f_stop, fs=high)
    ripple = 20 * np.log10(np.abs(hp))
    assert np.abs(ripple).max() < PASSBAND_RIPPLE_DB
    assert 20 * np.log10(np.abs(hs).max()) < -STOPBAND_DB + 1.0
    assert oversample_latency(factor) == (len(h) - 1) // factor


@pytest.mark.parametrize("factor", [2, 4])
def test_round_trip_is_a_pure_delay_in_the_passband(factor):
    gen = torch.Generator().manual_seed(0)
    # band-limited noise, well inside the passband
    b = scipy.signal.firwin(201, 0.35 * 2)
    noise = scipy.signal.lfilter(b, [1.0], torch.randn(4000, generator=gen, dtype=torch.float64).numpy())
    x = torch.from_numpy(noise).view(1, 1, -1)
    y, _ = oversampled(lambda v: v, x, factor)
    d = oversample_latency(factor)
    err = (y[..., d + 300 :] - x[..., 300 : x.shape[-1] - d]).abs().max()
    assert err < 1e-3 * x.abs().max()


@pytest.mark.parametrize("factor", [2, 4])
@pytest.mark.parametrize("block", [1, 7, 64, 4096])
def test_streaming_equals_offline(factor, block):
    x = torch.randn(2, 2, 500, generator=torch.Generator().manual_seed(1))
    fn = lambda v: torch.tanh(3.0 * v)  # noqa: E731
    ref, _ = oversampled(fn, x, factor)
    up, down = init_oversample_state(2, 2, factor, x.dtype)
    state = (up, down, None)
    out = []
    for i in range(0, x.shape[-1], block):
        y, state = oversampled(fn, x[..., i : i + block], factor, state)
        out.append(y)
    assert (torch.cat(out, -1) - ref).abs().max() < 1e-5


def test_up_and_down_stream_separately_and_stateful_fn():
    x = torch.randn(1, 1, 300, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    v_ref, _ = upsample(x, 4)
    parts, hist = [], None
    for i in range(0, 300, 13):
        v, hist = upsample(x[..., i : i + 13], 4, hist)
        parts.append(v)
    assert torch.allclose(torch.cat(parts, -1), v_ref, atol=1e-12)
    y_ref, _ = downsample(v_ref, 4)
    parts, hist = [], None
    for i in range(0, v_ref.shape[-1], 52):
        y, hist = downsample(v_ref[..., i : i + 52], 4, hist)
        parts.append(y)
    assert torch.allclose(torch.cat(parts, -1), y_ref, atol=1e-12)

    # a stateful fn (a running sum) carries its own state through
    def cumulative(v, s):
        s = torch.zeros_like(v[..., :1]) if s is None else s
        out = s + v.cumsum(-1)
        return out, out[..., -1:]

    ref, _ = oversampled(cumulative, x, 2, stateful=True)
    state, parts = None, []
    for i in range(0, 300, 17):
        y, state = oversampled(cumulative, x[..., i : i + 17], 2, state, stateful=True)
        parts.append(y)
    assert torch.allclose(torch.cat(parts, -1), ref, atol=1e-10)


def test_gradcheck():
    x = torch.randn(1, 1, 24, dtype=torch.float64, generator=torch.Generator().manual_seed(3), requires_grad=True)
    g = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, g: oversampled(lambda v: torch.tanh(g * v), x, 2)[0], (x, g))


def test_errors():
    x = torch.zeros(1, 1, 8)
    with pytest.raises(ValueError, match="factor"):
        upsample(x, 3)
    with pytest.raises(ValueError, match="multiple"):
        downsample(torch.zeros(1, 1, 7), 2)
    with pytest.raises(ValueError, match="shaped"):
        upsample(torch.zeros(8), 2)
    with pytest.raises(ValueError, match="history"):
        upsample(x, 2, torch.zeros(1, 1, 3))
