"""MoANetwork: normalisation and one test per kind of bad input."""

import networkx as nx
import numpy as np
import pytest
import scipy.sparse as sp

from moa_stability import (
    JOB_TYPES,
    MoANetwork,
    inferences_per_prompt,
    loads,
    network_from_dict,
    random_regular_graph,
)


def test_fields_are_normalised_and_read_only():
    net = MoANetwork(
        n=3,
        M=2,
        k=1,
        arrival_rate=0.5,
        service_time={"propose": 1.0, "refine": [1, 2, 3], "aggregate": 2.0},
    )
    assert net.k == (1, 1)
    assert net.arrival_rate.tolist() == [0.5, 0.5, 0.5]
    assert net.service_time.shape == (3, 3)
    assert net.service_time[JOB_TYPES.index("refine")].tolist() == [1, 2, 3]
    with pytest.raises(ValueError):
        net.arrival_rate[0] = 2.0
    with pytest.raises(AttributeError):
        net.n = 4


def test_inferences_per_prompt_counts_every_layer():
    assert MoANetwork(n=4, M=0).inferences_per_prompt == 1
    assert MoANetwork(n=4, M=2, k=2).inferences_per_prompt == 7  # (k+1)M+1
    assert MoANetwork(n=5, M=3, k=[1, 3, 2]).inferences_per_prompt == 2 + 4 + 3 + 1
    # The same count without a network, for an (M, k) shape.
    assert inferences_per_prompt(0, 0) == 1
    assert inferences_per_prompt(2, 3) == 9
    assert inferences_per_prompt(3, [1, 3, 2]) == 10
    for bad, field in (((-1, 0), "M="), ((1, -1), "k="), ((2, [1]), "k="), ((1, 1.5), "k=")):
        with pytest.raises(ValueError, match=field):
            inferences_per_prompt(*bad)


def test_at_load_puts_the_busiest_device_at_that_load():
    rates = np.array([0.1, 0.4, 0.2, 0.3])
    net = MoANetwork(n=4, M=2, k=[2, 1], arrival_rate=rates, service_time=[1, 2, 1, 3])
    for rho in (0.5, 0.95, 1.3):
        scaled = net.at_load(rho)
        assert loads(scaled).max() == pytest.approx(rho, rel=1e-12)
        # Rates keep their proportions: the direction is the network's own.
        np.testing.assert_allclose(scaled.arrival_rate / rates, scaled.arrival_rate[0] / 0.1)
    # The paper's symmetric network: rho = 7 lambda with one-second inferences.
    assert MoANetwork(n=4, M=2, k=2, arrival_rate=1.0).at_load(0.7).arrival_rate[0] == (
        pytest.approx(0.1)
    )


@pytest.mark.parametrize("rho", [0, -0.5, float("inf"), float("nan"), "0.5", True])
def test_at_load_rejects_a_bad_load(rho):
    with pytest.raises(ValueError, match="rho="):
        MoANetwork(n=2, M=1, k=1, arrival_rate=1.0).at_load(rho)


def test_at_load_needs_some_load():
    with pytest.raises(ValueError, match="arrival_rate="):
        MoANetwork(n=2, M=1, k=1, arrival_rate=0.0).at_load(0.5)


def test_topologies_by_name_graph_and_matrix_agree():
    ring = MoANetwork(n=6, M=1, k=2, topology="ring")
    from_nx = MoANetwork(n=6, M=1, k=2, topology=nx.cycle_graph(6))
    from_dense = MoANetwork(n=6, M=1, k=2, topology=nx.to_numpy_array(nx.cycle_graph(6)))
    for other in (from_nx, from_dense):
        assert (ring.adjacency != other.adjacency).nnz == 0
    assert ring.degrees.tolist() == [2] * 6
    star = MoANetwork(n=5, M=1, k=1, topology="star")
    assert star.degrees.tolist() == [4, 1, 1, 1, 1]


def test_uniform_inclusion_rows_sum_to_k():
    net = MoANetwork(n=30, M=2, k=[3, 1], topology=random_regular_graph(30, 4, seed=2))
    for layer, km in enumerate(net.k):
        pi = net.inclusion(layer)
        np.testing.assert_allclose(pi.sum(axis=1), km)
        assert pi.max() <= 1


def test_replace_revalidates_and_round_trips_through_dict():
    net = MoANetwork(n=4, M=1, k=1, arrival_rate=[0.1, 0.2, 0.3, 0.4], topology="ring")
    again = network_from_dict(net.to_dict())
    np.testing.assert_array_equal(again.arrival_rate, net.arrival_rate)
    assert (again.adjacency != net.adjacency).nnz == 0
    with pytest.raises(ValueError, match="k=3 exceeds"):
        net.replace(k=3)


