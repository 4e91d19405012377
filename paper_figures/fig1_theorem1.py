r"""Figure 1: Theorem 1 validated by the slotted simulator.

For each of the paper's configurations on :math:`n = 4` devices with one mean inference time
:math:`\alpha = 1` s, every device has load :math:`\rho = \alpha\lambda((k+1)M+1)`, so the
queues are stable iff the per-device rate is below the threshold

.. math:: \lambda^* = \frac{1}{\alpha\,((k+1)M+1)}.

The time-average queue per device (mean over devices, 95% CI over independent replications) is
simulated at loads below and above 1; points above stop at the job cap and are marked unstable.
For :math:`M = 0` the device is a slotted Geo/Geo/1 queue with the exact mean
:math:`E[Q] = p(1-p)/(q-p)`, :math:`p = \lambda\,dt`, :math:`q = dt/\alpha`
(docs/model.md section 3).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.ticker import FixedLocator, FormatStrFormatter, NullFormatter
from tqdm.auto import tqdm

from moa_stability import inferences_per_prompt, paper, paper_network
from moa_stability.analysis.symbolic import slotted_mean_queue
from moa_stability.simulation.simulate import simulate

from .style import (
    CONFIG_COLOURS,
    INCONCLUSIVE_MARKER,
    STABLE_MARKER,
    UNSTABLE_MARKER,
    FigureOutput,
    config_label,
    figure,
)

TITLE = "Theorem 1 validated: time-average queue vs per-device rate (slotted simulator)"
ALPHA_S = 1.0
DT_S = 0.1 * ALPHA_S
SEED = 1
RATE_TICKS = (0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
TWIN_MARKERS = (STABLE_MARKER, "D", "^")
"""Markers of the first, second, third configuration sharing one threshold."""


@dataclass(frozen=True)
class Fidelity:
    """Simulation effort per point."""

    loads: tuple[float, ...]
    horizon_s: float
    replications: int
    max_jobs: int


DEFAULT = Fidelity((0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 1.05, 1.2), 1.5e5, 8, 2_000)
QUICK = Fidelity((0.3, 0.6, 0.9, 1.2), 1e4, 4, 1_000)


def threshold_rate(M: int, k: int, alpha_s: float = ALPHA_S) -> float:
    r"""Theorem 1's largest stable per-device rate :math:`1/(\alpha((k+1)M+1))`, prompts/s."""
    return 1.0 / (alpha_s * inferences_per_prompt(M, k))


def simulate_point(M: int, k: int, load: float, fid: Fidelity) -> dict[str, object]:
    """One (configuration, load) point: queue per device with its CI and the verdict."""
    net = paper_network(M=M, k=k, arrival_rate=1.0, service_time=ALPHA_S).at_load(load)
    rate = float(net.arrival_rate[0])
    r = simulate(
        net,
        method="slots",
        horizon=fid.horizon_s,
        dt=DT_S,
        seed=SEED,
        replications=fid.replications,
        max_jobs=fid.max_jobs,
    )
    exact = slotted_mean_queue(rate * DT_S, DT_S / ALPHA_S) if M == 0 and load < 1 else float("nan")
    return {
        "M": M,
        "k": k,
        "inferences_per_prompt": net.inferences_per_prompt,
        "threshold_rate_per_s": threshold_rate(M, k),
        "load": load,
        "rate_per_s": rate,
        "mean_queue": r.total_queue_mean / net.n,
        "mean_queue_ci": r.total_queue_ci / net.n,
        "busiest_mean_queue": float(r.mean_queue.max()),
        "exact_mean_queue": exact,
        "verdict": r.verdict,
        "cap_hit_s": np.nan if r.cap_hit_time is None else r.cap_hit_time,
        "cap_per_device": fid.max_jobs / net.n,
        "slots_per_replication": r.horizon_slots,
        "replications": r.replications,
    }


def run(fid: Fidelity) -> pd.DataFrame:
    """Every configuration at every load."""
    points = [(M, k, load) for M, k in paper.CONFIGS for load in fid.loads]
    rows = [
        simulate_point(M, k, load, fid)
        for M, k, load in tqdm(points, desc="fig1 points", unit="pt", leave=False)
    ]
    return pd.DataFrame(rows)


