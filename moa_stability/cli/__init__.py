"""Command line: ``moa-stability check | simulate | optimize | measure | sweep | figures``.

Every subcommand takes a network from flags or from a TOML/JSON file (``--network FILE``).
User mistakes print one line to stderr and exit with status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from collections.abc import Callable, Sequence
from importlib import import_module
from pathlib import Path
from typing import Any

from ..model.network import MoANetwork, network_from_dict

# Subcommands that live beside the code they drive; each module offers ``add_cli(subparsers)``.
_SUBCOMMAND_MODULES = (
    "..simulation.simulate",
    "..analysis.optimize",
    "..llm.measure",
    "..experiments.sweep",
)


def _numbers(text: str) -> float | list[float]:
    values = [float(x) for x in text.split(",")]
    return values[0] if len(values) == 1 else values


def _service_time(text: str) -> Any:
    """``1.5``, ``1,1,1,4`` (per device) or ``propose=1,refine=2,aggregate=2`` (per type)."""
    if "=" not in text:
        return _numbers(text)
    table: dict[str, float] = {}
    for part in text.split(","):
        name, _, value = part.partition("=")
        table[name.strip()] = float(value)
    return table


def add_network_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags that describe a network; ``network_from_args`` turns them into one."""
    g = parser.add_argument_group("network (flags, or --network FILE)")
    g.add_argument("--network", type=Path, help="TOML or JSON file with MoANetwork fields")
    g.add_argument("--n", type=int, help="number of devices (default 4)")
    g.add_argument("--M", type=int, help="MoA layers (default 2)")
    g.add_argument("--k", type=str, help="extra proposers: one int or one per layer, '2,1'")
    g.add_argument(
        "--rate",
        type=str,
        help="user prompts/s per device: one value or one per device (default 0.025)",
    )
    g.add_argument(
        "--service-time",
        type=str,
        help="mean seconds: '1', per device '1,1,1,4', or per type "
        "'propose=1,refine=2,aggregate=2' (default 1)",
    )
    g.add_argument(
        "--topology",
        type=str,
        help="complete (default), ring, star or random-regular:DEGREE[:SEED]",
    )


def _topology(text: str, n: int) -> Any:
    if not text.startswith("random-regular"):
        return text
    from ..model.network import random_regular_graph

    parts = text.split(":")
    if len(parts) not in (2, 3):
        raise ValueError(f"--topology={text}: expected random-regular:DEGREE[:SEED]")
    seed = int(parts[2]) if len(parts) == 3 else 0
    return random_regular_graph(n, int(parts[1]), seed=seed)


def read_network_file(path: Path) -> dict[str, Any]:
    """The fields of a network from a ``.toml`` or ``.json`` file."""
    if not path.is_file():
        raise ValueError(f"--network={path}: no such file")
    text = path.read_text()
    try:
        spec = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"--network={path}: cannot parse it ({err})") from err
    return spec.get("network", spec)


def network_from_args(args: argparse.Namespace) -> MoANetwork:
    """A network from ``--network FILE`` overridden by any explicit flags."""
    spec: dict[str, Any] = {"n": 4, "M": 2, "k": 2, "arrival_rate": 0.025, "service_time": 1.0}
    if args.network is not None:
        spec = read_network_file(args.network)
    flags = {
        "n": args.n,
        "M": args.M,
        "k": args.k,
        "arrival_rate": args.rate,
        "service_time": args.service_time,
    }
    converters: dict[str, Callable[[str], Any]] = {
        "k": lambda s: [int(x) for x in s.split(",")] if "," in s else int(s),
        "arrival_rate": _numbers,
        "service_time": _service_time,
    }
    for name, value in flags.items():
        if value is not None:
            spec[name] = converters[name](value) if name in converters else value
    if args.topology is not None:
        spec["topology"] = _topology(args.topology, int(spec["n"]))
    return network_from_dict(spec)


def write_table(frame: Any, out: Path | None) -> None:
    """Print a DataFrame, or write it as CSV/JSON by ``out``'s suffix."""
    if out is None:
        print(frame.to_string())
    elif out.suffix == ".json":
        out.write_text(frame.to_json(orient="table", indent=2))
    else:
        frame.to_csv(out)


def _check(args: argparse.Namespace) -> int:
    from ..analysis.report import stability_report

    report = stability_report(network_from_args(args))
    print(report)
    if args.devices:
        print(report.to_frame().to_string())
    if args.out is not None:
        write_table(report.to_frame(), args.out)
    return 0 if report.verdict != "unstable" else 1


def _figures(args: argparse.Namespace) -> int:
    from paper_figures.__main__ import main as figures_main

    return figures_main((["--quick"] if args.quick else []) + ["--out", str(args.out)])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="moa-stability", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="stability report of a network (exit 1 if unstable)")
    add_network_arguments(check)
    check.add_argument("--devices", action="store_true", help="also print the per-device table")
    check.add_argument("--out", type=Path, help="write the per-device table to CSV/JSON")
    check.set_defaults(func=_check)
    for name in _SUBCOMMAND_MODULES:
        import_module(name, __package__).add_cli(sub)
    figures = sub.add_parser("figures", help="regenerate every figure (paper_figures)")
    figures.add_argument("--quick", action="store_true", help="low fidelity, about a minute")
    figures.add_argument("--out", type=Path, default=Path("figures"), help="output folder")
    figures.set_defaults(func=_figures)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except ValueError as err:
        print(f"moa-stability {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
