"""Benchmark: the analytic latency (``moa_stability.latency``), issue 11 item 3.

* evaluations per second on the paper network (n = 4, M = 2, k = 2, complete graph): a sweep
  of distinct networks (max load 0.1..0.95), so no result is reused; goal >= 10^4 /s for
  ``estimate`` and ``bound`` (mean and p50/p95/p99 of each);
* seconds for n = 10^4 devices on a random 8-regular graph and on the implicit complete graph
  (M = 2, k = 2, max load 0.8), homogeneous and with heterogeneous per-device service means
  ``uniform(0.5, 2)``; goal < 1 s (issue 11). ``--n 1000000`` checks issue 13's goal, < 1 s at
  n = 10^6 (building the 8-regular graph takes about a minute there; it is not timed). At 10^6
  distinct devices the latency needs n x 512 grid points per array (4 GB each), so
  ``--homogeneous-only`` skips the heterogeneous networks there.

The paper network takes the compiled homogeneous path of ``latency`` (docs/latency.md, "Speed
by design": two FFTs of the grid per evaluation); ``--grid-points 1024`` times it on a coarser
grid than the default 4096 (the accuracy of each grid is in docs/latency.md).

The first call of each shape (numba compilation, imports) is excluded. Timings on a busy
machine are meaningless, so it refuses to run at a 1-minute load average above 0.3 unless
``--force``.

    .venv/bin/python benchmarks/bench_latency.py [--n 10000] [--sweep 2000] [--grid-points G]
        [--homogeneous-only] [--force]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
from quiet import quiet_or_exit
from warm import small_like

from moa_stability import MoANetwork, latency, paper_network, random_regular_graph

DEGREE = 8


def paper_rate(sweep: int, method: str, grid_points: int | None = None) -> float:
    """Evaluations/s over ``sweep`` paper networks at distinct loads (mean and quantiles)."""
    base = paper_network(arrival_rate=1.0)
    nets = [base.at_load(rho) for rho in np.linspace(0.1, 0.95, sweep)]
    latency(nets[0], method=method, grid_points=grid_points).quantile(np.array([0.5, 0.95, 0.99]))
    start = time.perf_counter()
    for net in nets:
        res = latency(net, method=method, grid_points=grid_points)
        res.mean_s, res.quantile(np.array([0.5, 0.95, 0.99]))
    return sweep / (time.perf_counter() - start)


def large(n: int, heterogeneous: bool, method: str, topology: Any) -> float:
    """Seconds for one evaluation at ``n`` devices on ``topology``."""
    rng = np.random.default_rng(0)
    service = rng.uniform(0.5, 2.0, n) if heterogeneous else 1.0
    net = MoANetwork(
        n=n, M=2, k=2, arrival_rate=1.0, service_time=service, topology=topology
    ).at_load(0.8)
    # Warm-up on a small network of the same kind (numba compiles per path and index dtype).
    small = topology if isinstance(topology, str) else small_like(topology, DEGREE)
    warm = rng.uniform(0.5, 2.0, 64) if heterogeneous else 1.0
    latency(
        MoANetwork(n=64, M=2, k=2, arrival_rate=0.01, service_time=warm, topology=small),
        method=method,
    )
    start = time.perf_counter()
    latency(net, method=method).quantile(0.95)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--sweep", type=int, default=2000, help="paper networks timed")
    parser.add_argument("--grid-points", type=int, default=None, help="paper sweep's grid")
    parser.add_argument(
        "--homogeneous-only", action="store_true", help="skip heterogeneous large networks"
    )
    parser.add_argument("--force", action="store_true", help="run on a busy machine anyway")
    args = parser.parse_args()
    load = quiet_or_exit(args.force)
    graphs = {f"{DEGREE}-regular": random_regular_graph(args.n, DEGREE, seed=0)}
    graphs["complete"] = "complete"
    for method in ("estimate", "bound"):
        rate = paper_rate(args.sweep, method, args.grid_points)
        grid = f", {args.grid_points} points" if args.grid_points else ""
        print(f"paper network, {method:8s}: {rate:9.0f} evaluations/s (goal >= 10000{grid})")
        for name, topology in graphs.items():
            for heterogeneous in (False,) if args.homogeneous_only else (False, True):
                kind = "heterogeneous" if heterogeneous else "homogeneous  "
                seconds = large(args.n, heterogeneous, method, topology)
                print(f"n={args.n} {name:9s} {kind} {method:8s}: {seconds:7.3f} s (goal < 1 s)")
    print(f"(1-minute load average at start {load:.2f})")


if __name__ == "__main__":
    main()
