"""IGMP codec: round trips, version by length (RFC 3376 §7.1), errors, scapy cross-checks."""

from __future__ import annotations

import ipaddress

import pytest

from mcproxy_pmip.errors import MalformedPacket
from mcproxy_pmip.wire import checksum, igmp
from mcproxy_pmip.wire.records import GroupRecord, RecordType

V4 = ipaddress.IPv4Address
G = V4("232.1.1.1")
S1, S2 = V4("10.0.0.1"), V4("10.0.0.2")


def with_checksum(data: bytes) -> bytes:
    zeroed = data[:2] + b"\x00\x00" + data[4:]
    return zeroed[:2] + checksum.internet_checksum(zeroed).to_bytes(2, "big") + zeroed[4:]


MESSAGES = [
    igmp.IgmpQuery(1, 10.0),
    igmp.IgmpQuery(2, 10.0),
    igmp.IgmpQuery(2, 1.0, G),
    igmp.IgmpQuery(2, 25.5, G),
    igmp.IgmpQuery(3, 10.0, robustness=2, query_interval=125.0),
    igmp.IgmpQuery(3, 1.0, G, (S1, S2), suppress_router_processing=True, robustness=7,
                   query_interval=31744.0),
    igmp.IgmpQuery(3, 3174.4, G, query_interval=128.0),
    igmp.IgmpV1Report(G),
    igmp.IgmpV2Report(G),
    igmp.IgmpV2Leave(G),
    igmp.IgmpV3Report(()),
    igmp.IgmpV3Report(
        (
            GroupRecord(RecordType.MODE_IS_INCLUDE, G, (S1,)),
            GroupRecord(RecordType.MODE_IS_EXCLUDE, V4("239.0.0.1")),
            GroupRecord(RecordType.CHANGE_TO_INCLUDE, G, (S1, S2), b"\x01\x02\x03\x04"),
            GroupRecord(RecordType.CHANGE_TO_EXCLUDE, G, (S2,)),
            GroupRecord(RecordType.ALLOW_NEW_SOURCES, G, (S1,)),
            GroupRecord(RecordType.BLOCK_OLD_SOURCES, G, (S2,)),
        )
    ),
]


@pytest.mark.parametrize("msg", MESSAGES, ids=repr)
def test_round_trip(msg: igmp.IgmpMessage) -> None:
    data = igmp.build(msg)
    assert checksum.is_valid(data)
    assert igmp.parse(data) == msg


def test_query_lengths_select_the_version() -> None:
    v1 = igmp.build(igmp.IgmpQuery(1, 10.0))
    assert len(v1) == 8 and v1[1] == 0
    assert igmp.parse(v1).version == 1
    v2 = igmp.build(igmp.IgmpQuery(2, 10.0))
    assert len(v2) == 8 and v2[1] == 100
    assert igmp.parse(v2).version == 2
    v3 = igmp.build(igmp.IgmpQuery(3, 10.0))
    assert len(v3) == 12
    assert igmp.parse(v3).version == 3


@pytest.mark.parametrize("length", [9, 10, 11])
def test_query_of_9_to_11_octets_is_malformed(length: int) -> None:
    data = with_checksum(igmp.build(igmp.IgmpQuery(2, 10.0)) + bytes(length - 8))
    with pytest.raises(MalformedPacket) as info:
        igmp.parse(data)
    assert info.value.reason == "query_length_9_to_11"


def test_v3_query_with_trailing_octets_is_accepted() -> None:
    data = with_checksum(igmp.build(igmp.IgmpQuery(3, 10.0, G, (S1,))) + b"\xab\xcd")
    assert igmp.parse(data) == igmp.IgmpQuery(3, 10.0, G, (S1,))


def test_v1_query_group_field_is_ignored() -> None:
    data = with_checksum(bytes([0x11, 0, 0, 0]) + G.packed)
    assert igmp.parse(data) == igmp.IgmpQuery(1, 10.0)


