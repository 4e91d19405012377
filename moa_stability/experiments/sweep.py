r"""Parameter sweeps: a grid of networks times seeds, each point a simulation, on Dask.

A sweep evaluates a point function at every element of the cartesian product

.. math::

    \mathcal G = V_1 \times V_2 \times \dots \times V_d \times \mathcal S,

where :math:`V_f` are the values listed for grid field :math:`f` (network fields such as the
per-device rate, ``M``, ``k``, ``n``, or simulator keywords such as the horizon) and
:math:`\mathcal S` the seeds, so it has :math:`|\mathcal S| \prod_f |V_f|` rows. Rows sharing
the grid values and differing in the seed are independent replications: confidence intervals
come from grouping over ``seed``.

Points run as Dask futures, on a local cluster by default or on an existing scheduler to scale
out across machines. Each finished point is written to an on-disk cache at once, atomically
(a temporary file, then ``os.replace``), under a hash of its normalised parameters, so a sweep
killed midway resumes without recomputing finished points and without corrupt entries.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import itertools
import json
import logging
import math
import os
import tempfile
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._version import __version__
from ..model.display import tqdm
from ..model.loads import loads
from ..model.network import JOB_TYPES, MoANetwork, count_field, is_rectangular, number_field
from ..model.paper import paper_network

NETWORK_FIELDS: tuple[str, ...] = ("n", "M", "k", "arrival_rate", "service_time", "topology")
"""Grid fields that change the network (the other :class:`MoANetwork` fields come from base)."""

RATE_FIELDS: tuple[str, ...] = ("scale", "load")
"""Grid fields that rescale the arrival rates after the network is built: ``scale`` multiplies
them by a factor, ``load`` sets them so that the busiest device has :math:`\\max_i\\rho_i`
equal to the value."""

PointFunction = Callable[..., Mapping[str, Any]]

MAX_POINTS = 10**6
"""Most rows (grid points times seeds) one sweep may hold. Each row is built, hashed and kept
in memory before the first point runs, and even a point of a second takes days at 10^6 rows:
a larger grid is refused up front (split it into several sweeps; they can share a cache)."""

SERIAL_POINTS_PER_CORE = 4
"""With ``client="auto"``, grids of at most this many points to compute per core run in this
process instead of on a local Dask cluster.

