"""The command line: one parser, one error handler, every subcommand's flags and exit codes."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from moa_stability.cli import build_parser, main
from moa_stability.cli.sweep import grid_from_args


def test_every_subcommand_is_registered():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    expected = {"check", "simulate", "optimize", "plan", "measure", "testbed", "sweep", "figures"}
    assert set(sub.choices) == expected


def test_check_exit_status_follows_the_verdict(tmp_path, capsys):
    # Paper network: rho = lambda ((k+1)M + 1) = 7 lambda with one-second inferences.
    assert main(["check", "--rate", "0.1"]) == 0
    assert main(["check", "--rate", "0.25"]) == 1
    out = tmp_path / "devices.json"
    assert main(["check", "--rate", "0.1", "--out", str(out)]) == 0
    table = pd.read_json(out, orient="table")
    np.testing.assert_allclose(table["load"], 0.7)
    capsys.readouterr()


def test_a_user_error_is_one_line_and_status_2(capsys):
    assert main(["check", "--M", "-1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("moa-stability check: error: M=-1:") and err.count("\n") == 1
    assert main(["check", "--network", "/nonexistent.toml"]) == 2
    assert "no such file" in capsys.readouterr().err


def test_network_file_with_flag_overrides(tmp_path, capsys):
    spec = tmp_path / "net.toml"
    spec.write_text("[network]\nn = 3\nM = 1\nk = 1\narrival_rate = 0.1\nservice_time = 2.0\n")
    # rho = lambda alpha ((k+1)M + 1): 0.1 * 2 * 3 = 0.6 from the file, 1.2 with --rate 0.2.
    assert main(["check", "--network", str(spec)]) == 0
    assert main(["check", "--network", str(spec), "--rate", "0.2", "--devices"]) == 1
    out = capsys.readouterr().out
    assert "n=3" in out and "1.2" in out


def test_cli_simulate(tmp_path, capsys):
    out = tmp_path / "devices.csv"
    args = ["simulate", "--n", "4", "--M", "2", "--k", "2", "--horizon", "20000"]
    assert main([*args, "--rate", "0.1", "--method", "events", "--out", str(out)]) == 0
    assert "verdict: stable" in capsys.readouterr().out
    assert len(out.read_text().splitlines()) == 5
    assert main([*args, "--rate", "0.2", "--max-jobs", "1000"]) == 1
    assert main([*args, "--rate", "0.1", "--horizon", "-5"]) == 2


def test_cli_simulate_reads_samples(tmp_path, capsys):
    samples = tmp_path / "s.csv"
    samples.write_text("job_type,seconds\npropose,1\npropose,3\n")
    args = ["simulate", "--M", "0", "--k", "0", "--rate", "0.1", "--horizon", "2000"]
    assert main([*args, "--service", "empirical", "--samples", str(samples)]) == 0
    (tmp_path / "bad.csv").write_text("x,y\n1,2\n")
    assert main([*args, "--service", "empirical", "--samples", str(tmp_path / "bad.csv")]) == 2
    assert "job_type and seconds" in capsys.readouterr().err


def test_cli_optimize_writes_the_optimum(tmp_path, capsys):
    out = tmp_path / "opt.csv"
    code = main(
        ["optimize", "--service-time", "1,1,1,4", "--rate", "1", "--optimise-selection",
         "--out", str(out)]
    )  # fmt: skip
    assert code == 0
    assert "scale = 0.0833333333" in capsys.readouterr().out
    table = pd.read_csv(out, index_col="device")
    np.testing.assert_allclose(table["rate_per_s"], 1 / 12, rtol=1e-9)
    assert list(table["binding"]) == [False, False, False, True]


def test_cli_optimize_rejects_a_bad_margin(capsys):
    assert main(["optimize", "--margin", "1.5"]) == 2
    assert "margin=1.5" in capsys.readouterr().err


def test_cli_registers_measure():
    args = build_parser().parse_args(
        ["measure", "--configs", "1x1,2x3", "--prompts", "3", "--max-tokens", "16",
         "--threads", "1", "--seed", "5", "--out", "x.csv"]
    )  # fmt: skip
    assert args.configs == "1x1,2x3" and args.prompts == 3 and args.max_tokens == 16
    assert args.seed == 5 and args.out == "x.csv" and callable(args.func)


def test_cli_bad_configs_exit_code(capsys):
    assert main(["measure", "--configs", "1y1"]) == 2
    assert "bad configuration" in capsys.readouterr().err


def test_cli_missing_model_file_exit_code(tmp_path, capsys):
    assert main(["measure", "--model", str(tmp_path / "none.gguf")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_cli_sweep_writes_the_table(tmp_path):
    out = tmp_path / "sweep.csv"
    argv = ["sweep", "--serial", "--no-progress", "--M", "0,1", "--k", "1", "--rate",
            "0.05,0.1", "--seeds", "2", "--horizon", "300", "--cache", str(tmp_path / "cache"),
            "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    frame = pd.read_csv(out)
    assert len(frame) == 8
    # The grid columns first, no nameless row-number column.
    assert list(frame.columns[:5]) == ["M", "k", "arrival_rate", "horizon", "seed"]
    # Base network of the CLI: n = 4, one-second inferences; rho = lambda ((k+1)M + 1).
    np.testing.assert_allclose(frame.max_load, frame.arrival_rate * ((frame.k + 1) * frame.M + 1))
    assert len(list((tmp_path / "cache").glob("*.json"))) == 8


def test_cli_sweep_bad_input_exits_2(capsys):
    assert main(["sweep", "--serial", "--no-progress", "--load", "0.5", "--scale", "2"]) == 2
    assert "both 'scale' and 'load'" in capsys.readouterr().err


def test_cli_flags_become_grid_axes():
    args = build_parser().parse_args(
        ["sweep", "--rate", "0.01,0.02", "--M", "1,2", "--k", "1,2,3", "--seeds", "3",
         "--serial", "--cache", "c", "--out", "x.csv"]
    )  # fmt: skip
    assert grid_from_args(args) == {"M": [1, 2], "k": [1, 2, 3], "arrival_rate": [0.01, 0.02]}
    assert args.seeds == 3 and args.serial and str(args.cache) == "c"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["sweep", "--M", "one"])


def test_python_dash_m_runs_the_cli():
    done = subprocess.run(
        [sys.executable, "-m", "moa_stability.cli", "check", "--rate", "0.25"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1 and "unstable" in done.stdout
