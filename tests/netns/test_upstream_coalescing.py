"""Upstream report amplification, against the running daemon and a real Linux host.

A host on a downstream joins 150 groups at once with the kernel's own IGMP / MLD
host stack. A packet socket on the upstream router counts the proxy's report
packets: the state changes leave packed (IGMPv3 carries up to 183 records per
1,500-octet report, MLDv2 72) and their retransmissions merged, so far fewer
packets go upstream than there are groups. An upstream General Query is then
answered with every group in report-sized packets (docs/upstream-reports.md).
"""

from __future__ import annotations

import ipaddress
import math
import socket
import struct
import time

import pytest

from mcproxy_pmip.addresses import Family
from mcproxy_pmip.wire.records import RecordType
from tests.netns.netns_fixtures import Netns, netns_factory  # noqa: F401 (fixture)
from tests.netns.proxy_harness import Capture, build_proxy_topology, wait_for
from tests.netns.scenario_tools import Querier, reports_from

pytestmark = pytest.mark.netns

PREFIX = "hC-"
GROUPS = 150
#: generous: the daemon sends about two packets per report the host sends; 150 groups
#: one by one would be 150 packets plus 150 retransmissions
MAX_UPSTREAM_PACKETS = 40
#: the daemon's robustness 2 with a 1 s Unsolicited Report Interval: changes are
#: retransmitted once within 1 s; the window also covers the host's own retransmissions
SETTLE_INTERVAL = 2.5
#: records per 1,500-octet report: IGMPv3 8 octets each, MLDv2 20
PER_PACKET = {Family.IPV4: 183, Family.IPV6: 72}

CONFIG = """\
protocols: [IGMPv3, MLDv2]
instances:
  - name: p
    upstreams: [up0]
    downstreams: [d1, d2]
    timers: {unsolicited_report_interval: 1}
    limits: {max_groups: 1024, max_sources: 64, max_link_sources: 1024, max_instance_groups: 4096,
             max_records_per_packet: 1024, report_rate: 1000.0, report_burst: 1000,
             host_report_rate: 1000.0, host_report_burst: 1000}
"""


@pytest.fixture
def topo(netns_factory, tmp_path):  # noqa: F811
    yield from build_proxy_topology(netns_factory, str(tmp_path), PREFIX, "nftables")


def group_names(family: Family) -> list[str]:
    base = ipaddress.ip_address("239.7.0.0" if family is Family.IPV4 else "ff15::7:0")
    return [str(base + index + 1) for index in range(GROUPS)]


def upstream_reports(capture: Capture, family: Family, since: float, wanted: set) -> list:
    """The proxy's reports on the upstream link naming a test group (the proxy's own
    kernel reports its link-local groups there too)."""
    source = ipaddress.ip_address("10.1.0.2") if family is Family.IPV4 else None
    return [s for s in reports_from(capture, family, source, since)
            if any(r.group in wanted for r in s.records())]


def join_at_once(host: Netns, family: Family, groups: list[str], interface: str = "e0") -> list[socket.socket]:
    """One socket per group joined on ``interface``, all in one go (the host stack packs its reports)."""
    sockets = []
    with host.entered():
        ifindex = socket.if_nametoindex(interface)
        for group in groups:
            if family is Family.IPV4:
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                mreq = struct.pack("4s4si", socket.inet_aton(group), bytes(4), ifindex)
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
            else:
                sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
                mreq = socket.inet_pton(socket.AF_INET6, group) + struct.pack("@I", ifindex)
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)
            sockets.append(sock)
    return sockets


def is_change(seen) -> bool:
    return all(r.record_type not in (RecordType.MODE_IS_INCLUDE, RecordType.MODE_IS_EXCLUDE)
               for r in seen.records())


@pytest.mark.parametrize("family", [Family.IPV4, Family.IPV6], ids=["igmp", "mld"])
def test_a_burst_of_joins_leaves_few_packets_upstream_and_a_query_is_answered_packed(topo, family) -> None:
    topo.start_daemon(CONFIG)
    capture = Capture(topo.up, "u0")
    sockets: list[socket.socket] = []
    try:
        capture.drain()
        start = time.monotonic()
        names = group_names(family)
        sockets = join_at_once(topo.hosts[0], family, names)
        wanted = {ipaddress.ip_address(group) for group in names}

        def all_joined():
            seen = {record.group for report in upstream_reports(capture, family, start, wanted)
                    for record in report.records()}
            return wanted <= seen
        wait_for(all_joined, 10, f"all {GROUPS} groups reported upstream")
        joined_at = time.monotonic()
        wait_for(lambda: time.monotonic() - joined_at >= SETTLE_INTERVAL, SETTLE_INTERVAL + 1,
                 "the retransmission window to pass", interval=0.1)
        sent = upstream_reports(capture, family, start, wanted)
        changes = [seen for seen in sent if is_change(seen)]
        print(f"upstream_reports family={family.name} groups={GROUPS} packets={len(sent)} "
              f"state_change_packets={len(changes)} records={sum(len(s.records()) for s in sent)}")
        assert len(sent) <= MAX_UPSTREAM_PACKETS, (
            f"{len(sent)} upstream report packets for {GROUPS} joined groups")
        assert sum(len(s.records()) for s in changes) >= 2 * GROUPS, \
            "every join reported and retransmitted once (robustness 2)"
        assert len(changes) <= 2 * math.ceil(GROUPS / PER_PACKET[family]) + 4, (
            f"{len(changes)} state-change packets: changes not packed or retransmissions not merged")

        querier = Querier(topo.up, "u0")
        try:
            asked = querier.query(family, 2.0)
        finally:
            querier.close()

        def answered():
            answer = [s for s in upstream_reports(capture, family, asked, wanted) if not is_change(s)]
            groups = {r.group for s in answer for r in s.records()}
            return answer if wanted <= groups else None
        answer = wait_for(answered, 5, f"the answer to the General Query naming all {GROUPS} groups")
        print(f"general_query_answer family={family.name} packets={len(answer)} "
              f"records={[len(s.records()) for s in answer]}")
        assert len(answer) <= math.ceil(GROUPS / PER_PACKET[family]) + 1, (
            f"the answer took {len(answer)} packets for {GROUPS} records")
    finally:
        for sock in sockets:
            sock.close()
        capture.close()
