"""The structured capacity solvers (parametric max-flow, direct HiGHS LP) against the general
cvxpy program, their certificates, and the float max-flow kernel against scipy's."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse.csgraph import maximum_flow as scipy_maximum_flow

from moa_stability import MoANetwork, loads, max_stable_rate, random_regular_graph
from moa_stability.analysis import capacity
from moa_stability.analysis.capacity import max_scale_selection
from moa_stability.analysis.flow import maximum_flow, residual_graph


def _network(seed: int, rows: str) -> MoANetwork:
    """A random heterogeneous network; ``rows``: one service time per device, type rows
    proportional to one speed, or independent per type."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 60))
    M = int(rng.integers(1, 4))
    degree = int(rng.integers(3, 7)) if n * 3 % 2 == 0 else 4
    degree += (n * degree) % 2
    topo = rng.choice(["complete", "regular", "ring"])
    kmax = {"complete": min(3, n - 1), "regular": min(3, degree), "ring": 2}[topo]
    same_k = rng.random() < 0.5
    k = int(rng.integers(1, kmax + 1)) if same_k else [int(x) for x in rng.integers(0, kmax + 1, M)]
    speed = rng.uniform(0.3, 4.0, n)
    service = {
        "one": speed,
        "proportional": np.vstack([speed, 1.7 * speed, 2.5 * speed]),
        "independent": rng.uniform(0.3, 4.0, (3, n)),
    }[rows]
    graph = {"complete": "complete", "ring": "ring"}.get(
        topo, random_regular_graph(n, degree, seed=seed) if topo == "regular" else None
    )
    rates = rng.uniform(0.05, 1.0, n) * (rng.random(n) < 0.9)
    rates[0] = max(rates[0], 0.1)
    return MoANetwork(n=n, M=M, k=k, arrival_rate=rates, service_time=service, topology=graph)


@pytest.mark.parametrize("rows", ["one", "proportional", "independent"])
@pytest.mark.parametrize("seed", range(8))
def test_structured_agrees_with_cvxpy_and_is_certified(seed: int, rows: str) -> None:
    net = _network(seed, rows)
    general = max_stable_rate(net, optimise_selection=True, margin=0.1)
    assert general.solver_path == "cvxpy"  # small: the general program
    # Layers merge by k and, unless the type rows are proportional, by job type.
    keys = {(km, rows == "independent" and m > 0) for m, km in enumerate(net.k) if km}
    if not keys:
        with pytest.raises(ValueError, match="no selection to optimise"):
            max_scale_selection(net, margin=0.1)
        return
    fast = max_scale_selection(net, margin=0.1)
    assert fast.solver_path == ("parametric-flow" if len(keys) == 1 else "structured-ipm")
    assert fast.value == pytest.approx(general.value, rel=1e-7)
    # The certificate: a proven upper bound, within 1e-6 of the value.
    assert fast.value <= fast.dual_bound * (1 + 1e-12)
    assert fast.dual_bound <= fast.value * (1 + 1e-6)
    assert fast.status == "optimal"
    # The bound recomputed here from its definition at the reported multipliers.
    independent = _independent_dual_bound(net, np.asarray(fast.duals), fast.load_cap)
    assert fast.dual_bound == pytest.approx(independent, rel=1e-9)
    assert general.value <= independent * (1 + 1e-9)
    # The returned network is feasible and tight, by the library's own traffic equations.
    rho = loads(fast.network)
    np.testing.assert_allclose(rho, fast.loads, rtol=1e-9, atol=1e-12)
    assert rho.max() == pytest.approx(0.9, rel=1e-9)
    np.testing.assert_allclose(fast.rates, fast.value * net.arrival_rate, rtol=1e-12)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"margin": 1.0}, r"margin=1.0: must be a number in \[0, 1\)"),
        ({"margin": float("nan")}, "margin=nan: must be finite"),
        ({"net": {"arrival_rate": 0.0}}, "no selection to optimise"),
        ({"net": {"M": 1, "k": 0}}, "no selection to optimise"),
    ],
)
def test_bad_calls_raise_a_named_value_error(change: dict, match: str) -> None:
    net = MoANetwork(
        n=4, M=2, k=2, arrival_rate=1.0, service_time=[[1, 2, 1, 4], [2, 1, 3, 1], [1, 1, 1, 1]]
    )
    net = net.replace(**change.get("net", {}))
    with pytest.raises(ValueError, match=match):
        max_scale_selection(net, margin=change.get("margin", 0.0))


