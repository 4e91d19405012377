"""City-scale costs against the number of devices n, in one run (issue 13).

For n = 4 .. 10^5 (random 8-regular gossip graph for the simulator, the complete graph at
n = 4; random 20-regular for the optimiser):

* ``simulate(method="events")`` at load 0.9 (M = 2, k = 2, one service time per device):
  inferences per second of wall time and the process's peak resident memory (task
  ``simulate/8-regular``; ``simulate/complete`` at n = 4 and, drawing helpers without a
  neighbour list, on the implicit complete graph at n = 10^5);
* ``max_stable_rate(..., optimise_selection=True)`` on the network of bench_optimize.py
  (M = 2, k = 3, per-device speed, refine and aggregate 1.5x propose: one merged group, the
  parametric max-flow) and, up to ``--lp-max-n``, with independent random times per job type
  (several groups, the matrix-free interior point, HiGHS as its fall-back; its own
  ``--lp-timeout``): seconds, the solver path and the certified gap;

and at n = 10^6 (8-regular and the implicit complete graph, homogeneous, load 0.8): seconds
for building the network, ``loads``, ``stability_report`` and ``latency``, and ``load_matrix``
on the 8-regular graph (on the complete graph it would hold n(n-1) entries).

Every point runs in a fresh subprocess (so peak memory is its own; kernels are compiled or
loaded from numba's cache and warmed up before the clock starts). The table is printed and
saved as CSV, with a PNG figure, under ``--out``. Timings need a quiet machine: the script
refuses to start when the 1-minute load average exceeds 0.3 unless ``--force``, and prints
the load average before and after.

Run: ``.venv/bin/python benchmarks/bench_scale.py [--quick] [--force] [--out DIR]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
from quiet import quiet_or_exit

ROOT = Path(__file__).resolve().parents[1]

_PRELUDE = """
import json, resource, sys, time
sys.path.insert(0, "benchmarks")  # (run from the repository root)
from warm import small_like
import numpy as np
from moa_stability import MoANetwork, random_regular_graph
def rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
def emit(**row):
    print("ROW " + json.dumps(row), flush=True)
"""

_SIMULATE = """
from moa_stability import simulate
n, target, graph = {n}, {target}, {graph!r}
topo = "complete" if graph == "complete" else random_regular_graph(n, 8, seed=1)
net = MoANetwork(n=n, M=2, k=2, arrival_rate=1.0, service_time=1.0, topology=topo).at_load(0.9)
per_s = float(net.arrival_rate.sum() * net.inferences_per_prompt)
simulate(net, method="events", horizon=min(1e3, 2e4 / per_s), seed=1)  # warm the kernels
base = rss_mib()
start = time.perf_counter()
res = simulate(net, method="events", horizon=target / per_s, seed=2)
wall = time.perf_counter() - start
emit(task="simulate/" + graph, n=n, seconds=wall, inferences_per_s=res.inferences / wall,
     inferences=res.inferences, peak_rss_mib=rss_mib(), rss_growth_mib=rss_mib() - base)
"""

_OPTIMISE = """
from moa_stability import max_stable_rate
n, rows = {n}, {rows!r}
rng = np.random.default_rng(0)
start = time.perf_counter()
graph = random_regular_graph(n, 20, seed=0)
graph_s = time.perf_counter() - start
speed = rng.uniform(0.5, 2.0, n)
service = (np.vstack([speed, 1.5 * speed, 1.5 * speed]) if rows == "proportional"
           else rng.uniform(0.5, 2.0, (3, n)))
net = MoANetwork(n=n, M=2, k=3, arrival_rate=1.0, service_time=service, topology=graph)
from moa_stability.analysis.capacity import max_scale_selection
max_scale_selection(MoANetwork(n=64, M=2, k=3, arrival_rate=1.0, service_time=service[:, :64],
                               topology=small_like(graph, 20)))
# (that compiled or loaded this path's kernels; below, max_stable_rate picks the path by size)
start = time.perf_counter()
res = max_stable_rate(net, optimise_selection=True)
wall = time.perf_counter() - start
emit(task="optimise/" + rows, n=n, seconds=wall, graph_s=graph_s, path=res.solver_path,
     gap=np.nan if res.dual_bound is None else res.dual_bound / res.value - 1,  # cvxpy: none
     peak_rss_mib=rss_mib())
