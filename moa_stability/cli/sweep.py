"""``moa-stability sweep``: simulate a grid of networks x seeds, resumable (Dask for big grids)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..experiments.sweep import SERIAL_POINTS_PER_CORE, sweep
from .network import (
    SERVICE_TIME_HELP,
    TOPOLOGY_HELP,
    network_from_flags,
    output_path,
    write_table,
)

EPILOG = f"""\
examples:
  moa-stability sweep --M 1,2 --load 0.5,0.95 --seeds 2 --horizon 2e4
  moa-stability sweep --n 8 --service-time 1.2,1.2,1.2,1.2,4,4,4,4 --topology ring \\
      --load 0.5,0.7,0.9 --seeds 3 --horizon 5e4 --method events --out ring8.csv
  moa-stability sweep --M 1,2,3 --k 1,2 --load 0.9 --seeds 10 --cache .sweep_cache

Each grid flag takes comma-separated values; one value fixes that field of the base network
(so --n 8 with an 8-value --service-time works), several make an axis. Grids of at most
{SERIAL_POINTS_PER_CORE} points per core run in this process; larger ones (or any with --workers)
on a local Dask cluster, one worker per core, unless --serial; --scheduler ADDRESS uses a
running cluster.
"""


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
        help="simulate a grid of networks x seeds, resumable (Dask for big grids)",
        description="Simulate every combination of the listed values (comma-separated) for "
        "each seed;\nunlisted fields come from the base network.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
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
    where.add_argument(
        "--serial",
        action="store_true",
        help=f"run in this process, no Dask (automatic up to {SERIAL_POINTS_PER_CORE} "
        "points per core)",
    )
    run_group.add_argument(
        "--workers", type=int, help="local Dask cluster worker processes (forces Dask)"
    )
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


def base_from_args(args: argparse.Namespace) -> Any:
    """The base network: ``--network`` or the defaults, the shared flags, and every grid axis
    given a single value (so ``--n 8`` sizes the base for an 8-value ``--service-time``)."""

    def single(flag: str) -> Any:
        values = getattr(args, flag)
        return values[0] if values is not None and len(values) == 1 else None

    k, rate = single("k"), single("rate")
    return network_from_flags(
        network=args.network,
        n=single("n"),
        M=single("M"),
        k=None if k is None else str(k),
        rate=None if rate is None else repr(rate),
        service_time=args.service_time,
        topology=args.topology,
    )


def client_from_args(args: argparse.Namespace) -> Any:
    """``None`` (serial), a scheduler address, or ``"auto"``: the library runs small grids
    serially and larger ones (or any with ``--workers``) on a local Dask cluster."""
    if args.serial:
        return None
    return args.scheduler or "auto"


def run(args: argparse.Namespace) -> int:
    out = output_path(args.out)
    frame = sweep(
        grid_from_args(args),
        seeds=args.seeds,
        base=base_from_args(args),
        cache=args.cache,
        client=client_from_args(args),
        n_workers=args.workers,
        progress=not args.no_progress,
    )
    # The row number is no data: leave it out so the file has no nameless first column.
    write_table(frame, out, index=False)
    return 0
