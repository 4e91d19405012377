"""Monte Carlo: job-level numba simulators, their result type and statistics."""
