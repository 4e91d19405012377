r"""Monte Carlo simulation of a :class:`~moa_stability.model.network.MoANetwork`: queues, joins,
latency and an empirical stability verdict.

Two simulators share one job-level engine (:mod:`moa_stability.simulation.kernels`):

* ``method="slots"``: the slotted model of docs/model.md section 3 with slot length :math:`dt`.
  Per slot and device, the head-of-line job completes with probability :math:`dt/E[S]`
  (geometric service; a general service time is drawn in seconds and rounded stochastically to
  :math:`\max(1, \cdot)` slots, mean-preserving when it is at least one slot), then a user
  prompt arrives with probability :math:`\lambda_i dt`, then the jobs routed by this slot's
  completions. Idle slots are skipped by drawing geometric gaps, which is exactly equivalent.
* ``method="events"``: continuous time, Poisson arrivals, service times drawn exactly.

Every job is tracked: a prompt born at device :math:`j` runs its ``M`` layers, each on
:math:`j` and :math:`k_m` helpers drawn by the network's selection rule (uniform
:math:`k_m`-subsets of the neighbours by partial Fisher-Yates, or systematic sampling with the
inclusion probabilities :math:`\pi_m[j, \cdot]` as exact marginals), joins when all
:math:`k_m + 1` responses are back, then aggregates on :math:`j`.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numba
import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..model.discipline import discipline_field, level_table
from ..model.display import html_summary, tqdm
from ..model.loads import job_rates, load_profile, loads
from ..model.network import JOB_TYPES, MoANetwork, count_field, number_field
from . import kernels as kern
from .statistics import (
    MAX_BATCHES,
    Evidence,
    batch_count,
    growth_slope,
    level_interval,
    relaxation_time,
    stability_verdict,
    t_interval,
)

METHODS = ("slots", "events")
SERVICES = {
    "exponential": kern.EXPONENTIAL,
    "deterministic": kern.DETERMINISTIC,
    "gamma": kern.GAMMA,
    "lognormal": kern.LOGNORMAL,
    "empirical": kern.EMPIRICAL,
}
N_BINS = 1000
"""Time bins of the network-wide integrals (jobs in the system, busy devices, prompts at joins,
latency) and of the optional paths. Per-device integrals are kept per batch of the batch-means
intervals, or per bin with ``record_paths`` (then fewer bins, at least :data:`MIN_BINS`, when the
per-device bins of many devices would exceed a share of :data:`MEMORY_BUDGET_BYTES`)."""
MIN_BINS = 200
"""Fewest time bins (with ``record_paths``)."""
_HIST_DECADES, _HIST_CELLS_PER_E = 12, 500  # latency histogram: 0.2% relative resolution
_DEFAULT_HORIZON_SERVICES = 100_000
MAX_TRACKED_QUEUE = 256
"""Default largest queue length the distribution resolves (longer queues share its last cell)."""
_DEFAULT_DT_FRACTION = 0.1
_MAX_TRACKED_CELLS = 10**7  # queue-length cells per replication (80 MB of doubles)
MEMORY_BUDGET_BYTES = 4 * 2**30
"""Largest memory :func:`simulate` may preallocate (outputs, job pools, per-device state); a
call that needs more is refused with a ValueError before any work."""
_BIN_BUDGET_BYTES = 2**29  # per-device time bins (queue and busy integrals) of all replications
_IMPLICIT_COMPLETE_PAIRS = 2**22  # complete graphs with more (origin, helper) pairs: no CSR
_CHUNK_WALL_S = 0.5  # target wall seconds of one kernel call; Ctrl-C is honoured between calls
_PROGRESS_DELAY_S = 2.0  # a run shorter than this shows no progress bar (progress=None)
_FIRST_CHUNK_EVENTS = 20_000  # expected events of the first chunk (then adapted to the target)
MAX_SCV = 1000.0
"""Largest ``scv`` of gamma and lognormal service. Gamma draws are
``m * scv * U**scv * G`` (shape ``1/scv`` boosted, :func:`kernels.gamma`): from
``scv`` ~ 1022 the median draw, below ``0.5**scv``, is no longer a normal double, so most draws
are 0 s and the mean rests on rare draws that a run never sees (a load-0.5 network then shows
utilisation and latency 0). A lognormal's mean likewise sits ``sqrt(ln(1 + scv))`` standard
deviations out. The bound keeps both representable."""
MAX_EVENTS = 10**13
"""Most expected events (user prompts, job arrivals and completions, over all replications)
one call may simulate: weeks of wall time at ~10^7 events per second. A horizon beyond it (say
1e300 s) could never finish, so it is refused up front."""
MAX_SLOTS = 2**53
"""Most slots per replication: the slot clock is a double and counts exactly up to 2**53."""


@dataclass(frozen=True, eq=False, repr=False)
class SimulationResult:
    r"""What one call of :func:`simulate` measured, pooled over its replications.

    Time averages, utilisation and latency cover the window after the warm-up (or, if a job
    cap stopped the run during the warm-up, everything simulated); counts
    (``prompts_*``, ``inferences*``, ``selection_counts``) cover the whole run of every
    replication. Confidence intervals are 95% half-widths: Student-t over **independent
    replications** when ``replications >= 2``, else over **batch means** (``ci_method``) of
    batches spanning 20 relaxation times (5 to 20 batches), widened for the skew of a queue's
    time average (:func:`~moa_stability.simulation.statistics.level_interval`,
    docs/model.md section 6).

    Attributes
    ----------
    method : {"slots", "events"}
    mean_queue, mean_queue_ci : ndarray (n,)
        Time-average jobs at each device, waiting or in service, and its CI half-width.
        (Slots: the average at slot boundaries, docs/model.md section 3.)
    max_queue : ndarray (n,)
        Largest number of jobs at each device over the whole run.
    utilisation, utilisation_ci : ndarray (n,)
        Fraction of time each device is busy, and its CI half-width.
    mean_join_waiting : float
        Time-average number of prompts waiting at a join (some but not all responses of their
        current layer back).
    latency_mean, latency_ci : float
        Seconds from a prompt's birth to its answer (prompts answered after the warm-up).
    latency_p50, latency_p95, latency_p99 : float
        Latency percentiles, seconds (from a histogram with 0.2% relative resolution).
    prompts_arrived, prompts_completed : int
    inferences : int
        Completed inferences (jobs); ``inferences_by_type`` splits them ``(3, n)`` by
        ``JOB_TYPES`` and device.
    completed_prompt_inferences, completed_prompt_origin_inferences : int
        Inferences run for the completed prompts, in all and on their origin devices
        (conservation: :math:`((k+1)M+1)` and :math:`M+1` per prompt).
    selection_counts : tuple of scipy.sparse.csr_array, or None
        Per layer, ``[j, i]`` = times device ``i`` was drawn as a helper of a prompt born at
        ``j``. None on a complete graph with more than 2**22 (origin, helper) pairs (about
        2,000 devices), whose helpers are drawn without a neighbour list.
    total_queue_mean, total_queue_ci : float
        Time-average total jobs in the system (network-wide, from per-bin integrals: meaningful
        however few events each device sees).
    busy_devices_mean, busy_devices_ci : float
        Time-average number of busy devices, network-wide (the sum of ``utilisation``; in a
        stable network it estimates the sum of the loads).
    growth_slope, growth_slope_ci : float
        OLS slope of the total jobs in the system on time, jobs per second, and its CI
        half-width (batch means averaged over replications): independent batch means, or a
        random walk with drift once the slope is significant (``statistics.growth_slope``,
        docs/model.md section 6.4).
    verdict : {"stable", "unstable", "inconclusive"}
    evidence : str
        The numbers behind the verdict (docs/model.md section 6 gives the rule).
    horizon_needed_s : float
        Horizon per replication the evidence rule asks for: at most ``horizon_s`` when the
        verdict is ``stable`` or ``unstable``, an estimate of what would decide an
        ``inconclusive`` run (``inf`` with a device loaded exactly to capacity).
    cap_hit_time : float or None
        Earliest simulated second at which a replication reached ``max_jobs`` and stopped.
    horizon_s, horizon_slots, dt_s, warmup_s : float, int or None, float or None, float
        Horizon per replication (slots: whole slots), slot length, warm-up discarded.
    simulated_s : float
        Simulated seconds summed over replications (shorter than requested if a cap was hit).
    replications, seed, max_jobs : int
    queue_distribution : ndarray (n, max_tracked_queue + 1)
        Time-average queue-length law over the same window as ``mean_queue``, pooled over
        replications: ``[i, b]`` is the fraction of time device ``i`` held exactly ``b`` jobs
        (waiting or in service), the last column :math:`b \ge B_{max}` (``max_tracked_queue``).
        Slots: the fraction of slot boundaries, as for ``mean_queue``. While
        ``max_queue < max_tracked_queue``, :math:`\sum_b b\,\pi_i(b)` is ``mean_queue``.
    max_tracked_queue : int
        :math:`B_{max}`, the first queue length not resolved by ``queue_distribution``.
    paths : pandas.DataFrame or None
        With ``record_paths``: time-average jobs per device in each of the
        :data:`N_BINS` bins of replication 0, indexed by the bin's mid time (seconds).
    loads : ndarray (n,)
        The exact loads :math:`\rho_i`, for comparison with ``utilisation``.
    mean_jobs_by_type, mean_jobs_by_type_ci : ndarray (3, n)
        Time-average jobs of each type (``JOB_TYPES``) at each device, waiting or in service,
        over the same window as ``mean_queue`` (summed over types it is ``mean_queue``), and
        the Student-t CI half-width over replications (NaN with one replication). By Little's
        law, divided by the type's job rate it is the mean sojourn of those jobs.
    discipline : str
        The devices' scheduling discipline (:data:`moa_stability.model.discipline.DISCIPLINES`).
    preemptive : bool
        Whether a higher-priority job interrupts the one in service (preemptive-resume).

    Methods :meth:`overflow_probability` and :meth:`buffer_for` read the tail of
    ``queue_distribution``.
    """

    method: str
    mean_queue: np.ndarray
    mean_queue_ci: np.ndarray
    max_queue: np.ndarray
    utilisation: np.ndarray
    utilisation_ci: np.ndarray
    mean_join_waiting: float
    latency_mean: float
    latency_ci: float
    latency_p50: float
    latency_p95: float
    latency_p99: float
    prompts_arrived: int
    prompts_completed: int
    inferences: int
    inferences_by_type: np.ndarray
    completed_prompt_inferences: int
    completed_prompt_origin_inferences: int
    selection_counts: tuple[sp.csr_array, ...]
    total_queue_mean: float
    total_queue_ci: float
    busy_devices_mean: float
    busy_devices_ci: float
    growth_slope: float
    growth_slope_ci: float
    verdict: str
    evidence: str
    horizon_needed_s: float
    cap_hit_time: float | None
    horizon_s: float
    horizon_slots: int | None
    dt_s: float | None
    warmup_s: float
    simulated_s: float
    replications: int
    seed: int
    max_jobs: int
    ci_method: str
    loads: np.ndarray
    mean_jobs_by_type: np.ndarray
    mean_jobs_by_type_ci: np.ndarray
    discipline: str
    preemptive: bool
    queue_distribution: np.ndarray = field(repr=False)
    max_tracked_queue: int
    paths: pd.DataFrame | None = field(default=None, repr=False)
    partial: bool = False

    def overflow_probability(self, buffer: int | np.ndarray) -> np.ndarray:
        r"""Fraction of time :math:`P(Q_i > B)` that each device holds more than ``buffer`` jobs.

        .. math:: P(Q_i > B) = \sum_{b > B} \pi_i(b), \qquad 0 \le B < B_{max},

        from ``queue_distribution`` :math:`\pi_i` (its last cell is :math:`P(Q_i \ge B_{max})`,
        so :math:`B \le B_{max} - 1`).

        Parameters
        ----------
        buffer : int or 1-D array of int
            Jobs a device can hold, in :math:`[0, B_{max} - 1]`.

        Returns
        -------
        ndarray
            ``(n,)`` for one buffer, ``(n, len(buffer))`` for several.
        """
        b = np.asarray(buffer)
        if (
            b.ndim > 1
            or not np.issubdtype(b.dtype, np.integer)
            or b.size == 0
            or b.min() < 0
            or b.max() >= self.max_tracked_queue
        ):
            raise ValueError(
                f"buffer={buffer!r}: must be an integer (or 1-D array of integers) "
                f"in [0, {self.max_tracked_queue - 1}]; longer buffers need "
                "simulate(..., max_tracked_queue=...) above them"
            )
        return self._tail()[:, b]

    def buffer_for(self, probability: float) -> np.ndarray:
        r"""Smallest buffer per device with overflow probability at most ``probability``:
        :math:`B_i = \min\{B \ge 0 : P(Q_i > B) \le \varepsilon\}` jobs.

        Raises ``ValueError`` if some device needs :math:`B_{max}` or more (simulate again with
        a larger ``max_tracked_queue``, or longer if the network is near instability).
        """
        eps = _positive("probability", probability)
        if eps >= 1:
            raise ValueError(
                f"probability={probability!r}: must be in (0, 1); pass a target "
                "overflow probability such as 1e-3"
            )
        within = self._tail() <= eps
        short = np.flatnonzero(~within.any(axis=1))
        if short.size:
            raise ValueError(
                f"probability={probability!r}: devices {short.tolist()} exceed "
                f"{self.max_tracked_queue - 1} jobs more than a fraction {eps:g} of the time; "
                "simulate with a larger max_tracked_queue"
            )
        return within.argmax(axis=1)

    def _tail(self) -> np.ndarray:
        """``[i, B]`` = :math:`P(Q_i > B)` for :math:`B = 0..B_{max}-1`."""
        upper = np.cumsum(self.queue_distribution[:, ::-1], axis=1)[:, ::-1]
        return np.clip(upper[:, 1:], 0.0, 1.0)

    def to_frame(self) -> pd.DataFrame:
        """One row per device: queue, CI, maximum, utilisation beside the load, inferences, and
        the prompt latency.

        The latency columns (``latency_mean_s``, ``latency_ci_s``, ``latency_p50_s``,
        ``latency_p95_s``, ``latency_p99_s``) are network-wide, the same on every row: the
        simulator records latency over all prompts, not per origin device. They are repeated so
        that a saved table keeps them.
        """
        frame = pd.DataFrame(
            {
                "mean_queue": self.mean_queue,
                "mean_queue_ci": self.mean_queue_ci,
                "max_queue": self.max_queue,
                "utilisation": self.utilisation,
                "utilisation_ci": self.utilisation_ci,
                "load": self.loads,
            }
        )
        for c, name in enumerate(JOB_TYPES):
            frame[f"{name}_inferences"] = self.inferences_by_type[c]
        for stat in ("mean", "ci", "p50", "p95", "p99"):
            frame[f"latency_{stat}_s"] = getattr(self, f"latency_{stat}")
        frame.index.name = "device"
        frame.attrs.update(discipline=self.discipline, preemptive=self.preemptive)
        return frame

    def __str__(self) -> str:
        clock = (
            f"{self.horizon_slots} slots of {self.dt_s:.4g} s"
            if self.dt_s is not None
            else "continuous time"
        )
        cap = "" if self.cap_hit_time is None else f", job cap hit at {self.cap_hit_time:.6g} s"
        rule = ("preemptive " if self.preemptive else "") + self.discipline
        return "\n".join(
            [
                f"Simulation ({self.method}, {clock}, {rule}, horizon {self.horizon_s:.6g} s x "
                f"{self.replications} replication(s), warm-up {self.warmup_s:.6g} s{cap})",
                f"  verdict: {self.verdict} ({self.evidence})",
                f"  mean queue per device: {_fmt(self.mean_queue)} +- {_fmt(self.mean_queue_ci)}"
                f" ({self.ci_method})",
                f"  utilisation: {_fmt(self.utilisation)} (loads {_fmt(self.loads)}); busy "
                f"devices {self.busy_devices_mean:.4g} +- {self.busy_devices_ci:.2g}",
                f"  latency: mean {self.latency_mean:.4g} +- {self.latency_ci:.2g} s, p50 "
                f"{self.latency_p50:.4g}, p95 {self.latency_p95:.4g}, p99 {self.latency_p99:.4g} s",
                f"  prompts waiting at joins: {self.mean_join_waiting:.4g}; prompts "
                f"{self.prompts_completed}/{self.prompts_arrived} answered; "
                f"{self.inferences} inferences",
            ]
        )

    __repr__ = __str__

    def _repr_html_(self) -> str:
        return html_summary(str(self), self.to_frame())

    def plot(self) -> Any:
        """Queue lengths (paths over time when recorded, else the per-device means with their
        CIs), the tail :math:`P(Q_i > B)` of each device's queue, and the latency percentiles.

        Returns
        -------
        matplotlib.figure.Figure
        """
        # matplotlib costs a second to import: only a plot needs it.
        import matplotlib.pyplot as plt

        fig, (ax_q, ax_tail, ax_lat) = plt.subplots(1, 3, figsize=(12, 3.6), layout="constrained")
        n = self.mean_queue.size
        devices = np.arange(n)
        if self.paths is not None:
            for i in range(min(n, 10)):
                ax_q.plot(self.paths.index, self.paths.iloc[:, i], lw=0.8, label=f"device {i}")
            ax_q.axvline(self.warmup_s, color="0.5", ls=":", lw=1, label="end of warm-up")
            ax_q.set(xlabel="time (s)", ylabel="jobs at the device", title="queue paths")
            ax_q.legend(fontsize=7, ncol=2)
        else:
            ax_q.bar(devices, self.mean_queue, yerr=self.mean_queue_ci, color="tab:blue")
            ax_q.set(
                xlabel="device",
                ylabel="mean jobs at the device",
                title="mean queue, 95% CI (record_paths=True for paths)",
            )
        tail = self._tail()
        for i in range(min(n, 10)):
            ax_tail.semilogy(np.arange(tail.shape[1]), tail[i], lw=1, label=f"device {i}")
        ax_tail.set(
            xlabel="buffer B (jobs)",
            ylabel="P(Q_i > B)",
            title="queue-length tail",
            xlim=(0, max(1, int(self.max_queue.max()) + 1)),
        )
        ax_tail.legend(fontsize=7, ncol=2)
        names = ["p50", "mean", "p95", "p99"]
        values = [self.latency_p50, self.latency_mean, self.latency_p95, self.latency_p99]
        ax_lat.bar(names, values, color=["tab:green", "tab:blue", "tab:orange", "tab:red"])
        ax_lat.errorbar([1], [self.latency_mean], yerr=[self.latency_ci], color="black", capsize=4)
        for x, v in enumerate(values):
            top = v + (self.latency_ci if names[x] == "mean" else 0.0)  # above the CI bar
            ax_lat.annotate(f"{v:.3g} s", (x, top), ha="center", va="bottom", fontsize=8)
        ax_lat.set(ylabel="seconds from prompt to answer", title="prompt latency")
        fig.suptitle(f"{self.method} simulation: {self.verdict}", fontsize=10)
        return fig


def _fmt(values: np.ndarray) -> str:
    return np.array2string(np.asarray(values, dtype=float), precision=4, threshold=8)


# ---- validation and input preparation ---------------------------------------------------------
def _positive(name: str, value: Any) -> float:
    x = number_field(name, value, "pass a positive number")
    if not x > 0:
        raise ValueError(f"{name}={value!r}: must be finite and > 0; pass a positive number")
    return x


def _used_means(net: MoANetwork) -> np.ndarray:
    """Mean service seconds of the (type, device) pairs that receive jobs."""
    used = job_rates(net) > 0
    return net.service_time[used] if used.any() else net.service_time[0]


def _slot_length(net: MoANetwork, dt: float | None) -> float:
    """``dt`` checked against :math:`\\lambda_i dt \\le 1` and :math:`dt \\le E[S]`."""
    shortest = float(_used_means(net).min())
    fastest = float(net.arrival_rate.max())
    if dt is None:
        return _DEFAULT_DT_FRACTION * min(shortest, 1.0 / fastest if fastest > 0 else shortest)
    dt = _positive("dt", dt)
    if fastest * dt > 1:
        raise ValueError(
            f"dt={dt:g}: the arrival probability per slot lambda*dt = "
            f"{fastest * dt:.4g} exceeds 1; use dt <= 1/max(lambda) = "
            f"{1 / fastest:.4g} s"
        )
    if dt > shortest:
        raise ValueError(
            f"dt={dt:g}: longer than the shortest mean service time {shortest:.4g}"
            f" s, so dt/E[S] > 1; use dt <= {shortest:.4g} s (e.g. a tenth of it)"
        )
    return dt


def _empirical(net: MoANetwork, samples: Mapping[str, Any] | None) -> tuple[np.ndarray, np.ndarray]:
    """Measured seconds per job type, each scaled to mean one, concatenated, with bounds."""
    if samples is None or not isinstance(samples, Mapping):
        raise ValueError(
            f"samples={samples!r}: service='empirical' needs them; pass a mapping job type -> 1-D "
            f"array of measured seconds for each of {net.job_types_used}"
        )
    # Keys of any type (0, None, ...) must be named, not compared with the str ones.
    unknown = sorted((k for k in samples if not (isinstance(k, str) and k in JOB_TYPES)), key=repr)
    missing = [c for c in net.job_types_used if c not in samples]
    if unknown or missing:
        keys = sorted(samples, key=repr)
        raise ValueError(
            f"samples={keys} (keys): unknown {unknown}, missing "
            f"{missing}; give measured seconds for each of {net.job_types_used} "
            "(the same array for several types is fine)"
        )
    parts = []
    for c in JOB_TYPES:
        try:
            x = np.asarray(samples.get(c, []), dtype=float).ravel()
        except (ValueError, TypeError) as err:
            shown = repr(samples[c])
            shown = shown if len(shown) <= 40 else shown[:37] + "..."
            raise ValueError(
                f"samples[{c!r}]={shown}: not an array of numbers ({str(err).splitlines()[0]});"
                " pass measured seconds as a flat list or 1-D array of numbers"
            ) from err
        if c in samples and (
            x.size == 0 or not np.all(np.isfinite(x)) or x.min() < 0 or x.sum() == 0
        ):
            raise ValueError(
                f"samples[{c!r}]=(given): must be a non-empty array of finite seconds >= 0"
                " with a positive mean; drop failed or missing measurements"
            )
        parts.append(x / x.mean() if x.size else x)
    bounds = np.concatenate([[0], np.cumsum([len(x) for x in parts])]).astype(np.int64)
    return np.concatenate(parts), bounds


def _service(
    net: MoANetwork, service: str, scv: float, samples: Any, unit_s: float, slotted: bool
) -> kern.Service:
    """The service description for the kernels (means in clock units)."""
    if not (isinstance(service, str) and service in SERVICES):
        raise ValueError(
            f"service={service!r}: unknown service distribution; use one of {sorted(SERVICES)}"
        )
    if service in ("gamma", "lognormal"):
        scv = _positive("scv", scv)
        if scv > MAX_SCV:
            why = (
                "the median gamma draw (shape 1/scv) is below 0.5**scv times scv times the "
                "mean, under the smallest double from scv ~ 1022, so most draws are 0 s"
                if service == "gamma"
                else f"a lognormal's mean sits {math.sqrt(math.log1p(scv)):.3g} standard "
                "deviations out"
            )
            raise ValueError(
                f"scv={scv:g}: above {MAX_SCV:g} (MAX_SCV): {why}, and the rare draws that "
                "carry the mean almost never occur in a run (utilisation and latency would "
                f"come out near 0); use scv <= {MAX_SCV:g}"
            )
    values, bounds = np.ones(1), np.zeros(len(JOB_TYPES) + 1, np.int64)
    if service == "empirical":
        values, bounds = _empirical(net, samples)
    mean = net.service_time / unit_s
    if service == "exponential":
        mean = _memoryless_scale(1.0 / mean, slotted)
    rows = _aligned((net.n, 4), np.float64)  # a device's parameters in one cache line
    rows[:, :3] = mean.T
    rows[:, 3] = 0.0
    return kern.Service(slotted, rows, SERVICES[service], float(scv), values, bounds)


def _memoryless_scale(rate: np.ndarray, slotted: bool) -> np.ndarray:
    """The kernels' parameter of exponential (mean ``1/rate``) or, in slots, geometric (success
    probability ``rate`` per slot) times: :math:`-1/\\ln(1 - q)`; ``inf`` for rate 0."""
    with np.errstate(divide="ignore"):
        scale = -1.0 / np.log1p(-np.minimum(rate, 1.0)) if slotted else 1.0 / rate
    return np.where(rate > 0, scale, np.inf)


def _origins(net: MoANetwork, slotted: bool, unit_s: float) -> tuple[np.ndarray, np.ndarray, float]:
    """The superposed prompt stream of the continuous clock (:class:`kernels.Network`): alias
    table of the origins and memoryless scale of the summed rate; empty in slots."""
    if slotted:
        return np.ones(0), np.zeros(0, np.int64), 0.0
    cut, alias = kern.alias_table(np.asarray(net.arrival_rate, float))
    total = float(net.arrival_rate.sum()) * unit_s
    return cut, alias, float(_memoryless_scale(np.array([total]), False)[0])


def _stages(net: MoANetwork) -> tuple[np.ndarray, np.ndarray]:
    """Job type and helper count of each stage: proposer layers, then the aggregate."""
    if net.M == 0:
        return np.zeros(1, np.uint32), np.zeros(1, np.int64)
    types = [0] + [1] * (net.M - 1) + [2]
    return np.array(types, np.uint32), np.array(list(net.k) + [0], np.int64)


def _selection(net: MoANetwork) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per layer: selection mode, CSR rows of candidate helpers, cumulative probabilities.

    A large complete graph with uniform selection has no CSR rows (``n(n-1)`` pairs would not
    fit): the kernels draw its helpers by index arithmetic (:data:`kernels.COMPLETE`)."""
    if _implicit_complete(net):
        empty = np.zeros((net.M, 0))
        mode = np.full(net.M, kern.COMPLETE, np.int64)
        return mode, np.zeros((net.M, 1), np.int64), empty.astype(np.int64), empty
    rows = [_layer_rows(net, m) for m in range(net.M)]
    width = max([r.nnz for r in rows], default=0)
    indptr = np.zeros((net.M, net.n + 1), np.int64)
    # Cache-line aligned: a device's candidates (8 on an 8-regular graph) in one line.
    indices = _aligned((net.M, width), np.int64)
    indices[:] = 0
    cum = _aligned((net.M, width), np.float64)
    cum[:] = 0.0
    for m, pi in enumerate(rows):
        indptr[m], indices[m, : pi.nnz] = pi.indptr, pi.indices
        if net.selection is not None:
            cum[m, : pi.nnz] = _cumulative(pi, net.k[m])
    mode = np.full(net.M, kern.UNIFORM if net.selection is None else kern.SYSTEMATIC, np.int64)
    return mode, indptr, indices, cum


