"""dspfx.lv2: rendering through an LV2 plugin with lv2apply, and its errors named."""

from __future__ import annotations

import numpy as np
import pytest

from dspfx.lv2 import LV2Error, lv2apply_available, render_lv2

needs_lv2apply = pytest.mark.skipif(not lv2apply_available(), reason="needs lv2apply (Debian: lilv-utils)")


def test_bad_arguments_are_named_before_anything_runs():
    x = np.zeros(100, np.float32)
    with pytest.raises(ValueError, match="LV2 plugin URI"):
        render_lv2("not a uri", x, 48000)
    with pytest.raises(ValueError, match="NaN"):
        render_lv2("http://example.org/p", np.full(10, np.nan), 48000)
    with pytest.raises(ValueError, match="not empty"):
        render_lv2("http://example.org/p", np.zeros(0), 48000)
    with pytest.raises(ValueError, match="control symbols"):
        render_lv2("http://example.org/p", x, 48000, controls={"-o /etc/x": 1.0})


@needs_lv2apply
def test_an_unknown_plugin_is_an_lv2_error_with_lv2applys_message():
    with pytest.raises(LV2Error, match="not found"):
        render_lv2("http://example.org/no-such-plugin", np.zeros(100, np.float32), 48000)


@needs_lv2apply
def test_a_boost_at_its_defaults_renders_the_input_shape_and_a_control_changes_it():
    uri = "http://guitarix.sourceforge.net/plugins/gxbooster#booster"
    x = (0.1 * np.sin(2 * np.pi * 220 * np.arange(4800) / 48000)).astype(np.float32)
    try:
        y = render_lv2(uri, x, 48000)
    except LV2Error as err:
        pytest.skip(f"needs guitarix-lv2: {err}")
    assert y.shape == (1, 4800) and y.dtype == np.float32 and np.all(np.isfinite(y))
    assert float(np.abs(y).max()) > 0.01
    louder = render_lv2(uri, x, 48000, controls={"fslider0_": 20.0})  # a boost knob at its maximum
    assert float(np.abs(louder).max()) > 1.5 * float(np.abs(y).max())
