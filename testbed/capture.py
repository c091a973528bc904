"""Packet capture on testbed links (tcpdump) and reading reports out of pcaps.

tcpdump writes each chosen link to a pcap in the results folder. The reader
is a small pure pcap parser that finds IGMPv2/v3 (RFC 2236 §2, RFC 3376 §4.2)
and MLDv1/v2 (RFC 2710 §3, RFC 3810 §5.2) reports and the groups they join
(v3/v2: state-change records only, so an answer to the LMA's query is not
taken for a join), so the measurement can time the new MAG's upstream report
after an attach.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import struct
from collections.abc import Iterator

LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LINUX_SLL = 113
_RAW_ALIASES = {12, 14, LINKTYPE_RAW}
# state-change record types that add interest in a group (RFC 3376 §4.2.12, RFC 3810 §5.2.12);
# current-state records (IS_IN, IS_EX) answer queries and say nothing new
_TO_IN, _TO_EX, _ALLOW = 3, 4, 5


@dataclasses.dataclass(frozen=True, slots=True)
class ReportSeen:
    """A captured membership report: when, and the groups it joins."""

    at: float
    family: int
    joined: frozenset[str]


REPORTS_ONLY = "igmp or icmp6 or (ip6 and ip6[6] == 0)"  # MLD follows a Hop-by-Hop header


def tcpdump_argv(ifname: str, path: str, snaplen: int = 256,
                 bpf_filter: str | None = None) -> list[str]:
    argv = ["tcpdump", "-i", ifname, "-w", path, "-U", "-n", "-s", str(snaplen),
            "--immediate-mode", "-Z", "root"]
    return argv + ([bpf_filter] if bpf_filter else [])


def read_pcap(data: bytes) -> Iterator[tuple[float, int, bytes]]:
    """(timestamp, linktype, frame) of every record of a classic pcap file."""
    if len(data) < 24:
        return
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        endian = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        endian = ">"
    else:
        raise ValueError("not a pcap file")
    nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    linktype = struct.unpack_from(endian + "I", data, 20)[0]
    offset = 24
    while offset + 16 <= len(data):
        seconds, fraction, captured, _length = struct.unpack_from(endian + "IIII", data, offset)
        offset += 16
        frame = data[offset:offset + captured]
        offset += captured
        if len(frame) < captured:
            return
        yield seconds + fraction / (1e9 if nano else 1e6), linktype, frame


def _network_layer(linktype: int, frame: bytes) -> bytes | None:
    if linktype in _RAW_ALIASES:
        return frame
    if linktype == LINKTYPE_ETHERNET and len(frame) > 14:
        return frame[14:]
    if linktype == LINKTYPE_LINUX_SLL and len(frame) > 16:
        return frame[16:]
    return None


def _records(body: bytes, count: int, address_size: int) -> set[str]:
    joined = set()
    offset = 0
    for _ in range(count):
        if offset + 4 + address_size > len(body):
            break
        record_type, aux_words, n_sources = struct.unpack_from("!BBH", body, offset)
        group = ipaddress.ip_address(body[offset + 4:offset + 4 + address_size])
        if record_type == _TO_EX or (record_type in (_TO_IN, _ALLOW) and n_sources > 0):
            joined.add(str(group))
        offset += 4 + address_size + n_sources * address_size + aux_words * 4
    return joined


def parse_report(packet: bytes) -> tuple[int, frozenset[str]] | None:
    """(IP version, groups joined) when ``packet`` is an IGMP/MLD report, else None."""
    if not packet:
        return None
    version = packet[0] >> 4
    if version == 4 and len(packet) >= 20:
        header_length = (packet[0] & 0x0F) * 4
        if packet[9] != 2:
            return None
        igmp = packet[header_length:]
        if len(igmp) >= 8 and igmp[0] == 0x22:
            count = struct.unpack_from("!H", igmp, 6)[0]
            return 4, frozenset(_records(igmp[8:], count, 4))
        if len(igmp) >= 8 and igmp[0] in (0x12, 0x16):
            return 4, frozenset({str(ipaddress.IPv4Address(igmp[4:8]))})
        return None
    if version == 6 and len(packet) >= 40:
        next_header, offset = packet[6], 40
        while next_header in (0, 43, 60) and offset + 8 <= len(packet):
            next_header, length = packet[offset], packet[offset + 1]
            offset += (length + 1) * 8
        if next_header != 58:
            return None
        icmp = packet[offset:]
        if len(icmp) >= 8 and icmp[0] == 143:
            count = struct.unpack_from("!H", icmp, 6)[0]
            return 6, frozenset(_records(icmp[8:], count, 16))
        if len(icmp) >= 24 and icmp[0] == 131:
            return 6, frozenset({str(ipaddress.IPv6Address(icmp[8:24]))})
    return None


def reports_in_pcap(data: bytes) -> list[ReportSeen]:
    seen = []
    for at, linktype, frame in read_pcap(data):
        packet = _network_layer(linktype, frame)
        if packet is None:
            continue
        parsed = parse_report(packet)
        if parsed is not None and parsed[1]:
            seen.append(ReportSeen(at=at, family=parsed[0], joined=parsed[1]))
    return seen
