"""``moa-stability check``: the stability report (exit status 1 when unstable)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..analysis.report import stability_report
from .network import add_network_arguments, network_from_args, write_table


def register(subparsers: Any) -> None:
    """Add the ``check`` subcommand to an argparse subparsers object."""
    p = subparsers.add_parser("check", help="stability report of a network (exit 1 if unstable)")
    add_network_arguments(p)
    p.add_argument("--devices", action="store_true", help="also print the per-device table")
    p.add_argument("--out", type=Path, help="write the per-device table to CSV/JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    report = stability_report(network_from_args(args))
    print(report)
    if args.devices:
        print(report.to_frame().to_string())
    if args.out is not None:
        write_table(report.to_frame(), args.out)
    return 0 if report.verdict != "unstable" else 1
