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
  fitted model's squared coefficient of variation;
* beside them, the **model replay**: the live run replayed with every job's seconds drawn from
  the service model on that job's own token counts (:data:`MODEL_DRAWS` draws). It keeps the
  live arrivals and helpers, so its error is the service model's alone, while (b) and (c) also
  carry the sampling noise of a few minutes of Poisson arrivals.

For an overload run (``drain_s = 0``) the comparison is of growth. The prompts in the system
:math:`N(t) = \#\{\text{born} \le t\} - \#\{\text{answered} \le t\}` grow linearly; live,
its least-squares slope on the window :math:`(T/4, T]`. Growth is arrivals minus answers, and a
few minutes of Poisson arrivals stray from the nominal rate, so the model is run at the rate
the live run realised: the simulator's prompt throughput in the same window (from empty,
:data:`OVERLOAD_REPLICATIONS` replications) against the live one, and the predicted growth
(live arrivals in the window minus the simulated throughput) against the live slope. The
simulator's long-run slope :math:`(\text{arrived} - \text{completed}) / T` over
:data:`OVERLOAD_HORIZON_S` (the fluid growth rate) is reported beside it.
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
from ..model.network import MoANetwork
from ..simulation.simulate import simulate
from ..simulation.statistics import growth_slope, t_interval

LIVE_BATCHES = 8
"""Batches of consecutive prompts for the live mean latency's confidence interval."""

SIM_HORIZON_S = 200_000.0
"""Simulated seconds per replication for a stable run (about 10^5 mean service times)."""

OVERLOAD_HORIZON_S = 20_000.0
"""Simulated seconds from empty for an overload run's long-run (fluid) backlog slope."""

OVERLOAD_REPLICATIONS = 64
"""Replications of the live run's own window, for the simulated prompt throughput."""

MODEL_DRAWS = 20
"""Replays of a live run with service seconds drawn from the model (:func:`_model_replay`)."""


def live_runs() -> list[Path]:
    """The committed live job logs (``moa_stability/data/live/*.csv``, prompt logs excluded),
    in (M, k, load) order."""
    folder = Path(str(resources.files("moa_stability").joinpath("data", "live")))
    return sorted(p for p in folder.glob("*.csv") if not p.stem.endswith("_prompts"))


def _live_ci(run: TestbedResult) -> float:
    """Half-width of the live mean latency's 95% CI: batch means of consecutive prompts, whose
    latencies are correlated through the queues they share."""
    lat = run.answered.sort_values("birth_s")["latency_s"].to_numpy()
    batches = np.array([b.mean() for b in np.array_split(lat, LIVE_BATCHES)])
    return float(t_interval(batches)[1])


def _backlog_slope(run: TestbedResult) -> tuple[float, float]:
    """Slope and CI half-width of the live prompts in the system on :math:`[T/4, T]`."""
    births = np.sort(run.prompts["birth_s"].to_numpy())
    answers = np.sort(run.answered["answer_s"].to_numpy())
    T = float(run.metadata["duration_s"])
    t = np.linspace(T / 4, T, 200)
    backlog = np.searchsorted(births, t, side="right") - np.searchsorted(answers, t, side="right")
    slope = growth_slope(t, backlog.astype(float))
    return slope.per_s, slope.ci


def _in_window(times: pd.Series, T: float) -> float:
    """Events per second in the overload window :math:`(T/4, T]`."""
    return float(((times > T / 4) & (times <= T)).sum() / (0.75 * T))


def _overload(
    run: TestbedResult, net: MoANetwork, sim_kwargs: dict[str, Any], seed: int
) -> dict[str, Any]:
    """Growth of the prompt backlog, live against the model (module docstring)."""
    T = float(run.metadata["duration_s"])
    # Growth is arrivals minus answers: the model is run at the rate the live run realised
    # (its Poisson count may stray from the nominal rate by several percent in 3 minutes).
    net = net.replace(arrival_rate=np.full(net.n, len(run.prompts) / (net.n * T)))
    completed = []
    for horizon in (T / 4, T):  # same seed: the same sample paths, stopped at T/4 and at T
        sim = simulate(net, horizon=horizon, warmup=0.0, seed=seed,
                       replications=OVERLOAD_REPLICATIONS, **sim_kwargs)  # fmt: skip
        completed.append(sim.prompts_completed / OVERLOAD_REPLICATIONS)
    sim_throughput = (completed[1] - completed[0]) / (0.75 * T)
    fluid = simulate(net, horizon=OVERLOAD_HORIZON_S, warmup=0.0, seed=seed, **sim_kwargs)
    live_growth, live_growth_ci = _backlog_slope(run)
    live_births = _in_window(run.prompts["birth_s"], T)
    live_throughput = _in_window(run.answered["answer_s"], T)
    predicted_growth = live_births - sim_throughput
    return {
        "realised_rate_per_device_per_s": float(net.arrival_rate[0]),
        "live_throughput_per_s": live_throughput,
        "sim_throughput_per_s": sim_throughput,
        "throughput_error": sim_throughput / live_throughput - 1,
        "live_backlog_slope_per_s": live_growth,
        "live_backlog_slope_ci": live_growth_ci,
        "predicted_backlog_slope_per_s": predicted_growth,
        "growth_error": predicted_growth / live_growth - 1,
        "sim_fluid_slope_per_s": (fluid.prompts_arrived - fluid.prompts_completed)
        / fluid.simulated_s,
        "sim_verdict": fluid.verdict,
    }


