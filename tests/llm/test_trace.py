"""Traces: one schema, one reader and writer, and the checks every reader applies."""

import re
from pathlib import Path

import pandas as pd
import pytest

import moa_stability
from moa_stability.llm.trace import (
    BUSY_TRACE,
    DEFAULT_TRACE,
    FIT_COLUMNS,
    TRACE_COLUMNS,
    load_busy_trace,
    load_default_trace,
    load_trace,
    save_trace,
    validate_trace,
)


def test_save_and_load_trace(tmp_path):
    df = pd.DataFrame([dict.fromkeys(TRACE_COLUMNS, 1)] * 3).assign(job_type="propose")
    df.attrs["command"] = "moa-stability measure --configs 1x1"
    path = save_trace(df, tmp_path / "t.csv")
    back = load_trace(path)
    assert back.attrs["command"] == df.attrs["command"]
    assert list(back.columns) == list(df.columns) and len(back) == 3
    with pytest.raises(ValueError):
        save_trace(df, tmp_path / "t.txt")
    df.drop(columns="seconds").to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(ValueError, match="seconds"):
        load_trace(tmp_path / "bad.csv")


def test_the_shipped_trace_follows_the_schema():
    trace = load_default_trace()
    assert list(trace.columns[: len(TRACE_COLUMNS)]) == list(TRACE_COLUMNS)
    assert set(FIT_COLUMNS) <= set(TRACE_COLUMNS)
    assert "command" in trace.attrs
    trace.loc[0, "seconds"] = -1.0  # a copy: the cached trace is untouched
    assert (load_default_trace()["seconds"] > 0).all()


def test_the_default_trace_is_the_quiet_measurement():
    data = Path(moa_stability.__file__).parent / "data"
    trace = load_default_trace()
    pd.testing.assert_frame_equal(trace, pd.read_csv(data / DEFAULT_TRACE))
    # measure() pauses while the load average exceeds max_load plus its own running thread.
    assert trace.attrs["max_load"] <= 0.3
    assert (trace["loadavg_1min"] <= trace.attrs["max_load"] + 1).all()
    assert trace.attrs["loadavg_1min_start"] <= trace.attrs["max_load"]


def test_the_busy_trace_is_kept_with_a_note():
    data = Path(moa_stability.__file__).parent / "data"
    busy = load_busy_trace()
    pd.testing.assert_frame_equal(busy, pd.read_csv(data / BUSY_TRACE))
    assert (busy["loadavg_1min"] > 1.5).all()
    assert "trace_smollm2.csv" in busy.attrs["renamed"]
    assert BUSY_TRACE in busy.attrs["command"]
    assert not (data / "trace_smollm2.csv").exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t.drop(columns="seconds"), "lacks columns"),
        (lambda t: t.iloc[:0], "empty"),
        (lambda t: t.assign(job_type="decode"), "unknown job types"),
        (lambda t: t.assign(input_tokens=-1), "trace['input_tokens']=-1"),
        (lambda t: t.assign(seconds=0.0), "trace['seconds']=0"),
    ],
)
def test_validate_trace_names_the_problem(change, message):
    trace = pd.DataFrame([dict.fromkeys(TRACE_COLUMNS, 1)] * 3).assign(job_type="propose")
    with pytest.raises(ValueError, match=re.escape(message)):
        validate_trace(change(trace), TRACE_COLUMNS)


def test_validate_trace_rejects_unknown_column_names():
    with pytest.raises(ValueError, match="not trace columns"):
        validate_trace(load_default_trace(), ("job_type", "latency"))
