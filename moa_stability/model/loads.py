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

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .display import html_summary
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
    km = net.k[layer]
    if net.selection is not None:
        return net.selection[layer].T @ net.arrival_rate
    if km == 0:
        return np.zeros(net.n)
    return km * _unit_helper_rates(net)


def _unit_helper_rates(net: MoANetwork) -> np.ndarray:
    """Helper jobs each device receives per unit of ``k`` under uniform selection:
    :func:`helper_rates` of a layer is ``k_m`` times this."""
    lam = net.arrival_rate
    if net.is_complete:
        return (lam.sum() - lam) / max(net.n - 1, 1)
    return net.topology.T @ (lam / net.degrees)


def job_rates(net: MoANetwork) -> np.ndarray:
    """Jobs per second of each type at each device, shape ``(3, n)``, rows in ``JOB_TYPES``.

    Uniform selection makes every layer's helper rates ``k_m`` times one vector, so the
    refine row is ``(M - 1) lambda + (k_2 + ... + k_M) h``: O(n + M) work, not O(n M) (10^6
    layers took 6 s one layer at a time)."""
    lam = network_field(net).arrival_rate
    rates = np.zeros((len(JOB_TYPES), net.n))
    rates[PROPOSE] = lam
    if net.M == 0:
        return rates
    rates[AGGREGATE] = lam
    if net.selection is not None:
        rates[PROPOSE] += helper_rates(net, 0)
        for layer in range(1, net.M):
            rates[REFINE] += lam + helper_rates(net, layer)
        return rates
    later = sum(net.k[1:])
    unit = _unit_helper_rates(net) if max(net.k) else np.zeros(net.n)
    rates[PROPOSE] += net.k[0] * unit
    rates[REFINE] = (net.M - 1) * lam + later * unit
    return rates


@dataclass(frozen=True, eq=False)
class LoadProfile:
    r"""The traffic equations of one network, solved once.

    Attributes
    ----------
    job_rates_per_s : ndarray
        ``(3, n)`` jobs per second by type (rows :data:`JOB_TYPES`) at each device.
    loads : ndarray
        :math:`\rho_i = \sum_c r_{i,c} E[S_{i,c}]` per device.
    scale : float
        :math:`\theta^* = 1/\max_i \rho_i`, the largest uniform scale of the rates keeping
        every device below load 1 (``inf`` when no device carries load).
    kelly_type : bool
        Whether the job types reaching each device share one mean service time there.
    """

    job_rates_per_s: np.ndarray
    loads: np.ndarray
    scale: float
    kelly_type: bool

    @property
    def max_load(self) -> float:
        r""":math:`\max_i \rho_i`."""
        return float(self.loads.max())

    def to_frame(self) -> pd.DataFrame:
        """One row per device: jobs per second by type and the load."""
        cols = {f"{c}_jobs_per_s": self.job_rates_per_s[i] for i, c in enumerate(JOB_TYPES)}
        return pd.DataFrame(
            {**cols, "load": self.loads}, index=pd.RangeIndex(self.loads.size, name="device")
        )

    def __repr__(self) -> str:
        return (
            f"LoadProfile(n={self.loads.size}, max_load={self.max_load:.6g}, "
            f"scale={self.scale:.6g}, kelly_type={self.kelly_type})"
        )

    def _repr_html_(self) -> str:
        return html_summary(repr(self), self.to_frame())


def load_profile(net: MoANetwork) -> LoadProfile:
    """Job rates, loads, the largest uniform scale and the Kelly-type flag of ``net``.

    Parameters
    ----------
    net : MoANetwork
        The network.

    Examples
    --------
    >>> from moa_stability import MoANetwork
    >>> load_profile(MoANetwork(n=4, M=2, k=2, arrival_rate=0.025, service_time=1.0))
    LoadProfile(n=4, max_load=0.175, scale=5.71429, kelly_type=True)
    """
    rates = job_rates(net)
    rho = (rates * net.service_time).sum(axis=0)
    rho.setflags(write=False)
    rates.setflags(write=False)
    peak = rho.max()
    used = rates > 0
    high = np.where(used, net.service_time, -np.inf).max(axis=0)
    low = np.where(used, net.service_time, np.inf).min(axis=0)
    busy = used.any(axis=0)
    return LoadProfile(
        job_rates_per_s=rates,
        loads=rho,
        scale=float("inf") if peak == 0 else float(1.0 / peak),
        kelly_type=bool(np.all(high[busy] - low[busy] <= 1e-12 * high[busy])),
    )


