"""Stability certificates: the linear program on classical networks (whose global stability is
known) and along fluid paths, the relaxation's traffic equations, and the statuses."""

import numpy as np
import pytest

from moa_stability import MoANetwork, loads
from moa_stability.analysis.certificate import (
    STATUSES,
    linear_lyapunov_certificate,
    moa_relaxation,
    stability_certificate,
)
from moa_stability.analysis.fluid import integrate_fluid, multiclass_network


def _lu_kumar(means):
    P = np.zeros((4, 4))
    P[0, 1] = P[1, 2] = P[2, 3] = 1.0
    return multiclass_network([0, 1, 1, 0], means, [1.0, 0, 0, 0], P)


def test_lp_never_certifies_a_network_that_a_priority_makes_unstable():
    # Lu-Kumar, m2 + m4 = 1.2 > 1: unstable under priority to classes 4 and 2, loads 0.7.
    status, weights = linear_lyapunov_certificate(_lu_kumar([0.1, 0.6, 0.1, 0.6]))
    assert status == "no linear certificate" and weights is None
    # Rybko-Stolyar, two routes 0 -> 1 and 2 -> 3, m1 + m3 = 1.2 > 1, loads 0.7.
    P = np.zeros((4, 4))
    P[0, 1] = P[2, 3] = 1.0
    rs = multiclass_network([0, 1, 1, 0], [0.1, 0.6, 0.1, 0.6], [1.0, 0, 1.0, 0], P)
    assert linear_lyapunov_certificate(rs) == ("no linear certificate", None)


@pytest.mark.parametrize("priority", [None, [1, 0, 1, 0], [0, 0, 1, 1], [0, 1, 1, 0]])
def test_certified_weights_decrease_at_rate_one_along_every_discipline(priority):
    # m2 + m4 = 0.6 < 1: globally stable (Dai & Vande Vate 1996). The certificate promises
    # dV/dt <= -1 while fluid remains, whatever the work-conserving discipline.
    net = _lu_kumar([0.3, 0.3, 0.3, 0.3])
    status, gamma = linear_lyapunov_certificate(net)
    assert status == "certified" and np.all(gamma >= 1 - 1e-9)
    path = integrate_fluid(net, [3.0, 1.0, 0.0, 2.0], horizon_s=40, step_s=2e-3,
                           priority=priority, samples=401)  # fmt: skip
    V = path.fluid @ gamma
    busy = V > 1e-6
    assert path.drained
    assert np.all(V[busy] <= V[0] - path.times_s[busy] + 0.05)


def test_lp_certifies_a_tandem_and_skips_large_networks():
    tandem = multiclass_network([0, 1], [0.5, 0.8], [1.0, 0.0], [[0, 1], [0, 0]])
    assert linear_lyapunov_certificate(tandem)[0] == "certified"
    assert linear_lyapunov_certificate(_lu_kumar([0.1] * 4), max_classes=3) == ("skipped", None)
    over = multiclass_network([0], [1.0], [1.5], [[0.0]])  # load 1.5
    assert linear_lyapunov_certificate(over)[0] == "no linear certificate"


def test_relaxation_has_the_networks_traffic_equations():
    net = MoANetwork(n=5, M=2, k=[2, 1], arrival_rate=[0.1, 0.02, 0.05, 0.03, 0.04],
                     service_time={"propose": [1, 2, 1, 1, 3], "refine": 2.0, "aggregate": 1.5},
                     topology="ring")  # fmt: skip
    fluid = moa_relaxation(net)
    rates = np.linalg.solve(np.eye(fluid.n_classes) - fluid.routing.T, fluid.arrival_rate_per_s)
    per_device = np.bincount(fluid.station, fluid.mean_s * rates)
    assert per_device == pytest.approx(loads(net), rel=1e-12)


@pytest.mark.parametrize(
    "net",
    [
        MoANetwork(n=3, M=1, k=1, arrival_rate=1.0).at_load(0.9),
        MoANetwork(n=4, M=2, k=1, arrival_rate=1.0, topology="ring").at_load(0.95),
        MoANetwork(n=3, M=1, k=2, arrival_rate=[1, 2, 3], service_time=[1, 2, 0.5]).at_load(0.99),
    ],
)
def test_kelly_type_fcfs_below_capacity_is_never_called_unstable(net):
    cert = stability_certificate(net)
    assert cert.status in STATUSES[:2]
    assert cert.max_load < 1


def test_overloaded_network_is_unstable_and_priority_below_capacity_can_be_certified():
    over = stability_certificate(MoANetwork(n=3, M=1, k=1, arrival_rate=1.0).at_load(1.1))
    assert over.status == STATUSES[3] and over.fluid_growth_rate_per_s > 0
    # Without helpers (k = 0) the relaxation is the network: its certificate is a proof.
    means = {"propose": 1.0, "refine": 2.0, "aggregate": 3.0}
    net = MoANetwork(n=2, M=2, k=0, arrival_rate=1.0, service_time=means).at_load(0.8)
    cert = stability_certificate(net, "later-layer-first")
    assert cert.status == STATUSES[0] and cert.lp_status == "certified"
    frame = cert.to_frame()
    assert frame.loc[0, "status"] == STATUSES[0] and "certified" in str(cert)


def test_undetermined_network_runs_the_fluid_under_the_discipline():
    # n(M+1) = 12 classes > max_classes: no linear program; not Kelly-type: the fluid decides.
    means = {"propose": 1.0, "refine": 2.0, "aggregate": 1.5}
    net = MoANetwork(n=4, M=2, k=1, arrival_rate=1.0, service_time=means).at_load(0.6)
    cert = stability_certificate(net, "later-layer-first")
    assert cert.lp_status == "skipped"
    assert cert.status == "undetermined" and cert.fluid_drained


def test_bad_discipline_names_the_field():
    with pytest.raises(ValueError, match="discipline="):
        stability_certificate(MoANetwork(n=2), "lifo")
