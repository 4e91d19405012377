r"""Scheduling disciplines in the simulator against exact queueing formulas.

Tolerances: the simulator's 95% Student-t half-widths over independent replications, widened
by :data:`WIDEN` (to about 99.5% with 8 replications); seeds are fixed.
"""

from __future__ import annotations

import numpy as np
import pytest

from moa_stability import MoANetwork
from moa_stability.model.discipline import DISCIPLINES, level_table, priority_rank
from moa_stability.model.network import AGGREGATE, PROPOSE
from moa_stability.simulation import simulate as sim
from moa_stability.simulation.simulate import simulate

WIDEN = 1.5
RULES = [(d, p) for d in DISCIPLINES for p in (False, True) if not (d == "fcfs" and p)]


def _within(value, exact, half) -> None:
    assert np.all(np.isfinite(half)), half
    assert np.all(np.abs(np.asarray(value) - exact) <= WIDEN * np.asarray(half)), (value, exact)


def test_level_table_follows_the_rank_rule():
    # M = 2: stages 0, 1 and the aggregate 2; columns helper (0) and origin (1).
    assert level_table("fcfs", 2).tolist() == [[0, 0], [0, 0], [0, 0]]
    assert level_table("later-layer-first", 2).tolist() == [[2, 2], [1, 1], [0, 0]]
    assert level_table("earlier-layer-first", 2).tolist() == [[0, 0], [1, 1], [2, 2]]
    assert level_table("aggregate-first", 2).tolist() == [[1, 1], [1, 1], [0, 0]]
    # The aggregate runs on its origin only: its helper cell copies the origin's.
    assert level_table("own-user-first", 2).tolist() == [[1, 0], [1, 0], [0, 0]]
    # M = 0: one job class, so one level under every rule.
    assert all(level_table(d, 0).tolist() == [[0, 0]] for d in DISCIPLINES)
    assert priority_rank("own-user-first", 1, 3, 3, 0) == 0
    with pytest.raises(ValueError, match=r"^discipline='lifo': unknown discipline; use one of"):
        priority_rank("lifo", 1, 0, 0, 0)


@pytest.mark.parametrize("bad", ["lifo", None, 3])
def test_a_bad_discipline_is_refused(bad):
    net = MoANetwork(n=2, arrival_rate=0.1)
    with pytest.raises(ValueError, match=r"^discipline=.*: unknown discipline; use one of"):
        simulate(net, horizon=10.0, discipline=bad)
    with pytest.raises(ValueError, match=r"^preemptive=.*: must be True or False"):
        simulate(net, horizon=10.0, discipline="fcfs", preemptive="yes")


@pytest.mark.parametrize("method", ["events", "slots"])
def test_one_job_class_every_rule_is_fcfs_and_mm1(method):
    # M = 0: every job is the same class, so every rule is FCFS, draw for draw; and each
    # device is an M/M/1 queue (slots: the slot-boundary average of docs/model.md is close
    # to rho / (1 - rho) with dt a tenth of a service).
    rho = 0.6
    net = MoANetwork(n=2, arrival_rate=rho)
    kw = dict(method=method, horizon=20_000.0, seed=11, replications=8)
    fcfs = simulate(net, **kw)
    exact = rho / (1 - rho) if method == "events" else None
    if exact is not None:
        _within(fcfs.mean_queue, exact, fcfs.mean_queue_ci)
    for discipline, preemptive in RULES[1:]:
        r = simulate(net, **kw, discipline=discipline, preemptive=preemptive)
        assert np.array_equal(r.mean_queue, fcfs.mean_queue), discipline
        assert np.array_equal(r.queue_distribution, fcfs.queue_distribution), discipline
        assert r.latency_mean == fcfs.latency_mean
        assert (r.discipline, r.preemptive) == (discipline, preemptive)


# n = 2, M = 1, k = 1 on the complete graph: every prompt, of either origin, puts one layer-1
# (propose) job on each device at its birth, so layer-1 jobs reach a device as a Poisson
# stream of rate 2 lambda; the aggregate (rate lambda, on the origin) is not Poisson.
LAM, S1, S2 = 0.2, 1.0, 1.5
SCV = {"exponential": 1.0, "deterministic": 0.0}


def _two_class_exact(preemptive: bool, scv: float) -> float:
    r"""Mean layer-1 jobs at a device under earlier-layer-first.

    Preemptive: layer-1 jobs never see the aggregate, an M/G/1 queue (Pollaczek-Khinchine)
    :math:`L_1 = \rho_1 + \lambda_1^2 E[S_1^2] / (2(1-\rho_1))`. Non-preemptive: a layer-1
    job waits for the residual service in progress, :math:`W_0 = \sum_c \lambda_c E[S_c^2]/2`
    (its time average; exact for the Poisson class by PASTA), and for the layer-1 jobs ahead,
    :math:`W_1 = W_0 / (1 - \rho_1)`, :math:`L_1 = \lambda_1 (W_1 + E[S_1])`.
    """
    lam1, lam2 = 2 * LAM, LAM
    rho1 = lam1 * S1
    second1, second2 = (1 + scv) * S1**2, (1 + scv) * S2**2
    if preemptive:
        return rho1 + lam1**2 * second1 / (2 * (1 - rho1))
    w0 = (lam1 * second1 + lam2 * second2) / 2
    return lam1 * (w0 / (1 - rho1) + S1)


