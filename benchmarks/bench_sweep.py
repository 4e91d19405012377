"""Sweep throughput: points per second on a local Dask cluster vs a plain serial loop.

Each point is one simulation (:func:`moa_stability.experiments.sweep.simulate_point`) with a horizon
calibrated to cost about ``--point-seconds`` in this process, so that parallelism can show. The
serial loop calls the point function directly over the same points, after a warm-up call that
compiles the kernels; the cluster runs are timed twice: with the cluster start (what
``sweep(..., client="local")`` costs a user) and on an already running cluster. A control
sweep of points that only sleep shows what the cluster adds when no core is free for the
simulations; the load average and the cores each kind kept busy (CPU seconds over wall
seconds) are printed, as other processes share the cores.

Run: ``.venv/bin/python benchmarks/bench_sweep.py [--points 16] [--point-seconds 0.5]``
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from distributed import Client, LocalCluster

from moa_stability.experiments.sweep import simulate_point, sweep, sweep_points

BASE = {"n": 4, "M": 2, "k": 2, "arrival_rate": 0.1, "service_time": 1.0}


def grid_of(points: int) -> dict[str, list[float]]:
    """Loads spread over the stable range, one point each (so no two share a cache key)."""
    return {"load": np.linspace(0.3, 0.9, points).round(6).tolist()}


def calibrated_horizon(point_seconds: float) -> float:
    """Simulated seconds whose simulation takes about ``point_seconds`` here."""
    net = sweep_points(grid_of(1), base=BASE)[0].network
    simulate_point(net, 0, horizon=1e4)  # compile
    horizon = 1e4
    while True:
        start = time.perf_counter()
        simulate_point(net, 0, horizon=horizon)
        took = time.perf_counter() - start
        if took > 0.1:
            return float(horizon * point_seconds / took)
        horizon *= 4


def idle_point(net, seed: int, seconds: float) -> dict[str, float]:
    """A point that only waits: it needs no core, so it shows the parallelism Dask adds when
    the simulations cannot get a free core on a shared machine."""
    time.sleep(seconds)
    return {"waited_s": seconds}


def timed(run, cpu_seconds=time.process_time) -> tuple[float, float]:
    """Wall seconds of ``run()`` and the cores it kept busy: CPU seconds / wall seconds."""
    cpu, start = cpu_seconds(), time.perf_counter()
    run()
    wall = time.perf_counter() - start
    return wall, (cpu_seconds() - cpu) / wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=16)
    parser.add_argument("--point-seconds", type=float, default=0.5)
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument(
        "--repeats", type=int, default=3, help="timings interleaved and repeated; medians reported"
    )
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    horizon = calibrated_horizon(args.point_seconds)
    grid = grid_of(args.points)
    points = sweep_points(grid, base=BASE, horizon=horizon)

    def serial_loop() -> None:
        for p in points:
            simulate_point(p.network, p.seed, **p.options)

    def run(client) -> None:
        sweep(
            grid,
            base=BASE,
            client=client,
            n_workers=args.workers if client == "local" else None,
            progress=False,
            horizon=horizon,
        )

    times: dict[str, list[tuple[float, float]]] = {
        "serial": [],
        "none": [],
        "local": [],
        "warm": [],
    }
    with (
        LocalCluster(
            n_workers=args.workers,
            threads_per_worker=1,
            processes=True,
            env={"NUMBA_NUM_THREADS": "1"},
            dashboard_address="127.0.0.1:0",
        ) as cluster,
        Client(cluster) as probe,
    ):
        sweep(
            grid_of(args.workers),
            base=BASE,
            client=cluster.scheduler_address,
            progress=False,
            horizon=1e4,
        )  # workers import and compile

        def workers_cpu() -> float:
            return sum(probe.run(time.process_time).values())

        # Interleaved, so that load from other processes drifts into every kind alike.
        for _ in range(args.repeats):
            times["serial"].append(timed(serial_loop))
            times["warm"].append(timed(lambda: run(cluster.scheduler_address), workers_cpu))
            times["none"].append(timed(lambda: run(None)))
            times["local"].append(timed(lambda: run("local")))
        idle = {"load": grid["load"]}
        idle_serial, _ = timed(
            lambda: sweep(
                idle,
                base=BASE,
                point=idle_point,
                client=None,
                progress=False,
                seconds=args.point_seconds,
            )
        )
        idle_warm, _ = timed(
            lambda: sweep(
                idle,
                base=BASE,
                point=idle_point,
                progress=False,
                client=cluster.scheduler_address,
                seconds=args.point_seconds,
            )
        )
    t = {kind: float(np.median([w for w, _ in v])) for kind, v in times.items()}
    busy = {kind: float(np.median([c for _, c in v])) for kind, v in times.items()}
    n = len(points)
    print(
        f"{n} points, horizon {horizon:.4g} s simulated, {os.cpu_count()} cores, "
        f"{args.workers} workers x 1 thread, medians of {args.repeats}; load average "
        f"{load_before:.2f} before, {os.getloadavg()[0]:.2f} after"
    )
    print(
        f"serial loop            : {n / t['serial']:7.3f} points/s "
        f"({t['serial'] / n:.3f} s/point, {busy['serial']:.2f} cores busy)"
    )
    print(f"sweep(client=None)     : {n / t['none']:7.3f} points/s")
    print(f"sweep(client='local')  : {n / t['local']:7.3f} points/s (cluster start included)")
    print(
        f"sweep on warm cluster  : {n / t['warm']:7.3f} points/s "
        f"({busy['warm']:.2f} cores busy in the workers)"
    )
    print(f"ratio local/serial     : {t['serial'] / t['local']:7.3f}")
    print(f"ratio warm/serial      : {t['serial'] / t['warm']:7.3f}")
    print(
        f"control, points that only wait {args.point_seconds} s: serial "
        f"{n / idle_serial:.3f} points/s, warm cluster {n / idle_warm:.3f} points/s, "
        f"ratio {idle_serial / idle_warm:.3f}"
    )


if __name__ == "__main__":
    main()
