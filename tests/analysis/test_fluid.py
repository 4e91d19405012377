"""The fluid limit: the closed-form growth against its cubic; the integrator against exact
piecewise-linear paths, the closed form and the Lu-Kumar network."""

import numpy as np
import pytest

from moa_stability import MoANetwork, fluid_growth_rate, simulate
from moa_stability.analysis.fluid import (
    integrate_fluid,
    moa_fluid_network,
    moa_priority,
    multiclass_network,
)


def test_fluid_growth_rate_solves_the_cubic():
    assert fluid_growth_rate(0, 0, 1.2) == pytest.approx(0.2)
    assert fluid_growth_rate(2, 2, 0.9) == 0.0
    # (M, k) = (2, 2), lambda = 1.05 / 7: A^3 = lambda (3 A^2 + 3 A + 1), the root above 1.
    lam = 1.05 / 7
    roots = np.roots([1, -3 * lam, -3 * lam, -lam])
    A = max(r.real for r in roots if abs(r.imag) < 1e-12)
    assert fluid_growth_rate(2, 2, 1.05) == pytest.approx(A - 1, rel=1e-9)
    # The excess work rate rho - 1 bounds the growth of jobs from above when M >= 1.
    assert 0 < fluid_growth_rate(2, 2, 1.05) < 0.05
    # alpha scales time: twice the service time, half the jobs per second.
    assert fluid_growth_rate(2, 2, 1.05, alpha_s=2.0) == pytest.approx(
        fluid_growth_rate(2, 2, 1.05) / 2, rel=1e-9
    )


@pytest.mark.parametrize(
    ("args", "field"),
    [((-1, 0, 1.2), "M="), ((1, 1.5, 1.2), "k="), ((1, 1, float("nan")), "load="),
     ((1, 1, 1.2, 0.0), "alpha_s=")],
)  # fmt: skip
def test_bad_input_names_the_field(args, field):
    with pytest.raises(ValueError, match=field):
        fluid_growth_rate(*args)


# ---- the fluid integrator -------------------------------------------------------------------
def _lu_kumar(means):
    """Lu-Kumar: one route 1 -> 2 -> 3 -> 4, classes 1 and 4 at station 0, 2 and 3 at 1."""
    P = np.zeros((4, 4))
    P[0, 1] = P[1, 2] = P[2, 3] = 1.0
    return multiclass_network([0, 1, 1, 0], means, [1.0, 0, 0, 0], P)


def test_moa_fluid_reproduces_the_closed_form_growth():
    # Paper network at load 1.05 from empty queues: per-device growth (A - 1)/alpha, A the
    # root above 1 of A^3 = lambda (3 A^2 + 3 A + 1) (docs/model.md section 5a).
    net = MoANetwork(n=4, M=2, k=2, arrival_rate=1.0, service_time=1.0).at_load(1.05)
    lam = 1.05 / 7
    A = max(r.real for r in np.roots([1, -3 * lam, -3 * lam, -lam]) if abs(r.imag) < 1e-12)
    path = integrate_fluid(moa_fluid_network(net), 0.0, horizon_s=200, step_s=0.05)
    assert path.growth_rate_per_s / 4 == pytest.approx(A - 1, rel=0.01)
    assert not path.drained


def test_fcfs_fluid_drains_a_single_station_in_work_over_spare_capacity():
    # One class, mean 1 s, 0.5 jobs/s, 3 jobs: empty at 3 / (1 - 0.5) = 6 s exactly.
    net = multiclass_network([0], [1.0], [0.5], [[0.0]])
    path = integrate_fluid(net, [3.0], horizon_s=12, step_s=0.001, samples=1201)
    assert path.drained
    assert path.drain_time_s == pytest.approx(6.0, abs=0.02)
    assert path.times_s[300] == pytest.approx(3.0)
    assert path.total[300] == pytest.approx(1.5, abs=1e-2)  # 3 - (1 - 0.5) * 3 at t = 3 s


def test_preemptive_priority_fluid_follows_the_piecewise_linear_path():
    # Two classes at one station, class 0 first, 0.2 jobs/s each, mean 1 s, one job each.
    # Class 0 empties at 1 / 0.8 = 1.25 s while class 1 grows to 1.25; class 1 then drains at
    # 1 - 0.2 - 0.2 = 0.6 per s, empty at 1.25 + 1.25 / 0.6.
    net = multiclass_network([0, 0], [1.0, 1.0], [0.2, 0.2], np.zeros((2, 2)))
    path = integrate_fluid(net, [1.0, 1.0], horizon_s=5, step_s=1e-3, priority=[0, 1],
                           samples=501)  # fmt: skip
    at = {round(t, 6): row for t, row in zip(path.times_s, path.fluid, strict=True)}
    assert at[1.0] == pytest.approx([0.2, 1.2], abs=2e-3)
    assert at[2.0] == pytest.approx([0.0, 1.25 - 0.6 * 0.75], abs=2e-3)
    assert path.drain_time_s == pytest.approx(1.25 + 1.25 / 0.6, abs=0.02)


