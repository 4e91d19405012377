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
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd
import scipy.linalg
import scipy.stats

from ..model.network import (
    JOB_TYPES,
    count_field,
    inferences_by_type,
    inferences_per_prompt,
    job_types_used,
    layers_field,
    number_field,
)
from .trace import FIT_COLUMNS, load_default_trace, validate_trace

__all__ = [
    "JOB_TYPES",
    "ConstantService",
    "ContextService",
    "LengthModel",
    "LinearService",
    "LogResidualLaw",
    "ServiceAccuracy",
    "ServiceFit",
    "ServiceModel",
    "default_service_model",
    "job_length_samples",
    "job_types_used",
    "load_default_trace",
    "mean_service_times",
    "service_accuracy",
    "service_samples",
    "validate_trace",
]

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


MAX_SAMPLED_JOBS = 10**8
"""Most jobs :meth:`LengthModel.sample` draws (``n`` prompts of ``(k + 1) M + 1`` jobs): about 24
bytes a job at the peak (measured 0.48 GB for 2 * 10^7), so 2.4 GB here; ``k = 10^6`` or
``n = 10^12`` used to end in MemoryError."""


def _check_shape(M: Any, k: Any) -> None:
    layers_field(M)
    count_field("k", k, 0)


def _check_jobs(M: int, k: int, n: int) -> None:
    """A ValueError naming ``k`` (or ``n``) when ``n`` prompts at ``(M, k)`` are more than
    :data:`MAX_SAMPLED_JOBS` jobs to draw."""
    per_prompt = inferences_per_prompt(M, k)
    if n * per_prompt <= MAX_SAMPLED_JOBS:
        return
    if M >= 1 and per_prompt * min(n, 1000) > MAX_SAMPLED_JOBS:  # k itself is the problem
        k_max = max((MAX_SAMPLED_JOBS // n - 1) // M - 1, 0)
        raise ValueError(
            f"k={k}: {n} prompts of {per_prompt} jobs at M={M} are {n * per_prompt} jobs to "
            f"draw, over the {MAX_SAMPLED_JOBS} that fit in memory; pass k <= {k_max} "
            "(or fewer prompts n)"
        )
    raise ValueError(
        f"n={n}: {n} prompts of {per_prompt} jobs at (M, k)=({M}, {k}) are {n * per_prompt} "
        f"jobs to draw, over the {MAX_SAMPLED_JOBS} that fit in memory; pass "
        f"n <= {max(MAX_SAMPLED_JOBS // per_prompt, 1)}"
    )


def _tokens(input_tokens: Any, output_tokens: Any) -> tuple[np.ndarray, np.ndarray]:
    l_in, l_out = np.broadcast_arrays(
        np.asarray(input_tokens, dtype=float), np.asarray(output_tokens, dtype=float)
    )
    if np.any(l_in < 0) or np.any(l_out < 0) or not np.all(np.isfinite(l_in + l_out)):
        raise ValueError(
            "input_tokens/output_tokens=(given): a token count is negative or not finite; "
            "pass finite counts >= 0"
        )
    return l_in, l_out


# ----------------------------------------------------------------------------- models


@dataclass(frozen=True)
class ConstantService:
    """Every inference takes ``seconds`` (deterministic), or an exponential with that mean."""

    seconds: float
    distribution: str = "deterministic"

    def __post_init__(self) -> None:
        if not (np.isfinite(self.seconds) and self.seconds > 0):
            raise ValueError(f"seconds={self.seconds!r}: must be finite and > 0; pass e.g. 1.0")
        if self.distribution not in ("deterministic", "exponential"):
            raise ValueError(
                f"distribution={self.distribution!r}: unknown distribution; use "
                "'deterministic' or 'exponential'"
            )

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


class _Residuals:
    """Residual table and plots for any model with a ``mean`` of the token counts."""

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


@dataclass(frozen=True)
class LinearService(_Residuals):
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
            raise ValueError(
                f"c0, c_in, c_out, c_inout, sigma_log={values}: not all finite; "
                "pass finite coefficients"
            )
        if self.sigma_log < 0:
            raise ValueError(f"sigma_log={self.sigma_log}: must be >= 0; pass 0 for no noise")

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
        _check_fit_options(level, covariance)
        terms, X = _design(trace, interaction)
        y = trace["seconds"].to_numpy(float)
        _check_rank(X)
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


# ----------------------------------------------------------------------------- context model


@dataclass(frozen=True)
class LogResidualLaw:
    r"""Multiplicative noise :math:`\varepsilon = S / \bar S` with :math:`E[\varepsilon] = 1`.

    :math:`\log \varepsilon` is a mixture of normals, component :math:`c` with weight
    :math:`w_c`, mean :math:`\mu_c` and spread :math:`\sigma_c`, shifted so that the mean of
    :math:`\varepsilon` is one:

    .. math::

        \log\varepsilon = X - \log \sum_c w_c e^{\mu_c + \sigma_c^2/2},
        \qquad X \sim \sum_c w_c\, N(\mu_c, \sigma_c^2).

    One component is the lognormal law. Two fit the bimodal residuals of a trace measured
    while other processes shared the cores: an inference either had a core to itself or was
    time-sliced with another runnable process, which stretches it by a roughly constant factor.
    """

    weight: tuple[float, ...] = (1.0,)
    mu: tuple[float, ...] = (0.0,)
    sigma: tuple[float, ...] = (0.0,)

    def __post_init__(self) -> None:
        w, mu, sd = (np.asarray(v, dtype=float) for v in (self.weight, self.mu, self.sigma))
        if not (w.ndim == mu.ndim == sd.ndim == 1 and w.size == mu.size == sd.size >= 1):
            raise ValueError(
                f"weight={list(w)}: weight, mu and sigma need one entry per component; "
                "give equal-length sequences"
            )
        if not (np.all(np.isfinite(np.r_[w, mu, sd])) and np.all(w > 0) and np.all(sd >= 0)):
            raise ValueError(
                f"weight={list(w)}: weights must be > 0 and sigmas >= 0, all finite; fix the law"
            )
        if not np.isclose(w.sum(), 1.0, rtol=1e-9):
            raise ValueError(f"weight={list(w)}: weights must sum to 1; normalise them")
        for name, values in (("weight", w), ("mu", mu), ("sigma", sd)):
            object.__setattr__(self, name, tuple(float(v) for v in values))

    @property
    def components(self) -> int:
        """Number of mixture components."""
        return len(self.weight)

    def sample(self, size: Any, rng: np.random.Generator) -> np.ndarray:
        """Draws of :math:`\\varepsilon` (mean one)."""
        w, mu, sd = (np.asarray(v, dtype=float) for v in (self.weight, self.mu, self.sigma))
        c = rng.choice(w.size, size=size, p=w / w.sum())
        x = mu[c] + sd[c] * rng.standard_normal(size)
        return np.exp(x - np.log(np.sum(w * np.exp(mu + 0.5 * sd**2))))

    @classmethod
    def fit(cls, log_ratio: Any, components: int | str = "auto") -> LogResidualLaw:
        """Maximum-likelihood normal mixture of the log-ratios :math:`\\log(S/\\hat S)`.

        ``components``: 1, 2, or ``"auto"`` (the one with the smaller BIC,
        :math:`-2\\log L + p \\log N` with :math:`p = 3c - 1`). Two components are fitted by
        EM from the lower and upper quartiles.
        """
        x = np.asarray(log_ratio, dtype=float)
        x = x[np.isfinite(x)]
        if x.size < 2:
            raise ValueError(f"log_ratio={x.size} values: too few to fit; give at least 2")
        if components == "auto":
            one, two = cls.fit(x, 1), cls.fit(x, 2) if x.size >= 6 else None
            if two is None:
                return one
            bic = [-2 * law._loglik(x) + (3 * law.components - 1) * np.log(x.size)
                   for law in (one, two)]  # fmt: skip
            return one if bic[0] <= bic[1] else two
        if components not in (1, 2):
            raise ValueError(f"components={components!r}: must be 1, 2 or 'auto'; pick one")
        if components == 1:
            return cls((1.0,), (float(x.mean()),), (float(x.std(ddof=1)),))
        return cls(*_em_two_normals(x))

    def _loglik(self, x: np.ndarray) -> float:
        dens = sum(w * scipy.stats.norm.pdf(x, m, max(s, 1e-12))
                   for w, m, s in zip(self.weight, self.mu, self.sigma, strict=True))  # fmt: skip
        return float(np.sum(np.log(np.maximum(dens, 1e-300))))

    def __str__(self) -> str:
        parts = [f"{w:.2f} x N({m:+.3f}, {s:.3f}^2)"
                 for w, m, s in zip(self.weight, self.mu, self.sigma, strict=True)]  # fmt: skip
        return "log-residual law: " + " + ".join(parts)


def _em_two_normals(x: np.ndarray, steps: int = 500) -> tuple[tuple[float, ...], ...]:
    """EM for a two-component normal mixture, started from the quartiles (deterministic)."""
    w = np.array([0.5, 0.5])
    mu = np.quantile(x, [0.25, 0.75])
    sd = np.full(2, x.std() / 2 + 1e-9)
    floor = 1e-3 * x.std() + 1e-12  # keeps a component from collapsing onto one point
    for _ in range(steps):
        dens = w * scipy.stats.norm.pdf(x[:, None], mu, sd)
        resp = dens / np.maximum(dens.sum(axis=1, keepdims=True), 1e-300)
        nk = resp.sum(axis=0)
        if np.any(nk < 1e-9):
            break
        new_mu = resp.T @ x / nk
        sd = np.maximum(np.sqrt((resp * (x[:, None] - new_mu) ** 2).sum(axis=0) / nk), floor)
        w = nk / x.size
        if np.allclose(new_mu, mu, rtol=0, atol=1e-10):
            mu = new_mu
            break
        mu = new_mu
    order = np.argsort(mu)
    return tuple(map(tuple, (w[order] / w.sum(), mu[order], sd[order])))


_CONTEXT_TERMS = ("c0", "c_in", "c_in2", "c_out", "c_ctx")


@dataclass(frozen=True)
class ContextService(_Residuals):
    r"""Service time whose decode cost grows with the context, with a fitted noise law.

    .. math::

        \bar S(L_{in}, L_{out}) = \max\Bigl(0,\; c_0 + c_{in} L_{in}
            + c_{in2} \tfrac{L_{in}^2}{2} + c_{out} L_{out}
            + c_{ctx} L_{out}\bigl(L_{in} + \tfrac{L_{out}}{2}\bigr)\Bigr),
        \qquad S = \bar S\,\varepsilon .

    Why this form: a transformer's cost per token is a fixed part (the weights: every token
    passes through all of them) plus attention over the tokens before it. Prefill runs the
    :math:`L_{in}` prompt tokens, token :math:`j` attending to :math:`j` others: :math:`c_{in}
    L_{in} + c_{in2} L_{in}^2/2` (quadratic prefill). Decode step :math:`i` attends to
    :math:`L_{in} + i` cached tokens, so the :math:`L_{out}` steps cost
    :math:`c_{out} L_{out} + c_{ctx} \sum_{i<L_{out}} (L_{in} + i)`
    :math:`\approx c_{out} L_{out} + c_{ctx} L_{out} (L_{in} + L_{out}/2)`. :math:`c_0` is the
    per-request overhead (tokenising, sampler set-up). :math:`\varepsilon` follows
    :class:`LogResidualLaw` (lognormal, or a two-normal mixture of logs when the residuals
    are bimodal).
    """

    c0: float
    c_in: float
    c_in2: float
    c_out: float
    c_ctx: float
    noise: LogResidualLaw = field(default_factory=LogResidualLaw)
    fit_result: ServiceFit | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        values = (self.c0, self.c_in, self.c_in2, self.c_out, self.c_ctx)
        if not all(np.isfinite(values)):
            raise ValueError(f"coefficients={values}: must be finite; fix the model")
        if not isinstance(self.noise, LogResidualLaw):
            raise ValueError(f"noise={self.noise!r}: must be a LogResidualLaw; build one")

    def mean(self, input_tokens: Any, output_tokens: Any) -> np.ndarray:
        """:math:`\\bar S(L_{in}, L_{out})` in seconds."""
        l_in, l_out = _tokens(input_tokens, output_tokens)
        X = _context_columns(l_in, l_out)
        coef = np.array([self.c0, self.c_in, self.c_in2, self.c_out, self.c_ctx])
        return np.maximum(X @ coef, 0.0)

    def sample(self, input_tokens: Any, output_tokens: Any, rng: np.random.Generator) -> np.ndarray:
        """:math:`\\bar S\\,\\varepsilon`, :math:`\\varepsilon` from ``noise`` (mean one)."""
        mean = self.mean(input_tokens, output_tokens)
        return mean * self.noise.sample(mean.shape, rng)

    @classmethod
    def fit(
        cls,
        trace: pd.DataFrame,
        *,
        prefill_quadratic: bool = True,
        components: int | str = "auto",
        level: float = 0.95,
        covariance: str = "HC3",
    ) -> ContextService:
        """Least-squares fit of ``seconds`` on the context terms, then the noise law.

        Parameters
        ----------
        trace : pandas.DataFrame
            Rows with ``job_type``, ``input_tokens``, ``output_tokens``, ``seconds``.
        prefill_quadratic : bool
            Fit :math:`c_{in2}` (else it is 0).
        components : {1, 2, "auto"}
            Mixture components of the log-residual law (:meth:`LogResidualLaw.fit`).
        level : float
            Confidence level of the intervals.
        covariance : {"HC3", "classical"}
            Covariance of the estimates, as in :meth:`LinearService.fit`.
        """
        validate_trace(trace)
        _check_fit_options(level, covariance)
        l_in = trace["input_tokens"].to_numpy(float)
        l_out = trace["output_tokens"].to_numpy(float)
        X = _context_columns(l_in, l_out)
        keep = [0, 1, 2, 3, 4] if prefill_quadratic else [0, 1, 3, 4]
        terms = tuple(_CONTEXT_TERMS[i] for i in keep)
        X = X[:, keep]
        y = trace["seconds"].to_numpy(float)
        _check_rank(X)
        fit = _least_squares(terms, X, y, level, covariance)
        c = dict.fromkeys(_CONTEXT_TERMS, 0.0) | dict(zip(terms, fit.estimate, strict=True))
        fitted = np.maximum(X @ fit.estimate, 0.0)
        ok = fitted > 0
        noise = LogResidualLaw.fit(np.log(y[ok] / fitted[ok]), components)
        return cls(**{t: float(v) for t, v in c.items()}, noise=noise, fit_result=fit)


def _context_columns(l_in: np.ndarray, l_out: np.ndarray) -> np.ndarray:
    ones = np.ones_like(l_in)
    return np.column_stack([ones, l_in, l_in**2 / 2, l_out, l_out * (l_in + l_out / 2)])


def _check_fit_options(level: float, covariance: str) -> None:
    if not 0 < number_field("level", level, "pass e.g. level=0.95") < 1:
        raise ValueError(f"level={level}: must be in (0, 1); pass e.g. level=0.95")
    if not (isinstance(covariance, str) and covariance in ("HC3", "classical")):
        raise ValueError(f"covariance={covariance!r}: unknown; use 'HC3' or 'classical'")


def _check_rank(X: np.ndarray) -> None:
    n, p = X.shape
    if n <= p or np.linalg.matrix_rank(X) < p:
        raise ValueError(f"trace=({n} rows): cannot fit {p} coefficients; measure more rows "
                         "with varying input and output lengths")  # fmt: skip


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
            raise ValueError(
                f"job_type={sorted(set(trace['job_type']))}: the trace has no propose jobs, so "
                "the prompt lengths are unknown; measure with any (M, k)"
            )
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
        _check_jobs(M, k, count_field("n", n, 1))
        if M >= 1 and not np.isfinite(self.instruction_tokens):
            raise ValueError(
                f"M={M}: the trace has no refine or aggregate job, so the augmented prompt "
                "length is unknown; measure with M >= 1"
            )
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

    def capped(self, max_tokens: int | None) -> LengthModel:
        """The same model when every inference stops at ``max_tokens`` output tokens.

        Generation is the same token by token up to the cap, so a capped output length is
        :math:`\\min(L_{out}, \\text{max\\_tokens})`; augmented prompts shrink with it.
        ``None`` returns the model unchanged.
        """
        if max_tokens is None:
            return self
        cap = count_field("max_tokens", max_tokens, 1)
        return replace(
            self, output_tokens={c: np.minimum(v, cap) for c, v in self.output_tokens.items()}
        )

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
        raise ValueError(
            "trace=(refine/aggregate rows): none matches its prompt's previous layer; keep the "
            "prompt_id, M, k and layer columns as measure() writes them"
        )
    overhead, width = overhead[ok], width[ok]
    if np.unique(width).size < 2:
        return float(overhead.mean()), 0.0
    slope, intercept = np.polyfit(width, overhead, 1)
    return float(intercept), float(slope)


# ----------------------------------------------------------------------------- per (M, k)


@lru_cache(maxsize=1)
def _default_fit() -> tuple[LinearService, LengthModel]:
    trace = load_default_trace()
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
    validate_trace(trace, (*FIT_COLUMNS, *_LENGTH_COLUMNS))
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
    max_tokens: int | None = None,
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
    M, k : int
        MoA layers and extra proposers per layer, ``>= 0``.
    model : ServiceModel, optional
        Any :class:`ServiceModel`; default :class:`LinearService` fitted to ``trace``.
    trace : pandas.DataFrame, optional
        A trace with the measurement columns; default the shipped SmolLM2 trace.
    n : int
        Prompts drawn, ``>= 1``.
    seed : int
        Seeds the draws.
    max_tokens : int, optional
        Output token cap of the deployment (:meth:`LengthModel.capped`); default the
        trace's own lengths.
    """
    _check_shape(M, k)
    service, lengths = _resolve(model, trace)
    jobs = lengths.capped(max_tokens).sample(M, k, _check_n(n), _rng(seed))
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
    max_tokens: int | None = None,
) -> dict[str, np.ndarray]:
    """Service seconds per job type at ``(M, k)``, for an empirical service distribution.

    Parameters
    ----------
    M, k : int
        MoA layers and extra proposers per layer, ``>= 0``.
    source : {"model", "trace"}
        ``"model"``: ``model.sample`` on token counts from :meth:`LengthModel.sample`
        (``n`` prompts, so ``n * (k+1)`` propose jobs etc.); works for any ``(M, k)``.
        ``"trace"``: the measured ``seconds`` of the trace's rows at exactly this ``(M, k)``.
    model : ServiceModel, optional
        For ``"model"``; default :class:`LinearService` fitted to ``trace``.
    trace : pandas.DataFrame, optional
        Default the shipped SmolLM2 trace.
    n : int
        Prompts drawn for ``"model"``, ``>= 1``.
    seed : int
        Seeds the draws.
    max_tokens : int, optional
        For ``"model"``: the deployment's output token cap (:meth:`LengthModel.capped`).

    Returns
    -------
    dict
        ``{job_type: seconds}`` for the job types that occur at ``M``.
    """
    _check_shape(M, k)
    if isinstance(source, str) and source == "trace":
        return _measured_samples(M, k, trace)
    if not (isinstance(source, str) and source == "model"):
        raise ValueError(f"source={source!r}: unknown source; use 'model' or 'trace'")
    service, lengths = _resolve(model, trace)
    rng = _rng(seed)
    jobs = lengths.capped(max_tokens).sample(M, k, _check_n(n), rng)
    return {c: np.asarray(service.sample(l_in, l_out, rng), float)
            for c, (l_in, l_out) in jobs.items()}  # fmt: skip


def _measured_samples(M: int, k: int, trace: pd.DataFrame | None) -> dict[str, np.ndarray]:
    trace = load_default_trace() if trace is None else trace
    validate_trace(trace, (*FIT_COLUMNS, "M", "k"))
    rows = trace[(trace["M"] == M) & (trace["k"] == k)]
    if rows.empty:
        have = sorted(set(zip(trace["M"].astype(int), trace["k"].astype(int), strict=True)))
        raise ValueError(
            f"(M, k)=({M}, {k}): the trace has no rows for it; use one of {have} or source='model'"
        )
    return {c: rows.loc[rows["job_type"] == c, "seconds"].to_numpy(float)
            for c in job_types_used(M)}  # fmt: skip


# ----------------------------------------------------------------------------- accuracy


@dataclass(frozen=True, eq=False)
class ServiceAccuracy:
    r"""How well a service model predicts a trace (in sample when the model was fitted to it).

    Absolute percentage error :math:`|\hat S - S| / S`: of each inference (``inference_*``),
    and of the mean service time of the jobs of one ``(M, k)`` (``config_*``), where the
    prediction :math:`\sum_c n_c E[S_c] / \sum_c n_c` uses the model's per-type means from
    :func:`mean_service_times` (token counts drawn by the protocol's length model, so this
    also tests the length model) and :math:`n_c` the job counts per prompt.

    Attributes
    ----------
    r2 : float
        :math:`1 - \sum (S - \bar S)^2 / \sum (S - \text{mean } S)^2` over the inferences.
    inference_median_ape, inference_p90_ape : float
    config_median_ape, config_p90_ape : float
    table : pandas.DataFrame
        One row per ``(M, k)``: inferences, measured and predicted mean seconds, APE.
    """

    r2: float
    inference_median_ape: float
    inference_p90_ape: float
    config_median_ape: float
    config_p90_ape: float
    table: pd.DataFrame

    def to_frame(self) -> pd.DataFrame:
        """The per-``(M, k)`` table."""
        return self.table.copy()

    def __str__(self) -> str:
        return (
            f"R^2 = {self.r2:.4f}; per inference APE median {100 * self.inference_median_ape:.1f}%"
            f", p90 {100 * self.inference_p90_ape:.1f}%; per (M, k) mean APE median "
            f"{100 * self.config_median_ape:.1f}%, p90 {100 * self.config_p90_ape:.1f}%"
        )


def service_accuracy(
    model: ServiceModel, trace: pd.DataFrame | None = None, *, n: int = 20_000, seed: int = 0
) -> ServiceAccuracy:
    """Errors of ``model`` on ``trace`` (default the shipped one); see :class:`ServiceAccuracy`."""
    trace = load_default_trace() if trace is None else trace
    validate_trace(trace, (*FIT_COLUMNS, *_LENGTH_COLUMNS))
    if not isinstance(model, ServiceModel):
        raise ValueError(f"model={type(model).__name__}: has no mean() and sample(); pass a model")
    y = trace["seconds"].to_numpy(float)
    fitted = model.mean(trace["input_tokens"], trace["output_tokens"])
    ape = np.abs(fitted - y) / y
    rows = []
    for (M, k), part in trace.groupby(["M", "k"]):
        means = mean_service_times(int(M), int(k), model=model, trace=trace, n=n, seed=seed)
        weight = inferences_by_type(int(M), int(k))
        predicted = sum(weight[c] * means[c] for c in means) / sum(weight.values())
        measured = float(part["seconds"].mean())
        ape_mk = abs(predicted - measured) / measured
        rows.append({"M": M, "k": k, "inferences": len(part), "measured_mean_s": measured,
                     "predicted_mean_s": predicted, "ape": ape_mk})  # fmt: skip
    table = pd.DataFrame(rows).set_index(["M", "k"])
    return ServiceAccuracy(
        r2=1.0 - float(np.sum((y - fitted) ** 2) / np.sum((y - y.mean()) ** 2)),
        inference_median_ape=float(np.median(ape)),
        inference_p90_ape=float(np.quantile(ape, 0.9)),
        config_median_ape=float(table["ape"].median()),
        config_p90_ape=float(table["ape"].quantile(0.9)),
        table=table,
    )
