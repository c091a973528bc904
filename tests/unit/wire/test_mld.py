"""MLD codec: round trips, version by length (RFC 3810 §8.1), errors, scapy cross-checks."""

from __future__ import annotations

import ipaddress

import pytest

from mcproxy_pmip.errors import MalformedPacket
from mcproxy_pmip.wire import mld
from mcproxy_pmip.wire.records import GroupRecord, RecordType

V6 = ipaddress.IPv6Address
G = V6("ff3e::1234")
S1, S2 = V6("2001:db8::1"), V6("2001:db8::2")
SRC = V6("fe80::1")
ALL_NODES = V6("ff02::1")
MLDV2_ROUTERS = V6("ff02::16")

MESSAGES = [
    mld.MldQuery(1, 10.0),
    mld.MldQuery(1, 0.0, G),
    mld.MldQuery(1, 65.535, G),
    mld.MldQuery(2, 10.0, robustness=2, query_interval=125.0),
    mld.MldQuery(2, 1.0, G, (S1, S2), suppress_router_processing=True, robustness=7,
                 query_interval=31744.0),
    mld.MldQuery(2, 8387.584, G),
    mld.MldQuery(2, 32.768, G),
    mld.MldV1Report(G),
    mld.MldDone(G),
    mld.MldV2Report(()),
    mld.MldV2Report(
        (
            GroupRecord(RecordType.MODE_IS_INCLUDE, G, (S1,)),
            GroupRecord(RecordType.MODE_IS_EXCLUDE, V6("ff05::2")),
            GroupRecord(RecordType.CHANGE_TO_INCLUDE, G, (S1, S2), b"\x01\x02\x03\x04"),
            GroupRecord(RecordType.CHANGE_TO_EXCLUDE, G, (S2,)),
            GroupRecord(RecordType.ALLOW_NEW_SOURCES, G, (S1,)),
            GroupRecord(RecordType.BLOCK_OLD_SOURCES, G, (S2,)),
        )
    ),
]


@pytest.mark.parametrize("msg", MESSAGES, ids=repr)
def test_round_trip(msg: mld.MldMessage) -> None:
    assert mld.parse(mld.build(msg)) == msg
    data = mld.build(msg, SRC, ALL_NODES)
    assert mld.verify_checksum(data, SRC, ALL_NODES)
    assert not mld.verify_checksum(data, SRC, MLDV2_ROUTERS)
    assert mld.parse(data) == msg


def test_without_addresses_the_checksum_is_left_for_the_kernel() -> None:
    assert mld.build(mld.MldDone(G))[2:4] == b"\x00\x00"
    with pytest.raises(ValueError):
        mld.build(mld.MldDone(G), SRC, None)


def test_query_lengths_select_the_version() -> None:
    v1 = mld.build(mld.MldQuery(1, 10.0))
    assert len(v1) == 24
    assert mld.parse(v1).version == 1
    v2 = mld.build(mld.MldQuery(2, 10.0))
    assert len(v2) == 28
    assert mld.parse(v2).version == 2


@pytest.mark.parametrize("length", [25, 26, 27])
def test_query_of_25_to_27_octets_is_malformed(length: int) -> None:
    data = mld.build(mld.MldQuery(1, 10.0)) + bytes(length - 24)
    with pytest.raises(MalformedPacket) as info:
        mld.parse(data)
    assert info.value.reason == "query_length_25_to_27"


@pytest.mark.parametrize("icmp_type", [130, 131, 132])
@pytest.mark.parametrize("length", [0, 3, 4, 23])
def test_short_messages_are_malformed(icmp_type: int, length: int) -> None:
    data = (bytes([icmp_type]) + bytes(40))[:length]
    with pytest.raises(MalformedPacket) as info:
        mld.parse(data)
    assert info.value.reason == "too_short"


def test_v2_query_sources_overrunning_is_malformed() -> None:
    data = bytearray(mld.build(mld.MldQuery(2, 10.0, G, (S1,))))
    data[26:28] = (2).to_bytes(2, "big")
    with pytest.raises(MalformedPacket) as info:
        mld.parse(bytes(data))
    assert info.value.reason == "query_source_overrun"


