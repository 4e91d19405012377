"""The verdict is never wrong: stable networks are never called unstable, unstable ones never
stable, over horizons from 0.05 s to 10^7 mean service times, loads 0.14..5, n = 1..10^4 and
both simulators. Inconclusive is always allowed. The truth comes from the exact loads: every
network here has one service law per device (Kelly type), so it is stable iff every load is
below one."""

import itertools
import warnings

import numpy as np
import pandas as pd
import pytest

from moa_stability import MoANetwork, loads, paper_network, random_regular_graph
from moa_stability.simulation.simulate import simulate

STABLE_LOADS = (0.14, 0.5, 0.8, 0.9)
UNSTABLE_LOADS = (1.1, 1.5, 2.0, 5.0)


def network(kind: str, load: float) -> MoANetwork:
    """Networks with a mean service time of 1 s whose every device carries ``load``."""
    if kind == "mm1":
        return MoANetwork(n=1, M=0, arrival_rate=load, service_time=1.0)
    if kind == "paper":
        return paper_network(arrival_rate=load / 7)  # (k+1)M+1 = 7 inferences per prompt
    n, degree = {"n100": (100, 6), "n10000": (10**4, 4)}[kind]
    topology = random_regular_graph(n, degree, seed=1)
    return MoANetwork(n=n, M=1, k=1, arrival_rate=load / 3, topology=topology)


def judge(kind: str, load: float, horizon: float, method: str, seed: int) -> dict:
    net = network(kind, load)
    assert loads(net) == pytest.approx(np.full(net.n, load))  # the truth, from closed forms
    r = simulate(net, method=method, horizon=horizon, seed=seed)
    truth = "stable" if load < 1 else "unstable"
    wrong = r.verdict not in (truth, "inconclusive")
    assert r.verdict == truth or r.horizon_needed_s > r.horizon_s or r.cap_hit_time is not None
    return dict(
        kind=kind,
        load=load,
        horizon_s=horizon,
        method=method,
        seed=seed,
        verdict=r.verdict,
        wrong=wrong,
        evidence=r.evidence,
    )


def grid(kinds_horizons: dict, seeds: tuple[int, ...], load_set) -> pd.DataFrame:
    rows = [
        judge(kind, load, horizon, method, seed)
        for kind, horizons in kinds_horizons.items()
        for load, horizon, method, seed in itertools.product(
            load_set, horizons, ("slots", "events"), seeds
        )
    ]
    return pd.DataFrame(rows)


def verdict_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Verdict counts per load band and horizon band."""
    band = np.where(frame["load"] < 1, "load 0.14-0.9", "load 1.1-5")
    horizon = pd.cut(
        frame["horizon_s"], [0, 1, 100, 1e4, 1e8], labels=["<=1", "10-100", "1e3-1e4", ">=1e5"]
    )
    return pd.crosstab([band, horizon], frame["verdict"], rownames=["load", "horizon_s"])


def test_issue_examples_are_inconclusive_not_wrong():
    r = simulate(paper_network(arrival_rate=0.5 / 7), method="events", horizon=10, seed=3)
    assert r.verdict == "inconclusive" and r.horizon_needed_s > 10 * r.horizon_s
    for horizon in (0.05, 1e-9, 1e-300):  # 1e-300: batch times equal in floating point
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)  # (1e-300 divided by zero)
            r = simulate(
                paper_network(arrival_rate=5 / 7), method="events", horizon=horizon, seed=0
            )
        assert r.verdict == "inconclusive" and r.horizon_needed_s > r.horizon_s
        assert str(round(r.horizon_needed_s, 1))[:2] in r.evidence.replace(".", "")


def test_small_job_cap_of_a_stable_network_is_not_instability():
    net = MoANetwork(n=1, M=0, arrival_rate=0.5, service_time=1.0)
    r = simulate(net, method="events", horizon=1e4, max_jobs=3, seed=0)
    assert r.cap_hit_time is not None and r.verdict == "inconclusive"


def test_no_wrong_verdict_quick_grid():
    frame = pd.concat(
        [
            grid({"mm1": (0.05, 10, 1e3), "paper": (0.05, 10, 1e3)}, (0,), (0.14, 0.9, 1.1, 5.0)),
            grid({"n100": (10,), "n10000": (0.05,)}, (0,), (0.5, 2.0)),
        ]
    )
    assert len(frame) == 56
    assert not frame["wrong"].any(), frame[frame["wrong"]].to_string()


@pytest.mark.slow
def test_no_wrong_verdict_over_four_hundred_runs():
    kinds = {
        "mm1": (0.05, 10, 1e3, 1e5, 1e7),
        "paper": (0.05, 10, 1e3, 1e5, 1e6),
    }
    frame = pd.concat(
        [
            grid(kinds, (1, 2), STABLE_LOADS + UNSTABLE_LOADS),
            grid(
                {"n100": (0.05, 10, 1e3, 1e4), "n10000": (0.05, 10, 100)},
                (1,),
                STABLE_LOADS + UNSTABLE_LOADS,
            ),
        ]
    )
    print("\n" + verdict_table(frame).to_string())
    assert len(frame) >= 400
    assert not frame["wrong"].any(), frame[frame["wrong"]].to_string()
    # the rule decides when the evidence is there: long runs of the small networks
    long = frame[(frame["horizon_s"] >= 1e5) & (frame["load"] != 0.9)]
    assert (long["verdict"] != "inconclusive").mean() >= 0.9
