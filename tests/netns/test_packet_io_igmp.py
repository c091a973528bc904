"""IgmpSocket against a real Linux host stack across a veth (RFC 3376 §4, RFC 2236, SCENARIOS 2)."""

from __future__ import annotations

import errno
import ipaddress
import socket
import struct
from collections.abc import Iterator

import pytest

from mcproxy_pmip.addresses import ALL_ROUTERS_V4, ALL_SYSTEMS, ALL_V3_ROUTERS
from mcproxy_pmip.errors import KernelError
from mcproxy_pmip.kernel.igmp_socket import IgmpSocket, ReceivedIgmp
from pkt_fixtures import (HOST_IF, HOST_V4, ROUTER_V4, Link, in_netns, inet_checksum,
                          run, sysctl, veth_link, wait_for)

__all__ = ["veth_link"]  # the fixture, imported for pytest

pytestmark = pytest.mark.netns

GROUP = ipaddress.IPv4Address("239.1.2.3")
IGMPV3_REPORT = 0x22
IGMPV2_LEAVE = 0x17
IGMPV2_REPORT = 0x16
CHANGE_TO_EXCLUDE = 4
MODE_IS_EXCLUDE = 2
WAIT = 3.0


def v3_records(payload: bytes) -> list[tuple[int, ipaddress.IPv4Address]]:
    """(record type, group) of each record of an IGMPv3 report (RFC 3376 §4.2)."""
    count = struct.unpack_from("!H", payload, 6)[0]
    offset, records = 8, []
    for _ in range(count):
        kind, aux_words, sources = struct.unpack_from("!BBH", payload, offset)
        records.append((kind, ipaddress.IPv4Address(payload[offset + 4:offset + 8])))
        offset += 8 + 4 * sources + 4 * aux_words
    return records


def general_query_v3(max_resp_code: int) -> bytes:
    """An IGMPv3 General Query (RFC 3376 §4.1): QRV 2, QQIC 125, no sources."""
    body = struct.pack("!BBH4sBBH", 0x11, max_resp_code, 0, bytes(4), 2, 125, 0)
    return body[:2] + struct.pack("!H", inet_checksum(body)) + body[4:]


class HostMember:
    """A socket in the host namespace that holds a membership (the kernel then reports it)."""

    def __init__(self, link: Link, group: ipaddress.IPv4Address) -> None:
        with in_netns(link.host_ns):
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.mreqn = struct.pack("=4s4si", group.packed, bytes(4), link.host_ifindex)
        self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, self.mreqn)

    def leave(self) -> None:
        self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_DROP_MEMBERSHIP, self.mreqn)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def router_socket(veth_link: Link) -> Iterator[IgmpSocket]:
    """An IgmpSocket in the router namespace, joined to 224.0.0.22 and 224.0.0.2 on r0."""
    with in_netns(veth_link.router_ns):
        sock = IgmpSocket()
    try:
        sock.join(veth_link.router_ifindex, ALL_V3_ROUTERS)
        sock.join(veth_link.router_ifindex, ALL_ROUTERS_V4)
        yield sock
    finally:
        sock.close()


@pytest.fixture
def host_member(veth_link: Link) -> Iterator[list[HostMember]]:
    """Members created by the test; closed at teardown."""
    members: list[HostMember] = []
    yield members
    for member in members:
        member.close()


def from_host(packet: ReceivedIgmp, kind: int) -> bool:
    return packet.payload[:1] == bytes((kind,)) and packet.src != ROUTER_V4.ip


def test_receives_host_v3_report_with_ifindex_ttl_and_router_alert(
        veth_link: Link, router_socket: IgmpSocket, host_member: list[HostMember]) -> None:
    host_member.append(HostMember(veth_link, GROUP))
    packet, _ = wait_for(
        router_socket.fileno(), router_socket.read_packets,
        lambda p: from_host(p, IGMPV3_REPORT) and (CHANGE_TO_EXCLUDE, GROUP) in v3_records(p.payload),
        WAIT, "the host's IGMPv3 TO_EX report")
    assert packet.ifindex == veth_link.router_ifindex
    assert packet.src == HOST_V4.ip
    assert packet.dst == ALL_V3_ROUTERS
    assert packet.ttl == 1
    assert packet.router_alert is True
    assert inet_checksum(packet.payload) == 0, "payload must be exactly the IGMP message"


