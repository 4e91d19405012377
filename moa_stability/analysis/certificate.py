r"""Stability certificates: a linear program for every work-conserving discipline, and the
fluid model for one discipline.

**The linear program** (:func:`linear_lyapunov_certificate`). A multiclass fluid network with
Markov routing (:func:`.fluid.multiclass_network`) has, at regular times,

.. math:: \dot x = \alpha - (I - P^\top) v, \qquad v_c = \mu_c u_c,

with the effort :math:`u \ge 0` constrained by :math:`\sum_{c \in s} u_c = 1` at every station
:math:`s` that holds fluid (work conservation, whatever the discipline), :math:`\le 1` at the
others, and :math:`\dot x_c = 0` for every empty class. A linear Lyapunov function
:math:`V(x) = \gamma^\top x` with :math:`\gamma \ge 1` certifies stability of the fluid model
under *every* work-conserving discipline if :math:`\dot V \le -1` for every non-empty support
:math:`Z = \{c : x_c > 0\}` and every feasible effort: the worst effort of each support is a
small linear program, and its dual turns "the worst drift is :math:`\le -1`" into linear
constraints on :math:`\gamma` and the dual variables, so one linear program (HiGHS) over all
:math:`2^K - 1` supports decides whether such a :math:`\gamma` exists. This is the linear case
of the piecewise-linear Lyapunov functions of Bertsimas, Gamarnik & Tsitsiklis (1996) and Down &
Meyn (1997); fluid stability implies positive Harris recurrence of the queueing network (Dai
1995). Infeasible means "no *linear* certificate", not instability.

**MoA networks.** Forks are routing rows summing to more than 1; joins are not Markov routing.
The linear program runs on the *join-free relaxation* (:func:`moa_relaxation`): classes device
x stage, and each stage-:math:`m` completion releases :math:`1/(k_m+1)` of its prompt's next
stage at once, with the origin mixed by rate. It has the network's traffic equations (the same
:math:`\rho_i`), but a join only ever delays the release, and the relaxation forgets the origin,
so its certificate is a proof only without helpers (no joins); with joins it is not even
evidence: a priority can exploit the wait at a join (docs/model.md section 2.7).

:func:`stability_certificate` combines this with the loads, the Kelly-type case and the MoA fluid
model (:func:`.fluid.moa_fluid_network`) under the chosen discipline.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.optimize import linprog

from ..model.discipline import discipline_field
from ..model.loads import LoadProfile, load_profile
from ..model.network import MoANetwork, _fail, count_field
from .fluid import (
    FluidNetwork,
    _mean_by_stage,
    _stage_weights,
    integrate_fluid,
    moa_fluid_network,
    moa_priority,
    multiclass_network,
)

STATUSES = (
    "stable under every work-conserving discipline (certified)",
    "stable (Kelly-type FCFS)",
    "undetermined",
    "unstable (fluid model / simulation)",
)
"""The statuses :func:`stability_certificate` returns, strongest claim of stability first."""


def moa_relaxation(net: MoANetwork) -> FluidNetwork:
    r"""The join-free Markov relaxation of an MoA network: classes (device :math:`i`, stage
    :math:`m`), stages the layers then the aggregate.

    With :math:`w_m[j, i]` the stage-:math:`m` jobs a prompt of origin :math:`j` puts on
    :math:`i` and :math:`r_{i,m} = \sum_j \lambda_j w_m[j, i]`, a stage-:math:`m` completion at
    :math:`i` belongs to origin :math:`j` with probability :math:`\lambda_j w_m[j,i] / r_{i,m}`
    and creates :math:`w_{m+1}[j, i'] / (k_m + 1)` stage-:math:`(m+1)` jobs at :math:`i'`:

    .. math:: P[(i, m), (i', m+1)] = \sum_j \frac{\lambda_j w_m[j, i]}{r_{i,m}}
              \frac{w_{m+1}[j, i']}{k_m + 1}.

    Its traffic equations give the MoA rates :math:`r_{i,m}`, so its loads are the network's.
    """
    n, M = net.n, net.M
    w = _stage_weights(net)
    lam = net.arrival_rate
    K = n * (M + 1)
    P = np.zeros((K, K))
    for m in range(M):
        rate = lam @ w[m]  # r_{i,m}
        share = (lam[:, None] * w[m]) / np.where(rate > 0, rate, 1.0)  # [j, i]
        P[m * n : (m + 1) * n, (m + 1) * n : (m + 2) * n] = share.T @ w[m + 1] / (net.k[m] + 1)
    arrivals = np.concatenate([lam @ w[0], np.zeros(K - n)])
    mean = np.concatenate([_mean_by_stage(net, m) for m in range(M + 1)])
    station = np.tile(np.arange(n), M + 1)
    return multiclass_network(station, mean, arrivals, P)


def linear_lyapunov_certificate(
    fluid: FluidNetwork, max_classes: int = 12
) -> tuple[str, np.ndarray | None]:
    r"""Search for :math:`\gamma \ge 1` with :math:`\dot V \le -1` under every work-conserving
    allocation, for :math:`V = \gamma^\top x` (module docstring).

    For a support :math:`Z`, with :math:`g = -(I - P)\gamma` the worst drift is
    :math:`\gamma^\top\alpha + \max\{g^\top v : A_{=} v = 1, A_{\le} v \le 1,
    v_r - (P^\top v)_r = \alpha_r\ (r \notin Z), v \ge 0\}`, where :math:`A` sums
    :math:`m_c v_c` over a station's classes (equality where :math:`Z` meets the station). By
    duality the maximum is :math:`\le -1 - \gamma^\top\alpha` iff some :math:`y` (free on the
    equalities, :math:`\ge 0` on the inequalities) has
    :math:`\mathbf 1^\top y_{st} + \alpha_{Z^c}^\top y_{fl} \le -1 - \gamma^\top\alpha` and
    :math:`A^\top y_{st} + F^\top y_{fl} + (I - P)\gamma \ge 0`.

    Parameters
    ----------
    fluid : FluidNetwork
        A network with a routing matrix (:func:`.fluid.multiclass_network`).
    max_classes : int
        Largest :math:`K` tried (the program has :math:`2^K - 1` blocks).

    Returns
    -------
    status : {"certified", "no linear certificate", "skipped"}
    weights : ndarray or None
        :math:`\gamma` when certified.
    """
    max_classes = count_field("max_classes", max_classes, 1)
    if fluid.routing is None:
        raise _fail("fluid", repr(fluid), "has no routing matrix (joins)", "use moa_relaxation")
    K, S = fluid.n_classes, fluid.n_stations
    if max_classes < K:
        return "skipped", None
    P, m, alpha = fluid.routing, fluid.mean_s, fluid.arrival_rate_per_s
    I_P = np.eye(K) - P
    member = np.zeros((S, K))
    member[fluid.station, np.arange(K)] = m  # A[s, c] = m_c on c's station
    rows, cols, vals, bounds = [], [], [], [(1.0, None)] * K
    b_ub: list[float] = []
    n_vars, n_rows = K, 0
    for size in range(1, K + 1):
        for Z in itertools.combinations(range(K), size):
            empty = np.setdiff1d(np.arange(K), Z)
            busy = set(fluid.station[list(Z)].tolist())
            # Dual variables: one per station, then one per empty class.
            st = np.arange(n_vars, n_vars + S)
            fl = np.arange(n_vars + S, n_vars + S + empty.size)
            bounds += [(None, None) if s in busy else (0.0, None) for s in range(S)]
            bounds += [(None, None)] * empty.size
            n_vars += S + empty.size
            # Objective row: gamma . alpha + 1 . y_st + alpha_empty . y_fl <= -1.
            block = [(np.arange(K), alpha), (st, np.ones(S)), (fl, alpha[empty])]
            for c_idx, v in block:
                rows += [np.full(c_idx.size, n_rows)]
                cols += [c_idx]
                vals += [v]
            b_ub.append(-1.0)
            n_rows += 1
            # Dual feasibility, one row per class c, negated into <= 0:
            # -(A^T y_st)_c - (F^T y_fl)_c - ((I - P) gamma)_c <= 0, F[r, c] = I[r, c] - P[c, r].
            F = np.eye(K)[empty] - P[:, empty].T
            for c in range(K):
                idx = np.concatenate([np.arange(K), st, fl])
                v = -np.concatenate([I_P[c], member[:, c], F[:, c]])
                keep = v != 0
                rows += [np.full(int(keep.sum()), n_rows)]
                cols += [idx[keep]]
                vals += [v[keep]]
                b_ub.append(0.0)
                n_rows += 1
    A = sp.csr_array(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(n_rows, n_vars),
    )
    cost = np.zeros(n_vars)
    cost[:K] = 1.0  # the smallest certificate: keeps the weights bounded and readable
    res = linprog(cost, A_ub=A, b_ub=np.array(b_ub), bounds=bounds, method="highs")
    if res.status == 0:
        return "certified", res.x[:K].copy()
    return "no linear certificate", None


@dataclass(frozen=True, eq=False)
class Certificate:
    """What is known about the stability of one network under one discipline, and why.

    Attributes
    ----------
    status : str
        One of :data:`STATUSES`.
    discipline : str
        The discipline the fluid check used (the certificate covers all work-conserving ones).
    max_load : float
        :math:`\\max_i \\rho_i`.
    kelly_type : bool
        Whether every device serves its job types with one mean.
    lp_status : str
        ``certified``, ``no linear certificate``, ``skipped`` (too many classes) or
        ``not run`` (some :math:`\\rho_i \\ge 1`).
    lp_weights : ndarray or None
        The Lyapunov weights :math:`\\gamma` per class (device x stage, stage-major) when
        certified.
    fluid_growth_rate_per_s : float
        Largest growth slope of the total MoA fluid over the initial states tried, jobs/s
        (``nan`` when the fluid check did not run).
    fluid_drained : bool or None
        Whether the MoA fluid drained from every initial state tried within the horizon.
    fluid_horizon_s : float
        The horizon of the fluid check, seconds.
    reason : str
        One sentence: what the status rests on.
    """

    status: str
    discipline: str
    max_load: float
    kelly_type: bool
    lp_status: str
    lp_weights: np.ndarray | None = field(repr=False)
    fluid_growth_rate_per_s: float
    fluid_drained: bool | None
    fluid_horizon_s: float
    reason: str

    def to_frame(self) -> pd.DataFrame:
        """One row: the status and its evidence."""
        row = {k: v for k, v in self.__dict__.items() if k != "lp_weights"}
        return pd.DataFrame([row])

    def __str__(self) -> str:
        return (
            f"{self.status} [{self.discipline}]: {self.reason} (max load {self.max_load:.4g}, "
            f"LP {self.lp_status}, fluid growth {self.fluid_growth_rate_per_s:.4g} jobs/s)"
        )


def prompt_state(fluid: FluidNetwork, prompts: np.ndarray) -> np.ndarray:
    """Class contents of ``prompts[j, m]`` origin-``j`` prompts at stage ``m``, every job of
    the stage still queued (consistent with the joins of :func:`.fluid.moa_fluid_network`)."""
    weights = np.zeros(fluid.n_classes)
    for a, (_, j, m) in enumerate(fluid.classes):
        weights[a] = prompts[j, m]
    return weights


class FluidCheck(NamedTuple):
    """The MoA fluid model under one discipline from a few initial states
    (:func:`fluid_check`)."""

    growth_rate_per_s: float
    """Largest growth slope of the total fluid over the states, jobs/s."""
    relative_growth: float
    """That slope over the jobs arriving per second: the share of arriving work left behind."""
    drained: bool
    """Whether the fluid drained from every state within the horizon."""
    grew: bool
    """Whether some state ended above its start and grew faster than 1e-3 x the job rate."""
    horizon_s: float
    """The horizon, 5 x the largest initial work over the spare capacity, seconds."""


def fluid_check(
    net: MoANetwork,
    discipline: str = "fcfs",
    profile: LoadProfile | None = None,
    per_origin: bool = False,
    max_steps: int = 20_000,
) -> FluidCheck:
    r"""Run the MoA fluid model (:func:`.fluid.moa_fluid_network`) under ``discipline`` from
        one prompt per origin at each stage and at all stages at once (and, with ``per_origin``,
        from the prompts of one origin alone at all stages, the asymmetric states in which
        Lu-Kumar-type alternation starts).

        The horizon is :math:`5 W_0 / (1 - \max_i
    ho_i)`, :math:`W_0` the largest initial work at
        a device: a stable fluid drains in about :math:`W_0/(1-
    ho)`. Growth counts when it is
        relevant: a slope above :math:`10^{-3}` of the jobs arriving per second, far above the
        rounding of a fluid that is stuck.

        Parameters
        ----------
        net : MoANetwork
            Every :math:`
    ho_i < 1` (above, growth is certain and the horizon infinite).
        discipline : str
            One of :data:`.fluid.MOA_DISCIPLINES`.
        profile : LoadProfile, optional
            ``load_profile(net)`` when the caller has it.
        per_origin : bool
            Also start from each origin's prompts alone.
        max_steps : int
            Most integration steps per state (the step is at least the shortest mean over 20).
    """
    discipline_field(discipline)
    profile = load_profile(net) if profile is None else profile
    peak = profile.max_load
    if not peak < 1:
        raise _fail("net", repr(net), f"has max load {peak:.4g} >= 1", "scale it below 1")
    max_steps = count_field("max_steps", max_steps, 10)
    flu = moa_fluid_network(net)
    priority = moa_priority(net, flu, discipline)
    shapes = []
    for stage in [*range(net.M + 1), None]:
        prompts = np.zeros((net.n, net.M + 1))
        prompts[:, slice(None) if stage is None else stage] = 1.0
        shapes.append(prompts)
    if per_origin:
        shapes += [np.eye(net.n)[:, [j] * (net.M + 1)] for j in range(net.n)]
    states = [prompt_state(flu, prompts) for prompts in shapes]
    work = max(np.bincount(flu.station, flu.mean_s * x0).max() for x0 in states)
    horizon = 5 * float(work) / (1.0 - peak)
    step = max(float(flu.mean_s.min()) / 20, horizon / max_steps)
    job_rate = float(profile.job_rates_per_s.sum())
    growth, drained, grew = -math.inf, True, False
    for x0 in states:
        path = integrate_fluid(flu, x0, horizon_s=horizon, step_s=step, priority=priority)
        growth = max(growth, path.growth_rate_per_s)
        drained &= path.drained
        grew |= bool(path.total[-1] > path.total[0] and path.growth_rate_per_s > 1e-3 * job_rate)
    return FluidCheck(growth, growth / job_rate, drained, grew, horizon)


def stability_certificate(
    net: MoANetwork, discipline: str = "fcfs", max_classes: int = 10, fluid: bool = True
) -> Certificate:
    r"""The strongest stability statement the theory supports for ``net`` under ``discipline``.

    In order: some :math:`\rho_i \ge 1` is ``unstable (fluid model / simulation)`` (work arrives
    faster than it can be served); for a network without helpers (:math:`M = 0` or every
    :math:`k_m = 0`, so no joins and :func:`moa_relaxation` is exact) the linear program gives
    ``stable under every work-conserving discipline (certified)``; with helpers the relaxation's
    certificate does not carry over (own-user-first on two devices is unstable at load 0.6
    where it is certified) and is only reported in ``lp_status``; a Kelly-type network under
    FCFS is ``stable (Kelly-type FCFS)`` (Bramson 1996; fork-join: Baccelli & Makowski 1989);
    otherwise the MoA fluid model runs under ``discipline`` from one prompt per origin at each
    stage, from all stages at once and from each origin's prompts alone
    (:func:`fluid_check` with ``per_origin``), and a fluid that ends above where it started and
    grows by more than a thousandth of the job arrival rate is ``unstable (fluid model /
    simulation)`` under uniform selection (where the fluid's join is exact), else
    ``undetermined`` (a fluid that drains from a few states proves nothing).

    Parameters
    ----------
    net : MoANetwork
        The network.
    discipline : str
        One of :data:`.fluid.MOA_DISCIPLINES`.
    max_classes : int
        Largest number of relaxation classes :math:`n(M+1)` for the linear program (it has
        :math:`2^{n(M+1)} - 1` blocks: about 0.1 s at 8 classes, 5 s at 12).
    fluid : bool
        Run the MoA fluid model (it has :math:`n^2(M+1)` classes at most and takes seconds
        for :math:`n = 4`, :math:`M = 2`); without it an overloaded network reports no growth
        rate and a network the first three steps do not settle is ``undetermined``.

    Examples
    --------
    >>> from moa_stability import MoANetwork
    >>> stability_certificate(MoANetwork(n=4, M=2, k=2, arrival_rate=0.1)).status
    'stable (Kelly-type FCFS)'
    """
    return _certificate(net, discipline, load_profile(net), max_classes, fluid)


def _certificate(
    net: MoANetwork, discipline: str, profile: LoadProfile, max_classes: int, run_fluid: bool
) -> Certificate:
    """:func:`stability_certificate` with the load profile given (the report has it already).
    Nothing of size :math:`n^2` is built unless the linear program or the fluid runs."""
    discipline_field(discipline)
    max_classes = count_field("max_classes", max_classes, 1)
    peak, kelly = profile.max_load, profile.kelly_type
    common = {"discipline": discipline, "max_load": peak, "kelly_type": kelly}
    skipped = {"fluid_growth_rate_per_s": math.nan, "fluid_drained": None, "fluid_horizon_s": 0.0}
    if peak >= 1:
        over = f"device load {peak:.4g} >= 1: work arrives at least as fast as it is served"
        if not run_fluid:
            return Certificate(STATUSES[3], **common, lp_status="not run", lp_weights=None,
                               **skipped, reason=over)  # fmt: skip
        path = integrate_fluid(
            moa_fluid_network(net), 0.0, horizon_s=200 * float(net.service_time.max())
        )
        return Certificate(
            STATUSES[3], **common, lp_status="not run", lp_weights=None,
            fluid_growth_rate_per_s=path.growth_rate_per_s, fluid_drained=path.drained,
            fluid_horizon_s=float(path.times_s[-1]), reason=over,
        )  # fmt: skip
    # The relaxation is a dense n(M+1)-square matrix: decide "skipped" before building it.
    if net.n * (net.M + 1) > max_classes:
        lp_status, weights = "skipped", None
    else:
        lp_status, weights = linear_lyapunov_certificate(moa_relaxation(net), max_classes)
    # The relaxation releases each helper's share at once; a join waits for the last sibling,
    # and a priority can exploit that wait (own-user-first on two devices is unstable at load
    # 0.6 where the relaxation is certified: docs/model.md section 2.7). Only without helpers
    # (M = 0 or every k_m = 0) is the relaxation the network itself, and its certificate a proof.
    exact = net.M == 0 or not np.any(net.k)
    if lp_status == "certified" and exact:
        return Certificate(
            STATUSES[0], **common, lp_status=lp_status, lp_weights=weights, **skipped,
            reason="a linear Lyapunov function decreases (no helpers, so no joins)",
        )  # fmt: skip
    if kelly and discipline == "fcfs":
        return Certificate(
            STATUSES[1], **common, lp_status=lp_status, lp_weights=None, **skipped,
            reason="every rho_i < 1 and each device serves its job types with one mean, FCFS",
        )  # fmt: skip
    if not run_fluid:
        return Certificate(
            STATUSES[2], **common, lp_status=lp_status, lp_weights=None, **skipped,
            reason=f"every rho_i < 1; linear program {lp_status}"
            + (" (join-free relaxation only)" if lp_status == "certified" else "")
            + ", fluid model not run",
        )  # fmt: skip
    check = fluid_check(net, discipline, profile, per_origin=True)
    relaxed = (
        "; the join-free relaxation is certified, which does not carry over to joins"
        if lp_status == "certified"
        else ""
    )
    grows = f"the fluid grows (slope {check.growth_rate_per_s:.4g} jobs/s) although every rho_i < 1"
    if check.grew and net.selection is None:
        status, reason = STATUSES[3], grows
    elif check.grew:
        # With inclusion probabilities the fluid's join waits for every possible helper, a
        # pessimistic bound: an n = 5 network of the search grows in it and not in simulation.
        status = STATUSES[2]
        reason = grows + ", but with explicit selection its join is a pessimistic bound: simulate"
    else:
        status = STATUSES[2]
        reason = (
            "every rho_i < 1; the fluid "
            + (
                "drained from the states tried, which proves nothing"
                if check.drained
                else "neither drained nor grew within the horizon"
            )
            + relaxed
        )
    return Certificate(
        status, **common, lp_status=lp_status, lp_weights=weights,
        fluid_growth_rate_per_s=check.growth_rate_per_s, fluid_drained=check.drained,
        fluid_horizon_s=check.horizon_s, reason=reason,
    )  # fmt: skip


__all__ = [
    "STATUSES",
    "Certificate",
    "FluidCheck",
    "fluid_check",
    "prompt_state",
    "linear_lyapunov_certificate",
    "moa_relaxation",
    "stability_certificate",
]
