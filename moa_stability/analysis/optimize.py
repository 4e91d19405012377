r"""Maximal stable arrival rates and capacity-maximising proposer selection, as convex programs.

For a fixed selection rule every load is linear in the arrival rates, :math:`\rho = A\lambda`,
with (see :mod:`moa_stability.model.loads` for the traffic equations and
:func:`~moa_stability.model.loads.load_matrix`)

.. math::

    A = \operatorname{diag}(w) + \operatorname{diag}(s_{\mathrm P})\,\Pi_1^\top
        + \textstyle\sum_{m=2}^{M} \operatorname{diag}(s_{\mathrm R})\,\Pi_m^\top,
    \qquad w = s_{\mathrm P} + (M-1)\,s_{\mathrm R} + s_{\mathrm A},

where :math:`w_i` is the work a prompt puts on its own device (:math:`s_{\mathrm P}` when
:math:`M = 0`) and :math:`s_c` the mean seconds of job type :math:`c`. The stable region is the
polytope :math:`\{\lambda \ge 0 : A\lambda \le (1-\text{margin})\mathbf 1\}`.

With the selection as a variable, the flows :math:`x_m[j,i] = \lambda_j \pi_m[j,i]` on the
gossip graph's directed edges keep everything linear:

.. math::

    \rho_i = w_i\lambda_i + \textstyle\sum_m s_{c(m),i} \sum_j x_m[j,i], \qquad
    \textstyle\sum_i x_m[j,i] = k_m\lambda_j, \qquad 0 \le x_m[j,i] \le \lambda_j,

and :math:`\pi_m = x_m/\lambda_j` is recovered after the solve (any such :math:`\pi` is
realisable by a distribution over :math:`k_m`-subsets, e.g. systematic sampling).

Solvers: the ``scale``, ``sum`` and ``min`` objectives are linear programs, solved by HiGHS's
interior-point method without crossover, with tolerances tightened to 1e-10. An interior point
is fast on the large, sparse and highly degenerate edge-flow LPs, where simplex and crossover
spend most of their time moving between tied optima; and where optima tie (symmetric devices,
interchangeable helpers) it returns a central one rather than an arbitrary vertex, so rates
and selection are spread evenly. ``proportional`` maximises
:math:`\sum_i \log\lambda_i`, which needs the exponential cone: it goes to Clarabel, an
interior-point conic solver, run with tightened tolerances: the objective is then exact to
about 1e-10, the rates (where the log is flat) to about 1e-5 relative. Its exponential cone
stalls short of so tight a gap on a few percent of programs, at a gap anywhere from 1e-10 to
1e-7 that depends on the program and on Clarabel's equilibration, so each tolerance is tried
with and without equilibration, then the next looser one (:data:`_CLARABEL_STAGES`); every
stage must converge in full, and the status says ``optimal_inaccurate`` when only a stage
looser than 1e-10 did.

Reliability: ``scale`` with the network's own selection needs no solver (the closed form
:math:`\theta^* = \min_i c/\rho_i(\lambda)`, through the traffic equations, so a complete graph
stays implicit). Every program is solved in units where its numbers are of order one (see
:class:`_Units`), so rates from 1e-12 to 1e12 prompts/s and service times from 1e-6 to 1e6 s
give the same relative accuracy. An interior point's overshoot of the cap (solver round-off) is
pulled back along the segment to the lowest admissible rates; an answer whose loads, recomputed
by the traffic equations, still exceed the cap, or whose objective falls below a feasible
point of the network's own selection, is a ``ValueError``, never a result.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from functools import cache
from typing import Any

import cvxpy as cp
import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..model.display import html_summary, tidy
from ..model.loads import helper_work, load_matrix, loads, own_work
from ..model.network import (
    MoANetwork,
    count_field,
    is_rectangular,
    network_field,
    number_field,
    per_device_field,
)

OBJECTIVES: tuple[str, ...] = ("scale", "sum", "min", "proportional")
"""Objectives of :func:`max_stable_rate`."""

_GOALS = {"sum": cp.sum, "min": cp.min, "proportional": lambda rates: cp.sum(cp.log(rates))}
_DEFAULT_SOLVER = {"scale": "HIGHS", "sum": "HIGHS", "min": "HIGHS", "proportional": "CLARABEL"}
# The log objective is flat at its optimum, so a duality gap g leaves the rates off by about
# sqrt(g): Clarabel's defaults (1e-8) give ~1e-4 relative, 1e-11 ~1e-5. Its exponential cone
# stalls short of 1e-11 on ~7% of the programs of tests/analysis/test_optimize.py's random
# networks (at gaps from 1e-10 to 3.6e-8, by the program and by equilibration, which can turn
# a stall into convergence or back). A stall ends "almost solved" when the reduced tolerances
# are met (cvxpy's "optimal_inaccurate", with its warning) and a solver error otherwise, so
# the reduced tolerances equal the full ones here: a stage converges in full or fails, and the
# next stage runs. On 1,033 such programs the first stage converged on 961, the second on 69,
# the third on 1 and the fourth on 2; the values were within 1.4e-9 of the best of all stages.
_CLARABEL_STAGES = tuple(
    (tol, equilibrate) for tol in (1e-11, 1e-10, 1e-9, 1e-8) for equilibrate in (True, False)
)
"""(tolerance, equilibration) pairs for Clarabel, tried in order until one converges."""
# Stages converging only at a tolerance looser than this report "optimal_inaccurate".
_CLARABEL_ACCURATE = 1e-10


def _clarabel_options(tol: float, equilibrate: bool) -> dict[str, Any]:
    gaps = {"tol_gap_abs": tol, "tol_gap_rel": tol, "tol_feas": tol, "tol_ktratio": 100 * tol}
    reduced = {f"reduced_{key}": value for key, value in gaps.items()}
    return {**gaps, **reduced, "equilibrate_enable": equilibrate}


_SOLVER_OPTIONS = {
    # Crossover to a vertex costs 15x the interior-point solve on the edge-flow LPs
    # (n = 1000, 20-regular: 80 s against 5 s), and a vertex only picks one of many tied optima.
    "HIGHS": {
        "highs_options": {
            "solver": "ipm",
            "run_crossover": "off",
            "ipm_optimality_tolerance": 1e-10,
            "primal_feasibility_tolerance": 1e-9,
            "dual_feasibility_tolerance": 1e-9,
        }
    },
}
_BINDING_RTOL = 1e-6
# How far a solver's answer may stray, relative, past a load cap or below a point the network's
# own selection reaches before it is an error: the interior point stops within ~1e-9.
_CHECK_RTOL = 1e-7
# Origins with less traffic than this (relative to the busiest) get uniform selection: their
# flows carry no information about pi, only solver round-off.
_IDLE_RTOL = 1e-12


@dataclass(frozen=True)
class _Edges:
    """The directed edges ``origin -> helper`` of the gossip graph, in CSR order."""

    origin: np.ndarray
    helper: np.ndarray
    n: int

    @classmethod
    def of(cls, net: MoANetwork) -> _Edges:
        adj = net.adjacency
        return cls(np.repeat(np.arange(net.n), np.diff(adj.indptr)), adj.indices.copy(), net.n)

    def incidence(self, ends: np.ndarray, weight: np.ndarray | None = None) -> sp.csr_array:
        """``(n, edges)`` matrix summing edge values into the device at ``ends``."""
        count = ends.size
        values = np.ones(count) if weight is None else weight[ends]
        return sp.csr_array((values, (ends, np.arange(count))), shape=(self.n, count))


# ---- results -------------------------------------------------------------------------------
@dataclass(frozen=True, repr=False)
class StableRateResult:
    r"""The optimum of :func:`max_stable_rate`.

    Attributes
    ----------
    objective : str
        One of :data:`OBJECTIVES`.
    value : float
        The objective at the optimum: :math:`\theta^*` for ``scale``, prompts/s for ``sum`` and
        ``min``, :math:`\sum_i \log\lambda_i` (rates in prompts/s) for ``proportional``.
    rates : ndarray
        Optimal arrival rate per device, prompts/s.
    loads : ndarray
        :math:`\rho_i` per device at the optimum (with the returned selection).
    load_cap : float
        ``1 - margin``, the bound every load was held to.
    binding : tuple of int
        Devices whose load is at the cap (relative tolerance 1e-6).
    duals : ndarray
        :math:`\partial\,\text{value}/\partial c_i` for the load constraints
        :math:`\rho_i \le c_i`: zero off the bottlenecks. Making device ``i`` faster by a small
        fraction :math:`\epsilon` (every service time divided by :math:`1+\epsilon`) raises its
        cap to :math:`(1+\epsilon)c_i`, so it buys about :math:`\epsilon\,c_i\,\text{duals}_i`.
    selection : tuple of scipy.sparse.csr_array
        Per-layer inclusion probabilities ``pi[origin, helper]`` (optimal when optimised, the
        network's own otherwise), as :class:`MoANetwork` ``selection=`` accepts them. Built on
        access: the uniform rule of a large complete graph is a dense ``n x n`` matrix.
    selection_optimised : bool
        Whether the selection was a variable.
    network : MoANetwork
        The input network with the optimal rates (and selection, when optimised) plugged in.
    solver, status : str
        The solver that ran (``closed form`` when none was needed) and its status
        (``optimal`` or ``optimal_inaccurate``; for Clarabel, ``optimal_inaccurate`` when it
        converged only at a gap looser than 1e-10, see :data:`_CLARABEL_STAGES`).
    build_time_s, solve_time_s : float
        Seconds spent building the program (expressions and cvxpy's compilation to solver
        form) and solving it.
    dual_bound : float or None
        A proven upper bound on ``value`` from a dual-feasible point (``scale`` with the
        selection optimised, :mod:`moa_stability.analysis.capacity`); ``None`` otherwise.
    solver_path : str
        ``"parametric-flow"``, ``"structured-ipm"`` or ``"highs-structured"``
        (:mod:`moa_stability.analysis.capacity`:
        ``scale`` objective, selection optimised, no rate bounds, no ``solver`` named, more
        than ``capacity.CVXPY_MAX_FLOWS`` edge flows) or ``"cvxpy"`` (the rest).
    """

    objective: str
    value: float
    rates: np.ndarray
    loads: np.ndarray
    load_cap: float
    binding: tuple[int, ...]
    duals: np.ndarray
    selection_optimised: bool
    network: MoANetwork
    solver: str
    status: str
    build_time_s: float
    solve_time_s: float
    dual_bound: float | None = None
    solver_path: str = "cvxpy"

    @property
    def selection(self) -> tuple[sp.csr_array, ...]:
        net = self.network
        if net.selection is not None:
            return net.selection
        return tuple(net.inclusion(m) for m in range(net.M))

    def to_frame(self) -> pd.DataFrame:
        """One row per device: optimal rate, load, whether it binds, and its dual value."""
        frame = pd.DataFrame(
            {"rate_per_s": self.rates, "load": self.loads, "dual": self.duals},
            index=pd.RangeIndex(self.rates.size, name="device"),
        )
        frame["binding"] = frame.index.isin(self.binding)
        return frame

    def selection_frame(self) -> pd.DataFrame:
        r"""The selection as a labelled matrix: rows ``(layer, origin)``, columns ``helper``,
        entries the inclusion probabilities :math:`\pi_m[j, i]` (solver noise shown as 0)."""
        n = self.rates.size
        blocks = [tidy(pi.toarray()) for pi in self.selection]
        index = pd.MultiIndex.from_product(
            [range(1, len(blocks) + 1), range(n)], names=["layer", "origin"]
        )
        data = np.vstack(blocks) if blocks else np.zeros((0, n))
        return pd.DataFrame(data, index=index, columns=pd.RangeIndex(n, name="helper"))

    def __str__(self) -> str:
        sel = "optimised" if self.selection_optimised else "given"
        shown = list(self.binding)[:10]
        rates, loads = tidy(self.rates), tidy(self.loads)
        lines = [
            repr(self.network),
            f"objective             : {self.objective} = {self.value:.9g} "
            f"(selection {sel}; {self.solver}: {self.status})",
            f"total rate            : {rates.sum():.6g} prompts/s "
            f"[{rates.min():.4g}..{rates.max():.4g}] per device",
            f"max load              : {loads.max():.6g} (cap {self.load_cap:.6g})",
            f"binding devices       : {shown}{' ...' if len(self.binding) > 10 else ''}",
        ]
        if self.selection_optimised and self.rates.size <= 12:
            table = self.selection_frame().to_string(float_format=lambda v: f"{v:.4g}")
            lines += ["selection pi[layer, origin -> helper]:", table]
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        summary = str(self).split("\nselection pi")[0]  # the matrix comes as a table
        if not self.selection_optimised:
            return html_summary(summary, self.to_frame())
        return html_summary(summary, self.to_frame(), self.selection_frame())


# ---- input checks --------------------------------------------------------------------------
@dataclass(frozen=True)
class _Bounds:
    """Validated load cap and per-device rate bounds."""

    cap: float
    lower: np.ndarray
    upper: np.ndarray

    @classmethod
    def of(
        cls, net: MoANetwork, objective: str, margin: float, rate_lower: Any, rate_upper: Any
    ) -> _Bounds:
        network_field(net)
        if not (isinstance(objective, str) and objective in OBJECTIVES):
            raise ValueError(f"objective={objective!r}: unknown objective; use one of {OBJECTIVES}")
        fix = "loads are held at most 1 - margin; pass e.g. margin=0.1"
        margin = number_field("margin", margin, fix)
        if not 0 <= margin < 1:
            raise ValueError(f"margin={margin}: must be a number in [0, 1); {fix}")
        n = net.n
        lower = np.zeros(n) if rate_lower is None else per_device_field("rate_lower", rate_lower, n)
        upper = np.full(n, np.inf) if rate_upper is None else _upper_bounds(rate_upper, n)
        bad = np.flatnonzero(lower > upper)
        if bad.size:
            i = int(bad[0])
            raise ValueError(
                f"rate_lower[{i}]={lower[i]:.6g}: exceeds rate_upper[{i}]="
                f"{upper[i]:.6g}; make every lower bound <= its upper bound"
            )
        if objective == "proportional" and (upper == 0).any():
            i = int(np.flatnonzero(upper == 0)[0])
            raise ValueError(
                f"rate_upper[{i}]=0: makes the proportional objective (sum of log "
                "rates) -inf; give every device a positive upper bound or use "
                "objective='sum'"
            )
        return cls(1.0 - float(margin), lower, upper)


def _upper_bounds(value: Any, n: int) -> np.ndarray:
    """Like the network's per-device fields, but ``inf`` (no bound) is allowed."""
    if not is_rectangular(value) or np.asarray(value).dtype.kind not in "iuf":
        raise ValueError(
            f"rate_upper={value!r}: not numeric; pass a number or a length-n "
            "array (inf for no bound)"
        )
    arr = np.asarray(value, dtype=float)
    free = np.isposinf(arr)
    return np.where(free, np.inf, per_device_field("rate_upper", np.where(free, 0.0, arr), n))


def _lowest_scale(direction: np.ndarray, base: np.ndarray, lower: np.ndarray) -> float:
    """Smallest theta with ``base + theta * direction >= lower``; ValueError if none."""
    short = lower - base
    stuck = np.flatnonzero((direction == 0) & (short > 0))
    if stuck.size:
        i = int(stuck[0])
        raise ValueError(
            f"rate_lower[{i}]={lower[i]:.6g}: device {i} has arrival rate 0, so scaling the "
            "rates never meets it; drop the lower bound or use "
            "objective='sum'/'min'"
        )
    moving = direction > 0
    return float(np.max(short[moving] / direction[moving], initial=0.0))


def _overload_error(
    net: MoANetwork, rates: np.ndarray, load: np.ndarray, cap: float, qualifier: str
) -> ValueError:
    """Loads only grow with the rates: name the device the lowest admissible rates overload."""
    i = int(np.argmax(load))
    own = own_work(net)[i] * rates[i]
    return ValueError(
        f"load[{i}]={load[i]:.6g}: infeasible: at the lowest admissible rates (rate_lower, or "
        f"the fixed rates of the other devices), {qualifier}device {i} has load "
        f"{load[i]:.6g} > 1 - margin = {cap:.6g} ({own:.6g} from its own prompts, "
        f"{load[i] - own:.6g} as a helper); lower those rates or the margin, or speed device "
        f"{i} up"
    )


# ---- the program ---------------------------------------------------------------------------
@dataclass(frozen=True)
class _Units:
    r"""The units the solver works in, so that it sees numbers of order one whatever the
    magnitudes of the rates (1e-12..1e12 prompts/s) and service times (1e-6..1e6 s).

    Time is counted in units of :math:`\tau` = ``time_s`` seconds, the busiest device's load
    when every device sends one prompt per second: rates become :math:`\lambda' = \tau\lambda`
    and the load matrix :math:`A/\tau`, whose largest row sum is 1; loads do not change. For
    ``scale`` the direction is normalised too, :math:`\theta = \theta_0\theta'` with
    :math:`\theta_0` = ``theta`` :math:`= 1/\max_i \rho_i(\text{direction})`, so that
    :math:`\theta' = 1` is the uniform optimum of the network's own selection.
    """

    time_s: float
    theta: float

    @classmethod
    def of(cls, net: MoANetwork, objective: str, direction: np.ndarray) -> _Units:
        theta = 1.0 / _loads_at(net, direction).max() if objective == "scale" else 1.0
        return cls(float(_loads_at(net, np.ones(net.n)).max()), float(theta))


def _loads_at(net: MoANetwork, rates: np.ndarray) -> np.ndarray:
    """Loads of the network's own selection at ``rates`` (implicit on the complete graph)."""
    return loads(net.replace(arrival_rate=rates))


def _rates(
    objective: str,
    n: int,
    direction: np.ndarray,
    base: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
) -> tuple[cp.Expression, cp.Expression, list[cp.Constraint]]:
    """Rates as a cvxpy expression, the objective to maximise, and the rate bounds."""
    if objective == "scale":
        theta = cp.Variable(nonneg=True, name="theta")
        lam = base + theta * direction
        goal: cp.Expression = theta
    else:
        lam = cp.Variable(n, nonneg=True, name="rate")
        goal = _GOALS[objective](lam)
    cons = []
    low = np.flatnonzero(lower > 0)
    if low.size:
        cons.append(lam[low] >= lower[low])
    high = np.flatnonzero(np.isfinite(upper))
    if high.size:
        cons.append(lam[high] <= upper[high])
    return lam, goal, cons


def _flow_loads(
    net: MoANetwork, edges: _Edges, lam: cp.Expression, time_s: float
) -> tuple[cp.Expression, list[cp.Variable | None], list[cp.Constraint]]:
    """Loads with the per-layer edge flows as variables, the flows, and their constraints;
    rates and flows in prompts per ``time_s`` seconds."""
    out = edges.incidence(edges.origin)
    load = cp.multiply(own_work(net) / time_s, lam)
    flows: list[cp.Variable | None] = []
    cons = []
    origin_rate = out.T @ lam
    for m, km in enumerate(net.k):
        if km == 0:
            flows.append(None)
            continue
        x = cp.Variable(edges.origin.size, nonneg=True, name=f"flow{m + 1}")
        load = load + edges.incidence(edges.helper, helper_work(net, m) / time_s) @ x
        cons += [out @ x == km * lam, x <= origin_rate]
        flows.append(x)
    return load, flows, cons


def _complete_uniform_loads(
    net: MoANetwork, lam: cp.Expression, time_s: float
) -> tuple[cp.Expression, list[cp.Constraint]]:
    r"""Loads of uniform selection on the complete graph without its dense ``n x n`` matrix:
    :math:`\rho_i = (w_i - h_i)\lambda_i + h_i\Lambda` with
    :math:`h_i = \sum_m s_{c(m),i}k_m/(n-1)` and the total :math:`\Lambda` an extra variable
    (as ``h * sum(lam)`` cvxpy would expand into a dense outer product)."""
    h = np.zeros(net.n)
    for m, km in enumerate(net.k):
        if km:
            h += helper_work(net, m) * km / (net.n - 1)
    total = cp.Variable(nonneg=True, name="total_rate")
    load = cp.multiply((own_work(net) - h) / time_s, lam) + (h / time_s) * total
    return load, [total == cp.sum(lam)]


def _inclusion(
    net: MoANetwork, edges: _Edges, layer: int, rates: np.ndarray, flow: np.ndarray | None
) -> sp.csr_array:
    r"""``pi = x / lambda_origin`` on the edges, uniform for idle origins, projected back onto
    :math:`\{0 \le \pi \le 1, \sum_i \pi[j, i] = k_m\}` to remove solver round-off."""
    n, km, origin = net.n, net.k[layer], edges.origin
    if flow is None:
        return sp.csr_array((n, n))
    deg = net.degrees.astype(float)
    lam = rates[origin]
    active = lam > _IDLE_RTOL * rates.max(initial=0.0)
    pi = np.where(active, np.clip(flow / np.where(active, lam, 1.0), 0.0, 1.0), km / deg[origin])
    total = np.bincount(origin, weights=pi, minlength=n)
    # Too much: shrink the row. Too little: fill each entry's headroom 1 - pi in proportion.
    # Both stay inside [0, 1] because k_m <= degree.
    over = total > km
    shrink = km / np.where(over, total, 1.0)
    fill = np.where(over, 0.0, (km - total) / np.maximum(deg - total, 1e-300))
    pi = np.where(over[origin], pi * shrink[origin], pi + (1.0 - pi) * fill[origin])
    return sp.csr_array((pi, (origin, edges.helper)), shape=(n, n))


@dataclass
class _Program:
    """The convex program of one network, in :class:`_Units`, with handles on what the result
    needs."""

    problem: cp.Problem
    rates: cp.Expression
    goal: cp.Expression
    capacity: cp.Constraint
    flows: list[cp.Variable | None]
    edges: _Edges | None


def _program(
    net: MoANetwork,
    objective: str,
    bounds: _Bounds,
    optimise_selection: bool,
    direction: np.ndarray,
    base: np.ndarray,
    units: _Units,
) -> _Program:
    """Rates are ``base + theta * direction`` for ``scale``, free variables otherwise."""
    tau = units.time_s
    lam, goal, cons = _rates(
        objective,
        net.n,
        direction * (tau * units.theta),
        base * tau,
        bounds.lower * tau,
        bounds.upper * tau,
    )
    edges: _Edges | None = None
    flows: list[cp.Variable | None] = []
    if optimise_selection and net.M:
        edges = _Edges.of(net)
        load, flows, flow_cons = _flow_loads(net, edges, lam, tau)
        cons += flow_cons
    elif net.is_complete and net.selection is None:
        load, total_cons = _complete_uniform_loads(net, lam, tau)
        cons += total_cons
    else:
        load = (load_matrix(net) / tau) @ lam
    capacity = load <= bounds.cap
    problem = cp.Problem(cp.Maximize(goal), [capacity, *cons])
    return _Program(problem, lam, goal, capacity, flows, edges)


@cache
def _silence_highs_banner() -> None:
    """highspy prints its banner on a process's first ``Highs()``, whatever the options
    (HiGHS issue 1932): build that first instance with the stdout descriptor on /dev/null."""
    import highspy

    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            highspy.Highs()
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def _solver_name(solver: Any, objective: str) -> str:
    """The cvxpy solver to run: the default for the objective, or an installed one by name."""
    installed = sorted(cp.installed_solvers())
    if solver is None:
        return _DEFAULT_SOLVER[objective]
    if not isinstance(solver, str) or solver.upper() not in installed:
        raise ValueError(
            f"solver={solver!r}: not an installed cvxpy solver; pass None (the default) or one "
            f"of {installed}"
        )
    return solver.upper()


def _run_solver(problem: cp.Problem, name: str) -> str:
    """Solve ``problem`` with the solver ``name`` and return the status to report: cvxpy's,
    except that Clarabel goes through :data:`_CLARABEL_STAGES` and reports
    ``optimal_inaccurate`` when only a stage looser than ``_CLARABEL_ACCURATE`` converged."""
    if name == "HIGHS":
        _silence_highs_banner()
    if name == "CLARABEL":
        stages = [(tol, _clarabel_options(tol, eq)) for tol, eq in _CLARABEL_STAGES]
    else:
        stages = [(0.0, _SOLVER_OPTIONS.get(name, {}))]
    error = None
    for tol, options in stages:
        try:
            problem.solve(solver=name, **options)
        except cp.error.SolverError as err:
            error = err
            continue
        if problem.status == cp.OPTIMAL and tol > _CLARABEL_ACCURATE:
            return cp.OPTIMAL_INACCURATE
        return problem.status
    raise ValueError(
        f"solver={name!r}: cannot solve this program ({error}); pass solver=None for the "
        "default (HiGHS for the linear objectives, Clarabel for 'proportional')"
    ) from error


def _floor(objective: str, direction: np.ndarray, base: np.ndarray, bounds: _Bounds) -> np.ndarray:
    """The lowest admissible rates: every load only grows from there."""
    if objective != "scale":
        return bounds.lower
    if not direction.any():
        raise ValueError(
            "every arrival rate is 0, so objective='scale' has no direction "
            "to scale; give the devices positive rates or use objective='sum'"
        )
    return base + _lowest_scale(direction, base, bounds.lower) * direction


def _highest_scale(direction: np.ndarray, base: np.ndarray, upper: np.ndarray) -> float:
    """Largest theta with ``base + theta * direction <= upper`` (``inf`` when unbounded)."""
    capped = (direction > 0) & np.isfinite(upper)
    return float(np.min((upper - base)[capped] / direction[capped], initial=np.inf))


def _scale_closed_form(
    net: MoANetwork, bounds: _Bounds, direction: np.ndarray, base: np.ndarray, floor: np.ndarray
) -> tuple[float, np.ndarray]:
    r"""``scale`` with the network's own selection, where every load is linear in theta:
    :math:`\theta^* = \min(\min_i (c - \rho_i(b))/\rho_i(d),\ \min_i (u_i - b_i)/d_i)`, and
    its supergradient in the caps: :math:`1/\rho_i(d)` shared equally by the load-binding
    devices (zero when a rate bound binds first)."""
    by_rate = _highest_scale(direction, base, bounds.upper)
    if by_rate < _lowest_scale(direction, base, bounds.lower):
        raise ValueError(
            "rate_lower and rate_upper leave no common scale of the arrival rates; loosen "
            "the bounds or use objective='sum'"
        )
    per_unit = _loads_at(net, direction)
    head = bounds.cap - (_loads_at(net, base) if base.any() else np.zeros(net.n))
    moving = per_unit > 0
    limits = np.full(net.n, np.inf)
    limits[moving] = head[moving] / per_unit[moving]
    by_load = float(limits.min())
    duals = np.zeros(net.n)
    if by_load <= by_rate:
        binding = limits <= by_load * (1 + 1e-12)
        duals[binding] = 1.0 / per_unit[binding] / binding.sum()
    return min(by_load, by_rate), duals


def _reference_value(
    net: MoANetwork,
    objective: str,
    bounds: _Bounds,
    direction: np.ndarray,
    base: np.ndarray,
    floor: np.ndarray,
) -> float:
    """The objective at a feasible point of the network's own selection, found without a
    solver: no optimum (over rates, or rates and selection) can be lower. ``-inf`` when the
    own selection admits no point."""
    if _loads_at(net, floor).max() > bounds.cap:
        return -np.inf
    if objective == "scale":
        return _scale_closed_form(net, bounds, direction, base, floor)[0]
    # Raise every device that may move by the same amount t from its lower bound.
    step = (bounds.upper > bounds.lower).astype(float)
    if not step.any():
        point = bounds.lower
    else:
        by_rate = _highest_scale(step, bounds.lower, bounds.upper)
        per_unit = _loads_at(net, step)
        head = bounds.cap - _loads_at(net, bounds.lower)
        moving = per_unit > 0
        t = min(by_rate, float(np.min(head[moving] / per_unit[moving], initial=np.inf)))
        point = bounds.lower + max(t, 0.0) * step
    return _objective_value(objective, point)


def _objective_value(objective: str, rates: np.ndarray) -> float:
    if objective == "sum":
        return float(rates.sum())
    if objective == "min":
        return float(rates.min())
    with np.errstate(divide="ignore"):
        return float(np.log(rates).sum())


def _solve(
    net: MoANetwork,
    objective: str,
    bounds: _Bounds,
    optimise_selection: bool,
    solver: str,
    direction: np.ndarray,
    base: np.ndarray,
) -> StableRateResult:
    start = time.perf_counter()
    floor = _floor(objective, direction, base, bounds)
    optimise_selection = bool(optimise_selection and net.M)
    # Loads only grow with the rates, so the lowest admissible rates must already fit.
    if optimise_selection:
        _check_fits(net, floor, own_work(net) * floor, bounds.cap, "whatever the selection, ")
    else:
        _check_fits(net, floor, _loads_at(net, floor), bounds.cap, "")
    if objective == "scale" and not optimise_selection:
        theta, duals = _scale_closed_form(net, bounds, direction, base, floor)
        rates = np.clip(base + theta * direction, bounds.lower, bounds.upper)
        optimum = net.replace(arrival_rate=rates)
        return _result(
            net,
            objective,
            bounds,
            theta,
            optimum,
            duals,
            "closed form",
            "optimal",
            0.0,
            time.perf_counter() - start,
            False,
        )

    units = _Units.of(net, objective, direction)
    prog = _program(net, objective, bounds, optimise_selection, direction, base, units)
    built = time.perf_counter()
    status = _run_solver(prog.problem, solver)
    compile_s = prog.problem.compilation_time or 0.0
    solve_s = time.perf_counter() - built - compile_s
    if status not in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE) or prog.rates.value is None:
        raise _status_error(net, status, prog, floor, bounds.cap, solver, units.time_s)
    tau = units.time_s
    if objective == "scale":
        value = units.theta * float(prog.goal.value)
        rates = np.clip(base + value * direction, bounds.lower, bounds.upper)
        dual_unit = units.theta
    else:
        scaled = np.asarray(prog.rates.value, dtype=float).reshape(net.n)
        rates = np.clip(scaled / tau, bounds.lower, bounds.upper)
        value = _objective_value(objective, rates)
        # d value / d cap: the sum and min are in prompts per tau seconds in the program; the
        # sum of logs only moves by the constant n log(tau).
        dual_unit = 1.0 if objective == "proportional" else 1.0 / tau
    if prog.edges is not None:
        selection = tuple(
            _inclusion(net, prog.edges, m, rates * tau, None if x is None else x.value)
            for m, x in enumerate(prog.flows)
        )
        optimum = net.replace(arrival_rate=rates, selection=selection)
    else:
        optimum = net.replace(arrival_rate=rates)
    # An interior point stops up to its tolerance outside the stable polytope: move back along
    # the segment to the floor (which fits), so the rate bounds and the scale ray still hold.
    inside = _fraction_inside(optimum, floor, bounds.cap)
    if inside < 1.0:
        rates = floor + inside * (rates - floor)
        optimum = optimum.replace(arrival_rate=rates)
        if objective == "scale":
            lowest = _lowest_scale(direction, base, bounds.lower)
            value = lowest + inside * (value - lowest)
        else:
            value = _objective_value(objective, rates)
    duals = dual_unit * np.maximum(np.asarray(prog.capacity.dual_value, dtype=float), 0.0)
    result = _result(
        net,
        objective,
        bounds,
        value,
        optimum,
        duals.reshape(net.n),
        solver,
        status,
        built - start + compile_s,
        solve_s,
        prog.edges is not None,
    )
    reference = _reference_value(net, objective, bounds, direction, base, floor)
    if not value >= reference - _CHECK_RTOL * (abs(reference) + (objective == "proportional")):
        raise ValueError(
            f"solver={solver!r}: its optimum {objective}={value:.9g} (status {status!r}) is "
            f"below {reference:.9g}, which the network's own selection reaches, so the "
            "solver's answer is wrong; pass another solver= or report the network"
        )
    return result


