"""The analysis results show themselves readably: repr is the summary, Jupyter gets tables,
a selection is a labelled matrix, and the report draws the graph."""

import matplotlib
import numpy as np
import pytest

from moa_stability import MoANetwork, max_stable_rate, stability_report

matplotlib.use("Agg")


def test_report_repr_is_the_summary_with_the_rate_in_prompts_per_second():
    # Complete graph, n = 4, M = 2, k = 2, device 3 takes 4 s: 7 jobs x 4 s per unit rate.
    report = stability_report(
        MoANetwork(n=4, M=2, k=2, arrival_rate=0.01, service_time=[1] * 3 + [4])
    )
    assert repr(report) == str(report) and not repr(report).startswith("StabilityReport(")
    np.testing.assert_allclose(report.max_stable_rate_per_s, 1 / 28, rtol=1e-12)
    assert "max stable rate       : 0.0357143 prompts/s per device (0.142857 total)" in repr(report)
    assert report._repr_html_().count("<table") == 1


def test_max_stable_rate_with_no_rates_given_assumes_equal_rates():
    report = stability_report(MoANetwork(n=4, M=2, k=2, service_time=[1] * 3 + [4]))
    np.testing.assert_allclose(report.max_stable_rate_per_s, 1 / 28, rtol=1e-12)
    uneven = stability_report(MoANetwork(n=2, arrival_rate=[0.1, 0.3], service_time=[1, 2]))
    # M = 0: device i alone, load lambda_i s_i = 0.1 and 0.6; the scale is 1/0.6.
    np.testing.assert_allclose(uneven.max_stable_rate_per_s, [1 / 6, 0.5], rtol=1e-12)


def test_report_plot_marks_the_bottleneck():
    report = stability_report(MoANetwork(n=6, M=1, k=1, arrival_rate=0.05, topology="ring",
                                         service_time=[1, 1, 1, 1, 1, 3]))  # fmt: skip
    fig = report.plot()
    assert isinstance(fig, matplotlib.figure.Figure)
    assert "device(s) [5]" in fig.axes[0].get_title()
    matplotlib.pyplot.close(fig)


@pytest.fixture(scope="module")
def optimised():
    net = MoANetwork(n=4, M=2, k=2, arrival_rate=1.0, service_time=[1, 1, 1, 4])
    return max_stable_rate(net, optimise_selection=True, objective="sum")


def test_selection_frame_is_a_labelled_matrix(optimised):
    frame = optimised.selection_frame()
    assert frame.shape == (2 * 4, 4) and frame.index.names == ["layer", "origin"]
    assert frame.columns.name == "helper"
    # Inclusion probabilities: rows sum to k = 2, nobody helps itself.
    np.testing.assert_allclose(frame.sum(axis=1), 2.0, atol=1e-6)
    for layer in (1, 2):
        np.testing.assert_allclose(np.diag(frame.loc[layer].to_numpy()), 0.0, atol=1e-9)
    text = repr(optimised)
    assert "selection pi[layer, origin -> helper]" in text and "e-1" not in text
    assert optimised._repr_html_().count("<table") == 2


def test_solver_noise_prints_as_zero():
    # Equal-rate direction cannot help; the sum objective starves device 3 (rate ~1e-15).
    res = max_stable_rate(MoANetwork(n=4, M=2, k=2, arrival_rate=1.0, service_time=[1, 1, 1, 4]),
                          objective="sum")  # fmt: skip
    assert res.rates.min() < 1e-9
    assert "e-1" not in repr(res) and "[0..0.0625] per device" in repr(res)
