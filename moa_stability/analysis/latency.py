r"""Analytic prompt latency: per-device M/G/1 queues, layer joins, and their sum.

A prompt born at device :math:`j` spends, in layer :math:`m`, the time until the slowest of its
:math:`k_m + 1` jobs is done (the join), and after the last layer its aggregate job's sojourn at
:math:`j`. This module predicts the law of that sum in milliseconds, from four approximations:

1. **Poisson streams, M/G/1 per device.** Device :math:`i` is a FCFS single server fed at rate
   :math:`\lambda_i^{\rm tot} = \sum_c r_{i,c}` (:func:`~moa_stability.model.loads.job_rates`)
   by a mixture of job types; a job is of type :math:`c` with probability
   :math:`r_{i,c}/\lambda_i^{\rm tot}`. Under FCFS every type waits the same :math:`W_i`, whose
   law is Pollaczek-Khinchine's geometric sum of equilibrium service times (Beneš):

   .. math::

       W_i \overset{d}{=} \sum_{l=1}^{N} Y_l,\quad P(N = n) = (1-\rho_i)\rho_i^n,\quad
       P(Y \le x) = B_{e,i}(x) = \frac{1}{E[S_i]}\int_0^x (1 - B_i(y))\,dy,

   i.e. :math:`\widehat w_i = (1-\rho_i)/(1 - \rho_i \widehat b_{e,i})` in transform space. A
   type-:math:`c` job's sojourn is :math:`W_i + S_{i,c}` (independent).
2. **Independent siblings** (``method="bound"``): the join of origin :math:`j` in layer
   :math:`m` has CDF :math:`F_j(x)\,E_H\big[\prod_{i \in H} F_i(x)\big]`, the expectation over
   the random helper set :math:`H` taken exactly: for uniform :math:`k`-subsets of the
   :math:`d` neighbours it is :math:`e_k(F_{\mathcal N(j)})/\binom{d}{k}` (elementary symmetric
   polynomial), for inclusion probabilities :math:`\pi` it is the average over
   :math:`u \sim U[0,1)` of the systematic-sampling set that the simulator draws (piecewise
   constant in :math:`u`, so the average is a finite sum). Independence is an upper bound
   for one random-subset fork-join stage and exact as :math:`k = o(n^{1/4})` (Wang,
   Harchol-Balter et al., Queueing Systems 2019); for the whole prompt it is not (item 4).
3. **Correlated siblings** (``method="estimate"``): sibling queues share arrivals (the jobs
   of one stage arrive together), which makes their sojourns positively correlated and the
   join shorter than under independence. For the fully shared fork-join of :math:`K`
   homogeneous M/M/1 queues, Nelson and Tantawi (1988), exact at :math:`K=2` (Flatto and
   Hahn 1984), give the mean join in units of :math:`1/(\mu-\lambda)`

   .. math:: T_K(\rho) = \Big[\tfrac{H_K}{H_2} + \tfrac{4}{11}\big(1 - \tfrac{H_K}{H_2}\big)
       \rho\Big]\tfrac{12 - \rho}{8},

   while :math:`K` independent copies give :math:`H_K`. The join behaves as the maximum of
   :math:`a_{FJ} < K` independent copies, with :math:`H(a_{FJ}) = T_K(\rho)`
   (:math:`H(a) = \psi(a+1) + \gamma`). In the MoA the siblings share only part of their
   traffic: with overlap :math:`q \in [0, 1]` (below) the effective count is
   :math:`a = K - q\,(K - a_{FJ})`, and the estimate's join CDF is the bound's raised to the
   power :math:`a/K` (for homogeneous M/M/1 queues at :math:`q = 1` its mean is
   Nelson-Tantawi's, exact for :math:`K = 2`).
   The overlap of origin :math:`j` and helper :math:`i` is the rate of jobs they receive
   together (same prompt, same stage) over :math:`\sqrt{r_j r_i}` (their total job rates),
   summed over layers: :math:`\lambda_j\pi[j,i] + \lambda_i\pi[i,j]` plus the prompts of
   third devices that pick both, :math:`\sum_o \lambda_o \pi[o,j]\pi[o,i]\kappa_o`
   (:math:`\kappa_o = \frac{(k-1)d_o}{k(d_o-1)}`, exact for uniform subsets); :math:`q` is its
   :math:`\pi`-weighted mean over the helpers and :math:`\rho` the mean load of the siblings.
   It is 1 for :math:`n = k + 1` (a plain fork-join) and tends to 0 as :math:`n` grows, where
   the bound becomes exact.
4. **Stages**: the prompt latency is the sum of its layers' joins and its aggregate sojourn,
   convolved as independent for ``bound``. Its stages are positively correlated (the origin
   takes part in every one, and a late join means a congested origin), which raises the mean
   and widens the law; ``estimate`` stretches the law and mixes in the comonotone sum of the
   stages, with two constants fitted to simulation (:func:`_cross_stage`).

Numerics: one grid of step :math:`h` for all devices; service and equilibrium laws are
discretised (service: mean-preserving mass dispersal from :math:`E[\min(S, x)] = E[S]
B_e(x)`; equilibrium law: rounding), :math:`W` is computed by FFT of the geometric sum, and
convolutions and maxima are taken on the grid. The range is doubled until the tail beyond it
is below :data:`TAIL_TOLERANCE`. Means of stages with one job (``k_m = 0``, the aggregate,
``M = 0``) are exact from Pollaczek-Khinchine, :math:`E[W] = \lambda E[S^2]/(2(1-\rho))`; so
``M = 0`` gives the M/G/1 mean sojourn exactly and its quantiles to grid accuracy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from numba import njit
from scipy import special

from ..model.loads import job_rates
from ..model.network import AGGREGATE, JOB_TYPES, PROPOSE, REFINE, MoANetwork, _fail

METHODS = ("estimate", "bound")
SERVICES = ("exponential", "deterministic", "gamma", "lognormal")
"""Service-time laws (each with mean ``service_time[c, i]``; gamma and lognormal take ``scv``),
the same names as :func:`moa_stability.simulate` uses."""
GRID_POINTS = 4096
"""Default number of grid points."""
TAIL_TOLERANCE = 1e-9
"""Largest probability mass allowed beyond the grid's range (else the range is doubled)."""
_MAX_DOUBLINGS = 12
CROSS_STAGE_MEAN = 0.07
"""Fitted :math:`c_\\mu` of the estimate's cross-stage mean correction (docs/latency.md)."""
CROSS_STAGE_SPREAD = 0.6
"""Fitted :math:`c_w` of the estimate's comonotone weight (docs/latency.md)."""
_QUANTILES = (0.5, 0.95, 0.99)


