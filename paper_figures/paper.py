"""Settings and reported numbers of the source paper (Mitra, Kaswan, Ulukus, arXiv:2412.21200),
as transcribed in docs/model.md section 1."""

from __future__ import annotations

import pandas as pd

CONFIGS: tuple[tuple[int, int], ...] = ((0, 0), (1, 1), (1, 2), (2, 1), (2, 2), (1, 3), (2, 3))
"""The (M, k) configurations of the paper's experiments, in its table order."""
N_DEVICES = 4
RATE_PER_S = 0.25
"""The paper's per-user prompt rate."""


def reported_tables() -> pd.DataFrame:
    """Table I (one model) and Table II (four models): accuracy %, latency s, average queue."""
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
