"""Hostile hosts on a downstream link against the running daemon's receive path.

A host namespace on d1 puts crafted frames on its link (AF_PACKET), paced
well above the configured report rates: one host flooding, or one host
spoofing a new source address per report. The daemon must count what its
buckets refuse, admit no more than the buckets allow (a generous bound:
burst + rate x duration + slack), keep its control socket answering, and
still take a kernel host's join on d2 through to the upstream router within
a generous bound. Per-packet caps and off-link queries are counted and
change nothing beyond the caps.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time

import pytest

from mcproxy_pmip.addresses import Family
from mcproxy_pmip.wire import igmp, mld
from mcproxy_pmip.wire.records import GroupRecord, RecordType
from tests.netns.netns_fixtures import netns_factory  # noqa: F401 (fixture)
from tests.netns.proxy_harness import Capture, build_proxy_topology, igmp_frame, mld_frame, send_frame, wait_for
from tests.netns.scenario_tools import control_messages

pytestmark = pytest.mark.netns

PREFIX = "hB-"
FLOOD_SECONDS = 3.0
FLOOD_RATE = 800  # frames per second: far above every bucket below
JOIN_BOUND = 5.0  # seconds for the other link's join to reach upstream (generous)
STATUS_BOUND = 2.0  # seconds for one status answer during the flood (generous)
HOST_RATE, HOST_BURST, LINK_RATE, LINK_BURST = 10, 10, 40, 40
SLACK = 10  # the other host's own reports, and timing
V4_HOST, V6_HOST = "10.2.1.2", "fe80::2:99"
JOIN_GROUP = {Family.IPV4: "239.8.0.1", Family.IPV6: "ff3e::8:1"}


def config(**limits: int) -> str:
    text = ", ".join(f"{key}: {value}" for key, value in limits.items())
    return ("protocols: [IGMPv3, MLDv2]\ninstances:\n  - name: p\n    upstreams: [up0]\n"
            f"    downstreams: [d1, d2]\n    limits: {{{text}}}\n")


@pytest.fixture
def topo(netns_factory, tmp_path):  # noqa: F811
    yield from build_proxy_topology(netns_factory, str(tmp_path), PREFIX, "nftables")


def counters(daemon) -> dict[str, int]:
    return daemon.request("status")["counters"]


def crafted_report(family: Family, index: int, source: str) -> bytes:
    """A report in the shape of the CPU attack: one IS_IN with sources, then ALLOW records for that group."""
    if family is Family.IPV4:
        group = ipaddress.IPv4Address("239.77.0.0") + index % 200
        sources = tuple(ipaddress.IPv4Address("10.99.0.0") + n for n in range(32))
        records = (GroupRecord(RecordType.MODE_IS_INCLUDE, group, sources),
                   *(GroupRecord(RecordType.ALLOW_NEW_SOURCES, group, ()) for _ in range(40)))
        return igmp_frame(source, igmp.build(igmp.IgmpV3Report(records)))
    group = ipaddress.IPv6Address("ff3e::77:0") + index % 200
    sources = tuple(ipaddress.IPv6Address("2001:db8:99::") + n for n in range(16))
    records = (GroupRecord(RecordType.MODE_IS_INCLUDE, group, sources),
               *(GroupRecord(RecordType.ALLOW_NEW_SOURCES, group, ()) for _ in range(20)))
    src = ipaddress.IPv6Address(source)
    return mld_frame(source, mld.build(mld.MldV2Report(records), src, ipaddress.IPv6Address("ff02::16")))


class Flood:
    """Sends ``frames(i)`` out of ``e0`` of ``ns`` at ``FLOOD_RATE`` in a thread, for ``FLOOD_SECONDS``."""

    def __init__(self, ns, frames) -> None:
        with ns.entered():
            self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
            self.sock.bind(("e0", 0))
        self.frames = frames
        self.sent = 0
        self.started_at = self.ended_at = 0.0
        self.thread = threading.Thread(target=self._run, name="hB-flood", daemon=True)

    def _run(self) -> None:
        self.started_at = time.monotonic()
        interval = 1.0 / FLOOD_RATE
        while (now := time.monotonic()) - self.started_at < FLOOD_SECONDS:
            self.sock.send(self.frames(self.sent))
            self.sent += 1
            time.sleep(max(0.0, self.started_at + self.sent * interval - now))
        self.ended_at = time.monotonic()

    def __enter__(self) -> Flood:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.thread.join(FLOOD_SECONDS + 10)
        self.sock.close()


def spoofed(family: Family, index: int) -> str:
    if family is Family.IPV4:
        return str(ipaddress.IPv4Address("10.2.1.10") + index % 240)
    return str(ipaddress.IPv6Address("fe80::5:0") + index)


@pytest.mark.parametrize("attack", ["one-host", "spoofed-sources"])
@pytest.mark.parametrize("family", [Family.IPV4, Family.IPV6], ids=["igmp", "mld"])
def test_report_flood_is_rate_limited_and_another_link_still_joins(topo, family, attack) -> None:
    daemon = topo.start_daemon(config(host_report_rate=HOST_RATE, host_report_burst=HOST_BURST,
                                      report_rate=LINK_RATE, report_burst=LINK_BURST))
    prefix = family.protocol.lower()
    host = V4_HOST if family is Family.IPV4 else V6_HOST
    if attack == "one-host":
        frames, counter, rate, burst = (lambda i: crafted_report(family, i, host)), "rate_limited_host", \
            HOST_RATE, HOST_BURST
    else:
        frames, counter, rate, burst = (lambda i: crafted_report(family, i, spoofed(family, i))), \
            "rate_limited_link", LINK_RATE, LINK_BURST
    before = counters(daemon)
    upstream = Capture(topo.up, "u0")
    group = ipaddress.ip_address(JOIN_GROUP[family])
    status_times = []
    with Flood(topo.hosts[0], frames) as flood:
        wait_for(lambda: counters(daemon).get(f"{prefix}_{counter}", 0) > before.get(f"{prefix}_{counter}", 0),
                 5, f"{prefix}_{counter} to rise under the flood")
        joined_at = time.monotonic()
        member = topo.join(topo.hosts[1], family, str(group))
        wait_for(lambda: any(s.records(group) for s in control_messages(upstream, family, joined_at)),
                 JOIN_BOUND, f"the d2 host's join for {group} upstream during the flood")
        join_delay = time.monotonic() - joined_at
        while flood.thread.is_alive():
            asked = time.monotonic()
            counters(daemon)
            status_times.append(time.monotonic() - asked)
            time.sleep(0.1)
    member.close()
    upstream.close()
    after = counters(daemon)
    refused = after.get(f"{prefix}_{counter}", 0) - before.get(f"{prefix}_{counter}", 0)
    admitted = after.get(f"{prefix}_ReportReceived", 0) - before.get(f"{prefix}_ReportReceived", 0)
    bound = burst + rate * (flood.ended_at - flood.started_at + 1.0) + SLACK
    assert flood.sent > 4 * bound, f"the flood ({flood.sent} frames) must exceed the buckets"
    assert admitted <= bound, f"{admitted} reports admitted, at most {bound:.0f} allowed ({after})"
    assert refused >= flood.sent // 2, f"only {refused} of {flood.sent} refused ({after})"
    assert join_delay < JOIN_BOUND
    assert status_times and max(status_times) < STATUS_BOUND, status_times
    assert daemon.process.poll() is None


@pytest.mark.parametrize("family", [Family.IPV4, Family.IPV6], ids=["igmp", "mld"])
def test_records_beyond_the_per_packet_cap_are_dropped_and_counted(topo, family) -> None:
    daemon = topo.start_daemon(config(max_records_per_packet=8, max_sources_per_packet=16))
    prefix = family.protocol.lower()
    if family is Family.IPV4:
        groups = [ipaddress.IPv4Address("239.66.0.1") + n for n in range(40)]
        records = tuple(GroupRecord(RecordType.CHANGE_TO_EXCLUDE, g) for g in groups)
        frame = igmp_frame(V4_HOST, igmp.build(igmp.IgmpV3Report(records)))
    else:
        groups = [ipaddress.IPv6Address("ff3e::66:1") + n for n in range(40)]
        records = tuple(GroupRecord(RecordType.CHANGE_TO_EXCLUDE, g) for g in groups)
        src = ipaddress.IPv6Address(V6_HOST)
        frame = mld_frame(V6_HOST, mld.build(mld.MldV2Report(records), src, ipaddress.IPv6Address("ff02::16")))
    send_frame(topo.hosts[0], "e0", frame)
    wait_for(lambda: counters(daemon).get(f"{prefix}_records_over_cap", 0) == 32, 5,
             f"{prefix}_records_over_cap to reach 32")
    wait_for(lambda: len(daemon.request("groups", interface="d1")) >= 8, 5, "the first eight groups on d1")
    on_d1 = {row["group"] for row in daemon.request("groups", interface="d1")}
    assert on_d1 == {str(g) for g in groups[:8]}


def test_queries_from_off_link_sources_are_ignored_and_counted(topo) -> None:
    daemon = topo.start_daemon(config())
    rogue = igmp.build(igmp.IgmpQuery(3, 10.0, robustness=7, query_interval=31744.0))
    send_frame(topo.hosts[0], "e0", igmp_frame("192.0.2.1", rogue, dst="224.0.0.1"))
    send_frame(topo.hosts[0], "e0", igmp_frame("0.0.0.0", rogue, dst="224.0.0.1"))
    src = ipaddress.IPv6Address("fd02:1::2")
    rogue6 = mld.build(mld.MldQuery(2, 10.0, robustness=7, query_interval=31744.0), src,
                       ipaddress.IPv6Address("ff02::1"))
    send_frame(topo.hosts[0], "e0", mld_frame(str(src), rogue6, dst="ff02::1"))
    wait_for(lambda: counters(daemon).get("igmp_query_not_on_link", 0) == 2, 5, "two off-link IGMP queries counted")
    wait_for(lambda: counters(daemon).get("mld_source_not_link_local", 0) == 1, 5, "the global-source MLD query")
    on_link = igmp.build(igmp.IgmpQuery(3, 10.0, robustness=2, query_interval=125.0))
    before = counters(daemon).get("igmp_QueryReceived", 0)
    send_frame(topo.hosts[0], "e0", igmp_frame(V4_HOST, on_link, dst="224.0.0.1"))
    wait_for(lambda: counters(daemon).get("igmp_QueryReceived", 0) == before + 1, 5, "the on-link query taken")
    assert counters(daemon)["igmp_query_not_on_link"] == 2
