"""load_trace / save_trace on bad paths and files: one-line ValueErrors naming the path (or
the metadata file, or df) and the fix, never FileNotFoundError, IsADirectoryError,
TypeError, AttributeError or a raw pandas/json message."""

from __future__ import annotations

from pathlib import Path

import pytest
from one_line import one_line_value_error

from moa_stability.llm.trace import load_default_trace, load_trace, save_trace


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    return save_trace(load_default_trace(), tmp_path / "t.csv")


def test_missing_file_directory_and_non_path(tmp_path: Path) -> None:
    missing = tmp_path / "missing.csv"
    one_line_value_error(lambda: load_trace(missing), f"path={missing}", "no such file")
    one_line_value_error(lambda: load_trace(tmp_path), f"path={tmp_path}", "directory")
    one_line_value_error(lambda: load_trace(None), "path=NoneType", "not a file path")


def test_empty_and_binary_csv_name_the_path(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    one_line_value_error(lambda: load_trace(empty), f"path={empty}", "not a readable CSV trace")
    binary = tmp_path / "bin.csv"
    binary.write_bytes(b"\xff\xfe\x00\x01")
    one_line_value_error(lambda: load_trace(binary), f"path={binary}", "not a readable CSV trace")


def test_bad_metadata_names_the_json_file(saved: Path) -> None:
    meta = saved.with_suffix(".json")
    meta.write_text("{bad", encoding="utf-8")
    one_line_value_error(lambda: load_trace(saved), f"metadata={meta}", "not readable JSON")
    meta.write_text("[1, 2]", encoding="utf-8")  # was a TypeError from dict.update
    one_line_value_error(lambda: load_trace(saved), f"metadata={meta}", "JSON list, not an object")
    meta.write_bytes(b"\xff\xfe")
    one_line_value_error(lambda: load_trace(saved), f"metadata={meta}")


def test_save_refuses_a_non_frame_and_an_unwritable_path(tmp_path: Path) -> None:
    one_line_value_error(lambda: save_trace(None, tmp_path / "x.csv"), "df=NoneType", "DataFrame")
    one_line_value_error(lambda: save_trace(load_default_trace(), None), "path=NoneType")
    bad = "/proc/nope/x.csv"
    one_line_value_error(
        lambda: save_trace(load_default_trace(), bad), f"path={bad}", "cannot write"
    )
    blocker = tmp_path / "file"
    blocker.write_text("x")
    one_line_value_error(
        lambda: save_trace(load_default_trace(), blocker / "x.csv"), "cannot write"
    )


def test_round_trip_still_works(saved: Path) -> None:
    back = load_trace(saved)
    assert back.shape == load_default_trace().shape
    assert back.attrs == load_default_trace().attrs
