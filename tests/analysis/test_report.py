"""The stability report: verdicts, sufficiency, and the paper's verdict beside the exact one."""

import numpy as np
import pytest

from moa_stability import MoANetwork, paper_network, stability_report


def test_paper_default_network_is_unstable_and_paper_agrees():
    r = stability_report(paper_network())  # n=4, M=2, k=2, lambda=1/4, alpha=1
    assert r.max_load == pytest.approx(1.75)
    assert r.verdict == "unstable" and r.paper_verdict == "unstable"
    assert r.bottlenecks == (0, 1, 2, 3)
    assert r.theta_star == pytest.approx(1 / 1.75)
    assert r.paper_vs_exact == pytest.approx(1.0)


def test_stable_kelly_type_network_is_sufficient():
    r = stability_report(paper_network(arrival_rate=0.1))
    assert r.verdict == "stable" and r.kelly_type
    assert r.margin == pytest.approx(0.3)


def test_type_aware_network_is_only_necessary():
    net = paper_network(arrival_rate=0.02).replace(
        service_time={"propose": 1.0, "refine": 2.0, "aggregate": 2.0}
    )
    r = stability_report(net)
    assert r.verdict == "undetermined" and not r.kelly_type
    assert "simulate" in str(r)


def test_m1_ignores_refine_mean_for_sufficiency():
    # With M=1 no refine jobs exist, so a different refine mean does not break Kelly-type.
    net = MoANetwork(
        n=4,
        M=1,
        k=1,
        arrival_rate=0.1,
        service_time={"propose": 1.0, "refine": 5.0, "aggregate": 1.0},
    )
    assert stability_report(net).verdict == "stable"


def test_remark_1_far_too_pessimistic_with_a_slow_device_avoided():
    pi = np.zeros((4, 4))
    for j in range(3):
        pi[j, [i for i in range(3) if i != j]] = 1.0
    pi[3, :3] = 2 / 3
    net = MoANetwork(n=4, M=2, k=2, arrival_rate=0.05, service_time=[1, 1, 1, 4], selection=pi)
    r = stability_report(net)
    # Exact: device 3 binds at 12 lambda; Remark 1: alpha_max * 7 * lambda = 28 lambda.
    assert r.verdict == "stable" and r.paper_verdict == "unstable"
    assert r.bottlenecks == (3,)
    assert r.paper_vs_exact == pytest.approx(12 / 28)


def test_remark_1_over_promises_on_a_star():
    r = stability_report(MoANetwork(n=5, M=1, k=1, arrival_rate=0.1, topology="star"))
    assert r.paper_vs_exact == pytest.approx(6 / 3)  # centre carries 6 lambda, paper says 3
    assert "over-promises" in str(r)


def test_report_table_has_units_and_flags():
    frame = stability_report(paper_network(arrival_rate=0.1)).to_frame()
    assert list(frame.columns[:4]) == [
        "arrival_rate_per_s",
        "propose_jobs_per_s",
        "refine_jobs_per_s",
        "aggregate_jobs_per_s",
    ]
    assert frame["bottleneck"].all()
    np.testing.assert_allclose(frame["load"], 0.7)


def test_report_predicts_the_mm1_sojourn_when_stable():
    # M = 0 on one device with exponential service is M/M/1: W = 1 / (mu - lambda).
    net = MoANetwork(n=1, M=0, k=0, arrival_rate=0.6, service_time=1.0)
    report = stability_report(net)
    assert report.latency is not None
    assert report.latency.mean_s == pytest.approx(1 / (1 - 0.6), rel=1e-9)
    # The sojourn of M/M/1 is exponential with rate mu - lambda: p95 = ln(20) / 0.4.
    assert report.latency.quantile(0.95) == pytest.approx(np.log(20) / 0.4, rel=5e-3)
    assert "latency (analytic)    : mean 2.5 s" in str(report)


def test_report_has_no_latency_when_unstable_or_not_asked():
    assert stability_report(MoANetwork(n=1, M=0, k=0, arrival_rate=1.2)).latency is None
    net = MoANetwork(n=1, M=0, k=0, arrival_rate=0.5)
    assert stability_report(net, latency=False).latency is None
    with pytest.raises(ValueError, match="latency="):
        stability_report(net, latency="yes")
