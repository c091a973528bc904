"""Pure tests (no root) of how the raw sockets decode what recvmsg returns.

The header parsers themselves belong to ``wire.ipv4`` / ``wire.ipv6`` and are
tested there; here: ancillary data, truncation and the counted drops.
"""

from __future__ import annotations

import ipaddress
import socket
import struct

import pytest

from mcproxy_pmip.errors import MalformedPacket
from mcproxy_pmip.kernel import igmp_socket, mld_socket
from mcproxy_pmip.kernel.igmp_socket import IP_PKTINFO
from mcproxy_pmip.kernel.mld_socket import MLD_TYPES, icmp6_filter_passing
from mcproxy_pmip.wire.ipv6 import HOP_BY_HOP_ROUTER_ALERT

IGMP_QUERY = bytes((0x11, 100, 0xEE, 0x9B, 0, 0, 0, 0))
MLD_DONE = bytes((132, 0, 0, 0, 0, 0, 0, 0)) + ipaddress.IPv6Address("ff3e::1").packed
HOST = ipaddress.IPv4Address("10.0.0.2")


def ipv4(options: bytes = b"\x94\x04\x00\x00", payload: bytes = IGMP_QUERY) -> bytes:
    header_length = 20 + len(options)
    header = struct.pack("!BBHHHBBH4s4s", 0x40 | header_length // 4, 0xC0, header_length + len(payload),
                         0, 0, 1, 2, 0, HOST.packed, ipaddress.IPv4Address("224.0.0.1").packed)
    return header + options + payload


def pktinfo4(ifindex: int) -> tuple[int, int, bytes]:
    return (socket.IPPROTO_IP, IP_PKTINFO, struct.pack("=i4s4s", ifindex, bytes(4), bytes(4)))


def pktinfo6(ifindex: int) -> tuple[int, int, bytes]:
    return (socket.IPPROTO_IPV6, socket.IPV6_PKTINFO,
            struct.pack("=16si", ipaddress.IPv6Address("ff02::2").packed, ifindex))


def hoplimit(value: int) -> tuple[int, int, bytes]:
    return (socket.IPPROTO_IPV6, socket.IPV6_HOPLIMIT, struct.pack("=i", value))


def test_igmp_decode_takes_ifindex_from_pktinfo_and_cuts_the_header() -> None:
    packet = igmp_socket.decode_packet(ipv4() + b"pad", [pktinfo4(7)], 0)
    assert (packet.ifindex, packet.src, packet.ttl, packet.router_alert) == (7, HOST, 1, True)
    assert packet.payload == IGMP_QUERY


@pytest.mark.parametrize("data, ancillary, flags, reason", [
    (ipv4(), [], 0, "no_pktinfo"),
    (ipv4(), [pktinfo4(7)], socket.MSG_TRUNC, "truncated"),
    (ipv4()[:10], [pktinfo4(7)], 0, "ip_too_short"),
])
def test_igmp_decode_rejects_with_a_reason(data: bytes, ancillary: list, flags: int,
                                           reason: str) -> None:
    with pytest.raises(MalformedPacket) as caught:
        igmp_socket.decode_packet(data, ancillary, flags)
    assert caught.value.reason == reason


def test_mld_decode_reads_pktinfo_hop_limit_and_router_alert() -> None:
    hbh = (socket.IPPROTO_IPV6, socket.IPV6_HOPOPTS, b"\x3a" + HOP_BY_HOP_ROUTER_ALERT[1:])
    packet = mld_socket.decode_packet(MLD_DONE, [pktinfo6(3), hoplimit(1), hbh], 0,
                                      ("fe80::1%r0", 0, 0, 3))
    assert packet.src == ipaddress.IPv6Address("fe80::1")
    assert packet.dst == ipaddress.IPv6Address("ff02::2")
    assert (packet.ifindex, packet.hop_limit, packet.router_alert) == (3, 1, True)
    assert packet.payload == MLD_DONE


def test_mld_decode_without_hop_by_hop_has_no_router_alert() -> None:
    packet = mld_socket.decode_packet(MLD_DONE, [pktinfo6(3), hoplimit(255)], 0,
                                      ("fe80::1%r0", 0, 0, 3))
    assert packet.router_alert is False and packet.hop_limit == 255


@pytest.mark.parametrize("ancillary, reason", [
    ([pktinfo6(3), hoplimit(1), (socket.IPPROTO_IPV6, socket.IPV6_HOPOPTS, bytes((58, 1, 1, 4)))],
     "bad_hop_by_hop"),
    ([hoplimit(1)], "no_pktinfo"),
    ([pktinfo6(3)], "no_pktinfo"),
])
def test_mld_decode_rejects_with_a_reason(ancillary: list, reason: str) -> None:
    with pytest.raises(MalformedPacket) as caught:
        mld_socket.decode_packet(MLD_DONE, ancillary, 0, ("fe80::1", 0, 0, 3))
    assert caught.value.reason == reason


def test_icmp6_filter_blocks_all_but_mld() -> None:
    words = struct.unpack("=8I", icmp6_filter_passing(MLD_TYPES))

    def blocked(kind: int) -> bool:
        return bool(words[kind >> 5] & (1 << (kind & 31)))

    assert [kind for kind in range(256) if not blocked(kind)] == sorted(MLD_TYPES)
