"""Long validation runs, excluded from the default test run: ``bash run.sh test -m slow``."""

import numpy as np
import pytest

from moa_stability import paper_network, simulate
from moa_stability.experiments.crosscheck import cross_check

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("method", ["slots", "events"])
def test_utilisation_equals_load_close_to_saturation(method):
    # load 0.95 on the paper network: 2e7 s is ~400 relaxation times of the total queue
    net = paper_network(arrival_rate=0.95 / 7)
    r = simulate(net, method=method, horizon=20_000_000, seed=7, replications=4)
    assert r.verdict == "stable"
    np.testing.assert_allclose(r.utilisation, 0.95, atol=3 * r.utilisation_ci.max() + 1e-3)


def test_cross_check_at_full_fidelity_with_another_seed():
    t = cross_check(seed=101, progress=False).table
    np.testing.assert_allclose(t["lp_rate"], t["symbolic_rate"], rtol=1e-7)
    assert t["knee_contains_symbolic"].all()
