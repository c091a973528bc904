"""Pure tests (no root) of how frames from the packet socket become ReceivedIgmp / ReceivedMld.

The header parsers belong to ``wire.ipv4`` / ``wire.ipv6`` and are tested
there; here: what the kernel layer keeps (IGMP, MLD types, link packet types),
the checksums it verifies, and the drop reasons. The BPF programs are tested
for real in tests/netns/test_packet_io_*.py; here only the label assembler.
"""

from __future__ import annotations

import ipaddress
import struct

import pytest

from mcproxy_pmip.errors import MalformedPacket
from mcproxy_pmip.kernel import igmp_socket, mld_socket, packet_socket
from mcproxy_pmip.kernel.rawsock import JMP_JA, JMP_JEQ_K, RET_K, Insn, assemble
from mcproxy_pmip.wire import checksum, igmp, ipv4, ipv6, mld

HOST4 = ipaddress.IPv4Address("10.0.0.2")
GROUP4 = ipaddress.IPv4Address("239.1.1.1")
HOST6 = ipaddress.IPv6Address("fe80::2")
GROUP6 = ipaddress.IPv6Address("ff3e::1")
ALL_ROUTERS6 = ipaddress.IPv6Address("ff02::2")
ETHERNET_MINIMUM = 46


def ipv4_packet(payload: bytes, protocol: int = 2, options: bytes = ipv4.ROUTER_ALERT_OPTION,
                fragment: int = 0, good_checksum: bool = True) -> bytes:
    """An IPv4 packet, padded like a minimum Ethernet frame."""
    header = struct.pack("!BBHHHBBH4s4s", 0x40 | (20 + len(options)) // 4, 0xC0,
                         20 + len(options) + len(payload), 0, fragment, 1, protocol, 0,
                         HOST4.packed, GROUP4.packed) + options
    value = checksum.internet_checksum(header) ^ (0 if good_checksum else 0x0101)
    packet = header[:10] + struct.pack("!H", value) + header[12:] + payload
    return packet.ljust(ETHERNET_MINIMUM, b"\x00")


def ipv6_packet(icmp: bytes, hop_by_hop: bool = True, next_header: int = 58,
                dst: ipaddress.IPv6Address = GROUP6) -> bytes:
    """An IPv6 packet from HOST6 with hop limit 1, with or without the MLD Hop-by-Hop header."""
    body = icmp
    first = next_header
    if hop_by_hop:
        body = bytes((next_header,)) + ipv6.HOP_BY_HOP_ROUTER_ALERT[1:] + icmp
        first = 0
    return struct.pack("!IHBB16s16s", 6 << 28, len(body), first, 1, HOST6.packed, dst.packed) + body


V2_REPORT = igmp.build(igmp.IgmpV2Report(GROUP4))
MLD_REPORT = mld.build(mld.MldV1Report(GROUP6), HOST6, GROUP6)
MLD_DONE = mld.build(mld.MldDone(GROUP6), HOST6, ALL_ROUTERS6)


def test_igmp_packet_with_router_alert_and_link_padding() -> None:
    packet = igmp_socket.decode_packet(ipv4_packet(V2_REPORT), 7)
    assert packet == igmp_socket.ReceivedIgmp(ifindex=7, src=HOST4, dst=GROUP4, ttl=1, router_alert=True,
                                              payload=V2_REPORT)


def test_igmp_packet_without_options() -> None:
    packet = igmp_socket.decode_packet(ipv4_packet(V2_REPORT, options=b""), 3)
    assert (packet.router_alert, packet.payload) == (False, V2_REPORT)


@pytest.mark.parametrize(("packet", "reason"), [
    (ipv4_packet(V2_REPORT, good_checksum=False), "bad_ip_checksum"),
    (ipv4_packet(V2_REPORT, protocol=17), "not_igmp"),
    (ipv4_packet(V2_REPORT, fragment=0x2000), "ip_fragment"),
    (ipv4_packet(V2_REPORT, fragment=0x0010), "ip_fragment"),
    (ipv4_packet(V2_REPORT)[:30], "ip_truncated"),
    (ipv4_packet(V2_REPORT)[:12], "ip_too_short"),
    (bytes(ETHERNET_MINIMUM), "not_ipv4"),
], ids=["bad-header-checksum", "udp", "more-fragments", "offset", "truncated", "too-short", "zeros"])
def test_igmp_rejects_with_a_reason(packet: bytes, reason: str) -> None:
    with pytest.raises(MalformedPacket) as caught:
        igmp_socket.decode_packet(packet, 7)
    assert caught.value.reason == reason


