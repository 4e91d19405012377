"""The network description: devices, MoA shape, rates, service times, gossip graph, selection.

Everything else in the toolkit (loads, symbolic derivation, optimiser, simulators) takes a
:class:`MoANetwork`. It is immutable and validated once, on construction, so that downstream code
can rely on normalised fields:

* ``k`` is a tuple of one proposer count per layer (length ``M``),
* ``arrival_rate`` is a read-only float array of length ``n`` (prompts/s per device),
* ``service_time`` is a read-only ``(3, n)`` array of mean seconds, rows in :data:`JOB_TYPES`,
* ``topology`` is ``"complete"`` or a symmetric 0/1 ``scipy.sparse.csr_array`` adjacency,
* ``selection`` is ``None`` (uniform among neighbours) or a tuple of ``M`` sparse inclusion
  probability matrices ``pi[j, i]`` (origin ``j``, helper ``i``).
"""

from __future__ import annotations

import math
import numbers
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from dataclasses import fields as dataclass_fields
from functools import cached_property
from typing import Any

import numpy as np
import scipy.sparse as sp
from numba import njit

from .display import tidy

JOB_TYPES: tuple[str, str, str] = ("propose", "refine", "aggregate")
"""Job types, in the row order of :attr:`MoANetwork.service_time` and of ``job_rates``."""

PROPOSE, REFINE, AGGREGATE = range(3)

_ROW_SUM_RTOL = 1e-9
MAX_COMPLETE_PAIRS = 10**8
"""Largest ``n(n-1)`` for which :attr:`MoANetwork.adjacency` builds the complete graph (about
1.2 GB of CSR); n = 10,000 fits."""


def _fail(field: str, value: Any, problem: str, fix: str) -> ValueError:
    return ValueError(f"{field}={_shown(value)}: {problem}; {fix}")


_SHOWN_CHARS = 120
"""Longest rendering of a bad value in a message (messages are one line)."""


def _shown(value: Any) -> str:
    """A short one-line rendering of a bad value: it may be ragged, nested or of any type, so
    never raise (np.array2string put each row of a 2-D value on its own line)."""
    if isinstance(value, str):
        text = value
    else:
        try:
            text = np.array2string(np.asarray(value), threshold=8, max_line_width=10**6)
        except (TypeError, ValueError):
            text = repr(value)
    text = " ".join(text.split())
    return text if len(text) <= _SHOWN_CHARS else f"{text[: _SHOWN_CHARS - 3]}..."


MAX_COUNT = 2**31 - 1
"""Largest proposer count or graph degree: arrays and numba kernels index with it. Device and
layer counts have the tighter, memory-bound caps :data:`MAX_DEVICES` and :data:`MAX_LAYERS`."""

MAX_DEVICES = 10**7
"""Largest device count ``n``. Per-device arrays cost about 140 bytes a device in ``loads`` and
``stability_report`` on the implicit complete graph (measured: 1.4 GB peak at 10^7, seconds),
so 10^7 leaves room on a machine with a few GB; 2^31 - 1 devices would need 16 GB for the
network's own rate and service arrays and died in allocation."""

MAX_LAYERS = 10**6
"""Largest layer count ``M``. ``k`` is held per layer (8 MB of tuple at 10^6; 2^31 - 1 layers
needed 17 GB and raised MemoryError), and ``loads``/``stability_report`` take about a second
at 10^6 layers."""


def size_field(field: str, value: Any, minimum: int, maximum: int, what: str) -> int:
    """``value`` as an int in ``[minimum, maximum]`` where ``maximum`` is a memory cap on a
    count of ``what``: a ValueError naming ``field``, the value and the largest that works."""
    value = count_field(field, value, minimum)
    if value > maximum:
        raise _fail(
            field,
            value,
            f"more {what} than the {maximum} whose arrays fit in memory",
            f"pass {field} <= {maximum}",
        )
    return value


def devices_field(value: Any, field: str = "n") -> int:
    """A device count in ``[1, MAX_DEVICES]``, else a ValueError naming ``field``."""
    return size_field(field, value, 1, MAX_DEVICES, "devices")


def layers_field(value: Any, field: str = "M") -> int:
    """A layer count in ``[0, MAX_LAYERS]``, else a ValueError naming ``field``."""
    return size_field(field, value, 0, MAX_LAYERS, "layers")


def _scalar(value: Any) -> Any:
    """A 0-d numpy array as its numpy scalar (np.array(4) works where np.int64(4) does)."""
    return value[()] if isinstance(value, np.ndarray) and value.ndim == 0 else value


def count_field(field: str, value: Any, minimum: int, maximum: int | None = None) -> int:
    """``value`` as an int ``>= minimum`` (and ``<= maximum`` if given), else a ValueError
    naming ``field``."""
    bounds = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
    fix = f"pass a whole number {bounds}"
    value = _scalar(value)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise _fail(field, repr(value), "must be an integer", fix)
    if value < minimum or (maximum is not None and value > maximum):
        raise _fail(field, value, f"must be {bounds}", fix)
    return int(value)


def seed_field(field: str, value: Any) -> int | None:
    """A seed: ``None`` (fresh entropy) or an int ``>= 0``, else a ValueError naming ``field``."""
    return None if value is None else count_field(field, value, 0, 2**63 - 1)


