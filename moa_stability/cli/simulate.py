"""``moa-stability simulate``: Monte Carlo simulation (exit status 1 when unstable)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..simulation.simulate import METHODS, SERVICES, simulate
from .network import add_network_arguments, network_from_args, write_table


def register(subparsers: Any) -> None:
    """Add the ``simulate`` subcommand to an argparse subparsers object."""
    p = subparsers.add_parser(
        "simulate",
        help="Monte Carlo simulation: queues, latency, "
        "empirical stability verdict (exit 1 if unstable)",
    )
    add_network_arguments(p)
    g = p.add_argument_group("simulation")
    g.add_argument("--method", choices=METHODS, default="slots", help="simulator (default slots)")
    g.add_argument("--horizon", type=float, help="simulated seconds per replication")
    g.add_argument("--dt", type=float, help="slot length in seconds (slots)")
    g.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    g.add_argument(
        "--service",
        choices=sorted(SERVICES),
        default="exponential",
        help="service-time distribution (default exponential)",
    )
    g.add_argument(
        "--scv",
        type=float,
        default=1.0,
        help="squared coefficient of variation of gamma/lognormal service",
    )
    g.add_argument(
        "--samples",
        type=Path,
        help="CSV of measured seconds (columns job_type, seconds) for empirical",
    )
    g.add_argument("--replications", type=int, default=1, help="independent replications")
    g.add_argument(
        "--warmup",
        type=float,
        default=0.2,
        help="discarded start: fraction of the horizon (< 1) or seconds",
    )
    g.add_argument("--max-jobs", type=int, default=1_000_000, help="cap on jobs in the system")
    g.add_argument("--out", type=Path, help="write the per-device table to CSV/JSON")
    p.set_defaults(func=run)


def read_samples(path: Path) -> dict[str, np.ndarray]:
    """Measured seconds per job type from a CSV with columns ``job_type`` and ``seconds``."""
    if not path.is_file():
        raise ValueError(f"--samples={path}: no such file; pass the path of a CSV file")
    trace = pd.read_csv(path)
    if not {"job_type", "seconds"} <= set(trace.columns):
        raise ValueError(
            f"--samples={path}: needs columns job_type and seconds (has {list(trace.columns)}); "
            "add them"
        )
    return {str(c): g.to_numpy(dtype=float) for c, g in trace.groupby("job_type")["seconds"]}


def run(args: argparse.Namespace) -> int:
    result = simulate(
        network_from_args(args),
        method=args.method,
        horizon=args.horizon,
        dt=args.dt,
        seed=args.seed,
        service=args.service,
        scv=args.scv,
        samples=read_samples(args.samples) if args.samples is not None else None,
        replications=args.replications,
        warmup=args.warmup,
        max_jobs=args.max_jobs,
    )
    print(result)
    if args.out is not None:
        write_table(result.to_frame(), args.out)
    return 1 if result.verdict == "unstable" else 0
