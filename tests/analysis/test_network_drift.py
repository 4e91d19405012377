"""The network drift of symbolic.network_drift against a brute-force expectation over one slot
of small concrete networks, every event of the slot enumerated with its probability."""

import itertools
import math

import pytest
import sympy as sp

from moa_stability.analysis.symbolic import network_drift, symmetric_network_by_type

Q = {"propose": 0.5, "refine": 0.25, "aggregate": 0.4}


def workload(state, n, M, k, q=Q):
    """W_i in slots: queued jobs at 1/q each, plus the jobs each prompt will still create."""
    queues, prompts = state
    W = [sum(1 / q[c] for _, c in queue) for queue in queues]
    for origin, stage, _ in prompts.values():
        if stage <= M:
            for i in range(n):
                if i == origin:
                    W[i] += (M - stage) / q["refine"] + 1 / q["aggregate"]
                else:
                    W[i] += (M - stage) * k / (n - 1) / q["refine"]
    return W


def _place(queues, prompts, pid, origin, stage, helpers, job_type):
    queues[origin].append((pid, job_type))
    for h in helpers:
        queues[h].append((pid, job_type))
    prompts[pid] = (origin, stage, 1 + len(helpers))


def _helper_sets(n, origin, k):
    others = [i for i in range(n) if i != origin]
    subsets = list(itertools.combinations(others, k))
    return [(1 / len(subsets), s) for s in subsets]


def one_slot(state, n, M, k, p, head, q=Q):
    """Every outcome of one slot as (probability, next state): completions of the head jobs,
    then arrivals (layer-1 helpers uniform), then the releases of the joins that closed."""
    queues, prompts = state
    busy = [i for i in range(n) if queues[i]]
    for done in itertools.product([False, True], repeat=len(busy)):
        q_done = math.prod(q[head(queues[i])[1]] if d else 1 - q[head(queues[i])[1]]
                           for i, d in zip(busy, done, strict=True))  # fmt: skip
        for arrive in itertools.product([False, True], repeat=n):
            p_arr = math.prod(p if a else 1 - p for a in arrive)
            choices = [_helper_sets(n, j, k) if a else [(1.0, ())] for j, a in enumerate(arrive)]
            for picks in itertools.product(*choices):
                qs = [list(queue) for queue in queues]
                ps = dict(prompts)
                closed = []
                for i, d in zip(busy, done, strict=True):
                    if d:
                        job = head(qs[i])
                        qs[i].remove(job)
                        origin, stage, left = ps[job[0]]
                        ps[job[0]] = (origin, stage, left - 1)
                        if left == 1:
                            closed.append(job[0])
                for j, (_, helpers) in enumerate(picks):
                    if arrive[j]:
                        _place(qs, ps, ("new", j), j, 1, helpers, "propose")
                prob = q_done * p_arr * math.prod(w for w, _ in picks)
                yield from _releases(qs, ps, closed, n, M, k, prob)


def _releases(qs, ps, closed, n, M, k, prob):
    if not closed:
        yield prob, (qs, ps)
        return
    pid, rest = closed[0], closed[1:]
    origin, stage, _ = ps[pid]
    if stage == M + 1:  # the aggregate finished: the prompt leaves
        del ps[pid]
        yield from _releases(qs, ps, rest, n, M, k, prob)
        return
    options = _helper_sets(n, origin, k) if stage < M else [(1.0, ())]
    for w, helpers in options:
        q2, p2 = [list(queue) for queue in qs], dict(ps)
        job = "refine" if stage < M else "aggregate"
        _place(q2, p2, pid, origin, stage + 1, helpers, job)
        yield from _releases(q2, p2, rest, n, M, k, prob * w)


def _numbers(d, n, M, k, p, q=Q):
    sub = {sp.Symbol("n", positive=True, integer=True): n,
           sp.Symbol("M", positive=True, integer=True): M,
           sp.Symbol("k", positive=True, integer=True): k,
           sp.Symbol("p", positive=True): p,
           **{sp.Symbol(f"q_{c[0]}", positive=True): v for c, v in q.items()}}  # fmt: skip
    return float(d["load"].subs(sub)), float(d["B"].subs(sub))


