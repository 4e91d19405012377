"""Context-growth service model, the mixture noise law and the accuracy report."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.stats

from moa_stability.llm.service import (
    ConstantService,
    ContextService,
    LogResidualLaw,
    load_default_trace,
    mean_service_times,
    service_accuracy,
)
from moa_stability.llm.trace import load_busy_trace

TRUE = {"c0": 0.05, "c_in": 0.004, "c_in2": 4e-6, "c_out": 0.012, "c_ctx": 2e-5}


def synthetic(noise, n: int = 800, seed: int = 5) -> pd.DataFrame:
    """Inferences with token counts spread like MoA jobs and a known mean."""
    rng = np.random.default_rng(seed)
    l_in = rng.integers(20, 900, n).astype(float)
    l_out = rng.integers(5, 300, n).astype(float)
    mean = (TRUE["c0"] + TRUE["c_in"] * l_in + TRUE["c_in2"] * l_in**2 / 2
            + TRUE["c_out"] * l_out + TRUE["c_ctx"] * l_out * (l_in + l_out / 2))  # fmt: skip
    return pd.DataFrame(
        {
            "job_type": "propose",
            "input_tokens": l_in,
            "output_tokens": l_out,
            "seconds": mean * noise(rng, n),
        }
    )


def lognormal(sigma):
    return lambda rng, n: np.exp(sigma * rng.standard_normal(n) - sigma**2 / 2)


def test_fit_recovers_context_coefficients_within_ci():
    model = ContextService.fit(synthetic(lognormal(0.05)))
    table = model.fit_result.to_frame()
    for term, value in TRUE.items():
        low, high = table.loc[term, ["ci_low", "ci_high"]]
        assert low <= value <= high, (term, value, low, high)
    assert model.noise.components == 1
    assert 0.9 * 0.05 < model.noise.sigma[0] < 1.1 * 0.05
    assert model.fit_result.r2 > 0.98  # 5% noise on means spread over ~30x


def test_fit_without_prefill_quadratic_sets_it_to_zero():
    model = ContextService.fit(synthetic(lognormal(0.05)), prefill_quadratic=False)
    assert model.c_in2 == 0.0
    assert model.fit_result.terms == ("c0", "c_in", "c_out", "c_ctx")


def test_bimodal_noise_gives_a_two_component_law():
    # An inference either has a core (factor 1) or shares one (factor 1.7), times 3% jitter.
    def contended(rng, n):
        shared = rng.random(n) < 0.6
        return np.where(shared, 1.7, 1.0) * np.exp(0.03 * rng.standard_normal(n))

    model = ContextService.fit(synthetic(contended, n=2000))
    law = model.noise
    assert law.components == 2
    # Modes are log-ratios to a mean-one fit, so their gap is log(1.7), their weights 0.4/0.6.
    assert law.mu[1] - law.mu[0] == pytest.approx(np.log(1.7), abs=0.02)
    assert law.weight[1] == pytest.approx(0.6, abs=0.04)


def test_noise_law_has_mean_one():
    law = LogResidualLaw(weight=(0.3, 0.7), mu=(-0.4, 0.2), sigma=(0.1, 0.3))
    draws = law.sample(400_000, np.random.default_rng(1))
    se = draws.std() / np.sqrt(draws.size)
    assert abs(draws.mean() - 1.0) < 4 * se
    with pytest.raises(ValueError, match="^weight="):
        LogResidualLaw(weight=(0.5, 0.6), mu=(0, 0), sigma=(1, 1))
    with pytest.raises(ValueError, match="^components="):
        LogResidualLaw.fit([0.1, 0.2, 0.3], components=3)


def test_context_model_plugs_into_mean_service_times():
    model = ContextService.fit(load_default_trace())
    means = mean_service_times(2, 1, model=model, n=2000)
    assert set(means) == {"propose", "refine", "aggregate"}
    # Augmented prompts are ~10x longer than plain ones: refine and aggregate cost more.
    assert means["refine"] > means["propose"] and means["aggregate"] > means["propose"]


def test_accuracy_of_a_constant_model_computed_independently():
    trace = load_default_trace()
    s = 4.0
    acc = service_accuracy(ConstantService(s), trace)
    y = trace["seconds"].to_numpy()
    ape = np.abs(s - y) / y
    assert acc.inference_median_ape == pytest.approx(np.median(ape), rel=1e-12)
    assert acc.inference_p90_ape == pytest.approx(np.quantile(ape, 0.9), rel=1e-12)
    assert acc.r2 == pytest.approx(1 - np.sum((y - s) ** 2) / np.sum((y - y.mean()) ** 2))
    per_config = trace.groupby(["M", "k"])["seconds"].mean()
    expected = (s - per_config).abs() / per_config
    assert acc.config_median_ape == pytest.approx(expected.median(), rel=1e-12)
    np.testing.assert_allclose(acc.to_frame()["ape"].to_numpy(), expected.to_numpy())
    assert "R^2" in str(acc)


def context_design(trace: pd.DataFrame) -> np.ndarray:
    """The context model's columns, written out from its formula (not from the package)."""
    l_in = trace["input_tokens"].to_numpy(float)
    l_out = trace["output_tokens"].to_numpy(float)
    return np.column_stack(
        [np.ones_like(l_in), l_in, l_in**2 / 2, l_out, l_out * (l_in + l_out / 2)]
    )