def plot(table: pd.DataFrame) -> object:
    """Queue vs rate per configuration, thresholds as vertical lines, log-log axes.

    Configurations with the same number of inferences per prompt :math:`(k+1)M+1` have the same
    loads, threshold and (in law) queue, so their curves coincide: the later ones are drawn
    dashed with open markers on top, and their shared threshold line is labelled once.
    """
    fig, ax = figure(width=8.0, height=4.6)
    seen_per_threshold: dict[int, int] = {}
    for colour, ((M, k), part) in zip(
        CONFIG_COLOURS, table.groupby(["M", "k"], sort=False), strict=False
    ):
        inferences = int(part["inferences_per_prompt"].iloc[0])
        twin = seen_per_threshold.get(inferences, 0)
        seen_per_threshold[inferences] = twin + 1
        label = config_label(M, k)
        if twin:
            label += f", same (k+1)M+1 = {inferences}"
        bounded = part[part["verdict"] != "unstable"]
        ax.errorbar(
            bounded["rate_per_s"],
            bounded["mean_queue"],
            yerr=bounded["mean_queue_ci"],
            color=colour,
            marker=TWIN_MARKERS[twin % len(TWIN_MARKERS)],
            mfc="none" if twin else colour,
            ls="--" if twin else "-",
            capsize=2,
            zorder=2 + twin,
            label=label,
        )
        unsure = bounded[bounded["verdict"] == "inconclusive"]
        ax.scatter(
            unsure["rate_per_s"],
            unsure["mean_queue"],
            s=90,
            marker=INCONCLUSIVE_MARKER,
            facecolors="none",
            edgecolors="k",
            linewidths=0.9,
            zorder=5,
        )
        # A capped run's time average only says when the cap stopped it: mark the cap.
        unstable = part[part["verdict"] == "unstable"]
        ax.scatter(
            unstable["rate_per_s"],
            unstable["cap_per_device"],
            facecolors="none" if twin else colour,
            edgecolors=colour,
            marker=UNSTABLE_MARKER,
            s=64 if twin else 36,
            zorder=3 + twin,
        )
        if not twin:
            threshold = part["threshold_rate_per_s"].iloc[0]
            ax.axvline(threshold, color=colour, ls=":", lw=1)
            ax.annotate(
                "1" if inferences == 1 else f"1/{inferences}",
                (threshold, 1.0),
                xycoords=("data", "axes fraction"),
                xytext=(0, 2),
                textcoords="offset points",
                ha="center",
                va="bottom",
                fontsize=7,
                color=colour,
            )
        if M == 0:
            exact = part[part["exact_mean_queue"].notna()]
            ax.plot(
                exact["rate_per_s"],
                exact["exact_mean_queue"],
                color="k",
                ls="--",
                lw=0.8,
                zorder=4,
                label="Geo/Geo/1 exact (M = 0)",
            )
    ax.scatter(
        [], [], color="grey", marker=UNSTABLE_MARKER, label="unstable (drawn at job cap / n)"
    )
    ax.scatter(
        [],
        [],
        facecolors="none",
        edgecolors="k",
        linewidths=0.9,
        marker=INCONCLUSIVE_MARKER,
        s=90,
        label="simulator verdict 'inconclusive':\nits growth test neither passed\nnor failed "
        "(CSV column verdict)",
    )
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="per-device arrival rate λ (prompts/s)",
        ylabel="time-average jobs per device (95% CI)",
    )
    # Plain decimal ticks: a log axis spanning one decade otherwise shows only 10^-1 and 10^0.
    ax.xaxis.set_major_locator(FixedLocator(RATE_TICKS))
    ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    fig.suptitle(
        "Theorem 1: bounded iff λ < λ* = 1/(α((k+1)M+1)) (dotted lines, λ* on top), n = 4, α = 1 s"
    )
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def _verdicts(part: pd.DataFrame) -> str:
    counts = part["verdict"].value_counts()
    return ", ".join(f"{counts.get(v, 0)} {v}" for v in ("stable", "inconclusive", "unstable"))


def headline(table: pd.DataFrame) -> str:
    below, above = table[table["load"] < 1], table[table["load"] > 1]
    exact = below[below["M"] == 0]
    inside = (
        np.abs(exact["mean_queue"] - exact["exact_mean_queue"]) <= exact["mean_queue_ci"]
    ).sum()
    top = below[below["load"] == below["load"].max()]
    return (
        f"{len(table)} points; below the threshold {_verdicts(below)}; above "
        f"{_verdicts(above)}; M=0 within the 95% CI of the exact Geo/Geo/1 mean at "
        f"{inside}/{len(exact)} loads; at load {top['load'].iloc[0]:g}: "
        f"{top['mean_queue'].min():.3g}..{top['mean_queue'].max():.3g} jobs per device"
    )


def make(quick: bool = False) -> FigureOutput:
    """Simulate (quick: fewer loads, 1e5 slots per replication) and plot."""
    table = run(QUICK if quick else DEFAULT)
    return FigureOutput(plot(table), table, headline(table))
