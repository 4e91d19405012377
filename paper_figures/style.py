"""One look for every figure, and the one way they are written to disk.

A figure module returns a :class:`FigureOutput`; :func:`save` writes ``name.png``,
``name.pdf`` and ``name.csv`` (the numbers behind the plot), plus ``name.tex`` when the figure
also has a LaTeX table.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # figures are files; never open a window

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

DPI = 150
CONFIG_COLOURS = plt.get_cmap("tab10").colors
"""One colour per (M, k) configuration, in the order a figure lists them."""
STABLE_MARKER, UNSTABLE_MARKER, INCONCLUSIVE_MARKER = "o", "X", "s"

RC = {
    "figure.figsize": (6.4, 4.2),
    "figure.constrained_layout.use": True,
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "legend.fontsize": 8,
    "legend.frameon": False,
    "lines.markersize": 4,
    "savefig.dpi": DPI,
    "pdf.fonttype": 42,  # embed TrueType so the PDF text stays editable and searchable
}


@dataclass(frozen=True)
class FigureOutput:
    """What a figure module produces.

    Attributes
    ----------
    fig : matplotlib.figure.Figure
    table : pandas.DataFrame
        The numbers behind the figure, written as the CSV.
    headline : str
        One line with the figure's key numbers, printed by the command.
    latex : str or None
        A LaTeX table written beside the figure (``name.tex``), when it has one.
    """

    fig: Figure
    table: pd.DataFrame
    headline: str
    latex: str | None = None


def figure(
    nrows: int = 1, ncols: int = 1, width: float = 6.4, height: float = 4.2, **kwargs: object
) -> tuple[Figure, object]:
    """``plt.subplots`` of the given size (the style itself is applied by ``render``)."""
    return plt.subplots(nrows, ncols, figsize=(width, height), **kwargs)


def config_label(M: int, k: int) -> str:
    """The paper's name of an MoA configuration."""
    return f"(M, k) = ({M}, {k})"


def save(
    fig: Figure, table: pd.DataFrame, name: str, out: str | Path, latex: str | None = None
) -> list[Path]:
    """Write ``name.png``, ``name.pdf`` and ``name.csv`` (and ``name.tex``) into ``out``.

    The figure is closed afterwards so that a long run does not hold every figure in memory.

    Returns
    -------
    list of pathlib.Path
        The files written.
    """
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{name}.{ext}" for ext in ("png", "pdf", "csv")]
    fig.savefig(paths[0], dpi=DPI)
    fig.savefig(paths[1])
    plt.close(fig)
    table.to_csv(paths[2], index=False)
    if latex is not None:
        paths.append(folder / f"{name}.tex")
        paths[-1].write_text(latex)
    return paths
