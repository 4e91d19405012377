"""Traffic equations and loads: the paper's closed form and heterogeneous cases by hand."""

import numpy as np
import pytest

from moa_stability import (
    MoANetwork,
    job_rates,
    kelly_type,
    loads,
    max_uniform_scale,
    random_regular_graph,
)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 7, 12])
@pytest.mark.parametrize("M", [0, 1, 2, 4])
def test_homogeneous_complete_graph_matches_theorem_1(n, M):
    lam, alpha = 0.013, 1.7
    for k in range(0, n if M else 1):
        net = MoANetwork(n=n, M=M, k=k, arrival_rate=lam, service_time=alpha)
        np.testing.assert_allclose(loads(net), alpha * lam * ((k + 1) * M + 1), rtol=1e-13)
        assert max_uniform_scale(net) == pytest.approx(1 / (alpha * lam * ((k + 1) * M + 1)))


def test_heterogeneous_rates_and_types_by_hand():
    # n=3, M=1, k=1: each origin picks its one helper uniformly from the other two.
    # propose_i = lam_i + (sum of the other two rates)/2; aggregate_i = lam_i.
    net = MoANetwork(
        n=3,
        M=1,
        k=1,
        arrival_rate=[0.1, 0.2, 0.3],
        service_time={"propose": [1.0, 2.0, 3.0], "aggregate": 0.5},
    )
    propose = np.array([0.1 + 0.25, 0.2 + 0.2, 0.3 + 0.15])
    np.testing.assert_allclose(job_rates(net)[0], propose)
    np.testing.assert_allclose(job_rates(net)[2], [0.1, 0.2, 0.3])
    np.testing.assert_allclose(loads(net), [0.35 + 0.05, 0.8 + 0.1, 1.35 + 0.15])
    assert not kelly_type(net)


def test_slow_device_avoided_by_selection_by_hand():
    # alpha = (1, 1, 1, 4): the fast origins always pick the other two fast devices, device 3
    # picks two of the three fast ones (2/3 each). Per prompt rate lam:
    #   device 3 runs only its own propose, refine, aggregate: 3 * 4 * lam = 12 lam;
    #   a fast device runs, in each of 2 layers, own lam + 2 lam (fast origins) + 2/3 lam
    #   (device 3), plus its own aggregate: 2 * 11/3 lam + lam = 25/3 lam.
    pi = np.zeros((4, 4))
    for j in range(3):
        pi[j, [i for i in range(3) if i != j]] = 1.0
    pi[3, :3] = 2 / 3
    lam = 0.05
    net = MoANetwork(n=4, M=2, k=2, arrival_rate=lam, service_time=[1, 1, 1, 4], selection=pi)
    np.testing.assert_allclose(loads(net), [25 / 3 * lam] * 3 + [12 * lam])
    assert max_uniform_scale(net) == pytest.approx(1 / (12 * lam))


def test_star_center_carries_every_leaf():
    # Leaves have one neighbour, the centre, which must help every leaf prompt.
    lam = 0.1
    net = MoANetwork(n=5, M=1, k=1, arrival_rate=lam, topology="star")
    np.testing.assert_allclose(loads(net), [6 * lam] + [2.25 * lam] * 4)


def test_per_layer_k_adds_layer_by_layer():
    net = MoANetwork(n=6, M=3, k=[1, 4, 2], arrival_rate=0.01, service_time=2.0)
    assert loads(net) == pytest.approx(np.full(6, 2.0 * 0.01 * (2 + 5 + 3 + 1)))


def test_sparse_graph_equals_dense_computation():
    rng = np.random.default_rng(3)
    g = random_regular_graph(200, 5, seed=3)
    lam = rng.uniform(0, 0.01, 200)
    s = rng.uniform(0.5, 2.0, (3, 200))
    net = MoANetwork(n=200, M=3, k=[2, 3, 1], arrival_rate=lam, service_time=s, topology=g)
    a = g.toarray()
    deg = a.sum(1)
    helper = [a.T @ (lam * km / deg) for km in net.k]
    expected = (lam + helper[0]) * s[0] + (2 * lam + helper[1] + helper[2]) * s[1] + lam * s[2]
    np.testing.assert_allclose(loads(net), expected, rtol=1e-12)


def test_ten_thousand_devices_on_a_sparse_graph():
    g = random_regular_graph(10_000, 8, seed=1)
    net = MoANetwork(n=10_000, M=2, k=3, arrival_rate=1e-3, service_time=1.0, topology=g)
    np.testing.assert_allclose(loads(net), 1e-3 * (4 * 2 + 1))


def test_zero_rates_give_infinite_scale():
    assert max_uniform_scale(MoANetwork(n=3, M=1, k=1)) == float("inf")