def test_one_service_time_per_device_matches_the_hand_solution() -> None:
    # n=4 complete, M=2, k=2, device 3 four times slower: the three fast devices share all
    # helper work, so each carries (with theta = 1/12 of unit rates) exactly load 1.
    net = MoANetwork(n=4, M=2, k=2, arrival_rate=1.0, service_time=[1, 1, 1, 4])
    res = max_scale_selection(net)
    assert res.solver_path == "parametric-flow"
    assert res.value == pytest.approx(1 / 12, rel=1e-12)
    assert res.dual_bound == pytest.approx(1 / 12, rel=1e-12)


def test_large_networks_take_the_structured_path_unless_bounds_or_a_solver_are_given() -> None:
    n = 600  # 600 * 20 directed edges * 2 layers = 24000 edge flows > CVXPY_MAX_FLOWS
    rng = np.random.default_rng(5)
    speed = rng.uniform(0.5, 2.0, n)
    net = MoANetwork(
        n=n,
        M=2,
        k=3,
        arrival_rate=rng.uniform(0.1, 1.0, n),
        service_time=np.vstack([speed, 1.5 * speed, 1.5 * speed]),
        topology=random_regular_graph(n, 20, seed=5),
    )
    res = max_stable_rate(net, optimise_selection=True)
    assert res.solver_path == "parametric-flow"
    assert res.value <= res.dual_bound <= res.value * (1 + 1e-6)
    assert loads(res.network).max() == pytest.approx(1.0, rel=1e-9)
    bounded = max_stable_rate(net, optimise_selection=True, rate_upper=1e3, margin=0.5)
    assert bounded.solver_path == "cvxpy"
    assert bounded.value == pytest.approx(0.5 * res.value, rel=1e-7)
    assert max_stable_rate(_network(3, "one")).dual_bound is None


@pytest.mark.parametrize("seed", range(5))
def test_float_max_flow_matches_scipy_on_integer_capacities(seed: int) -> None:
    rng = np.random.default_rng(seed)
    nodes = 40
    dense = rng.integers(0, 20, (nodes, nodes)) * (rng.random((nodes, nodes)) < 0.15)
    np.fill_diagonal(dense, 0)
    expected = scipy_maximum_flow(sp.csr_array(dense.astype(np.int32)), 0, nodes - 1).flow_value
    tail, head = np.nonzero(dense)
    graph, forward = residual_graph(nodes, tail, head, dense[tail, head].astype(float))
    value, source_side = maximum_flow(graph, 0, nodes - 1)
    assert value == pytest.approx(expected, abs=1e-9)
    # Max-flow min-cut: the arcs leaving the source side carry exactly the flow value.
    crossing = source_side[tail] & ~source_side[head]
    assert dense[tail[crossing], head[crossing]].sum() == pytest.approx(value, abs=1e-9)
    # Conservation at the inner nodes, and capacities respected.
    flow = dense[tail, head] - graph.capacity[forward]
    assert np.all(flow >= -1e-9) and np.all(flow <= dense[tail, head] + 1e-9)
    net_out = np.bincount(tail, flow, nodes) - np.bincount(head, flow, nodes)
    np.testing.assert_allclose(net_out[1:-1], 0.0, atol=1e-9)


def _independent_dual_bound(net: MoANetwork, mu: np.ndarray, cap: float) -> float:
    r"""``cap / g(mu)`` written out per layer and per origin with Python loops: each origin's
    cheapest placement of layer ``m`` fills its ``k_m`` neighbours of smallest
    :math:`\mu_i s_{m,i}` (the weak-duality bound on the least peak load)."""
    mu = mu / mu.sum()
    s, lam, adj = net.service_time, net.arrival_rate, net.adjacency
    own = s[0] + (net.M - 1) * s[1] + s[2]
    bound = float(mu @ (own * lam))
    for m, km in enumerate(net.k):
        price = mu * s[0 if m == 0 else 1]
        for j in range(net.n):
            neighbours = adj.indices[adj.indptr[j] : adj.indptr[j + 1]]
            bound += lam[j] * float(np.sort(price[neighbours])[:km].sum())
    return cap / bound


