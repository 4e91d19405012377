r"""Figure 2: the stability map, maximal stable per-device rate over (M, k).

Two readings of the measured service-time model (:mod:`moa_stability.llm.service`, fitted to the
shipped trace) on the complete graph:

* **type-blind** (the paper): every inference takes the mean propose time :math:`\alpha_p`,
  so :math:`\lambda^* = 1/(\alpha_p((k+1)M+1))`;
* **type-aware**: refine and aggregate jobs read the :math:`k+1` previous responses, so with
  per-type means :math:`\alpha_p, \alpha_r, \alpha_a` (``mean_service_times``)

  .. math:: \lambda^* = \frac{1}{(k+1)\alpha_p + (k+1)(M-1)\alpha_r + \alpha_a}
     \quad (M \ge 1), \qquad \lambda^* = 1/\alpha_p \quad (M = 0).

Both are ``max_uniform_scale`` of the network with unit rates and those means. Below the
type-aware rate every :math:`\rho_i < 1`, which is necessary; with unequal means per device it
is sufficient only in Kelly-type cases (docs/model.md section 2.5). On the complete graph the
per-device thresholds do not depend on :math:`n`; :math:`n` bounds :math:`k \le n - 1`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib import patheffects
from matplotlib.colors import LogNorm, Normalize
from tqdm.auto import tqdm

from moa_stability import MoANetwork, max_uniform_scale
from moa_stability.llm.service import mean_service_times

from .style import FigureOutput, figure

TITLE = "Stability map: maximal stable per-device rate over (M, k), type-blind vs type-aware"
LAYERS = (0, 1, 2, 3, 4)
PROPOSERS = {4: (0, 1, 2, 3), 16: (0, 1, 2, 3, 5, 7, 11, 15)}
QUICK_LAYERS = (0, 1, 2, 3)
QUICK_PROPOSERS = {4: (0, 1, 2, 3), 16: (0, 1, 3, 7, 15)}
READINGS = ("type_blind", "type_aware")


def thresholds(n: int, M: int, k: int) -> dict[str, float]:
    """Per-type means and both maximal stable per-device rates of one configuration."""
    means = mean_service_times(M, k)
    aware = MoANetwork(n=n, M=M, k=k, arrival_rate=1.0, service_time=means)
    blind = aware.replace(service_time=means["propose"])
    return {
        "n": n,
        "M": M,
        "k": k,
        **{f"{c}_mean_s": means.get(c, np.nan) for c in ("propose", "refine", "aggregate")},
        "type_blind_rate_per_s": max_uniform_scale(blind),
        "type_aware_rate_per_s": max_uniform_scale(aware),
    }


def run(layers: tuple[int, ...], proposers: dict[int, tuple[int, ...]]) -> pd.DataFrame:
    """Both thresholds on every (n, M, k) cell; M = 0 only with k = 0 (k means nothing there)."""
    cells = [
        (n, M, k) for n, ks in proposers.items() for M in layers for k in ks if M > 0 or k == 0
    ]
    rows = [thresholds(n, M, k) for n, M, k in tqdm(cells, desc="fig2 cells", leave=False)]
    table = pd.DataFrame(rows)
    table["aware_over_blind"] = table["type_aware_rate_per_s"] / table["type_blind_rate_per_s"]
    table["type_aware_total_rate_per_s"] = table["n"] * table["type_aware_rate_per_s"]
    return table


def _heatmap(
    ax: object, grid: pd.DataFrame, fmt: str, cmap: str, label: str, norm: Normalize
) -> None:
    values = grid.to_numpy(float)
    image = ax.imshow(
        np.ma.masked_invalid(values), cmap=cmap, norm=norm, aspect="auto", origin="lower"
    )
    for (r, c), v in np.ndenumerate(values):
        if np.isfinite(v):
            # Light text on the dark half of the colour map, dark text on the light half.
            ink = "white" if norm(v) < 0.5 else "black"
            ax.text(c, r, format(v, fmt), ha="center", va="center", fontsize=6.5, color=ink)
    ax.set_xticks(range(grid.shape[1]), grid.columns)
    ax.set_yticks(range(grid.shape[0]), grid.index)
    ax.set(xlabel="extra proposers per layer k", ylabel="layers M")
    ax.grid(False)
    ax.figure.colorbar(image, ax=ax, shrink=0.85).set_label(label)


def plot(table: pd.DataFrame) -> object:
    """Type-blind rate, type-aware rate (one colour scale) and their ratio over (M, k).

    On the complete graph the thresholds do not depend on :math:`n`, so the map is drawn once,
    for the largest :math:`n` (whose :math:`k` range covers the others'), with a line where each
    smaller :math:`n` stops (:math:`k \\le n - 1`).
    """
    largest = table["n"].max()
    part = table[table["n"] == largest]
    same = table.merge(part, on=["M", "k"], suffixes=("", "_largest"))
    for column in READINGS:
        if not np.allclose(same[f"{column}_rate_per_s"], same[f"{column}_rate_per_s_largest"]):
            raise ValueError(f"table: {column} rates differ between n values; draw one map per n")
    fig, axes = figure(3, 1, width=7.5, height=9.0)
    rates = table[["type_blind_rate_per_s", "type_aware_rate_per_s"]].to_numpy()
    rate_norm = LogNorm(rates.min(), rates.max())
    ratio_norm = Normalize(table["aware_over_blind"].min(), 1.0)
    panels = (
        (
            "type_blind_rate_per_s",
            ".3g",
            "viridis",
            "λ* (prompts/s)",
            rate_norm,
            "type-blind λ* (the paper: every job takes α_p)",
        ),
        (
            "type_aware_rate_per_s",
            ".3g",
            "viridis",
            "λ* (prompts/s)",
            rate_norm,
            "type-aware λ* (propose, refine, aggregate means α_p, α_r, α_a)",
        ),
        (
            "aware_over_blind",
            ".2f",
            "magma",
            "type-aware / type-blind",
            ratio_norm,
            "type-aware / type-blind (below 1: the paper over-promises)",
        ),
    )
    for ax, (column, fmt, cmap, label, norm, name) in zip(axes, panels, strict=True):
        grid = part.pivot(index="M", columns="k", values=column)
        _heatmap(ax, grid, fmt, cmap, label, norm)
        ax.set_title(name)
        for n in sorted(table["n"].unique())[:-1]:
            # The last column this n allows: its proposers k <= n - 1.
            edge = int(np.searchsorted(grid.columns.to_numpy(), n - 1, side="right")) - 0.5
            ax.axvline(edge, color="white", lw=2.5)
            ax.axvline(edge, color="black", lw=1.0, ls="--")
            for text, side, shift in (
                (f"n = {n}: k ≤ {n - 1}", "right", -3),
                (f"n = {largest}: k ≤ {largest - 1}", "left", 3),
            ):
                ax.annotate(
                    text,
                    (edge, 1.0),
                    xycoords=("data", "axes fraction"),
                    xytext=(shift, -2),
                    textcoords="offset points",
                    ha=side,
                    va="top",
                    fontsize=7,
                    color="white",
                    path_effects=[patheffects.withStroke(linewidth=1.5, foreground="black")],
                )
    fig.suptitle(
        "Maximal stable per-device rate λ* on the complete graph: the same for every n\n"
        "(n only bounds k ≤ n − 1), service model fitted to the shipped trace"
    )
    return fig


def headline(table: pd.DataFrame) -> str:
    ratio = table[table["M"] > 0]["aware_over_blind"]
    worst = table.loc[table["aware_over_blind"].idxmin()]
    paper = table[(table["n"] == 4) & (table["M"] == 2) & (table["k"] == 2)].iloc[0]
    return (
        f"{len(table)} cells; type-aware/type-blind {ratio.min():.2f}..{ratio.max():.2f} "
        f"(lowest at M={worst['M']:.0f}, k={worst['k']:.0f}); paper network (2, 2): "
        f"{paper['type_blind_rate_per_s']:.4g} blind vs {paper['type_aware_rate_per_s']:.4g}"
        f" aware prompts/s per device (alpha_p {paper['propose_mean_s']:.3g} s, alpha_r "
        f"{paper['refine_mean_s']:.3g} s, alpha_a {paper['aggregate_mean_s']:.3g} s)"
    )


def make(quick: bool = False) -> FigureOutput:
    """Tabulate both thresholds (quick: fewer cells) and draw the heatmaps."""
    table = run(QUICK_LAYERS, QUICK_PROPOSERS) if quick else run(LAYERS, PROPOSERS)
    return FigureOutput(plot(table), table, headline(table))
