"""Kernel forwarding cost of a data plane per packet, with 1, 10 and 100 outputs.

Topology (``netns_topology.FanoutTopology``): a source namespace, the router
namespace running mcproxy-pmip with ``--data-plane PLANE`` and N downstream
veths, and one sink namespace holding the far ends; the sink's kernel joins
group G_k on k of its interfaces (k = 1, 10, 100), so the daemon forwards
G_k to k outputs. Nobody joins G_0: its packets cross the prerouting hook and
are dropped (the baseline). The sink drops the copies at its ingress hook
(nftables netdev) and counts them, so the figure is the router's work plus
the copies' transmission into the veth peers, not a socket delivery, and
``delivered`` checks that every output got every packet.

For each output count, in interleaved repetitions, the traffic source floods
G_k at a fixed rate for a fixed time. The kernel forwards a packet in the
softirq that the sending system call runs (veth delivers into the peer's
backlog on the same CPU), or in ksoftirqd when the budget runs out; so the
CPU time per packet is the sender's run time plus the ksoftirqd threads' run
time (``schedstat``, ns), divided by the packets sent. Forwarding cost = that
minus the baseline's; per output = divided by k. ``/proc/stat``'s softirq
ticks per packet are printed beside it (system-wide, 4 ms ticks: noisy on a
shared machine). Hardware counters (``perf stat -e instructions``) are used
by nothing here: the script only reports whether this machine has them.

MRT runs where the kernel has multicast routing (``--planes mroute``; at most
31 downstreams, so 1 and 10 outputs), for the nftables / MRT ratio.

    sudo .venv/bin/python bench/forwarding_cost.py                     # nftables, IPv4 and IPv6
    sudo .venv/bin/python bench/forwarding_cost.py --reps 3 --seconds 2 --families 4
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import daemons
import netns_topology as topo
from harness import HostMember, stats, wait_for
from mcproxy_pmip.control.client import ControlClient, ControlError
from traffic import PORT, TrafficSource

OUTPUTS = (0, 1, 10, 100)
MRT_MAX_DOWNSTREAMS = 31
ROUTES_TIMEOUT = 30.0
BURST_INTERVAL = 0.01       # the flood sends a burst every 10 ms


def group(family: int, outputs: int) -> str:
    return f"239.7.0.{outputs + 1}" if family == 4 else f"ff15::7:{outputs + 1:x}"


def perf_instructions() -> str:
    """Whether ``perf stat -e instructions`` counts on this machine, in words."""
    try:
        done = subprocess.run(["perf", "stat", "-x", ",", "-e", "instructions", "true"], capture_output=True,
                              text=True, timeout=30)
    except FileNotFoundError:
        return "perf not installed"
    if "<not supported>" in done.stderr or done.returncode != 0:
        return "perf: instructions <not supported> (no hardware counters): CPU time is measured instead"
    return "perf counts instructions (not used: CPU time is measured)"


def ksoftirqd_pids() -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm") as handle:
                    if handle.read().startswith("ksoftirqd/"):
                        pids.append(int(entry))
            except FileNotFoundError:
                continue
    return pids


def runtime_ns(pid: int) -> int:
    with open(f"/proc/{pid}/schedstat") as handle:
        return int(handle.read().split()[0])


def softirq_ticks() -> int:
    with open("/proc/stat") as handle:
        return int(handle.readline().split()[7])


def sink_dropped(sink: topo.Namespace) -> int:
    """Packets the sink's ingress rule dropped so far."""
    text = topo.run(["ip", "netns", "exec", sink.name, "nft", "list", "chain", "netdev", "pxb_sink", "ingress"]).stdout
    for line in text.splitlines():
        if "counter packets" in line:
            return int(line.split("counter packets")[1].split()[0])
    raise RuntimeError("sink counter not found")


def sink_drop_all(sink: topo.Namespace, links: int) -> None:
    devices = ", ".join(f'"e{i}"' for i in range(links))
    topo.run(["ip", "netns", "exec", sink.name, "nft", "-f", "-"],
             f"table netdev pxb_sink {{\n chain ingress {{\n type filter hook ingress devices = {{ {devices} }} "
             f"priority 0;\n udp dport {PORT} counter drop\n }}\n}}\n")


