r"""Traffic equations and per-device loads.

For a prompt born at device :math:`j` (rate :math:`\lambda_j`), layer :math:`m` runs one job on
:math:`j` and one on each helper :math:`i` with probability :math:`\pi_m[j, i]`. Summing over
origins gives the rate of each job type :math:`c` at device :math:`i`:

.. math::

    r_{i,\mathrm{propose}} &= \lambda_i + \textstyle\sum_j \lambda_j \pi_1[j, i]
        \quad(\text{only } \lambda_i \text{ when } M = 0),\\
    r_{i,\mathrm{refine}} &= \textstyle\sum_{m=2}^{M} \big(\lambda_i + \sum_j \lambda_j
        \pi_m[j, i]\big),\\
    r_{i,\mathrm{aggregate}} &= \lambda_i \,[M \ge 1],

and the load :math:`\rho_i = \sum_c r_{i,c}\,E[S_{i,c}]`. Every rate is linear in
:math:`\lambda`, so the largest uniform scale of the rates that keeps every device below 1 is
:math:`\theta^* = 1/\max_i \rho_i`.
"""

from __future__ import annotations

import numpy as np

from .network import (
    AGGREGATE,
    JOB_TYPES,
    PROPOSE,
    REFINE,
    MoANetwork,
    count_field,
    network_field,
)


def helper_rates(net: MoANetwork, layer: int) -> np.ndarray:
    r"""Rate of helper jobs each device receives in layer ``layer`` (0-based):
    :math:`\sum_j \lambda_j \pi_m[j, i]`.

    Uniform selection never builds ``pi``: it is :math:`A^\top (\lambda k_m / d)` on a sparse
    graph and :math:`k_m (\Lambda - \lambda_i)/(n-1)` on the complete graph.
    """
    net = network_field(net)
    if net.M == 0:
        raise ValueError(f"layer={layer!r}: M=0 has no helper layers; use a network with M >= 1")
    layer = count_field("layer", layer, 0, net.M - 1)
    lam, km = net.arrival_rate, net.k[layer]
    if net.selection is not None:
        return net.selection[layer].T @ lam
    if km == 0:
        return np.zeros(net.n)
    if net.is_complete:
        return km * (lam.sum() - lam) / (net.n - 1)
    return net.topology.T @ (lam * km / net.degrees)


def job_rates(net: MoANetwork) -> np.ndarray:
    """Jobs per second of each type at each device, shape ``(3, n)``, rows in ``JOB_TYPES``."""
    lam = network_field(net).arrival_rate
    rates = np.zeros((len(JOB_TYPES), net.n))
    rates[PROPOSE] = lam
    if net.M >= 1:
        rates[PROPOSE] += helper_rates(net, 0)
        for layer in range(1, net.M):
            rates[REFINE] += lam + helper_rates(net, layer)
        rates[AGGREGATE] = lam
    return rates


def _loads(net: MoANetwork, rates: np.ndarray) -> np.ndarray:
    return (rates * net.service_time).sum(axis=0)


def _scale(rho: np.ndarray) -> float:
    peak = rho.max()
    return float("inf") if peak == 0 else float(1.0 / peak)


def _kelly(net: MoANetwork, rates: np.ndarray) -> bool:
    used = rates > 0
    high = np.where(used, net.service_time, -np.inf).max(axis=0)
    low = np.where(used, net.service_time, np.inf).min(axis=0)
    busy = used.any(axis=0)
    return bool(np.all(high[busy] - low[busy] <= 1e-12 * high[busy]))


def loads(net: MoANetwork) -> np.ndarray:
    r"""Per-device load :math:`\rho_i = \sum_c r_{i,c} E[S_{i,c}]` (busy fraction if stable).

    Examples
    --------
    >>> from moa_stability import MoANetwork, loads
    >>> loads(MoANetwork(n=4, M=2, k=2, arrival_rate=0.025, service_time=1.0))
    array([0.175, 0.175, 0.175, 0.175])
    """
    return _loads(network_field(net), job_rates(net))


def max_uniform_scale(net: MoANetwork) -> float:
    r"""Largest :math:`\theta` with :math:`\rho_i(\theta\lambda) < 1` for all :math:`i`
    (a supremum: :math:`\theta^* = 1/\max_i \rho_i`, ``inf`` when no device carries load)."""
    return _scale(loads(net))


def kelly_type(net: MoANetwork) -> bool:
    """Whether the job types that reach each device share one mean service time there.

    Then the network is a Kelly-type FCFS fork-join network and ``rho_i < 1`` for all ``i`` is
    sufficient for stability, not only necessary (docs/model.md section 2.5).
    """
    return _kelly(network_field(net), job_rates(net))
