"""Coverage of the growth slope's 95% interval and the verdicts, over many seeds.

Not a timing: statistics only, so it may run on a busy machine. For each case, ``--seeds``
event-simulator runs (seeds 1000, 1001, ...) of one replication; prints the fraction of runs
whose ``growth_slope +- growth_slope_ci`` covers the true slope, the spread of the slope over
seeds beside the mean reported standard error (``ci / 1.96``), and the verdict counts.

Cases (true slope in brackets):

* ``mm1_1.2`` / ``mm1_1.2_short``: M/M/1 at :math:`\\rho = 1.2` over 30000 s (20 batches) and
  7000 s (5 batches); after the queue leaves 0 it is a random walk with drift
  :math:`\\lambda - \\mu` [0.2 jobs/s];
* ``mm1_1.1``, ``mm1_1.05``: 20000 s, 5 batches [0.1, 0.05];
* ``fluid_1.2``: the network of ``tests/analysis/test_fluid.py`` (n=4, M=2, k=2, type means
  1, 2, 1.5 s) at load 1.2 over 1e5 s [the FCFS fluid's growth rate, the limit: the simulated
  slope runs about 1% below it, so coverage of this reference is a little low];
* ``mm1_0.5``, ``mm1_0.9``, ``fluid_0.9``: stable [0].

Measured (200 seeds; before = commit c1f59ed, whose ``growth_slope`` used the
independent-residual interval for every series; after = the random-walk interval, with the
superposed prompt stream of the event simulator, which changes the fluid network's runs but
not M/M/1's):

=============  ======  =====  ===========================  ===========================
case           before  after  verdicts before              verdicts after
=============  ======  =====  ===========================  ===========================
mm1_1.2        0.34    0.97   200 unstable                 200 unstable
mm1_1.2_short  0.655   0.955  200 unstable                 200 unstable
mm1_1.1        0.66    0.955  199 unstable, 1 inconcl.     199 unstable, 1 inconcl.
mm1_1.05       0.64    0.89   200 inconclusive             200 inconclusive
fluid_1.2      0.275   0.93   200 unstable                 200 unstable
mm1_0.5        0.96    0.965  200 stable                   199 stable, 1 inconcl.
mm1_0.9        0.945   0.95   164 stable, 35 inc., 1 UNST  164 stable, 36 inconcl.
fluid_0.9      0.935   0.95   191 stable, 9 inconcl.       193 stable, 7 inconcl.
=============  ======  =====  ===========================  ===========================

Run from the repository root (``PYTHONPATH=.`` so that this checkout is the one measured):
``PYTHONPATH=. .venv/bin/python benchmarks/slope_coverage.py [--seeds 200] [--case mm1_1.2 ...]``
"""

from __future__ import annotations

import argparse
from collections import Counter

import numpy as np

from moa_stability import MoANetwork
from moa_stability.analysis.fluid import integrate_fluid, moa_fluid_network
from moa_stability.simulation.simulate import simulate


def cases() -> dict[str, tuple[MoANetwork, float, float]]:
    """Network, horizon (s) and true slope (jobs/s) of every case."""
    means = {"propose": 1.0, "refine": 2.0, "aggregate": 1.5}
    typed = MoANetwork(n=4, M=2, k=2, arrival_rate=1.0, service_time=means).at_load(1.2)
    fluid = integrate_fluid(moa_fluid_network(typed), 0.0, horizon_s=200, step_s=0.05)

    def mm1(rate: float) -> MoANetwork:
        return MoANetwork(n=1, arrival_rate=rate, service_time=1.0)

    return {
        "mm1_1.2": (mm1(1.2), 3e4, 0.2),
        "mm1_1.2_short": (mm1(1.2), 7e3, 0.2),
        "mm1_1.1": (mm1(1.1), 2e4, 0.1),
        "mm1_1.05": (mm1(1.05), 2e4, 0.05),
        "fluid_1.2": (typed, 1e5, fluid.growth_rate_per_s),
        "mm1_0.5": (mm1(0.5), 2e4, 0.0),
        "mm1_0.9": (mm1(0.9), 1e5, 0.0),
        "fluid_0.9": (typed.at_load(0.9), 2e5, 0.0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=200)
    parser.add_argument("--case", nargs="*", help="cases to run (default: all)")
    args = parser.parse_args()
    table = cases()
    for name in args.case or table:
        net, horizon, truth = table[name]
        runs = [
            simulate(net, method="events", horizon=horizon, seed=1000 + s, progress=False)
            for s in range(args.seeds)
        ]
        slopes = np.array([r.growth_slope for r in runs])
        ci = np.array([r.growth_slope_ci for r in runs])
        verdicts = Counter(r.verdict for r in runs)
        print(
            f"{name:14s} coverage {np.mean(np.abs(slopes - truth) <= ci):.3f}  "
            f"sd of slope {slopes.std(ddof=1):.3g}  mean ci/1.96 {ci.mean() / 1.96:.3g}  "
            f"verdicts {dict(verdicts)}",
            flush=True,
        )


if __name__ == "__main__":
    main()
