"""Growth above capacity: the fluid limit's root against the cubic it solves."""

import numpy as np
import pytest

from moa_stability import fluid_growth_rate


def test_fluid_growth_rate_solves_the_cubic():
    assert fluid_growth_rate(0, 0, 1.2) == pytest.approx(0.2)
    assert fluid_growth_rate(2, 2, 0.9) == 0.0
    # (M, k) = (2, 2), lambda = 1.05 / 7: A^3 = lambda (3 A^2 + 3 A + 1), the root above 1.
    lam = 1.05 / 7
    roots = np.roots([1, -3 * lam, -3 * lam, -lam])
    A = max(r.real for r in roots if abs(r.imag) < 1e-12)
    assert fluid_growth_rate(2, 2, 1.05) == pytest.approx(A - 1, rel=1e-9)
    # The excess work rate rho - 1 bounds the growth of jobs from above when M >= 1.
    assert 0 < fluid_growth_rate(2, 2, 1.05) < 0.05
    # alpha scales time: twice the service time, half the jobs per second.
    assert fluid_growth_rate(2, 2, 1.05, alpha_s=2.0) == pytest.approx(
        fluid_growth_rate(2, 2, 1.05) / 2, rel=1e-9
    )


@pytest.mark.parametrize(
    ("args", "field"),
    [((-1, 0, 1.2), "M="), ((1, 1.5, 1.2), "k="), ((1, 1, float("nan")), "load="),
     ((1, 1, 1.2, 0.0), "alpha_s=")],
)  # fmt: skip
def test_bad_input_names_the_field(args, field):
    with pytest.raises(ValueError, match=field):
        fluid_growth_rate(*args)
