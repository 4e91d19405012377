"""Analytic latency: exact M/G/1 cases, the exact selection expectation, the committed validation
table, and bad input."""

import itertools
import math

import mpmath
import numpy as np
import pandas as pd
import pytest
from scipy import integrate

from moa_stability import LatencyResult, MoANetwork, latency, loads
from moa_stability.experiments import latency_validation as lv

QS = (0.5, 0.9, 0.95, 0.99)


# ---- M = 0: one M/G/1 queue per device --------------------------------------------------------
@pytest.mark.parametrize("rho", [0.1, 0.5, 0.9, 0.95])
@pytest.mark.parametrize("method", ["bound", "estimate"])
def test_mm1_mean_and_quantiles(rho, method):
    """M/M/1 sojourn ~ Exp(mu - lambda): mean 1/(mu - lambda), quantile -ln(1-q)/(mu - lambda)."""
    s = 2.0
    res = latency(MoANetwork(n=1, arrival_rate=rho / s, service_time=s), method=method)
    gap = 1 / s - rho / s
    assert res.mean_s == pytest.approx(1 / gap, rel=1e-12)
    exact = -np.log1p(-np.array(QS)) / gap
    np.testing.assert_allclose(res.quantile(np.array(QS)), exact, rtol=2e-3)


def test_mm1_heterogeneous_devices_and_network_mixture():
    """M = 0 on two devices: per-origin M/M/1; the network law mixes them by arrival rate."""
    lam, s = np.array([0.2, 0.6]), np.array([2.0, 1.0])
    res = latency(MoANetwork(n=2, arrival_rate=lam, service_time=s))
    gap = 1 / s - lam
    np.testing.assert_allclose(res.origin_mean_s, 1 / gap, rtol=1e-12)
    assert res.mean_s == pytest.approx(lam @ (1 / gap) / lam.sum(), rel=1e-12)
    x = res.quantile(0.9)
    mixture_cdf = lam @ (1 - np.exp(-gap * x)) / lam.sum()
    assert mixture_cdf == pytest.approx(0.9, abs=1e-3)


def _md1_wait_cdf(x, lam, d):
    """Erlang's exact M/D/1 waiting-time CDF (alternating series, exact rationals via mpmath)."""
    mpmath.mp.dps = 60
    total = mpmath.mpf(0)
    for j in range(int(math.floor(x / d)) + 1):
        t = lam * (j * d - x)
        total += (t**j) / mpmath.factorial(j) * mpmath.exp(-t)
    return float((1 - lam * d) * total)


@pytest.mark.parametrize("rho", [0.5, 0.8])
def test_md1_mean_and_quantiles(rho):
    """M/D/1: mean D + rho D / (2(1 - rho)); P(W <= quantile - D) = q by Erlang's formula."""
    d = 1.0
    res = latency(MoANetwork(n=1, arrival_rate=rho / d, service_time=d), service="deterministic")
    assert res.mean_s == pytest.approx(d + rho * d / (2 * (1 - rho)), rel=1e-12)
    for q in QS:
        if q <= 1 - rho:
            continue  # inside the atom W = 0
        assert _md1_wait_cdf(res.quantile(q) - d, rho / d, d) == pytest.approx(q, abs=2e-3)


def _gamma_sojourn_cdf(x, lam, mean, scv):
    """P(W + S <= x) by Talbot inversion of the Pollaczek-Khinchine transform (gamma S)."""
    a, theta = 1 / scv, mean * scv
    rho = lam * mean

    def transform(s):
        b = (1 + theta * s) ** (-a)
        return (1 - rho) * s / (s - lam * (1 - b)) * b / s

    mpmath.mp.dps = 30
    return float(mpmath.invertlaplace(transform, x, method="talbot"))


@pytest.mark.parametrize("scv", [0.25, 4.0])
def test_mg1_gamma_mean_and_quantiles(scv):
    """M/G/1 with gamma service: P-K mean exactly; quantiles against numerical inversion."""
    lam, mean = 0.7, 1.0
    res = latency(MoANetwork(n=1, arrival_rate=lam, service_time=mean), service="gamma", scv=scv)
    wait = lam * mean**2 * (1 + scv) / (2 * (1 - lam * mean))
    assert res.mean_s == pytest.approx(mean + wait, rel=1e-12)
    for q in (0.5, 0.95, 0.99):
        assert _gamma_sojourn_cdf(res.quantile(q), lam, mean, scv) == pytest.approx(q, abs=2e-3)


