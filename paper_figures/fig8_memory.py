r"""Figure 8: edge memory, the queue-length tail and the buffer a device needs.

On the paper's network (:math:`n = 4`, :math:`M = 2`, :math:`k = 2`, :math:`\alpha = 1` s, load
:math:`\rho = 7\alpha\lambda` at every device) the continuous-time simulator records the
fraction of time :math:`P(Q > B)` that a device holds more than :math:`B` jobs
(``SimulationResult.queue_distribution``, pooled over the four symmetric devices). Over the
tail, :math:`0.1 \ge P(Q > B) \ge` the fidelity's floor, the least-squares line

.. math:: \ln P(Q > B) \approx a - \eta B

gives the decay rate :math:`\eta` per job, and the buffer for an overflow probability
:math:`\varepsilon = 10^{-3}` is the smallest :math:`B` with :math:`a - \eta B \le \ln\varepsilon`.
For comparison, an M/M/1 queue at the same load has :math:`P(Q > B) = \rho^{B+1}`:
:math:`\eta = -\ln\rho` and :math:`B = \lceil \ln\varepsilon / \ln\rho \rceil - 1`.

Prompts waiting at a join (some responses of their layer back, not all) hold up to :math:`k`
responses each at their origin; their time-average number is ``mean_join_waiting``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from moa_stability import MoANetwork, fit_tail, paper_network
from moa_stability.simulation.simulate import SimulationResult, simulate

from .style import CONFIG_COLOURS, FigureOutput, figure

TITLE = "Edge memory: queue-length tail P(Q > B) and the buffer for overflow probability 1e-3"
LOADS = (0.5, 0.7, 0.9, 0.95)
M_LAYERS, K_PROPOSERS, ALPHA_S = 2, 2, 1.0
TARGET = 1e-3
TRACKED = 1024
SEED = 8


@dataclass(frozen=True)
class Fidelity:
    """Simulation effort per load, and the smallest tail probability trusted by the fit."""

    horizon_s: float
    replications: int
    floor: float


DEFAULT = Fidelity(2e7, 2, 1e-4)
QUICK = Fidelity(5e5, 2, 1e-3)


def first_below(tail: np.ndarray, target: float) -> int:
    """Smallest buffer whose (empirical) overflow probability is at most ``target``."""
    below = np.flatnonzero(tail <= target)
    if below.size == 0:
        raise ValueError(
            f"P(Q > B) stays above {target:g} up to B = {tail.size - 1}; raise TRACKED"
        )
    return int(below[0])


def network(load: float) -> MoANetwork:
    """The paper network at ``load`` on every device."""
    return paper_network(M=M_LAYERS, k=K_PROPOSERS, service_time=ALPHA_S).at_load(load)


def simulate_load(load: float, fid: Fidelity) -> SimulationResult:
    """Continuous-time simulation of the paper network at ``load``, queue lengths tracked."""
    return simulate(
        network(load),
        method="events",
        horizon=fid.horizon_s,
        seed=SEED,
        replications=fid.replications,
        max_tracked_queue=TRACKED,
    )


def load_table(load: float, r: SimulationResult, fid: Fidelity) -> pd.DataFrame:
    """Rows B = 0.. the last buffer exceeded: pooled and worst-device tails, the fit, M/M/1; and
    the load's summary numbers repeated on every row."""
    buffers = np.arange(TRACKED)
    per_device = r.overflow_probability(buffers)
    pooled = per_device.mean(axis=0)
    fit = fit_tail(buffers, pooled, fid.floor)
    device_decay = [fit_tail(buffers, tail, fid.floor).decay_per_job for tail in per_device]
    shown = buffers[: np.flatnonzero(pooled > 0).max() + 2]
    n = r.mean_queue.size
    return pd.DataFrame(
        {
            "load": load,
            "rate_per_s": float(network(load).arrival_rate[0]),
            "buffer_jobs": shown,
            "overflow_probability": pooled[shown],
            "overflow_probability_worst_device": per_device[:, shown].max(axis=0),
            "fitted_probability": fit.probability(shown),
            "in_fit": (shown >= fit.first) & (shown <= fit.last),
            "mm1_probability": load ** (shown + 1.0),
            "decay_rate_per_job": fit.decay_per_job,
            "decay_rate_device_min": min(device_decay),
            "decay_rate_device_max": max(device_decay),
            "mm1_decay_rate_per_job": -math.log(load),
            "fit_floor": fid.floor,
            "fit_first_jobs": fit.first,
            "fit_last_jobs": fit.last,
            "buffer_1e-3_fit_jobs": fit.buffer_for(TARGET),
            "buffer_1e-3_empirical_jobs": first_below(pooled, TARGET),
            "buffer_1e-3_worst_device_jobs": int(r.buffer_for(TARGET).max()),
            "buffer_1e-3_mm1_jobs": math.ceil(math.log(TARGET) / math.log(load)) - 1,
            "mean_queue": float(r.mean_queue.mean()),
            "max_queue": int(r.max_queue.max()),
            "mean_join_waiting": r.mean_join_waiting,
            "mean_join_waiting_per_device": r.mean_join_waiting / n,
            "verdict": r.verdict,
            "horizon_s": r.horizon_s,
            "replications": r.replications,
        }
    )


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """One row per load."""
    return table.drop_duplicates("load").set_index("load")


