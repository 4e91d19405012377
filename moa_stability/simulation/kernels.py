r"""Compiled kernels of the Monte Carlo simulators (numba, over plain arrays and scalars).

One discrete-event engine serves both simulators; only the clock differs.

* **Continuous time** (``slotted=False``): the clock is in seconds, user prompts at device
  :math:`i` form a Poisson process of rate :math:`\lambda_i`, service times are drawn exactly.
* **Slots** (``slotted=True``): the clock counts slots of length :math:`dt` and every event sits
  on an integer slot. docs/model.md section 3 updates every device in every slot: completion of the
  head-of-line job with probability :math:`q = dt/E[S]`, then a user prompt with probability
  :math:`p = \lambda_i dt`, then the jobs routed by this slot's completions. Skipping the
  slots in which nothing happens is exactly equivalent: the gap between user prompts is
  :math:`\mathrm{Geometric}(p)` slots; a job that reaches the head of the line in slot :math:`t`
  completes in slot :math:`t + D` with :math:`D \sim \mathrm{Geometric}(q)` (or :math:`D` = its
  general service time in slots, at least 1); and the order of events within one slot changes
  no queue length, because a job routed in slot :math:`t` can complete no earlier than slot
  :math:`t+1` whichever order they are applied in. The queue length after the events of slot
  :math:`t` holds on :math:`[t, t+1)`, so time integrals are docs/model.md's slot-boundary averages.

State per replication lives in arrays preallocated to ``cap`` jobs: jobs in a pool threaded by a
free list, one FCFS linked list of jobs per device, and prompts (origin, birth, stage, join
counter) in a second pool, each device, job and prompt one row of an array of structs
(:class:`State`), so that what one event reads of it is one cache line. A prompt in the system
always has a job in some queue, so ``cap`` bounds both pools. The next event comes from a
tournament tree over ``a + n`` sources: the next user prompt (``a = 1`` source on the continuous
clock, where the devices' Poisson streams are superposed; ``a = n``, one per device, in slots)
and the head-of-line completion of each device (``a..a+n-1``, infinite when idle).

Statistics cost O(1) per event and O(1) per time bin whatever ``n``: the network-wide
integrals (jobs in the system, busy devices, prompts at joins) are brought up to date once per
event (:func:`_integrate_pool`) and stored per bin; each device's integrals are brought up to
date when its queue changes and stored only per *device bin*, a run of bins (in :func:`simulate`
one per batch of the batch-means intervals, or every bin when paths are recorded), so the O(n)
walk over the devices happens a few dozen times per run.

A prompt moves through *stages*: proposer layers ``0..M-1`` then the aggregate (stage ``M``);
with ``M = 0`` its only stage is one propose job.

From :data:`HINT_FROM_DEVICES` devices up (one priority level), the loop also looks ahead, so
that an event finds what it reads in cache though the state is far larger than the caches:
each completion it schedules is filed by its time in a calendar of hints (:func:`_hint`); a
few dozen events before they are due, a bucket's hints enter a queue whose stages prefetch,
one dependent load per stage, the device's row, its head job's row, that job's prompt's row
and the origin's candidate helpers. The tree still decides the order of events and nothing
the simulation reads depends on a hint, so no result does (tests/simulation/test_look_ahead.py).

The event loop is one long function on purpose: its arrays are read out of the argument tuples
once, before the loop, and the loop calls only plain ``@njit`` functions (which LLVM inlines
when small) and ``inline="always"`` helpers without branches (:func:`_integrate`,
:func:`_defer`, :func:`_hint`). Numba's own inlining rebinds array arguments; where the
inlined body branches, the reference counts of that rebinding survive optimisation, and atomic
counts per event cost more than the simulation itself. The service draw branches, so it is
written out at its two call sites (checked in the loop's LLVM IR: no ``NRT_incref`` inside the
event loop).

Indices are unsigned where the loop is hot. Numba reads ``a[i]`` with a signed ``i`` as
``a[i + len(a)]`` when ``i < 0``: a compare, a select and ``len(a)`` kept live, per array,
and with some twenty state arrays those lengths spill to the stack. An ``np.uint32`` index
(and a value zero-extended from one, which LLVM knows is not negative) skips it. So the state
arrays that hold indices (``job_prompt``, ``origin``, ``stage``, ``free_prompts``; the
network's ``stage_type``; the helpers drawn) are ``uint32``, and job indices read from the
per-device lists are cast once; ``job_next`` and the lists' ``head``/``tail`` keep their
signed ``-1`` for "none". Without any wraparound (an upper bound, measured by patching numba)
the loop would run about 30% fewer instructions per event.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

EXPONENTIAL, DETERMINISTIC, GAMMA, LOGNORMAL, EMPIRICAL = range(5)
"""Service-distribution codes understood by :func:`draw_service`."""

# Integer totals of one replication (``out_totals``).
ARRIVED, COMPLETED, PROMPT_INFERENCES, PROMPT_ORIGIN_INFERENCES, CAP_HIT, IN_SYSTEM = range(6)
N_TOTALS = 6

SYSTEMATIC, UNIFORM, COMPLETE = range(3)
"""Helper selection modes of a layer (:class:`Network`)."""

# Integer registers of a replication's state (``State.counters``).
FREE_JOB, UNUSED_JOB, JOBS, FREE_TOP, UNUSED_PROMPT, JOINS, BIN, FINISHED, DEVICE_BIN, BUSY = range(
    10
)
N_COUNTERS = 10

# The network-wide integrals of the open bin (``State.pool``): prompts at joins, jobs in the
# system, busy devices, and the time they were last brought up to date.
POOL_JOINS, POOL_JOBS, POOL_BUSY, POOL_LAST = range(4)


# ---- random numbers: xoshiro256+ on a per-replication state of four uint64 -----------------
@njit(cache=True)
def _rotl(x, k):
    return (x << np.uint64(k)) | (x >> np.uint64(64 - k))


@njit(cache=True)
def uniform(rng):
    """A double in ``[0, 1)`` (53 random bits) from xoshiro256+, advancing ``rng`` in place."""
    s0, s1, s2, s3 = rng[0], rng[1], rng[2], rng[3]
    result = s0 + s3
    t = s1 << np.uint64(17)
    s2 ^= s0
    s3 ^= s1
    s1 ^= s2
    s0 ^= s3
    s2 ^= t
    rng[0], rng[1], rng[2], rng[3] = s0, s1, s2, _rotl(s3, 45)
    return (result >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@njit(cache=True)
def below(rng, k):
    """A uniform integer in ``[0, k)``."""
    return int(uniform(rng) * k)


@njit(cache=True)
def memoryless(rng, scale, slotted):
    r"""Exponential with mean ``scale`` or, when ``slotted``, geometric on :math:`\{1, 2, \dots\}`
    with success probability :math:`q` given as ``scale`` :math:`= -1/\ln(1-q)`.

    Both by inversion of :math:`E = -\ln(1-U) \sim \mathrm{Exp}(1)`:
    :math:`\lceil E \cdot scale \rceil` has :math:`P(> k) = P(E > -k\ln(1-q)) = (1-q)^k`
    (and ``scale = 0`` gives 1 for :math:`q = 1`).
    """
    e = -np.log(1.0 - uniform(rng))
    return max(1.0, np.ceil(e * scale)) if slotted else e * scale


@njit(cache=True)
def standard_normal(rng):
    """Marsaglia's polar method."""
    while True:
        x = 2.0 * uniform(rng) - 1.0
        y = 2.0 * uniform(rng) - 1.0
        r2 = x * x + y * y
        if 0.0 < r2 < 1.0:
            return x * np.sqrt(-2.0 * np.log(r2) / r2)


