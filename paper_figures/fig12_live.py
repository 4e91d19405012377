r"""Figure 12: a live MoA on this machine against replay, simulation and analytic latency.

Two SmolLM2 devices (one llama.cpp thread each, localhost sockets, the MoA protocol as
modelled) were run at about 0.3, 0.6 and 0.85 of the capacity predicted by the service model
fitted to the shipped trace, and at 1.3 (overload), for :math:`(M, k) = (1, 1)` and
:math:`(2, 1)`. The committed job and prompt logs (``moa_stability/data/live/``) are compared
with the replay of their logged durations, the event simulator with the fitted service model
and the analytic latency estimate
(:func:`moa_stability.experiments.live_comparison.live_comparison`). No LLM runs here: the
live numbers are read from the logs.

The predictions use the service model cross-fitted on the live jobs of the other MoA shape
(never on the run predicted); the a-priori model fitted to the shipped trace is shown beside it
(open grey markers) — it prices the live aggregates 6% too high.

Top: mean prompt latency (live with its 95% CI) and p95, against the predicted load. Bottom
left: the error of each prediction of the mean, relative to the live mean (grey: +-15%); the
model replay keeps the live arrivals and draws only the service times, so it isolates the
service model's error from the sampling noise of a few minutes of arrivals. Bottom right: the
prompt throughput and backlog growth in overload, live against the simulator.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from moa_stability.experiments.live_comparison import live_comparison

from .style import CONFIG_COLOURS, FigureOutput, figure

TITLE = "A live two-device MoA against replay, simulation and the analytic latency"
SEED = 12


def plot(both) -> FigureOutput:
    fig, axes = figure(2, 2, width=11, height=8)
    table = both[both.service_model == "cross-fitted"]
    prior = both[(both.service_model == "trace") & (both.predicted_load < 1)]
    stable = table[table.predicted_load < 1]
    over = table[table.predicted_load >= 1]
    shapes = sorted(set(zip(table.M, table.k, strict=True)))
    for colour, (M, k) in zip(CONFIG_COLOURS, shapes, strict=False):
        t = stable[(stable.M == M) & (stable.k == k)].sort_values("predicted_load")
        x = t.predicted_load
        ax = axes[0, 0]
        ax.errorbar(x, t.live_mean_s, yerr=t.live_ci_s, fmt="o", color=colour, ms=5,
                    label=f"({M}, {k}) live (95% CI)")  # fmt: skip
        ax.plot(x, t.replay_mean_s, "x", color="black", ms=6)
        ax.plot(x, t.sim_mean_s, "-", color=colour, lw=1.2)
        ax.plot(x, t.latency_mean_s, "--", color=colour, lw=1.0)
        ax = axes[0, 1]
        ax.plot(x, t.live_p95_s, "o", color=colour, ms=5, label=f"({M}, {k}) live")
        ax.plot(x, t.sim_p95_s, "-", color=colour, lw=1.2)
        ax.plot(x, t.latency_p95_s, "--", color=colour, lw=1.0)
        err = axes[1, 0]
        for column, marker in (("model_replay_error", "x"), ("sim_error", "o"),
                               ("latency_error", "s")):  # fmt: skip
            err.plot(x, 100 * t[column], marker, color=colour, ms=6)
        p = prior[(prior.M == M) & (prior.k == k)]
        err.plot(p.predicted_load, 100 * p.model_replay_error, "x", color="0.6", ms=5)
    axes[0, 0].plot([], [], "x", color="black", label="replay of live durations")
    axes[0, 0].plot([], [], "-", color="grey", label="simulate, fitted service model")
    axes[0, 0].plot([], [], "--", color="grey", label="latency (analytic estimate)")
    axes[0, 0].set_ylabel("mean prompt latency (s)")
    axes[0, 1].set_ylabel("p95 prompt latency (s)")
    for ax in axes[0]:
        ax.set_xlabel("predicted load of the busiest device")
    axes[0, 0].legend(loc="upper left", fontsize=8)
    err = axes[1, 0]
    for label, marker in (("model replay", "x"), ("simulate", "o"), ("latency", "s")):
        err.plot([], [], marker, color="grey", label=label)
    err.plot([], [], "x", color="0.6", ms=5, label="model replay, a-priori model")
    err.axhspan(-15, 15, color="0.92", zorder=0)
    err.axhline(0, color="black", lw=0.8)
    err.set_xlabel("predicted load of the busiest device")
    err.set_ylabel("prediction vs live mean latency (%)")
    err.legend(fontsize=8)
    ax = axes[1, 1]
    pos = np.arange(len(over))
    bars = (("live_throughput_per_s", "0.75", "throughput, live"),
            ("sim_throughput_per_s", "0.45", "throughput, simulate"),
            ("live_backlog_slope_per_s", "tab:red", "backlog growth, live"),
            ("predicted_backlog_slope_per_s", "darkred", "backlog growth, predicted"))  # fmt: skip
    for b, (column, colour, label) in enumerate(bars):
        ax.bar(pos + (b - 1.5) * 0.2, over[column], 0.2, color=colour, label=label)
    ax.set_xticks(pos, [f"({M}, {k}) at {x:.2f}" for M, k, x in
                        zip(over.M, over.k, over.predicted_load, strict=True)])  # fmt: skip
    ax.set_ylabel("prompts/s in the window (T/4, T]")
    ax.legend(fontsize=8)
    worst = {c: stable[c].abs().max() for c in ("replay_error", "model_replay_error",
                                                 "sim_error", "latency_error")}  # fmt: skip
    headline = (
        f"{len(stable)} stable runs: replay within {100 * worst['replay_error']:.2f}%, model "
        f"replay within {100 * worst['model_replay_error']:.1f}%, simulate within "
        f"{100 * worst['sim_error']:.0f}% ({int(stable.sim_within_live_ci.sum())} of "
        f"{len(stable)} inside the live CI), latency within {100 * worst['latency_error']:.0f}%;"
        f" overload growth within {100 * over.growth_error.abs().max():.0f}%"
    )
    return FigureOutput(fig, both.reset_index(), headline)


def make(quick: bool = False) -> FigureOutput:
    replications = 2 if quick else 4
    tables = [live_comparison(service_model=m, seed=SEED, replications=replications).to_frame()
              for m in ("cross-fitted", "trace")]  # fmt: skip
    return plot(pd.concat(tables))
