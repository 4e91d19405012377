"""Output analysis: t intervals, the growth slope and the verdict rules on synthetic series."""

import numpy as np
import pytest
from scipy import stats

from moa_stability import TailFit, fit_tail
from moa_stability.simulation.statistics import (
    Evidence,
    Slope,
    batch_count,
    growth_slope,
    level_interval,
    relaxation_time,
    stability_verdict,
    t_interval,
)


def test_t_interval_is_the_student_interval():
    x = np.array([1.0, 2.0, 4.0, 7.0])
    mean, half = t_interval(x)
    lo, hi = stats.t.interval(0.95, 3, loc=x.mean(), scale=stats.sem(x))
    assert mean == pytest.approx(3.5) and half == pytest.approx((hi - lo) / 2)
    assert np.isnan(t_interval(np.array([1.0]))[1])


def test_growth_slope_of_independent_noise_is_the_ols_interval():
    # 400 flat series of independent batch means: the OLS interval on B - 2 degrees of freedom
    # (scipy's regression), covering the zero slope in [0.92, 0.98] of them (binomial,
    # probability 0.99); the random walk only where the slope is significant (~1 in 1000)
    rng = np.random.default_rng(0)
    t = np.linspace(0, 1000, 20)
    hits = walks = 0
    for _ in range(400):
        y = rng.normal(5, 1, t.size)
        flat = growth_slope(t, y, t[1] - t[0])
        hits += abs(flat.per_s) <= flat.ci
        walks += flat.random_walk
        if not flat.random_walk:
            fit = stats.linregress(t, y)
            assert flat.dof == 18 and flat.t_stat == pytest.approx(fit.slope / fit.stderr)
            assert flat.ci == pytest.approx(stats.t.ppf(0.975, 18) * fit.stderr)
    assert walks <= 3 and 0.92 <= hits / 400 <= 0.98


def test_a_significant_trend_is_growth():
    rng = np.random.default_rng(0)
    t = np.linspace(0, 1000, 20)
    slope = growth_slope(t, 3.0 + 0.05 * t + rng.normal(0, 1, t.size))
    # the stationarity test keeps independent residuals; the interval turns to the random walk
    # of a growing queue (wider for this trend plus noise, still covering)
    t_null, dof_null = slope.stationary_test()
    assert t_null > 10 and dof_null == 18
    assert slope.random_walk and abs(slope.per_s - 0.05) <= slope.ci


def brownian_batch_means(rng, drift, sigma, batches, steps, span):
    """Batch means of ``drift t + sigma W(t)`` over ``batches`` consecutive batches of length
    ``span``, from a fine Gaussian walk of ``steps`` steps per batch (trapezoid rule)."""
    dt = span / steps
    increments = drift * dt + sigma * np.sqrt(dt) * rng.standard_normal(batches * steps)
    path = np.concatenate([[0.0], np.cumsum(increments)]).reshape(-1)
    means = [
        (path[b * steps : (b + 1) * steps].sum() + path[(b + 1) * steps] / 2 - path[b * steps] / 2)
        / steps
        for b in range(batches)
    ]
    return np.arange(batches) * span + span / 2, np.array(means)


@pytest.mark.parametrize("batches", [5, 20])
def test_growth_slope_covers_the_drift_of_a_random_walk(batches):
    # 400 Brownian paths with drift 0.2 and sigma^2 = 2.2 (M/M/1 at rho = 1.2 away from 0):
    # coverage of an honest 95% interval lies in [0.92, 0.98] with probability 0.99
    # (binomial: sd 0.011); the independent-residual interval covered about a third.
    rng = np.random.default_rng(7)
    hits = 0
    for _ in range(400):
        t, y = brownian_batch_means(rng, 0.2, np.sqrt(2.2), batches, 50, 1000.0)
        slope = growth_slope(t, y, 1000.0)
        hits += abs(slope.per_s - 0.2) <= slope.ci
    assert 0.92 <= hits / 400 <= 0.98


def evidence(**changes):
    base = dict(
        window_s=8e4,
        warmup_s=2e4,
        age_s=6e4,
        relaxation_s=100.0,
        arrived=10**4,
        completed=10**4,
        arrival_rate_per_s=0.1,
        batches=20,
    )
    return Evidence(**(base | changes))


