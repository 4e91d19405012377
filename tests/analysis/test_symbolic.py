"""Symbolic derivations: closed forms, type-aware reduction, symbolic = numeric, slotted queue."""

import networkx as nx
import numpy as np
import pytest
import scipy.sparse as sparse
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.sparse.linalg import spsolve

from moa_stability import MoANetwork, loads
from moa_stability.analysis.symbolic import (
    device_loads,
    load_function,
    slotted_empty_probability,
    slotted_mean_queue,
    slotted_queue,
    symmetric_network,
    symmetric_network_by_type,
    type_aware_threshold,
)

n, k, M = sp.symbols("n k M", positive=True, integer=True)
lam, alpha = sp.symbols("lambda alpha", positive=True)


def test_symmetric_network_reduces_to_theorem_1():
    d = symmetric_network()
    assert sp.simplify(d["P_chosen"] - k / (n - 1)) == 0
    assert sp.simplify(d["job_rate"] - lam * ((k + 1) * M + 1)) == 0
    assert sp.simplify(d["threshold_rate"] - 1 / (alpha * ((k + 1) * M + 1))) == 0
    # the binomial identity holds at concrete values too, not only after simplification
    for nv, kv in [(4, 2), (10, 3), (7, 1), (9, 8)]:
        assert d["P_chosen_raw"].subs({n: nv, k: kv}) == sp.Rational(kv, nv - 1)


def test_type_aware_condition_reduces_to_type_blind():
    d = symmetric_network_by_type()
    a_p, a_r, a_a = sp.symbols("alpha_p alpha_r alpha_a", positive=True)
    same = d["load"].subs({a_p: alpha, a_r: alpha, a_a: alpha})
    assert sp.simplify(same - symmetric_network()["load"]) == 0
    # longer refine/aggregate prefill lowers the threshold below the paper's
    paper = 1 / (1 * ((2 + 1) * 2 + 1))
    aware = d["threshold_rate"].subs({a_p: 1, a_r: 1.5, a_a: 1.5, k: 2, M: 2})
    assert float(aware) < paper


@st.composite
def networks(draw):
    size = draw(st.integers(2, 6))
    layers = draw(st.integers(0, 3))
    kind = draw(st.sampled_from(["complete", "ring", "random"]))
    if kind == "ring" and size >= 3:
        adj = nx.to_numpy_array(nx.cycle_graph(size))
    elif kind == "random" and size >= 4:
        adj = nx.to_numpy_array(
            nx.random_regular_graph(3 if size % 2 == 0 else 2, size, seed=draw(st.integers(0, 99)))
        )
    else:
        adj = np.ones((size, size)) - np.eye(size)
    if layers and not nx.is_connected(nx.from_numpy_array(adj)):
        adj = np.ones((size, size)) - np.eye(size)
    deg = int(adj.sum(1).min())
    ks = [draw(st.integers(0, deg)) for _ in range(layers)]
    seed = draw(st.integers(0, 2**31))
    rng = np.random.default_rng(seed)
    selection = None
    if layers and draw(st.booleans()):
        selection = [_random_inclusion(adj, km, rng) for km in ks]
    return MoANetwork(
        n=size,
        M=layers,
        k=ks,
        arrival_rate=rng.uniform(0, 0.3, size),
        service_time=rng.uniform(0.1, 3.0, (3, size)),
        topology=adj,
        selection=selection,
    )


def _random_inclusion(adj, km, rng):
    """A convex mix of the uniform rule and a random k-subset: rows sum to km, in [0, 1]."""
    pi = adj * km / adj.sum(1, keepdims=True)
    subset = np.zeros_like(adj)
    for j in range(len(adj)):
        subset[j, rng.choice(np.flatnonzero(adj[j]), km, replace=False)] = 1.0
    a = rng.uniform()
    return a * pi + (1 - a) * subset


