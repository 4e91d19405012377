r"""Figure 11: a scheduling discipline that makes an MoA network unstable below capacity.

Left: the smallest MoA network, :math:`n = 2`, :math:`(M, k) = (1, 1)`, propose 0.05 s,
aggregate 1 s, both devices at load 0.9
(:func:`moa_stability.experiments.instability_search.own_user_first_example`). Under FCFS the
total number of jobs stays bounded; when each device serves its own user's jobs first
(own-user-first, preemptive or not) it grows linearly, in the simulator (from empty queues)
and in the fluid model (from five prompts of device 0; :func:`moa_stability.analysis.fluid.
integrate_fluid`) at the same rate. The two devices' aggregates starve each other
(Lu-Kumar): :mod:`moa_stability.experiments.instability_search` explains why.

Right: the fluid-model search (the committed table ``moa_stability/data/
instability_search.csv``): the share of arriving jobs the fluid leaves behind against the
network's max load, per priority discipline, for every network the search evaluated; crosses
mark growth that the fine re-check (20 000 steps) does not reproduce.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from moa_stability.analysis.certificate import prompt_state
from moa_stability.analysis.fluid import integrate_fluid, moa_fluid_network, moa_priority
from moa_stability.experiments.instability_search import TABLE, own_user_first_example
from moa_stability.simulation.simulate import simulate

from .style import CONFIG_COLOURS, FigureOutput, figure

TITLE = "Own-user-first scheduling: unstable at load 0.9, where FCFS is stable"
LOAD = 0.9
SEED = 11
HORIZON_S = {False: 20_000.0, True: 4_000.0}  # by quick
RUNS = (("fcfs", False), ("own-user-first", False), ("own-user-first", True))
INITIAL_PROMPTS = 5.0
"""Prompts of device 0 at every stage in the fluid's initial state (an empty fluid stays
empty under any discipline)."""


def _label(discipline: str, preemptive: bool) -> str:
    return ("preemptive " if preemptive else "") + discipline


def paths(quick: bool) -> tuple[pd.DataFrame, dict[str, float]]:
    """Simulated total jobs (one replication, binned) and the fluid's total, per discipline."""
    net = own_user_first_example(LOAD)
    horizon = HORIZON_S[quick]
    frames, slopes = [], {}
    for discipline, preemptive in RUNS:
        r = simulate(net, method="events", horizon=horizon, seed=SEED, record_paths=True,
                     discipline=discipline, preemptive=preemptive, max_jobs=200_000,
                     progress=False)  # fmt: skip
        frames.append(pd.DataFrame({
            "series": f"simulated, {_label(discipline, preemptive)}",
            "time_s": r.paths.index.to_numpy(), "total_jobs": r.paths.sum(axis=1).to_numpy(),
        }))  # fmt: skip
        slopes[_label(discipline, preemptive)] = r.growth_slope
    fluid = moa_fluid_network(net)
    prompts = np.zeros((net.n, net.M + 1))
    prompts[0] = INITIAL_PROMPTS
    x0 = prompt_state(fluid, prompts)
    for discipline in ("fcfs", "own-user-first"):
        path = integrate_fluid(fluid, x0, horizon_s=horizon, samples=200, step_s=0.01,
                               priority=moa_priority(net, fluid, discipline))  # fmt: skip
        frames.append(pd.DataFrame({"series": f"fluid, {discipline}", "time_s": path.times_s,
                                    "total_jobs": path.total}))  # fmt: skip
        slopes[f"fluid {discipline}"] = path.growth_rate_per_s
    return pd.concat(frames, ignore_index=True), slopes


def plot(table: pd.DataFrame, search: pd.DataFrame) -> object:
    fig, (left, right) = figure(1, 2, width=11.0, height=4.2)
    colours = {"fcfs": "tab:blue", "own-user-first": "tab:red",
               "preemptive own-user-first": "tab:orange"}  # fmt: skip
    for series, part in table.groupby("series", sort=False):
        kind, rule = series.split(", ", 1)
        if kind == "simulated":
            style = {"lw": 1.0, "color": colours[rule]}
        else:
            style = {"lw": 1.6, "color": "k", "ls": "--" if rule == "own-user-first" else ":"}
        left.plot(part["time_s"], part["total_jobs"], label=series, **style)
    left.set(
        xlabel="time (s)",
        ylabel="jobs in the system",
        title=f"n = 2, (M, k) = (1, 1), aggregate 1 s, propose 0.05 s, load {LOAD:g}",
    )
    left.legend(fontsize=7, loc="upper left")
    searched = search[search.stage != "best"]
    groups = searched.groupby("discipline")
    for colour, (discipline, part) in zip(CONFIG_COLOURS[: groups.ngroups], groups, strict=True):
        right.scatter(part["max_load"], part["relative_growth"].clip(lower=0), s=10,
                      color=colour, alpha=0.7, label=discipline)  # fmt: skip
    fake = searched[searched.fluid_grows.astype(bool) & ~searched.fine_grows.astype(bool)]
    right.scatter(fake["max_load"], fake["relative_growth"], s=40, marker="x", color="k",
                  label="grows only at coarse steps (re-check drains)")  # fmt: skip
    right.set(
        xlabel="max device load",
        ylabel="fluid growth / job arrival rate",
        title=f"fluid search: {len(searched)} evaluations",
    )
    right.legend(fontsize=7, loc="upper left")
    return fig


def make(quick: bool = False) -> FigureOutput:
    """Simulate the three disciplines (quick: a fifth of the horizon), integrate the fluid,
    and read the committed search table."""
    table, slopes = paths(quick)
    search = pd.read_csv(TABLE)
    best = search[search.stage == "best"]
    grows = best[best.fine_grows.astype(bool) & best.join_exact.astype(bool)]
    line = (
        f"load {LOAD:g}: simulated growth FCFS {slopes['fcfs']:.3g}, own-user-first "
        f"{slopes['own-user-first']:.3g}, preemptive {slopes['preemptive own-user-first']:.3g} "
        f"jobs/s; fluid {slopes['fluid own-user-first']:.3g} (FCFS {slopes['fluid fcfs']:.2g}); "
        f"search: {len(grows)} of {len(best)} disciplines' best networks grow below capacity "
        "after the fine re-check"
    )
    return FigureOutput(plot(table, search), table, line)