def network_field(value: Any, field: str = "net") -> MoANetwork:
    """``value`` if it is a :class:`MoANetwork`, else a ValueError naming ``field``."""
    if not isinstance(value, MoANetwork):
        raise _fail(
            field, type(value).__name__, "is not a MoANetwork", "build one with MoANetwork(...)"
        )
    return value


def number_field(field: str, value: Any, fix: str) -> float:
    """``value`` as a finite float (a Python or numpy real; not a bool), else a ValueError
    naming ``field``; ``fix`` says what to pass instead."""
    value = _scalar(value)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise _fail(field, repr(value), "must be a real number", fix)
    if not math.isfinite(value):
        raise _fail(field, value, "must be finite", fix)
    return float(value)


def per_device_field(field: str, value: Any, n: int, positive: bool = False) -> np.ndarray:
    """A scalar or length-``n`` vector of finite non-negative floats, as a read-only array
    (``positive``: strictly positive); else a ValueError naming ``field``."""
    try:
        raw = np.asarray(value)
    except (TypeError, ValueError) as err:  # ragged nesting
        raise _fail(field, value, "is not numeric", "pass a number or a length-n array") from err
    # Strings, booleans, complex numbers and objects would convert, or half-convert, silently.
    if raw.dtype.kind not in "iuf":
        raise _fail(
            field, value, f"has {raw.dtype} entries, not numbers", "pass real numbers, not text"
        )
    arr = raw.astype(float)
    if arr.ndim == 0:
        arr = np.full(n, float(arr))
    if arr.shape != (n,):
        raise _fail(
            field,
            value,
            f"has shape {arr.shape}, expected a scalar or ({n},)",
            f"give one value per device (n={n}) or a single scalar",
        )
    if not np.all(np.isfinite(arr)):
        raise _fail(field, value, "contains a non-finite value", "use finite numbers")
    if np.any(arr < 0) or (positive and np.any(arr <= 0)):
        bound = "> 0" if positive else ">= 0"
        raise _fail(field, value, f"has an entry outside {bound}", f"every entry must be {bound}")
    arr.setflags(write=False)
    return arr


def job_types_used(M: int) -> tuple[str, ...]:
    """Job types that occur with ``M`` layers (refine needs ``M >= 2``, aggregate ``M >= 1``)."""
    min_layers = {"propose": 0, "refine": 2, "aggregate": 1}
    return tuple(c for c in JOB_TYPES if min_layers[c] <= M)


def inferences_per_prompt(M: int, k: int | Sequence[int]) -> int:
    r"""Inferences one prompt causes with ``M`` layers of ``k`` extra proposers:
    :math:`\sum_{m=1}^{M} (k_m + 1) + 1`, i.e. :math:`(k+1)M + 1` for one ``k`` (``M + 1`` of
    them on the prompt's own device): the sum of :func:`inferences_by_type`, which takes the
    same parameters.

    Examples
    --------
    >>> inferences_per_prompt(2, 2), inferences_per_prompt(2, [3, 1]), inferences_per_prompt(0, 0)
    (7, 7, 1)
    """
    return sum(inferences_by_type(M, k).values())


def inferences_by_type(M: int, k: int | Sequence[int]) -> dict[str, int]:
    r"""Inferences one prompt causes, per job type of :data:`JOB_TYPES` that occurs with ``M``:
    ``propose`` :math:`k_1 + 1` (one plain inference when ``M = 0``), ``refine``
    :math:`\sum_{m=2}^{M} (k_m + 1)`, ``aggregate`` 1 (``M >= 1``).

    Parameters
    ----------
    M : int
        MoA layers, ``>= 0``.
    k : int or sequence of int
        Extra proposers per layer, ``>= 0``: one for every layer or one per layer (length ``M``).

    Examples
    --------
    >>> inferences_by_type(2, 2)
    {'propose': 3, 'refine': 3, 'aggregate': 1}
    >>> inferences_by_type(0, 0)
    {'propose': 1}
    """
    layers = MoANetwork._layer_counts(k, layers_field(M))
    if not layers:
        return {"propose": 1}
    counts = {"propose": layers[0] + 1, "refine": sum(km + 1 for km in layers[1:]), "aggregate": 1}
    return {c: counts[c] for c in job_types_used(M)}


def _service_times(value: Any, n: int, M: int) -> np.ndarray:
    """Mean service seconds as a read-only ``(3, n)`` array, rows in :data:`JOB_TYPES` order."""
    used = job_types_used(M)
    if isinstance(value, Mapping):
        unknown = sorted(map(str, set(value) - set(JOB_TYPES)))
        if unknown:
            raise _fail(
                "service_time",
                ", ".join(map(str, unknown)),
                "unknown job type(s)",
                f"use keys from {JOB_TYPES}",
            )
        missing = [c for c in used if c not in value]
        if missing:
            raise _fail(
                "service_time",
                ", ".join(sorted(value)),
                f"no mean given for job type(s) {missing} that occur when M={M}",
                f"give a mean for each of {used}",
            )
        # A type that never occurs at this M gets the propose mean: it never carries load.
        rows = [value.get(c, value["propose"]) for c in JOB_TYPES]
        table = np.vstack(
            [
                per_device_field(f"service_time[{c!r}]", r, n, positive=True)
                for c, r in zip(JOB_TYPES, rows, strict=True)
            ]
        )
    elif is_rectangular(value) and np.shape(value) == (3, n):
        arr = np.asarray(value)
        table = np.vstack(
            [
                per_device_field(f"service_time[{c!r}]", arr[i], n, positive=True)
                for i, c in enumerate(JOB_TYPES)
            ]
        )
    else:
        row = per_device_field("service_time", value, n, positive=True)
        table = np.vstack([row, row, row])
    table.setflags(write=False)
    return table


