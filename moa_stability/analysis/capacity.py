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

**Solver.** HiGHS's interior point (no crossover) on the sparse matrix built here directly:
every flow column has two nonzeros (its helper's load row, its origin's balance row), so the
build is a few array operations instead of cvxpy's canonicalisation, which dominated the
cvxpy path's time at ``n >= 1000``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import highspy
import numpy as np

from ..model.loads import own_work
from ..model.network import PROPOSE, REFINE, MoANetwork
from .optimize import (
    _BINDING_RTOL,
    _Bounds,
    _Edges,
    _inclusion,
    _silence_highs_banner,
    StableRateResult,
)

SOLVER_PATH = "highs-structured"
"""``solver_path`` of results from this module (``"cvxpy"`` for the general program)."""

_HIGHS_OPTIONS = {
    "solver": "ipm",
    "run_crossover": "off",
    "ipm_optimality_tolerance": 1e-10,
    "primal_feasibility_tolerance": 1e-10,
    "dual_feasibility_tolerance": 1e-10,
    "output_flag": False,
}


@dataclass(frozen=True)
class _Group:
    """Layers merged into one flow: helper seconds per device, ``k`` and the layer count."""

    layers: tuple[int, ...]
    helper_time: np.ndarray
    k: int

    @property
    def count(self) -> int:
        return len(self.layers)


def _groups(net: MoANetwork) -> list[_Group]:
    """Layers with ``k > 0`` grouped by (helper service time row, ``k``)."""
    s = net.service_time
    # Refine helpers cost what propose helpers cost when the two rows agree: one group.
    same = np.array_equal(s[PROPOSE], s[REFINE])
    keys: dict[tuple[int, int], list[int]] = {}
    for m, km in enumerate(net.k):
        if km:
            row = PROPOSE if (m == 0 or same) else REFINE
            keys.setdefault((row, km), []).append(m)
    return [_Group(tuple(ls), s[row], km) for (row, km), ls in keys.items()]


def applies(
    net: MoANetwork,
    objective: str,
    optimise_selection: bool,
    bounds: _Bounds,
    solver: str | None,
) -> bool:
    """Whether :func:`max_scale_selection` solves this call: the ``scale`` objective with the
    selection optimised, some helpers, positive rates somewhere, no rate bounds, and no solver
    named (a named solver asks for the general cvxpy program)."""
    return (
        objective == "scale"
        and optimise_selection
        and solver is None
        and any(net.k)
        and bool(np.any(net.arrival_rate > 0))
        and not np.any(bounds.lower > 0)
        and not np.any(np.isfinite(bounds.upper))
    )


def _program(
    net: MoANetwork, edges: _Edges, groups: list[_Group], d: np.ndarray, w: np.ndarray
) -> highspy.HighsLp:
    """Columns ``[T, y_1, ..., y_G]``; rows ``[load_1..n, balance_{g,1..n}]`` (see module)."""
    n, E, G = net.n, edges.origin.size, len(groups)
    lp = highspy.HighsLp()
    lp.num_col_ = 1 + G * E
    lp.num_row_ = n + G * n
    lp.col_cost_ = np.r_[1.0, np.zeros(G * E)]
    lp.col_lower_ = np.zeros(1 + G * E)
    lp.col_upper_ = np.r_[np.inf, np.concatenate([g.count * d[edges.origin] for g in groups])]
    # load_i - T <= -w_i d_i; sum_i y_g[j, i] = c_g k_g d_j.
    lp.row_lower_ = np.r_[np.full(n, -np.inf), np.concatenate([g.count * g.k * d for g in groups])]
    lp.row_upper_ = np.r_[-w * d, np.concatenate([g.count * g.k * d for g in groups])]
    index = np.empty(n + 2 * G * E, dtype=np.int32)
    value = np.empty(n + 2 * G * E)
    index[:n], value[:n] = np.arange(n), -1.0
    for g, group in enumerate(groups):
        at = n + 2 * g * E
        index[at : at + 2 * E : 2] = edges.helper
        value[at : at + 2 * E : 2] = group.helper_time[edges.helper]
        index[at + 1 : at + 2 * E : 2] = n + g * n + edges.origin
        value[at + 1 : at + 2 * E : 2] = 1.0
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.num_col_, lp.a_matrix_.num_row_ = lp.num_col_, lp.num_row_
    lp.a_matrix_.start_ = np.r_[0, n + 2 * np.arange(G * E + 1)].astype(np.int32)
    lp.a_matrix_.index_ = index
    lp.a_matrix_.value_ = value
    return lp


