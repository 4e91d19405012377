"""``moa-stability testbed``: one-line errors before any device process starts."""

from __future__ import annotations

import pytest

from moa_stability.cli import main
from moa_stability.llm import measure


def test_a_busy_machine_is_refused_before_any_device_starts(monkeypatch, capsys):
    monkeypatch.setattr(measure.os, "getloadavg", lambda: (5.0, 5.0, 5.0))
    assert main(["testbed", "--n", "2", "--M", "1", "--k", "1", "--duration", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("moa-stability testbed: error: loadavg_1min=5")
    assert err.count("\n") == 1


@pytest.mark.parametrize(("flag", "value"), [("--out", "log.txt"), ("--rate", "x")])
def test_bad_testbed_flags_are_one_line_exit_2(flag, value, capsys):
    assert main(["testbed", flag, value]) == 2
    assert capsys.readouterr().err.startswith(f"moa-stability testbed: error: {flag}=")