@pytest.mark.parametrize("service", ["exponential", "deterministic"])
@pytest.mark.parametrize("preemptive", [False, True])
def test_highest_priority_class_matches_the_priority_queue_formulas(service, preemptive):
    net = MoANetwork(n=2, M=1, k=1, arrival_rate=LAM, service_time={"propose": S1, "aggregate": S2})
    r = simulate(
        net,
        method="events",
        horizon=40_000.0,
        seed=3,
        replications=8,
        service=service,
        discipline="earlier-layer-first",
        preemptive=preemptive,
    )
    exact = _two_class_exact(preemptive, SCV[service])
    _within(r.mean_jobs_by_type[PROPOSE], exact, r.mean_jobs_by_type_ci[PROPOSE])
    # The aggregate is served at its own rate whatever the rule: Little's law, with the
    # per-type split adding up to the queue.
    assert np.allclose(r.mean_jobs_by_type.sum(axis=0), r.mean_queue)
    # Preemptive-resume keeps the work of an interrupted job: the utilisation is the load
    # (a restart would redo deterministic work and exceed it).
    _within(r.utilisation, r.loads, r.utilisation_ci)
    assert r.mean_jobs_by_type[AGGREGATE].min() > 0


def test_preemption_changes_the_top_class_and_fcfs_lies_between():
    # Sanity of the ordering for exponential service: preemptive < non-preemptive for the
    # favoured layer-1 jobs, both below FCFS (exact values from _two_class_exact).
    assert _two_class_exact(True, 1.0) < _two_class_exact(False, 1.0)
    net = MoANetwork(n=2, M=1, k=1, arrival_rate=LAM, service_time={"propose": S1, "aggregate": S2})
    kw = dict(method="events", horizon=40_000.0, seed=4, replications=8)
    fcfs = simulate(net, **kw)
    pre = simulate(net, **kw, discipline="earlier-layer-first", preemptive=True)
    gap = fcfs.mean_jobs_by_type[PROPOSE] - pre.mean_jobs_by_type[PROPOSE]
    half = np.hypot(fcfs.mean_jobs_by_type_ci[PROPOSE], pre.mean_jobs_by_type_ci[PROPOSE])
    assert np.all(gap > WIDEN * half)


@pytest.mark.parametrize("method", ["events", "slots"])
def test_work_conservation_one_mean_every_rule_same_work(method):
    # Without helpers (k = 0) each device is a queue of its own prompts, each needing M + 1 = 2
    # stages of one exponential mean. The work in stages, W = 2 N_propose + N_aggregate, jumps
    # by 2 at each prompt and falls by 1 at rate mu while positive under every work-conserving
    # rule, preemptive or not (the stage in service is memoryless): an M^X/M/1 queue with
    # batches of X = 2, E[W] = rho/(1 - rho) (E[X^2] + E[X]) / (2 E[X]) = 1.5 rho/(1 - rho).
    # The job count is not conserved: later-layer-first finishes prompts sooner. (With
    # helpers, the rule also changes when a device's later-layer jobs arrive, through the
    # joins, so neither the count nor the work at one device is conserved across rules.)
    rho = 0.75
    net = MoANetwork(n=2, M=1, k=0, arrival_rate=rho / 2)
    kw = dict(method=method, horizon=40_000.0, seed=21, replications=8)
    fcfs = simulate(net, **kw)
    weight = np.array([2.0, 0.0, 1.0])  # stages left per job type (refine: none at M = 1)

    def work(r):
        return weight @ r.mean_jobs_by_type, weight @ r.mean_jobs_by_type_ci  # CI: a bound

    exact = 1.5 * rho / (1 - rho)
    if method == "events":
        w0, w0_ci = work(fcfs)
        _within(w0, exact, w0_ci)
    for discipline, preemptive in RULES[1:]:
        r = simulate(net, **kw, discipline=discipline, preemptive=preemptive)
        (w, w_ci), (w0, w0_ci) = work(r), work(fcfs)
        assert np.all(np.abs(w - w0) <= WIDEN * (w_ci + w0_ci)), discipline
        _within(r.utilisation, rho, r.utilisation_ci)
    later = simulate(net, **kw, discipline="later-layer-first", preemptive=True)
    half = np.hypot(fcfs.mean_queue_ci, later.mean_queue_ci)
    assert np.all(fcfs.mean_queue - later.mean_queue > WIDEN * half)


@pytest.mark.parametrize("method", ["events", "slots"])
def test_same_seed_same_result_and_chunks_change_nothing(monkeypatch, method):
    net = MoANetwork(
        n=4,
        M=2,
        k=[2, 1],
        arrival_rate=0.08,
        service_time={"propose": 1, "refine": 2, "aggregate": 1.5},
    )
    kw = dict(
        method=method,
        horizon=3_000.0,
        seed=7,
        replications=3,
        service="gamma",
        scv=2.0,
        discipline="own-user-first",
        preemptive=True,
        record_paths=True,
    )
    monkeypatch.setattr(sim, "_CHUNK_WALL_S", 1e9)  # chunks double: a handful of calls
    few = simulate(net, **kw)
    again = simulate(net, **kw)
    monkeypatch.setattr(sim, "_FIRST_CHUNK_EVENTS", 2_000)
    monkeypatch.setattr(sim, "_CHUNK_WALL_S", 0.0)  # halved down to 1/16: ~200 calls
    many = simulate(net, **kw)
    assert few.prompts_completed > 500
    for other in (again, many):
        for name in ("mean_queue", "mean_jobs_by_type", "queue_distribution", "max_queue"):
            assert np.array_equal(getattr(few, name), getattr(other, name)), name
        assert few.latency_mean == other.latency_mean
        assert np.array_equal(few.paths.to_numpy(), other.paths.to_numpy())
    assert few.to_frame().attrs == {"discipline": "own-user-first", "preemptive": True}
    assert "preemptive own-user-first" in str(few)
