"""The committed live runs and the four-way comparison built on them."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from moa_stability import MoANetwork, replay
from moa_stability.experiments.live_comparison import _backlog_slope, live_comparison, live_runs
from moa_stability.llm.testbed import TestbedResult, load_testbed

RUNS = live_runs()


def test_the_campaign_is_committed():
    # Two MoA shapes, three stable loads and one overload each (issue 12 item 4).
    nets = [load_testbed(p).net for p in RUNS]
    assert sorted({(net.M, net.k) for net in nets}) == [(1, (1,)), (2, (1, 1))]
    assert len(RUNS) == 8


@pytest.mark.parametrize("path", RUNS, ids=[p.stem for p in RUNS])
def test_live_run_metadata_and_replay(path):
    run = load_testbed(path)
    meta = run.metadata
    assert meta["loadavg_1min_start"] <= 0.3  # measured on a quiet machine
    assert meta["threads_per_device"] == 1 and run.net.n == 2
    assert "moa-stability testbed" in meta["argv"]
    answered = run.answered
    if "load1.3" in path.stem:  # overload, stopped at once: a backlog is left unanswered
        assert len(answered) < 0.8 * len(run.prompts)
        return
    # Drained runs: every prompt answered, and replaying the logged durations through FCFS
    # queues with joins reproduces the live latencies (the floor: 2% on the mean; only the
    # messaging overhead differs).
    assert len(answered) == len(run.prompts) > 0
    replayed = replay(run.replay_jobs, n=2)
    assert abs(replayed.mean_latency / run.mean_latency - 1) < 0.02
    per_prompt = replayed.latency.reindex(answered.index)
    # Prompt by prompt too (the messaging overhead can swap two near-simultaneous jobs, so
    # not every prompt is exact).
    assert np.median(np.abs(per_prompt / answered["latency_s"] - 1)) < 0.01


def test_backlog_slope_of_a_constructed_run():
    # Births every 0.5 s, answers every 1 s from t = 0: the backlog grows by 1 prompt/s.
    births = np.arange(0, 100, 0.5)
    answers = np.full(births.size, np.nan)
    answers[:100] = np.arange(1, 101, 1.0)
    prompts = pd.DataFrame({"birth_s": births, "answer_s": answers, "latency_s": answers - births})
    run = TestbedResult(jobs=pd.DataFrame(), prompts=prompts, net=MoANetwork(n=1),
                        metadata={"duration_s": 100.0})  # fmt: skip
    slope, ci = _backlog_slope(run)
    assert slope == pytest.approx(1.0, abs=0.02)
    # A growing backlog gets growth_slope's random-walk interval (a live backlog is a
    # birth-death walk): with Poisson births at 2/s and answers at 1/s over these 75 s its
    # standard error would be sqrt(1.2 * 3 / 75) = 0.22; the regular staircase's is half that.
    assert abs(slope - 1.0) <= ci < 0.25


def test_comparison_of_one_stable_and_one_overloaded_run():
    stable = next(p for p in RUNS if "load0.6" in p.stem)
    over = next(p for p in RUNS if "load1.3" in p.stem)
    table = live_comparison([stable, over], service_model="trace", replications=1).to_frame()
    s, o = table.loc[stable.stem], table.loc[over.stem]
    assert s.sim_verdict == "stable" and s.predicted_load < 1
    assert abs(s.replay_error) < 0.02
    assert s.sim_mean_s > 0 and s.latency_mean_s > 0
    assert o.predicted_load > 1 and o.live_backlog_slope_per_s > 0
    # In overload every device is busy: the model's prompt throughput must match the live one
    # (the floor for growth is 25%; the throughput is what the model predicts).
    assert abs(o.throughput_error) < 0.25 and abs(o.growth_error) < 0.25
    assert o.sim_fluid_slope_per_s > 0


def test_cross_fitting_needs_another_shape():
    one_shape = [p for p in RUNS if p.stem.startswith("live_1x1")]
    with pytest.raises(ValueError, match="service_model='cross-fitted'.*another"):
        live_comparison(one_shape, replications=1)
    with pytest.raises(ValueError, match="service_model='bogus'"):
        live_comparison(one_shape, service_model="bogus")


def test_a_job_log_without_its_prompt_log_is_refused(tmp_path):
    src = RUNS[0]
    shutil.copy(src, tmp_path / src.name)
    meta = src.with_suffix(".json")
    (tmp_path / meta.name).write_text(json.dumps(json.loads(meta.read_text())))
    with pytest.raises(ValueError, match="path=.*prompt log"):
        load_testbed(tmp_path / src.name)