def _model_replay(run: TestbedResult, model: ContextService, seed: int) -> np.ndarray:
    """Mean latencies of :data:`MODEL_DRAWS` replays of the live run with every job's seconds
    drawn from the service model on its own token counts: the live arrivals, helpers and
    tokens, the model's durations. It separates service-model error from the sampling noise of
    a short run, which ``simulate`` (fresh arrivals) carries in full."""
    jobs = run.replay_jobs
    rng = np.random.default_rng(seed)
    means = []
    for _ in range(MODEL_DRAWS):
        seconds = model.sample(jobs["input_tokens"], jobs["output_tokens"], rng)
        means.append(replay(jobs.assign(seconds=seconds), n=run.net.n).mean_latency)
    return np.array(means)


def _model_samples(run: TestbedResult, model: ContextService, trace: pd.DataFrame, seed: int):
    net = run.net
    k = net.k[0] if net.M else 0
    return service_samples(net.M, k, model=model, trace=trace, seed=seed,
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
    profile = load_profile(run.net)  # the load the rates were set for (a-priori model)
    samples = _model_samples(run, model, trace, seed)
    # ``simulate`` scales the samples to the network's means: make those the model's (the
    # network fills the job types unused at this M itself).
    net = run.net.replace(service_time={c: float(v.mean()) for c, v in samples.items()})
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
    sim_kwargs = dict(method="events", service="empirical", samples=samples, progress=False)
    if overload:
        row.update(_overload(run, net, sim_kwargs, seed))
        return row
    live_mean, live_ci = run.mean_latency, _live_ci(run)
    lat = run.answered["latency_s"].to_numpy()
    replayed = replay(run.replay_jobs, n=net.n)
    sim = simulate(net, horizon=SIM_HORIZON_S, seed=seed, replications=replications, **sim_kwargs)
    modelled = _model_replay(run, model, seed)
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
        model_replay_mean_s=float(np.mean(modelled)),
        model_replay_error=float(np.mean(modelled)) / run.mean_latency - 1,
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


SERVICE_MODELS = ("cross-fitted", "trace")
"""Where :func:`live_comparison` fits the service model (see there)."""


def _shape(run: TestbedResult) -> tuple[int, tuple[int, ...]]:
    return run.net.M, run.net.k


def live_comparison(
    paths: Iterable[str | Path] | None = None,
    *,
    service_model: str = "cross-fitted",
    seed: int = 0,
    replications: int = 4,
) -> LiveComparison:
    """Compare every live run in ``paths`` (default :func:`live_runs`) with replay, simulation
    and the analytic latency.

    Parameters
    ----------
    paths : iterable of path, optional
        Job logs written by ``run_testbed(out=...)``.
    service_model : {"cross-fitted", "trace"}
        ``"trace"``: :class:`ContextService` fitted to the shipped trace, the a-priori model the
        live rates were chosen with. ``"cross-fitted"``: fitted to the job logs of the live
        runs of the *other* MoA shapes in ``paths`` (so never to the run it predicts), i.e. to
        inferences at the deployment's output cap and prompt lengths. The shipped trace (128
        output tokens, ~450-token aggregate prompts) prices the live aggregates (32 tokens,
        ~180-token prompts) 6% too high: prefill seconds per token are not constant in the
        prompt length (6.6 ms at 45 tokens, 6.5 at 180, 7.0 at 450), so the trace's fit does
        not carry over to another regime; docs/live.md has the numbers.
    seed : int
        Seeds the service-time draws and the simulations.
    replications : int
        Simulation replications per run.
    """
    if service_model not in SERVICE_MODELS:
        raise ValueError(
            f"service_model={service_model!r}: unknown; use one of {', '.join(SERVICE_MODELS)}"
        )
    runs = {Path(p).stem: load_testbed(p) for p in (live_runs() if paths is None else paths)}
    trace = load_default_trace()
    # One model per shape: every run of a shape is predicted from the same jobs.
    models: dict[tuple[int, tuple[int, ...]], ContextService] = {}
    rows = []
    for name, run in runs.items():
        shape = _shape(run)
        if shape not in models and service_model == "trace":
            models[shape] = ContextService.fit(trace)
        elif shape not in models:
            others = [r.jobs for r in runs.values() if _shape(r) != shape]
            if not others:
                raise ValueError(
                    f"service_model='cross-fitted': no live run of another (M, k) than "
                    f"{name}'s in paths; pass runs of two shapes or service_model='trace'"
                )
            models[shape] = ContextService.fit(pd.concat(others, ignore_index=True))
        row = compare_run(
            run, model=models[shape], trace=trace, seed=seed, replications=replications
        )
        rows.append({"run": name, "service_model": service_model} | row)
    return LiveComparison(pd.DataFrame(rows).set_index("run"))


__all__ = [
    "LIVE_BATCHES",
    "SERVICE_MODELS",
    "LiveComparison",
    "compare_run",
    "live_comparison",
    "live_runs",
]
