"""MLD message codec: MLDv1 (RFC 2710 §3) and MLDv2 (RFC 3810 §5), as ICMPv6 messages.

``parse(data)`` takes the ICMPv6 message and returns one of the message
dataclasses or raises ``MalformedPacket``; nothing else escapes. It does not
check the checksum, which needs the IPv6 addresses: packets read from a
packet socket are checked with ``verify_checksum`` first
(``kernel.mld_socket.decode_packet``). ``build(msg, src, dst)``
fills the checksum over the IPv6 pseudo-header, or leaves it 0 for the kernel
(``IPV6_CHECKSUM`` on raw ICMPv6 sockets) when no addresses are given.

Multicast Listener Query (type 130), RFC 3810 §5.1; MLDv1 queries are the
first 24 octets, with a linear Maximum Response Delay in milliseconds::

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |  Type = 130   |      Code     |           Checksum            |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |    Maximum Response Code      |           Reserved            |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                  Multicast Address (128 bits)                 |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    | Resv  |S| QRV |     QQIC      |     Number of Sources (N)     |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                  Source Address [1..N] (128 bits each)        |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

Query version by length (RFC 3810 §8.1): 24 octets is MLDv1, at least 28
MLDv2, 25 to 27 malformed. MLDv2's Maximum Response Code (ms) is the 16-bit
floating-point form, QQIC (s) the 8-bit one (``wire.floatcode``).

MLDv1 Report (131) and Done (132), RFC 2710 §3: the same 24 octets, the
delay field zero. MLDv2 Report (143), RFC 3810 §5.2::

    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |  Type = 143   |    Reserved   |           Checksum            |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |           Reserved            |Nr of Mcast Address Records (M)|
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    .         Multicast Address Record [1..M] (wire.reportbody)     .
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

Intervals are seconds (float). MLDv1 queries carry no S flag, robustness or
query interval: ignored when building, parsed as False / 0 / 0.0.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from mcproxy_pmip.addresses import Family
from mcproxy_pmip.errors import MalformedPacket
from mcproxy_pmip.wire import checksum, reportbody
from mcproxy_pmip.wire.floatcode import CODE8, CODE16, to_units
from mcproxy_pmip.wire.records import GroupRecord

MULTICAST_LISTENER_QUERY = 130
V1_MULTICAST_LISTENER_REPORT = 131
V1_MULTICAST_LISTENER_DONE = 132
V2_MULTICAST_LISTENER_REPORT = 143

MAX_ROBUSTNESS_IN_QRV = 7
V1_MAX_RESPONSE_DELAY = 0xFFFF

_ICMP_HEADER_LENGTH = 4
_V1 = struct.Struct("!BBHHH16s")
_V2_QUERY_TAIL = struct.Struct("!BBH")
V1_LENGTH = _V1.size
V2_QUERY_MIN_LENGTH = V1_LENGTH + _V2_QUERY_TAIL.size

_UNSPECIFIED = ipaddress.IPv6Address(0)


def _check_ipv6(address: object, what: str) -> None:
    if not isinstance(address, ipaddress.IPv6Address):
        raise ValueError(f"{what} {address!r} is not an IPv6Address")


@dataclass(frozen=True, slots=True)
class MldQuery:
    """A Multicast Listener Query of ``version`` 1 or 2.

    ``group`` None is a General Query. ``sources`` only in MLDv2.
    ``max_resp_interval`` seconds; ``suppress_router_processing`` the S flag;
    ``robustness`` the QRV (values above 7 are sent as 0, RFC 3810 §5.1.8);
    ``query_interval`` the QQI in seconds.
    """

    version: int
    max_resp_interval: float
    group: ipaddress.IPv6Address | None = None
    sources: tuple[ipaddress.IPv6Address, ...] = ()
    suppress_router_processing: bool = False
    robustness: int = 0
    query_interval: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "sources", tuple(self.sources))
        if self.version not in (1, 2):
            raise ValueError(f"MLD query version {self.version}")
        if self.group is not None:
            _check_ipv6(self.group, "group")
        for source in self.sources:
            _check_ipv6(source, "source")
        if self.version == 1 and self.sources:
            raise ValueError("an MLDv1 query carries no sources")
        if self.max_resp_interval < 0 or self.query_interval < 0 or self.robustness < 0:
            raise ValueError("negative interval or robustness")
        if len(self.sources) > reportbody.MAX_SOURCES:
            raise ValueError(f"{len(self.sources)} sources do not fit one query")


@dataclass(frozen=True, slots=True)
class MldV1Report:
    """An MLDv1 Multicast Listener Report for ``group``."""

    group: ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class MldDone:
    """An MLDv1 Multicast Listener Done for ``group``."""

    group: ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class MldV2Report:
    """An MLDv2 Multicast Listener Report. ``skipped_records``: records of unknown type dropped.

    ``skipped_records`` is a receive-side count: ``build`` does not send it.
    """

    records: tuple[GroupRecord, ...]
    skipped_records: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "records", tuple(self.records))


MldMessage = MldQuery | MldV1Report | MldDone | MldV2Report


def parse(data: bytes) -> MldMessage:
    """Parse one ICMPv6 MLD message; raise ``MalformedPacket`` if it does not parse."""
    data = bytes(data)
    if len(data) < _ICMP_HEADER_LENGTH:
        raise MalformedPacket("too_short", f"{len(data)} octets")
    icmp_type = data[0]
    if icmp_type == V2_MULTICAST_LISTENER_REPORT:
        records, skipped = reportbody.decode_body(data[_ICMP_HEADER_LENGTH:], Family.IPV6)
        return MldV2Report(records, skipped)
    if icmp_type not in (
        MULTICAST_LISTENER_QUERY,
        V1_MULTICAST_LISTENER_REPORT,
        V1_MULTICAST_LISTENER_DONE,
    ):
        raise MalformedPacket("unknown_type", f"ICMPv6 type {icmp_type}")
    if len(data) < V1_LENGTH:
        raise MalformedPacket("too_short", f"type {icmp_type} in {len(data)} octets")
    _, _, _, delay, _, address_bytes = _V1.unpack_from(data)
    address = ipaddress.IPv6Address(address_bytes)
    if icmp_type == V1_MULTICAST_LISTENER_REPORT:
        return MldV1Report(address)
    if icmp_type == V1_MULTICAST_LISTENER_DONE:
        return MldDone(address)
    return _parse_query(data, delay, address)


def _parse_query(data: bytes, code: int, address: ipaddress.IPv6Address) -> MldQuery:
    length = len(data)
    group = None if address == _UNSPECIFIED else address
    if length == V1_LENGTH:
        return MldQuery(1, code / 1000, group)
    if length < V2_QUERY_MIN_LENGTH:
        raise MalformedPacket("query_length_25_to_27", f"{length} octets")
    flags, qqic, nsources = _V2_QUERY_TAIL.unpack_from(data, V1_LENGTH)
    end = V2_QUERY_MIN_LENGTH + 16 * nsources
    if end > length:
        raise MalformedPacket("query_source_overrun", f"{nsources} sources in {length} octets")
    sources = tuple(
        ipaddress.IPv6Address(data[pos : pos + 16]) for pos in range(V2_QUERY_MIN_LENGTH, end, 16)
    )
    return MldQuery(
        version=2,
        max_resp_interval=CODE16.decode(code) / 1000,
        group=group,
        sources=sources,
        suppress_router_processing=bool(flags & 0x08),
        robustness=flags & 0x07,
        query_interval=float(CODE8.decode(qqic)),
    )


def build(
    msg: MldMessage,
    src: ipaddress.IPv6Address | None = None,
    dst: ipaddress.IPv6Address | None = None,
) -> bytes:
    """Encode ``msg``; fill the checksum when both ``src`` and ``dst`` are given, else leave 0."""
    if (src is None) != (dst is None):
        raise ValueError("give both src and dst for the checksum, or neither")
    if isinstance(msg, MldQuery):
        body = _build_query(msg)
    elif isinstance(msg, MldV1Report):
        body = _V1.pack(V1_MULTICAST_LISTENER_REPORT, 0, 0, 0, 0, msg.group.packed)
    elif isinstance(msg, MldDone):
        body = _V1.pack(V1_MULTICAST_LISTENER_DONE, 0, 0, 0, 0, msg.group.packed)
    elif isinstance(msg, MldV2Report):
        body = struct.pack("!BxH", V2_MULTICAST_LISTENER_REPORT, 0) + reportbody.encode_body(
            msg.records, Family.IPV6
        )
    else:
        raise TypeError(f"not an MLD message: {msg!r}")
    if src is None or dst is None:
        return body
    csum = checksum.icmpv6_checksum(body, src, dst)
    return body[:2] + csum.to_bytes(2, "big") + body[4:]


def verify_checksum(data: bytes, src: ipaddress.IPv6Address, dst: ipaddress.IPv6Address) -> bool:
    """True when ICMPv6 message ``data`` from ``src`` to ``dst`` has a correct checksum."""
    return checksum.icmpv6_is_valid(bytes(data), src, dst)


def _build_query(msg: MldQuery) -> bytes:
    group = (msg.group or _UNSPECIFIED).packed
    millis = to_units(msg.max_resp_interval, 1000)
    if msg.version == 1:
        return _V1.pack(
            MULTICAST_LISTENER_QUERY, 0, 0, min(millis, V1_MAX_RESPONSE_DELAY), 0, group
        )
    qrv = msg.robustness if msg.robustness <= MAX_ROBUSTNESS_IN_QRV else 0
    flags = (0x08 if msg.suppress_router_processing else 0) | qrv
    qqic = CODE8.encode(to_units(msg.query_interval, 1))
    return b"".join(
        (
            _V1.pack(MULTICAST_LISTENER_QUERY, 0, 0, CODE16.encode(millis), 0, group),
            _V2_QUERY_TAIL.pack(flags, qqic, len(msg.sources)),
            *(s.packed for s in msg.sources),
        )
    )
