"""IPv4 headers: options (Router Alert, RFC 2113), checksum, fragments. IPv6: fixed and Hop-by-Hop headers."""

from __future__ import annotations

import ipaddress
import struct

import pytest

from mcproxy_pmip.errors import MalformedPacket
from mcproxy_pmip.wire import checksum, igmp, ipv4, ipv6

G = ipaddress.IPv4Address("232.1.1.1")


S6 = ipaddress.IPv6Address("fe80::2")
D6 = ipaddress.IPv6Address("ff02::16")


def ipv4_packet(
    payload: bytes, options: bytes = b"", ttl: int = 1, total: int | None = None, fragment: int = 0
) -> bytes:
    """An IPv4 packet with a correct header checksum."""
    ihl = (20 + len(options)) // 4
    length = total if total is not None else 20 + len(options) + len(payload)
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x40 | ihl, 0xC0, length, 1, fragment, ttl, 2, 0,
        ipaddress.IPv4Address("10.1.1.2").packed, ipaddress.IPv4Address("224.0.0.22").packed,
    ) + options
    header = header[:10] + struct.pack("!H", checksum.internet_checksum(header)) + header[12:]
    return header + payload


def ipv6_packet(upper: bytes, next_header: int = 0, extension: bytes = ipv6.HOP_BY_HOP_ROUTER_ALERT,
                payload_length: int | None = None) -> bytes:
    """An IPv6 packet: ``extension`` (its Next Header set to 58) when ``next_header`` is 0, then ``upper``."""
    body = (bytes((58,)) + extension[1:] if next_header == 0 else b"") + upper
    length = len(body) if payload_length is None else payload_length
    return struct.pack("!IHBB16s16s", 6 << 28, length, next_header, 1, S6.packed, D6.packed) + body


def test_header_with_router_alert() -> None:
    payload = igmp.build(igmp.IgmpV2Report(G))
    hdr = ipv4.parse_header(ipv4_packet(payload, ipv4.ROUTER_ALERT_OPTION))
    assert hdr.has_router_alert
    assert (hdr.ttl, hdr.protocol, hdr.header_length, hdr.tos) == (1, 2, 24, 0xC0)
    assert hdr.src == ipaddress.IPv4Address("10.1.1.2")
    assert hdr.dst == ipaddress.IPv4Address("224.0.0.22")
    assert igmp.parse(hdr.payload) == igmp.IgmpV2Report(G)


def test_header_without_options_and_with_other_options() -> None:
    assert not ipv4.parse_header(ipv4_packet(b"x" * 8)).has_router_alert
    nops = b"\x01\x01\x01\x00"
    assert not ipv4.parse_header(ipv4_packet(b"", nops)).has_router_alert
    after_nops = b"\x01\x01\x01\x01" + ipv4.ROUTER_ALERT_OPTION
    assert ipv4.parse_header(ipv4_packet(b"", after_nops)).has_router_alert


def test_payload_is_cut_to_total_length() -> None:
    packet = ipv4_packet(b"abcdefgh", total=24) + b"junk"
    assert ipv4.parse_header(packet).payload == b"abcd"


@pytest.mark.parametrize(
    ("packet", "reason"),
    [
        (b"\x45" + bytes(10), "ip_too_short"),
        (b"\x65" + bytes(19), "not_ipv4"),
        (b"\x44" + bytes(19), "bad_ip_header_length"),
        (ipv4_packet(b"", total=40), "ip_truncated"),
        (ipv4_packet(b"", b"\x94\x08\x00\x00"), "bad_ip_option"),
        (ipv4_packet(b"", b"\x01\x01\x01\x94"), "bad_ip_option"),
        (ipv4_packet(b"x" * 8)[:10] + b"\x00\x00" + ipv4_packet(b"x" * 8)[12:], "bad_ip_checksum"),
    ],
)
def test_malformed_headers(packet: bytes, reason: str) -> None:
    with pytest.raises(MalformedPacket) as info:
        ipv4.parse_header(packet)
    assert info.value.reason == reason


