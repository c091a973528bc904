"""Hostile hosts against the state budgets and the querier clamps of the running daemon.

A host namespace on d1 puts crafted IGMPv3 / MLDv2 frames on its link
(AF_PACKET) against a real daemon process (docs/limits.md):

* memory cap: reports joining far more groups than ``max_groups``, and
  records with more sources than ``max_sources``; the state on d1 stays
  within the caps, the refusals are counted, a member joined before the
  flood keeps its data, and a Linux host on d2 still joins through to the
  upstream router and receives data;
* daemon-wide cap: one instance filling its link takes at most
  ``max_total_groups``; the other instance's new group is refused and
  counted, and is served once the first instance's state is gone;
* rogue querier: a query from a lower on-link address with QRV 7 and QQI
  31,744 s wins the election (RFC 3376 §6.6.2, RFC 3810 §7.6.2) but the
  adopted values are clamped, so group timers stay within 4 x the Group
  Membership Interval (RFC 3376 §8.4, RFC 3810 §9.4); a query from an
  off-link IPv4 source is dropped and counted.

The rate limits are set far above the attack's pace so that only the state
caps refuse.
"""

from __future__ import annotations

import ipaddress
import time

import pytest

from mcproxy_pmip.addresses import Family, IPAddress
from mcproxy_pmip.wire import igmp, mld
from mcproxy_pmip.wire.records import GroupRecord, RecordType
from tests.netns.netns_fixtures import netns_factory  # noqa: F401 (fixture)
from tests.netns.planes import PLANES
from tests.netns.proxy_harness import (
    Capture,
    add_upstream_router,
    build_proxy_topology,
    igmp_frame,
    mld_frame,
    send_frame,
    send_until,
    wait_for,
)
from tests.netns.scenario_tools import control_messages, link_local

pytestmark = pytest.mark.netns

PREFIX = "hI-"
MAX_GROUPS, MAX_SOURCES, MAX_TOTAL_GROUPS = 20, 8, 10
GENEROUS_RATES = "report_rate: 5000, report_burst: 5000, host_report_rate: 5000, host_report_burst: 5000"
FLOOD_PACKETS, RECORDS_PER_PACKET = 25, 40
JOIN_BOUND = 5.0  # seconds for a kernel host's join to reach upstream, or its data to arrive (generous)
SETTLE_BOUND = 10.0  # seconds for the daemon to take every crafted record (generous)
#: A Non-Querier's Group Membership Interval after a QRV 7 / QQI 31,744 s query, at the default
#: timers: QRV x clamped QQI <= 4 x robustness x Query Interval (1,000 s), plus the Query Response
#: Interval (10 s).
CLAMPED_GMI = 4 * 2 * 125.0 + 10.0
DEFAULT_GMI = 2 * 125.0 + 10.0
#: Crafted senders on d1: a host address of its subnet, a link-local address.
ROGUE = {Family.IPV4: "10.2.1.50", Family.IPV6: "fe80::5:1"}
MEMBER_GROUP = {Family.IPV4: "239.8.0.1", Family.IPV6: "ff3e::8:1"}
SOURCES_GROUP = {Family.IPV4: "239.8.0.2", Family.IPV6: "ff3e::8:2"}
WIDE_GROUP = {Family.IPV4: "239.8.0.3", Family.IPV6: "ff3e::8:3"}
D2_GROUP = {Family.IPV4: "239.8.0.4", Family.IPV6: "ff3e::8:4"}
FLOOD_BASE = {Family.IPV4: ipaddress.IPv4Address("239.50.0.0"), Family.IPV6: ipaddress.IPv6Address("ff3e::50:0")}
SOURCE_BASE = {Family.IPV4: ipaddress.IPv4Address("10.99.0.1"), Family.IPV6: ipaddress.IPv6Address("2001:db8:99::1")}


@pytest.fixture(params=PLANES)
def topo(netns_factory, tmp_path, request):  # noqa: F811
    yield from build_proxy_topology(netns_factory, str(tmp_path), PREFIX, request.param)


def one_instance(limits: str) -> str:
    return ("protocols: [IGMPv3, MLDv2]\ninstances:\n  - name: p\n    upstreams: [up0]\n"
            f"    downstreams: [d1, d2]\n    limits: {{{limits}}}\n")


def counters(daemon) -> dict[str, int]:
    return daemon.request("status")["counters"]


