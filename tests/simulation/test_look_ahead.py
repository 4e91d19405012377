"""The event loop's look-ahead (``kernels._hint`` and the prefetching stages at the top of the
loop) only asks the CPU to bring lines in early: with it on (networks of at least
``kernels.HINT_FROM_DEVICES`` devices) every output must be bit for bit what the same seed
gives with it off. The networks here are just past the threshold, on both clocks, with
uniform, systematic and implicit-complete helper selection, per-type service times, and one
overloaded network (fewer completions than its job rates)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from fingerprint import digest  # (tests/simulation is on sys.path)

from moa_stability import MoANetwork, random_regular_graph
from moa_stability.simulation import kernels
from moa_stability.simulation.simulate import simulate

N = kernels.HINT_FROM_DEVICES + 100


def _network(kind: str) -> MoANetwork:
    rng = np.random.default_rng(7)
    if kind == "complete":
        return MoANetwork(n=N, M=2, k=2, arrival_rate=1.0, service_time=1.0).at_load(0.85)
    graph = random_regular_graph(N, 6, seed=3)
    service = rng.uniform(0.5, 2.0, (3, N))  # a mean per (job type, device)
    net = MoANetwork(n=N, M=2, k=2, arrival_rate=1.0, service_time=service, topology=graph)
    if kind == "systematic":
        net = dataclasses.replace(net, selection=net.inclusion(0))  # explicit: systematic
    # Overloaded: far fewer completions than the traffic equations' job rates (the calendar's
    # bucket width must follow what the devices can complete).
    return net.at_load(20.0 if kind == "overloaded" else 0.85)


def _fields(result) -> dict:
    return {f.name: getattr(result, f.name) for f in dataclasses.fields(result)}


@pytest.mark.parametrize(
    "kind, method",
    [
        ("uniform", "events"),
        ("uniform", "slots"),
        ("systematic", "events"),
        ("complete", "events"),
        ("overloaded", "events"),
    ],
)
def test_look_ahead_changes_no_output(kind, method, monkeypatch):
    net = _network(kind)
    horizon = 1.5 if kind == "overloaded" else 12.0
    kwargs = dict(method=method, horizon=horizon, seed=11, replications=2, progress=False)
    if method == "slots":
        kwargs["dt"] = 0.25
    with_hints = _fields(simulate(net, **kwargs))
    monkeypatch.setattr(kernels, "HINT_FROM_DEVICES", 10 * N)
    without = _fields(simulate(net, **kwargs))
    assert with_hints["inferences"] > N  # far more completions than the queue holds
    for name, value in without.items():
        assert digest(with_hints[name]) == digest(value), name
