"""Traffic equations and loads: the paper's closed form and heterogeneous cases by hand."""

import numpy as np
import pytest

from moa_stability import (
    LoadProfile,
    MoANetwork,
    job_rates,
    kelly_type,
    load_matrix,
    load_profile,
    loads,
    max_uniform_scale,
    paper,
    paper_network,
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


def test_load_profile_holds_the_traffic_equations_once():
    # n=3, M=2, k=1 on the complete graph, refine slower at device 2: not Kelly-type.
    net = MoANetwork(
        n=3,
        M=2,
        k=1,
        arrival_rate=[0.1, 0.2, 0.3],
        service_time={"propose": 1.0, "refine": [1.0, 1.0, 2.0], "aggregate": 1.0},
    )
    p = load_profile(net)
    assert isinstance(p, LoadProfile)
    # Per layer, device i runs lam_i + (sum of the others)/2 jobs (one helper of two).
    layer = np.array([0.1 + 0.25, 0.2 + 0.2, 0.3 + 0.15])
    np.testing.assert_allclose(p.job_rates_per_s, [layer, layer, [0.1, 0.2, 0.3]], rtol=1e-12)
    expected = layer * 1.0 + layer * np.array([1.0, 1.0, 2.0]) + np.array([0.1, 0.2, 0.3])
    np.testing.assert_allclose(p.loads, expected, rtol=1e-12)
    assert p.max_load == pytest.approx(expected.max())
    assert p.scale == pytest.approx(1 / expected.max())
    assert not p.kelly_type and kelly_type(net.replace(service_time=1.0))
    frame = p.to_frame()
    assert list(frame.index) == [0, 1, 2]
    np.testing.assert_allclose(frame["load"], expected, rtol=1e-12)
    assert "max_load=" in repr(p)
    with pytest.raises(ValueError):
        p.loads[0] = 1.0  # read-only: the profile is a value


def test_load_matrix_maps_rates_to_loads():
    g = random_regular_graph(9, 4, seed=3)
    rng = np.random.default_rng(4)
    net = MoANetwork(
        n=9, M=3, k=[2, 1, 3], arrival_rate=rng.uniform(0, 1, 9),
        service_time=rng.uniform(0.5, 2, (3, 9)), topology=g,
    )  # fmt: skip
    A = load_matrix(net)
    np.testing.assert_allclose(A @ net.arrival_rate, loads(net), rtol=1e-12)
    # Column j is the work one prompt/s at device j puts on every device.
    unit = net.replace(arrival_rate=np.eye(9)[4])
    np.testing.assert_allclose(A.toarray()[:, 4], loads(unit), rtol=1e-12)


def test_the_papers_setting_in_one_place():
    assert paper.N_DEVICES == 4 and paper.RATE_PER_S == 0.25
    assert len(paper.CONFIGS) == 7 and (2, 2) in paper.CONFIGS
    net = paper_network()
    assert (net.n, net.M, net.k) == (4, 2, (2, 2)) and net.arrival_rate.tolist() == [0.25] * 4
    # Theorem 1: rho = alpha lambda ((k+1)M+1) = 7/4 at the paper's own rate.
    np.testing.assert_allclose(loads(net), 1.75)
    tables = paper.reported_tables()
    assert [tuple(r) for r in tables[["M", "k"]].to_numpy()] == list(paper.CONFIGS)
    assert tables.loc[tables["M"].eq(2) & tables["k"].eq(2), "paper_I_latency_s"].item() == 790.01
