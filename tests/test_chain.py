"""Registry, Chain / Parallel / DryWet, control paths, spec round trips."""

import json

import pytest
import torch

import dspfx
from dspfx.registry import UnknownUnitError, markdown_table


def test_registry_lists_units_with_knob_tables():
    rows = {row["name"]: row for row in dspfx.units()}
    assert {"gain", "distortion", "biquad", "chain", "parallel", "dry_wet"} <= set(rows)
    biquad = rows["biquad"]
    assert biquad["category"] == "effect"
    assert biquad["knobs"]["cutoff_hz"] == {
        "default": 1000.0,
        "minimum": 20.0,
        "maximum": 20000.0,
        "scale": "log",
        "unit": "Hz",
        "doc": "centre or corner frequency",
    }
    assert biquad["options"]["mode"] == "peak"
    assert biquad["summary"].startswith("Second-order IIR filter")
    json.dumps(dspfx.units())  # JSON-safe
    assert {r["name"] for r in dspfx.units("effect")} >= {"gain", "biquad"}
    assert all(r["category"] == "container" for r in dspfx.units("container"))


def test_unknown_unit_lists_close_matches():
    with pytest.raises(UnknownUnitError, match="unknown unit 'biqaud'. Did you mean: biquad"):
        dspfx.make("biqaud")
    with pytest.raises(KeyError):  # also a KeyError, for code that catches that
        dspfx.make("no_such_thing")


def test_make_passes_options_and_knobs_and_rejects_unknown_ones():
    eq = dspfx.make("biquad", mode="lowshelf", cutoff_hz=200.0, gain_db=4.0, sample_rate=44100)
    assert eq.mode == "lowshelf" and eq.sample_rate == 44100
    assert eq.knobs() == pytest.approx({"cutoff_hz": 200.0, "q": 0.7071, "gain_db": 4.0}, rel=1e-6)
    with pytest.raises(ValueError, match="biquad mode must be one of"):
        dspfx.make("biquad", mode="lowshelve")
    with pytest.raises(TypeError):
        dspfx.make("gain", drive_db=3.0)


def test_register_checks_names_docs_and_duplicates():
    class NoDoc(dspfx.Unit):
        name = "no_doc_unit"

    with pytest.raises(ValueError, match="docstring"):
        dspfx.register(NoDoc)

    class BadName(dspfx.Unit):
        """doc"""

        name = "Bad-Name"

    with pytest.raises(ValueError, match="snake_case"):
        dspfx.register(BadName)

    class Clash(dspfx.Unit):
        """doc"""

        name = "gain"

    with pytest.raises(ValueError, match="already taken"):
        dspfx.register(Clash)


def test_readme_unit_table_matches_the_registry():
    from pathlib import Path

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    assert markdown_table() in readme, "README unit table is stale: paste `dspfx units --markdown`"


def _amp(rate=48000):
    return dspfx.Chain(
        drive=dspfx.make("distortion", drive_db=12.0, sample_rate=rate),
        tone=dspfx.make("biquad", mode="lowshelf", cutoff_hz=300.0, gain_db=-3.0, sample_rate=rate),
    )


def test_chain_runs_in_series_and_addresses_children_by_path():
    amp = _amp()
    x = torch.randn(2, 1, 256)
    expected = amp.units["tone"](amp.units["drive"](x))
    assert torch.allclose(amp(x), expected)
    assert set(amp.knobs()) == {"drive.drive_db", "tone.cutoff_hz", "tone.q", "tone.gain_db"}
    amp.set(**{"tone.gain_db": 5.0})
    assert amp.units["tone"].knobs()["gain_db"] == pytest.approx(5.0)
    assert amp[0] is amp.units["drive"] and amp["tone"] is amp.units["tone"] and len(amp) == 2
    # a control by path overrides only that child's knob
    y = amp(x, **{"drive.drive_db": 0.0})
    assert torch.allclose(y, amp.units["tone"](torch.tanh(x)), atol=1e-6)
    with pytest.raises(KeyError, match="no child 'tonee'"):
        amp(x, **{"tonee.gain_db": 1.0})
    with pytest.raises(KeyError, match="unknown knob"):
        amp.set(**{"tone.treble": 1.0})