def _layer_rows(net: MoANetwork, m: int) -> sp.csr_array:
    """Candidate helpers of layer ``m`` (with their probabilities under a selection)."""
    return net.adjacency if net.selection is None else net.selection[m]


def _implicit_complete(net: MoANetwork) -> bool:
    return (
        net.is_complete and net.selection is None and net.n * (net.n - 1) > _IMPLICIT_COMPLETE_PAIRS
    )


def _cumulative(pi: sp.csr_array, k: int) -> np.ndarray:
    """Per row cumulative inclusion probabilities, rescaled so each row ends at exactly k."""
    out = np.empty(pi.nnz)
    for j in range(pi.shape[0]):
        lo, hi = pi.indptr[j], pi.indptr[j + 1]
        if hi > lo:
            c = np.cumsum(pi.data[lo:hi])
            out[lo:hi] = c * (k / c[-1])
            out[hi - 1] = k
    return out


def _warmup_bin(warmup: float, horizon: float, bins: int) -> int:
    """First bin after the warm-up (rounded up to a bin edge)."""
    w = number_field("warmup", warmup, "pass a fraction in [0, 1) of the horizon or seconds (>= 1)")
    if not (math.isfinite(w) and w >= 0):
        raise ValueError(f"warmup={warmup!r}: must be >= 0; pass a fraction in [0, 1) or seconds")
    fraction = w if w < 1 else w / horizon
    if fraction > 1 - MAX_BATCHES / bins:
        raise ValueError(
            f"warmup={warmup!r}: leaves no window to measure in a horizon of "
            f"{horizon:g} s; use a warm-up below {1 - MAX_BATCHES / bins:.0%} "
            "of the horizon"
        )
    return math.ceil(round(fraction * bins, 9))


