"""The report's certificate field: each of the four statuses reached by a network built for it,
and the cheap default that keeps large networks fast."""

import numpy as np
import pytest

from moa_stability import MoANetwork, stability_report
from moa_stability.analysis.certificate import STATUSES
from moa_stability.analysis.report import CERTIFICATE_AUTO_MAX_CLASSES

TYPES = {"propose": 1.0, "refine": 2.0, "aggregate": 1.5}


def test_statuses_are_the_issues_four():
    assert STATUSES == (
        "stable under every work-conserving discipline (certified)",
        "stable (Kelly-type FCFS)",
        "undetermined",
        "unstable (fluid model / simulation)",
    )


def test_certified_without_helpers_for_any_discipline():
    # k = 0: no joins, so the linear program on the relaxation is a proof (6 classes).
    net = MoANetwork(n=2, M=2, k=0, arrival_rate=1.0, service_time=TYPES).at_load(0.8)
    for discipline in ("fcfs", "earlier-layer-first", "own-user-first"):
        report = stability_report(net, discipline=discipline)
        assert report.certificate.status == STATUSES[0]
        assert report.certificate.discipline == discipline
        assert f"certificate ({discipline})" in str(report) and STATUSES[0] in str(report)


def test_kelly_type_fcfs_and_the_skipped_linear_program():
    # The paper network: 12 relaxation classes > the default 8, one mean per device.
    net = MoANetwork(n=4, M=2, k=2, arrival_rate=0.1)
    assert net.n * (net.M + 1) > CERTIFICATE_AUTO_MAX_CLASSES
    cert = stability_report(net).certificate
    assert cert.status == STATUSES[1] and cert.lp_status == "skipped"
    # The Kelly-type argument is for FCFS only: a priority leaves it undetermined.
    other = stability_report(net, discipline="aggregate-first").certificate
    assert other.status == STATUSES[2] and "fluid model not run" in other.reason


def test_undetermined_when_types_differ_and_nothing_settles_it():
    net = MoANetwork(n=4, M=2, k=2, arrival_rate=1.0, service_time=TYPES).at_load(0.9)
    report = stability_report(net)
    assert report.verdict == "undetermined" and report.certificate.status == STATUSES[2]
    assert np.isnan(report.certificate.fluid_growth_rate_per_s)


def test_overloaded_is_unstable_without_running_the_fluid():
    report = stability_report(MoANetwork(n=4, M=2, k=2, arrival_rate=0.3))
    assert report.certificate.status == STATUSES[3]
    assert report.certificate.max_load == pytest.approx(2.1)
    assert report.certificate.lp_status == "not run"


def test_unstable_below_capacity_when_asked_for_the_fluid():
    # Own-user-first on two devices with slow aggregates (docs/model.md section 2.7):
    # the virtual station of the two aggregate classes has load 2 x 0.7 / 1.1 > 1. The
    # join-free relaxation has a linear certificate, which is no proof with joins.
    means = {"propose": 0.05, "refine": 0.05, "aggregate": 1.0}
    net = MoANetwork(n=2, M=1, k=1, arrival_rate=1.0, service_time=means).at_load(0.7)
    report = stability_report(net, discipline="own-user-first", certificate=True)
    assert report.max_load == pytest.approx(0.7)
    assert report.certificate.status == STATUSES[3] and report.certificate.lp_status == "certified"
    assert report.certificate.fluid_growth_rate_per_s > 0.1
    assert "the fluid grows" in str(report)


def test_large_network_stays_cheap():
    # n(M+1) = 6000 classes: nothing of size n^2 is built, the status comes from the loads.
    net = MoANetwork(n=2000, M=2, k=2, arrival_rate=1.0, service_time=TYPES).at_load(0.5)
    cert = stability_report(net, latency=False).certificate
    assert cert.status == STATUSES[2] and cert.lp_status == "skipped"


def test_certificate_switch_and_bad_inputs():
    net = MoANetwork(n=3, M=1, k=1, arrival_rate=0.1)
    assert stability_report(net, certificate=False).certificate is None
    with pytest.raises(ValueError, match="discipline='lifo'"):
        stability_report(net, discipline="lifo")
    with pytest.raises(ValueError, match="certificate='yes'"):
        stability_report(net, certificate="yes")
