"""The Monte Carlo simulators against exact results, with tolerances from their own CIs.

Each comparison asserts ``|simulated - exact| <= 2 x (95% CI half-width)`` (about four standard
errors, so a correct simulator fails with negligible probability at any seed) and that the
half-width is small, so the test has the power to catch a wrong simulator.
"""

import math

import numba
import numpy as np
import pytest
from scipy import stats

from moa_stability import MoANetwork, job_rates, loads, paper_network, random_regular_graph
from moa_stability.analysis.symbolic import slotted_empty_probability, slotted_mean_queue
from moa_stability.simulation.simulate import simulate


def assert_within_ci(simulated, ci, exact, rel_precision):
    simulated, ci, exact = map(np.asarray, (simulated, ci, exact))
    assert np.all(np.abs(simulated - exact) <= 2 * ci), (simulated, ci, exact)
    assert np.all(ci <= rel_precision * np.abs(exact)), (ci, exact)


# ---- single queues: Geo/Geo/1, M/M/1, M/G/1 ------------------------------------------------------
def test_slotted_m0_devices_are_geo_geo_1_queues():
    dt = 0.25
    net = MoANetwork(n=2, M=0, arrival_rate=[0.2, 0.5], service_time=[1.0, 1.25])
    r = simulate(net, method="slots", horizon=4e5, dt=dt, seed=3)
    p = net.arrival_rate * dt
    q = dt / net.service_time[0]
    mean = [slotted_mean_queue(a, b) for a, b in zip(p, q, strict=True)]
    empty = [slotted_empty_probability(a, b) for a, b in zip(p, q, strict=True)]
    assert r.horizon_slots == 1_600_000 and r.dt_s == dt
    assert_within_ci(r.mean_queue, r.mean_queue_ci, mean, 0.06)
    assert_within_ci(1 - r.utilisation, r.utilisation_ci, empty, 0.03)


def test_events_m0_is_mm1_queue_length_and_sojourn():
    rho, alpha = 0.6, 2.0
    net = MoANetwork(n=1, M=0, arrival_rate=rho / alpha, service_time=alpha)
    r = simulate(net, method="events", horizon=2e5, replications=8, seed=5)
    assert r.ci_method == "independent replications"
    assert_within_ci(r.mean_queue, r.mean_queue_ci, [rho / (1 - rho)], 0.05)
    assert_within_ci(r.latency_mean, r.latency_ci, alpha / (1 - rho), 0.05)
    # The M/M/1 sojourn time is exponential with rate mu - lambda.
    decay = (1 - rho) / alpha
    for got, prob in ((r.latency_p50, 0.5), (r.latency_p95, 0.95), (r.latency_p99, 0.99)):
        assert got == pytest.approx(-math.log(1 - prob) / decay, rel=0.05)


@pytest.mark.parametrize(
    ("service", "scv", "samples"),
    [
        ("deterministic", 0.0, None),
        ("gamma", 2.0, None),
        ("lognormal", 0.5, None),
        ("empirical", 0.25, {"propose": [3.0, 9.0]}),  # mean 6, sd 3: scv 0.25 after scaling
    ],
)
def test_events_mg1_matches_pollaczek_khinchine(service, scv, samples):
    rho = 0.6
    net = MoANetwork(n=1, M=0, arrival_rate=rho, service_time=1.0)
    r = simulate(
        net,
        method="events",
        horizon=1e5,
        replications=8,
        seed=11,
        service=service,
        scv=scv if service in ("gamma", "lognormal") else 1.0,
        samples=samples,
    )
    exact = rho + rho**2 * (1 + scv) / (2 * (1 - rho))
    assert_within_ci(r.mean_queue, r.mean_queue_ci, [exact], 0.06)
    assert_within_ci(r.utilisation, r.utilisation_ci, [rho], 0.02)


# ---- networks -----------------------------------------------------------------------------------
def heterogeneous_network(max_load: float) -> MoANetwork:
    net = MoANetwork(
        n=6,
        M=2,
        k=[2, 1],
        arrival_rate=[0.02, 0.03, 0.04, 0.02, 0.05, 0.03],
        service_time={"propose": 1.0, "refine": 1.5, "aggregate": 0.8},
        topology=random_regular_graph(6, 3, seed=1),
    )
    return net.scaled(max_load / loads(net).max())


