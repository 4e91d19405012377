"""Inference traces: the one column schema, and the one reader, writer and checker of traces.

A trace has one row per timed inference (:func:`moa_stability.llm.measure.measure` writes
them): which prompt and ``(M, k)`` it belongs to, its layer, job type and device, its token
counts and wall-clock seconds. It is stored as CSV with its metadata (``df.attrs``: model,
runtime, CPU, the regenerating command, ...) as JSON beside it, same name, suffix ``.json``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..model.network import JOB_TYPES

TRACE_COLUMNS: tuple[str, ...] = (
    "prompt_id",
    "M",
    "k",
    "layer",
    "job_type",
    "device",
    "input_tokens",
    "output_tokens",
    "seconds",
    "ttft_seconds",
    "finish_reason",
    "loadavg_1min",
)
"""The columns of a trace, in order (a measured trace adds ``request`` and ``order``)."""

DEFAULT_TRACE = "trace_smollm2_quiet.csv"
"""The shipped SmolLM2-135M trace, in ``moa_stability/data``: measured with nothing else
running (load average below 0.3 at each start)."""

BUSY_TRACE = "trace_smollm2_busy.csv"
"""The same measurement on a shared machine (load average 1.5-8.5), in ``moa_stability/data``:
kept as the record of what CPU contention does to inference times, not as a service model."""

FIT_COLUMNS: tuple[str, ...] = ("job_type", "input_tokens", "output_tokens", "seconds")
"""The columns a service-time fit needs."""

_NUMERIC_COLUMNS = ("M", "k", "layer", "device", "input_tokens", "output_tokens", "seconds")
"""Columns that must hold finite non-negative numbers (``seconds`` > 0)."""


def validate_trace(trace: Any, columns: Sequence[str] = FIT_COLUMNS) -> pd.DataFrame:
    """Check that a trace has ``columns``, known job types and sane values; return it.

    Parameters
    ----------
    trace : pandas.DataFrame
        The trace to check.
    columns : sequence of str
        The columns the caller needs, from :data:`TRACE_COLUMNS`; default those of a
        service-time fit (``job_type``, token counts, ``seconds``).

    Returns
    -------
    pandas.DataFrame
        ``trace`` itself.

    Raises
    ------
    ValueError
        On a missing column, an empty trace, an unknown job type, a numeric column holding
        text, NaN, inf or negative values, or seconds that are not > 0.
    """
    unknown_columns = [c for c in columns if c not in TRACE_COLUMNS]
    if unknown_columns:
        raise ValueError(
            f"columns={unknown_columns}: not trace columns; use names from {TRACE_COLUMNS}"
        )
    if not isinstance(trace, pd.DataFrame):
        raise ValueError(
            f"trace={type(trace).__name__}: a trace is a pandas.DataFrame; "
            "read one with load_trace or load_default_trace"
        )
    missing = [c for c in columns if c not in trace.columns]
    if missing:
        raise ValueError(
            f"trace={list(trace.columns)}: lacks columns {missing}; "
            "use a trace as measure() writes it"
        )
    if len(trace) == 0:
        raise ValueError("trace=(0 rows): the trace is empty; pass a trace with rows")
    unknown = sorted(map(str, set(trace["job_type"]) - set(JOB_TYPES)))
    if unknown:
        raise ValueError(f"job_type={unknown}: unknown job types; use those of {JOB_TYPES}")
    for c in (c for c in columns if c in _NUMERIC_COLUMNS):
        column = trace[c]
        # Text, booleans and NaN would turn into wrong numbers or an SVD that does not converge.
        if not pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
            raise ValueError(f"trace[{c!r}]={column.dtype}: not numeric; give numbers")
        values = column.to_numpy(float)
        bad = values[~np.isfinite(values)]
        if bad.size:
            raise ValueError(f"trace[{c!r}]={bad[0]}: NaN or inf; drop or fix those rows")
        if c == "seconds" and np.any(values <= 0):
            raise ValueError(f"trace['seconds']={values.min():g}: must be > 0; drop those rows")
        if np.any(values < 0):
            raise ValueError(f"trace[{c!r}]={values.min():g}: negative; fix those rows")
    return trace


def _metadata_path(path: Path) -> Path:
    return path.with_suffix(".json")


def _first_line(err: BaseException) -> str:
    """The first line of an error's message, short: our messages are one line."""
    text = (str(err).splitlines() or [type(err).__name__])[0]
    return text if len(text) <= 120 else f"{text[:117]}..."


def _path_field(path: Any, field: str = "path") -> Path:
    """``path`` as a :class:`~pathlib.Path`, else a ValueError naming ``field``."""
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(
            f"{field}={type(path).__name__}: not a file path; pass a str or pathlib.Path "
            "ending in .csv"
        )
    return Path(path)


