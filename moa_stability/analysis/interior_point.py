r"""A matrix-free primal-dual interior point for the several-group least-peak-load LP of
:mod:`moa_stability.analysis.capacity`.

The program (groups :math:`g`, origins :math:`j`, edges :math:`e = (j \to i)`):

.. math::

    \min T \quad\text{s.t.}\quad w_i d_i + \textstyle\sum_g s_{g,i} \sum_{e \to i} y_{e,g}
        + t_i = T, \quad \sum_{e \text{ from } j} y_{e,g} = b_{j,g} = C_g k_g d_j,
    \quad 0 \le y_{e,g} \le u_{e,g} = C_g d_j, \quad t \ge 0,\ T \text{ free}.

Mehrotra's predictor-corrector on it, with both bounds of :math:`y` in the scaling
:math:`\Theta = (Z/Y + W/(U - Y))^{-1}`. Each flow sits in exactly one balance row, so the
balance block of the normal equations :math:`A \Theta A^\top` is diagonal,
:math:`\beta_{j,g} = \sum_{e \text{ from } j} \theta_{e,g}`, and is eliminated exactly. What
is left lives on the ``n`` load rows,

.. math::

    S_0 = \operatorname{diag}\Big(\textstyle\sum_g s_{g,i}^2 \sum_{e \to i} \theta_{e,g}
        + t_i / z_i\Big) - \sum_{j,g} \beta_{j,g}^{-1} v_{j,g} v_{j,g}^\top,
    \qquad (v_{j,g})_i = s_{g,i} \theta_{(j \to i),g},

bordered by the free peak :math:`T`: :math:`S_0 p - \Delta T\,\mathbf 1 = r`,
:math:`\mathbf 1^\top p = \sum_i \mu_i - 1` (``p`` is the step of the load-row multipliers
:math:`-\mu`, which this keeps on the simplex). A product with :math:`S_0` is one pass over
the edges and stores no matrix; the bordered system is solved by conjugate gradients on the
hyperplane (:func:`_projected_cg`: the exact diagonal of :math:`S_0` as preconditioner,
projected onto it), warm-started from the previous iteration's direction.
Because the balance rows are eliminated exactly, every iterate's flows satisfy them to
round-off whatever the conjugate-gradient error (which only perturbs the load rows, and the
infeasible interior point absorbs that). The iteration is stopped by the certificate of
:mod:`~moa_stability.analysis.capacity`, not by its own duality gap: the peak load of the flows
over :math:`g(\mu)` at the load-row multipliers.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

# Kernels that divide use error_model="numpy": a degenerate iterate (a flow or slack that
# underflows to zero on extreme data) then gives inf or nan, which fails the next
# conjugate-gradient solve and ends the iteration without a certificate, so the caller falls
# back to HiGHS, instead of raising ZeroDivisionError mid-solve.

# Fraction of the way to the boundary each step goes.
_STEP_TO_BOUNDARY = 0.99
# Conjugate-gradient relative residual: tight, since the late interior-point systems are
# ill-conditioned and a loose solve there spoils the load rows (measured: at 1e-10 the load
# residual stays below 1e-8 until the certificate is met).
_CG_RTOL = 1e-10
_CG_MAX_ITER = 2000
# A solve that needs more than this many times the longest one so far (plus the slack) has
# met the ill-conditioning of the last iterations: stop and keep the best iterate.
_CG_GROWTH = 4
_CG_SLACK = 50
# A start this far above the uniform split's peak load keeps the load slacks inside.
_START_HEADROOM = 1.1


class Program(NamedTuple):
    """The LP in edge arrays (``E`` directed edges in CSR order by origin, ``G`` groups)."""

    start: np.ndarray  # (n + 1,) int64: edges of origin j are start[j]..start[j+1]-1
    helper: np.ndarray  # (E,) integer: the neighbour each edge places work on
    time: np.ndarray  # (E, G) helper seconds s_{g, helper(e)}
    cap: np.ndarray  # (n, G) bound C_g d_j on each of origin j's flows of group g
    supply: np.ndarray  # (n, G) balance C_g k_g d_j
    free: np.ndarray  # (n, G) bool: the origin's flows are not fixed (d_j > 0, deg_j > k_g)
    own: np.ndarray  # (n,) own work w_i d_i


class Solution(NamedTuple):
    """The flows (``(E, G)``), load-row multipliers on the simplex, and the certified gap."""

    flows: np.ndarray
    mu: np.ndarray
    gap: float
    iterations: int
    cg_iterations: int


@njit(cache=True, error_model="numpy")
def _normal_matrix(p, y, zy, wy, t, zt, theta, sh, inv_beta, diag):  # pragma: no cover
    """The scaling and the Schur complement's pieces; returns the complement's diagonal."""
    n, G = p.supply.shape
    for i in range(n):
        diag[i] = t[i] / zt[i]
    for j in range(n):
        for g in range(G):
            if not p.free[j, g]:
                inv_beta[j, g] = 0.0
                for e in range(p.start[j], p.start[j + 1]):
                    theta[e, g] = 0.0
                    sh[e, g] = 0.0
                continue
            beta = 0.0
            for e in range(p.start[j], p.start[j + 1]):
                th = 1.0 / (zy[e, g] / y[e, g] + wy[e, g] / (p.cap[j, g] - y[e, g]))
                theta[e, g] = th
                sh[e, g] = p.time[e, g] * th
                beta += th
                diag[p.helper[e]] += p.time[e, g] * sh[e, g]
            inv_beta[j, g] = 1.0 / beta
    schur = diag.copy()
    for j in range(n):
        for e in range(p.start[j], p.start[j + 1]):
            for g in range(G):
                schur[p.helper[e]] -= sh[e, g] * sh[e, g] * inv_beta[j, g]
    return schur


@njit(cache=True)
def _schur_product(x, p, sh, inv_beta, diag, out):  # pragma: no cover - numba
    r"""``out = S_0 x`` in one pass over the edges, no matrix stored: per origin
    :math:`a_{j,g} = \beta_{j,g}^{-1} v_{j,g}^\top x`, then
    :math:`(v_{j,g})_i a_{j,g}` off each neighbour's entry (the origin's edges are still in
    cache for the second sweep). Two groups (propose and refine) are the usual case and get
    their accumulators as scalars: measured 1.6x faster than the loop over groups, which
    keeps them in memory."""
    n, G = inv_beta.shape
    for i in range(n):
        out[i] = diag[i] * x[i]
    acc = np.empty(G)
    for j in range(n):
        lo, hi = p.start[j], p.start[j + 1]
        if G == 2:
            a0, a1 = 0.0, 0.0
            for e in range(lo, hi):
                xe = x[p.helper[e]]
                a0 += sh[e, 0] * xe
                a1 += sh[e, 1] * xe
            a0 *= inv_beta[j, 0]
            a1 *= inv_beta[j, 1]
            for e in range(lo, hi):
                out[p.helper[e]] -= sh[e, 0] * a0 + sh[e, 1] * a1
            continue
        acc[:] = 0.0
        for e in range(lo, hi):
            xe = x[p.helper[e]]
            for g in range(G):
                acc[g] += sh[e, g] * xe
        for g in range(G):
            acc[g] *= inv_beta[j, g]
        for e in range(lo, hi):
            total = 0.0
            for g in range(G):
                total += sh[e, g] * acc[g]
            out[p.helper[e]] -= total


@njit(cache=True)
def _dot(a, b):  # pragma: no cover - numba
    """``a @ b`` as a loop: no BLAS threads competing for the cores."""
    total = 0.0
    for i in range(a.size):
        total += a[i] * b[i]
    return total


@njit(cache=True, error_model="numpy")
def _projected_cg(b, c, x, p, sh, inv_beta, diag, schur, rtol, max_iter):
    # pragma: no cover - numba
    r"""Solve the bordered system :math:`S_0 x - \tau \mathbf 1 = b`,
    :math:`\mathbf 1^\top x = c` by conjugate gradients on the hyperplane (the Jacobi
    preconditioner projected onto it, so every iterate keeps :math:`\mathbf 1^\top x = c`),
    from the given ``x``. Returns the iterations and :math:`\tau`; ``max_iter`` means no
    convergence."""
    n = b.size
    inv_m = 1.0 / schur
    weight = inv_m.sum()
    x += inv_m * ((c - x.sum()) / weight)  # onto the hyperplane
    q = np.empty(n)
    _schur_product(x, p, sh, inv_beta, diag, q)
    # The residual is kept free of its component along the multiplier's direction (the
    # "residual update" of projected CG): without it that component, which does not shrink,
    # swamps the rest in round-off and the iteration stalls. Vector operations are written as
    # loops: fused, and without BLAS threads (which competed for the cores at n = 10^5).
    r = q - b
    tau = _dot(inv_m, r) / weight
    r -= tau
    z = inv_m * r
    direction = -z
    rz = _dot(r, z)
    rr = _dot(r, r)
    stop = rtol * np.sqrt(_dot(b, b))
    for it in range(max_iter):
        if np.sqrt(rr) <= stop:
            return it, tau
        if not np.isfinite(rr):  # a degenerate iterate: report no convergence at once
            return max_iter, tau
        _schur_product(direction, p, sh, inv_beta, diag, q)
        alpha = rz / _dot(direction, q)
        moved = 0.0
        for i in range(n):
            x[i] += alpha * direction[i]
            r[i] += alpha * q[i]
            moved += inv_m[i] * r[i]
        shift = moved / weight
        tau += shift
        rz_next, rr = 0.0, 0.0
        for i in range(n):
            r[i] -= shift
            z[i] = inv_m[i] * r[i]
            rz_next += r[i] * z[i]
            rr += r[i] * r[i]
        beta = rz_next / rz
        for i in range(n):
            direction[i] = beta * direction[i] - z[i]
        rz = rz_next
    return max_iter, tau


@njit(cache=True, error_model="numpy")
def _reduced_rhs(p, y, zy, wy, mu, lam, theta, sh, inv_beta, target, aff, rhy, r_load, r_bal):
    # pragma: no cover - numba
    r"""Right-hand side on the load rows after eliminating the balance rows. ``target`` is
    :math:`\sigma\mu`; ``aff`` the affine direction ``(dy, dz, dw)`` for the corrector's
    second-order term, or empty arrays. Adds into ``r_load`` and writes ``r_bal``."""
    n, G = p.supply.shape
    corrector = aff[0].size > 0
    for j in range(n):
        lo, hi = p.start[j], p.start[j + 1]
        for g in range(G):
            if not p.free[j, g]:
                r_bal[j, g] = 0.0
                continue
            # The balance residual (round-off only: iterates keep the rows) plus the row's
            # share of Theta * rhy.
            total = p.supply[j, g]
            for e in range(lo, hi):
                ye = y[e, g]
                slack = p.cap[j, g] - ye
                rxz = target - ye * zy[e, g]
                rsw = target - slack * wy[e, g]
                if corrector:
                    rxz -= aff[0][e, g] * aff[1][e, g]
                    rsw += aff[0][e, g] * aff[2][e, g]
                dual = p.time[e, g] * mu[p.helper[e]] - lam[j, g] - zy[e, g] + wy[e, g]
                h = dual - rxz / ye + rsw / slack
                rhy[e, g] = h
                total += theta[e, g] * h - ye
            r_bal[j, g] = total
            scale = total * inv_beta[j, g]
            for e in range(lo, hi):
                r_load[p.helper[e]] += sh[e, g] * (rhy[e, g] - scale)


@njit(cache=True, error_model="numpy")
def _flow_direction(p, y, zy, wy, theta, sh, inv_beta, x, r_bal, rhy, target, aff, d, q):
    # pragma: no cover - numba
    """Recover ``d = (dy, dz, dw)`` and the balance-row step ``q`` from the load-row step
    ``x``; returns the largest primal and dual steps that keep the bounds."""
    n, G = p.supply.shape
    corrector = aff[0].size > 0
    primal, dual = 1.0, 1.0
    dy, dz, dw = d
    for j in range(n):
        lo, hi = p.start[j], p.start[j + 1]
        for g in range(G):
            if not p.free[j, g]:
                q[j, g] = 0.0
                for e in range(lo, hi):
                    dy[e, g] = 0.0
                    dz[e, g] = 0.0
                    dw[e, g] = 0.0
                continue
            total = 0.0
            for e in range(lo, hi):
                total += sh[e, g] * x[p.helper[e]]
            q[j, g] = (r_bal[j, g] - total) * inv_beta[j, g]
            for e in range(lo, hi):
                step = theta[e, g] * (p.time[e, g] * x[p.helper[e]] + q[j, g] - rhy[e, g])
                # The residuals as in _reduced_rhs, written out: a shared @njit helper (plain
                # or inline="always") made the whole solve 2.2x slower at n = 10^4.
                slack = p.cap[j, g] - y[e, g]
                rxz = target - y[e, g] * zy[e, g]
                rsw = target - slack * wy[e, g]
                if corrector:
                    rxz -= aff[0][e, g] * aff[1][e, g]
                    rsw += aff[0][e, g] * aff[2][e, g]
                dze = (rxz - zy[e, g] * step) / y[e, g]
                dwe = (rsw + wy[e, g] * step) / slack
                dy[e, g], dz[e, g], dw[e, g] = step, dze, dwe
                # Ratio tests, dividing only when the bound binds sooner (divisions dominate
                # this loop otherwise).
                if -y[e, g] > primal * step:
                    primal = -y[e, g] / step
                elif slack < primal * step:
                    primal = slack / step
                if -zy[e, g] > dual * dze:
                    dual = -zy[e, g] / dze
                if -wy[e, g] > dual * dwe:
                    dual = -wy[e, g] / dwe
    return primal, dual


@njit(cache=True)
def _complementarity(p, y, zy, wy, d, primal, dual):  # pragma: no cover - numba
    """Sum of the flows' complementarity products after steps ``primal``, ``dual`` along
    ``d``."""
    n, G = p.supply.shape
    dy, dz, dw = d
    total = 0.0
    for j in range(n):
        for g in range(G):
            if not p.free[j, g]:
                continue
            for e in range(p.start[j], p.start[j + 1]):
                ye = y[e, g] + primal * dy[e, g]
                total += ye * (zy[e, g] + dual * dz[e, g])
                total += (p.cap[j, g] - ye) * (wy[e, g] + dual * dw[e, g])
    return total


@njit(cache=True)
def _take_step(p, y, zy, wy, d, primal, dual):  # pragma: no cover - numba
    """Move the flows and their bound multipliers along ``d`` in place (one pass, where
    NumPy would take six); returns the complementarity sum at the new point."""
    n, G = p.supply.shape
    dy, dz, dw = d
    total = 0.0
    for j in range(n):
        for g in range(G):
            if not p.free[j, g]:
                continue
            for e in range(p.start[j], p.start[j + 1]):
                y[e, g] += primal * dy[e, g]
                zy[e, g] += dual * dz[e, g]
                wy[e, g] += dual * dw[e, g]
                total += y[e, g] * zy[e, g] + (p.cap[j, g] - y[e, g]) * wy[e, g]
    return total


@njit(cache=True)
def _helper_load(p, y):  # pragma: no cover - numba
    """Each device's load: own work plus the helper seconds of its incoming flows."""
    n, G = p.supply.shape
    load = p.own.copy()
    for e in range(p.helper.size):
        for g in range(G):
            load[p.helper[e]] += p.time[e, g] * y[e, g]
    return load


