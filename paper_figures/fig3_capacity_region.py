r"""Figure 3: the capacity region in the plane of two devices' rates, uniform vs optimised
proposer selection, checked by simulation.

The heterogeneous network has :math:`n = 4`, :math:`(M, k) = (2, 2)` and mean inference times
:math:`\alpha = (1, 1, 1, 4)` s; devices 1 and 2 keep a fixed rate. With a fixed selection the
stable region is the polygon :math:`\{\lambda : A\lambda \le 1\}`; optimising the inclusion
probabilities :math:`\pi_m[j, i]` (``optimize.capacity_region``) steers helper work away from
the slow device 3 and enlarges it. Each grid point is simulated twice: with uniform selection,
and with the selection that :func:`moa_stability.analysis.optimize.max_stable_rate` finds for that
point's direction. Its exact stability margin is :math:`\theta^*`, the largest scale of its
rates that keeps every load below 1 (stable iff :math:`\theta^* > 1`; every device runs one
service-time mean for all job types, so :math:`\rho < 1` is sufficient here).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from moa_stability import MoANetwork, max_uniform_scale
from moa_stability.analysis.optimize import capacity_region, max_stable_rate
from moa_stability.simulation.simulate import simulate

from .style import (
    INCONCLUSIVE_MARKER,
    STABLE_MARKER,
    UNSTABLE_MARKER,
    FigureOutput,
    figure,
)

TITLE = "Capacity region of two devices' rates: uniform vs optimised selection"
DEVICES = (0, 3)
ALPHA_S = (1.0, 1.0, 1.0, 4.0)
OTHER_RATE_PER_S = 0.01
SELECTIONS = ("uniform", "optimised")
SEED = 3
GRID_FRACTIONS = {False: (0.15, 0.4, 0.65, 0.9, 1.15), True: (0.25, 0.7, 1.15)}  # by quick
HORIZON_S = {False: 150_000.0, True: 30_000.0}  # quick: 50 relaxation times at load 0.7
MAX_JOBS = 2_000


def network(rate_a: float = 0.0, rate_b: float = 0.0) -> MoANetwork:
    """The heterogeneous network with the two plane devices at the given rates."""
    rates = np.full(len(ALPHA_S), OTHER_RATE_PER_S)
    rates[list(DEVICES)] = rate_a, rate_b
    return MoANetwork(n=len(ALPHA_S), M=2, k=2, arrival_rate=rates, service_time=ALPHA_S)


def boundaries(n_angles: int) -> pd.DataFrame:
    """The region's boundary under both selections, one row per angle."""
    frames = []
    for name in SELECTIONS:
        frame = capacity_region(
            network(), devices=DEVICES, n_angles=n_angles, optimise_selection=name == "optimised"
        )
        frames.append(
            frame.assign(selection=name, kind="boundary", binding=frame["binding"].map(str))
        )
    return pd.concat(frames, ignore_index=True)


def _point_network(net: MoANetwork, selection: str) -> tuple[MoANetwork, float]:
    """The network simulated for one selection, and its exact stability margin theta*."""
    if selection == "uniform":
        return net, max_uniform_scale(net)
    best = max_stable_rate(net, optimise_selection=True)
    return net.replace(selection=best.selection), best.value


def simulate_grid(
    region: pd.DataFrame, fractions: tuple[float, ...], horizon_s: float
) -> pd.DataFrame:
    """Simulate every grid point under both selections; grid spans the optimised region."""
    widest = region[region["selection"] == "optimised"]
    a_max, b_max = widest["rate_a_per_s"].max(), widest["rate_b_per_s"].max()
    points = [
        (fa * a_max, fb * b_max, sel) for fa in fractions for fb in fractions for sel in SELECTIONS
    ]
    rows = []
    for rate_a, rate_b, sel in tqdm(points, desc="fig3 points", unit="sim", leave=False):
        net, theta = _point_network(network(rate_a, rate_b), sel)
        r = simulate(net, horizon=horizon_s, seed=SEED, max_jobs=MAX_JOBS)
        rows.append(
            {
                "kind": "simulated",
                "selection": sel,
                "rate_a_per_s": rate_a,
                "rate_b_per_s": rate_b,
                "theta_star": theta,
                "max_load": 1.0 / theta,
                "verdict": r.verdict,
                "mean_queue_max": float(r.mean_queue.max()),
                "cap_hit_s": np.nan if r.cap_hit_time is None else r.cap_hit_time,
            }
        )
    return pd.DataFrame(rows)