def test_other_icmpv6_types_are_rejected() -> None:
    with pytest.raises(MalformedPacket) as info:
        mld.parse(bytes([128, 0, 0, 0, 0, 1, 0, 1]))  # echo request
    assert info.value.reason == "unknown_type"


def test_unknown_record_types_are_skipped_and_counted() -> None:
    good = GroupRecord(RecordType.MODE_IS_EXCLUDE, G)
    data = bytearray(mld.build(mld.MldV2Report((good, good))))
    data[8] = 9
    assert mld.parse(bytes(data)) == mld.MldV2Report((good,), skipped_records=1)


def test_record_overrun_is_malformed() -> None:
    record = GroupRecord(RecordType.BLOCK_OLD_SOURCES, G, (S1,))
    data = bytearray(mld.build(mld.MldV2Report((record,))))
    data[9] = 1  # Aux Data Len: one word that is not there
    with pytest.raises(MalformedPacket) as info:
        mld.parse(bytes(data))
    assert info.value.reason == "record_overrun"


def test_invalid_messages_cannot_be_constructed() -> None:
    with pytest.raises(ValueError):
        mld.MldQuery(3, 10.0)
    with pytest.raises(ValueError):
        mld.MldQuery(1, 10.0, G, (S1,))
    with pytest.raises(ValueError):
        mld.MldQuery(2, 10.0, ipaddress.IPv4Address("224.0.0.1"))
    with pytest.raises(ValueError):
        mld.MldQuery(2, -1.0)


def test_large_values_saturate() -> None:
    parsed = mld.parse(mld.build(mld.MldQuery(2, 10000.0, robustness=8, query_interval=99999.0)))
    assert parsed.max_resp_interval == 8387.584
    assert parsed.robustness == 0
    assert parsed.query_interval == 31744.0
    assert mld.parse(mld.build(mld.MldQuery(1, 100.0))).max_resp_interval == 65.535


# --- scapy cross-checks -------------------------------------------------------


def _scapy_icmpv6(layer, dst: V6) -> bytes:
    """What scapy puts on the wire for ``layer`` from SRC to ``dst`` (checksum included)."""
    from scapy.layers.inet6 import IPv6, IPv6ExtHdrHopByHop, RouterAlert

    hop_by_hop = IPv6ExtHdrHopByHop(options=[RouterAlert()])
    pkt = IPv6(src=str(SRC), dst=str(dst), hlim=1) / hop_by_hop / layer
    built = IPv6(bytes(pkt))
    return bytes(built[IPv6ExtHdrHopByHop].payload)


def test_scapy_dissects_our_v1_messages() -> None:
    from scapy.layers.inet6 import ICMPv6MLDone, ICMPv6MLQuery, ICMPv6MLReport

    pkt = ICMPv6MLQuery(mld.build(mld.MldQuery(1, 2.5, G)))
    assert (pkt.type, pkt.mrd, pkt.mladdr) == (130, 2500, str(G))
    pkt = ICMPv6MLReport(mld.build(mld.MldV1Report(G)))
    assert (pkt.type, pkt.mladdr) == (131, str(G))
    pkt = ICMPv6MLDone(mld.build(mld.MldDone(G)))
    assert (pkt.type, pkt.mladdr) == (132, str(G))


def test_scapy_dissects_our_v2_query() -> None:
    from scapy.layers.inet6 import ICMPv6MLQuery2

    data = mld.build(mld.MldQuery(2, 40.0, G, (S1, S2), True, 3, 200.0))
    pkt = ICMPv6MLQuery2(data)
    assert pkt.mrd == 0x8388  # 40000 ms = 0x1388 << 3: exp 0, mant 0x388
    assert pkt.mladdr == str(G)
    assert (pkt.S, pkt.QRV, pkt.QQIC, pkt.sources_number) == (1, 3, 0x89, 2)
    assert pkt.sources == [str(S1), str(S2)]


