"""Testbed scale: build and teardown time of large PMIPv6 domains, and a large run per mode.

Part 1 builds domains of N MNs over M MAGs (one LMA; every MN has an access
link on every MAG: a point-to-point link, or beyond 31 MNs a port of the MAG's
access bridge ``acc0`` where the MAG daemons would run on the mroute data
plane, as the static-mode daemons on ``--data-plane`` decide) R times each and
prints the build time (namespaces, links, addresses, routes), the time until
the tunnel relays are ready, and the teardown time, as median [min-max].

Part 2 runs one scenario with mcproxy-pmip on the LMA and the MAGs in each mode
(static and context by default): N MNs spread over the MAGs, all subscribed to
one IPv6 SSM and one IPv4 ASM stream, a few of them doing one handover each.
It prints how many MNs received every stream they joined (arrivals within the
last second of the run), the share of sent packets that arrived, and the
handover gaps per family as median [min-max].

Needs root. Ctrl-C, SIGTERM or a failure tears everything down; every run's
results folder is kept under ``--out``.

    python bench/testbed_scale.py                               # 50x4 and 200x4 builds, 200-MN runs
    python bench/testbed_scale.py --builds 50x4 -n 5 --modes ''  # builds only
    python bench/testbed_scale.py --data-plane mroute            # MRT daemons: the access bridge
"""

from __future__ import annotations

import argparse
import datetime
import json
import signal
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mcproxy_pmip.config.model import DATA_PLANES
from mcproxy_pmip_testbed.build import Testbed
from mcproxy_pmip_testbed.daemons import mcproxy_pmip_spec
from mcproxy_pmip_testbed.payload import parse_arrivals
from mcproxy_pmip_testbed.planes import DataPlaneError, decide, plane_summary
from mcproxy_pmip_testbed.runner import daemon_roles, run_scenario
from mcproxy_pmip_testbed.scenario import MODES, MobileNode, Scenario, Topology, validate_scenario

STREAMS = ({"name": "v6", "family": "ipv6", "group": "ff3e::8000:1", "source_specific": True},
           {"name": "v4", "family": "ipv4", "group": "239.1.1.1"})


def spread(values: Sequence[float], digits: int = 2) -> str:
    """``median [min-max] n=k``, or ``-`` without values."""
    if not values:
        return "-"
    return (f"{statistics.median(values):.{digits}f} [{min(values):.{digits}f}-"
            f"{max(values):.{digits}f}] n={len(values)}")


def mag_names(mags: int) -> tuple[str, ...]:
    return tuple(f"mag{i}" for i in range(1, mags + 1))


def topology(mns: int, mags: int) -> Topology:
    """One LMA; MN i starts on MAG i mod M."""
    names = mag_names(mags)
    return Topology(lmas=("lma1",), mags=names, mns=tuple(
        MobileNode(f"mn{i}", "lma1", names[(i - 1) % mags]) for i in range(1, mns + 1)))


def time_builds(mns: int, mags: int, repetitions: int, out: Path,
                data_plane: str) -> dict[str, list[float]]:
    """Build and tear down ``repetitions`` times; seconds per phase. The access links are those
    of a static-mode run on ``data_plane``."""
    times: dict[str, list[float]] = {"build": [], "ready": [], "teardown": []}
    for index in range(repetitions):
        plan = decide(data_plane, mcproxy_pmip_spec(), topology(mns, mags),
                      lambda candidate: daemon_roles(candidate, "static")).plan
        started_at = time.monotonic()
        with Testbed(plan, out / f"build-{mns}x{mags}-{index + 1}") as testbed:
            times["ready"].append(time.monotonic() - started_at)
            times["build"].append(testbed.build_interval)
            teardown_at = time.monotonic()
        times["teardown"].append(time.monotonic() - teardown_at)
        print(f"  {mns} MNs x {mags} MAGs run {index + 1}: {len(plan.namespaces)} namespaces, "
              f"access bridge {plan.access_bridge}, build {times['build'][-1]:.2f}s, "
              f"teardown {times['teardown'][-1]:.2f}s", file=sys.stderr, flush=True)
    return times


def scale_document(mns: int, mags: int, rate: float, handovers: int,
                   outage_ms: float, data_plane: str = "auto") -> dict[str, Any]:
    """Scenario YAML document: every MN joins both streams; MNs 1..H hand over, 1 s apart."""
    names = mag_names(mags)
    top = topology(mns, mags)
    document = {
        "topology": {"lmas": list(top.lmas), "mags": list(names),
                     "mns": [{"name": m.name, "lma": m.lma, "mag": m.mag} for m in top.mns]},
        "streams": [dict(s, rate=rate) for s in STREAMS],
        "subscriptions": {m.name: [s["name"] for s in STREAMS] for m in top.mns},
        "handovers": [{"at": 3.0 + k, "mn": top.mns[k].name,
                       "to": names[(names.index(top.mns[k].mag) + 1) % mags],
                       "l2_outage_ms": outage_ms} for k in range(min(handovers, mns))],
        "options": {"warmup_s": 3.0, "tail_s": 3.0, "data_plane": data_plane},
    }
    return document


