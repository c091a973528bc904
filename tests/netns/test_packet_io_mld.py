"""MldSocket against a real Linux host stack across a veth (RFC 3810 §5, RFC 2710, RFC 2711)."""

from __future__ import annotations

import errno
import ipaddress
import socket
import struct
from collections.abc import Iterator

import pytest

from mcproxy_pmip.addresses import ALL_MLDV2_ROUTERS, ALL_NODES, ALL_ROUTERS_V6
from mcproxy_pmip.errors import KernelError
from mcproxy_pmip.kernel.mld_socket import MldSocket, ReceivedMld
from pkt_fixtures import HOST_IF, Link, in_netns, sysctl, veth_link, wait_for

__all__ = ["veth_link"]  # the fixture, imported for pytest

pytestmark = pytest.mark.netns

GROUP = ipaddress.IPv6Address("ff3e::4242")
MLD_QUERY = 130
MLDV1_REPORT = 131
MLD_DONE = 132
MLDV2_REPORT = 143
CHANGE_TO_EXCLUDE = 4
MODE_IS_EXCLUDE = 2
WAIT = 3.0


def v2_records(payload: bytes) -> list[tuple[int, ipaddress.IPv6Address]]:
    """(record type, group) of each record of an MLDv2 report (RFC 3810 §5.2)."""
    count = struct.unpack_from("!H", payload, 6)[0]
    offset, records = 8, []
    for _ in range(count):
        kind, aux_words, sources = struct.unpack_from("!BBH", payload, offset)
        records.append((kind, ipaddress.IPv6Address(payload[offset + 4:offset + 20])))
        offset += 20 + 16 * sources + 4 * aux_words
    return records


def general_query_v2(max_resp_code: int) -> bytes:
    """An MLDv2 General Query (RFC 3810 §5.1), checksum left to the kernel: QRV 2, QQIC 125."""
    return struct.pack("!BBHHH16sBBH", MLD_QUERY, 0, 0, max_resp_code, 0, bytes(16), 2, 125, 0)


class HostListener:
    """A socket in the host namespace that listens to a group (the kernel then reports it)."""

    def __init__(self, link: Link, group: ipaddress.IPv6Address) -> None:
        with in_netns(link.host_ns):
            self.sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        self.mreq = struct.pack("=16si", group.packed, link.host_ifindex)
        self.sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, self.mreq)

    def leave(self) -> None:
        self.sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_LEAVE_GROUP, self.mreq)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def router_socket(veth_link: Link) -> Iterator[MldSocket]:
    """An MldSocket in the router namespace, joined to ff02::16 and ff02::2 on r0."""
    with in_netns(veth_link.router_ns):
        sock = MldSocket()
    try:
        sock.join(veth_link.router_ifindex, ALL_MLDV2_ROUTERS)
        sock.join(veth_link.router_ifindex, ALL_ROUTERS_V6)
        yield sock
    finally:
        sock.close()


@pytest.fixture
def listeners() -> Iterator[list[HostListener]]:
    """Listeners created by the test; closed at teardown."""
    created: list[HostListener] = []
    yield created
    for listener in created:
        listener.close()


def from_host(link: Link, packet: ReceivedMld, kind: int) -> bool:
    return packet.payload[:1] == bytes((kind,)) and packet.src == link.host_link_local


def test_receives_host_v2_report_with_ifindex_hop_limit_and_router_alert(
        veth_link: Link, router_socket: MldSocket, listeners: list[HostListener]) -> None:
    listeners.append(HostListener(veth_link, GROUP))
    packet, _ = wait_for(
        router_socket.fileno(), router_socket.read_packets,
        lambda p: from_host(veth_link, p, MLDV2_REPORT)
        and (CHANGE_TO_EXCLUDE, GROUP) in v2_records(p.payload),
        WAIT, "the host's MLDv2 TO_EX report")
    assert packet.ifindex == veth_link.router_ifindex
    assert packet.dst == ALL_MLDV2_ROUTERS
    assert packet.hop_limit == 1
    assert packet.router_alert is True


