"""A hostile host on one link against everybody else: the daemon's figures with the attack off and on.

Builds its own namespaces (``hHb-<run>-up``, ``-px``, ``-h0``, ``-h1``; the
``netns_topology`` proxy topology with two hosts) and runs mcproxy-pmip from
this checkout in ``px`` with IGMPv3 and MLDv2, upstream ``u0``, downstreams
``d0`` (the attacker ``h0``) and ``d1`` (the member ``h1``). Then, for each
repetition, three phases of ``--duration`` seconds with the same
measurements (``hostile_measure``): no attack, the report flood, the report
flood with the data spray:

- the member's kernel joins a new group per family every second: its report
  → the proxy's report on the upstream link (p50/p99, misses);
- a source upstream sends ``--data-rate`` packets/s per family to a group the
  member is in: the largest gap between packets at the member;
- ``status`` on the control socket ``--status-rate`` times a second: p50/p99;
- the daemon's RSS, sampled, and its peak.

The attack (``hostile_traffic``, from ``h0``): IGMPv3 and MLDv2 reports at
``--rate`` packets/s per family, first IS_IN with ``--sources`` sources for
one group, then 1,500-octet packets full of ALLOW({}) records for it; in the
third phase also UDP data from spoofed sources to ``--spray`` distinct (S,G)
at ``--spray-rate`` frames/s (``--spray 0``: no third phase). After the last
attack the daemon gets ``--settle`` seconds, then its RSS is compared with
the baseline taken before the first phase. The table (``hostile_report``)
puts the phases side by side with the targets.

    sudo .venv/bin/python bench/hostile_bench.py                      # about 2 minutes
    sudo .venv/bin/python bench/hostile_bench.py --duration 20 --repeat 3 --json /tmp/hostile.json
    sudo .venv/bin/python bench/hostile_bench.py --cleanup-stale      # hHb-* namespaces of a killed run

Needs root, iproute2 and nftables (``--plane mroute`` needs a kernel with
multicast routing). Everything created is removed at the end, on failure and
on Ctrl-C. It prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import capture
import daemons
import hostile_report
import netns_topology as topo
from harness import HostMember, wait_for
from hostile_measure import GapRecorder, Phase, PhaseResult
from traffic import TrafficSource

log = logging.getLogger("hostile_bench")

PREFIX = "hHb-"
ATTACKER, MEMBER = 0, 1
DATA_GROUP = {4: "239.77.0.1", 6: "ff15::77:1"}
ATTACK_GROUP = {4: "239.79.0.1", 6: "ff15::79:1"}
TRAFFIC = Path(__file__).resolve().parent / "hostile_traffic.py"
READY_TIMEOUT = 20.0
PAUSE = 3.0         # seconds between phases (the settle time comes after the last one)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=30.0, help="seconds per phase (default 30)")
    p.add_argument("--repeat", type=int, default=1, help="rounds of the phases (default 1)")
    p.add_argument("--rate", type=float, default=300.0, help="attack reports per second per family")
    p.add_argument("--sources", type=int, default=1024, help="sources of the attacker's IS_IN")
    p.add_argument("--spray", type=int, default=50000, help="distinct (S,G) of the data flood (0: none)")
    p.add_argument("--spray-rate", type=float, default=5000.0, help="data flood frames per second")
    p.add_argument("--data-rate", type=float, default=200.0, help="the member's data, packets/s per family")
    p.add_argument("--status-rate", type=float, default=4.0, help="status requests per second")
    p.add_argument("--join-interval", type=float, default=1.0, help="seconds between the member's new joins")
    p.add_argument("--settle", type=float, default=15.0, help="seconds after the last attack before memory")
    p.add_argument("--plane", default="nftables", choices=("nftables", "mroute"))
    p.add_argument("--json", type=Path, help="write every figure and sample here")
    p.add_argument("--outdir", type=Path, help="daemon config and log (default: a new /tmp/hHb-* directory)")
    p.add_argument("--cleanup-stale", action="store_true", help="delete hHb-* namespaces left by a killed run")
    p.add_argument("-v", "--verbose", action="store_true")
    return p.parse_args(argv)


class Attack:
    """The attacker processes in ``h0`` (reports; the data spray too with ``spray``); ``stop`` ends them."""

    def __init__(self, registry, ns, args, src4: str, src6: str, spray: bool) -> None:
        python = [sys.executable, str(TRAFFIC)]
        self.processes = [registry.popen(ns, [*python, "reports", "--rate", str(args.rate), "--src4", src4,
                                              "--src6", src6, "--group4", ATTACK_GROUP[4],
                                              "--group6", ATTACK_GROUP[6], "--sources", str(args.sources)],
                                         stdout=subprocess.PIPE, text=True)]
        if spray:
            self.processes.append(registry.popen(ns, [*python, "spray", "--count", str(args.spray),
                                                      "--rate", str(args.spray_rate)],
                                                 stdout=subprocess.PIPE, text=True))
        self._registry = registry

    def stop(self) -> list[dict]:
        sent = []
        for process in self.processes:
            self._registry.stop_process(process, signal.SIGTERM)
            line = process.stdout.read().strip().splitlines()
            sent.append(json.loads(line[-1]) if line else {"exit": process.returncode})
            process.stdout.close()
        return sent


def start_daemon(registry, topology, args, outdir: Path) -> tuple[subprocess.Popen, str, Path]:
    conf = outdir / "hostile.conf"
    conf.write_text("protocol IGMPv3;\nprotocol MLDv2;\npinstance hh: u0 ==> d0 d1;\n")
    control = str(outdir / "hostile.sock")
    log_path = outdir / "hostile.log"
    with open(log_path, "wb") as log_file:
        process = registry.popen(topology.px, [str(daemons.OURS), "-f", str(conf), "--data-plane", args.plane,
                                               "--control", control],
                                 stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    return process, control, log_path


def run(args: argparse.Namespace, registry: topo.Registry, outdir: Path) -> tuple[dict, list[PhaseResult]]:
    """The run's summary and its phases (summary ``not_run`` with the reason when the plane is missing)."""
    topology = topo.ProxyTopology(registry, topo.new_run_id(), 2)
    topology.build()
    missing = topo.mroute_missing(topology.px, 4) if args.plane == "mroute" else None
    if missing:
        return {"not_run": missing}, []
    recorder = GapRecorder()
    recorder.add(capture.open_capture(topology.up, "e0", capture.UPSTREAM_FILTER), None)
    recorder.add(capture.open_capture(topology.host_ns[MEMBER], "e0", capture.HOST_FILTER), MEMBER)
    recorder.start()
    process, control, log_path = start_daemon(registry, topology, args, outdir)
    sources = {f: TrafficSource(registry, topology.up, f) for f in (4, 6)}
    members = {f: HostMember(topology.host_ns[MEMBER], f) for f in (4, 6)}
    try:
        phase = Phase(recorder, members, MEMBER, DATA_GROUP, control, process.pid, args.join_interval,
                      args.status_rate)
        if not wait_for(lambda: process.poll() is None and (phase.status() or {}).get("instances"),
                        READY_TIMEOUT, 0.05):
            raise RuntimeError(f"daemon not ready (exit {process.poll()}); log {log_path}")
        for family in (4, 6):
            members[family].join(DATA_GROUP[family])
            sources[family].start(topo.UP_SOURCES[family][0], [DATA_GROUP[family]], args.data_rate)
        for family in (4, 6):
            key = ipaddress.ip_address(DATA_GROUP[family]).packed
            if not wait_for(lambda key=key: recorder.arrivals(MEMBER, key).count > 10, 10.0, 0.05):
                raise RuntimeError(f"no data at the member for {DATA_GROUP[family]}; log {log_path}")
        time.sleep(2.0)
        baseline_kb = daemons.read_status(process.pid).get("VmRSS")
        attacker = topology.host_ns[ATTACKER]
        src4, src6 = topo.host_address(4, ATTACKER), attacker.link_local("e0")
        phases: list[PhaseResult] = []
        kinds = [hostile_report.REPORTS, hostile_report.BOTH] if args.spray else [hostile_report.REPORTS]
        for rep in range(args.repeat):
            log.info("phase off rep=%d", rep)
            phases.append(phase.run(hostile_report.OFF, args.duration))
            for kind in kinds:
                log.info("phase %s rep=%d", kind, rep)
                attack = Attack(registry, attacker, args, src4, src6, spray=kind == hostile_report.BOTH)
                try:
                    result = phase.run(kind, args.duration)
                finally:
                    sent = attack.stop()
                result.attack = sent
                phases.append(result)
                time.sleep(args.settle if rep == args.repeat - 1 and kind == kinds[-1] else PAUSE)
        after_kb = daemons.read_status(process.pid).get("VmRSS")
        alive = process.poll() is None
        exit_status = registry.stop_process(process)
    finally:
        for source in sources.values():
            source.close()
        for member in members.values():
            member.close()
        recorder.stop()
    return {"plane": args.plane, "baseline_rss_mb": round(baseline_kb / 1024, 1),
            "after_rss_mb": round(after_kb / 1024, 1), "alive_at_end": alive, "exit_status": exit_status,
            "phases": [p.summary() for p in phases], "log": str(log_path)}, phases