def test_v3_query_sources_overrunning_is_malformed() -> None:
    data = bytearray(igmp.build(igmp.IgmpQuery(3, 10.0, G, (S1,))))
    data[10:12] = (2).to_bytes(2, "big")
    with pytest.raises(MalformedPacket) as info:
        igmp.parse(with_checksum(bytes(data)))
    assert info.value.reason == "query_source_overrun"


def test_bad_checksum_is_malformed() -> None:
    data = bytearray(igmp.build(igmp.IgmpV2Report(G)))
    data[2] ^= 0x01
    with pytest.raises(MalformedPacket) as info:
        igmp.parse(bytes(data))
    assert info.value.reason == "bad_checksum"


def test_odd_length_message_checksum() -> None:
    # A v2 report with one trailing octet: the checksum pads it with zero.
    data = with_checksum(igmp.build(igmp.IgmpV2Report(G)) + b"\x7f")
    assert len(data) % 2 == 1
    assert igmp.parse(data) == igmp.IgmpV2Report(G)
    corrupt = data[:-1] + b"\x7e"
    with pytest.raises(MalformedPacket, match="bad_checksum"):
        igmp.parse(corrupt)


@pytest.mark.parametrize("length", range(8))
def test_short_messages_are_malformed(length: int) -> None:
    with pytest.raises(MalformedPacket) as info:
        igmp.parse(bytes(length))
    assert info.value.reason == "too_short"


def test_unknown_type_is_malformed() -> None:
    with pytest.raises(MalformedPacket) as info:
        igmp.parse(with_checksum(bytes([0x13, 0, 0, 0, 0, 0, 0, 0])))
    assert info.value.reason == "unknown_type"


def test_unknown_record_types_are_skipped_and_counted() -> None:
    good = GroupRecord(RecordType.MODE_IS_EXCLUDE, G)
    data = bytearray(igmp.build(igmp.IgmpV3Report((good, good, good))))
    data[8] = 0  # first record's type: not a known type
    data[8 + 16] = 7  # third record's type
    parsed = igmp.parse(with_checksum(bytes(data)))
    assert parsed == igmp.IgmpV3Report((good,), skipped_records=2)


def test_record_counts_overrunning_the_packet_are_malformed() -> None:
    record = GroupRecord(RecordType.ALLOW_NEW_SOURCES, G, (S1,))
    data = bytearray(igmp.build(igmp.IgmpV3Report((record,))))
    data[10:12] = (2).to_bytes(2, "big")  # Number of Sources 2, one present
    with pytest.raises(MalformedPacket) as info:
        igmp.parse(with_checksum(bytes(data)))
    assert info.value.reason == "record_overrun"
    data[10:12] = (1).to_bytes(2, "big")
    data[6:8] = (2).to_bytes(2, "big")  # Number of Group Records 2, one present
    with pytest.raises(MalformedPacket) as info:
        igmp.parse(with_checksum(bytes(data)))
    assert info.value.reason == "record_overrun"


def test_invalid_messages_cannot_be_constructed() -> None:
    with pytest.raises(ValueError):
        igmp.IgmpQuery(4, 10.0)
    with pytest.raises(ValueError):
        igmp.IgmpQuery(2, 10.0, G, (S1,))
    with pytest.raises(ValueError):
        igmp.IgmpQuery(1, 10.0, G)
    with pytest.raises(ValueError):
        igmp.IgmpQuery(2, 0.0)
    with pytest.raises(ValueError):
        igmp.IgmpQuery(3, 10.0, ipaddress.IPv6Address("ff02::1"))
    with pytest.raises(ValueError):
        v6_record = GroupRecord(RecordType.MODE_IS_EXCLUDE, ipaddress.IPv6Address("ff05::1"))
        igmp.build(igmp.IgmpV3Report((v6_record,)))


def test_large_values_saturate_and_big_robustness_becomes_qrv_0() -> None:
    parsed = igmp.parse(igmp.build(igmp.IgmpQuery(3, 5000.0, robustness=9, query_interval=40000.0)))
    assert parsed.max_resp_interval == 3174.4
    assert parsed.robustness == 0
    assert parsed.query_interval == 31744.0
    assert igmp.parse(igmp.build(igmp.IgmpQuery(2, 30.0))).max_resp_interval == 25.5


