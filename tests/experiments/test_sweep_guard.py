"""Where a sweep runs: small grids in this process, and a script that starts a local cluster
without the __main__ guard gets one line."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import moa_stability
from moa_stability.experiments import sweep as sweep_module

# The script must import this checkout's package, wherever the test runs from.
ENV = {**os.environ, "PYTHONPATH": str(Path(moa_stability.__file__).parents[1])}

SCRIPT = """
from moa_stability import loads, sweep

def busiest(net, seed):
    return {"max_load": float(loads(net).max())}

{call}
"""
CALL = 'print(sweep({"M": [1, 2]}, point=busiest, client="local", n_workers=1, progress=False))'


def _run(tmp_path, call):
    path = tmp_path / "script.py"
    path.write_text(textwrap.dedent(SCRIPT).replace("{call}", call))
    return subprocess.run(
        [sys.executable, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=ENV,
    )


def test_unguarded_script_stops_with_one_line(tmp_path):
    run = _run(tmp_path, CALL)
    assert run.returncode == 1 and run.stdout == ""
    assert run.stderr.count("\n") == 1 and "outside `if __name__" in run.stderr


def test_guarded_or_serial_script_is_not_stopped(tmp_path):
    # Serial needs no guard: nothing re-runs the script.
    run = _run(tmp_path, CALL.replace('client="local", n_workers=1', "client=None"))
    assert run.returncode == 0 and "1.75" in run.stdout


def _pid(net, seed):
    return {"pid": os.getpid()}


def test_auto_runs_a_small_grid_in_this_process():
    small = sweep_module.SERIAL_POINTS_PER_CORE * (os.cpu_count() or 1)
    frame = sweep_module.sweep({"M": list(range(small))}, point=_pid, progress=False)
    assert len(frame) == small and (frame["pid"] == os.getpid()).all()


def test_auto_picks_dask_for_large_grids_and_for_a_worker_count():
    small = sweep_module.SERIAL_POINTS_PER_CORE * (os.cpu_count() or 1)
    assert sweep_module._auto_client("auto", None, small) is None
    assert sweep_module._auto_client("auto", None, small + 1) == "local"
    assert sweep_module._auto_client("auto", 2, 1) == "local"
    assert sweep_module._auto_client(None, None, 10**6) is None
    assert sweep_module._auto_client("tcp://h:1", None, 1) == "tcp://h:1"
