"""RFC 7411 Multicast Mobility Option payloads (context transfer between MAGs)."""

from __future__ import annotations

import ipaddress

import pytest

from mcproxy_pmip.addresses import Family
from mcproxy_pmip.errors import MalformedPacket
from mcproxy_pmip.wire import igmp, mld, rfc7411
from mcproxy_pmip.wire.records import GroupRecord, RecordType

V4_RECORDS = (
    GroupRecord(RecordType.MODE_IS_INCLUDE, ipaddress.IPv4Address("232.1.1.1"),
                (ipaddress.IPv4Address("10.0.0.1"),)),
    GroupRecord(RecordType.MODE_IS_EXCLUDE, ipaddress.IPv4Address("239.1.1.1")),
)
V6_RECORDS = (
    GroupRecord(RecordType.MODE_IS_INCLUDE, ipaddress.IPv6Address("ff3e::1"),
                (ipaddress.IPv6Address("2001:db8::1"),)),
)


@pytest.mark.parametrize(
    ("family", "version", "records", "code"),
    [
        (Family.IPV4, 3, V4_RECORDS, 1),
        (Family.IPV6, 2, V6_RECORDS, 2),
        (Family.IPV4, 2, V4_RECORDS, 3),
        (Family.IPV6, 1, V6_RECORDS, 4),
    ],
)
def test_round_trip_with_the_rfc_option_codes(family, version, records, code) -> None:
    got_code, payload = rfc7411.encode_context(family, version, records)
    assert got_code == code
    assert len(payload) % 4 == 0
    assert rfc7411.decode_context(code, payload) == (family, version, records)


def test_payload_is_the_report_without_its_first_four_octets() -> None:
    _, payload = rfc7411.encode_context(Family.IPV4, 3, V4_RECORDS)
    assert payload == igmp.build(igmp.IgmpV3Report(V4_RECORDS))[4:]
    assert payload[2:4] == (2).to_bytes(2, "big")  # the record count is included
    _, payload = rfc7411.encode_context(Family.IPV6, 2, V6_RECORDS)
    assert payload == mld.build(mld.MldV2Report(V6_RECORDS))[4:]


def test_igmpv1_compatibility_travels_as_code_3() -> None:
    code, payload = rfc7411.encode_context(Family.IPV4, 1, V4_RECORDS)
    assert code == 3
    assert rfc7411.decode_context(code, payload)[1] == 2


def test_bad_inputs() -> None:
    with pytest.raises(ValueError):
        rfc7411.encode_context(Family.IPV6, 3, V6_RECORDS)
    with pytest.raises(MalformedPacket) as info:
        rfc7411.decode_context(5, bytes(4))
    assert info.value.reason == "unknown_context_code"
    with pytest.raises(MalformedPacket) as info:
        rfc7411.decode_context(1, b"\x00\x00\x00\x01")
    assert info.value.reason == "record_overrun"