# Adjacency matrices that passed validation (and the connectivity check), made read-only so
# the verdict stays true: ``replace``, ``scaled`` and ``at_load`` pass the same object again,
# and checking a 10^6-device graph twice costs seconds.
_VALID_GRAPHS: weakref.WeakValueDictionary[int, sp.csr_array] = weakref.WeakValueDictionary()
_CONNECTED_GRAPHS: weakref.WeakValueDictionary[int, sp.csr_array] = weakref.WeakValueDictionary()


def _known(registry: weakref.WeakValueDictionary, value: Any) -> bool:
    # get() answers None for a missing id: None itself must not count as registered.
    return value is not None and registry.get(id(value)) is value


def is_rectangular(value: Any) -> bool:
    """Whether ``value`` is a scalar or a rectangular array (not ragged nesting)."""
    try:
        np.shape(value)
    except ValueError:
        return False
    return True


def _adjacency(value: Any, n: int) -> str | sp.csr_array:
    if _known(_VALID_GRAPHS, value) and value.shape == (n, n):
        return value
    if isinstance(value, str):
        builders = {"complete": None, "ring": _ring, "star": _star}
        if value not in builders:
            raise _fail(
                "topology",
                value,
                "unknown topology name",
                f"use one of {sorted(builders)}, a networkx graph or an adjacency matrix",
            )
        return "complete" if value == "complete" else builders[value](n)
    if hasattr(value, "adjacency") and hasattr(value, "nodes"):  # a networkx graph
        import networkx as nx

        if value.is_directed():
            raise _fail(
                "topology",
                "DiGraph",
                "the gossip graph must be undirected",
                "pass an undirected networkx.Graph",
            )
        if value.number_of_nodes() != n:
            raise _fail(
                "topology",
                f"graph with {value.number_of_nodes()} nodes",
                f"does not have n={n} nodes",
                "make the graph's node count equal n",
            )
        try:
            order = sorted(value.nodes())
        except TypeError as err:
            raise _fail(
                "topology",
                "graph with node labels of mixed types",
                "cannot order its nodes as devices 0..n-1",
                "relabel it, e.g. networkx.convert_node_labels_to_integers(graph)",
            ) from err
        # Edge weights (a weight=0 edge dropped silently, then k got the blame) are ignored:
        # the gossip graph is which pairs are neighbours.
        value = nx.to_scipy_sparse_array(value, nodelist=order, weight=None, format="csr")
    if value is None:
        raise _fail(
            "topology",
            "None",
            "no gossip graph given",
            "pass 'complete', 'ring', 'star', a networkx graph or an n x n adjacency matrix",
        )
    kind = value.dtype.kind if sp.issparse(value) else _dtype_kind(value)
    if kind is not None and kind not in "biuf":
        raise _fail(
            "topology",
            f"matrix of {value.dtype if sp.issparse(value) else np.asarray(value).dtype} entries",
            "adjacency entries must be real 0/1 numbers (text and complex values converted "
            "silently, or with only a ComplexWarning)",
            "pass a numeric 0/1 adjacency matrix",
        )
    try:
        # A copy: the validated matrix is made read-only, the caller's must stay writable.
        adj = sp.csr_array(value, dtype=float, copy=True)
    except (TypeError, ValueError) as err:
        raise _fail(
            "topology",
            str(type(value)),
            "is not a graph",
            "pass a name, a networkx graph or an n x n adjacency matrix",
        ) from err
    if adj.shape != (n, n):
        raise _fail(
            "topology",
            f"matrix of shape {adj.shape}",
            f"expected ({n}, {n})",
            "give an n x n adjacency matrix",
        )
    adj.sum_duplicates()
    adj.eliminate_zeros()
    if not np.all(adj.data == 1.0):
        raise _fail(
            "topology",
            "weighted matrix",
            "entries must be 0 or 1",
            "pass an unweighted adjacency matrix",
        )
    if adj.diagonal().any():
        raise _fail(
            "topology",
            "matrix with self-loops",
            "a device cannot be its own neighbour",
            "set the diagonal to zero",
        )
    adj.sort_indices()
    if not _is_symmetric(adj.indptr, adj.indices):
        raise _fail(
            "topology",
            "asymmetric matrix",
            "the gossip graph must be undirected",
            "make the adjacency matrix symmetric",
        )
    for part in (adj.data, adj.indices, adj.indptr):
        part.setflags(write=False)
    _VALID_GRAPHS[id(adj)] = adj
    return adj


def _dtype_kind(value: Any) -> str | None:
    """The numpy dtype kind of a dense matrix-like value, or None if it is not one."""
    try:
        return np.asarray(value).dtype.kind
    except (TypeError, ValueError):  # ragged: csr_array's own check reports it
        return None


