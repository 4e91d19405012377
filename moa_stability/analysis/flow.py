r"""Maximum flow with real capacities (Dinic's algorithm), for the transportation checks of
:mod:`moa_stability.analysis.capacity`.

``scipy.sparse.csgraph.maximum_flow`` takes 32-bit integer capacities only, which would round
the rates to about 1e-9 of the total and overflow at city scale; this kernel works on floats.
Dinic's algorithm alternates a breadth-first search that labels nodes with their distance from
the source in the residual graph with a blocking flow along shortest paths (current-arc
pointers make each phase :math:`O(VE)` at worst; on the bipartite transportation graphs here a
handful of phases suffice). At the end, the nodes the last search reached are the source side
of a minimum cut.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit


class Residual(NamedTuple):
    """A flow network in residual form: arcs grouped by tail node (CSR), each arc ``a`` paired
    with its reverse ``rev[a]`` (capacity 0 when added for the residual only)."""

    start: np.ndarray  # (nodes + 1,) int64: arcs of node v are start[v]..start[v+1]-1
    tail: np.ndarray  # (arcs,) int64
    head: np.ndarray  # (arcs,) int64
    rev: np.ndarray  # (arcs,) int64
    capacity: np.ndarray  # (arcs,) float64


def residual_graph(nodes: int, tail: np.ndarray, head: np.ndarray, capacity: np.ndarray):
    """The :class:`Residual` of arcs ``tail -> head``; returns it and, for each given arc, the
    position of its forward copy (to read the flow back as ``capacity - residual``)."""
    arcs = tail.size
    all_tail = np.concatenate([tail, head]).astype(np.int64)
    all_head = np.concatenate([head, tail]).astype(np.int64)
    cap = np.concatenate([capacity, np.zeros(arcs)]).astype(float)
    order = np.argsort(all_tail, kind="stable")
    where = np.empty(2 * arcs, dtype=np.int64)
    where[order] = np.arange(2 * arcs)
    twin = np.concatenate([np.arange(arcs, 2 * arcs), np.arange(arcs)])
    start = np.zeros(nodes + 1, dtype=np.int64)
    np.cumsum(np.bincount(all_tail, minlength=nodes), out=start[1:])
    graph = Residual(start, all_tail[order], all_head[order], where[twin[order]], cap[order].copy())
    return graph, where[:arcs]


@njit(cache=True)
def _dinic(start, tail, head, rev, cap, source, sink, eps):  # pragma: no cover - numba
    nodes = start.size - 1
    level = np.empty(nodes, dtype=np.int64)
    queue = np.empty(nodes, dtype=np.int64)
    current = np.empty(nodes, dtype=np.int64)
    path = np.empty(nodes, dtype=np.int64)
    total = 0.0
    while True:
        level[:] = -1
        level[source] = 0
        queue[0] = source
        qh, qt = 0, 1
        while qh < qt:
            v = queue[qh]
            qh += 1
            for a in range(start[v], start[v + 1]):
                u = head[a]
                if cap[a] > eps and level[u] < 0:
                    level[u] = level[v] + 1
                    queue[qt] = u
                    qt += 1
        if level[sink] < 0:
            return total, level >= 0
        current[:] = start[:-1]
        depth, v = 0, source
        while True:
            if v == sink:
                push = np.inf
                for d in range(depth):
                    push = min(push, cap[path[d]])
                for d in range(depth):
                    a = path[d]
                    cap[a] -= push
                    cap[rev[a]] += push
                total += push
                depth, v = 0, source
                continue
            advanced = False
            while current[v] < start[v + 1]:
                a = current[v]
                if cap[a] > eps and level[head[a]] == level[v] + 1:
                    path[depth] = a
                    depth += 1
                    v = head[a]
                    advanced = True
                    break
                current[v] += 1
            if not advanced:
                if v == source:
                    break
                # A dead end: no shortest path goes through v any more this phase.
                level[v] = -1
                depth -= 1
                v = tail[path[depth]]
                current[v] += 1


def maximum_flow(graph: Residual, source: int, sink: int) -> tuple[float, np.ndarray]:
    """Push a maximum flow from ``source`` to ``sink``, updating ``graph.capacity`` to the
    residual capacities in place.

    Residuals below ``1e-13`` times the largest capacity count as saturated (float round-off).

    Returns
    -------
    value : float
        The flow value.
    source_side : ndarray of bool
        The nodes on the source side of a minimum cut.
    """
    eps = 1e-13 * float(graph.capacity.max(initial=0.0))
    return _dinic(graph.start, graph.tail, graph.head, graph.rev, graph.capacity, source, sink, eps)
