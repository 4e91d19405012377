r"""Cross-check of the three methods against measured inference: symbolic, LP, Monte Carlo.

For each measured MoA shape :math:`(M, k)` on the symmetric network of ``n`` devices, with the
trace's per-type mean service times :math:`\alpha_p, \alpha_r, \alpha_a`:

* **paper** (type-blind Theorem 1): :math:`\lambda^* = 1/(\alpha((k+1)M+1))` with one
  :math:`\alpha`: the mean of all measured inferences, and the mean of propose jobs alone (a
  plain prompt's inference time, what one measures without running MoA);
* **symbolic** (type-aware): :math:`\lambda^* = 1/((k+1)\alpha_p + (k+1)(M-1)\alpha_r +
  \alpha_a)` from :func:`moa_stability.analysis.symbolic.symmetric_network_by_type`;
* **LP**: :func:`moa_stability.analysis.optimize.max_stable_rate` (objective ``scale``);
* **Monte Carlo knee**: bisection on the rate with the event simulator, service times
  resampled from the trace per job type, until the bracket between the highest rate judged
  ``stable`` and the lowest judged ``unstable`` is narrow. A verdict that contradicts the
  type-aware threshold is re-judged on a ten times longer horizon (either way round), and an
  ``inconclusive`` one after that ends the bisection with the bracket as it stands.

Refine and aggregate jobs have different means from propose jobs, so this is the multiclass
FCFS case where :math:`\rho < 1` is only necessary (docs/model.md section 2.5): the knee is the
judge, and if it falls below the type-aware threshold the table shows it.

The **replay** runs the recorded durations through the event simulator at the paper's
experimental rate (:math:`\lambda = 1/4` prompt/s per device, :math:`N = 10` prompts), as the
paper's own trace replay did, and beside it the steady-state verdict at that rate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..analysis.optimize import max_stable_rate
from ..analysis.symbolic import type_aware_threshold
from ..llm.service import service_samples
from ..llm.trace import load_default_trace, validate_trace
from ..model import paper
from ..model.display import tqdm
from ..model.loads import max_uniform_scale
from ..model.network import MoANetwork
from ..simulation.simulate import simulate


@dataclass(frozen=True)
class CrossCheck:
    """The cross-check table (one row per ``(M, k)``) and the replay table.

    ``table`` columns, rates in prompts/s per device: ``paper_all_rate`` and
    ``paper_propose_rate`` (type-blind, one alpha = mean of all inferences / of propose jobs),
    ``symbolic_rate`` (type-aware), ``lp_rate``, ``knee_low_rate`` and ``knee_high_rate``
    (the Monte Carlo bracket), ``knee_rate`` (its midpoint), ``knee_contains_symbolic``, the
    per-type means ``alpha_*_s``, and ``paper_propose_over_symbolic`` (how far the paper's
    propose-only theorem over-promises).
    """

    table: pd.DataFrame
    replay: pd.DataFrame

    def __str__(self) -> str:
        cols = [
            "paper_all_rate",
            "paper_propose_rate",
            "symbolic_rate",
            "lp_rate",
            "knee_low_rate",
            "knee_high_rate",
            "paper_propose_over_symbolic",
        ]
        return (
            self.table[cols].to_string(float_format=lambda x: f"{x:.5g}")
            + "\n\nreplay:\n"
            + self.replay.to_string(float_format=lambda x: f"{x:.4g}")
        )


def _knee(
    net: MoANetwork,
    samples: dict[str, np.ndarray],
    guess: float,
    horizon_s: float,
    steps: int,
    seed: int,
) -> tuple[float, float]:
    """Bisection bracket ``(highest stable rate, lowest unstable rate)`` around ``guess``.

    Near the boundary the queue relaxes over a time growing like :math:`(1-\rho)^{-2}`, so a
    short run can read slow drift as growth (or the reverse). A verdict that contradicts the
    threshold ``guess`` (unstable below it, stable above it), or is inconclusive, is therefore
    re-judged on a horizon ten times longer, and that verdict stands.
    """

    def verdict(rate: float, step: int) -> str:
        v = "inconclusive"
        for extend in (1, 10):
            v = simulate(
                net.replace(arrival_rate=rate),
                method="events",
                horizon=horizon_s * extend,
                seed=seed + step,
                service="empirical",
                samples=samples,
                replications=2,
            ).verdict
            if v == ("stable" if rate < guess else "unstable"):
                break
        return v

    # Asymmetric, so that no midpoint lands exactly on rho = 1 (null recurrent).
    low, high = 0.8 * guess, 1.25 * guess
    if verdict(low, 0) != "stable" or verdict(high, 1) != "unstable":
        raise RuntimeError(
            f"the knee of {net!r} is not within 0.8-1.25 x {guess:.4g}/s; "
            "the simulator disagrees strongly with the type-aware threshold"
        )
    for step in range(steps):
        mid = 0.5 * (low + high)
        v = verdict(mid, step + 2)
        if v == "inconclusive":
            break
        low, high = (mid, high) if v == "stable" else (low, mid)
    return low, high


def _replay(net: MoANetwork, samples: dict[str, np.ndarray], seed: int) -> dict[str, float]:
    """The paper's experiment: N prompts at lambda = 1/4 per device, recorded durations."""
    at_paper_rate = net.replace(arrival_rate=paper.RATE_PER_S)
    window_s = paper.REPLAY_PROMPTS / (net.n * paper.RATE_PER_S)
    short = simulate(
        at_paper_rate,
        method="events",
        horizon=window_s,
        warmup=0.0,
        seed=seed,
        service="empirical",
        samples=samples,
        replications=200,
    )
    steady = simulate(
        at_paper_rate,
        method="events",
        horizon=2000 * window_s,
        seed=seed,
        service="empirical",
        samples=samples,
    )
    # Latency is left out: with inferences of seconds, most M = 2 prompts are still running
    # when the window closes, so the few answered ones would be a biased sample.
    return {
        "replay_mean_queue": float(short.mean_queue.mean()),
        "replay_answered_fraction": short.prompts_completed / max(short.prompts_arrived, 1),
        "steady_state_verdict": steady.verdict,
        "steady_state_load": float(steady.loads.max()),
    }


