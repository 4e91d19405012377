r"""The fluid limit: growth above capacity in closed form, and a general fluid integrator.

**Closed form** (:func:`fluid_growth_rate`): the FCFS fluid limit of the symmetric network from
empty queues.

On the paper's symmetric network (complete graph, one rate :math:`\lambda` and one mean
:math:`\alpha` everywhere) with load :math:`\rho = \alpha\lambda((k+1)M+1) > 1`, the *work* at
each device grows at :math:`\rho - 1` seconds per second, but the *jobs present* grow more
slowly: a prompt's later layers are created only when its earlier layers are served.

Every device is busy from time 0, so a job arriving at time :math:`s` completes at :math:`As`,
where :math:`A` is the work arriving per second. A prompt born at :math:`s` enters stage
:math:`j` (0-based: proposer layers, then the aggregate) at :math:`A^j s`, so stage-:math:`j`
jobs arrive at rate :math:`\lambda n_j A^{-j}` (:math:`n_j` jobs per device per prompt:
:math:`k+1` per layer, 1 aggregate) and

.. math:: A = \alpha\lambda \sum_j n_j A^{-j}, \qquad
          \frac{d}{dt}\,\text{jobs per device} = \frac{A - 1}{\alpha}.

:math:`A = \rho` when :math:`M = 0`, and :math:`1 < A \le \rho` otherwise: the excess rate
:math:`(\rho - 1)/\alpha` bounds the growth from above (docs/model.md section 5).

**Integrator** (:func:`integrate_fluid`): the deterministic fluid limit of a multiclass network
(:class:`FluidNetwork`) under FCFS or a static (preemptive) priority by class, stepped with the
exact discrete structure of both disciplines: each station is a list of priority levels, each
level a FCFS queue of the fluid that arrived in one step, and in every step of length :math:`h`
a station serves :math:`h` seconds of work from the front of its highest non-empty level on.
Completions release fluid into other classes, either by a routing matrix (a fork is a row that
sums to more than 1) or, for the MoA network (:func:`moa_fluid_network`), through joins. The
release lags the completion by one step, an :math:`O(h)` error. docs/stability.md states the
model, the join rule and their limits.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from math import comb

import numpy as np
import pandas as pd
from scipy.optimize import brentq

from ..model.discipline import DISCIPLINES, discipline_field, priority_rank
from ..model.network import (
    AGGREGATE,
    PROPOSE,
    REFINE,
    MoANetwork,
    _fail,
    count_field,
    inferences_per_prompt,
)


def fluid_growth_rate(M: int, k: int, load: float, alpha_s: float = 1.0) -> float:
    r"""Jobs per second per device by which the fluid limit's queues grow (0 if ``load <= 1``).

    Solves :math:`A = \alpha\lambda\sum_j n_j A^{-j}` on :math:`(1, \rho]` (module docstring)
    with :math:`\lambda = \rho / (\alpha((k+1)M+1))` and returns :math:`(A - 1)/\alpha`.

    Parameters
    ----------
    M : int
        MoA layers, ``>= 0``.
    k : int
        Extra proposers per layer, ``>= 0``.
    load : float
        :math:`\rho`, the load of every device, finite and ``>= 0``.
    alpha_s : float
        Mean seconds of every inference, ``> 0``.

    Examples
    --------
    >>> round(fluid_growth_rate(0, 0, 1.2), 12)   # one stage: the jobs grow like the work
    0.2
    >>> round(fluid_growth_rate(2, 2, 1.05), 4)   # later layers lag: below 0.05
    0.029
    """
    M, k = count_field("M", M, 0), count_field("k", k, 0)
    if not (isinstance(load, (int, float)) and math.isfinite(load) and load >= 0):
        raise ValueError(f"load={load}: must be a finite number >= 0; pass e.g. 1.05")
    if not (isinstance(alpha_s, (int, float)) and math.isfinite(alpha_s) and alpha_s > 0):
        raise ValueError(f"alpha_s={alpha_s}: must be a finite number > 0; pass e.g. 1.0")
    if load <= 1:
        return 0.0
    per_stage = [1] if M == 0 else [k + 1] * M + [1]
    rate = load / (alpha_s * inferences_per_prompt(M, k))

    def balance(A: float) -> float:
        return A - alpha_s * rate * sum(n * A**-j for j, n in enumerate(per_stage))

    # balance(1) = 1 - load < 0 and balance(load) >= 0, so the root lies in between.
    return (brentq(balance, 1.0, load) - 1.0) / alpha_s


# ---- the general fluid integrator ---------------------------------------------------------
Release = Callable[[np.ndarray], np.ndarray]
"""Cumulative fluid released into every class as a function of the cumulative completions."""


@dataclass(frozen=True, eq=False)
class FluidNetwork:
    r"""A multiclass fluid network: :math:`K` classes, each served at one station.

    Class :math:`c` receives exogenous fluid at ``arrival_rate_per_s[c]`` and needs
    ``mean_s[c]`` seconds of its station's time per unit of fluid. ``release(D)`` maps the
    cumulative completions :math:`D \in \mathbb R^K` to the cumulative fluid released into
    each class; with a routing matrix :math:`P` (``P[c, l]`` class-:math:`l` jobs created per
    class-:math:`c` completion) it is :math:`P^\top D`. ``routing`` is kept when the release is
    linear (the linear program of :mod:`.certificate` needs it), else ``None``.

    Build one with :func:`multiclass_network` or :func:`moa_fluid_network`.
    """

    station: np.ndarray
    mean_s: np.ndarray
    arrival_rate_per_s: np.ndarray
    release: Release = field(repr=False)
    routing: np.ndarray | None = field(default=None, repr=False)
    labels: tuple[str, ...] = field(default=(), repr=False)
    classes: tuple[tuple[int, int, int], ...] = field(default=(), repr=False)

    @property
    def n_classes(self) -> int:
        return int(self.station.size)

    @property
    def n_stations(self) -> int:
        return int(self.station.max()) + 1

    def __repr__(self) -> str:
        return f"FluidNetwork(classes={self.n_classes}, stations={self.n_stations})"


def _class_vector(name: str, value, K: int, positive: bool = False) -> np.ndarray:
    arr = np.array(value, dtype=float).reshape(-1) if np.ndim(value) else np.full(K, float(value))
    if arr.shape != (K,) or not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise _fail(name, value, f"must be {K} finite numbers >= 0", "give one value per class")
    if positive and np.any(arr <= 0):
        raise _fail(name, value, "has an entry <= 0", "every class needs a positive mean")
    return arr


def multiclass_network(
    station: Sequence[int],
    mean_s: Sequence[float],
    arrival_rate_per_s: Sequence[float],
    routing: np.ndarray,
) -> FluidNetwork:
    r"""A multiclass network with Markov routing, e.g. the Lu-Kumar or Rybko-Stolyar network.

    Parameters
    ----------
    station : sequence of int
        The station (0, 1, ...) serving each of the :math:`K` classes.
    mean_s : sequence of float
        Mean service seconds of each class, ``> 0``.
    arrival_rate_per_s : sequence of float
        Exogenous arrivals per second to each class, ``>= 0``.
    routing : array_like
        ``(K, K)``, entries ``>= 0``: expected class-``l`` jobs created per class-``c``
        completion. A row may sum to more than 1 (a fork); its spectral radius must be ``< 1``
        so that every job leaves.
    """
    st = np.asarray(station)
    if st.ndim != 1 or st.size == 0 or not np.issubdtype(st.dtype, np.integer) or st.min() < 0:
        raise _fail("station", station, "must be a non-empty list of integers >= 0",
                    "number the stations 0, 1, ...")  # fmt: skip
    K = st.size
    P = np.array(routing, dtype=float)
    if P.shape != (K, K) or not np.all(np.isfinite(P)) or np.any(P < 0):
        raise _fail("routing", routing, f"must be a ({K}, {K}) matrix of finite numbers >= 0",
                    "give P[c, l] = class-l jobs per class-c completion")  # fmt: skip
    if K and np.max(np.abs(np.linalg.eigvals(P))) >= 1:
        raise _fail("routing", routing, "has spectral radius >= 1, so jobs never leave",
                    "route every class to an exit eventually")  # fmt: skip
    return FluidNetwork(
        station=st.astype(int),
        mean_s=_class_vector("mean_s", mean_s, K, positive=True),
        arrival_rate_per_s=_class_vector("arrival_rate_per_s", arrival_rate_per_s, K),
        release=lambda D: P.T @ D,
        routing=P,
        labels=tuple(f"class {c}" for c in range(K)),
    )


# ---- the MoA network as a fluid network ----------------------------------------------------
MOA_DISCIPLINES = DISCIPLINES
"""Disciplines :func:`moa_priority` knows (static priority by class; FCFS within a level):
:data:`moa_stability.model.discipline.DISCIPLINES`."""


def _stage_weights(net: MoANetwork) -> list[np.ndarray]:
    """``w[m][j, i]``: jobs of stage ``m`` a prompt of origin ``j`` puts on device ``i``
    (1 on the origin, the inclusion probability on helpers; the aggregate stage ``M``)."""
    eye = np.eye(net.n)
    return [eye + net.inclusion(m).toarray() for m in range(net.M)] + [eye]


def _mean_by_stage(net: MoANetwork, stage: int) -> np.ndarray:
    if net.M == 0 or stage == 0:
        return net.service_time[PROPOSE]
    return net.service_time[AGGREGATE if stage == net.M else REFINE]


@cache
def _order_weights(d: int, k: int) -> np.ndarray:
    """Chance that the ``r``-th smallest of ``d`` helpers is the smallest of a uniform
    ``k``-subset: :math:`\\binom{d-r}{k-1}/\\binom{d}{k}`, ``r = 1..d``."""
    return np.array([comb(d - r, k - 1) for r in range(1, d + 1)], dtype=float) / comb(d, k)


def _expected_min(own: float, helpers: np.ndarray, k: int) -> float:
    r""":math:`E[\min(x_j, \min_{i \in S} x_i)]` over a uniform ``k``-subset :math:`S` of the
    helpers (:func:`_order_weights`)."""
    if k == 0:
        return own
    return float(_order_weights(helpers.size, k) @ np.minimum(np.sort(helpers), own))


MAX_FLUID_CLASSES = 1200
"""Most classes :math:`n^2(M+1)` of :func:`moa_fluid_network` (measured with per-type service
times at load 0.8, M = 2: 108 classes took 17 s to certify, 300 took 42 s and 588 took 76 s;
n = 10^4 ran out of memory building its classes)."""


def moa_fluid_network(net: MoANetwork) -> FluidNetwork:
    r"""The fluid limit of an MoA network, classes = device :math:`i` x origin :math:`j` x
    stage :math:`m` (layers :math:`0..M-1`, then the aggregate :math:`M` on the origin).

    Stage :math:`m` of origin :math:`j` puts :math:`w_m[j, i]` jobs per prompt on device
    :math:`i` (1 on :math:`j`, :math:`\pi_m[j, i]` on helpers). Every class serves its fluid in
    prompt order (FCFS, and FCFS within a priority level), so :math:`X_i = D_{i,j,m} /
    w_m[j, i]` is the number of origin-:math:`j` prompts whose stage-:math:`m` job at :math:`i`
    is done, and the prompts through the join are

    .. math:: J_{j,m} = E_S\big[\min(X_j, \min_{i \in S} X_i)\big]

    over the helper set :math:`S` of a prompt: exact for uniform selection (order statistics,
    :func:`_expected_min`); with explicit inclusion probabilities the joint law of :math:`S`
    is not given, and the fluid uses the lower bound :math:`\min_{i:\pi>0} X_i` (joins wait
    for every possible helper). Stage :math:`m+1` then receives :math:`w_{m+1}[j, i]\,J_{j,m}`.
    """
    n, M = net.n, net.M
    if n * n * (M + 1) > MAX_FLUID_CLASSES:
        raise ValueError(
            f"net: n={n} devices and M={M} layers give the fluid model up to n^2 (M+1) = "
            f"{n * n * (M + 1)} classes, over MAX_FLUID_CLASSES = {MAX_FLUID_CLASSES} (minutes "
            "of integration, and memory beyond); certify without it (stability_certificate("
            "..., fluid=False), or stability_report's default certificate=None)"
        )
    w = _stage_weights(net)
    classes = [(i, j, m) for m in range(M + 1) for j in range(n) for i in range(n) if w[m][j, i]]
    if M == 0:
        classes = [(j, j, 0) for j in range(n)]
    index = {c: a for a, c in enumerate(classes)}
    K = len(classes)
    station = np.array([c[0] for c in classes])
    mean = np.array([_mean_by_stage(net, m)[i] for i, _, m in classes])
    lam = net.arrival_rate
    arrivals = np.array([lam[j] * w[0][j, i] if m == 0 else 0.0 for i, j, m in classes])
    uniform = net.selection is None
    # For each (origin, stage < M): the own class, the helper classes and their weights.
    groups = []
    for m in range(M):
        for j in range(n):
            helpers = [i for i in range(n) if i != j and w[m][j, i] > 0]
            after = [i for i in range(n) if (i, j, m + 1) in index]
            nxt = (np.array([index[(i, j, m + 1)] for i in after]), w[m + 1][j, after])
            groups.append((index[(j, j, m)], np.array([index[(i, j, m)] for i in helpers], int),
                           np.array([w[m][j, i] for i in helpers]), net.k[m], nxt))  # fmt: skip

    def release(D: np.ndarray) -> np.ndarray:
        out = np.zeros(K)
        for own, hel, wh, km, nxt in groups:
            xs = D[hel] / wh
            joined = (
                _expected_min(D[own], xs, km) if uniform else min(D[own], xs.min(initial=np.inf))
            )
            out[nxt[0]] += nxt[1] * joined
        return out

    labels = tuple(f"device {i} origin {j} stage {m}" for i, j, m in classes)
    return FluidNetwork(station, mean, arrivals, release, None, labels, tuple(classes))


def moa_priority(net: MoANetwork, fluid: FluidNetwork, discipline: str) -> np.ndarray | None:
    """Priority level of every class of :func:`moa_fluid_network` (0 served first), ``None``
    for FCFS.

    ``later-layer-first`` ranks stage :math:`M - m`, ``earlier-layer-first`` stage :math:`m`,
    ``aggregate-first`` puts the aggregate stage ahead of one FCFS level of the rest,
    ``own-user-first`` the device's own prompts (origin = device) ahead of helper jobs.
    """
    if discipline_field(discipline) == "fcfs":
        return None
    return np.array([priority_rank(discipline, net.M, *c) for c in fluid.classes])


# ---- integration -----------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class FluidPath:
    r"""A fluid path: the content of every class on a time grid.

    Attributes
    ----------
    times_s : ndarray
        Sample times, seconds.
    fluid : ndarray
        ``(len(times_s), K)`` fluid (jobs) per class.
    growth_rate_per_s : float
        Least-squares slope of the total fluid over the second half of the horizon, jobs/s.
    drained : bool
        Whether the total fluid ends below ``1e-6`` of its largest value (or is never > 0).
    drain_time_s : float
        First sample time from which it stays there (``nan`` when it does not drain).
    """

    times_s: np.ndarray
    fluid: np.ndarray
    growth_rate_per_s: float
    drained: bool
    drain_time_s: float

    @property
    def total(self) -> np.ndarray:
        """Total fluid at each sample time."""
        return self.fluid.sum(axis=1)

    def to_frame(self) -> pd.DataFrame:
        """One row per sample time: the total and each class's fluid."""
        df = pd.DataFrame(self.fluid, index=pd.Index(self.times_s, name="time_s"))
        df.insert(0, "total", self.total)
        return df

    def __repr__(self) -> str:
        return (
            f"FluidPath(horizon_s={self.times_s[-1]:.6g}, final_total={self.total[-1]:.6g}, "
            f"growth_rate_per_s={self.growth_rate_per_s:.6g}, drained={self.drained})"
        )


