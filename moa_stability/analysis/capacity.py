r"""The largest uniform scale of the rates with the selection optimised, at city scale.

:func:`~moa_stability.analysis.optimize.max_stable_rate` with ``objective="scale"`` and
``optimise_selection=True`` maximises :math:`\theta` such that the rates
:math:`\theta\lambda` fit with some selection. Loads are homogeneous in the rates and the edge
flows, so dividing the flows by :math:`\theta` turns it into the smallest peak load at the
given rates :math:`d = \lambda`,

.. math::

    T^* = \min_{y \ge 0} \max_i \Big( w_i d_i
        + \textstyle\sum_g s_{g,i} \sum_{j \in \mathcal N(i)} y_g[j, i] \Big)
    \quad\text{s.t.}\quad \textstyle\sum_{i} y_g[j, i] = c_g k_g d_j,
    \quad y_g[j, i] \le c_g d_j,

and :math:`\theta^* = (1 - \text{margin}) / T^*`. The flow bounds are now simple column bounds,
not rows. Layers are merged into groups :math:`g` of equal helper service time and equal
:math:`k`: the ``c_g`` layers of a group share one flow :math:`y_g = \sum_{m \in g} x_m`, and
any such :math:`y_g` splits back as :math:`x_m = y_g / c_g` (inside the per-layer bounds), so
nothing is lost; layers of different ``k`` are not merged, because their sum can need more
than one unit of flow on an edge from one layer. With one helper service time per device, an
``M``-layer network with one ``k`` is a single transportation problem.

**Certificate.** For any :math:`\mu \ge 0` with :math:`\sum_i \mu_i = 1`, weak Lagrangian
duality gives

.. math::

    T^* \ge g(\mu) = \textstyle\sum_i \mu_i w_i d_i
        + \sum_g c_g \sum_j d_j \cdot \big(\text{sum of the } k_g \text{ smallest }
        \mu_i s_{g,i},\ i \in \mathcal N(j)\big),

since each origin's cheapest way to place its :math:`c_g k_g d_j` units at most :math:`c_g d_j`
per helper is to fill its :math:`k_g` cheapest neighbours. The solver's load-row duals give
:math:`\mu`; :math:`(1-\text{margin})/g(\mu)` is then a proven upper bound on
:math:`\theta^*`, computed here, not taken from the solver, and the returned rates (flows
projected onto the constraints, loads recomputed) a proven lower bound.

**Solver.** Several groups: the matrix-free interior point of
:mod:`~moa_stability.analysis.interior_point` (the balance rows eliminated exactly, conjugate
gradients on the load rows), stopped by the certificate below. When it ends without one, the
fall-back is HiGHS's interior point (no crossover) on the sparse matrix built here directly:
every flow column has two nonzeros (its helper's load row, its origin's balance row), so the
build is a few array operations instead of cvxpy's canonicalisation, which dominated the
cvxpy path's time at ``n >= 1000``. Because the certificate is computed here, the interior
point runs at a loose tolerance first and is tightened only when the bound misses
``_CERTIFIED_RTOL`` (docs/scale.md has the measurements).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import highspy
import numpy as np
import scipy.sparse as sp

from ..model.loads import own_work
from ..model.network import PROPOSE, REFINE, MoANetwork
from . import interior_point
from .flow import maximum_flow, residual_graph
from .optimize import (
    _BINDING_RTOL,
    StableRateResult,
    _Bounds,
    _Edges,
    _inclusion,
    _silence_highs_banner,
)

SOLVER_PATHS: tuple[str, str, str, str] = (
    "parametric-flow",
    "structured-ipm",
    "highs-structured",
    "cvxpy",
)
"""``solver_path`` values: one merged group (:func:`_parametric_flow`), several
(:func:`_structured_ipm`, with :func:`_structured_lp` as its fall-back), and the general
program of :mod:`~moa_stability.analysis.optimize`."""

_HIGHS_OPTIONS = {"solver": "ipm", "run_crossover": "off", "output_flag": False}
# Interior-point tolerances, tried in turn until the certificate holds. The last interior-point
# iterations are the expensive ones (the normal equations grow ill-conditioned), and the
# certificate is evaluated here, not taken from the solver: at 1e-8 HiGHS stops 5-10x sooner
# than at 1e-10 (n = 3000 and 10^4, two groups) with a certified gap of about 1e-8, well inside
# _CERTIFIED_RTOL; 1e-10 is the fall-back when it is not.
_IPM_TOLERANCES = (1e-8, 1e-10)
# Helper-time rows within this relative distance of proportional share one group.
_PROPORTIONAL_RTOL = 1e-12
# A flow this close to the supply counts as saturating (float round-off in the max-flow).
_SATURATED_RTOL = 1e-12
_MAX_NEWTON_STEPS = 60
# The certificate the status "optimal" promises: dual bound within this of the value.
_CERTIFIED_RTOL = 1e-6
# The matrix-free interior point stops at this certified gap: below the 1e-7 agreement with
# the general program that the tests ask for, and about what its last well-conditioned
# iteration reaches (2.5e-9 to 3.6e-8 measured at n = 10^3 .. 10^5, two groups); asking for
# less often costs an iteration whose conjugate gradients fail.
_IPM_TARGET = 5e-8
_IPM_MAX_ITER = 100


@dataclass(frozen=True)
class _Group:
    r"""Layers merged into one flow :math:`z = \sum_m \alpha_m x_m`, where layer ``m``'s
    helper seconds are :math:`\alpha_m` times ``helper_time``; ``weight`` is
    :math:`C = \sum_m \alpha_m` and every layer gets :math:`x_m = z / C`."""

    layers: tuple[int, ...]
    helper_time: np.ndarray
    k: int
    weight: float


def _groups(net: MoANetwork, seconds: float) -> list[_Group]:
    """Layers with ``k > 0`` grouped by ``k`` and by helper-time row up to a factor (times in
    units of ``seconds``)."""
    s = net.service_time / seconds
    groups: list[_Group] = []
    for m, km in enumerate(net.k):
        if not km:
            continue
        row = s[PROPOSE if m == 0 else REFINE]
        for at, g in enumerate(groups):
            alpha = row[0] / g.helper_time[0]
            if g.k == km and np.allclose(
                row, alpha * g.helper_time, rtol=_PROPORTIONAL_RTOL, atol=0
            ):
                groups[at] = _Group((*g.layers, m), g.helper_time, km, g.weight + alpha)
                break
        else:
            groups.append(_Group((m,), row, km, 1.0))
    return groups


# Up to this many edge flows (directed edges times layers with helpers) the general cvxpy
# program runs (under a few seconds): its interior point returns the central optimum, which
# spreads tied helper work evenly (the max-flow returns some optimal vertex instead, with the
# same capacity but more devices at the cap, so longer latencies there).
CVXPY_MAX_FLOWS = 20_000


def applies(
    net: MoANetwork,
    objective: str,
    optimise_selection: bool,
    bounds: _Bounds,
    solver: str | None,
) -> bool:
    """Whether :func:`max_scale_selection` solves this call: the ``scale`` objective with the
    selection optimised, some helpers, positive rates somewhere, no rate bounds, no solver
    named (a named solver asks for the general cvxpy program), and more than
    :data:`CVXPY_MAX_FLOWS` edge flows."""
    flows = int(net.degrees.sum()) * sum(1 for km in net.k if km)
    return (
        objective == "scale"
        and optimise_selection
        and solver is None
        and flows > CVXPY_MAX_FLOWS
        and bool(np.any(net.arrival_rate > 0))
        and not np.any(bounds.lower > 0)
        and not np.any(np.isfinite(bounds.upper))
    )


def _structured_lp(
    edges: _Edges, groups: list[_Group], d: np.ndarray, w: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    r"""Columns ``[T, x_1, ..., x_G]``, rows ``[load_1..n, balance_{g,1..n}]``: the flows and
    the load-row multipliers, from the loosest of :data:`_IPM_TOLERANCES` whose dual bound is
    within :data:`_CERTIFIED_RTOL` of the peak load of the flows (clipped to their bounds).

    Each flow is a fraction of its cap, :math:`z_g[j, i] = C_g d_j\,x_g[j, i]` with
    :math:`0 \le x \le 1` and :math:`\sum_i x_g[j, i] = k_g` (both 0 for an idle origin):
    with the caps as bounds, rates over many decades put flows far below HiGHS's
    absolute feasibility tolerance, and it called such programs infeasible."""
    n, E, G = edges.n, edges.origin.size, len(groups)
    lp = highspy.HighsLp()
    lp.num_col_ = 1 + G * E
    lp.num_row_ = n + G * n
    lp.col_cost_ = np.r_[1.0, np.zeros(G * E)]
    lp.col_lower_ = np.zeros(1 + G * E)
    born = d > 0
    lp.col_upper_ = np.r_[np.inf, np.tile(born[edges.origin].astype(float), G)]
    # load_i - T <= -w_i d_i; sum_i x_g[j, i] = k_g (0 for an idle origin).
    supply = np.concatenate([g.k * born.astype(float) for g in groups])
    lp.row_lower_ = np.r_[np.full(n, -np.inf), supply]
    lp.row_upper_ = np.r_[-w * d, supply]
    index = np.empty(n + 2 * G * E, dtype=np.int32)
    value = np.empty(n + 2 * G * E)
    index[:n], value[:n] = np.arange(n), -1.0
    caps = [group.weight * d[edges.origin] for group in groups]
    for g, group in enumerate(groups):
        at = n + 2 * g * E
        index[at : at + 2 * E : 2] = edges.helper
        value[at : at + 2 * E : 2] = group.helper_time[edges.helper] * caps[g]
        index[at + 1 : at + 2 * E : 2] = n + g * n + edges.origin
        value[at + 1 : at + 2 * E : 2] = 1.0
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.num_col_, lp.a_matrix_.num_row_ = lp.num_col_, lp.num_row_
    lp.a_matrix_.start_ = np.r_[0, n + 2 * np.arange(G * E + 1)].astype(np.int32)
    lp.a_matrix_.index_ = index
    lp.a_matrix_.value_ = value
    _silence_highs_banner()
    highs = highspy.Highs()
    for key, val in _HIGHS_OPTIONS.items():
        highs.setOptionValue(key, val)
    if highs.passModel(lp) == highspy.HighsStatus.kError:
        raise RuntimeError("HiGHS rejected the structured program")
    for tolerance in _IPM_TOLERANCES:
        for key in ("ipm_optimality", "primal_feasibility", "dual_feasibility"):
            highs.setOptionValue(f"{key}_tolerance", tolerance)
        highs.clearSolver()  # each tolerance solves from scratch
        highs.run()
        solution = highs.getSolution()
        if not (solution.value_valid and solution.dual_valid):
            status = highs.modelStatusToString(highs.getModelStatus())
            raise ValueError(
                f"solver='HIGHS': the structured solve ended with status {status!r}; pass "
                "solver='HIGHS' to max_stable_rate to use the general program"
            )
        flows = np.clip(np.asarray(solution.col_value)[1:], 0.0, 1.0).reshape(G, E) * caps
        # Load rows are <= rows of a minimisation: HiGHS reports their multipliers as <= 0.
        mu = -np.asarray(solution.row_dual)[:n]
        load = w * d
        for group, z in zip(groups, flows, strict=True):
            load = load + group.helper_time * np.bincount(edges.helper, z, minlength=n)
        if np.any(mu > 0) and load.max() <= _dual_bound(mu, edges, groups, d, w) * (
            1 + _CERTIFIED_RTOL
        ):
            break
    return flows, mu


def _structured_ipm(
    edges: _Edges, groups: list[_Group], d: np.ndarray, w: np.ndarray
) -> tuple[np.ndarray, np.ndarray] | None:
    """The flows ``(G, E)`` and load-row multipliers from the matrix-free interior point of
    :mod:`~moa_stability.analysis.interior_point`, or ``None`` when it ends without the
    certificate :data:`_CERTIFIED_RTOL` (the caller then runs :func:`_structured_lp`)."""
    start, seconds, k, weight = _stacked(edges, groups)
    deg = np.diff(start)
    program = interior_point.Program(
        start=start,
        helper=edges.helper,
        time=np.ascontiguousarray(seconds[:, edges.helper].T),
        cap=np.outer(d, weight),
        supply=np.outer(d, weight * k),
        # Idle origins have nothing to place; an origin with exactly k neighbours fills all.
        free=(d[:, None] > 0) & (deg[:, None] > k[None, :]),
        own=w * d,
    )
    solution = interior_point.solve(
        program, seconds, k, weight, d, _IPM_TARGET, _CERTIFIED_RTOL, _IPM_MAX_ITER
    )
    if not solution.gap <= _CERTIFIED_RTOL:
        return None
    return np.ascontiguousarray(solution.flows.T), solution.mu


def _parametric_flow(
    edges: _Edges, group: _Group, d: np.ndarray, w: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    r"""One group: the least peak load :math:`T^*` by Newton's method (Dinkelbach) on cuts.

    At a peak ``T`` the program is a transportation problem: origin ``j`` ships
    :math:`C k d_j`, at most :math:`C d_j` to each neighbour, and helper ``i`` takes at most
    :math:`(T - w_i d_i)/s_i`. A minimum cut that keeps the helpers :math:`H` on the source side
    shows :math:`T^* \ge r(H) = \big(\sum_j C d_j (k - |\mathcal N(j)\setminus H|)^+ +
    \sum_{i\in H} w_i d_i/s_i\big) / \sum_{i \in H} 1/s_i`, which is the dual function at
    :math:`\mu \propto 1/s` on :math:`H`. Starting from such a bound, each short flow yields a
    cut with a larger ratio; a saturating flow at ``T = r(H)`` proves :math:`T^* = T`.
    Returns the flow and the multipliers of the last cut.
    """
    n, E = edges.n, edges.origin.size
    s, C, k = group.helper_time, group.weight, group.k
    supply = C * k * d
    source, sink = 0, 2 * n + 1
    tail = np.concatenate([np.zeros(n, np.int64), 1 + edges.origin, n + 1 + np.arange(n)])
    head = np.concatenate([1 + np.arange(n), n + 1 + edges.helper, np.full(n, sink)])
    graph, forward = residual_graph(2 * n + 2, tail, head, np.zeros(tail.size))
    fixed = np.concatenate([supply, C * d[edges.origin]])

    def multipliers(helpers: np.ndarray) -> np.ndarray:
        return np.where(helpers, 1.0 / s, 0.0)

    # Two lower bounds to start from: all helpers (total work over total speed) and the
    # busiest device's own work.
    mu = multipliers(np.ones(n, bool))
    peak = _dual_bound(mu, edges, [group], d, w)
    own = np.zeros(n)
    own[np.argmax(w * d)] = 1.0
    own_peak = _dual_bound(own, edges, [group], d, w)
    if own_peak > peak:
        mu, peak = own, own_peak
    for _ in range(_MAX_NEWTON_STEPS):
        graph.capacity[:] = 0.0
        graph.capacity[forward] = np.concatenate([fixed, np.maximum(peak - w * d, 0.0) / s])
        value, source_side = maximum_flow(graph, source, sink)
        if value >= supply.sum() * (1 - _SATURATED_RTOL):
            break
        cut = multipliers(source_side[n + 1 : 2 * n + 1])
        better = _dual_bound(cut, edges, [group], d, w)
        if better <= peak:  # round-off: the cut proves no more than we have
            break
        mu, peak = cut, better
    flow = fixed[n:] - graph.capacity[forward[n : n + E]]
    return flow[None, :], mu


def _dual_bound(
    mu: np.ndarray, edges: _Edges, groups: list[_Group], d: np.ndarray, w: np.ndarray
) -> float:
    r""":math:`g(\mu)`, a lower bound on the least peak load (module docstring)."""
    mu = np.maximum(mu, 0.0)
    start, seconds, k, weight = _stacked(edges, groups)
    return float(
        interior_point.dual_function(
            mu / mu.sum(), start, edges.helper, seconds, k, weight, d, w * d
        )
    )


def _stacked(
    edges: _Edges, groups: list[_Group]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The arrays the compiled kernels of :mod:`~moa_stability.analysis.interior_point` take:
    each origin's first edge (``(n + 1,)`` int64, CSR order), and per group its helper seconds
    ``(G, n)``, ``k`` ``(G,)`` int64 and weight ``(G,)``."""
    start = np.searchsorted(edges.origin, np.arange(edges.n + 1)).astype(np.int64)
    seconds = np.array([g.helper_time for g in groups])
    k = np.array([g.k for g in groups], dtype=np.int64)
    weight = np.array([g.weight for g in groups])
    return start, seconds, k, weight


