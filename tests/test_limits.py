"""Specs from files are not trusted: sizes, rates and depth are checked before anything is made
(dspfx.limits), file paths stay in the spec's folder, weights must be finite; a caller raises a
limit explicitly. Hypothesis fuzzes spec loading: every outcome is a unit or a named error."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dspfx
from dspfx.limits import OPTION_LIMITS, LimitError, check_spec


def _nested(depth: int) -> dict:
    spec = {"unit": "gain"}
    for _ in range(depth):
        spec = {"unit": "chain", "children": {"a": spec}}
    return spec


@pytest.mark.parametrize("spec, words", [
    ({"unit": "fdn_reverb", "options": {"n_lines": 1_000_000}}, "n_lines=1000000 is above the limit 64"),
    ({"unit": "gain", "sample_rate": 1e9}, "sample_rate 1000000000.0 is outside"),
    ({"unit": "gain", "sample_rate": 1}, "sample_rate 1 is outside"),
    ({"unit": "wavetable", "options": {"n_tables": 10**6}}, "n_tables"),
    ({"unit": "wavetable", "options": {"table_size": 2**30}}, "table_size"),
    ({"unit": "fir", "options": {"n_taps": 10**9}}, "n_taps"),
    ({"unit": "reverb", "options": {"comb_lengths": [10**9]}}, "comb_lengths"),
    ({"unit": "reverb", "options": {"comb_lengths": list(range(10_000))}}, "10000 items"),
    ({"unit": "noise_reverb", "options": {"length_s": 1e6}}, "length_s"),
    ({"unit": "noise_reverb", "options": {"length_s": float("nan")}}, "finite"),
    (_nested(400), "deeper than 32"),
])
def test_a_spec_over_the_limits_is_refused_at_once_and_named(spec, words):
    t0 = time.perf_counter()
    with pytest.raises(LimitError, match=words.replace("(", r"\(")):
        dspfx.build(spec)
    with pytest.raises(LimitError):
        dspfx.build(json.dumps(spec))
    assert time.perf_counter() - t0 < 5.0  # nothing was made


def test_a_limit_is_raised_explicitly():
    spec = {"unit": "fdn_reverb", "options": {"n_lines": 96}}
    with pytest.raises(LimitError):
        dspfx.build(spec)
    unit = dspfx.build(spec, limits=dspfx.Limits(options={"n_lines": 128}))
    assert unit.options()["n_lines"] == 96
    assert dspfx.build(_nested(40), limits=dspfx.Limits(max_depth=64)).name == "chain"
    assert OPTION_LIMITS["n_lines"] == 64


def test_a_deep_spec_file_is_refused_not_a_recursion_error(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text(json.dumps(_nested(400)))
    with pytest.raises(LimitError, match="deeper"):
        dspfx.load(path)
    (tmp_path / "deeper.json").write_text("[" * 100_000 + "]" * 100_000)  # beyond the JSON parser's own depth
    with pytest.raises(ValueError, match="chain spec .* is not JSON"):
        dspfx.load(tmp_path / "deeper.json")


def test_file_paths_in_a_spec_stay_in_its_folder_and_resolve_against_it(tmp_path, monkeypatch):
    ir = np.zeros(64, np.float32)
    ir[3] = 0.5
    folder = tmp_path / "preset"
    folder.mkdir()
    dspfx.write_audio(folder / "cab.wav", torch.from_numpy(ir)[None], 48000)
    (folder / "ok.json").write_text(json.dumps({"unit": "convolution", "options": {"impulse_response": "cab.wav"}}))
    monkeypatch.chdir(tmp_path)  # the spec's folder, not the working directory, is where cab.wav lies
    unit = dspfx.load(folder / "ok.json")
    assert int(unit.effective_impulse_response()[0].abs().argmax()) == 3  # cab.wav's tap (its level normalised)
    for escape in ("../secret.wav", "/etc/passwd", str(tmp_path / "secret.wav")):
        (folder / "bad.json").write_text(json.dumps({"unit": "convolution", "options": {"impulse_response": escape}}))
        with pytest.raises(LimitError, match="outside the spec's folder"):
            dspfx.load(folder / "bad.json")
    dspfx.write_audio(tmp_path / "secret.wav", torch.from_numpy(ir)[None], 48000)
    (folder / "bad.json").write_text(json.dumps({"unit": "convolution", "options": {"impulse_response": "../secret.wav"}}))
    assert dspfx.load(folder / "bad.json", limits=dspfx.Limits(allow_outside_paths=True)).name == "convolution"


def test_a_model_file_with_nan_weights_does_not_load(tmp_path):
    unit = dspfx.make("lstm_amp", hidden=4)
    with torch.no_grad():
        unit.output.weight[0, 0] = float("nan")
    dspfx.save(unit, tmp_path / "m.safetensors")
    with pytest.raises(ValueError, match="NaN or Inf"):
        dspfx.load(tmp_path / "m.safetensors")


def test_check_spec_copies_and_leaves_the_input_alone():
    spec = {"unit": "chain", "children": {"a": {"unit": "gain", "knobs": {"gain_db": 3.0}}}}
    checked = check_spec(spec)
    assert checked == spec and checked is not spec and checked["children"] is not spec["children"]


_names = st.sampled_from(["gain", "chain", "parallel", "fdn_reverb", "wavetable", "convolution", "biquad", "nope", 3])
_values = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True),
                    st.text(max_size=8), st.lists(st.integers(-10**9, 10**9), max_size=20))
_specs = st.recursive(
    st.fixed_dictionaries({"unit": _names}, optional={
        "sample_rate": _values, "options": st.dictionaries(st.sampled_from(
            ["n_lines", "n_tables", "table_size", "delays", "mode", "impulse_response", "hop", "x"]), _values, max_size=3),
        "knobs": st.dictionaries(st.sampled_from(["gain_db", "mix", "cutoff_hz"]), _values, max_size=2)}),
    lambda inner: st.fixed_dictionaries({"unit": _names, "children": st.dictionaries(st.text(min_size=1, max_size=3), inner,
                                                                                    max_size=3)}),
    max_leaves=6,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_specs)
def test_fuzzed_specs_make_a_unit_or_a_named_error_quickly(spec):
    t0 = time.perf_counter()
    try:
        unit = dspfx.build(spec)
    except (ValueError, TypeError, KeyError) as err:
        assert str(err)
    else:
        assert isinstance(unit, dspfx.Unit)
    assert time.perf_counter() - t0 < 5.0


def test_the_readme_limits_table_names_every_limit():
    from pathlib import Path

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    table = readme.split("### Limits on what a file may ask for")[1].split("\n## ")[0]
    for name in OPTION_LIMITS:
        assert f"`{name}`" in table, name
    for field in ("max_depth", "max_units", "max_sequence", "max_integer", "allow_outside_paths"):
        assert field in table, field


def test_save_refuses_what_load_would_refuse(tmp_path):
    """A chain nested 400 deep used to save and then not load."""
    deep = dspfx.build(_nested(40), limits=dspfx.Limits(max_depth=64))
    with pytest.raises(LimitError, match="deeper than 32"):
        dspfx.save(deep, tmp_path / "deep.json")
    assert not list(tmp_path.iterdir())