def _dual_bound(
    mu: np.ndarray, edges: _Edges, groups: list[_Group], d: np.ndarray, w: np.ndarray
) -> float:
    r""":math:`g(\mu)`, a lower bound on the least peak load (module docstring)."""
    mu = np.maximum(mu, 0.0)
    mu = mu / mu.sum()
    bound = float(mu @ (w * d))
    starts = np.searchsorted(edges.origin, np.arange(edges.n))
    for group in groups:
        price = (mu * group.helper_time)[edges.helper]
        # Cheapest k helpers of each origin: sort within each origin's run of edges.
        order = np.lexsort((price, edges.origin))
        rank = np.arange(order.size) - starts[edges.origin]
        cheapest = np.bincount(
            edges.origin, weights=np.where(rank < group.k, price[order], 0.0), minlength=edges.n
        )
        bound += group.count * float(cheapest @ d)
    return bound


def max_scale_selection(net: MoANetwork, bounds: _Bounds) -> StableRateResult:
    r"""``max_stable_rate(net, "scale", optimise_selection=True)`` by the structured program
    of the module docstring, with a certified dual bound.

    Parameters
    ----------
    net : MoANetwork
        The network; its rates are the direction (some must be positive, see :func:`applies`).
    bounds : _Bounds
        The validated cap and (absent) rate bounds of the call.

    Returns
    -------
    StableRateResult
        With ``solver_path="highs-structured"`` and ``dual_bound`` the proven upper bound on
        :math:`\theta^*`.
    """
    start = time.perf_counter()
    # O(1) numbers for the solver: rates relative to the largest, seconds to the slowest.
    d_scale = float(net.arrival_rate.max())
    s_scale = float(net.service_time.max())
    d = net.arrival_rate / d_scale
    w = own_work(net) / s_scale
    edges = _Edges.of(net)
    groups = [
        _Group(g.layers, g.helper_time / s_scale, g.k) for g in _groups(net)
    ]
    lp = _program(net, edges, groups, d, w)
    _silence_highs_banner()
    highs = highspy.Highs()
    for key, val in _HIGHS_OPTIONS.items():
        highs.setOptionValue(key, val)
    if highs.passModel(lp) == highspy.HighsStatus.kError:
        raise RuntimeError(f"HiGHS rejected the structured program of {net!r}")
    built = time.perf_counter()
    highs.run()
    solved = time.perf_counter()
    status = highs.modelStatusToString(highs.getModelStatus())
    solution = highs.getSolution()
    if not solution.value_valid:
        raise ValueError(
            f"solver='HIGHS': the structured solve ended with status {status!r} for {net!r}; "
            "retry with solver='HIGHS' to use the general program"
        )
    flows = np.asarray(solution.col_value)[1:].reshape(len(groups), -1)
    E, n = edges.origin.size, net.n
    # Per layer: pi = y_g / (c_g d_j), projected onto the constraints; the loads are then
    # recomputed exactly, so the peak (and the rates) is feasible whatever the round-off.
    layer_pi = [None] * net.M
    for group, y in zip(groups, flows, strict=True):
        pi = _inclusion(net, edges, group.layers[0], d, y / group.count)
        for m in group.layers:
            layer_pi[m] = pi
    empty = _inclusion(net, edges, 0, d, None)
    selection = tuple(empty if pi is None else pi for pi in layer_pi)
    s = net.service_time / s_scale
    peak_loads = w * d
    for m, pi in enumerate(selection):
        peak_loads = peak_loads + s[PROPOSE if m == 0 else REFINE] * (pi.T @ d)
    peak = float(peak_loads.max())
    mu = -np.asarray(solution.row_dual if highs.getSolution().dual_valid else np.zeros(n))[:n]
    if not np.any(mu > 0):
        mu = (peak_loads >= peak * (1 - _BINDING_RTOL)).astype(float)
    lower = _dual_bound(mu, edges, groups, d, w)
    cap = bounds.cap
    theta = cap / (peak * d_scale * s_scale)
    rates = theta * net.arrival_rate
    optimum = net.replace(arrival_rate=rates, selection=selection)
    rho = peak_loads * cap / peak
    mu = np.maximum(mu, 0.0) / max(mu.clip(0).sum(), 1e-300)
    del E
    return StableRateResult(
        objective="scale",
        value=float(theta),
        rates=rates,
        loads=rho,
        load_cap=cap,
        binding=tuple(int(i) for i in np.flatnonzero(rho >= cap * (1 - _BINDING_RTOL))),
        duals=theta * mu / cap,
        selection=selection,
        selection_optimised=True,
        network=optimum,
        solver="HIGHS",
        status="optimal" if status == "Optimal" else status,
        build_time_s=built - start,
        solve_time_s=solved - built,
        dual_bound=cap / (lower * d_scale * s_scale),
        solver_path=SOLVER_PATH,
    )
