"""The flags every subcommand shares: a network from flags or a file, and a table writer."""

from __future__ import annotations

import argparse
import json
import math
import os
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..model.network import MoANetwork, network_from_dict, random_regular_graph

SERVICE_TIME_HELP = (
    "mean seconds: '1', per device '1,1,1,4', or per type "
    "'propose=1,refine=2,aggregate=2' (default 1)"
)
TOPOLOGY_HELP = "complete (default), ring, star or random-regular:DEGREE[:SEED]"
LOAD_HELP = (
    "scale the rates so that the busiest device has load RHO (e.g. 0.8 = 80%% of the "
    "maximal stable rate); replaces the size of --rate, keeps its shape"
)
_DEFAULTS: dict[str, Any] = {"n": 4, "M": 2, "k": 2, "arrival_rate": 0.025, "service_time": 1.0}


def _numbers(text: str) -> float | list[float]:
    values = [float(x) for x in text.split(",")]
    return values[0] if len(values) == 1 else values


def _service_time(text: str) -> Any:
    """``1.5``, ``1,1,1,4`` (per device) or ``propose=1,refine=2,aggregate=2`` (per type)."""
    if "=" not in text:
        return _numbers(text)
    table: dict[str, float] = {}
    for part in text.split(","):
        name, _, value = part.partition("=")
        table[name.strip()] = float(value)
    return table


def _topology(text: str, n: int) -> Any:
    if not text.startswith("random-regular"):
        return text
    parts = text.split(":")
    if len(parts) not in (2, 3):
        raise ValueError(
            f"--topology={text}: expected random-regular:DEGREE[:SEED]; "
            "pass e.g. random-regular:3:7"
        )
    try:
        degree, seed = int(parts[1]), int(parts[2]) if len(parts) == 3 else 0
    except ValueError as err:
        raise ValueError(
            f"--topology={text}: DEGREE and SEED must be whole numbers; pass e.g. "
            "random-regular:3:7"
        ) from err
    if degree < 1 or seed < 0:
        raise ValueError(
            f"--topology={text}: needs DEGREE >= 1 and SEED >= 0; pass e.g. random-regular:3:7"
        )
    return random_regular_graph(n, degree, seed=seed)


