import math

import auraloss
import pytest
import torch
from torch import nn

from dspfx.fitting.losses import (
    CombinedLoss,
    ESRLoss,
    MRSTFTLoss,
    default_resolutions,
    make_loss,
)
from dspfx.fitting.metrics import esr


def _noise(*shape, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=dtype)


def _tones(n, sample_rate=16000, dtype=torch.float32):
    t = torch.arange(n, dtype=dtype) / sample_rate
    x = sum(torch.sin(2 * math.pi * 220 * k * t) / k for k in range(1, 8))
    return (x * torch.exp(-3 * t))[None, None, :]


# ---------------------------------------------------------------------------- resolutions


def test_default_resolutions_48k_and_none_equal_auraloss_defaults():
    reference = auraloss.freq.MultiResolutionSTFTLoss()
    expected = {
        "fft_sizes": list(reference.fft_sizes),
        "hop_sizes": list(reference.hop_sizes),
        "win_lengths": list(reference.win_lengths),
    }
    assert default_resolutions(48000) == expected
    assert default_resolutions(None) == expected


@pytest.mark.parametrize("sample_rate", [8000, 16000, 22050, 44100, 96000, 192000])
def test_default_resolutions_cover_same_time_span(sample_rate):
    base = default_resolutions(None)
    res = default_resolutions(sample_rate)
    assert len(res["fft_sizes"]) == len(base["fft_sizes"])
    for fft, hop, win, win0, hop0 in zip(
        res["fft_sizes"], res["hop_sizes"], res["win_lengths"],
        base["win_lengths"], base["hop_sizes"],
    ):
        tolerance = 0.5 / sample_rate + 1e-12  # rounding to whole samples
        assert abs(win / sample_rate - win0 / 48000) <= tolerance
        assert abs(hop / sample_rate - hop0 / 48000) <= tolerance
        assert fft >= win and fft & (fft - 1) == 0
        assert fft < 4 * win  # not needlessly large
        assert hop >= 1


def test_default_resolutions_16k_values():
    res = default_resolutions(16000)
    assert res["win_lengths"] == [200, 400, 80]
    assert res["hop_sizes"] == [40, 80, 17]


@pytest.mark.parametrize("bad", [0, -48000, float("nan")])
def test_default_resolutions_rejects_bad_rate(bad):
    with pytest.raises(ValueError, match="sample_rate"):
        default_resolutions(bad)


# ---------------------------------------------------------------------------- MRSTFTLoss


def test_mrstft_zero_for_equal_and_decreasing_towards_target():
    target = _tones(8000)
    loss = MRSTFTLoss(sample_rate=16000)
    assert loss(target, target.clone()).item() < 1e-6
    values = [loss(g * target, target).item() for g in (0.5, 0.9, 1.0)]
    assert values[0] > values[1] > values[2]
    assert values[2] < 1e-6


def test_mrstft_matches_auraloss_with_default_resolutions():
    p, t = _noise(2, 2, 6000, seed=1), _noise(2, 2, 6000, seed=2)
    ours = MRSTFTLoss()(p, t)
    reference = auraloss.freq.MultiResolutionSTFTLoss()(p, t)
    assert ours.item() == pytest.approx(reference.item(), rel=1e-6)


def test_mrstft_silence_is_finite_with_finite_gradients():
    loss = MRSTFTLoss(sample_rate=48000)
    p = torch.zeros(1, 1, 4800, requires_grad=True)
    value = loss(p, torch.zeros(1, 1, 4800))
    assert torch.isfinite(value)
    value.backward()
    assert torch.isfinite(p.grad).all()
    # a silent prediction against a real target: large but finite
    q = torch.zeros(1, 1, 4800, requires_grad=True)
    value = loss(q, _noise(1, 1, 4800))
    assert torch.isfinite(value) and value.item() > 1
    value.backward()
    assert torch.isfinite(q.grad).all()


