"""Warm-up graphs for the benchmarks: numba compiles a kernel once per argument type, and
``random_regular_graph`` gives int64 indices at n = 64 but int32 at scale, so a warm-up on a
small graph of its own dtype would leave the large graph's compilation inside the timing (on a
fresh numba cache, or after a kernel changed)."""

from __future__ import annotations

import scipy.sparse as sp

from moa_stability import random_regular_graph


def small_like(graph: sp.csr_array, degree: int, n: int = 64) -> sp.csr_array:
    """A random ``degree``-regular graph on ``n`` devices with ``graph``'s index dtypes."""
    small = random_regular_graph(n, degree, seed=1)
    return sp.csr_array(
        (
            small.data,
            small.indices.astype(graph.indices.dtype),
            small.indptr.astype(graph.indptr.dtype),
        ),
        shape=small.shape,
    )
