"""IPv4 header parsing for received IGMP, and the Router Alert option for senders.

IGMP is read from a packet socket, which hands over the IPv4 header with its
options (RFC 791 §3.1); IGMP needs its TTL (1), its source and the Router
Alert option (RFC 2113; RFC 3376 §4 and §9.1)::

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |Version|  IHL  |Type of Service|          Total Length         |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |         Identification        |Flags|      Fragment Offset    |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |  Time to Live |    Protocol   |         Header Checksum       |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                       Source Address                          |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                    Destination Address                        |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                    Options                    |    Padding    |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

Router Alert (RFC 2113 §2.1)::

    +--------+--------+--------+--------+
    |10010100|00000100|  2 octet value  |
    +--------+--------+--------+--------+

A packet socket sees frames before the IP layer's checks, so
``parse_header`` verifies the header checksum (RFC 791 §3.1, RFC 1071) and
reports whether the packet is a fragment (MF set or a non-zero offset):
nothing reassembles fragments on that path.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from mcproxy_pmip.errors import MalformedPacket
from mcproxy_pmip.wire.checksum import is_valid

ROUTER_ALERT_OPTION = b"\x94\x04\x00\x00"
"""Router Alert with value 0, "router shall examine packet" (for IP_OPTIONS)."""

IPPROTO_IGMP = 2
MIN_HEADER_LENGTH = 20

_OPTION_END = 0
_OPTION_NOP = 1
_OPTION_ROUTER_ALERT = 0x94
_MORE_FRAGMENTS_AND_OFFSET = 0x3FFF
_FIXED = struct.Struct("!BBHHHBBH4s4s")


@dataclass(frozen=True, slots=True)
class Ipv4Header:
    """The fields of a received IPv4 header; ``payload`` is cut to Total Length."""

    header_length: int
    tos: int
    total_length: int
    ttl: int
    protocol: int
    src: ipaddress.IPv4Address
    dst: ipaddress.IPv4Address
    options: bytes
    has_router_alert: bool
    is_fragment: bool
    payload: bytes


def parse_header(packet: bytes) -> Ipv4Header:
    """Parse an IPv4 packet as received (link padding may follow it).

    ``MalformedPacket`` if it does not parse or its header checksum is wrong.
    """
    packet = bytes(packet)
    if len(packet) < MIN_HEADER_LENGTH:
        raise MalformedPacket("ip_too_short", f"{len(packet)} octets")
    ver_ihl, tos, total_length, _, fragment, ttl, protocol, _, src, dst = _FIXED.unpack_from(packet)
    if ver_ihl >> 4 != 4:
        raise MalformedPacket("not_ipv4", f"version {ver_ihl >> 4}")
    header_length = (ver_ihl & 0x0F) * 4
    if header_length < MIN_HEADER_LENGTH:
        raise MalformedPacket("bad_ip_header_length", f"IHL {header_length // 4}")
    if not header_length <= total_length <= len(packet):
        raise MalformedPacket(
            "ip_truncated",
            f"header {header_length}, total length {total_length}, {len(packet)} octets read",
        )
    if not is_valid(packet[:header_length]):
        raise MalformedPacket("bad_ip_checksum", f"header {packet[:header_length].hex()}")
    options = packet[MIN_HEADER_LENGTH:header_length]
    return Ipv4Header(
        header_length=header_length,
        tos=tos,
        total_length=total_length,
        ttl=ttl,
        protocol=protocol,
        src=ipaddress.IPv4Address(src),
        dst=ipaddress.IPv4Address(dst),
        options=options,
        has_router_alert=_has_router_alert(options),
        is_fragment=bool(fragment & _MORE_FRAGMENTS_AND_OFFSET),
        payload=packet[header_length:total_length],
    )


def _has_router_alert(options: bytes) -> bool:
    """Walk the options (RFC 791 §3.1): True if a well-formed Router Alert is among them."""
    found = False
    pos = 0
    while pos < len(options):
        kind = options[pos]
        if kind == _OPTION_END:
            break
        if kind == _OPTION_NOP:
            pos += 1
            continue
        if pos + 1 >= len(options):
            raise MalformedPacket("bad_ip_option", f"option {kind} without length")
        length = options[pos + 1]
        if length < 2 or pos + length > len(options):
            raise MalformedPacket("bad_ip_option", f"option {kind} of length {length}")
        if kind == _OPTION_ROUTER_ALERT and length == len(ROUTER_ALERT_OPTION):
            found = True
        pos += length
    return found
