"""Hostile inputs: every public entry point, given generated bad values for one parameter at a
time, may only raise ``ValueError`` whose message names that parameter; numpy scalars of the
right kind (np.float32 for floats, np.int64 for counts) must keep working."""

from __future__ import annotations

import math

import networkx as nx
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from moa_stability import (
    MoANetwork,
    helper_rates,
    job_rates,
    kelly_type,
    loads,
    max_uniform_scale,
    network_from_dict,
    paper_network,
    random_regular_graph,
    simulate,
    stability_report,
    sweep,
)
from moa_stability.analysis.optimize import capacity_region, max_stable_rate
from moa_stability.llm import service

NET = MoANetwork(n=4, M=2, k=2, arrival_rate=0.01, service_time=1.0)

# ---- bad values, by what the parameter expects -----------------------------------------------
JUNK = st.sampled_from(
    [
        None,
        "abc",
        "1.5",
        [],
        [[1, 2], [3]],
        {"a": 1},
        object(),
        np.datetime64("2020-01-01"),
        np.complex128(1 + 1j),
        ["a", "b", "c", "d"],
    ]
)
BOOLS = st.sampled_from([True, False, np.bool_(True)])
NON_FINITE = st.sampled_from(
    [math.nan, math.inf, -math.inf, np.float16("nan"), np.float32("inf"), np.float64("-inf")]
)
NOT_NONE = JUNK.filter(lambda v: v is not None)
ODD_DTYPES = st.sampled_from([np.complex64(1), np.str_("2"), np.bytes_(b"2"), np.void(b"\x01")])


def bad_real(minimum: float | None = 0.0, strict: bool = False, below: float | None = None):
    """Values that are not a finite real ``>= minimum`` (``> minimum`` if strict, ``< below``)."""
    out = JUNK | BOOLS | NON_FINITE | ODD_DTYPES
    if minimum is not None:
        out |= st.floats(max_value=minimum, exclude_max=not strict, allow_nan=False)
        out |= st.integers(max_value=math.floor(minimum) - (0 if strict else 1))
    if below is not None:
        out |= st.floats(min_value=below, allow_nan=False, allow_infinity=False)
    return out


def bad_count(minimum: int, maximum: int | None = None):
    """Values that are not an integer in ``[minimum, maximum]``: floats (even whole) included."""
    out = JUNK | BOOLS | NON_FINITE | ODD_DTYPES | st.floats(allow_nan=False)
    out |= st.integers(max_value=minimum - 1) | st.just(np.int64(minimum - 1))
    if maximum is not None:
        out |= st.integers(min_value=maximum + 1, max_value=10**40)
    return out


def bad_choice(choices):
    return JUNK | BOOLS | NON_FINITE | st.text(max_size=8).filter(lambda s: s not in choices)


def bad_per_device():
    """Not a non-negative scalar or length-4 vector."""
    return (
        bad_real()
        | st.lists(st.floats(0, 1), min_size=5, max_size=6)
        | st.lists(st.floats(0, 1), min_size=1, max_size=3).map(np.array)
        | st.just([0.1, "a", 0.2, 0.3])
        | st.just([0.1, math.nan, 0.2, 0.3])
        | st.just([[0.1, 0.2], [0.3]])
        | st.just(np.array([0.1, 0.2, 0.3, 0.4], dtype=np.complex128))
        | st.just(np.array([True, False, True, True]))
    )


def bad_flag():
    return JUNK | NON_FINITE | st.integers() | st.floats(allow_nan=False)


def tiny_simulation(**kwargs):
    return simulate(NET, **{"horizon": 50.0, "seed": 0, **kwargs})


def tiny_sweep(**kwargs):
    kwargs = {"grid": {"M": [1]}, "client": None, "progress": False, "horizon": 10.0, **kwargs}
    return sweep(**kwargs)


def trace():
    return service.load_default_trace()