@njit(cache=True)
def gamma(rng, shape, scale):
    """Marsaglia-Tsang; a shape below one is boosted, :math:`G_a = G_{a+1} U^{1/a}`."""
    boost = 1.0
    if shape < 1.0:
        boost = uniform(rng) ** (1.0 / shape)
        shape += 1.0
    d = shape - 1.0 / 3.0
    c = 1.0 / np.sqrt(9.0 * d)
    while True:
        x = standard_normal(rng)
        v = 1.0 + c * x
        if v <= 0.0:
            continue
        v = v * v * v
        if np.log(uniform(rng)) < 0.5 * x * x + d - d * v + d * np.log(v):
            return scale * boost * d * v


# ---- service times, arrivals, helper subsets --------------------------------------------------
@njit(cache=True)
def slot_count(rng, x):
    """Stochastic rounding of ``x`` slots (mean-preserving for ``x >= 1``), at least one slot."""
    whole = np.floor(x)
    if uniform(rng) < x - whole:
        whole += 1.0
    return max(whole, 1.0)


@njit(cache=True)
def draw_service(rng, m, dist, scv, slotted, samples, lo, hi):
    r"""One service time of mean ``m`` (clock units), in slots when ``slotted``.

    For ``EXPONENTIAL``, ``m`` is the ``scale`` of :func:`memoryless` instead (the event loop
    calls that directly, as it is the common case). Gamma has shape
    ``1/scv``; lognormal has :math:`\sigma^2 = \ln(1 + scv)`; empirical resamples
    ``samples[lo:hi]``, pre-scaled to mean one.
    """
    if dist == EXPONENTIAL:
        return memoryless(rng, m, slotted)
    if dist == DETERMINISTIC:
        x = m
    elif dist == GAMMA:
        x = gamma(rng, 1.0 / scv, m * scv)
    elif dist == LOGNORMAL:
        s2 = np.log1p(scv)
        x = m * np.exp(np.sqrt(s2) * standard_normal(rng) - 0.5 * s2)
    else:
        x = m * samples[lo + below(rng, hi - lo)]
    return slot_count(rng, x) if slotted else x


@njit(cache=True)
def draw_gap(rng, scale, slotted):
    """Time to the next user prompt: :func:`memoryless` with ``scale`` (``inf``: none ever)."""
    if scale == np.inf:
        return np.inf
    return memoryless(rng, scale, slotted)


@njit(cache=True)
def uniform_subset(rng, perm, row, lo, hi, k, chosen):
    """``k`` distinct CSR positions of ``[lo, hi)`` into ``chosen[1:k+1]``, uniformly: partial
    Fisher-Yates on ``perm[row]``, which holds any permutation of the positions and stays
    permuted (every draw is still uniform, at O(k) cost)."""
    d = hi - lo
    for r in range(k):
        s = lo + r + below(rng, d - r)
        a = perm[row, s]
        perm[row, s] = perm[row, lo + r]
        perm[row, lo + r] = a
        chosen[r + 1] = a
    return k


@njit(cache=True)
def systematic_subset(rng, cum, row, lo, hi, k, chosen):
    r"""Systematic sampling into ``chosen[1:]``: the positions whose cumulative-probability
    interval :math:`[c_{p-1}, c_p)` holds one of :math:`u, u+1, \dots, u+k-1`,
    :math:`u \sim U[0,1)`. Position ``p`` is included with probability exactly
    :math:`c_p - c_{p-1} \le 1` (an interval no longer than 1 holds at most one point);
    ``cum[row, hi-1]`` must equal ``k``. Returns the number drawn (``k``)."""
    u = uniform(rng)
    prev = 0.0
    r = 0
    for p in range(lo, hi):
        if r < k and prev <= u + r < cum[row, p]:
            r += 1
            chosen[r] = p
        prev = cum[row, p]
    return r


@njit(cache=True)
def complete_subset(rng, n, home, k, chosen):
    """``k`` distinct devices other than ``home`` among ``0..n-1`` into ``chosen[1:k+1]``,
    uniformly, without a neighbour list (the complete graph): Floyd's algorithm draws a
    uniform ``k``-subset of ``0..n-2`` in ``k`` draws (for ``j = n-1-k, ..., n-2``: take a
    uniform ``t <= j``, or ``j`` itself if ``t`` is taken), and ``v -> v + (v >= home)`` skips
    the origin. Returns ``k``."""
    for r in range(k):
        j = n - 1 - k + r
        v = below(rng, j + 1)
        for x in range(1, r + 1):
            if chosen[x] == v:
                v = j
                break
        chosen[r + 1] = v
    for r in range(1, k + 1):
        if chosen[r] >= home:
            chosen[r] += 1
    return k


@njit(cache=True)
def alias_table(weights):
    r"""Walker's alias table of ``weights`` (Vose's construction, O(n)): ``(cut, alias)`` such
    that :func:`alias_draw` returns ``i`` with probability :math:`w_i / \sum_j w_j` (all zero
    weights: uniform)."""
    n = weights.shape[0]
    total = weights.sum()
    scaled = weights * (n / total) if total > 0 else np.ones(n)
    cut = np.ones(n)
    alias = np.arange(n)
    small = np.empty(n, np.int64)
    large = np.empty(n, np.int64)
    ns = nl = 0
    for i in range(n):
        if scaled[i] < 1.0:
            small[ns] = i
            ns += 1
        else:
            large[nl] = i
            nl += 1
    while ns > 0 and nl > 0:
        ns -= 1
        lo = small[ns]
        hi = large[nl - 1]
        cut[lo] = scaled[lo]
        alias[lo] = hi
        scaled[hi] -= 1.0 - scaled[lo]
        if scaled[hi] < 1.0:
            nl -= 1
            small[ns] = hi
            ns += 1
    # what is left has probability one up to rounding: cut 1 (its own index)
    return cut, alias


@njit(cache=True)
def alias_draw(rng, cut, alias):
    """One index from an :func:`alias_table`: a uniform cell, kept with probability ``cut``."""
    u = uniform(rng) * cut.shape[0]
    i = min(int(u), cut.shape[0] - 1)
    return i if u - i < cut[i] else alias[i]


# ---- event selection: a tournament tree over the event sources --------------------------------
@njit(cache=True)
def new_tree(times):
    """Winner tree of ``times`` (padded with ``inf`` to a power of two ``L``): leaf ``L + s`` is
    source ``s`` and each internal node holds the source with the earlier time of its two
    children (ties to the left), so ``tree[1]`` is the next event. Returns ``(key, tree)``."""
    size = 1
    while size < times.shape[0]:
        size *= 2
    key = np.full(size, np.inf)
    key[: times.shape[0]] = times
    tree = np.empty(2 * size, np.int64)
    tree[size:] = np.arange(size)
    for node in range(size - 1, 0, -1):
        a, b = tree[2 * node], tree[2 * node + 1]
        tree[node] = a if key[a] <= key[b] else b
    return key, tree


