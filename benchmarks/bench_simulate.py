"""Simulator speed: inferences and device-slots per second, compile time, and Ciw for scale.

Prints one table of rates and ratios:

* job-level simulators (``method="slots"`` and ``"events"``): inferences simulated per second on
  the paper network (n=4, M=2, k=2) at load 0.9, on one core (one replication) and on all
  numba threads (one replication per thread);
* the slotted kernel on n=100 devices (M=2, k=2, load 0.9, default slot ``dt`` = 0.1 s): device-
  slot updates per second for 1e6 slots on every thread (the kernel skips idle slots exactly,
  so this counts the slots it stands for, not loop iterations);
* Ciw (``pip install -r benchmarks/requirements.txt``) on an M/M/1 queue and on a 4-node open
  network of M/M/1 nodes (our ``M = 0``, n = 4), with our speed-up in jobs per second and both
  estimates of the mean sojourn time beside the exact one;
* compile time of the kernels in a fresh process without cache, and with it.

Wall-clock times; the load average is printed because other processes may share the cores.

Run: ``.venv/bin/python benchmarks/bench_simulate.py [--quick]``
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numba

from moa_stability import MoANetwork, paper_network
from moa_stability.simulation.simulate import simulate

_COMPILE_SNIPPET = """
import time
from moa_stability import paper_network
from moa_stability.simulation.simulate import simulate
start = time.perf_counter()
simulate(paper_network(arrival_rate=0.1), horizon=100.0)
print(time.perf_counter() - start)
"""


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


def first_call_seconds(cache_dir: str) -> float:
    """Seconds of the first ``simulate`` call in a fresh process using ``cache_dir``."""
    env = {**os.environ, "NUMBA_CACHE_DIR": cache_dir}
    out = subprocess.run(
        [sys.executable, "-c", _COMPILE_SNIPPET],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


def job_level_rows(scale: float) -> list[tuple[str, float, str]]:
    net = paper_network(arrival_rate=0.9 / 7)
    threads = numba.get_num_threads()
    rows = []
    for method in ("slots", "events"):
        simulate(net, method=method, horizon=100.0)  # load the compiled kernels
        for reps in (1, threads):
            r, wall = timed(
                simulate, net, method=method, horizon=3e6 * scale, replications=reps, seed=1
            )
            per = "core" if reps == 1 else f"{threads} threads"
            rows.append(
                (
                    f"paper n=4 M=2 k=2 load 0.9, {method}: inferences/s ({per})",
                    r.inferences / wall,
                    f"{r.inferences:.3g} inferences, {wall:.2f} s",
                )
            )
    return rows


def slot_rows(scale: float) -> list[tuple[str, float, str]]:
    net = MoANetwork(n=100, M=2, k=2, arrival_rate=0.9 / 7)
    slots = int(1e6 * scale)
    rows = []
    for reps in (1, numba.get_num_threads()):
        r, wall = timed(
            simulate, net, method="slots", horizon=slots * 0.1, dt=0.1, replications=reps, seed=1
        )
        per = "core" if reps == 1 else f"{reps} threads"
        rows.append(
            (
                f"n=100 slotted, {r.horizon_slots:.0e} slots x {reps} replication(s): "
                f"device-slot updates/s ({per})",
                net.n * r.horizon_slots * reps / wall,
                f"{r.inferences / wall:.3g} inferences/s, {wall:.2f} s",
            )
        )
    return rows


def ciw_sojourn(n: int, rate: float, horizon: float) -> tuple[float, int, float]:
    """Mean sojourn, completed jobs and wall seconds of Ciw on ``n`` M/M/1 nodes (mu = 1)."""
    import ciw

    network = ciw.create_network(
        arrival_distributions=[ciw.dists.Exponential(rate=rate) for _ in range(n)],
        service_distributions=[ciw.dists.Exponential(rate=1.0) for _ in range(n)],
        number_of_servers=[1] * n,
        routing=[[0.0] * n for _ in range(n)],
    )
    ciw.seed(1)
    start = time.perf_counter()
    sim = ciw.Simulation(network)
    sim.simulate_until_max_time(horizon)
    wall = time.perf_counter() - start
    records = [rec for rec in sim.get_all_records() if rec.arrival_date > 0.2 * horizon]
    sojourn = sum(rec.exit_date - rec.arrival_date for rec in records) / len(records)
    return sojourn, len(sim.get_all_records()), wall


def ciw_rows(scale: float) -> list[tuple[str, float, str]]:
    rows = []
    rate = 0.9
    for n, name in ((1, "M/M/1"), (4, "4-node open network of M/M/1 nodes")):
        sojourn, jobs, wall = ciw_sojourn(n, rate, 2e4 * scale)
        ciw_rate = jobs / wall
        net = MoANetwork(n=n, M=0, arrival_rate=rate, service_time=1.0)
        r, ours_wall = timed(simulate, net, method="events", horizon=2e6 * scale, seed=1)
        ours_rate = r.inferences / ours_wall
        exact = 1.0 / (1.0 - rate)
        rows += [
            (
                f"Ciw {name}, rho 0.9: jobs/s",
                ciw_rate,
                f"sojourn {sojourn:.3g} s (exact {exact:.3g})",
            ),
            (
                f"ours (events) {name}: jobs/s",
                ours_rate,
                f"sojourn {r.latency_mean:.3g} s +- {r.latency_ci:.2g}",
            ),
            (f"speed-up over Ciw, {name}", ours_rate / ciw_rate, "ratio (goal >= 100)"),
        ]
    return rows


def compile_rows() -> list[tuple[str, float, str]]:
    with tempfile.TemporaryDirectory() as cache:
        cold = first_call_seconds(cache)
        warm = first_call_seconds(cache)
    return [
        ("first simulate() call, no kernel cache: s", cold, "compiles the kernels"),
        ("first simulate() call, cached kernels: s", warm, "a second process"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10x shorter runs")
    scale = 0.1 if parser.parse_args().quick else 1.0
    print(
        f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; "
        f"numba threads {numba.get_num_threads()}"
    )
    rows = compile_rows() + job_level_rows(scale) + slot_rows(scale) + ciw_rows(scale)
    width = max(len(name) for name, _, _ in rows)
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>12.4g}  {note}")
    print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