def wait_outputs(daemon: daemons.RunningDaemon, wanted: dict[str, int]) -> bool:
    """Until the daemon's routes give each group its number of outputs."""
    def ready() -> bool:
        try:
            with ControlClient(str(daemon.control), timeout=5) as client:
                rows = client.request("routes")
        except (ControlError, OSError):
            return False
        found = {}
        for row in rows:
            if row.get("source") in (None, "", "*") and row.get("group") in wanted:
                found[row["group"]] = len(row.get("oifs") or ())
        return all(found.get(g, 0) >= n for g, n in wanted.items() if n)
    return bool(wait_for(ready, ROUTES_TIMEOUT, 0.2))


def measure(source: TrafficSource, sink: topo.Namespace, address: str, grp: str, args) -> dict:
    softirqd = ksoftirqd_pids()
    sender0, soft0 = runtime_ns(source.pid), sum(runtime_ns(p) for p in softirqd)
    ticks0, dropped0 = softirq_ticks(), sink_dropped(sink)
    flow = source.start(address, [grp], args.rate, burst=max(1, int(args.rate * BURST_INTERVAL)))
    time.sleep(args.seconds)
    sent = source.stop(flow)["sent"]
    time.sleep(0.1)
    sender1, soft1 = runtime_ns(source.pid), sum(runtime_ns(p) for p in softirqd)
    ticks1, dropped1 = softirq_ticks(), sink_dropped(sink)
    return {"sent": sent, "sender_us": (sender1 - sender0) / 1e3 / sent, "ksoftirqd_us": (soft1 - soft0) / 1e3 / sent,
            "cpu_us": (sender1 - sender0 + soft1 - soft0) / 1e3 / sent,
            "softirq_ticks_us": (ticks1 - ticks0) * 1e6 / os.sysconf("SC_CLK_TCK") / sent,
            "copies": dropped1 - dropped0}


def run_plane(plane: str, family: int, args, registry: topo.Registry, outdir: Path) -> dict:
    links = args.links if plane == "nftables" else min(args.links, MRT_MAX_DOWNSTREAMS)
    counts = [k for k in OUTPUTS if k <= links]
    topology = topo.FanoutTopology(registry, topo.new_run_id(), links)
    source = daemon = None
    members: list[HostMember] = []
    try:
        topology.build()
        if plane == "mroute":
            missing = topo.mroute_missing(topology.px, family)
            if missing:
                return {"plane": plane, "family": family, "not_run": missing}
        sink_drop_all(topology.sink, links)
        kind = daemons.daemon_kinds("igmpproxy", None)["ours"]
        daemon = daemons.RunningDaemon(kind, registry, topology, family, plane, outdir, f"fc-{plane}-v{family}", False)
        problem = daemon.wait_ready(20.0)
        if problem:
            return {"plane": plane, "family": family, "error": f"daemon {problem}"}
        members = [HostMember(topology.sink, family, f"e{i}") for i in range(links)]
        for k in counts:
            for i in range(k):
                members[i].join(group(family, k))
        if not wait_outputs(daemon, {group(family, k): k for k in counts}):
            return {"plane": plane, "family": family, "error": "outputs not installed in time"}
        source = TrafficSource(registry, topology.up, family)
        address = topo.UP_SOURCES[family][0]
        samples: dict[int, list[dict]] = {k: [] for k in counts}
        for rep in range(args.reps):
            for k in counts:
                samples[k].append(measure(source, topology.sink, address, group(family, k), args))
            print(f"  {plane}/v{family}: repetition {rep + 1}/{args.reps}", flush=True)
        return summarise(plane, family, samples)
    finally:
        if source is not None:
            source.close()
        for member in members:
            member.close()
        if daemon is not None:
            daemon.stop()
        topology.remove()