def polygon_area(a: np.ndarray, b: np.ndarray) -> float:
    """Area of the region bounded by the axes and the boundary points (shoelace formula)."""
    x, y = np.concatenate([[0.0], a]), np.concatenate([[0.0], b])
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


_MARKERS = {
    "stable": STABLE_MARKER,
    "unstable": UNSTABLE_MARKER,
    "inconclusive": INCONCLUSIVE_MARKER,
}
_VERDICT_COLOURS = {"stable": "tab:green", "unstable": "tab:red", "inconclusive": "tab:grey"}


def plot(table: pd.DataFrame) -> object:
    """One panel per selection: both regions, the panel's shaded, its simulated verdicts."""
    fig, axes = figure(1, 2, width=9.5, height=4.2, sharex=True, sharey=True)
    edge = table[table["kind"] == "boundary"]
    sims = table[table["kind"] == "simulated"]
    for ax, sel in zip(axes, SELECTIONS, strict=True):
        for other, style in zip(SELECTIONS, ("-", "--"), strict=True):
            line = edge[edge["selection"] == other]
            ax.plot(
                line["rate_a_per_s"],
                line["rate_b_per_s"],
                "k",
                ls=style,
                lw=1,
                label=f"{other} selection boundary",
            )
            if other == sel:
                ax.fill_between(
                    line["rate_a_per_s"], line["rate_b_per_s"], alpha=0.15, color="tab:blue"
                )
        for verdict, part in sims[sims["selection"] == sel].groupby("verdict"):
            ax.scatter(
                part["rate_a_per_s"],
                part["rate_b_per_s"],
                marker=_MARKERS[verdict],
                color=_VERDICT_COLOURS[verdict],
                s=40,
                zorder=3,
                label=f"simulated: {verdict}",
            )
        ax.set(
            xlabel=f"rate of device {DEVICES[0]} (α = {ALPHA_S[DEVICES[0]]:g} s), prompts/s",
            ylabel=f"rate of device {DEVICES[1]} (α = {ALPHA_S[DEVICES[1]]:g} s), prompts/s",
            title=f"{sel} proposer selection",
        )
    handles = {}
    for ax in axes:
        handles.update(zip(*reversed(ax.get_legend_handles_labels()), strict=True))
    fig.legend(handles.values(), handles.keys(), loc="outside lower center", ncol=5)
    fig.suptitle(
        f"n = 4, (M, k) = (2, 2), α = {ALPHA_S} s, devices 1, 2 at {OTHER_RATE_PER_S:g} prompts/s"
    )
    return fig


def headline(table: pd.DataFrame) -> str:
    edge = table[table["kind"] == "boundary"]
    area = {
        sel: polygon_area(part["rate_a_per_s"].to_numpy(), part["rate_b_per_s"].to_numpy())
        for sel, part in edge.groupby("selection")
    }
    axis_max = edge.groupby("selection")[["rate_a_per_s", "rate_b_per_s"]].max()
    sims = table[table["kind"] == "simulated"]
    clear = sims[np.abs(sims["theta_star"] - 1) > 0.15]
    agree = (clear["verdict"] == np.where(clear["theta_star"] > 1, "stable", "unstable")).sum()
    return (
        f"optimised/uniform area {area['optimised'] / area['uniform']:.2f}; device "
        f"{DEVICES[0]} alone {axis_max.loc['uniform', 'rate_a_per_s']:.4g} -> "
        f"{axis_max.loc['optimised', 'rate_a_per_s']:.4g} prompts/s, device {DEVICES[1]} "
        f"{axis_max.loc['uniform', 'rate_b_per_s']:.4g} -> "
        f"{axis_max.loc['optimised', 'rate_b_per_s']:.4g}; simulated verdicts agree with "
        f"the LP at {agree}/{len(clear)} points with |theta*-1| > 0.15 "
        f"({len(sims)} simulations)"
    )


def make(quick: bool = False) -> FigureOutput:
    """Solve both regions, simulate the grid (quick: 3 x 3, shorter runs) and plot."""
    region = boundaries(n_angles=17 if quick else 33)
    sims = simulate_grid(region, GRID_FRACTIONS[quick], HORIZON_S[quick])
    table = pd.concat([region, sims], ignore_index=True)
    return FigureOutput(plot(table), table, headline(table))