def _fraction_inside(optimum: MoANetwork, floor: np.ndarray, cap: float) -> float:
    r"""Largest :math:`s \le 1` with every load at most ``cap`` at ``floor + s (rates -
    floor)`` under the optimum's selection (loads are affine along the segment). 1 when the
    rates fit, and also when they overshoot by more than solver round-off: such an answer is
    wrong, not imprecise, and the feasibility check rejects it."""
    high = loads(optimum)
    over = high > cap
    if not over.any() or high.max() > cap * (1 + _CHECK_RTOL):
        return 1.0
    low = loads(optimum.replace(arrival_rate=floor))[over]
    return float(np.clip(np.min((cap - low) / (high[over] - low)), 0.0, 1.0))


def _result(
    net: MoANetwork,
    objective: str,
    bounds: _Bounds,
    value: float,
    optimum: MoANetwork,
    duals: np.ndarray,
    solver: str,
    status: str,
    build_s: float,
    solve_s: float,
    optimised: bool,
) -> StableRateResult:
    """The result, once the returned rates and selection pass the feasibility check: their
    loads, recomputed by the traffic equations, are within the cap (and finite)."""
    rho = loads(optimum)
    worst = int(np.argmax(np.where(np.isfinite(rho), rho, np.inf)))
    if not (np.isfinite(value) or objective == "proportional") or not (
        rho[worst] <= bounds.cap * (1 + _CHECK_RTOL)
    ):
        raise ValueError(
            f"solver={solver!r}: its answer fails the feasibility check (device {worst} would "
            f"have load {rho[worst]:.9g} > 1 - margin = {bounds.cap:.6g}; {objective}="
            f"{value:.9g}) for {net!r}; pass another solver= or report the network"
        )
    return StableRateResult(
        objective=objective,
        value=float(value),
        rates=optimum.arrival_rate,
        loads=rho,
        load_cap=bounds.cap,
        binding=tuple(int(i) for i in np.flatnonzero(rho >= bounds.cap * (1 - _BINDING_RTOL))),
        duals=duals,
        selection_optimised=optimised,
        network=optimum,
        solver=solver,
        status=status,
        build_time_s=build_s,
        solve_time_s=solve_s,
    )