def test_receives_v1_report_and_done(
        veth_link: Link, router_socket: MldSocket, listeners: list[HostListener]) -> None:
    sysctl(veth_link.host_ns, f"net.ipv6.conf.{HOST_IF}.force_mld_version", "1")
    # An MLDv1 report goes to the group itself (the mroute socket's job in the daemon);
    # join it here to see it. The host sends a Done only after it has reported.
    router_socket.join(veth_link.router_ifindex, GROUP)
    listener = HostListener(veth_link, GROUP)
    listeners.append(listener)
    report, _ = wait_for(
        router_socket.fileno(), router_socket.read_packets,
        lambda p: from_host(veth_link, p, MLDV1_REPORT), WAIT, "the host's MLDv1 Report")
    assert (report.dst, report.hop_limit, report.router_alert) == (GROUP, 1, True)
    listener.leave()
    done, _ = wait_for(
        router_socket.fileno(), router_socket.read_packets,
        lambda p: from_host(veth_link, p, MLD_DONE), WAIT, "the host's MLDv1 Done")
    assert done.dst == ALL_ROUTERS_V6
    assert ipaddress.IPv6Address(done.payload[8:24]) == GROUP
    assert (done.ifindex, done.hop_limit, done.router_alert) == (veth_link.router_ifindex, 1, True)


def test_filter_passes_only_mld(veth_link: Link, router_socket: MldSocket) -> None:
    """An echo request from the host (ICMPv6 type 128) never reaches the MLD socket."""
    with in_netns(veth_link.host_ns):
        pinger = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    listener: HostListener | None = None
    try:
        target = (str(veth_link.router_link_local), 0, 0, veth_link.host_ifindex)
        pinger.sendto(struct.pack("!BBHHH", 128, 0, 0, 1, 1), target)
        # Then something that passes, so we know the echo had its chance to arrive first.
        listener = HostListener(veth_link, GROUP)
        _, before = wait_for(
            router_socket.fileno(), router_socket.read_packets,
            lambda p: from_host(veth_link, p, MLDV2_REPORT), WAIT, "an MLDv2 report after the echo")
        assert all(p.payload[0] in (MLD_QUERY, MLDV1_REPORT, MLD_DONE, MLDV2_REPORT) for p in before)
    finally:
        pinger.close()
        if listener is not None:
            listener.close()


def test_sent_query_has_hop_limit_1_router_alert_link_local_source_and_is_answered(
        veth_link: Link, router_socket: MldSocket, listeners: list[HostListener]) -> None:
    from scapy.layers.inet6 import IPv6, IPv6ExtHdrHopByHop, RouterAlert
    from scapy.layers.l2 import Ether

    with in_netns(veth_link.host_ns):
        capture = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x86DD))
    try:
        capture.bind((HOST_IF, 0))
        capture.setblocking(False)
        listeners.append(HostListener(veth_link, GROUP))
        query = general_query_v2(max_resp_code=500)  # 0.5 s
        router_socket.send(veth_link.router_ifindex, veth_link.router_link_local, ALL_NODES, query)

        def read_capture() -> list[IPv6]:
            frames = []
            while True:
                try:
                    frames.append(Ether(capture.recv(65535))[IPv6])
                except BlockingIOError:
                    return frames

        seen, _ = wait_for(capture.fileno(), read_capture,
                           lambda ip: ip.dst == str(ALL_NODES) and ip.nh == 0
                           and bytes(ip[IPv6ExtHdrHopByHop].payload)[:1] == bytes((MLD_QUERY,)),
                           WAIT, "our query on the host's link")
        assert seen.src == str(veth_link.router_link_local)
        assert seen.hlim == 1
        hop_by_hop = seen[IPv6ExtHdrHopByHop]
        alerts = [option for option in hop_by_hop.options if isinstance(option, RouterAlert)]
        assert [alert.value for alert in alerts] == [0], "Router Alert value 0 (MLD)"
        body = bytes(hop_by_hop.payload)
        assert body[:2] + body[4:] == query[:2] + query[4:]
        assert body[2:4] != b"\x00\x00", "the kernel filled the checksum"
    finally:
        capture.close()
    # The host kernel answers only a valid query: a current-state IS_EX record.
    answer, before = wait_for(
        router_socket.fileno(), router_socket.read_packets,
        lambda p: from_host(veth_link, p, MLDV2_REPORT)
        and (MODE_IS_EXCLUDE, GROUP) in v2_records(p.payload),
        WAIT, "the host's answer to our General Query")
    assert answer.ifindex == veth_link.router_ifindex
    # Multicast loopback is off: our own query never came back to us.
    assert [p for p in before if p.payload[0] == MLD_QUERY] == []


def test_failed_join_raises_kernel_error(veth_link: Link, router_socket: MldSocket) -> None:
    with pytest.raises(KernelError) as caught:
        router_socket.join(veth_link.router_ifindex + 1000, GROUP)
    assert caught.value.errno == errno.ENODEV
