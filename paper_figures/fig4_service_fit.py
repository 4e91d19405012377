r"""Figure 4: the service-time model fitted to the shipped trace, and what contention does.

Top row, the shipped (quiet) trace: :class:`moa_stability.llm.service.ContextService` fits,
by least squares over every measured inference,

.. math:: \bar S(L_{in}, L_{out}) = c_0 + c_{in} L_{in} + c_{in2} \tfrac{L_{in}^2}{2}
          + c_{out} L_{out} + c_{ctx} L_{out}\bigl(L_{in} + \tfrac{L_{out}}{2}\bigr),
          \qquad S = \bar S\,\varepsilon,

(prefill, quadratic prefill, decode, decode attention over the growing context;
:math:`\varepsilon` of mean one with the fitted :class:`~moa_stability.llm.service.LogResidualLaw`),
beside the plain linear fit :math:`c_0 + c_{in} L_{in} + c_{out} L_{out}`
(:class:`~moa_stability.llm.service.LinearService`). The panels show measured against fitted
seconds, seconds against the output length with the model's curves at each job type's median
input, and the log-residuals against the fitted law.

Bottom row, the cautionary contrast: the same inferences (same prompts, seed and token counts)
timed while other jobs shared the two cores (:func:`moa_stability.llm.trace.load_busy_trace`),
coloured by the load average logged with each inference. The same model fits them with
:math:`R^2 \approx 0.66` and bimodal log-residuals: an inference either had a core or was
time-sliced, and the slowdown of each inference over its quiet twin grows with the load.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from moa_stability.llm.service import (
    JOB_TYPES,
    ContextService,
    LinearService,
    LogResidualLaw,
    service_accuracy,
)
from moa_stability.llm.trace import load_busy_trace, load_default_trace

from .style import FigureOutput, figure

TITLE = "Service-time fit: the quiet trace's context model, and the busy trace's residuals"
TYPE_COLOURS = dict(zip(JOB_TYPES, ("tab:blue", "tab:orange", "tab:green"), strict=True))
TYPE_LINES = dict(zip(JOB_TYPES, (("-", 1.4), ("-", 3.2), ("--", 1.4)), strict=True))
"""Line style and width of each type's model line: refine and aggregate read about the same
number of tokens, so their lines nearly coincide; the wide refine line under the dashed
aggregate one keeps both visible."""
LOAD_MAP = "viridis"


def _by_type(table: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """The trace's rows per job type, in protocol order."""
    return [(c, table[table["job_type"] == c]) for c in JOB_TYPES if (table["job_type"] == c).any()]


def _scatter_by_type(ax: object, table: pd.DataFrame, x: str, y: str) -> None:
    for job_type, part in _by_type(table):
        ax.scatter(part[x], part[y], s=6, alpha=0.5, color=TYPE_COLOURS[job_type], label=job_type)


def _law_density(law: LogResidualLaw, x: np.ndarray) -> np.ndarray:
    r"""Density of :math:`\log\varepsilon`: the normal mixture shifted to make
    :math:`E[\varepsilon] = 1` (as :meth:`LogResidualLaw.sample` draws it)."""
    w, mu, sd = (np.asarray(v, dtype=float) for v in (law.weight, law.mu, law.sigma))
    shift = np.log(np.sum(w * np.exp(mu + 0.5 * sd**2)))
    return sum(wc * stats.norm.pdf(x + shift, m, s) for wc, m, s in zip(w, mu, sd, strict=True))


def _residual_panel(ax: object, logs: pd.Series, law: LogResidualLaw, title: str) -> None:
    """Histogram and kernel density of the log-residuals against the fitted law."""
    logs = logs[np.isfinite(logs)]
    ax.hist(logs, bins=40, density=True, color="grey", alpha=0.45, label="measured")
    x = np.linspace(logs.min(), logs.max(), 300)
    # The data's own density (Gaussian kernel, Scott's bandwidth) next to the fitted law.
    ax.plot(x, stats.gaussian_kde(logs)(x), "k", lw=1.4, label="measured, kernel density")
    ax.plot(x, _law_density(law, x), color="tab:red", ls="--", lw=1.4,
            label=f"fitted law, {law.components} component(s)")  # fmt: skip
    ax.set(xlabel="log(measured / fitted)", ylabel="density", title=title)
    ax.legend(fontsize=6.5)


def _fit_panel(ax: object, table: pd.DataFrame, colour_by_load: bool) -> object:
    top = float(max(table["context_fitted"].max(), table["seconds"].max()))
    points = None
    if colour_by_load:
        points = ax.scatter(table["context_fitted"], table["seconds"], s=6, alpha=0.7,
                            c=table["loadavg_1min"], cmap=LOAD_MAP)  # fmt: skip
    else:
        _scatter_by_type(ax, table, "context_fitted", "seconds")
    ax.plot([0, top], [0, top], "k", lw=0.8, label="measured = fitted")
    ax.set(xlabel="fitted mean S̄(L_in, L_out), context model (s)", ylabel="measured (s)")
    ax.legend(fontsize=6.5)
    return points


