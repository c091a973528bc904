"""Parse the messages the kernel queues on a multicast routing socket ("upcalls").

IPv4 (``linux/mroute.h``, ``struct igmpmsg``) overlays a copy of the packet's
IP header: the TTL byte holds the message type, the protocol byte is zero
(that is how an upcall differs from an IGMP packet on the same raw socket), the
checksum bytes hold the vif (low, high) and the addresses stay in place::

     0               4               8       9       10      11      12
    +---------------+---------------+-------+-------+-------+-------+----------+----------+
    |   unused1     |   unused2     | type  |  mbz  | vif   | vif_hi| im_src   | im_dst   |
    +---------------+---------------+-------+-------+-------+-------+----------+----------+

``IGMPMSG_NOCACHE`` / ``IGMPMSG_WRONGVIF`` carry the copied header (IHL bytes)
and an 8-byte IGMP header; ``IGMPMSG_WHOLEPKT`` / ``IGMPMSG_WRVIFWHOLE`` carry a
20-byte header followed by the whole original packet.

IPv6 (``linux/mroute6.h``, ``struct mrt6msg``) arrives on the raw ICMPv6 socket
without an IPv6 header: ``mbz`` (0, an ICMPv6 type no message uses), type,
mif (u16), 4 bytes pad, source, destination (40 bytes); the WHOLEPKT kinds
append the original packet.

No kind is dropped silently: every known type becomes a dataclass, an unknown
one raises ``MalformedPacket``. Pure code, no syscalls.
"""

from __future__ import annotations

import enum
import ipaddress
import struct
from dataclasses import dataclass

from mcproxy_pmip.addresses import Family, IPAddress
from mcproxy_pmip.errors import MalformedPacket


class UpcallKind(enum.IntEnum):
    """The message type; IGMPMSG_* and MRT6MSG_* share the numbers."""

    NOCACHE = 1
    WRONGVIF = 2
    WHOLEPKT = 3
    WRVIFWHOLE = 4


@dataclass(frozen=True, slots=True)
class NoCache:
    """A packet for (source, group) arrived on ``vif`` and the table has no MFC entry for it."""

    family: Family
    vif: int
    source: IPAddress
    group: IPAddress


@dataclass(frozen=True, slots=True)
class WrongVif:
    """A packet for (source, group) arrived on ``vif``, which is not the entry's iif (MRT_ASSERT on)."""

    family: Family
    vif: int
    source: IPAddress
    group: IPAddress


@dataclass(frozen=True, slots=True)
class WholePacket:
    """The kernel handed a whole packet up (PIM register vif, or WRVIFWHOLE when ``wrong_vif``)."""

    family: Family
    vif: int
    source: IPAddress
    group: IPAddress
    packet: bytes
    wrong_vif: bool


Upcall = NoCache | WrongVif | WholePacket

_IGMPMSG = struct.Struct("!8xBBBB4s4s")
_MRT6MSG = struct.Struct("=BBH4x16s16s")
_IPV4_HEADER_LENGTH = 20


def parse(family: Family, data: bytes) -> Upcall | None:
    """The upcall in ``data`` as read from the mroute socket, or None for a packet that is not one."""
    if family is Family.IPV4:
        return parse_igmpmsg(data)
    return parse_mrt6msg(data)


def _build(
    family: Family, kind: int, vif: int, source: IPAddress, group: IPAddress, rest: bytes
) -> Upcall:
    if kind == UpcallKind.NOCACHE:
        return NoCache(family, vif, source, group)
    if kind == UpcallKind.WRONGVIF:
        return WrongVif(family, vif, source, group)
    if kind in (UpcallKind.WHOLEPKT, UpcallKind.WRVIFWHOLE):
        return WholePacket(family, vif, source, group, rest, kind == UpcallKind.WRVIFWHOLE)
    raise MalformedPacket("upcall-unknown-type", f"type {kind}")


def parse_igmpmsg(data: bytes) -> Upcall | None:
    """A ``struct igmpmsg``; None when the protocol byte is not zero (an IGMP packet)."""
    if len(data) < _IGMPMSG.size:
        raise MalformedPacket("upcall-too-short", f"{len(data)} bytes")
    kind, mbz, vif_low, vif_high, src, dst = _IGMPMSG.unpack_from(data)
    if mbz != 0:
        return None
    rest = data[_IPV4_HEADER_LENGTH:]
    return _build(
        Family.IPV4, kind, vif_low | vif_high << 8, ipaddress.IPv4Address(src), ipaddress.IPv4Address(dst), rest
    )


def parse_mrt6msg(data: bytes) -> Upcall | None:
    """A ``struct mrt6msg``; None when the first byte is not zero (an ICMPv6 message)."""
    if not data:
        raise MalformedPacket("upcall-too-short", "0 bytes")
    if data[0] != 0:
        return None
    if len(data) < _MRT6MSG.size:
        raise MalformedPacket("upcall-too-short", f"{len(data)} bytes")
    _, kind, mif, src, dst = _MRT6MSG.unpack_from(data)
    rest = data[_MRT6MSG.size :]
    return _build(Family.IPV6, kind, mif, ipaddress.IPv6Address(src), ipaddress.IPv6Address(dst), rest)
