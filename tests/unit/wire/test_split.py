"""MTU splitting of query source lists and report records (RFC 3376 §4.2.16, RFC 3810 §5.2.15)."""

from __future__ import annotations

import ipaddress

import pytest

from mcproxy_pmip.addresses import Family
from mcproxy_pmip.wire import igmp, mld, split
from mcproxy_pmip.wire.records import GroupRecord, RecordType

G4 = ipaddress.IPv4Address("232.1.1.1")
G6 = ipaddress.IPv6Address("ff3e::1")


def v4_sources(n: int) -> tuple[ipaddress.IPv4Address, ...]:
    return tuple(ipaddress.IPv4Address(0x0A000000 + i) for i in range(1, n + 1))


def v6_sources(n: int) -> tuple[ipaddress.IPv6Address, ...]:
    return tuple(ipaddress.IPv6Address((0x20010DB8 << 96) + i) for i in range(1, n + 1))


def test_query_capacity_at_1500() -> None:
    assert split.max_query_sources(Family.IPV4) == 366
    assert split.max_query_sources(Family.IPV6) == 89


def test_1000_ipv4_sources_split_into_chunks_of_at_most_366() -> None:
    sources = v4_sources(1000)
    chunks = split.split_query_sources(sources, Family.IPV4)
    assert [len(c) for c in chunks] == [366, 366, 268]
    assert tuple(s for c in chunks for s in c) == sources
    for chunk in chunks:
        data = igmp.build(igmp.IgmpQuery(3, 1.0, G4, chunk))
        assert 20 + 4 + len(data) <= 1500


def test_ipv6_sources_split_into_chunks_of_at_most_89() -> None:
    sources = v6_sources(200)
    chunks = split.split_query_sources(sources, Family.IPV6)
    assert [len(c) for c in chunks] == [89, 89, 22]
    for chunk in chunks:
        data = mld.build(mld.MldQuery(2, 1.0, G6, chunk))
        assert 40 + 8 + len(data) <= 1500
    assert len(mld.build(mld.MldQuery(2, 1.0, G6, v6_sources(90)))) + 48 > 1500


def test_no_sources_is_one_query() -> None:
    assert split.split_query_sources((), Family.IPV4) == [()]


def test_smaller_mtu_means_smaller_chunks() -> None:
    assert split.max_query_sources(Family.IPV4, mtu=576) == (576 - 24 - 12) // 4
    with pytest.raises(ValueError):
        split.max_query_sources(Family.IPV6, mtu=80)


def _report_fits(records: tuple[GroupRecord, ...], family: Family) -> bool:
    if family is Family.IPV4:
        return 24 + len(igmp.build(igmp.IgmpV3Report(records))) <= 1500
    return 48 + len(mld.build(mld.MldV2Report(records))) <= 1500


def test_small_records_share_reports_and_overflow_into_more() -> None:
    records = tuple(
        GroupRecord(RecordType.MODE_IS_EXCLUDE, ipaddress.IPv4Address(0xE8000000 + i))
        for i in range(200)
    )
    reports = split.split_report_records(records, Family.IPV4)
    assert [len(r) for r in reports] == [183, 17]  # (1500 - 24 - 8) // 8 = 183
    assert tuple(r for report in reports for r in report) == records
    assert all(_report_fits(r, Family.IPV4) for r in reports)


def test_records_that_fit_are_never_split_across_reports() -> None:
    big = GroupRecord(RecordType.MODE_IS_INCLUDE, G4, v4_sources(300))
    reports = split.split_report_records((big, big), Family.IPV4)
    assert reports == [(big,), (big,)]


@pytest.mark.parametrize(
    "record_type", [RecordType.ALLOW_NEW_SOURCES, RecordType.BLOCK_OLD_SOURCES,
                    RecordType.MODE_IS_INCLUDE, RecordType.CHANGE_TO_INCLUDE]
)
def test_oversized_include_like_records_are_split(record_type: RecordType) -> None:
    sources = v4_sources(1000)
    reports = split.split_report_records((GroupRecord(record_type, G4, sources),), Family.IPV4)
    assert [len(r) for r in reports] == [1, 1, 1]
    assert [len(r[0].sources) for r in reports] == [365, 365, 270]
    assert tuple(s for r in reports for s in r[0].sources) == sources
    assert all(r[0].record_type is record_type and r[0].group == G4 for r in reports)
    assert all(_report_fits(r, Family.IPV4) for r in reports)


@pytest.mark.parametrize("record_type", [RecordType.MODE_IS_EXCLUDE, RecordType.CHANGE_TO_EXCLUDE])
def test_oversized_exclude_records_are_truncated(record_type: RecordType) -> None:
    sources = v6_sources(500)
    reports = split.split_report_records((GroupRecord(record_type, G6, sources),), Family.IPV6)
    assert len(reports) == 1
    (record,) = reports[0]
    assert record.sources == sources[:89]  # (1500 - 48 - 8 - 20) // 16
    assert _report_fits(reports[0], Family.IPV6)


def test_split_record_pieces_get_their_own_reports_and_order_is_kept() -> None:
    small = GroupRecord(RecordType.MODE_IS_EXCLUDE, ipaddress.IPv4Address("239.1.1.1"))
    big = GroupRecord(RecordType.ALLOW_NEW_SOURCES, G4, v4_sources(400))
    reports = split.split_report_records((small, big, small), Family.IPV4)
    assert [[len(r.sources) for r in rep] for rep in reports] == [[0], [365], [35, 0]]
    assert all(_report_fits(r, Family.IPV4) for r in reports)


def test_no_records_means_no_reports() -> None:
    assert split.split_report_records((), Family.IPV6) == []
