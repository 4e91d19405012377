"""``moa-stability testbed``: the MoA protocol live on n LLM devices (needs the [llm] extra)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..llm.measure import QUIET_LOAD
from ..llm.replay import replay
from ..llm.service import ContextService, mean_service_times
from ..llm.testbed import run_testbed
from ..llm.trace import load_default_trace
from ..model.network import MoANetwork
from .network import add_network_arguments, network_from_args, output_path

EPILOG = """\
examples:
  moa-stability testbed --n 2 --M 1 --k 1 --rate 0.01 --duration 60 --max-tokens 16
  moa-stability testbed --n 2 --M 1 --k 1 --rate 0.02 --duration 1800 --out live.csv
  moa-stability testbed --n 2 --M 1 --k 1 --load 0.6 --max-tokens 32 --duration 300

With --load RHO the rates are set for a predicted busiest-device load RHO: service times
predicted by ContextService fitted to the shipped trace, with outputs capped at --max-tokens.

Each device is a process with its own SmolLM2 model and FCFS queue, talking to the others
over 127.0.0.1. Service times come from the model, not from --service-time. It refuses to
start on a busy machine (1-minute load average above 0.3): timings taken while other work
runs are wrong. Ctrl-C stops every device process.
"""


def register(subparsers: Any) -> None:
    """Add the ``testbed`` subcommand to an argparse subparsers object."""
    p = subparsers.add_parser(
        "testbed",
        help="run the MoA protocol live on n LLM device processes (needs the [llm] extra)",
        description="Poisson prompts at every device, helpers by the network's selection "
        "rule, joins,\nthe aggregate at the origin; every job and prompt logged.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_network_arguments(p)
    p.add_argument("--duration", type=float, default=60.0, help="seconds of prompt arrivals")
    p.add_argument(
        "--drain",
        type=float,
        default=None,
        help="seconds to wait for prompts in flight after --duration (default: all)",
    )
    p.add_argument("--max-tokens", type=int, default=64, help="output token cap per inference")
    p.add_argument("--threads", type=int, default=1, help="llama.cpp threads per device")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--allow-busy",
        action="store_true",
        help="start even when the load average is above 0.3 (timings will be wrong)",
    )
    p.add_argument("--out", type=Path, help="job log CSV (metadata and prompt log beside it)")
    p.set_defaults(func=run)


def predicted_network(net: MoANetwork, max_tokens: int) -> MoANetwork:
    """``net`` with the service times :class:`ContextService` (fitted to the shipped trace)
    predicts for its ``(M, k)`` at the output cap ``max_tokens``."""
    if len(set(net.k)) > 1:
        raise ValueError(
            f"--k={','.join(map(str, net.k))}: --load needs one k for every layer (the service "
            "model is per (M, k)); pass --rate instead"
        )
    trace = load_default_trace()
    k = net.k[0] if net.M else 0
    service = mean_service_times(
        net.M, k, model=ContextService.fit(trace), trace=trace, max_tokens=max_tokens
    )
    return net.replace(service_time=service)


def run(args: argparse.Namespace) -> int:
    out = output_path(args.out, (".csv",))
    net = network_from_args(args)
    if args.load is not None:
        net = predicted_network(net, args.max_tokens).at_load(args.load)
    result = run_testbed(
        net,
        duration_s=args.duration,
        max_tokens=args.max_tokens,
        threads=args.threads,
        seed=args.seed,
        out=out,
        drain_s=args.drain,
        max_load=None if args.allow_busy else QUIET_LOAD,
    )
    answered = len(result.answered)
    print(f"{answered} of {len(result.prompts)} prompts answered")
    if answered:
        replayed = replay(result.replay_jobs, n=result.net.n)
        print(
            f"mean latency {result.mean_latency:.4g} s live, {replayed.mean_latency:.4g} s "
            "replayed from the logged job durations"
        )
        print(result.to_frame().to_string())
    return 0