def summarise(plane: str, family: int, samples: dict[int, list[dict]]) -> dict:
    base = stats([s["cpu_us"] for s in samples[0]])["med"]
    rows = []
    for k, runs in samples.items():
        cpu = stats([s["cpu_us"] for s in runs])
        forwarding = None if k == 0 else cpu["med"] - base
        delivered = sum(s["copies"] for s in runs) / max(1, k * sum(s["sent"] for s in runs)) if k else None
        rows.append({"outputs": k, "cpu_us": cpu, "forwarding_us": forwarding,
                     "per_output_us": None if forwarding is None else forwarding / k,
                     "ksoftirqd_share": stats([s["ksoftirqd_us"] / s["cpu_us"] for s in runs if s["cpu_us"]])["med"],
                     "softirq_ticks_us": stats([s["softirq_ticks_us"] for s in runs])["med"],
                     "delivered": delivered, "samples": runs})
    return {"plane": plane, "family": family, "rows": rows}


def table(results: list[dict]) -> str:
    head = (f"{'plane/family':16} {'outputs':>7}  {'CPU us/pkt med [min-max]':>26}  {'fwd us/pkt':>10}  "
            f"{'us/output':>9}  {'in ksoftirqd':>12}  {'softirq us/pkt':>14}  {'delivered':>9}")
    lines = [head, "-" * len(head)]
    for result in results:
        label = f"{result['plane']}/v{result['family']}"
        if "rows" not in result:
            lines.append(f"{label:16} not run: {result.get('not_run') or result.get('error')}")
            continue
        for row in result["rows"]:
            cpu = row["cpu_us"]
            spread = f"{cpu['med']:.2f} [{cpu['min']:.2f}-{cpu['max']:.2f}]"
            fwd = "baseline" if row["outputs"] == 0 else f"{row['forwarding_us']:.2f}"
            per = "-" if row["per_output_us"] is None else f"{row['per_output_us']:.3f}"
            share = f"{100 * row['ksoftirqd_share']:.0f}%" if row["ksoftirqd_share"] is not None else "-"
            delivered = "-" if row["delivered"] is None else f"{100 * row['delivered']:.1f}%"
            lines.append(f"{label:16} {row['outputs']:>7}  {spread:>26}  {fwd:>10}  {per:>9}  {share:>12}  "
                         f"{row['softirq_ticks_us']:>14.2f}  {delivered:>9}")
    lines += ratios(results)
    return "\n".join(lines)


def ratios(results: list[dict]) -> list[str]:
    """nftables / MRT forwarding cost per output count and family, where both ran."""
    out = []
    by_key = {(r["plane"], r["family"]): r for r in results if "rows" in r}
    for family in (4, 6):
        nft, mrt = by_key.get(("nftables", family)), by_key.get(("mroute", family))
        if nft is None or mrt is None:
            continue
        mrt_rows = {row["outputs"]: row for row in mrt["rows"]}
        for row in nft["rows"]:
            other = mrt_rows.get(row["outputs"])
            if row["outputs"] and other and other["forwarding_us"]:
                out.append(f"v{family} {row['outputs']} outputs: nftables / MRT = "
                           f"{row['forwarding_us'] / other['forwarding_us']:.2f}")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--planes", default="nftables,mroute")
    p.add_argument("--families", default="4,6")
    p.add_argument("--links", type=int, default=100, help="downstream links of the router (nftables)")
    p.add_argument("--rate", type=float, default=3000.0, help="flood rate (packets/s)")
    p.add_argument("--seconds", type=float, default=3.0, help="flood length per measurement")
    p.add_argument("--reps", type=int, default=5, help="repetitions (the median is printed)")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    if os.geteuid() != 0:
        raise SystemExit("forwarding_cost needs root (network namespaces)")
    registry = topo.Registry()
    topo.install_cleanup(registry)
    outdir = Path(tempfile.mkdtemp(prefix="pxb-fc-"))
    print(perf_instructions(), flush=True)
    results = []
    try:
        for plane in [x for x in args.planes.split(",") if x]:
            for family in [int(f) for f in args.families.split(",") if f]:
                print(f"== {plane}/v{family}", flush=True)
                results.append(run_plane(plane, family, args, registry, outdir))
    except KeyboardInterrupt:
        print("interrupted: cleaning up", file=sys.stderr)
        return 130
    finally:
        registry.cleanup()
    print()
    print(f"flood {args.rate:.0f} packets/s for {args.seconds:.0f} s, {args.reps} repetitions; logs in {outdir}")
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
