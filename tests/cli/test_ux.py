"""The command line answers a question in one step: rates in prompts/s, --load, checked --out,
help with examples, --version, the sweep's base network and its serial choice."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import moa_stability
from moa_stability.cli import build_parser, main
from moa_stability.cli import check as check_cli
from moa_stability.cli import optimize as optimize_cli
from moa_stability.cli import simulate as simulate_cli
from moa_stability.cli import sweep as sweep_cli

# The user's question: 8 devices on a ring, 4 fast (1.2 s) and 4 slow (4 s), M = 2, k = 2.
RING8 = ["--n", "8", "--M", "2", "--k", "2", "--service-time", "1.2,1.2,1.2,1.2,4,4,4,4"]
RING8 += ["--topology", "ring"]
# On a ring each device has exactly 2 neighbours, so with k = 2 both always help: a device runs
# 3 propose (own + 2 neighbours'), 3 refine and 1 aggregate job per unit of the common rate.
# The slow devices' load is 7 * 4 s * lambda, so the largest stable rate is 1/28 per device.
RING8_MAX_RATE = 1 / 28


def _number_after(text: str, label: str) -> float:
    line = next(x for x in text.splitlines() if x.startswith(label))
    return float(line.split(":", 1)[1].split()[0])


def test_check_prints_the_maximal_rate_in_prompts_per_second(capsys):
    assert main(["check", *RING8, "--load", "0.8"]) == 0
    out = capsys.readouterr().out
    assert _number_after(out, "max stable rate") == pytest.approx(RING8_MAX_RATE, rel=1e-5)
    assert f"({8 * RING8_MAX_RATE:.6g} total)" in out
    assert _number_after(out, "max load") == pytest.approx(0.8, rel=1e-12)
    # The maximal rate does not depend on where the network runs.
    assert main(["check", *RING8, "--rate", "0.5"]) == 1
    out = capsys.readouterr().out
    assert _number_after(out, "max stable rate") == pytest.approx(RING8_MAX_RATE, rel=1e-5)


@pytest.mark.parametrize("bad", ["0", "-1", "nan", "inf"])
def test_a_bad_load_names_the_flag(bad, capsys):
    assert main(["check", "--load", bad]) == 2
    assert capsys.readouterr().err.startswith("moa-stability check: error: --load=")


def test_check_latency_goes_through_the_hook(monkeypatch, capsys):
    seen = {}

    def fake(net, seed):
        seen["max_load"] = moa_stability.load_profile(net).max_load
        return moa_stability.simulate(net, method="events", horizon=2000, seed=seed)

    monkeypatch.setattr(check_cli, "simulated_latency", fake)
    assert main(["check", *RING8, "--load", "0.5", "--latency"]) == 0
    assert seen["max_load"] == pytest.approx(0.5)
    assert "latency (simulated)   : mean" in capsys.readouterr().out
    # Unstable: no simulation, the latency is unbounded.
    seen.clear()
    assert main(["check", *RING8, "--load", "1.2", "--latency"]) == 1
    assert not seen and "unbounded" in capsys.readouterr().out


def test_simulate_load_and_latency_in_the_table(tmp_path, capsys):
    out = tmp_path / "sim.csv"
    args = ["simulate", *RING8, "--load", "0.6", "--method", "events", "--horizon", "5000"]
    assert main([*args, "--out", str(out)]) == 0
    capsys.readouterr()
    table = pd.read_csv(out, index_col="device")
    # 4 s devices carry load 0.6; the 1.2 s ones 0.6 * 1.2/4.
    np.testing.assert_allclose(table["load"], [0.18] * 4 + [0.6] * 4, rtol=1e-12)
    lat = table[["latency_p50_s", "latency_p95_s", "latency_p99_s"]].to_numpy()
    assert (lat[:, 0] <= lat[:, 1]).all() and (lat[:, 1] <= lat[:, 2]).all()
    # A prompt runs 2 layers and an aggregation, at least 3 inferences in sequence.
    assert (table["latency_mean_s"] > 3 * 1.2).all() and (table["latency_ci_s"] > 0).all()


def test_simulate_takes_the_means_from_the_samples(tmp_path, capsys):
    samples = tmp_path / "s.csv"
    samples.write_text(
        "job_type,seconds\npropose,1\npropose,3\nrefine,3\naggregate,4\naggregate,4\n"
    )
    out = tmp_path / "sim.csv"
    args = ["simulate", "--rate", "0.01", "--horizon", "3000", "--method", "events"]
    args += ["--service", "empirical", "--samples", str(samples), "--out", str(out)]
    assert main(args) == 0
    # Rescaled to the default 1 s: 7 jobs per prompt share of lambda -> load 0.07.
    np.testing.assert_allclose(pd.read_csv(out)["load"], 0.07, rtol=1e-12)
    assert main([*args, "--service-time-from-samples"]) == 0
    # Means 2, 3, 4 s: 3 propose, 3 refine, 1 aggregate per lambda -> (6 + 9 + 4) * 0.01.
    np.testing.assert_allclose(pd.read_csv(out)["load"], 0.19, rtol=1e-12)
    assert main([*args, "--service-time-from-samples", "--load", "0.5"]) == 0
    np.testing.assert_allclose(pd.read_csv(out)["load"], 0.5, rtol=1e-12)
    capsys.readouterr()
    assert main([*args, "--service-time-from-samples", "--service-time", "2"]) == 2
    assert "--service-time-from-samples" in capsys.readouterr().err
    # Samples need a use, and the empirical law needs samples.
    assert main(["simulate", "--samples", str(samples)]) == 2
    assert "unused with --service exponential" in capsys.readouterr().err
    # Their means with the default exponential law.
    plain = [a for a in args if a not in ("--service", "empirical")]
    assert main([*plain, "--service-time-from-samples"]) == 0
    np.testing.assert_allclose(pd.read_csv(out)["load"], 0.19, rtol=1e-12)
    capsys.readouterr()
    assert main(["simulate", "--service", "empirical"]) == 2
    assert "pass --samples trace.csv" in capsys.readouterr().err


def test_optimize_devices_and_load(capsys):
    assert main(["optimize", "--service-time", "1,1,1,4", "--load", "0.5", "--devices"]) == 0
    out = capsys.readouterr().out
    # Equal rates, slowest device 7 * 4 s: the maximal scale of rates at load 0.5 is 1/0.5.
    assert "scale = 2 " in out
    rows = [line.split() for line in out.splitlines() if line[:1].isdigit()]
    assert [float(r[1]) for r in rows] == pytest.approx([1 / 28] * 4, rel=1e-5)  # 6 digits
    assert [float(r[2]) for r in rows] == pytest.approx([0.25, 0.25, 0.25, 1.0])


@pytest.mark.parametrize(
    ("command", "library"),
    [
        ("check", (check_cli, "stability_report")),
        ("simulate", (simulate_cli, "simulate")),
        ("optimize", (optimize_cli, "max_stable_rate")),
        ("sweep", (sweep_cli, "sweep")),
    ],
)
@pytest.mark.parametrize("bad", ["x.xlsx", "no_such_dir/x.csv", "."])
def test_a_bad_out_fails_in_one_line_before_any_work(command, library, bad, monkeypatch, capsys):
    def forbidden(*args, **kwargs):
        raise AssertionError("the work started before --out was checked")

    monkeypatch.setattr(*library, forbidden)
    assert main([command, "--out", bad]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"moa-stability {command}: error: --out=") and err.count("\n") == 1


def test_measure_out_must_be_a_csv(capsys):
    assert main(["measure", "--out", "trace.json"]) == 2
    assert "--out=trace.json: cannot write .json" in capsys.readouterr().err


def test_sweep_base_network_from_the_check_flags(tmp_path, capsys):
    out = tmp_path / "sweep.csv"
    args = ["sweep", *RING8, "--load", "0.5,0.9", "--horizon", "500", "--method", "events"]
    assert main([*args, "--serial", "--no-progress", "--out", str(out)]) == 0
    table = pd.read_csv(out)
    assert list(table.columns[:6]) == ["n", "M", "k", "load", "horizon", "method"]
    np.testing.assert_allclose(table["max_load"], [0.5, 0.9], rtol=1e-12)
    assert (table["n"] == 8).all()


def _sweep_args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["sweep", *argv])


def test_sweep_flags_choose_the_client():
    assert sweep_cli.client_from_args(_sweep_args()) == "auto"
    assert sweep_cli.client_from_args(_sweep_args("--workers", "2")) == "auto"
    assert sweep_cli.client_from_args(_sweep_args("--scheduler", "tcp://h:1")) == "tcp://h:1"
    assert sweep_cli.client_from_args(_sweep_args("--serial")) is None


def test_version_and_python_dash_m(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"moa-stability {moa_stability.__version__}"
    run = subprocess.run(
        [sys.executable, "-m", "moa_stability", "check", "--rate", "0.1"],
        capture_output=True,
        text=True,
        timeout=120,
        # This checkout's package, wherever the test runs from.
        env={**os.environ, "PYTHONPATH": str(Path(moa_stability.__file__).parents[1])},
    )
    assert run.returncode == 0 and "max stable rate" in run.stdout


@pytest.mark.parametrize(
    "command", ["check", "simulate", "optimize", "measure", "sweep", "figures"]
)
def test_every_help_has_examples_and_no_rst(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = capsys.readouterr().out
    assert "examples:\n  moa-stability " in text
    for markup in ("``", ":math:", ":class:", ":func:"):
        assert markup not in text


def test_simulate_help_says_when_to_pick_slots_or_events(capsys):
    with pytest.raises(SystemExit):
        main(["simulate", "--help"])
    text = capsys.readouterr().out
    assert "slots or events:" in text and "rescaled" in text
