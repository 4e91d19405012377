"""Same seed, same bits: seeded ``simulate`` runs against a fixture of their earlier outputs.

This is a regression fixture of the event loop's *current behaviour*, not a correctness oracle
(the other tests of this folder compare the simulator with exact results). It was generated
by the kernels before their data structures were reworked for speed at large ``n`` (event
queue, state layout, pools; docs/simulator.md) and pins that such a change keeps every event
in the same order with the same random numbers: each case's result must match field for field,
bit for bit (arrays by a SHA-256 digest of their bytes, scalars by ``repr``).

The networks of ``n >= 2000`` with 301 tracked queue lengths cross
``kernels.DEFER_FROM_CELLS``, so both ways of adding to the accumulators are pinned.

Regenerate (only after a change that is *meant* to alter seeded outputs, saying so in the
commit): ``PYTHONPATH=. python tests/simulation/test_kernel_regression.py --write`` from the
repository root (so that the checkout's package is the one imported).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from fingerprint import digest  # (tests/simulation is on sys.path: pytest, or run as a script)

from moa_stability import MoANetwork, paper_network, random_regular_graph
from moa_stability.simulation.simulate import simulate

FIXTURE = Path(__file__).with_name("data") / "kernel_regression.json"


def _heterogeneous(n: int, seed: int) -> MoANetwork:
    """Per-type, per-device service times and arrival rates at a load below one."""
    rng = np.random.default_rng(seed)
    service = rng.uniform(0.5, 2.0, (3, n))
    net = MoANetwork(n=n, M=2, k=2, arrival_rate=rng.uniform(0.5, 1.5, n), service_time=service)
    return net


def _weighted(n: int) -> MoANetwork:
    """Non-uniform inclusion probabilities (systematic sampling) on the complete graph."""
    weights = np.linspace(0.9, 0.1, n - 1)
    weights *= 2 / weights.sum()
    pi = np.zeros((n, n))
    for j in range(n):
        pi[j, [i for i in range(n) if i != j]] = np.roll(weights, j)
    return MoANetwork(n=n, M=2, k=2, arrival_rate=0.02, selection=pi)


def _cases() -> dict[str, tuple[MoANetwork, dict]]:
    """The seeded runs: small and large networks, both clocks, every service law, priorities
    with and without preemption, several replications, recorded paths and a job cap."""
    paper = paper_network(arrival_rate=0.85 / 7)
    regular = MoANetwork(
        n=2000,
        M=2,
        k=2,
        arrival_rate=1.0,
        service_time=1.0,
        topology=random_regular_graph(2000, 8, seed=1),
    ).at_load(0.9)
    return {
        "paper-events-fcfs": (paper, dict(method="events", horizon=2e4, seed=1)),
        "paper-slots-fcfs-paths": (
            paper,
            dict(method="slots", horizon=5e3, seed=2, record_paths=True),
        ),
        "paper-events-gamma-lf-preempt": (
            paper,
            dict(
                method="events",
                horizon=1e4,
                seed=3,
                service="gamma",
                scv=2.0,
                discipline="later-layer-first",
                preemptive=True,
                replications=2,
            ),
        ),
        "paper-slots-det-own-preempt": (
            paper,
            dict(
                method="slots",
                horizon=4e3,
                seed=4,
                service="deterministic",
                discipline="own-user-first",
                preemptive=True,
            ),
        ),
        "hetero8-events-lognormal-ef": (
            _heterogeneous(8, 5).at_load(0.8),
            dict(
                method="events",
                horizon=5e3,
                seed=5,
                service="lognormal",
                scv=0.5,
                discipline="earlier-layer-first",
            ),
        ),
        "hetero8-slots-empirical-af": (
            _heterogeneous(8, 6).at_load(0.8),
            dict(
                method="slots",
                horizon=2e3,
                seed=6,
                service="empirical",
                samples={"propose": [1.0, 2.0, 6.0], "refine": [2.0], "aggregate": [3.0, 4.0]},
                discipline="aggregate-first",
                replications=2,
            ),
        ),
        "weighted6-events": (_weighted(6), dict(method="events", horizon=2e4, seed=7)),
        "overload-cap": (
            paper_network(arrival_rate=1.3 / 7),
            dict(method="events", horizon=1e5, seed=8, max_jobs=2000),
        ),
        "regular2000-events": (regular, dict(method="events", horizon=60.0, seed=9)),
        "regular2000-events-deferred": (  # 2000 x 301 queue-length cells: deferred additions
            regular,
            dict(method="events", horizon=60.0, seed=12, max_tracked_queue=300),
        ),
        "regular2000-slots-lf": (
            regular,
            dict(
                method="slots",
                horizon=20.0,
                seed=10,
                discipline="later-layer-first",
                max_tracked_queue=300,
            ),
        ),
        "complete2100-events": (  # helpers drawn without a neighbour list (Floyd)
            MoANetwork(n=2100, M=2, k=2, arrival_rate=1.0, service_time=1.0).at_load(0.9),
            dict(method="events", horizon=40.0, seed=11, replications=2),
        ),
    }


def _fingerprint(name: str) -> dict:
    net, kwargs = _cases()[name]
    result = simulate(net, progress=False, **kwargs)
    return {f.name: digest(getattr(result, f.name)) for f in dataclasses.fields(result)}


@pytest.mark.parametrize("name", sorted(_cases()))
def test_seeded_outputs_unchanged(name):
    expected = json.loads(FIXTURE.read_text())[name]
    got = _fingerprint(name)
    changed = sorted(k for k in expected if got.get(k) != expected[k])
    assert set(got) == set(expected), sorted(set(got) ^ set(expected))
    assert not changed, {k: (got[k], expected[k]) for k in changed}


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    FIXTURE.parent.mkdir(exist_ok=True)
    table = {name: _fingerprint(name) for name in sorted(_cases())}
    FIXTURE.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")
    print(f"wrote {FIXTURE}")
