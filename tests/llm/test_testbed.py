"""Live testbed: helper draws, guards, a smoke run with SmolLM2, and no orphan processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from moa_stability import MoANetwork, replay
from moa_stability.llm import measure
from moa_stability.llm.measure import LLMExtraMissingError, MachineBusyError, check_quiet
from moa_stability.llm.testbed import draw_helpers, run_testbed

ROOT = Path(__file__).resolve().parents[2]


def test_uniform_helpers_are_distinct_neighbours_with_equal_frequency():
    ring = MoANetwork(n=6, M=1, k=2, topology="ring")
    rng = np.random.default_rng(0)
    draws = [draw_helpers(ring, 0, 3, rng) for _ in range(4000)]
    assert all(sorted(d) == [2, 4] for d in draws)  # the ring neighbours of 3, both needed
    full = MoANetwork(n=5, M=1, k=2)
    counts = np.zeros(5)
    for _ in range(6000):
        helpers = draw_helpers(full, 0, 0, rng)
        assert len(set(helpers)) == 2 and 0 not in helpers
        counts[helpers] += 1
    # Each of the 4 others is included with probability k/(n-1) = 1/2: binomial 4-sigma band.
    assert np.all(np.abs(counts[1:] / 6000 - 0.5) < 4 * np.sqrt(0.25 / 6000))


def test_systematic_helpers_match_inclusion_probabilities():
    pi = np.array(
        [
            [0.0, 0.9, 0.6, 0.5],
            [0.9, 0.0, 0.6, 0.5],
            [0.7, 0.7, 0.0, 0.6],
            [0.7, 0.7, 0.6, 0.0],
        ]
    )
    net = MoANetwork(n=4, M=1, k=2, selection=sp.csr_array(pi))
    rng = np.random.default_rng(1)
    trials = 20_000
    counts = np.zeros(4)
    for _ in range(trials):
        helpers = draw_helpers(net, 0, 0, rng)
        assert len(set(helpers)) == 2 and 0 not in helpers
        counts[helpers] += 1
    p = pi[0, 1:]
    se = np.sqrt(p * (1 - p) / trials)
    assert np.all(np.abs(counts[1:] / trials - p) < 4 * se)


def test_quiet_guard(monkeypatch):
    monkeypatch.setattr(os, "getloadavg", lambda: (2.5, 2.0, 1.0))
    with pytest.raises(MachineBusyError, match=r"^loadavg_1min=2\.50"):
        check_quiet(0.3)
    assert check_quiet(None) == 2.5  # the override used by tests
    assert check_quiet(0.3, own_threads=3) == 2.5  # the run's own threads are discounted


def test_missing_llama_cpp_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # makes ``import llama_cpp`` fail
    with pytest.raises(LLMExtraMissingError, match=r"moa_stability\[llm\]"):
        run_testbed(MoANetwork(n=2, M=1, k=1, arrival_rate=0.5), duration_s=1.0)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"duration_s": 0.0}, "duration_s"),
        ({"duration_s": float("inf")}, "duration_s"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"threads": 1.5}, "threads"),
        ({"drain_s": -1.0}, "drain_s"),
        ({"seed": -2}, "seed"),
    ],
)
def test_bad_parameters_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=rf"^{field}="):
        run_testbed(MoANetwork(n=2, M=1, k=1, arrival_rate=0.5), **kwargs)


def test_a_network_without_prompts_is_refused():
    with pytest.raises(ValueError, match="^arrival_rate="):
        run_testbed(MoANetwork(n=2, M=1, k=1, arrival_rate=0.0))


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for a reaper counts as gone: it holds no resources)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "State:\tZ" not in status


llm = pytest.mark.llm


@pytest.fixture(scope="module")
def live():
    pytest.importorskip("llama_cpp")
    try:
        measure.default_model_path()
    except LLMExtraMissingError:
        pytest.skip("the SmolLM2 model wheel is not installed")
    net = MoANetwork(n=2, M=1, k=1, arrival_rate=0.4)
    # Seed 1 gives three prompts in 5 s; 16 tokens keep each inference short.
    return run_testbed(net, duration_s=5.0, max_tokens=16, seed=1, max_load=None, progress=False)


@llm
def test_smoke_run_follows_the_protocol(live):
    jobs, prompts = live.jobs, live.prompts
    assert len(prompts) == 3 and prompts["answer_s"].notna().all()
    assert len(jobs) == 3 * ((1 + 1) * 1 + 1)
    for pid, part in jobs.groupby("prompt_id"):
        origin = prompts.loc[pid, "origin"]
        first, last = part[part["layer"] == 1], part[part["layer"] == 2]
        assert sorted(first["device"]) == [0, 1] and (first["job_type"] == "propose").all()
        assert last["device"].tolist() == [origin] and last["job_type"].tolist() == ["aggregate"]
        # The join: the aggregate reaches the origin after both proposals ended.
        assert last["queued_s"].iloc[0] >= first["ended_s"].max()
        assert prompts.loc[pid, "answer_s"] >= last["ended_s"].iloc[0]
    for _, part in jobs.groupby("device"):  # FCFS, one job at a time
        part = part.sort_values("started_s")
        assert (part["started_s"].to_numpy()[1:] >= part["ended_s"].to_numpy()[:-1]).all()
        assert part["queued_s"].is_monotonic_increasing
        assert (part["started_s"] >= part["queued_s"]).all()
    assert (jobs["output_tokens"] <= 16).all()
    np.testing.assert_allclose(jobs["seconds"], jobs["ended_s"] - jobs["started_s"])


@llm
def test_replay_of_live_durations_matches_live_latency(live):
    replayed = replay(live.replay_jobs, n=live.net.n)
    observed = live.answered["latency_s"]
    # Replay has no messaging overhead; on localhost that is milliseconds per layer.
    assert replayed.mean_latency == pytest.approx(live.mean_latency, rel=0.05)
    assert np.all(np.abs(replayed.latency.reindex(observed.index) - observed) < 0.5)


@llm
def test_no_device_outlives_a_run(live):
    pids = live.metadata["device_pids"]
    assert len(pids) == 2
    assert not any(_alive(pid) for pid in pids)
    frame = live.to_frame()
    assert frame["jobs"].sum() == len(live.jobs)
    assert isinstance(frame, pd.DataFrame) and "TestbedResult" in repr(live)


INTERRUPTED_RUN = """
from moa_stability import MoANetwork
from moa_stability.llm.testbed import run_testbed
run_testbed(MoANetwork(n=2, M=1, k=1, arrival_rate=0.5), duration_s=600, max_tokens=16,
            max_load=None, progress=False)
"""


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        text = (task / "children").read_text() if (task / "children").exists() else ""
        found += [int(c) for c in text.split()]
    return found


@llm
@pytest.mark.parametrize(
    "how",
    [signal.SIGINT, pytest.param(signal.SIGKILL, marks=pytest.mark.slow)],
    ids=["ctrl-c", "killed"],
)
def test_stopping_the_coordinator_leaves_no_orphan_processes(how):
    # Ctrl-C: the coordinator stops its devices; SIGKILL: they die with it (parent-death
    # signal), since nothing is left to stop them.
    pytest.importorskip("llama_cpp")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    coordinator = subprocess.Popen([sys.executable, "-c", INTERRUPTED_RUN], cwd=ROOT, env=env)
    try:
        deadline = time.monotonic() + 60
        while len(_children(coordinator.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        devices = _children(coordinator.pid)
        assert len(devices) == 2, "the device processes did not start"
        time.sleep(2.0)  # let them load the model and start serving
        coordinator.send_signal(how)
        assert coordinator.wait(timeout=60) != 0
    finally:
        if coordinator.poll() is None:
            coordinator.kill()
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in devices) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(pid) for pid in devices)