def test_mixed_job_types_share_one_fcfs_wait():
    """M = 1, k = 0 on one device: propose then aggregate, both waiting the M/G/1 wait of the
    hyperexponential mixture; mean = 2 E[W] + E[S_p] + E[S_a] (P-K, exactly)."""
    lam, sp_, sa = 0.2, 1.0, 3.0
    net = MoANetwork(
        n=1, M=1, k=0, arrival_rate=lam, service_time={"propose": sp_, "aggregate": sa}
    )
    second = lam * (2 * sp_**2) + lam * (2 * sa**2)
    rho = lam * (sp_ + sa)
    wait = second / (2 * (1 - rho))
    assert latency(net, method="bound").mean_s == pytest.approx(2 * wait + sp_ + sa, rel=1e-12)


# ---- layers: the exact expectation over the selection ----------------------------------------
def _expected_max(gaps):
    """E[max of independent Exp(gap_i)] by quadrature."""
    value, _ = integrate.quad(lambda x: 1 - np.prod(-np.expm1(-np.asarray(gaps) * x)), 0, np.inf)
    return value


def _mm1_gaps(net):
    """Exponential service with one mean per device: each device is an M/M/1 queue whose
    sojourn is Exp(1/s_i - total job rate_i)."""
    from moa_stability import job_rates

    return 1 / net.service_time[0] - job_rates(net).sum(axis=0)


def test_uniform_subsets_match_enumeration():
    """Bound mean on a heterogeneous complete graph = average over every k-subset."""
    s = np.array([1.0, 1.3, 0.7, 2.0, 1.1])
    net = MoANetwork(n=5, M=2, k=2, arrival_rate=0.03, service_time=s)
    gaps = _mm1_gaps(net)
    res = latency(net, method="bound")
    for j in range(5):
        others = [i for i in range(5) if i != j]
        layer = np.mean(
            [_expected_max([gaps[j], *gaps[list(h)]]) for h in itertools.combinations(others, 2)]
        )
        expected = 2 * layer + 1 / gaps[j]
        assert res.origin_mean_s[j] == pytest.approx(expected, rel=2e-3)


def _systematic_sets(pi_row, k, grid=20_000):
    """The simulator's systematic-sampling loop, run for a fine grid of u."""
    cols = np.flatnonzero(pi_row)
    cum = np.cumsum(pi_row[cols])
    cum[-1] = k
    sets = []
    for u in (np.arange(grid) + 0.5) / grid:
        prev, r, chosen = 0.0, 0, []
        for p, c in enumerate(cum):
            if r < k and prev <= u + r < c:
                r += 1
                chosen.append(cols[p])
            prev = c
        sets.append(tuple(chosen))
    return sets


def test_inclusion_probabilities_match_systematic_sampling():
    """Bound mean with given pi = the average over the simulator's systematic-sampling sets."""
    pi = np.array(
        [
            [0.0, 0.9, 0.6, 0.5],
            [0.3, 0.0, 0.8, 0.9],
            [0.7, 0.7, 0.0, 0.6],
            [0.2, 0.9, 0.9, 0.0],
        ]
    )
    s = np.array([1.0, 0.6, 0.8, 1.4])
    net = MoANetwork(n=4, M=1, k=2, arrival_rate=0.04, service_time=s, selection=pi)
    gaps = _mm1_gaps(net)
    res = latency(net, method="bound")
    for j in range(4):
        sets = _systematic_sets(pi[j], 2)
        cache = {h: _expected_max([gaps[j], *gaps[list(h)]]) for h in set(sets)}
        layer = np.mean([cache[h] for h in sets])
        assert res.origin_mean_s[j] == pytest.approx(layer + 1 / gaps[j], rel=2e-3)