def _device_edges(bins: int, warm_bin: int, batches: int) -> np.ndarray:
    """Device bins as runs of time bins: after the warm-up exactly the ``batches`` groups that
    :func:`_windows` forms from a complete run (so per-device batch means are those of the
    per-bin arrays they replace), before it as many runs of about the same length (at most
    :data:`MAX_BATCHES`: they serve only a run a job cap stops during the warm-up)."""
    after = np.array_split(np.arange(warm_bin, bins), batches)
    before = []
    if warm_bin:
        runs = min(MAX_BATCHES, warm_bin, math.ceil(warm_bin * batches / (bins - warm_bin)))
        before = np.array_split(np.arange(warm_bin), runs)
    return np.array([g[0] for g in [*before, *after]] + [bins], np.int64)


@dataclass(frozen=True)
class _Plan:
    """Validated kernel inputs and the unit conversions of one call."""

    slotted: bool
    unit_s: float
    t_stop: float
    warm_bin: int
    network: kern.Network
    service: kern.Service
    discipline: str
    preemptive: bool
    seed: int
    seeds: np.ndarray
    cap: int
    hist_grid: tuple[float, float]
    tracked: int
    bins: int
    device_edges: np.ndarray  # device bin d = bins device_edges[d] .. device_edges[d+1] - 1
    group: int  # replications whose job pools are held at once
    relaxation_s: float  # statistics.relaxation_time of the network and service law