def integrate_fluid(
    fluid: FluidNetwork,
    initial: Sequence[float] | float = 0.0,
    horizon_s: float = 100.0,
    step_s: float | None = None,
    priority: Sequence[int] | None = None,
    samples: int = 201,
) -> FluidPath:
    r"""Integrate the fluid model from ``initial`` over ``horizon_s`` seconds.

    Each station serves at rate 1 (seconds of work per second) while it holds fluid. Under
    FCFS (``priority=None``) it serves the oldest fluid first (the initial content first);
    with ``priority`` (one level per class, 0 first) the oldest fluid of its lowest non-empty
    level, preemptively. Per step :math:`h`, exogenous fluid :math:`\alpha h` and the release
    caused by the previous step's completions join their levels, then each station serves
    :math:`h` seconds of work front to back, splitting the last step-packet proportionally.

    Parameters
    ----------
    fluid : FluidNetwork
        The network.
    initial : float or sequence of float
        Initial fluid per class (a scalar for every class), ``>= 0``.
    horizon_s : float
        Seconds to integrate, ``> 0``.
    step_s : float, optional
        Step :math:`h`; default ``min(mean_s) / 20``, and at most ``horizon_s / 2000``.
    priority : sequence of int, optional
        Priority level of each class (0 highest); ``None`` is FCFS.
    samples : int
        Number of sample times returned (including 0 and the horizon), ``>= 3``.
    """
    K = fluid.n_classes
    x0 = _class_vector("initial", initial, K)
    if not (isinstance(horizon_s, (int, float)) and math.isfinite(horizon_s) and horizon_s > 0):
        raise _fail("horizon_s", horizon_s, "must be a finite number > 0", "pass e.g. 100.0")
    h = min(float(fluid.mean_s.min()) / 20, horizon_s / 2000) if step_s is None else step_s
    if not (isinstance(h, (int, float)) and math.isfinite(h) and 0 < h <= horizon_s):
        raise _fail("step_s", step_s, "must be a number in (0, horizon_s]", "leave it None")
    samples = count_field("samples", samples, 3)
    level = np.zeros(K, int) if priority is None else np.asarray(priority)
    if level.shape != (K,) or not np.issubdtype(level.dtype, np.integer):
        raise _fail("priority", priority, f"must be {K} integer levels", "give one per class")
    # queues[s][l]: deque of (class indices, amounts) packets, oldest first.
    stations = []
    for s in range(fluid.n_stations):
        members = np.flatnonzero(fluid.station == s)
        levels = sorted(set(level[members].tolist()))
        stations.append([(members[level[members] == lv], deque()) for lv in levels])
    for levels in stations:
        for cls, queue in levels:
            if x0[cls].sum() > 0:
                queue.append(x0[cls].copy())
    steps = int(math.ceil(horizon_s / h))
    keep = np.unique(np.linspace(0, steps, samples).round().astype(int))
    out = np.zeros((keep.size, K))
    x, done, released = x0.copy(), np.zeros(K), fluid.release(np.zeros(K))
    out[0] = x
    row = 1
    for step in range(1, steps + 1):
        now = fluid.release(done)
        inflow = fluid.arrival_rate_per_s * h + (now - released)
        released = now
        x += inflow
        for levels in stations:
            capacity = h
            for cls, queue in levels:
                packet = inflow[cls]
                if packet.sum() > 0:
                    queue.append(packet.copy())
                while queue and capacity > 0:
                    front = queue[0]
                    work = float(fluid.mean_s[cls] @ front)
                    served = front if work <= capacity else front * (capacity / work)
                    capacity -= min(work, capacity)
                    x[cls] -= served
                    done[cls] += served
                    if served is front:
                        queue.popleft()
                    else:
                        queue[0] = front - served
        np.maximum(x, 0.0, out=x)  # rounding only: a class never serves more than it holds
        if row < keep.size and step == keep[row]:
            out[row] = x
            row += 1
    times = keep * h
    total = out.sum(axis=1)
    half = times >= times[-1] / 2
    slope = float(np.polyfit(times[half], total[half], 1)[0])
    above = np.flatnonzero(total > 1e-6 * total.max())
    drained = bool(above.size == 0 or above[-1] < total.size - 1)
    first_empty = 0 if above.size == 0 else above[-1] + 1
    drain_time = float(times[first_empty]) if drained else math.nan
    return FluidPath(times, out, slope, drained, drain_time)


__all__ = [
    "MOA_DISCIPLINES",
    "FluidNetwork",
    "FluidPath",
    "fluid_growth_rate",
    "integrate_fluid",
    "moa_fluid_network",
    "moa_priority",
    "multiclass_network",
]
