"""The black-box LSTM amp (Wright et al.): parameter count, streaming, save/load, gradients,
training by gradient descent, errors."""

import pytest
import torch
from torch import nn

import dspfx
import dspfx.amps.lstm  # noqa: F401  (registers lstm_amp)
import dspfx.signals
from dspfx.amps.lstm import LSTMAmp, lstm_parameter_count
from dspfx.io import _learned_tensors
from dspfx.fitting.metrics import esr

SR = 48000


def _noise(shape, seed, dtype=torch.float32):
    return 0.3 * torch.randn(*shape, dtype=dtype, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("hidden", [1, 3, 16, 32])
def test_parameter_count(hidden):
    unit = LSTMAmp(SR, hidden=hidden)
    # the formula, counted by hand: W_ih (4H x 1), W_hh (4H x H), b_ih and b_hh (4H), out (H + 1)
    by_hand = 4 * hidden * 1 + 4 * hidden * hidden + 2 * 4 * hidden + hidden + 1
    assert lstm_parameter_count(hidden) == by_hand == unit.n_parameters
    assert sum(p.numel() for p in unit.parameters() if p.requires_grad) == by_hand
    # the same count as torch's own LSTM(1, H) + Linear(H, 1), and every weight is saved
    reference = sum(p.numel() for p in (*nn.LSTM(1, hidden).parameters(), *nn.Linear(hidden, 1).parameters()))
    assert reference == by_hand
    assert sum(t.numel() for t in _learned_tensors(unit).values()) == by_hand
    if hidden == 32:
        assert unit.n_parameters == 4513


def test_registered_as_an_amp_and_deterministic():
    unit = dspfx.make("lstm_amp", hidden=8)
    assert isinstance(unit, LSTMAmp) and unit.category == "amp" and unit.knobs() == {}
    assert unit.spec()["options"] == {"hidden": 8, "seed": 0, "skip": True}
    x = _noise((1, 1, 500), 0)
    with torch.no_grad():
        assert torch.equal(unit(x), LSTMAmp(SR, hidden=8)(x))  # same seed, same weights
        assert not torch.allclose(unit(x), LSTMAmp(SR, hidden=8, seed=1)(x))


def test_skip_connection_output_is_input_plus_linear_of_h():
    unit = LSTMAmp(SR, hidden=4)
    with torch.no_grad():
        unit.output.weight.zero_()
        unit.output.bias.fill_(0.25)
        x = _noise((2, 1, 300), 1)
        assert torch.allclose(unit(x), x + 0.25, atol=1e-7)
        # against torch's LSTM run by hand on the same weights
        unit.output.weight.normal_(generator=torch.Generator().manual_seed(0))
        h, _ = unit.lstm(x.reshape(2, 300, 1))
        expected = x.reshape(2, 300, 1) + h @ unit.output.weight.T + unit.output.bias
        assert torch.allclose(unit(x), expected.reshape(2, 1, 300), atol=1e-6)


@pytest.mark.parametrize("block", [1, 7, 64, 4096])
def test_streaming_equals_offline(block):
    unit = LSTMAmp(SR, hidden=16)
    x = _noise((2, 2, 1500 if block < 64 else 5000), 2)
    with torch.no_grad():
        offline = unit(x)
        stream = dspfx.Stream(unit, batch=2, channels=2)
        blocks = [stream(x[..., i : i + block]) for i in range(0, x.shape[-1], block)]
    assert (torch.cat(blocks, dim=-1) - offline).abs().max() <= 1e-5


def test_stereo_is_per_channel_with_shared_weights():
    unit = LSTMAmp(SR, hidden=8)
    x = _noise((1, 2, 800), 3)
    with torch.no_grad():
        y = unit(x)
        left, right = unit(x[:, :1]), unit(x[:, 1:])
    assert torch.allclose(y[:, :1], left, atol=1e-6) and torch.allclose(y[:, 1:], right, atol=1e-6)
    assert not torch.allclose(y[:, :1], y[:, 1:])


def test_save_load_round_trip(tmp_path):
    unit = LSTMAmp(SR, hidden=8, seed=3)
    with torch.no_grad():  # move the weights away from a fresh unit's, so loading must restore them
        for p in unit.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    path = dspfx.save(unit, tmp_path / "lstm.safetensors")
    loaded = dspfx.load(path)
    assert isinstance(loaded, LSTMAmp) and loaded.hidden == 8 and loaded.seed == 3
    for (k1, v1), (k2, v2) in zip(unit.state_dict().items(), loaded.state_dict().items()):
        assert k1 == k2 and torch.equal(v1, v2)
    x = _noise((1, 1, 1000), 4)
    with torch.no_grad():
        assert torch.equal(loaded(x), unit(x))
        assert not torch.allclose(LSTMAmp(SR, hidden=8, seed=3)(x), unit(x))
    with pytest.raises(ValueError, match="safetensors"):
        dspfx.save(unit, tmp_path / "lstm.json")  # weights cannot go into a JSON spec


class _Render(nn.Module):
    """Calls render_block with an explicit state, so functional_call can swap every weight."""

    def __init__(self, unit: LSTMAmp) -> None:
        super().__init__()
        self.unit = unit

    def forward(self, x, h0, c0):
        return self.unit.render_block(x, {}, (h0, c0))


def test_gradcheck_float64_input_weights_and_state():
    unit = LSTMAmp(SR, hidden=3).double()
    wrapper = _Render(unit)
    names = [f"unit.{k}" for k, _ in unit.named_parameters()]
    assert len(names) == 6
    weights = [p.detach().clone().requires_grad_(True) for p in unit.parameters()]
    g = torch.Generator().manual_seed(5)
    x = (0.5 * torch.randn(2, 1, 24, dtype=torch.float64, generator=g)).requires_grad_(True)
    h0 = (0.3 * torch.randn(1, 2, 3, dtype=torch.float64, generator=g)).requires_grad_(True)
    c0 = (0.3 * torch.randn(1, 2, 3, dtype=torch.float64, generator=g)).requires_grad_(True)

    def f(x, h0, c0, *w):
        y, (h, c) = torch.func.functional_call(wrapper, dict(zip(names, w)), (x, h0, c0))
        return y, h, c

    assert torch.autograd.gradcheck(f, (x, h0, c0, *weights), eps=1e-6, atol=1e-6)


def test_training_lowers_the_esr_on_a_tanh_drive():
    """Truncated-BPTT-style training on random segments (the first 128 samples of each segment
    settle the state and are left out of the loss) learns a tanh drive: ESR from ~0.6 to
    below 0.06, at least ten times lower."""
    torch.manual_seed(0)
    x = dspfx.signals.guitar_di(SR, 0.5, seed=0)
    target = torch.tanh(4.0 * x)
    unit = LSTMAmp(SR, hidden=8)
    with torch.no_grad():
        before = float(esr(unit(x), target))
    optimizer = torch.optim.Adam(unit.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    segment, warm = 1024, 128
    for _ in range(80):
        starts = torch.randint(0, x.shape[-1] - segment, (4,), generator=g).tolist()
        xb = torch.cat([x[..., s : s + segment] for s in starts])
        yb = torch.cat([target[..., s : s + segment] for s in starts])
        loss = esr(unit(xb)[..., warm:], yb[..., warm:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        after = float(esr(unit(x), target))
    assert before > 0.3
    assert after < 0.06 and after < 0.1 * before


def test_dtype_mismatch_is_cast_and_cast_back():
    unit = LSTMAmp(SR, hidden=4)
    x = _noise((1, 1, 200), 6, dtype=torch.float64)
    with torch.no_grad():
        y = unit(x)
        assert y.dtype == torch.float64
        assert torch.allclose(y, unit(x.float()).double(), atol=1e-7)


def test_bad_input_errors():
    for bad in (0, -3, 2.5, True, "32"):
        with pytest.raises(ValueError, match="hidden"):
            LSTMAmp(SR, hidden=bad)
        if not isinstance(bad, bool) and isinstance(bad, int) and bad < 1:
            with pytest.raises(ValueError, match="hidden"):
                lstm_parameter_count(bad)
    with pytest.raises(ValueError, match="seed"):
        LSTMAmp(SR, seed=1.5)
    with pytest.raises(ValueError, match="sample_rate"):
        LSTMAmp(0)
    unit = LSTMAmp(SR, hidden=4)
    with pytest.raises(ValueError, match=r"\(batch, channels, samples\)"):
        unit(torch.zeros(100))
    with pytest.raises(TypeError, match="input audio"):
        unit(None)
    with pytest.raises(TypeError, match="floating"):
        unit(torch.zeros(1, 1, 10, dtype=torch.int64))
    with pytest.raises(ValueError, match="NaN|finite"):
        unit(torch.full((1, 1, 10), float("nan")))
    with pytest.raises(ValueError, match="does not fit"):
        unit.render_block(torch.zeros(2, 1, 10), {}, unit.init_state(1, 1))
    with pytest.raises(TypeError, match="state"):
        unit.process(torch.zeros(1, 1, 10), {}, None)
    with pytest.raises(TypeError, match="unknown"):
        LSTMAmp(SR, gain_db=3.0)  # no knobs


def test_without_the_skip_connection_the_output_is_the_head_alone():
    """skip=False (NAM's LSTM): same weights, the output differs from skip=True by the input."""
    x = torch.randn(1, 1, 300, dtype=torch.float64)
    with_skip = dspfx.make("lstm_amp", hidden=4, seed=2).double()
    without = dspfx.make("lstm_amp", hidden=4, seed=2, skip=False).double()
    with torch.no_grad():
        torch.testing.assert_close(with_skip(x) - without(x), x)
