"""Command line: ``moa-stability check | simulate | optimize | measure | sweep | figures``.

The only layer that knows argparse. One module per subcommand, each beside nothing but the
library function it drives (``register(subparsers)`` adds its flags, ``run(args)`` returns the
exit status), so a subcommand reads top to bottom in one short file and the library stays
free of parsing. Every subcommand takes a network from flags or from a TOML/JSON file
(``--network FILE``, :mod:`moa_stability.cli.network`). User mistakes print one line to
stderr and exit with status 2, never a traceback; ``check`` and ``simulate`` exit with 1 when
the network is unstable.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .._version import __version__
from ..llm.measure import LLMExtraMissingError, MachineBusyError
from . import check, figures, measure, optimize, plan, simulate, sweep, testbed

EPILOG = """\
examples:
  moa-stability check --n 8 --M 2 --k 2 --service-time 1.2,1.2,1.2,1.2,4,4,4,4 \\
      --topology ring --load 0.8 --latency
  moa-stability simulate --network examples/stable.toml --method events
  moa-stability optimize --service-time 1,1,1,4 --devices

Run 'moa-stability COMMAND --help' for a command's flags and examples. Also:
python -m moa_stability COMMAND ...
"""

# In the order ``--help`` lists them.
_SUBCOMMANDS = (check, simulate, optimize, plan, measure, testbed, sweep, figures)
# What a user can cause and fix: bad values, a missing file, the [llm] extra not installed,
# a machine too busy to measure on.
_USER_ERRORS = (ValueError, FileNotFoundError, LLMExtraMissingError, MachineBusyError)


class _OneLineParser(argparse.ArgumentParser):
    """argparse's parser, but a usage mistake is one line (not the usage block) and exit 2,
    like every other user error of the command line."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}; see '{self.prog} --help'\n")


def build_parser() -> argparse.ArgumentParser:
    """The ``moa-stability`` parser with every subcommand."""
    parser = _OneLineParser(
        prog="moa-stability",
        description="Stability, latency and load balancing of distributed Mixture-of-Agents "
        "networks.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in _SUBCOMMANDS:
        command.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; returns the exit status (0 ok, 1 unstable, 2 a user error).

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments after the program name (default ``sys.argv[1:]``).
    """
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except _USER_ERRORS as err:
        print(f"moa-stability {args.command}: error: {err}", file=sys.stderr)
        return 2
    except MemoryError as err:
        # Sizes the field checks accept can still exceed this machine (the network is built
        # up front, so this is mostly caught there): one line, not numpy's traceback.
        reason = str(err) or "MemoryError"
        print(
            f"moa-stability {args.command}: error: out of memory ({reason}); the inputs are "
            "too large for this machine: use fewer devices n, layers M or replications",
            file=sys.stderr,
        )
        return 2


__all__ = ["build_parser", "main"]
