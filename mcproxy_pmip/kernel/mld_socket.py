"""The raw ICMPv6 socket for MLD: queries, reports and dones in and out (IPv6).

Receiving: a raw ``IPPROTO_ICMPV6`` socket filtered (``ICMP6_FILTER``, RFC 3542
§3.2) to the MLD types 130 (query), 131 (MLDv1 report), 132 (done) and 143
(MLDv2 report). Ancillary data gives the receiving interface and destination
(``IPV6_PKTINFO``), the hop limit (``IPV6_HOPLIMIT``) and the Hop-by-Hop
options header, parsed by ``wire.ipv6`` for Router Alert (RFC 2711). The kernel verifies the
ICMPv6 checksum of what it delivers. Validation (hop limit 1, link-local
source, RFC 3810 §5.1.14 / §5.2.13) is the caller's.

Sending: MLD messages leave with hop limit 1, a Hop-by-Hop header carrying
Router Alert value 0 (MLD) and PadN, from the interface's link-local address
set per packet with ``IPV6_PKTINFO`` (RFC 3810 §5, §7.4 and RFC 2710 §3);
multicast loopback is off. The kernel computes the ICMPv6 checksum.

Membership: the socket joins ff02::16 (MLDv2 reports) and ff02::2 (MLDv1
dones) on downstreams.

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
from mcproxy_pmip.wire.ipv6 import HOP_BY_HOP_ROUTER_ALERT, parse_hop_by_hop


ICMP6_FILTER = 1  # <netinet/icmp6.h>, level IPPROTO_ICMPV6
MLD_LISTENER_QUERY = 130
MLD_LISTENER_REPORT = 131
MLD_LISTENER_DONE = 132
MLDV2_LISTENER_REPORT = 143
MLD_TYPES = (MLD_LISTENER_QUERY, MLD_LISTENER_REPORT, MLD_LISTENER_DONE, MLDV2_LISTENER_REPORT)

MLD_HOP_LIMIT = 1

_IN6_PKTINFO = struct.Struct("=16si")  # ipi6_addr, ipi6_ifindex
_IPV6_MREQ = struct.Struct("=16si")  # ipv6mr_multiaddr, ipv6mr_interface
_HOPLIMIT = struct.Struct("=i")
_ANCILLARY_BUFFER_SIZE = (socket.CMSG_SPACE(_IN6_PKTINFO.size) + socket.CMSG_SPACE(_HOPLIMIT.size)
                          + socket.CMSG_SPACE(256))


@dataclass(frozen=True, slots=True)
class ReceivedMld:
    """One MLD message as it arrived."""

    ifindex: int  # receiving interface (IPV6_PKTINFO)
    src: ipaddress.IPv6Address  # IPv6 source address (link-local for valid MLD)
    dst: ipaddress.IPv6Address  # IPv6 destination address
    hop_limit: int  # 1 for valid MLD
    router_alert: bool  # the Hop-by-Hop header carried Router Alert
    payload: bytes  # the ICMPv6 message (checksum verified by the kernel)


def icmp6_filter_passing(types: tuple[int, ...]) -> bytes:
    """A ``struct icmp6_filter`` blocking every ICMPv6 type but ``types``.

    In Linux's filter a set bit blocks the type (ICMP6_FILTER_SETBLOCK).
    """
    words = [0xFFFFFFFF] * 8
    for kind in types:
        words[kind >> 5] &= ~(1 << (kind & 31)) & 0xFFFFFFFF
    return struct.pack("=8I", *words)


def decode_packet(data: bytes, ancillary: list[tuple[int, int, bytes]], flags: int,
                  address: tuple[str, int, int, int]) -> ReceivedMld:
    """Turn what ``recvmsg`` returned into a ``ReceivedMld``; ``MalformedPacket`` if it cannot."""
    if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
        raise MalformedPacket("truncated", f"flags={flags:#x}")
    pktinfo = None
    hop_limit = None
    router_alert = False
    for level, kind, value in ancillary:
        if level != socket.IPPROTO_IPV6:
            continue
        if kind == socket.IPV6_PKTINFO and len(value) >= _IN6_PKTINFO.size:
            pktinfo = _IN6_PKTINFO.unpack_from(value)
        elif kind == socket.IPV6_HOPLIMIT and len(value) >= _HOPLIMIT.size:
            hop_limit = _HOPLIMIT.unpack_from(value)[0]
        elif kind == socket.IPV6_HOPOPTS:
            router_alert = parse_hop_by_hop(value).router_alert is not None
    if pktinfo is None or hop_limit is None:
        raise MalformedPacket("no_pktinfo", f"pktinfo={pktinfo} hop_limit={hop_limit}")
    destination, ifindex = pktinfo
    # The source comes as text with a %scope suffix for link-local addresses.
    source = ipaddress.IPv6Address(address[0].split("%", 1)[0])
    return ReceivedMld(
        ifindex=ifindex,
        src=source,
        dst=ipaddress.IPv6Address(destination),
        hop_limit=hop_limit,
        router_alert=router_alert,
        payload=data,
    )


class MldSocket(RawPacketSocket):
    """A raw ICMPv6 socket for MLD in one network namespace (the one current at construction).

    ``drops`` counts packets that could not be handed over, by reason slug.
    """

    what = "ICMPv6"
    ancillary_size = _ANCILLARY_BUFFER_SIZE

    def __init__(self, max_packets_per_read: int = DEFAULT_MAX_PACKETS_PER_READ) -> None:
        super().__init__(socket.AF_INET6, socket.IPPROTO_ICMPV6, max_packets_per_read)

    def _configure(self) -> None:
        _setsockopt(self._sock, socket.IPPROTO_ICMPV6, ICMP6_FILTER,
                    icmp6_filter_passing(MLD_TYPES), "setsockopt(ICMP6_FILTER)")
        for option, name in ((socket.IPV6_RECVPKTINFO, "IPV6_RECVPKTINFO"),
                             (socket.IPV6_RECVHOPLIMIT, "IPV6_RECVHOPLIMIT"),
                             (socket.IPV6_RECVHOPOPTS, "IPV6_RECVHOPOPTS")):
            _setsockopt(self._sock, socket.IPPROTO_IPV6, option, 1, f"setsockopt({name})")
        _setsockopt(self._sock, socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, MLD_HOP_LIMIT,
                    "setsockopt(IPV6_MULTICAST_HOPS)")
        _setsockopt(self._sock, socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0,
                    "setsockopt(IPV6_MULTICAST_LOOP)")

    def _decode(self, data, ancillary, flags, address) -> ReceivedMld:
        return decode_packet(data, ancillary, flags, address)

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

    def join(self, ifindex: int, group: ipaddress.IPv6Address) -> None:
        """Join ``group`` on ``ifindex`` so the kernel delivers MLD sent to it."""
        _setsockopt(self._sock, socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP,
                    _IPV6_MREQ.pack(group.packed, ifindex),
                    f"setsockopt(IPV6_JOIN_GROUP {group} ifindex={ifindex})")

    def leave(self, ifindex: int, group: ipaddress.IPv6Address) -> None:
        """Leave ``group`` on ``ifindex``."""
        _setsockopt(self._sock, socket.IPPROTO_IPV6, socket.IPV6_LEAVE_GROUP,
                    _IPV6_MREQ.pack(group.packed, ifindex),
                    f"setsockopt(IPV6_LEAVE_GROUP {group} ifindex={ifindex})")
