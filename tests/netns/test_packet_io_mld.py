"""MldPacketSocket against a real Linux host stack across a veth (RFC 3810 §5, RFC 2710, RFC 2711).

The proxy side holds no IPv6 membership: the packet socket sees MLD of
every interface, with or without the Hop-by-Hop header, and verifies the
ICMPv6 checksum itself.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import struct
from collections.abc import Iterator

import pytest

from mcproxy_pmip.addresses import ALL_MLDV2_ROUTERS, ALL_NODES, ALL_ROUTERS_V6
from mcproxy_pmip.errors import KernelError
from mcproxy_pmip.kernel.mld_socket import ReceivedMld
from mcproxy_pmip.kernel.packet_socket import MldPacketSocket
from mcproxy_pmip.wire import mld
from mcproxy_pmip.wire.records import RecordType
from packet_io_fixtures import (Link, allmulti_counts, inject, ipv6_packet, link, link_local, members,
                                netns_factory, read_until, send_udp)

__all__ = ["link", "members", "netns_factory"]  # fixtures, imported for pytest

pytestmark = pytest.mark.netns

GROUP = ipaddress.IPv6Address("ff3e::4242")
MARKER = ipaddress.IPv6Address("ff3e::9999")
ECHO_REQUEST = 128


@pytest.fixture
def proxy_socket(link: Link) -> Iterator[MldPacketSocket]:
    """An MldPacketSocket in the proxy namespace, watching d0."""
    with link.proxy.entered():
        sock = MldPacketSocket()
    try:
        sock.watch(link.proxy_ifindex)
        yield sock
    finally:
        sock.close()


@pytest.fixture
def host_link_local(link: Link) -> ipaddress.IPv6Address:
    return link_local(link.host, link.host_if)


def from_host(source: ipaddress.IPv6Address, packet: ReceivedMld, kind: type) -> mld.MldMessage | None:
    """The parsed message when ``packet`` is a ``kind`` from ``source``, else None."""
    if packet.src != source:
        return None
    message = mld.parse(packet.payload)
    return message if isinstance(message, kind) else None


def reports_group(source: ipaddress.IPv6Address, packet: ReceivedMld, record_type: RecordType,
                  group: ipaddress.IPv6Address) -> bool:
    message = from_host(source, packet, mld.MldV2Report)
    return message is not None and any((r.record_type, r.group) == (record_type, group) for r in message.records)


def marker_report(link: Link, source: ipaddress.IPv6Address) -> None:
    """A hand-made MLDv1 report for MARKER: what passes the filter, to know earlier frames were handled."""
    inject(link, ipv6_packet(source, MARKER, mld.build(mld.MldV1Report(MARKER), source, MARKER)))


def is_marker(packet: ReceivedMld) -> bool:
    return packet.dst == MARKER


def crafted(got: list[ReceivedMld]) -> list[ReceivedMld]:
    """What was read, less the MLDv2 reports the host's kernel sends by itself (solicited-node groups)."""
    return [p for p in got if p.dst != ALL_MLDV2_ROUTERS]


def test_receives_host_v2_report_with_ifindex_hop_limit_and_router_alert(
        link: Link, proxy_socket: MldPacketSocket, host_link_local: ipaddress.IPv6Address, members) -> None:
    members.join(link.host, link.host_ifindex, GROUP)

    def wanted(packet: ReceivedMld) -> bool:
        return reports_group(host_link_local, packet, RecordType.CHANGE_TO_EXCLUDE, GROUP)

    packet = next(p for p in read_until(proxy_socket, wanted, "the host's MLDv2 TO_EX report") if wanted(p))
    assert (packet.ifindex, packet.dst, packet.hop_limit, packet.router_alert) == (
        link.proxy_ifindex, ALL_MLDV2_ROUTERS, 1, True)
    assert proxy_socket.drops == {}


def test_receives_v1_report_to_the_group_and_done_without_any_membership(
        link: Link, proxy_socket: MldPacketSocket, host_link_local: ipaddress.IPv6Address, members) -> None:
    link.host.sysctl(f"net.ipv6.conf.{link.host_if}.force_mld_version", 1)
    members.join(link.host, link.host_ifindex, GROUP)

    def report(packet: ReceivedMld) -> bool:
        message = from_host(host_link_local, packet, mld.MldV1Report)
        return message is not None and message.group == GROUP

    got = read_until(proxy_socket, report, "the host's MLDv1 Report")
    packet = next(p for p in got if report(p))
    assert (packet.ifindex, packet.dst, packet.hop_limit, packet.router_alert) == (link.proxy_ifindex, GROUP, 1, True)
    members.leave(link.host, link.host_ifindex, GROUP)

    def done(packet: ReceivedMld) -> bool:
        message = from_host(host_link_local, packet, mld.MldDone)
        return message is not None and message.group == GROUP

    packet = next(p for p in read_until(proxy_socket, done, "the host's MLDv1 Done") if done(p))
    assert (packet.ifindex, packet.dst, packet.hop_limit, packet.router_alert) == (
        link.proxy_ifindex, ALL_ROUTERS_V6, 1, True)


def test_mld_without_hop_by_hop_header_passes_the_filter(
        link: Link, proxy_socket: MldPacketSocket, host_link_local: ipaddress.IPv6Address) -> None:
    done = mld.build(mld.MldDone(GROUP), host_link_local, ALL_ROUTERS_V6)
    inject(link, ipv6_packet(host_link_local, ALL_ROUTERS_V6, done, hop_by_hop=False))
    marker_report(link, host_link_local)
    got = read_until(proxy_socket, is_marker, "the marker report after the Done")
    assert [(p.dst, p.router_alert) for p in crafted(got)] == [(ALL_ROUTERS_V6, False), (MARKER, True)]
    assert crafted(got)[0].payload == done


