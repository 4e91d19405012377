r"""Symbolic derivations (sympy): traffic equations, loads, stability conditions, slotted drift.

Each function derives its result from first principles rather than typing it in, and returns a
:class:`Derivation` that prints as LaTeX in a notebook:

* :func:`symmetric_network` — the paper's setting in symbols :math:`n, k, M, \lambda, \alpha`:
  the chance a device is among the :math:`k` helpers, :math:`\binom{n-2}{k-1}/\binom{n-1}{k}
  = k/(n-1)`, the per-device job rate :math:`\lambda((k+1)M+1)` and Theorem 1.
* :func:`symmetric_network_by_type` — the same with per-type means
  :math:`\alpha_p, \alpha_r, \alpha_a`: the type-aware condition.
* :func:`device_loads` — one expression per device of a concrete :class:`MoANetwork`;
  :func:`load_function` lambdifies them.
* :func:`slotted_queue` — the single slotted queue: quadratic Lyapunov drift, Foster's
  condition, the drift threshold and the stationary law from the balance equations.
* :func:`network_drift` — the slotted symmetric network: a quadratic Lyapunov function of the
  per-device workloads including the work prompts will still bring, its one-slot drift, the
  constant :math:`B`, the type-aware condition, and the join state where the drift is positive.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache

import numpy as np
import sympy as sp

from ..model.network import JOB_TYPES, MoANetwork, count_field, job_types_used, number_field


@dataclass(frozen=True)
class Derivation:
    """Named sympy results of one derivation, in the order they were derived."""

    title: str
    results: dict[str, sp.Basic]

    def __getitem__(self, name: str) -> sp.Basic:
        return self.results[name]

    def to_latex(self) -> dict[str, str]:
        """Each result as a LaTeX string."""
        return {name: sp.latex(expr) for name, expr in self.results.items()}

    def _repr_latex_(self) -> str:
        rows = [
            rf"\text{{{name.replace('_', ' ')}}} &: {tex}" for name, tex in self.to_latex().items()
        ]
        return r"$\begin{aligned}" + r"\\ ".join(rows) + r"\end{aligned}$"

    def __str__(self) -> str:
        width = max(map(len, self.results))
        lines = [self.title] + [
            f"  {name:<{width}} : {expr}" for name, expr in self.results.items()
        ]
        return "\n".join(lines)


def _symmetric_symbols() -> tuple[sp.Symbol, ...]:
    n, k, M = sp.symbols("n k M", positive=True, integer=True)
    lam, alpha = sp.symbols("lambda alpha", positive=True)
    return n, k, M, lam, alpha


def _per_layer_rates(n: sp.Symbol, k: sp.Symbol, lam: sp.Symbol) -> dict[str, sp.Basic]:
    """Own and helper job rates per layer at one device of the symmetric network."""
    # A given other origin picks k of its n-1 neighbours; the k-subsets containing a given
    # device number C(n-2, k-1) of the C(n-1, k).
    chosen_raw = sp.binomial(n - 2, k - 1) / sp.binomial(n - 1, k)
    chosen = sp.combsimp(chosen_raw)
    return {
        "P_chosen_raw": chosen_raw,
        "P_chosen": chosen,
        "own_rate_per_layer": lam,
        "helper_rate_per_layer": sp.simplify((n - 1) * lam * chosen),
    }


def symmetric_network() -> Derivation:
    r"""Theorem 1 of the paper, derived: per-device job rate and the stability condition.

    A device runs its own prompts in each of the :math:`M` layers and once more to aggregate
    (:math:`(M+1)\lambda`), and helps each of the other :math:`n-1` origins in each layer with
    probability :math:`\binom{n-2}{k-1}/\binom{n-1}{k}`.

    Returns
    -------
    Derivation
        ``P_chosen`` (:math:`k/(n-1)`), ``helper_rate_per_layer`` (:math:`k\lambda`),
        ``job_rate`` (:math:`\lambda((k+1)M+1)`), ``load``, ``condition``, ``threshold_rate``.
    """
    n, k, M, lam, alpha = _symmetric_symbols()
    layer = _per_layer_rates(n, k, lam)
    rate = sp.factor(M * (layer["own_rate_per_layer"] + layer["helper_rate_per_layer"]) + lam)
    load = alpha * rate
    results = {
        **layer,
        "job_rate": rate,
        "load": load,
        "condition": sp.StrictLessThan(load, 1),
        "threshold_rate": sp.solve(sp.Eq(load, 1), lam)[0],
    }
    return Derivation("Symmetric network (paper's Theorem 1)", results)


@cache
def _service_symbols() -> tuple[sp.Symbol, sp.Symbol, sp.Symbol]:
    """The mean seconds of propose, refine and aggregate jobs, made once so that the
    derivation and its numeric form share them."""
    return sp.symbols("alpha_p alpha_r alpha_a", positive=True)


def symmetric_network_by_type() -> Derivation:
    r"""The type-aware condition: propose, refine and aggregate jobs with their own means.

    Per device: propose jobs :math:`(k+1)\lambda` (layer 1), refine jobs :math:`(k+1)(M-1)
    \lambda` (layers :math:`2..M`), aggregate jobs :math:`\lambda`, for :math:`M \ge 1`, so

    .. math:: \rho = \lambda\big((k+1)\alpha_p + (k+1)(M-1)\alpha_r + \alpha_a\big) < 1.
    """
    n, k, M, lam, _ = _symmetric_symbols()
    a_p, a_r, a_a = _service_symbols()
    layer = _per_layer_rates(n, k, lam)
    per_layer = sp.simplify(layer["own_rate_per_layer"] + layer["helper_rate_per_layer"])
    rates = {
        "propose_rate": per_layer,
        "refine_rate": sp.factor((M - 1) * per_layer),
        "aggregate_rate": lam,
    }
    means = {"propose_rate": a_p, "refine_rate": a_r, "aggregate_rate": a_a}
    load = lam * sum(sp.factor(rates[c] / lam) * a for c, a in means.items())
    results = {
        **rates,
        "load": load,
        "condition": sp.StrictLessThan(load, 1),
        "threshold_rate": 1 / sp.cancel(load / lam),
    }
    return Derivation("Symmetric network, type-aware service times", results)


@cache
def _type_aware_lambda() -> Callable[..., float]:
    _, k, M, _, _ = _symmetric_symbols()
    expr = symmetric_network_by_type()["threshold_rate"]
    return sp.lambdify((M, k, *_service_symbols()), expr, modules="math")


def type_aware_threshold(M: int, k: int, means: Mapping[str, float]) -> float:
    r"""Largest stable per-device rate of the symmetric network (complete graph, equal rates),
    with each job type at its own mean: the ``threshold_rate`` of
    :func:`symmetric_network_by_type`, evaluated,

    .. math:: \lambda^* = \frac{1}{(k+1)\alpha_p + (k+1)(M-1)\alpha_r + \alpha_a}
        \quad (M \ge 1), \qquad \lambda^* = \frac{1}{\alpha_p} \quad (M = 0).

    Parameters
    ----------
    M : int
        MoA layers, ``>= 0``.
    k : int
        Extra proposers per layer, ``>= 0``.
    means : mapping of str to float
        Mean seconds by job type: ``propose`` always; ``refine`` when ``M >= 2`` and
        ``aggregate`` when ``M >= 1`` (a type that does not occur may be left out).

    Examples
    --------
    >>> type_aware_threshold(2, 2, {"propose": 1.0, "refine": 2.0, "aggregate": 3.0})
    0.08333333333333333
    """
    M, k = count_field("M", M, 0), count_field("k", k, 0)
    if not isinstance(means, Mapping):
        raise ValueError(
            f"means={means!r}: must map job types to mean seconds; pass e.g. "
            '{"propose": 1.0, "refine": 2.0, "aggregate": 3.0}'
        )
    missing = [c for c in job_types_used(M) if c not in means]
    if missing:
        raise ValueError(
            f"means={dict(means)}: no mean for {missing}, which occur when M={M}; add them"
        )
    unknown = [c for c in means if c not in JOB_TYPES]
    if unknown:
        raise ValueError(f"means={dict(means)}: unknown job types {unknown}; use {JOB_TYPES}")
    mean = {}
    for c in job_types_used(M):  # the means that enter the threshold: finite and > 0
        mean[c] = number_field(f"means[{c!r}]", means[c], "pass a mean in seconds > 0")
        if mean[c] <= 0:
            raise ValueError(f"means[{c!r}]={mean[c]!r}: must be > 0; pass a mean in seconds > 0")
    if M == 0:  # one propose job on the origin; the derivation's layers start at M = 1
        return 1.0 / mean["propose"]
    alpha_p = mean["propose"]
    return float(
        _type_aware_lambda()(M, k, alpha_p, mean.get("refine", alpha_p), mean["aggregate"])
    )


def _inclusion_entries(net: MoANetwork, layer: int) -> list[dict[int, sp.Basic]]:
    """Column view of pi for ``layer``: for each helper i, {origin j: pi[j, i]} exactly."""
    columns: list[dict[int, sp.Basic]] = [{} for _ in range(net.n)]
    adj = net.adjacency
    pi = net.selection[layer] if net.selection is not None else None
    for j in range(net.n):
        lo, hi = adj.indptr[j], adj.indptr[j + 1]
        for i in adj.indices[lo:hi]:
            if pi is None:  # uniform: exact rational k_m / deg(j)
                columns[i][j] = sp.Rational(net.k[layer], int(net.degrees[j]))
            elif pi[j, i] != 0:
                columns[i][j] = sp.nsimplify(float(pi[j, i]), rational=True)
    return columns


def device_loads(
    net: MoANetwork, symbolic_rates: bool = True, symbolic_service: bool = True
) -> tuple[list[sp.Basic], dict[str, object]]:
    r"""One load expression per device of a concrete network, from the traffic equations.

    Parameters
    ----------
    net : MoANetwork
        The network; its graph and selection enter as exact rationals.
    symbolic_rates, symbolic_service : bool
        Use symbols :math:`\lambda_i` and :math:`S_{c,i}` (else the network's numbers).

    Returns
    -------
    loads : list of sympy expressions
        :math:`\rho_i = \sum_c r_{i,c} S_{c,i}`.
    symbols : dict
        ``"rates"``: the :math:`\lambda_i` symbols and ``"service"``: an ``(3, n)`` nested list
        of :math:`S_{c,i}` symbols (only those that are symbolic).
    """
    n = net.n
    lam = (
        list(sp.symbols(f"lambda_0:{n}", nonnegative=True))
        if symbolic_rates
        else [sp.nsimplify(float(x), rational=True) for x in net.arrival_rate]
    )
    service = [
        [
            sp.Symbol(f"S_{c}_{i}", positive=True)
            if symbolic_service
            else sp.nsimplify(float(net.service_time[t, i]), rational=True)
            for i in range(n)
        ]
        for t, c in enumerate(JOB_TYPES)
    ]
    per_layer = []
    for m in range(net.M):
        cols = _inclusion_entries(net, m)
        per_layer.append(
            [
                lam[i] + sum((p * lam[j] for j, p in cols[i].items()), sp.Integer(0))
                for i in range(n)
            ]
        )
    expressions = []
    for i in range(n):
        propose = per_layer[0][i] if net.M else lam[i]
        refine = sum((per_layer[m][i] for m in range(1, net.M)), sp.Integer(0))
        aggregate = lam[i] if net.M else sp.Integer(0)
        expressions.append(
            sp.expand(propose * service[0][i] + refine * service[1][i] + aggregate * service[2][i])
        )
    symbols = {
        "rates": lam if symbolic_rates else [],
        "service": service if symbolic_service else [],
    }
    return expressions, symbols


def load_function(net: MoANetwork) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """``f(arrival_rate, service_time)`` -> per-device loads, lambdified from
    :func:`device_loads` (``arrival_rate`` of shape ``(n,)``, ``service_time`` ``(3, n)``)."""
    expressions, symbols = device_loads(net)
    flat_service = [s for row in symbols["service"] for s in row]
    f = sp.lambdify([symbols["rates"], flat_service], expressions, modules="numpy")

    def loads(arrival_rate: np.ndarray, service_time: np.ndarray) -> np.ndarray:
        rate = np.broadcast_to(np.asarray(arrival_rate, dtype=float), (net.n,))
        times = np.broadcast_to(np.asarray(service_time, dtype=float), (3, net.n))
        return np.asarray(f(list(rate), list(times.ravel())), dtype=float)

    return loads


def slotted_queue() -> Derivation:
    r"""The single slotted queue of docs/model.md section 3, derived.

    Per slot, service completes with probability :math:`q` (if the queue is non-empty), then a
    job arrives with probability :math:`p`: :math:`Q' = \max(Q - S, 0) + A`. For
    :math:`Q \ge 1` the quadratic Lyapunov drift
    :math:`E[Q'^2 - Q^2 \mid Q]/2 = Q(p - q) + (p + q - 2pq)/2` is negative outside a finite
    set iff :math:`p < q` (Foster). The chain is birth-death; the cut equations
    :math:`\pi_0 p = \pi_1 q(1-p)` and :math:`\pi_j p(1-q) = \pi_{j+1} q(1-p)` give
    :math:`\pi_0 = 1 - p/q` and :math:`E[Q] = p(1-p)/(q-p)`.
    """
    p, q = sp.symbols("p q", positive=True)
    Q = sp.Symbol("Q", positive=True, integer=True)
    outcomes = [(a, s) for a in (0, 1) for s in (0, 1)]
    prob = {(a, s): (p if a else 1 - p) * (q if s else 1 - q) for a, s in outcomes}
    drift = sp.factor_terms(
        sp.expand(sum(prob[a, s] * ((Q - s + a) ** 2 - Q**2) / 2 for a, s in outcomes))
    )
    drift = sp.collect(sp.expand(drift), Q)
    slope = sp.expand(drift).coeff(Q, 1)
    threshold = sp.solve(sp.Eq(drift, 0), Q)[0]

    pi0, pi1 = sp.symbols("pi_0 pi_1", positive=True)
    j = sp.Symbol("j", integer=True, nonnegative=True)
    first = sp.solve(sp.Eq(pi0 * p, pi1 * q * (1 - p)), pi1)[0]
    ratio = sp.simplify(p * (1 - q) / (q * (1 - p)))
    r = sp.Symbol("r", positive=True)

    def geometric_sum(term: sp.Basic) -> sp.Basic:
        # sympy returns Piecewise((closed form, r < 1), (Sum, True)); stability means r < 1.
        total = sp.summation(term, (j, 1, sp.oo))
        return sp.piecewise_fold(total).args[0][0]

    mass = pi0 + geometric_sum(first * r ** (j - 1))
    pi0_value = sp.solve(sp.Eq(mass.subs(r, ratio), 1), pi0)[0]
    mean = geometric_sum(j * first * r ** (j - 1)).subs(r, ratio).subs(pi0, pi0_value)
    results = {
        "drift": drift,
        "drift_slope": slope,
        "foster_condition": sp.StrictLessThan(p, q),
        "drift_threshold": sp.factor(threshold),
        "P_empty": sp.simplify(pi0_value),
        "mean_queue": sp.factor(sp.simplify(mean)),
    }
    return Derivation("Slotted Geo/Geo/1 queue", results)


def slotted_mean_queue(p: float, q: float) -> float:
    """Stationary mean of the slotted queue, from :func:`slotted_queue`'s derived expression."""
    return _slotted_lambdas()["mean_queue"](p, q)


def slotted_empty_probability(p: float, q: float) -> float:
    """Stationary ``P(Q = 0)`` of the slotted queue, from the derived expression."""
    return _slotted_lambdas()["P_empty"](p, q)


@cache
def _slotted_lambdas() -> dict[str, Callable[[float, float], float]]:
    d = slotted_queue()
    p, q = sp.symbols("p q", positive=True)
    return {
        name: sp.lambdify((p, q), d[name], modules="math") for name in ("mean_queue", "P_empty")
    }


def network_drift() -> Derivation:
    r"""The one-slot drift of the slotted symmetric network (complete graph, uniform selection,
    per-device prompt probability :math:`p`, service probabilities :math:`q_p, q_r, q_a` by job
    type), derived from the slot's events (docs/stability.md); :math:`M \ge 1` (:math:`M = 0` is
    :func:`slotted_queue`).

    **State.** Per device :math:`i`: the jobs :math:`N_{i,c}` of each type queued there (in
    service included); per origin :math:`j` and stage :math:`m` (layer :math:`1..M`, then the
    aggregate): the prompts :math:`P_{j,m}` at that stage. **Workload** in slots, counting the
    jobs prompts will still create (:math:`\kappa = k/(n-1)` the chance a device helps):

    .. math:: W_i = \sum_c \frac{N_{i,c}}{q_c} + \sum_m P_{i,m} f_{own}(m)
        + \sum_{j \ne i}\sum_m P_{j,m} f_{help}(m), \quad
        f_{own}(m) = \frac{M-m}{q_r} + \frac{1}{q_a}, \ f_{help}(m) = \frac{(M-m)\kappa}{q_r}

    (:math:`f = 0` at the aggregate stage). A queued job's expected remaining slots are
    :math:`1/q_c` (geometric service is memoryless), so a completion removes :math:`1/q_c` with
    probability :math:`q_c`: :math:`-b_i` in expectation, :math:`b_i = [N_i \ge 1]`, whatever
    the type served. A join that closes only replaces expected future work by placed jobs (zero
    mean), and a prompt adds its whole expected work. Hence, for **every** discipline,

    .. math:: E[W_i' - W_i \mid X] = \rho - b_i, \qquad
        \rho = p\Big(\frac{k+1}{q_p} + \frac{(k+1)(M-1)}{q_r} + \frac{1}{q_a}\Big),

    and with :math:`V = \tfrac12\sum_i W_i^2`,
    :math:`E[V' - V \mid X] = \sum_i W_i(\rho - b_i) + \tfrac12\sum_i E[(W_i'-W_i)^2 \mid X]
    \le \sum_i W_i(\rho - b_i) + B`, :math:`B = nD^2/2` with :math:`D` a bound on
    :math:`|W_i' - W_i|` (one completion and up to :math:`n` join closures at most :math:`1/q`
    each, one prompt per origin).

    If a work-conserving device is never idle while :math:`W_i > 0` (:math:`k = 0`, or
    :math:`M = 0`), the drift is :math:`\le -(1-\rho)\sum_i W_i + B`: negative outside the
    finite set :math:`\sum_i W_i \le B/(1-\rho)` iff :math:`\rho < 1` (Foster). With
    :math:`k, M \ge 1` a device can be idle while its future work waits upstream at a join, and
    the drift can be positive below capacity: ``join_state_drift`` (:math:`n = 2, M = k = 1`,
    :math:`N` prompts of origin 0 whose helper job waits at device 1 while device 0 is empty).

    Returns
    -------
    Derivation
        ``P_chosen``, ``own_future_work``, ``helper_future_work``, ``closure_change_own``,
        ``closure_change_helper`` (both 0), ``expected_increment`` (:math:`\rho - b_i`),
        ``load`` (:math:`\rho`), ``first_order_drift``, ``D``, ``B``, ``condition``,
        ``finite_set_bound``, ``join_state_drift``, ``join_state_positive_if``.
    """
    n, k, M, _, _ = _symmetric_symbols()
    p, b, N = sp.Symbol("p", positive=True), sp.Symbol("b_i"), sp.Symbol("N", positive=True)
    q_p, q_r, q_a = sp.symbols("q_p q_r q_a", positive=True)
    m = sp.Symbol("m", positive=True, integer=True)
    chosen = _per_layer_rates(n, k, p)["P_chosen"]

    def f_own(stage: sp.Basic) -> sp.Basic:
        return (M - stage) / q_r + 1 / q_a

    def f_help(stage: sp.Basic) -> sp.Basic:
        return (M - stage) * chosen / q_r

    # A closing join of stage m < M places the next layer's jobs where the future work expected
    # them; closing stage M places the aggregate (f_own(M) = 1/q_a).
    closure_own = sp.simplify(1 / q_r + f_own(m + 1) - f_own(m))
    closure_own_last = sp.simplify(1 / q_a - f_own(M))
    closure_help = sp.simplify(chosen / q_r + f_help(m + 1) - f_help(m))
    own_arrival = 1 / q_p + f_own(1)
    other_arrival = chosen / q_p + f_help(1)
    completion = -b * q_p * (1 / q_p)  # the same for every type: q_c * (1/q_c)
    per_prompt = sp.expand(sp.cancel(own_arrival + (n - 1) * other_arrival))
    load = p * sp.collect(per_prompt, [1 / q_p, 1 / q_r, 1 / q_a], func=sp.factor)
    increment = load + completion
    i = sp.Symbol("i", positive=True, integer=True)
    W, bi = sp.IndexedBase("W"), sp.IndexedBase("b")
    first_order = sp.Sum(W[i] * (load - bi[i]), (i, 1, n))
    up = own_arrival + (n - 1) * (1 / q_p + f_help(1)) + n / q_r
    down = sp.Max(1 / q_p, 1 / q_r, 1 / q_a) + n / q_r
    D = sp.collect(sp.expand(up + down), [1 / q_p, 1 / q_r, 1 / q_a], func=sp.factor)
    B = n * D**2 / 2
    # The join state: W_0 = N / q_a (aggregates still to come), device 0 idle; W_1 = N / q_p.
    small = {n: 2, M: 1, k: 1}
    rho_small = load.subs(small)
    join_drift = sp.factor(N / q_a * rho_small + N / q_p * (rho_small - 1))
    rho = sp.Symbol("rho", positive=True)
    positive_if = sp.solve(N / q_a * rho + N / q_p * (rho - 1) > 0, rho)
    results = {
        "P_chosen": chosen,
        "own_future_work": f_own(m),
        "helper_future_work": f_help(m),
        "closure_change_own": sp.simplify(closure_own + closure_own_last),
        "closure_change_helper": closure_help,
        "expected_increment": increment,
        "load": load,
        "first_order_drift": first_order,
        "D": D,
        "B": B,
        "condition": sp.StrictLessThan(load, 1),
        "finite_set_bound": B / (1 - load),
        "join_state_drift": join_drift,
        "join_state_positive_if": positive_if,
    }
    return Derivation("Slotted symmetric network: workload drift", results)


__all__ = [
    "Derivation",
    "device_loads",
    "load_function",
    "network_drift",
    "slotted_empty_probability",
    "slotted_mean_queue",
    "slotted_queue",
    "symmetric_network",
    "symmetric_network_by_type",
    "type_aware_threshold",
]
