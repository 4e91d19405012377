"""``moa-stability plan``: the ranked table, its capacities, and errors before any work."""

from __future__ import annotations

import pandas as pd
import pytest

from moa_stability.cli import main


def test_plan_ranks_the_paper_shapes_with_theorem_1_capacities(tmp_path, capsys):
    out = tmp_path / "plan.csv"
    args = ["plan", "--n", "4", "--rate", "0.02", "--slo", "30", "--margin", "0.1"]
    assert main([*args, "--out", str(out)]) == 0
    assert "best: (2, 3)" in capsys.readouterr().out
    table = pd.read_csv(out)
    # Homogeneous complete graph: load = alpha ((k+1)M+1) lambda, so the scale that puts every
    # device at 1 - margin = 0.9 is 0.9 / (((k+1)M+1) x 0.02) (Theorem 1).
    expected = 0.9 / (((table.k + 1) * table.M + 1) * 0.02)
    assert table.capacity_scale.to_numpy() == pytest.approx(expected.to_numpy(), rel=1e-6)
    assert table.feasible.all()


def test_a_tight_slo_leaves_only_the_plain_inference(capsys):
    # M = 0 is M/M/1 at load 0.02: p95 = ln(20) / 0.98 = 3.06 s <= 4 s. Every M >= 1 shape
    # needs at least two sequential unit-mean exponential services, whose sum alone has
    # p95 = 4.74 s > 4 s; so (0, 0) is the only feasible shape.
    assert main(["plan", "--n", "4", "--rate", "0.02", "--slo", "4"]) == 0
    assert "1 of 7 shapes feasible" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("flag", "value"), [("--rate", "abc"), ("--service-time", "x"), ("--out", "plan.xlsx")]
)
def test_bad_plan_flags_are_one_line_exit_2(flag, value, capsys):
    assert main(["plan", flag, value]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"moa-stability plan: error: {flag}=")
    assert err.count("\n") == 1
