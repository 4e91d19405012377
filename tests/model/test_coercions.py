"""Coercions that hid mistakes are errors, and 0-d arrays work like scalars everywhere:
k as a dict or a string, text or complex adjacency, networkx weights, at_load(np.array(.5)),
and random_regular_graph returning a connected graph for a seed that drew a split one."""

from __future__ import annotations

import warnings

import networkx as nx
import numpy as np
import pytest
import scipy.sparse as sp

from moa_stability import MoANetwork, network_from_dict, random_regular_graph
from moa_stability.model.network import _component_count

RING = np.array([[0, 1, 0, 1], [1, 0, 1, 0], [0, 1, 0, 1], [1, 0, 1, 0]])


def _message(call) -> str:
    with pytest.raises(ValueError) as info:
        call()
    assert "\n" not in str(info.value)
    return str(info.value)


def test_k_as_a_dict_or_a_string_is_refused_with_its_repr() -> None:
    # {0: 1, 1: 1} silently became k=[0, 1]; '4' was reported as "k=4: has 1 entries".
    assert _message(lambda: MoANetwork(n=4, M=2, k={0: 1, 1: 1})).startswith("k={0: 1, 1: 1}:")
    assert _message(lambda: MoANetwork(n=4, M=1, k="4")).startswith("k='4': is a str")
    assert "k={1, 2}" in _message(lambda: MoANetwork(n=4, M=2, k={1, 2}))


def test_zero_dimensional_arrays_work_like_scalars() -> None:
    net = MoANetwork(n=np.array(4), M=np.array(2), k=np.array(1), arrival_rate=0.1)
    assert (net.n, net.M, net.k) == (4, 2, (1, 1))
    np.testing.assert_allclose(
        net.at_load(np.array(0.5)).arrival_rate, net.at_load(0.5).arrival_rate
    )
    assert "rho='0.5'" in _message(lambda: net.at_load("0.5"))
    assert "must be an integer" in _message(lambda: MoANetwork(n=np.array(2.0)))


@pytest.mark.parametrize(
    "topology",
    [
        [["0", "1", "1"], ["1", "0", "1"], ["1", "1", "0"]],
        np.ones((3, 3), complex) - np.eye(3),
        sp.csr_array(np.ones((3, 3), complex) - np.eye(3)),
        np.array([[0, 1, 1], [1, 0, 1], [1, 1, 0]], dtype=object),
    ],
)
def test_non_numeric_adjacency_is_refused(topology) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # complex used to pass with a ComplexWarning only
        message = _message(lambda: MoANetwork(n=3, M=1, k=1, topology=topology))
    assert message.startswith("topology=matrix of") and "real 0/1" in message


def test_boolean_and_integer_adjacency_still_work() -> None:
    for topology in (RING, RING.astype(bool), sp.csr_array(RING.astype(np.int8))):
        assert MoANetwork(n=4, M=1, k=2, topology=topology).degrees.tolist() == [2] * 4


def test_networkx_edge_weights_are_ignored() -> None:
    g = nx.cycle_graph(4)
    g[0][1]["weight"] = 0  # dropped the edge, then blamed k=2 for device 0's one neighbour
    g[1][2]["weight"] = 3.5  # rejected as a weighted matrix
    assert MoANetwork(n=4, M=1, k=2, topology=g).degrees.tolist() == [2] * 4


def test_random_regular_graph_is_connected_and_a_function_of_the_seed() -> None:
    split = random_regular_graph(6, 2, seed=0, connected=False)
    assert _component_count(split.indptr, split.indices) == 2  # two triangles
    g = random_regular_graph(6, 2, seed=0)
    assert _component_count(g.indptr, g.indices) == 1
    assert np.all(np.diff(g.indptr) == 2)
    assert (random_regular_graph(6, 2, seed=0) != g).nnz == 0
    MoANetwork(n=6, M=1, k=2, topology=g)
    network_from_dict({"n": 6, "M": 1, "k": 2, "topology": {"random_regular": 2, "seed": 0}})
    # A seed whose first draw is connected gives the same graph as before.
    first = random_regular_graph(30, 4, seed=2, connected=False)
    assert (random_regular_graph(30, 4, seed=2) != first).nnz == 0


@pytest.mark.parametrize(("n", "degree"), [(4, 1), (5, 0)])
def test_degrees_with_no_connected_graph_are_refused(n: int, degree: int) -> None:
    assert "is disconnected" in _message(lambda: random_regular_graph(n, degree))
    assert random_regular_graph(n, degree, connected=False).shape == (n, n)