def test_receives_v2_report_and_leave(
        veth_link: Link, router_socket: IgmpSocket, host_member: list[HostMember]) -> None:
    sysctl(veth_link.host_ns, f"net.ipv4.conf.{HOST_IF}.force_igmp_version", "2")
    # A v2 report goes to the group itself (the mroute socket's job in the daemon);
    # join it here to see it. The host sends a Leave only after it has reported.
    router_socket.join(veth_link.router_ifindex, GROUP)
    member = HostMember(veth_link, GROUP)
    host_member.append(member)
    report, _ = wait_for(
        router_socket.fileno(), router_socket.read_packets,
        lambda p: from_host(p, IGMPV2_REPORT), WAIT, "the host's IGMPv2 Report")
    assert (report.dst, report.ttl, report.router_alert) == (GROUP, 1, True)
    member.leave()
    packet, _ = wait_for(
        router_socket.fileno(), router_socket.read_packets,
        lambda p: from_host(p, IGMPV2_LEAVE), WAIT, "the host's IGMPv2 Leave")
    assert packet.dst == ALL_ROUTERS_V4
    assert ipaddress.IPv4Address(packet.payload[4:8]) == GROUP
    assert (packet.ifindex, packet.src, packet.ttl, packet.router_alert) == (
        veth_link.router_ifindex, HOST_V4.ip, 1, True)


@pytest.mark.parametrize("host_address", [None, "198.51.100.7/24"], ids=["unnumbered", "foreign-subnet"])
def test_receives_reports_from_any_source_address(
        veth_link: Link, router_socket: IgmpSocket, host_member: list[HostMember],
        host_address: str | None) -> None:
    """SCENARIOS 2: 0.0.0.0 and off-subnet sources arrive, identified by the interface index."""
    run("ip", "-n", veth_link.host_ns, "addr", "flush", "dev", HOST_IF)
    expected = ipaddress.IPv4Address(0)
    if host_address is not None:
        run("ip", "-n", veth_link.host_ns, "addr", "add", host_address, "dev", HOST_IF)
        expected = ipaddress.IPv4Interface(host_address).ip
    host_member.append(HostMember(veth_link, GROUP))
    packet, _ = wait_for(
        router_socket.fileno(), router_socket.read_packets,
        lambda p: from_host(p, IGMPV3_REPORT) and (CHANGE_TO_EXCLUDE, GROUP) in v3_records(p.payload),
        WAIT, f"a report from {expected}")
    assert packet.src == expected
    assert packet.ifindex == veth_link.router_ifindex


def test_sent_query_has_ttl_1_router_alert_tos_and_is_answered(
        veth_link: Link, router_socket: IgmpSocket, host_member: list[HostMember]) -> None:
    from scapy.layers.inet import IP
    from scapy.layers.l2 import Ether

    with in_netns(veth_link.host_ns):
        capture = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
    try:
        capture.bind((HOST_IF, 0))
        capture.setblocking(False)
        host_member.append(HostMember(veth_link, GROUP))
        query = general_query_v3(max_resp_code=5)  # 0.5 s
        router_socket.send(veth_link.router_ifindex, ROUTER_V4.ip, ALL_SYSTEMS, query)

        def read_capture() -> list[IP]:
            frames = []
            while True:
                try:
                    frames.append(Ether(capture.recv(65535))[IP])
                except BlockingIOError:
                    return frames

        seen, _ = wait_for(capture.fileno(), read_capture,
                           lambda ip: ip.dst == str(ALL_SYSTEMS) and ip.proto == 2,
                           WAIT, "our query on the host's link")
        assert seen.src == str(ROUTER_V4.ip)
        assert seen.ttl == 1
        assert seen.tos == 0xC0
        assert bytes(seen)[20:24] == b"\x94\x04\x00\x00", "Router Alert option"
        assert bytes(seen.payload) == query
    finally:
        capture.close()
    # The host kernel answers only a valid query: a current-state IS_EX record.
    answer, before = wait_for(
        router_socket.fileno(), router_socket.read_packets,
        lambda p: from_host(p, IGMPV3_REPORT) and (MODE_IS_EXCLUDE, GROUP) in v3_records(p.payload),
        WAIT, "the host's answer to our General Query")
    assert answer.ifindex == veth_link.router_ifindex
    # Multicast loopback is off: our own query never came back to us.
    assert [p for p in before if p.payload[:1] == b"\x11"] == []



def test_failed_join_raises_kernel_error(veth_link: Link, router_socket: IgmpSocket) -> None:
    with pytest.raises(KernelError) as caught:
        router_socket.join(veth_link.router_ifindex + 1000, GROUP)
    assert caught.value.errno == errno.ENODEV
    with pytest.raises(KernelError):
        router_socket.join(veth_link.router_ifindex, ALL_V3_ROUTERS)  # already joined: EADDRINUSE
