"""Data-driven (S,G) state: the cost of ageing sweeps, and the daemon's memory under a flood of sources.

Two measurements, each repeated ``--rounds`` times, printed as median with
min and max:

``sweep`` (no root): a ``MemoryPlane`` instance holding N (S,G) entries is
swept by ``proxy.ageing.SourceAgeing`` in steps of ``AGEING_BATCH`` entries
(driven by a ``task.Clock``; on the reactor each step is a turn of its own).
Printed per N: the whole sweep (the sum of its steps), the longest single
step (the longest the sweep holds the reactor at once), and the Python memory
the entries take (tracemalloc, bytes per entry). The memory plane's counter
read is a dict lookup; on MRT each read is one ioctl more.

``--netns`` (root): the daemon runs on the nftables plane in namespaces
``hE-rs-<run>-{up,px,h0}``; the upstream namespace sends UDP from N distinct
sources (AF_PACKET) to one group for ``--seconds``, with ``max_routes`` N.
Printed: the daemon's RSS before the flood and its peak (VmHWM) after,
``status`` latency during the flood (median, p99, max), and the (S,G)
entries in the kernel's counter set. Namespaces and processes are removed
at the end, on errors and on Ctrl-C.

    .venv/bin/python bench/route_state.py                   # sweeps of 10,000 and 50,000 entries
    sudo .venv/bin/python bench/route_state.py --netns      # plus the daemon under a 50,000-source flood
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from ipaddress import IPv4Address
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mcproxy_pmip.addresses import Family  # noqa: E402
from mcproxy_pmip.dataplane.memory import MemoryPlane  # noqa: E402
from mcproxy_pmip.dataplane.port import Role  # noqa: E402
from mcproxy_pmip.proxy.ageing import AGEING_BATCH, SourceAgeing  # noqa: E402
from tests.forwarding_views import FixedOutputs  # noqa: E402

GROUP = IPv4Address("239.7.7.7")


def spread(values: list[float], unit: str, scale: float = 1.0) -> str:
    v = sorted(x * scale for x in values)
    return f"median {statistics.median(v):.3f} {unit} (min {v[0]:.3f}, max {v[-1]:.3f}, n={len(v)})"


def filled_plane(count: int):
    plane = MemoryPlane()
    plane.routes.configure_instance("bench", count, count)
    instance = plane.open_instance("bench", frozenset({Family.IPV4}), None, FixedOutputs())
    instance.add_interface("up", 1, Role.UPSTREAM)
    base = int(IPv4Address("10.100.0.1"))
    for n in range(count):
        instance.data(Family.IPV4, IPv4Address(base + n), GROUP, "up", 0.0)
    return instance


def one_sweep(count: int) -> tuple[float, float, int]:
    """(whole sweep seconds, longest step seconds, steps)."""
    from twisted.internet import task

    instance = filled_plane(count)
    steps: list[float] = []
    real_step = instance.age_step

    def timed_step(budget: int) -> bool:
        start = time.perf_counter()
        done = real_step(budget)
        steps.append(time.perf_counter() - start)
        return done

    instance.age_step = timed_step
    clock = task.Clock()
    ageing = SourceAgeing(clock, lambda: instance, interval=1.0)
    ageing.start()
    clock.advance(1.0)
    ageing.stop()
    assert ageing.sweeps == 1, "the sweep did not finish"
    return sum(steps), max(steps), len(steps)


def entry_bytes(count: int) -> float:
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    instance = filled_plane(count)
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert len(instance.sg) == count
    return (after - before) / count


def bench_sweeps(sizes: list[int], rounds: int) -> None:
    print(f"sweep of the memory plane's (S,G) entries, {AGEING_BATCH} entries per step")
    for count in sizes:
        results = [one_sweep(count) for _ in range(rounds)]
        print(f"  N={count:>6}: whole sweep {spread([r[0] for r in results], 'ms', 1e3)}; "
              f"longest step {spread([r[1] for r in results], 'ms', 1e3)}; steps {results[0][2]}")
        print(f"            memory {entry_bytes(count):.0f} bytes per entry (tracemalloc)")


# -- the daemon under a flood, in namespaces ------------------------------------------------------

def sh(*argv: str, check: bool = True) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip()}")
    return done.stdout


def proc_status(pid: int) -> dict[str, int]:
    with open(f"/proc/{pid}/status", encoding="ascii") as handle:
        return {k: int(v.split()[0]) for k, v in (line.split(":", 1) for line in handle) if k in ("VmRSS", "VmHWM")}


def flood_round(up: str, control: str, pid: int, sources: int, seconds: float) -> dict[str, float]:
    from mcproxy_pmip.control.client import ControlClient
    from tests.netns.sg_flood import flood_code

    rss_before = proc_status(pid)["VmRSS"]
    flood = subprocess.Popen(["ip", "netns", "exec", up, sys.executable, "-c",
                              flood_code("u0", str(GROUP), sources, seconds)], stdout=subprocess.PIPE, text=True)
    latencies = []
    try:
        while flood.poll() is None:
            start = time.perf_counter()
            ControlClient(control, timeout=5).request("status")
            latencies.append(time.perf_counter() - start)
            time.sleep(0.02)
    finally:
        if flood.poll() is None:
            flood.kill()
        out, _ = flood.communicate(timeout=10)
    sent = int(out.split()[0]) if out.strip() else 0
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return {"rss_before": rss_before / 1024, "rss_peak": proc_status(pid)["VmHWM"] / 1024, "sent": sent,
            "status_median": statistics.median(latencies) * 1e3, "status_p99": p99 * 1e3,
            "status_max": latencies[-1] * 1e3}


def set_elements(px: str) -> int:
    code = ("from mcproxy_pmip.kernel.nft import NftContext\n"
            "with NftContext() as n: print(n.run('list set ip mcproxy_pmip src_i1'))")
    text = sh("ip", "netns", "exec", px, sys.executable, "-c", code)
    return len(re.findall(r"\bcounter packets \d+", text))


def bench_netns(sources: int, seconds: float, rounds: int) -> None:
    run = secrets.token_hex(3)
    up, px, host = f"hE-rs-{run}-up", f"hE-rs-{run}-px", f"hE-rs-{run}-h0"
    made: list[str] = []
    daemon = None
    workdir = tempfile.mkdtemp(prefix="hE-rs-")

    def cleanup(*_args) -> None:
        if daemon is not None and daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                daemon.wait(timeout=10)
            if daemon.poll() is None:
                daemon.kill()
        for ns in reversed(made):
            sh("ip", "netns", "delete", ns, check=False)
        made.clear()

    previous = signal.signal(signal.SIGINT, lambda *a: (cleanup(), sys.exit(130)))
    try:
        for ns in (up, px, host):
            sh("ip", "netns", "add", ns)
            made.append(ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "link", "add", "hErsu", "netns", up, "type", "veth", "peer", "name", "hErsp", "netns", px)
        sh("ip", "-n", up, "link", "set", "hErsu", "name", "u0")
        sh("ip", "-n", px, "link", "set", "hErsp", "name", "up0")
        sh("ip", "link", "add", "hErsd", "netns", px, "type", "veth", "peer", "name", "hErsh", "netns", host)
        sh("ip", "-n", px, "link", "set", "hErsd", "name", "d0")
        sh("ip", "-n", host, "link", "set", "hErsh", "name", "e0")
        for ns, link, cidr in ((up, "u0", "10.1.0.1/24"), (px, "up0", "10.1.0.2/24"), (px, "d0", "10.2.0.1/24"),
                               (host, "e0", "10.2.0.2/24")):
            sh("ip", "-n", ns, "addr", "add", cidr, "dev", link)
            sh("ip", "-n", ns, "link", "set", link, "up")
        conf = Path(workdir, "px.yaml")
        conf.write_text("protocols: [IGMPv3]\ndata_plane: nftables\nlimits: {max_total_routes: %d}\n"
                        "instances:\n  - {name: p, upstreams: [up0], downstreams: [d0], limits: {max_routes: %d}}\n"
                        % (sources, sources))
        control = str(Path(workdir, "px.sock"))
        log = open(Path(workdir, "px.log"), "w", encoding="utf-8")
        daemon = subprocess.Popen(["ip", "netns", "exec", px, sys.executable, "-m", "mcproxy_pmip", "-f", str(conf),
                                   "--control", control], stdout=log, stderr=subprocess.STDOUT,
                                  env=dict(os.environ, PYTHONPATH=str(ROOT)))
        log.close()
        from mcproxy_pmip.control.client import ControlClient, ControlError
        deadline = time.monotonic() + 15
        while True:
            with contextlib.suppress(OSError, ControlError):
                ControlClient(control, timeout=2).request("status")
                break
            if time.monotonic() > deadline or daemon.poll() is not None:
                raise RuntimeError(f"daemon did not start; log in {workdir}/px.log")
            time.sleep(0.05)
        # The daemon is `ip netns exec`'s child: find its own pid.
        pid = int(sh("ip", "netns", "pids", px).split()[0])
        results = [flood_round(up, control, pid, sources, seconds) for _ in range(rounds)]
        elements = set_elements(px)
        print(f"daemon on nftables, {sources} distinct sources for {seconds:.0f} s per round, max_routes {sources}")
        for key, unit in (("rss_before", "MiB"), ("rss_peak", "MiB"), ("status_median", "ms"),
                          ("status_p99", "ms"), ("status_max", "ms")):
            print(f"  {key:<14} {spread([r[key] for r in results], unit)}")
        print(f"  frames sent per round: {spread([r['sent'] for r in results], 'frames')}")
        print(f"  (S,G) entries in the kernel's counter set after the last round: {elements}")
    finally:
        cleanup()
        signal.signal(signal.SIGINT, previous)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 50_000])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--netns", action="store_true", help="also run the daemon under a flood (root)")
    parser.add_argument("--sources", type=int, default=50_000)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    bench_sweeps(args.sizes, args.rounds)
    if args.netns:
        bench_netns(args.sources, args.seconds, max(1, args.rounds // 2 + 1))


if __name__ == "__main__":
    main()
