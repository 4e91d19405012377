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

Paths: networks whose devices are all alike on the complete graph with uniform selection (the
paper's) take a compiled scalar path (:func:`_homogeneous_complete`: numba kernels, numpy's FFT
in them through ``rocket-fft``, exponential service of one mean in closed form); all others
the batched one (:func:`_compute`). Same grid and transforms, equal to round-off
(docs/latency.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd
import rocket_fft  # noqa: F401  (registers numpy.fft for numba kernels)
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
"""Default number of grid points for networks with up to :data:`FULL_GRID_CLASSES` distinct
devices (quantiles within about 3e-5 relative of a 16384-point grid on the paper network)."""
FULL_GRID_CLASSES = 512
"""Above this many distinct device classes the default grid halves per doubling of the classes,
down to 512 points, since time and memory grow as classes x grid points: measured on the paper
network against a 16384-point grid, the largest p50/p95/p99 error is 1.4e-4 at 2048 points,
5.5e-4 at 1024 and 2.2e-3 at 512 (max load 0.8; 1.2e-3 and 5e-3 at 0.95)."""
TAIL_TOLERANCE = 1e-9
"""Largest probability mass allowed beyond the grid's range (else the range is doubled)."""
_MAX_DOUBLINGS = 12
CROSS_STAGE_MEAN = 0.07
"""Fitted :math:`c_\\mu` of the estimate's cross-stage mean correction (docs/latency.md)."""
CROSS_STAGE_SPREAD = 0.6
"""Fitted :math:`c_w` of the estimate's comonotone weight (docs/latency.md)."""
_QUANTILES = (0.5, 0.95, 0.99)
_ROUND_OFF = 1e-13
"""Changes to a CDF below this are FFT round-off (it reaches ~1e-16 per point)."""
_BLOCK_POINTS = 1 << 21
"""Grid values per block of prompt laws (16 MB), below glibc's largest mmap threshold."""
_WRAP_EXPONENTS = np.array([16.0 * 2.0 ** (i / 2) for i in range(10)])
r"""Chernoff exponents :math:`\theta L` (16 to 362) at which :func:`_add_log_mgf` bounds the
mass of a prompt's sum of stages that the grid's circular convolution wraps around: the FFT
sums the stages modulo the grid, so a span shorter than the latency folds its tail onto the
start of the grid while the CDF still ends at 1 (before this check, n=4, M=100, k=3 gave a
median of 16 s for a mean of 210 s). Capped so that :math:`e^{-\theta L}` stays normal."""
MAX_GRID_POINTS = 1 << 22
"""Largest ``grid_points`` (4,194,304: 32 MiB per grid row; the grid work holds several rows
per distinct law)."""
MEMORY_BUDGET_BYTES = 4 * 2**30
"""Largest memory the grids of :func:`latency` may take (``ROWS_PER_CLASS`` rows of the grid per
distinct device law); a network past it is refused before any work."""
ROWS_PER_CLASS = 8
"""Grid rows held per distinct device law, at most (measured: 3.0 GB peak for 10^5 distinct
laws on 512 points, about 6.6 rows each; 10^6 such laws exhausted a 23 GB machine)."""
MAX_SCV = 1e6
"""Largest ``scv`` for gamma and lognormal service (1e6 is computed on the paper network;
1e300 exhausted the grid's doublings with a message that blamed ``grid_points``)."""


# ---- service laws -------------------------------------------------------------------------------
def _second_moment(service: str, scv: float, mean: np.ndarray) -> np.ndarray:
    """:math:`E[S^2] = E[S]^2 (1 + c_s^2)`."""
    c2 = {"exponential": 1.0, "deterministic": 0.0}.get(service, scv)
    return mean**2 * (1.0 + c2)


def _partial_moments(
    service: str, scv: float, mean: np.ndarray, x: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r""":math:`P(S \le x)`, :math:`E[S; S \le x]` and :math:`E[S^2; S \le x]` for laws of mean
    ``mean`` (broadcast against ``x``; gamma with shape :math:`a`:
    :math:`E[S^p; S \le x] = E[S^p] P(a + p, x/\theta)`; lognormal:
    :math:`E[S^p] \Phi((\ln x - \mu - p\sigma^2)/\sigma)`)."""
    x = np.maximum(x, 0.0)
    second = _second_moment(service, scv, mean)
    if service == "deterministic":
        step = (x >= mean).astype(float)
        return step, mean * step, second * step
    if service == "lognormal":
        sigma = math.sqrt(math.log1p(scv))
        with np.errstate(divide="ignore"):
            z = (np.log(x) - np.log(mean) + sigma**2 / 2) / sigma
        return special.ndtr(z), mean * special.ndtr(z - sigma), second * special.ndtr(z - 2 * sigma)
    shape = 1.0 / scv
    z = x / (mean / shape)
    return (
        special.gammainc(shape, z),
        mean * special.gammainc(shape + 1.0, z),
        second * special.gammainc(shape + 2.0, z),
    )


def _disperse(lev: np.ndarray, h: float) -> np.ndarray:
    r"""Mass at :math:`0, h, 2h, \dots` from :math:`\ell(x) = E[\min(X, x)]` at
    :math:`x = -h, 0, h, \dots` (last axis): :math:`p_0 = 1 - \ell(h)/h`,
    :math:`p_j = (2\ell(jh) - \ell((j-1)h) - \ell((j+1)h))/h` (mass dispersal: the mean is
    kept exactly, however coarse the grid)."""
    pmf = 2 * lev[..., 1:-1]  # in place from here: these arrays are classes x grid points
    pmf -= lev[..., :-2]
    pmf -= lev[..., 2:]
    pmf /= h
    pmf[..., 0] = 1.0 - lev[..., 2] / h
    return np.maximum(pmf, 0.0, out=pmf)


def _grid_laws(
    service: str, scv: float, mean: np.ndarray, h: float, L: int
) -> tuple[np.ndarray, np.ndarray]:
    r"""The service laws of means ``mean`` (shape ``(V,)``) and their equilibrium laws
    :math:`B_e` on the grid, ``(V, L)`` each, by mass dispersal from their limited expectations
    (one evaluation of the partial moments for both):

    .. math::

        E[\min(S, x)] = E[S; S \le x] + x P(S > x),\qquad
        E[\min(Y, x)] = \int_0^x (1 - B_e) = \frac{E[S^2; S \le x]/2 + x E[S; S > x]
        - x^2 P(S > x)/2}{E[S]}.

    Exponential service is its own equilibrium law, with
    :math:`E[\min(S, x)] = E[S](1 - e^{-x/E[S]})` (one exponential per point instead of three
    incomplete gamma functions). Keeping :math:`E[Y]` exact keeps :math:`E[W]` exact, also when
    the step exceeds the service time (loads near 1)."""
    if service == "exponential":
        job = _exponential_rows(np.asarray(mean, dtype=float), h, np.empty((len(mean), L)))
        return job, job
    x = np.maximum(h * np.arange(-1, L + 1), 0.0)
    mean = np.asarray(mean, dtype=float)[:, None]
    cdf, m1, m2 = _partial_moments(service, scv, mean, x)
    tail = 1.0 - cdf
    job = _disperse(m1 + x * tail, h)
    equilibrium = _disperse((m2 / 2 + x * (mean - m1) - x**2 * tail / 2) / mean, h)
    return job, equilibrium


@njit(cache=True)
def _geometric_cells(mean, h):  # pragma: no cover - numba
    r"""The exponential law of mean :math:`s` dispersed on the grid of step :math:`h`
    (:func:`_exponential_rows`), as its constants: with :math:`a = h/s`, returns
    :math:`(a, r, p_0, C r)`, :math:`r = e^{-a}`, :math:`p_0 = 1 + (e^{-a} - 1)/a` and
    :math:`C = \frac{4}{a}\sinh^2(a/2)`, the cells being :math:`p_0` then :math:`C r^j`.
    :math:`C r = (1 - e^{-a})^2/a` stays finite where :math:`C` overflows (:math:`a > 1420`:
    a step of thousands of service times, at loads near 1); below :math:`a = 50` it is
    computed as :math:`C \cdot r`, as before."""
    a = h / mean
    r = math.exp(-a)
    first = 4.0 * math.sinh(0.5 * a) ** 2 / a * r if a < 50.0 else math.expm1(-a) ** 2 / a
    return a, r, 1.0 + math.expm1(-a) / a, first


@njit(cache=True)
def _exponential_rows(mean, h, out):  # pragma: no cover - numba
    r""":func:`_disperse` of :math:`\ell(x) = s(1 - e^{-x/s})` in closed form, one row per
    mean :math:`s` (:func:`_geometric_cells`): :math:`p_0` and :math:`p_j = C r^j` for
    :math:`j \ge 1`, a geometric sequence (one multiplication per point; the second
    difference of :math:`\ell` is taken exactly, without the cancellation of differencing).
    Returns ``out``."""
    for v in range(mean.size):
        _, ratio, head, term = _geometric_cells(mean[v], h)
        out[v, 0] = head
        for j in range(1, out.shape[1]):
            out[v, j] = term
            term *= ratio
    return out


def _pmf_rows(cdf: np.ndarray) -> np.ndarray:
    """Mass of each grid cell from CDF rows (``np.diff`` with a leading 0, one allocation)."""
    pmf = cdf.copy()
    pmf[:, 1:] -= cdf[:, :-1]
    return pmf


@njit(cache=True)
def _cdf_rows(pmf, out, change):  # pragma: no cover - numba
    """``out[r]`` = the running sum of ``pmf[r]``, made monotone and kept in [0, 1] (FFT
    round-off dents a CDF by ~1e-16; the quantile search needs it monotone, and a fractional
    power of a CDF needs it non-negative); returns ``out`` (which may be ``pmf``).
    ``change[r]`` gets the largest change that made to row ``r`` (pass an array of size 0 to
    skip it; then each row is :func:`_running_cdf`, four chains at once)."""
    if change.size == 0:
        for r in range(pmf.shape[0]):
            _running_cdf(pmf[r], out[r])
        return out
    for r in range(pmf.shape[0]):
        total = 0.0
        top = 0.0
        worst = 0.0
        for j in range(pmf.shape[1]):
            total += pmf[r, j]
            top = max(top, total)
            out[r, j] = min(top, 1.0)
            worst = max(worst, abs(out[r, j] - total))
        change[r] = worst
    return out


@njit(cache=True)
def _running_cdf(pmf, out):  # pragma: no cover - numba
    """``out`` = the running maximum of the running sum of ``pmf``, capped at 1 (``out`` may
    be ``pmf``). A running sum is a chain of dependent additions (and its maximum one of
    dependent comparisons), about 1.7 ns per point; so the four quarters are summed at once,
    each with its running maximum, and then each quarter is shifted by the sum of those before
    it (a vectorised pass: adding a constant keeps the order of floating-point numbers, so
    the shifted maximum is the maximum of the shifted sums). Measured on 4096 points: 4.3 us
    against 6.8 us for one chain; the sums differ from one chain's by round-off (the additions
    are associated by quarter)."""
    L = pmf.size
    B = L // 4
    s0, s1, s2, s3 = 0.0, 0.0, 0.0, 0.0
    m0, m1, m2, m3 = 0.0, 0.0, 0.0, 0.0
    for j in range(B):
        s0 += pmf[j]
        s1 += pmf[B + j]
        s2 += pmf[2 * B + j]
        s3 += pmf[3 * B + j]
        m0 = max(m0, s0)
        m1 = max(m1, s1)
        m2 = max(m2, s2)
        m3 = max(m3, s3)
        out[j] = m0
        out[B + j] = m1
        out[2 * B + j] = m2
        out[3 * B + j] = m3
    for j in range(4 * B, L):  # the last quarter's remainder
        s3 += pmf[j]
        m3 = max(m3, s3)
        out[j] = m3
    sums = (s0, s1, s2, s3)
    shift, top = 0.0, 0.0
    for b in range(4):
        stop = L if b == 3 else (b + 1) * B
        for j in range(b * B, stop):
            out[j] = min(max(top, shift + out[j]), 1.0)
        if stop > b * B:
            top = max(top, out[stop - 1])
        shift += sums[b]
    return out


# ---- per-device queues --------------------------------------------------------------------------
@dataclass(frozen=True)
class _Classes:
    """Devices grouped by identical job rates and service means (they share one queue law)."""

    of_device: np.ndarray  # (n,) class index
    rates: np.ndarray  # (3, U) jobs/s per type
    means: np.ndarray  # (3, U) mean seconds per type
    load: np.ndarray  # (U,)
    wait_mean: np.ndarray  # (U,) exact P-K mean wait


def _distinct_rows(keys: np.ndarray | list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Index of the first occurrence of each distinct row of ``keys`` (in sorted order) and
    each row's group, as :func:`numpy.unique`; ``keys`` is an ``(n, c)`` array or a list of
    its ``c`` columns (without NaN). Columns equal in every row, or equal to the column before,
    decide nothing, so they are dropped first (the neighbour-law columns of a homogeneous
    graph), without stacking the columns; all rows alike (homogeneous networks) stops there.
    The rows are grouped by hashing (:func:`_hash_rows`, O(n)) and only the distinct rows
    are sorted, which at scale are few (10^6 devices of a homogeneous 8-regular graph: 2)."""
    columns = list(keys.T) if isinstance(keys, np.ndarray) else keys
    n = columns[0].shape[0]
    varying: list[np.ndarray] = []
    for col in columns:
        # A column equal to the one before decides nothing either (twin layers' groups, the
        # service means of the job types of devices with one mean).
        if (col != col[0]).any() and not (
            varying and (col is varying[-1] or np.array_equal(col, varying[-1]))
        ):
            varying.append(col)
    if not varying:
        return np.zeros(1, np.int64), np.zeros(n, np.int64)
    bits = np.empty((n, len(varying)), np.uint64)
    for x, col in enumerate(varying):
        if col.dtype.kind == "f":  # its bits, with -0.0 made 0.0 (they are equal)
            np.add(col, 0.0, out=bits[:, x].view(np.float64))
        else:
            bits[:, x] = col.astype(np.int64, copy=False).view(np.uint64)
    seen, group = _hash_rows(bits)
    order = np.lexsort([col[seen] for col in reversed(varying)])  # first column first
    if np.array_equal(order, np.arange(order.size)):
        return seen, group
    rank = np.empty(order.size, np.int64)
    rank[order] = np.arange(order.size)
    return seen[order], rank[group]


@njit(cache=True)
def _hash_rows(bits):  # pragma: no cover - numba
    """Rows of ``bits`` (uint64) grouped by value in order of first occurrence: the first row of
    each group and each row's group, by open addressing (linear probing) in a table kept at
    least twice as large as the number of groups (expected O(1) probes per row; the table
    grows with the groups, not the rows, so few groups cost little memory)."""
    n, c = bits.shape
    size = 1024
    table = np.full(size, -1, np.int64)
    hashes = np.empty(size // 2 + 1, np.uint64)  # of each group's first row, for rehashing
    first = np.empty(size // 2 + 1, np.int64)
    group = np.empty(n, np.int64)
    count = 0
    for r in range(n):
        h = np.uint64(0)
        for x in range(c):
            h = (h ^ bits[r, x]) * np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing
        h ^= h >> np.uint64(29)
        slot = np.int64(h & np.uint64(size - 1))
        while True:
            g = table[slot]
            if g < 0:
                table[slot] = count
                first[count] = r
                hashes[count] = h
                group[r] = count
                count += 1
                break
            f = first[g]
            same = hashes[g] == h
            for x in range(c):
                same = same and bits[f, x] == bits[r, x]
            if same:
                group[r] = g
                break
            slot = (slot + 1) & (size - 1)
        if 2 * count > size:
            size *= 2
            table = np.full(size, -1, np.int64)
            grown = np.empty(size // 2 + 1, np.uint64)
            grown[:count] = hashes[:count]
            hashes = grown
            grown_first = np.empty(size // 2 + 1, np.int64)
            grown_first[:count] = first[:count]
            first = grown_first
            for g in range(count):
                slot = np.int64(hashes[g] & np.uint64(size - 1))
                while table[slot] >= 0:
                    slot = (slot + 1) & (size - 1)
                table[slot] = g
    return first[:count].copy(), group


def _classes(net: MoANetwork, rates: np.ndarray, service: str, scv: float) -> _Classes:
    service_time = net.service_time
    if (rates == rates[:, :1]).all() and (service_time == service_time[:, :1]).all():
        # Homogeneous (the common case at scale): no (6, n) key to stack and compare.
        first, inverse = np.zeros(1, np.int64), np.zeros(net.n, np.int64)
    else:
        first, inverse = _distinct_rows([*rates, *service_time])
    r, s = rates[:, first], service_time[:, first]
    load = (r * s).sum(axis=0)
    second = (r * _second_moment(service, scv, s)).sum(axis=0)
    wait = second / (2.0 * (1.0 - load))
    return _Classes(inverse, r, s, load, wait)


@dataclass(frozen=True)
class _Sojourns:
    """The distinct sojourn laws on the grid: one row per (class, service mean) pair in use,
    plus a last row of ones for the types a class never serves."""

    cdf: np.ndarray  # (P + 1, L): P(sojourn <= (j + 1/2) h)
    of_class: np.ndarray  # (U, 3): row of each class's type-c law
    mean: np.ndarray  # (P + 1,): exact mean sojourn (P-K); 0 for the last row (no sojourn)
    hat: np.ndarray  # (P + 1, L // 2 + 1): the rows' pmf transforms (a stage of one job's)


@njit(cache=True)
def _mixture_rows(laws, law, share, position, out):  # pragma: no cover - numba
    """``out[position[u]] += share[c, u] * laws[law[c, u]]`` over types ``c`` and classes ``u``
    with ``law[c, u] >= 0``, in one pass (no gathered temporaries); returns ``out``."""
    for c in range(law.shape[0]):
        for u in range(law.shape[1]):
            if law[c, u] >= 0:
                row, w, src = out[position[u]], share[c, u], laws[law[c, u]]
                for x in range(row.size):
                    row[x] += w * src[x]
    return out


@njit(cache=True)
def _sojourn_hats(be_hat, be_row, load, job_hat, job_row, out):  # pragma: no cover - numba
    r"""``out[p]`` = :math:`\widehat w\,\widehat b` with
    :math:`\widehat w = (1 - \rho)/(1 - \rho\,\widehat b_e)` (Pollaczek-Khinchine) for
    the rows ``be_hat[be_row[p]]``, ``job_hat[job_row[p]]`` and load ``load[p]``: one pass,
    no gathered copies of the transforms."""
    for p in range(be_row.size):
        be, job, rho = be_hat[be_row[p]], job_hat[job_row[p]], load[p]
        row = out[p]
        for x in range(row.size):
            row[x] = (1.0 - rho) / (1.0 + be[x] * -rho) * job[x]


def _sojourn_cdfs(cls: _Classes, service: str, scv: float, h: float, L: int) -> _Sojourns:
    """The sojourn laws of every class and job type, all at once: the laws of the distinct
    service means, the classes' waits by batched FFTs, and one sojourn per distinct (class,
    mean) pair (types of equal mean share it, so a class with one mean costs one law)."""
    U, T = cls.load.size, len(JOB_TYPES)
    busy = cls.rates > 0  # (3, U)
    distinct, index = np.unique(cls.means[busy], return_inverse=True)
    law = np.full(busy.shape, -1)
    law[busy] = index.ravel()
    job, equilibrium = _grid_laws(service, scv, distinct, h, L)
    active = np.flatnonzero(busy.any(axis=0))
    load = cls.load[active]
    position = np.full(U, -1)
    position[active] = np.arange(active.size)
    class_of = np.broadcast_to(np.arange(U), busy.shape)[busy]
    job_hat = np.fft.rfft(job, axis=1)
    # B_e of each class: its types' equilibrium laws weighted by their shares of the work;
    # when all its types take equally long (one law) that is the law itself, whose transform
    # is at hand for exponential service (its own equilibrium law).
    one_law = np.where(busy, law, -1).max(axis=0)
    if service == "exponential" and np.all(
        one_law[active] == np.where(busy, law, U).min(axis=0)[active]
    ):
        be_hat, be_row = job_hat, one_law[active]
    else:
        share = np.zeros(busy.shape)
        share[busy] = (cls.rates * cls.means)[busy] / cls.load[class_of]
        mixture = _mixture_rows(equilibrium, law, share, position, np.zeros((active.size, L)))
        be_hat, be_row = np.fft.rfft(mixture, axis=1), np.arange(active.size)
    # Distinct (class, mean) pairs in use: each is one sojourn law.
    pair_key = np.stack([class_of, law[busy]])
    first, pair_of = _distinct_rows(list(pair_key))
    pairs = pair_key[:, first]
    hat = np.ones((pairs.shape[1] + 1, job_hat.shape[1]), complex)  # last row: no sojourn
    at = position[pairs[0]]
    _sojourn_hats(be_hat, be_row[at], load[at], job_hat, pairs[1], hat)
    cdf = np.empty((pairs.shape[1] + 1, L))
    cdf[-1] = 1.0
    # In place (fresh n x grid arrays cost about as much as a pass over them at scale).
    np.fft.irfft(hat[:-1], L, axis=1, out=cdf[:-1])
    change = np.empty(pairs.shape[1])
    _cdf_rows(cdf[:-1], cdf[:-1], change)
    # A stage of one job convolves the law as stored (monotone, capped at 1), whose transform
    # is the product above unless that changed it beyond round-off: lognormal service loses
    # up to ~1e-7 of mass to the cap (the dispersal clips its negative cells, adding mass).
    redo = np.flatnonzero(change > _ROUND_OFF)
    if redo.size:
        hat[redo] = np.fft.rfft(_pmf_rows(cdf[redo]), axis=1)
    of_class = np.full((T, U), pairs.shape[1])
    of_class[busy] = pair_of
    mean = np.append(cls.wait_mean[pairs[0]] + distinct[pairs[1]], 0.0)
    return _Sojourns(cdf, of_class.T, mean, hat)


# ---- sibling overlap (for the estimate) ---------------------------------------------------------
def _kappa(k: int, degree: np.ndarray) -> np.ndarray:
    r""":math:`P(a, b \in H)/(\pi_a \pi_b) = (k-1) d / (k (d-1))` for uniform k-subsets."""
    if k <= 1:
        return np.zeros(degree.shape)
    return (k - 1) * degree / (k * np.maximum(degree - 1, 1))


def _overlaps(net: MoANetwork, rates: np.ndarray) -> np.ndarray:
    """``(M, n)``: per layer and origin, the pi-weighted mean overlap with its helpers."""
    lam = net.arrival_rate
    if net.M == 0 or max(net.k) == 0:
        return np.zeros((net.M, net.n))
    if net.selection is None and not net.is_complete:
        # Uniform on a sparse graph: pi[j, i] = k_m / d_j on the edges, so the overlap of an
        # edge needs only its two ends and their common neighbours (a kernel, no n x n
        # products, and no per-device temporaries: fresh memory costs page faults at 10^6).
        adj = net.topology
        ks = np.array([km for km in net.k if km], np.int64)
        mean = _uniform_edge_overlap(adj.indptr, adj.indices, lam, rates, ks)
        np.minimum(mean, 1.0, out=mean)
        if ks.size == net.M:  # every layer the same (read-only) row
            return np.broadcast_to(mean, (net.M, net.n))
        out = np.zeros((net.M, net.n))
        out[np.array(net.k) > 0] = mean
        return out
    out = np.zeros((net.M, net.n))
    total = rates.sum(axis=0)
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
def _third_party(lam, degree, ks):  # pragma: no cover - numba
    r""":math:`\text{third}_o = \lambda_o \sum_m \kappa(k_m, d_o)\,(k_m/d_o)^2`: the rate at
    which origin :math:`o`'s prompts pick two given neighbours of :math:`o` together (the
    scalar form of :func:`_kappa`)."""
    total = 0.0
    for k in ks:
        if k > 1:
            total += (k - 1) * degree / (k * max(degree - 1.0, 1.0)) * (k / degree) ** 2
    return lam * total


@njit(cache=True)
def _uniform_edge_overlap(indptr, indices, lam, rates, ks):  # pragma: no cover - numba
    r"""Per origin :math:`j` of a sparse graph with uniform selection (``ks`` the positive
    :math:`k_m`, every degree :math:`\ge 1`): :math:`\frac{1}{d_j}\sum_{i \in \mathcal N(j)}
    s_j s_i \big(\text{direct}_j + \text{direct}_i + \sum_{o \in \mathcal N(j) \cap
    \mathcal N(i)} \text{third}_o\big)` with :math:`s_i = r_i^{-1/2}` (:math:`r_i` the
    total job rate, ``rates`` summed over types; 0 where no job comes),
    :math:`\text{direct}_i = \lambda_i \sum_m k_m / d_i` and :func:`_third_party`, on sorted
    CSR rows.

    The sum splits into :math:`s_j\big(\text{direct}_j \sum_i s_i + \sum_i s_i
    \text{direct}_i\big)`, one pass over row :math:`j`, and the triangles: a common neighbour
    :math:`o` of the edge :math:`(j, i)` makes a triangle :math:`\{j, i, o\}`, which credits
    each of its vertices with the terms of its two edges (:math:`j` gets
    :math:`s_i\,\text{third}_o + s_o\,\text{third}_i`). Each triangle :math:`j < i < o` is
    found once, from :math:`j`: for each neighbour :math:`i > j`, row :math:`i` is compared
    with the neighbours of :math:`j` after :math:`i` (all :math:`> i`: the row is sorted).
    The comparison counts matches over whole ranges, with no branch per element (sparse graphs
    have few triangles, and a merge's data-dependent branches mostly mispredict); only an edge
    with a match is walked again to credit its triangles. Time: one read of row :math:`i` per
    edge and :math:`O(\sum_j d_j^2)` comparisons in cache; memory: three arrays of ``n``
    (the per-device numbers a row visit reads sit side by side: one cache line per visit).

    The random reads are the cost (each a cache miss at 10^6 devices, and each waits for the
    one before: row :math:`i` starts at ``indptr[i]``). Two common cases skip them: when all
    devices have the same :math:`(s_i, s_i\,\text{direct}_i)` the first sum is
    :math:`d_j` times it, and on a regular graph row :math:`i` starts at :math:`d i`, so the
    rows of one origin's neighbours are fetched in parallel (2-3x faster at 10^6)."""
    n = indptr.size - 1
    K = ks.sum()
    device = np.empty((n, 2))  # s_i, s_i direct_i
    alike, regular, d = True, True, indptr[1] - indptr[0]
    for i in range(n):
        total = rates[0, i] + rates[1, i] + rates[2, i]
        s = 1.0 / math.sqrt(total) if total > 0 else 0.0
        device[i, 0] = s
        device[i, 1] = s * K * lam[i] / (indptr[i + 1] - indptr[i])
        alike = alike and device[i, 0] == device[0, 0] and device[i, 1] == device[0, 1]
        regular = regular and indptr[i + 1] == d * (i + 1)
    out = np.zeros(n)
    for j in range(n):
        start, stop = indptr[j], indptr[j + 1]
        if alike:
            total, weighted = (stop - start) * device[0, 0], (stop - start) * device[0, 1]
        else:
            total, weighted = 0.0, 0.0
            for p in range(start, stop):
                i = indices[p]
                total += device[i, 0]
                weighted += device[i, 1]
        out[j] += K * lam[j] / (stop - start) * total + weighted
        first = start
        while first < stop and indices[first] <= j:
            first += 1
        for p in range(first, stop - 1):
            i = indices[p]
            lo, hi = (d * i, d * (i + 1)) if regular else (indptr[i], indptr[i + 1])
            hits = 0
            for a in range(p + 1, stop):
                o = indices[a]
                for b in range(lo, hi):
                    hits += indices[b] == o
            if hits == 0:
                continue
            for a in range(p + 1, stop):
                o = indices[a]
                for b in range(lo, hi):
                    if indices[b] == o:
                        # (triangles are rare: their third parties computed here)
                        tj = _third_party(lam[j], stop - start, ks)
                        ti = _third_party(lam[i], hi - lo, ks)
                        to = _third_party(lam[o], indptr[o + 1] - indptr[o], ks)
                        sj, si, so = device[j, 0], device[i, 0], device[o, 0]
                        out[j] += si * to + so * ti
                        out[i] += sj * to + so * tj
                        out[o] += sj * ti + si * tj
    for j in range(n):
        out[j] *= device[j, 0] / (indptr[j + 1] - indptr[j])
    return out


@njit(cache=True)
def _harmonic(a):  # pragma: no cover - numba
    r""":math:`H(a) = \psi(a + 1) + \gamma` and :math:`H'(a) = \psi'(a + 1)`, the harmonic
    numbers extended to real :math:`a > -1`: the recurrences :math:`\psi(x) = \psi(x+1) - 1/x`,
    :math:`\psi'(x) = \psi'(x+1) + 1/x^2` up to :math:`x \ge 10`, then the asymptotic series
    (Abramowitz & Stegun 6.3.18, 6.4.12) through :math:`x^{-14}` and :math:`x^{-15}`, whose
    next terms are below 1e-16 there (equal to ``scipy.special.psi`` and ``zeta(2, x)`` to a
    few ulp; a kernel, so a Newton iteration costs no Python calls)."""
    x = a + 1.0
    psi, trigamma = 0.0, 0.0
    while x < 10.0:
        psi -= 1.0 / x
        trigamma += 1.0 / (x * x)
        x += 1.0
    f = 1.0 / (x * x)
    psi += (
        math.log(x)
        - 0.5 / x
        - f
        * (
            1.0 / 12
            - f
            * (
                1.0 / 120
                - f * (1.0 / 252 - f * (1.0 / 240 - f * (1.0 / 132 - f * (691.0 / 32760 - f / 12))))
            )
        )
    )
    trigamma += (
        1.0 / x
        + 0.5 * f
        + f
        / x
        * (
            1.0 / 6
            - f
            * (
                1.0 / 30
                - f
                * (1.0 / 42 - f * (1.0 / 30 - f * (5.0 / 66 - f * (691.0 / 2730 - f * 7.0 / 6))))
            )
        )
    )
    return psi + 0.5772156649015329, trigamma


@njit(cache=True)
def _effective_siblings(K, rho, q):  # pragma: no cover - numba
    r"""Independent copies :math:`a` whose maximum matches the Nelson-Tantawi join, blended with
    the overlap: :math:`a = K - q (K - a_{FJ})`, :math:`H(a_{FJ}) = T_K(\rho)`, for the arrays
    ``rho`` and ``q`` (elementwise; returns an array of their size)."""
    HK = _harmonic(float(K))[0]
    out = np.empty(rho.size)
    for i in range(rho.size):
        r = rho[i]
        target = (HK / 1.5 + (4.0 / 11.0) * (1.0 - HK / 1.5) * r) * (12.0 - r) / 8.0
        # Newton from a = 1 (H(1) = 1 <= target): H is increasing and concave, so the
        # iterates rise monotonically to the root without overshooting.
        a = 1.0
        for _ in range(100):
            value, slope = _harmonic(a)
            step = (target - value) / slope
            a += step
            if step <= 1e-13 * a:
                break
        out[i] = K - q[i] * (K - a)
    return out


# ---- joins --------------------------------------------------------------------------------------
@njit(cache=True)
def _symmetric_with_copies(Fc, counts, k):  # pragma: no cover - numba
    r"""Elementary symmetric polynomials :math:`e_0..e_k` (rows) of the CDF rows ``Fc[u]``,
    each taken ``counts[u]`` times: adding :math:`c` copies of :math:`F` is
    :math:`e_a \leftarrow \sum_b \binom{c}{b} F^b e_{a-b}`, done for descending :math:`a` so
    that the :math:`e_{a-b}` on the right are still the old ones. A kernel: on a heterogeneous
    complete graph there is one class per device."""
    L = Fc.shape[1]
    e = np.zeros((k + 1, L))
    e[0] = 1.0
    for u in range(Fc.shape[0]):
        c = counts[u]
        if c == 0:
            continue
        for a in range(k, 0, -1):
            for x in range(L):
                acc, power, choose = e[a, x], 1.0, 1.0
                for b in range(1, min(a, c) + 1):
                    power *= Fc[u, x]
                    choose = choose * (c - b + 1) / b  # binomial(c, b), exact below 2^53
                    acc += choose * power * e[a - b, x]
                e[a, x] = acc
    return e


def _complete_helpers(Fc: np.ndarray, counts: np.ndarray, owners: np.ndarray, k: int):
    r""":math:`e_k` of the CDFs of all devices but one of class ``owners[r]`` (rows ``r``):
    :math:`e_j` of all devices (classes with multiplicities), then one device of the owner's
    class removed by :math:`e'_j = e_j - F e'_{j-1}` (no cancellation worth a bit: every term
    is non-negative and :math:`e'_j \le e_j`)."""
    e = _symmetric_with_copies(Fc, counts.astype(np.int64), k)
    F = Fc[owners]
    removed = np.ones_like(F)
    for j in range(1, k + 1):
        removed = e[j] - F * removed
    return removed


@njit(cache=True)
def _graph_joins(F, own, start, stop, indices, law, k, choices):  # pragma: no cover - numba
    r"""Join CDFs per row ``r``: :math:`F_{own_r}\,e_k(F_{\mathcal N})/\binom{d}{k}` with
    ``choices[r]`` :math:`= \binom{d}{k}`, where :math:`e_k` of the neighbours' CDFs (the law
    rows ``law[indices[start[r]:stop[r]]]``, a CSR slice) comes from the recurrence
    :math:`e_j \leftarrow e_j + F_t e_{j-1}` over the neighbours. A kernel: the gathered
    neighbour rows and the intermediate products are never materialised, so memory traffic
    stays at one pass over the output. (The estimate's power is taken by numpy afterwards:
    its SIMD ``power`` is several times faster than a compiled scalar loop.)"""
    R, L = start.size, F.shape[1]
    out = np.empty((R, L))
    e = np.empty((k + 1, L))
    for r in range(R):
        e[0] = 1.0
        e[1:] = 0.0
        for t in range(start[r], stop[r]):
            row = F[law[indices[t]]]
            for j in range(k, 0, -1):
                for x in range(L):
                    e[j, x] += row[x] * e[j - 1, x]
        mine, scale = F[own[r]], 1.0 / choices[r]
        for x in range(L):
            out[r, x] = mine[x] * e[k, x] * scale
    return out


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


def _neighbour_groups(
    adj: sp.csr_array, own: np.ndarray, key: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_distinct_rows` of (``key`` row, given as columns, the multiset of the
    neighbours' laws ``own``) per device, the multiset encoded exactly and without sorting
    the edges: with one law for every device it is the degree (homogeneous networks); with at
    most as many laws in use as the largest degree, the count of each law among the
    neighbours (a few device classes: O(edges)); else the row's laws sorted (row by row, in a
    kernel) and padded to the largest degree where that is compact (near-regular graphs), or
    one dictionary key per device (a star's hub would pad every row to n)."""
    n, degree = adj.shape[0], np.diff(adj.indptr)
    if (own == own[0]).all():
        return _distinct_rows([*key, degree])
    used = np.bincount(own) > 0
    laws = int(used.sum())
    width = int(degree.max(initial=0))
    if laws <= width:
        code = np.cumsum(used) - 1  # law -> 0..laws-1
        counts = _law_counts(adj.indptr, adj.indices, code[own], laws)
        return _distinct_rows([*key, *counts.T])
    ordered = _sorted_row_laws(adj.indptr, adj.indices, own)
    if n * width <= 4 * ordered.size + n:
        padded = np.full((n, width), -1, dtype=np.int64)
        padded[np.arange(width) < degree[:, None]] = ordered  # row-major order is CSR order
        return _distinct_rows([*key, *padded.T])
    seen: dict[tuple[tuple, bytes], int] = {}
    group, first = np.empty(n, np.int64), []
    for j in range(n):
        sig = (tuple(col[j] for col in key), ordered[adj.indptr[j] : adj.indptr[j + 1]].tobytes())
        if sig not in seen:
            seen[sig] = len(first)
            first.append(j)
        group[j] = seen[sig]
    return np.array(first, np.int64), group


@njit(cache=True)
def _law_counts(indptr, indices, code, laws):  # pragma: no cover - numba
    """``(n, laws)``: how many neighbours of each device have each law ``code`` (CSR rows)."""
    n = indptr.size - 1
    out = np.zeros((n, laws), np.int64)
    for j in range(n):
        for p in range(indptr[j], indptr[j + 1]):
            out[j, code[indices[p]]] += 1
    return out


@njit(cache=True)
def _sorted_row_laws(indptr, indices, own):  # pragma: no cover - numba
    """``own`` of each CSR entry, sorted within each row (one small in-place sort per row
    instead of a lexicographic sort of all edges)."""
    out = np.empty(indices.size, np.int64)
    for j in range(indptr.size - 1):
        lo, hi = indptr[j], indptr[j + 1]
        for p in range(lo, hi):
            out[p] = own[indices[p]]
        out[lo:hi].sort()
    return out


def _layer_joins(
    net: MoANetwork, cls: _Classes, soj: _Sojourns, m: int, q: np.ndarray, method: str
) -> tuple[np.ndarray, np.ndarray]:
    """Layer ``m`` (``k_m >= 1``): per origin the group of its join law, per group the join
    CDF (rows). Origins with the same own law, helper laws/probabilities (and overlap) share
    one join, which keeps large homogeneous networks cheap; the distinct joins of uniform
    selection are computed all at once (no loop over devices), so heterogeneous networks stay
    cheap too."""
    k = net.k[m]
    Fc = soj.cdf
    own = soj.of_class[cls.of_device, PROPOSE if m == 0 else REFINE]  # law row per device
    q_m = np.round(q[m], 9) if method == "estimate" else np.zeros(net.n)
    if net.selection is not None:
        return _systematic_joins(net, own, cls.load[cls.of_device], Fc, m, q_m, method)
    # Per origin group (its first device): the mean load of its helpers and binomial(d, k).
    if net.is_complete:
        first, group = _distinct_rows([own, q_m])
        rho = cls.load[cls.of_device]
        helpers_rho = (rho.sum() - rho[first]) / (net.n - 1)
        d = np.full(first.size, net.n - 1)
    else:
        adj = net.topology
        first, group = _neighbour_groups(adj, own, [own, q_m])
        d = net.degrees[first]
        rows = adj[first]  # the groups' rows only (never empty: d >= k)
        rho = cls.load[cls.of_device[rows.indices]]
        helpers_rho = np.add.reduceat(rho, rows.indptr[:-1]) / d
    choices = np.array([float(math.comb(int(v), k)) for v in d])
    if not net.is_complete:
        start, stop = adj.indptr[first], adj.indptr[first + 1]
        joins = _graph_joins(Fc, own[first], start, stop, adj.indices, own, k, choices)
    else:
        counts = np.bincount(own, minlength=Fc.shape[0])
        joins = Fc[own[first]] * _complete_helpers(Fc, counts, own[first], k) / choices[:, None]
    if method == "estimate":
        sib_rho = (cls.load[cls.of_device[first]] + k * helpers_rho) / (k + 1)
        power = _effective_siblings(k + 1, sib_rho, np.ascontiguousarray(q_m[first])) / (k + 1)
        np.power(joins, power[:, None], out=joins)
    return group, joins


def _systematic_joins(
    net: MoANetwork,
    own: np.ndarray,
    rho: np.ndarray,
    Fc: np.ndarray,
    m: int,
    q_m: np.ndarray,
    method: str,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_layer_joins` for inclusion probabilities: one systematic-sampling average per
    distinct (own law, helper laws, probabilities, overlap)."""
    k = net.k[m]
    pi = net.inclusion(m)
    group = np.empty(net.n, np.int64)
    joins: list[np.ndarray] = []
    seen: dict[tuple, int] = {}
    for j in range(net.n):
        lo, hi = pi.indptr[j], pi.indptr[j + 1]
        helpers, probs = pi.indices[lo:hi], pi.data[lo:hi]
        sig = (own[j], own[helpers].tobytes(), probs.round(12).tobytes(), q_m[j])
        if sig in seen:
            group[j] = seen[sig]
            continue
        join = Fc[own[j]] * _systematic_join(Fc, own[helpers], probs, k)
        if method == "estimate":
            sib_rho = (rho[j] + probs @ rho[helpers]) / (k + 1)
            a = _effective_siblings(k + 1, np.array([sib_rho]), np.array([q_m[j]]))[0]
            join = join ** (a / (k + 1))
        seen[sig] = group[j] = len(joins)
        joins.append(join)
    return group, np.array(joins)


@njit(cache=True)
def _interp_sorted(xp, fp, left, right, out):  # pragma: no cover - numba
    """``np.interp(x, xp, fp, left, right)`` at ``x = mid = i + 1/2`` (``i < out.size``) for
    non-decreasing ``xp`` (same formula, same ties: the last ``xp[j] <= x``), by one merge
    pass driven by the cells of ``xp`` (one slope per cell, not one division per point);
    writes ``out``."""
    n, L = xp.size, out.size
    i = 0
    while i < L and i + 0.5 < xp[0]:
        out[i] = left
        i += 1
    for j in range(n - 1):
        if i >= L:
            return
        if i + 0.5 < xp[j + 1]:
            slope = (fp[j + 1] - fp[j]) / (xp[j + 1] - xp[j])
            while i < L and i + 0.5 < xp[j + 1]:
                out[i] = slope * (i + 0.5 - xp[j]) + fp[j]
                i += 1
    for x in range(i, L):  # beyond the last point (np.interp: fp[-1] at it, ``right`` after)
        out[x] = right if x + 0.5 > xp[n - 1] else fp[n - 1]


@njit(cache=True)
def _add_quantile_function(cdf, u, weight, total):  # pragma: no cover - numba
    """``total += weight * np.interp(u, C, mid, mid[0], mid[-1])``, ``C`` the running maximum
    of ``cdf`` (FFT and ``power`` round-off can dent a CDF by an ulp) and ``mid = j + 1/2``:
    the quantile function at ascending ``u`` in grid units, by a merge pass driven by the
    cells of ``C`` (no monotone copy of the row, one division per cell that holds some
    ``u``; the spacing of ``mid`` is exactly 1)."""
    n, L = cdf.size, u.size
    i = 0
    while i < L and u[i] < cdf[0]:
        total[i] += weight * 0.5
        i += 1
    here = cdf[0]
    for j in range(n - 1):
        if i >= L:
            return
        ahead = max(here, cdf[j + 1])
        if u[i] < ahead:
            inv = 1.0 / (ahead - here)
            while i < L and u[i] < ahead:
                total[i] += weight * (inv * (u[i] - here) + (j + 0.5))
                i += 1
        here = ahead
    for x in range(i, L):  # (beyond the last point np.interp gives ``right`` = mid[-1] too)
        total[x] += weight * (n - 0.5)


@njit(cache=True)
def _cross_stage_kernel(cdf, tables, key, count, rho, u, M, scv, c_mu, c_w, out):
    # pragma: no cover - numba
    r"""Rows of :func:`_cross_stage` at the probabilities ``u`` (:func:`_unit_mids`):
    ``cdf[g]`` is origin group ``g``'s convolution law,
    ``tables[s][key[g, s]]`` the law of its ``s``-th distinct stage, which occurs
    ``count[s]`` times in the prompt (twin layers), ``rho[g]`` its origin's load; writes the
    corrected law to ``out[g]`` (which may be ``cdf[g]``: the row is read whole before it is
    written) and returns the stretch factors (:func:`_cross_stage_row`)."""
    G, L = cdf.shape
    stretch = np.empty(G)
    total, work = np.empty(u.size), np.empty((2, L))
    for g in range(G):
        total[:] = 0.0
        for s in range(key.shape[1]):
            _add_quantile_function(tables[s][key[g, s]], u, count[s], total)
        stretch[g] = _cross_stage_row(cdf[g], total, u, rho[g], M, scv, c_mu, c_w, work, out[g])
    return stretch


@njit(cache=True)
def _cross_stage_row(cdf, total, u, rho, M, scv, c_mu, c_w, work, out):  # pragma: no cover
    r"""One row of :func:`_cross_stage`, given ``total``, the sum of its stages' quantile
    functions at the ``U = L // 2`` probabilities ``u`` of :func:`_unit_mids` (grid units;
    :func:`_add_quantile_function`; ``total`` and ``u`` have ``U`` points): mixes the
    comonotone law into ``cdf``, stretches the mixture, writes it to ``out`` (which may be
    ``cdf``: read whole before it is written) and returns the stretch factor. ``work`` is
    ``(2, L)`` scratch. The stretched law is read at ``mid / stretch`` on the uniform grid
    ``mid = j + 1/2`` (in units of h: the stretch and the interpolation are scale-free):
    ``np.interp`` by direct indexing, with one reciprocal instead of a division per point
    (within an ulp of ``mid / stretch``)."""
    L = cdf.size
    como, mixed = work[0], work[1]
    damp = 2.0 / (1.0 + scv)
    _interp_sorted(total, u, 0.0, 1.0, como)
    w = min(c_w * damp * rho, 1.0)
    for x in range(L):
        mixed[x] = (1.0 - w) * cdf[x] + w * como[x]
    stretch = 1.0 + c_mu * damp * M * rho**2
    shrink = 1.0 / stretch
    # v = mid[i] / stretch rises with i: below mid[0] the law is 0 and from mid[L - 1] on it
    # is mixed[L - 1]; the points between read the last mid[j] <= v (v - 0.5 is exact) by
    # an unsigned index, without branches (7.8 us against 9.8 us on 4096 points).
    start = 0
    while start < L and (start + 0.5) * shrink < 0.5:
        out[start] = 0.0
        start += 1
    stop = L
    while stop > start and np.floor((stop - 1 + 0.5) * shrink - 0.5) >= L - 1:
        stop -= 1
    for i in range(start, stop):
        v = (i + 0.5) * shrink
        jf = np.floor(v - 0.5)
        j = np.uint64(jf)
        out[i] = (mixed[j + np.uint64(1)] - mixed[j]) * (v - (jf + 0.5)) + mixed[j]
    for i in range(stop, L):
        out[i] = mixed[L - 1]
    return stretch


def _cross_stage(
    cdf: np.ndarray,
    stages: list[np.ndarray],
    stage_of: np.ndarray,
    rho: np.ndarray,
    M: int,
    scv: float,
) -> tuple[np.ndarray, np.ndarray]:
    r"""The estimate's correction for the positive correlation of a prompt's stages, for every
    origin group (row of ``cdf``) at once; returns the corrected laws (``cdf``, overwritten)
    and the mean factors.
    Stage ``s`` of group ``g`` has the law ``stages[s][stage_of[g, s]]``.

    A prompt revisits its origin in every stage, and a join tends to end late when the
    origin is congested, so its next stage starts in a congested queue. Two fitted terms
    (``docs/latency.md``), damped by :math:`g = 2/(1 + c_s^2)` of the service law (variable
    service times do not carry over between stages): the mean grows by
    :math:`1 + c_\mu g M \rho_j^2` (the law is stretched by that factor), and a weight
    :math:`w = c_w g \rho_j` of the law is the comonotone sum :math:`\sum_s Q_s(U)` of the
    stage quantile functions instead of their convolution (same mean, wider spread).
    """
    # Twin layers (the same table and rows) enter the comonotone sum once, counted twice.
    distinct: dict[tuple[int, bytes], int] = {}
    tables, columns, count = [], [], []
    for s, table in enumerate(stages):
        sig = (id(table), stage_of[:, s].tobytes())
        if sig in distinct:
            count[distinct[sig]] += 1.0
            continue
        distinct[sig] = len(tables)
        tables.append(np.ascontiguousarray(table))
        columns.append(stage_of[:, s])
        count.append(1.0)
    stretch = _cross_stage_kernel(
        cdf,
        tuple(tables),  # one numba type for all
        np.ascontiguousarray(np.column_stack(columns)),
        np.array(count),
        rho,
        _unit_mids(cdf.shape[1]),
        M,
        scv,
        CROSS_STAGE_MEAN,
        CROSS_STAGE_SPREAD,
        cdf,  # in place: the kernel reads a row whole before it writes it
    )
    return cdf, stretch


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
    kind = np.asarray(q).dtype.kind
    if kind not in "iuf":  # strings, bools, objects: not a probability
        raise _fail("q", repr(q), "must be a number (or array of numbers)", "pass e.g. 0.95")
    arr = np.asarray(q, dtype=float)
    out = np.empty(arr.shape)
    status = _checked_quantiles(cdf, h, arr.ravel(), out.reshape(-1)) if arr.size else 1
    if status == 1:
        raise _fail("q", q, "must lie in (0, 1)", "pass a probability such as 0.95")
    if status == 2:
        raise _fail(
            "q", q, f"is beyond the grid (its CDF ends at {cdf[-1]:.12g})", "ask a lower quantile"
        )
    return float(out) if out.ndim == 0 else out


@njit(cache=True)
def _checked_quantiles(cdf, h, q, out):  # pragma: no cover - numba
    """:func:`_quantiles_of` of the monotone CDF ``cdf`` into ``out`` after checking ``q``
    (one compiled call: ``quantile`` is timed with the latency): returns 1 if some ``q`` is
    outside (0, 1) or NaN, else 2 if some ``q`` exceeds the CDF's last value, else 0."""
    for v in q:
        if not (0.0 < v < 1.0):
            return 1
    for v in q:
        if v > cdf[cdf.size - 1]:
            return 2
    _quantiles_of(cdf, h, q, out)
    return 0


def _row_quantiles(cdf: np.ndarray, h: float, q: np.ndarray) -> np.ndarray:
    """``(rows, len(q))`` quantiles of the monotone CDF rows ``cdf`` (each reaching every q)."""
    return _row_quantiles_kernel(np.ascontiguousarray(cdf), h, np.ascontiguousarray(q, float))


@njit(cache=True)
def _row_quantiles_kernel(cdf, h, q):  # pragma: no cover - numba
    """:func:`_row_quantiles` (:func:`_quantiles_of` per row: no rows x grid x probabilities
    temporary)."""
    out = np.empty((cdf.shape[0], q.size))
    for r in range(cdf.shape[0]):
        _quantiles_of(cdf[r], h, q, out[r])
    return out


@njit(cache=True)
def _quantiles_of(row, h, q, out):  # pragma: no cover - numba
    """``out[i]``: the ``q[i]`` quantile of the monotone CDF ``row`` (which reaches every
    ``q[i]``), seconds, by one binary search per probability."""
    for i in range(q.size):
        # Count of entries below q = searchsorted(side="left") on a monotone row.
        j = np.searchsorted(row, q[i])
        before = row[j - 1] if j > 0 else 0.0
        width = max(row[j] - before, 1e-300)
        # The CDF is known at (j + 1/2) h and linear between (mass spread over each cell).
        out[i] = max(h * (j - 0.5 + (q[i] - before) / width), 0.0)


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


def _default_grid(classes: int) -> int:
    """:data:`GRID_POINTS`, halved per doubling of the classes beyond :data:`FULL_GRID_CLASSES`
    (at least 512 points)."""
    halvings = max(0, math.ceil(math.log2(max(classes, 1) / FULL_GRID_CLASSES)))
    return max(GRID_POINTS >> min(halvings, 3), 512)


def latency(
    net: MoANetwork,
    method: str = "estimate",
    service: str = "exponential",
    scv: float = 1.0,
    grid_points: int | None = None,
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
    grid_points : int, optional
        Grid size (a power of two is fastest); the step adapts to the range. Default:
        :data:`GRID_POINTS`, fewer for networks with more than :data:`FULL_GRID_CLASSES`
        distinct devices (:data:`FULL_GRID_CLASSES` gives the measured accuracy).

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
        if isinstance(scv, (bool, np.bool_)) or not isinstance(
            scv, (int, float, np.integer, np.floating)
        ):
            raise _fail("scv", repr(scv), "must be a number", "pass e.g. scv=0.5")
        if not (math.isfinite(scv) and 0 < scv <= MAX_SCV):
            raise _fail(
                "scv",
                repr(scv),
                f"must be finite and > 0 (at most {MAX_SCV:g})",
                "pass e.g. scv=0.5",
            )
        scv = float(scv)
    else:
        scv = 1.0 if service == "exponential" else 0.0
    if grid_points is not None and (
        isinstance(grid_points, bool) or not isinstance(grid_points, (int, np.integer))
    ):
        raise _fail("grid_points", repr(grid_points), "must be an integer", "pass e.g. 4096")
    if grid_points is not None and grid_points < 64:
        raise _fail("grid_points", grid_points, "must be >= 64", "pass e.g. 4096")
    if grid_points is not None and grid_points > MAX_GRID_POINTS:
        raise _fail(
            "grid_points",
            grid_points,
            f"must be <= {MAX_GRID_POINTS} (each grid row takes 8 bytes a point, and the grid "
            "work holds several rows per distinct device law)",
            "pass e.g. 4096 (or 65536 for a finer grid)",
        )
    fast = _homogeneous_complete(net, method, service, scv, grid_points)
    if fast is not None:
        return fast
    rates = job_rates(net)
    _check_stable(net, np.einsum("cn,cn->n", rates, net.service_time))  # (no 3 x n temporary)
    lam = net.arrival_rate
    if lam.sum() == 0:
        raise _fail(
            "arrival_rate", lam, "is zero everywhere, so no prompt is born", "give some rate > 0"
        )
    cls = _classes(net, rates, service, scv)
    q = _overlaps(net, rates) if method == "estimate" else np.zeros((net.M, net.n))
    span = _range_guess(net, cls, service, scv)
    L = _default_grid(cls.load.size) if grid_points is None else int(grid_points)
    _check_grid_memory(cls.load.size, L)
    return _widening(
        lambda h: _compute(net, cls, service, scv, h, L, q, method), span, L, grid_points
    )


def _check_grid_memory(classes: int, L: int) -> None:
    """Refuse, before any work, grids of ``classes`` distinct device laws on ``L`` points that
    would exceed :data:`MEMORY_BUDGET_BYTES`."""
    need = classes * L * 8 * ROWS_PER_CLASS
    if need <= MEMORY_BUDGET_BYTES:
        return
    points = MEMORY_BUDGET_BYTES // (classes * 8 * ROWS_PER_CLASS)
    coarser = f"pass grid_points <= {points} (coarser), " if points >= 64 else ""
    raise ValueError(
        f"net: {classes} distinct device laws (job rates and service times) x {L} grid points "
        f"need ~{need / 1e9:.3g} GB for the latency grids, over the "
        f"{MEMORY_BUDGET_BYTES / 1e9:.3g} GB budget (MEMORY_BUDGET_BYTES); give devices shared "
        f"rates and service times (fewer distinct laws), {coarser}or estimate the latency by "
        "simulation (moa_stability.simulate)"
    )


def _twin_layer(
    net: MoANetwork, soj: _Sojourns, q: np.ndarray, m: int, done: dict[int, int]
) -> int | None:
    """An earlier layer whose join law is layer ``m``'s (uniform selection, same ``k``, same
    overlap, same job law at every device), or ``None``. A selection may differ per layer."""
    if m == net.M or not net.k[m] or net.selection is not None:
        return None
    law = soj.of_class[:, PROPOSE if m == 0 else REFINE]
    for prev in done:
        prev_law = soj.of_class[:, PROPOSE if prev == 0 else REFINE]
        if (
            net.k[prev] == net.k[m]
            and np.array_equal(prev_law, law)
            and np.array_equal(q[prev], q[m])
        ):
            return done[prev]
    return None


@njit(cache=True)
def _hat_product(hats, key):  # pragma: no cover - numba
    """Rows ``g``: the product over stages ``s`` of ``hats[s][key[g, s]]`` (left to right),
    without gathering each stage's rows first."""
    G, S = key.shape
    out = np.empty((G, hats[0].shape[1]), np.complex128)
    for g in range(G):
        row = out[g]
        row[:] = hats[0][key[g, 0]]
        for s in range(1, S):
            src = hats[s][key[g, s]]
            for x in range(row.size):
                row[x] = row[x] * src[x]
    return out


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
    """The result on a grid of ``L`` steps of ``h`` seconds, or ``None`` if its tail is cut.
    Every step works on all distinct laws at once (rows), never per device."""
    soj = _sojourn_cdfs(cls, service, scv, h, L)
    if np.any(1.0 - soj.cdf[:, -1] > TAIL_TOLERANCE):
        return None
    own = cls.of_device
    x = h * np.arange(L)
    last = AGGREGATE if net.M else PROPOSE
    # Each stage is a table of laws (CDF rows, their transforms, means) and each device's row
    # in it: a layer's distinct joins, or for a stage of one job (k_m = 0, the aggregate,
    # M = 0) the sojourn table itself, with its exact P-K means and no transform to redo.
    stage_groups, stage_hats, stage_means, stage_cdfs = [], [], [], []
    # Layers whose joins have the same inputs (k, the job laws of every device, the overlap)
    # have the same law: computed once (typically refine layers, and the propose layer when
    # propose and refine jobs take equally long). Keyed by layer, valued by stage index.
    done: dict[int, int] = {}
    for m in range(net.M + 1):
        twin = _twin_layer(net, soj, q, m, done)
        if twin is not None:
            for stage in (stage_groups, stage_hats, stage_cdfs, stage_means):
                stage.append(stage[twin])
            continue
        if m < net.M and net.k[m]:
            group, joins = _layer_joins(net, cls, soj, m, q, method)
            pmfs = _pmf_rows(joins)
            stage_groups.append(group)
            stage_hats.append(np.fft.rfft(pmfs, axis=1))
            stage_cdfs.append(joins)
            stage_means.append(pmfs @ x)
            done[m] = m
        else:
            c = last if m == net.M else (PROPOSE if m == 0 else REFINE)
            stage_groups.append(soj.of_class[own, c])
            stage_hats.append(soj.hat)
            stage_cdfs.append(soj.cdf)
            stage_means.append(soj.mean)

    first, origin_group = _distinct_rows(stage_groups)
    origin_key = np.column_stack([column[first] for column in stage_groups])
    weights = np.bincount(origin_group, weights=net.arrival_rate, minlength=len(origin_key))
    mean = stage_means[0][origin_key[:, 0]]
    for s in range(1, len(stage_means)):
        mean = mean + stage_means[s][origin_key[:, s]]
    group_load = cls.load[own[first]]  # the cross-stage correction uses the origin's load
    if len(stage_cdfs) > 1:  # the stages' sum must not wrap around the grid (_add_log_mgf)
        tables: dict[int, np.ndarray] = {}
        log_mgf = np.zeros((len(origin_key), _WRAP_EXPONENTS.size))
        for s, table in enumerate(stage_cdfs):
            if id(table) not in tables:
                tables[id(table)] = _log_mgf_rows(np.ascontiguousarray(table))
            log_mgf += tables[id(table)][origin_key[:, s]]
        bound = np.min(log_mgf - _WRAP_EXPONENTS, axis=1)
        if np.any(bound > math.log(TAIL_TOLERANCE)):
            return None
    # The prompt laws in blocks of origin groups: the network-wide law, the quantiles and the
    # means are all that is kept of them, and a block's arrays (at most _BLOCK_POINTS values)
    # are recycled by the allocator, where n x grid arrays would be fresh memory each time.
    quantiles = np.empty((len(origin_key), len(_QUANTILES)))
    law = np.zeros(L)
    rows = max(1, _BLOCK_POINTS // L)
    for lo in range(0, len(origin_key), rows):
        block = slice(lo, lo + rows)
        pmf = np.fft.irfft(_hat_product(tuple(stage_hats), origin_key[block]), L, axis=1)
        cdf = _cdf_rows(pmf, pmf, np.empty(0))  # in place: each entry is read before written
        if method == "estimate" and net.M:
            cdf, stretch = _cross_stage(
                cdf, stage_cdfs, origin_key[block], group_load[block], net.M, scv
            )
            mean[block] *= stretch
        if np.any(1.0 - cdf[:, -1] > TAIL_TOLERANCE):  # (after the estimate's stretch)
            return None
        quantiles[block] = _row_quantiles(cdf, h, np.array(_QUANTILES))
        law += weights[block] @ cdf
    unborn = net.arrival_rate == 0
    origin_mean, origin_quantiles = mean[origin_group], quantiles[origin_group]
    origin_mean[unborn] = np.nan  # (in place: fresh n-sized arrays cost page faults at scale)
    origin_quantiles[unborn] = np.nan
    return LatencyResult(
        method=method,
        service=service,
        scv=scv,
        mean_s=float(weights @ mean / weights.sum()),
        origin_mean_s=origin_mean,
        origin_quantiles_s=origin_quantiles,
        arrival_rate=net.arrival_rate,
        loads=cls.load[own],
        grid_step_s=h,
        cdf=law / weights.sum(),
    )


# ---- the homogeneous complete network, by scalars -----------------------------------------------
def _homogeneous_complete(
    net: MoANetwork, method: str, service: str, scv: float, grid_points: int | None
) -> LatencyResult | None:
    r""":func:`latency` of a network whose devices are all alike (equal arrival rates > 0, equal
    service means per type) on the complete graph with uniform selection and :math:`n \ge 3`
    (the paper's networks, and sweeps over their rates), or ``None`` for any other network.

    The general path's steps with every per-device quantity a scalar: one class, so the
    overlap, the range and the loads are closed forms, and the join of :math:`K = k+1`
    siblings of one law :math:`F` is :math:`e_k(F, \dots, F)\,F/\binom{n-1}{k} = F^K`, taken
    to the estimate's power :math:`a/K` as :math:`F^a`. Same grid, same discretisation, same
    transforms: it agrees with the general path to round-off (tests). The grid work is
    compiled (:func:`_homogeneous_grid`: one call for exponential service of one mean); what
    does not depend on the arrival rate is cached (:func:`_homogeneous_layout`).
    """
    n, M, ks = net.n, net.M, net.k
    if not (net.is_complete and net.selection is None and n >= 3):
        return None
    lam_all, st = net.arrival_rate, net.service_time
    if not _alike(lam_all, st):
        return None
    lam = float(lam_all[0])
    means = tuple(st[:, 0].tolist())
    unit_rates, q, distinct, share, longest, structure = _homogeneous_layout(
        n, M, ks, means, method == "estimate"
    )
    rates = (lam * unit_rates[0], lam * unit_rates[1], lam * unit_rates[2])
    load = rates[0] * means[0] + rates[1] * means[1] + rates[2] * means[2]
    if load >= 1:
        _check_stable(net, np.full(n, load))
    c2 = 1.0 if service == "exponential" else scv  # (scv is 0 for deterministic service)
    # (rate x mean) x mean: the load's factors first, since a mean squared may overflow
    second = rates[0] * means[0] * means[0] + rates[1] * means[1] * means[1]
    second += rates[2] * means[2] * means[2]
    wait_mean = second * (1.0 + c2) / (2.0 * (1.0 - load))
    # _range_guess: every stage's mean sojourn plus 25 tail lengths (E[S] + E[S^2]/E[S]).
    span = (M + 1) * (wait_mean + longest) + 25.0 * (wait_mean / load + longest * (2.0 + c2))
    L = GRID_POINTS if grid_points is None else int(grid_points)
    return _widening(
        lambda h: _homogeneous_grid(
            net, method, service, scv, h, L, load, q, wait_mean, means, distinct, share, structure
        ),
        span,
        L,
        grid_points,
    )


@lru_cache(maxsize=256)
def _homogeneous_layout(
    n: int, M: int, ks: tuple[int, ...], means: tuple[float, float, float], estimate: bool
) -> tuple[
    tuple[float, float, float],
    float,
    list[float],
    list[float],
    float,
    tuple[np.ndarray, np.ndarray, np.ndarray],
]:
    """What :func:`_homogeneous_complete` needs that does not depend on the arrival rate
    (cached: a sweep over rates asks for the same few): the job rates per device at arrival
    rate 1 (``loads.job_rates`` on the complete graph with equal rates: its own prompt's job
    plus :math:`k_m/(n-1)` of each of the :math:`n-1` others' in every layer; propose, refine,
    aggregate), the estimate's sibling overlap ``q``
    (a ratio of job rates), the distinct service means in use, their shares of the work, the
    longest mean, and the prompt's stages: the siblings ``K`` and the sojourn row of each
    distinct join (layers with the same ``K`` and law are twins: one join), and per stage
    ``(is a join, row in its table, count, job type)``, the count being how often the
    stage's law occurs in the prompt at its first occurrence and 0 at repeats (the
    cross-stage correction sums each distinct stage law once, times its count)."""
    rates = (1.0, 0.0, 0.0) if M == 0 else (1.0 + ks[0], sum([1.0 + km for km in ks[1:]]), 1.0)
    used = [c for c in (PROPOSE, REFINE, AGGREGATE) if rates[c] > 0]
    q = 0.0
    if estimate and M and max(ks):
        # _overlaps on the complete graph with all rates alike: every layer the same value.
        scale = 1.0 / math.sqrt(sum(rates))
        direct = sum([km / (n - 1) for km in ks])
        third = sum([km * (km - 1) / ((n - 1) * (n - 2)) for km in ks])
        a = (direct - third) + third * n
        q = scale * (a * (n - 1) * scale + (direct - third) * (n - 1) * scale) / (n - 1)
    distinct = sorted({means[c] for c in used})
    law = [distinct.index(means[c]) if rates[c] > 0 else -1 for c in range(3)]
    load = rates[0] * means[0] + rates[1] * means[1] + rates[2] * means[2]
    share = [0.0] * len(distinct)  # each distinct mean's share of the work (B_e's weights)
    for c in used:
        share[law[c]] += rates[c] * means[c] / load
    joins: dict[tuple[int, int], int] = {}
    stages: list[list[int]] = []
    first: dict[tuple[int, int], int] = {}
    for m in range(M + 1):
        c = (AGGREGATE if M else PROPOSE) if m == M else (PROPOSE if m == 0 else REFINE)
        if m < M and ks[m]:
            stage = (1, joins.setdefault((ks[m] + 1, law[c]), len(joins)))
        else:  # one job: its sojourn
            stage = (0, law[c])
        if stage in first:
            stages[first[stage]][2] += 1
            stages.append([*stage, 0, c])
        else:
            first[stage] = len(stages)
            stages.append([*stage, 1, c])
    structure = (
        np.array([K for K, _ in joins], np.int64),
        np.array([v for _, v in joins], np.int64),
        np.array(stages, np.int64),
    )
    return rates, q, distinct, share, max([means[c] for c in used]), structure


@njit(cache=True)
def _alike(lam, service_time):  # pragma: no cover - numba
    """All arrival rates equal and > 0 and every type's service means equal (one pass, no
    temporaries: this test runs on every call of :func:`latency`)."""
    if lam[0] <= 0:
        return False
    for i in range(lam.size):
        if lam[i] != lam[0]:
            return False
    for c in range(service_time.shape[0]):
        for i in range(service_time.shape[1]):
            if service_time[c, i] != service_time[c, 0]:
                return False
    return True


@njit(cache=True)
def _add_log_mgf(cdf, weight, out):  # pragma: no cover - numba
    r"""``out[i] += weight * log M(theta_i)``: the log moment generating function, in grid
    steps, of the law whose CDF row is ``cdf`` (its pmf clipped at 0), at
    :math:`\theta_i L` = :data:`_WRAP_EXPONENTS`. By Horner's rule on
    :math:`\sum_j p_j e^{\theta (j - L + 1)}` (no overflow), all exponents in one pass."""
    L = cdf.size
    C = _WRAP_EXPONENTS.size
    shrink = np.empty(C)
    acc = np.zeros(C)
    for i in range(C):
        shrink[i] = math.exp(-_WRAP_EXPONENTS[i] / L)
    before = 0.0
    for j in range(L):
        p = max(cdf[j] - before, 0.0)
        before = cdf[j]
        for i in range(C):
            acc[i] = acc[i] * shrink[i] + p
    for i in range(C):
        out[i] += weight * (math.log(max(acc[i], 1e-300)) + _WRAP_EXPONENTS[i] * (L - 1) / L)


@njit(cache=True)
def _wrapped_log_bound(log_mgf):  # pragma: no cover - numba
    r"""Chernoff's bound :math:`\min_\theta e^{-\theta L} \prod_s M_s(\theta)` (its log) on
    the mass of a sum of independent grid laws at or beyond ``L`` steps (what the circular
    convolution wraps), from the summed ``log_mgf`` (:func:`_add_log_mgf`)."""
    best = np.inf
    for i in range(log_mgf.size):
        best = min(best, log_mgf[i] - _WRAP_EXPONENTS[i])
    return best


@njit(cache=True)
def _log_mgf_rows(cdf):  # pragma: no cover - numba
    """:func:`_add_log_mgf` of each CDF row of ``cdf`` ``(rows, L)``: ``(rows, C)``."""
    out = np.zeros((cdf.shape[0], _WRAP_EXPONENTS.size))
    for r in range(cdf.shape[0]):
        _add_log_mgf(cdf[r], 1.0, out[r])
    return out


def _widening(
    attempt: Callable[[float], LatencyResult | None], span: float, L: int, grid_points: int | None
) -> LatencyResult:
    """``attempt(h)`` on ``L`` cells of width ``h = span / L``, the span doubled until the
    latency's tail fits (``attempt`` returns ``None`` when it does not)."""
    for _ in range(_MAX_DOUBLINGS):
        result = attempt(span / L)
        if result is not None:
            return result
        span *= 2.0
    raise ValueError(
        f"the latency law does not fit {_MAX_DOUBLINGS} doublings of the grid's span "
        f"(up to {span / 2:.4g} s, step {span / 2 / L:.4g} s): the prompt's stages, their tails "
        "or their discretisation need more (loads close to 1, many layers M, a large scv, or "
        "service times of very different scales); lower the load (net.at_load), M or scv, or "
        "estimate the latency by simulation (moa_stability.simulate)"
        + (
            ""
            if grid_points is None
            else f" (grid_points={grid_points} sets the points, not the span)"
        )
    )


@lru_cache(maxsize=8)
def _unit_mids(L: int) -> np.ndarray:
    """``(j + 1/2)/U``, ``j = 0..U-1``, ``U = L // 2``: the probabilities at which the
    cross-stage correction reads the stage quantile functions (cached: the compiled path is
    called per evaluation). Half the grid's points: the comonotone law is a small, fitted part
    of the estimate, and at ``U = L`` its two merges cost 7 us more per paper-network
    evaluation for changes below 2.2e-4 relative (docs/latency.md)."""
    return (np.arange(L // 2) + 0.5) / (L // 2)


@lru_cache(maxsize=8)
def _grid_constants(L: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_twiddles` and :func:`_unit_mids` of ``L`` points (one cached call per
    evaluation of the compiled path)."""
    return (*_twiddles(L), _unit_mids(L))


@lru_cache(maxsize=8)
def _twiddles(L: int) -> tuple[np.ndarray, np.ndarray]:
    r""":math:`1 - \cos\theta_k = 2\sin^2(\theta_k/2)` and :math:`\sin\theta_k` for
    :math:`\theta_k = 2\pi k/L`, :math:`k = 0..L/2` (the sine from the nearer of
    :math:`\theta, \pi - \theta`: exactly 0 at the Nyquist frequency)."""
    k = np.arange(L // 2 + 1)
    return 2.0 * np.sin(np.pi * k / L) ** 2, np.sin(np.pi * np.minimum(2 * k, L - 2 * k) / L)


@njit(cache=True, error_model="numpy")
def _exponential_hats(mean, share, h, L, one_minus_cos, sine):  # pragma: no cover - numba
    r"""The real DFTs of :func:`_exponential_rows` (rows, one per mean :math:`s`) in closed
    form, and of the equilibrium mixture :math:`\sum_v` ``share[v]`` row :math:`v` (exponential
    service is its own equilibrium law). With :math:`a = h/s`, :math:`r = e^{-a}`,
    :math:`z = r e^{-i\theta_k}`, the row is :math:`p_0` then :math:`C r^j`
    (:math:`C = \frac{4}{a}\sinh^2(a/2)`) for :math:`j = 1..L-1`, a finite geometric sum:

    .. math:: \widehat p_k = p_0 + C\,\frac{z - r^L}{1 - z},\qquad
        1 - z = (1 - r) + r(1 - \cos\theta_k) + i\,r\sin\theta_k,

    each part without cancellation (:math:`1 - r` by ``expm1``), so it equals the FFT of the
    row to round-off at a fraction of its cost."""
    V, F = mean.size, L // 2 + 1
    job = np.empty((V, F), np.complex128)
    be = np.zeros(F, np.complex128)
    for v in range(V):
        a, r, head, first = _geometric_cells(mean[v], h)
        # C (z - r^L) = C r (e^{-i theta} - r^(L-1)): in C r, finite for any step
        rL = math.exp(-a * (L - 1))
        gap = -math.expm1(-a)
        for x in range(F):
            num_re, num_im = 1.0 - one_minus_cos[x] - rL, -sine[x]
            den_re, den_im = gap + r * one_minus_cos[x], r * sine[x]
            scale = first / (den_re * den_re + den_im * den_im)
            value = complex(
                head + scale * (num_re * den_re + num_im * den_im),
                scale * (num_im * den_re - num_re * den_im),
            )
            job[v, x] = value
            be[x] += share[v] * value
    return job, be


@njit(cache=True, error_model="numpy")
def _geometric_sojourn(mean, load, h, L, one_minus_cos, sine, cumulative=False):
    # pragma: no cover - numba
    r"""The sojourn law of the one class with exponential service of one mean :math:`s`
    (the paper's networks): Pollaczek-Khinchine's transform of :func:`_exponential_hats`'s
    row, :math:`\widehat p = (\alpha + \beta z)/(1 - z)` (:math:`\alpha = p_0 - C r^L`,
    :math:`\beta = C - p_0`), is a ratio of first-degree polynomials in :math:`z`,

    .. math:: \widehat s_k = \frac{(1-\rho)\,\widehat p_k}{1 - \rho\,\widehat p_k}
        = \frac{1-\rho}{\gamma}\,\frac{\alpha + \beta z}{1 - R\,e^{-i\theta_k}},\qquad
        \gamma = 1 - \rho\alpha,\quad R = \frac{(1 + \rho\beta)\,r}{\gamma},

    so its inverse DFT (the L-periodic sum of the series) is a geometric sequence:
    :math:`s_j = \frac{1-\rho}{\gamma}(\alpha R + \beta r) R^{j-1}/(1 - R^L)` for
    :math:`j \ge 1` and :math:`s_0 = \frac{1-\rho}{\gamma}(\alpha + \beta r R^{L-1})/(1-R^L)`:
    the FFT route's numbers to round-off, without its two transforms. :math:`\ln R` comes
    from ``log1p`` and :math:`1 - R`, :math:`1 - R^L` from ``expm1``, without cancellation.
    Returns the transform ``(1, L // 2 + 1)`` and the pmf ``(1, L)``, or with ``cumulative``
    its CDF (capped at 1) in closed form instead of by a running sum,
    :math:`F_j = s_0 + s_1 (1 - R^j)/(1 - R) = A - s_j R/(1 - R)` with
    :math:`A = s_0 + s_1/(1 - R)`: one independent operation per point, not a chain of
    additions; monotone because the computed :math:`s_j` decrease (the relative round-off of
    the products, below :math:`L \cdot 10^{-16}`, is far below :math:`1 - R`; else, and then
    only, the running sum :func:`_cdf_rows`)."""
    F = L // 2 + 1
    a, r, head, first = _geometric_cells(mean, h)
    alpha = head - first * math.exp(-a * (L - 1))
    gamma = 1.0 - load * alpha
    if a < 50.0:
        beta = 4.0 * math.sinh(0.5 * a) ** 2 / a - head  # C - p_0
        log_R = math.log1p(load * beta) - math.log1p(-load * alpha) - a
        beta_r = beta * r
    else:  # C overflows: (1 + rho beta) r = r + rho (C r - p_0 r), both terms >= 0
        beta_r = first - head * r
        log_R = math.log(r + load * (first - head * r)) - math.log1p(-load * alpha)
    R = math.exp(log_R)
    gap = -math.expm1(log_R)
    factor = (1.0 - load) / gamma
    hat = np.empty((1, F), np.complex128)
    for x in range(F):
        num_re, num_im = alpha + beta_r * (1.0 - one_minus_cos[x]), -beta_r * sine[x]
        den_re, den_im = gap + R * one_minus_cos[x], R * sine[x]
        scale = factor / (den_re * den_re + den_im * den_im)
        hat[0, x] = complex(
            scale * (num_re * den_re + num_im * den_im), scale * (num_im * den_re - num_re * den_im)
        )
    pmf = np.empty((1, L))
    cycle = -math.expm1(L * log_R)
    pmf[0, 0] = factor * (alpha + beta_r * math.exp((L - 1) * log_R)) / cycle
    # s_j = s_1 R^(j-1): eight interleaved products (s_j = s_(j-8) R^8) instead of one
    # chain, whose multiplication latency would bound the loop.
    term = factor * (alpha * R + beta_r) / cycle
    for j in range(1, min(L, 9)):
        pmf[0, j] = term
        term *= R
    R8 = math.exp(8.0 * log_R)
    for j in range(9, L):
        pmf[0, j] = pmf[0, j - 8] * R8
    if cumulative:
        if gap > L * 1e-15:
            row = pmf[0]
            slope = R / gap
            total = row[0] + row[1] / gap
            for j in range(1, L):
                row[j] = min(total - slope * row[j], 1.0)
            row[0] = min(row[0], 1.0)
        else:
            _cdf_rows(pmf, pmf, np.empty(0))
    return hat, pmf


@njit(cache=True, error_model="numpy")
def _pk_sojourns(job_hat, be_hat, load, L):  # pragma: no cover - numba
    r"""The sojourn laws of the one class (rows: its distinct service means) from the service
    transforms ``job_hat`` and the equilibrium mixture's ``be_hat``:
    :math:`\widehat w\,\widehat b` with :math:`\widehat w = (1-\rho)/(1-\rho\,\widehat b_e)`
    (Pollaczek-Khinchine) and its inverse FFT. Returns the transforms and the pmfs."""
    V, F = job_hat.shape
    hat = np.empty((V, F), np.complex128)
    pmf = np.empty((V, L))
    for v in range(V):
        for x in range(F):
            den_re, den_im = 1.0 - load * be_hat[x].real, -load * be_hat[x].imag
            scale = (1.0 - load) / (den_re * den_re + den_im * den_im)
            j = job_hat[v, x]
            hat[v, x] = complex(
                scale * (j.real * den_re + j.imag * den_im),
                scale * (j.imag * den_re - j.real * den_im),
            )
        pmf[v] = np.fft.irfft(hat[v], L)
    return hat, pmf


@njit(cache=True, error_model="numpy")
def _geometric_prompt(
    mean, load, h, L, one_minus_cos, sine, siblings, q, estimate, join_law, stages, prompt
):  # pragma: no cover - numba
    """:func:`_sojourn_table` of :func:`_geometric_sojourn`'s closed-form CDF, then
    :func:`_homogeneous_prompt` (one compiled call from Python for the paper's networks, which
    pay each call's dispatch per evaluation); ``prompt`` as there."""
    hat, cdf = _geometric_sojourn(mean, load, h, L, one_minus_cos, sine, True)
    tail = prompt[1][2]
    cdf, top, power, fits = _sojourn_table(hat, cdf, load, siblings, q, estimate, tail, 0.0, True)
    if not fits:
        return cdf[0], 0.0, np.empty((0, 3)), np.empty(0), np.empty(0), False
    return _homogeneous_prompt(cdf, hat, top, power, join_law, stages, load, prompt)


@njit(cache=True)
def _sojourn_table(hat, pmf, load, siblings, q, estimate, tail, round_off, cumulative=False):
    # pragma: no cover - numba
    r"""The sojourn table of the one class from its transforms ``hat`` and pmfs ``pmf``
    (rows: distinct service means): the pmfs become monotone CDFs in place
    (:func:`_cdf_rows`); a row that this changed beyond ``round_off`` gets the transform of
    the stored law (as :func:`_sojourn_cdfs`). With ``cumulative`` the rows of ``pmf`` are
    such CDFs already. Returns the CDFs, per row the index from
    which the CDF is exactly 1 (the join's power is taken before it only), the join
    exponents (the estimate's :func:`_effective_siblings`, or :math:`K`) of the joins of
    ``siblings`` siblings, and whether the tail fits (mass beyond the grid <= ``tail``)."""
    V, L = pmf.shape
    change = np.zeros(V)
    # in place: each entry is read before it is written
    cdf = pmf if cumulative else _cdf_rows(pmf, pmf, change)
    top = np.empty(V, np.int64)
    fits = True
    for v in range(V):
        fits = fits and 1.0 - cdf[v, L - 1] <= tail
        if change[v] > round_off:
            law = np.empty(L)
            law[0] = cdf[v, 0]
            for x in range(1, L):
                law[x] = cdf[v, x] - cdf[v, x - 1]
            hat[v] = np.fft.rfft(law)
        j = L
        while j > 0 and cdf[v, j - 1] >= 1.0:
            j -= 1
        top[v] = j
    power = np.empty(siblings.size)
    for i in range(siblings.size):
        K = siblings[i]
        power[i] = (
            _effective_siblings(K, np.array([load]), np.array([q]))[0] if estimate else float(K)
        )
    return cdf, top, power, fits


# fdlibm's log (e_log.c: ln 2 in two parts, the polynomial in s^2 of log(1+f) = 2 atanh(s))
_LN2_HI, _LN2_LO = 6.93147180369123816490e-01, 1.90821492927058770002e-10
_LG = (
    6.666666666666735130e-01,
    3.999999999940941908e-01,
    2.857142874366239149e-01,
    2.222219843214978396e-01,
    1.818357216161805012e-01,
    1.531383769920937332e-01,
    1.479819860511658591e-01,
)
_EXP_TAYLOR = tuple(1.0 / math.factorial(i) for i in range(2, 14))
# F ** a near F = 1 by series (:func:`_power`): 1 - F below NEAR_ONE and below NEAR_ONE_Y / a
_NEAR_ONE, _NEAR_ONE_Y = 2.0**-10, 2.0**-8


@njit(cache=True, error_model="numpy", fastmath={"contract"})
def _power(F, a, count, out, work):  # pragma: no cover - numba
    r"""``out[:count] = F[:count] ** a`` for CDF values :math:`0 \le F \le 1` and :math:`a > 0`,
    in loops that LLVM vectorises (``work``: scratch of ``count`` points), so that the joins
    :math:`F^a` cost no call back to Python between two compiled kernels.
    :math:`F = m\,2^e` with :math:`m \in [\sqrt{1/2}, \sqrt 2)` from the bits;
    :math:`y = a \log F` by fdlibm's ``log`` (``e_log.c``: :math:`\log m = 2\,{\rm atanh}
    \frac{m-1}{m+1}`, a degree-14 polynomial, :math:`e \ln 2` in two parts);
    :math:`e^y = 2^k e^r` with :math:`k = {\rm round}(y/\ln 2)`, :math:`|r| \le \ln 2/2`,
    :math:`e^r` by its Taylor polynomial of degree 13 (truncation :math:`< 5 \cdot 10^{-18}`)
    and :math:`2^k` added to the exponent bits; an integral :math:`a \le 16` (the bound's
    :math:`K`) by repeated squaring, a few multiplications per point. Within
    :math:`(a + |y|) \cdot 4 \cdot 10^{-16}` relative of ``np.power`` (tests); ``F = 1``
    gives exactly 1. Off the squaring, zero and subnormal ``F`` and results below the normal
    range (:math:`k < -1021`) take the library ``pow``. Fused
    multiply-adds (``fastmath`` contraction only) halve the polynomials' cost; they change
    round-off only. Before the series below, measured on the paper network's joins (2,600
    points, side by side on a busy machine): 9.0-9.7 us against 7.7-8.1 us for numpy's SIMD
    ``power`` with its Python call, but it lets the sojourn table, the joins and the prompt
    law be one compiled call, which saves more (a compiled scalar ``pow`` is 3-4x slower).
    The fallback runs up to the last point that needs it; with ``F`` a CDF row that is a
    prefix.

    Near 1, from the first point where :math:`x = 1 - F < t = \min(2^{-10}, 2^{-8}/a)` (one
    index, found by bisection: ``F`` is a non-decreasing CDF row; a row that is not is
    detected and computed by the general loop), no log and no exp:
    :math:`x` is exact (Sterbenz, :math:`F \ge 1/2`),
    :math:`y = a \log(1 - x) = -a\,(x + x^2/2 + \dots + x^5/5)` and
    :math:`F^a = e^y \approx 1 + y + \dots + y^5/5!`, ten multiply-adds per point (the sojourn
    CDF's tail: 30-93% of the paper network's grid over loads 0.1..0.95, 86% at load 0.7,
    where the power takes 5.8 us against 12.6 us without the series, side by side).
    Truncation: the log's remainder :math:`\sum_{i>5} x^i/i \le x^6/(6(1-x))` moves
    :math:`y` by at most :math:`a x \cdot x^5/(6(1-x)) \le 2^{-8} \cdot 2^{-50}/(6(1 -
    2^{-10})) < 5.8 \cdot 10^{-19}`, which is the relative change of :math:`e^y`; with
    :math:`|y| \le a x/(1-x) \le Y = 2^{-8}/(1-2^{-10})` the exp's remainder is at most
    :math:`Y^6/6!` (:math:`y \le 0`) and relative to :math:`e^y \ge e^{-Y}` at most
    :math:`e^Y Y^6/720 < 5.0 \cdot 10^{-18}`: in all below :math:`10^{-17}` relative, far
    below the round-off (a few ulp)."""
    if a == math.floor(a) and 1.0 <= a <= 16.0:  # the bound's F^K: by squaring
        n = int(a)
        for i in range(count):
            work[i] = F[i]
            out[i] = 1.0
        while True:
            if n & 1:
                for i in range(count):
                    out[i] *= work[i]
            n >>= 1
            if n == 0:
                return
            for i in range(count):
                work[i] *= work[i]
    limit = min(_NEAR_ONE, _NEAR_ONE_Y / a)
    low, high = 0, count  # the first point with 1 - F < limit (high: none)
    while low < high:
        mid = (low + high) // 2
        if 1.0 - F[mid] < limit:
            high = mid
        else:
            low = mid + 1
    far = 0
    # over slices from 0: a loop from ``high`` reads F[i] with a signed index LLVM cannot prove
    # non-negative, and vectorises it half as well (4.4 us against 2.3 us on 3,534 points)
    near, near_out = F[high:count], out[high:count]
    for i in range(count - high):
        x = 1.0 - near[i]
        far += x >= limit
        minus_log = x * (1.0 + x * (1.0 / 2 + x * (1.0 / 3 + x * (1.0 / 4 + x * (1.0 / 5)))))
        y = -a * minus_log
        near_out[i] = 1.0 + y * (
            1.0 + y * (1.0 / 2 + y * (1.0 / 6 + y * (1.0 / 24 + y * (1.0 / 120))))
        )
    count = high if far == 0 else count  # (a row that is not monotone: all in the loops below)
    bits = F.view(np.int64)
    mantissa = out.view(np.int64)
    for i in range(count):  # the mantissa's bits into out, the exponent into work
        b = bits[i]
        fraction = b & 0x000FFFFFFFFFFFFF
        big = fraction > 0x0006A09E667F3BCD  # m > sqrt(2): use m/2 and e + 1
        mantissa[i] = fraction | (0x3FE0000000000000 if big else 0x3FF0000000000000)
        work[i] = (b >> 52) - (1022 if big else 1023)
    for i in range(count):
        f = out[i] - 1.0
        s = f / (2.0 + f)
        z = s * s
        w = z * z
        R = z * (_LG[0] + w * (_LG[2] + w * (_LG[4] + w * _LG[6]))) + w * (
            _LG[1] + w * (_LG[3] + w * _LG[5])
        )
        half_f2 = 0.5 * f * f
        e = work[i]
        y = a * (e * _LN2_HI - ((half_f2 - (s * (half_f2 + R) + e * _LN2_LO)) - f))
        # k = round(y / ln 2) by the 1.5 * 2^52 shift (exact for |k| < 2^51, no libm call)
        k = (y * 1.4426950408889634 + 6755399441055744.0) - 6755399441055744.0
        r = (y - k * _LN2_HI) - k * _LN2_LO
        t = _EXP_TAYLOR
        poly = t[9] + r * (t[10] + r * t[11])
        poly = t[5] + r * (t[6] + r * (t[7] + r * (t[8] + r * poly)))
        poly = t[0] + r * (t[1] + r * (t[2] + r * (t[3] + r * (t[4] + r * poly))))
        out[i] = 1.0 + r * (1.0 + r * poly)
        work[i] = k
    # The fallback in a loop of its own, up to the last point that needs it (a prefix of a
    # CDF row): in the loops above LLVM would vectorise the rare call by calling pow for
    # every point (4x the cost of all the rest).
    last = -1
    for i in range(count):
        k = work[i]
        mantissa[i] += np.int64(k) << 52
        rare = (bits[i] < 0x0010000000000000) | (k < -1021.0)
        last = max(last, i if rare else -1)
    for i in range(last + 1):
        if bits[i] < 0x0010000000000000 or work[i] < -1021.0:
            out[i] = F[i] ** a


@njit(cache=True)
def _homogeneous_prompt(cdf, hat, top, power, join_law, stages, load, prompt):
    # pragma: no cover - numba
    r"""The prompt law of the one class, from its sojourn table (``cdf``, ``hat``, ``top``,
    ``power`` as :func:`_sojourn_table`): the join laws, join ``j`` being
    ``cdf[join_law[j]] ** power[j]`` (:func:`_power`, up to the row's ``top``; exactly 1
    beyond), their pmfs, transforms and means; the product of the stage transforms
    (``stages`` as :func:`_homogeneous_layout`; a one-job stage of type ``c`` has the exact P-K
    mean ``sojourn_mean[c]``); its inverse made a monotone CDF; for the estimate (``cross``)
    the cross-stage correction (:func:`_cross_stage_row`, at ``u`` = :func:`_unit_mids`);
    p50/p95/p99. ``prompt = (sojourn_mean, (c_mu, c_w, tail), h, cross, u, M, scv, n)``
    (one tuple: a call's dispatch grows with its arguments). Returns the law, the mean, the
    quantiles, means and loads repeated for the ``n`` origins, and whether the tail fits (mass
    beyond the grid <= ``tail``)."""
    sojourn_mean, (c_mu, c_w, tail), h, cross, u, M, scv, n = prompt
    L, F = cdf.shape[1], hat.shape[1]
    J = power.size
    joins = np.empty((J, L))
    join_hat = np.empty((J, F), np.complex128)
    join_mean = np.empty(J)
    pmf = np.empty(L)
    for j in range(J):
        row = joins[j]
        # F is exactly 1 from the top on: the power is taken before it only, and beyond the
        # top the pmf is exactly 0, so the loops stop there.
        _power(cdf[join_law[j]], power[j], top[join_law[j]], row, pmf)
        row[top[join_law[j]] :] = 1.0
        top_j = min(top[join_law[j]] + 1, L)
        pmf[top_j:] = 0.0
        pmf[0] = row[0]
        for x in range(1, top_j):
            pmf[x] = row[x] - row[x - 1]
        # sum x pmf[x] in four interleaved sums (one chain of additions bounds the loop)
        m0, m1, m2, m3 = 0.0, 0.0, 0.0, 0.0
        for x in range(0, top_j - 3, 4):
            m0 += x * pmf[x]
            m1 += (x + 1) * pmf[x + 1]
            m2 += (x + 2) * pmf[x + 2]
            m3 += (x + 3) * pmf[x + 3]
        for x in range(top_j - top_j % 4, top_j):
            m0 += x * pmf[x]
        join_hat[j] = np.fft.rfft(pmf)
        join_mean[j] = h * ((m0 + m1) + (m2 + m3))
    mean = 0.0
    log_mgf = np.zeros(_WRAP_EXPONENTS.size)
    for s in range(stages.shape[0]):
        mean += join_mean[stages[s, 1]] if stages[s, 0] else sojourn_mean[stages[s, 3]]
        if stages[s, 2]:  # each distinct stage law once, times its count
            table = joins if stages[s, 0] else cdf
            _add_log_mgf(table[stages[s, 1]], float(stages[s, 2]), log_mgf)
    wrapped = stages.shape[0] > 1 and _wrapped_log_bound(log_mgf) > math.log(tail)
    total = np.empty(F, np.complex128)
    for s in range(stages.shape[0]):
        row = join_hat[stages[s, 1]] if stages[s, 0] else hat[stages[s, 1]]
        if s == 0:
            total[:] = row
        else:
            for x in range(F):  # (an explicit loop: numba's ``*=`` on arrays is slower)
                total[x] = total[x] * row[x]
    law = np.fft.irfft(total, L)
    _running_cdf(law, law)
    if cross:
        quantile_sum = np.zeros(u.size)
        for s in range(stages.shape[0]):
            if stages[s, 2]:
                table = joins if stages[s, 0] else cdf
                _add_quantile_function(table[stages[s, 1]], u, float(stages[s, 2]), quantile_sum)
        work = np.empty((2, L))
        mean *= _cross_stage_row(law, quantile_sum, u, load, M, scv, c_mu, c_w, work, law)
    fits = 1.0 - law[L - 1] <= tail and not wrapped
    quantiles = np.empty((n, 3))
    if fits:
        _quantiles_of(law, h, np.array(_QUANTILES), quantiles[0])
        for i in range(1, n):
            quantiles[i] = quantiles[0]
    return law, mean, quantiles, np.full(n, mean), np.full(n, load), fits


def _homogeneous_grid(
    net: MoANetwork,
    method: str,
    service: str,
    scv: float,
    h: float,
    L: int,
    load: float,
    q: float,
    wait_mean: float,
    means: list[float],
    distinct: list[float],
    share: list[float],
    structure: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> LatencyResult | None:
    """:func:`_compute` for :func:`_homogeneous_complete` (``None`` if the tail is cut):
    exponential service of one mean in closed form, the table and the prompt law in one
    compiled call (:func:`_geometric_prompt`); other laws discretised as in
    :func:`_grid_laws` and transformed by FFT, then :func:`_sojourn_table` and
    :func:`_homogeneous_prompt`."""
    siblings, join_law, stages = structure
    estimate = method == "estimate"
    omc, sine, u = _grid_constants(L)
    prompt = (
        (means[0] + wait_mean, means[1] + wait_mean, means[2] + wait_mean),
        (CROSS_STAGE_MEAN, CROSS_STAGE_SPREAD, TAIL_TOLERANCE),
        h,
        estimate and net.M > 0,
        u,
        net.M,
        scv,
        net.n,
    )
    if service == "exponential" and len(distinct) == 1:
        law, mean, quantiles, origin_mean, loads, fits = _geometric_prompt(
            distinct[0], load, h, L, omc, sine, siblings, q, estimate, join_law, stages, prompt
        )
    else:
        if service == "exponential":
            job_hat, be_hat = _exponential_hats(
                np.array(distinct), np.array(share), h, L, omc, sine
            )
        else:
            job, equilibrium = _grid_laws(service, scv, np.array(distinct), h, L)
            job_hat = np.fft.rfft(job, axis=1)
            be_hat = np.fft.rfft(np.array(share) @ equilibrium)
        hat, pmf = _pk_sojourns(job_hat, be_hat, load, L)
        cdf, top, power, fits = _sojourn_table(
            hat, pmf, load, siblings, q, estimate, TAIL_TOLERANCE, _ROUND_OFF
        )
        if fits:
            law, mean, quantiles, origin_mean, loads, fits = _homogeneous_prompt(
                cdf, hat, top, power, join_law, stages, load, prompt
            )
    if not fits:
        return None
    return LatencyResult(
        method=method,
        service=service,
        scv=scv,
        mean_s=mean,
        origin_mean_s=origin_mean,
        origin_quantiles_s=quantiles,
        arrival_rate=net.arrival_rate,
        loads=loads,
        grid_step_s=h,
        cdf=law,
    )
