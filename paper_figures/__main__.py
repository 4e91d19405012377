"""``python -m paper_figures [--quick] [--out DIR] [--only NAME,...]``: regenerate the figures.

Every registered figure is written as PNG, PDF and CSV into ``DIR`` (default ``figures/``) and
one line with its headline numbers is printed.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from tqdm.auto import tqdm

from . import FIGURES, figure_module, render


def _names(text: str | None) -> list[str]:
    if text is None:
        return list(FIGURES)
    names = [name.strip() for name in text.split(",") if name.strip()]
    for name in names:
        figure_module(name)  # raises ValueError on an unknown name
    return names


def _writable_folder(out: Path) -> None:
    """Create ``out`` now, so that a bad folder fails before minutes of computing."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"--out={out}: cannot create this folder ({err.strerror})") from err


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m paper_figures", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="low fidelity (about 40 s): fewer points, shorter simulations",
    )
    parser.add_argument(
        "--out", type=Path, default=Path("figures"), help="output folder (default: figures/)"
    )
    parser.add_argument(
        "--only", metavar="NAME,...", help=f"comma-separated subset of: {', '.join(FIGURES)}"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Regenerate the figures; returns the exit status (2 on a bad argument)."""
    args = build_parser().parse_args(argv)
    try:
        names = _names(args.only)
        _writable_folder(args.out)
    except ValueError as err:
        print(f"paper_figures: error: {err}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    for name in tqdm(names, desc="figures", unit="fig"):
        began = time.perf_counter()
        result = render(name, args.out, quick=args.quick)
        tqdm.write(f"{name} ({time.perf_counter() - began:.0f} s): {result.headline}")
    tqdm.write(f"{len(names)} figures in {args.out}/ ({time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
