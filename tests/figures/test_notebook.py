"""The exploration notebook is committed without outputs and runs top to bottom."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "explore.ipynb"


def text_of(cell: dict) -> str:
    """Everything a cell printed or displayed as text (stream, plain, LaTeX)."""
    parts = []
    for out in cell.get("outputs", []):
        parts.append(out.get("text", ""))
        data = out.get("data", {})
        parts += [data.get("text/plain", ""), data.get("text/latex", "")]
    return "\n".join(parts)


@pytest.fixture(scope="module")
def executed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        timeout=180,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path_factory.mktemp("notebook"))}},
    )
    client.execute()
    return {
        cell.metadata["tags"][0]: cell
        for cell in nb.cells
        if cell.cell_type == "code" and cell.metadata.get("tags")
    }


def test_committed_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code and all(not cell.outputs and cell.execution_count is None for cell in code)


def test_runs_without_errors(executed):
    for tag, cell in executed.items():
        assert all(out.output_type != "error" for out in cell.outputs), tag


def test_report_and_paper_comparison(executed):
    report = text_of(executed["report"])
    assert "verdict" in report and "stable" in report and "paper (Remark 1)" in report
    # Remark 1 calls the heterogeneous network unstable; its exact loads are all below 1.
    het = text_of(executed["heterogeneous"])
    assert "-> unstable" in het and "pessimistic" in het
    assert re.search(r"verdict\s+: stable", het)
    assert "undetermined" in text_of(executed["measured"])


def test_symbolic_condition_renders_as_latex(executed):
    for tag in ("symbolic", "symbolic_by_type"):
        latex = [
            out["data"]["text/latex"]
            for out in executed[tag].outputs
            if "text/latex" in out.get("data", {})
        ]
        assert latex and r"\lambda" in latex[0] and "condition" in latex[0]


def test_optimised_selection_carries_more(executed):
    text = text_of(executed["lp"])
    uniform = float(re.search(r"uniform selection:\s+theta\* = ([\d.e+-]+)", text).group(1))
    optimised = float(re.search(r"optimised selection: theta\* = ([\d.e+-]+)", text).group(1))
    assert optimised > uniform > 1


def test_simulation_sweep_and_plots(executed):
    assert "verdict: stable" in text_of(executed["simulate"])
    sweep_text = text_of(executed["sweep"])
    assert "stable" in sweep_text and "mean_queue_mean" in sweep_text
    assert any("image/png" in out.get("data", {}) for out in executed["plots"].outputs)


def test_no_warning_in_any_cell(executed):
    # tqdm.auto warns (red) at import when ipywidgets is missing; the package avoids it.
    assert "imports" in executed  # the first cell, which imports the package
    for tag, cell in executed.items():
        streams = [out for out in cell.outputs if out.get("name") == "stderr"]
        assert not any("Warning" in out["text"] for out in streams), tag


def test_simulation_settles_the_undetermined_network(executed):
    text = text_of(executed["measured_simulation"])
    assert text.count(": stable;") == 2 and "load 0.80" in text


def test_results_plot_themselves(executed):
    for tag in ("report_plot", "simulate_plot"):
        assert any("image/png" in out.get("data", {}) for out in executed[tag].outputs), tag


def test_latency_prediction_sits_beside_the_simulation(executed):
    text = text_of(executed["latency"])
    predicted = float(re.search(r"Latency \(estimate.*?mean ([\d.]+) s", text).group(1))
    simulated, ci = map(float, re.search(r"simulated: mean ([\d.]+) \+- ([\d.]+) s", text).groups())
    # The estimate's floor against simulation (docs/latency.md): 10% of the mean or the CI.
    assert abs(predicted - simulated) <= max(0.1 * simulated, ci)


def test_planner_names_a_feasible_shape(executed):
    assert re.search(r"best: \(\d, \d\)", text_of(executed["plan"]))
