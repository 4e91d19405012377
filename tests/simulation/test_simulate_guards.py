"""simulate's guards: chunked runs (same result whatever the chunks), Ctrl-C, memory budget,
the implicit complete graph and defaults that fit large networks."""

from __future__ import annotations

import _thread
import subprocess
import sys
import threading
import time
import warnings
from types import SimpleNamespace

import numpy as np
import pytest

from moa_stability import MoANetwork, loads, paper_network
from moa_stability.simulation import kernels as kern
from moa_stability.simulation import simulate as sim
from moa_stability.simulation.simulate import simulate
from moa_stability.simulation.statistics import MAX_BATCHES

ARRAYS = (
    "mean_queue",
    "mean_queue_ci",
    "max_queue",
    "utilisation",
    "inferences_by_type",
    "queue_distribution",
)
SCALARS = ("latency_mean", "latency_p99", "mean_join_waiting", "total_queue_mean", "simulated_s")


def _same(a, b) -> None:
    for name in ARRAYS:
        assert np.array_equal(getattr(a, name), getattr(b, name), equal_nan=True), name
    for name in SCALARS:
        assert getattr(a, name) == getattr(b, name), name
    for x, y in zip(a.selection_counts, b.selection_counts, strict=True):
        assert (x != y).nnz == 0
    assert np.array_equal(a.paths.to_numpy(), b.paths.to_numpy())


@pytest.mark.parametrize("method", ["slots", "events"])
def test_chunk_size_and_thread_groups_change_no_result(monkeypatch, method):
    net = paper_network(arrival_rate=0.8 / 7)
    kwargs = dict(method=method, horizon=300.0, seed=5, replications=3, record_paths=True)
    monkeypatch.setattr(sim, "_CHUNK_WALL_S", 1e9)  # chunks double: a handful of calls
    few = simulate(net, **kwargs)
    monkeypatch.setattr(sim, "_FIRST_CHUNK_EVENTS", 50)  # ~8 s of simulated time, halved
    monkeypatch.setattr(sim, "_CHUNK_WALL_S", 0.0)  # down to 1/16: ~600 calls
    monkeypatch.setattr(sim, "numba", SimpleNamespace(get_num_threads=lambda: 1))  # 1 by 1
    many = simulate(net, **kwargs)
    assert few.prompts_completed > 100
    _same(few, many)


def test_ctrl_c_stops_a_long_run_with_partial_statistics():
    net = paper_network(arrival_rate=0.5 / 7)
    simulate(net, method="events", horizon=100.0)  # compiled before the clock starts
    delay = 1.0
    timer = threading.Timer(delay, _thread.interrupt_main)
    start = time.perf_counter()
    timer.start()
    try:
        r = simulate(net, method="events", horizon=1e12, seed=2)  # ~days of wall time
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C escaped simulate although statistics had been gathered")
    finally:
        timer.cancel()
    stopped_after = time.perf_counter() - start - delay
    assert r.partial and r.verdict == "inconclusive"
    assert "interrupted" in r.evidence
    # Chunks are ~0.5 s, so it stops within a second on a quiet machine; the bound only has to
    # tell "stopped" from the days the horizon would take, with room for a loaded CI machine.
    assert stopped_after < 60.0
    assert 0 < r.simulated_s < 1e12 and r.prompts_completed > 0
    assert np.all(np.abs(r.utilisation - loads(net)) < 0.2)  # the partial data are real data
    assert "verdict: inconclusive" in str(r)


def test_huge_max_jobs_is_refused_before_any_work():
    net = paper_network(arrival_rate=0.5 / 7)
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"^max_jobs=2147483647: needs ~\d+.*GB.*lower max_jobs"):
        simulate(net, max_jobs=2**31 - 1)
    assert time.perf_counter() - start < 5.0
    fit = simulate(net, horizon=10.0, max_jobs=10**7)  # 440 MB of pools: within the budget
    assert fit.max_jobs == 10**7


def test_outputs_beyond_the_budget_name_replications():
    net = MoANetwork(n=20_000, M=0, arrival_rate=0.1)
    with pytest.raises(ValueError, match=r"^replications=500: .*GB.*fewer replications"):
        simulate(net, replications=500)


