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
from typing import Any

import numpy as np
import pandas as pd

from ..model.discipline import discipline_field
from ..model.display import html_summary
from ..model.loads import load_profile
from ..model.network import JOB_TYPES, MoANetwork
from .certificate import Certificate, _certificate
from .latency import LatencyResult
from .latency import latency as predict_latency

_VERDICT_TEXT = {
    "stable": "stable: every rho_i < 1 and the network is Kelly-type, so this is sufficient",
    "unstable": "unstable: some rho_i >= 1, so that queue cannot stay bounded",
    "undetermined": (
        "every rho_i < 1 (necessary), but job types at a device differ in mean "
        "service time, so FCFS stability is not guaranteed: check with "
        "moa_stability.simulation.simulate"
    ),
}


@dataclass(frozen=True, repr=False)
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
    latency : LatencyResult or None
        The analytic prompt latency at the given rates (:func:`moa_stability.latency`,
        ``method="estimate"``, exponential service; docs/model.md section 7); None when the
        network is unstable, carries no load, or the report was asked without it.
    latency_note : str or None
        Why the latency was wanted but not computed (the ValueError of
        :func:`moa_stability.latency`, e.g. a law its grid cannot hold); the loads and the
        verdict stand without it.
    certificate : Certificate or None
        What the theory proves under the report's discipline
        (:func:`moa_stability.analysis.certificate.stability_certificate`): one of its four
        statuses and the reason; None when the report was asked without it.
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
    latency: LatencyResult | None = field(default=None, compare=False)
    latency_note: str | None = field(default=None, compare=False)
    certificate: Certificate | None = field(default=None, compare=False)

    @property
    def max_stable_rate_per_s(self) -> np.ndarray:
        r"""The largest per-device prompt rates of the given shape that keep every device
        below load 1, :math:`\theta^*\lambda_i` prompts/s; equal rates when every given rate
        is 0. The boundary itself is unstable: operate below it, e.g. at
        ``network.at_load(0.8)``, 80% of these rates."""
        lam = self.network.arrival_rate
        if np.isinf(self.theta_star) and not lam.any():
            shape = self.network.replace(arrival_rate=1.0)
            return np.full(lam.size, load_profile(shape).scale)
        return self.theta_star * lam

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
            f"max stable rate       : {_rates_text(self.max_stable_rate_per_s)}",
            f"paper (Remark 1)      : alpha_max={self.paper_alpha_s:.6g} s x "
            f"((k+1)M+1)={self.paper_inferences} x lambda={self.paper_rate_per_s:.6g}/s "
            f"= {self.paper_load:.6g} -> {self.paper_verdict}, theta={self.paper_theta:.6g}",
            f"paper vs exact        : {cmp}",
        ]
        if self.latency_note is not None:
            lines.append(f"latency (analytic)    : {self.latency_note}")
        if self.latency is not None:
            caveat = "" if self.verdict == "stable" else " if it is stable"
            lines.append(
                f"latency (analytic)    : mean {self.latency.mean_s:.4g} s, p95 "
                f"{self.latency.quantile(0.95):.4g} s, p99 {self.latency.quantile(0.99):.4g} s"
                f"{caveat} (estimate; docs/model.md section 7)"
            )
        if self.certificate is not None:
            c = self.certificate
            label = f"certificate ({c.discipline})".ljust(22)
            lines.append(f"{label}: {c.status}: {c.reason}")
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        return html_summary(str(self), self.to_frame())

    def plot(self, ax: Any = None) -> Any:
        """The gossip graph with each device coloured by its load and the bottleneck(s) ringed.

        Parameters
        ----------
        ax : matplotlib.axes.Axes, optional
            Where to draw (default: a new figure).

        Returns
        -------
        matplotlib.figure.Figure
        """
        # matplotlib and networkx cost a second to import: only a plot needs them.
        import matplotlib.pyplot as plt
        import networkx as nx

        net = self.network
        if ax is None:
            fig, ax = plt.subplots(figsize=(5.5, 4.5), layout="constrained")
        else:
            fig = ax.figure
        graph = nx.from_scipy_sparse_array(net.adjacency)
        pos = nx.circular_layout(graph)
        top = max(1.0, self.max_load)
        nx.draw_networkx_edges(graph, pos, ax=ax, edge_color="0.75", width=0.8)
        nodes = nx.draw_networkx_nodes(
            graph,
            pos,
            ax=ax,
            node_color=self.loads,
            cmap="viridis",
            vmin=0.0,
            vmax=top,
            node_size=520,
            edgecolors="black",
            linewidths=0.6,
        )
        nx.draw_networkx_nodes(
            graph,
            pos,
            nodelist=list(self.bottlenecks),
            ax=ax,
            node_color="none",
            node_size=900,
            edgecolors="crimson",
            linewidths=2.2,
        )
        # viridis is light at the top: dark text there, white text on the dark end.
        light = self.loads / top > 0.6
        for group, colour in ((~light, "white"), (light, "black")):
            nx.draw_networkx_labels(
                graph,
                pos,
                ax=ax,
                labels={i: f"{i}\n{self.loads[i]:.2f}" for i in np.flatnonzero(group)},
                font_size=7,
                font_color=colour,
            )
        bar = fig.colorbar(nodes, ax=ax, label="load rho_i (1 = unstable)")
        bar.ax.axhline(1.0, color="crimson", lw=1.5)
        ax.set_title(
            f"{self.verdict}: max load {self.max_load:.3g} at device(s) "
            f"{list(self.bottlenecks)[:6]} (red ring)",
            fontsize=9,
        )
        ax.set_axis_off()
        return fig


