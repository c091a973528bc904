"""Bytes of engine memory per unit of membership state, measured with tracemalloc.

Builds state through the engine's own entry points (reports into
``RouterInterface`` / ``InstanceCore``; the records are made inside the
measurement, as decoding makes them, so the address objects the state keeps
are counted) and divides the traced growth by the units held:

- a group record on a link (EXCLUDE, no sources), router only;
- a source record (INCLUDE, 64 sources per group), router only; also after
  every source was refreshed twice (the source timer heap then holds its
  largest share of stale entries before a rebuild);
- a group as the whole instance holds it: the link's record, the subscription
  and merged database entries and the upstream host's group state;
- a source as the whole instance holds it (the same, per source).

Each figure is printed for IPv4 and IPv6 as median and spread (min-max) over
several runs. docs/limits.md quotes its output.

    python bench/state_memory.py            # 256 groups, 5 runs
"""

from __future__ import annotations

import argparse
import gc
import ipaddress
import random
import statistics
import tracemalloc
from collections.abc import Callable

from mcproxy_pmip.addresses import Family, IPAddress
from mcproxy_pmip.membership.filters import AllowAll
from mcproxy_pmip.membership.instance import InstanceCore
from mcproxy_pmip.membership.router import RouterInterface
from mcproxy_pmip.membership.timers import HostOptions, RouterOptions
from mcproxy_pmip.wire.records import GroupRecord, RecordType

SOURCES_PER_GROUP = 64
OPTIONS = RouterOptions(max_groups=1 << 20, max_sources=1 << 20, max_link_sources=1 << 30)


def addresses(family: Family) -> tuple[IPAddress, IPAddress, Callable[[int], IPAddress],
                                       Callable[[int], IPAddress]]:
    """(own address, host, group n, source n) of one family."""
    if family is Family.IPV4:
        return (ipaddress.IPv4Address("10.0.0.1"), ipaddress.IPv4Address("10.0.0.10"),
                lambda n: ipaddress.IPv4Address(0xE8000000 + n),
                lambda n: ipaddress.IPv4Address(0xC0000000 + n))
    return (ipaddress.IPv6Address("fe80::1"), ipaddress.IPv6Address("fe80::10"),
            lambda n: ipaddress.IPv6Address((0xFF3E << 112) + 0x80000000 + n),
            lambda n: ipaddress.IPv6Address((0x20010DB8 << 96) + n))


def records(family: Family, groups: int, sources: int) -> list[GroupRecord]:
    """``groups`` records: EXCLUDE({}) when ``sources`` is 0, else INCLUDE of distinct sources."""
    _, _, group, source = addresses(family)
    if not sources:
        return [GroupRecord(RecordType.MODE_IS_EXCLUDE, group(g)) for g in range(groups)]
    return [GroupRecord(RecordType.MODE_IS_INCLUDE, group(g),
                        tuple(source(g * sources + s) for s in range(sources)))
            for g in range(groups)]


def traced(build: Callable[[], object]) -> int:
    """Bytes still allocated after ``build()`` (its result is kept alive while measured)."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    kept = build()
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    del kept
    return used


def router_with(family: Family, groups: int, sources: int, refreshes: int = 0
                ) -> Callable[[], object]:
    own, host, _, _ = addresses(family)

    def build() -> RouterInterface:
        r = RouterInterface("mn0", family, own, OPTIONS)
        r.start(0.0)
        batch = records(family, groups, sources)
        for now in range(1, 2 + refreshes):
            for record in batch:
                r.handle_report(float(now), family.newest_version, [record], host)
        return r
    return build


def core_with(family: Family, groups: int, sources: int) -> Callable[[], object]:
    own, host, _, _ = addresses(family)

    def build() -> InstanceCore:
        core = InstanceCore("bench", ["tun0"], AllowAll(), OPTIONS, HostOptions(), random.Random(0))
        core.add_downstream(0.0, "mn0", family, own)
        for record in records(family, groups, sources):
            core.handle_report(1.0, "mn0", family, family.newest_version, [record], host)
        return core
    return build


def measure(family: Family, groups: int) -> dict[str, float]:
    empty_router = traced(router_with(family, 0, 0))
    empty_core = traced(core_with(family, 0, 0))
    router_groups = traced(router_with(family, groups, 0)) - empty_router
    router_one = traced(router_with(family, groups, 1)) - empty_router
    router_many = traced(router_with(family, groups, 1 + SOURCES_PER_GROUP)) - empty_router
    router_one_churned = traced(router_with(family, groups, 1, 2)) - empty_router
    router_churned = traced(router_with(family, groups, 1 + SOURCES_PER_GROUP, 2)) - empty_router
    core_groups = traced(core_with(family, groups, 0)) - empty_core
    core_one = traced(core_with(family, groups, 1)) - empty_core
    core_many = traced(core_with(family, groups, 1 + SOURCES_PER_GROUP)) - empty_core
    return {
        "group record on a link": router_groups / groups,
        "source record on a link": (router_many - router_one) / (groups * SOURCES_PER_GROUP),
        "source record on a link, refreshed": ((router_churned - router_one_churned)
                                               / (groups * SOURCES_PER_GROUP)),
        "group, whole instance": core_groups / groups,
        "source, whole instance": (core_many - core_one) / (groups * SOURCES_PER_GROUP),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=256)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(f"state_memory: {args.groups} groups, {SOURCES_PER_GROUP} sources per group, "
          f"{args.runs} runs")
    for family in (Family.IPV4, Family.IPV6):
        runs = [measure(family, args.groups) for _ in range(args.runs)]
        for name in runs[0]:
            values = [run[name] for run in runs]
            print(f"  {family.name} {name}: median {statistics.median(values):,.0f} B "
                  f"(min {min(values):,.0f}, max {max(values):,.0f})")


if __name__ == "__main__":
    main()
