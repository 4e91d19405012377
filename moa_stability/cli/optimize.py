"""``moa-stability optimize``: maximal stable arrival rates (and selection)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..analysis.optimize import OBJECTIVES, max_stable_rate
from ..model.display import tidy
from .network import add_network_arguments, network_from_args, output_path, write_table

EPILOG = """\
examples:
  moa-stability optimize --service-time 1,1,1,4 --devices
  moa-stability optimize --service-time 1,1,1,4 --optimise-selection --objective sum
  moa-stability optimize --network examples/heterogeneous.toml --margin 0.2 --out best.csv

The optimum sits on the stability boundary (the binding devices at load 1 - margin), which
no queue survives: pass --margin, or run at a fraction of the rates found (--load).
"""


def register(subparsers: Any) -> None:
    """Add the ``optimize`` subcommand to an argparse subparsers object."""
    p = subparsers.add_parser(
        "optimize",
        help="maximal stable arrival rates (and selection)",
        description="The largest prompt rates (and, optionally, helper-selection probabilities) "
        "that keep\nevery device's load at most 1 - margin; a linear program.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_network_arguments(p)
    p.add_argument(
        "--objective",
        choices=OBJECTIVES,
        default="scale",
        help="scale the given rates (default), or maximise the sum, the minimum or "
        "the sum of logs of the rates",
    )
    p.add_argument(
        "--optimise-selection",
        "--optimize-selection",
        action="store_true",
        help="also choose the proposer inclusion probabilities",
    )
    p.add_argument("--margin", type=float, default=0.0, help="hold loads at most 1 - margin")
    p.add_argument(
        "--devices", action="store_true", help="also print the per-device rates and loads"
    )
    p.add_argument("--out", type=Path, help="write the per-device table to CSV/JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    out = output_path(args.out)
    res = max_stable_rate(
        network_from_args(args),
        objective=args.objective,
        optimise_selection=args.optimise_selection,
        margin=args.margin,
    )
    print(res)
    if args.devices:
        print(tidy(res.to_frame()).to_string())
    if out is not None:
        write_table(res.to_frame(), out)
    return 0