def max_scale_selection(net: MoANetwork, margin: float = 0.0) -> StableRateResult:
    r"""``max_stable_rate(net, "scale", optimise_selection=True)`` by the structured programs
    of the module docstring, with a certified dual bound.

    One merged group (one ``k`` and helper times proportional across layers, e.g. one service
    time per device) goes to the parametric max-flow, several to the matrix-free interior
    point (HiGHS on the structured LP when that ends without the certificate).

    Parameters
    ----------
    net : MoANetwork
        The network, with ``M >= 1``, some ``k_m > 0`` and some positive rate; its rates are
        the direction.
    margin : float
        Loads are held at most ``1 - margin``, ``0 <= margin < 1``.

    Returns
    -------
    StableRateResult
        With ``solver_path`` from :data:`SOLVER_PATHS` and ``dual_bound`` a proven upper bound
        on :math:`\theta^*`.
    """
    bounds = _Bounds.of(net, "scale", margin, None, None)
    if not (any(net.k) and np.any(net.arrival_rate > 0)):
        raise ValueError(
            f"net={net!r}: no helper jobs or no arrivals, so there is no selection to "
            "optimise; use max_stable_rate"
        )
    start = time.perf_counter()
    # O(1) numbers for the solver: rates relative to the largest, seconds to the slowest.
    d_scale = float(net.arrival_rate.max())
    s_scale = float(net.service_time.max())
    d = net.arrival_rate / d_scale
    w = own_work(net) / s_scale
    edges = _Edges.of(net)
    groups = _groups(net, s_scale)
    built = time.perf_counter()
    if len(groups) == 1:
        flows, mu = _parametric_flow(edges, groups[0], d, w)
        solver, path = "dinic", SOLVER_PATHS[0]
    else:
        found = _structured_ipm(edges, groups, d, w)
        if found is None:
            flows, mu = _structured_lp(edges, groups, d, w)
            solver, path = "HIGHS", SOLVER_PATHS[2]
        else:
            flows, mu = found
            solver, path = "interior-point", SOLVER_PATHS[1]
    solved = time.perf_counter()
    # Per layer: pi = z_g / (C_g d_j), projected onto the constraints; the loads are then
    # recomputed, so the peak (and the rates) is feasible whatever the round-off.
    layer_pi: list[sp.csr_array | None] = [None] * net.M
    for group, z in zip(groups, flows, strict=True):
        pi = _inclusion(net, edges, group.layers[0], d, z / group.weight)
        for m in group.layers:
            layer_pi[m] = pi
    empty = sp.csr_array((net.n, net.n))
    selection = tuple(empty if pi is None else pi for pi in layer_pi)
    s = net.service_time / s_scale
    load = w * d
    for m, pi in enumerate(selection):
        load = load + s[PROPOSE if m == 0 else REFINE] * (pi.T @ d)
    peak = float(load.max())
    if not np.any(mu > 0):  # no usable multipliers: the devices at the peak still give a bound
        mu = (load >= peak * (1 - _BINDING_RTOL)).astype(float)
    lower = _dual_bound(mu, edges, groups, d, w)
    cap = bounds.cap
    theta = cap / (peak * d_scale * s_scale)
    dual_bound = cap / (lower * d_scale * s_scale)
    rates = theta * net.arrival_rate
    rho = load * (cap / peak)
    rho.setflags(write=False)
    mu = np.maximum(mu, 0.0) / np.maximum(mu, 0.0).sum()
    return StableRateResult(
        objective="scale",
        value=float(theta),
        rates=rates,
        loads=rho,
        load_cap=cap,
        binding=tuple(int(i) for i in np.flatnonzero(rho >= cap * (1 - _BINDING_RTOL))),
        duals=theta * mu / cap,
        selection_optimised=True,
        network=net.replace(arrival_rate=rates, selection=selection),
        solver=solver,
        status="optimal" if dual_bound <= theta * (1 + _CERTIFIED_RTOL) else "optimal_inaccurate",
        build_time_s=built - start,
        solve_time_s=solved - built,
        dual_bound=float(dual_bound),
        solver_path=path,
    )
