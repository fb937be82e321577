"""Second-order-section cascades (dspfx.functional.sos.sos_filter)."""

import numpy as np
import pytest
import scipy.signal
import torch

from dspfx.functional import biquad_coefficients, iir, sos_filter


# ---- sos_filter: the fused cascade (issue 4 speed) --------------------------------------------


def _random_sections(n_sections, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n_sections):
        mode = ("peak", "lowshelf", "highpass", "highshelf", "lowpass")[i % 5]
        hz = float(50.0 * 2.0 ** (8.0 * torch.rand(1, generator=gen)))
        q = float(0.3 + 5.0 * torch.rand(1, generator=gen))
        gain = float(24.0 * torch.rand(1, generator=gen) - 12.0)
        b, a = biquad_coefficients(mode, torch.tensor(hz), torch.tensor(q), torch.tensor(gain), 48000)
        out.append((b.to(dtype), a.to(dtype)))
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n_sections", [1, 2, 5])
@pytest.mark.parametrize("n", [1, 3, 2000])
def test_sos_filter_fused_is_bit_identical_to_iir_per_section(dtype, n_sections, n):
    gen = torch.Generator().manual_seed(n)
    x = torch.randn(2, 2, n, generator=gen, dtype=torch.float64).to(dtype)
    sections = _random_sections(n_sections, dtype)
    state = [(torch.randn(2, 2, 2, generator=gen).to(dtype), torch.randn(2, 2, 2, generator=gen).to(dtype)) for _ in sections]
    with torch.no_grad():
        y, s = sos_filter(x, sections, state)
        y_ref = x
        s_ref = []
        for (b, a), st in zip(sections, state):
            y_ref, st_new = iir(y_ref, b, a, st)
            s_ref.append(st_new)
    assert torch.equal(y, y_ref)
    for (xh, yh), (xh_ref, yh_ref) in zip(s, s_ref):
        assert torch.equal(xh, xh_ref) and torch.equal(yh, yh_ref)


def test_sos_filter_streams_and_matches_scipy_sosfilt():
    x = torch.randn(1, 1, 3000, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    sections = _random_sections(4, torch.float64, seed=5)
    with torch.no_grad():
        y, _ = sos_filter(x, sections)
        state, parts = None, []
        for lo in range(0, 3000, 7 * 64):
            part, state = sos_filter(x[..., lo : lo + 7 * 64], sections, state)
            parts.append(part)
    assert torch.equal(torch.cat(parts, -1), y)
    sos = np.stack([np.concatenate([b.reshape(-1).numpy(), a.reshape(-1).numpy()]) for b, a in sections])
    np.testing.assert_allclose(y[0, 0].numpy(), scipy.signal.sosfilt(sos, x[0, 0].numpy()), rtol=0, atol=1e-9)


def test_sos_filter_gradients_use_the_per_section_path():
    x = torch.randn(1, 1, 64, dtype=torch.float64, requires_grad=True)
    b1, a1 = _random_sections(1, torch.float64, seed=1)[0]
    b1 = b1.clone().requires_grad_(True)
    sections = [(b1, a1)] + _random_sections(1, torch.float64, seed=2)
    torch.autograd.gradcheck(lambda x, b: sos_filter(x, [(b, a1), sections[1]])[0], (x, b1))
    with pytest.raises(ValueError, match="one .* per section"):
        sos_filter(x, sections, [None])


