"""Simulator speed of two commits, side by side in one sitting: is the new one as fast?

Checks both revisions out into temporary worktrees and times the same workloads in each,
alternating old and new for ``--rounds`` rounds so that a drift of the machine's speed hits
both alike. Each timing runs in a fresh process whose kernels are already compiled (a warm-up
call, not timed, loads them), so compile time is not counted. Prints inferences per second per
workload (median over rounds) and the new/old ratio.

Workloads (the public API of both commits: ``paper_network``, ``simulate``, ``MoANetwork``):

* the paper network (n=4, M=2, k=2) at load 0.9, ``method="slots"`` and ``"events"``;
* n = 100 devices on the complete graph, load 0.9, ``method="slots"``.

Measure on a quiet machine: the script refuses to start when the 1-minute load average is above
0.3 (``--force`` overrides) and prints it before and after.

Run: ``.venv/bin/python benchmarks/bench_commits.py OLD NEW [--rounds 5] [--scale 1]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from quiet import quiet_or_exit

WORKLOADS = {
    "paper n=4, slots": ("paper_network(arrival_rate=0.9 / 7)", "slots", 1e6),
    "paper n=4, events": ("paper_network(arrival_rate=0.9 / 7)", "events", 1e6),
    "n=100, slots": ("MoANetwork(n=100, M=2, k=2, arrival_rate=0.9 / 7)", "slots", 2e4),
}
"""Name -> (network expression, method, horizon in seconds at ``--scale 1``)."""


def _program(workload: tuple[str, str, float], scale: float) -> str:
    """Python source that loads the compiled kernels, times one run and prints inferences/s."""
    network, method, horizon = workload
    return f"""
import time
from moa_stability import MoANetwork, paper_network, simulate
net = {network}
simulate(net, method={method!r}, horizon={horizon * 1e-3!r}, seed=2)  # warm-up, not timed
start = time.perf_counter()
result = simulate(net, method={method!r}, horizon={horizon * scale!r}, seed=1)
print(result.inferences / (time.perf_counter() - start))
"""


def _rate(tree: Path, workload: tuple[str, str, float], scale: float) -> float:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run(
        [sys.executable, "-c", _program(workload, scale)],
        cwd=tree,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", help="the reference revision (commit, branch or tag)")
    parser.add_argument("new", help="the revision to compare with it")
    parser.add_argument("--rounds", type=int, default=5, help="alternations of old and new")
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies every horizon")
    parser.add_argument("--force", action="store_true", help="run even on a busy machine")
    args = parser.parse_args()
    load = quiet_or_exit(args.force)
    repo = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as tmp:
        trees = {}
        for label, rev in (("old", args.old), ("new", args.new)):
            trees[label] = Path(tmp) / label
            subprocess.run(
                ["git", "-C", str(repo), "worktree", "add", "--detach", str(trees[label]), rev],
                check=True,
                capture_output=True,
            )
        try:
            print(f"load average {load:.2f} on {os.cpu_count()} cores; {args.rounds} rounds")
            for label in trees:  # compile both once; the timed runs use the cache
                _rate(trees[label], WORKLOADS["paper n=4, slots"], 1e-3)
            rates = {(w, label): [] for w in WORKLOADS for label in trees}
            for _ in range(args.rounds):
                for workload, spec in WORKLOADS.items():
                    for label in trees:
                        rates[workload, label].append(_rate(trees[label], spec, args.scale))
            print(f"{'workload':<20} {'old inf/s':>12} {'new inf/s':>12} {'new/old':>8}")
            for workload in WORKLOADS:
                old = statistics.median(rates[workload, "old"])
                new = statistics.median(rates[workload, "new"])
                print(f"{workload:<20} {old:>12.4g} {new:>12.4g} {new / old:>8.3f}")
            print(f"load average {os.getloadavg()[0]:.2f}")
        finally:
            for tree in trees.values():
                subprocess.run(
                    ["git", "-C", str(repo), "worktree", "remove", "--force", str(tree)],
                    check=False,
                    capture_output=True,
                )


if __name__ == "__main__":
    main()
