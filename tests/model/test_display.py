"""Solver noise displays as 0; Jupyter gets the summary and the tables."""

import numpy as np
import pandas as pd

from moa_stability.model.display import html_summary, tidy


def test_tidy_sets_noise_to_zero_and_keeps_the_rest():
    x = np.array([0.0625, 1.158e-11, -2.9e-15, 0.03, np.nan, -0.5])
    out = tidy(x)
    np.testing.assert_array_equal(out[[1, 2]], [0.0, 0.0])
    assert not np.signbit(out[2])  # no "-0"
    np.testing.assert_array_equal(out[[0, 3, 5]], x[[0, 3, 5]])
    assert np.isnan(out[4]) and x[1] == 1.158e-11  # a copy: the input keeps its values


def test_tidy_frame_cleans_each_float_column_against_its_own_scale():
    frame = pd.DataFrame({"rate": [1e-12, 1e-12], "load": [1.0, 3e-12], "flag": [True, False]})
    out = tidy(frame)
    # A column of only tiny values is its own scale: nothing is noise relative to it.
    assert list(out["rate"]) == [1e-12, 1e-12]
    assert list(out["load"]) == [1.0, 0.0] and list(out["flag"]) == [True, False]


def test_html_summary_escapes_and_adds_tables():
    text = html_summary("a < b", pd.DataFrame({"x": [1.0, 1e-13]}))
    assert "<pre>a &lt; b</pre>" in text and text.count("<table") == 1
    assert "1e-13" not in text


def test_load_profile_shows_its_table():
    from moa_stability import MoANetwork, load_profile

    html = load_profile(MoANetwork(n=3, M=1, k=1, arrival_rate=0.1))._repr_html_()
    assert "LoadProfile(n=3" in html and html.count("<table") == 1