def rows_on(daemon, interface: str, family: Family) -> list[dict]:
    name = family.name.lower()
    return [row for row in daemon.request("groups", interface=interface) if row["family"] == name]


def row_for(daemon, interface: str, family: Family, group: str) -> dict | None:
    return next((row for row in rows_on(daemon, interface, family) if row["group"] == group), None)


def report_frame(family: Family, records: tuple[GroupRecord, ...], source: str | None = None) -> bytes:
    """A crafted IGMPv3 / MLDv2 report of ``records`` from ``source`` (the rogue by default)."""
    source = source or ROGUE[family]
    if family is Family.IPV4:
        return igmp_frame(source, igmp.build(igmp.IgmpV3Report(records)))
    payload = mld.build(mld.MldV2Report(records), ipaddress.IPv6Address(source), ipaddress.IPv6Address("ff02::16"))
    return mld_frame(source, payload)


def record(family: Family, kind: RecordType, group: str | IPAddress, sources: int = 0,
           first_source: int = 0) -> GroupRecord:
    base = SOURCE_BASE[family]
    return GroupRecord(kind, ipaddress.ip_address(str(group)),
                       tuple(base + n for n in range(first_source, first_source + sources)))


def flood_groups(family: Family, count: int) -> list[IPAddress]:
    return [FLOOD_BASE[family] + n for n in range(count)]


def query_frame(family: Family, source: str, max_resp_interval: float = 1.0) -> bytes:
    """A General Query with QRV 7 and QQI 31,744 s (the largest QQIC) from ``source``."""
    if family is Family.IPV4:
        payload = igmp.build(igmp.IgmpQuery(3, max_resp_interval, robustness=7, query_interval=31744.0))
        return igmp_frame(source, payload, dst="224.0.0.1")
    payload = mld.build(mld.MldQuery(2, max_resp_interval, robustness=7, query_interval=31744.0),
                        ipaddress.IPv6Address(source), ipaddress.IPv6Address("ff02::1"))
    return mld_frame(source, payload, dst="ff02::1")


def assert_within_caps(daemon, family: Family) -> int:
    """The state held on d1 for ``family`` is within the link's caps; the number of groups."""
    rows = rows_on(daemon, "d1", family)
    assert len(rows) <= MAX_GROUPS, f"{len(rows)} groups held on d1, cap {MAX_GROUPS}"
    for row in rows:
        assert len(row["sources"]) <= MAX_SOURCES, f"{row['group']} holds {len(row['sources'])} sources"
    return len(rows)


