"""The hostile host of ``hostile_bench``: crafted report floods and an (S,G) data spray, as a process.

Runs inside the attacker's namespace (``ip netns exec``) and writes whole
Ethernet frames on its link through an AF_PACKET socket, so it can send what
its kernel never would:

- ``reports``: at ``--rate`` packets/s per family, IGMPv3 and MLDv2 reports
  from the host's own address (IPv6: its link-local). First IS_IN records
  with ``--sources`` sources for one group, split over as many 1,500-octet
  packets as they need (RFC 3376 §4.2 / RFC 3810 §5.2: IS_IN adds sources),
  then packets full of ALLOW({}) records for that group (183 per IGMPv3
  packet, 72 per MLDv2 packet), until stopped.
- ``spray``: UDP data from spoofed sources to many groups, ``--count``
  distinct (S,G) (half per family), sent round-robin at ``--rate`` frames/s
  until stopped.

Reports are built with the project's own codecs (``malformed.FrameMaker``).
SIGTERM ends it; it prints one JSON line with what it sent.

    python bench/hostile_traffic.py reports --interface e0 --src4 10.2.0.2 --src6 fe80::1 \\
        --group4 239.79.0.1 --group6 ff15::79:1
    python bench/hostile_traffic.py spray --interface e0 --count 50000
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import signal
import socket
import struct
import sys
import time

from mcproxy_pmip.wire import checksum, igmp, mld
from mcproxy_pmip.wire.records import GroupRecord, RecordType

from malformed import REPORTS_V6, FrameMaker

IP_MTU = 1500
#: octets of one packet before the records: IPv4 + Router Alert + IGMPv3 report header; IPv6 + hop-by-hop + MLDv2
REPORT_OVERHEAD = {4: 24 + 8, 6: 40 + 8 + 8}
RECORD_HEADER = {4: 8, 6: 20}
ADDRESS_OCTETS = {4: 4, 6: 16}
UDP_PORT = 5002
MAX_LAG = 0.05      # seconds of backlog sent at once; beyond that frames are skipped (counted)


def sources_per_packet(family: int) -> int:
    return (IP_MTU - REPORT_OVERHEAD[family] - RECORD_HEADER[family]) // ADDRESS_OCTETS[family]


def empty_records_per_packet(family: int) -> int:
    return (IP_MTU - REPORT_OVERHEAD[family]) // RECORD_HEADER[family]


def fake_sources(family: int, count: int) -> list:
    base = ipaddress.ip_address("10.200.0.1" if family == 4 else "fd99::1")
    return [base + i for i in range(count)]


def report_frames(maker: FrameMaker, group: str, source_count: int) -> tuple[list[bytes], bytes]:
    """(the IS_IN frames carrying ``source_count`` sources, one frame full of ALLOW({}) records)."""
    family = maker.family
    address = ipaddress.ip_address(group)
    sources = fake_sources(family, source_count)
    step = sources_per_packet(family)
    records = [(GroupRecord(RecordType.MODE_IS_INCLUDE, address, tuple(sources[i:i + step])),)
               for i in range(0, len(sources), step)]
    empty = (GroupRecord(RecordType.ALLOW_NEW_SOURCES, address, ()),) * empty_records_per_packet(family)
    return [maker.frame(_report(maker, r)) for r in records], maker.frame(_report(maker, empty))


def _report(maker: FrameMaker, records: tuple) -> bytes:
    if maker.family == 4:
        return igmp.build(igmp.IgmpV3Report(records))
    return mld.build(mld.MldV2Report(records), maker.src, REPORTS_V6)


def _multicast_mac(group) -> bytes:
    packed = group.packed
    if group.version == 4:
        return b"\x01\x00\x5e" + bytes([packed[1] & 0x7F]) + packed[2:]
    return b"\x33\x33" + packed[12:]


def spray_frames(mac: bytes, count: int) -> list[bytes]:
    """``count`` UDP frames, each a distinct (S,G): half IPv4 (239.80/16), half IPv6 (ff15::80:0/112)."""
    frames = []
    per_family = count // 2
    groups = 125
    payload = b"HHB1" + bytes(12)
    for i in range(per_family):
        group4 = ipaddress.ip_address("239.80.0.1") + i % groups
        source4 = ipaddress.ip_address("10.66.0.1") + i // groups
        udp = struct.pack("!HHHH", UDP_PORT, UDP_PORT, 8 + len(payload), 0) + payload
        header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 16, 17, 0, source4.packed,
                             group4.packed)
        header = header[:10] + checksum.internet_checksum(header).to_bytes(2, "big") + header[12:]
        frames.append(_multicast_mac(group4) + mac + b"\x08\x00" + header + udp)
    for i in range(count - per_family):
        group6 = ipaddress.ip_address("ff15::80:0") + i % groups
        source6 = ipaddress.ip_address("fd66::1") + i // groups
        udp = struct.pack("!HHHH", UDP_PORT, UDP_PORT, 8 + len(payload), 0) + payload
        header = struct.pack("!IHBB16s16s", 0x6 << 28, len(udp), 17, 16, source6.packed, group6.packed)
        frames.append(_multicast_mac(group6) + mac + b"\x86\xdd" + header + udp)
    return frames


class Paced:
    """Sends the frames of one tick ``rate`` times a second; skips ticks (counted) when it falls behind."""

    def __init__(self, sock: socket.socket, rate: float) -> None:
        self.sock = sock
        self.rate = rate
        self.sent = 0
        self.skipped = 0
        self.errors = 0

    def run(self, ticks) -> None:
        started = time.monotonic()
        done = 0
        for frames in ticks:
            due_at = started + done / self.rate
            lag = time.monotonic() - due_at
            if lag < 0:
                time.sleep(-lag)
            elif lag > MAX_LAG:
                skip = int(lag * self.rate)
                self.skipped += skip
                done += skip
            for frame in frames:
                try:
                    self.sock.send(frame)
                    self.sent += 1
                except OSError:
                    self.errors += 1
            done += 1


def report_ticks(v4: tuple[list[bytes], bytes], v6: tuple[list[bytes], bytes]):
    """One IPv4 and one IPv6 frame per tick: the IS_IN frames first, then ALLOW({}) frames forever."""
    heads = [list(v4[0]), list(v6[0])]
    floods = [v4[1], v6[1]]
    while True:
        yield [head.pop(0) if head else flood for head, flood in zip(heads, floods)]


def spray_ticks(frames: list[bytes], per_tick: int):
    position = 0
    while True:
        batch = frames[position:position + per_tick]
        position = (position + per_tick) % len(frames)
        yield batch


def main() -> None:
    parser = argparse.ArgumentParser(description="hostile host: report flood or (S,G) spray (runs in its netns)")
    parser.add_argument("role", choices=("reports", "spray"))
    parser.add_argument("--interface", default="e0")
    parser.add_argument("--rate", type=float, default=300.0,
                        help="reports: packets/s per family; spray: frames/s in all (default 300 / 5000)")
    parser.add_argument("--src4")
    parser.add_argument("--src6")
    parser.add_argument("--group4", default="239.79.0.1")
    parser.add_argument("--group6", default="ff15::79:1")
    parser.add_argument("--sources", type=int, default=1024)
    parser.add_argument("--count", type=int, default=50000)
    args = parser.parse_args()
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    sock.bind((args.interface, 0))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    mac = sock.getsockname()[4]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    summary: dict = {"role": args.role}
    pacer = Paced(sock, args.rate if args.role == "reports" else args.rate / max(1, int(args.rate // 200)))
    try:
        if args.role == "reports":
            v4 = report_frames(FrameMaker(4, mac, args.src4), args.group4, args.sources)
            v6 = report_frames(FrameMaker(6, mac, args.src6), args.group6, args.sources)
            summary.update(is_in_packets={"4": len(v4[0]), "6": len(v6[0])},
                           frame_octets={"4": len(v4[1]) - 14, "6": len(v6[1]) - 14})
            pacer.run(report_ticks(v4, v6))
        else:
            frames = spray_frames(mac, args.count)
            summary["distinct_sg"] = len(frames)
            pacer.run(spray_ticks(frames, max(1, int(args.rate // 200))))
    finally:
        summary.update(sent=pacer.sent, skipped=pacer.skipped, errors=pacer.errors)
        print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
