"""``moa-stability optimize``: maximal stable arrival rates (and selection)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..analysis.optimize import OBJECTIVES, max_stable_rate
from .network import add_network_arguments, network_from_args, write_table


def register(subparsers: Any) -> None:
    """Add the ``optimize`` subcommand to an argparse subparsers object."""
    p = subparsers.add_parser("optimize", help="maximal stable arrival rates (and selection)")
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
    p.add_argument("--out", type=Path, help="write the per-device table to CSV/JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    res = max_stable_rate(
        network_from_args(args),
        objective=args.objective,
        optimise_selection=args.optimise_selection,
        margin=args.margin,
    )
    print(res)
    if args.out is not None:
        write_table(res.to_frame(), args.out)
    return 0
