"""Internet checksum (RFC 1071) and the ICMPv6 pseudo-header (RFC 8200 §8.1)."""

from __future__ import annotations

import ipaddress

from hypothesis import given, settings
from hypothesis import strategies as st

from mcproxy_pmip.wire import checksum

SRC = ipaddress.IPv6Address("fe80::1")
DST = ipaddress.IPv6Address("ff02::16")


def test_rfc1071_example() -> None:
    # RFC 1071 §3: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2.
    data = bytes.fromhex("0001f203f4f5f6f7")
    assert checksum.ones_complement_sum(data) == 0xDDF2
    assert checksum.internet_checksum(data) == 0x220D


def test_odd_length_pads_with_a_zero_octet() -> None:
    assert checksum.ones_complement_sum(b"\x12") == 0x1200
    assert checksum.ones_complement_sum(b"\x00\x01\x12") == 0x1201
    assert checksum.internet_checksum(b"\x12\x34\x56") == checksum.internet_checksum(
        b"\x12\x34\x56\x00"
    )


def test_end_around_carry() -> None:
    # 0xffff + 0x0001 = 0x10000 -> folded to 0x0001
    assert checksum.ones_complement_sum(b"\xff\xff\x00\x01") == 0x0001
    # many carries: 0xffff * 3 = 0x2fffd -> 0xfffd + 2 = 0xffff
    assert checksum.ones_complement_sum(b"\xff\xff" * 3) == 0xFFFF
    # 0xfffe + 0x0002 = 0x10000 -> 0x0001, complemented 0xfffe
    assert checksum.internet_checksum(b"\xff\xfe\x00\x02") == 0xFFFE


def test_all_zero_data_checksums_to_ffff() -> None:
    assert checksum.internet_checksum(bytes(8)) == 0xFFFF


@settings(max_examples=300)
@given(st.binary(min_size=4, max_size=200))
def test_inserted_checksum_validates(data: bytes) -> None:
    zeroed = data[:2] + b"\x00\x00" + data[4:]
    csum = checksum.internet_checksum(zeroed)
    filled = zeroed[:2] + csum.to_bytes(2, "big") + zeroed[4:]
    assert checksum.is_valid(filled)


def test_icmpv6_checksum_covers_the_pseudo_header() -> None:
    body = bytes([143, 0, 0, 0, 0, 0, 0, 0])
    csum = checksum.icmpv6_checksum(body, SRC, DST)
    filled = body[:2] + csum.to_bytes(2, "big") + body[4:]
    assert checksum.icmpv6_is_valid(filled, SRC, DST)
    assert not checksum.icmpv6_is_valid(filled, ipaddress.IPv6Address("fe80::2"), DST)


def test_pseudo_header_layout() -> None:
    header = checksum.ipv6_pseudo_header(SRC, DST, 0x01020304)
    assert len(header) == 40
    assert header[32:] == bytes([1, 2, 3, 4, 0, 0, 0, 58])
