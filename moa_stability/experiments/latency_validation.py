r"""Validation of the analytic latency (:func:`moa_stability.analysis.latency.latency`) against
the event simulator on a fixed set of networks.

:func:`validation_networks` builds the set (n from 2 to 32; M 0..3; k 1..3; equal,
per-device and per-type service means; complete, ring, star and random-regular graphs; uniform
and optimised selection; exponential, deterministic and gamma service; max load 0.3..0.95).
:func:`simulate_cases` simulates them into a cache directory, one JSON file per network, so a
long run can be split into chunks and resumed; :func:`validation_table` joins the cached
simulations with ``bound`` and ``estimate`` (milliseconds each). The committed table is
``moa_stability/data/latency_validation.csv`` with its metadata in
``latency_validation.json``; :func:`write_table` writes both.

Floors checked by the tests (``docs/latency.md``): the estimate's mean within 10% of the
simulated mean, or within its CI, wherever max load <= 0.9; its p95 and p99 within 20%; the
bound never below the simulated mean by more than the CI.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..analysis.latency import latency
from ..analysis.optimize import max_stable_rate
from ..model.loads import loads
from ..model.network import MoANetwork, random_regular_graph
from ..simulation.simulate import simulate

DATA = Path(__file__).resolve().parents[1] / "data"
TABLE = DATA / "latency_validation.csv"
METADATA = DATA / "latency_validation.json"
PROMPTS_PER_REPLICATION = 100_000
"""Simulated prompts per replication (four times as many at max load above 0.9)."""
REPLICATIONS = 4
SEED = 2026


@dataclass(frozen=True)
class Case:
    """One validation network: a name, the network (scaled to ``max_load``) and its service law."""

    name: str
    net: MoANetwork
    max_load: float
    service: str = "exponential"
    scv: float = 1.0
    topology: str = "complete"
    selection: str = "uniform"
    means: str = "equal"
    held_out: bool = False
    """Added after the estimate's constants were chosen (docs/latency.md), so out of sample."""


def _at_load(net: MoANetwork, target: float) -> MoANetwork:
    return net.scaled(target / float(loads(net).max()))


def _optimised(net: MoANetwork) -> MoANetwork:
    return net.replace(selection=max_stable_rate(net, optimise_selection=True).selection)