@njit(cache=True)
def tree_set(key, tree, s, value):
    """Set source ``s``'s next event time and replay its matches up to the root.

    The winner climbing from ``s`` is carried in registers and meets the sibling's stored
    winner at each level; those loads do not depend on the stores of this walk, which keeps
    the loop free of store-to-load chains and (with conditional moves) of branches.
    """
    key[np.uint32(s)] = value  # unsigned indices: no negative-index wraparound (module doc)
    node = np.uint32(tree.shape[0] // 2 + s)
    win = s
    while node > 1:
        rival = np.uint32(tree[node ^ 1])
        rival_time = key[rival]
        take = rival_time < value
        win = rival if take else win
        value = rival_time if take else value
        node >>= 1
        tree[node] = win


# ---- memory: software prefetch and deferred accumulation --------------------------------------
@intrinsic
def prefetch(typingctx, array, index):
    """Ask the CPU to bring the cache line of ``array[index]`` towards the core, for writing,
    without waiting for it (LLVM's ``llvm.prefetch``; a hint: no fault, no effect on any
    value). ``index`` is an integer or a tuple of them; missing trailing indices are 0 (a row's
    first element)."""
    if not isinstance(array, types.Array):
        return None
    if isinstance(index, types.Integer):
        kinds = (index,)
    elif isinstance(index, types.BaseTuple) and all(
        isinstance(k, types.Integer) for k in index.types
    ):
        kinds = tuple(index.types)
    else:
        return None
    if len(kinds) > array.ndim:
        return None

    def codegen(context, builder, signature, args):
        arrayty = signature.args[0]
        ary = context.make_array(arrayty)(context, builder, args[0])
        if isinstance(signature.args[1], types.BaseTuple):
            values = cgutils.unpack_tuple(builder, args[1])
        else:
            values = [args[1]]
        index = [
            context.cast(builder, v, k, types.intp) for v, k in zip(values, kinds, strict=True)
        ]
        index += [context.get_constant(types.intp, 0)] * (arrayty.ndim - len(index))
        ptr = cgutils.get_item_pointer2(
            context,
            builder,
            ary.data,
            cgutils.unpack_tuple(builder, ary.shape),
            cgutils.unpack_tuple(builder, ary.strides),
            arrayty.layout,
            index,
            wraparound=False,
            boundscheck=False,
        )
        i32 = ir.IntType(32)
        if not ptr.type.is_opaque:  # one declaration for every element type: a byte pointer
            ptr = builder.bitcast(ptr, ir.IntType(8).as_pointer())
        name = "llvm.prefetch.p0" if ptr.type.is_opaque else "llvm.prefetch.p0i8"
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [ptr.type, i32, i32, i32]), name
        )
        builder.call(fn, [ptr, i32(1), i32(3), i32(1)])  # write, keep in all levels, data
        return context.get_dummy_value()

    return types.void(array, index), codegen


DEFER = 32
"""Additions held back per accumulator by :func:`_defer` (a power of two)."""
DEFER_FROM_CELLS = 1 << 19
"""The event loop defers its accumulators (:func:`_defer`) and prefetches when the time at each
queue length has at least this many cells (4 MiB, a core's L2 cache here: ``n >= 2041``
devices with the default ``max_tracked_queue``). Below, every line stays cached, a direct
addition costs nothing and the rings' bookkeeping would cost about 10% at ``n = 4``."""


@njit(inline="always")
def _defer(flat, cells, values, k, cell, value):
    """Add ``value`` to ``flat[cell]`` later: prefetch its line now and apply, instead, the
    addition deferred ``DEFER`` calls ago (ring ``cells``/``values``, ``k`` calls so far;
    returns ``k + 1``).

    The event loop's accumulators (time at each queue length, inferences and jobs' time per
    type, helper draws) are written, never read, by the loop, at a random device: at large
    ``n`` each addition was a cache miss in the way of the next event. Deferred, the line is
    on its way while the loop goes on, and the additions still reach each cell in the order
    they were made, so every sum is bit for bit the same. The ring starts filled with
    ``flat[0] += 0`` (no change: the accumulators never hold -0.0) so that this body has no
    branch (module docstring); :func:`_drain` applies what is pending.
    """
    slot = np.uint32(k & (DEFER - 1))
    flat[np.uint64(cells[slot])] += values[slot]
    cells[slot] = cell
    values[slot] = value
    prefetch(flat, np.uint64(cell))
    return k + 1


@njit(cache=True)
def _drain(flat, cells, values, k):
    """Apply the additions :func:`_defer` holds, oldest first, and refill the ring with no-op
    entries; returns the new call count, 0. Called before anything reads ``flat`` and
    whenever the event loop returns."""
    if flat.shape[0] == 0:  # no helper draws to count (complete graph): nothing was deferred
        return 0
    for r in range(DEFER):
        slot = (k + r) & (DEFER - 1)
        flat[cells[slot]] += values[slot]
    cells[:] = 0
    values[:] = 0
    return 0


# ---- look-ahead: prefetching the next events' rows (large FCFS networks) ---------------------
HINT_GROUP = 16
"""Completions per bucket of the look-ahead's calendar of hints (:func:`_hint`), on average."""
HINT_BUCKETS = 16384
"""Buckets of the calendar of hints (a power of two): ``HINT_BUCKETS * HINT_GROUP`` = 262,144
completions ahead, 2.9 mean service times at 10^5 devices at load 0.9 (a completion due later
gets no hint)."""
HINT_CAP = 2 * HINT_GROUP
"""Hints a bucket keeps; a fuller bucket drops the rest (a hint only saves time)."""
HINT_AHEAD = 2
"""A bucket's hints enter the look-ahead queue this many buckets before their time."""
HINT_FIFO = 1024
"""Entries of the look-ahead queue (a power of two)."""
HINT_LAG = 3
"""Queue entries between one look-ahead stage and the next (the top of the event loop)."""
HINT_FROM_DEVICES = 1 << 14
"""Networks of at least this many devices get the look-ahead (:func:`simulate` sets
``Controls.hint_width``). Below, a replication's state mostly fits a core's 4 MiB L2 cache and
the look-ahead's work is not paid back (measured side by side on the bench_scale workload:
0.79x at 3,000 devices, 0.98x at 10^4, 1.08x at 2 x 10^4, 1.25x at 5 x 10^4)."""
HINT_BYTES = HINT_BUCKETS * ((HINT_CAP + 1) * 4 + 8) + 3 * HINT_FIFO * 4
"""Bytes the look-ahead allocates per replication in flight (the calendar's buckets of
``uint32`` hints and their fill counts, and the queue with its job and prompt columns):
2.3 MB, whatever ``n``."""


@njit(inline="always")
def _hint(ring, ring_fill, s, v, inv_width, lo, hi):
    """File source ``s``, whose next event is at ``v``, in the calendar bucket of ``v`` when
    that bucket is after ``lo`` and before ``hi`` and has room (else the write lands in the
    scratch column ``HINT_CAP``, which is never read). Branch-free, so inlined without
    reference counts (module docstring)."""
    bucket = np.int64(min(v * inv_width, 4e18))
    slot = np.uint64(bucket) & np.uint64(HINT_BUCKETS - 1)
    f = ring_fill[slot]
    ring[slot, min(f, HINT_CAP)] = s
    ring_fill[slot] = f + ((bucket > lo) & (bucket < hi) & (f < HINT_CAP))


# ---- kernel arguments -------------------------------------------------------------------------
class Network(NamedTuple):
    r"""The network in clock units (slots or seconds), as the kernels read it.

    ``arrival[i]`` is the :func:`memoryless` scale of device ``i``'s user prompts;
    ``stage_type[l]`` (``uint32``) and ``stage_k[l]`` the job type and helper count of stage
    ``l``; per
    proposer layer ``m``, ``mode[m]`` says how helpers are drawn: :data:`SYSTEMATIC` from the
    CSR rows ``indptr[m]``, ``indices[m]`` of candidate helpers on the cumulative
    probabilities ``cum[m]`` (:func:`systematic_subset`), :data:`UNIFORM` uniformly from those
    rows (:func:`uniform_subset`), :data:`COMPLETE` uniformly among all other devices by index
    arithmetic (:func:`complete_subset`; the CSR arrays are then empty). ``level[l, own]`` is
    the priority level (0 served first) of a stage-``l`` job on a helper (``own = 0``) or on
    its origin (``own = 1``): :func:`moa_stability.model.discipline.level_table`, all zeros
    (one level) for FCFS.

    On the continuous clock the user prompts of all devices are one stream (``origin_cut``
    non-empty): a superposition of independent Poisson processes is a Poisson process of the
    summed rate whose points belong to device ``i`` independently with probability
    :math:`\lambda_i / \sum_j \lambda_j`, so the next prompt comes after
    :func:`memoryless` with scale ``total_arrival`` and its origin from the alias table
    ``origin_cut``, ``origin_alias`` (:func:`alias_draw`): one event source instead of ``n``.
    On the slot clock Bernoulli streams do not superpose so (two prompts may share a slot),
    and each device keeps its own source (``origin_cut`` empty).
    """

    arrival: np.ndarray
    stage_type: np.ndarray
    stage_k: np.ndarray
    mode: np.ndarray
    indptr: np.ndarray
    indices: np.ndarray
    cum: np.ndarray
    level: np.ndarray
    origin_cut: np.ndarray
    origin_alias: np.ndarray
    total_arrival: float


