"""MoANetwork messages: every bad value gives a one-line ValueError (2-D values were shown one
row per line by np.array2string), topology=None and unknown replace() fields included."""

from __future__ import annotations

import numpy as np
import pytest

from moa_stability import MoANetwork, network_from_dict


def _message(call) -> str:
    with pytest.raises(ValueError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message, message
    assert len(message) < 400
    return message


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        (lambda: MoANetwork(n=4, arrival_rate=[[0.1], [0.1], [0.1], [0.1]]), "arrival_rate=[[0.1]"),
        (lambda: MoANetwork(n=4, service_time=np.ones((5, 4))), "service_time="),
        (lambda: MoANetwork(n=4, arrival_rate=np.ones((40, 40))), "..."),
        (
            lambda: network_from_dict({"n": 4, "topology": {"edges": [[0, 1.5], [1, 2], [2, 3]]}}),
            "topology.edges=",
        ),
        (lambda: MoANetwork(n=4, arrival_rate=[[1, 2], [3]]), "arrival_rate="),
    ],
)
def test_multi_dimensional_values_are_shown_on_one_line(call, fragment: str) -> None:
    assert fragment in _message(call)


def test_topology_none_is_a_value_error() -> None:
    # Was AttributeError: None matched the validated-graph registry's missing-key answer.
    message = _message(lambda: MoANetwork(n=3, M=1, k=1, topology=None))
    assert message.startswith("topology=None:")
    assert "'complete'" in message


def test_replace_names_unknown_fields_and_lists_the_valid_ones() -> None:
    net = MoANetwork(n=3, M=1, k=1)
    message = _message(lambda: net.replace(foo=1, arrival_rate=0.1))
    assert message.startswith("replace=foo:")
    assert "'arrival_rate'" in message and "'topology'" in message
    assert net.replace(arrival_rate=0.1).arrival_rate.tolist() == [0.1] * 3