def _pi_avoiding_last(n=4, k=2):
    """Origins 0..n-2 pick the other fast devices; the last device picks uniformly."""
    pi = np.zeros((n, n))
    for j in range(n - 1):
        pi[j, [i for i in range(n - 1) if i != j]] = 1.0
    pi[n - 1, : n - 1] = k / (n - 1)
    return pi


def test_valid_selection_is_accepted_for_every_layer():
    net = MoANetwork(n=4, M=2, k=2, selection=_pi_avoiding_last())
    assert len(net.selection) == 2
    assert net.inclusion(1)[0, 3] == 0


BAD = [
    (dict(n=0), "n=0"),
    (dict(n=2.5), "n=2.5"),
    (dict(n=4, M=-1), "M=-1"),
    (dict(n=4, M=1, k=-1), "k=-1"),
    (dict(n=4, M=1, k=4), "exceeds the 3 neighbour"),
    (dict(n=4, M=2, k=[1]), "has 1 entries but M=2"),
    (dict(n=4, M=1, k=1, arrival_rate=-0.1), "arrival_rate"),
    (dict(n=4, M=1, k=1, arrival_rate=np.nan), "non-finite"),
    (dict(n=4, M=1, k=1, arrival_rate=np.inf), "non-finite"),
    (dict(n=4, M=1, k=1, arrival_rate=[0.1, 0.2]), r"expected a scalar or \(4,\)"),
    (dict(n=4, M=1, k=1, service_time=0.0), "service_time"),
    (dict(n=4, M=1, k=1, service_time=-1.0), "service_time"),
    (
        dict(n=4, M=1, k=1, service_time={"propose": 1, "aggregate": 1, "decode": 2}),
        "unknown job type",
    ),
    (dict(n=4, M=2, k=1, service_time={"propose": 1, "aggregate": 1}), "refine"),
    (dict(n=4, M=1, k=1, topology="torus"), "unknown topology name"),
    (dict(n=4, M=1, k=1, topology=np.ones((4, 4))), "self-loops"),
    (dict(n=4, M=1, k=1, topology=np.triu(np.ones((4, 4)), 1)), "symmetric"),
    (dict(n=4, M=1, k=1, topology=2 * (np.ones((4, 4)) - np.eye(4))), "0 or 1"),
    (dict(n=4, M=1, k=1, topology=np.ones((3, 3)) - np.eye(3)), r"expected \(4, 4\)"),
    (dict(n=4, M=1, k=1, topology=nx.DiGraph(nx.complete_graph(4))), "undirected"),
    (
        dict(n=4, M=1, k=1, topology=nx.disjoint_union(nx.path_graph(2), nx.path_graph(2))),
        "disconnected",
    ),
    (dict(n=4, M=1, k=1, selection="greedy"), "unknown selection rule"),
    (dict(n=4, M=1, k=2, selection=np.full((4, 4), 2 / 3)), "non-neighbour"),
    (dict(n=4, M=1, k=2, selection=(np.ones((4, 4)) - np.eye(4)) * 0.5), "sums to 1.5"),
    (
        dict(n=4, M=1, k=2, selection=(np.ones((4, 4)) - np.eye(4)) * 1.5 - 0.5 * np.eye(4)),
        "outside",
    ),
    (dict(n=4, M=2, k=[2, 1], selection=_pi_avoiding_last()), "k differs across layers"),
    (dict(n=4, M=2, k=2, selection=[_pi_avoiding_last()] * 3), "M=2 layers"),
]


@pytest.mark.parametrize(("fields", "message"), BAD, ids=[m for _, m in BAD])
def test_bad_input_raises_value_error_naming_the_problem(fields, message):
    with pytest.raises(ValueError, match=message) as err:
        MoANetwork(**fields)
    assert ";" in str(err.value), "the message should say how to fix it"


def test_bad_network_file_fields():
    with pytest.raises(ValueError, match="unknown field"):
        network_from_dict({"n": 4, "lambda": 0.1})
    with pytest.raises(ValueError, match="devices outside"):
        network_from_dict({"n": 3, "M": 1, "k": 1, "topology": {"edges": [[0, 5]]}})
    with pytest.raises(ValueError, match="regular graph"):
        random_regular_graph(5, 3)


def test_sparse_adjacency_is_kept_sparse():
    g = random_regular_graph(2000, 6, seed=0)
    net = MoANetwork(n=2000, M=1, k=3, topology=g)
    assert sp.issparse(net.topology) and net.topology.nnz == 2000 * 6
