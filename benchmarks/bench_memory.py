"""What one dependent cache miss costs on this machine, by working-set size.

The simulator's cost per inference at large ``n`` is set by loads at random devices, jobs and
prompts that miss the caches, each waited for by the loads that depend on it
(docs/simulator.md, "What is left at 10^5 devices"). This measures the price of one such load:
a pointer chase through a random cycle over one element per 64-byte line, for working sets
from 0.5 MiB to 256 MiB, in nanoseconds per dependent load (numba, the chase's own loop).

Run: ``.venv/bin/python benchmarks/bench_memory.py [--force]`` (refuses a busy machine, like
every benchmark here, and prints the load average).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from numba import njit
from quiet import quiet_or_exit

LINE_INT64 = 8  # int64 per 64-byte cache line


@njit(cache=True)
def _chase(nxt, steps):
    i = 0
    for _ in range(steps):
        i = nxt[i]
    return i


def ns_per_load(mib: float, steps: int = 2_000_000, seed: int = 0) -> float:
    """Nanoseconds per load of a chase through a random cycle over ``mib`` MiB of lines."""
    lines = int(mib * 2**20 / 64)
    order = np.random.default_rng(seed).permutation(lines)
    successor = np.empty(lines, np.int64)
    successor[order] = np.roll(order, -1)
    nxt = np.zeros(lines * LINE_INT64, np.int64)
    nxt[::LINE_INT64] = successor * LINE_INT64
    _chase(nxt, 1000)  # compiled and the first pages touched
    start = time.perf_counter()
    _chase(nxt, steps)
    return (time.perf_counter() - start) / steps * 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--force", action="store_true", help="run on a busy machine")
    args = parser.parse_args()
    print(f"load average {quiet_or_exit(args.force):.2f}")
    for mib in (0.5, 1, 2, 4, 8, 16, 64, 256):
        print(f"{mib:6g} MiB: {ns_per_load(mib):6.1f} ns per dependent load")
    print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