def add_network_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags that describe a network; :func:`network_from_args` turns them into one."""
    g = parser.add_argument_group("network (flags, or --network FILE)")
    g.add_argument("--network", type=Path, help="TOML or JSON file with MoANetwork fields")
    g.add_argument("--n", type=int, help="number of devices (default 4)")
    g.add_argument("--M", type=int, help="MoA layers (default 2)")
    g.add_argument("--k", type=str, help="extra proposers: one int or one per layer, '2,1'")
    g.add_argument(
        "--rate",
        type=str,
        help="user prompts/s per device: one value or one per device (default 0.025)",
    )
    g.add_argument("--service-time", type=str, help=SERVICE_TIME_HELP)
    g.add_argument("--topology", type=str, help=TOPOLOGY_HELP)
    g.add_argument("--load", type=float, metavar="RHO", help=LOAD_HELP)


def read_network_file(path: Path) -> dict[str, Any]:
    """The fields of a network from a ``.toml`` or ``.json`` file."""
    if not path.is_file():
        raise ValueError(f"--network={path}: no such file; pass the path of a TOML or JSON file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(
            f"--network={path}: not a UTF-8 text file ({err.reason} at byte {err.start}); pass "
            "a TOML or JSON text file"
        ) from err
    except OSError as err:
        raise ValueError(
            f"--network={path}: cannot read it ({err.strerror or err}); make it readable"
        ) from err
    try:
        spec = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"--network={path}: cannot parse it ({err}); fix the file") from err
    spec = spec.get("network", spec) if isinstance(spec, dict) else spec
    if not isinstance(spec, dict):
        raise ValueError(
            f"--network={path}: holds a {type(spec).__name__}, not a table of MoANetwork "
            "fields; write e.g. n = 4, M = 2, k = 2, arrival_rate = 0.05"
        )
    return spec


_FLAG_OF = {"arrival_rate": "--rate", "service_time": "--service-time", "k": "--k"}
_FORM_OF = {
    "arrival_rate": "a number or one per device, e.g. 0.1 or 0.1,0.2",
    "service_time": "e.g. 1, 1,1,1,4 or propose=1,refine=2,aggregate=2",
    "k": "an integer or one per layer, e.g. 2 or 2,1",
}


def network_spec(
    network: Path | None = None,
    n: int | None = None,
    M: int | None = None,
    k: str | None = None,
    rate: str | None = None,
    service_time: str | None = None,
    topology: str | None = None,
) -> dict[str, Any]:
    """The fields of a network from a file (or the defaults ``n=4, M=2, k=2``, 0.025
    prompts/s, 1 s), overridden by the flags that are given (``None``: not given).

    Parameters
    ----------
    network : pathlib.Path, optional
        TOML or JSON file with :class:`~moa_stability.MoANetwork` fields.
    n, M : int, optional
        Devices and MoA layers.
    k, rate, service_time, topology : str, optional
        The flags' text: ``"2"`` or ``"2,1"``; ``"0.1"`` or one per device; ``"1"``, per
        device or ``"propose=1,refine=2,aggregate=2"``; a name or
        ``random-regular:DEGREE[:SEED]``.

    Raises
    ------
    ValueError
        Naming the flag, when its text is not of its form.
    """
    spec = dict(_DEFAULTS) if network is None else read_network_file(network)
    converters: dict[str, Callable[[str], Any]] = {
        "k": lambda s: [int(x) for x in s.split(",")] if "," in s else int(s),
        "arrival_rate": _numbers,
        "service_time": _service_time,
    }
    flags = {"n": n, "M": M, "k": k, "arrival_rate": rate, "service_time": service_time}
    for name, value in flags.items():
        if value is None:
            continue
        try:
            spec[name] = converters[name](value) if name in converters else value
        except ValueError as err:
            raise ValueError(
                f"{_FLAG_OF[name]}={value}: not of the form {_FORM_OF[name]}; fix the value"
            ) from err
    if topology is not None:
        spec["topology"] = _topology(topology, int(spec["n"]))
    return spec


def network_from_flags(load: float | None = None, **flags: Any) -> MoANetwork:
    """The network of :func:`network_spec` (same keyword arguments), scaled so that the
    busiest device has load ``load`` when it is given
    (:meth:`~moa_stability.MoANetwork.at_load`)."""
    if load is not None and not (math.isfinite(load) and load > 0):
        raise ValueError(
            f"--load={load}: must be finite and > 0; pass the busiest device's load, e.g. 0.8"
        )
    spec = network_spec(**flags)
    try:
        net = network_from_dict(spec)
        return net if load is None else net.at_load(load)
    except MemoryError as err:
        # A size the field checks accept can still exceed this machine: say so in one line.
        sizes = ", ".join(f"{f}={spec[f]}" for f in ("n", "M", "k") if f in spec)
        raise ValueError(
            f"network ({sizes}): does not fit in memory ({str(err) or 'MemoryError'}); use fewer "
            "devices n or layers M"
        ) from err


def network_from_args(args: argparse.Namespace) -> MoANetwork:
    """The network named by the flags of :func:`add_network_arguments`."""
    return network_from_flags(
        network=args.network,
        n=args.n,
        M=args.M,
        k=args.k,
        rate=args.rate,
        service_time=args.service_time,
        topology=args.topology,
        load=args.load,
    )


def output_path(path: Path | None, suffixes: tuple[str, ...] = (".csv", ".json")) -> Path | None:
    """``path`` if a file can be written there with one of ``suffixes``, checked before any work.

    A long run that fails only when it writes its result wastes the run, so each subcommand
    calls this first.

    Parameters
    ----------
    path : pathlib.Path, optional
        The ``--out`` value (``None``: not given, returned as is).
    suffixes : tuple of str
        The file types the subcommand writes.

    Raises
    ------
    ValueError
        On another suffix, an existing directory, a missing parent directory, or a place
        where no file can be written (tried: an existing file must be writable, a new one is
        created and removed again).
    """
    if path is None:
        return None
    kinds = " or ".join(suffixes)
    if path.is_dir():
        raise ValueError(f"--out={path}: is a directory; pass a file name ending in {kinds}")
    if path.suffix.lower() not in suffixes:
        raise ValueError(
            f"--out={path}: cannot write {path.suffix or 'a file without suffix'}; "
            f"pass a name ending in {kinds}"
        )
    if not path.parent.is_dir():
        raise ValueError(f"--out={path}: the folder {path.parent} does not exist; create it first")
    try:
        if path.exists():
            if not os.access(path, os.W_OK):
                raise PermissionError(13, "Permission denied")
        else:  # create it for real (permissions, read-only mounts, /proc only show then)
            with open(path, "x"):
                pass
            path.unlink()
    except OSError as err:
        raise ValueError(
            f"--out={path}: cannot write a file there ({err.strerror or err}); pass a path in a "
            "writable folder"
        ) from err
    return path


def write_table(frame: Any, out: Path | None, index: bool = True) -> None:
    """Print a DataFrame, or write it as CSV/JSON by ``out``'s suffix.

    ``index=False`` for a table whose index is a bare row number (the sweep), so the file has
    no nameless first column.
    """
    if out is None:
        print(frame.to_string(index=index))
    elif out.suffix.lower() == ".json":
        out.write_text(frame.to_json(orient="table", indent=2, index=index))
    else:
        frame.to_csv(out, index=index)
