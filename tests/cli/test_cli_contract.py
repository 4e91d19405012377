"""The command line's contract on bad input: every argument is checked before any work, and a
mistake is one line on stderr naming the flag or file, exit 2, nothing on stdout. Each test
replaces the work (report, simulation, sweep points, LLM measurement) by a function that fails
the test if it is called, so "before any work" is checked, not just the status."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import moa_stability.cli.check as check_cli
import moa_stability.cli.measure as measure_cli
import moa_stability.cli.network as network_cli
import moa_stability.cli.simulate as simulate_cli
import moa_stability.experiments.sweep as sweep_module
import moa_stability.llm.measure as llm_measure
from moa_stability.cli import main
from moa_stability.experiments.sweep import MAX_POINTS, sweep
from moa_stability.llm.measure import max_load_field


def _run(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as stop:
        return int(stop.code)


def _no_work(*_args, **_kwargs):
    raise AssertionError("the work started although an argument was bad")


def _one_line(capsys, *names: str) -> str:
    captured = capsys.readouterr()
    assert captured.out == "", captured.out
    err = captured.err
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert "error:" in err and "Traceback" not in err
    for name in names:
        assert name in err, err
    return err


# ---- check -----------------------------------------------------------------------------------
def test_check_seed_is_refused_before_the_report(monkeypatch, capsys):
    monkeypatch.setattr(check_cli, "stability_report", _no_work)
    assert _run(["check", "--seed", "-1", "--latency", "--load", "0.5"]) == 2
    _one_line(capsys, "--seed=-1")


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs /proc (Linux)")
def test_check_out_where_no_file_can_be_written_is_refused_before_the_report(monkeypatch, capsys):
    # /proc is a directory, so the old check (the parent exists) passed and the write failed
    # with Errno 2 after the report.
    monkeypatch.setattr(check_cli, "stability_report", _no_work)
    assert _run(["check", "--out", "/proc/x.csv"]) == 2
    _one_line(capsys, "--out=/proc/x.csv", "cannot write")


def test_out_check_leaves_no_file_behind(tmp_path):
    out = tmp_path / "table.csv"
    assert network_cli.output_path(out) == out
    assert not out.exists()
    out.write_text("kept")
    assert network_cli.output_path(out) == out and out.read_text() == "kept"


def test_binary_network_file_is_named(tmp_path, monkeypatch, capsys):
    path = tmp_path / "bin.toml"
    path.write_bytes(b"\xff\xfe\x00binary")
    monkeypatch.setattr(check_cli, "stability_report", _no_work)
    assert _run(["check", "--network", str(path)]) == 2
    _one_line(capsys, f"--network={path}", "UTF-8")


def test_network_too_big_for_memory_is_one_line(monkeypatch, capsys):
    def out_of_memory(spec):
        raise MemoryError("Unable to allocate 16.0 GiB")

    monkeypatch.setattr(network_cli, "network_from_dict", out_of_memory)
    monkeypatch.setattr(check_cli, "stability_report", _no_work)
    assert _run(["check", "--n", "2147483647", "--M", "0"]) == 2
    _one_line(capsys, "n=2147483647", "memory")


def test_memory_error_in_the_work_is_one_line_not_a_traceback(monkeypatch, capsys):
    def out_of_memory(*_args, **_kwargs):
        raise MemoryError()

    monkeypatch.setattr(check_cli, "stability_report", out_of_memory)
    assert _run(["check"]) == 2
    _one_line(capsys, "out of memory")


# ---- simulate --samples ----------------------------------------------------------------------
SAMPLES = {
    "text.csv": ("job_type,seconds\npropose,1\nrefine,x\naggregate,1\n", "'x'"),
    "empty.csv": ("", "empty"),
    "quote.csv": ('job_type,seconds\n"propose,1\n', "CSV"),
}


@pytest.mark.parametrize("name", sorted(SAMPLES))
@pytest.mark.parametrize("flag", ["--service-time-from-samples", "--service=empirical"])
def test_unreadable_samples_name_the_file(name, flag, tmp_path, monkeypatch, capsys):
    text, shown = SAMPLES[name]
    path = tmp_path / name
    path.write_text(text)
    monkeypatch.setattr(simulate_cli, "simulate", _no_work)
    assert _run(["simulate", "--samples", str(path), flag]) == 2
    _one_line(capsys, f"--samples={path}", shown)


# ---- measure: the real measurement must never run here -----------------------------------------
@pytest.mark.parametrize("value", ["nan", "-1", "inf"])
def test_measure_max_load_must_be_a_load(value, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(measure_cli, "measure", _no_work)
    out = tmp_path / "trace.csv"
    assert _run(["measure", "--max-load", value, "--out", str(out), "--no-progress"]) == 2
    _one_line(capsys, "--max-load=")
    assert not out.exists()


def test_measure_max_load_none_or_a_number_passes():
    assert max_load_field(None) is None
    assert max_load_field(0.3) == 0.3


@pytest.mark.parametrize("value", [float("nan"), -1.0, float("inf"), "0.3", True])
def test_measure_api_refuses_a_max_load_that_is_no_guard_before_any_work(value, monkeypatch):
    # From Python too: NaN would switch the guard off (load > nan is False) and run the model.
    monkeypatch.setattr(llm_measure, "load_prompts", lambda: pytest.fail("the run started"))
    with pytest.raises(ValueError, match=r"^max_load="):
        llm_measure.measure(max_load=value)


# ---- sweep -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("argv", "names"),
    [
        (["--horizon", "0"], "horizon=0"),
        (["--method", "foo", "--horizon", "100"], "method='foo'"),
        (["--horizon", "100,0"], "horizon=0"),
        (["--horizon", "1e300"], "horizon=1e+300"),
    ],
)
def test_sweep_checks_every_point_before_the_first_runs(argv, names, monkeypatch, capsys):
    monkeypatch.setattr(sweep_module, "tqdm", _no_work)  # the progress bar is the start
    monkeypatch.setattr(sweep_module, "_evaluate", _no_work)
    assert _run(["sweep", "--serial", *argv]) == 2
    _one_line(capsys, names)


def test_sweep_grid_beyond_max_points_is_refused_up_front(monkeypatch):
    monkeypatch.setattr(sweep_module, "SweepPoint", _no_work)  # no point may be built
    grid = {"load": list(np.linspace(0.1, 0.9, 10**4)), "M": list(range(1, 101)), "k": [1, 2, 3]}
    with pytest.raises(ValueError, match=r"^grid=.*3e\+06 points.*MAX_POINTS"):
        sweep(grid, seeds=1000, client=None, progress=False)
    with pytest.raises(ValueError, match=r"^seeds=2000: 1000 grid point\(s\) x 2000"):
        sweep({"load": list(np.linspace(0.1, 0.9, 1000))}, seeds=2000, client=None)
    with pytest.raises(ValueError, match=r"^seeds=\(1001 seeds\)"):
        sweep({"load": [0.5] * 1000}, seeds=list(range(1001)), client=None)
    with pytest.raises(ValueError, match=r"^grid\['load'\]=\(1000000000000 values\)"):
        sweep({"load": range(10**12)}, client=None)  # never turned into a list
    assert MAX_POINTS == 10**6


def test_sweep_at_max_points_is_not_refused_by_the_count(monkeypatch):
    # MAX_POINTS rows exactly: past the count (the network check then fails on purpose, so
    # that no point is built or run).
    monkeypatch.setattr(sweep_module, "_network", _no_work)
    with pytest.raises(AssertionError, match="work started"):
        sweep({"load": [0.5] * 1000}, seeds=MAX_POINTS // 1000, client=None)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
