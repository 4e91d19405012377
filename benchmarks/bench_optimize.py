"""Benchmark: capacity-maximising proposer selection on large sparse gossip graphs.

n devices on a random 20-regular graph, M = 2 layers, k = 3 proposers, heterogeneous and
type-aware service times (per-device speed, refine and aggregate 1.5x propose),
``optimise_selection=True``, objective ``sum``. Goal: under 10 s, build included, at n = 1000.

    .venv/bin/python benchmarks/bench_optimize.py [--sizes 1000 5000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from moa_stability import MoANetwork, random_regular_graph
from moa_stability.analysis.optimize import max_stable_rate

DEGREE, M, K = 20, 2, 3


def network(n: int, seed: int = 0) -> MoANetwork:
    rng = np.random.default_rng(seed)
    speed = rng.lognormal(0.0, 0.5, n)
    service = np.vstack([speed, 1.5 * speed, 1.5 * speed])
    return MoANetwork(
        n=n,
        M=M,
        k=K,
        arrival_rate=1.0,
        service_time=service,
        topology=random_regular_graph(n, DEGREE, seed=seed),
    )


def run(n: int) -> None:
    net = network(n)
    start = time.perf_counter()
    best = max_stable_rate(net, "sum", optimise_selection=True)
    total = time.perf_counter() - start
    uniform = max_stable_rate(net, "sum")
    print(
        f"n={n:5d}  flow variables={M * n * DEGREE:7d}  build {best.build_time_s:6.2f} s  "
        f"solve {best.solve_time_s:6.2f} s  total {total:6.2f} s  ({best.solver}, "
        f"{best.status})"
    )
    print(
        f"         max total rate: optimised {best.value:.6g} prompts/s, uniform "
        f"{uniform.value:.6g} prompts/s (x{best.value / uniform.value:.3f}); "
        f"{len(best.binding)} binding devices"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000])
    for n in parser.parse_args().sizes:
        run(n)


if __name__ == "__main__":
    main()
