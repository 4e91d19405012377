"""The benchmarks' quiet-machine guard: wall-clock timings taken while other work runs are
wrong, so every benchmark refuses a busy machine the same way (``--force`` overrides)."""

from __future__ import annotations

import sys

from moa_stability.llm.measure import QUIET_LOAD, MachineBusyError, check_quiet


def quiet_or_exit(force: bool) -> float:
    """The 1-minute load average; exit with status 2 and the reason when it is above
    :data:`~moa_stability.llm.measure.QUIET_LOAD`, unless ``force``."""
    try:
        return check_quiet(None if force else QUIET_LOAD)
    except MachineBusyError as err:
        print(f"{err}; or pass --force", file=sys.stderr)
        raise SystemExit(2) from None
