"""moa_stability: stability, waiting times and load balancing of distributed Mixture-of-Agents.

At which prompt rates do the device queues stay bounded, how long do prompts wait, and how
should work be spread to carry more? See README.md for a tour.
"""

from .loads import helper_rates, job_rates, kelly_type, loads, max_uniform_scale
from .network import (
    JOB_TYPES,
    MoANetwork,
    network_from_dict,
    paper_network,
    random_regular_graph,
)
from .report import StabilityReport, stability_report

__all__ = [
    "JOB_TYPES",
    "MoANetwork",
    "StabilityReport",
    "helper_rates",
    "job_rates",
    "kelly_type",
    "loads",
    "max_uniform_scale",
    "network_from_dict",
    "paper_network",
    "random_regular_graph",
    "stability_report",
]

__version__ = "0.1.0"
