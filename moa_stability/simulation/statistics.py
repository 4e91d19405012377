r"""Output analysis of the simulators: confidence intervals, growth slope, stability verdict.

* **Confidence intervals** are Student-t intervals over (approximately) independent means:
  either independent replications, or *batch means* of one long run, whose consecutive batches
  are long enough to be nearly uncorrelated.
* **Growth slope**: ordinary least squares of the batch means :math:`\bar Y_b` of the total jobs
  in the system on the batch mid-times :math:`t_b`,
  :math:`\hat\beta = \sum_b (t_b - \bar t)(\bar Y_b - \bar Y) / \sum_b (t_b - \bar t)^2`, with
  standard error from the residuals and :math:`B - 2` degrees of freedom.
* **Verdict** (:func:`stability_verdict`): a stable network has a stationary total queue, so the
  slope is zero and the batch means settle; an unstable one grows linearly until the job cap
  stops it. The growth of jobs present is at most the excess rate the loads predict, and below
  it when ``M >= 1``: a waiting prompt's later layers join the queues only as earlier ones
  finish (docs/model.md section 5: the excess bounds the growth from above, not below).
* **Tail fit** (:func:`fit_tail`): the least-squares line :math:`\ln P(Q > B) \approx a - \eta B`
  over the tail of a queue-length law gives its decay rate :math:`\eta` per job and the buffer
  :math:`B` for a target overflow probability.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
"""Level of every reported confidence interval."""
UNSTABLE_LEVEL = 0.999
"""One-sided level at which a positive slope counts as growth (few false alarms)."""
MIN_GROWTH = 0.5
"""Growth over the window, as a fraction of the mean level, that an unstable run must show."""
MAX_SPREAD = 0.25
"""Largest relative CI half-width of the mean total queue for a run to count as settled."""


def t_interval(values: np.ndarray, level: float = CONFIDENCE) -> tuple[float, float]:
    r"""Mean and Student-t half-width :math:`t_{(1+level)/2,\,B-1}\, s/\sqrt{B}` of the
    independent means in ``values`` (last axis); half-width NaN with fewer than two."""
    values = np.asarray(values, dtype=float)
    count = values.shape[-1]
    if count < 2:
        mean = values.sum(axis=-1) if count else np.full(values.shape[:-1], np.nan)
        return mean, np.full_like(mean, np.nan)
    mean = values.mean(axis=-1)
    quantile = stats.t.ppf(0.5 + level / 2, count - 1)
    return mean, quantile * values.std(axis=-1, ddof=1) / np.sqrt(count)


@dataclass(frozen=True)
class Slope:
    """OLS slope of a series on time with its CI half-width, t statistic and degrees of
    freedom (``per_s`` is in the series' units per second)."""

    per_s: float
    ci: float
    t_stat: float
    dof: int


def growth_slope(times_s: np.ndarray, values: np.ndarray) -> Slope:
    """OLS slope of ``values`` on ``times_s`` (at least three points)."""
    x = np.asarray(times_s, dtype=float) - np.mean(times_s)
    y = np.asarray(values, dtype=float)
    dof = len(x) - 2
    if dof < 1:
        return Slope(float("nan"), float("nan"), float("nan"), max(dof, 0))
    sxx = float(x @ x)
    beta = float(x @ (y - y.mean()) / sxx)
    resid = y - y.mean() - beta * x
    se = float(np.sqrt(resid @ resid / dof / sxx))
    t_stat = beta / se if se > 0 else (0.0 if beta == 0 else np.copysign(np.inf, beta))
    return Slope(beta, float(stats.t.ppf(0.5 + CONFIDENCE / 2, dof) * se), t_stat, dof)


def stability_verdict(
    slope: Slope,
    window_s: float,
    level: float,
    level_ci: float,
    cap_hit_time_s: float | None,
    cap: int,
    excess_per_s: float,
) -> tuple[str, str]:
    r"""Verdict ``stable`` / ``unstable`` / ``inconclusive`` and a sentence of evidence.

    With total jobs growth :math:`\hat\beta` (CI, t statistic) over a window :math:`W` after the
    warm-up and mean level :math:`\bar Y` (CI half-width :math:`h`):

    * **unstable** if the job cap was hit, or :math:`\hat\beta > 0` at one-sided level
      :data:`UNSTABLE_LEVEL` *and* the queue grew by at least :data:`MIN_GROWTH`
      :math:`\bar Y` over the window (:math:`\hat\beta W \ge 0.5 \bar Y`): linear growth from an
      empty start gives :math:`\hat\beta W / \bar Y \approx 1.3` with a 20% warm-up, while a
      stationary queue that drifts by chance stays far below;
    * **stable** if the slope is not significantly positive (its 95% CI reaches zero) and the
      batch means settle (:math:`h \le` :data:`MAX_SPREAD` :math:`\bar Y`);
    * **inconclusive** otherwise: lengthen the horizon.
    """
    if cap_hit_time_s is not None:
        return "unstable", (
            f"the jobs in the system reached the cap of {cap} at "
            f"t = {cap_hit_time_s:.6g} s (loads put {excess_per_s:.4g} jobs/s "
            "beyond the overloaded devices' capacity)"
        )
    if level == 0:
        return "stable", "no job entered the system after the warm-up"
    growth = slope.per_s * window_s
    told = (
        f"total jobs in system {level:.4g} +- {level_ci:.2g} (95% CI), slope "
        f"{slope.per_s:.4g} +- {slope.ci:.2g} jobs/s (t = {slope.t_stat:.3g}) over "
        f"{window_s:.6g} s, growth {growth / level:.2f} x mean level; loads predict an "
        f"excess of {excess_per_s:.4g} jobs/s, an upper bound on growth"
    )
    growing = slope.t_stat > stats.t.ppf(UNSTABLE_LEVEL, slope.dof)
    if growing and growth >= MIN_GROWTH * level:
        return "unstable", "the queue grows linearly: " + told
    settled = level_ci <= MAX_SPREAD * level
    if slope.t_stat <= stats.t.ppf(0.5 + CONFIDENCE / 2, slope.dof) and settled:
        return "stable", "no significant growth and settled batch means: " + told
    return "inconclusive", "neither settled nor clearly growing (lengthen the horizon): " + told


TAIL_START = 0.1
"""Default upper end of a tail fit: the fit starts where ``P(Q > B)`` drops to this (past the
body of the queue-length law)."""


@dataclass(frozen=True)
class TailFit:
    r"""Least-squares line :math:`\ln P(Q > B) = a - \eta B` over buffers ``first..last``.

    Attributes
    ----------
    log_intercept : float
        :math:`a`.
    decay_per_job : float
        :math:`\eta`, the decay rate of the tail per job.
    first, last : int
        The smallest and largest buffer inside the fit.
    """

    log_intercept: float
    decay_per_job: float
    first: int
    last: int

    def probability(self, buffers: np.ndarray) -> np.ndarray:
        """Fitted :math:`P(Q > B)` at ``buffers``."""
        return np.exp(self.log_intercept - self.decay_per_job * np.asarray(buffers))

    def buffer_for(self, target: float) -> int:
        r"""Smallest :math:`B \ge 0` whose fitted overflow probability is at most ``target``:
        :math:`\lceil (a - \ln\varepsilon)/\eta \rceil`."""
        if not (0 < target < 1):
            raise ValueError(
                f"target={target}: an overflow probability must lie in (0, 1); pass e.g. 1e-3"
            )
        return max(0, math.ceil((self.log_intercept - math.log(target)) / self.decay_per_job))


def fit_tail(
    buffers: np.ndarray, tail: np.ndarray, floor: float, start: float = TAIL_START
) -> TailFit:
    r"""Fit the exponential decay of ``tail`` :math:`= P(Q > B)` where
    ``start >= tail >= floor``: least squares of :math:`\ln P(Q > B)` on :math:`B`.

    Parameters
    ----------
    buffers : ndarray of int
        Buffer sizes :math:`B`.
    tail : ndarray of float
        :math:`P(Q > B)` at each buffer (e.g. ``SimulationResult.overflow_probability``).
    floor : float
        Smallest probability trusted (below it the estimate is noise), ``> 0``.
    start : float
        Largest probability in the fit, ``> floor``.

    Raises
    ------
    ValueError
        When fewer than two buffers lie inside ``[floor, start]``.
    """
    if not (0 < floor < start <= 1):
        raise ValueError(
            f"floor={floor}, start={start}: need 0 < floor < start <= 1; pass e.g. "
            "floor=1e-4, start=0.1"
        )
    buffers, tail = np.asarray(buffers), np.asarray(tail, dtype=float)
    inside = (tail <= start) & (tail >= floor) & (tail > 0)
    if inside.sum() < 2:
        raise ValueError(
            f"tail=(P(Q > B)): fewer than two buffers have {floor:g} <= P(Q > B) <= {start:g}; "
            "simulate longer or lower the floor"
        )
    slope, intercept = np.polyfit(buffers[inside], np.log(tail[inside]), 1)
    return TailFit(
        float(intercept), float(-slope), int(buffers[inside].min()), int(buffers[inside].max())
    )
