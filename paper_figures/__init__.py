"""The paper's figures, regenerated from the toolkit: ``python -m paper_figures``.

Each figure is one module exposing ``TITLE`` and ``make(quick: bool) -> FigureOutput``
(:mod:`paper_figures.style`). Registering a new figure is one line in :data:`FIGURES`.
"""

from __future__ import annotations

from importlib import import_module
from pathlib import Path
from types import ModuleType

import matplotlib.pyplot as plt

from .style import RC, FigureOutput, save

FIGURES: tuple[str, ...] = (
    "fig1_theorem1",
    "fig2_stability_map",
    "fig3_capacity_region",
    "fig4_service_fit",
    "fig5_crosscheck",
    "fig6_latency_table",
    "fig7_sample_paths",
    "fig8_memory",
    "fig9_latency",
    "fig10_planner",
    "fig11_disciplines",
    "fig12_live",
)
"""Registered figure modules, in the order they are generated; each names its output files."""


def figure_module(name: str) -> ModuleType:
    """The module of a registered figure."""
    if name not in FIGURES:
        raise ValueError(f"unknown figure {name!r}; choose from {', '.join(FIGURES)}")
    return import_module(f".{name}", __name__)


def render(name: str, out: str | Path, quick: bool = False) -> FigureOutput:
    """Compute one registered figure under the shared style and write its files to ``out``."""
    with plt.rc_context(RC):
        result = figure_module(name).make(quick=quick)
        save(result.fig, result.table, name, out, latex=result.latex)
    return result


__all__ = ["FIGURES", "FigureOutput", "figure_module", "render", "save"]