def plot(table: pd.DataFrame) -> object:
    """Left: tails (log y) with fits and M/M/1; middle: the buffer for 1e-3 by four estimates,
    side by side per load; right: prompts waiting at joins (a count of prompts, not of jobs, so
    on its own axis)."""
    fig, (ax, bx, jx) = figure(
        1, 3, width=13.0, height=4.4, gridspec_kw={"width_ratios": (1.35, 1.0, 0.75)}
    )
    for colour, (load, part) in zip(CONFIG_COLOURS, table.groupby("load"), strict=False):
        ax.plot(
            part["buffer_jobs"],
            part["overflow_probability"],
            color=colour,
            lw=1.4,
            label=f"ρ = {load:g}: η = {part['decay_rate_per_job'].iloc[0]:.3g}/job",
        )
        fitted = part[part["fitted_probability"] >= TARGET / 10]
        ax.plot(fitted["buffer_jobs"], fitted["fitted_probability"], color=colour, ls="--", lw=0.9)
        ax.plot(part["buffer_jobs"], part["mm1_probability"], color=colour, ls=":", lw=0.8)
    ax.axhline(TARGET, color="k", lw=0.8)
    # Below the floor the curves rest on few excursions, and they end at the longest queue seen.
    ax.axhspan(
        1e-6,
        table["fit_floor"].iloc[0],
        color="0.9",
        zorder=0,
        label="below the fit floor (few excursions)",
    )
    ax.plot([], [], "k--", lw=0.9, label="exponential fit")
    ax.plot([], [], "k:", lw=0.8, label="M/M/1 at the same load, ρ^(B+1)")
    ax.set(
        yscale="log",
        ylim=(1e-6, 1.5),
        xlabel="buffer B (jobs at the device)",
        ylabel="P(Q > B), fraction of time",
        title="Queue-length tail per device",
    )
    ax.legend(loc="upper right")
    s = summary(table)
    # The four estimates nearly agree, so as lines they hide each other: bars side by side,
    # each with its value, show both the agreement and the differences.
    x = np.arange(len(s))
    width = 0.2
    for i, (column, shade, hatch, label) in enumerate(
        (
            ("buffer_1e-3_fit_jobs", "0.2", "", "exponential fit"),
            ("buffer_1e-3_empirical_jobs", "0.5", "", "empirical (pooled)"),
            ("buffer_1e-3_worst_device_jobs", "0.8", "", "empirical, worst device"),
            ("buffer_1e-3_mm1_jobs", "white", "///", "M/M/1 at the same load"),
        )
    ):
        bars = bx.bar(
            x + (i - 1.5) * width,
            s[column],
            width=width,
            color=shade,
            edgecolor="k",
            lw=0.5,
            hatch=hatch,
            label=label,
        )
        bx.bar_label(bars, fontsize=5.5, padding=1)
    bx.set_xticks(x, [f"ρ = {load:g}" for load in s.index])
    bx.set(
        yscale="log",
        ylim=(1, 4 * s.filter(like="buffer_1e-3").to_numpy().max()),
        xlabel="load per device",
        ylabel="buffer B (jobs at the device)",
        title=f"Buffer for P(Q > B) ≤ {TARGET:g}",
    )
    bx.legend(loc="upper left")
    jx.plot(s.index, s["mean_join_waiting_per_device"], "kd-")
    jx.set(
        ylim=(0, None),
        xlabel="load ρ per device",
        ylabel="prompts per device (time average)",
        title=f"Prompts waiting at joins\n(each holds up to k = {K_PROPOSERS} responses)",
    )
    fig.suptitle(
        f"Paper network n = 4, (M, k) = ({M_LAYERS}, {K_PROPOSERS}), α = 1 s, "
        "continuous-time simulation"
    )
    return fig


def headline(table: pd.DataFrame) -> str:
    parts = [
        f"ρ={load:g}: η={row.decay_rate_per_job:.3g}/job (M/M/1 "
        f"{row.mm1_decay_rate_per_job:.3g}), B(1e-3)={row['buffer_1e-3_fit_jobs']} fit/"
        f"{row['buffer_1e-3_empirical_jobs']} empirical, joins "
        f"{row.mean_join_waiting_per_device:.3g}/device"
        for load, row in summary(table).iterrows()
    ]
    return "; ".join(parts)


def make(quick: bool = False) -> FigureOutput:
    """Simulate every load (quick: 5e5 s instead of 2e7 s per replication) and plot."""
    fid = QUICK if quick else DEFAULT
    frames = [
        load_table(load, simulate_load(load, fid), fid)
        for load in tqdm(LOADS, desc="fig8 loads", unit="load", leave=False)
    ]
    table = pd.concat(frames, ignore_index=True)
    return FigureOutput(plot(table), table, headline(table))
