"""The raw IGMP socket: every IGMP packet in, queries and reports out (IPv4).

Receiving: a raw ``IPPROTO_IGMP`` socket hands over each packet with its IPv4
header (RFC 791 §3.1), parsed by ``wire.ipv4`` for TTL, addresses and the
Router Alert option (RFC 2113); the receiving interface comes from
``IP_PKTINFO`` ancillary data, never from the source address, so reports from
0.0.0.0 or from outside the interface's subnet are kept (RFC 3376 §4.2.13,
SCENARIOS 2). Validation of TTL / Router Alert is the caller's: this layer only
reports what arrived.

Sending: IGMP messages leave with TTL 1, the IP Router Alert option and
TOS 0xc0 (Internetwork Control), as RFC 3376 §4 and RFC 2236 §2 require, on
the interface chosen per packet with ``IP_MULTICAST_IF``; multicast loopback is
off so the proxy does not hear itself.

Membership: the socket joins 224.0.0.22 (IGMPv3 reports) and 224.0.0.2
(IGMPv2 leaves) on downstreams, since the kernel delivers multicast IGMP only
for joined groups. The host stack then reports those joins itself; the proxy
drops reports sourced from its own addresses (``netmon.InterfaceMonitor``).

No reactor here: the IO layer registers ``fileno()`` and calls the
non-blocking ``read_packets()`` when the socket is readable.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import struct
from dataclasses import dataclass

from mcproxy_pmip.errors import KernelError, MalformedPacket
from mcproxy_pmip.kernel.rawsock import DEFAULT_MAX_PACKETS_PER_READ, RawPacketSocket
from mcproxy_pmip.kernel.rawsock import setsockopt as _setsockopt
from mcproxy_pmip.wire.ipv4 import ROUTER_ALERT_OPTION, parse_header


IP_PKTINFO = 8  # <linux/in.h>; missing from Python 3.11's socket module
IP_ROUTER_ALERT = 5  # <linux/in.h>: deliver Router Alert packets the host does not consume
TOS_INTERNETWORK_CONTROL = 0xC0
IGMP_TTL = 1

_IN_PKTINFO = struct.Struct("=i4s4s")  # ipi_ifindex, ipi_spec_dst, ipi_addr
_IP_MREQN = struct.Struct("=4s4si")  # imr_multiaddr, imr_address, imr_ifindex
_ANCILLARY_BUFFER_SIZE = socket.CMSG_SPACE(_IN_PKTINFO.size)


@dataclass(frozen=True, slots=True)
class ReceivedIgmp:
    """One IGMP packet as it arrived."""

    ifindex: int  # receiving interface (IP_PKTINFO)
    src: ipaddress.IPv4Address  # IP source address, possibly 0.0.0.0
    dst: ipaddress.IPv4Address  # IP destination address
    ttl: int  # IP time to live (1 for valid IGMP)
    router_alert: bool  # the IP header carried the Router Alert option
    payload: bytes  # the IGMP message, after the IP header


def decode_packet(data: bytes, ancillary: list[tuple[int, int, bytes]], flags: int) -> ReceivedIgmp:
    """Turn what ``recvmsg`` returned into a ``ReceivedIgmp``; ``MalformedPacket`` if it cannot."""
    if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
        raise MalformedPacket("truncated", f"flags={flags:#x}")
    ifindex = None
    for level, kind, value in ancillary:
        if level == socket.IPPROTO_IP and kind == IP_PKTINFO and len(value) >= _IN_PKTINFO.size:
            ifindex = _IN_PKTINFO.unpack_from(value)[0]
    if ifindex is None:
        raise MalformedPacket("no_pktinfo")
    header = parse_header(data)
    return ReceivedIgmp(
        ifindex=ifindex,
        src=header.src,
        dst=header.dst,
        ttl=header.ttl,
        router_alert=header.has_router_alert,
        payload=header.payload,
    )


class IgmpSocket(RawPacketSocket):
    """A raw IGMP socket for one network namespace (the one current at construction).

    ``drops`` counts packets that could not be handed over, by reason slug.
    """

    what = "IGMP"
    ancillary_size = _ANCILLARY_BUFFER_SIZE

    def __init__(self, max_packets_per_read: int = DEFAULT_MAX_PACKETS_PER_READ) -> None:
        super().__init__(socket.AF_INET, socket.IPPROTO_IGMP, max_packets_per_read)

    def _configure(self) -> None:
        _setsockopt(self._sock, socket.IPPROTO_IP, IP_PKTINFO, 1, "setsockopt(IP_PKTINFO)")
        # IGMPv2 reports go to the group itself; on a multicast router the kernel
        # hands such Router Alert packets only to IP_ROUTER_ALERT sockets.
        _setsockopt(self._sock, socket.IPPROTO_IP, IP_ROUTER_ALERT, 1, "setsockopt(IP_ROUTER_ALERT)")
        _setsockopt(self._sock, socket.IPPROTO_IP, socket.IP_OPTIONS, ROUTER_ALERT_OPTION,
                    "setsockopt(IP_OPTIONS)")
        _setsockopt(self._sock, socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, IGMP_TTL,
                    "setsockopt(IP_MULTICAST_TTL)")
        _setsockopt(self._sock, socket.IPPROTO_IP, socket.IP_TOS, TOS_INTERNETWORK_CONTROL,
                    "setsockopt(IP_TOS)")
        _setsockopt(self._sock, socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0,
                    "setsockopt(IP_MULTICAST_LOOP)")

    def _decode(self, data, ancillary, flags, address) -> ReceivedIgmp:
        return decode_packet(data, ancillary, flags)

    def send(self, ifindex: int, src_address: ipaddress.IPv4Address | None,
             dst: ipaddress.IPv4Address, payload: bytes) -> None:
        """Send one IGMP message out of ``ifindex`` (TTL 1, Router Alert, TOS 0xc0).

        ``src_address`` None lets the kernel pick the interface's primary address.
        """
        source = src_address if src_address is not None else ipaddress.IPv4Address(0)
        _setsockopt(self._sock, socket.IPPROTO_IP, socket.IP_MULTICAST_IF,
                    _IP_MREQN.pack(bytes(4), source.packed, ifindex), "setsockopt(IP_MULTICAST_IF)")
        try:
            sent = self._sock.sendto(payload, (str(dst), 0))
        except OSError as exc:
            raise KernelError("sendto(IGMP)", exc.errno or errno.EIO,
                              f"ifindex={ifindex} dst={dst}") from exc
        if sent != len(payload):
            raise KernelError("sendto(IGMP)", errno.EMSGSIZE, f"sent {sent} of {len(payload)} octets")

    def join(self, ifindex: int, group: ipaddress.IPv4Address) -> None:
        """Join ``group`` on ``ifindex`` so the kernel delivers IGMP sent to it."""
        _setsockopt(self._sock, socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                    _IP_MREQN.pack(group.packed, bytes(4), ifindex),
                    f"setsockopt(IP_ADD_MEMBERSHIP {group} ifindex={ifindex})")

    def leave(self, ifindex: int, group: ipaddress.IPv4Address) -> None:
        """Leave ``group`` on ``ifindex``."""
        _setsockopt(self._sock, socket.IPPROTO_IP, socket.IP_DROP_MEMBERSHIP,
                    _IP_MREQN.pack(group.packed, bytes(4), ifindex),
                    f"setsockopt(IP_DROP_MEMBERSHIP {group} ifindex={ifindex})")
