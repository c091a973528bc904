"""MLD in and out (IPv6): decoding received packets, and the raw ICMPv6 socket that sends.

Receiving is the packet socket's (``kernel.packet_socket``): it hands each
IPv6 packet and its interface index to ``decode_packet``, which parses the
fixed header and the Hop-by-Hop options header with ``wire.ipv6`` (Router
Alert, RFC 2711), keeps the MLD types 130 (query), 131 (MLDv1 report), 132
(done) and 143 (MLDv2 report), and verifies the ICMPv6 checksum over the
pseudo-header (RFC 4443 §2.3): a packet socket sees frames before the IPv6
stack checks them. Validation (hop limit 1, link-local source, RFC 3810
§5.1.14 / §5.2.13) is the caller's.

Sending: MLD messages leave a raw ``IPPROTO_ICMPV6`` socket with hop limit 1,
a Hop-by-Hop header carrying Router Alert value 0 (MLD) and PadN, from the
interface's link-local address set per packet with ``IPV6_PKTINFO``
(RFC 3810 §5, §7.4 and RFC 2710 §3); multicast loopback is off. The kernel
computes the ICMPv6 checksum. That socket receives nothing: its
``ICMP6_FILTER`` (RFC 3542 §3.2) blocks every ICMPv6 type.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import struct
from dataclasses import dataclass

from mcproxy_pmip.errors import KernelError, MalformedPacket
from mcproxy_pmip.kernel.rawsock import open_socket, setsockopt
from mcproxy_pmip.wire.checksum import ICMPV6_NEXT_HEADER
from mcproxy_pmip.wire import mld
from mcproxy_pmip.wire.ipv6 import HOP_BY_HOP_ROUTER_ALERT, parse_packet

ICMP6_FILTER = 1  # <netinet/icmp6.h>, level IPPROTO_ICMPV6
ICMP6_FILTER_BLOCK_ALL = b"\xff" * 32
"""A ``struct icmp6_filter`` blocking every type (in Linux's filter a set bit blocks)."""

MLD_TYPES = (mld.MULTICAST_LISTENER_QUERY, mld.V1_MULTICAST_LISTENER_REPORT,
             mld.V1_MULTICAST_LISTENER_DONE, mld.V2_MULTICAST_LISTENER_REPORT)

MLD_HOP_LIMIT = 1

_IN6_PKTINFO = struct.Struct("=16si")  # ipi6_addr, ipi6_ifindex


@dataclass(frozen=True, slots=True)
class ReceivedMld:
    """One MLD message as it arrived."""

    ifindex: int  # receiving interface (from the link layer)
    src: ipaddress.IPv6Address  # IPv6 source address (link-local for valid MLD)
    dst: ipaddress.IPv6Address  # IPv6 destination address
    hop_limit: int  # 1 for valid MLD
    router_alert: bool  # the Hop-by-Hop header carried Router Alert
    payload: bytes  # the ICMPv6 message (checksum verified)


def decode_packet(packet: bytes, ifindex: int) -> ReceivedMld:
    """An IPv6 packet received on ``ifindex`` as ``ReceivedMld``; ``MalformedPacket`` if it is not one."""
    parsed = parse_packet(packet)
    if parsed.next_header != ICMPV6_NEXT_HEADER:
        raise MalformedPacket("not_icmpv6", f"next header {parsed.next_header}")
    message = parsed.payload
    if not message or message[0] not in MLD_TYPES:
        raise MalformedPacket("not_mld", f"ICMPv6 type {message[0] if message else None}")
    if not mld.verify_checksum(message, parsed.src, parsed.dst):
        raise MalformedPacket("bad_icmpv6_checksum", f"from {parsed.src}")
    return ReceivedMld(
        ifindex=ifindex,
        src=parsed.src,
        dst=parsed.dst,
        hop_limit=parsed.hop_limit,
        router_alert=parsed.router_alert is not None,
        payload=message,
    )


class MldSendSocket:
    """A raw ICMPv6 socket that sends MLD, for one network namespace (the one current at construction)."""

    def __init__(self) -> None:
        self._sock = open_socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6,
                                 "socket(SOCK_RAW ICMPv6)")
        try:
            self._sock.setblocking(False)
            setsockopt(self._sock, socket.IPPROTO_ICMPV6, ICMP6_FILTER, ICMP6_FILTER_BLOCK_ALL,
                       "setsockopt(ICMP6_FILTER)")
            setsockopt(self._sock, socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, MLD_HOP_LIMIT,
                       "setsockopt(IPV6_MULTICAST_HOPS)")
            setsockopt(self._sock, socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0,
                       "setsockopt(IPV6_MULTICAST_LOOP)")
        except KernelError:
            self._sock.close()
            raise

    def close(self) -> None:
        self._sock.close()

    def send(self, ifindex: int, src_link_local: ipaddress.IPv6Address | None,
             dst: ipaddress.IPv6Address, payload: bytes) -> None:
        """Send one MLD message out of ``ifindex`` (hop limit 1, Router Alert, link-local source).

        ``src_link_local`` None lets the kernel choose (it picks the link-local
        address for a link-scope destination); the kernel fills the checksum.
        """
        source = src_link_local if src_link_local is not None else ipaddress.IPv6Address(0)
        ancillary = [
            (socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, _IN6_PKTINFO.pack(source.packed, ifindex)),
            (socket.IPPROTO_IPV6, socket.IPV6_HOPOPTS, HOP_BY_HOP_ROUTER_ALERT),
        ]
        try:
            sent = self._sock.sendmsg([payload], ancillary, 0, (str(dst), 0, 0, ifindex))
        except OSError as exc:
            raise KernelError("sendmsg(ICMPv6)", exc.errno or errno.EIO,
                              f"ifindex={ifindex} src={source} dst={dst}") from exc
        if sent != len(payload):
            raise KernelError("sendmsg(ICMPv6)", errno.EMSGSIZE, f"sent {sent} of {len(payload)} octets")
