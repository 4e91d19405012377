"""``moa-stability measure``: time a real LLM through the MoA protocol (needs the [llm] extra)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..llm.measure import max_load_field, measure, parse_configs
from ..llm.trace import save_trace
from .network import output_path


def register(subparsers: Any) -> None:
    """Add the ``measure`` subcommand to an argparse subparsers object."""
    p = subparsers.add_parser(
        "measure",
        help="time a real LLM through the MoA protocol (needs the [llm] extra)",
        description="Run the distributed Mixture-of-Agents protocol for real and time every "
        "inference.",
        epilog="examples:\n"
        "  moa-stability measure --configs 1x1 --prompts 2 --out quick.csv   # a smoke test\n"
        "  moa-stability measure --configs 1x1,2x2 --prompts 16 --threads 2 --out my.csv\n"
        "\n"
        "Then simulate with the measured law:\n"
        "  moa-stability simulate --service empirical --samples my.csv "
        "--service-time-from-samples\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--configs", default="1x1", help="MxK list, e.g. 1x1,2x3 (default 1x1)")
    p.add_argument("--prompts", type=int, default=2, help="prompts per configuration")
    p.add_argument("--max-tokens", type=int, default=128, help="output token cap")
    p.add_argument("--threads", type=int, default=1, help="llama.cpp threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--devices", type=int, default=4, help="logical devices n")
    p.add_argument("--ctx", type=int, default=4096, help="llama.cpp context size")
    p.add_argument("--model", default=None, help="GGUF file (default: SmolLM2-135M wheel)")
    p.add_argument("--out", default="trace.csv", help="output CSV (metadata beside as .json)")
    p.add_argument("--note", default="", help="free text stored in the metadata")
    p.add_argument(
        "--max-load",
        type=float,
        default=None,
        help="quiet-machine guard: refuse to start above this 1-minute load average and pause "
        "while it exceeds it plus --threads (0.3 for a trace meant to be shipped)",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    output_path(Path(args.out), (".csv",))
    max_load = max_load_field(
        args.max_load, "--max-load", "pass e.g. 0.3, or leave the flag out for no guard"
    )
    df = measure(
        parse_configs(args.configs),
        n_prompts=args.prompts,
        max_tokens=args.max_tokens,
        n_threads=args.threads,
        seed=args.seed,
        model_path=args.model,
        n_devices=args.devices,
        n_ctx=args.ctx,
        progress=not args.no_progress,
        max_load=max_load,
        out=args.out,
        note=args.note,
    )
    path = save_trace(df, args.out)
    print(f"{len(df)} inferences, {df['seconds'].sum():.1f} s of inference -> {path}")
    return 0