def print_table(result: dict, phases: list[PhaseResult], args: argparse.Namespace) -> None:
    print(f"\nhostile link, {result['plane']} plane, {args.repeat} x {args.duration:.0f} s per phase; reports "
          f"{args.rate:.0f}/s per family (IS_IN {args.sources} sources, then ALLOW({{}}) packets), data spray "
          f"{args.spray} (S,G) at {args.spray_rate:.0f} frames/s; latencies pooled over repetitions, other "
          "figures median [min-max] of the repetitions")
    print(hostile_report.render(phases, result["baseline_rss_mb"], result["after_rss_mb"]))
    for p in result["phases"]:
        if p["phase"] != hostile_report.OFF:
            print(f"{p['phase']}: attack sent {p['attack']}")
            grown = {k: v for k, v in p["counters_grown"].items() if not k.endswith(daemons.NOT_DROPS)}
            print(f"{p['phase']}: daemon counters grown (drops and state) {grown}")
    print(f"daemon alive at the end: {result['alive_at_end']}, exit status {result['exit_status']}; "
          f"log {result['log']}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    topo.PREFIX = PREFIX      # the shared topology names its namespaces with this bench's prefix
    if args.cleanup_stale:
        stale = topo.stale_namespaces()
        topo.Registry([topo.Namespace(n) for n in stale]).cleanup()
        print(f"removed {len(stale)} namespace(s)")
        return 0
    registry = topo.Registry()
    topo.install_cleanup(registry)
    outdir = args.outdir or Path(tempfile.mkdtemp(prefix=PREFIX))
    outdir.mkdir(parents=True, exist_ok=True)
    try:
        result, phases = run(args, registry, outdir)
    finally:
        registry.cleanup()
    if "not_run" in result:
        print(f"not run: {result['not_run']}")
        return 1
    print_table(result, phases, args)
    if args.json:
        args.json.write_text(json.dumps({"options": {k: str(v) for k, v in vars(args).items()}, **result},
                                        indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
