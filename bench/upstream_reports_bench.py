"""Upstream report packets and per-turn work of the host side (no root).

One ``InstanceCore`` (one downstream, one upstream) on a virtual clock; a
downstream host joins N groups at one instant (in reports of at most 183
records, what one 1,500-octet IGMPv3 report holds, 72 for MLDv2). Prints, per
family and N:

- ``change``: upstream packets for the joins themselves (the engine's
  ``SendReport`` actions split to a 1,500-octet MTU as the Sender does);
- ``retransmit``: upstream packets of their retransmissions (robustness 2);
- ``gq_turns`` / ``gq_max_packets``: engine turns that send part of the answer
  to one upstream General Query (Max Resp Time 10 s), and the most packets one
  turn sends;
- ``gq_max_turn_ms``: wall time of the longest of those turns, median and
  spread (min-max) over the runs.

    python bench/upstream_reports_bench.py            # N = 183, 1,000, 8,192; 5 runs
    python bench/upstream_reports_bench.py --quick    # N = 183, 1,000; 3 runs
"""

from __future__ import annotations

import argparse
import ipaddress
import random
import statistics
import time

from mcproxy_pmip.addresses import Family
from mcproxy_pmip.membership.actions import SendReport
from mcproxy_pmip.membership.filters import AllowAll
from mcproxy_pmip.membership.instance import InstanceCore
from mcproxy_pmip.membership.query import Query
from mcproxy_pmip.membership.timers import HostOptions, RouterOptions
from mcproxy_pmip.wire.records import GroupRecord, RecordType
from mcproxy_pmip.wire.split import split_report_records

MTU = 1500
PER_DOWNSTREAM_REPORT = {Family.IPV4: 183, Family.IPV6: 72}
OWN = {Family.IPV4: ipaddress.ip_address("10.1.0.1"), Family.IPV6: ipaddress.ip_address("fe80::1")}
HOST = {Family.IPV4: ipaddress.ip_address("10.1.0.10"), Family.IPV6: ipaddress.ip_address("fe80::10")}
QUERIER = {Family.IPV4: ipaddress.ip_address("10.0.0.254"), Family.IPV6: ipaddress.ip_address("fe80::fe")}


def packets(actions: list, family: Family) -> int:
    return sum(len(split_report_records(a.records, family, MTU))
               for a in actions if isinstance(a, SendReport))


def fire_until(core: InstanceCore, now: float, until: float, family: Family) -> tuple[list[int], list[float], float]:
    """Fire deadlines up to ``until``: packets per turn that sent any, wall time per such turn."""
    per_turn, walls = [], []
    while (deadline := core.get_timer()) is not None and deadline <= until:
        now = max(now, deadline)
        began = time.perf_counter()
        actions = core.handle_timer(now)
        wall = time.perf_counter() - began
        sent = packets(actions, family)
        if sent:
            per_turn.append(sent)
            walls.append(wall)
    return per_turn, walls, now


def run(family: Family, count: int, seed: int) -> dict[str, float]:
    core = InstanceCore("bench", ["up0"], AllowAll(),
                        RouterOptions(max_groups=count), HostOptions(robustness=2), random.Random(seed))
    now = 1000.0
    core.add_downstream(now, "d1", family, OWN[family])
    base = ipaddress.ip_address("232.1.0.0" if family is Family.IPV4 else "ff3e::8000:0")
    records = [GroupRecord(RecordType.CHANGE_TO_EXCLUDE, base + i + 1) for i in range(count)]
    step = PER_DOWNSTREAM_REPORT[family]
    change = 0
    for first in range(0, count, step):
        change += packets(core.handle_report(now, "d1", family, family.newest_version,
                                             records[first:first + step], HOST[family]), family)
    retransmit_turns, _, now = fire_until(core, now, now + 5.0, family)
    asked = now + 10.0
    core.handle_query(asked, "up0", family, Query(family.newest_version, QUERIER[family], 10.0, None))
    answer_turns, walls, _ = fire_until(core, asked, asked + 10.0, family)
    return {"change": change, "retransmit": sum(retransmit_turns), "gq_turns": len(answer_turns),
            "gq_max_packets": max(answer_turns, default=0), "gq_max_turn_ms": max(walls, default=0.0) * 1e3}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--runs", type=int)
    args = parser.parse_args()
    counts = (183, 1000) if args.quick else (183, 1000, 8192)
    runs = args.runs or (3 if args.quick else 5)
    print(f"{'family':6} {'groups':>6} {'change':>6} {'retransmit':>10} {'gq_turns':>8} "
          f"{'gq_max_packets':>14}  gq_max_turn_ms median (min-max)")
    for family in Family:
        for count in counts:
            results = [run(family, count, seed) for seed in range(runs)]
            first = results[0]
            walls = [r["gq_max_turn_ms"] for r in results]
            print(f"{family.name:6} {count:>6} {first['change']:>6} {first['retransmit']:>10} "
                  f"{first['gq_turns']:>8} {first['gq_max_packets']:>14}  "
                  f"{statistics.median(walls):.2f} ({min(walls):.2f}-{max(walls):.2f})")


if __name__ == "__main__":
    main()