def independent_log_residuals(trace: pd.DataFrame) -> tuple[float, np.ndarray]:
    """R^2 and log(measured / fitted) of an ordinary least-squares fit of the context form."""
    X, y = context_design(trace), trace["seconds"].to_numpy(float)
    beta, *_ = np.linalg.lstsq(X, y, rcond=None)
    r2 = 1 - np.sum((y - X @ beta) ** 2) / np.sum((y - y.mean()) ** 2)
    return float(r2), np.log(y / (X @ beta))


def test_default_trace_meets_the_floors_with_a_narrow_unimodal_residual_law():
    # The default trace was timed with nothing else running: the token counts explain the
    # times (issue floor R^2 >= 0.9) and the multiplicative noise is a few percent.
    trace = load_default_trace()
    r2, log_ratio = independent_log_residuals(trace)
    model = ContextService.fit(trace)
    assert model.fit_result.r2 == pytest.approx(r2, rel=1e-10) and r2 >= 0.9
    assert np.std(log_ratio, ddof=1) < 0.1
    # Whatever the number of components BIC picks, no mode sits 5% from another: the
    # mixture only shapes the tails of one peak.
    assert max(model.noise.mu) - min(model.noise.mu) < np.log(1.05)
    acc = service_accuracy(model, trace)
    assert acc.inference_median_ape < 0.05 and acc.config_median_ape < 0.05


def test_busy_trace_residuals_are_bimodal_and_follow_the_load():
    # The same inferences (same prompts, seed and token counts) timed while other jobs shared
    # the two cores (load 1.5-8.5): time slicing stretches some by a roughly constant factor.
    busy, quiet = load_busy_trace(), load_default_trace()
    tokens = ["job_type", "input_tokens", "output_tokens"]
    assert busy[tokens].equals(quiet[tokens])
    r2, log_ratio = independent_log_residuals(busy)
    assert r2 < 0.9
    model = ContextService.fit(busy)
    assert model.fit_result.r2 == pytest.approx(r2, rel=1e-10)
    assert model.noise.components == 2
    assert model.noise.mu[1] - model.noise.mu[0] > np.log(1.4)
    # The slow residuals come with a higher load average: rank correlation of the slowdown
    # (busy over quiet time of the same inference) with the logged load.
    slowdown = busy["seconds"] / quiet["seconds"]
    rho, p_value = scipy.stats.spearmanr(slowdown, busy["loadavg_1min"])
    assert rho > 0 and p_value < 1e-3
