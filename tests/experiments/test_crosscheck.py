"""Cross-check of symbolic, LP and Monte Carlo on the shipped SmolLM2 trace."""

import numpy as np
import pytest

from moa_stability.experiments.crosscheck import cross_check
from moa_stability.llm.trace import load_default_trace


@pytest.fixture(scope="module")
def check():
    # The default horizon: at 200 000 s (2e6 s re-judged) the probe of (M, k) = (2, 3) at
    # 0.97 x its threshold stays inconclusive (relaxation time ~8300 s there) and the
    # bisection stops one halving short.
    return cross_check(horizon_s=400_000, bisection_steps=3, seed=3, progress=False)


def test_every_measured_configuration_is_checked(check):
    trace = load_default_trace()
    measured = set(zip(trace["M"], trace["k"], strict=True))
    assert set(check.table.index) == measured and len(measured) == 6


def test_lp_equals_symbolic_and_closed_form(check):
    t = check.table
    np.testing.assert_allclose(t["lp_rate"], t["symbolic_rate"], rtol=1e-7)
    np.testing.assert_allclose(t["closed_form_rate"], t["symbolic_rate"], rtol=1e-12)


def test_monte_carlo_knee_brackets_the_type_aware_threshold(check):
    t = check.table
    assert (t["knee_low_rate"] < t["knee_high_rate"]).all()
    # 3 halvings of [0.8, 1.25] x threshold leave a bracket 5.6% of the threshold wide.
    assert ((t["knee_high_rate"] - t["knee_low_rate"]) <= 0.057 * t["symbolic_rate"]).all()
    assert t["knee_contains_symbolic"].all(), t[
        ["knee_low_rate", "symbolic_rate", "knee_high_rate"]
    ]


def test_paper_over_promises_with_a_plain_prompt_alpha(check):
    # refine/aggregate read k+1 previous responses: slower than propose, so a propose-only
    # alpha overstates capacity, and more so with more refine layers.
    t = check.table
    assert (t["paper_propose_over_symbolic"] > 1.2).all()
    assert (
        t.loc[2]["paper_propose_over_symbolic"].min()
        > t.loc[1]["paper_propose_over_symbolic"].max()
    )
    # with one alpha averaged over every MoA inference, the symmetric threshold is exact
    np.testing.assert_allclose(t["paper_all_rate"], t["symbolic_rate"], rtol=1e-9)


def test_the_papers_rate_is_unstable_in_steady_state(check):
    assert (check.replay["steady_state_verdict"] == "unstable").all()
    assert (check.replay["steady_state_load"] > 1).all()
