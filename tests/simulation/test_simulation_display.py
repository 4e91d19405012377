"""A simulation result shows itself: repr is the summary, the table carries the latency, and
plot() draws the queues and the latency percentiles."""

import matplotlib
import numpy as np
import pytest

from moa_stability import MoANetwork, simulate

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def result():
    net = MoANetwork(n=3, M=1, k=1, arrival_rate=0.05, service_time=[1, 1, 2])
    return simulate(net, method="events", horizon=4000, seed=3, record_paths=True)


def test_repr_is_the_summary(result):
    assert repr(result) == str(result) and repr(result).startswith("Simulation (events")
    assert result._repr_html_().count("<table") == 1


def test_to_frame_carries_the_latency(result):
    frame = result.to_frame()
    for stat in ("mean", "ci", "p50", "p95", "p99"):
        np.testing.assert_array_equal(
            frame[f"latency_{stat}_s"], getattr(result, f"latency_{stat}")
        )
    assert frame.index.name == "device" and len(frame) == 3
    # M = 1: propose on the origin and a helper, then aggregate: at least two inferences.
    assert result.latency_p50 <= result.latency_p95 <= result.latency_p99
    assert result.latency_mean > 2 * 1.0


def test_plot_returns_a_figure_with_paths_tail_and_latency(result):
    fig = result.plot()
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["queue paths", "queue-length tail", "prompt latency"]
    heights = [patch.get_height() for patch in fig.axes[2].patches]
    np.testing.assert_allclose(
        heights, [result.latency_p50, result.latency_mean, result.latency_p95, result.latency_p99]
    )
    matplotlib.pyplot.close(fig)


def test_plot_without_paths_shows_the_mean_queues():
    net = MoANetwork(n=2, arrival_rate=0.2, service_time=[1, 2])
    result = simulate(net, method="events", horizon=2000, seed=0)
    fig = result.plot()
    bars = [patch.get_height() for patch in fig.axes[0].patches]
    np.testing.assert_allclose(bars, result.mean_queue)
    matplotlib.pyplot.close(fig)
