"""Packet identity, forwarded copies (scapy as the oracle) and the handover buffer's bounds and markers."""

from __future__ import annotations

import ipaddress

from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6

from mcproxy_pmip.addresses import Family
from mcproxy_pmip.handover.buffer import HandoverBuffer, subscriptions_of
from mcproxy_pmip.wire.datagram import forwarded_copy, multicast_addresses, packet_identity
from mcproxy_pmip.wire.records import FilterMode, GroupRecord, RecordType

G4, G6 = ipaddress.ip_address("239.1.2.3"), ipaddress.ip_address("ff1e::7")
S4, S6 = ipaddress.ip_address("10.1.0.1"), ipaddress.ip_address("fd01::1")


def v4(seq: int, ttl: int = 8, source: str = "10.1.0.1", group: str = "239.1.2.3") -> bytes:
    return bytes(IP(src=source, dst=group, ttl=ttl, id=seq) / UDP(sport=4000, dport=5101) / seq.to_bytes(8, "big"))


def v6(seq: int, hlim: int = 8) -> bytes:
    return bytes(IPv6(src=str(S6), dst=str(G6), hlim=hlim) / UDP(sport=4000, dport=5101) / seq.to_bytes(8, "big"))


def test_forwarded_copy_is_what_a_router_sends() -> None:
    for packet, parse, hop in ((v4(1), IP, "ttl"), (v6(1), IPv6, "hlim")):
        copy = forwarded_copy(packet)
        expected = parse(packet)
        setattr(expected, hop, getattr(expected, hop) - 1)
        del expected.chksum
        del expected[UDP].chksum
        assert copy == bytes(parse(bytes(expected))), f"{parse.__name__}: TTL, header and UDP checksums"
    assert forwarded_copy(v4(1, ttl=1)) is None and forwarded_copy(v6(1, hlim=1)) is None


def test_a_partial_udp_checksum_is_completed_and_ignored_by_the_identity() -> None:
    packet = bytearray(v4(7))
    packet[26:28] = b"\x12\x34"  # what a packet socket may see under checksum offload
    assert packet_identity(bytes(packet)) == packet_identity(v4(7))
    assert forwarded_copy(bytes(packet)) == forwarded_copy(v4(7))


def test_identity_survives_forwarding_and_tells_packets_apart() -> None:
    assert packet_identity(v4(5)) == packet_identity(forwarded_copy(v4(5)))
    assert packet_identity(v6(5)) == packet_identity(forwarded_copy(forwarded_copy(v6(5))))
    assert packet_identity(v4(5)) != packet_identity(v4(6))
    assert multicast_addresses(v6(1)) == (Family.IPV6, S6, G6)
    assert multicast_addresses(bytes(IP(dst="10.0.0.1") / UDP())) is None


def buffer(max_interval: float = 0.5, max_bytes: int = 1 << 20) -> HandoverBuffer:
    wanted = {**subscriptions_of(Family.IPV4, [GroupRecord(RecordType.MODE_IS_INCLUDE, G4, (S4,))]),
              **subscriptions_of(Family.IPV6, [GroupRecord(RecordType.MODE_IS_EXCLUDE, G6, ())])}
    return HandoverBuffer(wanted, max_interval, max_bytes)


def test_only_the_mns_groups_and_sources_are_kept() -> None:
    kept = buffer()
    assert kept.add(0.0, v4(1)) and kept.add(0.0, v6(1))
    assert not kept.add(0.0, v4(2, source="10.9.9.9")), "a source the INCLUDE does not list"
    assert not kept.add(0.0, v4(3, group="239.9.9.9")), "a group the MN did not ask for"
    assert len(kept) == 2 and kept.groups == {(Family.IPV4, G4), (Family.IPV6, G6)}
    assert subscriptions_of(Family.IPV4, [GroupRecord(RecordType.MODE_IS_INCLUDE, G4, ())]) == {}
    assert buffer()._subscriptions[(Family.IPV6, G6)] == (FilterMode.EXCLUDE, frozenset())


def test_bounds_by_age_and_bytes_count_what_falls_out() -> None:
    by_age = buffer(max_interval=0.5)
    for seq in range(10):
        by_age.add(seq * 0.1, v4(seq))
    assert len(by_age) == 6 and by_age.overflow == 4, "packets older than 0.5 s fall out"
    by_bytes = buffer(max_bytes=3 * len(v4(0)))
    for seq in range(5):
        by_bytes.add(0.0, v4(seq))
    assert len(by_bytes) == 3 and by_bytes.overflow == 2


def test_take_starts_after_each_groups_marker() -> None:
    kept = buffer()
    for seq in range(6):
        kept.add(0.0, v4(seq))
        kept.add(0.0, v6(seq))
    markers = {(Family.IPV4, G4): packet_identity(forwarded_copy(v4(3)))}
    missed, skipped = kept.take(0.1, markers)
    v4_seqs = [int.from_bytes(p.packet[-8:], "big") for p in missed if p.key[0] is Family.IPV4]
    v6_seqs = [int.from_bytes(p.packet[-8:], "big") for p in missed if p.key[0] is Family.IPV6]
    assert v4_seqs == [4, 5] and v6_seqs == list(range(6)), "IPv6 had no marker: all of it"
    assert skipped == 4 and kept.unmarked == 1 and len(kept) == 0


def test_a_marker_not_in_the_buffer_gives_all_and_none_gives_all() -> None:
    kept = buffer()
    for seq in range(3):
        kept.add(0.0, v4(seq))
    missed, skipped = kept.take(0.0, {(Family.IPV4, G4): b"\x00" * 8})
    assert len(missed) == 3 and skipped == 0 and kept.unmarked == 2
    assert buffer().take(0.0, None) == ([], 0)


def test_groups_the_link_gets_live_are_not_delivered() -> None:
    kept = buffer()
    for seq in range(3):
        kept.add(0.0, v4(seq))
        kept.add(0.0, v6(seq))
    missed, skipped = kept.take(0.0, None, live=frozenset({(Family.IPV4, G4)}))
    assert {p.key for p in missed} == {(Family.IPV6, G6)} and skipped == 3
    assert kept.unmarked == 1, "only the delivered group counts as unmarked"