class Service(NamedTuple):
    """Service times: ``mean[i, c]`` is the parameter of type ``c`` at device ``i`` (a row per
    device, so that one cache line holds a device's three; the fourth column is padding), drawn as
    :func:`draw_service` does with ``dist``, ``scv`` and ``samples[bounds[c]:bounds[c+1]]``;
    ``slotted`` selects the clock (slots or seconds)."""

    slotted: bool
    mean: np.ndarray
    dist: int
    scv: float
    samples: np.ndarray
    bounds: np.ndarray


class Controls(NamedTuple):
    """Run controls: stop time ``t_stop``, bin ``edges``, first bin after the warm-up
    ``warm_bin``, the per-device bins as runs of bins (``device_edges``: device bin ``d`` is
    bins ``device_edges[d]`` to ``device_edges[d+1] - 1``; ``warm_bin`` is one of them),
    job cap ``cap``, and the latency histogram's cells of width
    ``1/hist_scale`` in ``log(latency / hist_lo)``; ``preemptive``: a job of a higher priority
    level (:class:`Network` ``level``) interrupts the one in service, which keeps its remaining
    service time (preemptive-resume), else it waits for the service to end; ``hint_width``,
    the clock units per bucket of the look-ahead's calendar (:func:`_hint`; 0: no look-ahead,
    which runs only in :func:`run_fcfs_large` anyway). It changes no result, only speed."""

    t_stop: float
    edges: np.ndarray
    warm_bin: int
    device_edges: np.ndarray
    cap: int
    hist_lo: float
    hist_scale: float
    preemptive: bool
    hint_width: float


class Outputs(NamedTuple):
    """What a replication records, each array with a leading replication axis ``R`` in
    :func:`run_replications_fcfs` (one replication's row in :func:`run_fcfs`).

    Per device bin (:class:`Controls` ``device_edges``), integrals of queue length (``area``,
    ``(device bins, n)``) and busy time (``busy``) per device; per bin, the network-wide
    integrals of prompts at joins (``join``), jobs in the system (``jobs``: the sum of ``area``
    over devices) and busy devices (``busy_devices``), latency sums (``lat_sum``) and counts
    (``lat_count``) of the prompts answered in it; latency histograms ``hist`` of the prompts
    answered before (row 0) and after (row 1) bin ``warm_bin``; ``queue_time[i, b]``, the
    time device ``i`` spent with exactly ``b`` jobs after bin ``warm_bin`` starts (the whole
    run if it ended before; the last column collecting ``b >= top``); the largest queue
    ``max_queue``; completed inferences per (type, device);
    ``selected`` counts per CSR position; integer ``totals`` indexed by :data:`ARRIVED` etc.;
    ``t_end``, the time reached (one cell); ``type_area[row, c, i]``, the integral of the
    number of type-``c`` jobs at device ``i`` over ``[0, t_warm]`` (row 0) and ``[0, t_end]``
    (row 1), ``t_warm`` the start of bin ``warm_bin`` (:func:`close_type_area`).
    """

    area: np.ndarray
    busy: np.ndarray
    join: np.ndarray
    jobs: np.ndarray
    busy_devices: np.ndarray
    lat_sum: np.ndarray
    lat_count: np.ndarray
    hist: np.ndarray
    max_queue: np.ndarray
    inferences: np.ndarray
    selected: np.ndarray
    totals: np.ndarray
    queue_time: np.ndarray
    t_end: np.ndarray
    type_area: np.ndarray


class State(NamedTuple):
    """Everything a replication carries from one chunk of simulated time to the next (with a
    leading replication axis in :func:`run_replications_fcfs`).

    ``rng`` the xoshiro256+ state; ``counters`` the integer registers (:data:`FREE_JOB` ...
    :data:`BUSY`); ``clock[0]`` the time reached; ``device[i]``, device ``i``'s row of
    ``int64`` (:data:`DEV_Q` ...; the float fields through a ``float64`` view): its queue
    length, the priority level of the job in service, its largest queue so far, the time of
    its last change and the open device bin's integrals of queue length and idle time, then
    per level ``v`` the head and tail of its FCFS list (-1: empty, :func:`list_slot`); ``pool``
    the open bin's network-wide integrals (:data:`POOL_JOINS` ... :data:`POOL_LAST`); the
    tournament tree ``key``/``tree`` (:func:`new_tree`); the job pool (``job[j]``: next job in
    its list or free list, its prompt, its type and the next job's, :data:`J_NEXT` ...;
    ``job_left``: the service time left to a preempted job, else 0) and the prompt pool
    (``prompt[p]``, ``uint32``: :data:`P_ORIGIN` ...,
    its birth through a ``float64`` view, :data:`P_BIRTH`; ``free_prompts``), ``cap`` entries
    each; ``perm``, the permutations of :func:`uniform_subset`.

    What one event reads of a device, a job or a prompt sits in one row (array of structs),
    not in one array per field: at ``n = 10^5`` the rows are spread over more memory than the
    caches keep close, and each separate array cost a cache miss per event.
    :func:`simulate` allocates ``device`` and ``prompt`` aligned to 64 bytes, so that a
    device's row (one level) is one cache line and a prompt's half of one.
    """

    rng: np.ndarray
    counters: np.ndarray
    clock: np.ndarray
    device: np.ndarray
    pool: np.ndarray
    key: np.ndarray
    tree: np.ndarray
    job: np.ndarray
    job_left: np.ndarray
    prompt: np.ndarray
    free_prompts: np.ndarray
    perm: np.ndarray


DEV_Q, DEV_SERVING, DEV_MAX, DEV_LAST, DEV_AREA, DEV_IDLE, DEV_LISTS = range(7)
"""Fields of a device's row (:class:`State` ``device``): queue length, level in service, largest
queue (``int64``); time of the last change, queue-length and idle integrals of the open device
bin (``float64``, read through a view); then the FCFS lists (:func:`list_slot`)."""
J_NEXT, J_PROMPT, J_TYPE, J_NEXT_TYPE = range(4)
"""Fields of a job's row (:class:`State` ``job``, ``int32``): the next job (-1: none), its
prompt, its job type and the next job's type (set when the next job is linked behind it). The
types are kept in the rows so that starting a job's service reads neither its prompt nor, with
one priority level, its own row: the job that completes names it."""
JOB_FIELDS = 4
"""``int32`` per job row: 16 bytes, four jobs per cache line."""
P_ORIGIN, P_STAGE, P_PENDING, P_SIZE, P_DONE, P_DONE_HOME = range(6)
"""Fields of a prompt's row (:class:`State` ``prompt``, ``uint32``): origin device, current
stage, responses of the stage still pending, the stage's jobs, inferences done for it in all
and on its origin."""
P_BIRTH = 3
"""Column of a prompt's birth time in the ``float64`` view of its row (``uint32`` 6 and 7)."""
PROMPT_FIELDS = 8
"""``uint32`` per prompt row: 32 bytes, two prompts per cache line."""


def device_fields(levels: int) -> int:
    """``int64`` per device row (:class:`State` ``device``): six registers and a head and a
    tail per priority level; eight (one cache line) with one level."""
    return DEV_LISTS + 2 * levels


@njit(inline="always")
def list_slot(v):
    """Column of the head of a device's level-``v`` list in its row; the tail is the next."""
    return DEV_LISTS + 2 * v


