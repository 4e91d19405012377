"""``moa-stability check``: the stability report (exit status 1 when unstable)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..analysis.report import stability_report
from ..model.discipline import DISCIPLINES
from ..model.network import MoANetwork, count_field
from ..simulation.simulate import SimulationResult, simulate
from .network import add_network_arguments, network_from_args, output_path, write_table

EPILOG = """\
examples:
  moa-stability check --n 4 --M 2 --k 2 --rate 0.25            # the paper's setting
  moa-stability check --network examples/stable.toml --devices
  # is own-user-first scheduling provably stable here? (linear program + fluid model)
  moa-stability check --n 3 --M 1 --k 1 --rate 0.1 --discipline own-user-first --certify
  # 8 devices, 4 fast (1.2 s) and 4 slow (4 s), ring: the largest stable rate, and the
  # latency at 80% of it
  moa-stability check --n 8 --M 2 --k 2 --service-time 1.2,1.2,1.2,1.2,4,4,4,4 \\
      --topology ring --load 0.8 --latency

The maximal stable rate is the same whatever --rate or --load says: they set where the
network runs, the report says how far it is from the edge. The analytic latency (mean, p95,
p99) is printed when no device is overloaded; --latency adds a simulation to compare.
"""

LATENCY_REPLICATIONS = 4
"""Independent replications of the ``--latency`` simulation (their spread gives the CI)."""


def register(subparsers: Any) -> None:
    """Add the ``check`` subcommand to an argparse subparsers object."""
    p = subparsers.add_parser(
        "check",
        help="stability report and maximal stable rate of a network (exit 1 if unstable)",
        description="Per-device loads, the stability verdict, the maximal stable prompt rate\n"
        "(prompts/s per device and in total) and the paper's Remark 1 beside it.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_network_arguments(p)
    p.add_argument("--devices", action="store_true", help="also print the per-device table")
    p.add_argument(
        "--latency",
        action="store_true",
        help="also simulate the prompt latency at these rates, to check the analytic "
        f"estimate the report prints ({LATENCY_REPLICATIONS} replications, method events, "
        "~1-5 s after the first compilation; skipped when unstable)",
    )
    p.add_argument(
        "--discipline",
        choices=DISCIPLINES,
        default="fcfs",
        help="scheduling discipline of every device for the stability certificate "
        "(default fcfs; the loads do not depend on it)",
    )
    p.add_argument(
        "--certify",
        action="store_true",
        help="try harder for the certificate: the linear program up to 10 classes n(M+1) and "
        "the fluid model under --discipline (seconds for n=4, M=2; minutes beyond n=6)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the --latency simulation")
    p.add_argument("--out", type=Path, help="write the per-device table to CSV/JSON")
    p.set_defaults(func=run)


def simulated_latency(net: MoANetwork, seed: int) -> SimulationResult:
    """The simulated latency of ``net``, beside the report's analytic estimate."""
    return simulate(net, method="events", seed=seed, replications=LATENCY_REPLICATIONS)


def run(args: argparse.Namespace) -> int:
    # Every argument is checked before the report: a mistake must not cost the work.
    out = output_path(args.out)
    count_field("--seed", args.seed, 0)  # the --latency simulation's, checked now
    net = network_from_args(args)
    report = stability_report(
        net,
        discipline=args.discipline,
        certificate=True if args.certify else None,
    )
    print(report)
    if args.devices:
        print(report.to_frame().to_string())
    if args.latency:
        if report.verdict == "unstable":
            print("latency               : unbounded (unstable: queues grow without limit)")
        else:
            sim = simulated_latency(report.network, args.seed)
            print(
                f"latency (simulated)   : mean {sim.latency_mean:.4g} +- {sim.latency_ci:.2g} s, "
                f"p50 {sim.latency_p50:.4g}, p95 {sim.latency_p95:.4g}, "
                f"p99 {sim.latency_p99:.4g} s ({sim.verdict}; {sim.replications} x "
                f"{sim.horizon_s:.3g} s, seed {sim.seed})"
            )
    if out is not None:
        write_table(report.to_frame(), out)
    return 0 if report.verdict != "unstable" else 1