def _rates_text(rates: np.ndarray) -> str:
    """``0.1 prompts/s per device (0.4 total)``, or the range when the devices differ."""
    if not np.all(np.isfinite(rates)):
        return "unbounded (no device carries load)"
    lo, hi = rates.min(), rates.max()
    each = f"{hi:.6g}" if np.isclose(lo, hi, rtol=1e-12, atol=0) else f"{lo:.6g}..{hi:.6g}"
    return f"{each} prompts/s per device ({rates.sum():.6g} total)"


def _paper_alpha(net: MoANetwork, rates: np.ndarray, rho: np.ndarray) -> float:
    """Remark 1's alpha_max: the largest per-device mean inference time over the jobs it runs."""
    jobs = rates.sum(axis=0)
    busy = jobs > 0
    if not busy.any():
        return float(net.service_time[0].max())
    return float((rho[busy] / jobs[busy]).max())


LATENCY_AUTO_MAX_DEVICES = 10_000
"""With ``latency=None`` the report predicts the latency of networks up to this many devices."""


CERTIFICATE_AUTO_MAX_CLASSES = 8
"""With ``certificate=None`` the report runs the certificate's linear program up to this many
relaxation classes :math:`n(M+1)` (:math:`2^8` blocks, about 0.1 s) and no fluid model."""


def stability_report(
    net: MoANetwork,
    latency: bool | None = None,
    discipline: str = "fcfs",
    certificate: bool | None = None,
) -> StabilityReport:
    """Check the stability of ``net`` and compare with the paper's Theorem 1 / Remark 1.

    Parameters
    ----------
    net : MoANetwork
    latency : bool, optional
        Also predict the prompt latency at the given rates (:func:`moa_stability.latency`)
        when no device is overloaded: True always, False never, None (default) for networks
        of at most :data:`LATENCY_AUTO_MAX_DEVICES` devices.
    discipline : str
        The scheduling discipline of every device for the certificate, one of
        :data:`moa_stability.analysis.fluid.MOA_DISCIPLINES` (the loads do not depend on it).
    certificate : bool, optional
        How hard the certificate tries: True runs the linear program up to 10 classes and the
        fluid model (seconds for :math:`n = 4`, :math:`M = 2`); None (default) only what costs
        no more than about 0.1 s: the loads, the Kelly-type case and the linear program up to
        :data:`CERTIFICATE_AUTO_MAX_CLASSES` classes, so that large networks stay fast; False
        leaves it out.

    Returns
    -------
    StabilityReport

    Examples
    --------
    >>> from moa_stability import MoANetwork, stability_report
    >>> r = stability_report(MoANetwork(n=4, M=2, k=2, arrival_rate=0.25, service_time=1.0))
    >>> r.verdict, r.max_load
    ('unstable', 1.75)
    """
    discipline_field(discipline)
    if certificate is not None and not isinstance(certificate, (bool, np.bool_)):
        raise ValueError(f"certificate={certificate!r}: must be True, False or None; pass a bool")
    profile = load_profile(net)
    rates, rho, peak, kelly = (
        profile.job_rates_per_s,
        profile.loads,
        profile.max_load,
        profile.kelly_type,
    )
    verdict = "unstable" if peak >= 1 else "stable" if kelly else "undetermined"
    alpha = _paper_alpha(net, rates, rho)
    lam = float(net.arrival_rate.max())
    K = net.inferences_per_prompt
    paper_load = alpha * K * lam
    if latency is not None and not isinstance(latency, (bool, np.bool_)):
        raise ValueError(f"latency={latency!r}: must be True, False or None; pass a bool")
    want = net.n <= LATENCY_AUTO_MAX_DEVICES if latency is None else bool(latency)
    predicted, note = None, None
    if want and 0 < peak < 1:
        # The loads and the verdict stand without the latency: a law the grid cannot hold
        # (e.g. load 0.99999, or M = 3000) is a note, not a failed report.
        try:
            predicted = predict_latency(net)
        except ValueError as error:
            note = f"not computed: {error}"
    proof = (
        None
        if certificate is not None and not certificate
        else _certificate(
            net,
            discipline,
            profile,
            10 if certificate else CERTIFICATE_AUTO_MAX_CLASSES,
            bool(certificate),
        )
    )
    return StabilityReport(
        network=net,
        loads=rho,
        job_rates_per_s=rates,
        max_load=peak,
        margin=1.0 - peak,
        bottlenecks=tuple(int(i) for i in np.flatnonzero(rho >= peak * (1 - 1e-12))),
        kelly_type=kelly,
        verdict=verdict,
        theta_star=profile.scale,
        paper_alpha_s=alpha,
        paper_rate_per_s=lam,
        paper_inferences=K,
        paper_load=paper_load,
        paper_theta=float("inf") if paper_load == 0 else 1.0 / paper_load,
        paper_verdict="stable" if paper_load < 1 else "unstable",
        latency=predicted,
        latency_note=note,
        certificate=proof,
    )