def test_memory_check_counts_the_look_ahead_where_it_runs(monkeypatch):
    # Swollen to 10 GB, the look-ahead's per-replication bytes alone exceed the budget: the
    # check must refuse an FCFS network from HINT_FROM_DEVICES devices up, and pass one just
    # below the threshold and a network of the same size with priority levels (no look-ahead).
    monkeypatch.setattr(kern, "HINT_BYTES", 10 * 2**30)
    args = ("events", 1.0, None, 0, "exponential", 1.0, None, 1, 0.2, 10**4, None)
    big = MoANetwork(n=kern.HINT_FROM_DEVICES, M=1, k=1, topology="ring", arrival_rate=0.01)
    with pytest.raises(ValueError, match=r"GB"):
        sim._plan(big, *args)
    sim._plan(big, *args, discipline="later-layer-first")
    below = MoANetwork(n=kern.HINT_FROM_DEVICES - 1, M=1, k=1, topology="ring", arrival_rate=0.01)
    sim._plan(below, *args)


def test_defaults_fit_networks_beyond_39062_devices():
    # The old default (256 tracked queue lengths) refused n > 10**7 / 256.
    net = MoANetwork(n=50_000, M=1, k=1, topology="ring", arrival_rate=0.01)
    plan = sim._plan(net, "events", 1.0, None, 0, "exponential", 1.0, None, 1, 0.2, 10**6, None)
    assert plan.tracked == 10**7 // 50_000 - 1
    # per-device integrals per batch (at most MAX_BATCHES after the warm-up, as many before)
    assert plan.bins == sim.N_BINS and plan.device_edges.size - 1 <= 2 * MAX_BATCHES
    assert plan.device_edges[0] == 0 and plan.device_edges[-1] == plan.bins
    assert plan.warm_bin in plan.device_edges and np.all(np.diff(plan.device_edges) > 0)
    paths = sim._plan(
        net,
        "events",
        1.0,
        None,
        0,
        "exponential",
        1.0,
        None,
        1,
        0.2,
        10**6,
        None,
        record_paths=True,
    )  # per-device paths: every bin, as many as the memory share allows
    assert paths.bins * 16 * net.n <= sim._BIN_BUDGET_BYTES and paths.bins >= sim.MIN_BINS
    assert np.array_equal(paths.device_edges, np.arange(paths.bins + 1))
    with pytest.raises(ValueError, match=r"^max_tracked_queue=256: "):
        sim._plan(net, "events", 1.0, None, 0, "exponential", 1.0, None, 1, 0.2, 10**6, 256)


def test_implicit_complete_graph_matches_loads(monkeypatch):
    monkeypatch.setattr(sim, "_IMPLICIT_COMPLETE_PAIRS", 0)  # the paper network, drawn implicitly
    net = paper_network(arrival_rate=0.6 / 7)
    r = simulate(net, method="events", horizon=20_000.0, seed=3, replications=4)
    assert r.selection_counts is None
    # Every completed prompt ran (k+1)M+1 inferences, M+1 on its origin.
    assert r.completed_prompt_inferences == r.prompts_completed * net.inferences_per_prompt
    assert r.completed_prompt_origin_inferences == r.prompts_completed * (net.M + 1)
    # Utilisation within 4 CI half-widths (95%, 4 replications) of the exact load.
    assert np.all(np.abs(r.utilisation - loads(net)) <= 4 * r.utilisation_ci)


