"""Maximal stable rates: closed forms, the paper's grid, a hand-derived heterogeneous optimum,
and every objective against an independent dense formulation solved by scipy."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog
from scipy.sparse.csgraph import connected_components

from moa_stability import MoANetwork, loads, max_uniform_scale, random_regular_graph
from moa_stability.analysis.optimize import capacity_region, max_stable_rate
from moa_stability.model.loads import load_matrix

HETERO = dict(n=4, M=2, k=2, arrival_rate=1.0, service_time=[1.0, 1.0, 1.0, 4.0])


# ---- random networks ------------------------------------------------------------------------
def _random_inclusion(adj: np.ndarray, km: int, rng: np.random.Generator) -> np.ndarray:
    """A valid pi: a random mix of the uniform rule and one random k-subset per origin (both
    have rows in [0, 1] summing to k on the neighbours, so their convex mix has too)."""
    pi = np.zeros_like(adj)
    for j in range(adj.shape[0]):
        nbrs = np.flatnonzero(adj[j])
        t = rng.uniform()
        pi[j, nbrs] = (1 - t) * km / nbrs.size
        pi[j, rng.choice(nbrs, km, replace=False)] += t
    return pi


@st.composite
def networks(draw, max_n: int = 9, max_M: int = 3, positive_rates: bool = False):
    n = draw(st.integers(2, max_n))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    kinds = ["complete", "star"] + (["ring", "regular"] if n >= 4 else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "regular":
        degree = int(rng.choice([d for d in range(2, n) if n * d % 2 == 0]))
        topology = random_regular_graph(n, degree, seed=seed)
        while connected_components(topology)[0] > 1:  # small regular graphs can split
            seed += 1
            topology = random_regular_graph(n, degree, seed=seed)
    else:
        topology = kind
    M = draw(st.integers(0, max_M))
    probe = MoANetwork(n=n, topology=topology)
    kmax = int(probe.degrees.min())
    k = [int(x) for x in rng.integers(0, kmax + 1, M)]
    low = 0.01 if positive_rates else 0.0
    rates = rng.uniform(low, 1.0, n) * (rng.uniform(size=n) < 0.8 if not positive_rates else 1)
    if not rates.any():
        rates[0] = 0.5
    service = rng.uniform(0.1, 5.0, (3, n))
    selection = None
    if M and draw(st.booleans()):
        adj = probe.adjacency.toarray()
        selection = [_random_inclusion(adj, km, rng) for km in k]
    return MoANetwork(
        n=n,
        M=M,
        k=k,
        arrival_rate=rates,
        service_time=service,
        topology=topology,
        selection=selection,
    )


# ---- closed forms ---------------------------------------------------------------------------
@settings(max_examples=60)
@given(networks())
def test_load_matrix_reproduces_the_traffic_equations(net):
    np.testing.assert_allclose(load_matrix(net) @ net.arrival_rate, loads(net), rtol=1e-12)


@settings(max_examples=220)
@given(networks(), st.floats(0.0, 0.5))
def test_scale_with_fixed_selection_is_the_closed_form(net, margin):
    res = max_stable_rate(net, "scale", margin=margin)
    assert res.status == "optimal"
    assert res.value == pytest.approx((1 - margin) * max_uniform_scale(net), rel=1e-7)
    np.testing.assert_allclose(res.rates, res.value * net.arrival_rate, rtol=1e-12)
    assert res.loads.max() == pytest.approx(1 - margin, rel=1e-7)
    assert np.argmax(res.loads) in res.binding


@pytest.mark.parametrize("n", [4, 7])
@pytest.mark.parametrize("M", [0, 1, 2, 3])
@pytest.mark.parametrize("alpha", [0.5, 3.0])
def test_paper_theorem_1_on_the_homogeneous_grid(n, M, alpha):
    for k in range(n if M else 1):
        net = MoANetwork(n=n, M=M, k=k, arrival_rate=1.0, service_time=alpha)
        expected = 1 / (alpha * ((k + 1) * M + 1))
        assert max_stable_rate(net).value == pytest.approx(expected, rel=1e-9)
        # Total work is n * alpha * ((k+1)M+1) * theta whatever the selection, so no selection
        # can beat the symmetric one. (An interior-point LP: accurate to ~1e-9, not round-off.)
        best = max_stable_rate(net, optimise_selection=True)
        assert best.value == pytest.approx(expected, rel=1e-7)


def test_heterogeneous_example_uniform_and_optimised():
    # n=4, M=2, k=2, alpha=(1,1,1,4), equal rates lam.
    # Uniform: the slow device 3 runs, per prompt rate, its own 3 inferences plus
    # 2 layers x 3 origins x 2/3 helper jobs = 7 lam jobs of 4 s: rho_3 = 28 lam -> 1/28.
    # Optimised: device 3 cannot shed its own propose, refine and aggregate (3 x 4 s), so
    # rho_3 >= 12 lam and 1/12 is an upper bound. It is attained: the three fast origins pick
    # the other two fast devices (pi[j, 3] = 0) and device 3 spreads its 2 helpers over the
    # three fast ones (2/3 each); a fast device then runs, per layer, lam + 2 lam + 2/3 lam,
    # plus lam aggregating: 2 x 11/3 lam + lam = 25/3 lam < 12 lam.
    net = MoANetwork(**HETERO)
    assert max_stable_rate(net).value == pytest.approx(1 / 28, rel=1e-9)
    res = max_stable_rate(net, optimise_selection=True)
    assert res.value == pytest.approx(1 / 12, rel=1e-9)
    assert res.binding == (3,)
    for pi in res.selection:
        np.testing.assert_allclose(pi.toarray()[:3, 3], 0.0, atol=1e-9)
    # How device 3 spreads its helpers is free, but all helper work lands on the fast devices:
    # 3 x 25/3 lam of it at lam = 1/12.
    assert res.loads[3] == pytest.approx(1.0, rel=1e-9)
    assert res.loads[:3].sum() == pytest.approx(25 / 12, rel=1e-7)
    # The returned network is the optimum itself: the selection reproduces the loads, and just
    # below it every device is under 1.
    np.testing.assert_allclose(loads(res.network), res.loads, rtol=1e-12)
    assert loads(res.network.scaled(0.9)).max() == pytest.approx(0.9, rel=1e-7)


def test_scale_dual_is_the_sensitivity_of_theta():
    # theta*(c) = c / rho_b(direction) at the unique bottleneck b: d theta / d c_b = theta / c.
    net = MoANetwork(**HETERO)
    res = max_stable_rate(net, margin=0.2)
    np.testing.assert_allclose(res.duals, [0, 0, 0, res.value / 0.8], atol=1e-9)


# ---- an independent dense formulation -------------------------------------------------------
def _unit_load_columns(net: MoANetwork) -> np.ndarray:
    """Column j: loads when only device j sends prompts, at rate 1 (from the core)."""
    return np.column_stack(
        [loads(net.replace(arrival_rate=np.eye(net.n)[j])) for j in range(net.n)]
    )


def _dense_program(net, objective, optimise, cap, upper):
    """Variables z = [rates or theta, flows x_m[j, i] for every layer and ordered edge, t for
    min]; returns the matrices of ``A_ub z <= b_ub, A_eq z = b_eq, z >= 0`` and ``L`` with
    rates = L z."""
    n = net.n
    s = net.service_time
    edges = [(j, i) for j in range(n) for i in range(n) if net.adjacency[j, i]]
    layers = range(net.M) if optimise else []
    n_rate = 1 if objective == "scale" else n
    size = n_rate + len(edges) * len(layers) + (objective == "min")
    L = np.zeros((n, size))
    L[:, :n_rate] = net.arrival_rate[:, None] if objective == "scale" else np.eye(n)
    if optimise:
        own = loads(net.replace(k=0, selection=None, arrival_rate=1.0))
        load = own[:, None] * L
    else:
        load = _unit_load_columns(net) @ L
    ub, eq = [], []
    for m in layers:
        for e, (j, i) in enumerate(edges):
            col = n_rate + m * len(edges) + e
            load[i, col] += s[0, i] if m == 0 else s[1, i]
            row = -L[j].copy()
            row[col] = 1.0  # x_m[j, i] <= lam_j
            ub.append((row, 0.0))
        for j in range(n):
            row = -net.k[m] * L[j]
            for e, (jj, _) in enumerate(edges):
                if jj == j:
                    row[n_rate + m * len(edges) + e] = 1.0
            eq.append((row, 0.0))
    ub += [(load[i], cap) for i in range(n)]
    ub += [(L[i], upper[i]) for i in range(n) if np.isfinite(upper[i])]
    if objective == "min":
        for i in range(n):
            row = -L[i].copy()
            row[-1] = 1.0
            ub.append((row, 0.0))

    def stack(rows):
        return np.array([r for r, _ in rows]).reshape(-1, size), np.array([b for _, b in rows])

    return stack(ub), stack(eq), L


def _lp_optimum(net, objective, optimise, cap, upper, weights=None) -> float:
    """Optimum of the dense LP; ``objective='weighted'`` maximises ``weights @ rates``."""
    program_objective = "sum" if objective == "weighted" else objective
    (A_ub, b_ub), (A_eq, b_eq), L = _dense_program(net, program_objective, optimise, cap, upper)
    eq = dict(A_eq=A_eq, b_eq=b_eq) if len(b_eq) else {}
    c = {
        "scale": lambda: -np.eye(L.shape[1])[0],
        "sum": lambda: -L.sum(axis=0),
        "min": lambda: -np.eye(L.shape[1])[-1],
        "weighted": lambda: -weights @ L,
    }[objective]()
    # Dual simplex to a vertex, with feasibility tolerances well below the 1e-9 compared.
    tight = {"primal_feasibility_tolerance": 1e-10, "dual_feasibility_tolerance": 1e-10}
    out = linprog(c, A_ub=A_ub, b_ub=b_ub, **eq, bounds=(0, None), method="highs-ds", options=tight)
    assert out.status == 0
    return -out.fun


@settings(max_examples=30)
@given(
    networks(max_n=5, max_M=2, positive_rates=True),
    st.booleans(),
    st.sampled_from(["scale", "sum", "min", "proportional"]),
    st.booleans(),
    st.floats(0.0, 0.3),
)
def test_every_objective_agrees_with_scipy(net, optimise, objective, bounded, margin):
    upper = np.full(net.n, np.inf)
    if bounded:
        upper[0] = 0.3 * max_stable_rate(net, "min").value
    res = max_stable_rate(
        net,
        objective,
        optimise_selection=optimise,
        margin=margin,
        rate_upper=upper if bounded else None,
    )
    cap = 1 - margin
    if objective == "proportional":
        # First-order optimality of the concave f = sum of logs over the convex feasible set:
        # f(lam) - f(lam*) <= sum_i (lam_i - lam*_i) / lam*_i for every feasible lam, so the LP
        # max sum_i lam_i / lam*_i bounds the suboptimality by (its value - n). The rates of an
        # interior-point solve are only ~sqrt(gap) accurate where f is flat: allow 1e-4.
        assert res.value == pytest.approx(np.log(res.rates).sum(), rel=1e-12)
        best = _lp_optimum(net, "weighted", optimise, cap, upper, weights=1 / res.rates)
        assert net.n * (1 - 1e-9) <= best <= net.n * (1 + 1e-4)
        fair = max_stable_rate(
            net,
            "min",
            optimise_selection=optimise,
            margin=margin,
            rate_upper=upper if bounded else None,
        )
        assert res.value >= np.log(fair.rates).sum() - 1e-9
    else:
        expected = _lp_optimum(net, objective, optimise, cap, upper)
        assert res.value == pytest.approx(expected, rel=1e-7, abs=1e-10)
    # The result is a feasible point of that program, evaluated by the core's loads.
    assert loads(res.network).max() <= cap * (1 + 1e-7)
    assert np.all(res.rates <= upper * (1 + 1e-9))
    np.testing.assert_allclose(res.loads, loads(res.network), rtol=1e-12)


@settings(max_examples=25)
@given(
    networks(max_n=6, max_M=2, positive_rates=True), st.booleans(), st.sampled_from(["sum", "min"])
)
def test_duals_are_supergradients_of_the_value(net, optimise, objective):
    # The optimal value is concave in the caps c, and the duals are a supergradient:
    # v(c + h e_i) <= v(c) + h dual_i for h of either sign. Scaling device i's service times by
    # 1/(1+eps) is the same as raising its cap to 1 + eps.
    res = max_stable_rate(net, objective, optimise_selection=optimise)
    assert np.all(res.duals >= 0)
    assert np.all(res.duals[np.setdiff1d(np.arange(net.n), res.binding)] < 1e-7)
    for i in range(net.n):
        for eps in (1e-3, -1e-3):
            s = net.service_time.copy()
            s[:, i] /= 1 + eps
            moved = max_stable_rate(
                net.replace(service_time=s), objective, optimise_selection=optimise
            ).value
            assert moved <= res.value + eps * res.duals[i] + 1e-9 * (1 + res.value)


@settings(max_examples=25)
@given(
    networks(max_n=8, max_M=3, positive_rates=True),
    st.sampled_from(["scale", "sum", "min", "proportional"]),
)
def test_optimised_selection_is_valid_and_never_worse(net, objective):
    fixed = max_stable_rate(net, objective)
    best = max_stable_rate(net, objective, optimise_selection=True)
    assert best.value >= fixed.value - 1e-7 * abs(fixed.value)
    assert len(best.selection) == net.M
    for km, pi in zip(net.k, best.selection, strict=True):
        dense = pi.toarray()
        assert np.all((dense >= 0) & (dense <= 1))
        assert np.all(dense[net.adjacency.toarray() == 0] == 0)
        np.testing.assert_allclose(dense.sum(axis=1), km, rtol=1e-9, atol=1e-12)
    assert best.loads.max() <= 1 + 1e-7


def test_min_objective_gives_everyone_the_fair_rate():
    net = MoANetwork(**HETERO)
    res = max_stable_rate(net, "min")
    assert res.rates.min() == pytest.approx(res.value)
    # With equal rates the max-min fair point is the scale point: 1/28 each.
    assert res.value == pytest.approx(1 / 28, rel=1e-9)


def test_idle_origins_fall_back_to_uniform_selection():
    net = MoANetwork(n=5, M=1, k=2, arrival_rate=[1, 1, 0, 0, 0], service_time=1.0)
    res = max_stable_rate(net, optimise_selection=True)
    pi = res.selection[0].toarray()
    np.testing.assert_allclose(pi[2:], (np.ones((5, 5)) - np.eye(5))[2:] * 2 / 4)


def test_rate_bounds_hold_and_shape_the_optimum():
    net = MoANetwork(**HETERO)
    # Uniform selection: rho_i = s_i (3 lam_i + 4/3 sum_{j != i} lam_j); the slow device 3
    # (s = 4) binds. Capped at 0.05 each, the fast devices take 0.05 and device 3 what is
    # left: 4 (3 lam_3 + 4/3 x 0.15) = 1 -> lam_3 = 1/60, total 1/6. Forcing lam_3 >= 0.05
    # leaves S = lam_0 + lam_1 + lam_2 with 4 (0.15 + 4/3 S) = 1 -> S = 0.075, total 0.125.
    free = max_stable_rate(net, "sum", rate_upper=0.05)
    assert free.value == pytest.approx(1 / 6, rel=1e-9)
    np.testing.assert_allclose(free.rates, [0.05, 0.05, 0.05, 1 / 60], rtol=1e-9)
    res = max_stable_rate(net, "sum", rate_lower=[0, 0, 0, 0.05], rate_upper=0.05)
    assert res.value == pytest.approx(0.125, rel=1e-9)
    assert res.rates[3] == pytest.approx(0.05, rel=1e-9) and np.all(res.rates <= 0.05)


# ---- infeasible and bad input -----------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(objective="fastest"), "unknown objective"),
        (dict(margin=1.0), r"margin=1.0: must be a number in \[0, 1\)"),
        (dict(margin=-0.1), "margin"),
        (dict(rate_upper=[1, 1, 1]), "rate_upper"),
        (dict(rate_lower=0.2, rate_upper=0.1), "exceeds rate_upper"),
        (dict(objective="proportional", rate_upper=[1, 1, 1, 0]), "-inf"),
    ],
)
def test_bad_input_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        max_stable_rate(MoANetwork(**HETERO), **kwargs)


def test_all_zero_rates_have_no_scale_direction():
    net = MoANetwork(n=3, M=1, k=1, arrival_rate=0.0)
    with pytest.raises(ValueError, match="no direction"):
        max_stable_rate(net, "scale")
    assert max_stable_rate(net, "sum").value > 0


@pytest.mark.parametrize("optimise", [False, True])
def test_own_work_beyond_capacity_names_the_device(optimise):
    # Device 3 alone needs 3 x 4 s per prompt: 0.1 prompts/s is load 1.2 whatever the selection.
    with pytest.raises(ValueError, match=r"device 3 has load 1\.2 > .*\(1\.2 from its own"):
        max_stable_rate(
            MoANetwork(**HETERO), "sum", rate_lower=[0, 0, 0, 0.1], optimise_selection=optimise
        )


def test_unspreadable_helper_work_names_the_device():
    # A star: every leaf must pick the centre (its only neighbour) as helper, so four leaves at
    # 0.26 prompts/s put 4 x 0.26 = 1.04 on the centre whatever the selection, while each leaf
    # alone (propose + aggregate) is only at 0.52.
    net = MoANetwork(n=5, M=1, k=1, arrival_rate=1.0, topology="star", service_time=1.0)
    with pytest.raises(
        ValueError,
        match=r"even with the best selection, device 0 has load "
        r"1\.04 > .*\(0 from its own prompts, 1\.04 as a helper\)",
    ):
        max_stable_rate(net, "sum", rate_lower=[0, 0.26, 0.26, 0.26, 0.26], optimise_selection=True)


def test_scale_cannot_meet_a_lower_bound_on_an_idle_device():
    net = MoANetwork(n=3, M=1, k=1, arrival_rate=[1.0, 1.0, 0.0])
    with pytest.raises(ValueError, match="device 2 has arrival rate 0"):
        max_stable_rate(net, rate_lower=[0, 0, 0.01])


def test_not_a_network():
    with pytest.raises(ValueError, match="not a MoANetwork"):
        max_stable_rate({"n": 4})


# ---- capacity region ------------------------------------------------------------------------
@pytest.mark.parametrize("topology", ["complete", "ring"])
def test_capacity_region_with_fixed_selection_is_the_load_polygon(topology):
    rng = np.random.default_rng(7)
    net = MoANetwork(
        n=6,
        M=2,
        k=2,
        arrival_rate=rng.uniform(0, 0.01, 6),
        service_time=rng.uniform(0.5, 3, (3, 6)),
        topology=topology,
    )
    frame = capacity_region(net, devices=(1, 4), n_angles=9)
    assert frame.attrs["devices"] == (1, 4) and len(frame) == 9
    base = net.arrival_rate.copy()
    base[[1, 4]] = 0
    fixed = loads(net.replace(arrival_rate=base))
    cols = _unit_load_columns(net)
    for row in frame.itertuples():
        d = cols[:, 1] * np.cos(row.angle_rad) + cols[:, 4] * np.sin(row.angle_rad)
        r = np.min((1 - fixed)[d > 0] / d[d > 0])
        assert (row.rate_a_per_s, row.rate_b_per_s) == pytest.approx(
            (r * np.cos(row.angle_rad), r * np.sin(row.angle_rad)), rel=1e-7, abs=1e-12
        )


def test_optimised_capacity_region_contains_the_uniform_one():
    net = MoANetwork(n=4, M=2, k=2, arrival_rate=0.01, service_time=[1.0, 1.0, 1.0, 4.0])
    uniform = capacity_region(net, devices=(0, 3), n_angles=7)
    best = capacity_region(net, devices=(0, 3), n_angles=7, optimise_selection=True)
    assert set(best.selection) == {"optimised"} and set(uniform.selection) == {"given"}
    reach = np.hypot(best.rate_a_per_s, best.rate_b_per_s)
    assert np.all(reach >= np.hypot(uniform.rate_a_per_s, uniform.rate_b_per_s) * (1 - 1e-9))
    # On device 3's axis its own work (12 s per prompt) is the bound: 1 minus the load the
    # fixed devices 1 and 2 put on it. Optimised, they avoid it, so rate_3 = 1/12 exactly.
    assert best.rate_b_per_s.iloc[-1] == pytest.approx(1 / 12, rel=1e-9)


def test_capacity_region_rejects_bad_devices_and_overloaded_base():
    net = MoANetwork(**HETERO)
    with pytest.raises(ValueError, match="two different devices"):
        capacity_region(net, devices=(2, 2))
    with pytest.raises(ValueError, match="n_angles"):
        capacity_region(net.scaled(0.001), n_angles=1)
    with pytest.raises(ValueError, match="infeasible"):
        capacity_region(net, devices=(0, 1))


def test_selection_of_fixed_result_is_the_networks_own():
    rng = np.random.default_rng(1)
    g = random_regular_graph(10, 3, seed=1)
    net = MoANetwork(n=10, M=2, k=[1, 2], arrival_rate=rng.uniform(0.1, 1, 10), topology=g)
    res = max_stable_rate(net, "sum")
    for m, pi in enumerate(res.selection):
        assert sp.issparse(pi)
        np.testing.assert_allclose(pi.toarray(), net.inclusion(m).toarray())
    assert res.network.selection is None


# ---- magnitudes, the feasibility check and the solver name -----------------------------------
def _magnified(net: MoANetwork, rate_factor: float, time_factor: float) -> MoANetwork:
    """Rates times ``rate_factor``, service times times ``time_factor``: the same loads up to
    the factor ``rate_factor * time_factor``, so optima move by exact factors."""
    return net.replace(
        arrival_rate=net.arrival_rate * rate_factor, service_time=net.service_time * time_factor
    )


@settings(max_examples=40, deadline=None)
@given(
    networks(max_n=5, max_M=2, positive_rates=True),
    st.booleans(),
    st.sampled_from(["scale", "sum", "min", "proportional"]),
    st.integers(-12, 12),
    st.integers(-6, 6),
    st.booleans(),
)
def test_every_magnitude_gives_the_optimum_of_the_order_one_problem(
    net, optimise, objective, rate_exp, time_exp, bounded
):
    # The reference is scipy's HiGHS on the O(1) network; the magnified network's optimum is
    # that, moved by the exact factor: theta / (a b), total and min rates / b, sum of logs
    # - n log b (a: rate factor, b: time factor).
    a, b = 10.0**rate_exp, 10.0**time_exp
    upper = np.full(net.n, np.inf)
    if bounded:
        upper[0] = 0.3 / (np.sum(net.service_time) / net.n)
    big = _magnified(net, a, b)
    res = max_stable_rate(
        big, objective, optimise_selection=optimise, rate_upper=upper / b if bounded else None
    )
    # Never past the cap: an interior point's overshoot is pulled back inside.
    assert loads(res.network).max() <= 1 + 1e-12
    np.testing.assert_allclose(res.loads, loads(res.network), rtol=1e-12)
    if objective == "proportional":
        small = max_stable_rate(
            net, objective, optimise_selection=optimise, rate_upper=upper if bounded else None
        )
        # The sum of logs is flat at its optimum, so the values agree far better than the
        # rates (which an interior point gets to ~1e-5).
        assert res.value == pytest.approx(small.value - net.n * np.log(b), rel=1e-9, abs=1e-9)
        return
    expected = _lp_optimum(net, objective, optimise, 1.0, upper)
    factor = 1 / (a * b) if objective == "scale" else 1 / b
    assert res.value == pytest.approx(expected * factor, rel=1e-9)


@pytest.mark.parametrize("rate", [1e-12, 1e-3, 1e12])
@pytest.mark.parametrize("alpha", [1e-6, 1.0, 1e6])
@pytest.mark.parametrize("optimise", [False, True])
def test_theorem_1_at_every_magnitude_and_objective(rate, alpha, optimise):
    # Homogeneous complete graph: every device carries alpha ((k+1)M + 1) times the common
    # rate, and total work forbids any selection or unequal rates from doing better.
    n, M, k = 5, 2, 2
    per_device = 1 / (alpha * ((k + 1) * M + 1))
    net = MoANetwork(n=n, M=M, k=k, arrival_rate=rate, service_time=alpha)
    expected = {
        "scale": per_device / rate,
        "sum": n * per_device,
        "min": per_device,
        "proportional": n * np.log(per_device),
    }
    for objective, value in expected.items():
        res = max_stable_rate(net, objective, optimise_selection=optimise)
        if objective == "proportional":
            assert res.value == pytest.approx(value, rel=1e-9, abs=1e-9)
        else:
            assert res.value == pytest.approx(value, rel=1e-9)


def test_the_issue_examples_are_exact():
    net = MoANetwork(n=4, M=2, k=2, arrival_rate=1e9, service_time=[1, 1, 1, 4])
    assert max_stable_rate(net).value == pytest.approx(1 / 28e9, rel=1e-12)
    small = net.replace(arrival_rate=1e-9)
    assert max_stable_rate(small, optimise_selection=True).value == pytest.approx(
        1e9 / 12, rel=1e-9
    )
    assert max_stable_rate(net.replace(arrival_rate=1e-12)).value == pytest.approx(
        1e12 / 28, rel=1e-12
    )


def test_large_complete_graph_stays_implicit():
    # n = 10^5: the dense load matrix alone would be 80 GB.
    import tracemalloc

    n, M, k, alpha = 100_000, 2, 3, 2.0
    net = MoANetwork(n=n, M=M, k=k, arrival_rate=1e-6, service_time=alpha)
    tracemalloc.start()
    try:
        res = max_stable_rate(net, margin=0.1)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert res.value == pytest.approx(0.9 / (alpha * ((k + 1) * M + 1) * 1e-6), rel=1e-12)
    assert peak < 200e6


@pytest.mark.parametrize("tamper", ["double", "zero"])
def test_a_solver_answer_that_fails_its_check_is_an_error(monkeypatch, tamper):
    from moa_stability.analysis import optimize

    real = optimize._run_solver

    def wrong(problem, name):
        status = real(problem, name)
        for var in problem.variables():
            var.value = var.value * (2.0 if tamper == "double" else 0.0)
        return status

    monkeypatch.setattr(optimize, "_run_solver", wrong)
    match = "fails the feasibility check" if tamper == "double" else "below"
    with pytest.raises(ValueError, match=match):
        max_stable_rate(MoANetwork(**HETERO), "sum", optimise_selection=True)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(solver="NOPE"), "solver"),
        (dict(solver=5), "solver"),
        (dict(solver="HIGHS", objective="proportional"), "solver"),
        (dict(margin=np.float32(1.5)), "margin"),
        (dict(margin="0.1"), "margin"),
        (dict(optimise_selection="yes"), "optimise_selection"),
        (dict(objective=np.array(["sum"])), "objective"),
    ],
)
def test_bad_solver_margin_and_flags_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=f"^{field}="):
        max_stable_rate(MoANetwork(**HETERO), **kwargs)


def test_numpy_scalars_are_valid_margins():
    res = max_stable_rate(MoANetwork(**HETERO), margin=np.float32(0.1))
    assert res.value == pytest.approx((1 - float(np.float32(0.1))) / 28, rel=1e-12)


def test_scale_bounds_with_no_common_scale_are_an_error():
    # Equal rates: device 0 needs theta >= 0.02, device 1 allows theta <= 0.01.
    net = MoANetwork(n=4, M=1, k=1, arrival_rate=1.0, service_time=0.1)
    with pytest.raises(ValueError, match="no common scale"):
        max_stable_rate(net, rate_lower=[0.02, 0, 0, 0], rate_upper=[1, 0.01, 1, 1])


# ---- Clarabel stalls (proportional) ---------------------------------------------------------
# Two-device pairs (one gossip edge, M = 1, k = 1) drawn by the random tests above, on which
# Clarabel's exponential cone stalled short of the 1e-11 gap it was asked for: at 8.4e-11
# ("almost solved", so cvxpy's "Solution may be inaccurate" warning and status
# optimal_inaccurate) and at 3.6e-8 (past the reduced tolerance 1e-8 too: a solver error, so a
# ValueError for a well-posed program). Rows of service_time: propose, refine, aggregate.
# "complete" is the same pair solved through the complete graph's implicit uniform loads.
CLARABEL_STALLS = {
    "almost-solved": (
        "star",
        [0.2770888466262316, 0.05056378869683274],
        [
            [1809.8541408979258, 40850.24172081335],
            [45725.02328660836, 30725.153012591818],
            [36745.331488215925, 27637.624581805725],
        ],
    ),
    "almost-solved-complete": (
        "complete",
        [0.2907574310380004, 0.7521848437727752],
        [
            [1.80678049463, 1.608005607601056],
            [0.4587883230901222, 2.5307355915763585],
            [1.8736126666063198, 1.1547839014098946],
        ],
    ),
    "insufficient-progress": (
        "star",
        [3.613279671053014, 0.649399629691132],
        [
            [18541.865896612533, 30800.93212009053],
            [35960.58807929893, 49754.477144614226],
            [18543.618124601817, 46954.15062496451],
        ],
    ),
}


def _stalled_pair(name: str) -> MoANetwork:
    topology, rates, service = CLARABEL_STALLS[name]
    return MoANetwork(n=2, M=1, k=1, arrival_rate=rates, service_time=service, topology=topology)


def _two_device_proportional_optimum(net: MoANetwork) -> np.ndarray:
    """max log l0 + log l1 subject to A l <= 1, by hand: each prompt of device i puts its own
    propose and aggregate on i and one propose on the other device j, so
    A = [[sP0 + sA0, sP0], [sP1, sP1 + sA1]]. The optimum is a KKT point: one load binding
    (l_j = 1 / (2 A_ij), the maximum of the sum of logs on that line) or both (A l = 1); it is
    the best of those candidates that fit."""
    s_p, s_a = net.service_time[0], net.service_time[2]
    a = np.array([[s_p[0] + s_a[0], s_p[0]], [s_p[1], s_p[1] + s_a[1]]])
    candidates = [1 / (2 * a[0]), 1 / (2 * a[1]), np.linalg.solve(a, np.ones(2))]
    fits = [c for c in candidates if np.all(c > 0) and np.all(a @ c <= 1 + 1e-12)]
    return max(fits, key=lambda c: np.log(c).sum())


@pytest.mark.parametrize("name", sorted(CLARABEL_STALLS))
@pytest.mark.filterwarnings("error")
def test_proportional_converges_where_clarabel_stalled(name):
    # Every warning is an error here: the stall no longer reaches cvxpy's "inaccurate" path.
    net = _stalled_pair(name)
    res = max_stable_rate(net, "proportional")
    assert res.status == "optimal"
    best = _two_device_proportional_optimum(net)
    assert res.value == pytest.approx(np.log(best).sum(), rel=1e-10, abs=1e-10)
    np.testing.assert_allclose(res.rates, best, rtol=1e-5)
    assert loads(res.network).max() <= 1 + 1e-12


@pytest.mark.filterwarnings("error")
def test_clarabel_reports_a_loose_stage_as_inaccurate(monkeypatch):
    from moa_stability.analysis import optimize

    net = _stalled_pair("almost-solved-complete")
    best = np.log(_two_device_proportional_optimum(net)).sum()
    # No interior point reaches a 1e-15 gap in double precision: the first stage fails in full
    # (no "almost solved") and the 1e-8 stage answers, looser than the 1e-10 promised.
    monkeypatch.setattr(optimize, "_CLARABEL_STAGES", ((1e-15, True), (1e-8, True)))
    res = max_stable_rate(net, "proportional")
    assert res.status == "optimal_inaccurate"
    assert res.value == pytest.approx(best, abs=1e-7)
    monkeypatch.setattr(optimize, "_CLARABEL_STAGES", ((1e-15, True), (1e-15, False)))
    with pytest.raises(ValueError, match="solver='CLARABEL': cannot solve this program"):
        max_stable_rate(net, "proportional")