def test_header_checksum_covers_the_options() -> None:
    packet = bytearray(ipv4_packet(b"", ipv4.ROUTER_ALERT_OPTION))
    packet[22] ^= 0x01  # Router Alert value 0 -> 1, checksum unchanged
    with pytest.raises(MalformedPacket) as info:
        ipv4.parse_header(bytes(packet))
    assert info.value.reason == "bad_ip_checksum"


@pytest.mark.parametrize(("fragment", "is_fragment"), [
    (0, False), (0x4000, False), (0x2000, True), (0x0001, True), (0x4001, True)],
    ids=["none", "dont-fragment", "more-fragments", "offset", "df-and-offset"])
def test_fragments_are_reported(fragment: int, is_fragment: bool) -> None:
    assert ipv4.parse_header(ipv4_packet(b"x" * 8, fragment=fragment)).is_fragment is is_fragment


def test_hop_by_hop_router_alert_bytes_are_what_scapy_builds() -> None:
    from scapy.layers.inet6 import IPv6ExtHdrHopByHop, RouterAlert

    assert ipv6.HOP_BY_HOP_ROUTER_ALERT == bytes(IPv6ExtHdrHopByHop(nh=0, options=[RouterAlert()]))
    assert len(ipv6.HOP_BY_HOP_ROUTER_ALERT) == 8


def test_parse_hop_by_hop() -> None:
    parsed = ipv6.parse_hop_by_hop(b"\x3a" + ipv6.HOP_BY_HOP_ROUTER_ALERT[1:])
    assert parsed.next_header == 58
    assert parsed.router_alert == 0 and parsed.has_mld_router_alert
    padded = bytes([58, 0, 0, 1, 1, 0x00, 0x00, 0x00])  # Pad1, PadN(3)
    assert ipv6.parse_hop_by_hop(padded).router_alert is None
    other = bytes([58, 0, 5, 2, 0, 2, 1, 0])  # Router Alert value 2 (RSVP)
    assert ipv6.parse_hop_by_hop(other).router_alert == 2
    assert not ipv6.parse_hop_by_hop(other).has_mld_router_alert


@pytest.mark.parametrize(
    "data",
    [b"", b"\x00", bytes([58, 1, 0, 0, 0, 0, 0, 0]), bytes([58, 0, 5, 9, 0, 0, 0, 0]),
     bytes([58, 0, 1, 0, 1, 0, 0, 5])],
)
def test_malformed_hop_by_hop(data: bytes) -> None:
    with pytest.raises(MalformedPacket) as info:
        ipv6.parse_hop_by_hop(data)
    assert info.value.reason == "bad_hop_by_hop"


def test_ipv6_packet_with_hop_by_hop() -> None:
    done = bytes((132,)) + bytes(23)
    parsed = ipv6.parse_packet(ipv6_packet(done) + b"padding")
    assert (parsed.hop_limit, parsed.next_header, parsed.router_alert) == (1, 58, 0)
    assert (parsed.src, parsed.dst) == (S6, D6)
    assert parsed.payload == done, "cut to Payload Length, after the Hop-by-Hop header"


def test_ipv6_packet_without_hop_by_hop_and_with_a_longer_one() -> None:
    direct = ipv6.parse_packet(ipv6_packet(b"upper", next_header=58))
    assert (direct.next_header, direct.router_alert, direct.payload) == (58, None, b"upper")
    # 16 octets: Router Alert, then PadN over 10 octets.
    longer = b"\x00\x01" + ipv6.ROUTER_ALERT_OPTION + bytes((1, 8)) + bytes(8)
    parsed = ipv6.parse_packet(ipv6_packet(b"upper", extension=longer))
    assert (parsed.next_header, parsed.router_alert, parsed.payload) == (58, 0, b"upper")


@pytest.mark.parametrize(
    ("packet", "reason"),
    [
        (bytes(39), "ipv6_too_short"),
        (b"\x40" + bytes(39), "not_ipv6"),
        (ipv6_packet(b"upper", payload_length=100), "ipv6_truncated"),
        (ipv6_packet(b"", extension=bytes((58, 1)) + bytes(6)), "bad_hop_by_hop"),
    ],
)
def test_malformed_ipv6_packets(packet: bytes, reason: str) -> None:
    with pytest.raises(MalformedPacket) as info:
        ipv6.parse_packet(packet)
    assert info.value.reason == reason
