"""The latency model's fast paths against its general ones and against independent numerics:
the scalar path of homogeneous complete networks, the compiled digamma/trigamma and
Nelson-Tantawi exponent, the closed-form exponential grid law, the cross-stage kernel and the
sojourn transforms that one-job stages reuse."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import optimize, special

from moa_stability import MoANetwork, latency, paper_network
from moa_stability.analysis import latency as lat
from moa_stability.model.loads import job_rates

SERVICES = [("exponential", 1.0), ("deterministic", 0.0), ("gamma", 0.5), ("lognormal", 1.5)]


def _general(net, **kw):
    """``latency`` with the homogeneous scalar path switched off."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(lat, "_homogeneous_complete", lambda *args: None)
        return latency(net, **kw)


def _assert_same(fast, general, rtol=1e-9):
    assert fast.grid_step_s == pytest.approx(general.grid_step_s, rel=1e-12)
    assert fast.mean_s == pytest.approx(general.mean_s, rel=rtol)
    np.testing.assert_allclose(fast.origin_mean_s, general.origin_mean_s, rtol=rtol)
    np.testing.assert_allclose(fast.origin_quantiles_s, general.origin_quantiles_s, rtol=rtol)
    np.testing.assert_allclose(fast.loads, general.loads, rtol=1e-12)
    np.testing.assert_allclose(fast.cdf, general.cdf, rtol=0, atol=1e-10)


@settings(max_examples=25)
@given(
    n=st.integers(3, 9),
    layers=st.lists(st.integers(0, 3), min_size=0, max_size=3),
    per_type=st.booleans(),
    service=st.sampled_from(SERVICES),
    load=st.floats(0.1, 0.95),
    method=st.sampled_from(["estimate", "bound"]),
)
def test_homogeneous_path_equals_the_general_path(n, layers, per_type, service, load, method):
    """Random homogeneous networks on the complete graph (per-type means or one mean, k_m
    from 0 to n - 1, every service law): the scalar path gives the general path's numbers."""
    ks = [min(km, n - 1) for km in layers]
    means = np.array([[1.0], [1.7], [2.3]]) if per_type else 1.0
    net = MoANetwork(
        n=n, M=len(ks), k=ks, arrival_rate=0.1, service_time=np.broadcast_to(means, (3, n))
    ).at_load(load)
    assert lat._homogeneous_complete(net, method, service[0], service[1], None) is not None
    kw = dict(method=method, service=service[0], scv=service[1])
    _assert_same(latency(net, **kw), _general(net, **kw))


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(3, 50),
    layers=st.lists(st.integers(0, 4), min_size=0, max_size=3),
    means=st.lists(st.floats(0.2, 5.0), min_size=3, max_size=3),
    per_type=st.booleans(),
    service=st.sampled_from(SERVICES),
    load=st.floats(0.05, 0.97),
    method=st.sampled_from(["estimate", "bound"]),
)
def test_random_homogeneous_networks_equal_the_general_path(
    n, layers, means, per_type, service, load, method
):
    """Hypothesis-drawn homogeneous complete networks (n 3..50, M 0..3, k per layer, loads
    0.05..0.97, random per-type or common means, every service law): the compiled scalar
    path gives the general path's mean, quantiles and law."""
    ks = [min(km, n - 1) for km in layers]
    type_means = np.array(means if per_type else [means[0]] * 3)[:, None]
    net = MoANetwork(
        n=n,
        M=len(ks),
        k=ks,
        arrival_rate=0.1,
        service_time=np.broadcast_to(type_means, (3, n)),
    ).at_load(load)
    kw = dict(method=method, service=service[0], scv=service[1])
    _assert_same(latency(net, **kw), _general(net, **kw))


