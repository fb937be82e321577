import numpy as np
import pytest
import scipy.signal
import torch

from dspfx.fitting.latency import align, estimate_latency

SAMPLE_RATE = 48000
N = 16384
PAD = 1000
LAGS = [0, 17, 480, -33]


def _noise(n, seed=0):
    return np.random.default_rng(seed).standard_normal(n)


def _plucks(n, f0=110.0, seed=1):
    """Plucked-string-like test signal: two notes of decaying harmonics (higher decay faster)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SAMPLE_RATE
    x = np.zeros(n)
    for onset, f in ((0.03, f0), (0.17, f0 * 1.5)):
        tt = t - onset
        on = tt >= 0
        for k in range(1, 15):
            phase = rng.uniform(0, 2 * np.pi)
            x[on] += np.exp(-tt[on] * (3 + 2 * k)) * np.sin(2 * np.pi * f * k * tt[on] + phase) / k
    return x


def _pair(source, device_fn, lag):
    """input = source segment; target[n] = device_fn(source)[n - lag] (true delay ``lag``)."""
    out = device_fn(source)
    x = source[PAD : PAD + N]
    y = out[PAD - lag : PAD - lag + N]
    return torch.from_numpy(x.copy()), torch.from_numpy(y.copy())


def _one_pole_lowpass(x):
    return scipy.signal.lfilter([0.3], [1.0, -0.7], x)


FIR = scipy.signal.firwin(31, 5000, fs=SAMPLE_RATE)  # linear phase: delay 15 samples
FIR_DELAY = (len(FIR) - 1) // 2


@pytest.mark.parametrize("lag", LAGS)
def test_noise_pure_delay(lag):
    x, y = _pair(_noise(N + 2 * PAD), lambda s: 0.5 * s, lag)
    assert estimate_latency(x, y) == lag


@pytest.mark.parametrize("lag", LAGS)
def test_noise_distorted_and_lowpassed(lag):
    x, y = _pair(_noise(N + 2 * PAD, seed=2), lambda s: _one_pole_lowpass(np.tanh(4 * s)), lag)
    assert estimate_latency(x, y) == lag
    # a linear-phase FIR low-pass adds exactly its delay (the centre of its response)
    x, y = _pair(
        _noise(N + 2 * PAD, seed=3),
        lambda s: scipy.signal.lfilter(FIR, [1.0], np.tanh(4 * s)),
        lag,
    )
    assert estimate_latency(x, y) == lag + FIR_DELAY
    assert estimate_latency(x, y, method="xcorr") == lag + FIR_DELAY


@pytest.mark.parametrize("lag", LAGS)
def test_plucked_string(lag):
    source = _plucks(N + 2 * PAD)
    x, y = _pair(source, lambda s: 0.8 * s, lag)
    assert estimate_latency(x, y) == lag
    x, y = _pair(source, lambda s: np.tanh(4 * s), lag)
    assert estimate_latency(x, y) == lag
    x, y = _pair(source, lambda s: scipy.signal.lfilter(FIR, [1.0], np.tanh(4 * s)), lag)
    assert estimate_latency(x, y) == lag + FIR_DELAY
    # polarity-inverted output (many amps invert)
    x, y = _pair(source, lambda s: -np.tanh(4 * s), lag)
    assert estimate_latency(x, y) == lag


@pytest.mark.parametrize("lag", LAGS)
def test_deconvolution_ignores_the_delay_that_eq_adds_to_the_correlation(lag):
    """Distortion then EQ (a low shelf cut and a high shelf cut, minimum phase) on a guitar DI
    moves the plain cross-correlation peak late; the deconvolved response's peak stays put."""
    from dspfx.functional import biquad_coefficients
    from dspfx.signals import guitar_di

    b1, a1 = (c.numpy() for c in biquad_coefficients("lowshelf", 180.0, 0.7071, -5.0, SAMPLE_RATE))
    b2, a2 = (c.numpy() for c in biquad_coefficients("highshelf", 3500.0, 0.7071, -8.0, SAMPLE_RATE))

    def device(s):
        return scipy.signal.lfilter(b2, a2, scipy.signal.lfilter(b1, a1, np.tanh(10 * s)))

    x, y = _pair(guitar_di(duration_s=1.0)[0, 0].double().numpy(), device, lag)
    assert estimate_latency(x, y, method="xcorr") > lag  # the cross-correlation peak is late ...
    assert estimate_latency(x, y) == lag  # ... the impulse response's is not


def test_batch_channels_and_float32():
    lag = 37
    xs, ys = [], []
    for seed in range(3):
        x, y = _pair(_noise(N + 2 * PAD, seed=10 + seed), lambda s: np.tanh(3 * s), lag)
        xs.append(x)
        ys.append(y)
    x = torch.stack(xs)[:, None, :].float()  # (3, 1, N) mono DI
    y = torch.stack(ys)[:, None, :].repeat(1, 2, 1).float()  # (3, 2, N) stereo capture
    assert estimate_latency(x, y) == lag
    assert estimate_latency(x.numpy(), y.numpy()) == lag
    assert estimate_latency(x[0, 0], y[0]) == lag