# ---- service laws -------------------------------------------------------------------------------
def _second_moment(service: str, scv: float, mean: np.ndarray) -> np.ndarray:
    """:math:`E[S^2] = E[S]^2 (1 + c_s^2)`."""
    c2 = {"exponential": 1.0, "deterministic": 0.0}.get(service, scv)
    return mean**2 * (1.0 + c2)


def _partial_moments(
    service: str, scv: float, mean: float, x: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r""":math:`P(S \le x)`, :math:`E[S; S \le x]` and :math:`E[S^2; S \le x]` for one law of mean
    ``mean`` (gamma with shape :math:`a`: :math:`E[S^p; S \le x] = E[S^p] P(a + p, x/\theta)`;
    lognormal: :math:`E[S^p] \Phi((\ln x - \mu - p\sigma^2)/\sigma)`)."""
    x = np.maximum(x, 0.0)
    second = float(_second_moment(service, scv, np.float64(mean)))
    if service == "deterministic":
        step = (x >= mean).astype(float)
        return step, mean * step, second * step
    if service == "lognormal":
        sigma = math.sqrt(math.log1p(scv))
        with np.errstate(divide="ignore"):
            z = (np.log(x) - math.log(mean) + sigma**2 / 2) / sigma
        return special.ndtr(z), mean * special.ndtr(z - sigma), second * special.ndtr(z - 2 * sigma)
    shape = 1.0 if service == "exponential" else 1.0 / scv
    z = x / (mean / shape)
    return (
        special.gammainc(shape, z),
        mean * special.gammainc(shape + 1.0, z),
        second * special.gammainc(shape + 2.0, z),
    )


def _disperse(lev: np.ndarray, h: float) -> np.ndarray:
    r"""Mass at :math:`0, h, 2h, \dots` from :math:`\ell(x) = E[\min(X, x)]` at
    :math:`x = -h, 0, h, \dots`: :math:`p_0 = 1 - \ell(h)/h`,
    :math:`p_j = (2\ell(jh) - \ell((j-1)h) - \ell((j+1)h))/h` (mass dispersal: the mean is
    kept exactly, however coarse the grid)."""
    pmf = (2 * lev[1:-1] - lev[:-2] - lev[2:]) / h
    pmf[0] = 1.0 - lev[2] / h
    return np.maximum(pmf, 0.0)


def _grid_laws(
    service: str, scv: float, mean: float, h: float, L: int
) -> tuple[np.ndarray, np.ndarray]:
    r"""The service law and its equilibrium law :math:`B_e` on the grid, both by mass dispersal
    from their limited expectations (one evaluation of the partial moments for both):

    .. math::

        E[\min(S, x)] = E[S; S \le x] + x P(S > x),\qquad
        E[\min(Y, x)] = \int_0^x (1 - B_e) = \frac{E[S^2; S \le x]/2 + x E[S; S > x]
        - x^2 P(S > x)/2}{E[S]}.

    Keeping :math:`E[Y]` exact keeps :math:`E[W]` exact, also when the step exceeds the
    service time (loads near 1)."""
    x = np.maximum(h * np.arange(-1, L + 1), 0.0)
    cdf, m1, m2 = _partial_moments(service, scv, mean, x)
    tail = 1.0 - cdf
    job = _disperse(m1 + x * tail, h)
    equilibrium = _disperse((m2 / 2 + x * (mean - m1) - x**2 * tail / 2) / mean, h)
    return job, equilibrium


# ---- grouping devices ---------------------------------------------------------------------------
_HASH_MULTIPLIERS = np.random.default_rng(13).integers(1, 2**62, 64, dtype=np.uint64) | np.uint64(1)


def _unique_rows(rows: np.ndarray, first_seen: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The distinct rows of a 2-D array and each row's group: ``np.unique(rows, axis=0,
    return_inverse=True)`` (lexicographic order; with ``first_seen``, in order of first
    appearance), without its sort of ``n`` wide rows, which takes seconds at 10^6 devices.

    Rows are hashed to one 64-bit word (exact bits, random odd multipliers), the words are
    made unique, and every row is compared with its group's first row; a collision (never seen,
    about ``n^2 / 2^64``) falls back to ``np.unique``.
    """
    bits = np.ascontiguousarray(rows).view(np.uint64).reshape(rows.shape[0], -1)
    width = bits.shape[1]
    weights = _HASH_MULTIPLIERS[np.arange(width) % _HASH_MULTIPLIERS.size]
    with np.errstate(over="ignore"):
        word = (bits * weights).sum(axis=1, dtype=np.uint64)
    _, first, inverse = np.unique(word, return_index=True, return_inverse=True)
    if not np.array_equal(rows[first[inverse]], rows):
        uniq, inverse = np.unique(rows, axis=0, return_inverse=True)
        first = np.unique(inverse, return_index=True)[1]
    order = np.argsort(first) if first_seen else np.lexsort(rows[first].T[::-1])
    rank = np.empty(order.size, dtype=np.int64)
    rank[order] = np.arange(order.size)
    return rows[first[order]], rank[inverse.ravel()]


# ---- per-device queues --------------------------------------------------------------------------
@dataclass(frozen=True)
class _Classes:
    """Devices grouped by identical job rates and service means (they share one queue law)."""

    of_device: np.ndarray  # (n,) class index
    rates: np.ndarray  # (3, U) jobs/s per type
    means: np.ndarray  # (3, U) mean seconds per type
    load: np.ndarray  # (U,)
    wait_mean: np.ndarray  # (U,) exact P-K mean wait


def _classes(net: MoANetwork, rates: np.ndarray, service: str, scv: float) -> _Classes:
    key = np.vstack([rates, net.service_time])
    uniq, inverse = _unique_rows(key.T)
    r, s = uniq.T[:3], uniq.T[3:]
    load = (r * s).sum(axis=0)
    second = (r * _second_moment(service, scv, s)).sum(axis=0)
    wait = second / (2.0 * (1.0 - load))
    return _Classes(inverse.ravel(), r, s, load, wait)


def _sojourn_cdfs(cls: _Classes, service: str, scv: float, h: float, L: int) -> np.ndarray:
    """``[u, c, j]`` = P(sojourn of a type-c job at class u <= (j + 1/2) h)."""
    U = cls.load.size
    out = np.ones((U, len(JOB_TYPES), L))
    for u in range(U):
        busy = cls.rates[:, u] > 0
        if not busy.any():
            continue
        work = cls.rates[:, u] * cls.means[:, u]
        types = np.flatnonzero(busy)
        laws = {c: _grid_laws(service, scv, cls.means[c, u], h, L) for c in types}
        be = sum((work[c] / cls.load[u]) * laws[c][1] for c in types)
        wait_hat = (1.0 - cls.load[u]) / (1.0 - cls.load[u] * np.fft.rfft(be))
        for c in types:
            pmf = np.fft.irfft(wait_hat * np.fft.rfft(laws[c][0]), L)
            out[u, c] = np.minimum(np.maximum.accumulate(np.cumsum(pmf)), 1.0)
    return out


# ---- sibling overlap (for the estimate) ---------------------------------------------------------
def _kappa(k: int, degree: np.ndarray) -> np.ndarray:
    r""":math:`P(a, b \in H)/(\pi_a \pi_b) = (k-1) d / (k (d-1))` for uniform k-subsets."""
    if k <= 1:
        return np.zeros(degree.shape)
    return (k - 1) * degree / (k * np.maximum(degree - 1, 1))


def _overlaps(net: MoANetwork, rates: np.ndarray) -> np.ndarray:
    """``(M, n)``: per layer and origin, the pi-weighted mean overlap with its helpers."""
    lam, total = net.arrival_rate, rates.sum(axis=0)
    out = np.zeros((net.M, net.n))
    if net.M == 0 or max(net.k) == 0:
        return out
    scale = 1.0 / np.sqrt(np.where(total > 0, total, np.inf))
    if net.is_complete and net.selection is None and net.n > 2:
        # Uniform on the complete graph: every pair shares the same form of traffic, summed
        # over layers, without building n x n matrices.
        n, Lam = net.n, lam.sum()
        direct = sum(km / (n - 1) for km in net.k)
        third = sum(km * (km - 1) / ((n - 1) * (n - 2)) for km in net.k)
        # The overlap sums over layers, and every helper is as likely: one value for all layers.
        for m, km in enumerate(net.k):
            if km == 0:
                continue
            # mean over i != j of [direct (lam_j + lam_i) + third (Lam - lam_j - lam_i)] s_j s_i
            s_sum, ls_sum = scale.sum(), (lam * scale).sum()
            a = (direct - third) * lam + third * Lam
            others = a * (s_sum - scale) + (direct - third) * (ls_sum - lam * scale)
            out[m] = scale * others / (n - 1)
        return out
    if net.selection is None and not net.is_complete:
        # Uniform on a sparse graph: pi[j, i] = k_m / d_j on the edges, so the overlap of an
        # edge needs only its two ends and their common neighbours (a kernel, no n x n products).
        deg = net.degrees.astype(float)
        third = sum(lam * _kappa(km, deg) * (km / deg) ** 2 for km in net.k if km)
        adj = net.topology
        mean = _uniform_edge_overlap(adj.indptr, adj.indices, sum(net.k) * lam / deg, third, scale)
        for m, km in enumerate(net.k):
            if km:
                out[m] = mean
        return np.minimum(out, 1.0)
    shared = sp.csr_array((net.n, net.n))
    pis = [net.inclusion(m) for m in range(net.M)]
    for m, pi in enumerate(pis):
        flow = sp.diags_array(lam) @ pi
        weight = lam * _kappa(net.k[m], net.degrees.astype(float))
        shared = shared + flow + flow.T + pi.T @ sp.diags_array(weight) @ pi
    overlap = sp.diags_array(scale) @ shared.multiply(net.adjacency) @ sp.diags_array(scale)
    for m, pi in enumerate(pis):
        if net.k[m]:
            out[m] = np.asarray(pi.multiply(overlap).sum(axis=1)).ravel() / net.k[m]
    return np.minimum(out, 1.0)


@njit(cache=True)
def _uniform_edge_overlap(indptr, indices, direct, third, scale):  # pragma: no cover - numba
    r"""Per origin :math:`j`: :math:`\frac{1}{d_j}\sum_{i \in \mathcal N(j)} s_j s_i
    \big(\text{direct}_j + \text{direct}_i + \sum_{o \in \mathcal N(j) \cap
    \mathcal N(i)} \text{third}_o\big)`. Each edge is visited once (``j < i``) and credited
    to both ends; its common neighbours come from merging the two sorted adjacency rows. The
    per-device numbers sit side by side (one cache line per random visit, not three)."""
    n = indptr.size - 1
    device = np.zeros((n, 3))  # direct, scale, accumulated total
    device[:, 0] = direct
    device[:, 1] = scale
    for j in range(n):
        for p in range(indptr[j], indptr[j + 1]):
            i = indices[p]
            if i <= j:
                continue
            shared = device[j, 0] + device[i, 0]
            a, b = indptr[j], indptr[i]
            while a < indptr[j + 1] and b < indptr[i + 1]:
                if indices[a] == indices[b]:
                    shared += third[indices[a]]
                    a += 1
                    b += 1
                elif indices[a] < indices[b]:
                    a += 1
                else:
                    b += 1
            device[j, 2] += device[i, 1] * shared
            device[i, 2] += device[j, 1] * shared
    out = np.zeros(n)
    for j in range(n):
        if indptr[j + 1] > indptr[j]:
            out[j] = scale[j] * device[j, 2] / (indptr[j + 1] - indptr[j])
    return out


def _harmonic(a: float) -> float:
    """:math:`H(a) = \\psi(a + 1) + \\gamma`, the harmonic numbers extended to real ``a``."""
    return float(special.digamma(a + 1.0)) + np.euler_gamma


def _effective_siblings(K: int, rho: float, q: float) -> float:
    r"""Independent copies :math:`a` whose maximum matches the Nelson-Tantawi join, blended with
    the overlap: :math:`a = K - q (K - a_{FJ})`, :math:`H(a_{FJ}) = T_K(\rho)`."""
    HK = _harmonic(float(K))
    target = (HK / 1.5 + (4.0 / 11.0) * (1.0 - HK / 1.5) * rho) * (12.0 - rho) / 8.0
    # Newton from a = 1 (H(1) = 1 <= target): H is increasing and concave, so the iterates
    # rise monotonically to the root without overshooting.
    a = 1.0
    for _ in range(100):
        step = (target - _harmonic(a)) / float(special.polygamma(1, a + 1.0))
        a += step
        if step <= 1e-13 * a:
            break
    return K - q * (K - a)


# ---- joins --------------------------------------------------------------------------------------
def _uniform_join(F: np.ndarray, counts: dict[int, int], k: int) -> np.ndarray:
    r""":math:`E_H[\prod_{i \in H} F_i]` over uniform k-subsets: :math:`e_k/\binom{d}{k}`,
    with the neighbours grouped into classes of equal ``F`` (``counts``: class -> how many)."""
    d = sum(counts.values())
    poly = [np.ones(F.shape[1])] + [np.zeros(F.shape[1]) for _ in range(k)]
    for u, c in counts.items():
        powers = [np.ones(F.shape[1])]
        for _ in range(min(c, k)):
            powers.append(powers[-1] * F[u])
        poly = [
            sum(math.comb(c, b) * powers[b] * poly[a - b] for b in range(min(a, c) + 1))
            for a in range(k + 1)
        ]
    return poly[k] / math.comb(d, k)


def _systematic_join(F: np.ndarray, helper_class: np.ndarray, pi: np.ndarray, k: int):
    r""":math:`E_u[\prod_{i \in H(u)} F_i]` for systematic sampling: helper ``p`` is drawn when
    some :math:`u + r` (:math:`r < k`) lies in :math:`[c_{p-1}, c_p)`; the set is constant
    between the fractional parts of the cumulative sums, so the average is a finite sum."""
    cum = np.cumsum(pi)
    cum *= k / cum[-1]
    cum[-1] = k  # as the simulator rescales it, so that u + k - 1 < k always finds a helper
    cuts = np.unique(np.concatenate([[0.0, 1.0], np.mod(cum[:-1], 1.0)]))
    result = np.zeros(F.shape[1])
    for lo, hi in zip(cuts[:-1], cuts[1:], strict=True):
        if hi - lo <= 0:
            continue
        points = 0.5 * (lo + hi) + np.arange(k)
        chosen = np.minimum(np.searchsorted(cum, points, side="right"), cum.size - 1)
        result += (hi - lo) * np.prod(F[helper_class[chosen]], axis=0)
    return result


def _layer_joins(
    net: MoANetwork, cls: _Classes, F: np.ndarray, m: int, q: np.ndarray, method: str
) -> tuple[np.ndarray, bool, list[np.ndarray]]:
    """Per origin the group of its layer-``m`` join law; whether each join is a single job's
    sojourn (``k_m = 0``, so its P-K mean is exact); per group the join CDF. Origins with the
    same own class, helper classes/probabilities (and overlap) share one join, which is what
    keeps large homogeneous networks cheap."""
    c = PROPOSE if m == 0 else REFINE
    k = net.k[m]
    Fc = F[:, c]
    group = np.empty(net.n, np.int64)
    joins: list[np.ndarray] = []
    seen: dict[tuple, int] = {}
    own = cls.of_device
    if k == 0:
        for u in np.unique(own):
            group[own == u] = len(joins)
            joins.append(Fc[u])
        return group, True, joins
    pi = net.inclusion(m) if net.selection is not None else None
    adj = None if net.is_complete else net.topology
    all_counts = np.bincount(own, minlength=Fc.shape[0]) if net.is_complete else None
    rho = cls.load[own]

    def join_of(j: int) -> np.ndarray:
        if pi is not None:
            lo, hi = pi.indptr[j], pi.indptr[j + 1]
            helpers, probs = pi.indices[lo:hi], pi.data[lo:hi]
            helper_part = _systematic_join(Fc, own[helpers], probs, k)
            sib_rho = (rho[j] + probs @ rho[helpers]) / (k + 1)
        else:
            if adj is None:
                counts = all_counts.copy()
                counts[own[j]] -= 1
                sib_rho = (rho[j] + k * (counts @ cls.load) / (net.n - 1)) / (k + 1)
            else:
                helpers = adj.indices[adj.indptr[j] : adj.indptr[j + 1]]
                counts = np.bincount(own[helpers], minlength=Fc.shape[0])
                sib_rho = (rho[j] + k * rho[helpers].mean()) / (k + 1)
            helper_part = _uniform_join(Fc, {int(u): int(v) for u, v in enumerate(counts) if v}, k)
        join = Fc[own[j]] * helper_part
        if method == "estimate":
            a = _effective_siblings(k + 1, float(sib_rho), float(q[m, j]))
            join = join ** (a / (k + 1))
        return join

    signatures = _uniform_signatures(net, own, q[m] if method == "estimate" else None)
    if pi is None and signatures is not None:
        _, group = _unique_rows(signatures, first_seen=True)
        first = np.unique(group, return_index=True)[1]
        return group, False, [join_of(int(j)) for j in first]
    for j in range(net.n):
        if pi is not None:
            lo, hi = pi.indptr[j], pi.indptr[j + 1]
            sig = (own[j], own[pi.indices[lo:hi]].tobytes(), pi.data[lo:hi].round(12).tobytes())
        elif adj is None:
            sig = (own[j],)
        else:
            sig = (
                own[j],
                np.bincount(own[adj.indices[adj.indptr[j] : adj.indptr[j + 1]]]).tobytes(),
            )
        if method == "estimate":
            sig += (round(float(q[m, j]), 9),)
        if sig not in seen:
            seen[sig] = len(joins)
            joins.append(join_of(j))
        group[j] = seen[sig]
    return group, False, joins


# A padded (n, max degree) table of neighbour classes beyond this many cells is left to the
# per-device loop (a star graph would need n^2).
_MAX_SIGNATURE_CELLS = 50_000_000
# Up to this many device classes, neighbour classes are counted by sparse products instead.
_FEW_CLASSES = 4


def _uniform_signatures(
    net: MoANetwork, own: np.ndarray, q: np.ndarray | None
) -> np.ndarray | None:
    """Per origin, under uniform selection, what its join depends on, as one int64 row: its
    class, its neighbours' classes (counts per class, or sorted and padded with -1; none on
    the complete graph, where they follow from its own), and with ``q`` its overlap rounded
    to 1e-9. ``None`` where the selection is explicit or the table would be too large."""
    if net.selection is not None:
        return None
    cols = [own[:, None].astype(np.int64)]
    if not net.is_complete:
        adj = net.topology
        deg = np.diff(adj.indptr)
        classes = int(own.max()) + 1
        if classes <= _FEW_CLASSES:
            # Neighbour class counts by one sparse product per class: no (n, degree) table.
            counts = [adj @ (own == u).astype(float) for u in range(classes)]
            cols.append(np.rint(np.column_stack(counts)).astype(np.int64))
        elif net.n * int(deg.max()) > _MAX_SIGNATURE_CELLS:
            return None
        else:
            if deg.min() == deg.max():  # regular: the rows are the table
                table = own[adj.indices].reshape(net.n, -1).astype(np.int64)
            else:
                table = np.full((net.n, int(deg.max())), -1, dtype=np.int64)
                row = np.repeat(np.arange(net.n), deg)
                table[row, np.arange(adj.nnz) - adj.indptr[row]] = own[adj.indices]
            table.sort(axis=1)
            cols.append(table)
    if q is not None:
        cols.append(np.round(q, 9).view(np.int64)[:, None])
    return np.hstack(cols)


def _cross_stage(
    cdf: np.ndarray,
    mean: float,
    stages: list[np.ndarray],
    rho: float,
    M: int,
    h: float,
    scv: float,
) -> tuple[np.ndarray, float]:
    r"""The estimate's correction for the positive correlation of a prompt's stages.

    A prompt revisits its origin in every stage, and a join tends to end late when the
    origin is congested, so its next stage starts in a congested queue. Two fitted terms
    (``docs/latency.md``), damped by :math:`g = 2/(1 + c_s^2)` of the service law (variable
    service times do not carry over between stages): the mean grows by
    :math:`1 + c_\mu g M \rho_j^2` (the law is stretched by that factor), and a weight
    :math:`w = c_w g \rho_j` of the law is the comonotone sum :math:`\sum_s Q_s(U)` of the
    stage quantile functions instead of their convolution (same mean, wider spread).
    """
    L = cdf.size
    mid = h * (np.arange(L) + 0.5)
    u = (np.arange(L) + 0.5) / L
    total = sum(np.interp(u, np.maximum.accumulate(c), mid) for c in stages)
    como = np.interp(mid, total, u, left=0.0, right=1.0)
    damp = 2.0 / (1.0 + scv)
    w = min(CROSS_STAGE_SPREAD * damp * rho, 1.0)
    mixed = (1.0 - w) * cdf + w * como
    stretch = 1.0 + CROSS_STAGE_MEAN * damp * M * rho**2
    return np.interp(mid / stretch, mid, mixed, left=0.0), mean * stretch


# ---- the result ---------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class LatencyResult:
    r"""Predicted prompt latency (birth to answer), network-wide and per origin device.

    Attributes
    ----------
    method : {"estimate", "bound"}
    service : str
        Service-time law; ``scv`` its squared coefficient of variation.
    mean_s : float
        Network-wide mean latency, seconds: origins weighted by their arrival rates.
    origin_mean_s : ndarray (n,)
        Mean latency of prompts born at each device (NaN where no prompts are born).
    origin_quantiles_s : ndarray (n, 3)
        Their p50, p95, p99, seconds.
    loads : ndarray (n,)
        :math:`\rho_i`.
    grid_step_s : float
        Grid step :math:`h`; quantiles are accurate to about :math:`h`.
    cdf : ndarray
        Network-wide CDF at :math:`(j + 1/2) h`, ``j = 0..len-1``.
    """

    method: str
    service: str
    scv: float
    mean_s: float
    origin_mean_s: np.ndarray
    origin_quantiles_s: np.ndarray
    arrival_rate: np.ndarray = field(repr=False)
    loads: np.ndarray = field(repr=False)
    grid_step_s: float
    cdf: np.ndarray = field(repr=False)

    def quantile(self, q: float | np.ndarray) -> float | np.ndarray:
        """Network-wide latency quantile(s), seconds, for ``q`` in (0, 1)."""
        return _quantile(self.cdf, self.grid_step_s, q)

    def to_frame(self) -> pd.DataFrame:
        """One row per origin device, then a ``network`` row: rate, mean, p50, p95, p99."""
        names = [f"p{round(100 * p)}_s" for p in _QUANTILES]
        frame = pd.DataFrame(
            {"arrival_rate_per_s": self.arrival_rate, "mean_s": self.origin_mean_s}
            | {name: self.origin_quantiles_s[:, i] for i, name in enumerate(names)},
            index=pd.Index([str(i) for i in range(self.origin_mean_s.size)], name="origin"),
        )
        frame.loc["network"] = [self.arrival_rate.sum(), self.mean_s] + [
            self.quantile(p) for p in _QUANTILES
        ]
        return frame

    def __str__(self) -> str:
        p50, p95, p99 = (self.quantile(p) for p in _QUANTILES)
        return (
            f"Latency ({self.method}, {self.service} service, max load {self.loads.max():.4g}):"
            f" mean {self.mean_s:.4g} s, p50 {p50:.4g} s, p95 {p95:.4g} s, p99 {p99:.4g} s"
        )

    def __repr__(self) -> str:
        return (
            f"LatencyResult(method={self.method!r}, service={self.service!r}, "
            f"mean_s={self.mean_s:.6g}, p95_s={self.quantile(0.95):.6g}, "
            f"n={self.origin_mean_s.size}, grid_step_s={self.grid_step_s:.3g})"
        )


def _quantile(cdf: np.ndarray, h: float, q: Any) -> float | np.ndarray:
    arr = np.asarray(q, dtype=float)
    if arr.size == 0 or not np.all((arr > 0) & (arr < 1)):
        raise _fail("q", q, "must lie in (0, 1)", "pass a probability such as 0.95")
    if np.any(arr > cdf[-1]):
        raise _fail(
            "q", q, f"is beyond the grid (its CDF ends at {cdf[-1]:.12g})", "ask a lower quantile"
        )
    j = np.searchsorted(cdf, arr, side="left")
    before = np.where(j > 0, cdf[np.maximum(j - 1, 0)], 0.0)
    width = np.maximum(cdf[j] - before, 1e-300)
    # The CDF is known at (j + 1/2) h and linear between (mass spread over each cell).
    x = h * (j - 0.5 + (arr - before) / width)
    x = np.maximum(x, 0.0)
    return float(x) if x.ndim == 0 else x


# ---- the public function ------------------------------------------------------------------------
def _check_stable(net: MoANetwork, load: np.ndarray) -> None:
    over = np.flatnonzero(load >= 1)
    if over.size:
        worst = float(load.max())
        raise _fail(
            "loads",
            load,
            f"device(s) {over.tolist()[:10]} have load >= 1 (max {worst:.4g}), so their queues "
            "grow without bound and the latency is infinite",
            f"scale the arrival rates by less than {1 / worst:.4g} (max_uniform_scale), speed "
            "those devices up, or move helper work off them (max_stable_rate with "
            "optimise_selection=True)",
        )


def _range_guess(net: MoANetwork, cls: _Classes, service: str, scv: float) -> float:
    """Seconds that hold the latency law: the stages' mean sojourns plus many tail lengths."""
    used = cls.rates > 0
    sojourn = np.where(used, cls.wait_mean + cls.means, 0.0).max(axis=0)
    busy = cls.load > 0
    tail = np.where(busy, cls.wait_mean / np.where(busy, cls.load, 1.0), 0.0)
    spread = np.where(used, cls.means, 0.0).max() * (1.0 + _second_moment(service, scv, 1.0))
    stages = net.M + 1
    return float(stages * sojourn.max() + 25.0 * (tail.max() + spread))


