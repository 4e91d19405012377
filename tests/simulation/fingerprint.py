"""A fingerprint of one field of a simulation result, for tests that require two runs (or a run
and a fixture) to agree bit for bit: ``test_kernel_regression`` and ``test_look_ahead``."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import scipy.sparse as sp


def digest(value) -> object:
    """A JSON-able fingerprint of one result field: ``repr`` of a scalar, else the SHA-256 of
    the dtype, shape and bytes of its arrays (sparse: data, indices, indptr; frame: values and
    index)."""
    if value is None or isinstance(value, (bool, int, float, str, np.generic)):
        return repr(value)
    if isinstance(value, tuple):
        return [digest(v) for v in value]
    if sp.issparse(value):
        parts = [value.data, value.indices, value.indptr, np.asarray(value.shape)]
    elif isinstance(value, pd.DataFrame):
        parts = [value.to_numpy(), value.index.to_numpy(), np.asarray(value.columns)]
    else:
        parts = [np.asarray(value)]
    h = hashlib.sha256()
    for a in parts:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes() if a.dtype != object else repr(a.tolist()).encode())
    return h.hexdigest()
