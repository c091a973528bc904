"""Multicast data packets as a prepared handover sees them: group, identity, forwarded copy.

A MAG that buffers a mobile node's groups before it arrives (docs/handover.md)
must know, for each buffered packet, its group, whether the MN already got it
from its previous MAG, and what the packet looks like once forwarded:

- ``multicast_addresses``: the family, source and destination group of an
  IPv4 or IPv6 packet (RFC 791 §3.1, RFC 8200 §3), None for anything else;
- ``packet_identity``: 8 octets that name a packet at every MAG it reaches
  from the same LMA. The LMA sends the same packet down every tunnel, and
  forwarding changes only the TTL / Hop Limit and, for IPv4, the header
  checksum; the identity is a BLAKE2b digest of the packet with those fields
  zeroed, and the UDP checksum too: a packet socket may see a packet whose
  UDP checksum is still left to the NIC (checksum offload: the field holds
  a partial sum), and one MAG may see it so and the other complete. So the
  previous MAG's forwarded copy and the next MAG's received copy have the
  same identity (one hash of the packet, about a microsecond in CPython for
  1,000 octets);
- ``forwarded_copy``: the packet as a router forwards it (RFC 1812 §5.3.1:
  TTL decremented, header checksum updated; RFC 8200 §3: Hop Limit
  decremented), None when it may not be forwarded any more (TTL 1 or 0).
  The UDP checksum (RFC 768; RFC 8200 §8.1 pseudo-header) is computed
  afresh, as the copy leaves through a packet socket that offloads nothing.
"""

from __future__ import annotations

import hashlib
import ipaddress

from mcproxy_pmip.addresses import Family, IPAddress
from mcproxy_pmip.wire.checksum import internet_checksum, ipv6_pseudo_header

IDENTITY_SIZE = 8
IPPROTO_UDP = 17
_IPV4_TTL = 8
_IPV4_CHECKSUM = 10
_IPV6_HOP_LIMIT = 7
_IPV6_NEXT_HEADER = 6
_IPV6_HEADER = 40
_UDP_CHECKSUM = 6
_UDP_HEADER = 8


def _udp_offset(data: bytearray) -> int | None:
    """Where the UDP header starts, None when the packet carries none right after the IP header."""
    if data[0] >> 4 == 4:
        offset = (data[0] & 0x0F) * 4
        return offset if data[9] == IPPROTO_UDP and len(data) >= offset + _UDP_HEADER else None
    if data[_IPV6_NEXT_HEADER] == IPPROTO_UDP and len(data) >= _IPV6_HEADER + _UDP_HEADER:
        return _IPV6_HEADER
    return None


def _fill_udp_checksum(data: bytearray, offset: int) -> None:
    segment = data[offset:]
    segment[_UDP_CHECKSUM:_UDP_CHECKSUM + 2] = b"\x00\x00"
    if data[0] >> 4 == 4:
        pseudo = bytes(data[12:20]) + bytes((0, IPPROTO_UDP)) + len(segment).to_bytes(2, "big")
    else:
        pseudo = ipv6_pseudo_header(ipaddress.IPv6Address(bytes(data[8:24])),
                                    ipaddress.IPv6Address(bytes(data[24:40])), len(segment), IPPROTO_UDP)
    checksum = internet_checksum(pseudo + bytes(segment)) or 0xFFFF
    data[offset + _UDP_CHECKSUM:offset + _UDP_CHECKSUM + 2] = checksum.to_bytes(2, "big")


def multicast_addresses(packet: bytes) -> tuple[Family, IPAddress, IPAddress] | None:
    """(family, source, group) of a multicast packet; None when it is not IPv4/IPv6 multicast."""
    if len(packet) >= 20 and packet[0] >> 4 == 4 and 224 <= packet[16] <= 239:
        return Family.IPV4, ipaddress.IPv4Address(packet[12:16]), ipaddress.IPv4Address(packet[16:20])
    if len(packet) >= 40 and packet[0] >> 4 == 6 and packet[24] == 0xFF:
        return Family.IPV6, ipaddress.IPv6Address(packet[8:24]), ipaddress.IPv6Address(packet[24:40])
    return None


def packet_identity(packet: bytes) -> bytes:
    """The packet's identity: the same before and after any number of forwarding hops."""
    data = bytearray(packet)
    if data[0] >> 4 == 4:
        data[_IPV4_TTL] = 0
        data[_IPV4_CHECKSUM:_IPV4_CHECKSUM + 2] = b"\x00\x00"
    else:
        data[_IPV6_HOP_LIMIT] = 0
    udp = _udp_offset(data)
    if udp is not None:
        data[udp + _UDP_CHECKSUM:udp + _UDP_CHECKSUM + 2] = b"\x00\x00"
    return hashlib.blake2b(data, digest_size=IDENTITY_SIZE).digest()


def forwarded_copy(packet: bytes) -> bytes | None:
    """The packet one hop further (TTL / Hop Limit less one); None if it has no hop left."""
    data = bytearray(packet)
    if data[0] >> 4 == 4:
        if data[_IPV4_TTL] <= 1:
            return None
        header_length = (data[0] & 0x0F) * 4
        data[_IPV4_TTL] -= 1
        data[_IPV4_CHECKSUM:_IPV4_CHECKSUM + 2] = b"\x00\x00"
        checksum = internet_checksum(bytes(data[:header_length]))
        data[_IPV4_CHECKSUM:_IPV4_CHECKSUM + 2] = checksum.to_bytes(2, "big")
    else:
        if data[_IPV6_HOP_LIMIT] <= 1:
            return None
        data[_IPV6_HOP_LIMIT] -= 1
    udp = _udp_offset(data)
    if udp is not None:
        _fill_udp_checksum(data, udp)
    return bytes(data)
