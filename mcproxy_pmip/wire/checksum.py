"""The Internet checksum (RFC 1071) for IGMP and ICMPv6 (MLD).

IGMP (RFC 3376 §4.1.2, §4.2.2) sums the whole IGMP message; ICMPv6
(RFC 4443 §2.3, used by MLD per RFC 3810 §5.1.2 / §5.2.2) also sums the
IPv6 pseudo-header of RFC 8200 §8.1::

    +-------------------------------------------------------+
    |                 Source Address (128 bits)             |
    +-------------------------------------------------------+
    |              Destination Address (128 bits)           |
    +-------------------------------------------------------+
    |                 Upper-Layer Packet Length (32 bits)   |
    +-------------------------------------------------------+
    |              zero (24 bits)           |  Next Header  |
    +-------------------------------------------------------+

Odd-length data is padded with one zero octet for the sum only; carries are
folded back in (end-around carry).
"""

from __future__ import annotations

import ipaddress
import struct

ICMPV6_NEXT_HEADER = 58


def ones_complement_sum(data: bytes) -> int:
    """The 16-bit one's complement sum of ``data`` (odd length padded with a zero octet)."""
    if len(data) % 2:
        data = data + b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def internet_checksum(data: bytes) -> int:
    """The value to put in a checksum field that held zero while ``data`` was summed."""
    return ~ones_complement_sum(data) & 0xFFFF


def is_valid(data: bytes) -> bool:
    """True when ``data`` (checksum field included) sums to all ones."""
    return ones_complement_sum(data) == 0xFFFF


def ipv6_pseudo_header(
    src: ipaddress.IPv6Address,
    dst: ipaddress.IPv6Address,
    upper_layer_length: int,
    next_header: int = ICMPV6_NEXT_HEADER,
) -> bytes:
    """The RFC 8200 §8.1 pseudo-header."""
    return src.packed + dst.packed + struct.pack("!I3xB", upper_layer_length, next_header)


def icmpv6_checksum(
    data: bytes, src: ipaddress.IPv6Address, dst: ipaddress.IPv6Address
) -> int:
    """The checksum of ICMPv6 message ``data`` (checksum field zeroed), ``src`` to ``dst``."""
    return internet_checksum(ipv6_pseudo_header(src, dst, len(data)) + data)


def icmpv6_is_valid(
    data: bytes, src: ipaddress.IPv6Address, dst: ipaddress.IPv6Address
) -> bool:
    """True when ICMPv6 message ``data`` carries a correct checksum for ``src`` -> ``dst``."""
    return is_valid(ipv6_pseudo_header(src, dst, len(data)) + data)
