"""Plug-in service-time models fitted from a measured inference trace.

A service-time model maps the token counts of one inference to its duration in seconds:

.. math::

    S = \\bar S(L_{in}, L_{out}) \\cdot \\varepsilon, \\qquad E[\\varepsilon] = 1,

with two methods, both vectorised over numpy arrays:

* ``mean(input_tokens, output_tokens)`` -> :math:`\\bar S(L_{in}, L_{out})`;
* ``sample(input_tokens, output_tokens, rng)`` -> random durations with that mean.

Any object with these two methods is a :class:`ServiceModel`. Built-ins:
:class:`ConstantService` and :class:`LinearService`
(:math:`\\bar S = c_0 + c_{in} L_{in} + c_{out} L_{out} [+ c_{io} L_{in} L_{out}]`, fitted by
least squares with confidence intervals and :math:`R^2`, multiplicative lognormal residuals).

The MoA protocol fixes the input lengths of the job types (:class:`LengthModel`): a propose job
reads the plain prompt (:math:`L_p` tokens); a refine job in layer :math:`m \\ge 2` and the
aggregate job read the augmented prompt

.. math::

    L_{in} = L_p + h + (k+1)\\,g + \\sum_{j=1}^{k+1} L_{out}^{(m-1, j)},

where :math:`h` are the tokens of the aggregation instruction and :math:`g` the formatting
tokens per previous response, both estimated from the trace. Drawing :math:`L_p` and the output
lengths from the trace's empirical distributions per job type gives the mean service time of
each job type for any ``(M, k)`` (:func:`mean_service_times`), which is what
``MoANetwork(service_time=...)`` accepts, and samples of service seconds for a simulator
(:func:`service_samples`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd
import scipy.linalg
import scipy.stats

from ..model.network import JOB_TYPES, count_field, job_types_used, number_field

__all__ = [
    "JOB_TYPES",
    "ConstantService",
    "LengthModel",
    "LinearService",
    "ServiceFit",
    "ServiceModel",
    "default_service_model",
    "job_length_samples",
    "job_types_used",
    "load_default_trace",
    "mean_service_times",
    "service_samples",
    "validate_trace",
]

DEFAULT_TRACE = "trace_smollm2.csv"
_FIT_COLUMNS = ("job_type", "input_tokens", "output_tokens", "seconds")
_LENGTH_COLUMNS = ("prompt_id", "M", "k", "layer", "job_type", "input_tokens", "output_tokens")


@runtime_checkable
class ServiceModel(Protocol):
    """Anything with vectorised ``mean`` and ``sample`` of service seconds."""

    def mean(self, input_tokens: Any, output_tokens: Any) -> np.ndarray:
        """Mean seconds of inferences with these token counts."""
        ...

    def sample(self, input_tokens: Any, output_tokens: Any, rng: np.random.Generator) -> np.ndarray:
        """Random seconds of inferences with these token counts."""
        ...


def _check_shape(M: Any, k: Any) -> None:
    count_field("M", M, 0)
    count_field("k", k, 0)


def _tokens(input_tokens: Any, output_tokens: Any) -> tuple[np.ndarray, np.ndarray]:
    l_in, l_out = np.broadcast_arrays(
        np.asarray(input_tokens, dtype=float), np.asarray(output_tokens, dtype=float)
    )
    if np.any(l_in < 0) or np.any(l_out < 0) or not np.all(np.isfinite(l_in + l_out)):
        raise ValueError("token counts must be finite and >= 0")
    return l_in, l_out


# ----------------------------------------------------------------------------- traces


def validate_trace(trace: pd.DataFrame, columns: tuple[str, ...] = _FIT_COLUMNS) -> pd.DataFrame:
    """Check a trace has the needed columns, known job types and sane values; return it.

    Raises
    ------
    ValueError
        On a missing column, an unknown job type, negative counts or non-positive seconds.
    """
    if not isinstance(trace, pd.DataFrame):
        raise ValueError(
            f"trace={type(trace).__name__}: a trace is a pandas.DataFrame; load one with "
            "moa_stability.llm.measure.load_trace"
        )
    missing = [c for c in columns if c not in trace.columns]
    if missing:
        raise ValueError(
            f"trace={list(map(str, trace.columns))}: lacks columns {missing}; add them"
        )
    if len(trace) == 0:
        raise ValueError("trace=(0 rows): the trace is empty; pass measured rows")
    unknown = sorted(map(str, set(trace["job_type"]) - set(JOB_TYPES)))
    if unknown:
        raise ValueError(f"trace['job_type']={unknown}: unknown job types; use {JOB_TYPES}")
    for c in (c for c in columns if c != "job_type"):
        column = trace[c]
        # Text, booleans and NaN would turn into wrong numbers or an SVD that does not converge.
        if not pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
            raise ValueError(f"trace[{c!r}]={column.dtype}: not numeric; give numbers")
        values = column.to_numpy(float)
        if not np.all(np.isfinite(values)):
            raise ValueError(f"trace[{c!r}]: contains NaN or inf; drop or fix those rows")
        if np.any(values < 0) or (c == "seconds" and np.any(values <= 0)):
            bound = "> 0" if c == "seconds" else ">= 0"
            raise ValueError(f"trace[{c!r}]: has an entry outside {bound}; fix those rows")
    return trace


def load_default_trace() -> pd.DataFrame:
    """The shipped SmolLM2-135M trace (``moa_stability/data/trace_smollm2.csv``).

    Metadata (model, runtime, CPU, regenerating command, ...) is in ``df.attrs``.
    """
    return _load_default_trace().copy()


@lru_cache(maxsize=1)
def _load_default_trace() -> pd.DataFrame:
    import json

    data = resources.files("moa_stability").joinpath("data")
    with data.joinpath(DEFAULT_TRACE).open("r", encoding="utf-8") as fh:
        df = pd.read_csv(fh)
    meta = data.joinpath(DEFAULT_TRACE.replace(".csv", ".json"))
    if meta.is_file():
        df.attrs.update(json.loads(meta.read_text(encoding="utf-8")))
    return df


# ----------------------------------------------------------------------------- models


@dataclass(frozen=True)
class ConstantService:
    """Every inference takes ``seconds`` (deterministic), or an exponential with that mean."""

    seconds: float
    distribution: str = "deterministic"

    def __post_init__(self) -> None:
        if not (np.isfinite(self.seconds) and self.seconds > 0):
            raise ValueError(f"seconds must be finite and > 0, got {self.seconds!r}")
        if self.distribution not in ("deterministic", "exponential"):
            raise ValueError(f"distribution must be deterministic or exponential, "
                             f"got {self.distribution!r}")  # fmt: skip

    def mean(self, input_tokens: Any, output_tokens: Any) -> np.ndarray:
        """:math:`\\bar S = s` for any token counts."""
        l_in, _ = _tokens(input_tokens, output_tokens)
        return np.full(l_in.shape, float(self.seconds))

    def sample(self, input_tokens: Any, output_tokens: Any, rng: np.random.Generator) -> np.ndarray:
        """``s`` itself, or exponential draws with mean ``s``."""
        mean = self.mean(input_tokens, output_tokens)
        if self.distribution == "exponential":
            return rng.exponential(mean)
        return mean


@dataclass(frozen=True)
class ServiceFit:
    """Least-squares fit of seconds on token counts: estimates, CIs and goodness of fit.

    ``std_error`` is heteroscedasticity-robust (HC3) by default: timing noise grows with the
    duration, so the classical :math:`s^2 (X^T X)^{-1}` would understate the intercept's error.
    """

    terms: tuple[str, ...]
    estimate: np.ndarray
    std_error: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    level: float
    covariance: str
    r2: float
    adj_r2: float
    n_obs: int
    residual_std: float
    sigma_log: float

    def to_frame(self) -> pd.DataFrame:
        """One row per term: estimate, std_error, ci_low, ci_high (seconds per token)."""
        return pd.DataFrame(
            {
                "estimate": self.estimate,
                "std_error": self.std_error,
                "ci_low": self.ci_low,
                "ci_high": self.ci_high,
            },
            index=pd.Index(self.terms, name="term"),
        )

    def summary(self) -> str:
        """A short text block: the coefficient table, R^2 and the residual spread."""
        return (
            f"{self.to_frame().to_string(float_format=lambda v: f'{v:.4g}')}\n"
            f"R^2 = {self.r2:.4f} (adjusted {self.adj_r2:.4f}), n = {self.n_obs}, "
            f"{100 * self.level:g}% CIs ({self.covariance}), residual sd = "
            f"{self.residual_std:.4g} s, lognormal sigma = {self.sigma_log:.4g}"
        )


@dataclass(frozen=True)
class LinearService:
    """Linear mean in the token counts with multiplicative lognormal noise.

    .. math::

        \\bar S(L_{in}, L_{out}) = \\max\\bigl(0,\\;
            c_0 + c_{in} L_{in} + c_{out} L_{out} + c_{io} L_{in} L_{out}\\bigr),
        \\qquad S = \\bar S\\, e^{\\sigma Z - \\sigma^2/2},\\; Z \\sim N(0, 1),

    so :math:`E[S] = \\bar S`. :math:`c_{in}` is the prefill cost per input token,
    :math:`c_{out}` the decode cost per output token, and the optional :math:`c_{io}` the growth
    of the decode cost with the context (attention over :math:`L_{in}` cached tokens).
    The floor at 0 only matters far outside the fitted range when :math:`c_0 < 0`.
    """

    c0: float
    c_in: float
    c_out: float
    c_inout: float = 0.0
    sigma_log: float = 0.0
    fit_result: ServiceFit | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        values = (self.c0, self.c_in, self.c_out, self.c_inout, self.sigma_log)
        if not all(np.isfinite(values)):
            raise ValueError(f"coefficients must be finite, got {values}")
        if self.sigma_log < 0:
            raise ValueError(f"sigma_log must be >= 0, got {self.sigma_log}")

    def mean(self, input_tokens: Any, output_tokens: Any) -> np.ndarray:
        """:math:`\\bar S(L_{in}, L_{out})` in seconds."""
        l_in, l_out = _tokens(input_tokens, output_tokens)
        s = self.c0 + self.c_in * l_in + self.c_out * l_out + self.c_inout * l_in * l_out
        return np.maximum(s, 0.0)

    def sample(self, input_tokens: Any, output_tokens: Any, rng: np.random.Generator) -> np.ndarray:
        """:math:`\\bar S\\, e^{\\sigma Z - \\sigma^2/2}` (mean-preserving lognormal noise)."""
        mean = self.mean(input_tokens, output_tokens)
        z = rng.standard_normal(mean.shape)
        return mean * np.exp(self.sigma_log * z - 0.5 * self.sigma_log**2)

    @classmethod
    def fit(
        cls,
        trace: pd.DataFrame,
        *,
        interaction: bool = False,
        level: float = 0.95,
        covariance: str = "HC3",
    ) -> LinearService:
        """Least-squares fit of ``seconds`` on the token counts of a trace.

        Parameters
        ----------
        trace
            Rows with ``input_tokens``, ``output_tokens``, ``seconds`` (and ``job_type``).
        interaction
            Add the :math:`c_{io} L_{in} L_{out}` term.
        level
            Confidence level of the intervals, :math:`\\hat c \\pm t_{n-p,(1+level)/2}\\,SE`.
        covariance
            ``"HC3"`` (robust, default) or ``"classical"``.

        Returns
        -------
        LinearService
            With ``fit_result`` (:class:`ServiceFit`) and ``sigma_log``, the standard
            deviation of :math:`\\log(S / \\hat S)` over the rows.
        """
        validate_trace(trace)
        if not 0 < number_field("level", level, "pass e.g. level=0.95") < 1:
            raise ValueError(f"level={level}: must be in (0, 1); pass e.g. level=0.95")
        if not (isinstance(covariance, str) and covariance in ("HC3", "classical")):
            raise ValueError(f"covariance={covariance!r}: unknown; use 'HC3' or 'classical'")
        terms, X = _design(trace, interaction)
        y = trace["seconds"].to_numpy(float)
        n, p = X.shape
        if n <= p or np.linalg.matrix_rank(X) < p:
            raise ValueError(f"cannot fit {p} coefficients from {n} rows: the trace needs more "
                             "rows with varying input and output lengths")  # fmt: skip
        fit = _least_squares(terms, X, y, level, covariance)
        c = dict(zip(terms, fit.estimate, strict=True))
        return cls(
            c0=c["c0"],
            c_in=c["c_in"],
            c_out=c["c_out"],
            c_inout=c.get("c_inout", 0.0),
            sigma_log=fit.sigma_log,
            fit_result=fit,
        )

    def residuals(self, trace: pd.DataFrame) -> pd.DataFrame:
        """Fitted mean, residual (s) and log-ratio :math:`\\log(S/\\hat S)` per row, for plots."""
        validate_trace(trace)
        fitted = self.mean(trace["input_tokens"], trace["output_tokens"])
        seconds = trace["seconds"].to_numpy(float)
        with np.errstate(divide="ignore"):
            log_ratio = np.log(seconds / fitted)
        return pd.DataFrame(
            {
                "job_type": trace["job_type"].to_numpy(),
                "input_tokens": trace["input_tokens"].to_numpy(),
                "output_tokens": trace["output_tokens"].to_numpy(),
                "seconds": seconds,
                "fitted": fitted,
                "residual": seconds - fitted,
                "log_ratio": log_ratio,
            },
            index=trace.index,
        )

    def plot_residuals(self, trace: pd.DataFrame) -> Any:
        """Fitted vs measured and residuals vs each token count, coloured by job type."""
        import matplotlib.pyplot as plt

        res = self.residuals(trace)
        fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), constrained_layout=True)
        for job_type, part in res.groupby("job_type", sort=False):
            axes[0].scatter(part["fitted"], part["seconds"], s=8, alpha=0.6, label=job_type)
            axes[1].scatter(part["input_tokens"], part["residual"], s=8, alpha=0.6)
            axes[2].scatter(part["output_tokens"], part["residual"], s=8, alpha=0.6)
        top = float(max(res["fitted"].max(), res["seconds"].max()))
        axes[0].plot([0, top], [0, top], color="k", lw=0.8)
        axes[0].set(xlabel="fitted mean (s)", ylabel="measured (s)")
        axes[0].legend(fontsize=8)
        for ax, name in zip(axes[1:], ("input tokens", "output tokens"), strict=True):
            ax.axhline(0, color="k", lw=0.8)
            ax.set(xlabel=name, ylabel="residual (s)")
        return fig


def _design(trace: pd.DataFrame, interaction: bool) -> tuple[tuple[str, ...], np.ndarray]:
    l_in = trace["input_tokens"].to_numpy(float)
    l_out = trace["output_tokens"].to_numpy(float)
    columns = [np.ones_like(l_in), l_in, l_out]
    terms = ["c0", "c_in", "c_out"]
    if interaction:
        columns.append(l_in * l_out)
        terms.append("c_inout")
    return tuple(terms), np.column_stack(columns)


def _least_squares(
    terms: tuple[str, ...], X: np.ndarray, y: np.ndarray, level: float, covariance: str
) -> ServiceFit:
    n, p = X.shape
    beta, *_ = scipy.linalg.lstsq(X, y)
    resid = y - X @ beta
    # pinv(X) = (X^T X)^{-1} X^T, so the sandwich B diag(w) B^T needs no explicit inverse.
    B = np.linalg.pinv(X)
    if covariance == "HC3":
        leverage = np.einsum("ij,ji->i", X, B)
        w = resid**2 / np.maximum(1.0 - leverage, 1e-12) ** 2
    else:
        w = np.full(n, resid @ resid / (n - p))
    cov = (B * w) @ B.T
    se = np.sqrt(np.diag(cov))
    half = scipy.stats.t.ppf(0.5 + level / 2, n - p) * se
    tss = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - float(resid @ resid) / tss if tss > 0 else float("nan")
    fitted = X @ beta
    ok = fitted > 0
    log_ratio = np.log(y[ok] / fitted[ok])
    sigma_log = float(np.std(log_ratio, ddof=1)) if log_ratio.size > 1 else 0.0
    return ServiceFit(
        terms=terms,
        estimate=beta,
        std_error=se,
        ci_low=beta - half,
        ci_high=beta + half,
        level=level,
        covariance=covariance,
        r2=r2,
        adj_r2=1.0 - (1.0 - r2) * (n - 1) / (n - p),
        n_obs=n,
        residual_std=float(np.sqrt(resid @ resid / (n - p))),
        sigma_log=sigma_log,
    )


# ----------------------------------------------------------------------------- lengths


def _empirical(values: pd.Series) -> np.ndarray:
    return np.sort(values.to_numpy(dtype=float))


@dataclass(frozen=True)
class LengthModel:
    """Token counts of each job type as the MoA protocol builds them.

    Attributes
    ----------
    prompt_tokens
        Empirical input lengths :math:`L_p` of plain prompts (propose jobs, template included).
    output_tokens
        Empirical output lengths per job type. A type missing from the trace borrows the
        other augmented type (refine <-> aggregate), then all rows.
    instruction_tokens, per_response_tokens
        :math:`h` and :math:`g` in :math:`L_{in} = L_p + h + (k+1) g + \\sum L_{out}`, by least
        squares of :math:`L_{in} - L_p - \\sum L_{out}^{prev}` on :math:`k + 1` over the trace's
        refine and aggregate jobs (:math:`g = 0` if the trace has one ``k`` only; NaN if it has
        no augmented job at all).
    """

    prompt_tokens: np.ndarray
    output_tokens: Mapping[str, np.ndarray]
    instruction_tokens: float
    per_response_tokens: float

    @classmethod
    def from_trace(cls, trace: pd.DataFrame) -> LengthModel:
        """Estimate the length model from a trace with the protocol columns."""
        validate_trace(trace, _LENGTH_COLUMNS)
        propose = trace[trace["job_type"] == "propose"]
        if propose.empty:
            raise ValueError("trace has no propose jobs: the prompt lengths are unknown")
        outputs = {c: _empirical(trace.loc[trace["job_type"] == c, "output_tokens"])
                   for c in JOB_TYPES}  # fmt: skip
        everything = _empirical(trace["output_tokens"])
        for c, other in (("refine", "aggregate"), ("aggregate", "refine")):
            if outputs[c].size == 0:
                outputs[c] = outputs[other] if outputs[other].size else everything
        if outputs["propose"].size == 0:
            outputs["propose"] = everything
        h, g = _augmentation_overhead(trace)
        return cls(_empirical(propose["input_tokens"]), outputs, h, g)

    def sample(
        self, M: int, k: int, n: int, rng: np.random.Generator
    ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Draw the ``(input_tokens, output_tokens)`` of every job of ``n`` prompts.

        Each prompt runs the protocol: ``k + 1`` proposers, refine layers whose input holds
        the previous layer's ``k + 1`` outputs, an aggregate. Returns the job types that occur
        at ``M`` (:func:`job_types_used`), each with flat arrays over all jobs of that type.
        """
        _check_shape(M, k)
        if M >= 1 and not np.isfinite(self.instruction_tokens):
            raise ValueError("the trace has no refine or aggregate job, so the augmented "
                             "prompt length is unknown; measure with M >= 1")  # fmt: skip
        draw = self._drawer(rng)
        l_p = rng.choice(self.prompt_tokens, size=n)
        width = 1 if M == 0 else k + 1
        out = draw("propose", (n, width))
        jobs = {"propose": (np.repeat(l_p, width), out.ravel())}
        overhead = l_p + self.instruction_tokens + (k + 1) * self.per_response_tokens
        refine_in, refine_out = [], []
        for _layer in range(2, M + 1):
            l_in = overhead + out.sum(axis=1)
            out = draw("refine", (n, k + 1))
            refine_in.append(np.repeat(l_in, k + 1))
            refine_out.append(out.ravel())
        if M >= 2:
            jobs["refine"] = (np.concatenate(refine_in), np.concatenate(refine_out))
        if M >= 1:
            jobs["aggregate"] = (overhead + out.sum(axis=1), draw("aggregate", n))
        return jobs

    def _drawer(self, rng: np.random.Generator) -> Any:
        def draw(job_type: str, size: Any) -> np.ndarray:
            return rng.choice(self.output_tokens[job_type], size=size)

        return draw


