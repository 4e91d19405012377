r"""The search for MoA networks that a natural priority discipline makes unstable below capacity.

Every :math:`\rho_i < 1` is necessary for stability; under FCFS on a Kelly-type network it is
also sufficient, but static priorities can starve classes that feed each other (Lu-Kumar 1991,
Rybko-Stolyar 1992). MoA routing is re-entrant: a prompt returns to its origin in every layer,
and its next stage waits at a join for its helpers. :func:`instability_search` looks for such
networks with the fluid model (:func:`moa_stability.analysis.certificate.fluid_check`):

1. **random stage**: networks drawn from :data:`REGION` (heterogeneous per-type and per-device
   service means, heterogeneous rates, complete / ring / star graphs, uniform or optimised
   selection, :math:`M` 1..3, :math:`k` 1..2, max load 0.6..0.95); each is integrated under
   every priority discipline from the prompt states of ``fluid_check(per_origin=True)``;
2. **local stage**: the best networks per discipline are improved by a hill climb on the log
   service means at the same max load, keeping a step when the fluid's relative growth (its
   slope over the jobs arriving per second) rises;
3. **load threshold**: for the best network per discipline, the smallest max load at which
   the fluid still grows (bisection).

The fluid model is the same for preemptive and non-preemptive priority (a single job's
service is negligible at fluid scale); :func:`confirm_by_simulation` checks candidates in the
simulator, both ways, on several seeds. The committed table is
``moa_stability/data/instability_search.csv`` with ``instability_search.json`` (command, seed,
region, timing); docs/model.md section 2.7 gives the result.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..analysis.certificate import fluid_check
from ..analysis.optimize import max_stable_rate
from ..model.discipline import DISCIPLINES
from ..model.loads import load_profile
from ..model.network import JOB_TYPES, MoANetwork, count_field
from ..simulation.simulate import simulate

DATA = Path(__file__).resolve().parents[1] / "data"
TABLE = DATA / "instability_search.csv"
METADATA = DATA / "instability_search.json"
SEED = 2026
PRIORITY_DISCIPLINES = tuple(d for d in DISCIPLINES if d != "fcfs")
"""The disciplines searched (FCFS is the baseline of the best candidates)."""

REGION: dict[str, Any] = {
    "n": [2, 6],
    "max_fluid_classes": 72,
    "M": [1, 3],
    "k": [1, 2],
    "topology": ["complete", "ring", "star"],
    "selection": ["uniform", "optimised"],
    "service_mean_s": [0.02, 1.0],
    "service_mean_law": "log-uniform, independently per job type and device",
    "arrival_rate_ratio": [0.25, 1.0],
    "arrival_rate_law": "log-uniform per device, then all scaled to the max load",
    "max_load": [0.6, 0.95],
}
"""The region the random stage draws from. ``max_fluid_classes`` bounds
:math:`n^2(M+1)`, the size of the fluid model, so that the search stays within minutes."""

FULL = {
    "networks": 40,
    "climbers": 2,
    "climb_steps": 8,
    "bisections": 6,
    "max_steps": 1500,
    "fine_steps": 20_000,
}
QUICK = {
    "networks": 2,
    "climbers": 1,
    "climb_steps": 1,
    "bisections": 2,
    "max_steps": 400,
    "fine_steps": 4_000,
}
"""Sizes of the committed run and of ``--quick`` (the tests). ``max_steps``: integration steps of
the search; ``fine_steps``: of the re-check of every network whose fluid grows
(:func:`recheck`): at coarse steps the one-step release lag can fake a growth."""


def own_user_first_example(load: float = 0.9) -> MoANetwork:
    r"""The smallest MoA network that own-user-first makes unstable below capacity.

    :math:`n = 2`, :math:`M = k = 1` (each prompt is proposed on both devices, then aggregated
    on its origin), propose and refine 0.05 s, aggregate 1 s, equal rates scaled to max load
    ``load``. Own-user-first gives the origin's own jobs, its aggregates included, priority
    over the helper job of the other device's prompt. While device 0 serves its aggregates,
    device 1's helper jobs wait behind them, so device 1's aggregates are not released and it
    serves device 0's helper jobs, which feed device 0's aggregates again: the two devices'
    aggregates form a virtual station (Lu-Kumar) with load :math:`\lambda_0 a_0 + \lambda_1
    a_1 \approx 2 \times 0.86 > 1`, although each device's load is ``load``.
    """
    table = {"propose": 0.05, "refine": 0.05, "aggregate": 1.0}
    net = MoANetwork(n=2, M=1, k=1, arrival_rate=1.0, service_time=table)
    return net.at_load(load)


def _random_network(rng: np.random.Generator) -> tuple[MoANetwork, str]:
    """One network of :data:`REGION`, and its selection label."""
    lo, hi = REGION["n"]
    while True:
        n, M = int(rng.integers(lo, hi + 1)), int(rng.integers(1, REGION["M"][1] + 1))
        if n * n * (M + 1) <= REGION["max_fluid_classes"]:
            break
    topology = str(rng.choice(REGION["topology"]))
    if topology == "ring" and n < 3 or n == 2:
        topology = "complete"  # ring needs n >= 3; a 2-device star is the complete graph
    degree = n - 1 if topology == "complete" else 2 if topology == "ring" else 1
    k = int(rng.integers(1, min(REGION["k"][1], degree) + 1))
    lo_s, hi_s = np.log(REGION["service_mean_s"])
    means = np.exp(rng.uniform(lo_s, hi_s, size=(3, n)))
    ratios = np.exp(rng.uniform(*np.log(REGION["arrival_rate_ratio"]), size=n))
    net = MoANetwork(n=n, M=M, k=k, arrival_rate=ratios, service_time=means, topology=topology)
    selection = str(rng.choice(REGION["selection"]))
    if selection == "optimised":
        net = net.replace(selection=max_stable_rate(net, optimise_selection=True).selection)
    return net.scaled(rng.uniform(*REGION["max_load"]) / load_profile(net).max_load), selection


def _evaluate(net: MoANetwork, discipline: str, max_steps: int) -> dict[str, Any]:
    check = fluid_check(net, discipline, per_origin=True, max_steps=max_steps)
    return {
        "discipline": discipline,
        "fluid_growth_per_s": check.growth_rate_per_s,
        "relative_growth": check.relative_growth,
        "fluid_grows": check.grew,
        "fluid_drained": check.drained,
    }


def _describe(net: MoANetwork, selection: str) -> dict[str, Any]:
    """The network as table columns (``network_from_row`` rebuilds it)."""
    topology = "complete" if net.is_complete else _topology_name(net)
    return {
        "n": net.n,
        "M": net.M,
        "k": int(net.k[0]),
        "topology": topology,
        "selection": selection,
        "max_load": load_profile(net).max_load,
        "arrival_rate_per_s": json.dumps(net.arrival_rate.round(12).tolist()),
        "service_time_s": json.dumps(net.service_time.round(12).tolist()),
        "selection_matrix": ""
        if net.selection is None
        else json.dumps([s.toarray().round(12).tolist() for s in net.selection]),
    }


def _topology_name(net: MoANetwork) -> str:
    degrees = np.asarray(net.adjacency.sum(axis=1)).ravel()
    return "star" if degrees.max() == net.n - 1 and degrees.min() == 1 else "ring"


def network_from_row(row: pd.Series | dict) -> MoANetwork:
    """The network of one row of the search table."""
    selection = row["selection_matrix"]
    return MoANetwork(
        n=int(row["n"]),
        M=int(row["M"]),
        k=int(row["k"]),
        arrival_rate=json.loads(row["arrival_rate_per_s"]),
        service_time=np.array(json.loads(row["service_time_s"])),
        topology=row["topology"],
        selection=None
        if not isinstance(selection, str) or not selection
        else [np.array(s) for s in json.loads(selection)],
    )


def _climb(
    net: MoANetwork, selection: str, discipline: str, steps: int, max_steps: int, rng
) -> tuple[MoANetwork, dict[str, Any], list[dict[str, Any]]]:
    """Hill climb on the log service means at the same max load (module docstring)."""
    load = load_profile(net).max_load
    best, score = net, _evaluate(net, discipline, max_steps)
    rows = []
    for _ in range(steps):
        means = best.service_time * np.exp(rng.normal(0.0, 0.5, size=best.service_time.shape))
        means = np.clip(means, *REGION["service_mean_s"])
        trial = best.replace(service_time=means)
        trial = trial.scaled(load / load_profile(trial).max_load)
        result = _evaluate(trial, discipline, max_steps)
        rows.append({**_describe(trial, selection), **result, "stage": "local"})
        if result["relative_growth"] > score["relative_growth"]:
            best, score = trial, result
    return best, score, rows


def _threshold(
    net: MoANetwork, discipline: str, grows: bool, bisections: int, max_steps: int
) -> float:
    """Smallest max load (to the network's load over ``2^bisections``) at which the fluid
    grows; nan if it does not grow (``grows``) at the network's own load."""
    load = load_profile(net).max_load
    if not grows:
        return math.nan
    lo, hi = 0.0, load
    for _ in range(bisections):
        mid = (lo + hi) / 2
        grows = fluid_check(net.scaled(mid / load), discipline, per_origin=True,
                            max_steps=max_steps).grew  # fmt: skip
        lo, hi = (lo, mid) if grows else (mid, hi)
    return hi


def instability_search(
    seed: int = SEED, quick: bool = False, known: tuple[MoANetwork, ...] = ()
) -> pd.DataFrame:
    """Run the search (module docstring); one row per fluid evaluation.

    Parameters
    ----------
    seed : int
        Seeds the random networks and the hill climb; same seed, same table.
    quick : bool
        The small sizes of :data:`QUICK` (seconds) instead of :data:`FULL` (minutes).
    known : tuple of MoANetwork
        Networks evaluated before the random ones (``stage`` ``known``), e.g.
        :func:`own_user_first_example`: the search must rank a known instability first.

    Returns
    -------
    pandas.DataFrame
        Columns: ``stage`` (``known``, ``random``, ``local``, ``best``), the network
        (:func:`network_from_row` rebuilds it), ``discipline``, ``fluid_growth_per_s``,
        ``relative_growth``, ``fluid_grows``, ``fluid_drained``; ``best`` rows add
        ``fcfs_growth_per_s`` (the same network under FCFS) and ``threshold_max_load``
        (smallest max load at which it still grows).
    """
    sizes = QUICK if quick else FULL
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    drawn = [(net, "explicit" if net.selection is not None else "uniform", "known")
             for net in known]  # fmt: skip
    drawn += [(*_random_network(rng), "random") for _ in range(sizes["networks"])]
    networks = []
    for net, selection, stage in drawn:
        networks.append((net, selection))
        for d in PRIORITY_DISCIPLINES:
            rows.append({**_describe(net, selection), **_evaluate(net, d, sizes["max_steps"]),
                         "stage": stage, "network": len(networks) - 1})  # fmt: skip
    table = pd.DataFrame(rows)
    for d in PRIORITY_DISCIPLINES:
        ranked = table[table.discipline == d].sort_values("relative_growth", ascending=False)
        champions = []
        for index in ranked.network.head(sizes["climbers"]):
            net, selection = networks[int(index)]
            best, score, climbed = _climb(
                net, selection, d, sizes["climb_steps"], sizes["max_steps"], rng
            )
            rows += climbed
            champions.append((score["relative_growth"], best, selection, score))
        _, best, selection, score = max(champions, key=lambda c: c[0])
        fcfs = fluid_check(best, "fcfs", per_origin=True, max_steps=sizes["max_steps"])
        threshold = _threshold(
            best, d, score["fluid_grows"], sizes["bisections"], sizes["max_steps"]
        )
        rows.append({**_describe(best, selection), **score, "stage": "best",
                     "fcfs_growth_per_s": fcfs.growth_rate_per_s,
                     "threshold_max_load": threshold})  # fmt: skip
    out = recheck(pd.DataFrame(rows).drop(columns="network"), sizes["fine_steps"])
    return out[["stage", *[c for c in out.columns if c != "stage"]]]


def recheck(table: pd.DataFrame, fine_steps: int = FULL["fine_steps"]) -> pd.DataFrame:
    """Re-run every row whose coarse fluid grows at ``fine_steps`` integration steps.

    Adds ``fine_growth_per_s`` and ``fine_grows`` (NaN and False where the coarse fluid did not
    grow) and ``join_exact`` (uniform selection: the fluid's join is exact; with inclusion
    probabilities it waits for every possible helper, a bound that can fake growth). Only
    ``fine_grows`` on an exact join counts as a candidate; the ``threshold_max_load`` of a best
    row that does not is set to NaN. Uses no randomness: the table of a seed stays the same.
    """
    out = table.copy()
    out["join_exact"] = out["selection"] == "uniform"
    out["fine_growth_per_s"] = np.nan
    out["fine_grows"] = False
    for index in out.index[out["fluid_grows"].astype(bool)]:
        row = out.loc[index]
        check = fluid_check(network_from_row(row), row["discipline"], per_origin=True,
                            max_steps=fine_steps)  # fmt: skip
        out.loc[index, ["fine_growth_per_s", "fine_grows"]] = [check.growth_rate_per_s, check.grew]
    if "threshold_max_load" in out:
        counts = out["fine_grows"].astype(bool) & out["join_exact"]
        out.loc[~counts, "threshold_max_load"] = np.nan
    return out


def confirm_by_simulation(
    net: MoANetwork,
    discipline: str,
    seeds: tuple[int, ...] = (1, 2, 3),
    horizon_s: float | None = None,
    preemptive: tuple[bool, ...] = (False, True),
) -> pd.DataFrame:
    """Simulate ``net`` under ``discipline`` and under FCFS on several seeds, beside the fluid.

    A candidate is confirmed when every priority run has verdict ``unstable`` with a growth
    slope significantly above 0 (its CI excludes 0) and close to the fluid's slope (relevant:
    the queue grows linearly at the fluid rate), while FCFS does not grow.

    Parameters
    ----------
    net : MoANetwork
    discipline : str
    seeds : tuple of int
    horizon_s : float, optional
        Simulated seconds per run (default :math:`2\\cdot10^4` times the largest mean).
    preemptive : tuple of bool
        Which priority variants to simulate.

    Returns
    -------
    pandas.DataFrame
        One row per (discipline, preemptive, seed): ``growth_slope_per_s``, its CI, the
        verdict, the per-device utilisation and the fluid's slope.
    """
    horizon = 2e4 * float(net.service_time.max()) if horizon_s is None else float(horizon_s)
    fluid = {d: fluid_check(net, d, per_origin=True).growth_rate_per_s
             for d in ("fcfs", discipline)}  # fmt: skip
    rows = []
    runs = [("fcfs", False)] + [(discipline, p) for p in preemptive]
    for d, pre in runs:
        for seed in seeds:
            seed = count_field("seed", seed, 0)
            r = simulate(net, method="events", horizon=horizon, seed=seed, discipline=d,
                         preemptive=pre, max_jobs=1_000_000, progress=False)  # fmt: skip
            rows.append({
                "discipline": d, "preemptive": pre, "seed": seed, "horizon_s": r.horizon_s,
                "growth_slope_per_s": r.growth_slope, "growth_slope_ci": r.growth_slope_ci,
                "verdict": r.verdict, "fluid_growth_per_s": max(fluid[d], 0.0),
                "utilisation": json.dumps(r.utilisation.round(4).tolist()),
            })  # fmt: skip
    return pd.DataFrame(rows)


def write_table(table: pd.DataFrame, command: str, seed: int, seconds: float) -> None:
    """Write the committed CSV and its JSON metadata."""
    table.to_csv(TABLE, index=False, float_format="%.10g")
    meta = {
        "description": "Fluid-model search for MoA networks unstable below capacity under a "
        "priority discipline (moa_stability.experiments.instability_search)",
        "command": command,
        "seed": seed,
        "region": REGION,
        "sizes": FULL,
        "disciplines": list(PRIORITY_DISCIPLINES),
        "growth_rule": "fluid_check(per_origin=True): slope over the second half of the "
        "horizon > 1e-3 x jobs arriving per second and the total ends above its start",
        "cpu_seconds": round(seconds, 1),
        "job_types": list(JOB_TYPES),
    }
    METADATA.write_text(json.dumps(meta, indent=1) + "\n")


if __name__ == "__main__":  # python -m moa_stability.experiments.instability_search [--quick]
    import sys

    if "--recheck" in sys.argv[1:]:  # the re-check alone, on the committed table
        start = time.process_time()
        table = recheck(pd.read_csv(TABLE))
        table.to_csv(TABLE, index=False, float_format="%.10g")
        meta = json.loads(METADATA.read_text())
        meta["recheck_cpu_seconds"] = round(time.process_time() - start, 1)
        METADATA.write_text(json.dumps(meta, indent=1) + "\n")
        sys.exit(0)
    quick = "--quick" in sys.argv[1:]
    start = time.process_time()
    result = instability_search(SEED, quick=quick)
    best = result[result.stage == "best"]
    print(best.drop(columns=["service_time_s", "selection_matrix"]).to_string())
    if not quick:
        write_table(result, "python -m moa_stability.experiments.instability_search", SEED,
                    time.process_time() - start)  # fmt: skip
