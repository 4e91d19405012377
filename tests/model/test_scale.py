"""City-scale code paths against small dense references: the switched-pairing random regular
graph, graph validation without a transposed copy, and loads on large sparse graphs."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from moa_stability import MoANetwork, load_matrix, loads, random_regular_graph
from moa_stability.model import network as network_module


@pytest.mark.parametrize(("n", "degree"), [(20_000, 6), (12_501, 8), (40_000, 3)])
def test_switched_pairing_gives_a_simple_regular_graph(n: int, degree: int) -> None:
    assert n * degree > network_module._NETWORKX_MAX_STUBS  # the large-n generator
    g = random_regular_graph(n, degree, seed=7)
    assert g.shape == (n, n)
    assert np.all(np.diff(g.indptr) == degree)
    assert np.all(g.data == 1.0)
    assert not g.diagonal().any()
    assert (g != g.T).nnz == 0
    canonical = sp.csr_array(g, copy=True)
    canonical.sum_duplicates()  # no repeated edge was merged away
    assert canonical.nnz == n * degree
    again = random_regular_graph(n, degree, seed=7)
    assert np.array_equal(again.indices, g.indices)
    assert not np.array_equal(random_regular_graph(n, degree, seed=8).indices, g.indices)


def test_switched_pairing_is_close_to_uniform_in_its_triangle_count() -> None:
    # A uniform random d-regular graph has Poisson((d-1)^3 / 6) triangles asymptotically:
    # mean 20.83 for d = 6. Five graphs: the total is Poisson(104.2), sd 10.2.
    total = 0
    for seed in range(5):
        g = random_regular_graph(20_000, 6, seed=seed).astype(np.int64)
        total += int((g @ g).multiply(g).sum()) // 6
    assert abs(total - 5 * 125 / 6) < 4 * np.sqrt(5 * 125 / 6)


def test_symmetry_check_finds_a_single_missing_mirror() -> None:
    g = sp.lil_array(random_regular_graph(200, 4, seed=1))
    rows, cols = sp.csr_array(g).nonzero()
    g[rows[17], cols[17]] = 0  # drop one direction of one edge
    with pytest.raises(ValueError, match="asymmetric"):
        MoANetwork(n=200, M=1, k=1, topology=sp.csr_array(g))


def test_validated_graphs_are_frozen_copies_and_reused() -> None:
    g = random_regular_graph(300, 4, seed=2)
    net = MoANetwork(n=300, M=2, k=2, arrival_rate=0.01, topology=g)
    assert g.data.flags.writeable  # the caller's matrix is untouched
    assert not net.topology.data.flags.writeable
    assert net.at_load(0.5).topology is net.topology
    # A modified copy of a validated graph is validated again.
    broken = net.topology.tolil()
    broken[0, 0] = 1
    with pytest.raises(ValueError, match="self-loops"):
        net.replace(topology=broken.tocsr())


def test_loads_on_a_large_sparse_graph_match_a_dense_reference() -> None:
    n, M, k = 3000, 3, [2, 0, 3]
    rng = np.random.default_rng(4)
    g = random_regular_graph(n, 6, seed=4)  # 18000 edge ends: the networkx path
    lam = rng.uniform(0.0, 0.01, n)
    service = rng.uniform(0.5, 2.0, (3, n))
    net = MoANetwork(n=n, M=M, k=k, arrival_rate=lam, service_time=service, topology=g)
    A = g.toarray()
    deg = A.sum(axis=1)
    helper = [km * (A / deg[:, None]).T @ lam for km in k]  # sum_j lam_j pi_m[j, i]
    expected = (
        service[0] * (lam + helper[0])
        + service[1] * sum(lam + helper[m] for m in range(1, M))
        + service[2] * lam
    )
    np.testing.assert_allclose(loads(net), expected, rtol=1e-12)


def test_loads_on_the_implicit_complete_graph_at_a_million_devices() -> None:
    n = 1_000_000
    lam = np.full(n, 1e-7)
    lam[0] = 2e-7
    net = MoANetwork(n=n, M=2, k=2, arrival_rate=lam, service_time=1.0)
    rho = loads(net)
    total = lam.sum()
    # rho_i = 7 lam_i (own work 3 lam_i, as a helper 2 layers * 2 (total - lam_i)/(n - 1)).
    expected = 3 * lam + 4 * (total - lam) / (n - 1)
    np.testing.assert_allclose(rho, expected, rtol=1e-12)


def test_component_count_matches_scipy_on_pieced_graphs() -> None:
    from scipy.sparse.csgraph import connected_components

    rng = np.random.default_rng(11)
    for pieces in (1, 2, 5):
        sizes = rng.integers(3, 9, pieces)
        blocks = [sp.csr_array(np.ones((s, s)) - np.eye(s)) for s in sizes]
        whole = sp.csr_array(sp.block_diag(blocks))
        perm = rng.permutation(whole.shape[0])  # scatter the components over the indices
        g = sp.csr_array(whole[perm][:, perm])
        g.sort_indices()
        expected, _ = connected_components(g, directed=False)
        assert expected == pieces
        assert network_module._component_count(g.indptr, g.indices) == pieces
    g.data[:] = 1.0
    with pytest.raises(ValueError, match="components"):
        MoANetwork(n=g.shape[0], M=1, k=1, arrival_rate=0.1, service_time=1.0, topology=g)


@pytest.mark.parametrize("n", [1, 2, 3, 7])
def test_complete_adjacency_is_built_without_a_dense_copy(n: int) -> None:
    net = MoANetwork(n=n, M=1, k=min(1, n - 1), arrival_rate=0.1, service_time=1.0)
    expected = np.ones((n, n)) - np.eye(n)
    assert np.array_equal(net.adjacency.toarray(), expected)
    assert net.adjacency.has_sorted_indices


def test_complete_adjacency_refuses_an_impossible_size() -> None:
    n = 10**6  # n(n-1) ~ 1e12 pairs: the implicit paths serve it, the CSR cannot
    net = MoANetwork(n=n, M=1, k=2, arrival_rate=1e-7, service_time=1.0)
    with pytest.raises(ValueError, match=r"topology=complete: .*entries"):
        _ = net.adjacency
    np.testing.assert_allclose(loads(net), 1e-7 * 4.0, rtol=1e-12)


def test_selection_on_a_large_complete_graph_is_checked_on_its_diagonal() -> None:
    n = 30_000  # n(n-1) is over MAX_COMPLETE_PAIRS: the check must not build the adjacency
    assert n * (n - 1) > network_module.MAX_COMPLETE_PAIRS
    helper = (np.arange(n) + 1) % n  # each origin picks its successor with certainty
    pi = sp.csr_array((np.ones(n), (np.arange(n), helper)), shape=(n, n))
    net = MoANetwork(n=n, M=1, k=1, arrival_rate=1e-3, service_time=1.0, selection=[pi])
    np.testing.assert_allclose(loads(net), 1e-3 * 3.0, rtol=1e-12)  # own 2 jobs + 1 helper
    bad = sp.csr_array((np.ones(n), (np.arange(n), np.arange(n))), shape=(n, n))
    with pytest.raises(ValueError, match=r"non-neighbour pair \(0, 0\)"):
        MoANetwork(n=n, M=1, k=1, arrival_rate=1e-3, service_time=1.0, selection=[bad])


@pytest.mark.parametrize("M", [0, 1, 3])
def test_uniform_load_matrix_on_an_irregular_graph(M: int) -> None:
    # A star plus a ring: degrees from 3 to n-1, so c_i / deg_j is checked index by index.
    n = 8
    edges = [(0, i) for i in range(1, n)] + [(i, i % (n - 1) + 1) for i in range(1, n)]
    g = sp.lil_array((n, n))
    for a, b in edges:
        g[a, b] = g[b, a] = 1.0
    rng = np.random.default_rng(5)
    lam, s = rng.uniform(0.1, 1, n), rng.uniform(0.5, 2, (3, n))
    k = [2, 1, 3][:M]
    net = MoANetwork(n=n, M=M, k=k, arrival_rate=lam, service_time=s, topology=sp.csr_array(g))
    A = load_matrix(net).toarray()
    # Independent: column j is the expected seconds one prompt at j puts on each device.
    adj = sp.csr_array(g).toarray()
    deg = adj.sum(axis=1)
    expected = np.zeros((n, n))
    for j in range(n):
        expected[j, j] = s[0, j] + (M - 1) * s[1, j] + s[2, j] if M else s[0, j]
        for m in range(M):
            row = 0 if m == 0 else 1
            expected[:, j] += adj[j] * k[m] / deg[j] * s[row]
    np.testing.assert_allclose(A, expected, rtol=1e-13, atol=0)


def test_symmetry_check_agrees_with_the_transpose_on_random_patterns() -> None:
    rng = np.random.default_rng(3)
    checked = {True: 0, False: 0}
    for _ in range(300):
        n = int(rng.integers(2, 9))
        dense = rng.random((n, n)) < rng.uniform(0.1, 0.9)
        if rng.random() < 0.5:
            dense = dense | dense.T  # symmetric half the time
        np.fill_diagonal(dense, False)
        g = sp.csr_array(dense.astype(float))
        g.sort_indices()
        expected = bool(np.array_equal(dense, dense.T))
        assert network_module._is_symmetric(g.indptr, g.indices) == expected
        checked[expected] += 1
    # A directed cycle: every row and column has one entry, yet it is not symmetric.
    cycle = sp.csr_array((np.ones(5), (np.arange(5), (np.arange(5) + 1) % 5)), shape=(5, 5))
    assert not network_module._is_symmetric(cycle.indptr, cycle.indices)
    assert min(checked.values()) > 50
