"""Direct tests of the simulator's compiled building blocks (moa_stability.simulation.kernels).

A fault in the generator, a sampler or the event tree fails a test named after it here, not
only somewhere downstream in a queueing statistic. Reference values come from the published
algorithms (xoshiro256+ on plain Python ints) or from exact laws; sampled statistics are
compared with binomial/normal/chi-square bounds at fixed seeds.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from numba import njit
from scipy import stats

from moa_stability.simulation import kernels as kern

MASK = (1 << 64) - 1
Z = 4.5  # normal quantile of a two-sided bound a correct sampler breaks with prob. ~7e-6


def _state(seed: int) -> np.ndarray:
    return np.random.SeedSequence(seed).generate_state(4, np.uint64)


def _xoshiro256plus(s: list[int]) -> int:
    """One step of xoshiro256+ (Blackman & Vigna, xoshiro256plus.c), on Python ints."""
    result = (s[0] + s[3]) & MASK
    t = (s[1] << 17) & MASK
    s[2] ^= s[0]
    s[3] ^= s[1]
    s[1] ^= s[2]
    s[0] ^= s[3]
    s[2] ^= t
    s[3] = ((s[3] << 45) | (s[3] >> 19)) & MASK
    return result


@pytest.mark.parametrize(
    "seed_state",
    [[1, 2, 3, 4], [MASK, 0x9E3779B97F4A7C15, 0, 0xDEADBEEF12345678]],
)
def test_xoshiro256plus_matches_reference_sequence(seed_state):
    rng = np.array(seed_state, dtype=np.uint64)
    ref = list(seed_state)
    for _ in range(1000):
        expected = (_xoshiro256plus(ref) >> 11) * 2.0**-53
        assert kern.uniform(rng) == expected
    assert [int(x) for x in rng] == ref


def test_uniform_is_in_unit_interval_with_uniform_deciles():
    rng = _state(1)
    u = np.array([kern.uniform(rng) for _ in range(20_000)])
    assert u.min() >= 0.0 and u.max() < 1.0
    counts = np.bincount((u * 10).astype(int), minlength=10)
    assert stats.chisquare(counts).pvalue > 1e-4


def _mean_var_within(x: np.ndarray, mean: float, var: float, kurtosis: float) -> None:
    """Sample mean and variance within Z standard errors of the exact ones (``kurtosis`` is
    E[(X - mu)^4] / var^2, which sets the variance of the sample variance)."""
    n = x.size
    assert abs(x.mean() - mean) <= Z * math.sqrt(var / n)
    assert abs(x.var(ddof=1) - var) <= Z * var * math.sqrt((kurtosis - 1) / n)


@pytest.mark.parametrize(("shape", "scale"), [(0.4, 2.0), (1.0, 1.0), (3.5, 0.5)])
def test_gamma_sampler_first_two_moments(shape, scale):
    rng = _state(2)
    x = np.array([kern.gamma(rng, shape, scale) for _ in range(40_000)])
    assert x.min() > 0
    # Gamma(a, s): mean a s, variance a s^2, kurtosis 3 + 6/a.
    _mean_var_within(x, shape * scale, shape * scale**2, 3 + 6 / shape)


def test_standard_normal_first_two_moments():
    rng = _state(3)
    x = np.array([kern.standard_normal(rng) for _ in range(40_000)])
    _mean_var_within(x, 0.0, 1.0, 3.0)


@pytest.mark.parametrize(
    ("dist", "scv"), [(kern.GAMMA, 0.3), (kern.GAMMA, 2.0), (kern.LOGNORMAL, 0.25)]
)
def test_draw_service_has_requested_mean_and_scv(dist, scv):
    rng, mean = _state(4), 3.0
    empty = np.ones(1)
    x = np.array(
        [kern.draw_service(rng, mean, dist, scv, False, empty, 0, 1) for _ in range(40_000)]
    )
    if dist == kern.GAMMA:
        kurtosis = 3 + 6 * scv
    else:  # lognormal with w = 1 + scv: kurtosis w^4 + 2 w^3 + 3 w^2 - 3
        w = 1 + scv
        kurtosis = w**4 + 2 * w**3 + 3 * w**2 - 3
    _mean_var_within(x, mean, scv * mean**2, kurtosis)


def test_empirical_service_resamples_its_own_slice():
    rng = _state(5)
    samples = np.array([9.0, 0.5, 1.5, 9.0])  # the type's slice is [1, 3)
    x = np.array(
        [
            kern.draw_service(rng, 2.0, kern.EMPIRICAL, 1.0, False, samples, 1, 3)
            for _ in range(4000)
        ]
    )
    assert set(np.unique(x)) == {1.0, 3.0}
    hits = int((x == 1.0).sum())
    assert abs(hits - 2000) <= Z * math.sqrt(4000 * 0.25)


def test_exponential_draw_mean_and_tail():
    rng, scale = _state(6), 2.5
    x = np.array([kern.memoryless(rng, scale, False) for _ in range(40_000)])
    _mean_var_within(x, scale, scale**2, 9.0)
    tail = int((x > 2 * scale).sum())  # P(X > 2 scale) = e^-2
    p = math.exp(-2)
    assert abs(tail - x.size * p) <= Z * math.sqrt(x.size * p * (1 - p))


@pytest.mark.parametrize("q", [0.05, 0.3, 0.9])
def test_geometric_draw_matches_pmf(q):
    rng = _state(7)
    scale = -1.0 / math.log1p(-q)  # the kernels' parameter for success probability q
    x = np.array([kern.memoryless(rng, scale, True) for _ in range(30_000)])
    assert x.min() >= 1 and np.all(x == np.floor(x))
    # P(D = d) = (1-q)^(d-1) q for d = 1..K-1, the rest lumped into the last cell.
    top = int(np.searchsorted(np.cumsum(q * (1 - q) ** np.arange(60)), 0.99)) + 1
    d = np.arange(1, top)
    probs = np.append(q * (1 - q) ** (d - 1), (1 - q) ** (top - 1))
    counts = np.bincount(np.minimum(x.astype(int), top) - 1, minlength=top)
    assert stats.chisquare(counts, probs * x.size).pvalue > 1e-4


def test_geometric_draw_with_certain_success_takes_one_slot():
    rng = _state(8)
    assert all(kern.memoryless(rng, 0.0, True) == 1.0 for _ in range(100))


def test_draw_gap_without_arrivals_is_infinite():
    assert kern.draw_gap(_state(9), np.inf, True) == np.inf
    assert kern.draw_gap(_state(9), np.inf, False) == np.inf


def test_slot_count_rounds_stochastically_preserving_the_mean():
    rng = _state(10)
    x = np.array([kern.slot_count(rng, 2.3) for _ in range(20_000)])
    assert set(np.unique(x)) == {2.0, 3.0}
    up = int((x == 3.0).sum())
    assert abs(up - 0.3 * x.size) <= Z * math.sqrt(x.size * 0.3 * 0.7)
    assert kern.slot_count(rng, 0.2) == 1.0  # never below one slot


@pytest.mark.parametrize("size", [1, 2, 5, 8, 13])
def test_tournament_tree_minimum_equals_np_min(size):
    gen = np.random.default_rng(size)
    times = gen.exponential(size=size)
    key, tree = kern.new_tree(times)
    assert key[tree[1]] == np.min(times) and tree[1] == np.argmin(times)
    for _ in range(500):
        s = int(gen.integers(size))
        value = np.inf if gen.random() < 0.2 else float(gen.exponential())
        kern.tree_set(key, tree, s, value)
        times[s] = value
        assert key[tree[1]] == np.min(times)
        assert tree[1] < size or np.all(np.isinf(times))


def test_tournament_tree_returns_leftmost_of_ties_at_build():
    key, tree = kern.new_tree(np.array([3.0, 1.0, 1.0, 2.0, 1.0]))
    assert tree[1] == 1


@njit
def _deferred_sums(flat, cells, values, drain_every):
    """Add ``values`` into ``flat[cells]`` through the event loop's ring (``kern._defer``),
    draining it every ``drain_every`` additions and at the end; prefetches on the way."""
    ring_cell, ring_add, k = np.zeros(kern.DEFER, np.int64), np.zeros(kern.DEFER), 0
    for r in range(cells.shape[0]):
        kern.prefetch(flat, (cells[r],))
        k = kern._defer(flat, ring_cell, ring_add, k, cells[r], values[r])
        if (r + 1) % drain_every == 0:
            k = kern._drain(flat, ring_cell, ring_add, k)
    kern._drain(flat, ring_cell, ring_add, k)


@pytest.mark.parametrize("drain_every", [1, 7, kern.DEFER, 1000, 10**9])
def test_deferred_additions_equal_direct_ones_bit_for_bit(drain_every):
    gen = np.random.default_rng(drain_every % 97)
    cells = gen.integers(0, 50, 3000)  # many repeats: the order per cell matters in floats
    values = gen.normal(size=3000) * 10.0 ** gen.integers(-8, 8, 3000)
    direct = np.zeros(50)
    for c, v in zip(cells.tolist(), values.tolist(), strict=True):  # Python floats, in order
        direct[c] += v
    deferred = np.zeros(50)
    _deferred_sums(deferred, cells, values, drain_every)
    assert np.array_equal(deferred.view(np.int64), direct.view(np.int64))


@pytest.mark.parametrize("k", [1, 2, 3])
def test_uniform_subsets_are_equally_likely(k):
    rng, lo, hi, draws = _state(11), 2, 7, 30_000
    positions = np.arange(9)
    perm = np.stack([positions, positions])  # row 1 is drawn from; row 0 must stay untouched
    chosen = np.empty(k + 1, np.int64)
    subsets = {s: 0 for s in itertools.combinations(range(lo, hi), k)}
    for _ in range(draws):
        assert kern.uniform_subset(rng, perm, 1, lo, hi, k, chosen) == k
        subsets[tuple(sorted(chosen[1:]))] += 1
    assert np.array_equal(perm[0], positions)
    assert np.array_equal(np.sort(perm[1]), positions)
    assert np.array_equal(perm[1, :lo], positions[:lo])
    assert np.array_equal(perm[1, hi:], positions[hi:])
    assert stats.chisquare(list(subsets.values())).pvalue > 1e-4


def test_systematic_sampling_inclusion_frequencies_match_pi():
    rng, k, draws = _state(12), 2, 40_000
    pi = np.array([0.3, 1.0, 0.0, 0.25, 0.45])  # sums to k, with a certain and an impossible one
    lo = 3  # the row's positions sit after another row's
    cum = np.zeros((2, lo + pi.size))
    cum[1, lo:] = np.cumsum(pi)
    chosen = np.empty(k + 1, np.int64)
    counts = np.zeros(pi.size, np.int64)
    for _ in range(draws):
        assert kern.systematic_subset(rng, cum, 1, lo, lo + pi.size, k, chosen) == k
        picked = chosen[1:] - lo
        assert picked.min() >= 0 and np.unique(picked).size == k
        counts[picked] += 1
    assert counts[1] == draws and counts[2] == 0
    half = Z * np.sqrt(draws * pi * (1 - pi))
    assert np.all(np.abs(counts - draws * pi) <= half)


def test_complete_graph_subsets_are_equally_likely_and_skip_the_origin():
    rng, n, home, k, draws = _state(13), 6, 2, 3, 30_000
    chosen = np.empty(k + 1, np.int64)
    others = [d for d in range(n) if d != home]
    subsets = {s: 0 for s in itertools.combinations(others, k)}
    for _ in range(draws):
        assert kern.complete_subset(rng, n, home, k, chosen) == k
        subsets[tuple(sorted(chosen[1:]))] += 1  # a KeyError if home or a repeat is drawn
    assert stats.chisquare(list(subsets.values())).pvalue > 1e-4


def test_complete_graph_subset_of_all_others():
    rng, chosen = _state(14), np.empty(5, np.int64)
    for home in range(5):
        kern.complete_subset(rng, 5, home, 4, chosen)
        assert sorted(chosen[1:]) == [d for d in range(5) if d != home]


def test_replication_runner_picks_the_copy_of_the_event_loop_a_network_needs():
    # Each copy is its own entry point so that a process compiles only the one it runs
    # (docs/simulator.md, "Scheduling disciplines"); the threshold is the accumulators' one.
    edge = kern.DEFER_FROM_CELLS
    assert kern.replication_runner(1, edge - 1) is kern.run_replications_fcfs
    assert kern.replication_runner(1, edge) is kern.run_replications_fcfs_large
    assert kern.replication_runner(2, 10) is kern.run_replications_priority
    assert kern.replication_runner(3, edge) is kern.run_replications_priority
