"""replay on hostile job tables: huge or wrapped device/layer numbers, booleans, unhashable
prompt ids, a zero horizon and overflowing times all give one-line ValueErrors naming the
column (never a MemoryError, an IndexError, a TypeError or NaN results)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from moa_stability.llm.replay import replay
from moa_stability.model.network import MAX_DEVICES, MAX_LAYERS


def jobs(**changes) -> pd.DataFrame:
    """Two one-job prompts on device 0; ``changes`` replace whole columns."""
    columns = dict(
        prompt_id=[0, 1],
        origin=[0, 0],
        arrival_s=[0.0, 1.0],
        layer=[1, 1],
        device=[0, 0],
        seconds=[2.0, 2.0],
    )
    columns.update(changes)
    return pd.DataFrame(columns)


@pytest.mark.parametrize(
    ("table", "n", "fragments"),
    [
        # n = max device + 1 allocated GBs (MemoryError at 10^12).
        (
            jobs(device=[0, 10**9], origin=[0, 10**9]),
            None,
            ["=1000000000", f"<= {MAX_DEVICES - 1}"],
        ),
        (jobs(device=[0, 10**9], origin=[0, 0]), None, ["device=1000000000"]),
        (jobs(), 10**12, ["n=1000000000000", f"n <= {MAX_DEVICES}"]),
        # The int64 cast wrapped 2^63 to -2^63: an IndexError.
        (jobs(device=[2**63, 0], origin=[2**63, 0]), None, ["origin=9223372036854775808"]),
        # ... and reported layer=[-9223372036854775808] for 2^70.
        (jobs(layer=[2**70, 1]), None, ["layer=1180591620717411303424", f"{MAX_LAYERS + 1}"]),
        # TypeError: unhashable type: 'list'.
        (jobs(prompt_id=[[1], [2]]), None, ["prompt_id=[1]", "unhashable list"]),
        # Booleans counted as devices 1 and 0.
        (jobs(device=[True, False], origin=[True, False]), None, ["origin=True", "boolean"]),
        (jobs(device=[True, 0], origin=[1, 0]), None, ["device=True", "boolean"]),
        (jobs(seconds=[True, 2.0]), None, ["seconds=True", "boolean"]),
        # Horizon 0: mean_queue, utilisation and the paper statistic were NaN.
        (jobs(seconds=[0.0, 0.0], arrival_s=[0.0, 0.0]), None, ["seconds=", "horizon T is 0"]),
        # End times overflowed: mean_latency inf, NaN queues.
        (jobs(seconds=[1e308, 1e308]), None, ["seconds=", "overflow"]),
    ],
)
def test_hostile_job_tables_raise_one_line_value_errors(table, n, fragments) -> None:
    with pytest.raises(ValueError) as info:
        replay(table, n=n)
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message


def test_devices_up_to_the_cap_replay_without_per_device_python_lists() -> None:
    top = MAX_DEVICES - 1
    result = replay(jobs(device=[0, top], origin=[0, top]))
    assert result.n == MAX_DEVICES
    assert result.latency.tolist() == [2.0, 2.0]
    assert result.utilisation[[0, top]].tolist() == [2 / 3, 2 / 3]
    assert result.mean_queue.sum() == pytest.approx(4 / 3)
    assert np.isfinite(result.paper_queue_size)


def test_zero_second_jobs_after_time_zero_have_defined_statistics() -> None:
    result = replay(jobs(seconds=[0.0, 0.0], arrival_s=[5.0, 5.0]))
    assert result.horizon_s == 5.0
    assert result.mean_queue.tolist() == [0.0]
    assert result.paper_queue_size == 0.0


def test_paper_statistic_is_finite_when_the_last_dispatched_prompt_answers_at_zero() -> None:
    # Both born at 0: prompt 0 takes 5 s on device 1, then prompt 1 (0 s, device 0) is
    # dispatched last and answers at 0, so T_paper = 0; the terms divide by T = 5 instead.
    table = jobs(origin=[1, 0], arrival_s=[0.0, 0.0], device=[1, 0], seconds=[5.0, 0.0])
    result = replay(table)
    assert result.paper_horizon_s == 0.0
    assert np.all(np.isfinite(result.paper_queue_per_device))
    assert result.utilisation.tolist() == [0.0, 1.0]


def test_huge_but_finite_arrivals_still_replay() -> None:
    result = replay(jobs(arrival_s=[1e308, 1.0]))
    assert result.horizon_s == 1e308
    assert np.isfinite(result.mean_latency) and np.all(np.isfinite(result.mean_queue))