# --- scapy cross-checks -------------------------------------------------------


def test_scapy_dissects_our_v2_messages() -> None:
    from scapy.layers.igmp import IGMP

    pkt = IGMP(igmp.build(igmp.IgmpQuery(2, 2.5, G)))
    assert (pkt.type, pkt.mrcode, pkt.gaddr) == (0x11, 25, str(G))
    pkt = IGMP(igmp.build(igmp.IgmpV2Leave(G)))
    assert (pkt.type, pkt.gaddr) == (0x17, str(G))
    pkt = IGMP(igmp.build(igmp.IgmpV2Report(G)))
    assert (pkt.type, pkt.gaddr) == (0x16, str(G))


def test_scapy_dissects_our_v3_query() -> None:
    from scapy.layers.igmp import IGMP, IGMPv3_MQ

    msg = igmp.IgmpQuery(3, 20.0, G, (S1, S2), True, 3, 200.0)
    data = igmp.build(msg)
    pkt = IGMP(data)
    assert isinstance(pkt, IGMPv3_MQ)
    assert data[1] == 0x89  # 200 tenths = 0x19 << 3: exp 0, mant 9
    assert pkt.mrcode == 0x89  # scapy 2.8 shows the raw code when dissecting
    assert pkt.gaddr == str(G)
    assert (pkt.s, pkt.qrv, pkt.numsrc) == (1, 3, 2)
    assert pkt.qqic == 0x89
    assert pkt.srcaddrs == [str(S1), str(S2)]


def test_scapy_dissects_our_v3_report() -> None:
    from scapy.layers.igmp import IGMP, IGMPv3_MR

    records = (
        GroupRecord(RecordType.CHANGE_TO_EXCLUDE, G, (S1, S2)),
        GroupRecord(RecordType.MODE_IS_INCLUDE, V4("239.2.2.2"), (S1,), b"\x00\x00\x00\x09"),
    )
    pkt = IGMP(igmp.build(igmp.IgmpV3Report(records)))
    assert isinstance(pkt, IGMPv3_MR)
    assert pkt.numgrp == 2
    assert [(r.rtype, r.maddr, r.srcaddrs) for r in pkt.records] == [
        (4, str(G), [str(S1), str(S2)]),
        (1, "239.2.2.2", [str(S1)]),
    ]
    assert pkt.records[1].auxdlen == 1


def test_we_parse_what_scapy_builds() -> None:
    from scapy.layers.igmp import IGMP, IGMPv3_MQ, IGMPv3_MR, IGMPv3_MR_Group

    assert igmp.parse(bytes(IGMP(type=0x16, gaddr=str(G)))) == igmp.IgmpV2Report(G)
    assert igmp.parse(bytes(IGMP(type=0x17, gaddr=str(G)))) == igmp.IgmpV2Leave(G)
    assert igmp.parse(bytes(IGMP(type=0x11, mrcode=0))) == igmp.IgmpQuery(1, 10.0)
    v2_query = IGMP(type=0x11, mrcode=100, gaddr=str(G))
    assert igmp.parse(bytes(v2_query)) == igmp.IgmpQuery(2, 10.0, G)
    query = IGMPv3_MQ(mrcode=248, gaddr=str(G), srcaddrs=[str(S1)], qrv=2, qqic=125, s=1)
    assert bytes(query)[1] == 0x8F
    assert igmp.parse(bytes(query)) == igmp.IgmpQuery(3, 24.8, G, (S1,), True, 2, 125.0)
    report = IGMPv3_MR(
        records=[
            IGMPv3_MR_Group(rtype=5, maddr=str(G), srcaddrs=[str(S1), str(S2)]),
            IGMPv3_MR_Group(rtype=2, maddr="239.9.9.9"),
        ]
    )
    assert igmp.parse(bytes(report)) == igmp.IgmpV3Report(
        (
            GroupRecord(RecordType.ALLOW_NEW_SOURCES, G, (S1, S2)),
            GroupRecord(RecordType.MODE_IS_EXCLUDE, V4("239.9.9.9")),
        )
    )