@pytest.mark.parametrize("family", [Family.IPV4, Family.IPV6], ids=["igmp", "mld"])
def test_group_and_source_caps_hold_under_a_join_flood(topo, family) -> None:
    daemon = topo.start_daemon(one_instance(f"max_groups: {MAX_GROUPS}, max_sources: {MAX_SOURCES}, "
                                            f"{GENEROUS_RATES}"))
    prefix = family.protocol.lower()
    sender = topo.sender(family)
    member = topo.join(topo.hosts[0], family, MEMBER_GROUP[family])
    wait_for(lambda: row_for(daemon, "d1", family, MEMBER_GROUP[family]), JOIN_BOUND, "the d1 member's group")
    send_until(sender, MEMBER_GROUP[family], member, JOIN_BOUND, "data at the d1 member before the attack")
    before = counters(daemon)

    # Sources: a group at its cap, then a record adding to it and a new group over the cap.
    send_frame(topo.hosts[0], "e0", report_frame(family, (
        record(family, RecordType.MODE_IS_INCLUDE, SOURCES_GROUP[family], MAX_SOURCES),)))
    wait_for(lambda: (row_for(daemon, "d1", family, SOURCES_GROUP[family]) or {}).get("sources"),
             JOIN_BOUND, "the group at its source cap")
    send_frame(topo.hosts[0], "e0", report_frame(family, (
        record(family, RecordType.ALLOW_NEW_SOURCES, SOURCES_GROUP[family], 4, first_source=MAX_SOURCES),
        record(family, RecordType.MODE_IS_INCLUDE, WIDE_GROUP[family], MAX_SOURCES + 4))))
    wait_for(lambda: counters(daemon).get("limit_sources_group", 0) >= before.get("limit_sources_group", 0) + 2,
             SETTLE_BOUND, "two refusals by the per-group source cap")
    held = row_for(daemon, "d1", family, SOURCES_GROUP[family])
    assert held is not None and len(held["sources"]) == MAX_SOURCES, held
    assert row_for(daemon, "d1", family, WIDE_GROUP[family]) is None

    # Groups: far more new groups than the link may hold, sampled as they arrive.
    groups = flood_groups(family, FLOOD_PACKETS * RECORDS_PER_PACKET)
    most = 0
    for start in range(0, len(groups), RECORDS_PER_PACKET):
        chunk = groups[start:start + RECORDS_PER_PACKET]
        send_frame(topo.hosts[0], "e0", report_frame(family, tuple(
            record(family, RecordType.CHANGE_TO_EXCLUDE, g) for g in chunk)))
        most = max(most, assert_within_caps(daemon, family))
    refused = len(groups) - (MAX_GROUPS - 2)
    wait_for(lambda: counters(daemon).get("limit_groups_link", 0) >= before.get("limit_groups_link", 0) + refused,
             SETTLE_BOUND, f"{refused} refusals by the link's group cap")
    assert assert_within_caps(daemon, family) == MAX_GROUPS
    after = counters(daemon)
    assert after["state_groups"] == MAX_GROUPS, after
    assert after["state_sources"] == MAX_SOURCES, after
    for limiter in ("rate_limited_host", "rate_limited_link"):
        assert after.get(f"{prefix}_{limiter}", 0) == before.get(f"{prefix}_{limiter}", 0), \
            f"{prefix}_{limiter} rose: the rate limiter, not the cap, refused"

    # Service goes on: the d1 member's data, a new member on d2 reported upstream and served.
    send_until(sender, MEMBER_GROUP[family], member, JOIN_BOUND, "data at the d1 member after the attack")
    upstream = Capture(topo.up, "u0")
    joined_at = time.monotonic()
    other = topo.join(topo.hosts[1], family, D2_GROUP[family])
    group = ipaddress.ip_address(D2_GROUP[family])
    wait_for(lambda: any(s.records(group) for s in control_messages(upstream, family, joined_at)),
             JOIN_BOUND, f"the d2 host's join for {group} upstream")
    send_until(sender, D2_GROUP[family], other, JOIN_BOUND, "data at the d2 member")
    assert counters(daemon)["state_groups"] == MAX_GROUPS + 1
    for sock in (member, other, sender):
        sock.close()
    upstream.close()
    assert most <= MAX_GROUPS and daemon.process.poll() is None
    assert "Traceback" not in daemon.log()


def two_instances() -> str:
    return ("protocols: [IGMPv3, MLDv2]\n"
            f"limits: {{max_total_groups: {MAX_TOTAL_GROUPS}}}\n"
            "instances:\n"
            f"  - name: a\n    upstreams: [up0]\n    downstreams: [d1]\n    limits: {{{GENEROUS_RATES}}}\n"
            "  - name: b\n    upstreams: [up1]\n    downstreams: [d2]\n"
            "    timers: {query_interval: 4, query_response_interval: 1}\n")


def test_daemon_wide_group_cap_bounds_all_instances(topo, netns_factory) -> None:  # noqa: F811
    family = Family.IPV4
    router_b = add_upstream_router(topo, netns_factory, PREFIX)
    daemon = topo.start_daemon(two_instances())
    before = counters(daemon)
    groups = flood_groups(family, 50)
    send_frame(topo.hosts[0], "e0", report_frame(family, tuple(
        record(family, RecordType.CHANGE_TO_EXCLUDE, g) for g in groups)))
    wait_for(lambda: counters(daemon).get("limit_groups_daemon", 0)
             >= before.get("limit_groups_daemon", 0) + len(groups) - MAX_TOTAL_GROUPS,
             SETTLE_BOUND, "the daemon-wide cap's refusals")
    held_by_a = [row["group"] for row in daemon.request("groups", instance="a")]
    assert len(held_by_a) == MAX_TOTAL_GROUPS, held_by_a
    assert counters(daemon)["state_groups"] == MAX_TOTAL_GROUPS

    # B is refused while A holds the whole daemon's budget (docs/limits.md: refuse new state, count).
    refused_before_b = counters(daemon)["limit_groups_daemon"]
    member = topo.join(topo.hosts[1], family, D2_GROUP[family])
    wait_for(lambda: counters(daemon)["limit_groups_daemon"] > refused_before_b, JOIN_BOUND,
             "instance b's new group refused by the daemon-wide cap")
    assert daemon.request("groups", instance="b") == []
    assert counters(daemon)["state_groups"] == MAX_TOTAL_GROUPS

    # A's state leaves; B's host answers B's next query and is served.
    send_frame(topo.hosts[0], "e0", report_frame(family, tuple(
        record(family, RecordType.CHANGE_TO_INCLUDE, g) for g in held_by_a)))
    wait_for(lambda: counters(daemon)["state_groups"] == 0, SETTLE_BOUND, "instance a's groups to leave")
    upstream_b = Capture(router_b, "u0")
    left_at = time.monotonic()
    wait_for(lambda: daemon.request("groups", instance="b"), SETTLE_BOUND, "instance b's group after a left")
    group = ipaddress.ip_address(D2_GROUP[family])
    wait_for(lambda: any(s.records(group) for s in control_messages(upstream_b, family, left_at)),
             JOIN_BOUND, "instance b's report upstream")
    sender = topo.sender(family, ns=router_b)
    send_until(sender, D2_GROUP[family], member, JOIN_BOUND, "data at instance b's member")
    for sock in (member, sender):
        sock.close()
    upstream_b.close()
    assert daemon.process.poll() is None
    assert "Traceback" not in daemon.log()