def test_scapy_dissects_our_v2_report() -> None:
    from scapy.layers.inet6 import ICMPv6MLDMultAddrRec, ICMPv6MLReport2

    # No aux data here: scapy 2.8 counts Aux Data Len in octets, RFC 3810 §5.2.6 in words.
    records = (
        GroupRecord(RecordType.CHANGE_TO_EXCLUDE, G, (S1, S2)),
        GroupRecord(RecordType.MODE_IS_INCLUDE, V6("ff05::2"), (S1,)),
    )
    pkt = ICMPv6MLReport2(mld.build(mld.MldV2Report(records)))
    assert pkt.records_number == 2
    # scapy 2.8 dissects the records after the first as the first one's payload
    dissected = []
    for record in pkt.records:
        while isinstance(record, ICMPv6MLDMultAddrRec):
            dissected.append(record)
            record = record.payload
    assert [(r.rtype, r.dst, r.sources) for r in dissected] == [
        (4, str(G), [str(S1), str(S2)]),
        (1, "ff05::2", [str(S1)]),
    ]


def test_our_checksums_equal_scapys() -> None:
    from scapy.layers.inet6 import ICMPv6MLDMultAddrRec, ICMPv6MLQuery2, ICMPv6MLReport2

    msg = mld.MldV2Report((GroupRecord(RecordType.ALLOW_NEW_SOURCES, G, (S1,)),))
    ours = mld.build(msg, SRC, MLDV2_ROUTERS)
    theirs = _scapy_icmpv6(
        ICMPv6MLReport2(
            records_number=1,
            records=[ICMPv6MLDMultAddrRec(rtype=5, dst=str(G), sources=[str(S1)])],
        ),
        MLDV2_ROUTERS,
    )
    assert ours == theirs
    query = mld.MldQuery(2, 10.0, robustness=2, query_interval=125.0)
    theirs = _scapy_icmpv6(ICMPv6MLQuery2(mrd=10000, QRV=2, QQIC=125), ALL_NODES)
    assert mld.build(query, SRC, ALL_NODES) == theirs


def test_we_parse_what_scapy_builds() -> None:
    from scapy.layers.inet6 import (
        ICMPv6MLDMultAddrRec,
        ICMPv6MLDone,
        ICMPv6MLQuery,
        ICMPv6MLQuery2,
        ICMPv6MLReport,
        ICMPv6MLReport2,
    )

    assert mld.parse(_scapy_icmpv6(ICMPv6MLReport(mladdr=str(G)), G)) == mld.MldV1Report(G)
    assert mld.parse(_scapy_icmpv6(ICMPv6MLDone(mladdr=str(G)), ALL_NODES)) == mld.MldDone(G)
    assert mld.parse(_scapy_icmpv6(ICMPv6MLQuery(mrd=1000), ALL_NODES)) == mld.MldQuery(1, 1.0)
    query = ICMPv6MLQuery2(mrd=0x8001, mladdr=str(G), S=1, QRV=2, QQIC=0x81, sources=[str(S1)])
    data = _scapy_icmpv6(query, G)
    assert mld.verify_checksum(data, SRC, G)
    assert mld.parse(data) == mld.MldQuery(2, 32.776, G, (S1,), True, 2, 136.0)
    report = ICMPv6MLReport2(
        records_number=2,
        records=[
            ICMPv6MLDMultAddrRec(rtype=6, dst=str(G), sources=[str(S1), str(S2)]),
            ICMPv6MLDMultAddrRec(rtype=3, dst="ff05::9"),
        ],
    )
    data = _scapy_icmpv6(report, MLDV2_ROUTERS)
    assert mld.verify_checksum(data, SRC, MLDV2_ROUTERS)
    assert mld.parse(data) == mld.MldV2Report(
        (
            GroupRecord(RecordType.BLOCK_OLD_SOURCES, G, (S1, S2)),
            GroupRecord(RecordType.CHANGE_TO_INCLUDE, V6("ff05::9")),
        )
    )
