"""Memory caps on sizes the validators accept: n (MAX_DEVICES), M (MAX_LAYERS) and the edge
ends of random_regular_graph (MAX_STUBS) are refused up front with a one-line ValueError that
names the field, the value and the largest value that works, never a MemoryError after
allocating gigabytes; and the paths that are O(n) or O(M) work at the caps."""

from __future__ import annotations

import numpy as np
import pytest
from one_line import one_line_value_error

from moa_stability import (
    MoANetwork,
    helper_rates,
    inferences_per_prompt,
    job_rates,
    latency,
    loads,
    network_from_dict,
    random_regular_graph,
    stability_report,
)
from moa_stability.model import network as network_module
from moa_stability.model.network import MAX_DEVICES, MAX_LAYERS, MAX_STUBS


def test_caps_sit_well_above_the_million_device_target() -> None:
    assert MAX_DEVICES >= 10**7
    assert MAX_LAYERS >= 10**6
    assert MAX_DEVICES < network_module.MAX_COUNT and MAX_LAYERS < network_module.MAX_COUNT


@pytest.mark.parametrize(
    ("call", "fragments"),
    [
        # Each of these raised MemoryError (16 GiB for n = 2^31 - 1, 17 GiB of k tuple for M).
        (lambda: MoANetwork(n=2**31 - 1, M=0), ("n=2147483647", f"n <= {MAX_DEVICES}")),
        (lambda: MoANetwork(n=200_000_000, M=0), ("n=200000000", f"n <= {MAX_DEVICES}")),
        (lambda: MoANetwork(n=MAX_DEVICES + 1), (f"n={MAX_DEVICES + 1}", f"n <= {MAX_DEVICES}")),
        (lambda: MoANetwork(n=4, M=2**31 - 1, k=0), ("M=2147483647", f"M <= {MAX_LAYERS}")),
        (lambda: MoANetwork(n=2, M=2**31 - 1, k=1), ("M=2147483647", f"M <= {MAX_LAYERS}")),
        (lambda: MoANetwork(n=2, M=MAX_LAYERS + 1), (f"M={MAX_LAYERS + 1}", f"M <= {MAX_LAYERS}")),
        (
            lambda: inferences_per_prompt(2**31 - 1, 2**31 - 1),
            ("M=2147483647", f"M <= {MAX_LAYERS}"),
        ),
        (lambda: network_from_dict({"n": 2**31 - 1}), ("n=2147483647", f"n <= {MAX_DEVICES}")),
        (
            lambda: network_from_dict({"n": 2**31 - 1, "topology": {"edges": [[0, 1]]}}),
            ("n=2147483647", f"n <= {MAX_DEVICES}"),
        ),
        (lambda: random_regular_graph(2**31 - 1, 2), ("n=2147483647", f"n <= {MAX_DEVICES}")),
        (
            lambda: random_regular_graph(10**7, 100),
            ("degree=100", f"degree <= {MAX_STUBS // 10**7}"),
        ),
    ],
)
def test_sizes_that_do_not_fit_in_memory_are_refused_up_front(call, fragments) -> None:
    one_line_value_error(call, *fragments)


def test_the_caps_themselves_are_accepted() -> None:
    assert inferences_per_prompt(MAX_LAYERS, 1) == 2 * MAX_LAYERS + 1
    assert MoANetwork(n=2, M=MAX_LAYERS, k=1).M == MAX_LAYERS


def test_loads_and_report_at_the_layer_cap_match_the_closed_form() -> None:
    # Loads were one pass over the n devices per layer: O(n M). Now O(n + M).
    lam, s = 1e-8, 0.5
    net = MoANetwork(n=4, M=MAX_LAYERS, k=2, arrival_rate=lam, service_time=s)
    expected = lam * s * inferences_per_prompt(MAX_LAYERS, 2)  # homogeneous complete graph
    np.testing.assert_allclose(loads(net), expected, rtol=1e-12)
    report = stability_report(net, latency=False)
    assert report.verdict == "stable" and report.max_load == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("topology", ["complete", "ring", "star"])
def test_layer_rates_in_one_pass_equal_the_per_layer_sum(topology: str) -> None:
    rng = np.random.default_rng(3)
    n = 7
    net = MoANetwork(
        n=n,
        M=5,
        k=[1, 2, 0, 1, 2] if topology == "ring" else [1, 1, 0, 1, 1],
        arrival_rate=rng.uniform(0.01, 0.1, n),
        service_time=rng.uniform(0.5, 2.0, n),
        topology=topology,
    )
    reference = np.zeros((3, n))
    reference[0] = net.arrival_rate + helper_rates(net, 0)
    for layer in range(1, net.M):
        reference[1] += net.arrival_rate + helper_rates(net, layer)
    reference[2] = net.arrival_rate
    np.testing.assert_allclose(job_rates(net), reference, rtol=1e-13, atol=0)


def test_loads_report_and_latency_at_the_device_cap() -> None:
    # About 1.4 GB peak and a few seconds: the cap is what these paths actually handle.
    net = MoANetwork(n=MAX_DEVICES, M=2, k=1, arrival_rate=0.01)
    rho = loads(net)
    assert rho.shape == (MAX_DEVICES,)
    np.testing.assert_allclose(rho[[0, -1]], 0.01 * inferences_per_prompt(2, 1))
    assert stability_report(net, latency=False).verdict == "stable"
    assert np.isfinite(latency(net).mean_s)