def test_exponential_transforms_in_closed_form_equal_the_fft():
    """The DFT of the exponential grid law as a finite geometric sum, and the grid M/M/1
    sojourn (geometric pmf and its transform), against numpy's FFT of the same steps."""
    for L in (64, 1000, 4096):
        omc, sine = lat._twiddles(L)
        k = np.arange(L // 2 + 1)
        np.testing.assert_allclose(omc, 1 - np.cos(2 * np.pi * k / L), rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(sine, np.sin(2 * np.pi * k / L), rtol=0, atol=1e-15)
        for s, rho, h in [(1.0, 0.5, 0.03), (2.0, 0.97, 0.5), (0.3, 0.05, 1e-3), (1.0, 0.9, 3.0)]:
            rows = lat._exponential_rows(np.array([s, 2 * s]), h, np.empty((2, L)))
            fft = np.fft.rfft(rows, axis=1)
            job, be = lat._exponential_hats(
                np.array([s, 2 * s]), np.array([0.25, 0.75]), h, L, omc, sine
            )
            np.testing.assert_allclose(job, fft, rtol=0, atol=1e-13)
            np.testing.assert_allclose(be, 0.25 * fft[0] + 0.75 * fft[1], rtol=0, atol=1e-13)
            pk = (1 - rho) * fft[0] / (1 - rho * fft[0])  # Pollaczek-Khinchine on the grid
            hat, pmf = lat._geometric_sojourn(s, rho, h, L, omc, sine)
            np.testing.assert_allclose(hat[0], pk, rtol=0, atol=1e-13)
            np.testing.assert_allclose(pmf[0], np.fft.irfft(pk, L), rtol=0, atol=1e-15)


def test_geometric_cdf_in_closed_form_equals_the_running_sum():
    """The grid M/M/1 sojourn's CDF in closed form (``cumulative``) against the capped running
    maximum of the cumulative sum of its pmf, monotone; and where ``1 - R`` is too small for
    the closed form (a step of 1e-12 mean service times), the running sum itself."""
    for L in (64, 1000, 4096):
        omc, sine = lat._twiddles(L)
        for s, rho, h in [(1.0, 0.5, 0.03), (2.0, 0.97, 0.5), (0.3, 0.05, 1e-3), (1.0, 0.5, 1e-12)]:
            _, pmf = lat._geometric_sojourn(s, rho, h, L, omc, sine)
            hat, cdf = lat._geometric_sojourn(s, rho, h, L, omc, sine, True)
            running = np.minimum(np.maximum.accumulate(np.cumsum(pmf[0])), 1.0)
            np.testing.assert_allclose(cdf[0], running, rtol=0, atol=4e-15)
            assert np.all(np.diff(cdf[0]) >= 0) and cdf[0, -1] <= 1.0


def test_compiled_power_matches_numpy():
    """The compiled path's vectorised ``F ** a`` against ``np.power`` on a CDF row with an
    exact 0, a subnormal, values whose power underflows, and a tail of exact 1s; exponents
    1..40, integral ones (the bound's) by squaring up to 16; within (a + |a log F|) 4e-16
    relative, 1 exactly, and nothing written beyond ``count``."""
    rng = np.random.default_rng(11)
    F = np.sort(rng.random(3000)) ** 0.3
    F[:3] = 0.0, 1e-310, 1e-200
    F[-500:] = 1.0
    count = F.size - 200
    out, work = np.empty(F.size), np.empty(F.size)
    for a in (1.0, 1.37, 2.0, 2.3, 3.0, 7.5, 11.0, 16.0, 40.0):
        out[:] = -1.0
        lat._power(F, a, count, out, work)
        expected = np.power(F[:count], a)
        with np.errstate(divide="ignore"):
            y = np.abs(a * np.log(F[:count]))
        y[~np.isfinite(y)] = 0.0
        assert np.all(np.abs(out[:count] - expected) <= 4e-16 * (a + y) * expected)
        assert np.all(out[count - 300 : count] == 1.0) and np.all(out[count:] == -1.0)


def test_compiled_power_near_one_matches_numpy():
    """The series path of ``F ** a`` near ``F = 1`` (``1 - F`` below ``min(2^-10, 2^-8/a)``)
    against ``np.power``: dense points on both sides of the split, the split value itself and
    its neighbours, and exact 1s, within 4e-16 relative (numpy's power is within half an ulp;
    the series' truncation is below 1e-17); a row that is not monotone (a dip below the split
    after it) is still right at every point."""
    rng = np.random.default_rng(17)
    for a in (1.37, 2.3, 2.6566, 7.5, 40.0, 300.5):
        t = min(2.0**-10, 2.0**-8 / a)
        x = rng.uniform(0.0, 3.0 * t, 5000)
        x = np.concatenate([x, [t, np.nextafter(t, 0.0), np.nextafter(t, 1.0), 0.0, 0.0]])
        F = np.sort(1.0 - x)
        gap = 1.0 - F
        near = gap < t
        assert 0.2 < near.mean() < 0.5  # both paths are exercised
        out, work = np.empty(F.size), np.empty(F.size)
        lat._power(F, a, F.size, out, work)
        expected = np.power(F, a)
        assert np.all(np.abs(out - expected) <= 4e-16 * expected)
        assert np.all(out[F == 1.0] == 1.0)
        dipped = F.copy()
        dipped[-10] = 0.5
        lat._power(dipped, a, F.size, out, work)
        assert np.all(np.abs(out - np.power(dipped, a)) <= 4e-16 * (1.0 + a) * np.power(dipped, a))


def test_running_cdf_in_quarters_equals_one_running_sum():
    """The CDF summed in four quarters at once against the running maximum of numpy's
    cumulative sum, capped at 1: pmfs with FFT-like negative dents and mass above 1, sizes
    that are not multiples of 4 and below 4; in place too."""
    rng = np.random.default_rng(3)
    for L in (1, 2, 3, 5, 64, 1001, 4096, 4099):
        pmf = rng.random(L)
        pmf *= (1 + 1e-14) / pmf.sum()
        pmf[rng.random(L) < 0.3] = -1e-16
        expected = np.minimum(np.maximum.accumulate(np.maximum(np.cumsum(pmf), 0.0)), 1.0)
        out = lat._running_cdf(pmf, np.empty(L))
        np.testing.assert_allclose(out, expected, rtol=0, atol=1e-13)  # (sums reassociated)
        assert np.all(np.diff(out) >= 0) and out.max() <= 1.0 and out.min() >= 0.0
        np.testing.assert_array_equal(lat._running_cdf(pmf.copy(), pmf), out)


def test_interp_at_mids_matches_np_interp():
    """The cell-driven merge against np.interp at x = j + 1/2: ties in xp, points below the
    first and beyond the last, a point exactly at the last."""
    rng = np.random.default_rng(5)
    L = 300
    xp = np.sort(rng.uniform(3.0, 180.0, 120))
    xp[40:44] = xp[40]  # ties: np.interp takes the last xp[j] <= x
    xp[-1] = 180.5  # exactly at a mid point
    fp = np.sort(rng.random(120))
    out = np.empty(L)
    lat._interp_sorted(xp, fp, -1.0, 2.0, out)
    np.testing.assert_allclose(out, np.interp(np.arange(L) + 0.5, xp, fp, -1.0, 2.0), rtol=1e-13)


def test_quantile_checks_and_shapes():
    """Scalars give floats, arrays keep their shape; an empty array, a probability outside
    (0, 1) and one beyond the grid's last CDF value are refused."""
    result = latency(paper_network(arrival_rate=1.0).at_load(0.6))
    assert isinstance(result.quantile(0.5), float)
    grid = np.array([[0.5, 0.95], [0.99, 0.2]])
    got = result.quantile(grid)
    assert got.shape == (2, 2)
    np.testing.assert_allclose(got.ravel(), [result.quantile(p) for p in grid.ravel()])
    with pytest.raises(ValueError, match="q=.*must lie in"):
        result.quantile(np.array([]))
    with pytest.raises(ValueError, match="q=.*must lie in"):
        result.quantile([0.5, 1.5])
    last = result.cdf[-1]
    beyond = np.nextafter(last, 1.0)
    if beyond < 1.0:
        with pytest.raises(ValueError, match="beyond the grid"):
            result.quantile(beyond)


def test_homogeneous_path_only_takes_homogeneous_complete_uniform_networks():
    """Any device unlike the others, a sparse graph, a given selection, n < 3 or no prompts
    send a network to the general path."""
    base = paper_network(arrival_rate=0.05)
    others = [
        base.replace(arrival_rate=[0.05, 0.05, 0.05, 0.04]),
        base.replace(service_time=[1.0, 1.0, 1.0, 1.1]),
        base.replace(topology="ring"),
        base.replace(selection=[base.inclusion(m) for m in range(base.M)]),
        MoANetwork(n=2, M=1, k=1, arrival_rate=0.1),
        base.replace(arrival_rate=0.0),
    ]
    assert lat._homogeneous_complete(base, "estimate", "exponential", 1.0, None) is not None
    for net in others:
        assert lat._homogeneous_complete(net, "estimate", "exponential", 1.0, None) is None


def test_homogeneous_path_keeps_errors_and_grid():
    """An overloaded network raises the general path's error; ``grid_points`` is honoured."""
    net = paper_network(arrival_rate=1.0).at_load(0.7)
    with pytest.raises(ValueError, match="loads=.*have load >= 1"):
        latency(net.at_load(1.2))
    fast, general = latency(net, grid_points=1000), _general(net, grid_points=1000)
    assert fast.cdf.size == 1000
    _assert_same(fast, general)


def test_paper_sweep_equals_the_general_path():
    """The benchmark's sweep (paper network, loads 0.1..0.95), both methods."""
    base = paper_network(arrival_rate=1.0)
    for load in np.linspace(0.1, 0.95, 7):
        for method in ("estimate", "bound"):
            net = base.at_load(load)
            _assert_same(latency(net, method=method), _general(net, method=method))


def test_harmonic_matches_scipy():
    """H(a) = psi(a + 1) + gamma and H'(a) = psi'(a + 1), compiled, against scipy."""
    for a in np.concatenate([np.linspace(0.5, 60.0, 400), [1.0, 2.0, 3.0, 1e3, 1e7]]):
        value, slope = lat._harmonic(a)
        assert value == pytest.approx(special.psi(a + 1) + np.euler_gamma, rel=1e-14)
        assert slope == pytest.approx(special.zeta(2.0, a + 1), rel=1e-14)


def test_effective_siblings_solves_nelson_tantawi():
    """a = K - q (K - a_FJ) with H(a_FJ) = T_K(rho), a_FJ found by bracketing with scipy."""
    rng = np.random.default_rng(3)
    for K in (2, 3, 4, 7):
        rho, q = rng.uniform(0.01, 0.99, 20), rng.uniform(0, 1, 20)
        got = lat._effective_siblings(K, rho, q)
        HK = special.psi(K + 1) + np.euler_gamma
        for r, w, a in zip(rho, q, got, strict=True):
            target = (HK / 1.5 + 4 / 11 * (1 - HK / 1.5) * r) * (12 - r) / 8
            root = optimize.brentq(
                lambda x, t=target: special.psi(x + 1) + np.euler_gamma - t, 0.5, K, xtol=1e-15
            )
            assert a == pytest.approx(K - w * (K - root), rel=1e-12)


def test_exponential_grid_law_is_the_dispersal_of_its_limited_mean():
    """The closed form against mass dispersal of E[min(S, x)] = s (1 - exp(-x/s))."""
    h, L = 0.37, 3000  # range 1110 s: the mass beyond it is exp(-85) of the largest mean
    means = np.array([0.05, 1.0, 13.0])
    got = lat._exponential_rows(means, h, np.empty((3, L)))
    x = np.maximum(h * np.arange(-1, L + 1), 0.0)
    expected = lat._disperse(-means[:, None] * np.expm1(-x / means[:, None]), h)
    # (the dispersal differences cancel to ~1e-14 absolute; the closed form does not)
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-13)
    np.testing.assert_allclose(got @ (h * np.arange(L)), means, rtol=1e-9)  # mean kept


def _cross_stage_reference(cdf, stages, rho, M, scv):
    """The estimate's cross-stage correction with np.interp (one origin group): the stage
    quantile functions at the L // 2 probabilities u = (i + 1/2)/(L // 2)."""
    L = cdf.size
    mid = np.arange(L) + 0.5
    u = (np.arange(L // 2) + 0.5) / (L // 2)
    damp = 2 / (1 + scv)
    total = sum(np.interp(u, np.maximum.accumulate(c), mid, mid[0], mid[-1]) for c in stages)
    como = np.interp(mid, total, u, 0.0, 1.0)
    w = min(lat.CROSS_STAGE_SPREAD * damp * rho, 1.0)
    mixed = (1 - w) * cdf + w * como
    stretch = 1 + lat.CROSS_STAGE_MEAN * damp * M * rho**2
    return np.interp(mid / stretch, mid, mixed, 0.0, mixed[-1]), stretch


def test_cross_stage_kernel_matches_np_interp():
    """Random stage laws (with an ulp dent, twin stages, one origin group per row)."""
    rng = np.random.default_rng(11)
    L = 257
    laws = np.cumsum(rng.exponential(1.0, (5, L)) * (rng.random((5, L)) < 0.6), axis=1)
    laws /= laws[:, -1:] * (1 + 1e-6)
    laws[2, 40] = laws[2, 39] - 1e-17  # a dent the running maximum removes
    stage_of = np.array([[0, 0, 2], [1, 1, 3], [4, 4, 2]])
    stages = [laws, laws, laws]  # stages 0 and 1 are twins (the same table and rows)
    cdf = np.cumsum(rng.dirichlet(np.ones(L), 3), axis=1)
    rho = np.array([0.3, 0.8, 0.95])
    got, stretch = lat._cross_stage(cdf.copy(), stages, stage_of, rho, 2, 1.0)
    for g in range(3):
        expected, factor = _cross_stage_reference(
            cdf[g], [laws[stage_of[g, s]] for s in range(3)], rho[g], 2, 1.0
        )
        np.testing.assert_allclose(got[g], expected, rtol=1e-12, atol=1e-15)
        assert stretch[g] == pytest.approx(factor, rel=1e-15)


@pytest.mark.parametrize("service, scv", SERVICES)
def test_sojourn_transforms_are_those_of_the_stored_laws(service, scv):
    """A stage of one job reuses the sojourn's transform: it must be the transform of the
    stored (monotone, capped) CDF, also where the cap removed mass (lognormal)."""
    net = MoANetwork(
        n=6,
        M=2,
        k=2,
        arrival_rate=np.linspace(0.5, 1, 6),
        service_time=np.repeat([[1.0], [1.4], [2.0]], 6, axis=1),
    ).at_load(0.8)
    cls = lat._classes(net, job_rates(net), service, scv)
    L = 1024
    h = 2 * lat._range_guess(net, cls, service, scv) / L
    soj = lat._sojourn_cdfs(cls, service, scv, h, L)
    expected = np.fft.rfft(lat._pmf_rows(soj.cdf), axis=1)
    np.testing.assert_allclose(soj.hat, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("method", ["estimate", "bound"])
def test_prompt_laws_in_blocks_equal_one_block(monkeypatch, method):
    """The origin groups' prompt laws are computed in blocks: blocks of 3 groups give the
    numbers of one block (heterogeneous ring: 20 groups)."""
    net = MoANetwork(
        n=20,
        M=2,
        k=2,
        arrival_rate=np.linspace(0.2, 1.0, 20),
        service_time=np.linspace(0.5, 2.0, 20),
        topology="ring",
    ).at_load(0.8)
    whole = latency(net, method=method, grid_points=1024)
    monkeypatch.setattr(lat, "_BLOCK_POINTS", 3 * 1024)
    blocks = latency(net, method=method, grid_points=1024)
    assert blocks.mean_s == pytest.approx(whole.mean_s, rel=1e-14)
    np.testing.assert_allclose(blocks.origin_quantiles_s, whole.origin_quantiles_s, rtol=1e-14)
    np.testing.assert_allclose(blocks.cdf, whole.cdf, rtol=0, atol=1e-14)


def test_neighbour_groups_of_one_law_are_the_degrees():
    """With one law for every device, two devices share a join group exactly when their key
    and their degree agree (a star plus a ring: degrees 1..n-1)."""
    graph = nx.compose(nx.star_graph(9), nx.cycle_graph(range(3, 12)))
    adj = nx.to_scipy_sparse_array(graph, format="csr", dtype=float)
    n = adj.shape[0]
    key = np.column_stack([np.zeros(n), np.arange(n) % 2])
    first, group = lat._neighbour_groups(adj, np.zeros(n, np.int64), list(key.T))
    degree = np.diff(adj.indptr)
    signature = [(tuple(key[j]), degree[j]) for j in range(n)]
    for a in range(n):
        for b in range(n):
            assert (group[a] == group[b]) == (signature[a] == signature[b])
    assert np.array_equal(group[first], np.arange(first.size))


def test_quantile_function_matches_np_interp():
    """The cell-driven quantile function against ``np.interp(u, C, mid, mid[0], mid[-1])``
    with ``C`` the running maximum of the row: dents, flat runs, mass below the first ``u`` and
    beyond the last; at the uniform ``u = (i + 1/2)/L`` and at random ascending ``u``."""
    rng = np.random.default_rng(23)
    n, L = 700, 512
    row = np.cumsum(rng.exponential(size=n) * (rng.random(n) < 0.7))
    row = 0.001 + 0.998 * row / row[-1]
    row[100:103] -= 1e-16  # an FFT-like dent
    C = np.maximum.accumulate(row)
    mid = np.arange(n) + 0.5
    for u in ((np.arange(L) + 0.5) / L, np.sort(rng.random(L))):
        total = np.ones(L)
        lat._add_quantile_function(row, u, 2.0, total)
        expected = 1.0 + 2.0 * np.interp(u, C, mid, mid[0], mid[-1])
        np.testing.assert_allclose(total, expected, rtol=1e-12, atol=0)