STATE_BYTES_PER_JOB = JOB_FIELDS * 4 + 8 + PROMPT_FIELDS * 4 + 4
"""Bytes of :class:`State` per job of the cap: a job row (four 32-bit integers), the float64
``job_left``, a prompt row and a free-prompt slot (a prompt in the system always has a job, so
``cap`` bounds both pools)."""
STATE_BYTES_PER_DEVICE = 8 * device_fields(1) + 12 * 8
"""Bytes of :class:`State` per device, at most, with one priority level: its row (one level's
list) and the tournament tree over at most ``2n`` sources (:func:`arrival_sources`) padded to
a power of two (``L < 4n`` leaves: ``L`` times and ``2L`` nodes);
:data:`STATE_BYTES_PER_LEVEL` per further level."""
STATE_BYTES_PER_LEVEL = 2 * 8
"""Bytes of :class:`State` per device and further priority level: its list's head and tail."""


# ---- time integrals ---------------------------------------------------------------------------
@njit(inline="always")
def _integrate(d, t, dev, devf, top):
    """Add device ``d``'s queue length since its last change to its queue-length integral and
    return the elapsed width and the cell of the time at that length (flat index into
    :class:`Outputs` ``queue_time``, ``top + 1`` columns), which the caller adds it to; the
    caller sets ``DEV_LAST``. ``dev`` is :class:`State` ``device``, ``devf`` its ``float64``
    view."""
    u = np.uint32(d)  # unsigned: no negative-index wraparound (module docstring)
    q = dev[u, DEV_Q]
    width = t - devf[u, DEV_LAST]
    devf[u, DEV_AREA] += q * width
    return width, np.uint64(u) * np.uint64(top + 1) + np.uint64(min(q, top))


@njit(inline="always")
def _integrate_pool(pool, joins, jobs, busy, t):
    """Bring the network-wide integrals (:data:`POOL_JOINS` ...) up to ``t``: O(1) whatever
    ``n``, called once per event before the event changes anything."""
    width = t - pool[POOL_LAST]
    pool[POOL_JOINS] += joins * width
    pool[POOL_JOBS] += jobs * width
    pool[POOL_BUSY] += busy * width
    pool[POOL_LAST] = t


@njit(cache=True)
def close_bin(b, t, db, final, ctl, dev, pool, joins, jobs, busy, out):
    """Close bin ``b`` at ``t`` (its end, or the end of the run): store its network-wide
    integrals into ``out`` (:class:`Outputs`) and restart them, O(1). When ``t`` also ends
    device bin ``db`` (``b`` is its last bin, or ``final``), close every device's integrals of
    queue length and busy time too, adding the time since each device's last change to
    ``out.queue_time`` (restarted at the warm-up edge): O(n), but only at the
    ``device_edges`` (a few dozen per run unless paths are recorded). Returns the device bin
    open after ``t``. ``dev`` is :class:`State` ``device``. Not inlined: one copy keeps the
    event loop small."""
    _integrate_pool(pool, joins, jobs, busy, t)
    out.join[b] = pool[POOL_JOINS]
    out.jobs[b] = pool[POOL_JOBS]
    out.busy_devices[b] = pool[POOL_BUSY]
    pool[POOL_JOINS] = pool[POOL_JOBS] = pool[POOL_BUSY] = 0.0
    if not final and b + 1 < ctl.device_edges[db + 1]:
        return db
    start = ctl.edges[ctl.device_edges[db]]
    level_time = out.queue_time.reshape(-1)
    top = out.queue_time.shape[1] - 1
    devf = dev.view(np.float64)
    for i in range(dev.shape[0]):
        width, cell = _integrate(i, t, dev, devf, top)
        level_time[cell] += width
        if dev[i, DEV_Q] == 0:
            devf[i, DEV_IDLE] += width
        devf[i, DEV_LAST] = t
        out.area[db, i] = devf[i, DEV_AREA]
        out.busy[db, i] = (t - start) - devf[i, DEV_IDLE]
        devf[i, DEV_AREA] = 0.0
        devf[i, DEV_IDLE] = 0.0
    if not final and b + 1 == ctl.warm_bin:  # keep the time at each length after the warm-up
        out.queue_time[:] = 0.0
    return db + 1


@njit(cache=True)
def close_type_area(row, t, st, stage_type, type_area):
    """Close the integrals of jobs per (type, device) at ``t`` into ``type_area[row]``.

    The event loop keeps ``type_area[1]`` as the sum of (completion time - arrival time) of the
    jobs completed plus (-arrival time) of the jobs present, which costs O(1) per job; adding
    ``t`` for every job present makes it the integral over ``[0, t]``. Row 0 (the warm-up
    edge) starts from a copy. Walks every job present: called twice per replication.
    """
    if row == 0:
        type_area[0] = type_area[1]
    dev = st.device
    levels = (dev.shape[1] - DEV_LISTS) // 2
    for i in range(dev.shape[0]):
        for v in range(levels):
            j = dev[i, list_slot(v)]
            while j >= 0:
                type_area[row, st.job[j, J_TYPE], i] += t
                j = st.job[j, J_NEXT]


@njit(cache=True)
def arrival_sources(net):
    """Event sources of user prompts: 1 (one superposed stream, :class:`Network`) or ``n``;
    the head-of-line completion of device ``d`` is source ``arrival_sources(net) + d``."""
    return 1 if net.origin_cut.shape[0] > 0 else net.arrival.shape[0]


# ---- one replication ----------------------------------------------------------------------------
@njit(cache=True)
def start_replication(rng_seed, net, slotted, st):
    """Reset ``st`` (:class:`State`) to an empty network at time 0 with generator state
    ``rng_seed`` (four uint64, not all zero), and draw the first user prompt of each arrival
    source (:func:`arrival_sources`; ``slotted``: on the slot clock)."""
    st.rng[:] = rng_seed
    n = net.arrival.shape[0]
    st.counters[:] = 0
    st.counters[FREE_JOB] = -1
    st.clock[0] = 0.0
    st.device[:] = 0  # zero bits are 0.0 in the float fields
    st.device[:, DEV_LISTS:] = -1
    st.pool[:] = 0.0
    for m in range(st.perm.shape[0]):
        st.perm[m] = np.arange(st.perm.shape[1])
    sources = arrival_sources(net)
    first = np.full(sources + n, np.inf)
    if sources == 1:
        first[0] = draw_gap(st.rng, net.total_arrival, slotted)
    else:
        for i in range(n):
            # A geometric gap counts from slot -1, so the first prompt may arrive in slot 0.
            first[i] = draw_gap(st.rng, net.arrival[i], slotted) - (1.0 if slotted else 0.0)
    key, tree = new_tree(first)
    st.key[:] = key
    st.tree[:] = tree


@njit(cache=True)
def finish_replication(stage_type, ctl, out, st, t_end):
    """Close the open bins up to ``t_end`` (the horizon, the cap hit, or the time reached when
    interrupted) and the integrals per job type (:func:`close_type_area`), record the jobs left
    in the system and the largest queues, and mark ``st`` finished."""
    edges, warm_bin, c = ctl.edges, ctl.warm_bin, st.counters
    b, db, joins, jobs, busy = c[BIN], c[DEVICE_BIN], c[JOINS], c[JOBS], c[BUSY]
    dev, pool = st.device, st.pool
    while b < edges.shape[0] - 1 and t_end >= edges[b + 1]:
        db = close_bin(b, edges[b + 1], db, False, ctl, dev, pool, joins, jobs, busy, out)
        b += 1
        if b == warm_bin:
            close_type_area(0, edges[b], st, stage_type, out.type_area)
    if b < edges.shape[0] - 1:
        close_bin(b, t_end, db, True, ctl, dev, pool, joins, jobs, busy, out)
    close_type_area(1, t_end, st, stage_type, out.type_area)
    out.max_queue[:] = dev[:, DEV_MAX]
    st.counters[BIN] = b
    st.counters[FINISHED] = 1
    st.clock[0] = t_end
    out.totals[IN_SYSTEM] = st.counters[JOBS]
    out.t_end[0] = t_end


