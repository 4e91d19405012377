"""The batched latency computation (all distinct laws and joins at once) against independent
per-origin enumerations, and the default grid for networks with many distinct devices."""

import itertools

import numpy as np
import pytest
from scipy import integrate

from moa_stability import MoANetwork, job_rates, latency, random_regular_graph
from moa_stability.analysis.latency import FULL_GRID_CLASSES, GRID_POINTS


def _expected_max(gaps):
    """E[max of independent Exp(gap_i)] by quadrature."""
    value, _ = integrate.quad(lambda x: 1 - np.prod(-np.expm1(-np.asarray(gaps) * x)), 0, np.inf)
    return value


def test_heterogeneous_sparse_graph_matches_per_origin_enumeration():
    """Every device distinct, on a random 4-regular graph with unequal rates: each device is an
    M/M/1 queue (one service mean for all its job types), so the bound's mean for origin j is
    2 E[max(T_j, T_H)] + E[T_j] averaged over all 2-subsets H of j's neighbours, T_i ~
    Exp(1/s_i - r_i) independent; the code computes all origins' joins in one batch."""
    n = 12
    rng = np.random.default_rng(7)
    adj = random_regular_graph(n, 4, seed=3)
    net = MoANetwork(
        n=n,
        M=2,
        k=2,
        arrival_rate=rng.uniform(0.2, 1.0, n),
        service_time=rng.uniform(0.5, 2.0, n),
        topology=adj,
    ).at_load(0.7)
    gaps = 1 / net.service_time[0] - job_rates(net).sum(axis=0)
    res = latency(net, method="bound")
    for j in range(n):
        neighbours = adj.indices[adj.indptr[j] : adj.indptr[j + 1]]
        layer = np.mean(
            [
                _expected_max([gaps[j], *gaps[list(h)]])
                for h in itertools.combinations(neighbours, 2)
            ]
        )
        assert res.origin_mean_s[j] == pytest.approx(2 * layer + 1 / gaps[j], rel=2e-3)
    # Network mean: the origins weighted by their arrival rates.
    expected = net.arrival_rate @ res.origin_mean_s / net.arrival_rate.sum()
    assert res.mean_s == pytest.approx(expected, rel=1e-12)


def test_identical_origins_share_results_in_a_heterogeneous_network():
    """Alternating slow and fast devices on a ring: the batched computation gives every slow
    origin one law and every fast origin another."""
    s = np.tile([1.0, 0.5], 20)
    res = latency(MoANetwork(n=40, M=2, k=2, arrival_rate=0.1, service_time=s, topology="ring"))
    slow, fast = res.origin_quantiles_s[0::2], res.origin_quantiles_s[1::2]
    assert np.ptp(slow, axis=0).max() == 0 and np.ptp(fast, axis=0).max() == 0
    assert not np.allclose(slow[0], fast[0], rtol=1e-3)


@pytest.mark.parametrize(
    "classes, points",
    [(1, GRID_POINTS), (FULL_GRID_CLASSES, GRID_POINTS), (FULL_GRID_CLASSES + 1, GRID_POINTS // 2)],
)
def test_default_grid_shrinks_with_distinct_devices(classes, points):
    """Up to FULL_GRID_CLASSES distinct devices the default grid is GRID_POINTS; beyond, half."""
    s = np.linspace(1.0, 2.0, classes) if classes > 1 else 1.0
    res = latency(MoANetwork(n=max(classes, 2), arrival_rate=0.3, service_time=s))
    assert res.cdf.size == points
