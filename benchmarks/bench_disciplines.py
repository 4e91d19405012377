"""Benchmark: simulator speed under each scheduling discipline against FCFS (issue 15 item 1).

Times ``simulate`` on the paper network (n = 4, M = 2, k = 2, load 0.9; slots and events) and on
n = 100 devices (complete graph) under every discipline of ``DISCIPLINES``, non-preemptive
and preemptive, alternating the disciplines within each of ``--rounds`` rounds so that a drift
of the machine's speed hits all alike. Kernels are compiled by a warm-up call first. Prints
inferences per second (median over rounds) and the ratio to FCFS measured in the same rounds.

Measure on a quiet machine: refuses when the 1-minute load average is above 0.3 (``--force``
overrides) and prints it before and after.

    .venv/bin/python benchmarks/bench_disciplines.py [--rounds 3] [--scale 1] [--force]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

from quiet import quiet_or_exit

from moa_stability import MoANetwork, paper_network, simulate
from moa_stability.model.discipline import DISCIPLINES

WORKLOADS = {
    "paper n=4, slots": (paper_network(arrival_rate=0.9 / 7), "slots", 1e6),
    "paper n=4, events": (paper_network(arrival_rate=0.9 / 7), "events", 1e6),
    "n=100, events": (MoANetwork(n=100, M=2, k=2, arrival_rate=0.9 / 7), "events", 2e4),
}
"""Name -> (network, method, horizon in seconds at ``--scale 1``)."""


def rules() -> list[tuple[str, bool]]:
    """Every (discipline, preemptive) pair, FCFS first."""
    return [("fcfs", False)] + [(d, p) for d in DISCIPLINES if d != "fcfs"
                                for p in (False, True)]  # fmt: skip


def rate(net, method: str, horizon: float, discipline: str, preemptive: bool) -> float:
    """Inferences per second of one timed run."""
    start = time.perf_counter()
    res = simulate(net, method=method, horizon=horizon, seed=1, progress=False,
                   discipline=discipline, preemptive=preemptive)  # fmt: skip
    return res.inferences / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies every horizon")
    parser.add_argument("--force", action="store_true", help="run on a busy machine")
    args = parser.parse_args()
    print(f"load average at start: {quiet_or_exit(args.force):.2f}")
    for name, (net, method, horizon) in WORKLOADS.items():
        for d, p in rules():  # compile every variant before timing
            simulate(net, method=method, horizon=horizon / 100, seed=0, progress=False,
                     discipline=d, preemptive=p)  # fmt: skip
        times: dict[tuple[str, bool], list[float]] = {r: [] for r in rules()}
        for _ in range(args.rounds):
            for d, p in rules():
                times[(d, p)].append(rate(net, method, horizon * args.scale, d, p))
        fcfs = statistics.median(times[("fcfs", False)])
        print(f"\n{name}: FCFS {fcfs:.3g} inferences/s")
        for (d, p), values in times.items():
            ratios = [v / f for v, f in zip(values, times[("fcfs", False)], strict=True)]
            kind = "preemptive" if p else "non-preemptive"
            median, ratio = statistics.median(values), statistics.median(ratios)
            print(f"  {d:22s} {kind:15s} {median:.3g}/s  ratio {ratio:.3f}")
    print(f"\nload average at end: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
