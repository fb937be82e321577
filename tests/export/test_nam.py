"""The .nam export: NAM's own loader (neural-amp-modeler's ``init_from_nam``) renders the file
exactly as dspfx renders the unit, for each classic WaveNet size; bad exports are named."""

from __future__ import annotations

import json

import pytest
import torch

import dspfx
from dspfx.export import export_nam, nam_dict


@pytest.mark.parametrize("size", ["standard", "lite", "feather", "nano"])
def test_nams_loader_renders_the_file_as_dspfx_does(size, tmp_path):
    nam_models = pytest.importorskip("nam.models", reason="neural-amp-modeler is not installed")
    unit = dspfx.make("wavenet", size=size, seed=7)
    with torch.no_grad():  # weights large enough that every layer matters
        for p in unit.parameters():
            p.mul_(3.0)
    path = export_nam(unit, tmp_path / f"{size}.nam", metadata={"name": f"test {size}", "gear_type": "amp"})
    data = json.loads(path.read_text())
    assert data["architecture"] == "WaveNet" and data["sample_rate"] == 48000.0
    assert data["metadata"]["name"] == f"test {size}" and "date" in data["metadata"]
    model = nam_models.init_from_nam(data)
    x = torch.randn(1, 1, 8000) * 0.5
    with torch.no_grad():
        ours = unit(x)[0, 0]
        theirs = model(x[0])[0]
    assert float(ours.abs().max()) > 0.05
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)  # measured: 0.0 (bit for bit)
    exported = model._net.export_weights()
    assert torch.equal(torch.as_tensor(exported, dtype=torch.float32), unit.nam_weights())


def test_what_cannot_be_exported_is_named(tmp_path):
    with pytest.raises(TypeError, match="cannot be written as a .nam file"):
        nam_dict(dspfx.make("distortion"))
    unit = dspfx.make("wavenet", size="nano")
    with pytest.raises(ValueError, match="end in .nam"):
        export_nam(unit, tmp_path / "x.json")
    with pytest.raises(ValueError, match="unknown .nam metadata"):
        nam_dict(unit, {"nmae": "typo"})
    with torch.no_grad():
        unit.arrays[0].rechannel.weight[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        nam_dict(unit)
    assert not (tmp_path / "x.nam").exists()


@pytest.mark.parametrize("hidden", [8, 16])
def test_nams_loader_renders_an_exported_lstm_as_dspfx_does(hidden, tmp_path):
    nam_models = pytest.importorskip("nam.models", reason="neural-amp-modeler is not installed")
    unit = dspfx.make("lstm_amp", hidden=hidden, skip=False, seed=3)
    with torch.no_grad():  # gates that saturate and a cell that remembers: every weight matters
        for p in unit.parameters():
            p.mul_(2.5)
    data = json.loads(export_nam(unit, tmp_path / "lstm.nam").read_text())
    assert data["architecture"] == "LSTM"
    assert data["config"] == {"input_size": 1, "hidden_size": hidden, "num_layers": 1}
    model = nam_models.init_from_nam(data)
    x = torch.randn(1, 1, 6000) * 0.5
    with torch.no_grad():
        ours = unit(x)[0, 0]
        theirs = model(x[0])[0]
    assert float(ours.std()) > 0.05
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)
    core, lstm = model._core, unit.lstm  # NAM's loader put every weight where torch has it
    assert torch.equal(core.weight_hh_l0, lstm.weight_hh_l0) and torch.equal(model._head.weight, unit.output.weight)
    torch.testing.assert_close(core.bias_ih_l0 + core.bias_hh_l0, lstm.bias_ih_l0 + lstm.bias_hh_l0)
    assert not model._initial_hidden.any() and not model._initial_cell.any()


def test_an_lstm_with_the_skip_connection_is_refused_by_name():
    with pytest.raises(ValueError, match="skip connection NAM's LSTM lacks"):
        nam_dict(dspfx.make("lstm_amp", hidden=4))
    with pytest.raises(ValueError, match="skip must be True or False"):
        dspfx.make("lstm_amp", skip=1)
