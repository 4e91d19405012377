r"""Figure 12: a live MoA on this machine against replay, simulation and analytic latency.

Two SmolLM2 devices (one llama.cpp thread each, localhost sockets, the MoA protocol as
modelled) were run at about 0.3, 0.6 and 0.85 of the capacity predicted by the service model
fitted to the shipped trace, and at 1.3 (overload), for :math:`(M, k) = (1, 1)` and
:math:`(2, 1)`. The committed job and prompt logs (``moa_stability/data/live/``) are compared
with the replay of their logged durations, the event simulator with the fitted service model
and the analytic latency estimate
(:func:`moa_stability.experiments.live_comparison.live_comparison`). No LLM runs here: the
live numbers are read from the logs.

Top: mean prompt latency (live with its 95% CI) and p95, against the predicted load. Bottom
left: the error of each prediction of the mean, relative to the live mean (grey: +-15%).
Bottom right: the growth of the prompt backlog in overload, live against simulated.
"""

from __future__ import annotations

import numpy as np

from moa_stability.experiments.live_comparison import live_comparison

from .style import CONFIG_COLOURS, FigureOutput, figure

TITLE = "A live two-device MoA against replay, simulation and the analytic latency"
SEED = 12


def plot(table) -> FigureOutput:
    fig, axes = figure(2, 2, width=11, height=8)
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
        for column, marker in (("replay_error", "x"), ("sim_error", "o"), ("latency_error", "s")):
            err.plot(x, 100 * t[column], marker, color=colour, mfc="none", ms=6)
    axes[0, 0].plot([], [], "x", color="black", label="replay of live durations")
    axes[0, 0].plot([], [], "-", color="grey", label="simulate, fitted service model")
    axes[0, 0].plot([], [], "--", color="grey", label="latency (analytic estimate)")
    axes[0, 0].set_ylabel("mean prompt latency (s)")
    axes[0, 1].set_ylabel("p95 prompt latency (s)")
    for ax in axes[0]:
        ax.set_xlabel("predicted load of the busiest device")
    axes[0, 0].legend(loc="upper left", fontsize=8)
    err = axes[1, 0]
    for label, marker in (("replay", "x"), ("simulate", "o"), ("latency", "s")):
        err.plot([], [], marker, color="grey", mfc="none", label=label)
    err.axhspan(-15, 15, color="0.92", zorder=0)
    err.axhline(0, color="black", lw=0.8)
    err.set_xlabel("predicted load of the busiest device")
    err.set_ylabel("prediction vs live mean latency (%)")
    err.legend(fontsize=8)
    ax = axes[1, 1]
    pos = np.arange(len(over))
    ax.bar(pos - 0.2, over.live_backlog_slope_per_s, 0.4, yerr=over.live_backlog_slope_ci,
           color="0.6", label="live (95% CI)")  # fmt: skip
    ax.bar(pos + 0.2, over.sim_backlog_slope_per_s, 0.4, color="0.2", label="simulate (fluid)")
    ax.set_xticks(pos, [f"({M}, {k}) at {x:.2f}" for M, k, x in
                        zip(over.M, over.k, over.predicted_load, strict=True)])  # fmt: skip
    ax.set_ylabel("prompt backlog growth (prompts/s)")
    ax.legend(fontsize=8)
    worst_sim = stable.sim_error.abs().max()
    worst_replay = stable.replay_error.abs().max()
    worst_lat = stable.latency_error.abs().max()
    worst_growth = over.sim_slope_error.abs().max() if len(over) else float("nan")
    headline = (
        f"{len(stable)} stable runs: replay within {100 * worst_replay:.2f}%, simulate within "
        f"{100 * worst_sim:.1f}% ({int(stable.sim_within_live_ci.sum())} inside the live CI), "
        f"latency within {100 * worst_lat:.1f}% of the live mean; overload growth within "
        f"{100 * worst_growth:.0f}%"
    )
    return FigureOutput(fig, table.reset_index(), headline)


def make(quick: bool = False) -> FigureOutput:
    return plot(live_comparison(seed=SEED, replications=2 if quick else 4).to_frame())