def _plan(
    net: MoANetwork,
    method: str,
    horizon: float | None,
    dt: float | None,
    seed: int,
    service: str,
    scv: float,
    samples: Any,
    replications: int,
    warmup: float,
    max_jobs: int,
    max_tracked_queue: int | None,
    discipline: str = "fcfs",
    preemptive: bool = False,
    record_paths: bool = False,
) -> _Plan:
    if not isinstance(record_paths, (bool, np.bool_)):
        raise ValueError(f"record_paths={record_paths!r}: must be True or False; pass a bool")
    record_paths = bool(record_paths)
    if not isinstance(net, MoANetwork):
        raise ValueError(f"net={net!r}: is not a MoANetwork; build one with MoANetwork(...)")
    if not (isinstance(method, str) and method in METHODS):
        raise ValueError(f"method={method!r}: unknown simulator; use one of {METHODS}")
    seed = count_field("seed", seed, 0)
    discipline = discipline_field(discipline)
    if not isinstance(preemptive, (bool, np.bool_)):
        raise ValueError(f"preemptive={preemptive!r}: must be True or False; pass a bool")
    level = level_table(discipline, net.M)
    replications = count_field("replications", replications, 1)
    cap = count_field("max_jobs", max_jobs, max(net.k, default=0) + 1)
    if max_tracked_queue is None:  # the default resolution, as fine as the cell budget allows
        max_tracked_queue = max(1, min(MAX_TRACKED_QUEUE, _MAX_TRACKED_CELLS // net.n - 1))
    tracked = count_field("max_tracked_queue", max_tracked_queue, 1)
    if tracked > _MAX_TRACKED_CELLS // net.n:
        raise ValueError(
            f"max_tracked_queue={max_tracked_queue}: {net.n} devices x that many "
            f"queue lengths exceed {_MAX_TRACKED_CELLS:.0e} cells per replication; "
            f"use at most {_MAX_TRACKED_CELLS // net.n}"
        )
    if cap >= 2**31:
        raise ValueError(f"max_jobs={max_jobs}: at most 2**31 - 1 jobs fit the job ids; lower it")
    bins = N_BINS
    if record_paths:  # per-device bins: as many as the memory share allows
        bins = max(MIN_BINS, min(N_BINS, _BIN_BUDGET_BYTES // (16 * net.n * replications)))
    group = min(replications, numba.get_num_threads())
    slotted = method == "slots"
    if horizon is None:
        horizon = _DEFAULT_HORIZON_SERVICES * float(_used_means(net).max())
    horizon = _positive("horizon", horizon)
    _check_horizon(net, horizon, replications)
    unit_s = _slot_length(net, dt) if slotted else 1.0
    if slotted and horizon / unit_s > MAX_SLOTS:
        raise ValueError(
            f"dt={unit_s:g}, horizon={horizon:g}: {horizon / unit_s:.3g} slots, more than the "
            f"2**53 = {MAX_SLOTS:.3g} (MAX_SLOTS) a slot clock counts exactly; use dt >= "
            f"{horizon / MAX_SLOTS:.3g} s or a shorter horizon"
        )
    t_stop = float(max(1, round(horizon / unit_s))) if slotted else horizon
    arrival = _memoryless_scale(net.arrival_rate * unit_s, slotted)
    svc = _service(net, service, scv, samples, unit_s, slotted)
    warm_bin = _warmup_bin(warmup, t_stop * unit_s, bins)
    relaxation_s = _relaxation_time(net, svc)  # O(n) sparse products: once per call
    if record_paths:
        device_edges = np.arange(bins + 1)
    else:
        window_s = (bins - warm_bin) * t_stop / bins * unit_s
        batches = batch_count(window_s, relaxation_s, bins - warm_bin)
        device_edges = _device_edges(bins, warm_bin, batches)
    _check_memory(
        net, replications, group, cap, tracked, bins, device_edges.size - 1, int(level.max()) + 1
    )
    lo = 10.0**-4 * float(_used_means(net).min()) / unit_s
    seeds = np.stack(
        [
            child.generate_state(4, np.uint64)
            for child in np.random.SeedSequence(seed).spawn(replications)
        ]
    )
    return _Plan(
        slotted,
        unit_s,
        t_stop,
        warm_bin,
        kern.Network(
            arrival, *_stages(net), *_selection(net), level, *_origins(net, slotted, unit_s)
        ),
        svc,
        discipline,
        bool(preemptive),
        seed,
        seeds,
        cap,
        (lo, float(_HIST_CELLS_PER_E)),
        tracked,
        bins,
        device_edges,
        group,
        relaxation_s,
    )


_HIST_CELLS = int(math.ceil(_HIST_DECADES * math.log(10) * _HIST_CELLS_PER_E))


def _check_horizon(net: MoANetwork, horizon: float, replications: int) -> None:
    """Refuse a horizon whose expected events exceed :data:`MAX_EVENTS` (it could never
    finish). A horizon too short for any completion is not refused: its verdict is
    ``inconclusive``, with the horizon the verdict would need (tests/simulation/test_verdict.py)."""
    per_s = float(2 * job_rates(net).sum() + net.arrival_rate.sum())  # arrivals + completions
    events = per_s * horizon * replications
    if events > MAX_EVENTS:
        named = f"horizon={horizon:g}" + (
            f", replications={replications}" if replications > 1 else ""
        )
        raise ValueError(
            f"{named}: about {events:.3g} events ({replications} replication(s) x "
            f"{per_s:.3g} per simulated second), over the {MAX_EVENTS:.0e} (MAX_EVENTS) one call "
            f"may run, weeks of wall time; use a horizon of at most "
            f"{MAX_EVENTS / (per_s * replications):.3g} s (or fewer replications)"
        )


def _check_memory(
    net: MoANetwork,
    replications: int,
    group: int,
    cap: int,
    tracked: int,
    bins: int,
    device_bins: int,
    levels: int,
) -> None:
    r"""Refuse a call whose preallocated arrays would exceed :data:`MEMORY_BUDGET_BYTES`.

    Per replication the outputs take :math:`8(2 D n + 5B + 2H + 11n + n(B_{max}+1) + P)`
    bytes (``D`` device bins, ``B`` bins, ``H`` histogram cells, ``P`` selection counters, one
    per CSR entry);
    per replication held at once (``group``: the numba threads) the state takes
    :data:`kernels.STATE_BYTES_PER_JOB` per job of the cap and
    :data:`kernels.STATE_BYTES_PER_DEVICE` per device (and
    :data:`kernels.STATE_BYTES_PER_LEVEL` per device and further priority level), plus a
    permutation per CSR entry, plus :data:`kernels.HINT_BYTES` for the look-ahead from
    :data:`kernels.HINT_FROM_DEVICES` devices up (one priority level).
    """
    pairs = 0 if _implicit_complete(net) else sum(_layer_rows(net, m).nnz for m in range(net.M))
    outputs = 8 * (
        2 * device_bins * net.n + 5 * bins + 2 * _HIST_CELLS + 11 * net.n + net.n * (tracked + 1)
    )
    outputs += 8 * pairs
    pools = cap * kern.STATE_BYTES_PER_JOB
    per_device = kern.STATE_BYTES_PER_DEVICE + (levels - 1) * kern.STATE_BYTES_PER_LEVEL
    state = pools + net.n * per_device + 8 * pairs
    if levels == 1 and net.n >= kern.HINT_FROM_DEVICES:
        state += kern.HINT_BYTES
    total = replications * outputs + group * state
    if total <= MEMORY_BUDGET_BYTES:
        return
    gb, budget = total / 1e9, MEMORY_BUDGET_BYTES / 1e9
    if group * pools >= replications * outputs:
        fit = max(0, (MEMORY_BUDGET_BYTES - replications * outputs) // group - state + pools)
        raise ValueError(
            f"max_jobs={cap}: needs ~{gb:.3g} GB ({kern.STATE_BYTES_PER_JOB} bytes per job x "
            f"{group} replication(s) at once), over the {budget:.3g} GB budget "
            f"(MEMORY_BUDGET_BYTES); lower max_jobs to at most "
            f"{fit // kern.STATE_BYTES_PER_JOB} (a run that needs more jobs is unstable)"
        )
    raise ValueError(
        f"replications={replications}: {net.n} devices x {replications} replication(s) need "
        f"~{gb:.3g} GB of outputs, over the {budget:.3g} GB budget (MEMORY_BUDGET_BYTES); "
        "use fewer replications or a smaller max_tracked_queue, or run them in several calls"
    )


# ---- running and summarising ------------------------------------------------------------------
class _Raw(NamedTuple):
    """What the kernels recorded, and whether Ctrl-C cut the run short (``outputs`` then holds
    the replications that started, up to the time each reached)."""

    outputs: kern.Outputs
    partial: bool


def _run(net: MoANetwork, plan: _Plan, progress: bool | None) -> _Raw:
    """Allocate the outputs and run the replications, ``plan.group`` at a time in parallel, in
    chunks of simulated time of about :data:`_CHUNK_WALL_S` wall seconds each, with a progress
    bar in simulated seconds (``progress``: None shows it once a run has taken
    :data:`_PROGRESS_DELAY_S` wall seconds, True from the start, False never).

    Between chunks Python handles signals: on Ctrl-C (KeyboardInterrupt) the replications in
    flight are closed at the time they reached and the rest are dropped. The chunks change no
    result (:func:`kernels.run_fcfs`).
    """
    R, n = len(plan.seeds), net.n
    bins, device_bins = plan.bins, plan.device_edges.size - 1
    out = kern.Outputs(
        area=np.zeros((R, device_bins, n)),
        busy=np.zeros((R, device_bins, n)),
        join=np.zeros((R, bins)),
        jobs=np.zeros((R, bins)),
        busy_devices=np.zeros((R, bins)),
        lat_sum=np.zeros((R, bins)),
        lat_count=np.zeros((R, bins), np.int64),
        hist=np.zeros((R, 2, _HIST_CELLS), np.int64),
        max_queue=np.zeros((R, n), np.int64),
        inferences=np.zeros((R, len(JOB_TYPES), n), np.int64),
        selected=np.zeros((R,) + plan.network.cum.shape, np.int64),
        totals=np.zeros((R, kern.N_TOTALS), np.int64),
        queue_time=np.zeros((R, n, plan.tracked + 1)),
        t_end=np.zeros(R),
        type_area=np.zeros((R, 2, len(JOB_TYPES), n)),
    )
    controls = kern.Controls(
        plan.t_stop,
        _edges(plan),
        plan.warm_bin,
        plan.device_edges,
        plan.cap,
        *plan.hist_grid,
        plan.preemptive,
        _hint_width(net, plan),
    )
    levels = int(plan.network.level.max()) + 1
    run = kern.replication_runner(levels, out.queue_time[0].size)
    sources = kern.arrival_sources(plan.network)
    state = _new_state(plan.group, n, plan.cap, plan.network.cum.shape, levels, sources)
    lo = started = 0  # first replication of the group in flight; replications started
    # Simulated time per chunk: first about _FIRST_CHUNK_EVENTS events (each job arrives and
    # completes), then doubled or halved towards the wall-time target, never below 1/16 of
    # the first.
    events = 2 * job_rates(net).sum() * plan.unit_s * plan.group
    span = min(plan.t_stop, _FIRST_CHUNK_EVENTS / events) if events > 0 else plan.t_stop
    shortest = span / 16
    bar = tqdm(
        total=R * plan.t_stop * plan.unit_s,
        unit="s",
        unit_scale=True,
        desc="simulated",
        delay=0 if progress else _PROGRESS_DELAY_S,
        disable=progress is False,
        leave=False,
    )
    try:
        for lo in range(0, R, plan.group):
            hi = min(lo + plan.group, R)
            rows = kern.Outputs(*(a[lo:hi] for a in out))
            st = kern.State(*(a[: hi - lo] for a in state))
            kern.start_replications(plan.seeds[lo:hi], plan.network, plan.slotted, st)
            started = hi
            t = 0.0
            while t < plan.t_stop:
                t_before, t = t, min(max(t + span, np.nextafter(t, np.inf)), plan.t_stop)
                start = time.perf_counter()
                run(plan.network, plan.service, controls, rows, st, t)
                wall = time.perf_counter() - start
                # (capped: the chunks' rounded sum may pass the total by an ulp, and a bar
                # past its total makes tqdm warn)
                bar.update(min((t - t_before) * plan.unit_s * (hi - lo), bar.total - bar.n))
                if wall < _CHUNK_WALL_S / 4:
                    span *= 2
                elif wall > _CHUNK_WALL_S:
                    span = max(span / 2, shortest)
    except KeyboardInterrupt:
        kept = lo  # the finished groups, and the one in flight if it got anywhere
        if started > lo and np.any(st.clock > 0):
            kern.finish_replications(plan.network, controls, rows, st)
            kept = started
        if kept == 0:
            raise  # nothing simulated yet: nothing to report
        return _Raw(kern.Outputs(*(a[:kept] for a in out)), True)
    finally:
        bar.close()
    return _Raw(out, False)


def _hint_width(net: MoANetwork, plan: _Plan) -> float:
    """Clock units per bucket of the event loop's look-ahead (:func:`kernels._hint`): the time
    of ``kernels.HINT_GROUP`` completions at the rate the devices can complete them (each
    device's job rate, over its load where that is above 1: an overloaded device completes
    at its service rate, and a calendar that expected more completions than come would have
    the loop step through empty buckets); 0 (no look-ahead) below
    ``kernels.HINT_FROM_DEVICES`` devices or for a network without work."""
    if net.n < kern.HINT_FROM_DEVICES:
        return 0.0
    profile = load_profile(net)  # the job rates and the loads from one solve
    per_device = profile.job_rates_per_s.sum(axis=0) / np.maximum(profile.loads, 1.0)
    completions = per_device.sum() * plan.unit_s
    return kern.HINT_GROUP / completions if completions > 0 else 0.0


def _edges(plan: _Plan) -> np.ndarray:
    """Bin edges in clock units."""
    return np.linspace(0.0, plan.t_stop, plan.bins + 1)


def _new_state(
    group: int, n: int, cap: int, csr_shape: tuple[int, int], levels: int, sources: int
) -> kern.State:
    """Uninitialised :class:`kernels.State` of ``group`` replications
    (:func:`kernels.start_replications` fills it), ``sources`` of them user prompts."""
    leaves = 1
    while leaves < sources + n:
        leaves *= 2
    return kern.State(
        rng=np.empty((group, 4), np.uint64),
        counters=np.empty((group, kern.N_COUNTERS), np.int64),
        clock=np.zeros((group, 1)),
        device=_aligned((group, n, kern.device_fields(levels)), np.int64),
        pool=np.empty((group, kern.POOL_LAST + 1)),
        key=np.empty((group, leaves)),
        tree=np.empty((group, 2 * leaves), np.int64),
        job=_aligned((group, cap, kern.JOB_FIELDS), np.int32),
        job_left=np.empty((group, cap)),
        prompt=_aligned((group, cap, kern.PROMPT_FIELDS), np.uint32),
        free_prompts=np.empty((group, cap), np.uint32),
        perm=_aligned((group,) + csr_shape, np.int64),
    )


def _aligned(shape: tuple[int, ...], dtype: type) -> np.ndarray:
    """An uninitialised array whose data starts on a 64-byte boundary (a cache line), so that
    rows of 64, 32 or 16 bytes (:class:`kernels.State` ``device``, ``prompt``, ``job``; a
    device's 8 CSR candidates on an 8-regular graph) never straddle two lines; numpy itself
    only guarantees 16."""
    itemsize = np.dtype(dtype).itemsize
    size = int(np.prod(shape))
    buffer = np.empty(size + 64 // itemsize, dtype)
    skip = (-buffer.ctypes.data % 64) // itemsize
    return buffer[skip : skip + size].reshape(shape)


def _quantiles(
    hist: np.ndarray, grid: tuple[float, float], probs: tuple[float, ...]
) -> list[float]:
    """Quantiles of the log-binned histogram, interpolated geometrically within a cell."""
    total = hist.sum()
    if total == 0:
        return [float("nan")] * len(probs)
    lo, scale = grid
    cum = np.cumsum(hist)
    result = []
    for p in probs:
        cell = int(np.searchsorted(cum, p * total))
        before = cum[cell - 1] if cell else 0
        frac = (p * total - before) / hist[cell]
        result.append(lo * math.exp((cell + frac) / scale))
    return result


@dataclass(frozen=True)
class _Windows:
    """Per replication and batch: covered time and integrals, network-wide (jobs, busy devices,
    joins, latency) and per device (queue, busy; batches of device bins)."""

    cover: np.ndarray  # (R, B) clock units
    jobs: np.ndarray  # (R, B)
    busy_devices: np.ndarray
    joins: np.ndarray
    device_cover: np.ndarray  # (R, Bd)
    area: np.ndarray  # (R, Bd, n)
    busy: np.ndarray
    lat_sum: np.ndarray
    lat_count: np.ndarray
    mid: np.ndarray  # (B,) clock units
    span: np.ndarray  # (B,) batch lengths, clock units
    hist: np.ndarray  # latency histogram of the window
    level_time: np.ndarray  # (n, max_tracked_queue + 1) time at each queue length


def _windows(out: kern.Outputs, plan: _Plan, relaxation_s: float) -> _Windows:
    """Group the covered bins after the warm-up into batches (all covered bins when a job cap
    stopped every replication before the warm-up ended), as many as :func:`batch_count` allows
    for the covered window and the relaxation time; the device bins likewise (after a complete
    run, one device bin per batch: :func:`_device_edges`)."""
    edges = _edges(plan)
    cover = np.clip(out.t_end[:, None] - edges[None, :-1], 0.0, np.diff(edges)[None, :])
    covered = np.flatnonzero(cover.sum(axis=0) > 0)
    after = covered[covered >= plan.warm_bin]
    bins = after if after.size else covered
    window_s = float(cover[:, bins].sum(axis=1).max()) * plan.unit_s

    def batches(cover: np.ndarray, starts: np.ndarray) -> list[np.ndarray]:
        covered = np.flatnonzero(cover.sum(axis=0) > 0)
        kept = covered[starts[covered] >= plan.warm_bin] if after.size else covered
        return np.array_split(kept, batch_count(window_s, relaxation_s, kept.size))

    def batch(x: np.ndarray, groups: list[np.ndarray]) -> np.ndarray:
        return np.stack([x[:, g].sum(axis=1) for g in groups], axis=1)

    groups = batches(cover, np.arange(plan.bins))
    device_cover = np.add.reduceat(cover, plan.device_edges[:-1], axis=1)
    device_groups = batches(device_cover, plan.device_edges[:-1])
    mid = np.array([(edges[g[0]] + edges[g[-1] + 1]) / 2 for g in groups])
    span = np.array([edges[g[-1] + 1] - edges[g[0]] for g in groups])
    hist = out.hist[:, 1] if after.size else out.hist.sum(axis=1)
    # a replication that ended in the warm-up holds its whole run: left out if others did not
    ended = out.t_end <= edges[plan.warm_bin] if after.size else np.zeros(len(out.t_end), bool)
    level_time = (
        np.where(ended[:, None, None], 0.0, out.queue_time) if ended.any() else out.queue_time
    )
    return _Windows(
        batch(cover, groups),
        batch(out.jobs, groups),
        batch(out.busy_devices, groups),
        batch(out.join, groups),
        batch(device_cover, device_groups),
        batch(out.area, device_groups),
        batch(out.busy, device_groups),
        batch(out.lat_sum, groups),
        batch(out.lat_count, groups),
        mid,
        span,
        hist.sum(axis=0),
        level_time.sum(axis=0),
    )


def _ratio_ci(num: np.ndarray, den: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pooled ratio and CI half-width over replications (axis 0, Student t) or, with one, over
    batches (:func:`level_interval`: one run's batch means are skewed with its level)."""
    with np.errstate(invalid="ignore", divide="ignore"):  # no data (an early cap hit): NaN
        total = num.sum(axis=(0, 1)) / den.sum(axis=(0, 1))
        if num.shape[0] >= 2:
            means = num.sum(axis=1) / den.sum(axis=1)
        else:
            keep = den[0].reshape(den.shape[1], -1)[:, 0] > 0
            means = num[0][keep] / den[0][keep]
    interval = t_interval if num.shape[0] >= 2 else level_interval
    _, half = interval(np.moveaxis(means, 0, -1))
    return total, half


def _summarise(net: MoANetwork, plan: _Plan, raw: _Raw, record_paths: bool) -> SimulationResult:
    out = raw.outputs
    if raw.partial:  # the replications that ran
        plan = dataclasses.replace(plan, seeds=plan.seeds[: out.t_end.shape[0]])
    relaxation_s = plan.relaxation_s
    w = _windows(out, plan, relaxation_s)
    unit = plan.unit_s
    cover_n = np.repeat(w.device_cover[:, :, None], net.n, axis=2)
    mean_queue, mean_queue_ci = _ratio_ci(w.area, cover_n)
    utilisation, utilisation_ci = _ratio_ci(w.busy, cover_n)
    total, total_ci = _ratio_ci(w.jobs, w.cover)
    busy_devices, busy_devices_ci = _ratio_ci(w.busy_devices, w.cover)
    latency, latency_ci = _ratio_ci(w.lat_sum, w.lat_count.astype(float))
    p50, p95, p99 = _quantiles(w.hist, plan.hist_grid, (0.5, 0.95, 0.99))
    covered = w.cover.sum(axis=0) > 0
    series = w.jobs.sum(axis=0)[covered] / w.cover.sum(axis=0)[covered]
    slope = growth_slope(w.mid[covered] * unit, series, w.span[covered] * unit)
    totals = out.totals.sum(axis=0)
    capped = out.totals[:, kern.CAP_HIT] == 1
    cap_time = float(out.t_end[capped].min() * unit) if capped.any() else None
    warmup_s = plan.warm_bin * plan.t_stop / plan.bins * unit
    level, level_ci = level_interval(series)
    by_type, by_type_ci = _type_means(out, plan)
    evidence = Evidence(
        window_s=float(w.cover.sum(axis=1).max() * unit),
        warmup_s=warmup_s,
        age_s=float(np.average(w.mid[covered], weights=w.cover.sum(axis=0)[covered]) * unit),
        relaxation_s=relaxation_s,
        arrived=int(totals[kern.ARRIVED]),
        completed=int(w.lat_count.sum()),
        arrival_rate_per_s=float(net.arrival_rate.sum()),
        batches=int(series.size),
    )
    judged = stability_verdict(
        slope, float(level), float(level_ci), evidence, cap_time, plan.cap, _excess_rate(net)
    )
    verdict, told = judged.verdict, judged.evidence
    if raw.partial:
        verdict = "inconclusive"
        told = (
            f"interrupted (Ctrl-C) after {out.t_end.sum() * unit:.6g} simulated s of "
            f"{len(plan.seeds)} replication(s); statistics so far: {told}"
        )
    return SimulationResult(
        method=METHODS[0] if plan.slotted else METHODS[1],
        horizon_s=plan.t_stop * unit,
        horizon_slots=int(plan.t_stop) if plan.slotted else None,
        dt_s=unit if plan.slotted else None,
        replications=len(plan.seeds),
        seed=plan.seed,
        max_jobs=plan.cap,
        loads=loads(net),
        mean_jobs_by_type=by_type,
        mean_jobs_by_type_ci=by_type_ci,
        discipline=plan.discipline,
        preemptive=plan.preemptive,
        mean_queue=mean_queue,
        mean_queue_ci=mean_queue_ci,
        max_queue=out.max_queue.max(axis=0),
        utilisation=utilisation,
        utilisation_ci=utilisation_ci,
        mean_join_waiting=float(w.joins.sum() / w.cover.sum()),
        latency_mean=float(latency * unit),
        latency_ci=float(latency_ci * unit),
        latency_p50=p50 * unit,
        latency_p95=p95 * unit,
        latency_p99=p99 * unit,
        prompts_arrived=int(totals[kern.ARRIVED]),
        prompts_completed=int(totals[kern.COMPLETED]),
        inferences=int(out.inferences.sum()),
        inferences_by_type=out.inferences.sum(axis=0),
        completed_prompt_inferences=int(totals[kern.PROMPT_INFERENCES]),
        completed_prompt_origin_inferences=int(totals[kern.PROMPT_ORIGIN_INFERENCES]),
        selection_counts=_selection_counts(net, plan, out.selected.sum(axis=0)),
        total_queue_mean=float(total),
        total_queue_ci=float(total_ci),
        busy_devices_mean=float(busy_devices),
        busy_devices_ci=float(busy_devices_ci),
        growth_slope=slope.per_s,
        growth_slope_ci=slope.ci,
        verdict=verdict,
        evidence=told,
        horizon_needed_s=judged.horizon_needed_s,
        cap_hit_time=cap_time,
        warmup_s=warmup_s,
        simulated_s=float(out.t_end.sum() * unit),
        ci_method="independent replications" if len(plan.seeds) >= 2 else "batch means",
        paths=_paths(out, plan, net.n) if record_paths else None,
        queue_distribution=_distribution(w.level_time),
        max_tracked_queue=plan.tracked,
        partial=raw.partial,
    )


def _type_means(out: kern.Outputs, plan: _Plan) -> tuple[np.ndarray, np.ndarray]:
    """Time-average jobs per (type, device) after the warm-up edge ``t_w`` (or over all of a
    run that ended before it), pooled over replications, and the Student-t half-width."""
    t_warm = _edges(plan)[plan.warm_bin]
    crossed = out.t_end > t_warm
    before = np.where(crossed[:, None, None], out.type_area[:, 0], 0.0)
    area = out.type_area[:, 1] - before
    window = np.where(crossed, out.t_end - t_warm, out.t_end)
    with np.errstate(invalid="ignore", divide="ignore"):  # nothing simulated: NaN
        pooled = area.sum(axis=0) / window.sum()
        _, half = t_interval(np.moveaxis(area / window[:, None, None], 0, -1))
    return pooled, half


def _distribution(level_time: np.ndarray) -> np.ndarray:
    """Time at each queue length as fractions of each device's time (NaN with no time)."""
    with np.errstate(invalid="ignore"):
        return level_time / level_time.sum(axis=1, keepdims=True)


def _relaxation_time(net: MoANetwork, svc: kern.Service) -> float:
    """:func:`relaxation_time` of the network with its service law's squared coefficient of
    variation (the largest over job types for measured samples)."""
    rho = loads(net)
    rate = job_rates(net).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_s = np.where(rate > 0, rho / rate, 0.0)
    dist, scv, values, bounds = svc.dist, svc.scv, svc.samples, svc.bounds
    if dist == kern.EXPONENTIAL:
        scv = 1.0
    elif dist == kern.DETERMINISTIC:
        scv = 0.0
    elif dist == kern.EMPIRICAL:
        parts = [values[lo:hi] for lo, hi in zip(bounds[:-1], bounds[1:], strict=True) if hi > lo]
        scv = max(float(x.var()) for x in parts)  # each part is scaled to mean one
    return relaxation_time(mean_s, rho, scv)


def _excess_rate(net: MoANetwork) -> float:
    r"""Jobs per second the overloaded devices cannot serve:
    :math:`\sum_i (\rho_i - 1)^+ \sum_c r_{i,c} / \rho_i`."""
    profile = load_profile(net)
    rho, rate = profile.loads, profile.job_rates_per_s.sum(axis=0)
    over = rho > 1
    return float(np.sum((rho[over] - 1) * rate[over] / rho[over]))


def _selection_counts(
    net: MoANetwork, plan: _Plan, counts: np.ndarray
) -> tuple[sp.csr_array, ...] | None:
    if _implicit_complete(net):  # no per-pair counters (n(n-1) of them would not fit)
        return None
    indptr, indices = plan.network.indptr, plan.network.indices
    result = []
    for m in range(net.M):
        nnz = indptr[m, -1]
        result.append(
            sp.csr_array((counts[m, :nnz], indices[m, :nnz], indptr[m]), shape=(net.n, net.n))
        )
    return tuple(result)


def _paths(out: kern.Outputs, plan: _Plan, n: int) -> pd.DataFrame:
    width = plan.t_stop / plan.bins
    frame = pd.DataFrame(out.area[0] / width, columns=range(n))
    frame.index = pd.Index((np.arange(plan.bins) + 0.5) * width * plan.unit_s, name="time_s")
    return frame


def check_arguments(net: MoANetwork, **options: Any) -> None:
    """Make every check :func:`simulate` makes on ``simulate(net, **options)`` before any work
    (a ValueError naming the argument), and run nothing: a sweep calls it for each point
    before it starts, so a bad horizon or method fails at once, not inside the first point."""
    try:
        bound = inspect.signature(simulate).bind(net, **options)
    except TypeError as err:
        raise ValueError(f"options={sorted(options)}: {err}; pass keywords of simulate()") from err
    bound.apply_defaults()
    args = dict(bound.arguments)
    del args["progress"]  # any value works: no check to make
    _plan(**args)


def simulate(
    net: MoANetwork,
    method: str = "slots",
    horizon: float | None = None,
    dt: float | None = None,
    seed: int = 0,
    service: str = "exponential",
    scv: float = 1.0,
    samples: Mapping[str, Any] | None = None,
    replications: int = 1,
    warmup: float = 0.2,
    max_jobs: int = 1_000_000,
    record_paths: bool = False,
    max_tracked_queue: int | None = None,
    progress: bool | None = None,
    discipline: str = "fcfs",
    preemptive: bool = False,
) -> SimulationResult:
    r"""Simulate the network's queues job by job and judge its stability empirically.

    Each device is a single server; by default FCFS, else a static priority by job class with
    FCFS within a level (``discipline``). The mean of every service distribution is the
    network's ``service_time[c, i]`` for job type ``c`` at device ``i``, so that in steady state
    the utilisation equals the load :math:`\rho_i = \sum_c r_{i,c} E[S_{i,c}]`.

    Parameters
    ----------
    net : MoANetwork
    method : {"slots", "events"}
        Slotted model of docs/model.md section 3 (slot ``dt``), or continuous time.
    horizon : float, optional
        Simulated seconds per replication (default :math:`10^5` times the largest mean
        service time). Slots: rounded to whole slots.
    dt : float, optional
        Slot length in seconds (slots only; ignored by events); needs :math:`\lambda_i dt \le 1` and
        :math:`dt \le E[S]`. Default a tenth of the smaller of the shortest mean service time
        and the shortest mean inter-arrival time.
    seed : int
        Seeds every replication (through ``numpy.random.SeedSequence``); same seed, same result
        whatever the number of threads.
    service : {"exponential", "deterministic", "gamma", "lognormal", "empirical"}
        Exponential is memoryless: geometric in slots. Gamma and lognormal have squared
        coefficient of variation ``scv``. Empirical resamples ``samples[c]`` (seconds) scaled
        by ``service_time[c, i] / mean(samples[c])``.
    scv : float
        Squared coefficient of variation of gamma and lognormal service, > 0 (unused by the
        other distributions).
    samples : mapping of str to array_like, optional
        Measured seconds per job type, for ``service="empirical"``.
    replications : int
        Independent replications, run in parallel on all numba threads.
    warmup : float
        Discarded start: a fraction of the horizon if below 1, else seconds (rounded up to a
        multiple of ``horizon / N_BINS``).
    max_jobs : int
        Cap on jobs in the system per replication; memory is preallocated for it, and a run
        that would exceed it stops with verdict ``unstable``.
    record_paths : bool
        Keep the binned queue paths of replication 0 (``result.paths``).
    max_tracked_queue : int, optional
        :math:`B_{max}`: ``result.queue_distribution`` resolves queue lengths
        :math:`0..B_{max}-1` and lumps :math:`\ge B_{max}` (memory :math:`n (B_{max}+1)`
        doubles per replication, at most :math:`10^7` cells). Default
        :data:`MAX_TRACKED_QUEUE`, or fewer when ``n`` devices need it:
        :math:`\min(256, \lfloor 10^7/n \rfloor - 1)`.

    A long run can be stopped with Ctrl-C (KeyboardInterrupt): it stops within about a
    second and returns what it measured so far (``partial=True``, verdict ``inconclusive``).
    All arrays preallocated (job pools of ``max_jobs`` jobs, per-device bins, queue-length
    cells) must fit :data:`MEMORY_BUDGET_BYTES`, else a ValueError says which argument to
    lower. Time bins: :data:`N_BINS`, fewer (at least :data:`MIN_BINS`) when ``n`` times
    ``replications`` is large.
    progress : bool, optional
        A progress bar in simulated seconds: None (default) shows it once the run has taken
        more than :data:`_PROGRESS_DELAY_S` wall seconds, True always, False never.
    discipline : str
        One of :data:`moa_stability.model.discipline.DISCIPLINES`: ``"fcfs"``,
        ``"later-layer-first"``, ``"earlier-layer-first"``, ``"aggregate-first"`` or
        ``"own-user-first"`` (docs/simulator.md).
    preemptive : bool
        With a priority discipline, a job of a higher level interrupts the one in service,
        which later resumes with the service time it had left (preemptive-resume; in slots,
        its remaining slots). Default False: non-preemptive.

    Returns
    -------
    SimulationResult

    Examples
    --------
    >>> from moa_stability import paper_network
    >>> net = paper_network(arrival_rate=0.9 / 7)   # load 0.9 at every device
    >>> r = simulate(net, horizon=50_000, seed=1)
    >>> r.verdict
    'stable'
    """
    plan = _plan(
        net,
        method,
        horizon,
        dt,
        seed,
        service,
        scv,
        samples,
        replications,
        warmup,
        max_jobs,
        max_tracked_queue,
        discipline,
        preemptive,
        record_paths,
    )
    return _summarise(net, plan, _run(net, plan, progress), bool(record_paths))
