"""Output analysis: t intervals, the growth slope and the verdict rules on synthetic series."""

import numpy as np
import pytest
from scipy import stats

from moa_stability import TailFit, fit_tail
from moa_stability.simulation.statistics import Slope, growth_slope, stability_verdict, t_interval


def test_t_interval_is_the_student_interval():
    x = np.array([1.0, 2.0, 4.0, 7.0])
    mean, half = t_interval(x)
    lo, hi = stats.t.interval(0.95, 3, loc=x.mean(), scale=stats.sem(x))
    assert mean == pytest.approx(3.5) and half == pytest.approx((hi - lo) / 2)
    assert np.isnan(t_interval(np.array([1.0]))[1])


def test_growth_slope_recovers_a_linear_trend_within_its_ci():
    rng = np.random.default_rng(0)
    t = np.linspace(0, 1000, 20)
    slope = growth_slope(t, 3.0 + 0.05 * t + rng.normal(0, 1, t.size))
    assert abs(slope.per_s - 0.05) <= slope.ci and slope.t_stat > 10 and slope.dof == 18
    flat = growth_slope(t, rng.normal(5, 1, t.size))
    assert abs(flat.per_s) <= flat.ci


def test_verdict_rules():
    growing = Slope(per_s=0.2, ci=0.01, t_stat=40.0, dof=18)
    flat = Slope(per_s=1e-5, ci=3e-4, t_stat=0.1, dof=18)
    drifting = Slope(per_s=2e-3, ci=5e-4, t_stat=8.0, dof=18)  # significant but small
    assert stability_verdict(growing, 8e4, 1e4, 2e3, None, 10**6, 0.4)[0] == "unstable"
    assert stability_verdict(flat, 8e4, 40.0, 5.0, None, 10**6, 0.0)[0] == "stable"
    assert stability_verdict(flat, 8e4, 40.0, 15.0, None, 10**6, 0.0)[0] == "inconclusive"
    assert stability_verdict(drifting, 8e4, 400.0, 20.0, None, 10**6, 0.0)[0] == "inconclusive"
    verdict, evidence = stability_verdict(flat, 8e4, 40.0, 5.0, 123.0, 1000, 0.1)
    assert verdict == "unstable" and "cap of 1000" in evidence and "123" in evidence
    assert stability_verdict(flat, 8e4, 0.0, 0.0, None, 10**6, 0.0)[0] == "stable"


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