def latency(
    net: MoANetwork,
    method: str = "estimate",
    service: str = "exponential",
    scv: float = 1.0,
    grid_points: int = GRID_POINTS,
) -> LatencyResult:
    r"""Predict the prompt latency law of a stable network (module docstring for the method).

    Parameters
    ----------
    net : MoANetwork
        Every device must have :math:`\rho_i < 1`.
    method : {"estimate", "bound"}
        ``bound``: sibling sojourns and stages independent (an upper bound for one
        random-subset fork-join stage, but up to 21% below the simulated prompt mean, see
        docs/latency.md). ``estimate``: corrected for sibling correlation (Nelson-Tantawi,
        weighted by the siblings' traffic overlap) and for the correlation of a prompt's
        stages (fitted to simulation).
    service : {"exponential", "deterministic", "gamma", "lognormal"}
        Service-time law of every job, with mean ``net.service_time[c, i]``.
    scv : float
        Squared coefficient of variation for gamma and lognormal service (> 0).
    grid_points : int
        Grid size (a power of two is fastest); the step adapts to the range.

    Returns
    -------
    LatencyResult

    Raises
    ------
    ValueError
        On bad input, and when some device has load :math:`\ge 1` (naming it).

    Examples
    --------
    >>> from moa_stability import MoANetwork
    >>> r = latency(MoANetwork(n=1, arrival_rate=0.5, service_time=1.0))  # M/M/1: W = 1/(1-rho)
    >>> round(r.mean_s, 12), round(r.quantile(0.5), 2)   # median ln(2)/(mu - lambda) = 1.386
    (2.0, 1.39)
    """
    if not isinstance(net, MoANetwork):
        raise _fail("net", repr(net), "is not a MoANetwork", "build one with MoANetwork(...)")
    if method not in METHODS:
        raise _fail("method", method, "unknown method", f"use one of {METHODS}")
    if service not in SERVICES:
        raise _fail("service", service, "unknown service law", f"use one of {SERVICES}")
    if service in ("gamma", "lognormal"):
        if not (isinstance(scv, (int, float)) and math.isfinite(scv) and scv > 0):
            raise _fail("scv", repr(scv), "must be finite and > 0", "pass e.g. scv=0.5")
        scv = float(scv)
    else:
        scv = 1.0 if service == "exponential" else 0.0
    if isinstance(grid_points, bool) or not isinstance(grid_points, (int, np.integer)):
        raise _fail("grid_points", repr(grid_points), "must be an integer", "pass e.g. 4096")
    if grid_points < 64:
        raise _fail("grid_points", grid_points, "must be >= 64", "pass e.g. 4096")
    rates = job_rates(net)
    load = (rates * net.service_time).sum(axis=0)
    _check_stable(net, load)
    lam = net.arrival_rate
    if lam.sum() == 0:
        raise _fail(
            "arrival_rate", lam, "is zero everywhere, so no prompt is born", "give some rate > 0"
        )
    cls = _classes(net, rates, service, scv)
    q = _overlaps(net, rates) if method == "estimate" else np.zeros((net.M, net.n))
    span = _range_guess(net, cls, service, scv)
    L = int(grid_points)
    for _ in range(_MAX_DOUBLINGS):
        h = span / L
        result = _compute(net, cls, service, scv, h, L, q, method)
        if result is not None:
            return result
        span *= 2.0
    raise _fail(  # pragma: no cover - the range guess covers the laws offered
        "grid_points", grid_points, "the latency tail does not fit the grid", "raise it"
    )


