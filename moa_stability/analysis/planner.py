r"""The configuration planner: which MoA shape :math:`(M, k)` and which selection to run.

For each candidate :math:`(M, k)` of a quality table, on the given devices, graph and prompt
rates, :func:`plan`

1. optimises the helper selection for capacity
   (:func:`~moa_stability.analysis.optimize.max_stable_rate` with ``optimise_selection=True``
   and the load margin): the capacity is the largest scale :math:`\theta^*` of the given rates
   that keeps every load at most :math:`1 - \text{margin}`;
2. if the given rates fit (:math:`\theta^* \ge 1`), predicts the latency at the given rates
   with that selection (:func:`~moa_stability.analysis.latency.latency`);
3. marks the shape feasible when it fits and its latency quantile meets the objective,

and ranks the feasible shapes by quality (then by latency). The shipped quality table is the
source paper's Table I (:func:`paper_quality`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..model.network import MoANetwork, _fail, count_field, number_field
from ..model.paper import reported_tables
from .latency import METHODS, latency
from .optimize import max_stable_rate


def paper_quality() -> dict[tuple[int, int], float]:
    """Accuracy (%) per :math:`(M, k)` from Table I of the source paper (Mitra, Kaswan, Ulukus,
    arXiv:2412.21200; one 70B-class model, temperature 0.7, AlpacaEval prompts).

    These are the **paper's numbers for 70B-class models**, an example of a quality table:
    they say nothing about the models on your devices.
    """
    table = reported_tables()
    return {
        (int(r.M), int(r.k)): float(r.paper_I_accuracy_pct) for r in table.itertuples(index=False)
    }


@dataclass(frozen=True, eq=False)
class PlanResult:
    """Candidates of :func:`plan`, ranked: feasible first, by quality, then by latency.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per candidate :math:`(M, k)`: ``quality``, ``capacity_scale`` (largest scale
        of the given rates within the load cap), ``capacity_per_s`` (total prompts/s at that
        scale), ``max_load`` (at the given rates, optimised selection), ``mean_s`` and
        ``quantile_s`` (predicted latency; NaN when the rates do not fit), ``feasible`` and
        ``reason`` (why not).
    selections : dict
        :math:`(M, k)` -> the optimised per-layer inclusion probabilities (``MoANetwork``'s
        ``selection=``), for every candidate that could be optimised.
    quantile, slo_s, margin : float
        The latency objective ``P(latency <= slo_s) >= quantile`` (``slo_s`` None: no
        latency objective) and the load margin.
    method : str
        The latency method used.
    """

    table: pd.DataFrame
    selections: dict[tuple[int, int], tuple[sp.csr_array, ...]] = field(repr=False)
    quantile: float
    slo_s: float | None
    margin: float
    method: str

    @property
    def feasible(self) -> pd.DataFrame:
        """The feasible candidates, best first."""
        return self.table[self.table["feasible"]]

    @property
    def best(self) -> tuple[int, int] | None:
        """The best feasible :math:`(M, k)`, or None."""
        rows = self.feasible
        return None if rows.empty else (int(rows.iloc[0]["M"]), int(rows.iloc[0]["k"]))

    def to_frame(self) -> pd.DataFrame:
        """The ranked table (a copy)."""
        return self.table.copy()

    def __str__(self) -> str:
        slo = "none" if self.slo_s is None else f"p{100 * self.quantile:g} <= {self.slo_s:g} s"
        head = (
            f"Plan ({len(self.feasible)} of {len(self.table)} shapes feasible; latency objective "
            f"{slo}; load margin {self.margin:g}; latency {self.method}); best: {self.best}"
        )
        return head + "\n" + self.table.to_string(index=False, float_format=lambda x: f"{x:.4g}")

    def __repr__(self) -> str:
        return (
            f"PlanResult(candidates={len(self.table)}, feasible={len(self.feasible)}, "
            f"best={self.best}, slo_s={self.slo_s}, quantile={self.quantile})"
        )


def _probability(name: str, value: Any) -> float:
    x = number_field(name, value, "pass a number in (0, 1)")
    if not 0 < x < 1:
        raise _fail(name, repr(value), "must lie in (0, 1)", "pass e.g. 0.95")
    return x


def _quality_table(quality: Any) -> dict[tuple[int, int], float]:
    if quality is None:
        return paper_quality()
    if not isinstance(quality, Mapping) or not quality:
        raise _fail(
            "quality",
            repr(quality),
            "must be a non-empty mapping (M, k) -> quality",
            "pass e.g. {(0, 0): 21.9, (1, 2): 39.6}",
        )
    table = {}
    for key, value in quality.items():
        if not (isinstance(key, tuple) and len(key) == 2):
            raise _fail("quality", repr(key), "keys must be (M, k) pairs", "use e.g. (1, 2)")
        M, k = count_field("quality M", key[0], 0), count_field("quality k", key[1], 0)
        if M == 0 and k != 0:
            raise _fail("quality", repr(key), "M = 0 has no proposers", "use (0, 0) for M = 0")
        try:
            score = float(value)
        except (TypeError, ValueError) as err:
            raise _fail(
                f"quality[{key}]", repr(value), "is not a number", "give a number per shape"
            ) from err
        if not math.isfinite(score):
            raise _fail(f"quality[{key}]", repr(value), "must be finite", "give a number per shape")
        table[(M, k)] = score
    return table


def plan(
    n: int,
    arrival_rate: Any,
    service_time: Any,
    topology: Any = "complete",
    quality: Mapping[tuple[int, int], float] | None = None,
    slo_s: float | None = None,
    quantile: float = 0.95,
    margin: float = 0.1,
    method: str = "estimate",
    service: str = "exponential",
    scv: float = 1.0,
) -> PlanResult:
    r"""Rank the MoA shapes :math:`(M, k)` that these devices can run at these rates.

    Parameters
    ----------
    n : int
        Number of devices.
    arrival_rate : float or array_like
        Prompts per second per device (as :class:`MoANetwork` takes it).
    service_time : float, array_like, mapping or callable
        Mean inference seconds as :class:`MoANetwork` takes them (the same for every shape),
        or a callable ``(M, k) -> service_time`` for shape-dependent means, e.g.
        ``lambda M, k: moa_stability.llm.service.mean_service_times(M, k)`` (a service-time
        model with its length models).
    topology : str, networkx graph or array_like
        The gossip graph (as :class:`MoANetwork` takes it).
    quality : mapping (M, k) -> float, optional
        Quality of each candidate shape (higher is better). Default :func:`paper_quality`, the
        paper's Table I accuracies for 70B-class models.
    slo_s : float, optional
        Latency objective: the ``quantile`` of the prompt latency must be at most ``slo_s``
        seconds. None: no latency objective (only the load cap).
    quantile : float
        The latency quantile the objective constrains, in (0, 1).
    margin : float
        Every device's load must stay at most ``1 - margin`` (``0 <= margin < 1``).
    method : {"estimate", "bound"}
        Latency prediction (:func:`~moa_stability.analysis.latency.latency`).
    service : str
        Service-time law for the latency prediction; ``scv`` its squared coefficient of
        variation (gamma, lognormal).

    Returns
    -------
    PlanResult

    Examples
    --------
    >>> r = plan(4, arrival_rate=0.02, service_time=1.0, slo_s=30.0)
    >>> r.best, len(r.feasible)
    ((2, 3), 7)
    """
    n = count_field("n", n, 1)
    quantile = _probability("quantile", quantile)
    if slo_s is not None and not number_field("slo_s", slo_s, "pass seconds, e.g. 60") > 0:
        raise _fail("slo_s", repr(slo_s), "must be finite and > 0", "pass seconds, e.g. 60")
    if method not in METHODS:
        raise _fail("method", method, "unknown method", f"use one of {METHODS}")
    margin_f = number_field("margin", margin, "pass e.g. 0.1")
    if not 0 <= margin_f < 1:
        raise _fail("margin", repr(margin), "must lie in [0, 1)", "pass e.g. 0.1")
    table = _quality_table(quality)
    rows, selections = [], {}
    for (M, k), score in table.items():
        row: dict[str, Any] = {"M": M, "k": k, "quality": score}
        means = service_time(M, k) if callable(service_time) else service_time
        try:
            net = MoANetwork(
                n=n, M=M, k=k, arrival_rate=arrival_rate, service_time=means, topology=topology
            )
        except ValueError as err:
            if not str(err).startswith(("k=", "topology=")) or M == 0:
                raise
            rows.append(row | _infeasible(f"the graph cannot host this shape: {err}"))
            continue
        rows.append(
            row | _candidate(net, selections, margin_f, slo_s, quantile, method, service, scv)
        )
    frame = pd.DataFrame(rows)
    frame = frame.sort_values(
        ["feasible", "quality", "quantile_s"], ascending=[False, False, True], kind="stable"
    ).reset_index(drop=True)
    return PlanResult(frame, selections, quantile, slo_s, margin_f, method)


def _infeasible(reason: str, **values: float) -> dict[str, Any]:
    nan = float("nan")
    base = {
        "capacity_scale": nan,
        "capacity_per_s": nan,
        "max_load": nan,
        "mean_s": nan,
        "quantile_s": nan,
    }
    return base | values | {"feasible": False, "reason": reason}


def _candidate(
    net: MoANetwork,
    selections: dict,
    margin: float,
    slo_s: float | None,
    quantile: float,
    method: str,
    service: str,
    scv: float,
) -> dict[str, Any]:
    """Capacity, latency and feasibility of one shape (its optimised selection recorded)."""
    if net.arrival_rate.sum() == 0:
        raise _fail("arrival_rate", net.arrival_rate, "is zero everywhere", "give some rate > 0")
    best = max_stable_rate(net, optimise_selection=True, margin=margin)
    shape = (net.M, max(net.k, default=0))
    selections[shape] = best.selection
    tuned = net.replace(selection=best.selection) if net.M else net
    load = (
        best.loads / best.value if best.value > 0 else np.full(net.n, np.inf)
    )  # loads scale linearly with the rates
    values = {
        "capacity_scale": best.value,
        "capacity_per_s": float(best.rates.sum()),
        "max_load": float(load.max()),
    }
    if best.value < 1:
        return _infeasible(
            f"the rates exceed capacity: load {load.max():.3g} > cap {1 - margin:g}", **values
        )
    res = latency(tuned, method=method, service=service, scv=scv)
    values |= {"mean_s": res.mean_s, "quantile_s": res.quantile(quantile)}
    if slo_s is not None and values["quantile_s"] > slo_s:
        return _infeasible(
            f"p{100 * quantile:g} latency {values['quantile_s']:.4g} s > SLO {slo_s:g} s",
            **values,
        )
    return values | {"feasible": True, "reason": ""}
