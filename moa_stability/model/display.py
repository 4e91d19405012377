"""How results show themselves in a terminal, a REPL and Jupyter (shared by every layer).

Solvers return values such as ``1.158e-11`` where the answer is 0; printed, they read as a
real (tiny) rate. :func:`tidy` sets such values to exactly 0 for display only; the result
objects keep the solver's numbers.
"""

from __future__ import annotations

import html
from importlib.util import find_spec

import numpy as np
import pandas as pd

# tqdm.auto draws a widget in Jupyter, but without ipywidgets installed it warns at import (a
# red TqdmWarning in the notebook's first cell) and falls back to text anyway: pick the text
# bar directly then.
if find_spec("ipywidgets") is not None:
    from tqdm.auto import tqdm
else:
    from tqdm.std import tqdm

NOISE = 1e-9
"""Relative size below which a displayed value is solver noise: ``|x| < NOISE * max|x|``."""

__all__ = ["NOISE", "html_summary", "tidy", "tqdm"]


def tidy(values: np.ndarray | pd.DataFrame) -> np.ndarray | pd.DataFrame:
    r"""A copy with the entries below :data:`NOISE` times the largest magnitude set to 0.

    .. math:: x \mapsto x\,[\,|x| \ge 10^{-9} \max_j |x_j|\,]

    Parameters
    ----------
    values : ndarray or pandas.DataFrame
        Numbers to display; a frame's non-numeric columns are left alone, each numeric column
        is cleaned against its own largest magnitude.

    Returns
    -------
    ndarray or pandas.DataFrame
        The cleaned copy, of the input's type.

    Examples
    --------
    >>> tidy(np.array([1.0, 1.158e-11, -2e-12]))
    array([1., 0., 0.])
    """
    if isinstance(values, pd.DataFrame):
        frame = values.copy()
        for name in frame.columns:
            if pd.api.types.is_float_dtype(frame[name]):
                frame[name] = tidy(frame[name].to_numpy())
        return frame
    x = np.array(values, dtype=float)
    finite = np.isfinite(x)
    if finite.any():
        peak = np.abs(x[finite]).max()
        x[finite & (np.abs(x) < NOISE * peak)] = 0.0
        x[x == 0] = 0.0  # -0.0 prints as "-0"
    return x


def html_summary(summary: str, *frames: pd.DataFrame) -> str:
    """Jupyter's view of a result: its text summary, then its tables (solver noise tidied).

    Parameters
    ----------
    summary : str
        The result's ``str``.
    *frames : pandas.DataFrame
        The result's tables, e.g. its ``to_frame()``.
    """
    parts = [f"<pre>{html.escape(summary)}</pre>"]
    for frame in frames:
        parts.append(tidy(frame).to_html(float_format=lambda v: f"{v:.6g}", max_rows=40))
    return "\n".join(parts)
