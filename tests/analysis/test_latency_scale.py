"""The latency model's city-scale paths against its general ones: the common-neighbour overlap
kernel and the grouping of identical rows (the vectorised joins are checked against an
independent quadrature in test_latency_vectorised.py)."""

from __future__ import annotations

import numpy as np
import pytest

from moa_stability import MoANetwork, random_regular_graph
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


def test_distinct_rows_matches_numpy() -> None:
    rng = np.random.default_rng(0)
    constant_columns = np.column_stack(
        [np.ones(400), rng.choice([0.0, 0.1, 3.0], 400), np.ones(400)]
    )
    for rows in (
        rng.integers(0, 3, (500, 4)).astype(np.int64),
        rng.choice([0.1, 3.0], (300, 6)),
        constant_columns,
        constant_columns[:, [0, 2]] + rng.integers(0, 2, (400, 1)),
    ):
        first, group = lat._distinct_rows(rows)
        _, ref_first, ref_group = np.unique(rows, axis=0, return_index=True, return_inverse=True)
        np.testing.assert_array_equal(first, ref_first)
        np.testing.assert_array_equal(group, ref_group.ravel())
    same = np.ones((7, 3))
    first, group = lat._distinct_rows(same)
    assert first.tolist() == [0] and group.tolist() == [0] * 7
