r"""The four-way comparison: a live MoA testbed against replay, simulation and analytic latency.

Each live run (:func:`~moa_stability.llm.testbed.run_testbed`, saved under
``moa_stability/data/live/``) is set up from a prediction: the service times that
:class:`~moa_stability.llm.service.ContextService`, fitted to the shipped (quiet) trace,
predicts for the run's ``(M, k)`` and output cap, and prompt rates for a chosen fraction of the
predicted capacity. The run then logs what really happened, and four numbers are set side by
side for every stable run:

* **live**: mean and p95 prompt latency, with a 95% confidence interval for the mean from
  batch means over consecutive prompts (:data:`LIVE_BATCHES` batches, Student t), and the
  time-average jobs present per device;
* **(a) replay** of the logged job durations (:func:`~moa_stability.llm.replay.replay`): the
  same FCFS queues and joins fed with the measured seconds; it must reproduce the live latency
  (it validates the protocol and the replay, not the model);
* **(b) simulate** (:func:`~moa_stability.simulate`, continuous time) with the fitted service
  model: service seconds resampled from ``ContextService.sample`` on token counts drawn by the
  length model at the run's output cap (``service="empirical"``);
* **(c) latency** (:func:`~moa_stability.latency`, ``estimate``) with a gamma service law of the
  fitted model's squared coefficient of variation.

For an overload run (``drain_s = 0``) the comparison is of growth: the prompts in the system
:math:`N(t) = \#\{\text{born} \le t\} - \#\{\text{answered} \le t\}` grow linearly; the live
slope (least squares on :math:`[T/4, T]`) is set against the simulator's
:math:`(\text{arrived} - \text{completed}) / T` over a long horizon from empty, which is the
fluid growth rate of the prompt backlog.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..analysis.latency import latency
from ..llm.replay import replay
from ..llm.service import ContextService, service_samples
from ..llm.testbed import TestbedResult, load_testbed
from ..llm.trace import load_default_trace
from ..model.loads import load_profile
from ..simulation.simulate import simulate
from ..simulation.statistics import growth_slope, t_interval

LIVE_BATCHES = 8
"""Batches of consecutive prompts for the live mean latency's confidence interval."""

SIM_HORIZON_S = 200_000.0
"""Simulated seconds per replication for a stable run (about 10^5 mean service times)."""

OVERLOAD_HORIZON_S = 20_000.0
"""Simulated seconds from empty for an overload run (the backlog's fluid slope)."""


def live_runs() -> list[Path]:
    """The committed live job logs (``moa_stability/data/live/*.csv``, prompt logs excluded),
    in (M, k, load) order."""
    folder = Path(str(resources.files("moa_stability").joinpath("data", "live")))
    return sorted(p for p in folder.glob("*.csv") if not p.stem.endswith("_prompts"))


def _live_ci(run: TestbedResult) -> tuple[float, float]:
    lat = run.answered.sort_values("birth_s")["latency_s"].to_numpy()
    batches = np.array([b.mean() for b in np.array_split(lat, LIVE_BATCHES)])
    mean, half = t_interval(batches)
    return float(mean), float(half)


def _backlog_slope(run: TestbedResult) -> tuple[float, float]:
    """Slope and CI half-width of the live prompts in the system on :math:`[T/4, T]`."""
    births = np.sort(run.prompts["birth_s"].to_numpy())
    answers = np.sort(run.answered["answer_s"].to_numpy())
    T = float(run.metadata["duration_s"])
    t = np.linspace(T / 4, T, 200)
    backlog = np.searchsorted(births, t, side="right") - np.searchsorted(answers, t, side="right")
    slope = growth_slope(t, backlog.astype(float))
    return slope.per_s, slope.ci


def _model_samples(run: TestbedResult, model: ContextService, trace: pd.DataFrame, seed: int):
    M, net = run.net.M, run.net
    k = net.k[0] if M else 0
    return service_samples(M, k, model=model, trace=trace, seed=seed,
                           max_tokens=int(run.metadata["max_tokens"]))  # fmt: skip


def _scv(samples: dict[str, np.ndarray]) -> float:
    """Squared coefficient of variation of the service law, averaged over the job types with
    their share of the inferences (the sample sizes; ``latency`` takes one scv for all)."""
    total = sum(v.size for v in samples.values())
    return float(sum(v.size * v.var() / v.mean() ** 2 for v in samples.values()) / total)


