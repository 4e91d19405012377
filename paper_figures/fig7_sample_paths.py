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
    """One panel per load: each device's path, and the predicted growth lines above 1."""
    fig, axes = figure(1, len(LOADS), width=9.0, height=3.8)
    for ax, (load, part) in zip(axes, table.groupby("load"), strict=True):
        for column in part.filter(like="_jobs"):
            ax.plot(part["time_s"], part[column], lw=0.7, label=column.replace("_", " "))
        if load > 1:
            t = part["time_s"].to_numpy()
            ax.plot(
                t, fluid_per_s * t, "k--", lw=1.2, label=f"fluid limit {fluid_per_s:.3g} jobs/s"
            )
            ax.plot(
                t, excess_per_s * t, "k:", lw=1, label=f"excess work rate {excess_per_s:.3g} s/s"
            )
        ax.set(
            xlabel="time (s)",
            ylabel="jobs at the device (bin average)",
            title=f"load ρ = {load:g}  (λ = {part['rate_per_s'].iloc[0]:.4g} prompts/s)",
        )
        ax.legend(fontsize=7)
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