def _check_fits(
    net: MoANetwork, rates: np.ndarray, load: np.ndarray, cap: float, qualifier: str
) -> None:
    if (load > cap).any():
        raise _overload_error(net, rates, load, cap, qualifier)


def _status_error(
    net: MoANetwork,
    status: str,
    prog: _Program,
    floor: np.ndarray,
    cap: float,
    solver: str,
    time_s: float,
) -> ValueError:
    if status in (cp.INFEASIBLE, cp.INFEASIBLE_INACCURATE) and prog.edges is not None:
        best = _least_peak_load(net, prog.edges, floor * time_s, time_s)
        if best.max() > cap:
            return _overload_error(net, floor, best, cap, "even with the best selection, ")
    return ValueError(
        f"solver={solver!r}: the solve ended with status {status!r} for {net!r}; check the "
        "rate bounds and margin, or try another solver= (e.g. 'CLARABEL')"
    )


def _least_peak_load(
    net: MoANetwork, edges: _Edges, rates: np.ndarray, time_s: float
) -> np.ndarray:
    """Loads at ``rates`` (prompts per ``time_s`` s) under the selection that minimises the
    largest load."""
    load, _, cons = _flow_loads(net, edges, rates, time_s)
    _run_solver(cp.Problem(cp.Minimize(cp.max(load)), cons), "HIGHS")
    return np.asarray(load.value, dtype=float)