@njit(cache=True)
def _is_symmetric(indptr, indices):  # pragma: no cover - numba
    """Whether every entry ``(r, c)`` of a CSR pattern with sorted, distinct columns has its
    mirror ``(c, r)``, with no transposed copy.

    Rows are read in increasing ``r``, so the entries of column ``c`` arrive in the order the
    symmetric row ``c`` lists them: one cursor per row walks it, and the pattern is symmetric
    iff every entry meets its cursor and every cursor ends at its row's end (one random read
    per entry; a binary search per entry took several times longer at 10^6).
    """
    cursor = indptr[:-1].copy()
    for r in range(indptr.size - 1):
        for p in range(indptr[r], indptr[r + 1]):
            c = indices[p]
            if cursor[c] == indptr[c + 1] or indices[cursor[c]] != r:
                return False
            cursor[c] += 1
    return np.all(cursor == indptr[1:])


@njit(cache=True)
def _component_count(indptr, indices):  # pragma: no cover - numba
    """Connected components of a symmetric CSR pattern, by one breadth-first search per
    component: O(n + edges) with no transposed copy (scipy's undirected search builds one, its
    strong-component search does more work per edge; both take several times longer at 10^6)."""
    n = indptr.size - 1
    seen = np.zeros(n, np.bool_)
    queue = np.empty(n, np.int64)
    count = 0
    for root in range(n):
        if seen[root]:
            continue
        count += 1
        seen[root] = True
        queue[0] = root
        head, tail = 0, 1
        while head < tail:
            v = queue[head]
            head += 1
            for p in range(indptr[v], indptr[v + 1]):
                u = indices[p]
                if not seen[u]:
                    seen[u] = True
                    queue[tail] = u
                    tail += 1
    return count


def _ring(n: int) -> sp.csr_array:
    if n < 3:
        raise _fail("topology", "ring", f"needs n >= 3 (got n={n})", "use 'complete' for n < 3")
    i = np.arange(n)
    rows = np.concatenate([i, i])
    cols = np.concatenate([(i + 1) % n, (i - 1) % n])
    return sp.csr_array((np.ones(2 * n), (rows, cols)), shape=(n, n))


def _star(n: int) -> sp.csr_array:
    if n < 2:
        raise _fail("topology", "star", f"needs n >= 2 (got n={n})", "use n >= 2")
    leaves = np.arange(1, n)
    rows = np.concatenate([np.zeros(n - 1, int), leaves])
    cols = np.concatenate([leaves, np.zeros(n - 1, int)])
    return sp.csr_array((np.ones(2 * (n - 1)), (rows, cols)), shape=(n, n))


# networkx's generator (Steger-Wormald, asymptotically uniform) takes ~10 s at n = 10^5; past
# this many edge ends the switched pairing below is used (seconds at n = 10^6, degree 8).
_NETWORKX_MAX_STUBS = 100_000
_MAX_SWITCH_ROUNDS = 1000
MAX_STUBS = 10**8
"""Largest ``n * degree`` (edge ends) :func:`random_regular_graph` builds: about 33 bytes an end
from pairing through the validated network (measured 1.3 GB peak at 4 * 10^7), so 3.3 GB here."""


CONNECT_TRIES = 100
"""Graphs :func:`random_regular_graph` draws looking for a connected one."""


def random_regular_graph(
    n: int, degree: int, seed: int | None = None, *, connected: bool = True
) -> sp.csr_array:
    """Adjacency of a random ``degree``-regular graph on ``n`` devices (``n * degree`` even).

    Up to ``n * degree = 10^5`` edge ends it wraps :func:`networkx.random_regular_graph`
    (asymptotically uniform). Beyond, it pairs the ``n * degree`` edge ends uniformly at random
    (the configuration model) and removes the few self-loops and repeated edges (about
    ``(d^2 - 1)/4`` of the ``n d / 2`` edges) by random switchings: a bad edge ``(a, b)`` and a
    random edge ``(c, e)`` become ``(a, c), (b, e)``, which keeps every degree. The result is
    uniform up to the switched edges, a vanishing fraction at large ``n``.

    ``connected`` (default): a gossip graph must be connected (:class:`MoANetwork` rejects
    one that is not), so a disconnected draw is redrawn with seeds derived from ``seed``
    (``SeedSequence([seed, try])``; the first try uses ``seed`` itself), which keeps the
    result a function of ``seed``: uniform over the connected graphs the generator draws.
    ``random_regular_graph(6, 2, seed=0)`` drew two triangles; it now gives a hexagon. A
    ValueError says when no connected graph exists (degree 0 or 1 beyond n = 1 or 2) or none
    was found in :data:`CONNECT_TRIES` draws (degree 2 at large n: the only connected 2-regular
    graph is the ring). ``connected=False`` returns the first draw as it is.
    """
    n = devices_field(n)
    degree = count_field("degree", degree, 0, MAX_COUNT)
    seed = seed_field("seed", seed)
    if degree >= n or (n * degree) % 2:
        raise _fail(
            "degree",
            degree,
            f"no {degree}-regular graph on n={n} devices exists",
            "choose degree < n with n*degree even",
        )
    if n * degree > MAX_STUBS:
        raise _fail(
            "degree",
            degree,
            f"n*degree={n * degree} edge ends exceed the {MAX_STUBS} that fit in memory",
            f"pass degree <= {MAX_STUBS // n} for n={n}",
        )
    if not connected:
        return _regular_draw(n, degree, seed)
    if degree < 2 and n > degree + 1:
        raise _fail(
            "degree",
            degree,
            f"every {degree}-regular graph on n={n} devices is disconnected",
            "use degree >= 2 (or connected=False)",
        )
    for attempt in range(CONNECT_TRIES):
        try_seed = seed
        if attempt and seed is not None:
            try_seed = int(np.random.SeedSequence([seed, attempt]).generate_state(1)[0])
        g = _regular_draw(n, degree, try_seed)
        if _component_count(g.indptr, g.indices) == 1:
            return g
    raise _fail(
        "degree",
        degree,
        f"no connected {degree}-regular graph on n={n} devices found in {CONNECT_TRIES} draws",
        "use degree >= 3, topology='ring' for degree 2, or connected=False",
    )


