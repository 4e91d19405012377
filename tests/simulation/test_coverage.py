"""Coverage of one run's batch-means intervals against the exact M/M/1 means, default horizon.

Slow: 200 runs per load. The exact values are the closed forms :math:`L = \\rho/(1-\\rho)` and
:math:`W = E[S]/(1-\\rho)`. With 200 runs a true coverage of 95% is observed below 91.5% with
probability about 2%, so the bound 0.93 at the heaviest load (the issue's target) is tested
on the observed rate and the lighter loads get the looser binomial bound.
"""

import numpy as np
import pandas as pd
import pytest

from moa_stability import MoANetwork
from moa_stability.simulation.simulate import simulate

pytestmark = pytest.mark.slow

RUNS = 200


def coverage(rho: float, method: str = "events") -> dict:
    net = MoANetwork(n=1, M=0, arrival_rate=rho, service_time=1.0)
    exact_l, exact_w = rho / (1 - rho), 1.0 / (1 - rho)
    hits_l = hits_w = 0
    widths = []
    for seed in range(RUNS):
        r = simulate(net, method=method, seed=seed)  # default horizon: 1e5 mean service times
        hits_l += abs(r.mean_queue[0] - exact_l) <= r.mean_queue_ci[0]
        hits_w += abs(r.latency_mean - exact_w) <= r.latency_ci
        widths.append(r.mean_queue_ci[0] / exact_l)
    return dict(
        rho=rho,
        coverage_L=hits_l / RUNS,
        coverage_W=hits_w / RUNS,
        median_relative_half_width_L=float(np.median(widths)),
    )


def test_batch_means_coverage_up_to_heavy_load():
    table = pd.DataFrame([coverage(rho) for rho in (0.5, 0.8, 0.9, 0.95)])
    print("\n" + table.to_string(index=False))
    assert (table[["coverage_L", "coverage_W"]] >= 0.915).all().all()
    heavy = table.iloc[-1]
    assert heavy["coverage_L"] >= 0.93 and heavy["coverage_W"] >= 0.93
    # not widened needlessly at low load: the plain 20-batch interval is ~3.6% of L at 0.5
    assert table.iloc[0]["median_relative_half_width_L"] <= 0.04