def test_grouping_makes_size_irrelevant_on_a_ring():
    """Identical devices on a ring: every origin sees the same neighbourhood, so 8 and 3000
    devices give the same latency (and the large one stays cheap through grouping)."""
    small = latency(MoANetwork(n=8, M=2, k=2, arrival_rate=0.05, topology="ring"))
    large = latency(MoANetwork(n=3000, M=2, k=2, arrival_rate=0.05, topology="ring"))
    assert large.mean_s == pytest.approx(small.mean_s, rel=1e-9)
    assert large.quantile(0.95) == pytest.approx(small.quantile(0.95), rel=1e-6)


def test_estimate_join_follows_nelson_tantawi():
    """n = k + 1 = 2, M = 1: both devices run every propose stage, then each its aggregate.
    Overlap q = shared jobs / sqrt(r_0 r_1) = 2 lam / 3 lam; the estimate's join is the
    maximum of a = 2 - q (2 - a_FJ) independent Exp(mu - lambda), with H(a_FJ) = Flatto-Hahn's
    (12 - rho)/8; then the documented cross-stage stretch."""
    from moa_stability.analysis.latency import CROSS_STAGE_MEAN

    lam = 0.1
    net = MoANetwork(n=2, M=1, k=1, arrival_rate=lam, service_time=1.0)
    rho = float(loads(net)[0])
    gap = 1 - rho  # each device: propose 2 lam, aggregate lam, all with mean 1

    def harmonic(a):
        return mpmath.digamma(a + 1) + mpmath.euler

    a_fj = float(mpmath.findroot(lambda a: harmonic(a) - (12 - rho) / 8, 1.5))
    a = 2 - (2 / 3) * (2 - a_fj)
    join = float(harmonic(a)) / gap
    stretch = 1 + CROSS_STAGE_MEAN * rho**2
    assert latency(net).mean_s == pytest.approx(stretch * (join + 1 / gap), rel=2e-3)
    assert latency(net, method="bound").mean_s == pytest.approx(1.5 / gap + 1 / gap, rel=2e-3)


# ---- the result object ------------------------------------------------------------------------
def test_result_frame_and_text():
    net = MoANetwork(n=3, M=1, k=1, arrival_rate=[0.05, 0.1, 0.0], service_time=1.0)
    res = latency(net)
    assert isinstance(res, LatencyResult)
    frame = res.to_frame()
    assert list(frame.index) == ["0", "1", "2", "network"]
    assert list(frame.columns) == ["arrival_rate_per_s", "mean_s", "p50_s", "p95_s", "p99_s"]
    assert frame.loc["network", "mean_s"] == pytest.approx(
        (0.05 * res.origin_mean_s[0] + 0.1 * res.origin_mean_s[1]) / 0.15
    )
    assert np.isnan(frame.loc["2", "mean_s"])  # no prompts born there
    assert frame.loc["network", "p95_s"] == res.quantile(0.95)
    assert "mean" in str(res) and "LatencyResult(method='estimate'" in repr(res)
    with pytest.raises(AttributeError):
        res.mean_s = 1.0


def test_quantiles_increase():
    res = latency(MoANetwork(n=4, M=2, k=2, arrival_rate=0.1))
    qs = res.quantile(np.linspace(0.01, 0.999, 50))
    assert np.all(np.diff(qs) > 0)


