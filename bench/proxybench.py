"""IGMP/MLD proxies side by side: latency, filtering, scale, malformed input and idle cost, per data plane.

For each selected daemon x data plane x family (a column) the harness builds a
fresh namespace topology (``netns_topology``: an upstream router with the
sources and a capture, the proxy, ``--hosts`` host namespaces whose kernels
are the IGMP/MLD hosts; kernel defaults in the proxy namespace), starts the
daemon in it and measures from outside (``latency``, ``load``, ``malformed``):

- host report -> the proxy's report on the upstream link (ms);
- host report -> first data at the host while the source already sends (ms);
- leave -> last data at the host, and -> the proxy's leave upstream (ms);
- source filtering: INCLUDE {S1} and EXCLUDE {S2}, pass/fail;
- 2,000 groups joined by 30 hosts: until all reported upstream, until data at
  every host, until all left upstream; the daemon's CPU seconds and peak RSS;
- malformed input: crafted and random frames; daemon alive, drops counted;
- idle CPU over ``--idle-seconds`` (default 60).

Latencies are medians with min/p95/max over the repetitions. The table puts
the columns side by side (``report``); ``--json FILE`` keeps every sample.

Daemons: ``ours`` (this checkout, ``--data-plane nftables`` and ``mroute``),
``igmpproxy`` (IPv4, multicast routing), ``mcproxy`` (the C++ one, run only
with ``--mcproxy-binary PATH``). A column whose plane the kernel lacks
(multicast routing without ``CONFIG_IP_MROUTE`` / ``CONFIG_IPV6_MROUTE``) is
reported as not run, with the reason.

    sudo .venv/bin/python bench/proxybench.py                       # all, about 100 s per column that runs
    sudo .venv/bin/python bench/proxybench.py --quick               # 10 joins, 500 groups, 10 s idle: ~40 s
    sudo .venv/bin/python bench/proxybench.py --daemons ours --planes nftables --reps 50 --json /tmp/pb.json
    sudo .venv/bin/python bench/proxybench.py --cleanup-stale       # remove pxb-* namespaces of a killed run

Needs root, iproute2, nftables for the nftables plane. Namespaces are named
``pxb-<run>-...``; all of them and every process started are removed at the
end, on failure and on Ctrl-C. A benchmark prints figures; it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

import capture
import daemons
import latency
import load
import malformed
import netns_topology as topo
import report
from harness import Bench, Column
from traffic import TrafficSource

log = logging.getLogger("proxybench")

SCENARIOS = {"latency": latency.join_latency, "leave": latency.leave_latency, "filter": latency.source_filter,
             "scale": load.scale, "malformed": malformed.malformed, "idle": load.idle}
READY_TIMEOUT = 20.0


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--daemons", default="ours,igmpproxy,mcproxy",
                   help="comma list of ours, igmpproxy, mcproxy (mcproxy only with --mcproxy-binary)")
    p.add_argument("--planes", default="nftables,mroute", help="data planes of ours: nftables, mroute")
    p.add_argument("--families", default="4,6")
    p.add_argument("--mcproxy-binary", help="the C++ mcproxy to run beside ours (skipped without it)")
    p.add_argument("--igmpproxy-binary", default="igmpproxy")
    p.add_argument("--scenarios", default=",".join(SCENARIOS), help=f"comma list of {', '.join(SCENARIOS)}")
    p.add_argument("--quick", action="store_true", help="short run: fewer repetitions, 500 groups, 10 s idle")
    p.add_argument("--hosts", type=int, default=30, help="host namespaces (downstream links), 1..30")
    p.add_argument("--reps", type=int, help="join latency repetitions (default 30, --quick 10)")
    p.add_argument("--latency-rate", type=float, default=10000.0, help="data rate while joining (packets/s)")
    p.add_argument("--warm", type=float, default=0.2, help="the source sends this long before a join (s)")
    p.add_argument("--gap", type=float, default=0.1, help="pause between join repetitions (s)")
    p.add_argument("--timeout", type=float, default=2.0, help="wait for report and data of one join (s)")
    p.add_argument("--leave-reps", type=int, help="leave repetitions (default 8, --quick 4)")
    p.add_argument("--leave-rate", type=float, default=1000.0, help="data rate per leaving group (packets/s)")
    p.add_argument("--leave-gap", type=float, default=0.25, help="spacing of the leaves (s)")
    p.add_argument("--leave-quiet", type=float, default=1.0, help="no data for this long: stopped (s)")
    p.add_argument("--leave-tail", type=float, default=8.0, help="wait after the last leave (s)")
    p.add_argument("--filter-rate", type=float, default=500.0, help="rate of each source (packets/s)")
    p.add_argument("--filter-window", type=float, default=1.5, help="how long a filter case listens (s)")
    p.add_argument("--scale-groups", type=int, help="groups joined at once (default 2000, --quick 500)")
    p.add_argument("--scale-hosts", type=int, default=30)
    p.add_argument("--scale-rate", type=float, default=10000.0, help="data rate over all groups (packets/s)")
    p.add_argument("--scale-warm", type=float, default=1.0)
    p.add_argument("--scale-timeout", type=float, default=30.0, help="wait after the joins (s)")
    p.add_argument("--scale-leave-timeout", type=float, default=15.0, help="wait after the leaves (s)")
    p.add_argument("--fuzz", type=int, help="random frames (default 10000, --quick 2000)")
    p.add_argument("--idle-seconds", type=float, help="idle window (default 60, --quick 10)")
    p.add_argument("--settle", type=float, default=1.0, help="wait after the daemon is ready (s)")
    p.add_argument("--daemon-debug", action="store_true", help="run ours with -d (slower; for its time stamps)")
    p.add_argument("--json", type=Path, help="write every result here")
    p.add_argument("--outdir", type=Path, help="daemon configs and logs (default: a new /tmp/pxb-* directory)")
    p.add_argument("--cleanup-stale", action="store_true", help="delete pxb-* namespaces left by a killed run")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    quick = args.quick
    defaults = {"reps": (30, 10), "leave_reps": (8, 4), "scale_groups": (2000, 500), "fuzz": (10000, 2000),
                "idle_seconds": (60.0, 10.0)}
    for name, (full, short) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, short if quick else full)
    args.daemons = [d for d in args.daemons.split(",") if d]
    args.planes = [x for x in args.planes.split(",") if x]
    args.families = [int(f) for f in args.families.split(",") if f]
    args.scenarios = [s for s in args.scenarios.split(",") if s]
    unknown = [s for s in args.scenarios if s not in SCENARIOS]
    if unknown:
        p.error(f"unknown scenario(s) {', '.join(unknown)}")
    if not 1 <= args.hosts <= 30:
        p.error("--hosts must be 1..30 (an MRT table has 32 vifs)")
    args.scale_hosts = min(args.scale_hosts, args.hosts)
    return args


def columns(args: argparse.Namespace, kinds: dict[str, daemons.DaemonKind]) -> list[Column]:
    out = []
    for name in args.daemons:
        kind = kinds[name]
        if name == "mcproxy" and kind.binary is None:
            continue
        for plane in args.planes:
            if plane not in kind.planes:
                continue
            out += [Column(name, plane, family) for family in args.families if family in kind.families]
    return out


def probe_mroute(registry: topo.Registry, run_id: str) -> dict[int, str | None]:
    """Per family: why the kernel cannot route multicast (None: it can), probed in a namespace of its own."""
    (probe,) = registry.add_namespaces([f"{topo.PREFIX}{run_id}-probe"])
    try:
        return {family: topo.mroute_missing(probe, family) for family in (4, 6)}
    finally:
        registry.remove_namespaces([probe])


def run_column(column: Column, kind: daemons.DaemonKind, args: argparse.Namespace, registry: topo.Registry,
               mroute: dict[int, str | None], outdir: Path) -> dict:
    result: dict = {"column": column.label, "daemon": column.daemon, "plane": column.plane,
                    "family": column.family}
    missing = kind.missing() or (mroute[column.family] if column.plane == "mroute" else None)
    if missing:
        result["not_run"] = missing
        return result
    started = time.monotonic()
    topology = topo.ProxyTopology(registry, topo.new_run_id(), args.hosts)
    recorder, source, daemon = capture.Recorder(), None, None
    try:
        topology.build()
        recorder.add(capture.open_capture(topology.up, "e0", capture.UPSTREAM_FILTER), None)
        for i, ns in enumerate(topology.host_ns):
            recorder.add(capture.open_capture(ns, "e0", capture.HOST_FILTER), i)
        recorder.start()
        source = TrafficSource(registry, topology.up, column.family)
        tag = column.label.replace("/", "-")
        daemon = daemons.RunningDaemon(kind, registry, topology, column.family, column.plane, outdir, tag,
                                       args.daemon_debug)
        result["command"] = " ".join(daemon.argv)
        result["log"] = str(daemon.log_path)
        problem = daemon.wait_ready(READY_TIMEOUT)
        if problem:
            result["error"] = f"daemon {problem}"
            return result
        time.sleep(args.settle)
        bench = Bench(column, args, topology, recorder, source, daemon)
        for name in args.scenarios:
            print(f"  {column.label}: {name}", flush=True)
            t = time.monotonic()
            try:
                result[name] = SCENARIOS[name](bench)
            except (OSError, RuntimeError, KeyError, ValueError) as exc:
                log.error("scenario_failed column=%s scenario=%s\n%s", column.label, name, traceback.format_exc())
                result[name] = {"error": f"{type(exc).__name__}: {exc}"}
            result[name]["wall_s"] = round(time.monotonic() - t, 1)
            result[name]["daemon_alive"] = daemon.alive()
    finally:
        if source is not None:
            source.close()
        recorder.stop()
        if daemon is not None:
            result["alive_at_end"] = daemon.alive()
            result["counters_at_end"] = daemon.counters()
            result["exit_status"] = daemon.stop()
        result["kernel_timestamps_missing"] = recorder.timestamps_missing
        topology.remove()
        result["wall_s"] = round(time.monotonic() - started, 1)
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(name)s: %(message)s")
    if os.geteuid() != 0:
        raise SystemExit("proxybench needs root (network namespaces, packet sockets)")
    if args.cleanup_stale:
        names = topo.stale_namespaces()
        topo.Registry().remove_namespaces([topo.Namespace(n) for n in names])
        print(f"removed {len(names)} namespaces: {' '.join(names)}")
        return 0
    sys.setswitchinterval(0.0005)     # the recorder thread reads promptly while the main thread waits
    registry = topo.Registry()
    topo.install_cleanup(registry)
    outdir = args.outdir or Path(tempfile.mkdtemp(prefix="pxb-"))
    outdir.mkdir(parents=True, exist_ok=True)
    kinds = daemons.daemon_kinds(args.igmpproxy_binary, args.mcproxy_binary)
    selected = columns(args, kinds)
    meta = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "kernel": os.uname().release,
            "cpus": os.cpu_count(), "argv": sys.argv, "outdir": str(outdir),
            "options": {k: v for k, v in vars(args).items() if not isinstance(v, Path)}}
    results: list[dict] = []
    t0 = time.monotonic()
    try:
        mroute = probe_mroute(registry, topo.new_run_id())
        meta["mroute"] = {str(f): reason or "available" for f, reason in mroute.items()}
        for column in selected:
            print(f"== {column.label}", flush=True)
            results.append(run_column(column, kinds[column.daemon], args, registry, mroute, outdir))
            if args.json:
                args.json.write_text(json.dumps({"meta": meta, "columns": results}, indent=1, default=str))
    except KeyboardInterrupt:
        print("interrupted: cleaning up", file=sys.stderr)
        registry.cleanup()
        return 130
    finally:
        registry.cleanup()
    print()
    print(report.table(results, args))
    checked = report.targets(results)
    if checked:
        print("\n" + "\n".join(checked))
    print(f"\nlogs: {outdir}" + (f"   JSON: {args.json}" if args.json else "") +
          f"   total {time.monotonic() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
