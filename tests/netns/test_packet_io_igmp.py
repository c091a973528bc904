"""IgmpPacketSocket against a real Linux host stack across a veth (RFC 3376 §4, RFC 2236, docs/scenarios.md item 2).

The proxy side holds no IP membership at all: the packet socket sees IGMP
of every interface, including IGMPv2 reports sent to the group itself.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from collections.abc import Iterator

import pytest

from mcproxy_pmip.addresses import ALL_ROUTERS_V4, ALL_SYSTEMS, ALL_V3_ROUTERS
from mcproxy_pmip.errors import KernelError
from mcproxy_pmip.kernel.igmp_socket import ReceivedIgmp
from mcproxy_pmip.kernel.packet_socket import IgmpPacketSocket
from mcproxy_pmip.wire import checksum, igmp
from mcproxy_pmip.wire.records import RecordType
from packet_io_fixtures import (HOST_V4, PROXY_V4, Link, allmulti_counts, collect, inject, ipv4_packet, link,
                                members, netns_factory, read_until, send_udp)

__all__ = ["link", "members", "netns_factory"]  # fixtures, imported for pytest

pytestmark = pytest.mark.netns

GROUP = ipaddress.IPv4Address("239.1.2.3")
MARKER = ipaddress.IPv4Address("239.9.9.9")


@pytest.fixture
def proxy_socket(link: Link) -> Iterator[IgmpPacketSocket]:
    """An IgmpPacketSocket in the proxy namespace, watching d0."""
    with link.proxy.entered():
        sock = IgmpPacketSocket()
    try:
        sock.watch(link.proxy_ifindex)
        yield sock
    finally:
        sock.close()


def from_host(packet: ReceivedIgmp, kind: type) -> igmp.IgmpMessage | None:
    """The parsed message when ``packet`` is a ``kind`` from the host (not from us), else None."""
    if packet.src == PROXY_V4.ip:
        return None
    message = igmp.parse(packet.payload)
    return message if isinstance(message, kind) else None


def reports_group(packet: ReceivedIgmp, record_type: RecordType, group: ipaddress.IPv4Address) -> bool:
    message = from_host(packet, igmp.IgmpV3Report)
    return message is not None and any(
        (r.record_type, r.group) == (record_type, group) for r in message.records)


def marker_report(link: Link) -> None:
    """A hand-made IGMPv2 report for MARKER: what passes the filter, to know earlier frames were handled."""
    inject(link, ipv4_packet(HOST_V4.ip, MARKER, igmp.build(igmp.IgmpV2Report(MARKER))))


def is_marker(packet: ReceivedIgmp) -> bool:
    return packet.dst == MARKER


def test_receives_host_v3_report_with_ifindex_ttl_and_router_alert(
        link: Link, proxy_socket: IgmpPacketSocket, members) -> None:
    members.join(link.host, link.host_ifindex, GROUP)
    got = read_until(proxy_socket, lambda p: reports_group(p, RecordType.CHANGE_TO_EXCLUDE, GROUP),
                     "the host's IGMPv3 TO_EX report")
    packet = next(p for p in got if reports_group(p, RecordType.CHANGE_TO_EXCLUDE, GROUP))
    assert packet.ifindex == link.proxy_ifindex
    assert (packet.src, packet.dst, packet.ttl, packet.router_alert) == (HOST_V4.ip, ALL_V3_ROUTERS, 1, True)
    assert checksum.is_valid(packet.payload), "payload must be exactly the IGMP message"
    assert proxy_socket.drops == {}


def test_receives_v2_report_to_the_group_and_leave_without_any_membership(
        link: Link, proxy_socket: IgmpPacketSocket, members) -> None:
    link.host.sysctl(f"net.ipv4.conf.{link.host_if}.force_igmp_version", 2)
    members.join(link.host, link.host_ifindex, GROUP)
    got = read_until(proxy_socket, lambda p: from_host(p, igmp.IgmpV2Report) is not None,
                     "the host's IGMPv2 Report")
    report = next(p for p in got if from_host(p, igmp.IgmpV2Report) is not None)
    assert (report.ifindex, report.dst, report.ttl, report.router_alert) == (link.proxy_ifindex, GROUP, 1, True)
    members.leave(link.host, link.host_ifindex, GROUP)
    got = read_until(proxy_socket, lambda p: from_host(p, igmp.IgmpV2Leave) is not None,
                     "the host's IGMPv2 Leave")
    leave = next(p for p in got if from_host(p, igmp.IgmpV2Leave) is not None)
    assert from_host(leave, igmp.IgmpV2Leave).group == GROUP
    assert (leave.ifindex, leave.src, leave.dst, leave.ttl) == (link.proxy_ifindex, HOST_V4.ip, ALL_ROUTERS_V4, 1)


@pytest.mark.parametrize("host_address", [None, "198.51.100.7/24"], ids=["unnumbered", "foreign-subnet"])
def test_receives_reports_from_any_source_address(
        link: Link, proxy_socket: IgmpPacketSocket, members, host_address: str | None) -> None:
    """docs/scenarios.md item 2: 0.0.0.0 and off-subnet sources arrive, identified by the interface index."""
    link.host.ip("address", "flush", "dev", link.host_if)
    expected = ipaddress.IPv4Address(0)
    if host_address is not None:
        link.host.ip("address", "add", host_address, "dev", link.host_if)
        expected = ipaddress.IPv4Interface(host_address).ip
    members.join(link.host, link.host_ifindex, GROUP)
    got = read_until(proxy_socket, lambda p: reports_group(p, RecordType.CHANGE_TO_EXCLUDE, GROUP),
                     f"a report from {expected}")
    packet = next(p for p in got if reports_group(p, RecordType.CHANGE_TO_EXCLUDE, GROUP))
    assert (packet.src, packet.ifindex) == (expected, link.proxy_ifindex)


def test_sent_query_has_ttl_1_router_alert_tos_is_answered_and_never_read_back(
        link: Link, proxy_socket: IgmpPacketSocket, members) -> None:
    from scapy.layers.inet import IP
    from scapy.layers.l2 import Ether

    with link.host.entered():
        capture = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
    try:
        capture.bind((link.host_if, 0))
        capture.setblocking(False)
        members.join(link.host, link.host_ifindex, GROUP)
        query = igmp.build(igmp.IgmpQuery(3, 0.5, None, robustness=2, query_interval=125.0))
        proxy_socket.send(link.proxy_ifindex, PROXY_V4.ip, ALL_SYSTEMS, query)

        class Capture:
            def fileno(self) -> int:
                return capture.fileno()

            def read_packets(self) -> list:
                frames = []
                while True:
                    try:
                        frames.append(Ether(capture.recv(65535))[IP])
                    except BlockingIOError:
                        return frames

        seen = next(ip for ip in read_until(Capture(), lambda ip: ip.dst == str(ALL_SYSTEMS) and ip.proto == 2,
                                            "our query on the host's link")
                    if ip.dst == str(ALL_SYSTEMS))
        assert (seen.src, seen.ttl, seen.tos) == (str(PROXY_V4.ip), 1, 0xC0)
        assert bytes(seen)[20:24] == b"\x94\x04\x00\x00", "Router Alert option"
        assert bytes(seen.payload) == query
    finally:
        capture.close()
    # The host kernel answers only a valid query: a current-state IS_EX record.
    got = read_until(proxy_socket, lambda p: reports_group(p, RecordType.MODE_IS_EXCLUDE, GROUP),
                     "the host's answer to our General Query")
    assert [p.ifindex for p in got if reports_group(p, RecordType.MODE_IS_EXCLUDE, GROUP)] == [link.proxy_ifindex]
    assert [p for p in got if p.src == PROXY_V4.ip] == [], "our own sends are never read"
    assert proxy_socket.drops == {}, "by the filter, not by the decoder"


def test_udp_data_is_not_read(link: Link, proxy_socket: IgmpPacketSocket) -> None:
    send_udp(link, GROUP)
    marker_report(link)
    got = read_until(proxy_socket, is_marker, "the marker report after the data")
    assert [p.dst for p in got] == [MARKER]
    assert proxy_socket.drops == {}, "the filter, not the decoder, kept the UDP datagram out"


@pytest.mark.parametrize(("packet", "reason"), [
    (ipv4_packet(HOST_V4.ip, GROUP, igmp.build(igmp.IgmpV2Report(GROUP)), good_checksum=False),
     "bad_ip_checksum"),
    (ipv4_packet(HOST_V4.ip, GROUP, igmp.build(igmp.IgmpV2Report(GROUP)), fragment=0x2000), "ip_fragment"),
], ids=["bad-header-checksum", "fragment"])
def test_broken_frames_are_dropped_and_counted(link: Link, proxy_socket: IgmpPacketSocket,
                                               packet: bytes, reason: str) -> None:
    inject(link, packet)
    marker_report(link)
    got = read_until(proxy_socket, is_marker, "the marker report after the broken frame")
    assert [p.dst for p in got] == [MARKER]
    assert proxy_socket.drops == {reason: 1}


def test_watch_requests_allmulti_once_and_unwatch_takes_it_back(link: Link) -> None:
    with link.proxy.entered():
        sock = IgmpPacketSocket()
    try:
        assert allmulti_counts(link.proxy)[link.proxy_if] == 0
        sock.watch(link.proxy_ifindex)
        sock.watch(link.proxy_ifindex)
        assert allmulti_counts(link.proxy)[link.proxy_if] == 1
        sock.unwatch(link.proxy_ifindex)
        assert allmulti_counts(link.proxy)[link.proxy_if] == 0
        sock.unwatch(link.proxy_ifindex)
        sock.watch(link.proxy_ifindex)
        assert allmulti_counts(link.proxy)[link.proxy_if] == 1
        sock.close()
        assert allmulti_counts(link.proxy)[link.proxy_if] == 0, "closing takes back every request"
    finally:
        sock.close()


def test_unwatch_of_a_vanished_interface_does_not_raise(link: Link, proxy_socket: IgmpPacketSocket) -> None:
    link.proxy.ip("link", "delete", link.proxy_if)
    proxy_socket.unwatch(link.proxy_ifindex)
    proxy_socket.unwatch(link.proxy_ifindex)


def test_watch_of_a_missing_interface_raises_kernel_error(link: Link, proxy_socket: IgmpPacketSocket) -> None:
    with pytest.raises(KernelError) as caught:
        proxy_socket.watch(link.proxy_ifindex + 1000)
    assert caught.value.errno == errno.ENODEV
    assert "PACKET_ADD_MEMBERSHIP" in caught.value.op


def test_receives_on_every_interface_without_watch(link: Link, members) -> None:
    """Veths do not filter multicast MACs: the socket is not bound to any interface."""
    with link.proxy.entered():
        sock = IgmpPacketSocket()
    try:
        members.join(link.host, link.host_ifindex, GROUP)
        got = collect(sock, lambda got: any(reports_group(p, RecordType.CHANGE_TO_EXCLUDE, GROUP) for p in got),
                      "a report on an unwatched veth")
        assert {p.ifindex for p in got} == {link.proxy_ifindex}
    finally:
        sock.close()



def test_frames_for_other_hosts_are_not_read(link: Link, proxy_socket: IgmpPacketSocket) -> None:
    """A report to another host's unicast MAC arrives as PACKET_OTHERHOST: the filter drops it."""
    inject(link, ipv4_packet(HOST_V4.ip, GROUP, igmp.build(igmp.IgmpV2Report(GROUP))),
           mac=b"\x02\x00\x00\x00\x00\x99")
    marker_report(link)
    got = read_until(proxy_socket, is_marker, "the marker report after the frame for another host")
    assert [p.dst for p in got] == [MARKER]
    assert proxy_socket.drops == {}, "by the filter, not by the decoder"
