"""The body of IGMPv3 / MLDv2 reports: the record count and the records.

Shared by ``wire.igmp`` (RFC 3376 §4.2), ``wire.mld`` (RFC 3810 §5.2),
``wire.split`` (record sizes) and ``wire.rfc7411`` (whose context payload is
this body). The body follows the first four octets of the report
(Type | Reserved | Checksum)::

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |           Reserved            |  Number of Group Records (M)  |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    .                        Group Record [1..M]                    .
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

Each Group Record (RFC 3376 §4.2.4) / Multicast Address Record (RFC 3810
§5.2.4); addresses are 4 octets for IGMP, 16 for MLD::

    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |  Record Type  |  Aux Data Len |     Number of Sources (N)     |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |              Multicast Address (Group Address)                |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                    Source Address [1..N]                      |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    .                Auxiliary Data (Aux Data Len 32-bit words)     .
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

Records whose declared lengths overrun the data raise
``MalformedPacket("record_overrun")``; records of unknown type are skipped
(RFC 3376 §4.2.12, RFC 3810 §5.2.12) and counted.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Sequence

from mcproxy_pmip.addresses import Family, IPAddress
from mcproxy_pmip.errors import MalformedPacket
from mcproxy_pmip.wire.records import GroupRecord, RecordType

BODY_HEADER_LENGTH = 4
MAX_AUX_DATA_LENGTH = 255 * 4
MAX_SOURCES = 0xFFFF

_RECORD_HEADER = struct.Struct("!BBH")
_BODY_HEADER = struct.Struct("!2xH")
_KNOWN_RECORD_TYPES = frozenset(int(t) for t in RecordType)


def address_length(family: Family) -> int:
    return 4 if family is Family.IPV4 else 16


def address_from_bytes(family: Family, data: bytes) -> IPAddress:
    if family is Family.IPV4:
        return ipaddress.IPv4Address(data)
    return ipaddress.IPv6Address(data)


def check_address(family: Family, address: IPAddress, what: str) -> None:
    """Raise ValueError unless ``address`` belongs to ``family`` (a caller's mistake)."""
    if address.version != family.value:
        raise ValueError(f"{what} {address} is not an {family.name} address")


def record_octets(family: Family, source_count: int, aux_octets: int = 0) -> int:
    """Octets a record with ``source_count`` sources and ``aux_octets`` of aux data takes."""
    return _RECORD_HEADER.size + address_length(family) * (1 + source_count) + aux_octets


def record_size(record: GroupRecord, family: Family) -> int:
    """Octets ``record`` takes on the wire."""
    return record_octets(family, len(record.sources), len(record.aux_data))


def encode_record(record: GroupRecord, family: Family) -> bytes:
    check_address(family, record.group, "group")
    for source in record.sources:
        check_address(family, source, "source")
    if len(record.sources) > MAX_SOURCES:
        raise ValueError(f"{len(record.sources)} sources do not fit one record")
    aux = record.aux_data
    if len(aux) % 4 or len(aux) > MAX_AUX_DATA_LENGTH:
        raise ValueError(f"aux data of {len(aux)} octets is not a whole number of words <= 255")
    header = _RECORD_HEADER.pack(int(record.record_type), len(aux) // 4, len(record.sources))
    return b"".join((header, record.group.packed, *(s.packed for s in record.sources), aux))


def encode_body(records: Sequence[GroupRecord], family: Family) -> bytes:
    """Reserved, Number of Records, then each record."""
    if len(records) > 0xFFFF:
        raise ValueError(f"{len(records)} records do not fit one report")
    return _BODY_HEADER.pack(len(records)) + b"".join(encode_record(r, family) for r in records)


def decode_body(data: bytes, family: Family) -> tuple[tuple[GroupRecord, ...], int]:
    """Parse a body; return the records of known types and how many were skipped.

    Octets after the last declared record are ignored (RFC 3376 §4.2.6 does not
    forbid them; the IP length may include padding).
    """
    if len(data) < BODY_HEADER_LENGTH:
        raise MalformedPacket("too_short", f"report body of {len(data)} octets")
    (count,) = _BODY_HEADER.unpack_from(data)
    alen = address_length(family)
    offset = BODY_HEADER_LENGTH
    records: list[GroupRecord] = []
    skipped = 0
    for index in range(count):
        fixed_end = offset + _RECORD_HEADER.size + alen
        if fixed_end > len(data):
            raise MalformedPacket(
                "record_overrun", f"record {index} of {count} starts past the end"
            )
        record_type, aux_words, nsources = _RECORD_HEADER.unpack_from(data, offset)
        sources_end = fixed_end + nsources * alen
        end = sources_end + aux_words * 4
        if end > len(data):
            raise MalformedPacket(
                "record_overrun",
                f"record {index} declares {nsources} sources and {aux_words} aux words,"
                f" {end - len(data)} octets past the end",
            )
        if record_type in _KNOWN_RECORD_TYPES:
            group = address_from_bytes(family, data[fixed_end - alen : fixed_end])
            sources = tuple(
                address_from_bytes(family, data[pos : pos + alen])
                for pos in range(fixed_end, sources_end, alen)
            )
            records.append(
                GroupRecord(RecordType(record_type), group, sources, bytes(data[sources_end:end]))
            )
        else:
            skipped += 1
        offset = end
    return tuple(records), skipped