def validation_networks() -> list[Case]:
    """The validation set, in a fixed order (the random graphs have fixed seeds)."""
    cases: list[Case] = []

    def add(name: str, net: MoANetwork, targets: Iterable[float], **kw: Any) -> None:
        for rho in targets:
            cases.append(Case(f"{name}@{rho:g}", _at_load(net, rho), rho, **kw))

    for n, M, k in [(4, 2, 2), (4, 1, 1), (4, 1, 3), (4, 2, 1), (4, 2, 3), (8, 2, 2), (32, 2, 2)]:
        add(f"complete n={n} M={M} k={k}", MoANetwork(n=n, M=M, k=k, arrival_rate=1.0), (0.5, 0.8))
    for n, M, k in [(2, 1, 1), (3, 3, 2), (16, 1, 3), (16, 3, 1)]:
        add(f"complete n={n} M={M} k={k}", MoANetwork(n=n, M=M, k=k, arrival_rate=1.0), (0.3, 0.9))
    add("complete n=4 M=2 k=2", MoANetwork(n=4, M=2, k=2, arrival_rate=1.0), (0.95,))
    add("M/M/1 pair n=2 M=0", MoANetwork(n=2, arrival_rate=1.0), (0.5, 0.9))
    hetero = MoANetwork(n=8, M=2, k=2, arrival_rate=1.0, service_time=np.linspace(1.0, 2.5, 8))
    add("complete n=8 M=2 k=2 device means", hetero, (0.5, 0.8, 0.95), means="device")
    add(
        "complete n=8 M=2 k=2 device means optimised",
        _optimised(hetero),
        (0.5, 0.8, 0.95),
        means="device",
        selection="optimised",
    )
    per_type = {"propose": 1.0, "refine": 1.5, "aggregate": 2.0}
    add(
        "complete n=4 M=2 k=2 type means",
        MoANetwork(n=4, M=2, k=2, arrival_rate=1.0, service_time=per_type),
        (0.5, 0.8),
        means="type",
    )
    add(
        "complete n=8 M=3 k=1 type means",
        MoANetwork(n=8, M=3, k=1, arrival_rate=1.0, service_time=per_type),
        (0.5, 0.8),
        means="type",
    )
    for n, M, k in [(8, 2, 1), (8, 1, 2), (16, 2, 2)]:
        add(
            f"ring n={n} M={M} k={k}",
            MoANetwork(n=n, M=M, k=k, arrival_rate=1.0, topology="ring"),
            (0.5, 0.8),
            topology="ring",
        )
    star = MoANetwork(n=6, M=1, k=1, arrival_rate=1.0, topology="star")
    add("star n=6 M=1 k=1", star, (0.5, 0.8), topology="star")
    add(
        "star n=6 M=1 k=1 optimised",
        _optimised(star),
        (0.5, 0.8),
        topology="star",
        selection="optimised",
    )
    for n, d, M, k in [(16, 4, 2, 2), (32, 3, 3, 3), (32, 4, 1, 2)]:
        graph = random_regular_graph(n, d, seed=n + d)
        add(
            f"random-regular n={n} d={d} M={M} k={k}",
            MoANetwork(n=n, M=M, k=k, arrival_rate=1.0, topology=graph),
            (0.5, 0.8, 0.9),
            topology="random-regular",
        )
    rates = np.linspace(0.5, 1.5, 8)
    add(
        "complete n=8 M=1 k=2 device rates",
        MoANetwork(n=8, M=1, k=2, arrival_rate=rates, service_time=np.linspace(1.5, 1.0, 8)),
        (0.5, 0.8),
        means="device",
    )
    paper = MoANetwork(n=4, M=2, k=2, arrival_rate=1.0)
    for service, scv in [("deterministic", 0.0), ("gamma", 0.25), ("gamma", 4.0)]:
        add(
            f"complete n=4 M=2 k=2 {service} scv={scv:g}",
            paper,
            (0.5, 0.8),
            service=service,
            scv=scv,
        )
    add("M/D/1 pair n=2 M=0", MoANetwork(n=2, arrival_rate=1.0), (0.8,), service="deterministic")
    add(
        "M/G/1 pair n=2 M=0 gamma scv=4",
        MoANetwork(n=2, arrival_rate=1.0),
        (0.8,),
        service="gamma",
        scv=4.0,
    )
    # Held out: non-exponential service on other shapes and graphs, added after the fit.
    ring = MoANetwork(n=8, M=2, k=1, arrival_rate=1.0, topology="ring")
    add(
        "ring n=8 M=2 k=1 deterministic",
        ring,
        (0.5, 0.8),
        topology="ring",
        service="deterministic",
        scv=0.0,
        held_out=True,
    )
    regular = MoANetwork(
        n=16, M=2, k=2, arrival_rate=1.0, topology=random_regular_graph(16, 4, seed=20)
    )
    add(
        "random-regular n=16 d=4 M=2 k=2 gamma scv=0.5",
        regular,
        (0.8,),
        topology="random-regular",
        service="gamma",
        scv=0.5,
        held_out=True,
    )
    add(
        "complete n=8 M=3 k=1 gamma scv=2",
        MoANetwork(n=8, M=3, k=1, arrival_rate=1.0),
        (0.7,),
        service="gamma",
        scv=2.0,
        held_out=True,
    )
    add(
        "complete n=8 M=1 k=2 lognormal scv=1.5",
        MoANetwork(n=8, M=1, k=2, arrival_rate=1.0),
        (0.6,),
        service="lognormal",
        scv=1.5,
        held_out=True,
    )
    add(
        "complete n=16 M=2 k=3 deterministic",
        MoANetwork(n=16, M=2, k=3, arrival_rate=1.0),
        (0.9,),
        service="deterministic",
        scv=0.0,
        held_out=True,
    )
    add(
        "star n=6 M=1 k=1 gamma scv=4",
        star,
        (0.8,),
        topology="star",
        service="gamma",
        scv=4.0,
        held_out=True,
    )
    add(
        "complete n=4 M=3 k=2 type means deterministic",
        MoANetwork(n=4, M=3, k=2, arrival_rate=1.0, service_time=per_type),
        (0.7,),
        means="type",
        service="deterministic",
        scv=0.0,
        held_out=True,
    )
    return cases


def _cache_file(cache_dir: Path, index: int) -> Path:
    return cache_dir / f"case_{index:03d}.json"


