r"""Growth above capacity: the FCFS fluid limit of the symmetric network from empty queues.

On the paper's symmetric network (complete graph, one rate :math:`\lambda` and one mean
:math:`\alpha` everywhere) with load :math:`\rho = \alpha\lambda((k+1)M+1) > 1`, the *work* at
each device grows at :math:`\rho - 1` seconds per second, but the *jobs present* grow more
slowly: a prompt's later layers are created only when its earlier layers are served.

Every device is busy from time 0, so a job arriving at time :math:`s` completes at :math:`As`,
where :math:`A` is the work arriving per second. A prompt born at :math:`s` enters stage
:math:`j` (0-based: proposer layers, then the aggregate) at :math:`A^j s`, so stage-:math:`j`
jobs arrive at rate :math:`\lambda n_j A^{-j}` (:math:`n_j` jobs per device per prompt:
:math:`k+1` per layer, 1 aggregate) and

.. math:: A = \alpha\lambda \sum_j n_j A^{-j}, \qquad
          \frac{d}{dt}\,\text{jobs per device} = \frac{A - 1}{\alpha}.

:math:`A = \rho` when :math:`M = 0`, and :math:`1 < A \le \rho` otherwise: the excess rate
:math:`(\rho - 1)/\alpha` bounds the growth from above (docs/model.md section 5).
"""

from __future__ import annotations

import math

from scipy.optimize import brentq

from ..model.network import count_field, inferences_per_prompt


def fluid_growth_rate(M: int, k: int, load: float, alpha_s: float = 1.0) -> float:
    r"""Jobs per second per device by which the fluid limit's queues grow (0 if ``load <= 1``).

    Solves :math:`A = \alpha\lambda\sum_j n_j A^{-j}` on :math:`(1, \rho]` (module docstring)
    with :math:`\lambda = \rho / (\alpha((k+1)M+1))` and returns :math:`(A - 1)/\alpha`.

    Parameters
    ----------
    M : int
        MoA layers, ``>= 0``.
    k : int
        Extra proposers per layer, ``>= 0``.
    load : float
        :math:`\rho`, the load of every device, finite and ``>= 0``.
    alpha_s : float
        Mean seconds of every inference, ``> 0``.

    Examples
    --------
    >>> round(fluid_growth_rate(0, 0, 1.2), 12)   # one stage: the jobs grow like the work
    0.2
    >>> round(fluid_growth_rate(2, 2, 1.05), 4)   # later layers lag: below 0.05
    0.029
    """
    M, k = count_field("M", M, 0), count_field("k", k, 0)
    if not (isinstance(load, (int, float)) and math.isfinite(load) and load >= 0):
        raise ValueError(f"load={load}: must be a finite number >= 0; pass e.g. 1.05")
    if not (isinstance(alpha_s, (int, float)) and math.isfinite(alpha_s) and alpha_s > 0):
        raise ValueError(f"alpha_s={alpha_s}: must be a finite number > 0; pass e.g. 1.0")
    if load <= 1:
        return 0.0
    per_stage = [1] if M == 0 else [k + 1] * M + [1]
    rate = load / (alpha_s * inferences_per_prompt(M, k))

    def balance(A: float) -> float:
        return A - alpha_s * rate * sum(n * A**-j for j, n in enumerate(per_stage))

    # balance(1) = 1 - load < 0 and balance(load) >= 0, so the root lies in between.
    return (brentq(balance, 1.0, load) - 1.0) / alpha_s


__all__ = ["fluid_growth_rate"]
