"""``moa-stability plan``: which MoA shape (M, k) and selection to run on these devices."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..analysis.latency import METHODS
from ..analysis.planner import plan
from .network import SERVICE_TIME_HELP, TOPOLOGY_HELP, network_spec, output_path, write_table

EPILOG = """\
examples:
  moa-stability plan --n 4 --rate 0.02 --service-time 1 --slo 30
  moa-stability plan --n 8 --rate 0.01 --service-time 1.2,1.2,1.2,1.2,4,4,4,4 \\
      --topology ring --slo 120 --quantile 0.99 --margin 0.2 --out plan.csv

Each shape of the quality table (default: the source paper's Table I accuracies for
70B-class models, an example only) is ranked: feasible first (its optimised selection keeps
every load at most 1 - margin and the latency quantile meets --slo), by quality, then by
latency.
"""


def register(subparsers: Any) -> None:
    """Add the ``plan`` subcommand to an argparse subparsers object."""
    p = subparsers.add_parser(
        "plan",
        help="rank MoA shapes (M, k) by quality under a load margin and a latency objective",
        description="For every (M, k) of a quality table: the optimised helper selection, the\n"
        "capacity, the predicted latency at the given rates, and whether it is feasible.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--n", type=int, default=4, help="number of devices (default 4)")
    p.add_argument(
        "--rate",
        type=str,
        default="0.02",
        help="user prompts/s per device: one value or one per device (default 0.02)",
    )
    p.add_argument("--service-time", type=str, default="1", help=SERVICE_TIME_HELP)
    p.add_argument("--topology", type=str, default="complete", help=TOPOLOGY_HELP)
    p.add_argument("--slo", type=float, metavar="SECONDS", help="latency objective (seconds)")
    p.add_argument("--quantile", type=float, default=0.95, help="the quantile --slo bounds")
    p.add_argument("--margin", type=float, default=0.1, help="keep every load <= 1 - margin")
    p.add_argument("--method", choices=METHODS, default="estimate", help="latency method")
    p.add_argument("--out", type=Path, help="write the ranked table to CSV/JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    out = output_path(args.out)
    spec = network_spec(
        n=args.n, rate=args.rate, service_time=args.service_time, topology=args.topology
    )
    result = plan(
        spec["n"],
        arrival_rate=spec["arrival_rate"],
        service_time=spec["service_time"],
        topology=spec["topology"],
        slo_s=args.slo,
        quantile=args.quantile,
        margin=args.margin,
        method=args.method,
    )
    print(result)
    if out is not None:
        write_table(result.to_frame(), out, index=False)
    return 0
