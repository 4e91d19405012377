"""moa_stability: stability, waiting times and load balancing of distributed Mixture-of-Agents.

At which prompt rates do the device queues stay bounded, how long do prompts wait, and how
should work be spread to carry more? See README.md for a tour.
"""

from importlib import import_module
from typing import Any

from .analysis.report import StabilityReport, stability_report
from .experiments.sweep import sweep
from .llm.replay import ReplayResult, replay
from .model.loads import helper_rates, job_rates, kelly_type, loads, max_uniform_scale
from .model.network import (
    JOB_TYPES,
    MoANetwork,
    network_from_dict,
    paper_network,
    random_regular_graph,
)
from .simulation.simulate import SimulationResult, simulate

__all__ = [
    "JOB_TYPES",
    "MoANetwork",
    "ReplayResult",
    "SimulationResult",
    "StabilityReport",
    "StableRateResult",
    "capacity_region",
    "cross_check",
    "helper_rates",
    "job_rates",
    "kelly_type",
    "loads",
    "max_stable_rate",
    "max_uniform_scale",
    "network_from_dict",
    "paper_network",
    "random_regular_graph",
    "replay",
    "simulate",
    "stability_report",
    "sweep",
]

__version__ = "0.1.0"

# cvxpy takes most of a second to import: load the optimiser on first use only.
_LAZY = {
    "max_stable_rate": "analysis.optimize",
    "capacity_region": "analysis.optimize",
    "StableRateResult": "analysis.optimize",
    "cross_check": "experiments.crosscheck",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
