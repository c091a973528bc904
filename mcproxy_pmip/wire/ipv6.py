"""IPv6 packets as received for MLD, and the Hop-by-Hop Router Alert option (RFC 2711, RFC 3810 §5).

``parse_packet`` reads an IPv6 packet from a packet socket: the fixed header
(RFC 8200 §3), then at most one Hop-by-Hop Options header (RFC 8200 §4.3),
which must directly follow it; the upper-layer message is cut to Payload
Length (link padding may follow the packet)::

    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |Version| Traffic Class |           Flow Label                  |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |         Payload Length        |  Next Header  |   Hop Limit   |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                Source Address (128 bits)                      |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |              Destination Address (128 bits)                   |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

MLD messages carry a Router Alert with value 0 ("Multicast Listener
Discovery message", RFC 2711 §2.1) in a Hop-by-Hop Options header
(RFC 8200 §4.3), padded to eight octets::

    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |  Next Header  |  Hdr Ext Len  |  Type = 5     |  Opt Len = 2  |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |        Value (2 octets)       | PadN (type 1) |  Opt Len = 0  |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

``HOP_BY_HOP_ROUTER_ALERT`` is that header for ``IPV6_HOPOPTS`` (the kernel
fills Next Header). ``parse_hop_by_hop`` reads one such header and reports
the Router Alert value.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from mcproxy_pmip.errors import MalformedPacket

ROUTER_ALERT_MLD = 0
OPTION_PAD1 = 0
OPTION_PADN = 1
OPTION_ROUTER_ALERT = 5
NEXT_HEADER_HOP_BY_HOP = 0
FIXED_HEADER_LENGTH = 40

_FIXED = struct.Struct("!IHBB16s16s")

ROUTER_ALERT_OPTION = bytes((OPTION_ROUTER_ALERT, 2)) + ROUTER_ALERT_MLD.to_bytes(2, "big")
"""The Router Alert option TLV alone, value 0 (MLD)."""

HOP_BY_HOP_ROUTER_ALERT = b"\x00\x00" + ROUTER_ALERT_OPTION + bytes((OPTION_PADN, 0))
"""A whole Hop-by-Hop Options header carrying the MLD Router Alert (8 octets)."""


@dataclass(frozen=True, slots=True)
class HopByHopOptions:
    """What a Hop-by-Hop Options header says. ``router_alert``: its value, None if absent."""

    next_header: int
    router_alert: int | None

    @property
    def has_mld_router_alert(self) -> bool:
        return self.router_alert == ROUTER_ALERT_MLD


def parse_hop_by_hop(data: bytes) -> HopByHopOptions:
    """Parse a Hop-by-Hop Options header; raise ``MalformedPacket`` if it does not parse."""
    data = bytes(data)
    if len(data) < 2:
        raise MalformedPacket("bad_hop_by_hop", f"{len(data)} octets")
    length = (data[1] + 1) * 8
    if length > len(data):
        raise MalformedPacket("bad_hop_by_hop", f"header of {length} octets in {len(data)}")
    router_alert = None
    pos = 2
    while pos < length:
        kind = data[pos]
        if kind == OPTION_PAD1:
            pos += 1
            continue
        if pos + 2 > length:
            raise MalformedPacket("bad_hop_by_hop", f"option {kind} without length")
        option_end = pos + 2 + data[pos + 1]
        if option_end > length:
            raise MalformedPacket("bad_hop_by_hop", f"option {kind} overruns the header")
        if kind == OPTION_ROUTER_ALERT and option_end - pos == len(ROUTER_ALERT_OPTION):
            router_alert = int.from_bytes(data[pos + 2 : option_end], "big")
        pos = option_end
    return HopByHopOptions(next_header=data[0], router_alert=router_alert)


@dataclass(frozen=True, slots=True)
class Ipv6Packet:
    """A received IPv6 packet: the fixed header's fields, the Hop-by-Hop header's Router Alert.

    ``next_header`` is the protocol of ``payload``: after the Hop-by-Hop
    header when there is one. ``router_alert``: its value, None if absent.
    """

    hop_limit: int
    next_header: int
    src: ipaddress.IPv6Address
    dst: ipaddress.IPv6Address
    router_alert: int | None
    payload: bytes


def parse_packet(packet: bytes) -> Ipv6Packet:
    """Parse an IPv6 packet as received; raise ``MalformedPacket`` if it does not parse."""
    packet = bytes(packet)
    if len(packet) < FIXED_HEADER_LENGTH:
        raise MalformedPacket("ipv6_too_short", f"{len(packet)} octets")
    version_class_flow, payload_length, next_header, hop_limit, src, dst = _FIXED.unpack_from(packet)
    if version_class_flow >> 28 != 6:
        raise MalformedPacket("not_ipv6", f"version {version_class_flow >> 28}")
    end = FIXED_HEADER_LENGTH + payload_length
    if end > len(packet):
        raise MalformedPacket("ipv6_truncated", f"payload length {payload_length}, {len(packet)} octets read")
    payload = packet[FIXED_HEADER_LENGTH:end]
    router_alert = None
    if next_header == NEXT_HEADER_HOP_BY_HOP:
        options = parse_hop_by_hop(payload)
        next_header, router_alert = options.next_header, options.router_alert
        payload = payload[(payload[1] + 1) * 8:]
    return Ipv6Packet(
        hop_limit=hop_limit,
        next_header=next_header,
        src=ipaddress.IPv6Address(src),
        dst=ipaddress.IPv6Address(dst),
        router_alert=router_alert,
        payload=payload,
    )