@pytest.mark.slow
def test_complete_graph_of_100k_devices_runs_within_2_gb():
    code = (
        "import resource\n"
        "from moa_stability import MoANetwork\n"
        "from moa_stability.simulation.simulate import simulate\n"
        "r = simulate(MoANetwork(n=100_000, M=2, k=2, arrival_rate=0.5 / 7),"
        " method='events', horizon=20.0, seed=1)\n"
        "assert r.inferences > 0 and r.selection_counts is None\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    peak_kib = int(out.stdout.split()[-1])
    assert peak_kib < 2 * 2**20


def test_progress_bar_shows_simulated_seconds_and_changes_nothing(capsys):
    net = paper_network(arrival_rate=0.5 / 7)
    quiet = simulate(net, method="events", horizon=2_000.0, seed=4, progress=False)
    assert "simulated" not in capsys.readouterr().err
    shown = simulate(net, method="events", horizon=2_000.0, seed=4, progress=True)
    assert "simulated" in capsys.readouterr().err
    assert shown.latency_mean == quiet.latency_mean
    assert np.array_equal(shown.mean_queue, quiet.mean_queue)


# ---- bad inputs that used to give a raw error or a silently wrong result ----------------------
EMPIRICAL_NET = paper_network(arrival_rate=0.5 / 7)
ONE_EACH = {"propose": [1.0], "refine": [1.0], "aggregate": [1.0]}


@pytest.mark.parametrize(
    ("samples", "message"),
    [
        ({0: [1.0], **ONE_EACH}, r"^samples=\[.*\] \(keys\): unknown \[0\]"),
        ({None: [1.0], **ONE_EACH}, r"^samples=\[.*\] \(keys\): unknown \[None\]"),
        ({**ONE_EACH, "propose": ["a"]}, r"^samples\['propose'\]=\['a'\]: not an array of numbers"),
        ({**ONE_EACH, "refine": [[1, 2], [3]]}, r"^samples\['refine'\]=.*: not an array of num"),
        ({**ONE_EACH, "aggregate": {"x": 1}}, r"^samples\['aggregate'\]=.*: not an array of num"),
    ],
    ids=["int-key", "none-key", "text", "ragged", "dict"],
)
def test_bad_samples_raise_value_error_naming_the_key(samples, message):
    with pytest.raises(ValueError, match=message):
        simulate(EMPIRICAL_NET, method="events", service="empirical", samples=samples)


@pytest.mark.parametrize("service", ["gamma", "lognormal"])
@pytest.mark.parametrize("scv", [1e300, 1e6, sim.MAX_SCV * 1.001])
def test_scv_whose_draws_vanish_is_refused(service, scv):
    # Before: a load-0.5 network showed utilisation 0 and latency 0 (every draw was 0 s).
    with pytest.raises(ValueError, match=r"^scv=.*above 1000 \(MAX_SCV\).*use scv <= 1000"):
        simulate(EMPIRICAL_NET, method="events", service=service, scv=scv, horizon=10.0)


def test_the_largest_scv_still_has_representable_draws():
    # At MAX_SCV over half the gamma draws of the kernel's sampler are above 0 s (from scv ~ 1022
    # the median underflows), and a run is accepted.
    rng = np.random.SeedSequence(3).generate_state(4, np.uint64)
    one = np.ones(1)
    draws = np.array(
        [
            kern.draw_service(rng, 1.0, kern.GAMMA, sim.MAX_SCV, False, one, 0, 1)
            for _ in range(2000)
        ]
    )
    assert np.count_nonzero(draws) > draws.size / 2  # the median draw is above 0 s
    simulate(EMPIRICAL_NET, method="events", service="gamma", scv=sim.MAX_SCV, horizon=10.0)


def test_slot_count_beyond_2_53_is_refused():
    net = paper_network(arrival_rate=0.5 / 7)
    with pytest.raises(ValueError, match=r"^dt=1e-300, horizon=100: 1e\+302 slots.*MAX_SLOTS"):
        simulate(net, dt=1e-300, horizon=100.0)
    with pytest.raises(ValueError, match=r"^dt=1e-14, horizon=100: .*use dt >= 1.11e-14"):
        simulate(net, dt=1e-14, horizon=100.0)


def test_slot_count_just_below_2_53_runs_without_overflow():
    net = paper_network(arrival_rate=0.5 / 7)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = simulate(net, dt=100.0 / sim.MAX_SLOTS * 1.01, horizon=100.0)
    assert r.horizon_slots < sim.MAX_SLOTS and np.isfinite(r.latency_mean)


@pytest.mark.parametrize("method", ["slots", "events"])
def test_horizon_that_could_never_finish_is_refused(method, monkeypatch):
    monkeypatch.setattr(sim, "_run", lambda *a: pytest.fail("the run started"))
    net = paper_network(arrival_rate=0.5 / 7)
    with pytest.raises(ValueError, match=r"^horizon=1e\+300: about 4.29e\+300 events.*MAX_EVENTS"):
        simulate(net, method=method, horizon=1e300)
    with pytest.raises(ValueError, match=r"^horizon=2e\+12, replications=2: .*fewer replications"):
        simulate(net, method=method, horizon=2e12, replications=2)
    # one replication of the same horizon is within the cap (checked, not run)
    sim.check_arguments(net, method=method, horizon=2e12)


def test_check_arguments_makes_simulates_checks_and_runs_nothing(monkeypatch):
    monkeypatch.setattr(sim, "_run", lambda *a: pytest.fail("the run started"))
    net = paper_network(arrival_rate=0.5 / 7)
    sim.check_arguments(net, method="events", horizon=10.0, seed=3, progress="anything")
    for options, message in [
        ({"horizon": 0.0}, r"^horizon=0.0"),
        ({"method": "foo"}, r"^method='foo'"),
        ({"record_paths": "yes"}, r"^record_paths='yes'"),
        ({"bogus": 1}, r"^options=\['bogus'\]"),
    ]:
        with pytest.raises(ValueError, match=message):
            sim.check_arguments(net, **options)