def test_verdict_rules():
    growing = Slope(per_s=0.2, ci=0.01, t_stat=40.0, dof=18)
    flat = Slope(per_s=1e-5, ci=1e-4, t_stat=0.2, dof=18)
    ev = evidence()
    assert stability_verdict(growing, 1e4, 2e3, ev, None, 10**6, 0.4).verdict == "unstable"
    judged = stability_verdict(flat, 40.0, 5.0, ev, None, 10**6, 0.0)
    assert judged.verdict == "stable" and judged.horizon_needed_s == pytest.approx(1e5)
    unsettled = stability_verdict(flat, 40.0, 15.0, ev, None, 10**6, 0.0)
    # the half-width shrinks like 1/sqrt(window): (15 / (0.25 * 40))^2 = 2.25 times the window
    assert unsettled.verdict == "inconclusive"
    assert unsettled.horizon_needed_s == pytest.approx(2.25e5)
    # growth 0.3 x level over the window's mean age: neither excluded nor significant
    slow = Slope(per_s=0.3 * 40 / 6e4, ci=2e-4, t_stat=2.1, dof=18)
    assert stability_verdict(slow, 40.0, 5.0, ev, None, 10**6, 0.0).verdict == "inconclusive"


def test_growth_needs_the_random_walk_interval_too():
    # independent batch means reject stationarity (t = 5 > t_0.999,18 = 3.6) but the
    # random-walk interval of the same slope does not exclude 0 (t = 0.5): not unstable
    excursion = Slope(
        per_s=1e-4, ci=4e-4, t_stat=0.5, dof=16.0, random_walk=True, stationary_t=5.0,
        stationary_dof=18,
    )  # fmt: skip
    ev = evidence()
    judged = stability_verdict(excursion, 8.0, 1.0, ev, None, 10**6, 0.0)
    assert judged.verdict == "inconclusive"
    # (t_0.95,16 / 0.5)^2 = 12.2 windows: the random walk's t is the one that must grow
    factor = (stats.t.ppf(0.95, 16.0) / 0.5) ** 2
    assert judged.horizon_needed_s == pytest.approx(factor * 1e5)
    growing = Slope(
        per_s=1e-4, ci=4e-5, t_stat=5.0, dof=16.0, random_walk=True, stationary_t=9.0,
        stationary_dof=18,
    )  # fmt: skip
    assert stability_verdict(growing, 8.0, 1.0, ev, None, 10**6, 0.0).verdict == "unstable"


def test_significant_but_irrelevant_growth_is_stable():
    # the 3.2e7 s run at load 0.8: 2.75e-9 +- 2.3e-9 jobs/s beside ~16 jobs
    tiny = Slope(per_s=2.75e-9, ci=2.3e-9, t_stat=2.5, dof=18)
    ev = evidence(window_s=2.56e7, warmup_s=6.4e6, age_s=1.92e7)
    assert stability_verdict(tiny, 16.0, 0.1, ev, None, 10**6, 0.0).verdict == "stable"


def test_thin_evidence_is_inconclusive_with_the_horizon_needed():
    growing = Slope(per_s=0.3, ci=0.29, t_stat=40.0, dof=3)
    short = evidence(
        window_s=8.0, warmup_s=2.0, age_s=6.0, relaxation_s=6.0, arrived=5, arrival_rate_per_s=10
    )
    judged = stability_verdict(growing, 2.0, 2.2, short, None, 10**6, 0.0)
    # 50 relaxation times of 6 s after a 20% warm-up: 300 / 0.8 = 375 s
    assert judged.verdict == "inconclusive" and judged.horizon_needed_s == pytest.approx(375)
    assert "375" in judged.evidence
    few = evidence(arrival_rate_per_s=1e-3, arrived=10, completed=10)
    judged = stability_verdict(growing, 2.0, 0.1, few, None, 10**6, 0.0)
    # 100 prompts at 1e-3 per second: a window of 1e5 s, horizon 1.25e5 s
    assert judged.verdict == "inconclusive" and judged.horizon_needed_s == pytest.approx(1.25e5)
    critical = stability_verdict(growing, 2.0, 0.1, evidence(relaxation_s=np.inf), None, 10, 0)
    assert critical.verdict == "inconclusive" and critical.horizon_needed_s == np.inf
    idle = stability_verdict(growing, 0.0, 0.0, evidence(arrival_rate_per_s=0.0), None, 10, 0)
    assert idle.verdict == "stable"