# ---- public API ----------------------------------------------------------------------------
def max_stable_rate(
    net: MoANetwork,
    objective: str = "scale",
    optimise_selection: bool = False,
    margin: float = 0.0,
    rate_upper: Any = None,
    rate_lower: Any = None,
    solver: str | None = None,
) -> StableRateResult:
    r"""Largest arrival rates that keep every device's load at most ``1 - margin``.

    Solves :math:`\max f(\lambda)` subject to :math:`\rho_i(\lambda, \pi) \le 1 - \text{margin}`
    for every device and :math:`\ell \le \lambda \le u`, with

    * ``scale``: :math:`\lambda = \theta\lambda^{\text{given}}`, :math:`f = \theta`; for a fixed
      selection :math:`\theta^* = (1-\text{margin})/\max_i\rho_i(\lambda^{\text{given}})`,
    * ``sum``: :math:`f = \sum_i \lambda_i` (largest total throughput),
    * ``min``: :math:`f = \min_i \lambda_i` (max-min fair at its first level: the smallest
      rate as large as possible, the others anywhere that fits),
    * ``proportional``: :math:`f = \sum_i \log\lambda_i` (proportionally fair).

    With ``optimise_selection`` the inclusion probabilities :math:`\pi_m` are variables too,
    through the edge flows :math:`x_m[j,i] = \lambda_j\pi_m[j,i]` (module docstring), so the
    program stays linear (conic for ``proportional``).

    The optimum lies on the boundary of the stable region: with ``margin = 0`` the binding
    devices sit at load 1, which no queue survives. Operate below it, or pass ``margin > 0``.

    Parameters
    ----------
    net : MoANetwork
        The network; its ``arrival_rate`` is the direction for ``scale``.
    objective : {"scale", "sum", "min", "proportional"}
    optimise_selection : bool
        Optimise the per-layer inclusion probabilities on the gossip graph's edges.
    margin : float
        Loads are held at most ``1 - margin``; ``0 <= margin < 1``.
    rate_upper, rate_lower : float or array_like, optional
        Per-device bounds on the rates in prompts/s (scalar or length ``n``).
    solver : str, optional
        A cvxpy solver name; default HiGHS for the LPs, Clarabel for ``proportional``. No
        solver runs for ``scale`` with the network's own selection: it has a closed form.

    Returns
    -------
    StableRateResult

    Raises
    ------
    ValueError
        On bad input, when no rates fit (naming the overloaded device and why), and when the
        solver's answer fails the feasibility check or is beaten by a known feasible point.

    Examples
    --------
    >>> from moa_stability import MoANetwork
    >>> net = MoANetwork(n=4, M=2, k=2, arrival_rate=1.0, service_time=[1, 1, 1, 4])
    >>> round(max_stable_rate(net).value, 12), round(max_stable_rate(
    ...     net, optimise_selection=True).value, 9)
    (0.035714285714, 0.083333333)
    """
    bounds = _Bounds.of(net, objective, margin, rate_lower, rate_upper)
    from . import capacity  # it builds on this module

    if capacity.applies(net, objective, optimise_selection, bounds, solver):
        return capacity.max_scale_selection(net, margin)
    return _solve(
        net,
        objective,
        bounds,
        _flag("optimise_selection", optimise_selection),
        _solver_name(solver, objective),
        direction=np.asarray(net.arrival_rate),
        base=np.zeros(net.n),
    )


