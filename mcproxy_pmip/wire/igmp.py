"""IGMP message codec: IGMPv1 (RFC 1112 App. I), IGMPv2 (RFC 2236), IGMPv3 (RFC 3376 §4).

``parse(data)`` takes the IGMP message (the IPv4 payload), verifies its
checksum (RFC 3376 §4.1.2) and returns one of the message dataclasses or
raises ``MalformedPacket``; nothing else escapes. ``build(msg)`` returns the
message with its checksum filled in.

Membership Query (type 0x11), RFC 3376 §4.1; IGMPv1/v2 queries are the first
eight octets::

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |  Type = 0x11  | Max Resp Code |           Checksum            |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                         Group Address                         |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    | Resv  |S| QRV |     QQIC      |     Number of Sources (N)     |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                     Source Address [1..N]                     |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

Query version by length (RFC 3376 §7.1): 8 octets and Max Resp Code 0 is
IGMPv1, 8 octets otherwise IGMPv2, at least 12 octets IGMPv3; 9 to 11 octets
is malformed. The IGMPv3 Max Resp Code (1/10 s) and QQIC (s) use the
floating-point form of ``wire.floatcode``; IGMPv2's is linear in 1/10 s.

IGMPv1 Report (0x12), IGMPv2 Report (0x16), IGMPv2 Leave Group (0x17)::

    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |     Type      | Max Resp Time |           Checksum            |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                         Group Address                         |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

IGMPv3 Membership Report (0x22), RFC 3376 §4.2::

    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |  Type = 0x22  |    Reserved   |           Checksum            |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |           Reserved            |  Number of Group Records (M)  |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    .                  Group Record [1..M] (wire.reportbody)        .
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

Intervals are seconds (float). Fields a version does not carry (IGMPv1/v2:
S flag, robustness, query interval) are ignored when building and parsed as
False / 0 / 0.0 ("not carried", as QRV 0 means in RFC 3376 §4.1.6). An IGMPv1
query is sent with Max Resp Code 0 and parsed as 10 s (RFC 2236 §4).
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from mcproxy_pmip.addresses import Family
from mcproxy_pmip.errors import MalformedPacket
from mcproxy_pmip.wire import checksum, reportbody
from mcproxy_pmip.wire.floatcode import CODE8, to_units
from mcproxy_pmip.wire.records import GroupRecord

MEMBERSHIP_QUERY = 0x11
V1_MEMBERSHIP_REPORT = 0x12
V2_MEMBERSHIP_REPORT = 0x16
V2_LEAVE_GROUP = 0x17
V3_MEMBERSHIP_REPORT = 0x22

IGMPV1_MAX_RESP_INTERVAL = 10.0
"""What an IGMPv1 query (Max Resp Code 0) means to its receivers (RFC 2236 §4)."""

MAX_ROBUSTNESS_IN_QRV = 7
V2_MAX_RESP_CODE = 0xFF

_HEADER = struct.Struct("!BBH4s")
_V3_QUERY_TAIL = struct.Struct("!BBH")
V1V2_LENGTH = _HEADER.size
V3_QUERY_MIN_LENGTH = V1V2_LENGTH + _V3_QUERY_TAIL.size

_UNSPECIFIED = ipaddress.IPv4Address(0)


def _check_ipv4(address: object, what: str) -> None:
    if not isinstance(address, ipaddress.IPv4Address):
        raise ValueError(f"{what} {address!r} is not an IPv4Address")


@dataclass(frozen=True, slots=True)
class IgmpQuery:
    """A Membership Query of ``version`` 1, 2 or 3.

    ``group`` None is a General Query. ``sources`` only in IGMPv3.
    ``max_resp_interval`` seconds; ``suppress_router_processing`` the S flag;
    ``robustness`` the QRV (values above 7 are sent as 0, RFC 3376 §4.1.6);
    ``query_interval`` the QQI in seconds.
    """

    version: int
    max_resp_interval: float
    group: ipaddress.IPv4Address | None = None
    sources: tuple[ipaddress.IPv4Address, ...] = ()
    suppress_router_processing: bool = False
    robustness: int = 0
    query_interval: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "sources", tuple(self.sources))
        if self.version not in (1, 2, 3):
            raise ValueError(f"IGMP query version {self.version}")
        if self.group is not None:
            _check_ipv4(self.group, "group")
        for source in self.sources:
            _check_ipv4(source, "source")
        if self.version < 3 and self.sources:
            raise ValueError(f"an IGMPv{self.version} query carries no sources")
        if self.version == 1 and self.group is not None:
            raise ValueError("an IGMPv1 query is always a General Query")
        if self.max_resp_interval < 0 or self.query_interval < 0 or self.robustness < 0:
            raise ValueError("negative interval or robustness")
        if self.version == 2 and to_units(self.max_resp_interval, 10) == 0:
            raise ValueError("an IGMPv2 query needs a Max Resp Time of at least 0.1 s")
        if len(self.sources) > reportbody.MAX_SOURCES:
            raise ValueError(f"{len(self.sources)} sources do not fit one query")


@dataclass(frozen=True, slots=True)
class IgmpV1Report:
    """An IGMPv1 Host Membership Report for ``group``."""

    group: ipaddress.IPv4Address


@dataclass(frozen=True, slots=True)
class IgmpV2Report:
    """An IGMPv2 Membership Report for ``group``."""

    group: ipaddress.IPv4Address


@dataclass(frozen=True, slots=True)
class IgmpV2Leave:
    """An IGMPv2 Leave Group for ``group``."""

    group: ipaddress.IPv4Address


@dataclass(frozen=True, slots=True)
class IgmpV3Report:
    """An IGMPv3 Membership Report. ``skipped_records``: records of unknown type dropped.

    ``skipped_records`` is a receive-side count: ``build`` does not send it.
    """

    records: tuple[GroupRecord, ...]
    skipped_records: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "records", tuple(self.records))


IgmpMessage = IgmpQuery | IgmpV1Report | IgmpV2Report | IgmpV2Leave | IgmpV3Report


def parse(data: bytes) -> IgmpMessage:
    """Parse one IGMP message; raise ``MalformedPacket`` if it does not parse."""
    data = bytes(data)
    if len(data) < V1V2_LENGTH:
        raise MalformedPacket("too_short", f"{len(data)} octets")
    if not checksum.is_valid(data):
        raise MalformedPacket("bad_checksum", f"{len(data)} octets")
    igmp_type, code, _, group_bytes = _HEADER.unpack_from(data)
    group = ipaddress.IPv4Address(group_bytes)
    if igmp_type == MEMBERSHIP_QUERY:
        return _parse_query(data, code, group)
    if igmp_type == V1_MEMBERSHIP_REPORT:
        return IgmpV1Report(group)
    if igmp_type == V2_MEMBERSHIP_REPORT:
        return IgmpV2Report(group)
    if igmp_type == V2_LEAVE_GROUP:
        return IgmpV2Leave(group)
    if igmp_type == V3_MEMBERSHIP_REPORT:
        records, skipped = reportbody.decode_body(data[4:], Family.IPV4)
        return IgmpV3Report(records, skipped)
    raise MalformedPacket("unknown_type", f"IGMP type 0x{igmp_type:02x}")


def _parse_query(data: bytes, code: int, group: ipaddress.IPv4Address) -> IgmpQuery:
    length = len(data)
    if length == V1V2_LENGTH:
        if code == 0:
            return IgmpQuery(1, IGMPV1_MAX_RESP_INTERVAL)
        return IgmpQuery(2, code / 10, _group_or_none(group))
    if length < V3_QUERY_MIN_LENGTH:
        raise MalformedPacket("query_length_9_to_11", f"{length} octets")
    flags, qqic, nsources = _V3_QUERY_TAIL.unpack_from(data, V1V2_LENGTH)
    end = V3_QUERY_MIN_LENGTH + 4 * nsources
    if end > length:
        raise MalformedPacket("query_source_overrun", f"{nsources} sources in {length} octets")
    sources = tuple(
        ipaddress.IPv4Address(data[pos : pos + 4]) for pos in range(V3_QUERY_MIN_LENGTH, end, 4)
    )
    return IgmpQuery(
        version=3,
        max_resp_interval=CODE8.decode(code) / 10,
        group=_group_or_none(group),
        sources=sources,
        suppress_router_processing=bool(flags & 0x08),
        robustness=flags & 0x07,
        query_interval=float(CODE8.decode(qqic)),
    )


def _group_or_none(group: ipaddress.IPv4Address) -> ipaddress.IPv4Address | None:
    return None if group == _UNSPECIFIED else group


def build(msg: IgmpMessage) -> bytes:
    """Encode ``msg`` with its checksum."""
    if isinstance(msg, IgmpQuery):
        body = _build_query(msg)
    elif isinstance(msg, IgmpV1Report):
        body = _HEADER.pack(V1_MEMBERSHIP_REPORT, 0, 0, msg.group.packed)
    elif isinstance(msg, IgmpV2Report):
        body = _HEADER.pack(V2_MEMBERSHIP_REPORT, 0, 0, msg.group.packed)
    elif isinstance(msg, IgmpV2Leave):
        body = _HEADER.pack(V2_LEAVE_GROUP, 0, 0, msg.group.packed)
    elif isinstance(msg, IgmpV3Report):
        body = struct.pack("!BxH", V3_MEMBERSHIP_REPORT, 0) + reportbody.encode_body(
            msg.records, Family.IPV4
        )
    else:
        raise TypeError(f"not an IGMP message: {msg!r}")
    csum = checksum.internet_checksum(body)
    return body[:2] + csum.to_bytes(2, "big") + body[4:]


def _build_query(msg: IgmpQuery) -> bytes:
    group = (msg.group or _UNSPECIFIED).packed
    if msg.version == 1:
        return _HEADER.pack(MEMBERSHIP_QUERY, 0, 0, group)
    tenths = to_units(msg.max_resp_interval, 10)
    if msg.version == 2:
        return _HEADER.pack(MEMBERSHIP_QUERY, min(tenths, V2_MAX_RESP_CODE), 0, group)
    qrv = msg.robustness if msg.robustness <= MAX_ROBUSTNESS_IN_QRV else 0
    flags = (0x08 if msg.suppress_router_processing else 0) | qrv
    qqic = CODE8.encode(to_units(msg.query_interval, 1))
    return b"".join(
        (
            _HEADER.pack(MEMBERSHIP_QUERY, CODE8.encode(tenths), 0, group),
            _V3_QUERY_TAIL.pack(flags, qqic, len(msg.sources)),
            *(s.packed for s in msg.sources),
        )
    )