def _two_group_network(n: int, degree: int, seed: int) -> MoANetwork:
    """Independent random times per job type (propose and refine rows unrelated): the layers
    form two groups, so the structured LP runs, not the max-flow."""
    rng = np.random.default_rng(seed)
    return MoANetwork(
        n=n,
        M=int(rng.integers(2, 4)),
        k=int(rng.integers(1, 4)),
        arrival_rate=rng.uniform(0.05, 1.0, n),
        service_time=rng.uniform(0.3, 3.0, (3, n)),
        topology=random_regular_graph(n, degree, seed=seed),
    )


def _check_structured_against_cvxpy(net: MoANetwork) -> None:
    fast = max_scale_selection(net, margin=0.05)
    assert fast.solver_path == "structured-ipm"
    general = max_stable_rate(net, optimise_selection=True, margin=0.05, solver="HIGHS")
    assert general.solver_path == "cvxpy"
    assert fast.value == pytest.approx(general.value, rel=1e-7)
    # The certificate, recomputed here from the reported multipliers.
    bound = _independent_dual_bound(net, np.asarray(fast.duals), fast.load_cap)
    assert fast.dual_bound == pytest.approx(bound, rel=1e-9)
    assert general.value <= bound * (1 + 1e-9)  # a true upper bound on the optimum
    assert fast.value <= bound <= fast.value * (1 + 1e-6)
    assert fast.status == "optimal"
    assert loads(fast.network).max() == pytest.approx(0.95, rel=1e-9)


@pytest.mark.parametrize("seed", range(4))
def test_several_groups_agree_with_cvxpy_with_an_independently_checked_bound(seed: int) -> None:
    _check_structured_against_cvxpy(_two_group_network(int(60 + 45 * seed), 6, seed))


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(2))
def test_several_groups_agree_with_cvxpy_at_a_thousand_devices(seed: int) -> None:
    _check_structured_against_cvxpy(_two_group_network(1000, 20, 100 + seed))


def test_a_loose_solve_that_misses_the_certificate_is_tightened(monkeypatch) -> None:
    from moa_stability.analysis import capacity

    net = _two_group_network(80, 6, 7)
    tight = max_scale_selection(net)
    # No interior-point iteration, so no certificate from it: HiGHS runs, and its first
    # tolerance is too loose to certify: the tighter one must run and deliver one.
    monkeypatch.setattr(capacity, "_IPM_MAX_ITER", 0)
    monkeypatch.setattr(capacity, "_IPM_TOLERANCES", (1e-3, 1e-10))
    checks: list[float] = []
    bound = capacity._dual_bound

    def counted(*args):
        checks.append(bound(*args))
        return checks[-1]

    monkeypatch.setattr(capacity, "_dual_bound", counted)
    res = max_scale_selection(net)
    assert len(checks) == 3  # two solves checked, then the result's own bound
    assert res.solver_path == "highs-structured"
    assert res.status == "optimal"
    assert res.value == pytest.approx(tight.value, rel=1e-7)
    assert res.value <= res.dual_bound <= res.value * (1 + 1e-6)


def test_large_two_group_network_takes_the_interior_point_and_matches_highs(monkeypatch) -> None:
    from moa_stability.analysis import capacity

    n = 700  # 700 * 20 directed edges * 2 layers = 28000 edge flows > CVXPY_MAX_FLOWS
    rng = np.random.default_rng(11)
    net = MoANetwork(
        n=n,
        M=2,
        k=3,
        arrival_rate=rng.uniform(0.1, 1.0, n),
        service_time=rng.uniform(0.5, 2.0, (3, n)),
        topology=random_regular_graph(n, 20, seed=11),
    )
    res = max_stable_rate(net, optimise_selection=True)
    assert res.solver_path == "structured-ipm"
    assert res.status == "optimal"
    assert res.value <= res.dual_bound <= res.value * (1 + 1e-6)
    bound = _independent_dual_bound(net, np.asarray(res.duals), res.load_cap)
    assert res.dual_bound == pytest.approx(bound, rel=1e-9)
    assert loads(res.network).max() == pytest.approx(1.0, rel=1e-9)
    # The fall-back on the same network: HiGHS's interior point, when this one does not certify.
    monkeypatch.setattr(capacity, "_IPM_MAX_ITER", 1)
    fallback = max_stable_rate(net, optimise_selection=True)
    assert fallback.solver_path == "highs-structured"
    assert fallback.value == pytest.approx(res.value, rel=1e-7)