def test_rogue_querier_wins_but_group_timers_stay_bounded(topo) -> None:
    # Our IPv4 querier address above the hosts', so a host of the subnet can win the election.
    topo.px.ip("address", "del", "10.2.1.1/24", "dev", "d1")
    topo.px.ip("address", "add", "10.2.1.200/24", "dev", "d1")
    own_ll = link_local(topo.px, "d1")
    rogue = {Family.IPV4: ROGUE[Family.IPV4], Family.IPV6: "fe80::1"}
    assert ipaddress.IPv6Address(rogue[Family.IPV6]) < own_ll, own_ll
    daemon = topo.start_daemon(one_instance(GENEROUS_RATES))
    members = [topo.join(topo.hosts[0], family, MEMBER_GROUP[family]) for family in Family]
    for family in Family:
        wait_for(lambda family=family: (row_for(daemon, "d1", family, MEMBER_GROUP[family]) or {}).get("querier"),
                 JOIN_BOUND, f"the {family.name} member's group on d1, with us as querier")

    # Off-link IPv4 source, lower than ours: dropped before the election.
    before = counters(daemon)
    send_frame(topo.hosts[0], "e0", query_frame(Family.IPV4, "10.0.0.1"))
    wait_for(lambda: counters(daemon).get("igmp_query_not_on_link", 0) == before.get("igmp_query_not_on_link", 0) + 1,
             JOIN_BOUND, "the off-link query counted")
    row = row_for(daemon, "d1", Family.IPV4, MEMBER_GROUP[Family.IPV4])
    assert row["querier"] is True, row
    assert row["group_timer"] <= DEFAULT_GMI, row
    assert counters(daemon).get("querier_values_clamped", 0) == before.get("querier_values_clamped", 0)

    # On-link rogue queriers with a lower address: they win, their values are clamped.
    for family in Family:
        send_frame(topo.hosts[0], "e0", query_frame(family, rogue[family]))
    for family in Family:
        wait_for(lambda family=family: (row_for(daemon, "d1", family, MEMBER_GROUP[family]) or {}).get("querier")
                 is False, JOIN_BOUND, f"the {family.name} rogue to win the election on d1")
    assert counters(daemon).get("querier_values_clamped", 0) >= before.get("querier_values_clamped", 0) + 2

    # A report now sets the group timer to the adopted (clamped) Group Membership Interval.
    for family in Family:
        send_frame(topo.hosts[0], "e0", report_frame(family, (
            record(family, RecordType.MODE_IS_EXCLUDE, MEMBER_GROUP[family]),)))
    for family in Family:
        row = wait_for(lambda family=family: (lambda r: r if r and r["group_timer"] > DEFAULT_GMI else None)(
            row_for(daemon, "d1", family, MEMBER_GROUP[family])), JOIN_BOUND,
            f"the {family.name} group timer set from the rogue's values")
        assert row["group_timer"] <= CLAMPED_GMI + 0.001, row
        assert row["querier"] is False, row
    for sock in members:
        sock.close()
    assert daemon.process.poll() is None
    assert "Traceback" not in daemon.log()
