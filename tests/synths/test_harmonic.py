"""Tests of the harmonic and sinusoidal synths (dspfx.synths.harmonic)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import dspfx
import dspfx.synths.harmonic  # noqa: F401  (registers the units)
from dspfx.functional.control import upsample_control
from dspfx.synths.harmonic import Harmonic, Sinusoidal
from dspfx.stream import Stream


def _spectrum_db(y: torch.Tensor) -> np.ndarray:
    """Amplitude spectrum in dB of a rectangular-windowed signal: a bin-centred sine of amplitude A reads 20 log10 A."""
    y = y.detach().double().numpy().reshape(-1)
    mag = np.abs(np.fft.rfft(y)) * 2 / len(y)
    return 20 * np.log10(np.maximum(mag, 1e-30))


# -- harmonic ---------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_harmonic_peaks_at_k_f0_with_requested_levels_and_nothing_above_nyquist(dtype):
    sr, n = 16000, 16000  # 1 Hz bins; f0 = 300 Hz is bin-centred
    f0, K = 300.0, 40  # harmonics 27..40 reach 8100..12000 Hz >= Nyquist: muted
    synth = Harmonic(sample_rate=sr, n_harmonics=K).to(dtype)
    dist = torch.rand(1, K, generator=torch.Generator().manual_seed(0), dtype=dtype) + 0.05
    y = synth(n_samples=n, f0_hz=f0, amplitude=0.8, harmonic_distribution=dist)
    assert y.shape == (1, 1, n) and y.dtype == dtype
    spec = _spectrum_db(y)
    kept = int(math.ceil(sr / 2 / f0)) - 1  # 26 harmonics below Nyquist
    w = dist[0, :kept].double() / dist[0, :kept].double().sum()  # renormalised over the kept ones
    expected = 20 * np.log10(0.8 * w.numpy())
    levels = spec[(np.arange(1, kept + 1) * f0).astype(int)]
    assert np.abs(levels - expected).max() < 0.1
    # every other bin (where aliases of the muted harmonics would land) is empty
    others = np.ones(len(spec), bool)
    others[(np.arange(1, kept + 1) * f0).astype(int)] = False
    floor = -120 if dtype == torch.float64 else -90
    assert spec[others].max() < spec.max() + floor


def test_harmonic_default_distribution_is_learnable_softmax_of_one_over_k():
    synth = Harmonic(sample_rate=16000, n_harmonics=8)
    d = synth.distribution()
    k = torch.arange(1, 9, dtype=torch.float32)
    assert torch.allclose(d, (1 / k) / (1 / k).sum(), atol=1e-6)
    assert "harmonic_logits" in dict(synth.named_parameters())
    y = synth(n_samples=4000, f0_hz=500.0, amplitude=1.0)
    spec = _spectrum_db(y)  # 4 Hz bins at 16 kHz over 4000 samples; 500 Hz is bin-centred
    levels = spec[(np.arange(1, 9) * 500 / 4).astype(int)]
    assert np.abs(levels - 20 * np.log10(d.detach().numpy())).max() < 0.1
    y.pow(2).sum().backward()
    assert synth.harmonic_logits.grad is not None and synth.harmonic_logits.grad.abs().sum() > 0


def test_harmonic_inharmonic_partials_follow_the_stiff_string():
    sr, n, f0, B, K = 16000, 16000, 200.0, 5e-4, 12
    synth = Harmonic(sample_rate=sr, n_harmonics=K, inharmonicity=B).double()
    y = synth(n_samples=n, f0_hz=f0, amplitude=1.0, harmonic_distribution=torch.ones(1, K, dtype=torch.float64))
    k = np.arange(1, K + 1)
    fk = k * f0 * np.sqrt(1 + B * k**2)
    t = np.arange(n) / sr
    ref = (np.sin(2 * np.pi * fk[:, None] * t) / K).sum(0)
    assert np.abs(y[0, 0].numpy() - ref).max() < 1e-8


def test_harmonic_phase_stays_accurate_over_60_s_at_48k_in_float32():
    sr, seconds = 48000, 60
    n = sr * seconds
    frames = torch.linspace(180.0, 470.0, 61).reshape(1, -1)  # slowly varying f0, float32
    dist = torch.tensor([[0.5, 0.3, 0.2]])
    synth = Harmonic(sample_rate=sr, n_harmonics=3)
    with torch.no_grad():
        y = synth(n_samples=n, f0_hz=frames, amplitude=1.0, harmonic_distribution=dist)[0, 0].double()
        # reference: the same instantaneous frequency (the float32 upsampled control) in float64
        f0 = upsample_control(frames.unsqueeze(-1), n, mode="causal")[0, :, 0].double()
        inc = f0 / sr
        phase = torch.cumsum(inc, 0) - inc  # float64: exact to ~1e-10 cycles here
        k = torch.arange(1, 4, dtype=torch.float64)
        ref = (dist[0].double() * torch.sin(2 * math.pi * phase[:, None] * k)).sum(-1)
        err = (y - ref).abs().max()
        # a plain float32 cumulative sum would not pass: it drifts by more than 1e-3 rad (~6e-3 here)
        naive = torch.cumsum(f0.float() / sr, 0)
        naive_err = (2 * math.pi * (naive.double() - torch.cumsum(inc, 0))).abs().max()
    assert err < 1e-3
    assert naive_err > 1e-3


@pytest.mark.parametrize("inharmonicity", [0.0, 1e-4])
def test_harmonic_streams_in_blocks_like_offline(inharmonicity):
    n = 1000
    synth = Harmonic(sample_rate=16000, n_harmonics=20, inharmonicity=inharmonicity, f0_hz=440.0, amplitude=0.7)
    with torch.no_grad():
        dist = torch.rand(2, 20, generator=torch.Generator().manual_seed(1))
        offline = synth(n_samples=n, harmonic_distribution=dist)
        assert offline.shape == (2, 1, n)
        for block in (1, 7, 64, 4096):
            stream = Stream(synth, batch=2)
            parts, done = [], 0
            while done < n:
                m = min(block, n - done)
                parts.append(stream(n_samples=m, harmonic_distribution=dist))
                done += m
            assert (torch.cat(parts, -1) - offline).abs().max() < 1e-5


def test_harmonic_gradcheck_wrt_f0_amplitude_and_distribution_controls():
    synth = Harmonic(sample_rate=16000, n_harmonics=6).double()
    f0 = torch.tensor([[400.0, 450.0, 420.0, 500.0]], dtype=torch.float64, requires_grad=True)
    amp = torch.tensor([[0.2, 0.8, 0.5, 0.6]], dtype=torch.float64, requires_grad=True)
    dist = (torch.rand(1, 4, 6, dtype=torch.float64) + 0.1).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda a, b, c: synth(n_samples=64, f0_hz=a, amplitude=b, harmonic_distribution=c), (f0, amp, dist)
    )
    # and w.r.t. the knobs and the learnable distribution, through the unit's parameters
    logits = synth.harmonic_logits.detach().clone().requires_grad_()

    def through_params(raw_f0, raw_amp, lg):  # the knobs' bounded maps and the softmax, as the unit uses them
        k_f0, k_amp = synth.knob_specs["f0_hz"], synth.knob_specs["amplitude"]
        return synth(n_samples=64, f0_hz=k_f0.to_physical(raw_f0).reshape(1),
                     amplitude=k_amp.to_physical(raw_amp).reshape(1),
                     harmonic_distribution=torch.softmax(lg, 0).reshape(1, -1))

    raw_f0 = torch.tensor(synth.knob_specs["f0_hz"].to_raw(300.0), dtype=torch.float64, requires_grad=True)
    raw_amp = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(through_params, (raw_f0, raw_amp, logits))
    # the unit's own parameters receive gradients
    synth.zero_grad()
    synth(n_samples=64).sum().backward()
    for name, p in synth.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def _spectral_loss(y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    loss = y.new_zeros(())
    for n_fft in (256, 512, 1024):
        win = torch.hann_window(n_fft, dtype=y.dtype)
        Y = torch.stft(y.reshape(1, -1), n_fft, n_fft // 4, window=win, return_complex=True).abs()
        T = torch.stft(target.reshape(1, -1), n_fft, n_fft // 4, window=win, return_complex=True).abs()
        loss = loss + (Y - T).abs().mean() + (torch.log(Y + 1e-5) - torch.log(T + 1e-5)).abs().mean()
    return loss


def test_harmonic_fit_recovers_distribution_and_amplitude_envelope():
    torch.manual_seed(0)
    sr, n, K, frames = 16000, 8000, 10, 20
    f0 = torch.full((1, frames), 220.0)
    target_dist = torch.rand(K) + 0.1
    target_dist = target_dist / target_dist.sum()
    target_env = 0.2 + 0.6 * torch.sin(torch.linspace(0, math.pi, frames)).reshape(1, frames)
    reference = Harmonic(sample_rate=sr, n_harmonics=K)
    with torch.no_grad():
        target = reference(n_samples=n, f0_hz=f0, amplitude=target_env,
                           harmonic_distribution=target_dist.reshape(1, 1, K))
    model = Harmonic(sample_rate=sr, n_harmonics=K)  # learnable distribution, starts at 1/k
    amp_knob = model.knob_specs["amplitude"]
    raw_env = torch.zeros(1, frames, requires_grad=True)  # amplitude 0.5 everywhere to start
    opt = torch.optim.Adam([model.harmonic_logits, raw_env], lr=0.05)
    for _ in range(200):  # 100 reached ~1 % with frames spread edge to edge; on the causal grid 200
        opt.zero_grad()
        y = model(n_samples=n, f0_hz=f0, amplitude=amp_knob.to_physical(raw_env))
        loss = _spectral_loss(y, target)
        loss.backward()
        opt.step()
    with torch.no_grad():
        dist_err = (model.distribution() - target_dist).abs().max()
        env_err = ((amp_knob.to_physical(raw_env) - target_env).abs() / target_env).max()
    assert dist_err < 0.005, dist_err  # entries ~0.1: within ~5 % (reached: ~0.0013)
    assert env_err < 0.03, env_err  # relative (reached: ~1 %)


def test_harmonic_knob_edges_length_options_and_save_load(tmp_path):
    synth = Harmonic(sample_rate=16000, n_harmonics=4)
    for f0 in (20.0, 8000.0):
        for amp in (0.0, 1.0):
            y = synth(n_samples=256, f0_hz=f0, amplitude=amp)
            assert torch.isfinite(y).all()
            if amp == 0.0 or f0 == 8000.0:  # f0 at Nyquist: every harmonic muted
                assert y.abs().max() == 0
    assert synth.hop == 64 and Harmonic(sample_rate=48000).hop == 192
    assert synth(f0_hz=torch.full((3, 10), 300.0)).shape == (3, 1, 640)
    assert synth(harmonic_distribution=torch.ones(1, 5, 4)).shape == (1, 1, 320)
    assert dspfx.make("harmonic", sample_rate=16000, n_harmonics=4).n_harmonics == 4
    spec = synth.spec()
    assert spec["options"] == {"n_harmonics": 4, "inharmonicity": 0.0, "hop": 64}
    assert dspfx.build(spec).n_harmonics == 4
    with torch.no_grad():
        synth.harmonic_logits.add_(torch.randn(4))  # a learned distribution is saved as a tensor
    dspfx.save(synth, tmp_path / "h.safetensors")
    loaded = dspfx.load(tmp_path / "h.safetensors")
    assert torch.equal(loaded.harmonic_logits, synth.harmonic_logits)
    assert torch.equal(loaded(n_samples=100), synth(n_samples=100))


def test_harmonic_bad_controls_and_options_raise_clear_errors():
    synth = Harmonic(sample_rate=16000, n_harmonics=8)
    with pytest.raises(ValueError, match="f0_hz"):
        synth(n_samples=64, f0_hz=-100.0)
    with pytest.raises(ValueError, match="f0_hz"):
        synth(n_samples=64, f0_hz=torch.tensor([[200.0, float("nan")]]))
    with pytest.raises(ValueError, match="f0_hz"):
        synth(n_samples=64, f0_hz=torch.ones(1, 2, 3, 4) * 200)
    with pytest.raises(ValueError, match="NaN"):
        synth(n_samples=64, harmonic_distribution=torch.full((1, 8), float("nan")))
    with pytest.raises(ValueError, match="expected 8"):
        synth(n_samples=64, harmonic_distribution=torch.ones(1, 3, 5))
    with pytest.raises(ValueError, match="harmonic_distribution"):
        synth(n_samples=64, harmonic_distribution=torch.ones(5))  # 1-D: one set of all 8
    assert torch.allclose(  # a 1-D set of 8 values is the same for every item and frame
        synth(n_samples=64, harmonic_distribution=torch.ones(8)),
        synth(n_samples=64, harmonic_distribution=torch.ones(1, 1, 8)),
    )
    with pytest.raises(ValueError, match="non-negative"):
        synth(n_samples=64, harmonic_distribution=-torch.ones(1, 8))
    with pytest.raises(ValueError, match="batch"):
        synth(n_samples=64, f0_hz=torch.full((2, 3), 200.0), harmonic_distribution=torch.ones(3, 8))
    with pytest.raises(ValueError, match="n_harmonics"):
        Harmonic(n_harmonics=0)
    with pytest.raises(ValueError, match="inharmonicity"):
        Harmonic(inharmonicity=-1e-3)
    with pytest.raises(ValueError, match="hop"):
        Harmonic(hop=0)


# -- sinusoidal -------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_sinusoidal_peaks_at_the_given_frequencies_with_the_given_amplitudes(dtype):
    sr, n = 16000, 16000
    freqs = torch.tensor([[97.0, 1234.0, 3000.0, 7999.0, 8000.0, 9500.0]], dtype=dtype)  # last two muted
    amps = torch.tensor([[0.1, 0.3, 0.05, 0.2, 0.5, 0.5]], dtype=dtype)
    bank = Sinusoidal(sample_rate=sr, n_sinusoids=6).to(dtype)
    y = bank(n_samples=n, frequencies_hz=freqs, amplitudes=amps)
    spec = _spectrum_db(y)
    bins = freqs[0, :4].long().numpy()
    assert np.abs(spec[bins] - 20 * np.log10(amps[0, :4].double().numpy())).max() < 0.1
    others = np.ones(len(spec), bool)
    others[bins] = False
    floor = -120 if dtype == torch.float64 else -90
    assert spec[others].max() < spec.max() + floor  # 8000 Hz and 9500 Hz (alias 6500) are absent


def test_sinusoidal_defaults_streaming_and_gradcheck():
    bank = Sinusoidal(sample_rate=16000, n_sinusoids=4, level=0.5)
    assert torch.allclose(bank.default_frequencies(), torch.tensor([220.0, 440.0, 660.0, 880.0]), rtol=1e-5)
    assert torch.allclose(bank.default_amplitudes(), torch.full((4,), 0.25), atol=1e-6)
    y = bank(n_samples=512)
    y.pow(2).sum().backward()
    for name, p in bank.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    n = 1000
    freqs = torch.tensor([[[300.0, 1000.0, 2500.0, 7000.0]], [[150.0, 800.0, 4000.0, 5000.0]]])
    with torch.no_grad():
        offline = bank(n_samples=n, frequencies_hz=freqs)
        for block in (1, 7, 64, 4096):
            stream = Stream(bank, batch=2)
            parts, done = [], 0
            while done < n:
                m = min(block, n - done)
                parts.append(stream(n_samples=m, frequencies_hz=freqs))
                done += m
            assert (torch.cat(parts, -1) - offline).abs().max() < 1e-5
    bank64 = Sinusoidal(sample_rate=16000, n_sinusoids=3).double()
    f = (torch.rand(1, 4, 3, dtype=torch.float64) * 3000 + 100).requires_grad_()
    a = torch.rand(1, 4, 3, dtype=torch.float64).requires_grad_()
    lvl = torch.tensor([[0.3, 0.9, 0.6, 0.4]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda f_, a_, l_: bank64(n_samples=64, frequencies_hz=f_, amplitudes=a_, level=l_), (f, a, lvl)
    )


def test_sinusoidal_bad_controls_raise_clear_errors():
    bank = Sinusoidal(sample_rate=16000, n_sinusoids=3)
    with pytest.raises(ValueError, match="non-negative"):
        bank(n_samples=64, frequencies_hz=torch.tensor([[100.0, -5.0, 300.0]]))
    with pytest.raises(ValueError, match="non-negative"):
        bank(n_samples=64, amplitudes=torch.tensor([[0.1, -0.5, 0.3]]))
    with pytest.raises(ValueError, match="NaN"):
        bank(n_samples=64, amplitudes=torch.tensor([[0.1, float("nan"), 0.3]]))
    with pytest.raises(ValueError, match="expected 3"):
        bank(n_samples=64, frequencies_hz=torch.ones(1, 2, 4))
    with pytest.raises(ValueError, match="n_sinusoids"):
        Sinusoidal(n_sinusoids=0)
    assert bank(frequencies_hz=torch.full((2, 5, 3), 440.0)).shape == (2, 1, 5 * 64)