def _compute(
    net: MoANetwork,
    cls: _Classes,
    service: str,
    scv: float,
    h: float,
    L: int,
    q: np.ndarray,
    method: str,
) -> LatencyResult | None:
    """The result on a grid of ``L`` steps of ``h`` seconds, or ``None`` if its tail is cut."""
    F = _sojourn_cdfs(cls, service, scv, h, L)
    if np.any(1.0 - F[:, :, -1] > TAIL_TOLERANCE):
        return None
    own = cls.of_device
    x = h * np.arange(L)
    stage_groups, stage_hats, stage_means, stage_cdfs = [], [], [], []
    for m in range(net.M):
        group, single, joins = _layer_joins(net, cls, F, m, q, method)
        pmfs = [np.diff(J, prepend=0.0) for J in joins]
        means = [pmf @ x for pmf in pmfs]
        if single:  # k_m = 0: one job, its exact P-K mean
            c = PROPOSE if m == 0 else REFINE
            means = [
                cls.wait_mean[u] + cls.means[c, u] for u in np.unique(own)
            ]  # same order as the groups built for k = 0
        stage_groups.append(group)
        stage_hats.append([np.fft.rfft(p) for p in pmfs])
        stage_cdfs.append(joins)
        stage_means.append(np.asarray(means))
    last = AGGREGATE if net.M else PROPOSE
    uniq = np.unique(own)
    final_group = np.searchsorted(uniq, own)
    stage_groups.append(final_group)
    stage_hats.append([np.fft.rfft(np.diff(F[u, last], prepend=0.0)) for u in uniq])
    stage_means.append(cls.wait_mean[uniq] + cls.means[last, uniq])
    stage_cdfs.append([F[u, last] for u in uniq])

    keys = np.stack(stage_groups, axis=1)
    origin_key, origin_group = _unique_rows(keys)
    weights = np.bincount(origin_group, weights=net.arrival_rate, minlength=len(origin_key))
    # Origin load of each group (the estimate's cross-stage correction depends on it).
    group_load = np.zeros(len(origin_key))
    group_load[origin_group] = cls.load[own]
    total_cdf = np.zeros(L)
    group_mean = np.empty(len(origin_key))
    group_quant = np.empty((len(origin_key), len(_QUANTILES)))
    for g, key in enumerate(origin_key):
        hat = np.ones(L // 2 + 1, complex)
        for s, idx in enumerate(key):
            hat = hat * stage_hats[s][idx]
        # FFT round-off can dent the CDF by ~1e-16: keep it monotone for the quantile search.
        cdf = np.minimum(np.maximum.accumulate(np.cumsum(np.fft.irfft(hat, L))), 1.0)
        mean = sum(stage_means[s][idx] for s, idx in enumerate(key))
        if method == "estimate" and net.M:
            stages = [stage_cdfs[s][idx] for s, idx in enumerate(key)]
            cdf, mean = _cross_stage(cdf, mean, stages, float(group_load[g]), net.M, h, scv)
        if 1.0 - cdf[-1] > TAIL_TOLERANCE:  # (after the estimate's stretch)
            return None
        group_mean[g] = mean
        group_quant[g] = _quantile(cdf, h, np.array(_QUANTILES))
        total_cdf += weights[g] * cdf
    total_cdf /= weights.sum()
    born = net.arrival_rate > 0
    origin_mean = np.where(born, group_mean[origin_group], np.nan)
    origin_quant = np.where(born[:, None], group_quant[origin_group], np.nan)
    return LatencyResult(
        method=method,
        service=service,
        scv=scv,
        mean_s=float(weights @ group_mean / weights.sum()),
        origin_mean_s=origin_mean,
        origin_quantiles_s=origin_quant,
        arrival_rate=net.arrival_rate,
        loads=(cls.rates * cls.means).sum(axis=0)[own],
        grid_step_s=h,
        cdf=total_cdf,
    )