def test_positional_children_are_numbered():
    chain = dspfx.Chain(dspfx.make("gain"), dspfx.make("gain", gain_db=-6.0))
    assert list(chain.knobs()) == ["0.gain_db", "1.gain_db"]
    with pytest.raises(TypeError, match="all by position or all by name"):
        dspfx.Chain(dspfx.make("gain"), b=dspfx.make("gain"))


def test_sample_rate_mismatch_in_a_chain_raises():
    with pytest.raises(ValueError, match=r"sample-rate mismatch between children \(a: 48000 Hz, b: 44100 Hz\)"):
        dspfx.Chain(a=dspfx.make("gain"), b=dspfx.make("gain", sample_rate=44100))
    with pytest.raises(TypeError, match="expected a dspfx Unit"):
        dspfx.Chain(a=torch.nn.Linear(1, 1))
    with pytest.raises(ValueError, match="at least one unit"):
        dspfx.Chain()


def test_parallel_sums_branches_with_optional_gains():
    a, b = dspfx.make("gain", gain_db=-6.0), dspfx.make("distortion", drive_db=6.0)
    x = torch.randn(1, 2, 128)
    par = dspfx.Parallel(a=a, b=b)
    assert torch.allclose(par(x), a(x) + b(x))
    par = dspfx.Parallel(a=a, b=b, gains=True)
    par.set(gain_db_a=-60.0, gain_db_b=0.0)
    assert torch.allclose(par(x), 1e-3 * a(x) + b(x), atol=1e-6)
    assert "gain_db_a" in par.knobs() and "b.drive_db" in par.knobs()


def test_dry_wet_mixes_and_nests():
    wet = dspfx.make("distortion", drive_db=20.0)
    x = torch.randn(1, 1, 100)
    dw = dspfx.DryWet(wet, mix=0.25)
    assert torch.allclose(dw(x), 0.75 * x + 0.25 * wet(x), atol=1e-6)
    assert torch.allclose(dw(x, mix=1.0), wet(x))
    nested = dspfx.Chain(pre=dspfx.make("gain", gain_db=-3.0), fx=dw)
    assert "fx.wet.drive_db" in nested.knobs()
    y = nested(x, **{"fx.wet.drive_db": 0.0, "fx.mix": 1.0})
    assert torch.allclose(y, torch.tanh(10 ** (-3 / 20) * x), atol=1e-6)


def _strip_knobs(spec):
    out = {k: v for k, v in spec.items() if k != "knobs"}
    out["knob_names"] = sorted(spec.get("knobs", {}))
    if "children" in spec:
        out["children"] = {k: _strip_knobs(v) for k, v in spec["children"].items()}
    return out


def test_spec_round_trip_renders_identically():
    chain = dspfx.Chain(
        amp=_amp(),
        mix=dspfx.Parallel(a=dspfx.make("gain", gain_db=-2.0), b=dspfx.make("biquad", mode="notch"), gains=True),
        room=dspfx.DryWet(dspfx.make("biquad", mode="allpass", cutoff_hz=2500.0), mix=0.3),
    )
    chain.set(**{"mix.gain_db_b": -4.5})
    chain.freeze("amp.tone.q")
    spec = chain.spec()
    text = json.dumps(spec)
    rebuilt = dspfx.build(text)
    assert _strip_knobs(rebuilt.spec()) == _strip_knobs(spec)
    assert rebuilt.knobs() == pytest.approx(chain.knobs(), rel=1e-6)
    assert rebuilt.frozen() == ["amp.tone.q"]
    x = torch.randn(1, 1, 2048)
    assert torch.allclose(rebuilt(x), chain(x), atol=1e-6)


def test_build_rejects_malformed_specs():
    with pytest.raises(ValueError, match="no 'unit' key"):
        dspfx.build({"knobs": {}})
    with pytest.raises(ValueError, match="unknown keys"):
        dspfx.build({"unit": "gain", "knob": {}})
    with pytest.raises(UnknownUnitError, match="Did you mean: gain"):
        dspfx.build({"unit": "gian"})
    with pytest.raises(ValueError, match="not valid JSON"):
        dspfx.build("{unit: gain")
    with pytest.raises(ValueError, match="out of range"):
        dspfx.build({"unit": "gain", "knobs": {"gain_db": 1000}})
    with pytest.raises(ValueError, match="not a container"):
        dspfx.build({"unit": "gain", "children": {}})