@njit(cache=True)
def dual_function(mu, start, helper, time, k, weight, d, own):  # pragma: no cover - numba
    r""":math:`g(\mu)` of :mod:`~moa_stability.analysis.capacity` for ``mu`` on the simplex:
    each origin's ``k_g`` cheapest neighbours at prices ``mu_i time[g, i]``, kept by
    insertion into a sorted list of ``k_g`` (``k`` is small, degrees may be large)."""
    n = start.size - 1
    total = 0.0
    for i in range(n):
        total += mu[i] * own[i]
    cheapest = np.empty(max(k.max(), 1))
    for g in range(time.shape[0]):
        kg = k[g]
        group = 0.0
        for j in range(n):
            if d[j] == 0.0:
                continue
            held = 0
            for e in range(start[j], start[j + 1]):
                price = mu[helper[e]] * time[g, helper[e]]
                if held < kg:
                    at = held
                    held += 1
                elif price < cheapest[kg - 1]:
                    at = kg - 1
                else:
                    continue
                while at > 0 and cheapest[at - 1] > price:
                    cheapest[at] = cheapest[at - 1]
                    at -= 1
                cheapest[at] = price
            group += d[j] * cheapest[:held].sum()
        total += weight[g] * group
    return total


def _ratio(value: np.ndarray, step: np.ndarray) -> float:
    """Largest ``a <= 1`` with ``value + a * step >= 0``."""
    down = step < 0
    return min(1.0, float(np.min(-value[down] / step[down]))) if np.any(down) else 1.0