@settings(max_examples=200)
@given(networks())
def test_symbolic_loads_equal_numeric_loads(net):
    f = load_function(net)
    np.testing.assert_allclose(
        f(net.arrival_rate, net.service_time), loads(net), rtol=1e-9, atol=1e-12
    )


def test_concrete_expressions_are_exact_rationals_for_uniform_selection():
    exprs, sym = device_loads(MoANetwork(n=3, M=1, k=1))
    l0, l1, l2 = sym["rates"]
    s_p0, s_a0 = sym["service"][0][0], sym["service"][2][0]
    assert sp.simplify(exprs[0] - ((l0 + l1 / 2 + l2 / 2) * s_p0 + l0 * s_a0)) == 0


def test_slotted_drift_is_the_quadratic_lyapunov_drift():
    d = slotted_queue()
    p, q = sp.symbols("p q", positive=True)
    Q = sp.Symbol("Q", positive=True, integer=True)
    assert sp.simplify(d["drift"] - (Q * (p - q) + (p + q - 2 * p * q) / 2)) == 0
    assert d["foster_condition"] == sp.StrictLessThan(p, q)
    # beyond the threshold the drift is negative when p < q
    vals = {p: 0.2, q: 0.3}
    thr = float(d["drift_threshold"].subs(vals))
    assert float(d["drift"].subs({**vals, Q: np.ceil(thr) + 1})) < 0
    assert float(d["drift"].subs({**vals, Q: 1})) > 0


@pytest.mark.parametrize(("p", "q"), [(0.1, 0.5), (0.3, 0.35), (0.05, 0.9)])
def test_slotted_stationary_law_matches_a_numerical_solution(p, q):
    # Solve pi P = pi on the truncated chain numerically, independently of sympy.
    size = 4000
    up, down = np.full(size - 1, p * (1 - q)), np.full(size - 1, q * (1 - p))
    up[0] = p
    P = sparse.diags([down, 1 - np.r_[up, 0] - np.r_[0, down], up], [-1, 0, 1], format="lil")
    A = (P.T - sparse.eye(size)).tolil()
    A[0, :] = 1.0  # replace one balance equation by the normalisation
    pi = spsolve(A.tocsc(), np.r_[1.0, np.zeros(size - 1)])
    assert slotted_mean_queue(p, q) == pytest.approx(pi @ np.arange(size), rel=1e-6)
    assert slotted_empty_probability(p, q) == pytest.approx(pi[0], rel=1e-6)
    assert slotted_mean_queue(p, q) == pytest.approx(p * (1 - p) / (q - p))  # docs/model.md 3


def test_latex_output_for_notebooks():
    tex = symmetric_network().to_latex()
    assert r"\binom" in tex["P_chosen_raw"]
    assert symmetric_network()._repr_latex_().startswith("$\\begin{aligned}")


def test_type_aware_threshold_reduces_to_theorem_1():
    alpha = 1.7
    for M, k in [(1, 1), (2, 3), (3, 2)]:
        means = dict.fromkeys(("propose", "refine", "aggregate"), alpha)
        assert type_aware_threshold(M, k, means) == pytest.approx(1 / (alpha * ((k + 1) * M + 1)))


def test_type_aware_threshold_weighs_each_type():
    # lambda* = 1 / ((k+1) a_p + (k+1)(M-1) a_r + a_a), written out for (2, 2) and (1, 3).
    means = {"propose": 1.0, "refine": 2.0, "aggregate": 3.0}
    assert type_aware_threshold(2, 2, means) == pytest.approx(1 / (3 * 1 + 3 * 2 + 3))
    assert type_aware_threshold(1, 3, {"propose": 1.5, "aggregate": 2.0}) == pytest.approx(1 / 8)
    assert type_aware_threshold(0, 0, {"propose": 4.0}) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="aggregate"):
        type_aware_threshold(1, 1, {"propose": 1.0})
    with pytest.raises(ValueError, match="M="):
        type_aware_threshold(-1, 1, means)