def test_mrstft_gradient_flows_and_descends():
    target = _tones(4000)
    p = (0.3 * target + 0.05 * _noise(1, 1, 4000, seed=3)).requires_grad_(True)
    loss = MRSTFTLoss(sample_rate=16000)
    value = loss(p, target)
    value.backward()
    assert torch.isfinite(p.grad).all() and p.grad.abs().max() > 0
    with torch.no_grad():
        stepped = p - 1e-2 * p.grad / p.grad.abs().max()
    assert loss(stepped, target).item() < value.item()


def test_mrstft_float64_short_noncontiguous_and_1d():
    loss = MRSTFTLoss(sample_rate=16000)
    t64 = _noise(2, 3000, seed=4, dtype=torch.float64)
    p64 = 0.5 * t64
    v64 = loss(p64, t64)
    assert v64.dtype == torch.float64
    v32 = loss(p64.float(), t64.float())
    assert v64.item() == pytest.approx(v32.item(), rel=1e-4)
    # 1-D and (channels, samples) inputs
    assert loss(p64[0], t64[0]).item() == pytest.approx(
        loss(p64[None, :1], t64[None, :1]).item(), rel=1e-12
    )
    # shorter than half the largest FFT
    short = loss(_noise(1, 1, 100, seed=5), _noise(1, 1, 100, seed=6))
    assert torch.isfinite(short)
    # non-contiguous (a time slice of a batch)
    big = _noise(2, 2, 5000, seed=7)
    sliced = big[..., 100:4100]
    assert not sliced.is_contiguous()
    assert loss(sliced, sliced.contiguous() * 0.5).item() == pytest.approx(
        loss(sliced.contiguous(), sliced.contiguous() * 0.5).item(), rel=1e-6
    )


def test_mrstft_shape_mismatch():
    with pytest.raises(ValueError, match=r"\(1, 1, 100\).*\(1, 2, 100\)"):
        MRSTFTLoss()(torch.zeros(1, 1, 100), torch.zeros(1, 2, 100))


def test_mrstft_gradcheck_float64():
    loss = MRSTFTLoss(fft_sizes=[64, 32], hop_sizes=[16, 8], win_lengths=[48, 24])
    t = _noise(1, 1, 96, seed=8, dtype=torch.float64)
    p = (0.7 * t + 0.1 * _noise(1, 1, 96, seed=9, dtype=torch.float64)).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda q: loss(q, t), (p,), atol=1e-6, fast_mode=True)


# ---------------------------------------------------------------------------- ESR, combined


def test_esr_loss_equals_metric():
    t = _noise(1, 1, 1000, seed=10, dtype=torch.float64)
    p = 0.8 * t + 0.1
    assert ESRLoss()(p, t).item() == pytest.approx(esr(p, t).item(), rel=1e-12)
    assert ESRLoss(0.95)(p, t).item() == pytest.approx(
        esr(p, t, pre_emphasis=0.95).item(), rel=1e-12
    )
    assert ESRLoss(0.95)(p, t).item() != pytest.approx(ESRLoss()(p, t).item(), rel=1e-3)


def test_combined_loss_is_weighted_sum():
    t = _noise(1, 1, 4000, seed=11, dtype=torch.float64)
    p = 0.6 * t
    combined = CombinedLoss(16000, mrstft_weight=0.5, esr_weight=2.0, pre_emphasis=0.95)
    expected = 0.5 * MRSTFTLoss(16000)(p, t) + 2.0 * esr(p, t, pre_emphasis=0.95)
    assert combined(p, t).item() == pytest.approx(expected.item(), rel=1e-9)
    only_mrstft = CombinedLoss(16000)
    assert only_mrstft.esr is None
    assert only_mrstft(p, t).item() == pytest.approx(MRSTFTLoss(16000)(p, t).item(), rel=1e-9)
    with pytest.raises(ValueError):
        CombinedLoss(mrstft_weight=0.0, esr_weight=0.0)
    with pytest.raises(ValueError):
        CombinedLoss(esr_weight=-1.0)


# ---------------------------------------------------------------------------- make_loss