@pytest.mark.parametrize("seed", range(3))
def test_projected_cg_solves_the_bordered_system(seed: int) -> None:
    # The Schur complement is built densely here from its definition and the bordered system
    # [S -1; 1^T 0] [x; tau] = [b; c] solved by numpy.
    from moa_stability.analysis import interior_point as ip

    rng = np.random.default_rng(seed)
    n, G = 40, int(rng.integers(2, 4))
    adj = random_regular_graph(n, 6, seed=seed)
    start, helper = adj.indptr.astype(np.int64), adj.indices
    origin = np.repeat(np.arange(n), np.diff(start))
    E = helper.size
    time_ = rng.uniform(0.3, 3.0, (E, G))
    cap = rng.uniform(0.5, 1.0, (n, G))
    y = cap[origin] * rng.uniform(0.05, 0.95, (E, G))
    zy, wy = rng.uniform(0.01, 1.0, (E, G)), rng.uniform(0.01, 1.0, (E, G))
    t, zt = rng.uniform(0.1, 1.0, n), rng.uniform(0.1, 1.0, n)
    program = ip.Program(
        start, helper, time_, cap, np.ones((n, G)), np.ones((n, G), bool), np.zeros(n)
    )
    theta, sh = np.empty((E, G)), np.empty((E, G))
    inv_beta, diag = np.empty((n, G)), np.empty(n)
    schur = ip._normal_matrix(program, y, zy, wy, t, zt, theta, sh, inv_beta, diag)
    # S = A Theta A^T on the load rows minus the balance block's contribution, densely.
    th = 1.0 / (zy / y + wy / (cap[origin] - y))
    S = np.diag(t / zt)
    for g in range(G):
        load_rows = sp.csr_array((time_[:, g], (helper, np.arange(E))), shape=(n, E)).toarray()
        balance = sp.csr_array((np.ones(E), (origin, np.arange(E))), shape=(n, E)).toarray()
        cross = (load_rows * th[:, g]) @ balance.T
        S += (load_rows * th[:, g]) @ load_rows.T - cross @ np.diag(
            1.0 / (balance @ th[:, g])
        ) @ cross.T
    np.testing.assert_allclose(schur, np.diag(S), rtol=1e-10)
    b, c = rng.normal(size=n), 0.3
    bordered = np.block([[S, -np.ones((n, 1))], [np.ones((1, n)), np.zeros((1, 1))]])
    expected = np.linalg.solve(bordered, np.r_[b, c])
    x = rng.normal(size=n)
    iterations, tau = ip._projected_cg(b, c, x, program, sh, inv_beta, diag, schur, 1e-12, 500)
    assert iterations < 500
    np.testing.assert_allclose(x, expected[:n], rtol=1e-8, atol=1e-9)
    assert tau == pytest.approx(expected[n], rel=1e-8)


def test_rates_over_nine_decades_are_certified_on_both_paths(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Rates from 1e-9 to 1 (some idle), times from 1e-3 to 1e3, and a layer with k equal to the
    # degree (its flows fixed): HiGHS's structured solve called this program infeasible while
    # its flows were bounded by their caps (below its absolute tolerances); the interior point
    # and the fall-back must both certify it, and the certificate is recomputed here.
    rng = np.random.default_rng(0)
    n = 700
    rates = np.exp(rng.uniform(np.log(1e-9), 0.0, n)) * (rng.random(n) >= 0.3)
    rates[0] = 1.0
    net = MoANetwork(
        n=n,
        M=3,
        k=[3, 20, 1],
        arrival_rate=rates,
        service_time=np.exp(rng.uniform(np.log(1e-3), np.log(1e3), (3, n))),
        topology=random_regular_graph(n, 20, seed=0),
    )
    res = max_stable_rate(net, optimise_selection=True)
    assert res.solver_path == "structured-ipm"
    assert res.status == "optimal"
    bound = _independent_dual_bound(net, np.asarray(res.duals), res.load_cap)
    assert res.dual_bound == pytest.approx(bound, rel=1e-9)
    assert res.value <= bound <= res.value * (1 + 1e-6)
    assert loads(res.network).max() == pytest.approx(1.0, rel=1e-9)
    monkeypatch.setattr(capacity, "_IPM_MAX_ITER", 1)
    fallback = max_stable_rate(net, optimise_selection=True)
    assert fallback.solver_path == "highs-structured"
    assert fallback.status == "optimal"
    fallback_bound = _independent_dual_bound(net, np.asarray(fallback.duals), fallback.load_cap)
    assert fallback.value <= fallback_bound <= fallback.value * (1 + 1e-6)
    assert fallback.value == pytest.approx(res.value, rel=1e-7)
