"""The simulator at scale (issue 13): network-wide (pooled) statistics that cost O(1) per event
and stay meaningful when each device sees few events, per-device integrals per batch, and the
superposed stream of user prompts of the continuous clock."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from moa_stability import MoANetwork, loads, paper_network
from moa_stability.simulation import kernels as kern
from moa_stability.simulation import simulate as sim
from moa_stability.simulation.simulate import simulate
from moa_stability.simulation.statistics import MAX_BATCHES, batch_count


@pytest.mark.parametrize("method", ["events", "slots"])
def test_pooled_integrals_equal_the_per_device_sums(method):
    # The network-wide integrals are kept per event, the per-device ones per device change:
    # two independent bookkeepings of the same paths, equal up to rounding.
    net = paper_network(arrival_rate=0.7 / 7)
    r = simulate(net, method=method, horizon=3_000.0, seed=5, replications=2)
    assert r.total_queue_mean == pytest.approx(r.mean_queue.sum(), rel=1e-9)
    assert r.busy_devices_mean == pytest.approx(r.utilisation.sum(), rel=1e-9)
    assert np.isfinite(r.busy_devices_ci) and r.busy_devices_ci > 0


def test_device_bins_are_the_batches_of_the_per_bin_arrays():
    # One replication: per-device batch means over per-batch device bins (default) equal those
    # over every bin (record_paths), because the device bins are exactly the batches.
    net = paper_network(arrival_rate=0.8 / 7)
    coarse = simulate(net, method="events", horizon=20_000.0, seed=2)
    fine = simulate(net, method="events", horizon=20_000.0, seed=2, record_paths=True)
    np.testing.assert_allclose(coarse.mean_queue, fine.mean_queue, rtol=1e-9)
    np.testing.assert_allclose(coarse.mean_queue_ci, fine.mean_queue_ci, rtol=1e-9)
    np.testing.assert_allclose(coarse.utilisation_ci, fine.utilisation_ci, rtol=1e-9)
    assert coarse.total_queue_ci == pytest.approx(fine.total_queue_ci, rel=1e-9)
    assert coarse.verdict == fine.verdict


@pytest.mark.parametrize("warmup", [0.0, 0.2, 0.55])
def test_device_edges_hold_the_warm_edge_and_the_batches(warmup):
    bins = sim.N_BINS
    warm_bin = sim._warmup_bin(warmup, 1.0, bins)
    batches = batch_count(1e6, 1.0, bins - warm_bin)
    edges = sim._device_edges(bins, warm_bin, batches)
    after = edges[edges >= warm_bin]
    expected = [g[0] for g in np.array_split(np.arange(warm_bin, bins), batches)] + [bins]
    assert after.tolist() == expected
    assert edges[0] == 0 and np.all(np.diff(edges) > 0)
    before = np.diff(edges[edges <= warm_bin])  # runs of the warm-up: as long as the batches,
    assert (before.size == 0) == (warm_bin == 0)  # or longer when MAX_BATCHES caps their count
    assert before.size <= MAX_BATCHES
    if before.size < MAX_BATCHES:
        assert before.max(initial=0) <= np.diff(after).max()


def test_pooled_utilisation_is_the_load_when_each_device_sees_few_events():
    # 5,000 devices on a ring, about 100 jobs per device per replication: the network-wide
    # busy devices must match the exact sum of loads (any work-conserving stable queue has
    # utilisation rho), within a 95% CI over replications (widened 1.5x).
    net = MoANetwork(n=5_000, M=1, k=1, topology="ring", arrival_rate=1.0, service_time=1.0)
    net = net.at_load(0.5)
    r = simulate(net, method="events", horizon=300.0, seed=11, replications=4)
    exact = loads(net).sum()
    assert abs(r.busy_devices_mean - exact) <= 1.5 * r.busy_devices_ci
    assert r.busy_devices_ci < 0.02 * exact  # pooled: tight however few events per device
    assert r.mean_queue.shape == (net.n,) and np.all(np.isfinite(r.mean_queue_ci))
    assert r.utilisation.mean() == pytest.approx(r.busy_devices_mean / net.n, rel=1e-9)


@pytest.mark.parametrize(
    "weights",
    [[0.5, 0.0, 2.0, 1.0, 0.25, 3.0], [1.0] * 7, [1e-3, 1.0, 0.0, 0.0, 5.0], [0.0, 0.0, 0.0]],
)
def test_alias_table_draws_origins_with_probability_lambda_over_the_sum(weights):
    w = np.array(weights)
    cut, alias = kern.alias_table(w)
    rng = np.array([1, 2, 3, 4], np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    draws = 60_000
    counts = np.bincount([kern.alias_draw(rng, cut, alias) for _ in range(draws)], minlength=w.size)
    p = w / w.sum() if w.sum() > 0 else np.full(w.size, 1 / w.size)  # all zero: uniform
    assert np.all(counts[p == 0] == 0)  # a device without user prompts is never an origin
    live = p > 0
    expected = draws * p[live]
    chi2 = float(((counts[live] - expected) ** 2 / expected).sum())
    assert chi2 < stats.chi2.ppf(0.999, max(live.sum() - 1, 1))


def test_superposed_prompt_stream_keeps_each_devices_rate():
    # Continuous clock: one Poisson stream of the summed rate, origins by the alias table. Each
    # device's propose jobs on its own prompts (M = 0: one per prompt) count its arrivals, a
    # Poisson count with mean lambda_i T: within 4 standard deviations.
    rate = np.array([0.05, 0.2, 0.0, 0.1, 0.4])
    net = MoANetwork(n=5, M=0, arrival_rate=rate, service_time=0.5)
    r = simulate(net, method="events", horizon=20_000.0, seed=4)
    counts = r.inferences_by_type[0]
    mean = rate * 20_000.0
    assert counts[2] == 0
    assert np.all(np.abs(counts - mean) <= 4 * np.sqrt(mean) + 1e-9)
