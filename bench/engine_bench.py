"""Throughput and memory of the membership engine (InstanceCore, both families).

Feeds a pre-generated mix of IGMPv3/IGMPv2/MLDv2 reports (all six record types)
from many downstream interfaces through one ``InstanceCore`` with one upstream,
firing due timers as an IO layer would (``get_timer`` after every report), and
prints:

- records per second (the timed pass runs without tracemalloc);
- bytes of engine memory per (interface, group) state, from a second pass under
  tracemalloc (everything the engine holds, routers, upstream hosts and the
  merged database, divided by the number of (interface, group) router states);

each as median and spread (min-max) over several runs with different seeds.

``--attack`` instead times the CPU attack on one link: a host reports IS_IN
with 1,024 sources for one group, then 1,500-octet reports that hold only
ALLOW({}) records for that group (183 records for IGMPv3, 72 for MLDv2).
It prints the engine's time per attack packet (``InstanceCore.handle_report``
on decoded records) as median and spread over the repetitions, per family.
Run it against another checkout (``PYTHONPATH=<tree>``) for a before/after
comparison: it only uses options that checkout has. ``--attack-record TO_IN``
(or any other record type) fills the packets with that record instead.

    python bench/engine_bench.py            # 200,000 records, 10,000 groups, 30 downstreams, 5 runs
    python bench/engine_bench.py --quick    # a smaller run
    python bench/engine_bench.py --attack   # per-packet cost of the attack packet
"""

from __future__ import annotations

import argparse
import gc
import ipaddress
import random
import statistics
import time
import tracemalloc
from dataclasses import dataclass

from mcproxy_pmip.addresses import Family, IPAddress
from mcproxy_pmip.membership.filters import AllowAll
from mcproxy_pmip.membership.instance import InstanceCore
from mcproxy_pmip.membership.timers import HostOptions, RouterOptions
from mcproxy_pmip.wire.records import GroupRecord, RecordType

#: (record type, weight, sources (min, max)) of the generated records
_MIX = (
    (RecordType.MODE_IS_EXCLUDE, 30, (0, 0)),
    (RecordType.MODE_IS_INCLUDE, 20, (1, 3)),
    (RecordType.ALLOW_NEW_SOURCES, 15, (1, 2)),
    (RecordType.BLOCK_OLD_SOURCES, 10, (1, 2)),
    (RecordType.CHANGE_TO_INCLUDE, 10, (0, 2)),
    (RecordType.CHANGE_TO_EXCLUDE, 15, (0, 1)),
)
_SOURCES_PER_FAMILY = 64
_REPORT_SPACING_INTERVAL = 0.0005


@dataclass(frozen=True, slots=True)
class Report:
    interface: str
    family: Family
    version: int
    records: tuple[GroupRecord, ...]
    source: IPAddress


def downstream_names(count: int) -> list[str]:
    return [f"mn{i}" for i in range(count)]


