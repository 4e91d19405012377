r"""Figure 10: the planner's quality-latency-capacity frontier of the paper's configurations.

On the paper's network (:math:`n = 4`, complete graph) with the per-type mean inference times
of the measured SmolLM2 service model (``llm.service.mean_service_times``), at three prompt
rates per device, :func:`moa_stability.plan` optimises each :math:`(M, k)`'s helper selection
and predicts its p95 latency (``estimate``). Each panel plots quality (the source paper's
Table I accuracies for 70B-class models: an example quality table, not SmolLM2's) against the
predicted p95 latency; the marker's size is the capacity (the largest total prompt rate the
shape carries with every load at most 0.9), and the line joins the Pareto frontier: the shapes
no other shape beats in both quality and latency. Shapes that do not fit at the rate are
listed as infeasible.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

from moa_stability import plan
from moa_stability.llm.service import mean_service_times
from moa_stability.model.paper import CONFIGS

from .style import CONFIG_COLOURS, FigureOutput, config_label, figure

TITLE = "Planner: quality vs predicted p95 latency and capacity per (M, k)"
RATES_PER_S = (0.005, 0.01, 0.02)
MARGIN = 0.1
N_DEVICES = 4


def compute(quick: bool) -> pd.DataFrame:
    """One row per (rate, M, k): the planner's table at that per-device rate."""
    del quick  # analytic: as cheap at full fidelity
    frames = []
    for rate in RATES_PER_S:
        result = plan(
            N_DEVICES,
            arrival_rate=rate,
            service_time=lambda M, k: mean_service_times(M, k),
            margin=MARGIN,
        )
        frames.append(result.to_frame().assign(rate_per_s=rate))
    table = pd.concat(frames, ignore_index=True)
    table["pareto"] = False
    for rate, part in table[table.feasible].groupby("rate_per_s"):
        ordered = part.sort_values(["quantile_s", "quality"], ascending=[True, False])
        best = -np.inf
        for index, row in ordered.iterrows():
            if row.quality > best:
                table.loc[index, "pareto"] = True
                best = row.quality
        del rate
    return table


def plot(table: pd.DataFrame) -> FigureOutput:
    fig, axes = figure(1, len(RATES_PER_S), width=14, height=4.4, sharey=True)
    colour = dict(zip(CONFIGS, CONFIG_COLOURS, strict=False))  # fig1's colour per (M, k)
    top = table.capacity_per_s.max()
    for ax, rate in zip(axes, RATES_PER_S, strict=True):
        part = table[table.rate_per_s == rate]
        fit = part[part.feasible]
        for row in fit.itertuples():
            ax.scatter(
                row.quantile_s,
                row.quality,
                s=30 + 400 * row.capacity_per_s / top,
                color=colour[(row.M, row.k)],
                edgecolor="black",
                linewidth=0.5,
                zorder=3,
                label=config_label(row.M, row.k),
            )
        front = fit[fit.pareto].sort_values("quantile_s")
        ax.step(front.quantile_s, front.quality, where="post", color="black", lw=1, zorder=2)
        missing = part[~part.feasible]
        if len(missing):
            names = ", ".join(f"({r.M},{r.k})" for r in missing.itertuples())
            ax.text(0.03, 0.97, f"do not fit: {names}", transform=ax.transAxes, va="top")
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("predicted p95 prompt latency (s)")
        ax.set_title(f"{rate:g} prompts/s per device")
    axes[0].set_ylabel("quality: paper's Table I accuracy (%), 70B models")
    handles, labels = axes[0].get_legend_handles_labels()
    seen = dict(zip(labels, handles, strict=True))
    order = [config_label(M, k) for M, k in CONFIGS if config_label(M, k) in seen]
    fig.legend(
        [seen[label] for label in order],
        order,
        loc="outside right center",
        title="marker area: capacity\nline: Pareto frontier",
    )
    fit = table[table.feasible]
    best = fit.loc[fit.groupby("rate_per_s").quality.idxmax()]
    headline = "; ".join(
        f"{r.rate_per_s:g}/s: best ({r.M},{r.k}) p95 {r.quantile_s:.3g} s, "
        f"{int(table[(table.rate_per_s == r.rate_per_s) & table.pareto].shape[0])} on the frontier"
        for r in best.itertuples()
    )
    return FigureOutput(fig, table, headline)


def make(quick: bool = False) -> FigureOutput:
    return plot(compute(quick))