# (entry point, parameter as named in the message, call with the bad value, bad values)
CASES = [
    ("MoANetwork", "n", lambda v: MoANetwork(n=v), bad_count(1, 2**31 - 1)),
    ("MoANetwork", "M", lambda v: MoANetwork(n=4, M=v, k=1), bad_count(0, 2**31 - 1)),
    ("MoANetwork", "k", lambda v: MoANetwork(n=4, M=2, k=v), bad_count(0, 3) | st.just([1])),
    ("MoANetwork", "arrival_rate", lambda v: MoANetwork(n=4, arrival_rate=v), bad_per_device()),
    (
        "MoANetwork",
        "service_time",
        lambda v: MoANetwork(n=4, service_time=v),
        bad_per_device() | st.just(0.0) | st.just({"propose": 1.0, 7: 2.0}),
    ),
    (
        "MoANetwork",
        "topology",
        lambda v: MoANetwork(n=4, topology=v),
        JUNK.filter(lambda v: v is not None) | st.just(np.eye(4)) | st.just(np.ones((3, 3))),
    ),
    (
        "MoANetwork",
        "selection",
        lambda v: MoANetwork(n=4, M=1, k=1, selection=v),
        JUNK.filter(lambda v: v is not None)
        | BOOLS
        | NON_FINITE
        | st.integers()
        | st.just(np.full((4, 4), 0.5)),
    ),
    (
        "MoANetwork",
        "selection",
        lambda v: MoANetwork(n=4, M=0, selection=v),
        st.just(np.full((4, 4), 1 / 3)) | st.integers(),
    ),
    ("MoANetwork.scaled", "theta", NET.scaled, bad_real()),
    ("MoANetwork.inclusion", "layer", NET.inclusion, bad_count(0, 1)),
    ("paper_network", "n", lambda v: paper_network(n=v), bad_count(3, 2**31 - 1)),
    ("paper_network", "arrival_rate", lambda v: paper_network(arrival_rate=v), bad_real()),
    ("random_regular_graph", "n", lambda v: random_regular_graph(v, 2), bad_count(1)),
    ("random_regular_graph", "degree", lambda v: random_regular_graph(6, v), bad_count(0)),
    (
        "random_regular_graph",
        "seed",
        lambda v: random_regular_graph(6, 2, seed=v),
        bad_count(0).filter(lambda v: v is not None),
    ),
    (
        "network_from_dict",
        "spec",
        network_from_dict,
        JUNK.filter(lambda v: not isinstance(v, dict)) | BOOLS | NON_FINITE | st.integers(),
    ),
    (
        "network_from_dict",
        "topology.edges",
        lambda v: network_from_dict({"n": 4, "topology": {"edges": v}}),
        JUNK.filter(lambda v: not isinstance(v, list) or v)
        | NON_FINITE
        | st.just([[0, 1.5]])
        | st.just([[0, 1, 2]])
        | st.just([[0, 7]])
        | st.just([[-1, 2]]),
    ),
    (
        "network_from_dict",
        "topology.random_regular",
        lambda v: network_from_dict({"n": 6, "topology": {"random_regular": v}}),
        bad_count(0) | st.just(2.7),
    ),
    (
        "network_from_dict",
        "topology.seed",
        lambda v: network_from_dict({"n": 6, "topology": {"random_regular": 2, "seed": v}}),
        bad_count(0).filter(lambda v: v is not None),
    ),
    *[
        (f.__name__, "net", f, JUNK | BOOLS | NON_FINITE)
        for f in (loads, job_rates, kelly_type, max_uniform_scale, stability_report)
    ],
    ("helper_rates", "layer", lambda v: helper_rates(NET, v), bad_count(0, 1)),
    ("max_stable_rate", "net", max_stable_rate, JUNK | BOOLS | NON_FINITE),
    (
        "max_stable_rate",
        "objective",
        lambda v: max_stable_rate(NET, v),
        bad_choice(("scale", "sum", "min", "proportional")),
    ),
    (
        "max_stable_rate",
        "optimise_selection",
        lambda v: max_stable_rate(NET, optimise_selection=v),
        bad_flag(),
    ),
    ("max_stable_rate", "margin", lambda v: max_stable_rate(NET, margin=v), bad_real(below=1.0)),
    (
        "max_stable_rate",
        "rate_upper",
        lambda v: max_stable_rate(NET, "sum", rate_upper=v),
        bad_per_device().filter(
            lambda v: v is not None and not (isinstance(v, (float, np.floating)) and v == math.inf)
        ),
    ),
    (
        "max_stable_rate",
        "rate_lower",
        lambda v: max_stable_rate(NET, "sum", rate_lower=v),
        bad_per_device().filter(lambda v: v is not None),
    ),
    (
        "max_stable_rate",
        "solver",
        lambda v: max_stable_rate(NET, "sum", solver=v),
        bad_choice(("HIGHS", "CLARABEL")).filter(lambda v: v is not None),
    ),
    (
        "capacity_region",
        "devices",
        lambda v: capacity_region(NET, devices=v, n_angles=2),
        JUNK | BOOLS | st.just((0, 0)) | st.just((0, 9)) | st.just((0.5, 1)) | st.just((0, 1, 2)),
    ),
    ("capacity_region", "n_angles", lambda v: capacity_region(NET, n_angles=v), bad_count(2)),
    ("simulate", "net", lambda v: simulate(v, horizon=10.0), JUNK | BOOLS | NON_FINITE),
    ("simulate", "method", lambda v: tiny_simulation(method=v), bad_choice(("slots", "events"))),
    (
        "simulate",
        "horizon",
        lambda v: tiny_simulation(horizon=v),
        bad_real(strict=True).filter(lambda v: v is not None),
    ),
    (
        "simulate",
        "dt",
        lambda v: tiny_simulation(dt=v),
        bad_real(strict=True).filter(lambda v: v is not None),
    ),
    ("simulate", "seed", lambda v: tiny_simulation(seed=v), bad_count(0)),
    (
        "simulate",
        "service",
        lambda v: tiny_simulation(service=v),
        bad_choice(("exponential", "deterministic", "gamma", "lognormal", "empirical")),
    ),
    ("simulate", "replications", lambda v: tiny_simulation(replications=v), bad_count(1)),
    ("simulate", "warmup", lambda v: tiny_simulation(warmup=v), bad_real()),
    ("simulate", "record_paths", lambda v: tiny_simulation(record_paths=v), bad_flag()),
    ("sweep", "grid", lambda v: tiny_sweep(grid=v), JUNK.filter(lambda v: v != {"a": 1})),
    ("sweep", "seeds", lambda v: tiny_sweep(seeds=v), bad_count(1, 10**9)),
    ("sweep", "point", lambda v: tiny_sweep(point=v), JUNK | BOOLS | NON_FINITE),
    (
        "sweep",
        "cache",
        lambda v: tiny_sweep(cache=v),
        NOT_NONE.filter(lambda v: not isinstance(v, str)) | BOOLS | st.integers(),
    ),
    (
        "sweep",
        "n_workers",
        lambda v: tiny_sweep(client="local", n_workers=v),
        bad_count(1, 1024).filter(lambda v: v is not None),
    ),
    ("sweep", "progress", lambda v: tiny_sweep(progress=v), bad_flag()),
    (
        "sweep",
        "grid['load']",
        lambda v: tiny_sweep(grid={"load": [v]}),
        bad_real(),
    ),
    ("validate_trace", "trace", service.validate_trace, JUNK | BOOLS | NON_FINITE),
    (
        "LinearService.fit",
        "level",
        lambda v: service.LinearService.fit(trace(), level=v),
        bad_real(strict=True, below=1.0),
    ),
    (
        "mean_service_times",
        "seed",
        lambda v: service.mean_service_times(1, 1, n=10, seed=v),
        bad_count(0),
    ),
    ("mean_service_times", "n", lambda v: service.mean_service_times(1, 1, n=v), bad_count(1)),
    (
        "mean_service_times",
        "model",
        lambda v: service.mean_service_times(1, 1, n=10, model=v),
        JUNK.filter(lambda v: v is not None),
    ),
    (
        "mean_service_times",
        "trace",
        lambda v: service.mean_service_times(1, 1, n=10, trace=v),
        JUNK.filter(lambda v: v is not None),
    ),
    (
        "mean_service_times",
        "max_tokens",
        lambda v: service.mean_service_times(1, 1, n=10, max_tokens=v),
        bad_count(1).filter(lambda v: v is not None),
    ),
    (
        "service_samples",
        "max_tokens",
        lambda v: service.service_samples(1, 1, n=10, max_tokens=v),
        bad_count(1).filter(lambda v: v is not None),
    ),
    (
        "service_samples",
        "source",
        lambda v: service.service_samples(1, 1, n=10, source=v),
        bad_choice(("model", "trace")),
    ),
]


