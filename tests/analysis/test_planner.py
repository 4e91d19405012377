"""The configuration planner: capacity, latency objective, ranking, bad input."""

import numpy as np
import pytest

from moa_stability import MoANetwork, latency, plan
from moa_stability.analysis.planner import paper_quality

# Table I of arXiv:2412.21200 (one 70B-class model), typed in from the paper.
TABLE_I = {
    (0, 0): 21.91,
    (1, 1): 29.55,
    (1, 2): 39.63,
    (2, 1): 28.88,
    (2, 2): 39.89,
    (1, 3): 39.79,
    (2, 3): 40.63,
}


def test_paper_quality_is_table_one():
    assert paper_quality() == TABLE_I


def test_homogeneous_capacity_and_latency():
    """Complete graph, one lambda and one alpha: capacity (1 - margin)/(lambda alpha ((k+1)M+1))
    (no selection beats uniform there); latency is latency() of the planned network."""
    lam, alpha, margin = 0.02, 1.0, 0.1
    res = plan(4, arrival_rate=lam, service_time=alpha, margin=margin, slo_s=1e6)
    frame = res.to_frame().set_index(["M", "k"])
    for (M, k), row in frame.iterrows():
        inferences = (k + 1) * M + 1
        assert row["capacity_scale"] == pytest.approx((1 - margin) / (lam * alpha * inferences))
        assert row["capacity_per_s"] == pytest.approx(4 * lam * row["capacity_scale"])
        assert row["max_load"] == pytest.approx(lam * alpha * inferences)
        net = MoANetwork(n=4, M=M, k=k, arrival_rate=lam, service_time=alpha)
        assert row["mean_s"] == pytest.approx(latency(net).mean_s, rel=1e-6)
        assert row["feasible"]
    assert res.best == (2, 3)  # the best accuracy of Table I
    assert list(res.feasible["quality"]) == sorted(TABLE_I.values(), reverse=True)


def test_slo_and_capacity_make_shapes_infeasible():
    """At lambda = 0.05 the (k+1)M+1 >= 18 shapes overload (load > 0.9); a tight p95 SLO
    drops the slow ones; the best feasible is the most accurate left."""
    res = plan(4, arrival_rate=0.05, service_time=1.0, margin=0.1, slo_s=8.0)
    frame = res.to_frame().set_index(["M", "k"])
    overloaded = {mk for mk in TABLE_I if 0.05 * ((mk[1] + 1) * mk[0] + 1) > 0.9}
    for mk in TABLE_I:
        row = frame.loc[mk]
        if mk in overloaded:
            assert not row["feasible"] and "exceed capacity" in row["reason"]
            assert np.isnan(row["quantile_s"])
        else:
            assert row["feasible"] == (row["quantile_s"] <= 8.0)
    best = max((q, mk) for mk, q in TABLE_I.items() if frame.loc[mk, "feasible"])[1]
    assert res.best == best
    # Feasible rows come first, ranked by quality.
    feasible = res.to_frame()["feasible"].to_numpy()
    assert not np.any(np.diff(feasible.astype(int)) > 0)


def test_graph_too_sparse_for_k():
    res = plan(6, arrival_rate=0.01, service_time=1.0, topology="ring")
    frame = res.to_frame().set_index(["M", "k"])
    assert not frame.loc[(1, 3), "feasible"]
    assert "cannot host" in frame.loc[(1, 3), "reason"]
    assert frame.loc[(1, 2), "feasible"]


def test_optimised_selection_moves_work_to_fast_devices():
    """One slow device: the optimised selection sends it fewer helper jobs, which raises the
    capacity above the uniform selection's."""
    s = [1.0, 1.0, 1.0, 3.0]
    res = plan(4, arrival_rate=0.01, service_time=s, quality={(1, 2): 1.0}, margin=0.0)
    pi = res.selections[(1, 2)][0].toarray()
    assert pi[:3, 3].max() < 2 / 3 - 1e-6  # uniform would be k/(n-1) = 2/3
    uniform = MoANetwork(n=4, M=1, k=2, arrival_rate=0.01, service_time=s)
    from moa_stability import max_uniform_scale

    assert res.table.loc[0, "capacity_scale"] > max_uniform_scale(uniform) * 1.01


def test_callable_service_times_per_shape():
    calls = []

    def means(M, k):
        calls.append((M, k))
        return {"propose": 1.0, "refine": 1.0 + k, "aggregate": 1.0 + k}

    res = plan(4, arrival_rate=0.01, service_time=means, quality={(0, 0): 1.0, (2, 2): 2.0})
    assert sorted(calls) == [(0, 0), (2, 2)]
    row = res.to_frame().set_index(["M", "k"]).loc[(2, 2)]
    rho = 0.01 * (3 * 1.0 + 3 * 3.0 + 3.0)  # propose (k+1), refine (k+1)(M-1), aggregate 1
    assert row["max_load"] == pytest.approx(rho)


def test_result_text():
    res = plan(4, arrival_rate=0.02, service_time=1.0, quality={(1, 1): 2.0, (0, 0): 1.0})
    assert "best: (1, 1)" in str(res)
    assert repr(res).startswith("PlanResult(candidates=2, feasible=2, best=(1, 1)")
    with pytest.raises(AttributeError):
        res.margin = 0.5


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"quality": {}}, "quality=.*non-empty mapping"),
        ({"quality": {(1,): 2.0}}, r"quality=\(1,\): keys must be \(M, k\) pairs"),
        ({"quality": {(0, 2): 2.0}}, "M = 0 has no proposers"),
        ({"quality": {(1, 2): "good"}}, r"quality\[\(1, 2\)\]='good': is not a number"),
        ({"quality": {(1, 2): float("inf")}}, r"quality\[\(1, 2\)\]=inf: must be finite"),
        ({"arrival_rate": 0.0}, "arrival_rate=.*is zero everywhere"),
        ({"quantile": 1.0}, "quantile=1.0: must lie in"),
        ({"slo_s": -1.0}, "slo_s=-1.0: must be finite and > 0"),
        ({"margin": 1.0}, "margin=1.0: must lie in"),
        ({"method": "exact"}, "method=exact: unknown method"),
    ],
)
def test_bad_input(kwargs, match):
    args = {"arrival_rate": 0.02} | kwargs
    with pytest.raises(ValueError, match=match):
        plan(4, service_time=1.0, **args)