def _regular_draw(n: int, degree: int, seed: int | None) -> sp.csr_array:
    """One random ``degree``-regular graph (checked arguments), connected or not."""
    if n * degree <= _NETWORKX_MAX_STUBS:
        import networkx as nx

        g = nx.random_regular_graph(degree, n, seed=seed)
        return nx.to_scipy_sparse_array(g, nodelist=range(n), format="csr")
    rng = np.random.default_rng(seed)
    # 32-bit device numbers where they fit: half the memory traffic of every sparse product.
    index = np.int32 if n * degree < 2**31 else np.int64
    ends = rng.permutation(np.repeat(np.arange(n, dtype=index), degree))
    a, b = ends[0::2], ends[1::2]
    for _ in range(_MAX_SWITCH_ROUNDS):
        indptr, indices, bad = _pairing_csr(a, b, n, degree)
        if not bad.size:
            return sp.csr_array((np.ones(indices.size), indices, indptr), shape=(n, n))
        # Few bad edges (a constant expected number for fixed degree): switch them one by one.
        for i, j in zip(bad, rng.integers(0, a.size, bad.size), strict=True):
            a[i], b[i], a[j], b[j] = a[i], a[j], b[i], b[j]
    raise _fail(
        "degree",
        degree,
        f"no simple {degree}-regular graph found on n={n} devices",
        "use a smaller degree",
    )


@njit(cache=True)
def _pairing_csr(a, b, n, degree):  # pragma: no cover - numba
    """CSR (sorted columns) of the ``degree``-regular multigraph with edges ``a[e]-b[e]``, and
    the edges that are self-loops or repeated (every copy): one counting pass, then an
    insertion sort of each row's ``degree`` entries."""
    indptr = (np.arange(n + 1) * degree).astype(a.dtype)
    fill = indptr[:-1].copy()
    indices = np.empty(n * degree, dtype=a.dtype)
    edge = np.empty(n * degree, dtype=np.int64)
    for e in range(a.size):
        for u, v in ((a[e], b[e]), (b[e], a[e])):
            indices[fill[u]] = v
            edge[fill[u]] = e
            fill[u] += 1
    bad = np.zeros(a.size, dtype=np.bool_)
    for r in range(n):
        lo, hi = indptr[r], indptr[r + 1]
        for p in range(lo + 1, hi):
            col, e = indices[p], edge[p]
            q = p - 1
            while q >= lo and indices[q] > col:
                indices[q + 1] = indices[q]
                edge[q + 1] = edge[q]
                q -= 1
            indices[q + 1] = col
            edge[q + 1] = e
        for p in range(lo, hi):
            if indices[p] == r:
                bad[edge[p]] = True
            elif p > lo and indices[p] == indices[p - 1]:
                bad[edge[p]] = True
                bad[edge[p - 1]] = True
    return indptr, indices, np.flatnonzero(bad)