def test_mld_report_with_hop_by_hop_router_alert() -> None:
    packet = mld_socket.decode_packet(ipv6_packet(MLD_REPORT) + b"\x00" * 6, 4)
    assert packet == mld_socket.ReceivedMld(ifindex=4, src=HOST6, dst=GROUP6, hop_limit=1, router_alert=True,
                                            payload=MLD_REPORT)


def test_mld_done_without_hop_by_hop_has_no_router_alert() -> None:
    packet = mld_socket.decode_packet(ipv6_packet(MLD_DONE, hop_by_hop=False, dst=ALL_ROUTERS6), 4)
    assert (packet.router_alert, packet.dst, packet.payload) == (False, ALL_ROUTERS6, MLD_DONE)


def flipped(data: bytes, at: int) -> bytes:
    return data[:at] + bytes((data[at] ^ 0xFF,)) + data[at + 1:]


ECHO_REQUEST = bytes((128, 0, 0, 0, 0, 1, 0, 1))


@pytest.mark.parametrize(("packet", "reason"), [
    (ipv6_packet(flipped(MLD_REPORT, 2)), "bad_icmpv6_checksum"),
    (ipv6_packet(flipped(MLD_REPORT, 8)), "bad_icmpv6_checksum"),  # the group, not the checksum field
    (ipv6_packet(MLD_REPORT, dst=ALL_ROUTERS6), "bad_icmpv6_checksum"),  # pseudo-header differs
    (ipv6_packet(ECHO_REQUEST), "not_mld"),
    (ipv6_packet(bytes((133,)) + MLD_REPORT[1:]), "not_mld"),
    (ipv6_packet(b""), "not_mld"),
    (ipv6_packet(MLD_REPORT, next_header=17), "not_icmpv6"),
    (ipv6_packet(MLD_REPORT, hop_by_hop=False, next_header=60), "not_icmpv6"),
    (ipv6_packet(MLD_REPORT)[:50], "ipv6_truncated"),
    (ipv6_packet(MLD_REPORT)[:39], "ipv6_too_short"),
    (ipv4_packet(V2_REPORT), "not_ipv6"),
], ids=["checksum-field", "group", "pseudo-header", "echo", "router-solicitation", "empty", "udp",
        "destination-options", "truncated", "too-short", "ipv4"])
def test_mld_rejects_with_a_reason(packet: bytes, reason: str) -> None:
    with pytest.raises(MalformedPacket) as caught:
        mld_socket.decode_packet(packet, 4)
    assert caught.value.reason == reason


@pytest.mark.parametrize("pkttype", [packet_socket.PACKET_HOST, packet_socket.PACKET_BROADCAST,
                                     packet_socket.PACKET_MULTICAST])
def test_frames_for_this_host_pass(pkttype: int) -> None:
    packet_socket.check_pkttype(pkttype)


@pytest.mark.parametrize("pkttype", [3, packet_socket.PACKET_OUTGOING, 5])
def test_other_hosts_and_own_frames_are_dropped(pkttype: int) -> None:
    with pytest.raises(MalformedPacket) as caught:
        packet_socket.check_pkttype(pkttype)
    assert caught.value.reason == "not_for_host"


def test_assemble_resolves_labels_to_forward_offsets() -> None:
    program = assemble([
        Insn(JMP_JEQ_K, 1, jt="yes", jf="no"),
        Insn(JMP_JA, "yes"),
        "no", Insn(RET_K, 0),
        "yes", Insn(RET_K, 1),
    ])
    assert program == ((JMP_JEQ_K, 2, 1, 1), (JMP_JA, 0, 0, 1), (RET_K, 0, 0, 0), (RET_K, 0, 0, 1))


def test_assemble_refuses_backward_jumps() -> None:
    with pytest.raises(ValueError, match="out of range"):
        assemble(["top", Insn(RET_K, 0), Insn(JMP_JEQ_K, 1, jt="top")])


def test_filters_end_in_returns() -> None:
    for program in (packet_socket.IGMP_FILTER, packet_socket.MLD_FILTER):
        assert program[-1][0] == RET_K and program[-2][0] == RET_K
        assert len(program) < 4096, "BPF_MAXINSNS"
