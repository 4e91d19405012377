"""Exact trace replay: small traces worked out by hand, a Lindley recursion, hostile input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import moa_stability
from moa_stability.llm.replay import REPLAY_COLUMNS, replay, trace_jobs
from moa_stability.llm.service import load_default_trace


def table(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(REPLAY_COLUMNS))


# Two prompts, n = 2, M = 1, k = 1 (prompt_id, origin, arrival_s, layer, device, seconds).
TWO_PROMPTS = [
    ("A", 0, 0.0, 1, 0, 2.0),
    ("A", 0, 0.0, 1, 1, 3.0),
    ("A", 0, 0.0, 2, 0, 1.0),
    ("B", 1, 1.0, 1, 1, 1.0),
    ("B", 1, 1.0, 1, 0, 4.0),
    ("B", 1, 1.0, 2, 1, 2.0),
]


def test_two_prompts_with_joins_by_hand():
    # A layer 1 (ready 0): device 0 serves [0, 2], device 1 [0, 3]; join at 3.
    # B layer 1 (ready 1): device 1 is busy until 3 -> [3, 4]; device 0 until 2 -> [2, 6];
    #   join at 6.
    # A aggregate (ready 3): device 0 busy until 6 -> [6, 7]: answer 7, latency 7.
    # B aggregate (ready 6): device 1 free since 4 -> [6, 8]: answer 8, latency 7.
    result = replay(table(TWO_PROMPTS))
    assert result.latency.to_dict() == {"A": 7.0, "B": 7.0}
    assert result.latency.index.name == "prompt_id"
    assert result.mean_latency == 7.0
    assert result.horizon_s == 8.0
    jobs = result.jobs
    assert jobs["start_s"].tolist() == [0.0, 0.0, 6.0, 3.0, 2.0, 6.0]
    assert jobs["end_s"].tolist() == [2.0, 3.0, 7.0, 4.0, 6.0, 8.0]
    assert jobs["ready_s"].tolist() == [0.0, 0.0, 3.0, 1.0, 1.0, 6.0]
    # Jobs present, integrated: device 0 has (0, 2), (1, 6), (3, 7) -> 2 + 5 + 4 = 11 over 8 s;
    # device 1 has (0, 3), (1, 4), (6, 8) -> 3 + 3 + 2 = 8.
    np.testing.assert_allclose(result.mean_queue, [11 / 8, 8 / 8], rtol=1e-15)
    # Waiting only: device 0 waits 1 (B) + 3 (A's aggregate); device 1 waits 2 (B).
    np.testing.assert_allclose(result.mean_waiting, [4 / 8, 2 / 8], rtol=1e-15)
    np.testing.assert_allclose(result.utilisation, [7 / 8, 6 / 8], rtol=1e-15)
    # The paper's statistic: A's job on device 0 ends at 2 with B's first layer (ready 1, on
    # device 0) pending -> 1 x 2 s; A's job on device 1 ends at 3, B pending on 1 -> 1 x 3 s;
    # B's job on device 0 ends at 6 with A's aggregate (ready 3) pending -> 1 x 4 s; the rest
    # see nothing. Divided by the last dispatched answer (B, 8 s), averaged over 2 devices.
    np.testing.assert_allclose(result.paper_queue_per_device, [6 / 8, 3 / 8], rtol=1e-15)
    assert result.paper_queue_size == pytest.approx((6 / 8 + 3 / 8) / 2, rel=1e-15)
    frame = result.to_frame()
    assert frame["jobs"].tolist() == [3, 3]
    assert "paper" in str(result) and "ReplayResult" in repr(result)


def test_row_order_does_not_matter():
    shuffled = table(TWO_PROMPTS).sample(frac=1.0, random_state=3)
    result = replay(shuffled)
    assert result.latency.to_dict() == {"A": 7.0, "B": 7.0}
    assert result.paper_queue_size == pytest.approx(9 / 16, rel=1e-15)


def test_paper_statistic_divides_by_last_dispatched_answer():
    # M = 0. A (device 0) takes 10 s from 0; B (device 0, born 1) waits until 10 and ends
    # at 11; C (device 1, born 2) ends at 3. C's stage is dispatched last (ready 2), so the
    # paper divides by 3 s, not by the last answer (11 s). A's service sees B pending: 10 s.
    jobs = table(
        [
            (0, 0, 0.0, 1, 0, 10.0),
            (1, 0, 1.0, 1, 0, 1.0),
            (2, 1, 2.0, 1, 1, 1.0),
        ]
    )
    result = replay(jobs)
    assert result.latency.tolist() == [10.0, 10.0, 1.0]
    assert result.paper_horizon_s == 3.0 and result.horizon_s == 11.0
    assert result.paper_queue_size == pytest.approx((10 / 3 + 0) / 2, rel=1e-15)
    np.testing.assert_allclose(result.mean_queue, [20 / 11, 1 / 11], rtol=1e-15)


def test_paper_statistic_charges_the_queue_seen_at_the_end_of_each_service():
    # One device, M = 1, k = 0. P born 0, Q born 0.5, every job 1 s. FCFS by ready time:
    # P proposes [0, 1] (join 1); Q proposes [1, 2] (ready 0.5, before P's aggregate at 1);
    # P aggregates [2, 3]; Q aggregates [3, 4]. Latencies 3 and 3.5.
    # True waiting: Q's proposal 0.5 s, P's aggregate 1 s, Q's aggregate 1 s = 2.5 s.
    # The paper charges each service with the jobs pending at its end: P's proposal sees Q
    # (1 x 1 s, though Q waited only 0.5 s of it), Q's proposal sees P's aggregate (1 s),
    # P's aggregate sees Q's (1 s): 3 s.
    jobs = table(
        [
            ("P", 0, 0.0, 1, 0, 1.0),
            ("P", 0, 0.0, 2, 0, 1.0),
            ("Q", 0, 0.5, 1, 0, 1.0),
            ("Q", 0, 0.5, 2, 0, 1.0),
        ]
    )
    result = replay(jobs)
    assert result.latency.to_dict() == {"P": 3.0, "Q": 3.5}
    assert result.paper_queue_size == pytest.approx(3 / 4, rel=1e-15)
    assert result.mean_waiting[0] == pytest.approx(2.5 / 4, rel=1e-15)


def test_paper_statistic_misses_stages_generated_during_a_service():
    # n = 3. X (origin 0, M = 0) runs [0, 10] on device 0. Y (origin 1, born 0.5, M = 2,
    # k = 1): layer 1 on devices 1, 2 [0.5, 1.5]; layer 2 on devices 1 [1.5, 2.5] and 0
    # (waits behind X: [10, 11]); aggregate on 1 [11, 12]. Y's layer 2 did not exist when X
    # was dispatched, so the paper counts no waiting at all, while device 0 held a waiting
    # job from 1.5 to 10 s.
    jobs = table(
        [
            ("X", 0, 0.0, 1, 0, 10.0),
            ("Y", 1, 0.5, 1, 1, 1.0),
            ("Y", 1, 0.5, 1, 2, 1.0),
            ("Y", 1, 0.5, 2, 1, 1.0),
            ("Y", 1, 0.5, 2, 0, 1.0),
            ("Y", 1, 0.5, 3, 1, 1.0),
        ]
    )
    result = replay(jobs)
    assert result.latency.to_dict() == {"X": 10.0, "Y": 11.5}
    assert result.paper_queue_size == 0.0
    np.testing.assert_allclose(result.mean_waiting, [8.5 / 12, 0.0, 0.0], atol=1e-15)


def test_single_device_matches_lindley_recursion():
    rng = np.random.default_rng(11)
    births = np.cumsum(rng.exponential(1.0, 300))
    service = rng.exponential(0.8, 300)
    jobs = pd.DataFrame(
        {
            "prompt_id": np.arange(300),
            "origin": 0,
            "arrival_s": births,
            "layer": 1,
            "device": 0,
            "seconds": service,
        }
    )
    departure, latency = 0.0, []
    for a, s in zip(births, service, strict=True):  # W_{j+1} = max(D_j, a_{j+1}) + S - a
        departure = max(departure, a) + s
        latency.append(departure - a)
    result = replay(jobs)
    np.testing.assert_allclose(result.latency.to_numpy(), latency, rtol=1e-12)
    # Little's law on the sample path: area = sum of sojourn times.
    assert result.mean_queue[0] == pytest.approx(sum(latency) / departure, rel=1e-12)
    assert result.utilisation[0] == pytest.approx(service.sum() / departure, rel=1e-12)


def test_idle_devices_count_when_n_is_given():
    jobs = table([(0, 0, 0.0, 1, 0, 2.0)])
    result = replay(jobs, n=4)
    assert result.mean_queue.tolist() == [1.0, 0.0, 0.0, 0.0]
    assert result.paper_queue_size == 0.0
    assert moa_stability.replay is replay


@pytest.mark.parametrize(
    ("change", "column"),
    [
        (lambda t: t.drop(columns="seconds"), "seconds"),
        (lambda t: t.assign(seconds=[2.0, -1.0, 1, 1, 1, 1]), "seconds"),
        (lambda t: t.assign(arrival_s=[0.0, np.nan, 0, 1, 1, 1]), "arrival_s"),
        (lambda t: t.assign(device=[0, 1.5, 0, 1, 0, 1]), "device"),
        (lambda t: t.assign(layer=[1, 1, 0, 1, 1, 2]), "layer"),
        (lambda t: t.assign(layer=[1, 1, 3, 1, 1, 2]), "layer"),
        (lambda t: t.assign(origin=[0, 1, 0, 1, 1, 1]), "origin"),
        (lambda t: t.assign(arrival_s=[0.0, 0.5, 0, 1, 1, 1]), "arrival_s"),
        (lambda t: t.assign(device=[0, 0, 0, 1, 0, 1]), "device"),
        (lambda t: t.assign(device=[1, 1, 0, 1, 0, 1]), "device"),
        (lambda t: t.assign(device=[0, 1, 1, 1, 0, 1]), "origin"),
        (lambda t: t.assign(device=[0, 1, 0, 1, 0, -1]), "device"),
        (lambda t: t.iloc[:0], "jobs"),
    ],
)
def test_bad_input_names_the_column(change, column):
    with pytest.raises(ValueError, match=rf"^{column}="):
        replay(change(table(TWO_PROMPTS)))


def test_bad_container_and_device_count():
    with pytest.raises(ValueError, match="^jobs="):
        replay(TWO_PROMPTS)
    with pytest.raises(ValueError, match="^device="):
        replay(table(TWO_PROMPTS), n=1)
    with pytest.raises(ValueError, match="^n="):
        replay(table(TWO_PROMPTS), n=0)


def test_last_layer_must_be_one_job():
    jobs = table([(0, 0, 0.0, 1, 0, 1.0), (0, 0, 0.0, 2, 0, 1.0), (0, 0, 0.0, 2, 1, 1.0)])
    with pytest.raises(ValueError, match="^layer=2: the last layer"):
        replay(jobs)


def test_trace_jobs_keeps_durations_and_draws_births():
    trace = load_default_trace()
    jobs = trace_jobs(trace, 1, 2, n_prompts=10, seed=4)
    assert jobs["prompt_id"].nunique() == 10
    assert len(jobs) == 10 * ((2 + 1) * 1 + 1)
    births = jobs.groupby("prompt_id")["arrival_s"].first().sort_values().to_numpy()
    expected = np.cumsum(np.random.default_rng(4).exponential(1.0, 10))
    np.testing.assert_allclose(np.sort(births), expected, rtol=1e-15)
    aggregate = jobs[jobs["layer"] == 2]
    assert (aggregate["device"] == aggregate["origin"]).all()
    result = replay(jobs, n=4)
    # Every prompt waits at least for its own critical path: slowest proposer + aggregate.
    path = jobs.groupby(["prompt_id", "layer"])["seconds"].max().groupby("prompt_id").sum()
    assert (result.latency >= path.reindex(result.latency.index) - 1e-12).all()
    with pytest.raises(ValueError, match="^n_prompts="):
        trace_jobs(trace, 1, 2, n_prompts=1000)
