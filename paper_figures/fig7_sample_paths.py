r"""Figure 7: queue-length sample paths just below and just above Theorem 1's threshold.

On the paper's network (:math:`n = 4`, :math:`M = 2`, :math:`k = 2`, :math:`\alpha = 1` s) the
load is :math:`\rho = 7\alpha\lambda`. At :math:`\rho = 0.95` the queues fluctuate around a
finite level; at :math:`\rho = 1.05` the work grows at :math:`\rho - 1 = 0.05` s per second at
each device, but the *jobs present* grow more slowly, because a prompt's later layers are
created only when its earlier layers are served.

The FCFS fluid limit from empty queues (:func:`moa_stability.fluid_growth_rate`, derived in
:mod:`moa_stability.analysis.fluid`) makes this exact: for :math:`(2, 2)` at
:math:`\rho = 1.05` the jobs grow by 0.029 per second at each device, not 0.05. The paths are
time averages over the ``N_BINS`` bins of one replication
(``simulate(..., record_paths=True)``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from moa_stability import fluid_growth_rate, paper_network
from moa_stability.simulation.simulate import simulate

from .style import FigureOutput, figure

TITLE = "Queue-length sample paths just below and just above the threshold"
LOADS = (0.95, 1.05)
M_LAYERS, K_PROPOSERS, ALPHA_S = 2, 2, 1.0
SEED = 7
HORIZON_S = {False: 1_000_000.0, True: 20_000.0}  # by quick
TIME_UNIT_S = 1e3
"""The time axis is in thousands of seconds (no axis offset such as ``1e6``)."""
PATH_COLOURS = ("tab:blue", "tab:red")
"""Mean path below and above the threshold."""


def simulate_paths(load: float, horizon_s: float) -> tuple[pd.DataFrame, object]:
    """Binned per-device queue paths of one replication, and the simulation result."""
    net = paper_network(M=M_LAYERS, k=K_PROPOSERS, service_time=ALPHA_S).at_load(load)
    # The cap must outlast the overloaded run: it gains about 4 * 0.05 jobs/s.
    r = simulate(
        net, method="slots", horizon=horizon_s, seed=SEED, record_paths=True, max_jobs=200_000
    )
    paths = r.paths.rename(columns=lambda i: f"device_{i}_jobs").reset_index()
    paths.insert(0, "rate_per_s", float(net.arrival_rate[0]))
    paths.insert(0, "load", load)
    return paths, r


def _growth_per_device(paths: pd.DataFrame) -> float:
    """Least-squares slope over the second half of the run, jobs/s per device."""
    late = paths[paths["time_s"] >= paths["time_s"].median()]
    mean = late.filter(like="_jobs").mean(axis=1)
    return float(np.polyfit(late["time_s"], mean, 1)[0])


def plot(table: pd.DataFrame, excess_per_s: float, fluid_per_s: float) -> object:
    """One panel per load: each device's path in grey, their mean in colour; below 1 the running
    time average (it settles), above 1 the predicted growth lines."""
    fig, axes = figure(1, len(LOADS), width=9.0, height=3.8)
    for ax, colour, (load, part) in zip(axes, PATH_COLOURS, table.groupby("load"), strict=True):
        t = part["time_s"].to_numpy()
        devices = part.filter(like="_jobs")
        # Four devices in four colours tangle: they are exchangeable, so draw them alike.
        device_lines = ax.plot(t / TIME_UNIT_S, devices.to_numpy(), color="0.72", lw=0.5)
        device_lines[0].set_label(f"each of the {devices.shape[1]} devices")
        mean = devices.mean(axis=1).to_numpy()
        ax.plot(t / TIME_UNIT_S, mean, color=colour, lw=0.9, label="mean over the devices")
        if load > 1:
            ax.plot(
                t / TIME_UNIT_S,
                fluid_per_s * t,
                "k--",
                lw=1.2,
                label=f"fluid limit {fluid_per_s:.3g} jobs/s",
            )
            ax.plot(
                t / TIME_UNIT_S,
                excess_per_s * t,
                "k:",
                lw=1,
                label=f"excess work rate {excess_per_s:.3g} s/s",
            )
        else:
            # Bins have equal widths, so the running mean of bin averages is the time average.
            running = np.cumsum(mean) / np.arange(1, mean.size + 1)
            ax.plot(t / TIME_UNIT_S, running, "k", lw=1.5, label="running time average")
        ax.set(
            xlabel="time (10³ s)",
            ylabel="jobs at the device (bin average)",
            title=f"load ρ = {load:g}  (λ = {part['rate_per_s'].iloc[0]:.4g} prompts/s)",
        )
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle("Paper network n = 4, (M, k) = (2, 2), α = 1 s: below vs above the threshold")
    return fig


def make(quick: bool = False) -> FigureOutput:
    """Simulate both loads (quick: a tenth of the horizon) and plot their paths."""
    frames, results = [], []
    for load in tqdm(LOADS, desc="fig7 paths", unit="run", leave=False):
        paths, r = simulate_paths(load, HORIZON_S[quick])
        frames.append(paths)
        results.append(r)
    table = pd.concat(frames, ignore_index=True)
    excess = LOADS[1] - 1
    fluid = fluid_growth_rate(M_LAYERS, K_PROPOSERS, LOADS[1], ALPHA_S)
    below, above = results
    growth = _growth_per_device(table[table["load"] == LOADS[1]])
    line = (
        f"load {LOADS[0]:g}: {below.verdict}, mean {below.total_queue_mean / 4:.3g} jobs "
        f"per device (max {below.max_queue.max()}); load {LOADS[1]:g}: {above.verdict}, "
        f"jobs grow {growth:.3g}/s per device over the second half (fluid limit "
        f"{fluid:.3g}, excess work {excess:.3g} s/s)"
    )
    return FigureOutput(plot(table, excess, fluid), table, line)