def test_only_mld_passes_the_filter(link: Link, proxy_socket: MldPacketSocket,
                                    host_link_local: ipaddress.IPv6Address) -> None:
    """Echo requests (with and without Hop-by-Hop), UDP data and frames for another host never arrive."""
    router = link_local(link.proxy, link.proxy_if)
    with link.host.entered():
        pinger = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    try:
        pinger.sendto(struct.pack("!BBHHH", ECHO_REQUEST, 0, 0, 1, 1), (str(router), 0, 0, link.host_ifindex))
    finally:
        pinger.close()
    echo = struct.pack("!BBHHH", ECHO_REQUEST, 0, 0, 1, 2)
    inject(link, ipv6_packet(host_link_local, ALL_NODES, echo))
    send_udp(link, GROUP)
    report = mld.build(mld.MldV1Report(GROUP), host_link_local, GROUP)
    inject(link, ipv6_packet(host_link_local, GROUP, report), mac=b"\x02\x00\x00\x00\x00\x99")
    marker_report(link, host_link_local)
    got = read_until(proxy_socket, is_marker, "the marker report after what the filter drops")
    assert [p.dst for p in crafted(got)] == [MARKER]
    assert proxy_socket.drops == {}, "by the filter, not by the decoder"


def test_bad_icmpv6_checksum_is_dropped_and_counted(
        link: Link, proxy_socket: MldPacketSocket, host_link_local: ipaddress.IPv6Address) -> None:
    report = bytearray(mld.build(mld.MldV1Report(GROUP), host_link_local, GROUP))
    report[2] ^= 0x5A
    inject(link, ipv6_packet(host_link_local, GROUP, bytes(report)))
    marker_report(link, host_link_local)
    got = read_until(proxy_socket, is_marker, "the marker report after the bad checksum")
    assert [p.dst for p in crafted(got)] == [MARKER]
    assert proxy_socket.drops == {"bad_icmpv6_checksum": 1}


def test_sent_query_has_hop_limit_1_router_alert_link_local_source_and_is_never_read_back(
        link: Link, proxy_socket: MldPacketSocket, host_link_local: ipaddress.IPv6Address, members) -> None:
    from scapy.layers.inet6 import IPv6, IPv6ExtHdrHopByHop, RouterAlert
    from scapy.layers.l2 import Ether

    router = link_local(link.proxy, link.proxy_if)
    with link.host.entered():
        capture = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x86DD))
    try:
        capture.bind((link.host_if, 0))
        capture.setblocking(False)
        members.join(link.host, link.host_ifindex, GROUP)
        query = mld.build(mld.MldQuery(2, 0.5, None, robustness=2, query_interval=125.0))
        proxy_socket.send(link.proxy_ifindex, router, ALL_NODES, query)

        class Capture:
            def fileno(self) -> int:
                return capture.fileno()

            def read_packets(self) -> list:
                frames = []
                while True:
                    try:
                        frames.append(Ether(capture.recv(65535))[IPv6])
                    except BlockingIOError:
                        return frames

        def is_query(ip) -> bool:
            return (ip.dst == str(ALL_NODES) and ip.nh == 0
                    and bytes(ip[IPv6ExtHdrHopByHop].payload)[:1] == bytes((mld.MULTICAST_LISTENER_QUERY,)))

        seen = next(ip for ip in read_until(Capture(), is_query, "our query on the host's link") if is_query(ip))
        assert (seen.src, seen.hlim) == (str(router), 1)
        hop_by_hop = seen[IPv6ExtHdrHopByHop]
        alerts = [option for option in hop_by_hop.options if isinstance(option, RouterAlert)]
        assert [alert.value for alert in alerts] == [0], "Router Alert value 0 (MLD)"
        body = bytes(hop_by_hop.payload)
        assert body[:2] + body[4:] == query[:2] + query[4:]
        assert mld.verify_checksum(body, router, ALL_NODES), "the kernel filled the checksum"
    finally:
        capture.close()

    def answer(packet: ReceivedMld) -> bool:
        return reports_group(host_link_local, packet, RecordType.MODE_IS_EXCLUDE, GROUP)

    got = read_until(proxy_socket, answer, "the host's answer to our General Query")
    assert [p.ifindex for p in got if answer(p)] == [link.proxy_ifindex]
    assert [p for p in got if p.src == router] == [], "our own sends are never read"
    assert proxy_socket.drops == {}


def test_watch_requests_allmulti_and_missing_interfaces_raise(link: Link, proxy_socket: MldPacketSocket) -> None:
    assert allmulti_counts(link.proxy)[link.proxy_if] == 1
    proxy_socket.watch(link.proxy_ifindex)
    assert allmulti_counts(link.proxy)[link.proxy_if] == 1
    proxy_socket.unwatch(link.proxy_ifindex)
    assert allmulti_counts(link.proxy)[link.proxy_if] == 0
    with pytest.raises(KernelError) as caught:
        proxy_socket.watch(link.proxy_ifindex + 1000)
    assert caught.value.errno == errno.ENODEV
    proxy_socket.watch(link.proxy_ifindex)
    link.proxy.ip("link", "delete", link.proxy_if)
    proxy_socket.unwatch(link.proxy_ifindex)
