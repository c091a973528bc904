"""Fitting queries and reports into the link MTU.

Queries (RFC 3376 §4.1.8, RFC 3810 §5.1.10): a source list that does not
fit one Group-and-Source-Specific Query goes out in several queries. With a
1500-octet MTU that is 366 IPv4 sources (1500 - 20 IPv4 header - 4 Router
Alert - 12 query header = 1464 octets) or 89 IPv6 sources (1500 - 40 IPv6
header - 8 Hop-by-Hop - 28 query header = 1424 octets).

Reports (RFC 3376 §4.2.16, RFC 3810 §5.2.15): records that do not fit one
report go out in as many reports as needed. A single record too large for
one report is split into several records of the same type, each in its own
report, unless it is MODE_IS_EXCLUDE or CHANGE_TO_EXCLUDE_MODE: that one is
sent once, truncated to the sources that fit, and the rest are not reported.
"""

from __future__ import annotations

from collections.abc import Sequence

from mcproxy_pmip.addresses import Family, IPAddress
from mcproxy_pmip.wire import reportbody
from mcproxy_pmip.wire.records import GroupRecord, RecordType

DEFAULT_MTU = 1500

_IPV4_OVERHEAD = 20 + 4
_IPV6_OVERHEAD = 40 + 8
_QUERY_HEADER = {Family.IPV4: 12, Family.IPV6: 28}
_REPORT_HEADER = 8
_TRUNCATED_TYPES = (RecordType.MODE_IS_EXCLUDE, RecordType.CHANGE_TO_EXCLUDE)


def _ip_payload_limit(family: Family, mtu: int) -> int:
    return mtu - (_IPV4_OVERHEAD if family is Family.IPV4 else _IPV6_OVERHEAD)


def max_query_sources(family: Family, mtu: int = DEFAULT_MTU) -> int:
    """How many sources one query holds at ``mtu``."""
    room = _ip_payload_limit(family, mtu) - _QUERY_HEADER[family]
    count = room // reportbody.address_length(family)
    if count < 1:
        raise ValueError(f"MTU {mtu} leaves no room for a source in an {family.name} query")
    return min(count, reportbody.MAX_SOURCES)


def split_query_sources(
    sources: Sequence[IPAddress], family: Family, mtu: int = DEFAULT_MTU
) -> list[tuple[IPAddress, ...]]:
    """The source lists of the queries to send; always at least one (possibly empty) list."""
    size = max_query_sources(family, mtu)
    sources = tuple(sources)
    if not sources:
        return [()]
    return [sources[i : i + size] for i in range(0, len(sources), size)]


def report_room(family: Family, mtu: int = DEFAULT_MTU) -> int:
    """Octets available for records in one report at ``mtu``."""
    return _ip_payload_limit(family, mtu) - _REPORT_HEADER


def split_report_records(
    records: Sequence[GroupRecord], family: Family, mtu: int = DEFAULT_MTU
) -> list[tuple[GroupRecord, ...]]:
    """Group ``records`` (in order) into reports that fit ``mtu``; no report is empty."""
    room = report_room(family, mtu)
    reports: list[tuple[GroupRecord, ...]] = []
    current: list[GroupRecord] = []
    used = 0
    for record in records:
        size = reportbody.record_size(record, family)
        if size > room or len(record.sources) > reportbody.MAX_SOURCES:
            if current:
                reports.append(tuple(current))
            pieces = _split_record(record, family, room)
            reports.extend((piece,) for piece in pieces[:-1])
            current = [pieces[-1]]
            used = reportbody.record_size(pieces[-1], family)
            continue
        if used + size > room:
            reports.append(tuple(current))
            current, used = [], 0
        current.append(record)
        used += size
    if current:
        reports.append(tuple(current))
    return reports


def _split_record(record: GroupRecord, family: Family, room: int) -> list[GroupRecord]:
    """Pieces of one record too large for a report, per RFC 3376 §4.2.16."""
    alen = reportbody.address_length(family)
    bare = GroupRecord(record.record_type, record.group, (), record.aux_data)
    per_record = min((room - reportbody.record_size(bare, family)) // alen, reportbody.MAX_SOURCES)
    if per_record < 1:
        raise ValueError(f"a record for {record.group} does not fit a report even without sources")
    if record.record_type in _TRUNCATED_TYPES:
        return [_with_sources(record, record.sources[:per_record])]
    return [
        _with_sources(record, record.sources[i : i + per_record])
        for i in range(0, len(record.sources), per_record)
    ]


def _with_sources(record: GroupRecord, sources: tuple[IPAddress, ...]) -> GroupRecord:
    return GroupRecord(record.record_type, record.group, sources, record.aux_data)
