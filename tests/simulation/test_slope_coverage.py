"""The growth slope's 95% interval against exact drifts of the event simulator's M/M/1 queue,
and the verdict of a stable queue, over fixed seeds (docs/simulator.md, statistics)."""

import numpy as np
from scipy import stats

from moa_stability import MoANetwork
from moa_stability.simulation.simulate import simulate

SEEDS = range(40)


def test_slope_interval_covers_the_exact_drift_of_an_overloaded_mm1():
    # rho = 1.2 from empty: after the queue leaves 0 (~ 30 s, well inside the warm-up) it is a
    # random walk with drift lambda - mu = 0.2 jobs/s. An honest 95% interval misses it in at
    # most 6 of 40 runs except with probability 0.003 (binomial); the independent-residual
    # interval covered about a third.
    net = MoANetwork(n=1, arrival_rate=1.2, service_time=1.0)
    runs = [simulate(net, method="events", horizon=3e4, seed=s) for s in SEEDS]
    covered = sum(abs(r.growth_slope - 0.2) <= r.growth_slope_ci for r in runs)
    assert stats.binom.cdf(33, 40, 0.95) < 0.005 and covered >= 34
    assert all(r.verdict == "unstable" for r in runs)


def test_slope_interval_of_a_short_overloaded_run_is_wide_not_wrong():
    # 5 batches (a window of 100 relaxation times of 55 s): the interval on few degrees of
    # freedom still covers 0.2 in at least 34 of 40 runs
    net = MoANetwork(n=1, arrival_rate=1.2, service_time=1.0)
    runs = [simulate(net, method="events", horizon=7e3, seed=s) for s in SEEDS]
    assert all(np.isfinite(r.growth_slope_ci) for r in runs)
    assert sum(abs(r.growth_slope - 0.2) <= r.growth_slope_ci for r in runs) >= 34


def test_a_stable_mm1_is_never_unstable_and_its_zero_slope_is_covered():
    # rho = 0.9: relaxation time 190 s, a window of 420 of them; the true slope is 0
    net = MoANetwork(n=1, arrival_rate=0.9, service_time=1.0)
    runs = [simulate(net, method="events", horizon=1e5, seed=s) for s in SEEDS]
    assert not any(r.verdict == "unstable" for r in runs)
    assert sum(abs(r.growth_slope) <= r.growth_slope_ci for r in runs) >= 34
    # the verdict keeps its power: 82% of 200 seeds were judged stable (the rest inconclusive),
    # and fewer than 25 of 40 has probability 0.001 at that rate
    assert sum(r.verdict == "stable" for r in runs) >= 25