def scale_scenario(mns: int, mags: int, rate: float, handovers: int,
                   outage_ms: float, data_plane: str = "auto") -> Scenario:
    return validate_scenario(scale_document(mns, mags, rate, handovers, outage_ms, data_plane),
                             "<testbed_scale>")


def delivery(out: Path, scenario: Scenario, results: dict[str, Any]) -> dict[str, Any]:
    """MNs that received every stream they joined in the run's last second; arrived/sent."""
    ids = {s.name: i for i, s in enumerate(scenario.streams)}
    last_second_at = results["ended_at"] - 1.0
    sent = json.loads((out / "sender.json").read_text())["streams"]
    complete, arrived, expected = 0, 0, 0
    for mn, names in scenario.subscriptions.items():
        path = out / f"{mn}.arrivals"
        arrivals = list(parse_arrivals(path.open())) if path.exists() else []
        late = {a.stream for a in arrivals if a.received_at > last_second_at}
        complete += all(ids[name] in late for name in names)
        arrived += len({(a.stream, a.seq) for a in arrivals})
        expected += sum(int(sent[str(ids[name])]) for name in names)
    return {"mns": len(scenario.subscriptions), "complete": complete,
            "arrived_share": arrived / expected if expected else 0.0}


def gap_summary(results: dict[str, Any]) -> dict[str, str]:
    """Per family: the handover gaps (ms) and how many handovers got the stream back."""
    summary = {}
    for family in ("ipv6", "ipv4"):
        rows = [r for r in results["handovers"] if r["family"] == family]
        gaps = [r["gap_ms"] for r in rows if r["gap_ms"] is not None]
        summary[family] = f"{spread(gaps, 1)} of {len(rows)} handovers"
    return summary


def run_modes(args: argparse.Namespace, modes: Sequence[str]) -> list[str]:
    scenario = scale_scenario(args.mns, args.mags, args.rate, args.handovers, args.outage_ms,
                              args.data_plane)
    lines = [f"{args.mns} MNs over {args.mags} MAGs, 2 streams at {args.rate:g} packet/s, "
             f"{len(scenario.handovers)} handovers, {scenario.duration_interval:g} s of traffic"]
    for mode in modes:
        folder = args.out / f"run-{mode}"
        print(f"run {mode} -> {folder}", file=sys.stderr, flush=True)
        started_at = time.monotonic()
        results = run_scenario(scenario, mode, folder, mcproxy_pmip_spec(),
                               progress=lambda text: print(f"  {text}", file=sys.stderr,
                                                           flush=True))
        wall = time.monotonic() - started_at
        got = delivery(folder, scenario, results)
        gaps = gap_summary(results)
        access = "access bridge" if results["access_bridge"] else "point-to-point links"
        lines.append(f"  {mode:8} {plane_summary(results['data_planes'])}, {access}; "
                     f"build {results['build_seconds']:.2f}s, whole run {wall:.1f}s; "
                     f"{got['complete']}/{got['mns']} MNs receive both streams at the end, "
                     f"{100 * got['arrived_share']:.1f}% of sent packets arrived; "
                     f"gap ms ipv6 {gaps['ipv6']}; ipv4 {gaps['ipv4']}")
    return lines


def _terminate(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--builds", default="50x4,200x4",
                        help="comma-separated MNSxMAGS topologies to build (empty: none)")
    parser.add_argument("-n", "--repetitions", type=int, default=3, help="builds per topology")
    parser.add_argument("--modes", default="static,context",
                        help="comma-separated modes for the scenario run (empty: none)")
    parser.add_argument("--mns", type=int, default=200)
    parser.add_argument("--mags", type=int, default=4)
    parser.add_argument("--rate", type=float, default=50.0, help="packet/s per stream")
    parser.add_argument("--handovers", type=int, default=4)
    parser.add_argument("--outage-ms", type=float, default=50.0)
    parser.add_argument("--data-plane", choices=DATA_PLANES, default="auto",
                        help="data plane of the daemons (and of the access links the builds get)")
    parser.add_argument("--out", type=Path, default=Path("results") /
                        f"scale-{datetime.datetime.now():%Y%m%d-%H%M%S}")
    args = parser.parse_args(argv)
    modes = [m for m in args.modes.split(",") if m]
    if sorted(set(modes) - set(MODES)) or args.repetitions < 1:
        parser.error(f"modes must be among {MODES}; repetitions at least 1")
    try:
        builds = [tuple(int(x) for x in item.split("x")) for item in args.builds.split(",") if item]
    except ValueError:
        parser.error("--builds takes MNSxMAGS items, e.g. 50x4,200x4")
    signal.signal(signal.SIGTERM, _terminate)
    lines = []
    try:
        for mns, mags in builds:
            times = time_builds(mns, mags, args.repetitions, args.out, args.data_plane)
            lines.append(f"{mns} MNs x {mags} MAGs ({args.repetitions} builds): build s "
                         f"{spread(times['build'])}; relays ready s {spread(times['ready'])}; "
                         f"teardown s {spread(times['teardown'])}")
        if modes:
            lines += run_modes(args, modes)
    except KeyboardInterrupt:
        print("interrupted; torn down", file=sys.stderr)
        return 130
    except DataPlaneError as exc:
        print(exc, file=sys.stderr)
        return 2
    print("\n".join(lines))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scale.txt").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