@njit(cache=True)
def run_fcfs(net, svc, ctl, out, st, t_until):
    """Advance one replication from its state ``st`` through the events before ``t_until``
    (clock units), recording into ``out`` (its :class:`Outputs` row). At ``ctl.t_stop``, or
    when the jobs in the system would exceed ``ctl.cap`` (setting ``out.totals[CAP_HIT]``), it
    finishes (:func:`finish_replication`); a finished state is left alone.

    The events are processed in time order whatever the chunks, and the generator lives in
    ``st``, so splitting ``[0, t_stop)`` into chunks changes no result.

    ``net``, ``svc`` and ``ctl`` are :class:`Network`, :class:`Service` and :class:`Controls`.
    This is the event loop (:func:`_advance`) compiled for one priority level (FCFS) below
    :data:`DEFER_FROM_CELLS`: nothing to choose or preempt, so the level reads and the
    preemption checks drop out, and no deferred accumulators. :func:`run_fcfs_large` and
    :func:`run_priority` are the other two copies; :func:`replication_runner` picks one, so
    that a process compiles (or loads from the cache) only the copy it runs.
    """
    if st.counters[FINISHED]:
        return
    _advance(net, svc, ctl, out, st, t_until, True, False)


@njit(cache=True)
def run_fcfs_large(net, svc, ctl, out, st, t_until):
    """:func:`run_fcfs` from :data:`DEFER_FROM_CELLS` up: the accumulators are added through
    :func:`_defer` and the loop prefetches."""
    if st.counters[FINISHED]:
        return
    _advance(net, svc, ctl, out, st, t_until, True, True)


@njit(cache=True)
def run_priority(net, svc, ctl, out, st, t_until):
    """:func:`run_fcfs` with several priority levels (:class:`Network` ``level``), preemptive
    or not (:class:`Controls`)."""
    if st.counters[FINISHED]:
        return
    _advance(net, svc, ctl, out, st, t_until, False, out.queue_time.size >= DEFER_FROM_CELLS)