A local cluster takes about 10 s to start on a busy 2-core machine (an 8-point grid: 12.8 s on
Dask, 2.25 s serial), and a point at the default horizon takes well under a second to a few
seconds, so below a few points per core the cluster costs more than it saves."""


@dataclass(frozen=True)
class SweepPoint:
    """One grid element and seed, ready to evaluate: ``point(network, seed, **options)``."""

    params: dict[str, Any]
    seed: int
    network: MoANetwork = field(repr=False)
    options: dict[str, Any]
    key: str


def simulate_point(net: MoANetwork, seed: int, **options: Any) -> dict[str, Any]:
    r"""The default point: :func:`moa_stability.simulation.simulate` summarised in scalars.

    Returns ``verdict``; the time-average jobs at the busiest device and over devices
    (``mean_queue_max`` with its 95% CI half-width ``mean_queue_max_ci``, ``mean_queue_mean``);
    ``latency_mean_s`` (with ``latency_ci_s``) and ``latency_p95_s``; ``utilisation_max``;
    the growth of the total jobs in the system ``growth_slope_per_s`` (with
    ``growth_slope_ci_per_s``); ``inferences``; ``cap_hit_s`` (when the job cap stopped the
    run, NaN if never) and the exact ``max_load`` :math:`\max_i \rho_i`.
    """
    from ..simulation.simulate import simulate

    r = simulate(net, seed=seed, **options)
    busiest = int(np.argmax(r.mean_queue))
    return {
        "verdict": r.verdict,
        "mean_queue_max": float(r.mean_queue[busiest]),
        "mean_queue_max_ci": float(r.mean_queue_ci[busiest]),
        "mean_queue_mean": float(np.mean(r.mean_queue)),
        "latency_mean_s": float(r.latency_mean),
        "latency_ci_s": float(r.latency_ci),
        "latency_p95_s": float(r.latency_p95),
        "utilisation_max": float(np.max(r.utilisation)),
        "growth_slope_per_s": float(r.growth_slope),
        "growth_slope_ci_per_s": float(r.growth_slope_ci),
        "inferences": int(r.inferences),
        "cap_hit_s": float("nan") if r.cap_hit_time is None else float(r.cap_hit_time),
        "max_load": float(loads(net).max()),
    }


# ---- grid -> points --------------------------------------------------------------------------
def _option_names(point: PointFunction) -> set[str] | None:
    """Keywords ``point`` accepts after ``(network, seed)``; ``None`` when it takes any."""
    target = point
    if point is simulate_point:
        from ..simulation.simulate import simulate

        target = simulate
    params = list(inspect.signature(target).parameters.values())[1:]
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params if p.name != "seed" and p.kind is not p.VAR_POSITIONAL}


def _check_grid(
    grid: Mapping[str, Any], options: set[str] | None, fixed: Mapping[str, Any]
) -> dict[str, list[Any]]:
    """Each grid field as a non-empty list of values, after checking every name."""
    network = set(NETWORK_FIELDS + RATE_FIELDS)
    misplaced = sorted(network & set(fixed))
    if misplaced:
        raise ValueError(
            f"options={misplaced}: network fields, not point keywords; set "
            "them in base or list them in the grid"
        )
    unknown = [f for f in [*grid, *fixed] if options is not None and f not in network | options]
    if unknown:
        valid = sorted(network) + sorted(options or ())
        raise ValueError(f"grid={unknown}: unknown field(s) {unknown}; valid names are {valid}")
    if all(f in grid for f in RATE_FIELDS):
        raise ValueError("grid=['scale', 'load']: has both 'scale' and 'load'; keep one of them")
    both = sorted(set(grid) & set(fixed))
    if both:
        raise ValueError(f"grid={both}: given both in the grid and as keyword(s); keep one")
    axes = {}
    for name, values in grid.items():
        if _length(values) > MAX_POINTS:  # before any conversion: range(10**12) is an axis
            raise ValueError(
                f"grid[{name!r}]=({len(values)} values): more than the {MAX_POINTS:.0e} rows "
                "(MAX_POINTS) a sweep may hold; list fewer values or split the sweep"
            )
        scalar = isinstance(values, str) or (is_rectangular(values) and np.ndim(values) == 0)
        axis = [values] if scalar else list(values)
        if not axis:
            raise ValueError(f"grid[{name!r}]=[]: the axis is empty; list at least one value")
        axes[name] = axis
    size = math.prod(len(axis) for axis in axes.values())
    if size > MAX_POINTS:
        shape = " x ".join(f"{len(axis)} {name}" for name, axis in axes.items())
        raise ValueError(
            f"grid={sorted(axes)}: {shape} = {size:.3g} points, over the {MAX_POINTS:.0e} rows "
            "(MAX_POINTS) a sweep may hold; list fewer values, or split it into several sweeps "
            "(they can share a cache)"
        )
    return axes


def _length(values: Any) -> int:
    """``len(values)`` for a sized non-string, else 0 (a scalar, or a sequence of unknown size)."""
    if isinstance(values, (str, bytes)):
        return 0
    try:
        return len(values)
    except TypeError:
        return 0


def _seed_list(seeds: int | Sequence[int], points: int = 1) -> list[int]:
    """The seeds, checked; ``points`` grid points times them must fit :data:`MAX_POINTS`."""
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        if seeds < 1:
            raise ValueError(f"seeds={seeds}: need at least one; pass a count >= 1 or a list")
        # Each seed is at least one row held in memory: a billion is beyond any sweep.
        count = count_field("seeds", seeds, 1, 10**9)
        _check_rows(seeds, points, count)
        return list(range(count))
    try:
        if isinstance(seeds, (str, bytes)):  # iterable, but characters are no seeds
            raise TypeError
        values = list(seeds)
    except TypeError as err:
        raise ValueError(
            f"seeds={seeds!r}: not a count or a list; pass a count >= 1 or a list of integers"
        ) from err
    if not values or not all(isinstance(s, (int, np.integer)) and s >= 0 for s in values):
        raise ValueError(
            f"seeds={values}: empty or not integers >= 0; pass a count >= 1 or a list of "
            "integers >= 0"
        )
    if len(set(values)) < len(values):
        raise ValueError(f"seeds={values}: repeated seeds repeat the same run; drop duplicates")
    _check_rows(f"({len(values)} seeds)", points, len(values))
    return [int(s) for s in values]


def _check_rows(shown: Any, points: int, seeds: int) -> None:
    if points * seeds > MAX_POINTS:
        raise ValueError(
            f"seeds={shown}: {points} grid point(s) x {seeds} seed(s) = {points * seeds:.3g} "
            f"rows, over the {MAX_POINTS:.0e} (MAX_POINTS) a sweep may hold; use fewer seeds or "
            "grid values, or split it into several sweeps (they can share a cache)"
        )


def _uniform(value: Any) -> Any:
    """A scalar when every entry is equal, so the field survives a change of ``n`` or ``M``."""
    value = np.asarray(value)
    if value.size == 0:
        return 0
    return value.flat[0].item() if np.all(value == value.flat[0]) else value


def _base_fields(base: MoANetwork | Mapping[str, Any] | None) -> dict[str, Any]:
    if base is None:
        base = paper_network()
    if isinstance(base, Mapping):
        allowed = {f.name for f in fields(MoANetwork)}
        unknown = sorted(map(str, set(base) - allowed))
        if unknown:
            raise ValueError(f"base={unknown}: unknown network field(s); use {sorted(allowed)}")
        return dict(base)
    if not isinstance(base, MoANetwork):
        raise ValueError(f"base={base!r}: not a network; pass a MoANetwork or a dict of its fields")
    service = _uniform(base.service_time)
    if np.ndim(service):
        service = dict(zip(JOB_TYPES, map(_uniform, base.service_time), strict=True))
    return {
        "n": base.n,
        "M": base.M,
        "k": _uniform(base.k),
        "arrival_rate": _uniform(base.arrival_rate),
        "service_time": service,
        "topology": base.topology,
        "selection": base.selection,
    }


def _network(base: Mapping[str, Any], params: Mapping[str, Any]) -> MoANetwork:
    net = MoANetwork(**{**base, **{f: v for f, v in params.items() if f in NETWORK_FIELDS}})
    if "scale" in params:
        number_field("grid['scale']", params["scale"], "list non-negative factors")
        net = net.scaled(params["scale"])
    if "load" in params:
        load = number_field("grid['load']", params["load"], "list positive loads")
        if not load > 0:
            raise ValueError(f"grid['load']={load}: must be > 0; list positive loads")
        net = net.at_load(load)
    return net


def _plain(value: Any, name: str) -> Any:
    """``value`` as JSON types (numpy scalars and arrays, tuples -> lists)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v, f"{name}.{k}") for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return _plain(value.tolist(), name)
    if isinstance(value, (list, tuple)):
        return [_plain(v, name) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    raise ValueError(
        f"{name}={value!r}: not a plain value; pass numbers, strings or "
        "lists of them so the point can be cached and shipped to workers"
    )


def point_key(net: MoANetwork, seed: int, options: Mapping[str, Any], point: PointFunction) -> str:
    """Stable hash of a point: SHA-256 of sorted JSON of the normalised network, the options,
    the seed, the point function's qualified name and the toolkit version."""
    material = {
        "network": net.to_dict(),
        "options": _plain(options, "options"),
        "seed": seed,
        "point": f"{point.__module__}.{point.__qualname__}",
        "version": __version__,
    }
    text = json.dumps(material, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def sweep_points(
    grid: Mapping[str, Any],
    seeds: int | Sequence[int] = 1,
    point: PointFunction = simulate_point,
    base: MoANetwork | Mapping[str, Any] | None = None,
    **options: Any,
) -> list[SweepPoint]:
    """The validated points of a sweep in row order (grid order, seeds innermost)."""
    if not isinstance(grid, Mapping):
        raise ValueError(f"grid={grid!r}: not a mapping; pass a mapping field -> list of values")
    if not callable(point):
        raise ValueError(f"point={point!r}: not callable; pass a function point(net, seed, ...)")
    axes = _check_grid(grid, _option_names(point), options)
    fields = _base_fields(base)
    seed_list = _seed_list(seeds, math.prod(len(axis) for axis in axes.values()))
    points = []
    for values in itertools.product(*axes.values()):
        params = dict(zip(axes, values, strict=True))
        net = _network(fields, params)
        opts = {
            **options,
            **{f: v for f, v in params.items() if f not in NETWORK_FIELDS + RATE_FIELDS},
        }
        for seed in seed_list:
            points.append(SweepPoint(params, seed, net, opts, point_key(net, seed, opts, point)))
    return points


def _check_simulations(todo: Sequence[SweepPoint]) -> None:
    """Every check :func:`simulate` makes, for each grid element left to compute, before the
    first point runs: a bad horizon or method fails at once, not inside a point (once per
    element: the seeds share its network and options, and a seed is checked by the grid)."""
    from ..simulation.simulate import check_arguments

    seen: set[int] = set()
    for p in todo:
        if id(p.network) not in seen:
            seen.add(id(p.network))
            check_arguments(p.network, seed=p.seed, **p.options)


# ---- cache -----------------------------------------------------------------------------------
class CacheWarning(UserWarning):
    """A damaged sweep cache entry, named by path; its point is computed again."""


class ResultCache:
    """One JSON file per finished point, ``<key>.json``, written atomically.

    A reader sees either no file or a complete one: the entry goes to a temporary file in the
    same directory, is flushed to disk, and is renamed over the final name (``os.replace`` is
    atomic on POSIX and Windows). Leftover ``.tmp`` files from a kill are never read. An entry
    damaged some other way (truncated, emptied, edited, from another point) is never trusted:
    it is reported by path in a :class:`CacheWarning` and its point computed again.

    Raises
    ------
    ValueError
        When the directory cannot be created or written, before any point is computed.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        if not isinstance(directory, (str, os.PathLike)) or not str(directory):
            raise ValueError(
                f"cache={directory!r}: not a directory path; pass a str or pathlib.Path "
                "(or None for no cache)"
            )
        self.directory = Path(directory)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            # Probe with a real write: permissions, read-only mounts and full disks only show
            # then, and a sweep must not find out after its first point.
            fd, probe = tempfile.mkstemp(dir=self.directory, prefix=".probe.", suffix=".tmp")
            os.close(fd)
            os.unlink(probe)
        except OSError as err:
            problem = "is a file" if self.directory.is_file() else "cannot be created or written"
            raise ValueError(
                f"cache={self.directory}: {problem} ({err.strerror or err}); pass a writable "
                "directory path"
            ) from err

    def path(self, key: str) -> Path:
        return self.directory / f"{key}.json"

    def load_all(self, points: Sequence[SweepPoint]) -> dict[str, dict[str, Any]]:
        """The stored results of ``points`` whose entries are intact (damaged ones warned
        about and left out, so that they are computed again and overwritten)."""
        found = {}
        for point in {p.key: p for p in points}.values():
            path = self.path(point.key)
            if not path.exists():
                continue
            result, problem = self._read(path, point)
            if problem:
                warnings.warn(
                    f"cache entry {path}: {problem}; computing the point again",
                    CacheWarning,
                    stacklevel=3,
                )
            else:
                found[point.key] = result
        return found

    @staticmethod
    def _read(path: Path, point: SweepPoint) -> tuple[dict[str, Any], str]:
        """The entry's result and ``""``, or ``{}`` and what is wrong with it."""
        try:
            entry = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            return {}, f"unreadable ({err})"
        if not isinstance(entry, dict) or not isinstance(entry.get("result"), dict):
            return {}, "has no result mapping"
        if entry.get("seed") != point.seed or entry.get("network") != point.network.to_dict():
            return {}, "belongs to another point (seed or network differ)"
        return entry["result"], ""

    def store(self, point: SweepPoint, result: Mapping[str, Any]) -> None:
        entry = {
            "params": _plain(point.params, "params"),
            "seed": point.seed,
            "network": point.network.to_dict(),
            "result": result,
        }
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=f".{point.key}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(entry, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path(point.key))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


# ---- execution -------------------------------------------------------------------------------
def _evaluate(
    point: PointFunction, net: MoANetwork, seed: int, options: Mapping[str, Any]
) -> dict[str, Any]:
    """Run one point; the JSON round trip makes fresh and cached results identical."""
    result = point(net, seed, **options)
    if not isinstance(result, Mapping):
        raise ValueError(
            f"point={type(result).__name__} (its result): a point must return a "
            "mapping of summary names to numbers or strings; return a dict"
        )
    return json.loads(json.dumps(_plain(result, "result")))


def _run_serial(
    todo: Sequence[SweepPoint],
    point: PointFunction,
    done: Callable[[SweepPoint, dict[str, Any]], None],
) -> None:
    for p in todo:
        done(p, _evaluate(point, p.network, p.seed, p.options))


def _unguarded_script() -> str | None:
    """The path of the script run as ``__main__`` if it reached this call from module-level
    code outside ``if __name__ == "__main__":``, else ``None``.

    A local cluster's workers are spawned processes, and spawning re-runs the main script: an
    unguarded sweep then starts a cluster inside every worker, which fails in hundreds of lines
    of tracebacks. Read the script's syntax tree once here and say so in one line instead.
    """
    import __main__

    path = getattr(__main__, "__file__", None)
    if path is None or getattr(__main__, "__spec__", None) is not None:
        return None  # an interactive session, a notebook or ``python -m``: nothing re-runs
    frame = inspect.currentframe()
    while frame is not None and not (
        frame.f_globals is vars(__main__) and frame.f_code.co_name == "<module>"
    ):
        frame = frame.f_back
    if frame is None:
        return None
    line = frame.f_lineno
    try:
        tree = ast.parse(Path(path).read_text(), filename=path)
    except (OSError, SyntaxError, ValueError):
        return None
    guarded = any(
        isinstance(node, ast.If)
        and "__name__" in ast.unparse(node.test)
        and node.lineno <= line <= (node.end_lineno or node.lineno)
        for node in tree.body
    )
    return None if guarded else path


@contextmanager
def _dask_client(client: Any, n_workers: int | None, n_tasks: int) -> Iterator[Any]:
    """A ``distributed.Client``: a fresh local cluster (closed afterwards), a connection to a
    scheduler address (closed afterwards), or a caller's client (left open)."""
    from distributed import Client, LocalCluster

    if isinstance(client, Client):
        yield client
    elif client == "local":
        script = _unguarded_script()
        if script is not None:
            # SystemExit prints its message alone: one line, not the workers' tracebacks.
            raise SystemExit(
                f"client='local': {script} calls sweep() outside "
                '`if __name__ == "__main__":`, and the local cluster\'s worker processes '
                "re-run the script; move the call under that guard, or pass client=None"
            )
        workers = n_workers or max(1, min(os.cpu_count() or 1, n_tasks))
        # One single-threaded process per core: points hold the GIL in numba loops, and numba's
        # own thread pool would oversubscribe the cores that the other workers use.
        with (
            LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                env={"NUMBA_NUM_THREADS": "1"},
                dashboard_address="127.0.0.1:0",
                silence_logs=logging.ERROR,
            ) as cluster,
            Client(cluster) as local,
        ):
            yield local
    else:
        try:
            remote = Client(client)
        except (OSError, TimeoutError) as err:
            raise ValueError(
                f"client={client!r}: no Dask scheduler answers there ({err}); "
                "start one with `dask scheduler`, or pass 'local' or None"
            ) from err
        with remote:
            yield remote


def _run_dask(
    todo: Sequence[SweepPoint],
    point: PointFunction,
    client: Any,
    n_workers: int | None,
    done: Callable[[SweepPoint, dict[str, Any]], None],
) -> None:
    from distributed import as_completed

    with _dask_client(client, n_workers, len(todo)) as dask_client:
        # Fresh task keys (pure=False): results a long-lived cluster still holds from an
        # earlier sweep could come from older code under the same point name.
        futures = {
            dask_client.submit(_evaluate, point, p.network, p.seed, p.options, pure=False): p
            for p in todo
        }
        for future in as_completed(futures):
            done(futures[future], future.result())


def _auto_client(client: Any, n_workers: int | None, n_todo: int) -> Any:
    """``client="auto"``: serial for small grids (:data:`SERIAL_POINTS_PER_CORE`), else
    ``"local"``; a worker count asks for the local cluster. Any other client is kept."""
    if client != "auto":
        return client
    if n_workers is not None:
        return "local"
    return None if n_todo <= SERIAL_POINTS_PER_CORE * (os.cpu_count() or 1) else "local"


# Each local worker is a process with its own interpreter (~100 MB): more than this is a typo.
_MAX_LOCAL_WORKERS = 1024


def _check_client(client: Any, n_workers: int | None) -> None:
    if n_workers is not None and (
        client not in ("local", "auto")
        or isinstance(n_workers, bool)
        or not isinstance(n_workers, (int, np.integer))
        or not 1 <= n_workers <= _MAX_LOCAL_WORKERS
    ):
        raise ValueError(
            f"n_workers={n_workers!r}: a worker count >= 1 (at most {_MAX_LOCAL_WORKERS}), used "
            "only with client='local' or 'auto'; size a remote cluster where it is started"
        )
    if client is None or client in ("local", "auto"):
        return
    if isinstance(client, str):
        if ":" not in client:
            raise ValueError(
                f"client={client!r}: not a scheduler address; pass one such as "
                "'tcp://host:8786', or 'auto', 'local' or None"
            )
        return
    from distributed import Client

    if not isinstance(client, Client):
        raise ValueError(
            f"client={client!r}: not a client; pass None (serial), 'local', a scheduler "
            "address such as 'tcp://host:8786', or a distributed.Client"
        )


def _frame(
    points: Sequence[SweepPoint], results: Mapping[str, dict[str, Any]], grid: Mapping[str, Any]
) -> pd.DataFrame:
    rows = []
    for p in points:
        clash = sorted((set(grid) | {"seed"}) & set(results[p.key]))
        if clash:
            raise ValueError(
                f"point={clash} (its result keys): these are grid columns; rename those "
                "summary values"
            )
        rows.append({**p.params, "seed": p.seed, **results[p.key]})
    return pd.DataFrame(rows)


def sweep(
    grid: Mapping[str, Any],
    seeds: int | Sequence[int] = 1,
    point: PointFunction = simulate_point,
    base: MoANetwork | Mapping[str, Any] | None = None,
    cache: str | os.PathLike[str] | None = None,
    client: Any = "auto",
    n_workers: int | None = None,
    progress: bool = True,
    **options: Any,
) -> pd.DataFrame:
    r"""Evaluate ``point`` on every grid element and seed; one row per (element, seed).

    The grid is the cartesian product :math:`V_1 \times \dots \times V_d` of the listed values
    (the first field varies slowest), times the seeds. Each element overrides fields of ``base``
    and builds a :class:`MoANetwork`; rate fields then rescale its arrival rates,
    :math:`\lambda \mapsto s\,\lambda` for ``scale = s`` and
    :math:`\lambda \mapsto \ell\,\lambda / \max_i \rho_i(\lambda)` for ``load = l`` (so the
    busiest device has load :math:`\ell`). The remaining fields are keywords of ``point``.

    Parameters
    ----------
    grid : mapping of str to list
        Field -> values. Network fields :data:`NETWORK_FIELDS` (``arrival_rate`` in prompts/s
        per device, ``service_time`` in s, ``topology`` a name), rate fields
        :data:`RATE_FIELDS`, or keywords of ``point`` (for the default, of
        :func:`moa_stability.simulate`: ``horizon``, ``method``, ...). A single value is
        a one-element axis.
    seeds : int or sequence of int
        A count ``S`` (seeds ``0..S-1``) or the seeds themselves. A seed is passed unchanged to
        every grid element, so elements share random numbers (common random numbers make
        differences between elements less noisy).
    point : callable ``point(network, seed, **options) -> mapping``
        What to compute at each point; must return scalars (or lists) keyed by name and, for
        Dask, be importable or picklable. Default :func:`simulate_point`. Its qualified name is
        part of the cache key: rename a point whose meaning changes.
    base : MoANetwork or mapping, optional
        Values of the fields the grid does not set. Default :func:`paper_network`. Uniform
        per-device values become scalars so that a grid over ``n`` works.
    cache : path, optional
        Directory of finished points (created if missing; checked writable before any point
        runs). Points found there are loaded, not recomputed; a damaged entry is reported in a
        :class:`CacheWarning` and recomputed; each new point is stored as soon as it finishes.
    client : "auto", None, "local", str or distributed.Client
        ``"auto"``: serial when at most :data:`SERIAL_POINTS_PER_CORE` points per core are
        left to compute (or ``"local"`` with ``n_workers``), else ``"local"``.
        ``None``: serial, in this process (debugging, baselines). ``"local"``: a
        ``distributed.LocalCluster`` of ``n_workers`` single-threaded processes (default: one
        per core), closed afterwards. A scheduler address (``"tcp://host:8786"``) or a client:
        an existing cluster, to scale out across machines.
    n_workers : int, optional
        Worker processes of the local cluster (with ``"auto"``: asks for the cluster).
    progress : bool
        Show a tqdm progress bar.
    **options
        Keywords passed to every ``point`` call (e.g. ``horizon=1e4``).

    Returns
    -------
    pandas.DataFrame
        Columns: the grid fields, ``seed``, then the point's summary names (for the default
        point, those listed in :func:`simulate_point`), rows in grid order with seeds
        innermost. ``attrs["options"]`` holds the fixed keywords.

    Notes
    -----
    Local workers are spawned processes, so a script that starts a local cluster (``"local"``,
    or ``"auto"`` on a large grid) needs the
    ``if __name__ == "__main__":`` guard. Workers of a remote cluster need ``moa_stability``
    (and the point's module) installed; results come back to this process, which alone writes
    the cache, so no shared disk is needed. A kill loses at most the points in flight.

    Examples
    --------
    >>> from moa_stability import loads
    >>> from moa_stability.experiments.sweep import sweep
    >>> def busiest(net, seed):
    ...     return {"max_load": float(loads(net).max())}
    >>> sweep({"M": [1, 2], "k": [1]}, point=busiest, client=None, progress=False)
       M  k  seed  max_load
    0  1  1     0      0.75
    1  2  1     0      1.25
    """
    _check_client(client, n_workers)
    if not isinstance(progress, (bool, np.bool_)):
        raise ValueError(f"progress={progress!r}: must be True or False; pass a bool")
    points = sweep_points(grid, seeds, point, base, **options)
    store = ResultCache(cache) if cache is not None else None
    results = {} if store is None else store.load_all(points)
    # Distinct grid elements can build the same network (e.g. via 'scale'): compute it once.
    todo = list({p.key: p for p in points if p.key not in results}.values())
    if point is simulate_point:
        _check_simulations(todo)
    rows_per_key = Counter(p.key for p in points)
    with tqdm(
        total=len(points),
        initial=len(points) - sum(rows_per_key[p.key] for p in todo),
        desc="sweep",
        unit="pt",
        disable=not progress,
    ) as bar:

        def done(p: SweepPoint, result: dict[str, Any]) -> None:
            if store is not None:
                store.store(p, result)
            results[p.key] = result
            bar.update(rows_per_key[p.key])

        client = _auto_client(client, n_workers, len(todo))
        if client is None:
            _run_serial(todo, point, done)
        elif todo:
            _run_dask(todo, point, client, n_workers, done)
    frame = _frame(points, results, grid)
    frame.attrs["options"] = _plain(options, "options")
    return frame
