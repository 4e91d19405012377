"""What a cache miss costs on this machine, by working-set size: waited for, and overlapped.

The simulator's cost per inference at large ``n`` is set by loads at random devices, jobs and
prompts that miss the caches (docs/simulator.md, "The look-ahead, and what is left at 10^5
devices"). This measures, for working sets from 0.5 MiB to 256 MiB (one element per 64-byte
line, numba loops):

* the price of a miss that the next load waits for: a pointer chase through a random cycle,
  in nanoseconds per dependent load (the latency);
* the price of a miss when nothing waits for it: a sum over lines at random positions known in
  advance, so the core keeps as many misses in flight as it can, in nanoseconds per
  independent load. No prefetching can make a random line cheaper than this, so it bounds what
  any look-ahead can gain: lines per inference times this is a floor on time per inference.

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


@njit(cache=True)
def _gather(nxt, at):
    total = 0
    for p in at:
        total += nxt[p]
    return total


def ns_per_load(mib: float, steps: int = 2_000_000, seed: int = 0) -> tuple[float, float]:
    """Nanoseconds per dependent load (a chase through a random cycle) and per independent
    load (at random lines, positions read in order from an array) over ``mib`` MiB of lines."""
    lines = int(mib * 2**20 / 64)
    rng = np.random.default_rng(seed)
    order = rng.permutation(lines)
    successor = np.empty(lines, np.int64)
    successor[order] = np.roll(order, -1)
    nxt = np.zeros(lines * LINE_INT64, np.int64)
    nxt[::LINE_INT64] = successor * LINE_INT64
    at = rng.integers(0, lines, 2 * steps) * LINE_INT64
    _chase(nxt, 1000)  # compiled and the first pages touched
    _gather(nxt, at[:1000])
    start = time.perf_counter()
    _chase(nxt, steps)
    dependent = (time.perf_counter() - start) / steps * 1e9
    start = time.perf_counter()
    _gather(nxt, at)
    return dependent, (time.perf_counter() - start) / at.size * 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--force", action="store_true", help="run on a busy machine")
    args = parser.parse_args()
    print(f"load average {quiet_or_exit(args.force):.2f}")
    print("working set   ns per dependent load   ns per independent load")
    for mib in (0.5, 1, 2, 4, 8, 16, 32, 64, 256):
        dependent, independent = ns_per_load(mib)
        print(f"{mib:7g} MiB   {dependent:21.1f}   {independent:23.1f}")
    print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
