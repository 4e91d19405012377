"""``moa-stability simulate``: Monte Carlo simulation (exit status 1 when unstable)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..model.discipline import DISCIPLINES
from ..model.network import MoANetwork
from ..simulation.simulate import METHODS, SERVICES, simulate
from .network import add_network_arguments, network_from_args, output_path, write_table

EPILOG = """\
examples:
  moa-stability simulate --network examples/stable.toml --method events --seed 1
  moa-stability simulate --n 8 --service-time 1.2,1.2,1.2,1.2,4,4,4,4 --topology ring \\
      --load 0.8 --replications 4 --out latency.csv
  moa-stability simulate --load 0.9 --service empirical --samples trace.csv \\
      --service-time-from-samples

slots or events: pick events (continuous time, Poisson arrivals, service times drawn
exactly) for latency and for any service-time law; pick slots to reproduce the paper's
slotted model (docs/model.md section 3), where --dt is the slot length and the answer
depends on it. Both report the same quantities.

--discipline: every device serves by a static priority over job classes, FCFS within a
level: later-layer-first, earlier-layer-first, aggregate-first, own-user-first (jobs of the
device's own prompts first). --preemptive lets a higher level interrupt the job in service,
which later resumes with the service time it had left (docs/simulator.md).

--service empirical: the samples give the shape of the service-time law only. Each job
type's samples are rescaled to mean 1 and multiplied by the device's --service-time
(default 1 s); --service-time-from-samples uses the samples' own means instead.

The first run of a session compiles the simulator (numba, up to a minute on a busy machine);
later runs start at once. Exit status 1 when the run looks unstable.
"""


def register(subparsers: Any) -> None:
    """Add the ``simulate`` subcommand to an argparse subparsers object."""
    p = subparsers.add_parser(
        "simulate",
        help="Monte Carlo simulation: queues, latency, "
        "empirical stability verdict (exit 1 if unstable)",
        description="Simulate the network: queues and utilisation per device, prompt latency\n"
        "(mean, CI, p50, p95, p99) and an empirical stability verdict.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_network_arguments(p)
    g = p.add_argument_group("simulation")
    g.add_argument(
        "--method",
        choices=METHODS,
        default="slots",
        help="simulator (default slots; events for latency, see below)",
    )
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
        help="CSV of measured seconds (columns job_type, seconds) for --service empirical; "
        "rescaled to the --service-time means (see below)",
    )
    g.add_argument(
        "--service-time-from-samples",
        action="store_true",
        help="take each job type's mean service time from its --samples (same on every "
        "device) instead of --service-time",
    )
    g.add_argument(
        "--discipline",
        choices=DISCIPLINES,
        default="fcfs",
        help="scheduling at every device: FCFS, or a priority by job class (default fcfs)",
    )
    g.add_argument(
        "--preemptive",
        action="store_true",
        help="a higher-priority job interrupts the one in service (preemptive-resume)",
    )
    g.add_argument("--replications", type=int, default=1, help="independent replications")
    g.add_argument(
        "--warmup",
        type=float,
        default=0.2,
        help="discarded start: fraction of the horizon (< 1) or seconds",
    )
    g.add_argument("--max-jobs", type=int, default=1_000_000, help="cap on jobs in the system")
    g.add_argument(
        "--out",
        type=Path,
        help="write the per-device table (queues, utilisation, latency) to CSV/JSON",
    )
    p.set_defaults(func=run)


def read_samples(path: Path) -> dict[str, np.ndarray]:
    """Measured seconds per job type from a CSV with columns ``job_type`` and ``seconds``."""
    if not path.is_file():
        raise ValueError(f"--samples={path}: no such file; pass the path of a CSV file")
    try:
        trace = pd.read_csv(path)
    except pd.errors.EmptyDataError as err:
        raise ValueError(
            f"--samples={path}: the file is empty; write a header job_type,seconds and one row "
            "per measured inference"
        ) from err
    except (pd.errors.ParserError, UnicodeDecodeError, OSError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(
            f"--samples={path}: not a readable CSV file ({reason}); fix the file (columns "
            "job_type, seconds)"
        ) from err
    if not {"job_type", "seconds"} <= set(trace.columns):
        raise ValueError(
            f"--samples={path}: needs columns job_type and seconds (has {list(trace.columns)}); "
            "add them"
        )
    seconds = pd.to_numeric(trace["seconds"], errors="coerce")
    text = trace["seconds"].notna() & seconds.isna()
    if text.any():
        row = int(np.flatnonzero(text.to_numpy())[0])
        raise ValueError(
            f"--samples={path}: column seconds holds {int(text.sum())} value(s) that are not "
            f"numbers (first {trace['seconds'].iloc[row]!r}, data row {row + 1}); write seconds "
            "as numbers, or drop those rows"
        )
    trace = trace.assign(seconds=seconds.astype(float))
    return {str(c): g.to_numpy(dtype=float) for c, g in trace.groupby("job_type")["seconds"]}


def means_from_samples(net: MoANetwork, samples: dict[str, np.ndarray]) -> MoANetwork:
    """``net`` with each job type's mean service time set to the mean of its samples."""
    used = net.job_types_used
    missing = [c for c in used if c not in samples]
    if missing:
        raise ValueError(
            f"--samples=(job types {sorted(samples)}): no samples of {missing}; add rows of "
            f"each of {list(used)} or drop --service-time-from-samples"
        )
    return net.replace(service_time={c: float(samples[c].mean()) for c in used})


def run(args: argparse.Namespace) -> int:
    out = output_path(args.out)
    empirical = args.service == "empirical"
    if args.samples is None and (empirical or args.service_time_from_samples):
        raise ValueError(
            "--samples=None: --service empirical and --service-time-from-samples read a CSV "
            "of measured seconds; pass --samples trace.csv"
        )
    if args.samples is not None and not (empirical or args.service_time_from_samples):
        raise ValueError(
            f"--samples={args.samples}: unused with --service {args.service}; add --service "
            "empirical (their shape) or --service-time-from-samples (their means)"
        )
    samples = read_samples(args.samples) if args.samples is not None else None
    net = network_from_args(args)
    if args.service_time_from_samples:
        if args.service_time is not None:
            raise ValueError(
                f"--service-time={args.service_time}: --service-time-from-samples sets the "
                "means; drop one of the two"
            )
        net = means_from_samples(net, samples)
        # New means move the loads: scale to --load again (at_load starts from any rates).
        net = net if args.load is None else net.at_load(args.load)
    result = simulate(
        net,
        method=args.method,
        horizon=args.horizon,
        dt=args.dt,
        seed=args.seed,
        service=args.service,
        scv=args.scv,
        samples=samples,
        replications=args.replications,
        warmup=args.warmup,
        max_jobs=args.max_jobs,
        discipline=args.discipline,
        preemptive=args.preemptive,
    )
    print(result)
    if out is not None:
        write_table(result.to_frame(), out)
    return 1 if result.verdict == "unstable" else 0