def test_make_loss_names():
    t = _noise(1, 1, 4000, seed=12, dtype=torch.float64)
    p = 0.6 * t
    assert isinstance(make_loss("mrstft", 16000), MRSTFTLoss)
    assert isinstance(make_loss("esr", 16000), ESRLoss)
    both = make_loss("mrstft+esr", 16000, esr_weight=0.5)
    assert isinstance(both, CombinedLoss) and both.esr_weight == 0.5
    assert make_loss("mrstft+esr", 16000).esr_weight == 1.0
    with_esr = make_loss("mrstft", 16000, esr_weight=0.25)
    expected = MRSTFTLoss(16000)(p, t) + 0.25 * esr(p, t)
    assert with_esr(p, t).item() == pytest.approx(expected.item(), rel=1e-9)


def test_make_loss_callables_and_errors():
    module = nn.L1Loss()
    assert make_loss(module, 48000) is module

    def l2(prediction, target):
        return torch.mean((prediction - target) ** 2)

    wrapped = make_loss(l2, 48000)
    assert isinstance(wrapped, nn.Module)
    a, b = _noise(1, 1, 10, seed=13), _noise(1, 1, 10, seed=14)
    assert wrapped(a, b).item() == pytest.approx(l2(a, b).item())
    with pytest.raises(ValueError, match="'mrstft'.*'esr'.*'mrstft\\+esr'"):
        make_loss("mse_of_doom", 48000)
    with pytest.raises(TypeError):
        make_loss(3, 48000)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_losses_on_cuda():
    t = _noise(1, 2, 8000, seed=15).cuda()
    p = (0.5 * t).requires_grad_(True)
    value = CombinedLoss(48000, esr_weight=1.0)(p, t)
    assert value.device.type == "cuda"
    value.backward()
    assert torch.isfinite(p.grad).all()
    cpu = CombinedLoss(48000, esr_weight=1.0)(p.detach().cpu(), t.cpu())
    assert value.item() == pytest.approx(cpu.item(), rel=1e-4)


def test_mrstft_mel_scale_in_float64():
    # auraloss keeps its mel filterbank in float32; the wrapper casts it to the input dtype.
    # 64 mel bands on a 128-point FFT leave some bands empty: log(0) in auraloss, dropped here.
    loss = MRSTFTLoss(sample_rate=16000, scale="mel", n_bins=64)
    t = _tones(4000, dtype=torch.float64)
    value = loss(0.5 * t, t)
    assert value.dtype == torch.float64 and value.item() > 0.1
    assert loss(t, t).item() < 1e-6


def test_mrstft_mel_silence_and_gradients_finite():
    loss = MRSTFTLoss(sample_rate=16000, scale="mel", n_bins=64)
    p = torch.zeros(1, 1, 4000, requires_grad=True)
    value = loss(p, torch.zeros(1, 1, 4000))
    assert torch.isfinite(value)
    value.backward()
    assert torch.isfinite(p.grad).all()
    q = (0.5 * _tones(4000)).requires_grad_(True)
    value = loss(q, _tones(4000))
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(q.grad).all() and q.grad.abs().max() > 0


def test_scaled_mse_is_the_esr_when_its_energy_is_the_targets_and_weighs_loud_batches_more():
    from dspfx.fitting.losses import ScaledMSELoss, esr

    g = torch.Generator().manual_seed(0)
    t = torch.randn(2, 1, 500, generator=g, dtype=torch.float64)
    p = t + 0.1 * torch.randn(2, 1, 500, generator=g, dtype=torch.float64)
    energy = float(torch.mean(t**2))
    assert torch.allclose(ScaledMSELoss(energy)(p, t), esr(p, t, eps=0.0), rtol=1e-12)
    # the same relative error on a batch 20 dB quieter: the same ESR, a hundredth of the loss
    loss = ScaledMSELoss(energy)
    assert torch.allclose(esr(0.1 * p, 0.1 * t), esr(p, t), rtol=1e-8)
    assert torch.allclose(loss(0.1 * p, 0.1 * t), 0.01 * loss(p, t), rtol=1e-12)
    with pytest.raises(ValueError, match="energy must be a finite number > 0"):
        ScaledMSELoss(0.0)
