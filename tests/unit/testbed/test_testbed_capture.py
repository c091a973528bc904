"""The pcap reader finds IGMP/MLD reports and the groups they join."""

from __future__ import annotations

import ipaddress
import struct

from mcproxy_pmip_testbed.capture import LINKTYPE_RAW, parse_report, reports_in_pcap


def mldv2_report(records: list[tuple[int, str, list[str]]]) -> bytes:
    body = b""
    for record_type, group, sources in records:
        body += struct.pack("!BBH", record_type, 0, len(sources))
        body += ipaddress.IPv6Address(group).packed
        body += b"".join(ipaddress.IPv6Address(s).packed for s in sources)
    icmp = struct.pack("!BBHHH", 143, 0, 0, 0, len(records)) + body
    hop_by_hop = bytes([58, 0, 5, 2, 0, 0, 1, 0])  # Router Alert, PadN
    header = struct.pack("!IHBB", 0x60000000, len(hop_by_hop) + len(icmp), 0, 1)
    header += ipaddress.IPv6Address("fe80::2").packed + ipaddress.IPv6Address("ff02::16").packed
    return header + hop_by_hop + icmp


def igmpv3_report(records: list[tuple[int, str, list[str]]]) -> bytes:
    body = b""
    for record_type, group, sources in records:
        body += struct.pack("!BBH", record_type, 0, len(sources)) + ipaddress.IPv4Address(group).packed
        body += b"".join(ipaddress.IPv4Address(s).packed for s in sources)
    igmp = struct.pack("!BBHHH", 0x22, 0, 0, 0, len(records)) + body
    header = struct.pack("!BBHHHBBH", 0x46, 0, 24 + len(igmp), 0, 0, 1, 2, 0)
    header += bytes([10, 0, 0, 2, 224, 0, 0, 22]) + bytes([148, 4, 0, 0])
    return header + igmp


def pcap(packets: list[tuple[float, bytes]]) -> bytes:
    data = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, LINKTYPE_RAW)
    for at, packet in packets:
        seconds = int(at)
        data += struct.pack("<IIII", seconds, round((at - seconds) * 1e6), len(packet),
                            len(packet)) + packet
    return data


def test_mldv2_joins_and_leaves() -> None:
    report = mldv2_report([(4, "ff0e::1", []), (3, "ff0e::2", []), (5, "ff3e::3", ["2001:db8::1"]),
                           (6, "ff3e::4", ["2001:db8::1"])])
    assert parse_report(report) == (6, frozenset({"ff0e::1", "ff3e::3"}))


def test_igmpv3_with_router_alert_option() -> None:
    report = igmpv3_report([(4, "239.1.1.1", []), (3, "232.1.1.1", []), (5, "232.1.1.2", ["10.0.0.9"])])
    assert parse_report(report) == (4, frozenset({"239.1.1.1", "232.1.1.2"}))


def test_current_state_records_are_not_joins() -> None:
    report = igmpv3_report([(2, "239.1.1.1", []), (1, "232.1.1.2", ["10.0.0.9"])])
    assert parse_report(report) == (4, frozenset())


def test_pcap_timestamps_and_only_reports() -> None:
    data_packet = igmpv3_report([])[:9] + b"\x11" + bytes(30)  # UDP, not a report
    reports = reports_in_pcap(pcap([(100.25, mldv2_report([(4, "ff3e::8000:1", [])])),
                                    (100.5, data_packet),
                                    (101.0, igmpv3_report([(4, "239.1.1.1", [])]))]))
    assert [(r.at, r.family, sorted(r.joined)) for r in reports] == [
        (100.25, 6, ["ff3e::8000:1"]), (101.0, 4, ["239.1.1.1"])]