def test_max_latency_limits_the_search():
    x, y = _pair(_noise(N + 2 * PAD, seed=4), lambda s: s, 480)
    assert estimate_latency(x, y, max_latency=500) == 480
    assert abs(estimate_latency(x, y, max_latency=100)) <= 100
    with pytest.raises(ValueError, match="max_latency"):
        estimate_latency(x, y, max_latency=-1)


def test_silent_signals_raise():
    x = torch.from_numpy(_noise(1000))
    with pytest.raises(ValueError, match="target.*silent"):
        estimate_latency(x, torch.zeros(1000))
    with pytest.raises(ValueError, match="input.*silent"):
        estimate_latency(torch.zeros(1, 1, 1000), x)
    with pytest.raises(ValueError, match="silent"):
        estimate_latency(x, torch.full((1000,), 0.5))


@pytest.mark.parametrize("lag", [0, 5, -5])
def test_align_trims_and_lines_up(lag):
    base = torch.arange(100, dtype=torch.float64)
    x = base[None, None, 10:90].repeat(2, 3, 1)  # (2, 3, 80)
    y = base[None, None, 10 - lag : 90 - lag].repeat(2, 3, 1)  # y[n] = x[n - lag]
    xa, ya = align(x, y, lag)
    assert xa.shape == ya.shape == (2, 3, 80 - abs(lag))
    assert torch.equal(xa, ya)
    if lag > 0:
        assert torch.equal(xa, x[..., : 80 - lag]) and torch.equal(ya, y[..., lag:])
    elif lag < 0:
        assert torch.equal(xa, x[..., -lag:]) and torch.equal(ya, y[..., : 80 + lag])


def test_align_after_estimate_recovers_exact_pair():
    source = _noise(N + 2 * PAD, seed=5)
    for lag in LAGS:
        x, y = _pair(source, np.tanh, lag)
        xa, ya = align(x, y, estimate_latency(x, y))
        assert xa.shape[-1] == N - abs(lag)
        assert torch.allclose(torch.tanh(xa), ya, atol=1e-12)


def test_align_errors():
    x = torch.zeros(1, 1, 10)
    with pytest.raises(ValueError, match="overlap"):
        align(x, x, 10)
    with pytest.raises(ValueError, match="overlap"):
        align(x, x, -12)
    with pytest.raises(TypeError, match="latency"):
        align(x, x, 1.5)
    assert align(x, x, np.int64(3))[0].shape == (1, 1, 7)


# --- device_latency: the rule for a plain capture pair (onsets, not peaks) -----------------------

def _guitar(seconds=3.0):
    from dspfx.signals import guitar_di

    return guitar_di(duration_s=seconds, seed=3)[0, 0].double().numpy()


def _lowpass_3k(s):  # two-pole Butterworth: its response peaks 3 samples late but begins at 0
    return scipy.signal.lfilter(*scipy.signal.butter(2, 3000, fs=SAMPLE_RATE), np.tanh(5 * s))


def _resonant_1k5(s):
    return scipy.signal.lfilter(*scipy.signal.iirpeak(1500, 2, fs=SAMPLE_RATE), np.tanh(3 * s))


def _shelved_drive(s):
    from dspfx.functional import biquad_coefficients

    b, a = (c.numpy() for c in biquad_coefficients("highshelf", 3500.0, 0.7071, -8.0, SAMPLE_RATE))
    return scipy.signal.lfilter(b, a, np.tanh(10 * s))


ZERO_LATENCY_DEVICES = {"drive": lambda s: np.tanh(8 * s), "shelved drive": _shelved_drive,
                        "3 kHz low-pass": _lowpass_3k, "1.5 kHz resonance": _resonant_1k5}


@pytest.mark.parametrize("name", ZERO_LATENCY_DEVICES)
def test_device_latency_never_shifts_a_zero_latency_device(name):
    from dspfx.fitting.latency import device_latency

    x = _guitar()
    y = ZERO_LATENCY_DEVICES[name](x)
    assert device_latency(torch.from_numpy(x), torch.from_numpy(y)) == 0
    if name == "3 kHz low-pass":  # the trap: the peak of the response is its group delay
        assert estimate_latency(torch.from_numpy(x), torch.from_numpy(y)) >= 3


@pytest.mark.parametrize("name", ["drive", "shelved drive", "1.5 kHz resonance"])
@pytest.mark.parametrize("delay", [3, 37, 480])
def test_device_latency_recovers_a_pure_delay_exactly(name, delay):
    """The device's render delayed by ``delay`` samples (an interface's round trip)."""
    from dspfx.fitting.latency import device_latency

    x = _guitar()
    y = np.concatenate([np.zeros(delay), ZERO_LATENCY_DEVICES[name](x)[:-delay]])
    assert device_latency(torch.from_numpy(x), torch.from_numpy(y)) == delay


def test_device_latency_of_a_low_pass_with_delay_is_within_a_sample():
    """A low-pass's response rises over its first samples: measured 1 sample late (the rule's
    documented bound is its rise, not exactness)."""
    from dspfx.fitting.latency import device_latency

    x = _guitar()
    y = np.concatenate([np.zeros(37), _lowpass_3k(x)[:-37]])
    assert device_latency(torch.from_numpy(x), torch.from_numpy(y)) in (37, 38)


def test_onset_method_is_named_in_the_error_for_a_bad_method():
    with pytest.raises(ValueError, match="'onset'"):
        estimate_latency(torch.randn(100), torch.randn(100), method="peak")