def _augmentation_overhead(trace: pd.DataFrame) -> tuple[float, float]:
    """Estimate :math:`h, g` from the refine/aggregate rows of a trace (see LengthModel)."""
    keys = ["request"] if "request" in trace.columns else ["prompt_id", "M", "k"]
    prompt_len = trace[trace["job_type"] == "propose"].groupby(keys)["input_tokens"].first()
    layer_out = trace.groupby([*keys, "layer"])["output_tokens"].sum()
    aug = trace[trace["job_type"] != "propose"]
    if aug.empty:
        return float("nan"), float("nan")
    idx = pd.MultiIndex.from_frame(aug[keys])
    prev_idx = pd.MultiIndex.from_frame(aug[keys].assign(layer=aug["layer"] - 1))
    lp = prompt_len.reindex(idx).to_numpy(float)
    prev = layer_out.reindex(prev_idx).to_numpy(float)
    overhead = aug["input_tokens"].to_numpy(float) - lp - prev
    width = aug["k"].to_numpy(float) + 1
    ok = np.isfinite(overhead)
    if not ok.any():
        raise ValueError("cannot match refine/aggregate rows to their prompt's previous layer")
    overhead, width = overhead[ok], width[ok]
    if np.unique(width).size < 2:
        return float(overhead.mean()), 0.0
    slope, intercept = np.polyfit(width, overhead, 1)
    return float(intercept), float(slope)