def save_trace(df: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write a trace as CSV plus its metadata (``df.attrs``) as JSON beside it.

    Parameters
    ----------
    df : pandas.DataFrame
        The trace.
    path : str or os.PathLike
        The CSV file to write (suffix ``.csv``); its folder is created if missing.

    Returns
    -------
    pathlib.Path
        The CSV path; the metadata goes to the same name with suffix ``.json``.

    Raises
    ------
    ValueError
        When ``df`` is not a DataFrame, ``path`` is not a path ending in ``.csv``, or the
        folder or files cannot be written (the message names the path and the OS error).
    """
    if not isinstance(df, pd.DataFrame):
        raise ValueError(
            f"df={type(df).__name__}: a trace is a pandas.DataFrame; "
            "pass one as measure() or load_trace returns it"
        )
    path = _path_field(path)
    if path.suffix != ".csv":
        raise ValueError(f"path={path}: a trace path must end in .csv; rename it")
    meta = json.dumps(df.attrs, indent=1, default=str, ensure_ascii=False)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        df.to_csv(path, index=False)
        _metadata_path(path).write_text(meta + "\n", encoding="utf-8")
    except OSError as err:
        raise ValueError(
            f"path={path}: cannot write the trace ({_first_line(err)}); "
            "pass a path in a folder you can write"
        ) from err
    return path


def _read(csv: Any, meta: Any, name: str) -> pd.DataFrame:
    """A trace from an open CSV (or its path) and its metadata file (a Path or a package
    resource); ``name`` is the CSV's path, for messages."""
    try:
        df = pd.read_csv(csv)
    except (ValueError, pd.errors.ParserError, OSError) as err:  # empty, binary, bad quoting
        raise ValueError(
            f"path={name}: not a readable CSV trace ({_first_line(err)}); "
            "pass a .csv file as save_trace or measure() writes it"
        ) from err
    validate_trace(df, TRACE_COLUMNS)
    if meta.is_file():
        try:
            attrs = json.loads(meta.read_text(encoding="utf-8"))
        except (ValueError, OSError) as err:  # bad JSON, bad UTF-8, unreadable
            raise ValueError(
                f"metadata={meta}: not readable JSON ({_first_line(err)}); "
                "fix or delete the .json file beside the trace"
            ) from err
        if not isinstance(attrs, dict):
            raise ValueError(
                f"metadata={meta}: holds a JSON {type(attrs).__name__}, not an object; "
                "write a JSON object of fields (as save_trace does) or delete the file"
            )
        df.attrs.update(attrs)
    return df


def load_trace(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a trace written by :func:`save_trace` (metadata into ``df.attrs`` if present).

    Parameters
    ----------
    path : str or os.PathLike
        The CSV file.

    Raises
    ------
    ValueError
        When ``path`` is not a path or not a readable file, when the file is not CSV, lacks
        a column of :data:`TRACE_COLUMNS` or fails :func:`validate_trace`, or when its
        metadata file is not a JSON object. The message names the path.
    """
    path = _path_field(path)
    if not path.exists():
        raise ValueError(
            f"path={path}: no such file; pass the .csv that save_trace or measure() wrote"
        )
    if not path.is_file():
        raise ValueError(f"path={path}: is a directory, not a file; pass the trace's .csv file")
    return _read(path, _metadata_path(path), str(path))


def load_default_trace() -> pd.DataFrame:
    """The shipped SmolLM2-135M trace (``moa_stability/data/trace_smollm2_quiet.csv``), a copy.

    Metadata (model, runtime, CPU, regenerating command, ...) is in ``df.attrs``.
    """
    return _shipped_trace(DEFAULT_TRACE).copy()


def load_busy_trace() -> pd.DataFrame:
    """The SmolLM2-135M trace timed on a busy machine (:data:`BUSY_TRACE`), a copy.

    Same prompts, shapes and seed as the default trace, timed while other jobs shared the two
    cores (``loadavg_1min`` per row): the contrast that shows what contention does to the
    residuals (figure 4). Metadata, with a note on why it is kept, is in ``df.attrs``.
    """
    return _shipped_trace(BUSY_TRACE).copy()


@lru_cache(maxsize=2)
def _shipped_trace(name: str) -> pd.DataFrame:
    data = resources.files("moa_stability").joinpath("data")
    with data.joinpath(name).open("r", encoding="utf-8") as fh:
        return _read(fh, data.joinpath(name.replace(".csv", ".json")), name)


__all__ = [
    "BUSY_TRACE",
    "DEFAULT_TRACE",
    "FIT_COLUMNS",
    "TRACE_COLUMNS",
    "load_busy_trace",
    "load_default_trace",
    "load_trace",
    "save_trace",
    "validate_trace",
]