def plot(table: pd.DataFrame, models: dict[str, dict[str, object]]) -> object:
    """Top: the quiet trace's fit; bottom: the busy trace coloured by the load average."""
    fig, axes = figure(2, 3, width=13.0, height=7.6)
    quiet, busy = (table[table["trace"] == name] for name in ("quiet", "busy"))
    fits = {name: (m["linear"].fit_result.r2, m["context"].fit_result.r2)
            for name, m in models.items()}  # fmt: skip

    fit_ax, out_ax, log_ax = axes[0]
    _fit_panel(fit_ax, quiet, colour_by_load=False)
    fit_ax.set_title("quiet trace (default): R² = {1:.3f} context, {0:.3f} linear"
                     .format(*fits["quiet"]))  # fmt: skip
    _scatter_by_type(out_ax, quiet, "output_tokens", "seconds")
    model = models["quiet"]["context"]
    grid = np.linspace(0, quiet["output_tokens"].max(), 50)
    for job_type, part in _by_type(quiet):
        l_in = float(part["input_tokens"].median())
        style, width = TYPE_LINES[job_type]
        out_ax.plot(grid, model.mean(l_in, grid), color=TYPE_COLOURS[job_type], ls=style,
                    lw=width, label=f"model, {job_type} (median L_in = {l_in:.0f})")  # fmt: skip
    out_ax.set(
        xlabel="output tokens L_out",
        ylabel="seconds",
        title=f"decode c_out = {1e3 * model.c_out:.3g} ms/token + c_ctx = "
        f"{1e6 * model.c_ctx:.3g} µs/token²\nprefill c_in = {1e3 * model.c_in:.3g} ms/token",
    )
    out_ax.legend(fontsize=6.5)
    _residual_panel(log_ax, quiet["log_ratio"], model.noise, "quiet: log-residuals, one peak")

    fit_ax, slow_ax, log_ax = axes[1]
    points = _fit_panel(fit_ax, busy, colour_by_load=True)
    fit_ax.set_title("busy trace: R² = {1:.3f} context, {0:.3f} linear"
                     .format(*fits["busy"]))  # fmt: skip
    slowdown = busy["seconds"].to_numpy() / quiet["seconds"].to_numpy()
    slow_ax.scatter(busy["loadavg_1min"], slowdown, s=6, alpha=0.7, c=busy["loadavg_1min"],
                    cmap=LOAD_MAP)  # fmt: skip
    slow_ax.axhline(1, color="k", lw=0.8)
    slow_ax.set(
        xlabel="load average (1 min) when the busy inference finished",
        ylabel="busy / quiet seconds, same inference",
        title="slowdown of each inference over its quiet twin\n"
        "(the two runs were also on different CPU models)",
    )
    _residual_panel(log_ax, busy["log_ratio"], models["busy"]["context"].noise,
                    "busy: log-residuals, two modes")  # fmt: skip
    fig.colorbar(points, ax=axes[1].tolist(), label="load average (1 min)", shrink=0.8)
    fig.suptitle(f"Service-time model of {load_default_trace().attrs.get('model_file', 'SmolLM2')}")
    return fig


def make(quick: bool = False) -> FigureOutput:
    """Fit both models to both shipped traces and plot (``quick`` changes nothing: it is fast)."""
    traces = {"quiet": load_default_trace(), "busy": load_busy_trace()}
    models: dict[str, dict[str, object]] = {}
    parts = []
    for name, trace in traces.items():
        linear, context = LinearService.fit(trace), ContextService.fit(trace)
        models[name] = {"linear": linear, "context": context}
        res = context.residuals(trace).reset_index(drop=True)
        parts.append(
            res.rename(columns={"fitted": "context_fitted", "residual": "context_residual"}).assign(
                trace=name,
                linear_fitted=linear.mean(trace["input_tokens"], trace["output_tokens"]),
                loadavg_1min=trace["loadavg_1min"].to_numpy(),
            )
        )
    table = pd.concat(parts, ignore_index=True)
    quiet = models["quiet"]["context"]
    acc = service_accuracy(quiet, traces["quiet"])
    busy = models["busy"]["context"]
    line = (
        f"quiet: R^2 = {quiet.fit_result.r2:.4f} context, "
        f"{models['quiet']['linear'].fit_result.r2:.4f} linear; APE median "
        f"{100 * acc.inference_median_ape:.1f}%, p90 {100 * acc.inference_p90_ape:.1f}% per "
        f"inference; {quiet.noise}. busy: R^2 = {busy.fit_result.r2:.3f}, {busy.noise}"
    )
    return FigureOutput(plot(table, models), table, line)
