"""paper_figures: quick mode writes every registered figure, and the numbers behind them hold."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sympy as sp

from moa_stability import loads
from moa_stability.analysis.symbolic import symmetric_network_by_type
from paper_figures import FIGURES, figure_module
from paper_figures.__main__ import main
from paper_figures.fig3_capacity_region import network
from paper_figures.fig6_latency_table import TARGET_LOAD


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("figures")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        status = main(["--quick", "--out", str(out)])
    assert status == 0
    return out, printed.getvalue()


def table(quick_run: tuple[Path, str], name: str) -> pd.DataFrame:
    return pd.read_csv(quick_run[0] / f"{name}.csv")


def finite(frame: pd.DataFrame, columns: list[str]) -> bool:
    return bool(np.isfinite(frame[columns].to_numpy(float)).all())


@pytest.mark.parametrize("name", FIGURES)
def test_every_figure_has_png_pdf_and_csv(quick_run, name):
    out, printed = quick_run
    assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / f"{name}.pdf").read_bytes()[:5] == b"%PDF-"
    assert len(table(quick_run, name)) > 0
    headline = [line for line in printed.splitlines() if line.startswith(f"{name} (")]
    assert len(headline) == 1 and any(ch.isdigit() for ch in headline[0].split(":", 1)[1])


def test_registry_modules_follow_the_protocol():
    for name in FIGURES:
        module = figure_module(name)
        assert callable(module.make) and module.TITLE
    with pytest.raises(ValueError, match="unknown figure"):
        figure_module("fig99_nothing")


def test_unknown_figure_is_a_usage_error(tmp_path, capsys):
    assert main(["--only", "fig99_nothing", "--out", str(tmp_path)]) == 2
    assert "unknown figure" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_fig1_queues_grow_below_threshold_and_match_geo_geo_1(quick_run):
    t = table(quick_run, "fig1_theorem1")
    assert np.allclose(t["threshold_rate_per_s"], 1 / ((t["k"] + 1) * t["M"] + 1))
    assert np.allclose(t["rate_per_s"], t["load"] * t["threshold_rate_per_s"])
    below = t[t["load"] < 1]
    assert finite(below, ["mean_queue", "mean_queue_ci"]) and (below["mean_queue"] > 0).all()
    for _, part in below.groupby(["M", "k"]):
        assert np.all(np.diff(part.sort_values("load")["mean_queue"].to_numpy()) > 0)
    # Two 95% half-widths are about six standard errors (t with 3 dof): no false alarm.
    exact = below[below["M"] == 0]
    assert len(exact) >= 3
    assert (
        np.abs(exact["mean_queue"] - exact["exact_mean_queue"]) <= 2 * exact["mean_queue_ci"]
    ).all()
    above = t[t["load"] > 1]
    assert len(above) == 7 and (above["verdict"] == "unstable").all()


def test_fig2_type_aware_matches_symbolic_and_never_exceeds_type_blind(quick_run):
    t = table(quick_run, "fig2_stability_map")
    assert set(t["n"]) == {4, 16} and (t["k"] <= t["n"] - 1).all()
    assert finite(t, ["type_blind_rate_per_s", "type_aware_rate_per_s", "propose_mean_s"])
    d = symmetric_network_by_type()
    k, M = sp.symbols("k M", positive=True, integer=True)
    a_p, a_r, a_a = sp.symbols("alpha_p alpha_r alpha_a", positive=True)
    threshold = sp.lambdify((k, M, a_p, a_r, a_a), d["threshold_rate"])
    layered = t[t["M"] >= 1].fillna({"refine_mean_s": 0.0})
    expected = [
        threshold(r.k, r.M, r.propose_mean_s, r.refine_mean_s, r.aggregate_mean_s)
        for r in layered.itertuples()
    ]
    assert np.allclose(layered["type_aware_rate_per_s"], expected, rtol=1e-12)
    blind = 1 / (t["propose_mean_s"] * ((t["k"] + 1) * t["M"] + 1))
    assert np.allclose(t["type_blind_rate_per_s"], blind, rtol=1e-12)
    p = layered["propose_mean_s"]
    slower = layered[
        (layered["aggregate_mean_s"] >= p) & ((layered["M"] == 1) | (layered["refine_mean_s"] >= p))
    ]
    assert len(slower) > 0
    aware, blind_rate = slower["type_aware_rate_per_s"], slower["type_blind_rate_per_s"]
    assert (aware <= blind_rate * (1 + 1e-12)).all()
    single = t[t["M"] == 0]
    assert np.allclose(single["type_aware_rate_per_s"], single["type_blind_rate_per_s"])


def test_fig3_optimised_region_contains_uniform_and_simulations_agree(quick_run):
    t = table(quick_run, "fig3_capacity_region")
    edge = t[t["kind"] == "boundary"]
    uni = edge[edge["selection"] == "uniform"].sort_values("angle_rad")
    opt = edge[edge["selection"] == "optimised"].sort_values("angle_rad")
    assert np.allclose(uni["angle_rad"].to_numpy(), opt["angle_rad"].to_numpy())
    radius = {
        name: np.hypot(part["rate_a_per_s"], part["rate_b_per_s"]).to_numpy()
        for name, part in (("uniform", uni), ("optimised", opt))
    }
    assert (radius["optimised"] >= radius["uniform"] * (1 - 1e-9)).all()
    assert (radius["optimised"] > radius["uniform"] * 1.05).any()
    # The uniform boundary is where the busiest device reaches load 1.
    for r in uni.itertuples():
        assert loads(network(r.rate_a_per_s, r.rate_b_per_s)).max() == pytest.approx(1, 1e-6)
    sims = t[t["kind"] == "simulated"]
    uniform_sims = sims[sims["selection"] == "uniform"]
    exact = [
        loads(network(r.rate_a_per_s, r.rate_b_per_s)).max() for r in uniform_sims.itertuples()
    ]
    assert np.allclose(uniform_sims["max_load"], exact)
    clear = sims[np.abs(sims["theta_star"] - 1) > 0.15]
    truth = np.where(clear["theta_star"] > 1, "stable", "unstable")
    wrong = np.where(truth == "stable", "unstable", "stable")
    assert not (clear["verdict"].to_numpy() == wrong).any()
    assert (clear["verdict"].to_numpy() == truth).mean() >= 0.75


def test_fig4_fitted_values_are_the_least_squares_fits(quick_run):
    t = table(quick_run, "fig4_service_fit")
    cols = ["input_tokens", "output_tokens", "seconds", "linear_fitted", "context_fitted"]
    assert finite(t, [*cols, "loadavg_1min"]) and set(t["trace"]) == {"quiet", "busy"}
    r2 = {}
    for name, part in t.groupby("trace"):
        l_in, l_out = part["input_tokens"], part["output_tokens"]
        y = part["seconds"].to_numpy()
        linear = np.column_stack([np.ones(len(part)), l_in, l_out])
        beta, *_ = np.linalg.lstsq(linear, y, rcond=None)
        assert np.allclose(linear @ beta, part["linear_fitted"], rtol=1e-8)
        # prefill, quadratic prefill, decode, decode attention over the growing context
        context = np.column_stack(
            [np.ones(len(part)), l_in, l_in**2 / 2, l_out, l_out * (l_in + l_out / 2)]
        )
        beta, *_ = np.linalg.lstsq(context, y, rcond=None)
        assert np.allclose(context @ beta, part["context_fitted"], rtol=1e-8)
        assert np.allclose(y - part["context_fitted"], part["context_residual"])
        assert np.allclose(np.log(y / part["context_fitted"]), part["log_ratio"])
        r2[name] = 1 - np.sum((y - context @ beta) ** 2) / np.sum((y - y.mean()) ** 2)
    # The default (quiet) trace meets the floor; contention is what broke the old one.
    assert r2["quiet"] >= 0.9 > r2["busy"]
    assert (
        t[t["trace"] == "busy"]["loadavg_1min"] > t[t["trace"] == "quiet"]["loadavg_1min"].max()
    ).all()


def test_fig6_configurations_share_a_stable_rate(quick_run):
    t = table(quick_run, "fig6_latency_table")
    assert len(t) == 7 and t["rate_per_s"].nunique() == 1
    assert t["load"].max() == pytest.approx(TARGET_LOAD) and (t["verdict"] == "stable").all()
    assert finite(t, ["latency_mean_s", "latency_ci_s", "latency_p95_s", "mean_queue"])
    assert (t["latency_p95_s"] >= t["latency_p50_s"]).all()
    # A prompt waits for its origin's own job in each stage: the sum of the stage means is a
    # lower bound on the mean latency.
    own = (
        t["propose_mean_s"]
        + (t["M"] - 1).clip(lower=0) * t["refine_mean_s"].fillna(0)
        + (t["M"] >= 1) * t["aggregate_mean_s"].fillna(0)
    )
    assert (t["latency_mean_s"] + t["latency_ci_s"] >= own).all()
    tex = (quick_run[0] / "fig6_latency_table.tex").read_text()
    assert tex.count(r"\\") == 8 and r"\begin{tabular}" in tex


def test_fig7_paths_settle_below_and_grow_above(quick_run):
    t = table(quick_run, "fig7_sample_paths")
    assert set(t["load"]) == {0.95, 1.05}
    jobs = t.filter(like="_jobs").mean(axis=1)
    late = t["time_s"] >= t["time_s"].max() / 2
    below = jobs[late & (t["load"] == 0.95)].mean()
    above = jobs[late & (t["load"] == 1.05)].mean()
    assert above > 5 * below
    ends = jobs[t["load"] == 1.05].to_numpy()
    assert ends[-50:].mean() > ends[:50].mean() + 100


def test_fig5_lp_equals_symbolic_and_the_knee_brackets_it(quick_run):
    t = table(quick_run, "fig5_crosscheck")
    np.testing.assert_allclose(t["lp_rate_per_s"], t["symbolic_rate_per_s"], rtol=1e-7)
    assert t["knee_contains_symbolic"].all()
    assert (t["paper_propose_rate_per_s"] > t["symbolic_rate_per_s"]).all()


def test_fig9_m0_matches_mm1_and_the_estimate_tracks_simulation(quick_run):
    t = table(quick_run, "fig9_latency")
    m0 = t[t.M == 0]
    # M = 0 with alpha = 1 s is M/M/1 at load rho: W = 1 / (1 - rho) exactly.
    assert m0.estimate_mean_s.to_numpy() == pytest.approx(1 / (1 - m0.load.to_numpy()), rel=1e-9)
    # The simulation brackets the exact M/M/1 sojourn within 4 of its CI half-widths.
    assert np.all(np.abs(m0.sim_mean_s - 1 / (1 - m0.load)) <= 4 * m0.sim_mean_ci_s + 1e-3)
    # The floor for the estimate's mean, at every stable load <= 0.9.
    assert (t.estimate_mean_rel_err.abs() <= 0.1).all()


def test_fig10_capacities_follow_the_loads_and_the_frontier_is_undominated(quick_run):
    t = table(quick_run, "fig10_planner")
    assert set(t.rate_per_s) == {0.005, 0.01, 0.02}
    fit = t[t.feasible]
    # A shape fits at a rate exactly when its capacity scale reaches 1 (load margin 0.1).
    assert (t.feasible == (t.capacity_scale >= 1)).all()
    assert (fit.max_load <= 0.9 + 1e-9).all()
    for _, part in fit.groupby("rate_per_s"):
        front = part[part.pareto]
        for row in front.itertuples():
            better = part[(part.quality > row.quality) & (part.quantile_s <= row.quantile_s)]
            assert better.empty