def test_cap_hit_is_unstable_only_with_an_excess_or_growth():
    flat = Slope(per_s=0.0, ci=1e-3, t_stat=0.0, dof=18)
    judged = stability_verdict(flat, 40.0, 5.0, evidence(), 123.0, 1000, 0.1)
    assert judged.verdict == "unstable" and "cap of 1000" in judged.evidence
    assert "123" in judged.evidence
    small_cap = stability_verdict(flat, 2.0, 0.5, evidence(), 7.0, 3, 0.0)
    assert small_cap.verdict == "inconclusive" and "max_jobs" in small_cap.evidence


def test_relaxation_time_is_the_mm1_integrated_autocorrelation_time():
    rho, mean = 0.9, 2.0
    # Whitt: sigma^2 = 2 rho (1 + rho) E[S] / (1 - rho)^4, Var Q = rho / (1 - rho)^2
    sigma2 = 2 * rho * (1 + rho) * mean / (1 - rho) ** 4
    expected = sigma2 / (2 * rho / (1 - rho) ** 2)
    got = relaxation_time(np.array([mean, 1.0, 5.0]), np.array([rho, 0.5, 0.0]))
    assert got == pytest.approx(expected)
    assert relaxation_time(np.array([1.0]), np.array([1.0])) == np.inf
    assert relaxation_time(np.array([1.0]), np.array([0.0])) == 0.0


def test_batch_count_spans_twenty_relaxation_times_within_bounds():
    assert batch_count(8e4, 780.0, 800) == 5  # M/M/1 at 0.95: 102 relaxation times
    assert batch_count(8e4, 600.0, 800) == 6
    assert batch_count(8e4, 1.0, 800) == 20 and batch_count(8e4, 1.0, 3) == 3
    assert batch_count(8e4, np.inf, 800) == 5 and batch_count(8e4, 0.0, 800) == 20


def test_level_interval_covers_a_level_proportional_spread():
    x = np.array([3.0, 4.0, 5.0, 6.0])
    mean, half = t_interval(x)
    c = half / mean
    got_mean, got_half = level_interval(x)
    assert 0 < c < 1 and got_mean == pytest.approx(4.5)
    assert got_half == pytest.approx(mean * c / (1 - c))
    # the upper end solves |m - mu| = c mu
    assert abs(mean - (mean + got_half)) == pytest.approx(c * (mean + got_half))
    assert level_interval(np.array([0.1, 10.0]))[1] == np.inf


def test_fit_tail_recovers_a_geometric_tail():
    # M/M/1 at load 0.9: P(Q > B) = 0.9^(B+1), so ln P = ln 0.9 - B (-ln 0.9) exactly.
    rho, buffers = 0.9, np.arange(200)
    fit = fit_tail(buffers, rho ** (buffers + 1.0), floor=1e-4)
    assert isinstance(fit, TailFit)
    assert fit.decay_per_job == pytest.approx(-np.log(rho), rel=1e-10)
    assert fit.log_intercept == pytest.approx(np.log(rho), rel=1e-10)
    # Inside the fit: 0.1 >= 0.9^(B+1) >= 1e-4, i.e. B from 21 to 86.
    assert (fit.first, fit.last) == (21, 86)
    # Smallest B with 0.9^(B+1) <= 1e-3: B + 1 >= ln(1e-3)/ln(0.9) = 65.56, so B = 65.
    assert fit.buffer_for(1e-3) == 65
    np.testing.assert_allclose(fit.probability([0, 10]), rho ** np.array([1.0, 11.0]))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"floor": 0.5}, "floor="),
        ({"floor": 1e-4, "start": 2.0}, "start="),
        ({"floor": 0.09}, "fewer than two"),
    ],
)
def test_fit_tail_rejects_what_it_cannot_fit(kwargs, message):
    buffers = np.arange(30)
    with pytest.raises(ValueError, match=message):
        fit_tail(buffers, 0.5 ** (buffers + 1.0), **kwargs)
