"""Tests of moa_stability.experiments.sweep: grid, rows, seeds, Dask, the cache surviving a kill."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from distributed import LocalCluster

from moa_stability import MoANetwork, loads
from moa_stability.experiments.sweep import CacheWarning, sweep

TESTS_DIR = Path(__file__).parent


# ---- point functions (module level, so Dask workers can import them) ------------------------
def busiest(net: MoANetwork, seed: int) -> dict:
    return {"max_load": float(loads(net).max()), "devices": net.n}


def noisy(net: MoANetwork, seed: int, draws: int = 200) -> dict:
    """A random summary: the mean of ``draws`` exponentials of mean max_load."""
    rng = np.random.default_rng(seed)
    return {"sample_mean": float(rng.exponential(loads(net).max(), draws).mean())}


def marked(net: MoANetwork, seed: int, marker_dir: str, delay_s: float = 0.0) -> dict:
    """Leaves one marker file per call, so calls can be counted across processes."""
    rate = float(net.arrival_rate[0])
    Path(marker_dir, f"{rate!r}_{seed}_{uuid.uuid4().hex}").touch()
    time.sleep(delay_s)
    return {"draw": float(np.random.default_rng(seed).exponential(1.0 / rate))}


def calls(marker_dir: Path) -> Counter:
    """Calls per (rate, seed) from the marker files."""
    return Counter(
        (float(r), int(s)) for r, s, _ in (p.name.split("_") for p in marker_dir.iterdir())
    )


@pytest.fixture(scope="module")
def scheduler():
    """One local cluster for the module: starting one costs seconds."""
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0"
    ) as cluster:
        yield cluster.scheduler_address


# ---- grid and rows ---------------------------------------------------------------------------
def test_rows_follow_the_grid_and_loads_match_theorem_1():
    grid = {
        "n": [3, 5],
        "M": [0, 1, 2],
        "k": [1, 2],
        "arrival_rate": [0.01, 0.05],
        "service_time": [1.0, 3.0],
    }
    frame = sweep(grid, seeds=2, point=busiest, client=None, progress=False)
    expected = [(*g, s) for g in itertools.product(*grid.values()) for s in (0, 1)]
    assert list(frame.columns) == [*grid, "seed", "max_load", "devices"]
    assert list(frame[[*grid, "seed"]].itertuples(index=False, name=None)) == expected
    # docs/model.md section 4: homogeneous complete graph, rho = alpha lambda ((k+1)M + 1).
    rho = frame.service_time * frame.arrival_rate * ((frame.k + 1) * frame.M + 1)
    np.testing.assert_allclose(frame.max_load, rho, rtol=1e-12)
    assert (frame.devices == frame.n).all()


def test_topology_names_reach_the_network():
    # Star, n = 5, k = 1: every leaf's one helper is the centre, which so runs
    # lambda (own) + 4 lambda (helper) + lambda (aggregate) = 6 lambda; complete: 3 lambda.
    base = {"n": 5, "M": 1, "k": 1, "arrival_rate": 0.1, "service_time": 1.0}
    frame = sweep(
        {"topology": ["complete", "star"]}, point=busiest, base=base, client=None, progress=False
    )
    np.testing.assert_allclose(frame.max_load, [0.3, 0.6], rtol=1e-12)


def test_load_and_scale_rescale_the_rates():
    frame = sweep({"M": [1, 2], "load": [0.3, 0.95]}, point=busiest, client=None, progress=False)
    np.testing.assert_allclose(frame.max_load, frame.load, rtol=1e-12)
    base = MoANetwork(n=4, M=1, k=1, arrival_rate=[0.01, 0.02, 0.03, 0.04], service_time=2.0)
    scaled = sweep({"scale": [1.0, 2.5]}, point=busiest, base=base, client=None, progress=False)
    np.testing.assert_allclose(scaled.max_load, np.array([1.0, 2.5]) * loads(base).max())


def test_heterogeneous_base_keeps_per_device_values_across_M():
    base = MoANetwork(
        n=3,
        M=2,
        k=1,
        arrival_rate=[0.01, 0.02, 0.05],
        service_time={"propose": [1, 2, 3], "refine": 2.0, "aggregate": 4.0},
    )
    frame = sweep({"M": [1, 3]}, point=busiest, base=base, client=None, progress=False)
    want = [loads(base.replace(M=m, k=1)).max() for m in (1, 3)]
    np.testing.assert_allclose(frame.max_load, want, rtol=1e-12)


@pytest.mark.parametrize(
    ("grid", "kwargs", "match"),
    [
        ({"rat": [0.1]}, {}, r"unknown field.*'rat'.*valid names.*arrival_rate"),
        ({"M": []}, {}, "empty"),
        ({"scale": [1], "load": [0.5]}, {}, "both 'scale' and 'load'"),
        ({}, {"seeds": 0}, "at least one"),
        ({}, {"seeds": [1, 1]}, "duplicates"),
        ({}, {"seeds": [-1]}, "integers >= 0"),
        ({"M": [-1]}, {}, "M="),
        ({}, {"M": 2}, "network fields"),
        ({"draws": [10]}, {"draws": 20}, "both in the grid"),
        ({}, {"base": 3}, "MoANetwork or a dict"),
        ({"load": [0.5]}, {"base": {"n": 2}}, "carries no load"),
        ({}, {"client": 3}, "scheduler address"),
        ({}, {"client": "nowhere"}, "not a scheduler address"),
        ({}, {"seeds": 2.5}, "list of integers"),
        ({}, {"n_workers": 2}, "only with client='local'"),
        ({}, {"client": "local", "n_workers": 0}, "worker count >= 1"),
    ],
)
def test_bad_input_raises_value_error(grid, kwargs, match):
    kwargs = {"point": noisy, "client": None, **kwargs}
    with pytest.raises(ValueError, match=match):
        sweep(grid, progress=False, **kwargs)


def test_bad_point_results_raise_value_error():
    with pytest.raises(ValueError, match="must return a mapping"):
        sweep({}, point=lambda net, seed: 1.0, client=None, progress=False)
    with pytest.raises(ValueError, match="grid columns"):
        sweep({"M": [1]}, point=lambda net, seed: {"M": 2}, client=None, progress=False)


# ---- seeds and Dask --------------------------------------------------------------------------
def test_same_seeds_same_results_serial_and_on_dask(scheduler):
    grid = {"M": [1, 2], "k": [1, 2], "arrival_rate": [0.02, 0.04]}
    serial = sweep(grid, seeds=[3, 7], point=noisy, client=None, progress=False)
    again = sweep(grid, seeds=[3, 7], point=noisy, client=None, progress=False)
    on_dask = sweep(grid, seeds=[3, 7], point=noisy, client=scheduler, progress=False)
    pd.testing.assert_frame_equal(serial, again)
    pd.testing.assert_frame_equal(serial, on_dask)
    by_seed = serial.pivot_table(index=list(grid), columns="seed", values="sample_mean")
    assert (by_seed[3] != by_seed[7]).all()


def test_grid_keywords_reach_the_point(scheduler):
    frame = sweep(
        {"draws": [1, 5000]},
        seeds=1,
        point=noisy,
        client=scheduler,
        base={"n": 4, "M": 1, "k": 1, "arrival_rate": 0.1},
        progress=False,
    )
    # Mean of 5000 exponentials of mean 0.3: standard error 0.3/sqrt(5000) = 0.0042.
    assert abs(frame.sample_mean.iloc[1] - 0.3) < 5 * 0.3 / np.sqrt(5000)
    assert frame.sample_mean.iloc[0] != frame.sample_mean.iloc[1]


# ---- cache -----------------------------------------------------------------------------------
RATES = [0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08, 0.09, 0.1]


def run_marked(cache, markers, client=None, delay_s=0.0):
    return sweep(
        {"arrival_rate": RATES},
        seeds=2,
        point=marked,
        cache=cache,
        client=client,
        progress=False,
        marker_dir=str(markers),
        delay_s=delay_s,
        base={"n": 2, "M": 1, "k": 1},
    )


def test_cache_loads_finished_points_and_computes_only_missing(tmp_path):
    cache, markers = tmp_path / "cache", tmp_path / "markers"
    markers.mkdir()
    first = run_marked(cache, markers)
    assert sum(calls(markers).values()) == 2 * len(RATES)
    assert first.equals(run_marked(cache, markers))
    assert sum(calls(markers).values()) == 2 * len(RATES)
    entries = sorted(cache.glob("*.json"))
    assert len(entries) == 2 * len(RATES)
    lost = [json.loads(p.read_text()) for p in entries[:3]]
    for p in entries[:3]:
        p.unlink()
    pd.testing.assert_frame_equal(first, run_marked(cache, markers))
    recomputed = calls(markers) - Counter({k: 1 for k in calls(markers)})
    assert sorted(recomputed) == sorted((e["network"]["arrival_rate"][0], e["seed"]) for e in lost)


DAMAGE = {
    "truncated": lambda text: text[: len(text) // 2],
    "empty": lambda text: "",
    "garbage": lambda text: b"\x00\xff\xfe not json {",
    "no result key": lambda text: json.dumps(
        {k: v for k, v in json.loads(text).items() if k != "result"}
    ),
    "result not a mapping": lambda text: json.dumps({**json.loads(text), "result": 5}),
    "a list": lambda text: "[1, 2]",
    "another seed": lambda text: json.dumps({**json.loads(text), "seed": 99}),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_cache_entries_are_named_and_recomputed(tmp_path, damage):
    cache, markers = tmp_path / "cache", tmp_path / "markers"
    markers.mkdir()
    first = run_marked(cache, markers)
    victims = sorted(cache.glob("*.json"))[:2]
    intact = {p: p.read_text() for p in victims}
    for p in victims:
        bad = DAMAGE[damage](intact[p])
        p.write_bytes(bad if isinstance(bad, bytes) else bad.encode())
    with pytest.warns(CacheWarning) as caught:
        again = run_marked(cache, markers)
    pd.testing.assert_frame_equal(first, again)
    named = " ".join(str(w.message) for w in caught)
    assert all(str(p) in named for p in victims)
    # Exactly the damaged points ran again, and their entries are whole again.
    recomputed = calls(markers) - Counter({k: 1 for k in calls(markers)})
    lost = [json.loads(intact[p]) for p in victims]
    assert sorted(recomputed) == sorted((e["network"]["arrival_rate"][0], e["seed"]) for e in lost)
    assert {p: json.loads(p.read_text()) for p in victims} == {
        p: json.loads(intact[p]) for p in victims
    }


def _a_file(tmp_path):
    (tmp_path / "afile").write_text("x")
    return tmp_path / "afile"


@pytest.mark.parametrize(
    "where",
    [
        lambda tmp_path: _a_file(tmp_path) / "sub",
        _a_file,
        lambda tmp_path: 123,
        lambda tmp_path: "",
    ],
    ids=["under a file", "a file", "a number", "empty"],
)
def test_unusable_cache_fails_before_any_work(tmp_path, where):
    markers = tmp_path / "markers"
    markers.mkdir()
    with pytest.raises(ValueError, match=r"^cache=.*; pass a"):
        run_marked(where(tmp_path), markers)
    assert not any(markers.iterdir())


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_unwritable_cache_fails_before_any_work(tmp_path):
    cache, markers = tmp_path / "cache", tmp_path / "markers"
    markers.mkdir()
    cache.mkdir(mode=0o500)
    with pytest.raises(ValueError, match=r"^cache=.*cannot be created or written"):
        run_marked(cache, markers)
    assert not any(markers.iterdir())


def test_sweep_killed_midway_resumes_without_recomputing(tmp_path, scheduler):
    cache, markers = tmp_path / "cache", tmp_path / "markers"
    markers.mkdir()
    script = tmp_path / "killed_sweep.py"
    script.write_text(
        textwrap.dedent(f"""
        import sys
        # This checkout's package, not whichever one the interpreter has installed.
        sys.path[:0] = [{str(TESTS_DIR)!r}, {str(TESTS_DIR.parents[1])!r}]
        from test_sweep import run_marked

        if __name__ == "__main__":
            run_marked({str(cache)!r}, {str(markers)!r}, client="local", delay_s=0.2)
    """)
    )
    # A session of its own, so the kill takes the Dask workers down with the sweep.
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while len(list(cache.glob("*.json"))) < 4:
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "the sweep stored nothing within 60 s"
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    finished = {p: p.stat().st_mtime_ns for p in cache.glob("*.json")}
    done = {
        (e["network"]["arrival_rate"][0], e["seed"])
        for e in (json.loads(p.read_text()) for p in finished)
    }
    assert 4 <= len(done) < 2 * len(RATES), "the kill did not land midway"

    resumed = run_marked(cache, markers, client=scheduler, delay_s=0.2)
    count = calls(markers)
    assert all(count[point] == 1 for point in done), "a finished point was recomputed"
    assert all(p.stat().st_mtime_ns == t for p, t in finished.items())
    assert set(count) == {(r, s) for r in RATES for s in (0, 1)}
    assert max(count.values()) <= 2  # only points in flight at the kill run twice
    assert len(list(cache.glob("*.json"))) == 2 * len(RATES)
    uninterrupted = run_marked(None, tmp_path)
    pd.testing.assert_frame_equal(resumed, uninterrupted)


# ---- the real simulator ----------------------------------------------------------------------
def test_default_point_simulates_mm1_queues():
    # M = 0 on one device is an M/M/1 queue: L = rho / (1 - rho) (docs/model.md section 4).
    # Serial: Dask workers would each compile the simulator's kernels on a cold numba cache.
    base = {"n": 1, "M": 0, "k": 0, "arrival_rate": 1.0, "service_time": 2.0}
    frame = sweep(
        {"load": [0.3, 0.6]},
        seeds=2,
        base=base,
        client=None,
        progress=False,
        method="events",
        horizon=4e4,
    )
    assert len(frame) == 4 and (frame.verdict == "stable").all()
    little_l = frame.load / (1 - frame.load)
    # 95% CI half-widths from batch means; 2.5 of them is a ~5-sigma band per row.
    assert ((frame.mean_queue_max - little_l).abs() <= 2.5 * frame.mean_queue_max_ci).all()
    assert ((frame.utilisation_max - frame.load).abs() < 0.05).all()
    np.testing.assert_allclose(frame.max_load, frame.load, rtol=1e-12)