def _expectations(state, n, M, k, p, head, q=Q):
    W0 = workload(state, n, M, k, q)
    EdW, EdV, total = [0.0] * n, 0.0, 0.0
    for prob, nxt in one_slot(state, n, M, k, p, head, q):
        W1 = workload(nxt, n, M, k, q)
        total += prob
        EdV += prob * sum((b * b - a * a) / 2 for a, b in zip(W0, W1, strict=True))
        for i in range(n):
            EdW[i] += prob * (W1[i] - W0[i])
    assert total == pytest.approx(1.0, abs=1e-12)
    return W0, EdW, EdV


def _state_n3_m2():
    # Prompt A (origin 0, layer 1): propose jobs at 0 and 1. Prompt B (origin 1, layer 2):
    # its own refine done, the helper's at 0 still queued. Prompt C (origin 2): aggregate.
    # Device 2 then holds C's aggregate; device 1 holds A's helper job.
    queues = [[("A", "propose"), ("B", "refine")], [("A", "propose")], [("C", "aggregate")]]
    prompts = {"A": (0, 1, 2), "B": (1, 2, 1), "C": (2, 3, 1)}
    return queues, prompts


@pytest.mark.parametrize("head", [lambda q: q[0], lambda q: q[-1]], ids=["fcfs", "lifo"])
@pytest.mark.parametrize("with_idle", [False, True])
def test_drift_equals_the_enumerated_slot(head, with_idle):
    n, M, k, p = 3, 2, 1, 0.05
    queues, prompts = _state_n3_m2()
    if with_idle:  # device 2 idle although prompt A will still bring it work
        queues[2], prompts = [], {"A": (0, 1, 2), "B": (1, 2, 1)}
    rho, B = _numbers(network_drift(), n, M, k, p)
    W, EdW, EdV = _expectations((queues, prompts), n, M, k, p, head)
    busy = [1.0 if queue else 0.0 for queue in queues]
    # First moment: exactly rho - b_i at every device, whatever the head-of-line rule.
    assert EdW == pytest.approx([rho - b for b in busy], abs=1e-12)
    first = sum(w * (rho - b) for w, b in zip(W, busy, strict=True))
    assert 0 <= EdV - first <= B


def test_join_state_has_positive_drift_below_capacity():
    # n = 2, M = k = 1, q_p = q_a = 0.5: N prompts of origin 0 wait for their helper job at
    # device 1; device 0 is empty but owes the N aggregates. At rho = 0.6 < 1 the drift is
    # positive (network_drift: positive iff rho > q_a / (q_a + q_p) = 1/2 here).
    n, M, k, N = 2, 1, 1, 6
    q = {"propose": 0.5, "refine": 0.5, "aggregate": 0.5}
    d = network_drift()
    p = 0.6 / _numbers(d, n, M, k, 1.0, q)[0]
    queues = [[], [(f"P{x}", "propose") for x in range(N)]]
    prompts = {f"P{x}": (0, 1, 1) for x in range(N)}
    W, _, EdV = _expectations((queues, prompts), n, M, k, p, lambda queue: queue[0], q)
    assert pytest.approx([N / 0.5, N / 0.5]) == W
    assert EdV > 0
    symbols = {
        sp.Symbol("N", positive=True): N,
        sp.Symbol("p", positive=True): p,
        sp.Symbol("q_p", positive=True): 0.5,
        sp.Symbol("q_a", positive=True): 0.5,
    }
    first = float(d["join_state_drift"].subs(symbols))  # fmt: skip
    assert first == pytest.approx(W[0] * 0.6 + W[1] * (0.6 - 1), rel=1e-12)
    assert first > 0
    assert EdV >= first


def test_condition_is_the_type_aware_condition_and_theorem_1():
    d = network_drift()
    lam, dt = sp.symbols("lambda dt", positive=True)
    alphas = sp.symbols("alpha_p alpha_r alpha_a", positive=True)
    slotted = {sp.Symbol("p", positive=True): lam * dt,
               **{sp.Symbol(f"q_{c}", positive=True): dt / a
                  for c, a in zip("pra", alphas, strict=True)}}  # fmt: skip
    typed = symmetric_network_by_type()["load"]
    assert sp.simplify(d["load"].subs(slotted) - typed) == 0
    alpha = sp.Symbol("alpha", positive=True)
    k, M = sp.symbols("k M", positive=True, integer=True)
    same = {a: alpha for a in alphas}
    assert sp.simplify(d["load"].subs(slotted).subs(same) - alpha * lam * ((k + 1) * M + 1)) == 0
    # Joins are pure bookkeeping in expectation: closing one changes no workload on average.
    assert d["closure_change_own"] == 0 and d["closure_change_helper"] == 0