# ---- bad input ---------------------------------------------------------------------------------
def test_unstable_network_names_the_devices():
    net = MoANetwork(n=3, M=1, k=1, arrival_rate=[0.1, 0.1, 0.1], service_time=[1.0, 1.0, 4.0])
    with pytest.raises(ValueError, match=r"device\(s\) \[2\] have load >= 1.*scale the arrival"):
        latency(net)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"method": "exact"}, "method=exact: unknown method"),
        ({"service": "weibull"}, "service=weibull: unknown service law"),
        ({"service": "gamma", "scv": 0.0}, "scv=0.0: must be finite and > 0"),
        ({"service": "gamma", "scv": float("nan")}, "scv=nan"),
        ({"grid_points": 10}, "grid_points=10: must be >= 64"),
        ({"grid_points": 100.0}, "grid_points=100.0: must be an integer"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        latency(MoANetwork(n=2, arrival_rate=0.1), **kwargs)


@pytest.mark.parametrize("q", [0.0, 1.0, -0.5, 2.0, float("nan")])
def test_bad_quantile(q):
    with pytest.raises(ValueError, match="q=.*must lie in \\(0, 1\\)"):
        latency(MoANetwork(n=2, arrival_rate=0.1)).quantile(q)


def test_not_a_network_and_no_traffic():
    with pytest.raises(ValueError, match="net=.*is not a MoANetwork"):
        latency("paper")
    with pytest.raises(ValueError, match="arrival_rate=.*no prompt is born"):
        latency(MoANetwork(n=2, arrival_rate=0.0))


# ---- the committed validation table -----------------------------------------------------------
BORDERLINE_MEANS = {"complete n=8 M=3 k=1 gamma scv=2@0.7"}
"""Networks whose estimate's mean sits at its floor (held out; docs/latency.md says why):
+10.4% and +9.7% on two independent simulations of the table, CI 1.8% and 1.5%, so either
side of 10% is a fair draw."""


@pytest.fixture(scope="module")
def table():
    return pd.read_csv(lv.TABLE)


def test_table_covers_the_required_ranges(table):
    assert len(table) >= 60
    assert table["n"].min() == 2 and table["n"].max() == 32
    assert set(table["M"]) == {0, 1, 2, 3} and {1, 2, 3} <= set(table["k"])
    assert {"complete", "ring", "star", "random-regular"} == set(table["topology"])
    assert table["held_out"].sum() >= 8
    assert {"uniform", "optimised"} == set(table["selection"])
    assert {"equal", "device", "type"} == set(table["means"])
    assert table["max_load"].min() == pytest.approx(0.3) and table["max_load"].max() == 0.95
    assert list(table["name"]) == [c.name for c in lv.validation_networks()]


def test_table_estimate_floors(table):
    """Estimate mean within 10% or within the simulation CI (max load <= 0.9) except the
    documented miss; p95 and p99 within 20%."""
    rows = table[table["max_load"] <= 0.9 + 1e-12]
    close = (rows["estimate_mean_rel_err"].abs() <= 0.10) | (
        (rows["estimate_mean_s"] - rows["sim_mean_s"]).abs() <= rows["sim_ci_s"]
    )
    assert set(rows.loc[~close, "name"]) <= BORDERLINE_MEANS
    assert (rows["estimate_p95_rel_err"].abs() <= 0.20).all()
    assert (rows["estimate_p99_rel_err"].abs() <= 0.20).all()


def test_table_bound_is_no_bound_across_stages(table):
    """The 'bound' ignores the cross-stage correlation, so it falls below the simulated mean
    on networks with M >= 1 (docs/latency.md); never on M = 0, and by about 21% at most
    (-20.6% and -21.2% on two independent simulations of the table)."""
    below = table["bound_mean_s"] < table["sim_mean_s"] - table["sim_ci_s"]
    assert not below[table["M"] == 0].any()
    assert table["bound_mean_rel_err"].min() > -0.23


def test_table_matches_the_analytics_of_this_code(table):
    """The committed analytic columns are what the code computes now (a few rows)."""
    cases = lv.validation_networks()
    for i in (0, 28, 45, 60):
        case = cases[i]
        res = latency(case.net, method="estimate", service=case.service, scv=case.scv)
        # An optimised selection is one of many tied optima of the capacity LP: which one the
        # interior-point solver returns moves with the LP's scaling, and the latency with it
        # (4e-4 on case 28's p95, far inside the simulation's 2% CI).
        rel = 1e-5 if case.net.selection is None else 1e-3
        assert table.loc[i, "estimate_mean_s"] == pytest.approx(res.mean_s, rel=rel)
        assert table.loc[i, "estimate_p95_s"] == pytest.approx(res.quantile(0.95), rel=rel)


@pytest.mark.slow
def test_table_simulations_reproduce(tmp_path, table):
    """Re-simulating a few cases with their seeds gives the committed numbers again."""
    for record in lv.simulate_cases(tmp_path, indices=[1, 29, 47]):
        row = table.loc[record["index"]]
        assert record["sim_mean_s"] == pytest.approx(row["sim_mean_s"], rel=1e-5)
        assert record["sim_p95_s"] == pytest.approx(row["sim_p95_s"], rel=1e-5)
