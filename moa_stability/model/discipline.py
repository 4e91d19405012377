r"""Scheduling disciplines of a device: the names and the priority level of a job.

A device serves its jobs by a static priority over job classes, FCFS within a priority level
(``"fcfs"``: one level). A job's class is (device :math:`i`, origin :math:`j`, stage :math:`m`),
stages :math:`0..M-1` the proposer layers and :math:`M` the aggregate (with :math:`M = 0` the
only stage is the single propose job). Level 0 is served first:

* ``later-layer-first``: level :math:`M - m` (prompts nearly done first);
* ``earlier-layer-first``: level :math:`m`;
* ``aggregate-first``: the aggregate (:math:`m = M \ge 1`) ahead of one level of the rest;
* ``own-user-first``: jobs of the device's own prompts (:math:`i = j`) ahead of helper jobs.

Whether a device interrupts a lower-level job when a higher one arrives (preemptive-resume) is
a separate flag of the simulator. The fluid model (``analysis.fluid``) and the simulator read
the rule from here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .network import _fail

DISCIPLINES = (
    "fcfs",
    "later-layer-first",
    "earlier-layer-first",
    "aggregate-first",
    "own-user-first",
)
"""Scheduling disciplines of a device (static priority by job class; FCFS within a level)."""


def discipline_field(value: Any) -> str:
    """``value`` as one of :data:`DISCIPLINES`, else a ValueError naming ``discipline``."""
    if not (isinstance(value, str) and value in DISCIPLINES):
        raise _fail("discipline", repr(value), "unknown discipline", f"use one of {DISCIPLINES}")
    return value


def priority_rank(discipline: str, M: int, device: int, origin: int, stage: int) -> int:
    """Priority rank of a job (0 served first) at ``device`` of a prompt born at ``origin``
    in ``stage`` (``0..M``; ``M`` the aggregate), under ``discipline`` (module docstring).
    Ranks order the jobs; they need not be consecutive."""
    discipline = discipline_field(discipline)
    if discipline == "later-layer-first":
        return M - stage
    if discipline == "earlier-layer-first":
        return stage
    if discipline == "aggregate-first":
        return 0 if (stage == M and M) else 1
    if discipline == "own-user-first":
        return 0 if device == origin else 1
    return 0


def level_table(discipline: str, M: int) -> np.ndarray:
    """``level[stage, own]``: the priority level (0 served first, levels consecutive from 0)
    of a stage-``stage`` job on its origin (``own = 1``) or on a helper (``own = 0``); one
    row per stage (``M + 1`` rows), all zeros for ``"fcfs"``. The aggregate (row ``M``) runs
    on its origin only, so its helper cell repeats the origin's level."""
    ranks = np.array(
        [[priority_rank(discipline, M, own, 1, m) for own in (0, 1)] for m in range(M + 1)]
    )
    ranks[M, 0] = ranks[M, 1]
    # Dense levels: a simulator keeps one queue per level, so skip the ranks nobody has.
    return np.unique(ranks, return_inverse=True)[1].reshape(ranks.shape).astype(np.int64)


__all__ = ["DISCIPLINES", "discipline_field", "level_table", "priority_rank"]
