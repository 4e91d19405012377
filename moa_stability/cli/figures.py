"""``moa-stability figures``: regenerate every figure of :mod:`paper_figures`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    """Add the ``figures`` subcommand to an argparse subparsers object."""
    p = subparsers.add_parser(
        "figures",
        help="regenerate every figure (paper_figures)",
        description="Regenerate the figures of paper_figures as PNG files.",
        epilog="examples:\n"
        "  moa-stability figures --quick --out /tmp/figs   # ~15-40 s on 2 cores\n"
        "  moa-stability figures --out figures      # full fidelity, ~45 s on 2 idle cores\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--quick", action="store_true", help="low fidelity, ~15-40 s on 2 cores (for a look)"
    )
    p.add_argument("--out", type=Path, default=Path("figures"), help="output folder")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # paper_figures sits on top of the package and imports matplotlib: load it only here.
    from paper_figures.__main__ import main as figures_main

    return figures_main((["--quick"] if args.quick else []) + ["--out", str(args.out)])