@pytest.mark.parametrize(
    "entry, field, call, values", CASES, ids=[f"{e}-{f}" for e, f, _, _ in CASES]
)
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(data=st.data())
def test_bad_values_raise_value_error_naming_the_parameter(entry, field, call, values, data):
    value = data.draw(values, label=f"{entry}({field}=...)")
    with pytest.raises(ValueError) as err:
        call(value)
    assert field in str(err.value), f"{entry}: {err.value}"


# ---- the examples of the issue, one by one ---------------------------------------------------
def _mixed_label_graph():
    g = nx.path_graph(3)
    g.add_edge(2, "a")
    return g


def _trace_with(column: str, value) -> pd.DataFrame:
    t = trace().copy()
    t[column] = t[column].astype(object)
    t.loc[t.index[0], column] = value
    return t


ISSUE_EXAMPLES = [
    ("solver", lambda: max_stable_rate(NET, "sum", solver="NOPE")),
    ("solver", lambda: max_stable_rate(NET, "sum", solver=5)),
    ("topology", lambda: MoANetwork(n=4, topology=_mixed_label_graph())),
    ("selection", lambda: MoANetwork(n=4, M=1, k=1, selection=5)),
    ("theta", lambda: NET.scaled("a")),
    ("cache", lambda: tiny_sweep(cache=123)),
    ("trace['input_tokens']", lambda: service.LinearService.fit(_trace_with("input_tokens", "x"))),
    (
        "trace['output_tokens']",
        lambda: service.LinearService.fit(_trace_with("output_tokens", math.nan)),
    ),
    (
        "trace['input_tokens']",
        lambda: service.LinearService.fit(_trace_with("input_tokens", math.inf)),
    ),
    ("arrival_rate", lambda: MoANetwork(n=4, arrival_rate=[[0.1, 0.2], [0.3]])),
    (
        "topology.edges",
        lambda: network_from_dict({"n": 4, "topology": {"edges": [[0, 1.7], [1, 2]]}}),
    ),
    (
        "topology.edges",
        lambda: network_from_dict({"n": 4, "topology": {"edges": [[0, 1, 2], [1, 2, 3]]}}),
    ),
    (
        "topology.random_regular",
        lambda: network_from_dict({"n": 6, "topology": {"random_regular": 2.7}}),
    ),
    ("selection", lambda: MoANetwork(n=4, M=0, selection=np.full((4, 4), 1 / 3))),
]


