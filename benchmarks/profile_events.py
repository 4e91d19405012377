"""Where the event loop's time goes: sampled instruction addresses on its machine code.

This machine exposes no hardware counters to ``perf``, but ``perf record -e cpu-clock``
samples the instruction pointer, and a sample lands on (or just after) the instruction the
core is waiting for: at large ``n``, a load that missed the caches. Numba's compiled code has
no symbols for ``perf``, so ``run`` dumps the machine code of the event loop's entry point
(the copy ``simulate`` picks, :func:`moa_stability.simulation.kernels.replication_runner`)
with its address, and ``report`` disassembles it (``objdump``) and lists the addresses with
the most samples, as a share of the samples in the dump, each with the instructions before
it. Reading which array each hot load reads stays a person's job (docs/simulator.md, "What
is left at 10^5 devices", gives one reading).

Run, from the repository root, on a quiet machine (the workload is bench_scale.py's)::

    perf record -e cpu-clock -F 4000 -o /tmp/prof/perf.data -- \\
        .venv/bin/python benchmarks/profile_events.py run --n 100000 --out /tmp/prof
    .venv/bin/python benchmarks/profile_events.py report --out /tmp/prof
"""

from __future__ import annotations

import argparse
import ctypes
import re
import subprocess
from collections import Counter
from pathlib import Path

DUMP_BYTES = 1 << 18  # the loop and its parallel wrapper sit within this of the entry point


def run(n: int, inferences: float, out: Path) -> None:
    """Simulate bench_scale.py's network (8-regular, M = 2, k = 2, load 0.9) for about
    ``inferences`` inferences after a warm-up, then dump the loop's code into ``out``."""
    from moa_stability import MoANetwork, random_regular_graph, simulate
    from moa_stability.simulation import kernels

    topo = random_regular_graph(n, 8, seed=1)
    net = MoANetwork(n=n, M=2, k=2, arrival_rate=1.0, service_time=1.0, topology=topo)
    net = net.at_load(0.9)
    per_s = float(net.arrival_rate.sum() * net.inferences_per_prompt)
    simulate(net, method="events", horizon=min(1e3, 2e4 / per_s), seed=1, progress=False)
    res = simulate(net, method="events", horizon=inferences / per_s, seed=2, progress=False)
    print(f"{res.inferences} inferences simulated")
    runner = kernels.replication_runner(1, res.queue_distribution.size)
    (cres,) = runner.overloads.values()
    address = cres.library.get_pointer_to_function(cres.fndesc.llvm_func_name)
    size = min(DUMP_BYTES, _mapped_after(address))
    out.mkdir(parents=True, exist_ok=True)
    (out / "loop.bin").write_bytes(ctypes.string_at(address, size))
    (out / "loop.addr").write_text(hex(address))
    print(f"{runner.__name__} at {hex(address)}: {size} bytes in {out / 'loop.bin'}")


def _mapped_after(address: int) -> int:
    """Bytes from ``address`` to the end of its run of contiguous mappings of this process
    (reading past it would fault)."""
    end = address
    for line in Path("/proc/self/maps").read_text().splitlines():
        lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
        if lo <= end < hi:
            end = hi
    return end - address


def report(out: Path, top: int, context: int) -> None:
    """The ``top`` addresses of the dump with the most samples, with ``context`` lines."""
    base = int((out / "loop.addr").read_text(), 16)
    script = subprocess.run(
        ["perf", "script", "-i", str(out / "perf.data"), "-F", "ip"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    samples = Counter(int(ip, 16) for ip in script)
    inside = {ip: c for ip, c in samples.items() if base <= ip < base + DUMP_BYTES}
    disassembly = subprocess.run(
        ["objdump", "-D", "-b", "binary", "-m", "i386:x86-64", f"--adjust-vma={hex(base)}"]
        + [str(out / "loop.bin")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    line_of = {}
    for k, text in enumerate(disassembly):
        match = re.match(r"\s*([0-9a-f]+):", text)
        if match:
            line_of[int(match.group(1), 16)] = k
    total = sum(inside.values())
    print(f"{total} of {sum(samples.values())} samples in the loop's code")
    for ip, count in sorted(inside.items(), key=lambda item: -item[1])[:top]:
        k = line_of.get(ip)
        print(f"\n{count:6d} {100 * count / total:5.1f}%  {hex(ip)}")
        if k is not None:
            print("\n".join(disassembly[max(0, k - context) : k + 1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=("run", "report"))
    parser.add_argument("--n", type=int, default=100_000, help="devices (run)")
    parser.add_argument("--inferences", type=float, default=8e6, help="to simulate (run)")
    parser.add_argument("--out", type=Path, required=True, help="folder of dump and perf.data")
    parser.add_argument("--top", type=int, default=25, help="addresses listed (report)")
    parser.add_argument("--context", type=int, default=6, help="instructions before each")
    args = parser.parse_args()
    if args.n < 4 or args.inferences <= 0:
        parser.error(f"--n must be >= 4 and --inferences > 0, got {args.n} and {args.inferences}")
    if args.mode == "run":
        run(args.n, args.inferences, args.out)
    else:
        report(args.out, args.top, args.context)


if __name__ == "__main__":
    main()