def compare_run(
    run: TestbedResult,
    *,
    model: ContextService | None = None,
    trace: pd.DataFrame | None = None,
    seed: int = 0,
    replications: int = 4,
) -> dict[str, Any]:
    """One row of the comparison for one live run (module docstring for the method)."""
    trace = load_default_trace() if trace is None else trace
    model = ContextService.fit(trace) if model is None else model
    net = run.net
    profile = load_profile(net)
    samples = _model_samples(run, model, trace, seed)
    overload = profile.max_load >= 1
    row: dict[str, Any] = {
        "M": net.M,
        "k": net.k[0] if net.M else 0,
        "predicted_load": profile.max_load,
        "rate_per_device_per_s": float(net.arrival_rate[0]),
        "duration_s": float(run.metadata["duration_s"]),
        "prompts_born": len(run.prompts),
        "prompts_answered": len(run.answered),
        "loadavg_start": float(run.metadata["loadavg_1min_start"]),
        "live_utilisation": float(run.to_frame()["utilisation"].mean()),
    }
    sim_kwargs = dict(method="events", seed=seed, service="empirical", samples=samples,
                      replications=replications, progress=False)  # fmt: skip
    if overload:
        slope, ci = _backlog_slope(run)
        sim = simulate(net, horizon=OVERLOAD_HORIZON_S, warmup=0.0, **sim_kwargs)
        sim_slope = (sim.prompts_arrived - sim.prompts_completed) / (
            sim.replications * sim.simulated_s
        )
        row.update(
            live_backlog_slope_per_s=slope,
            live_backlog_slope_ci=ci,
            sim_backlog_slope_per_s=sim_slope,
            sim_slope_error=sim_slope / slope - 1,
            sim_verdict=sim.verdict,
        )
        return row
    live_mean, live_ci = _live_ci(run)
    lat = run.answered["latency_s"].to_numpy()
    replayed = replay(run.replay_jobs, n=net.n)
    sim = simulate(net, horizon=SIM_HORIZON_S, **sim_kwargs)
    analytic = latency(net, service="gamma", scv=_scv(samples))
    live_queue = float(run.to_frame()["mean_queue"].mean())
    row.update(
        live_mean_s=live_mean,
        live_ci_s=live_ci,
        live_p95_s=float(np.percentile(lat, 95)),
        live_queue=live_queue,
        replay_mean_s=replayed.mean_latency,
        replay_error=replayed.mean_latency / run.mean_latency - 1,
        replay_queue=float(np.mean(replayed.mean_queue)),
        sim_mean_s=sim.latency_mean,
        sim_ci_s=sim.latency_ci,
        sim_p95_s=sim.latency_p95,
        sim_queue=float(np.mean(sim.mean_queue)),
        sim_error=sim.latency_mean / live_mean - 1,
        sim_within_live_ci=abs(sim.latency_mean - live_mean) <= live_ci + sim.latency_ci,
        sim_verdict=sim.verdict,
        latency_mean_s=analytic.mean_s,
        latency_p95_s=float(analytic.quantile(0.95)),
        latency_error=analytic.mean_s / live_mean - 1,
    )
    return row


@dataclass(frozen=True, eq=False)
class LiveComparison:
    """The four-way comparison of every live run: one row per run (:func:`compare_run`).

    Errors are relative to the live mean latency (``*_error``); ``sim_within_live_ci`` says
    whether the simulated and live means' confidence intervals overlap.
    """

    table: pd.DataFrame

    def to_frame(self) -> pd.DataFrame:
        """The comparison table, a copy."""
        return self.table.copy()

    def __str__(self) -> str:
        return "Live MoA vs replay, simulation and analytic latency\n" + self.table.to_string(
            float_format=lambda v: f"{v:.4g}"
        )

    def __repr__(self) -> str:
        return f"LiveComparison(runs={len(self.table)})"


def live_comparison(
    paths: Iterable[str | Path] | None = None, *, seed: int = 0, replications: int = 4
) -> LiveComparison:
    """Compare every live run in ``paths`` (default :func:`live_runs`) with replay, simulation
    and the analytic latency.

    Parameters
    ----------
    paths : iterable of path, optional
        Job logs written by ``run_testbed(out=...)``.
    seed : int
        Seeds the service-time draws and the simulations.
    replications : int
        Simulation replications per run.
    """
    trace = load_default_trace()
    model = ContextService.fit(trace)
    rows = [compare_run(load_testbed(p), model=model, trace=trace, seed=seed,
                        replications=replications) | {"run": Path(p).stem}
            for p in (live_runs() if paths is None else paths)]  # fmt: skip
    return LiveComparison(pd.DataFrame(rows).set_index("run"))


__all__ = ["LIVE_BATCHES", "LiveComparison", "compare_run", "live_comparison", "live_runs"]
