"""moa_stability: stability, waiting times and load balancing of distributed Mixture-of-Agents.

At which prompt rates do the device queues stay bounded, how long do prompts wait, and how
should work be spread to carry more? See README.md for a tour.
"""

from importlib import import_module
from typing import Any

from ._version import __version__ as __version__
from .analysis.latency import LatencyResult, latency
from .analysis.report import StabilityReport, stability_report
from .experiments.sweep import sweep
from .llm.replay import ReplayResult, replay
from .model import paper
from .model.loads import (
    LoadProfile,
    helper_rates,
    job_rates,
    kelly_type,
    load_matrix,
    load_profile,
    loads,
    max_uniform_scale,
)
from .model.network import (
    JOB_TYPES,
    MoANetwork,
    inferences_by_type,
    inferences_per_prompt,
    network_from_dict,
    random_regular_graph,
)
from .model.paper import paper_network
from .simulation.simulate import SimulationResult, simulate
from .simulation.statistics import TailFit, fit_tail

__all__ = [
    "JOB_TYPES",
    "LatencyResult",
    "LoadProfile",
    "MoANetwork",
    "ReplayResult",
    "SimulationResult",
    "StabilityReport",
    "StableRateResult",
    "TailFit",
    "capacity_region",
    "cross_check",
    "fit_tail",
    "fluid_growth_rate",
    "helper_rates",
    "inferences_by_type",
    "inferences_per_prompt",
    "job_rates",
    "kelly_type",
    "latency",
    "load_matrix",
    "load_profile",
    "live_comparison",
    "loads",
    "max_stable_rate",
    "max_uniform_scale",
    "network_from_dict",
    "paper",
    "paper_network",
    "plan",
    "random_regular_graph",
    "replay",
    "simulate",
    "stability_report",
    "sweep",
    "type_aware_threshold",
]


# cvxpy and sympy take most of a second each to import: load the optimiser, the planner (which
# calls the optimiser) and the symbolic code on first use only.
_LAZY = {
    "fluid_growth_rate": "analysis.fluid",
    "type_aware_threshold": "analysis.symbolic",
    "plan": "analysis.planner",
    "max_stable_rate": "analysis.optimize",
    "capacity_region": "analysis.optimize",
    "StableRateResult": "analysis.optimize",
    "cross_check": "experiments.crosscheck",
    "live_comparison": "experiments.live_comparison",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