"""

_MILLION = """
from moa_stability import latency, load_matrix, loads, stability_report
n = {n}
for name in ("8-regular", "complete"):
    start = time.perf_counter()
    topo = random_regular_graph(n, 8, seed=1) if name == "8-regular" else "complete"
    graph_s = time.perf_counter() - start
    warm = MoANetwork(n=64, M=2, k=2, arrival_rate=0.8 / 7, service_time=1.0,
                      topology=topo if name == "complete" else small_like(topo, 8))
    start = time.perf_counter()
    net = MoANetwork(n=n, M=2, k=2, arrival_rate=0.8 / 7, service_time=1.0,
                     topology=topo)
    emit(task="network/" + name, n=n, seconds=time.perf_counter() - start, graph_s=graph_s,
         peak_rss_mib=rss_mib())
    for f in (loads, stability_report, latency) + ((load_matrix,) if name == "8-regular" else ()):
        f(warm)
        start = time.perf_counter()
        f(net)
        emit(task=f.__name__ + "/" + name, n=n, seconds=time.perf_counter() - start,
             peak_rss_mib=rss_mib())
"""


def _run(snippet: str, timeout: float, task: str, n: int) -> list[dict]:
    """Run one point in a fresh interpreter; its ``ROW`` lines are the results (a point that
    times out or fails gets one row with its ``task`` and ``n``)."""
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _PRELUDE + snippet],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return [{"task": task, "n": n, "seconds": timeout, "error": "timeout"}]
    rows = [json.loads(line[4:]) for line in proc.stdout.splitlines() if line.startswith("ROW ")]
    if proc.returncode:
        rows.append({"task": task, "n": n, "error": proc.stderr.strip().splitlines()[-1]})
    return rows


def _figure(frame: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for task, sim in frame[frame.task.str.startswith("simulate")].groupby("task"):
        axes[0].loglog(sim.n, sim.inferences_per_s, "o-", label=task)
        axes[1].loglog(sim.n, sim.peak_rss_mib, "o-", label=task)
    axes[0].set(xlabel="devices n", ylabel="inferences / s", title="simulate (events)")
    axes[0].legend(fontsize=7)
    for task, part in frame[frame.task.str.startswith("optimise")].groupby("task"):
        axes[2].loglog(part.n, part.seconds, "o-", label=task)
        axes[1].loglog(part.n, part.peak_rss_mib, "s--", label=task)
    axes[1].set(xlabel="devices n", ylabel="peak RSS, MiB", title="memory")
    axes[1].legend(fontsize=7)
    axes[2].set(xlabel="devices n", ylabel="seconds", title="max_stable_rate, optimised")
    axes[2].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--force", action="store_true", help="run even on a busy machine")
    parser.add_argument("--quick", action="store_true", help="n up to 10^4, no n = 10^6")
    parser.add_argument(
        "--lp-max-n", type=int, default=100_000, help="largest n for the several-group LP"
    )
    parser.add_argument(
        "--lp-timeout", type=float, default=300.0, help="seconds for a several-group LP point"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "bench_scale")
    parser.add_argument("--sizes", help="comma-separated n to run instead (no n = 10^6)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per point")
    args = parser.parse_args(argv)

    quiet_or_exit(args.force)
    before = os.getloadavg()
    print(f"load average before: {before[0]:.2f} {before[1]:.2f} {before[2]:.2f}")
    sizes = [4, 100, 1_000, 10_000] + ([] if args.quick else [100_000])
    if args.sizes:
        sizes = [int(x) for x in args.sizes.split(",")]
    rows: list[dict] = []
    for n in sizes:
        target = 2_000_000 if n <= 10_000 else 5_000_000
        # the floor of issue 13 compares n = 10^5 with n = 4 on both kinds of graph
        graphs = ["complete"] if n <= 8 else ["8-regular"] + (["complete"] if n >= 10**5 else [])
        for graph in graphs:
            point = _SIMULATE.format(n=n, target=target, graph=graph)
            rows += _run(point, args.timeout, "simulate/" + graph, n)
        if n > 20:
            for kind in ("proportional", "independent"):
                if kind == "independent" and n > args.lp_max_n:
                    continue
                timeout = args.timeout if kind == "proportional" else args.lp_timeout
                point = _OPTIMISE.format(n=n, rows=kind)
                rows += _run(point, min(args.timeout, timeout), "optimise/" + kind, n)
        print(pd.DataFrame(rows[-4:]).to_string(index=False), flush=True)
    if not (args.quick or args.sizes):
        rows += _run(_MILLION.format(n=1_000_000), args.timeout, "million", 1_000_000)
    after = os.getloadavg()
    frame = pd.DataFrame(rows)
    frame["load_average_before"] = before[0]
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    frame.to_csv(args.out / f"bench_scale-{stamp}.csv", index=False)
    _figure(frame, args.out / f"bench_scale-{stamp}.png")
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(frame.drop(columns="load_average_before").to_string(index=False))
    print(f"saved {args.out}/bench_scale-{stamp}.csv and .png")
    print(f"load average after: {after[0]:.2f} {after[1]:.2f} {after[2]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