@njit(inline="always")
def _advance(net, svc, ctl, out, st, t_until, one_level, large):
    """The event loop of :func:`run_fcfs`, :func:`run_fcfs_large` and :func:`run_priority`;
    ``one_level`` is a constant at each of these three call sites (one priority level: every
    job has level 0 and none preempts), and so is ``large`` where one level is (a network past
    :data:`DEFER_FROM_CELLS`: add to the accumulators through :func:`_defer`, prefetch), so
    LLVM removes what they make dead. Inlined, not called: the constants must reach the loop."""
    # Every field is read into a local once: reading an array from a tuple inside the loop
    # would add a reference-count pair per access.
    arrival, stage_type, stage_k, mode, indptr, indices, cum, level, cut, alias, total = net
    slotted, mean, dist, scv, samples, bounds = svc
    t_stop, edges, warm_bin, _, cap, hist_lo, hist_scale, preemptive, hint_width = ctl
    preemptive = preemptive and not one_level
    lat_sum, lat_count, hist = out.lat_sum, out.lat_count, out.hist
    inferences, selected, totals, queue_time = (
        out.inferences,
        out.selected,
        out.totals,
        out.queue_time,
    )
    type_area = out.type_area[1]  # the running sums of close_type_area
    rng, counters, dev, pool, key, tree = st.rng, st.counters, st.device, st.pool, st.key, st.tree
    job, job_left, prompt, free_prompts, perm = (
        st.job,
        st.job_left,
        st.prompt,
        st.free_prompts,
        st.perm,
    )
    devf, birth = dev.view(np.float64), prompt.view(np.float64)  # the rows' float fields
    n = arrival.shape[0]
    a = arrival_sources(net)  # device d's completions are source a + d
    last_stage = stage_type.shape[0] - 1
    chosen = np.empty(stage_k.max() + 1, np.uint32)
    # The look-ahead (_hint and the loop's top): a calendar of the completions due, bucketed by
    # time, feeds a queue whose stages prefetch each coming event's rows.
    hints = one_level and large and hint_width > 0.0
    inv_width = 1.0 / hint_width if hints else 0.0
    ring = np.empty((HINT_BUCKETS if hints else 1, HINT_CAP + 1), np.uint32)
    ring_fill = np.zeros(HINT_BUCKETS if hints else 1, np.int64)
    fifo = np.empty(HINT_FIFO if hints else 1, np.uint32)
    fifo_job = np.zeros(HINT_FIFO if hints else 1, np.uint32)
    fifo_prompt = np.zeros(HINT_FIFO if hints else 1, np.uint32)
    head = tail = 0
    fmask = HINT_FIFO - 1
    last_prompt = np.uint32(prompt.shape[0] - 1)
    coarse = np.int64(min(st.clock[0] * inv_width, 4e18))  # the bucket of the time reached
    log_lo = np.log(hist_lo)
    free_job, unused_job, jobs = counters[FREE_JOB], counters[UNUSED_JOB], counters[JOBS]
    free_top, unused_prompt = counters[FREE_TOP], counters[UNUSED_PROMPT]
    joins, b, db, busy = counters[JOINS], counters[BIN], counters[DEVICE_BIN], counters[BUSY]
    # The network-wide integrals live in registers in the loop (``pool`` between bins/chunks).
    pool_joins, pool_jobs, pool_busy, pool_last = pool[0], pool[1], pool[2], pool[3]
    top = queue_time.shape[1] - 1
    # The accumulators the loop only adds to, as flat arrays with their rings (_defer).
    level_time, times_k = queue_time.reshape(-1), 0
    times_cell, times_add = np.zeros(DEFER, np.int64), np.zeros(DEFER)
    areas, areas_k = type_area.reshape(-1), 0
    areas_cell, areas_add = np.zeros(DEFER, np.int64), np.zeros(DEFER)
    counts, counts_k = inferences.reshape(-1), 0
    counts_cell, counts_add = np.zeros(DEFER, np.int64), np.zeros(DEFER, np.int64)
    draws, draws_k, pairs = selected.reshape(-1), 0, selected.shape[1]
    draws_cell, draws_add = np.zeros(DEFER, np.int64), np.zeros(DEFER, np.int64)
    t_chunk = min(t_until, t_stop)
    t_end = t_stop
    capped = False
    while True:
        s = tree[1]
        t = key[s]
        if t >= t_chunk:
            break
        if hints:
            now = np.int64(min(t * inv_width, 4e18))
            if now - coarse > HINT_BUCKETS:  # a lull past the calendar: drop its hints
                ring_fill[:] = 0
                coarse = now
            while coarse < now:  # the bucket HINT_AHEAD ahead joins the queue
                coarse += 1
                slot = np.uint64(coarse + HINT_AHEAD) & np.uint64(HINT_BUCKETS - 1)
                for e in range(ring_fill[slot]):
                    if tail - head < HINT_FIFO - 4 * HINT_LAG:
                        fifo[np.uint64(tail) & np.uint64(HINT_FIFO - 1)] = ring[slot, e]
                        tail += 1
                ring_fill[slot] = 0
            # Each queue entry is a completion due a few dozen events from now. Each stage
            # prefetches what that event will read, one dependent load at a time, HINT_LAG
            # entries (events) after the stage before, so that it reads lines the stage
            # before brought in: the device's row, service parameters, time and lowest tree
            # levels; its head job's row; that job's prompt's row; the origin's device row and
            # its row of candidate helpers for the prompt's next stage, then their positions
            # and draw state. Only hints: an entry whose event has come already (or never
            # will) costs a wasted prefetch, every index is clamped into its array, and
            # nothing the simulation reads is written. Written out here, not called: a call
            # passes every array field by field.
            for _ in range(2 if tail - head > HINT_GROUP // 2 else 1):
                if head == tail:
                    break
                x = fifo[head & fmask]
                d = np.uint32(x - a)
                prefetch(dev, d)
                prefetch(mean, d)
                prefetch(key, x)
                node = np.uint32(tree.shape[0] // 2 + x)
                prefetch(tree, node ^ 1)
                prefetch(tree, (node >> 1) ^ 1)
                prefetch(tree, (node >> 2) ^ 1)
                prefetch(tree, (node >> 3) ^ 1)
                pos = head - HINT_LAG
                head += 1
                if pos < 0:
                    continue
                d = np.uint32(fifo[pos & fmask] - a)
                nj = np.uint32(min(max(dev[d, DEV_LISTS], 0), job.shape[0] - 1))
                fifo_job[pos & fmask] = nj
                prefetch(job, nj)
                pos -= HINT_LAG
                if pos < 0:
                    continue
                hp = min(np.uint32(job[fifo_job[pos & fmask], J_PROMPT]), last_prompt)
                fifo_prompt[pos & fmask] = hp
                prefetch(prompt, hp)
                # (whether this completion ends its prompt's stage is not known yet, as a
                # sibling may complete first: the next stage's rows are asked for anyway)
                for lag in range(2):  # the origin's row and CSR row, then the CSR positions
                    pos -= HINT_LAG
                    if pos < 0:
                        break
                    hp = fifo_prompt[pos & fmask]
                    hn = min(prompt[hp, P_STAGE] + 1, last_stage)
                    hh = min(prompt[hp, P_ORIGIN], n - 1)
                    if lag == 0:
                        prefetch(dev, hh)
                    if stage_k[hn] == 0 or mode[hn] == COMPLETE or indices.shape[1] == 0:
                        continue
                    if lag == 0:
                        prefetch(indptr, (hn, hh))
                    else:
                        hl = min(indptr[hn, hh], indices.shape[1] - 1)
                        prefetch(indices, (hn, hl))
                        if mode[hn] == UNIFORM:
                            prefetch(perm, (hn, hl))
                        else:
                            prefetch(cum, (hn, hl))
        if t >= edges[b + 1]:  # close_bin and close_type_area read the accumulators
            times_k = _drain(level_time, times_cell, times_add, times_k)
            areas_k = _drain(areas, areas_cell, areas_add, areas_k)
        while t >= edges[b + 1]:
            pool[0], pool[1], pool[2], pool[3] = pool_joins, pool_jobs, pool_busy, pool_last
            db = close_bin(b, edges[b + 1], db, False, ctl, dev, pool, joins, jobs, busy, out)
            pool_joins, pool_jobs, pool_busy, pool_last = pool[0], pool[1], pool[2], pool[3]
            b += 1
            if b == warm_bin:
                close_type_area(0, edges[b], st, stage_type, out.type_area)
        width = t - pool_last  # every change below happens at t (_integrate_pool, in registers)
        pool_joins += joins * width
        pool_jobs += jobs * width
        pool_busy += busy * width
        pool_last = t
        if s < a:  # a user prompt, at device s or drawn from the superposed stream
            if a == n:
                home = s
                tree_set(key, tree, s, t + draw_gap(rng, arrival[s], slotted))
            else:
                home = alias_draw(rng, cut, alias)
                tree_set(key, tree, s, t + draw_gap(rng, total, slotted))
            if jobs + stage_k[0] + 1 > cap:
                totals[CAP_HIT] = 1
                t_end = t
                capped = True
                break
            if free_top > 0:
                free_top -= 1
                p = free_prompts[np.uint32(free_top)]
            else:
                p = np.uint32(unused_prompt)
                unused_prompt += 1
            prompt[p, P_ORIGIN] = home
            birth[p, P_BIRTH] = t
            prompt[p, P_DONE] = 0
            prompt[p, P_DONE_HOME] = 0
            totals[ARRIVED] += 1
            nxt = 0
        else:  # the head-of-line job of device i completes
            i = np.uint32(s - a)
            if large:  # its next service's parameter, wanted after two dependent loads
                prefetch(mean, i)
            h = list_slot(0 if one_level else dev[i, DEV_SERVING])  # the job in service heads it
            j = np.uint32(dev[i, h])
            width, cell = _integrate(i, t, dev, devf, top)
            if large:
                times_k = _defer(level_time, times_cell, times_add, times_k, cell, width)
            else:
                level_time[cell] += width
            devf[i, DEV_LAST] = t
            dev[i, DEV_Q] -= 1
            dev[i, h] = job[j, J_NEXT]
            p = np.uint32(job[j, J_PROMPT])
            ct = np.uint32(job[j, J_TYPE])
            job[j, J_NEXT] = free_job
            free_job = j
            jobs -= 1
            if dev[i, DEV_Q] > 0:
                if not one_level:  # the first non-empty level
                    h = list_slot(0)
                    while dev[i, h] < 0:
                        h += 2
                    dev[i, DEV_SERVING] = (h - list_slot(0)) // 2
                nj = np.uint32(dev[i, h])
                c = np.uint32(job[j, J_NEXT_TYPE] if one_level else job[nj, J_TYPE])
                if preemptive and job_left[nj] > 0.0:  # resumes where it was interrupted
                    duration = job_left[nj]
                    job_left[nj] = 0.0
                else:
                    m = mean[i, c]
                    duration = (  # the common case in the loop, the rest through a call
                        memoryless(rng, m, slotted)
                        if dist == EXPONENTIAL
                        else draw_service(
                            rng, m, dist, scv, slotted, samples, bounds[c], bounds[c + 1]
                        )
                    )
                tree_set(key, tree, s, t + duration)
                if hints:
                    _hint(
                        ring,
                        ring_fill,
                        s,
                        t + duration,
                        inv_width,
                        coarse + HINT_AHEAD,
                        coarse + HINT_BUCKETS,
                    )
            else:
                tree_set(key, tree, s, np.inf)
                busy -= 1
            cell = np.uint64(ct) * np.uint64(n) + np.uint64(i)
            if large:
                counts_k = _defer(counts, counts_cell, counts_add, counts_k, cell, 1)
                areas_k = _defer(areas, areas_cell, areas_add, areas_k, cell, t)
            else:
                counts[cell] += 1
                areas[cell] += t
            prompt[p, P_DONE] += 1
            if i == prompt[p, P_ORIGIN]:
                prompt[p, P_DONE_HOME] += 1
            prompt[p, P_PENDING] -= 1
            if prompt[p, P_PENDING] > 0:
                if prompt[p, P_PENDING] == prompt[p, P_SIZE] - 1:  # the stage's first response
                    joins += 1  # its join opens
                continue
            if prompt[p, P_SIZE] > 1:
                joins -= 1
            if prompt[p, P_STAGE] == last_stage:  # the answer
                totals[COMPLETED] += 1
                totals[PROMPT_INFERENCES] += prompt[p, P_DONE]
                totals[PROMPT_ORIGIN_INFERENCES] += prompt[p, P_DONE_HOME]
                latency = t - birth[p, P_BIRTH]
                lat_sum[b] += latency
                lat_count[b] += 1
                cell = int((np.log(max(latency, hist_lo)) - log_lo) * hist_scale)
                hist[int(b >= warm_bin), min(cell, hist.shape[1] - 1)] += 1
                free_prompts[np.uint32(free_top)] = p
                free_top += 1
                continue
            nxt = prompt[p, P_STAGE] + 1
            if jobs + stage_k[nxt] + 1 > cap:
                totals[CAP_HIT] = 1
                t_end = t
                capped = True
                break
        # Stage nxt of prompt p: one job on its origin and one on each drawn helper.
        p = np.uint32(p)  # known non-negative on both paths here (module docstring)
        prompt[p, P_STAGE] = nxt
        home = prompt[p, P_ORIGIN]
        helpers = 0
        if stage_k[nxt] > 0:
            if mode[nxt] == COMPLETE:
                helpers = complete_subset(rng, n, home, stage_k[nxt], chosen)
            else:
                lo, hi = indptr[nxt, home], indptr[nxt, home + 1]
                if large:  # wanted after the draw, which reads perm or cum
                    prefetch(indices, (nxt, lo))
                if mode[nxt] == UNIFORM:
                    helpers = uniform_subset(rng, perm, nxt, lo, hi, stage_k[nxt], chosen)
                else:
                    helpers = systematic_subset(rng, cum, nxt, lo, hi, stage_k[nxt], chosen)
                for r in range(1, helpers + 1):  # CSR positions to devices
                    cell = np.uint64(nxt) * np.uint64(pairs) + np.uint64(chosen[r])
                    if large:
                        draws_k = _defer(draws, draws_cell, draws_add, draws_k, cell, 1)
                    else:
                        draws[cell] += 1
                    chosen[r] = indices[nxt, chosen[r]]
        prompt[p, P_PENDING] = helpers + 1
        prompt[p, P_SIZE] = helpers + 1
        c = stage_type[nxt]
        for r in range(helpers + 1):
            d = home if r == 0 else chosen[r]
            if free_job >= 0:
                j = np.uint32(free_job)
                free_job = job[j, J_NEXT]
            else:
                j = np.uint32(unused_job)
                unused_job += 1
                if preemptive:
                    job_left[j] = 0.0
            jobs += 1
            job[j, J_PROMPT] = p
            job[j, J_TYPE] = c
            job[j, J_NEXT] = -1
            cell = np.uint64(c) * np.uint64(n) + np.uint64(d)
            if large:  # x - t is x + (-t), bit for bit
                areas_k = _defer(areas, areas_cell, areas_add, areas_k, cell, -t)
            else:
                areas[cell] -= t
            h = list_slot(0 if one_level else level[nxt, int(r == 0)])
            width, cell = _integrate(d, t, dev, devf, top)
            if large:
                times_k = _defer(level_time, times_cell, times_add, times_k, cell, width)
            else:
                level_time[cell] += width
            if dev[d, h] >= 0:
                behind = np.uint32(dev[d, h + 1])
                job[behind, J_NEXT] = j
                job[behind, J_NEXT_TYPE] = c
            else:
                dev[d, h] = j
            q = dev[d, DEV_Q]
            if q == 0 or (preemptive and h < list_slot(dev[d, DEV_SERVING]) and key[a + d] > t):
                # Start j; a job it preempts (not one completing at t, which in slots finishes
                # before this slot's arrivals) heads its list with the service time it has left.
                if q == 0:
                    devf[d, DEV_IDLE] += width
                    busy += 1
                else:
                    job_left[dev[d, list_slot(dev[d, DEV_SERVING])]] = key[a + d] - t
                if not one_level:
                    dev[d, DEV_SERVING] = (h - list_slot(0)) // 2
                m = mean[d, c]
                duration = (
                    memoryless(rng, m, slotted)
                    if dist == EXPONENTIAL
                    else draw_service(rng, m, dist, scv, slotted, samples, bounds[c], bounds[c + 1])
                )
                tree_set(key, tree, a + d, t + duration)
                if hints:
                    _hint(
                        ring,
                        ring_fill,
                        a + d,
                        t + duration,
                        inv_width,
                        coarse + HINT_AHEAD,
                        coarse + HINT_BUCKETS,
                    )
            devf[d, DEV_LAST] = t
            dev[d, h + 1] = j
            dev[d, DEV_Q] = q + 1
            if q + 1 > dev[d, DEV_MAX]:
                dev[d, DEV_MAX] = q + 1
    _drain(level_time, times_cell, times_add, times_k)
    _drain(areas, areas_cell, areas_add, areas_k)
    _drain(counts, counts_cell, counts_add, counts_k)
    _drain(draws, draws_cell, draws_add, draws_k)
    counters[FREE_JOB], counters[UNUSED_JOB], counters[JOBS] = free_job, unused_job, jobs
    counters[FREE_TOP], counters[UNUSED_PROMPT] = free_top, unused_prompt
    counters[JOINS], counters[BIN], counters[DEVICE_BIN], counters[BUSY] = joins, b, db, busy
    pool[0], pool[1], pool[2], pool[3] = pool_joins, pool_jobs, pool_busy, pool_last
    st.clock[0] = t_chunk
    if capped or t_until >= t_stop:
        finish_replication(stage_type, ctl, out, st, t_end)


@njit(cache=True, parallel=True)
def run_replications_fcfs(net, svc, ctl, out, st, t_until):
    """:func:`run_fcfs` of every replication in parallel up to ``t_until``; replication ``r``
    owns row ``r`` of every output and state array. Each has its own generator state, so
    results do not depend on how replications are spread over threads."""
    for r in prange(st.rng.shape[0]):
        run_fcfs(net, svc, ctl, output_row(out, r), state_row(st, r), t_until)


@njit(cache=True, parallel=True)
def run_replications_fcfs_large(net, svc, ctl, out, st, t_until):
    """:func:`run_fcfs_large` of every replication in parallel (:func:`run_replications_fcfs`)."""
    for r in prange(st.rng.shape[0]):
        run_fcfs_large(net, svc, ctl, output_row(out, r), state_row(st, r), t_until)


@njit(cache=True, parallel=True)
def run_replications_priority(net, svc, ctl, out, st, t_until):
    """:func:`run_priority` of every replication in parallel (:func:`run_replications_fcfs`)."""
    for r in prange(st.rng.shape[0]):
        run_priority(net, svc, ctl, output_row(out, r), state_row(st, r), t_until)


def replication_runner(levels: int, queue_cells: int):
    """The compiled copy of the event loop for ``levels`` priority levels and a replication's
    ``queue_cells`` (:class:`Outputs` ``queue_time`` cells): :func:`run_replications_fcfs`,
    :func:`run_replications_fcfs_large` (from :data:`DEFER_FROM_CELLS` up) or
    :func:`run_replications_priority`. Chosen here, in Python, not in a compiled dispatch: a
    compiled dispatch compiles all three copies (about 40 s with a cold cache instead of 26 s
    for one), whatever the network."""
    if levels > 1:
        return run_replications_priority
    return run_replications_fcfs_large if queue_cells >= DEFER_FROM_CELLS else run_replications_fcfs


@njit(cache=True, parallel=True)
def start_replications(seeds, net, slotted, st):
    """:func:`start_replication` of replication ``r`` from ``seeds[r]``, in parallel."""
    for r in prange(seeds.shape[0]):
        start_replication(seeds[r], net, slotted, state_row(st, r))


@njit(cache=True)
def finish_replications(net, ctl, out, st):
    """:func:`finish_replication` of every unfinished replication at the time it reached."""
    for r in range(st.rng.shape[0]):
        if not st.counters[r, FINISHED]:
            finish_replication(
                net.stage_type, ctl, output_row(out, r), state_row(st, r), st.clock[r, 0]
            )


@njit(cache=True)
def output_row(out, r):
    """Replication ``r``'s :class:`Outputs` (``t_end`` as a one-cell slice)."""
    return Outputs(
        out.area[r],
        out.busy[r],
        out.join[r],
        out.jobs[r],
        out.busy_devices[r],
        out.lat_sum[r],
        out.lat_count[r],
        out.hist[r],
        out.max_queue[r],
        out.inferences[r],
        out.selected[r],
        out.totals[r],
        out.queue_time[r],
        out.t_end[r : r + 1],
        out.type_area[r],
    )


@njit(cache=True)
def state_row(st, r):
    """Replication ``r``'s :class:`State`."""
    return State(
        st.rng[r],
        st.counters[r],
        st.clock[r],
        st.device[r],
        st.pool[r],
        st.key[r],
        st.tree[r],
        st.job[r],
        st.job_left[r],
        st.prompt[r],
        st.free_prompts[r],
        st.perm[r],
    )