@dataclass(frozen=True, eq=False)
class MoANetwork:
    r"""A distributed Mixture-of-Agents network of ``n`` edge devices.

    Device ``i`` receives user prompts as a Poisson process of rate ``arrival_rate[i]``. A prompt
    born at device ``j`` runs ``M`` layers; in layer ``m`` device ``j`` and ``k_m`` helpers drawn
    from the neighbours :math:`\mathcal N(j)` of the gossip graph each run one inference; when
    all ``k_m + 1`` responses are back the next layer starts; finally ``j`` aggregates. Helper
    ``i`` is included in layer ``m`` with probability :math:`\pi_m[j, i]`, where
    :math:`\sum_{i \in \mathcal N(j)} \pi_m[j, i] = k_m`.

    Parameters
    ----------
    n : int
        Number of devices, ``n >= 1``.
    M : int
        Number of MoA layers, ``M >= 0`` (``M = 0``: one plain inference on the origin).
    k : int or sequence of int
        Extra proposers per layer: one value for every layer or one per layer (length ``M``).
    arrival_rate : float or array_like
        User prompts per second at each device (scalar broadcast to all ``n``).
    service_time : float, array_like or mapping
        Mean inference seconds. A scalar, a length-``n`` array (per device), a ``(3, n)`` array
        (rows ``propose, refine, aggregate``), or a mapping from job type to either.
    topology : {"complete", "ring", "star"}, networkx.Graph or array_like
        Undirected gossip graph over which helpers are chosen.
    selection : None, "uniform" or array_like
        ``None``/"uniform": ``k_m`` helpers uniformly among the neighbours. Otherwise inclusion
        probabilities ``pi[j, i]`` in ``[0, 1]``, zero off the graph, rows summing to ``k_m``:
        one ``(n, n)`` matrix (all layers, needs equal ``k_m``) or one per layer.
    """

    n: int
    M: int = 0
    k: int | Sequence[int] = 0
    arrival_rate: float | np.ndarray = 0.0
    service_time: Any = 1.0
    topology: Any = "complete"
    selection: Any = None

    def __post_init__(self) -> None:
        n = devices_field(self.n)
        M = layers_field(self.M)
        k = self._layer_counts(self.k, M)
        topology = _adjacency(self.topology, n)
        fields = {
            "n": n,
            "M": M,
            "k": k,
            "topology": topology,
            "arrival_rate": per_device_field("arrival_rate", self.arrival_rate, n),
            "service_time": _service_times(self.service_time, n, M),
        }
        for name, value in fields.items():
            object.__setattr__(self, name, value)
        self._check_graph_supports_k()
        object.__setattr__(self, "selection", self._inclusion_matrices(self.selection))

    @staticmethod
    def _layer_counts(value: Any, M: int) -> tuple[int, ...]:
        value = _scalar(value)
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            return (count_field("k", value, 0, MAX_COUNT),) * M
        # A dict would give its keys, a string its characters ('4' read as k=[4]).
        if isinstance(value, (str, bytes, Mapping, set, frozenset)):
            raise _fail(
                "k",
                repr(value),
                f"is a {type(value).__name__}, not an int or a sequence of ints",
                "pass e.g. k=2 or k=[2, 1]",
            )
        try:
            counts = tuple(value)
        except TypeError as err:
            raise _fail(
                "k", value, "must be an int or a sequence of ints", "pass e.g. k=2 or k=[2, 1]"
            ) from err
        if len(counts) != M:
            raise _fail(
                "k",
                value,
                f"has {len(counts)} entries but M={M}",
                "give one proposer count per layer, or a single int",
            )
        return tuple(count_field(f"k[{m}]", c, 0, MAX_COUNT) for m, c in enumerate(counts))

    def _check_graph_supports_k(self) -> None:
        kmax = max(self.k, default=0)
        if kmax == 0:
            return
        deg = self.degrees
        if kmax > deg.min():
            worst = int(np.argmin(deg))
            raise _fail(
                "k",
                list(self.k),
                f"k={kmax} exceeds the {int(deg[worst])} neighbour(s) of device {worst}",
                "lower k or add edges so every device has at least k neighbours",
            )
        if not self.is_complete and not _known(_CONNECTED_GRAPHS, self.topology):
            count = _component_count(self.topology.indptr, self.topology.indices)
            if count > 1:
                raise _fail(
                    "topology",
                    f"graph with {count} components",
                    "is disconnected, so prompts never reach some helpers",
                    "connect the graph, or model each component as its own network",
                )
            _CONNECTED_GRAPHS[id(self.topology)] = self.topology

    def _inclusion_matrices(self, value: Any) -> tuple[sp.csr_array, ...] | None:
        if value is None or (isinstance(value, str) and value == "uniform"):
            return None
        if isinstance(value, str):
            raise _fail(
                "selection",
                value,
                "unknown selection rule",
                "use None/'uniform' or inclusion probabilities pi[j, i]",
            )
        if self.M == 0:
            raise _fail(
                "selection",
                type(value).__name__,
                "M=0 has no helpers to select",
                "drop selection (or pass None) when M=0",
            )
        # One matrix for every layer, or a sequence of them (a list may be ragged: per-layer
        # sparse matrices, or nested lists of different shapes, are checked one by one).
        one = sp.issparse(value) or (is_rectangular(value) and np.ndim(value) == 2)
        if one:
            if len(set(self.k)) > 1:
                raise _fail(
                    "selection",
                    "one matrix",
                    f"k differs across layers ({self.k})",
                    "give one inclusion matrix per layer",
                )
            layers = [value] * self.M
        elif isinstance(value, (list, tuple)) or (is_rectangular(value) and np.ndim(value) == 3):
            layers = list(value)
        else:
            raise _fail(
                "selection",
                type(value).__name__,
                "is not inclusion probabilities",
                "pass None/'uniform', one (n, n) matrix or one per layer",
            )
        if len(layers) != self.M:
            raise _fail(
                "selection",
                f"{len(layers)} matrices",
                f"M={self.M} layers",
                "give one (n, n) matrix per layer or a single one",
            )
        return tuple(self._check_inclusion(m, pi) for m, pi in enumerate(layers))

    def _check_inclusion(self, m: int, value: Any) -> sp.csr_array:
        field, n = f"selection[{m}]", self.n
        try:
            raw = value if sp.issparse(value) else np.asarray(value)
            if raw.dtype.kind not in "iuf":
                raise TypeError(f"{raw.dtype} entries")
            pi = sp.csr_array(raw, dtype=float)
        except (TypeError, ValueError) as err:
            raise _fail(
                field,
                type(value).__name__,
                f"is not a numeric matrix ({err})",
                "pass an (n, n) array or scipy.sparse matrix of probabilities",
            ) from err
        if pi.shape != (n, n):
            raise _fail(
                field, f"shape {pi.shape}", f"expected ({n}, {n})", "index it as pi[origin, helper]"
            )
        if (
            not np.all(np.isfinite(pi.data))
            or pi.data.min(initial=0) < 0
            or pi.data.max(initial=0) > 1
        ):
            raise _fail(
                field,
                "matrix",
                "has a probability outside [0, 1]",
                "every inclusion probability must lie in [0, 1]",
            )
        pi.eliminate_zeros()
        # On the complete graph only the diagonal is off the graph: never build its n^2 pairs.
        off_graph = (
            sp.diags_array(pi.diagonal()) if self.is_complete else pi - pi.multiply(self.adjacency)
        )
        if abs(off_graph).sum() > 0:
            j, i = (int(x[0]) for x in off_graph.nonzero())
            raise _fail(
                field,
                "matrix",
                f"puts mass on non-neighbour pair ({j}, {i})",
                "set pi[j, i] = 0 where i is not a neighbour of j (and on the diagonal)",
            )
        sums = np.asarray(pi.sum(axis=1)).ravel()
        bad = np.flatnonzero(~np.isclose(sums, self.k[m], rtol=_ROW_SUM_RTOL, atol=1e-12))
        if bad.size:
            raise _fail(
                field,
                "matrix",
                f"row {int(bad[0])} sums to {sums[bad[0]]:.6g}, not k={self.k[m]}",
                "each origin's inclusion probabilities must add up to that layer's k",
            )
        pi.sort_indices()
        return pi

    # ---- derived views ---------------------------------------------------------------------
    @property
    def is_complete(self) -> bool:
        return isinstance(self.topology, str)

    @cached_property
    def adjacency(self) -> sp.csr_array:
        """The gossip graph as a symmetric 0/1 CSR matrix (built on demand for ``complete``,
        up to :data:`MAX_COMPLETE_PAIRS` pairs; loads, reports, latency and the simulator keep
        the complete graph implicit and never ask for it)."""
        if not self.is_complete:
            return self.topology
        n = self.n
        pairs = n * (n - 1)
        if pairs > MAX_COMPLETE_PAIRS:
            raise _fail(
                "topology",
                "complete",
                f"its adjacency would hold n(n-1)={pairs} entries (over {MAX_COMPLETE_PAIRS})",
                "use loads/stability_report/latency/simulate, which keep it implicit, or pass "
                "a sparse topology such as random_regular_graph(n, d)",
            )
        # Row j lists 0..n-1 without j: column c of row j is c + (c >= j).
        column = np.arange(n - 1)
        indices = (column[None, :] + (column[None, :] >= np.arange(n)[:, None])).ravel()
        indptr = np.arange(0, pairs + 1, n - 1) if n > 1 else np.zeros(n + 1, np.int64)
        return sp.csr_array((np.ones(pairs), indices, indptr), shape=(n, n))

    @cached_property
    def degrees(self) -> np.ndarray:
        """Number of neighbours of each device."""
        if self.is_complete:
            return np.full(self.n, self.n - 1)
        return np.diff(self.topology.indptr)

    def inclusion(self, layer: int) -> sp.csr_array:
        """Inclusion probabilities ``pi[j, i]`` of layer ``layer`` (0-based), as CSR."""
        if self.M == 0:
            raise _fail("layer", layer, "M=0 has no layers", "use a network with M >= 1")
        layer = count_field("layer", layer, 0, self.M - 1)
        if self.selection is not None:
            return self.selection[layer]
        share = self.k[layer] / np.maximum(self.degrees, 1)
        return sp.csr_array(sp.diags_array(share) @ self.adjacency)

    @property
    def inferences_per_prompt(self) -> int:
        """Inferences caused by one prompt: ``sum_m (k_m + 1) + 1`` (``1`` when ``M = 0``);
        see :func:`inferences_per_prompt`."""
        return inferences_per_prompt(self.M, self.k)

    @property
    def job_types_used(self) -> tuple[str, ...]:
        """Job types that occur: ``propose``; ``refine`` when ``M >= 2``; ``aggregate`` when
        ``M >= 1``."""
        return job_types_used(self.M)

    def replace(self, **changes: Any) -> MoANetwork:
        """A copy with some fields changed, validated again."""
        names = [f.name for f in dataclass_fields(self)]
        unknown = sorted(set(changes) - set(names))
        if unknown:
            raise _fail(
                "replace",
                ", ".join(unknown),
                "not a MoANetwork field",
                f"change only fields from {names}",
            )
        return replace(self, **changes)

    def scaled(self, theta: float) -> MoANetwork:
        """The same network with every arrival rate multiplied by ``theta``."""
        fix = "pass a non-negative scale"
        if number_field("theta", theta, fix) < 0:
            raise _fail("theta", theta, "must be >= 0", fix)
        return self.replace(arrival_rate=self.arrival_rate * theta)

    def at_load(self, rho: float) -> MoANetwork:
        r"""The same network with its arrival rates scaled so that its busiest device has load
        ``rho``: :math:`\lambda \mapsto \rho\,\lambda / \max_i \rho_i(\lambda)`.

        Loads are linear in the rates, so every device keeps its share of the peak load.

        Parameters
        ----------
        rho : float
            The load of the busiest device, finite and ``> 0`` (``>= 1`` is an unstable
            network, which is allowed: simulations above capacity need one).

        Raises
        ------
        ValueError
            On a bad ``rho``, and when no device carries load (every arrival rate is 0), so no
            scale reaches ``rho``.

        Examples
        --------
        >>> net = MoANetwork(n=4, M=2, k=2, arrival_rate=1.0)
        >>> net.at_load(0.7).arrival_rate
        array([0.1, 0.1, 0.1, 0.1])
        """
        from .loads import load_profile  # loads builds on this module

        rho = _scalar(rho)
        if isinstance(rho, (bool, np.bool_)) or not isinstance(
            rho, (int, float, np.integer, np.floating)
        ):
            raise _fail("rho", repr(rho), "must be a number", "pass the target peak load, e.g. 0.9")
        if not (math.isfinite(rho) and rho > 0):
            raise _fail("rho", rho, "must be finite and > 0", "pass the target peak load, e.g. 0.9")
        theta = load_profile(self).scale
        if math.isinf(theta):
            raise _fail(
                "arrival_rate",
                self.arrival_rate,
                "every rate is 0, so the network carries no load to scale to rho",
                "give some device a positive arrival_rate",
            )
        return self.scaled(float(rho) * theta)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly description (inverse of :func:`network_from_dict`)."""
        d: dict[str, Any] = {
            "n": self.n,
            "M": self.M,
            "k": list(self.k),
            "arrival_rate": self.arrival_rate.tolist(),
            "service_time": {c: self.service_time[i].tolist() for i, c in enumerate(JOB_TYPES)},
        }
        if self.is_complete:
            d["topology"] = "complete"
        else:
            rows, cols = self.topology.nonzero()
            d["topology"] = {
                "edges": [[int(a), int(b)] for a, b in zip(rows, cols, strict=True) if a < b]
            }
        if self.selection is not None:
            d["selection"] = [pi.toarray().tolist() for pi in self.selection]
        return d

    def __repr__(self) -> str:
        # An optimiser's rates carry solver noise (2.9e-15 for 0): show it as 0.
        lam, s = tidy(self.arrival_rate), self.service_time
        topo = "complete" if self.is_complete else f"graph({self.topology.nnz // 2} edges)"
        sel = "uniform" if self.selection is None else "inclusion-probabilities"
        return (
            f"MoANetwork(n={self.n}, M={self.M}, k={list(self.k)}, "
            f"arrival_rate=[{lam.min():.4g}..{lam.max():.4g}]/s, "
            f"service_time=[{s.min():.4g}..{s.max():.4g}]s, topology={topo}, "
            f"selection={sel})"
        )


def _edge_list(value: Any, n: int) -> sp.csr_array:
    """A symmetric adjacency from ``[[a, b], ...]`` pairs of device indices."""
    field, fix = "topology.edges", "give pairs [[a, b], ...] of device indices 0..n-1"
    try:
        raw = np.asarray(value)
    except ValueError as err:  # ragged nesting
        raise _fail(field, value, "is not a list of pairs", fix) from err
    if raw.size == 0:
        raw = raw.reshape(0, 2)
    if raw.ndim != 2 or raw.shape[1] != 2:
        raise _fail(field, value, f"has shape {raw.shape}, not (edges, 2)", fix)
    # Floats such as 1.5 would truncate to another device: only whole numbers name one.
    if raw.dtype.kind not in "iuf" or (
        raw.dtype.kind == "f" and not np.all(np.isfinite(raw) & (raw == np.round(raw)))
    ):
        raise _fail(field, value, "contains entries that are not device indices", fix)
    if raw.size and (raw.min() < 0 or raw.max() >= n):
        raise _fail(field, "edges", f"name devices outside 0..{n - 1}", "number devices from 0")
    edges = raw.astype(np.int64)
    a = sp.coo_array((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n, n))
    return sp.csr_array(((a + a.T) > 0).astype(float))


def network_from_dict(spec: Mapping[str, Any]) -> MoANetwork:
    """Build a network from a mapping as read from JSON/TOML.

    Keys are the :class:`MoANetwork` fields. ``topology`` may be a name, ``{"edges": [[a, b],
    ...]}`` or ``{"random_regular": d, "seed": s}``; ``service_time`` may be a table by job type.
    """
    if not isinstance(spec, Mapping):
        raise _fail(
            "spec",
            type(spec).__name__,
            "a network description is a mapping of MoANetwork fields",
            "pass e.g. {'n': 4, 'M': 2, 'k': 2}",
        )
    allowed = {"n", "M", "k", "arrival_rate", "service_time", "topology", "selection"}
    unknown = sorted(map(str, set(spec) - allowed))
    if unknown:
        raise _fail("network", ", ".join(unknown), "unknown field(s)", f"use {sorted(allowed)}")
    if "n" not in spec:
        raise _fail("network", "(no n)", "the number of devices is missing", "add n = ...")
    fields = dict(spec)
    topo = fields.get("topology")
    if isinstance(topo, Mapping):
        n = devices_field(fields["n"])
        keys = set(topo)
        if keys == {"edges"}:
            fields["topology"] = _edge_list(topo["edges"], n)
        elif "random_regular" in keys and keys <= {"random_regular", "seed"}:
            fields["topology"] = random_regular_graph(
                n,
                count_field("topology.random_regular", topo["random_regular"], 0, MAX_COUNT),
                seed=seed_field("topology.seed", topo.get("seed")),
            )
        else:
            raise _fail(
                "topology",
                str(dict(topo)),
                "unknown topology table",
                "use {edges = [[0, 1], ...]} or {random_regular = d, seed = s}",
            )
    return MoANetwork(**fields)
