"""Shared fixtures data for the router-side tests: one address plan per family."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from mcproxy_pmip.addresses import Family, IPAddress
from mcproxy_pmip.membership.actions import MembershipChanged, SendQuery
from mcproxy_pmip.membership.router import RouterInterface
from mcproxy_pmip.membership.timers import RouterOptions
from mcproxy_pmip.wire.records import GroupRecord, RecordType


@dataclass(frozen=True)
class Plan:
    """Addresses of one family: our own, a lower and a higher router, a group, hosts, sources."""

    family: Family
    own: IPAddress
    lower: IPAddress
    higher: IPAddress
    group: IPAddress
    group2: IPAddress
    link_local_group: IPAddress
    host: IPAddress
    source_prefix: str

    def s(self, n: int) -> IPAddress:
        return ipaddress.ip_address(f"{self.source_prefix}{n}")


IPV4 = Plan(Family.IPV4, ipaddress.ip_address("10.0.0.5"), ipaddress.ip_address("10.0.0.2"),
            ipaddress.ip_address("10.0.0.9"), ipaddress.ip_address("232.1.1.1"),
            ipaddress.ip_address("239.2.2.2"), ipaddress.ip_address("224.0.0.251"),
            ipaddress.ip_address("10.0.0.100"), "192.0.2.")
IPV6 = Plan(Family.IPV6, ipaddress.ip_address("fe80::5"), ipaddress.ip_address("fe80::2"),
            ipaddress.ip_address("fe80::9"), ipaddress.ip_address("ff3e::1234"),
            ipaddress.ip_address("ff0e::2222"), ipaddress.ip_address("ff02::fb"),
            ipaddress.ip_address("fe80::100"), "2001:db8::")
PLANS = (IPV4, IPV6)
PLAN_IDS = ("ipv4", "ipv6")

IS_IN = RecordType.MODE_IS_INCLUDE
IS_EX = RecordType.MODE_IS_EXCLUDE
TO_IN = RecordType.CHANGE_TO_INCLUDE
TO_EX = RecordType.CHANGE_TO_EXCLUDE
ALLOW = RecordType.ALLOW_NEW_SOURCES
BLOCK = RecordType.BLOCK_OLD_SOURCES


def router(plan: Plan, options: RouterOptions | None = None) -> RouterInterface:
    return RouterInterface("down0", plan.family, plan.own, options or RouterOptions())


def report(r: RouterInterface, plan: Plan, now: float, record_type: RecordType,
           sources: tuple[IPAddress, ...] = (), version: int | None = None,
           group: IPAddress | None = None) -> list:
    """Send one record for ``group`` (default: the plan's group) in a report of ``version``."""
    record = GroupRecord(record_type, group or plan.group, tuple(sources))
    return r.handle_report(now, version or plan.family.newest_version, [record], plan.host)


def specific_queries(actions: list) -> list[tuple[IPAddress, tuple[IPAddress, ...], bool]]:
    """(group, sources, S flag) of each group(-and-source)-specific query sent."""
    return [(a.group, a.sources, a.suppress_router_processing) for a in actions
            if isinstance(a, SendQuery) and a.group is not None]


def general_queries(actions: list) -> list[SendQuery]:
    return [a for a in actions if isinstance(a, SendQuery) and a.group is None]


def changed_groups(actions: list) -> list[IPAddress]:
    return [a.group for a in actions if isinstance(a, MembershipChanged)]


def run_until(r: RouterInterface, end: float) -> list[tuple[float, object]]:
    """Fire each deadline up to ``end`` at its own time; (time, action) pairs."""
    fired: list[tuple[float, object]] = []
    for _ in range(100_000):
        at = r.get_timer()
        if at is None or at > end:
            return fired
        fired.extend((at, a) for a in r.handle_timer(at))
    raise AssertionError(f"deadlines never settle before {end}: next at {r.get_timer()}")
