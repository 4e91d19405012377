"""The latency model's city-scale paths against its general ones: the common-neighbour overlap
kernel, the vectorised grouping of origins, and the hashed unique rows."""

from __future__ import annotations

import numpy as np
import pytest

from moa_stability import MoANetwork, latency, random_regular_graph
from moa_stability.analysis import latency as lat
from moa_stability.model.loads import job_rates


def _network(seed: int, n: int = 40, degree: int = 4, k=(2, 1), speeds=(0.5, 1.0, 1.5)):
    rng = np.random.default_rng(seed)
    # Few speeds and rates: few device classes, so origins really share joins.
    return MoANetwork(
        n=n,
        M=len(k),
        k=list(k),
        arrival_rate=rng.choice([0.01, 0.02], n) if len(speeds) > 2 else 0.01,
        service_time=rng.choice(speeds, n),
        topology=random_regular_graph(n, degree, seed=seed),
    )


@pytest.mark.parametrize("seed", range(4))
def test_uniform_overlap_kernel_equals_the_sparse_matrix_formula(seed: int) -> None:
    net = _network(seed, n=30 + seed, degree=4 + seed % 2 * 2, k=(3, 0, 2))
    explicit = net.replace(selection=[net.inclusion(m) for m in range(net.M)])
    rates = job_rates(net)
    np.testing.assert_allclose(
        lat._overlaps(net, rates), lat._overlaps(explicit, rates), rtol=1e-13, atol=1e-15
    )


@pytest.mark.parametrize("speeds", [(0.5, 1.0, 1.5), (0.5, 1.5)])  # table / class counts
@pytest.mark.parametrize("method", ["estimate", "bound"])
def test_vectorised_grouping_equals_the_per_device_loop(monkeypatch, method, speeds) -> None:
    net = _network(5, speeds=speeds)
    fast = latency(net, method=method)
    monkeypatch.setattr(lat, "_uniform_signatures", lambda *args: None)
    slow = latency(net, method=method)
    assert fast.mean_s == pytest.approx(slow.mean_s, rel=1e-13)
    np.testing.assert_allclose(fast.cdf, slow.cdf, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(fast.origin_mean_s, slow.origin_mean_s, rtol=1e-13)


@pytest.mark.parametrize("first_seen", [False, True])
def test_unique_rows_matches_numpy(first_seen: bool) -> None:
    rng = np.random.default_rng(0)
    rows = rng.integers(0, 3, (500, 4)).astype(np.int64)
    uniq, group = lat._unique_rows(rows, first_seen=first_seen)
    np.testing.assert_array_equal(uniq[group], rows)
    ref = np.unique(rows, axis=0)
    if first_seen:
        first = [int(np.flatnonzero(group == g)[0]) for g in range(len(uniq))]
        assert first == sorted(first)
        assert sorted(map(tuple, uniq)) == sorted(map(tuple, ref))
    else:
        np.testing.assert_array_equal(uniq, ref)
    floats = rng.choice([0.1, 0.25, 3.0], (300, 6))
    uniq, group = lat._unique_rows(floats)
    np.testing.assert_array_equal(uniq, np.unique(floats, axis=0))
    np.testing.assert_array_equal(uniq[group], floats)