def solve(
    program: Program,
    device_time: np.ndarray,
    k: np.ndarray,
    weight: np.ndarray,
    d: np.ndarray,
    target: float,
    accept: float,
    max_iter: int,
) -> Solution:
    r"""Mehrotra's predictor-corrector until the certified gap (peak load of the iterate's
    flows over :math:`g(\mu)`, minus one) is at most ``target``, ``max_iter`` iterations pass,
    or a conjugate-gradient solve fails to converge (the normal equations have become too
    ill-conditioned to gain more); returns the iterate with the smallest certified gap.

    Parameters
    ----------
    program : Program
        The LP.
    device_time : ndarray
        ``(G, n)`` helper seconds per group and device (for the certificate).
    k, weight : ndarray
        ``(G,)`` helpers per origin and group weight :math:`C_g`.
    d : ndarray
        ``(n,)`` rates.
    target : float
        Certified relative gap to stop at.
    accept : float
        Certified relative gap good enough to return: once an iterate has it, a
        conjugate-gradient solve slower than :data:`_CG_GROWTH` times the longest so far ends
        the iteration.
    max_iter : int
        Interior-point iterations at most.

    Returns
    -------
    Solution
        The best iterate's flows (inside their bounds, balance rows to round-off), its
        multipliers, its certified gap (``inf`` if no iterate had a finite one), the
        iteration it came from and the conjugate-gradient iterations of the whole run.
    """
    p = program
    n, G = p.supply.shape
    E = p.helper.size
    deg = np.diff(p.start)
    origin = np.repeat(np.arange(n), deg)
    # Start: each origin split evenly over its neighbours (balance rows exact, flows strictly
    # inside their bounds where free), the peak above the largest load, mu uniform on the
    # simplex and the bound multipliers chosen so that the dual rows hold.
    y = p.cap[origin] * (k[None, :] / deg[origin, None])
    load = _helper_load(p, y)
    T = _START_HEADROOM * load.max()
    t = T - load
    mu = np.full(n, 1.0 / n)
    price = p.time * mu[p.helper, None]
    lam = -np.stack([np.bincount(origin, price[:, g], minlength=n) for g in range(G)], 1)
    lam /= deg[:, None]
    reduced = price - lam[origin]
    scale = max(float(np.abs(reduced).max()), 1e-3 * T)
    zy = np.maximum(reduced, 0.0) + scale
    wy = np.maximum(-reduced, 0.0) + scale
    zt = mu.copy()
    count = 2 * int((p.free * deg[:, None]).sum()) + n

    theta, sh, rhy = (np.empty((E, G)) for _ in range(3))
    inv_beta, r_bal, q = np.empty((n, G)), np.empty((n, G)), np.empty((n, G))
    diag = np.empty(n)
    # Zeros, not empty: the complementarity at the current point is read along ``step``.
    aff = (np.zeros((E, G)), np.zeros((E, G)), np.zeros((E, G)))
    step = (np.zeros((E, G)), np.zeros((E, G)), np.zeros((E, G)))
    no_aff = (np.empty((0, 0)),) * 3
    x_prev = np.zeros(n)
    counts: list[int] = []
    best = Solution(y, mu, np.inf, 0, 0)

    def cg_solve(b: np.ndarray, x: np.ndarray) -> tuple[bool, float]:
        """Solve the bordered system in place (the free peak's row keeps mu on the simplex);
        returns whether it converged within its cap, and the peak's step."""
        cap = _CG_MAX_ITER
        if best.gap <= accept:  # already certified: a long solve is not worth its cost
            cap = min(cap, _CG_GROWTH * max(counts) + _CG_SLACK)
        c = mu.sum() - 1.0
        used, dT = _projected_cg(b, c, x, p, sh, inv_beta, diag, schur, _CG_RTOL, cap)
        counts.append(used)
        return used < cap, dT

    def direction(target_mu, corr, out, x, t_aff):
        """The Newton direction for complementarity ``target_mu`` (``corr``: the affine
        direction, or none); ``x`` holds the warm start and returns the load-row solve."""
        rxz_t = target_mu - t * zt - t_aff
        rht = (mu - zt) - rxz_t / t
        r_load = T - load - t + theta_t * rht
        _reduced_rhs(
            p, y, zy, wy, mu, lam, theta, sh, inv_beta, target_mu, corr, rhy, r_load, r_bal
        )
        converged, dT = cg_solve(r_load, x)
        dmu = x
        primal, dual = _flow_direction(
            p, y, zy, wy, theta, sh, inv_beta, dmu, r_bal, rhy, target_mu, corr, out, q
        )
        dt = theta_t * (dmu - rht)
        dzt = (rxz_t - zt * dt) / t
        primal = min(primal, _ratio(t, dt))
        dual = min(dual, _ratio(zt, dzt))
        return dmu, dT, dt, dzt, primal, dual, converged

    flows_comp = _complementarity(p, y, zy, wy, step, 0.0, 0.0)
    for it in range(max_iter + 1):
        load = _helper_load(p, y)
        bound = dual_function(mu / mu.sum(), p.start, p.helper, device_time, k, weight, d, p.own)
        gap = load.max() / bound - 1.0
        if gap < best.gap:
            best = Solution(y.copy(), mu.copy(), gap, it, sum(counts))
        if gap <= target or it == max_iter:
            break
        comp = (flows_comp + _dot(t, zt)) / count
        schur = _normal_matrix(p, y, zy, wy, t, zt, theta, sh, inv_beta, diag)
        theta_t = t / zt
        x = x_prev.copy()
        _, _, dt, dzt, primal, dual, converged = direction(0.0, no_aff, aff, x, 0.0)
        if not converged:
            break
        comp_aff = (
            _complementarity(p, y, zy, wy, aff, primal, dual)
            + _dot(t + primal * dt, zt + dual * dzt)
        ) / count
        sigma = (comp_aff / comp) ** 3
        dmu, dT, dt, dzt, primal, dual, converged = direction(sigma * comp, aff, step, x, dt * dzt)
        if not converged:
            break
        x_prev = x
        primal *= _STEP_TO_BOUNDARY
        dual *= _STEP_TO_BOUNDARY
        flows_comp = _take_step(p, y, zy, wy, step, primal, dual)
        t += primal * dt
        T += primal * dT
        zt += dual * dzt
        mu -= dual * dmu
        lam += dual * q
    return best._replace(cg_iterations=sum(counts))
