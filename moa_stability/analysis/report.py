r"""The stability report: exact per-device condition beside the paper's Theorem 1 / Remark 1.

The exact condition is :math:`\rho_i < 1` at every device (necessary always; sufficient when
the network is Kelly-type, see :func:`moa_stability.model.loads.kelly_type`). The paper's Remark 1
reads :math:`\alpha_{\max}\,((k+1)M+1)\,\lambda < 1`; for it the report takes
:math:`\lambda = \max_i \lambda_i` and :math:`\alpha_i` the mean inference time at device
:math:`i` over all jobs it runs (:math:`\rho_i / \sum_c r_{i,c}`), which is what timing every
inference on the device measures.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..model.loads import _kelly, _loads, _scale, job_rates
from ..model.network import JOB_TYPES, MoANetwork

_VERDICT_TEXT = {
    "stable": "stable: every rho_i < 1 and the network is Kelly-type, so this is sufficient",
    "unstable": "unstable: some rho_i >= 1, so that queue cannot stay bounded",
    "undetermined": (
        "every rho_i < 1 (necessary), but job types at a device differ in mean "
        "service time, so FCFS stability is not guaranteed: check with "
        "moa_stability.simulation.simulate"
    ),
}


@dataclass(frozen=True)
class StabilityReport:
    """Per-device loads, the verdict, and the paper's verdict beside it.

    Attributes
    ----------
    loads : ndarray
        :math:`\\rho_i` per device.
    job_rates_per_s : ndarray
        ``(3, n)`` job arrival rates by type (rows ``propose, refine, aggregate``).
    max_load, margin : float
        :math:`\\max_i \\rho_i` and :math:`1 - \\max_i \\rho_i`.
    bottlenecks : tuple of int
        Devices attaining the maximum load.
    kelly_type : bool
        Whether ``rho < 1`` is sufficient (``True``) or only necessary.
    verdict : {"stable", "unstable", "undetermined"}
    theta_star : float
        Largest uniform scale of the given rates keeping every device below 1.
    paper_alpha_s, paper_rate_per_s, paper_inferences : float, float, int
        :math:`\\alpha_{\\max}`, :math:`\\lambda` and :math:`(k+1)M+1` as Remark 1 uses them.
    paper_load, paper_theta : float
        Remark 1's load :math:`\\alpha_{\\max}((k+1)M+1)\\lambda` and the scale it allows.
    paper_verdict : {"stable", "unstable"}
    """

    network: MoANetwork = field(repr=False)
    loads: np.ndarray
    job_rates_per_s: np.ndarray
    max_load: float
    margin: float
    bottlenecks: tuple[int, ...]
    kelly_type: bool
    verdict: str
    theta_star: float
    paper_alpha_s: float
    paper_rate_per_s: float
    paper_inferences: int
    paper_load: float
    paper_theta: float
    paper_verdict: str

    @property
    def paper_vs_exact(self) -> float:
        """``paper_theta / theta_star``: > 1 the paper over-promises, < 1 it is pessimistic."""
        if np.isinf(self.theta_star):
            return float("nan")
        return self.paper_theta / self.theta_star

    def to_frame(self) -> pd.DataFrame:
        """One row per device: rates by job type, mean service seconds, load, bottleneck."""
        net = self.network
        cols: dict[str, np.ndarray] = {"arrival_rate_per_s": net.arrival_rate}
        for i, c in enumerate(JOB_TYPES):
            cols[f"{c}_jobs_per_s"] = self.job_rates_per_s[i]
        for i, c in enumerate(JOB_TYPES):
            cols[f"{c}_mean_s"] = net.service_time[i]
        cols["load"] = self.loads
        frame = pd.DataFrame(cols, index=pd.RangeIndex(net.n, name="device"))
        frame["bottleneck"] = frame.index.isin(self.bottlenecks)
        return frame

    def __str__(self) -> str:
        net = self.network
        shown = ", ".join(f"{x:.4g}" for x in self.loads[:8]) + (" ..." if net.n > 8 else "")
        ratio = self.paper_vs_exact
        if not np.isfinite(ratio):
            cmp = "no device carries load"
        elif abs(ratio - 1) < 1e-9:
            cmp = "the paper's bound is exact here"
        elif ratio > 1:
            cmp = f"the paper over-promises: it allows {ratio:.3g}x the exact maximal rates"
        else:
            cmp = f"the paper is pessimistic: it allows only {ratio:.3g}x the exact maximum"
        lines = [
            repr(net),
            f"loads rho_i           : {shown}",
            f"max load              : {self.max_load:.6g} at device(s) "
            f"{list(self.bottlenecks)[:10]} (margin {self.margin:.6g})",
            f"verdict               : {_VERDICT_TEXT[self.verdict]}",
            f"max uniform scale     : theta* = {self.theta_star:.6g} x the given rates",
            f"paper (Remark 1)      : alpha_max={self.paper_alpha_s:.6g} s x "
            f"((k+1)M+1)={self.paper_inferences} x lambda={self.paper_rate_per_s:.6g}/s "
            f"= {self.paper_load:.6g} -> {self.paper_verdict}, theta={self.paper_theta:.6g}",
            f"paper vs exact        : {cmp}",
        ]
        return "\n".join(lines)


def _paper_alpha(net: MoANetwork, rates: np.ndarray, rho: np.ndarray) -> float:
    """Remark 1's alpha_max: the largest per-device mean inference time over the jobs it runs."""
    jobs = rates.sum(axis=0)
    busy = jobs > 0
    if not busy.any():
        return float(net.service_time[0].max())
    return float((rho[busy] / jobs[busy]).max())


def stability_report(net: MoANetwork) -> StabilityReport:
    """Check the stability of ``net`` and compare with the paper's Theorem 1 / Remark 1.

    Examples
    --------
    >>> from moa_stability import MoANetwork, stability_report
    >>> r = stability_report(MoANetwork(n=4, M=2, k=2, arrival_rate=0.25, service_time=1.0))
    >>> r.verdict, r.max_load
    ('unstable', 1.75)
    """
    rates = job_rates(net)  # checks that net is a MoANetwork
    rho = _loads(net, rates)
    peak = float(rho.max())
    kelly = _kelly(net, rates)
    verdict = "unstable" if peak >= 1 else "stable" if kelly else "undetermined"
    alpha = _paper_alpha(net, rates, rho)
    lam = float(net.arrival_rate.max())
    K = net.inferences_per_prompt
    paper_load = alpha * K * lam
    return StabilityReport(
        network=net,
        loads=rho,
        job_rates_per_s=rates,
        max_load=peak,
        margin=1.0 - peak,
        bottlenecks=tuple(int(i) for i in np.flatnonzero(rho >= peak * (1 - 1e-12))),
        kelly_type=kelly,
        verdict=verdict,
        theta_star=_scale(rho),
        paper_alpha_s=alpha,
        paper_rate_per_s=lam,
        paper_inferences=K,
        paper_load=paper_load,
        paper_theta=float("inf") if paper_load == 0 else 1.0 / paper_load,
        paper_verdict="stable" if paper_load < 1 else "unstable",
    )
