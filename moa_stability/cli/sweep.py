"""``moa-stability sweep``: simulate a grid of networks x seeds on Dask, resumable."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..experiments.sweep import sweep
from .network import SERVICE_TIME_HELP, TOPOLOGY_HELP, network_from_flags, write_table


def _float_list(text: str) -> list[float]:
    return [float(x) for x in text.split(",")]


def _int_list(text: str) -> list[int]:
    return [int(x) for x in text.split(",")]


def _str_list(text: str) -> list[str]:
    return [x.strip() for x in text.split(",")]


# Flag -> (grid field, parser, help): each flag takes a comma-separated list of values, one axis.
_GRID_FLAGS: dict[str, tuple[str, Callable[[str], list[Any]], str]] = {
    "n": ("n", _int_list, "devices"),
    "M": ("M", _int_list, "MoA layers"),
    "k": ("k", _int_list, "extra proposers per layer"),
    "rate": ("arrival_rate", _float_list, "user prompts/s per device"),
    "scale": ("scale", _float_list, "factor on the base rates"),
    "load": ("load", _float_list, "rates set so the busiest device has this load"),
    "horizon": ("horizon", _float_list, "simulated seconds"),
    "method": ("method", _str_list, "simulator: slots or events"),
}


def register(subparsers: Any) -> None:
    """Add the ``sweep`` subcommand to an argparse subparsers object."""
    p = subparsers.add_parser(
        "sweep",
        help="simulate a grid of networks x seeds on Dask, resumable",
        description="Simulate every combination of the listed values (comma-separated) for "
        "each seed; unlisted fields come from the base network.",
    )
    base = p.add_argument_group("base network (fields the grid does not list)")
    base.add_argument("--network", type=Path, help="TOML or JSON file with MoANetwork fields")
    base.add_argument("--service-time", type=str, help=SERVICE_TIME_HELP)
    base.add_argument("--topology", type=str, help=TOPOLOGY_HELP)
    grid = p.add_argument_group("grid axes (comma-separated values)")
    for flag, (_, parse, text) in _GRID_FLAGS.items():
        grid.add_argument(f"--{flag}", type=parse, help=text)
    run_group = p.add_argument_group("execution")
    run_group.add_argument(
        "--seeds", type=int, default=1, help="replications per point (default 1)"
    )
    where = run_group.add_mutually_exclusive_group()
    where.add_argument("--scheduler", help="address of a running Dask scheduler")
    where.add_argument("--serial", action="store_true", help="run in this process, no Dask")
    run_group.add_argument("--workers", type=int, help="local cluster worker processes")
    run_group.add_argument("--cache", type=Path, help="directory of finished points (resumable)")
    run_group.add_argument("--out", type=Path, help="write the table as CSV (or .json)")
    run_group.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)


def grid_from_args(args: argparse.Namespace) -> dict[str, list[Any]]:
    """The sweep grid named by the command-line axis flags that were given."""
    return {
        name: getattr(args, flag)
        for flag, (name, _, _) in _GRID_FLAGS.items()
        if getattr(args, flag) is not None
    }


def run(args: argparse.Namespace) -> int:
    # The grid's axes replace n, M, k and the rate, so only these three describe the base.
    base = network_from_flags(
        network=args.network, service_time=args.service_time, topology=args.topology
    )
    frame = sweep(
        grid_from_args(args),
        seeds=args.seeds,
        base=base,
        cache=args.cache,
        client=None if args.serial else (args.scheduler or "local"),
        n_workers=args.workers,
        progress=not args.no_progress,
    )
    write_table(frame, args.out)
    return 0