def make_workload(records: int, groups: int, downstreams: int, seed: int) -> list[Report]:
    """Reports carrying ``records`` records over ``groups`` groups (half IPv4, half IPv6)."""
    rng = random.Random(seed)
    names = downstream_names(downstreams)
    group_pool = {
        Family.IPV4: [ipaddress.IPv4Address(0xE8010000 + i) for i in range(groups // 2)],
        Family.IPV6: [ipaddress.IPv6Address((0xFF3E << 112) + 0x80000000 + i)
                      for i in range(groups - groups // 2)],
    }
    source_pool = {
        Family.IPV4: [ipaddress.IPv4Address(0xC0000200 + i) for i in range(_SOURCES_PER_FAMILY)],
        Family.IPV6: [ipaddress.IPv6Address((0x20010DB8 << 96) + i) for i in range(_SOURCES_PER_FAMILY)],
    }
    hosts = {Family.IPV4: ipaddress.IPv4Address("10.200.0.10"),
             Family.IPV6: ipaddress.IPv6Address("fe80::10")}
    kinds = [kind for kind, _, _ in _MIX]
    weights = [weight for _, weight, _ in _MIX]
    counts = {kind: span for kind, _, span in _MIX}
    workload: list[Report] = []
    produced = 0
    while produced < records:
        family = Family.IPV4 if rng.random() < 0.5 else Family.IPV6
        interface = rng.choice(names)
        if family is Family.IPV4 and rng.random() < 0.05:
            group = rng.choice(group_pool[family])
            kind = RecordType.MODE_IS_EXCLUDE if rng.random() < 0.8 else RecordType.CHANGE_TO_INCLUDE
            workload.append(Report(interface, family, 2, (GroupRecord(kind, group),), hosts[family]))
            produced += 1
            continue
        batch = []
        for _ in range(min(rng.randint(1, 3), records - produced)):
            kind = rng.choices(kinds, weights)[0]
            low, high = counts[kind]
            sources = tuple(rng.sample(source_pool[family], rng.randint(low, high)))
            batch.append(GroupRecord(kind, rng.choice(group_pool[family]), sources))
        workload.append(Report(interface, family, family.newest_version, tuple(batch), hosts[family]))
        produced += len(batch)
    return workload


#: limits high enough that the workloads measure the engine, not its refusals at the default caps
UNBOUNDED = RouterOptions(max_groups=1 << 20, max_sources=1 << 20, max_link_sources=1 << 30)


def build_core(downstreams: int, seed: int) -> tuple[InstanceCore, float]:
    core = InstanceCore("bench", ["tun0"], AllowAll(), UNBOUNDED, HostOptions(),
                        random.Random(seed))
    now = 0.0
    for index, name in enumerate(downstream_names(downstreams)):
        core.add_downstream(now, name, Family.IPV4, ipaddress.IPv4Address(0x0AC80001 + index))
        core.add_downstream(now, name, Family.IPV6, ipaddress.IPv6Address((0xFE80 << 112) + 1 + index))
    return core, now


def feed(core: InstanceCore, workload: list[Report], now: float) -> float:
    """Every report, then the due timers, as the IO layer would drive the engine."""
    handle_report = core.handle_report
    get_timer = core.get_timer
    for report in workload:
        now += _REPORT_SPACING_INTERVAL
        handle_report(now, report.interface, report.family, report.version, report.records,
                      report.source)
        deadline = get_timer()
        if deadline is not None and deadline <= now:
            core.handle_timer(now)
    return now


def state_count(core: InstanceCore) -> int:
    return sum(len(list(core.router(name, family).groups())) for name, family in core.downstreams)


def run_once(args: argparse.Namespace, seed: int) -> tuple[float, float, int]:
    workload = make_workload(args.records, args.groups, args.downstreams, seed)
    records = sum(len(report.records) for report in workload)
    core, now = build_core(args.downstreams, seed)
    gc.collect()
    started = time.perf_counter()
    feed(core, workload, now)
    elapsed = time.perf_counter() - started
    rate = records / elapsed
    del core
    gc.collect()
    tracemalloc.start()
    baseline = tracemalloc.get_traced_memory()[0]
    core, now = build_core(args.downstreams, seed)
    feed(core, workload, now)
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - baseline
    tracemalloc.stop()
    states = state_count(core)
    return rate, used / max(states, 1), states


#: ALLOW({}) records in one 1,500-octet report: IPv4 header 24 (with Router Alert) + 8,
#: 8 per record; IPv6 header 40 + hop-by-hop 8 + 8, 20 per record
ATTACK_RECORDS = {Family.IPV4: (1500 - 24 - 8) // 8, Family.IPV6: (1500 - 40 - 8 - 8) // 20}
ATTACK_HELD_SOURCES = 1024


def attack_core(family: Family) -> tuple[InstanceCore, IPAddress, IPAddress]:
    """A core whose one downstream holds IS_IN(1,024 sources) for one group."""
    core = InstanceCore("attack", ["tun0"], AllowAll(), UNBOUNDED, HostOptions(), random.Random(0))
    if family is Family.IPV4:
        own, host = ipaddress.IPv4Address("10.200.0.1"), ipaddress.IPv4Address("10.200.0.10")
        group = ipaddress.IPv4Address("232.1.1.1")
        sources = [ipaddress.IPv4Address(0xC0000000 + i) for i in range(ATTACK_HELD_SOURCES)]
    else:
        own, host = ipaddress.IPv6Address("fe80::1"), ipaddress.IPv6Address("fe80::10")
        group = ipaddress.IPv6Address("ff3e::8000:1")
        sources = [ipaddress.IPv6Address((0x20010DB8 << 96) + i) for i in range(ATTACK_HELD_SOURCES)]
    core.add_downstream(0.0, "mn0", family, own)
    core.handle_report(0.0, "mn0", family, family.newest_version,
                       (GroupRecord(RecordType.MODE_IS_INCLUDE, group, tuple(sources)),), host)
    return core, group, host


def attack(args: argparse.Namespace) -> None:
    kind = {t.short: t for t in RecordType}[args.attack_record]
    print(f"engine_bench --attack: IS_IN({ATTACK_HELD_SOURCES} sources) held, then 1,500-octet "
          f"reports of {kind.short}({{}}); {args.packets} packets per repetition, "
          f"{args.runs} repetitions")
    for family in (Family.IPV4, Family.IPV6):
        core, group, host = attack_core(family)
        packet = (GroupRecord(kind, group),) * ATTACK_RECORDS[family]
        now = 1.0
        per_packet = []
        for _ in range(args.runs):
            gc.collect()
            started = time.perf_counter()
            for _ in range(args.packets):
                now += _REPORT_SPACING_INTERVAL
                core.handle_report(now, "mn0", family, family.newest_version, packet, host)
            per_packet.append((time.perf_counter() - started) / args.packets)
        micro = [t * 1e6 for t in per_packet]
        print(f"  {family.name} ({ATTACK_RECORDS[family]} records/packet): per packet median "
              f"{statistics.median(micro):,.1f} us (min {min(micro):,.1f}, max {max(micro):,.1f}); "
              f"{1 / statistics.median(per_packet):,.0f} packets/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--groups", type=int, default=10_000)
    parser.add_argument("--downstreams", type=int, default=30)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="20,000 records, 3 runs")
    parser.add_argument("--attack", action="store_true",
                        help="time the ALLOW({}) attack packet instead (see the module docstring)")
    parser.add_argument("--packets", type=int, default=200,
                        help="attack packets per repetition (--attack)")
    parser.add_argument("--attack-record", default="ALLOW",
                        choices=[t.short for t in RecordType],
                        help="the record type of the attack packets (--attack)")
    args = parser.parse_args()
    if args.attack:
        attack(args)
        return
    if args.quick:
        args.records, args.runs = 20_000, 3
    print(f"engine_bench: {args.records} records, {args.groups} groups (IPv4+IPv6), "
          f"{args.downstreams} downstreams per family, {args.runs} runs")
    rates, per_state, states = [], [], []
    for run in range(args.runs):
        rate, memory, count = run_once(args, seed=run)
        rates.append(rate)
        per_state.append(memory)
        states.append(count)
        print(f"  run {run}: {rate:,.0f} records/s, {memory:,.0f} B per (interface, group), "
              f"{count} states")
    print(f"records/s: median {statistics.median(rates):,.0f} "
          f"(min {min(rates):,.0f}, max {max(rates):,.0f})")
    print(f"bytes per (interface, group): median {statistics.median(per_state):,.0f} "
          f"(min {min(per_state):,.0f}, max {max(per_state):,.0f}); "
          f"states median {statistics.median(states):,.0f}")


if __name__ == "__main__":
    main()
