"""Service-time model: fit recovery on a synthetic trace, per-type means, the shipped trace."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from moa_stability.llm.service import (
    JOB_TYPES,
    ConstantService,
    LengthModel,
    LinearService,
    ServiceModel,
    job_length_samples,
    job_types_used,
    mean_service_times,
    service_samples,
)
from moa_stability.llm.trace import load_default_trace, validate_trace

TRUE = {"c0": 0.05, "c_in": 0.004, "c_out": 0.012}
H, G = 70.0, 6.0  # instruction tokens and per-response formatting tokens
SIGMA = 0.05
CONFIGS = [(M, k) for M in (1, 2) for k in (1, 2, 3)]


def synthetic_trace(n_prompts: int = 30, seed: int = 7, c_inout: float = 0.0) -> pd.DataFrame:
    """A trace built exactly like the protocol builds its prompts, with known coefficients."""
    rng = np.random.default_rng(seed)
    rows = []

    def add(request, M, k, layer, job_type, l_in, l_out):
        mean = TRUE["c0"] + TRUE["c_in"] * l_in + TRUE["c_out"] * l_out + c_inout * l_in * l_out
        seconds = mean * np.exp(SIGMA * rng.standard_normal() - SIGMA**2 / 2)
        rows.append(dict(prompt_id=request % 17, M=M, k=k, layer=layer, job_type=job_type,
                         device=0, input_tokens=int(l_in), output_tokens=int(l_out),
                         seconds=seconds, ttft_seconds=seconds / 3, finish_reason="stop",
                         loadavg_1min=0.0, request=request))  # fmt: skip

    request = 0
    for _ in range(n_prompts):
        for M, k in CONFIGS:
            l_p = int(rng.integers(20, 60))
            outs = rng.integers(10, 129, size=k + 1)
            for o in outs:
                add(request, M, k, 1, "propose", l_p, o)
            for layer in range(2, M + 2):
                l_in = l_p + H + (k + 1) * G + outs.sum()
                if layer == M + 1:
                    add(request, M, k, layer, "aggregate", l_in, rng.integers(10, 129))
                    break
                outs = rng.integers(10, 129, size=k + 1)
                for o in outs:
                    add(request, M, k, layer, "refine", l_in, o)
            request += 1
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def trace() -> pd.DataFrame:
    return synthetic_trace()


def test_fit_recovers_known_coefficients_within_ci(trace):
    model = LinearService.fit(trace)
    table = model.fit_result.to_frame()
    for term, value in TRUE.items():
        low, high = table.loc[term, ["ci_low", "ci_high"]]
        assert low <= value <= high, (term, value, low, high)
    assert model.fit_result.r2 > 0.95
    assert 0.5 * SIGMA < model.sigma_log < 1.5 * SIGMA
    assert np.isclose(model.c_in, TRUE["c_in"], rtol=0.05)


def test_fit_with_interaction_term():
    trace = synthetic_trace(n_prompts=40, seed=3, c_inout=2e-5)
    model = LinearService.fit(trace, interaction=True, covariance="classical")
    fit = model.fit_result
    assert fit.terms == ("c0", "c_in", "c_out", "c_inout")
    low, high = fit.to_frame().loc["c_inout", ["ci_low", "ci_high"]]
    assert low <= 2e-5 <= high
    assert 0.9 < fit.r2 <= 1.0
    assert "R^2" in fit.summary()


def test_r2_is_low_when_seconds_ignore_tokens(trace):
    noise = trace.assign(seconds=np.random.default_rng(1).uniform(1.0, 2.0, len(trace)))
    assert LinearService.fit(noise).fit_result.r2 < 0.1


def test_linear_service_sample_has_the_mean():
    model = LinearService(c0=0.1, c_in=0.002, c_out=0.01, sigma_log=0.3)
    l_in, l_out = np.full(200_000, 300), np.full(200_000, 100)
    s = model.sample(l_in, l_out, np.random.default_rng(0))
    assert s.shape == l_in.shape and (s > 0).all()
    assert np.isclose(s.mean(), 0.1 + 0.6 + 1.0, rtol=0.01)
    assert np.isclose(np.log(s).std(), 0.3, rtol=0.02)
    assert np.allclose(model.mean([300, 0], 100), [1.7, 1.1])


def test_constant_service():
    const = ConstantService(2.5)
    assert isinstance(const, ServiceModel)
    assert np.array_equal(const.mean([1, 2, 3], 5), [2.5, 2.5, 2.5])
    rng = np.random.default_rng(0)
    assert np.isclose(ConstantService(2.0, "exponential").sample(np.zeros(100_000), 0, rng).mean(),
                      2.0, rtol=0.02)  # fmt: skip


def test_length_model_recovers_protocol_overheads(trace):
    lengths = LengthModel.from_trace(trace)
    assert np.isclose(lengths.instruction_tokens, H)
    assert np.isclose(lengths.per_response_tokens, G)
    assert set(lengths.output_tokens) == set(JOB_TYPES)


def test_per_type_means_grow_with_k(trace):
    means = {k: mean_service_times(2, k, trace=trace, n=4000) for k in (0, 1, 2, 3, 5)}
    for c in ("refine", "aggregate"):
        values = [means[k][c] for k in sorted(means)]
        assert np.all(np.diff(values) > 0), (c, values)
    # A propose job reads the plain prompt: its mean does not depend on k.
    assert np.ptp([m["propose"] for m in means.values()]) < 0.02 * means[1]["propose"]
    # Refine and aggregate read k+1 responses: longer prefill than a proposer.
    assert means[1]["aggregate"] > means[1]["propose"]


def test_means_match_the_linear_formula(trace):
    model = LinearService(c0=0.1, c_in=0.002, c_out=0.01)
    jobs = job_length_samples(2, 2, trace=trace, n=3000, seed=4)
    means = mean_service_times(2, 2, model=model, trace=trace, n=3000, seed=4)
    for c, (l_in, l_out) in jobs.items():
        assert np.isclose(means[c], 0.1 + 0.002 * l_in.mean() + 0.01 * l_out.mean())


def test_job_counts_and_keys_follow_the_protocol(trace):
    n = 500
    for M, k in [(0, 0), (0, 2), (1, 1), (2, 3), (3, 2)]:
        jobs = job_length_samples(M, k, trace=trace, n=n)
        assert tuple(jobs) == job_types_used(M)
        width = 1 if M == 0 else k + 1
        assert jobs["propose"][0].size == n * width
        if M >= 2:
            assert jobs["refine"][0].size == n * (k + 1) * (M - 1)
        if M >= 1:
            assert jobs["aggregate"][0].size == n
        assert set(mean_service_times(M, k, trace=trace, n=n)) == set(job_types_used(M))


def test_user_model_plugs_in(trace):
    class Doubling:
        def mean(self, input_tokens, output_tokens):
            return 2.0 * np.asarray(output_tokens, float)

        def sample(self, input_tokens, output_tokens, rng):
            return self.mean(input_tokens, output_tokens)

    means = mean_service_times(1, 1, model=Doubling(), trace=trace, n=2000)
    assert np.isclose(
        means["propose"],
        2 * trace.loc[trace.job_type == "propose", "output_tokens"].mean(),
        rtol=0.05,
    )
    samples = service_samples(1, 2, model=Doubling(), trace=trace, n=100)
    assert samples["propose"].size == 300 and samples["aggregate"].size == 100


def test_service_samples_from_the_trace(trace):
    measured = service_samples(2, 3, source="trace", trace=trace)
    assert set(measured) == set(JOB_TYPES)
    rows = trace[(trace.M == 2) & (trace.k == 3)]
    assert measured["refine"].size == (rows.job_type == "refine").sum()
    with pytest.raises(ValueError, match="no rows"):
        service_samples(3, 1, source="trace", trace=trace)


@pytest.mark.parametrize(
    "call",
    [
        lambda t: mean_service_times(-1, 1, trace=t),
        lambda t: mean_service_times(1, -2, trace=t),
        lambda t: mean_service_times(1.5, 1, trace=t),
        lambda t: mean_service_times(1, 1, trace=t, n=0),
        lambda t: mean_service_times(1, 1, model=object(), trace=t),
        lambda t: service_samples(1, 1, source="bogus", trace=t),
        lambda t: LinearService.fit(t.drop(columns="seconds")),
        lambda t: LinearService.fit(t.assign(job_type="decode")),
        lambda t: LinearService.fit(t.head(3)),
        lambda t: LinearService.fit(t, covariance="HC0"),
        lambda t: LinearService(c0=0.0, c_in=0.0, c_out=0.0, sigma_log=-1.0),
        lambda t: ConstantService(0.0),
        lambda t: LinearService(0.1, 0.1, 0.1).mean([-1], [1]),
        lambda t: validate_trace(t.assign(seconds=0.0)),
        lambda t: validate_trace([1, 2, 3]),
    ],
)
def test_bad_input_raises_value_error(trace, call):
    with pytest.raises(ValueError):
        call(trace)


# ----------------------------------------------------------------------------- shipped trace


@pytest.fixture(scope="module")
def shipped() -> pd.DataFrame:
    return load_default_trace()


def test_shipped_trace_has_all_configs(shipped):
    assert len(shipped) >= 500
    configs = set(zip(shipped["M"], shipped["k"], strict=True))
    assert configs == set(CONFIGS)
    assert set(shipped["job_type"]) == set(JOB_TYPES)
    assert "command" in shipped.attrs and shipped.attrs["n_threads"] == 1
    # Each prompt run has (k+1)M + 1 inferences, M + 1 of them on its origin.
    for (M, k), run in shipped.groupby(["M", "k"]):
        sizes = run.groupby("request").size()
        assert (sizes == (k + 1) * M + 1).all()


def test_shipped_fit_is_sane(shipped):
    model = LinearService.fit(shipped)
    fit = model.fit_result
    # The shipped trace was measured with nothing else running, so the token counts explain
    # the times: R^2 from an independent least-squares fit, and the floor of 0.9.
    X = np.column_stack(
        [np.ones(len(shipped)), shipped["input_tokens"], shipped["output_tokens"]]
    ).astype(float)
    y = shipped["seconds"].to_numpy(float)
    beta, *_ = np.linalg.lstsq(X, y, rcond=None)
    r2 = 1 - np.sum((y - X @ beta) ** 2) / np.sum((y - y.mean()) ** 2)
    assert fit.r2 == pytest.approx(r2, rel=1e-10) and r2 >= 0.9
    assert all(fit.ci_low[1:] > 0)
    assert model.c_in > 0 and model.c_out > model.c_in  # decoding a token costs more
    means = {k: mean_service_times(2, k) for k in (1, 2, 3)}
    assert means[1]["refine"] < means[2]["refine"] < means[3]["refine"]


def test_means_plug_into_the_network():
    network = pytest.importorskip("moa_stability.model.network")
    means = mean_service_times(2, 2)
    net = network.MoANetwork(n=4, M=2, k=2, arrival_rate=0.01, service_time=means)
    assert np.allclose(net.service_time[:, 0], [means[c] for c in JOB_TYPES])


# ----------------------------------------------------------------------------- output cap


class OutputSeconds:
    """A service model whose mean is the output length (1 s per token), noise-free."""

    def mean(self, input_tokens, output_tokens):
        return np.asarray(output_tokens, float) + 0.0 * np.asarray(input_tokens, float)

    def sample(self, input_tokens, output_tokens, rng):
        return self.mean(input_tokens, output_tokens)


def test_a_cap_below_every_output_makes_every_output_the_cap(trace):
    lengths = LengthModel.from_trace(trace)
    cap = 5  # the synthetic outputs are 10..128 tokens
    assert all(v.min() > cap for v in lengths.output_tokens.values())
    M, k = 2, 2
    jobs = lengths.capped(cap).sample(M, k, 500, np.random.default_rng(3))
    for _, l_out in jobs.values():
        assert (l_out == cap).all()
    # An augmented prompt holds the plain prompt, the instruction (H), the formatting (G) and
    # the k + 1 previous responses, now cap tokens each.
    prompt = set(lengths.prompt_tokens)
    for c in ("refine", "aggregate"):
        plain = jobs[c][0] - (
            lengths.instruction_tokens + (k + 1) * (lengths.per_response_tokens + cap)
        )
        assert set(np.round(plain, 9)) <= prompt
    means = mean_service_times(M, k, model=OutputSeconds(), trace=trace, n=300, max_tokens=cap)
    assert means == dict.fromkeys(("propose", "refine", "aggregate"), float(cap))
    samples = service_samples(M, k, model=OutputSeconds(), trace=trace, n=300, max_tokens=cap)
    assert all((s == cap).all() for s in samples.values())


def test_a_cap_truncates_each_output_and_none_or_a_high_cap_changes_nothing(trace):
    lengths = LengthModel.from_trace(trace)
    # The same draws (same seed, same array sizes) with and without the cap: min(L_out, cap).
    free = lengths.sample(1, 2, 400, np.random.default_rng(9))
    capped = lengths.capped(60).sample(1, 2, 400, np.random.default_rng(9))
    for c in free:
        assert np.array_equal(capped[c][1], np.minimum(free[c][1], 60))
    assert lengths.capped(None) is lengths
    top = int(max(v.max() for v in lengths.output_tokens.values()))
    base = mean_service_times(2, 2, trace=trace, n=500, seed=4)
    assert mean_service_times(2, 2, trace=trace, n=500, seed=4, max_tokens=None) == base
    assert mean_service_times(2, 2, trace=trace, n=500, seed=4, max_tokens=top) == base
    lower = mean_service_times(2, 2, trace=trace, n=500, seed=4, max_tokens=40)
    assert all(lower[c] < base[c] for c in base)


@pytest.mark.parametrize("bad", [0, -3, 1.5, "64", True, float("nan")])
def test_a_bad_output_cap_names_max_tokens(trace, bad):
    with pytest.raises(ValueError, match="^max_tokens="):
        LengthModel.from_trace(trace).capped(bad)
    with pytest.raises(ValueError, match="^max_tokens="):
        mean_service_times(1, 1, trace=trace, n=10, max_tokens=bad)
    with pytest.raises(ValueError, match="^max_tokens="):
        service_samples(1, 1, trace=trace, n=10, max_tokens=bad)