def simulate_cases(
    cache_dir: Path | str,
    indices: Iterable[int] | None = None,
    prompts: int = PROMPTS_PER_REPLICATION,
    seed: int = SEED,
) -> list[dict[str, Any]]:
    """Simulate the chosen cases (default all) that are not cached yet; return their records.

    Each case runs :data:`REPLICATIONS` replications of the event simulator, long enough for
    about ``prompts`` prompts each (four times that above max load 0.9, where batch
    correlations are long), seeded with ``seed + index``.
    """
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    cases = validation_networks()
    chosen = range(len(cases)) if indices is None else list(indices)
    records = []
    for i in chosen:
        path = _cache_file(cache, i)
        if path.is_file():
            records.append(json.loads(path.read_text()))
            continue
        case = cases[i]
        many = prompts * (4 if case.max_load > 0.9 else 1)
        horizon = many / float(case.net.arrival_rate.sum())
        start = time.perf_counter()
        sim = simulate(
            case.net,
            method="events",
            horizon=horizon,
            seed=seed + i,
            service=case.service,
            scv=case.scv if case.service in ("gamma", "lognormal") else 1.0,
            replications=REPLICATIONS,
            warmup=0.1,
            max_jobs=10_000_000,
        )
        record = {
            "index": i,
            "name": case.name,
            "sim_mean_s": sim.latency_mean,
            "sim_ci_s": sim.latency_ci,
            "sim_p50_s": sim.latency_p50,
            "sim_p95_s": sim.latency_p95,
            "sim_p99_s": sim.latency_p99,
            "sim_prompts": sim.prompts_completed,
            "sim_verdict": sim.verdict,
            "sim_seconds": time.perf_counter() - start,
            "seed": seed + i,
        }
        path.write_text(json.dumps(record, indent=1))
        records.append(record)
    return records


def validation_table(cache_dir: Path | str) -> pd.DataFrame:
    """Cached simulations beside ``bound`` and ``estimate``: one row per case (all must be
    cached), with the relative errors ``(analytic - simulated) / simulated``."""
    cases = validation_networks()
    cache = Path(cache_dir)
    missing = [i for i in range(len(cases)) if not _cache_file(cache, i).is_file()]
    if missing:
        raise ValueError(
            f"cache_dir={cache}: cases {missing[:10]} are not simulated yet; run "
            "simulate_cases(cache_dir) first (it resumes where it stopped)"
        )
    records = simulate_cases(cache)
    rows = []
    for case, rec in zip(cases, records, strict=True):
        net = case.net
        row = {
            "name": case.name,
            "n": net.n,
            "M": net.M,
            "k": max(net.k, default=0),
            "topology": case.topology,
            "selection": case.selection,
            "means": case.means,
            "service": case.service,
            "scv": case.scv,
            "max_load": float(loads(net).max()),
            "held_out": case.held_out,
        }
        row |= {k: v for k, v in rec.items() if k.startswith("sim_") and k != "sim_seconds"}
        for method in ("bound", "estimate"):
            res = latency(net, method=method, service=case.service, scv=case.scv)
            row[f"{method}_mean_s"] = res.mean_s
            for p in (50, 95, 99):
                row[f"{method}_p{p}_s"] = res.quantile(p / 100)
        for col in ("mean", "p50", "p95", "p99"):
            for method in ("bound", "estimate"):
                row[f"{method}_{col}_rel_err"] = row[f"{method}_{col}_s"] / row[f"sim_{col}_s"] - 1
        rows.append(row)
    return pd.DataFrame(rows)


def write_table(cache_dir: Path | str, command: str) -> pd.DataFrame:
    """Write :data:`TABLE` and :data:`METADATA` (the command that made it, the settings)."""
    table = validation_table(cache_dir)
    table.to_csv(TABLE, index=False, float_format="%.6g")
    METADATA.write_text(
        json.dumps(
            {
                "description": "Analytic latency (bound, estimate) against the event simulator",
                "command": command,
                "simulator": "moa_stability.simulate(method='events')",
                "prompts_per_replication": PROMPTS_PER_REPLICATION,
                "replications": REPLICATIONS,
                "warmup_fraction": 0.1,
                "seed": f"{SEED} + case index",
                "cases": len(table),
            },
            indent=1,
        )
        + "\n"
    )
    return table


if __name__ == "__main__":  # python -m moa_stability.experiments.latency_validation CACHE_DIR
    import sys

    cache_dir = sys.argv[1] if len(sys.argv) > 1 else ".latency_validation_cache"
    simulate_cases(cache_dir)
    write_table(cache_dir, f"python -m moa_stability.experiments.latency_validation {cache_dir}")
