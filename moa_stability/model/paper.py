"""The source paper's setting and reported numbers, in one place.

Mitra, Kaswan and Ulukus, "Distributed Mixture-of-Agents for Edge Inference with Large Language
Models" (arXiv:2412.21200): ``n = 4`` edge devices on a complete graph, each receiving user
prompts at :math:`\\lambda = 1/4` prompt/s, every inference taking one mean time
:math:`\\alpha`, and seven ``(M, k)`` configurations whose accuracy, latency and average queue
Tables I (one model) and II (four models) report (docs/model.md section 1).
"""

from __future__ import annotations

import pandas as pd

from .network import MoANetwork

N_DEVICES = 4
"""Devices of the paper's experiments."""
RATE_PER_S = 0.25
"""The paper's per-device prompt rate, prompts/s."""
REPLAY_PROMPTS = 10
"""Prompts in the paper's replay (Tables I and II), all devices together."""
CONFIGS: tuple[tuple[int, int], ...] = ((0, 0), (1, 1), (1, 2), (2, 1), (2, 2), (1, 3), (2, 3))
"""The ``(M, k)`` configurations of the paper's experiments, in its table order."""


def paper_network(
    n: int = N_DEVICES,
    M: int = 2,
    k: int = 2,
    arrival_rate: float = RATE_PER_S,
    service_time: float = 1.0,
) -> MoANetwork:
    """The source paper's symmetric setting: complete graph, one ``lambda`` and one ``alpha``.

    Parameters
    ----------
    n : int
        Devices (the paper: 4).
    M, k : int
        MoA layers and extra proposers per layer.
    arrival_rate : float
        Prompts/s at every device (the paper: 1/4).
    service_time : float
        Mean seconds of every inference, :math:`\\alpha`.
    """
    return MoANetwork(n=n, M=M, k=k, arrival_rate=arrival_rate, service_time=service_time)


def reported_tables() -> pd.DataFrame:
    """The paper's Table I (one model) and Table II (four models), one row per ``(M, k)``:
    accuracy in %, latency in s and average queue, columns ``paper_I_*`` and ``paper_II_*``."""
    rows = [
        # M, k, accuracy I, latency I, queue I, accuracy II, latency II, queue II
        (0, 0, 21.91, 94.01, 0.60, 23.62, 409.58, 1.71),
        (1, 1, 29.55, 329.92, 2.04, 39.41, 806.88, 2.36),
        (1, 2, 39.63, 484.81, 3.28, 39.52, 1112.33, 2.72),
        (2, 1, 28.88, 603.43, 2.32, 38.22, 1357.74, 1.83),
        (2, 2, 39.89, 790.01, 4.80, 40.51, 1971.50, 3.07),
        (1, 3, 39.79, 578.88, 3.74, 38.96, 1292.73, 2.92),
        (2, 3, 40.63, 1074.28, 5.78, 55.55, 2274.59, 4.21),
    ]
    return pd.DataFrame(
        rows,
        columns=[
            "M",
            "k",
            "paper_I_accuracy_pct",
            "paper_I_latency_s",
            "paper_I_queue",
            "paper_II_accuracy_pct",
            "paper_II_latency_s",
            "paper_II_queue",
        ],
    )


__all__ = [
    "CONFIGS",
    "N_DEVICES",
    "RATE_PER_S",
    "REPLAY_PROMPTS",
    "paper_network",
    "reported_tables",
]
