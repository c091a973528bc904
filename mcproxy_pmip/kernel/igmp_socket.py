"""IGMP in and out (IPv4): decoding received packets, and the raw socket that sends.

Receiving is the packet socket's (``kernel.packet_socket``): it hands each
IPv4 packet and its interface index to ``decode_packet``, which parses the
header with ``wire.ipv4`` (RFC 791 §3.1: header checksum verified, since a
packet socket sees frames before the IP layer does; TTL, addresses, Router
Alert of RFC 2113) and keeps unfragmented IGMP. The interface comes from the
link layer, never from the source address, so reports from 0.0.0.0 or from
outside the interface's subnet are kept (RFC 3376 §4.2.13, docs/scenarios.md item 2).
Validation of TTL / Router Alert is the caller's: this layer only reports
what arrived.

Sending: IGMP messages leave a raw ``IPPROTO_IGMP`` socket with TTL 1, the IP
Router Alert option and TOS 0xc0 (Internetwork Control), as RFC 3376 §4 and
RFC 2236 §2 require, on the interface chosen per packet with
``IP_MULTICAST_IF``; multicast loopback is off. That socket receives nothing:
a BPF program drops every packet the kernel would queue on it.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import struct
from dataclasses import dataclass

from mcproxy_pmip.errors import KernelError, MalformedPacket
from mcproxy_pmip.kernel.rawsock import DROP_ALL, attach_filter, open_socket, setsockopt
from mcproxy_pmip.wire.ipv4 import IPPROTO_IGMP, ROUTER_ALERT_OPTION, parse_header

TOS_INTERNETWORK_CONTROL = 0xC0
IGMP_TTL = 1

_IP_MREQN = struct.Struct("=4s4si")  # imr_multiaddr, imr_address, imr_ifindex


@dataclass(frozen=True, slots=True)
class ReceivedIgmp:
    """One IGMP packet as it arrived."""

    ifindex: int  # receiving interface (from the link layer)
    src: ipaddress.IPv4Address  # IP source address, possibly 0.0.0.0
    dst: ipaddress.IPv4Address  # IP destination address
    ttl: int  # IP time to live (1 for valid IGMP)
    router_alert: bool  # the IP header carried the Router Alert option
    payload: bytes  # the IGMP message, after the IP header


def decode_packet(packet: bytes, ifindex: int) -> ReceivedIgmp:
    """An IPv4 packet received on ``ifindex`` as ``ReceivedIgmp``; ``MalformedPacket`` if it is not one."""
    header = parse_header(packet)
    if header.protocol != IPPROTO_IGMP:
        raise MalformedPacket("not_igmp", f"protocol {header.protocol}")
    if header.is_fragment:
        raise MalformedPacket("ip_fragment", f"from {header.src}")
    return ReceivedIgmp(
        ifindex=ifindex,
        src=header.src,
        dst=header.dst,
        ttl=header.ttl,
        router_alert=header.has_router_alert,
        payload=header.payload,
    )


class IgmpSendSocket:
    """A raw IGMP socket that sends, for one network namespace (the one current at construction)."""

    def __init__(self) -> None:
        self._sock = open_socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_IGMP, "socket(SOCK_RAW IGMP)")
        try:
            self._sock.setblocking(False)
            attach_filter(self._sock, DROP_ALL, "setsockopt(SO_ATTACH_FILTER IGMP)")
            for option, value, name in (
                    (socket.IP_OPTIONS, ROUTER_ALERT_OPTION, "IP_OPTIONS"),
                    (socket.IP_MULTICAST_TTL, IGMP_TTL, "IP_MULTICAST_TTL"),
                    (socket.IP_TOS, TOS_INTERNETWORK_CONTROL, "IP_TOS"),
                    (socket.IP_MULTICAST_LOOP, 0, "IP_MULTICAST_LOOP")):
                setsockopt(self._sock, socket.IPPROTO_IP, option, value, f"setsockopt({name})")
        except KernelError:
            self._sock.close()
            raise

    def close(self) -> None:
        self._sock.close()

    def send(self, ifindex: int, src_address: ipaddress.IPv4Address | None,
             dst: ipaddress.IPv4Address, payload: bytes) -> None:
        """Send one IGMP message out of ``ifindex`` (TTL 1, Router Alert, TOS 0xc0).

        ``src_address`` None lets the kernel pick the interface's primary address.
        """
        source = src_address if src_address is not None else ipaddress.IPv4Address(0)
        setsockopt(self._sock, socket.IPPROTO_IP, socket.IP_MULTICAST_IF,
                   _IP_MREQN.pack(bytes(4), source.packed, ifindex), "setsockopt(IP_MULTICAST_IF)")
        try:
            sent = self._sock.sendto(payload, (str(dst), 0))
        except OSError as exc:
            raise KernelError("sendto(IGMP)", exc.errno or errno.EIO,
                              f"ifindex={ifindex} dst={dst}") from exc
        if sent != len(payload):
            raise KernelError("sendto(IGMP)", errno.EMSGSIZE, f"sent {sent} of {len(payload)} octets")