MAX_ANGLES = 10**4
"""Most boundary points of :func:`capacity_region`: one program each (1000 angles took 2.2 s on
the paper network, so 10^4 about 22 s; the former 10^6 would have taken about 40 minutes)."""


def capacity_region(
    net: MoANetwork,
    devices: tuple[int, int] = (0, 1),
    optimise_selection: bool = False,
    n_angles: int = 33,
    margin: float = 0.0,
    solver: str | None = None,
) -> pd.DataFrame:
    r"""Boundary of the stable region in the plane of two devices' rates, others fixed.

    For angles :math:`\phi_t` evenly spaced in :math:`[0, \pi/2]` it finds the largest
    :math:`r` such that rates :math:`(r\cos\phi_t, r\sin\phi_t)` at ``devices`` (every other
    device at its given rate) keep all loads at most ``1 - margin`` — with the network's own
    selection, or the best selection for that point when ``optimise_selection``. The region is
    convex (a polygon for a fixed selection), so the points trace its outer boundary.

    Parameters
    ----------
    net : MoANetwork
    devices : (int, int)
        The two devices whose rates span the plane, ``a`` then ``b``.
    optimise_selection : bool
    n_angles : int
        Number of boundary points, ``>= 2`` (both axes included), at most :data:`MAX_ANGLES`.
    margin : float
        As in :func:`max_stable_rate`.
    solver : str, optional

    Returns
    -------
    pandas.DataFrame
        One row per angle: ``angle_rad``, ``rate_a_per_s``, ``rate_b_per_s`` (the boundary
        point), ``binding`` (devices at the cap there) and ``selection`` (``"optimised"`` or
        ``"given"``); ``attrs["devices"]`` holds ``(a, b)``. Concatenate the frames of both
        selections to plot them together.
    """
    bounds = _Bounds.of(net, "scale", margin, None, None)
    a, b = _two_devices(net, devices)
    # Each angle is one solve: a million is already hours with a selection to optimise.
    n_angles = count_field("n_angles", n_angles, 2, MAX_ANGLES)
    optimise_selection = _flag("optimise_selection", optimise_selection)
    solver = _solver_name(solver, "scale")
    base = np.array(net.arrival_rate, dtype=float)
    base[[a, b]] = 0.0
    rows = []
    for phi in np.linspace(0.0, np.pi / 2, n_angles):
        direction = np.zeros(net.n)
        direction[[a, b]] = np.cos(phi), np.sin(phi)
        res = _solve(net, "scale", bounds, optimise_selection, solver, direction, base)
        rows.append((phi, res.rates[a], res.rates[b], res.binding))
    frame = pd.DataFrame(rows, columns=["angle_rad", "rate_a_per_s", "rate_b_per_s", "binding"])
    frame["selection"] = "optimised" if optimise_selection and net.M else "given"
    frame.attrs["devices"] = (a, b)
    return frame


def _flag(field: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{field}={value!r}: must be True or False; pass a bool")
    return bool(value)


def _two_devices(net: MoANetwork, devices: Any) -> tuple[int, int]:
    if isinstance(devices, str) or not is_rectangular(devices) or np.shape(devices) != (2,):
        raise ValueError(f"devices={devices!r}: give two device indices, e.g. (0, 1)")
    a, b = (count_field("devices", d, 0, net.n - 1) for d in devices)
    if a == b:
        raise ValueError(f"devices={devices!r}: need two different devices in 0..{net.n - 1}")
    return a, b