@pytest.mark.parametrize(
    ("method", "service"), [("slots", "exponential"), ("events", "gamma"), ("slots", "gamma")]
)
def test_utilisation_equals_computed_load(method, service):
    net = heterogeneous_network(0.7)
    r = simulate(net, method=method, horizon=1e5, dt=0.05, service=service, scv=0.5, seed=2)
    assert_within_ci(r.utilisation, r.utilisation_ci, loads(net), 0.05)
    assert r.verdict == "stable"


@pytest.mark.parametrize("method", ["slots", "events"])
@pytest.mark.parametrize(("load", "verdict"), [(0.9, "stable"), (1.1, "unstable")])
def test_paper_network_verdict_on_both_sides_of_the_boundary(method, load, verdict):
    net = paper_network(arrival_rate=load / 7)  # (k+1)M+1 = 7 inferences per prompt
    r = simulate(net, method=method, horizon=1e5, seed=7)
    assert r.verdict == verdict, r.evidence
    if verdict == "unstable":
        # Jobs in queues grow, but at most at the excess of offered over served inferences
        # (the later layers of waiting prompts are not jobs yet).
        excess = net.n * (load - 1)
        assert r.growth_slope - r.growth_slope_ci > 0
        assert r.growth_slope - r.growth_slope_ci <= excess
    else:
        assert r.growth_slope <= r.growth_slope_ci
        assert r.utilisation == pytest.approx(np.full(4, load), abs=0.02)


@pytest.mark.parametrize(("M", "k"), [(0, 0), (3, [2, 1, 3])])
def test_conservation_of_inferences_per_prompt(M, k):
    net = MoANetwork(n=5, M=M, k=k, arrival_rate=0.03, service_time=0.5)
    r = simulate(net, method="events", horizon=2e4, seed=4, replications=2)
    per_prompt = sum(km + 1 for km in net.k) + 1
    assert r.prompts_completed > 1000
    assert r.completed_prompt_inferences == per_prompt * r.prompts_completed
    assert r.completed_prompt_origin_inferences == (M + 1) * r.prompts_completed
    assert r.inferences == r.inferences_by_type.sum()
    in_flight = r.prompts_arrived - r.prompts_completed
    assert 0 <= r.inferences - r.completed_prompt_inferences <= per_prompt * in_flight
    counts = r.inferences_by_type.sum(axis=1)  # propose, refine, aggregate
    if M:
        assert counts[2] >= r.prompts_completed and counts[0] >= (k[0] + 1) * counts[2]


def test_selection_frequencies_match_inclusion_probabilities():
    weights = np.array([0.9, 0.7, 0.3, 0.1])  # sum 2 = k; each <= 1
    pi = np.zeros((5, 5))
    for j in range(5):
        pi[j, [i for i in range(5) if i != j]] = np.roll(weights, j)
    net = MoANetwork(n=5, M=2, k=2, arrival_rate=0.02, selection=pi)
    r = simulate(net, method="events", horizon=2e5, seed=9)
    for m, counts in enumerate(r.selection_counts):
        counts = counts.toarray()
        for j in range(5):
            others = [i for i in range(5) if i != j]
            observed = counts[j, others]
            draws = observed.sum() / 2
            assert draws > 2000
            # Without-replacement draws have less variance than multinomial ones, so
            # Pearson's statistic with df = 3 is conservative.
            assert stats.chisquare(observed, draws * pi[j, others]).pvalue > 1e-4, (m, j)
            uniform = np.full(4, draws / 2)
            assert stats.chisquare(observed, uniform).pvalue < 1e-6  # the test has power


def test_uniform_selection_among_gossip_neighbours():
    net = MoANetwork(n=8, M=1, k=2, arrival_rate=0.03, topology=random_regular_graph(8, 4, 3))
    r = simulate(net, method="slots", horizon=1e5, seed=1)
    counts, neighbours = r.selection_counts[0].toarray(), net.adjacency.toarray() > 0
    assert counts[~neighbours].sum() == 0
    for j in range(8):
        assert stats.chisquare(counts[j, neighbours[j]]).pvalue > 1e-4


