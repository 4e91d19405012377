r"""Figure 9: prompt latency against load, analytic prediction vs simulation.

For the paper's seven :math:`(M, k)` on its network (:math:`n = 4`, complete graph, exponential
service of mean :math:`\alpha = 1` s), at loads from 0.2 to 0.9 of the threshold: the mean
prompt latency and its p95 from the event simulator (95% CI over batch means) against the two
analytic predictions of :func:`moa_stability.latency`: ``bound`` (independent sojourns) and
``estimate`` (corrected for the correlation of sibling queues and of a prompt's stages). The
bottom-right panel shows the relative error of the estimate's mean over all points.
"""

from __future__ import annotations

import pandas as pd
from tqdm.auto import tqdm

from moa_stability import latency, paper_network, simulate
from moa_stability.model.paper import CONFIGS

from .style import CONFIG_COLOURS, FigureOutput, figure

TITLE = "Prompt latency vs load: analytic bound and estimate against simulation"
LOADS = {False: (0.2, 0.4, 0.6, 0.7, 0.8, 0.9), True: (0.3, 0.6, 0.9)}
HORIZON_S = {False: 2e6, True: 2e5}  # in mean service times (alpha = 1 s)
SEED = 9


def compute(quick: bool) -> pd.DataFrame:
    """One row per (M, k, load): simulated and predicted mean and p95 latency in seconds."""
    rows = []
    points = [(M, k, load) for M, k in CONFIGS for load in LOADS[quick]]
    for M, k, load in tqdm(points, desc="fig9 points", leave=False):
        net = paper_network(M=M, k=k, arrival_rate=1.0).at_load(load)
        sim = simulate(net, method="events", horizon=HORIZON_S[quick], seed=SEED)
        bound = latency(net, method="bound")
        estimate = latency(net, method="estimate")
        rows.append(
            {
                "M": M,
                "k": k,
                "load": load,
                "rate_per_s": float(net.arrival_rate[0]),
                "sim_mean_s": sim.latency_mean,
                "sim_mean_ci_s": sim.latency_ci,
                "sim_p95_s": sim.latency_p95,
                "bound_mean_s": bound.mean_s,
                "bound_p95_s": float(bound.quantile(0.95)),
                "estimate_mean_s": estimate.mean_s,
                "estimate_p95_s": float(estimate.quantile(0.95)),
                "verdict": sim.verdict,
            }
        )
    table = pd.DataFrame(rows)
    table["estimate_mean_rel_err"] = table.estimate_mean_s / table.sim_mean_s - 1
    table["estimate_p95_rel_err"] = table.estimate_p95_s / table.sim_p95_s - 1
    return table


def plot(table: pd.DataFrame) -> FigureOutput:
    fig, axes = figure(2, 4, width=13, height=6, sharex=True)
    for ax, colour, (M, k) in zip(axes.flat, CONFIG_COLOURS, CONFIGS, strict=False):
        t = table[(table.M == M) & (table.k == k)]
        ax.errorbar(t.load, t.sim_mean_s, yerr=t.sim_mean_ci_s, fmt="o", color=colour, ms=4,
                    label="simulation, mean (95% CI)")  # fmt: skip
        ax.plot(t.load, t.sim_p95_s, "^", color=colour, mfc="none", ms=5, label="simulation, p95")
        ax.plot(t.load, t.estimate_mean_s, "-", color="black", lw=1.2, label="estimate, mean")
        ax.plot(t.load, t.estimate_p95_s, "-", color="grey", lw=1.2, label="estimate, p95")
        ax.plot(t.load, t.bound_mean_s, "--", color="black", lw=0.9, label="bound, mean")
        ax.set_title(f"(M, k) = ({M}, {k})")
        ax.set_yscale("log")
    for ax in axes[-1]:
        ax.set_xlabel("load of the busiest device")
    for ax in axes[:, 0]:
        ax.set_ylabel("prompt latency (s), alpha = 1 s")
    axes.flat[0].legend(loc="upper left")
    err = axes.flat[-1]
    for colour, (M, k) in zip(CONFIG_COLOURS, CONFIGS, strict=False):
        t = table[(table.M == M) & (table.k == k)]
        err.plot(t.load, 100 * t.estimate_mean_rel_err, "o-", color=colour, ms=3, lw=0.8)
    err.axhspan(-10, 10, color="0.92", zorder=0)
    err.axhline(0, color="black", lw=0.8)
    err.set_ylabel("estimate mean vs simulation (%)")
    err.set_title("error of the estimate (grey: +-10%)")
    worst = table.estimate_mean_rel_err.abs().max()
    worst_p95 = table.estimate_p95_rel_err.abs().max()
    headline = (
        f"{len(table)} points; estimate mean within {100 * worst:.1f}% of simulation, "
        f"p95 within {100 * worst_p95:.1f}%; bound below the simulated mean at "
        f"{int((table.bound_mean_s < table.sim_mean_s - table.sim_mean_ci_s).sum())} points"
    )
    return FigureOutput(fig, table, headline)


def make(quick: bool = False) -> FigureOutput:
    return plot(compute(quick))
