"""The latency model's city-scale paths against independent computations: the triangle-based
overlap kernel against dense matrices and the sparse-matrix formula, the grouping of origins
(hashing) against computing every origin on its own and against numpy.unique (the vectorised
joins are checked against an independent quadrature in test_latency_vectorised.py)."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
import scipy.sparse as sp

from moa_stability import MoANetwork, latency, random_regular_graph
from moa_stability.analysis import latency as lat
from moa_stability.model.loads import job_rates


def _network(seed: int, n: int = 40, degree: int = 4, k=(2, 1), speeds=(0.5, 1.0, 1.5)):
    rng = np.random.default_rng(seed)
    # Few speeds and rates: few device classes, so origins really share joins.
    return MoANetwork(
        n=n,
        M=len(k),
        k=list(k),
        arrival_rate=rng.choice([0.01, 0.02], n) if len(speeds) > 2 else 0.01,
        service_time=rng.choice(speeds, n),
        topology=random_regular_graph(n, degree, seed=seed),
    )


@pytest.mark.parametrize("seed", range(4))
def test_uniform_overlap_kernel_equals_the_sparse_matrix_formula(seed: int) -> None:
    net = _network(seed, n=30 + seed, degree=4 + seed % 2 * 2, k=(3, 0, 2))
    explicit = net.replace(selection=[net.inclusion(m) for m in range(net.M)])
    rates = job_rates(net)
    np.testing.assert_allclose(
        lat._overlaps(net, rates), lat._overlaps(explicit, rates), rtol=1e-13, atol=1e-15
    )


def test_distinct_rows_matches_numpy() -> None:
    rng = np.random.default_rng(0)
    constant_columns = np.column_stack(
        [np.ones(400), rng.choice([0.0, 0.1, 3.0], 400), np.ones(400)]
    )
    for rows in (
        rng.integers(0, 3, (500, 4)).astype(np.int64),
        rng.choice([0.1, 3.0], (300, 6)),
        constant_columns,
        constant_columns[:, [0, 2]] + rng.integers(0, 2, (400, 1)),
    ):
        first, group = lat._distinct_rows(rows)
        _, ref_first, ref_group = np.unique(rows, axis=0, return_index=True, return_inverse=True)
        np.testing.assert_array_equal(first, ref_first)
        np.testing.assert_array_equal(group, ref_group.ravel())
    same = np.ones((7, 3))
    first, group = lat._distinct_rows(same)
    assert first.tolist() == [0] and group.tolist() == [0] * 7


def _graph(kind: str, n: int, seed: int):
    """A connected sparse graph: random regular, G(n, p) (largest component, uneven degrees)
    or preferential attachment (hubs, many triangles)."""
    if kind == "regular":
        return random_regular_graph(n, 4 + seed % 5, seed=seed)
    if kind == "gnp":
        g = nx.gnp_random_graph(n, 6.0 / n, seed=seed)
        g = g.subgraph(max(nx.connected_components(g), key=len))
    else:
        g = nx.barabasi_albert_graph(n, 3, seed=seed)
    g = nx.convert_node_labels_to_integers(g)
    return nx.to_scipy_sparse_array(g, format="csr", dtype=float)


def _random_network(kind: str, n: int, seed: int, classes: int) -> MoANetwork:
    rng = np.random.default_rng(seed)
    adj = _graph(kind, n, seed)
    n = adj.shape[0]
    low = int(np.diff(adj.indptr).min())
    k = [int(v) for v in rng.integers(0, min(low, 3) + 1, rng.integers(1, 4))]
    if classes == 1:
        speed, rate = 1.0, 0.1
    else:
        speed = rng.choice(rng.uniform(0.5, 2.0, classes), n)
        rate = rng.choice(rng.uniform(0.05, 0.1, classes), n)
    return MoANetwork(
        n=n, M=len(k), k=k, arrival_rate=rate, service_time=speed, topology=adj
    ).at_load(float(rng.uniform(0.3, 0.9)))


def _dense_overlap(net: MoANetwork) -> np.ndarray:
    """The module's overlap by dense matrices (independent of the kernel): shared traffic
    lam_j pi[j, i] + lam_i pi[i, j] + sum_o lam_o kappa_o pi[o, j] pi[o, i] on the edges,
    scaled by (r_j r_i)^(-1/2) and averaged over the helpers with weights pi[j, i] / k."""
    adj = net.topology.toarray()
    lam, degree = net.arrival_rate, adj.sum(axis=1)
    total = job_rates(net).sum(axis=0)
    scale = np.where(total > 0, 1.0 / np.sqrt(np.where(total > 0, total, 1.0)), 0.0)
    shared = np.zeros_like(adj)
    for km in net.k:
        pi = adj * (km / degree)[:, None]
        kappa = (km - 1) * degree / (km * np.maximum(degree - 1, 1)) if km > 1 else 0 * degree
        flow = lam[:, None] * pi
        shared += flow + flow.T + pi.T @ ((lam * kappa)[:, None] * pi)
    overlap = scale[:, None] * shared * adj * scale[None, :]
    out = np.zeros((net.M, net.n))
    for m, km in enumerate(net.k):
        if km:
            out[m] = np.minimum((adj / degree[:, None] * overlap).sum(axis=1), 1.0)
    return out


@pytest.mark.parametrize("classes", [1, 3])
@pytest.mark.parametrize("kind", ["regular", "gnp", "attachment"])
@pytest.mark.parametrize("seed", range(3))
def test_uniform_overlap_kernel_equals_dense_matrices(kind: str, seed: int, classes: int) -> None:
    """The triangle-based kernel on graphs with few (regular, G(n, p)) and many (preferential
    attachment) triangles, all devices alike (the kernel's shortcuts for alike devices and
    regular graphs) or with distinct rates and speeds, against dense matrices."""
    net = _random_network(kind, 60 + 50 * seed, seed, classes=classes)
    np.testing.assert_allclose(
        lat._overlaps(net, job_rates(net)), _dense_overlap(net), rtol=1e-12, atol=1e-15
    )


@pytest.mark.parametrize("alike", [True, False])
def test_uniform_overlap_on_an_explicit_complete_graph_equals_the_implicit_one(alike) -> None:
    """Every edge of a complete graph has n - 2 common neighbours (the kernel's worst case):
    the explicit adjacency gives the implicit complete graph's closed form."""
    n = 9
    rate = 0.03 if alike else np.linspace(0.02, 0.04, n)
    net = MoANetwork(n=n, M=3, k=[2, 0, 3], arrival_rate=rate)
    explicit = net.replace(topology=sp.csr_array(np.ones((n, n)) - np.eye(n)))
    rates = job_rates(net)
    np.testing.assert_allclose(
        lat._overlaps(explicit, rates), lat._overlaps(net, rates), rtol=1e-13, atol=1e-15
    )


def _ungrouped(rows):
    """``_distinct_rows`` with every row its own group (no sharing at all)."""
    n = (rows.T if isinstance(rows, np.ndarray) else rows)[0].shape[0]
    return np.arange(n), np.arange(n)


@pytest.mark.parametrize(
    ("kind", "n", "classes", "method", "seed"),
    [
        ("regular", 20, 1, "estimate", 0),
        ("regular", 2000, 1, "estimate", 1),
        ("regular", 300, 3, "bound", 2),
        ("gnp", 400, 1, "bound", 3),
        ("gnp", 200, 2, "estimate", 4),
        ("attachment", 150, 1, "estimate", 5),
        ("attachment", 100, 3, "bound", 6),
    ],
)
def test_grouped_origins_equal_the_ungrouped_computation(kind, n, classes, method, seed):
    """Devices, sojourn laws, joins and prompt laws are shared between origins with equal
    signatures (hashing, then sorting the few distinct rows); computing every origin on its
    own gives the same numbers to round-off, on regular and irregular sparse graphs, with
    one or a few device classes."""
    net = _random_network(kind, n, seed, classes)
    kw = dict(method=method, service="gamma", scv=0.5, grid_points=512)
    grouped = latency(net, **kw)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(lat, "_distinct_rows", _ungrouped)
        alone = latency(net, **kw)
    assert grouped.grid_step_s == alone.grid_step_s
    assert grouped.mean_s == pytest.approx(alone.mean_s, rel=1e-9)
    np.testing.assert_allclose(grouped.origin_mean_s, alone.origin_mean_s, rtol=1e-9)
    np.testing.assert_allclose(grouped.origin_quantiles_s, alone.origin_quantiles_s, rtol=1e-9)
    np.testing.assert_allclose(grouped.cdf, alone.cdf, rtol=0, atol=1e-10)


def test_distinct_rows_by_hashing_matches_numpy_with_many_groups() -> None:
    """Past the hash table's first size (1024 slots), signed zeros equal, columns given as a
    list of mixed integer and float arrays."""
    rng = np.random.default_rng(1)
    ints = rng.integers(-3, 900, 20_000)
    floats = rng.choice([0.0, -0.0, 0.25, -1.5], 20_000)
    for columns in ([ints, floats], [floats], [ints], [rng.random(3000)]):
        first, group = lat._distinct_rows(columns)
        rows = np.column_stack(columns)
        _, ref_first, ref_group = np.unique(rows, axis=0, return_index=True, return_inverse=True)
        np.testing.assert_array_equal(first, ref_first)
        np.testing.assert_array_equal(group, ref_group.ravel())


@pytest.mark.parametrize(
    ("graph", "laws"),
    [("regular", 3), ("regular", 200), ("star", 3), ("star", 0), ("attachment", 40)],
)
def test_neighbour_groups_are_the_multisets_of_neighbour_laws(graph: str, laws: int) -> None:
    """Two devices share a group exactly when their keys and the multisets of their
    neighbours' laws agree, whichever encoding applies: counts per law (few laws), sorted rows
    padded to the degree (many laws, near-regular graph) or one key per device (a star)."""
    rng = np.random.default_rng(laws)
    if graph == "star":
        adj = nx.to_scipy_sparse_array(
            nx.compose(nx.star_graph(60), nx.cycle_graph(range(1, 61))), format="csr"
        )
    else:
        adj = _graph("regular" if graph == "regular" else "attachment", 200, seed=laws)
    n = adj.shape[0]
    own = rng.integers(0, laws, n) if laws else rng.permutation(n)  # 0: all distinct
    key = [rng.choice([0.0, 0.5], n)]
    first, group = lat._neighbour_groups(adj, own, key)
    signature = [
        (key[0][j], tuple(sorted(own[adj.indices[adj.indptr[j] : adj.indptr[j + 1]]])))
        for j in range(n)
    ]
    index = {sig: g for g, sig in enumerate(dict.fromkeys(signature))}
    expected = np.array([index[sig] for sig in signature])
    # Same partition: the groups map one-to-one onto the signatures.
    pairs = set(zip(group.tolist(), expected.tolist(), strict=True))
    assert len(pairs) == len(set(group.tolist())) == len(index)
    assert np.array_equal(group[first], np.arange(first.size))


@pytest.mark.parametrize("method", ["estimate", "bound"])
def test_int32_graphs_give_the_int64_numbers(method: str) -> None:
    """Large graphs come with int32 indices (random_regular_graph beyond 10^5 edge ends), small
    ones with int64: the kernels compiled for either give the same numbers."""
    net = _random_network("regular", 120, seed=3, classes=1)
    adj = net.topology
    narrow = sp.csr_array(
        (adj.data, adj.indices.astype(np.int32), adj.indptr.astype(np.int32)), shape=adj.shape
    )
    assert adj.indices.dtype == np.int64
    wide, small = latency(net, method=method), latency(net.replace(topology=narrow), method=method)
    assert small.mean_s == pytest.approx(wide.mean_s, rel=1e-14)
    np.testing.assert_allclose(small.origin_quantiles_s, wide.origin_quantiles_s, rtol=1e-14)
