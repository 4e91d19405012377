"""Sampling service times draws n prompts of (k + 1) M + 1 jobs: sizes that do not fit in
memory (k = 10^6 with the default n, or n = 10^12) are a one-line ValueError naming k or n
and the largest that works, not a MemoryError."""

from __future__ import annotations

import pytest
from one_line import one_line_value_error

from moa_stability.llm import service
from moa_stability.llm.service import MAX_SAMPLED_JOBS


@pytest.mark.parametrize(
    ("call", "fragments"),
    [
        (lambda: service.mean_service_times(2, 10**6), ["k=1000000", "pass k <= 2498"]),
        (lambda: service.service_samples(2, 10**6), ["k=1000000", "pass k <= 2498"]),
        (lambda: service.job_length_samples(2, 10**6), ["k=1000000"]),
        (
            lambda: service.mean_service_times(2, 1, n=10**12),
            ["n=1000000000000", f"pass n <= {MAX_SAMPLED_JOBS // 5}"],
        ),
        (lambda: service.mean_service_times(2**31 - 1, 1), ["M=2147483647", "M <= 1000000"]),
    ],
)
def test_samples_that_do_not_fit_in_memory_are_refused(call, fragments) -> None:
    one_line_value_error(call, *fragments)


def test_the_largest_k_named_in_the_message_is_accepted() -> None:
    # 20,000 prompts x (2 x 2499 + 1) jobs = 99,980,000 <= MAX_SAMPLED_JOBS.
    means = service.mean_service_times(2, 2498, n=20_000)
    assert set(means) == {"propose", "refine", "aggregate"}
    assert all(v > 0 for v in means.values())


def test_k_is_free_when_m_is_zero() -> None:
    # M = 0 is one plain inference per prompt whatever k says.
    assert set(service.mean_service_times(0, 10**9, n=100)) == {"propose"}