def test_lu_kumar_is_unstable_under_the_bad_priority_below_capacity():
    # Means 0.1, 0.6, 0.1, 0.6 with one arrival per s: both loads 0.7, but m2 + m4 = 1.2 > 1,
    # so priority to classes 4 and 2 is unstable (Lu & Kumar 1991); first-buffer-first drains.
    net = _lu_kumar([0.1, 0.6, 0.1, 0.6])
    run = {"initial": [1.0, 0, 0, 0], "horizon_s": 100, "step_s": 0.01}
    bad = integrate_fluid(net, **run, priority=[1, 0, 1, 0])
    assert bad.growth_rate_per_s > 0.1 and bad.total[-1] > 10 and not bad.drained
    fbfs = integrate_fluid(net, **run, priority=[0, 0, 1, 1])
    assert fbfs.drained


def test_kelly_type_fcfs_fluid_drains_below_capacity():
    for M, k, topology in [(1, 1, "complete"), (2, 1, "ring")]:
        net = MoANetwork(n=4, M=M, k=k, arrival_rate=1.0, topology=topology).at_load(0.8)
        fluid = moa_fluid_network(net)
        path = integrate_fluid(fluid, 1.0, horizon_s=300, step_s=0.05)
        assert path.drained and path.growth_rate_per_s <= 1e-9
        assert path.to_frame()["total"].iloc[0] == pytest.approx(fluid.n_classes)


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda: multiclass_network([0], [1.0], [0.5], [[1.0]]), "routing="),
        (lambda: multiclass_network([0], [0.0], [0.5], [[0.0]]), "mean_s="),
        (lambda: integrate_fluid(_lu_kumar([0.1] * 4), -1.0), "initial="),
        (lambda: integrate_fluid(_lu_kumar([0.1] * 4), priority=[0, 1]), "priority="),
        (lambda: moa_priority(MoANetwork(n=2), None, "lifo"), "discipline="),
    ],
)
def test_bad_fluid_input_names_the_field(call, field):
    with pytest.raises(ValueError, match=field):
        call()


def test_join_of_uniform_helpers_is_the_expected_minimum_over_subsets():
    # Origin 0 of a complete graph on 4 devices, k = 2 helpers of 3: the prompts through the
    # join are the mean over the 3 equally likely helper pairs of min(own, pair).
    net = MoANetwork(n=4, M=1, k=2, arrival_rate=0.01)
    fluid = moa_fluid_network(net)
    done = {(0, 0, 0): 5.0, (1, 0, 0): 1.0 * 2 / 3, (2, 0, 0): 3.0 * 2 / 3, (3, 0, 0): 4.0 * 2 / 3}
    D = np.array([done.get(c, 0.0) for c in fluid.classes])
    expected = np.mean([min(5.0, a, b) for a, b in [(1, 3), (1, 4), (3, 4)]])
    released = fluid.release(D)
    assert released[fluid.classes.index((0, 0, 1))] == pytest.approx(expected)


@pytest.mark.parametrize("seed", [1, 2])
def test_fluid_growth_matches_the_simulator_on_a_network_with_type_means(seed):
    # Not Kelly-type (means 1, 2, 1.5 s), load 1.2, from empty queues: the FCFS fluid's growth
    # against the event simulator's slope over 4 x 1e5 s (an independent engine). The fluid is
    # the limit, so allow 3% for the finite horizon (the slope runs ~1-2% below it) plus the
    # run's random-walk 95% interval twice (the 99.9% level on its ~16 degrees of freedom;
    # seeds 1-20 all pass, the largest miss 1.5 intervals before the 3%).
    means = {"propose": 1.0, "refine": 2.0, "aggregate": 1.5}
    net = MoANetwork(n=4, M=2, k=2, arrival_rate=1.0, service_time=means).at_load(1.2)
    fluid = integrate_fluid(moa_fluid_network(net), 0.0, horizon_s=200, step_s=0.05)
    run = simulate(net, method="events", horizon=1e5, seed=seed, replications=4)
    tolerance = 2 * run.growth_slope_ci + 0.03 * fluid.growth_rate_per_s
    assert abs(run.growth_slope - fluid.growth_rate_per_s) <= tolerance
    # Below the excess rate sum_i (rho_i - 1) sum_c r_ic / rho_i (docs/model.md section 5a).
    lam = 1.2 / (3 * 1.0 + 3 * 2.0 + 1.5)
    assert fluid.growth_rate_per_s < 4 * (1.2 - 1) * 7 * lam / 1.2


def test_rybko_stolyar_is_unstable_under_the_bad_priority_below_capacity():
    # Two routes, one arrival per s each: 0 (station 0) -> 1 (station 1), 2 (station 1) -> 3
    # (station 0). Means 0.1, 0.6, 0.1, 0.6: loads 0.7, but priority to the exiting classes 3
    # and 1 is unstable since m1 + m3 = 1.2 > 1 (Rybko & Stolyar 1992).
    P = np.zeros((4, 4))
    P[0, 1] = P[2, 3] = 1.0
    net = multiclass_network([0, 1, 1, 0], [0.1, 0.6, 0.1, 0.6], [1.0, 0, 1.0, 0], P)
    run = {"initial": [1.0, 0, 0.5, 0], "horizon_s": 100, "step_s": 0.01}
    bad = integrate_fluid(net, **run, priority=[1, 0, 1, 0])
    assert bad.growth_rate_per_s > 0.1 and not bad.drained
    assert bad.total[-1] > 10 * bad.total[0]
