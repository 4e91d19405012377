"""The simulated queue-length distribution against exact laws, and figure 8's tail fit.

Exact comparisons use independent runs (one seed each) and assert
``|mean - exact| <= 2 x (95% t half-width)`` over them (more than four standard errors: a correct
simulator fails with negligible probability), plus a bound on the half-width so that the test
has the power to catch a wrong distribution.
"""

import numpy as np
import pytest

from moa_stability import MoANetwork, fit_tail, paper_network
from moa_stability.simulation.simulate import simulate
from moa_stability.simulation.statistics import t_interval
from paper_figures.fig8_memory import make

RUNS = 12


def tails_over_runs(net, buffers, **kwargs):
    """``P(Q_i > B)`` per run, device and buffer, from ``RUNS`` single-seed simulations."""
    return np.stack(
        [simulate(net, seed=seed, **kwargs).overflow_probability(buffers) for seed in range(RUNS)],
        axis=-1,
    )


def assert_matches(runs, exact, rel_precision):
    mean, half = t_interval(runs)
    assert np.all(np.abs(mean - exact) <= 2 * half), (mean, half, exact)
    assert np.all(half <= rel_precision * exact), half / exact


def geo_geo_1_law(p, q, size):
    r"""docs/model.md section 3 balance equations: :math:`\pi_0 = 1 - p/q`,
    :math:`\pi_1 = \pi_0 p / (q(1-p))`, :math:`\pi_{j+1} = \pi_j\, p(1-q)/(q(1-p))`."""
    ratio = p * (1 - q) / (q * (1 - p))
    pi0 = 1 - p / q
    rest = pi0 * p / (q * (1 - p)) * ratio ** np.arange(size - 1)
    return np.concatenate([[pi0], rest])


def test_events_mm1_tail_is_geometric():
    rho = 0.7
    net = MoANetwork(n=1, M=0, arrival_rate=rho / 2.0, service_time=2.0)
    buffers = np.array([0, 2, 5, 10, 15])
    runs = tails_over_runs(net, buffers, method="events", horizon=2e6)
    assert_matches(runs[0], rho ** (buffers + 1), 0.1)


def test_slots_geo_geo_1_law_and_tail():
    dt = 0.25
    net = MoANetwork(n=2, M=0, arrival_rate=[0.5, 0.6], service_time=[1.0, 1.25])
    p, q = net.arrival_rate * dt, dt / net.service_time[0]
    law = np.stack([geo_geo_1_law(a, b, 9) for a, b in zip(p, q, strict=True)])
    runs = [simulate(net, method="slots", horizon=1e6, dt=dt, seed=seed) for seed in range(RUNS)]
    pmf = np.stack([r.queue_distribution[:, :9] for r in runs], axis=-1)
    assert_matches(pmf, law, 0.08)
    buffers = np.array([0, 3, 7])
    tail = np.stack([r.overflow_probability(buffers) for r in runs], axis=-1)
    assert_matches(tail, 1 - np.cumsum(law, axis=1)[:, buffers], 0.1)


@pytest.mark.parametrize("method", ["slots", "events"])
def test_distribution_sums_to_one_and_its_mean_is_mean_queue(method):
    r = simulate(
        paper_network(arrival_rate=0.8 / 7), method=method, horizon=2e4, seed=2, replications=2
    )
    d = r.queue_distribution
    assert d.shape == (4, r.max_tracked_queue + 1) and r.max_queue.max() < r.max_tracked_queue
    assert np.all(d >= 0) and np.allclose(d.sum(axis=1), 1, rtol=0, atol=1e-12)
    assert np.allclose(d @ np.arange(d.shape[1]), r.mean_queue, rtol=1e-10)
    # P(Q > 0) is the busy fraction.
    assert np.allclose(r.overflow_probability(0), r.utilisation, rtol=1e-10)