def cross_check(
    configs: Sequence[tuple[int, int]] | None = None,
    n: int = 4,
    trace: pd.DataFrame | None = None,
    horizon_s: float = 400_000.0,
    bisection_steps: int = 3,
    seed: int = 0,
    progress: bool = True,
) -> CrossCheck:
    r"""Compare the paper's threshold, the type-aware threshold, the LP and the simulated knee.

    Parameters
    ----------
    configs : sequence of (M, k), optional
        MoA shapes to check; default every shape measured in ``trace``.
    n : int
        Devices of the symmetric (complete graph, equal rates) network.
    trace : DataFrame, optional
        Measured inferences (columns as :func:`moa_stability.llm.measure.measure` writes them);
        default the shipped SmolLM2-135M trace.
    horizon_s : float
        Simulated seconds per bisection run (ten times that to re-judge a verdict that
        contradicts the type-aware threshold).
    bisection_steps : int
        Halvings of the initial bracket ``[0.8, 1.25] x`` the type-aware threshold. Three
        leave a bracket 5.6% wide whose probes all lie at least 2.5% from the threshold;
        closer, a run of this length cannot tell the slow relaxation of a nearly critical
        queue (time scale :math:`\propto (1-\rho)^{-2}`) from growth, so further halvings
        measure the horizon, not the network.
    seed : int
        Seeds every simulation.

    Returns
    -------
    CrossCheck
    """
    trace = load_default_trace() if trace is None else validate_trace(trace)
    if configs is None:
        configs = sorted({(int(M), int(k)) for M, k in zip(trace["M"], trace["k"], strict=True)})
    rows, replays = [], []
    for M, k in tqdm(configs, desc="cross-check", disable=not progress):
        samples = service_samples(M, k, source="trace", trace=trace)
        means = {c: float(np.mean(s)) for c, s in samples.items()}
        measured = trace[(trace["M"] == M) & (trace["k"] == k)]["seconds"]
        net = MoANetwork(n=n, M=M, k=k, arrival_rate=1.0, service_time=means)
        jobs = net.inferences_per_prompt
        symbolic = type_aware_threshold(M, k, means)
        low, high = _knee(net, samples, symbolic, horizon_s, bisection_steps, seed)
        rows.append(
            {
                "M": M,
                "k": k,
                "inferences_measured": len(measured),
                **{
                    f"alpha_{c}_s": means.get(c, np.nan) for c in ("propose", "refine", "aggregate")
                },
                "paper_all_rate": 1 / (float(measured.mean()) * jobs),
                "paper_propose_rate": 1 / (means["propose"] * jobs),
                "symbolic_rate": symbolic,
                "closed_form_rate": max_uniform_scale(net),
                "lp_rate": max_stable_rate(net, objective="scale").value,
                "knee_low_rate": low,
                "knee_high_rate": high,
                "knee_rate": 0.5 * (low + high),
            }
        )
        replays.append({"M": M, "k": k, **_replay(net, samples, seed)})
    table = pd.DataFrame(rows).set_index(["M", "k"])
    table["knee_contains_symbolic"] = (table["knee_low_rate"] <= table["symbolic_rate"]) & (
        table["symbolic_rate"] <= table["knee_high_rate"]
    )
    table["paper_propose_over_symbolic"] = table["paper_propose_rate"] / table["symbolic_rate"]
    return CrossCheck(table=table, replay=pd.DataFrame(replays).set_index(["M", "k"]))