@pytest.mark.parametrize("field, call", ISSUE_EXAMPLES, ids=[f for f, _ in ISSUE_EXAMPLES])
def test_the_issue_examples_raise_value_error_naming_the_field(field, call):
    with pytest.raises(ValueError) as err:
        call()
    assert str(err.value).startswith(f"{field}="), str(err.value)


# ---- numpy scalars of the right kind are valid -------------------------------------------------
def test_numpy_scalars_work_like_python_numbers():
    plain = MoANetwork(n=4, M=2, k=2, arrival_rate=0.01, service_time=1.5)
    typed = MoANetwork(
        n=np.int64(4),
        M=np.int32(2),
        k=np.uint8(2),
        arrival_rate=np.float32(0.01),
        service_time=np.float16(1.5),
    )
    assert (typed.n, typed.M, typed.k) == (4, 2, (2, 2))
    np.testing.assert_allclose(loads(typed), loads(plain), rtol=1e-6)
    assert max_stable_rate(plain, margin=np.float32(0.1)).value == pytest.approx(
        (1 - float(np.float32(0.1))) * max_uniform_scale(plain), rel=1e-12
    )
    assert max_stable_rate(plain, optimise_selection=np.bool_(False)).value == pytest.approx(
        max_uniform_scale(plain), rel=1e-12
    )
    np.testing.assert_allclose(plain.scaled(np.float32(2.0)).arrival_rate, 0.02)
    assert (helper_rates(plain, np.int64(1)) == helper_rates(plain, 1)).all()
    a = random_regular_graph(np.int64(6), np.int64(2), seed=np.uint16(3))
    b = random_regular_graph(6, 2, seed=3)
    assert (a != b).nnz == 0
    graph = network_from_dict(
        {"n": 4, "topology": {"edges": np.array([[0, 1], [1, 2], [2, 3], [3, 0.0]])}}
    )
    assert graph.degrees.tolist() == [2, 2, 2, 2]
    frame = capacity_region(
        plain.scaled(0.1), devices=(np.int64(0), np.int64(3)), n_angles=np.int64(2)
    )
    assert len(frame) == 2
    r1 = simulate(plain, horizon=np.float32(200.0), seed=np.int64(5), replications=np.uint8(1))
    r2 = simulate(plain, horizon=200.0, seed=5, replications=1)
    np.testing.assert_array_equal(r1.mean_queue, r2.mean_queue)
