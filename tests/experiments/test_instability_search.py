"""The instability search: its quick mode ranks a constructed instability first, and the
simulator confirms that instability below capacity (growth significant and at the fluid rate)."""

import numpy as np
import pytest

from moa_stability.analysis.certificate import fluid_check
from moa_stability.experiments.instability_search import (
    PRIORITY_DISCIPLINES,
    confirm_by_simulation,
    instability_search,
    network_from_row,
    own_user_first_example,
)
from moa_stability.model.loads import loads


@pytest.fixture(scope="module")
def quick():
    return instability_search(seed=5, quick=True, known=(own_user_first_example(0.9),))


def test_quick_search_finds_the_constructed_instability(quick):
    best = quick[quick.stage == "best"].set_index("discipline")
    assert set(best.index) == set(PRIORITY_DISCIPLINES)
    own = best.loc["own-user-first"]
    # Every device below capacity, yet the fluid leaves a tenth of the arriving jobs behind,
    # and the same network under FCFS does not grow.
    assert own.max_load < 1 and bool(own.fluid_grows) and own.relative_growth > 0.1
    assert bool(own.fine_grows) and bool(own.join_exact) and own.fine_growth_per_s > 0.3
    assert own.fcfs_growth_per_s < 1e-6
    # The threshold is below the network's load: 2 x a x lambda > 1 needs max load > 0.55.
    assert 0.5 < own.threshold_max_load <= own.max_load
    net = network_from_row(own)
    assert loads(net).max() == pytest.approx(own.max_load, rel=1e-9)


def test_rows_rebuild_their_networks_and_their_growth(quick):
    row = quick[quick.stage == "random"].iloc[0]
    net = network_from_row(row)
    again = fluid_check(net, row.discipline, per_origin=True, max_steps=400)
    assert again.relative_growth == pytest.approx(row.relative_growth, rel=1e-6, abs=1e-12)


def test_simulation_confirms_own_user_first_below_capacity():
    net = own_user_first_example(0.9)
    table = confirm_by_simulation(net, "own-user-first", seeds=(1, 2), horizon_s=20_000.0)
    priority = table[table.discipline == "own-user-first"]
    assert (priority.verdict == "unstable").all()
    # Significant: the CI excludes 0. Relevant: within 15% of the fluid's 0.68 jobs/s.
    assert (priority.growth_slope_per_s > 3 * priority.growth_slope_ci).all()
    fluid = priority.fluid_growth_per_s.iloc[0]
    assert fluid == pytest.approx(0.68, abs=0.02)
    assert np.allclose(priority.growth_slope_per_s, fluid, rtol=0.15)
    fcfs = table[table.discipline == "fcfs"]
    assert (fcfs.verdict != "unstable").all() and (fcfs.growth_slope_per_s < 0.05).all()