# ----------------------------------------------------------------------------- per (M, k)


@lru_cache(maxsize=1)
def _default_fit() -> tuple[LinearService, LengthModel]:
    trace = _load_default_trace()
    return LinearService.fit(trace), LengthModel.from_trace(trace)


def default_service_model() -> LinearService:
    """:class:`LinearService` fitted to the shipped trace (cached)."""
    return _default_fit()[0]


def _resolve(
    model: ServiceModel | None, trace: pd.DataFrame | None
) -> tuple[ServiceModel, LengthModel]:
    if model is not None and not isinstance(model, ServiceModel):
        raise ValueError(
            f"model={type(model).__name__}: has no mean() and sample() methods; pass a "
            "ServiceModel such as LinearService"
        )
    if trace is None:
        default_model, lengths = _default_fit()
        return (model if model is not None else default_model), lengths
    validate_trace(trace, (*_FIT_COLUMNS, *_LENGTH_COLUMNS))
    return (model if model is not None else LinearService.fit(trace)), LengthModel.from_trace(trace)


def job_length_samples(
    M: int, k: int, *, trace: pd.DataFrame | None = None, n: int = 20_000, seed: int = 0
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Sampled ``(input_tokens, output_tokens)`` of each job type at ``(M, k)``.

    See :meth:`LengthModel.sample`; ``trace`` defaults to the shipped one.
    """
    _check_shape(M, k)
    lengths = LengthModel.from_trace(trace) if trace is not None else _default_fit()[1]
    return lengths.sample(M, k, _check_n(n), _rng(seed))


def _check_n(n: Any) -> int:
    return count_field("n", n, 1)


def _rng(seed: Any) -> np.random.Generator:
    return np.random.default_rng(count_field("seed", seed, 0))


def mean_service_times(
    M: int,
    k: int,
    *,
    model: ServiceModel | None = None,
    trace: pd.DataFrame | None = None,
    n: int = 20_000,
    seed: int = 0,
) -> dict[str, float]:
    """Mean service seconds of each job type that occurs at ``(M, k)``.

    .. math::

        E[S_c] = E\\bigl[\\bar S(L_{in}, L_{out})\\bigr]
        \\quad\\text{over the jobs of type } c,

    with the token counts drawn by :meth:`LengthModel.sample` (``n`` prompts, fixed ``seed``,
    so that the result is deterministic and neighbouring ``k`` share their random numbers).
    The dict plugs into ``MoANetwork(..., service_time=...)``; it has ``propose`` always,
    ``aggregate`` for ``M >= 1`` and ``refine`` for ``M >= 2``.

    Parameters
    ----------
    model
        Any :class:`ServiceModel`; default :class:`LinearService` fitted to ``trace``.
    trace
        A trace with the measurement columns; default the shipped SmolLM2 trace.
    """
    _check_shape(M, k)
    service, lengths = _resolve(model, trace)
    jobs = lengths.sample(M, k, _check_n(n), _rng(seed))
    return {c: float(np.mean(service.mean(l_in, l_out))) for c, (l_in, l_out) in jobs.items()}


def service_samples(
    M: int,
    k: int,
    *,
    source: str = "model",
    model: ServiceModel | None = None,
    trace: pd.DataFrame | None = None,
    n: int = 20_000,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Service seconds per job type at ``(M, k)``, for an empirical service distribution.

    Parameters
    ----------
    source
        ``"model"``: ``model.sample`` on token counts from :meth:`LengthModel.sample`
        (``n`` prompts, so ``n * (k+1)`` propose jobs etc.); works for any ``(M, k)``.
        ``"trace"``: the measured ``seconds`` of the trace's rows at exactly this ``(M, k)``.

    Returns
    -------
    dict
        ``{job_type: seconds}`` for the job types that occur at ``M``.
    """
    _check_shape(M, k)
    if isinstance(source, str) and source == "trace":
        return _measured_samples(M, k, trace)
    if not (isinstance(source, str) and source == "model"):
        raise ValueError(f"source={source!r}: unknown; use 'model' or 'trace'")
    service, lengths = _resolve(model, trace)
    rng = _rng(seed)
    jobs = lengths.sample(M, k, _check_n(n), rng)
    return {c: np.asarray(service.sample(l_in, l_out, rng), float)
            for c, (l_in, l_out) in jobs.items()}  # fmt: skip


def _measured_samples(M: int, k: int, trace: pd.DataFrame | None) -> dict[str, np.ndarray]:
    trace = _load_default_trace() if trace is None else trace
    validate_trace(trace, (*_FIT_COLUMNS, "M", "k"))
    rows = trace[(trace["M"] == M) & (trace["k"] == k)]
    if rows.empty:
        have = sorted(set(zip(trace["M"].astype(int), trace["k"].astype(int), strict=True)))
        raise ValueError(f"the trace has no rows for (M, k) = ({M}, {k}); it has {have}")
    return {c: rows.loc[rows["job_type"] == c, "seconds"].to_numpy(float)
            for c in job_types_used(M)}  # fmt: skip
