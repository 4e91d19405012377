"""The error contract's shared check: bad input raises a ValueError whose message is one line
and names what it must (tests/conftest.py's folder is on sys.path, so tests import it as
``from one_line import one_line_value_error``)."""

from __future__ import annotations

from collections.abc import Callable

import pytest


def one_line_value_error(call: Callable[[], object], *fragments: str) -> str:
    """Call ``call``, which must raise a ValueError with a one-line message holding every one
    of ``fragments``; return the message."""
    with pytest.raises(ValueError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message
    return message