def test_overflow_column_lumps_long_queues_of_the_same_path():
    net = paper_network(arrival_rate=0.9 / 7)
    full = simulate(net, horizon=2e4, seed=4)
    short = simulate(net, horizon=2e4, seed=4, max_tracked_queue=5)
    assert short.queue_distribution.shape == (4, 6)
    assert np.allclose(short.queue_distribution[:, :5], full.queue_distribution[:, :5])
    assert np.allclose(short.queue_distribution[:, 5], full.queue_distribution[:, 5:].sum(axis=1))
    assert np.allclose(
        short.overflow_probability(np.arange(5)), full.overflow_probability(np.arange(5))
    )
    assert np.array_equal(short.mean_queue, full.mean_queue)


def test_distribution_of_a_run_capped_in_the_warm_up_covers_what_was_simulated():
    r = simulate(paper_network(arrival_rate=1.5 / 7), horizon=1e5, seed=1, max_jobs=300)
    assert r.cap_hit_time is not None and r.cap_hit_time < r.warmup_s
    d = r.queue_distribution
    assert np.allclose(d.sum(axis=1), 1) and np.allclose(d @ np.arange(d.shape[1]), r.mean_queue)


def test_buffer_for_is_the_smallest_buffer_meeting_the_target():
    r = simulate(paper_network(arrival_rate=0.9 / 7), method="events", horizon=5e4, seed=3)
    need = r.buffer_for(1e-2)
    tail = r.overflow_probability(np.arange(r.max_tracked_queue))
    rows = np.arange(4)
    assert np.all(tail[rows, need] <= 1e-2)
    assert np.all((need == 0) | (tail[rows, np.maximum(need - 1, 0)] > 1e-2))
    assert np.all(need > 0)


def test_same_seed_same_distribution():
    net = paper_network(arrival_rate=0.7 / 7)
    a, b = (simulate(net, method="events", horizon=1e4, seed=9) for _ in range(2))
    c = simulate(net, method="events", horizon=1e4, seed=10)
    assert np.array_equal(a.queue_distribution, b.queue_distribution)
    assert not np.array_equal(a.queue_distribution, c.queue_distribution)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"max_tracked_queue": 0}, "max_tracked_queue=0"),
        ({"max_tracked_queue": 2.5}, "max_tracked_queue=2.5"),
        ({"max_tracked_queue": 10**7}, "at most"),
    ],
)
def test_bad_tracking_raises_value_error(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        simulate(paper_network(), horizon=100.0, **kwargs)


def test_bad_buffer_or_target_raises_value_error():
    r = simulate(paper_network(arrival_rate=0.5 / 7), horizon=2e3, seed=1, max_tracked_queue=8)
    for buffer in (-1, 8, 2.0, [[1]]):
        with pytest.raises(ValueError, match="buffer="):
            r.overflow_probability(buffer)
    for target in (0, 1, float("nan")):
        with pytest.raises(ValueError, match="probability="):
            r.buffer_for(target)
    with pytest.raises(ValueError, match="max_tracked_queue"):
        r.buffer_for(1e-9)


def test_fit_tail_recovers_a_geometric_law():
    rho = 0.8
    buffers = np.arange(60)
    fit = fit_tail(buffers, 0.5 * rho**buffers, floor=1e-4)
    assert fit.decay_per_job == pytest.approx(-np.log(rho), rel=1e-9)
    # 0.5 rho^B <= 1e-3 first at B = ceil(log(2e-3) / log(rho)).
    assert fit.buffer_for(1e-3) == int(np.ceil(np.log(2e-3) / np.log(rho)))


def test_fig8_quick_tails_lengthen_with_load():
    out = make(quick=True)
    summary = out.table.drop_duplicates("load").sort_values("load")
    assert len(summary) >= 3
    assert np.all(np.diff(summary["decay_rate_per_job"]) < 0)
    assert np.all(np.diff(summary["buffer_1e-3_fit_jobs"]) > 0)
    assert np.all(summary["mean_join_waiting"] > 0)
    for _, part in out.table.groupby("load"):
        assert np.all(np.diff(part["overflow_probability"]) <= 0)
