"""A script that calls sweep() on a local cluster without the __main__ guard gets one line."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import moa_stability

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