# ---- reproducibility -----------------------------------------------------------------------------
def summary(r):
    return (
        r.mean_queue,
        r.utilisation,
        r.max_queue,
        r.inferences_by_type,
        r.latency_mean,
        r.latency_p99,
        r.selection_counts[0].toarray(),
        r.growth_slope,
    )


def test_same_seed_same_result_other_seed_differs():
    net = paper_network(arrival_rate=0.1)
    a, b, c = (simulate(net, horizon=5e3, seed=s, replications=2) for s in (1, 1, 2))
    for x, y in zip(summary(a), summary(b), strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a.mean_queue, c.mean_queue)


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs two numba threads")
def test_result_does_not_depend_on_thread_count():
    net = paper_network(arrival_rate=0.1)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = simulate(net, method="events", horizon=5e3, seed=3, replications=3)
        numba.set_num_threads(2)
        two = simulate(net, method="events", horizon=5e3, seed=3, replications=3)
    finally:
        numba.set_num_threads(before)
    for x, y in zip(summary(one), summary(two), strict=True):
        np.testing.assert_array_equal(x, y)


# ---- bounded memory, inputs, outputs -------------------------------------------------------------
def test_unstable_network_stops_at_the_job_cap():
    net = paper_network(arrival_rate=1.5 / 7)
    r = simulate(net, horizon=1e5, max_jobs=2000, seed=0)
    assert r.verdict == "unstable" and "cap" in r.evidence
    assert r.cap_hit_time is not None and r.cap_hit_time < 2e4
    assert r.simulated_s == pytest.approx(r.cap_hit_time, rel=1e-3)
    assert r.max_queue.max() <= 2000
    # The statistics then describe what was simulated before the cap.
    assert np.all(np.isfinite(r.mean_queue)) and r.latency_mean > 0 and r.growth_slope > 0


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"horizon": -1.0}, "horizon"),
        ({"horizon": float("nan")}, "horizon"),
        ({"method": "monte-carlo"}, "method"),
        ({"service": "weibull"}, "service"),
        ({"service": "empirical"}, "samples"),
        ({"service": "empirical", "samples": {"propose": [1.0]}}, "missing"),
        (
            {
                "service": "empirical",
                "samples": {"propose": [1.0], "refine": [-1.0], "aggregate": [1.0]},
            },
            "refine",
        ),
        ({"service": "gamma", "scv": 0.0}, "scv"),
        ({"dt": 2.0}, "dt"),
        ({"dt": 0.0}, "dt"),
        ({"replications": 0}, "replications"),
        ({"warmup": -0.1}, "warmup"),
        ({"warmup": 0.995}, "warmup"),
        ({"max_jobs": 2}, "max_jobs"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_input_raises_value_error_naming_the_argument(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        simulate(paper_network(arrival_rate=0.1), **{"horizon": 100.0, **kwargs})


def test_slot_too_long_for_the_arrival_rate():
    net = MoANetwork(n=2, M=0, arrival_rate=2.0, service_time=10.0)
    with pytest.raises(ValueError, match="lambda"):
        simulate(net, dt=0.6, horizon=100.0)
    with pytest.raises(ValueError, match="MoANetwork"):
        simulate({"n": 2}, horizon=100.0)


def test_paths_frame_and_warmup_in_seconds():
    net = paper_network(arrival_rate=0.1)
    r = simulate(net, horizon=2e4, seed=1, warmup=0.25, record_paths=True)
    s = simulate(net, horizon=2e4, seed=1, warmup=5000.0)
    assert r.warmup_s == s.warmup_s == 5000.0
    np.testing.assert_array_equal(r.mean_queue, s.mean_queue)
    assert r.paths.shape == (1000, 4) and r.paths.index.is_monotonic_increasing
    after = r.paths[r.paths.index > r.warmup_s]
    np.testing.assert_allclose(after.mean().to_numpy(), r.mean_queue, rtol=1e-9)
    frame = r.to_frame()
    assert list(frame.index) == [0, 1, 2, 3]
    np.testing.assert_array_equal(frame["load"], loads(net))
    np.testing.assert_array_equal(frame["propose_inferences"], r.inferences_by_type[0])
    assert r.verdict in str(r) and "latency" in str(r)
    rates = job_rates(net).sum(axis=0)
    assert r.inferences == pytest.approx(rates.sum() * 2e4, rel=0.05)
