r"""Figure 4: the service-time model fitted to the shipped trace.

:class:`moa_stability.llm.service.LinearService` fits, by least squares over every measured
inference,

.. math:: \bar S(L_{in}, L_{out}) = c_0 + c_{in} L_{in} + c_{out} L_{out}, \qquad
          S = \bar S\, e^{\sigma Z - \sigma^2/2},

(prefill cost per input token, decode cost per output token, lognormal noise of mean 1). The
panels show the measured seconds against the fit, against the output length with the model's
lines at each job type's median input, and the residuals against both token counts.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from moa_stability.llm.service import JOB_TYPES, LinearService
from moa_stability.llm.trace import load_default_trace

from .style import FigureOutput, figure

TITLE = "Service-time fit: measured inference seconds vs the fitted linear model"
TYPE_COLOURS = dict(zip(JOB_TYPES, ("tab:blue", "tab:orange", "tab:green"), strict=True))
TYPE_LINES = dict(zip(JOB_TYPES, (("-", 1.4), ("-", 3.2), ("--", 1.4)), strict=True))
"""Line style and width of each type's model line: refine and aggregate read about the same
number of tokens, so their lines nearly coincide; the wide refine line under the dashed
aggregate one keeps both visible."""


def _by_type(table: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """The trace's rows per job type, in protocol order."""
    return [(c, table[table["job_type"] == c]) for c in JOB_TYPES if (table["job_type"] == c).any()]


def _scatter_by_type(ax: object, table: pd.DataFrame, x: str, y: str) -> None:
    for job_type, part in _by_type(table):
        ax.scatter(part[x], part[y], s=6, alpha=0.5, color=TYPE_COLOURS[job_type], label=job_type)


def plot(table: pd.DataFrame, model: LinearService) -> object:
    """Measured vs fitted, seconds vs output tokens, residuals vs input and output tokens."""
    fig, axes = figure(2, 2, width=9.0, height=7.0)
    (fit_ax, out_ax), (res_in_ax, log_ax) = axes
    _scatter_by_type(fit_ax, table, "fitted", "seconds")
    top = float(max(table["fitted"].max(), table["seconds"].max()))
    fit_ax.plot([0, top], [0, top], "k", lw=0.8, label="measured = fitted")
    fit_ax.set(
        xlabel="fitted mean S̄(L_in, L_out) (s)",
        ylabel="measured (s)",
        title=f"R² = {model.fit_result.r2:.3f}, n = {model.fit_result.n_obs}",
    )
    fit_ax.legend()

    _scatter_by_type(out_ax, table, "output_tokens", "seconds")
    grid = np.linspace(0, table["output_tokens"].max(), 50)
    for job_type, part in _by_type(table):
        l_in = float(part["input_tokens"].median())
        style, width = TYPE_LINES[job_type]
        out_ax.plot(
            grid,
            model.mean(l_in, grid),
            color=TYPE_COLOURS[job_type],
            ls=style,
            lw=width,
            label=f"model, {job_type} (median L_in = {l_in:.0f})",
        )
    out_ax.set(
        xlabel="output tokens L_out",
        ylabel="seconds",
        title=f"decode c_out = {1e3 * model.c_out:.3g} ms/token\nprefill c_in = "
        f"{1e3 * model.c_in:.3g} ms/token, c_0 = {model.c0:.3g} s",
    )
    out_ax.legend(fontsize=6.5)

    _scatter_by_type(res_in_ax, table, "input_tokens", "residual")
    res_in_ax.axhline(0, color="k", lw=0.8)
    res_in_ax.set(
        xlabel="input tokens L_in",
        ylabel="residual measured − fitted (s)",
        title="residuals vs prompt length",
    )

    logs = table["log_ratio"][np.isfinite(table["log_ratio"])]
    log_ax.hist(logs, bins=40, density=True, color="grey", alpha=0.45, label="measured")
    x = np.linspace(logs.min(), logs.max(), 200)
    # The data's own density (Gaussian kernel, Scott's bandwidth) shows the shape the single
    # lognormal of the model smooths over.
    log_ax.plot(x, stats.gaussian_kde(logs)(x), "k", lw=1.4, label="measured, kernel density")
    sigma = model.sigma_log
    log_ax.plot(
        x,
        stats.norm.pdf(x, -(sigma**2) / 2, sigma),
        color="tab:red",
        ls="--",
        lw=1.4,
        label=f"model: one lognormal, σ = {sigma:.3g}",
    )
    log_ax.set(
        xlabel="log(measured / fitted)",
        ylabel="density",
        title="multiplicative noise: measured vs the model's law",
    )
    log_ax.legend()
    fig.suptitle(
        f"Service-time model fitted to the shipped trace "
        f"({load_default_trace().attrs.get('model', 'SmolLM2')})"
    )
    return fig


def make(quick: bool = False) -> FigureOutput:
    """Fit the model to the shipped trace and plot (``quick`` changes nothing: it is fast)."""
    trace = load_default_trace()
    model = LinearService.fit(trace)
    table = model.residuals(trace).reset_index(drop=True)
    fit = model.fit_result.to_frame()
    line = (
        f"{len(table)} inferences, R^2 = {model.fit_result.r2:.3f}; "
        + ", ".join(
            f"{term} = {row.estimate:.4g} [{row.ci_low:.4g}, {row.ci_high:.4g}]"
            for term, row in fit.iterrows()
        )
        + f" (s, s/token; 95% CI); lognormal sigma = {model.sigma_log:.3g}"
    )
    return FigureOutput(plot(table, model), table, line)
