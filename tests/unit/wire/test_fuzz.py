"""Any byte string either parses or raises MalformedPacket; nothing else escapes (as in h11)."""

from __future__ import annotations

import dataclasses
import ipaddress

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mcproxy_pmip.errors import MalformedPacket
from mcproxy_pmip.wire import checksum, igmp, ipv4, ipv6, mld, rfc7411
from mcproxy_pmip.wire.records import GroupRecord, RecordType

FUZZ = settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)

G4 = ipaddress.IPv4Address("232.1.1.1")
G6 = ipaddress.IPv6Address("ff3e::1")
S4 = ipaddress.IPv4Address("10.0.0.1")
S6 = ipaddress.IPv6Address("2001:db8::1")

IGMP_SEEDS = [
    igmp.build(igmp.IgmpQuery(1, 10.0)),
    igmp.build(igmp.IgmpQuery(2, 10.0, G4)),
    igmp.build(igmp.IgmpQuery(3, 10.0, G4, (S4, S4))),
    igmp.build(igmp.IgmpV2Leave(G4)),
    igmp.build(
        igmp.IgmpV3Report(
            (GroupRecord(RecordType.ALLOW_NEW_SOURCES, G4, (S4,), b"\x00" * 4),
             GroupRecord(RecordType.MODE_IS_EXCLUDE, G4))
        )
    ),
]
MLD_SEEDS = [
    mld.build(mld.MldQuery(1, 10.0)),
    mld.build(mld.MldQuery(2, 10.0, G6, (S6,))),
    mld.build(mld.MldDone(G6)),
    mld.build(
        mld.MldV2Report(
            (GroupRecord(RecordType.BLOCK_OLD_SOURCES, G6, (S6, S6)),
             GroupRecord(RecordType.CHANGE_TO_EXCLUDE, G6, (), b"\x01" * 8))
        )
    ),
]


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """A seed message with some octets replaced, then cut or extended."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(0, 4))):
        pos = draw(st.integers(0, len(data) - 1))
        data[pos] = draw(st.integers(0, 255))
    cut = draw(st.integers(0, len(data) + 8))
    tail = draw(st.binary(max_size=8))
    return bytes(data[:cut]) + (tail if cut >= len(data) else b"")


def fix_igmp_checksum(data: bytes) -> bytes:
    """Make the IGMP checksum right so the fuzzer gets past it."""
    if len(data) < 4:
        return data
    zeroed = data[:2] + b"\x00\x00" + data[4:]
    return zeroed[:2] + checksum.internet_checksum(zeroed).to_bytes(2, "big") + zeroed[4:]


def parses_or_malformed(parse, data: bytes) -> None:
    try:
        parse(data)
    except MalformedPacket as exc:
        assert exc.reason and exc.reason.replace("_", "").isalnum()


@FUZZ
@given(st.one_of(st.binary(max_size=64), mutated(IGMP_SEEDS)), st.booleans())
def test_igmp_parse(data: bytes, fix: bool) -> None:
    parses_or_malformed(igmp.parse, fix_igmp_checksum(data) if fix else data)


@FUZZ
@given(st.one_of(st.binary(max_size=64), mutated(MLD_SEEDS)))
def test_mld_parse(data: bytes) -> None:
    parses_or_malformed(mld.parse, data)


@FUZZ
@given(st.binary(max_size=64))
def test_mld_parse_with_known_types(data: bytes) -> None:
    for icmp_type in (130, 131, 132, 143):
        parses_or_malformed(mld.parse, bytes([icmp_type]) + data)


@FUZZ
@given(st.binary(max_size=80))
def test_ipv4_parse_header(data: bytes) -> None:
    parses_or_malformed(ipv4.parse_header, data)
    parses_or_malformed(ipv4.parse_header, b"\x46" + data)


@FUZZ
@given(st.binary(max_size=40))
def test_ipv6_parse_hop_by_hop(data: bytes) -> None:
    parses_or_malformed(ipv6.parse_hop_by_hop, data)


RFC7411_SEEDS = [s[4:] for s in IGMP_SEEDS[4:]]


@FUZZ
@given(st.integers(0, 6), st.one_of(st.binary(max_size=64), mutated(RFC7411_SEEDS)))
def test_rfc7411_decode_context(code: int, payload: bytes) -> None:
    parses_or_malformed(lambda p: rfc7411.decode_context(code, p), payload)


def without_skipped_count(msg):
    """Skipped records are not rebuilt: what comes back has none."""
    if isinstance(msg, igmp.IgmpV3Report | mld.MldV2Report):
        return dataclasses.replace(msg, skipped_records=0)
    return msg


@FUZZ
@given(mutated(IGMP_SEEDS))
def test_what_parses_builds_back_to_a_parseable_message(data: bytes) -> None:
    data = fix_igmp_checksum(data)
    try:
        msg = igmp.parse(data)
    except MalformedPacket:
        return
    assert igmp.parse(igmp.build(msg)) == without_skipped_count(msg)


@FUZZ
@given(mutated(MLD_SEEDS))
def test_what_parses_as_mld_builds_back(data: bytes) -> None:
    try:
        msg = mld.parse(data)
    except MalformedPacket:
        return
    assert mld.parse(mld.build(msg)) == without_skipped_count(msg)