def loads(net: MoANetwork) -> np.ndarray:
    r"""Per-device load :math:`\rho_i = \sum_c r_{i,c} E[S_{i,c}]` (busy fraction if stable).

    Examples
    --------
    >>> from moa_stability import MoANetwork, loads
    >>> loads(MoANetwork(n=4, M=2, k=2, arrival_rate=0.025, service_time=1.0))
    array([0.175, 0.175, 0.175, 0.175])
    """
    return load_profile(net).loads.copy()


def max_uniform_scale(net: MoANetwork) -> float:
    r"""Largest :math:`\theta` with :math:`\rho_i(\theta\lambda) < 1` for all :math:`i`
    (a supremum: :math:`\theta^* = 1/\max_i \rho_i`, ``inf`` when no device carries load)."""
    return load_profile(net).scale


def kelly_type(net: MoANetwork) -> bool:
    """Whether the job types that reach each device share one mean service time there.

    Then the network is a Kelly-type FCFS fork-join network and ``rho_i < 1`` for all ``i`` is
    sufficient for stability, not only necessary (docs/model.md section 2.5).
    """
    return load_profile(net).kelly_type


# ---- the load matrix: rho = A lambda -------------------------------------------------------
def own_work(net: MoANetwork) -> np.ndarray:
    r"""Seconds of work one prompt puts on its own device:
    :math:`w_i = s_{P,i} + (M-1)\,s_{R,i} + s_{A,i}` (:math:`s_{P,i}` when :math:`M = 0`)."""
    s = net.service_time
    if net.M == 0:
        return s[PROPOSE].copy()
    return s[PROPOSE] + (net.M - 1) * s[REFINE] + s[AGGREGATE]


def helper_work(net: MoANetwork, layer: int) -> np.ndarray:
    """Mean seconds of one helper job of ``layer`` (0-based) at each device: layer 1 helpers
    run ``propose`` jobs, later layers ``refine`` jobs."""
    return net.service_time[PROPOSE if layer == 0 else REFINE]


def load_matrix(net: MoANetwork) -> sp.csr_array:
    r"""The sparse ``(n, n)`` matrix :math:`A` with :math:`\rho = A\lambda` for the network's
    own selection rule,

    .. math::

        A = \operatorname{diag}(w) + \operatorname{diag}(s_{\mathrm P})\,\Pi_1^\top
            + \textstyle\sum_{m=2}^{M} \operatorname{diag}(s_{\mathrm R})\,\Pi_m^\top;

    ``load_matrix(net) @ net.arrival_rate`` equals ``loads(net)``.
    """
    net = network_field(net)
    if net.selection is None and not net.is_complete:
        # Uniform on a symmetric graph: A[i, j] = w_i [i = j] + c_i / deg_j for j in N(i), with
        # c_i = sum_m k_m s_{m,i}, written straight onto the adjacency's pattern (the general
        # sum of transposed products takes seconds at 10^6 devices).
        c = sum((km * helper_work(net, m) for m, km in enumerate(net.k)), np.zeros(net.n))
        adj = net.topology
        rows = np.repeat(np.arange(net.n), np.diff(adj.indptr))
        helpers = sp.csr_array(
            (c[rows] / net.degrees[adj.indices], adj.indices, adj.indptr), shape=adj.shape
        )
        return sp.csr_array(sp.diags_array(own_work(net)) + helpers)
    A = sp.diags_array(own_work(net))
    for m, km in enumerate(net.k):
        if km:
            A = A + sp.diags_array(helper_work(net, m)) @ net.inclusion(m).T
    return sp.csr_array(A)
