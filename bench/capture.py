"""Packet captures for the benchmarks: what went over a link, and when the kernel saw it.

Each capture is an AF_PACKET socket bound to one interface with a classic BPF
filter (assembled here from symbolic labels) and kernel receive timestamps
(``SO_TIMESTAMPNS``, CLOCK_REALTIME): every time in the benchmarks is on that
clock (``now``), so a latency is the difference of two kernel timestamps and
does not depend on when Python got round to reading a packet.

One ``Recorder`` thread reads every capture of a topology and keeps:

- on the upstream link (incoming from the proxy): the group records of every
  IGMP / MLD report, classified as ``join`` or ``leave`` (``upstream_after``);
- on each host link, outgoing: the host kernel's own reports (``host_report_after``);
- on each host link, incoming: the data packets of the benchmark's sources
  (UDP to ``traffic.PORT`` with ``traffic.MAGIC``), per (host, group, source):
  first and last arrival and count since the key's last ``reset``.

Reports are decoded with the project's codecs (``mcproxy_pmip.wire``).
"""

from __future__ import annotations

import ctypes
import select
import socket
import struct
import threading
import time
from dataclasses import dataclass, field

from mcproxy_pmip.errors import MalformedPacket
from mcproxy_pmip.wire import igmp, mld
from mcproxy_pmip.wire.records import RecordType

import traffic

ETH_P_ALL = 0x0003
SO_ATTACH_FILTER = 26
SO_RCVBUFFORCE = 33
SO_TIMESTAMPNS = 35
CAPTURE_BUFFER = 16 << 20

#: classic BPF opcodes used here (linux/filter.h)
LD_H_ABS, LD_B_ABS, LD_W_ABS = 0x28, 0x30, 0x20
JMP_JEQ_K = 0x15
RET_K = 0x06
SKF_AD_PKTTYPE = -0x1000 + 4          # ancillary load: the frame's packet type
ACCEPT, DROP = 0x40000, 0


def now() -> float:
    """The benchmarks' clock: CLOCK_REALTIME, the clock of the kernel's receive timestamps."""
    return time.time()


def assemble(program: list[tuple]) -> bytes:
    """Classic BPF from ``(label,)`` markers and ``(opcode, k)`` / ``("jeq", k, if_true, if_false)`` steps."""
    labels, steps = {}, []
    for item in program:
        if len(item) == 1:
            labels[item[0]] = len(steps)
        else:
            steps.append(item)
    code = []
    for pc, step in enumerate(steps):
        if step[0] == "jeq":
            _, k, if_true, if_false = step
            code.append(struct.pack("=HBBI", JMP_JEQ_K, labels[if_true] - pc - 1, labels[if_false] - pc - 1, k))
        else:
            opcode, k = step
            code.append(struct.pack("=HBBi" if k < 0 else "=HBBI", opcode, 0, 0, k))
    return b"".join(code)


#: incoming IGMP, IPv6 with hop-by-hop options or ICMPv6 (the proxy's reports on the upstream link)
UPSTREAM_FILTER = [
    (LD_W_ABS, SKF_AD_PKTTYPE), ("jeq", socket.PACKET_OUTGOING, "drop", "l2"), ("l2",),
    (LD_H_ABS, 12), ("jeq", 0x0800, "v4", "not4"), ("v4",),
    (LD_B_ABS, 23), ("jeq", 2, "accept", "drop"), ("not4",),
    ("jeq", 0x86DD, "v6", "drop"), ("v6",),
    (LD_B_ABS, 20), ("jeq", 0, "accept", "icmp6"), ("icmp6",), ("jeq", 58, "accept", "drop"),
    ("accept",), (RET_K, ACCEPT), ("drop",), (RET_K, DROP),
]
#: IGMP, UDP, ICMPv6 and IPv6 hop-by-hop in both directions (host links: reports out, data in)
HOST_FILTER = [
    (LD_H_ABS, 12), ("jeq", 0x0800, "v4", "not4"), ("v4",),
    (LD_B_ABS, 23), ("jeq", 17, "accept", "igmp"), ("igmp",), ("jeq", 2, "accept", "drop"), ("not4",),
    ("jeq", 0x86DD, "v6", "drop"), ("v6",),
    (LD_B_ABS, 20), ("jeq", 17, "accept", "hbh"), ("hbh",), ("jeq", 0, "accept", "icmp6"),
    ("icmp6",), ("jeq", 58, "accept", "drop"),
    ("accept",), (RET_K, ACCEPT), ("drop",), (RET_K, DROP),
]


def open_capture(ns, interface: str, program: list[tuple]) -> socket.socket:
    """A non-blocking AF_PACKET socket on ``interface`` in ``ns`` with ``program`` and kernel timestamps."""
    code = assemble(program)
    with ns.entered():
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    instructions = ctypes.create_string_buffer(code, len(code))     # the kernel copies it
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER,
                    struct.pack("HP", len(code) // 8, ctypes.addressof(instructions)))
    sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, CAPTURE_BUFFER)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    with ns.entered():
        sock.bind((interface, ETH_P_ALL))
    sock.setblocking(False)
    return sock


@dataclass(frozen=True, slots=True)
class Frame:
    """The parts of a captured IPv4/IPv6 frame the recorder needs."""

    proto: int          # IPv4 protocol / IPv6 upper-layer header
    src: bytes
    dst: bytes
    payload: bytes      # the upper-layer message (IGMP, ICMPv6, UDP)


def parse_frame(frame: bytes) -> Frame | None:
    ethertype = frame[12:14]
    if ethertype == b"\x08\x00":
        header_length = (frame[14] & 0x0F) * 4
        total = int.from_bytes(frame[16:18], "big")
        return Frame(frame[23], frame[26:30], frame[30:34], frame[14 + header_length:14 + total])
    if ethertype == b"\x86\xdd":
        nxt, offset = frame[20], 54
        while nxt == 0 and offset + 2 <= len(frame):
            nxt, offset = frame[offset], offset + (frame[offset + 1] + 1) * 8
        return Frame(nxt, frame[22:38], frame[38:54], frame[offset:])
    return None


JOIN, LEAVE = "join", "leave"


def classify(record_type: RecordType, sources: int) -> str:
    """A record as the benchmark reads it: does it ask for traffic (join) or give it up (leave)?"""
    if record_type in (RecordType.MODE_IS_EXCLUDE, RecordType.CHANGE_TO_EXCLUDE, RecordType.ALLOW_NEW_SOURCES):
        return JOIN
    if record_type is RecordType.BLOCK_OLD_SOURCES:
        return LEAVE
    return JOIN if sources else LEAVE


Record = tuple[float, str, str, tuple[bytes, ...]]
"""A report record as recorded: (time, join|leave, record type such as TO_EX, sources)."""


def report_records(frame: Frame) -> list[tuple[bytes, str, str, tuple[bytes, ...]]]:
    """``(group, join|leave, record type, sources)`` of an IGMP / MLD report; [] for anything else."""
    try:
        if frame.proto == 2:
            message = igmp.parse(frame.payload)
        elif frame.proto == 58 and frame.payload[:1] in (b"\x83", b"\x84", b"\x8f"):
            message = mld.parse(frame.payload)
        else:
            return []
    except MalformedPacket:
        return []
    if isinstance(message, (igmp.IgmpV3Report, mld.MldV2Report)):
        return [(r.group.packed, classify(r.record_type, len(r.sources)), r.record_type.short,
                 tuple(s.packed for s in r.sources)) for r in message.records]
    if isinstance(message, (igmp.IgmpV1Report, igmp.IgmpV2Report, mld.MldV1Report)):
        return [(message.group.packed, JOIN, "REPORT", ())]
    if isinstance(message, (igmp.IgmpV2Leave, mld.MldDone)):
        return [(message.group.packed, LEAVE, "LEAVE", ())]
    return []


@dataclass
class Arrivals:
    """Data packets of one (host, group) since its last reset, with counts per source."""

    first: float | None = None
    last: float | None = None
    count: int = 0
    by_source: dict[bytes, int] = field(default_factory=dict)
    first_sent: float | None = None     # the source's send time of the first packet (its payload)

    def add(self, t: float, source: bytes, sent: float) -> None:
        if self.first is None:
            self.first, self.first_sent = t, sent
        self.last = t
        self.count += 1
        self.by_source[source] = self.by_source.get(source, 0) + 1


class Recorder(threading.Thread):
    """Reads every capture of a topology on one thread; the benchmark thread queries it."""

    def __init__(self) -> None:
        super().__init__(name="pxb-recorder", daemon=True)
        self._lock = threading.Lock()
        self._socks: dict[socket.socket, int | None] = {}   # capture -> host index, None: upstream
        self._running = True
        self.upstream: dict[bytes, list[Record]] = {}
        self.upstream_packets = 0
        self.host_reports: dict[tuple[int, bytes], list[Record]] = {}
        self.data: dict[tuple[int, bytes], Arrivals] = {}
        self.timestamps_missing = 0

    def add(self, sock: socket.socket, host: int | None) -> None:
        with self._lock:
            self._socks[sock] = host

    def stop(self) -> None:
        self._running = False
        if self.is_alive():
            self.join(2.0)
        for sock in self._socks:
            sock.close()

    def run(self) -> None:
        ancillary = socket.CMSG_SPACE(16)
        while self._running:
            readable, _, _ = select.select(list(self._socks), [], [], 0.05)
            for sock in readable:
                host = self._socks[sock]
                for _ in range(4096):
                    try:
                        frame, cmsgs, _flags, address = sock.recvmsg(2048, ancillary)
                    except BlockingIOError:
                        break
                    self._handle(host, frame, self._timestamp(cmsgs), address[2] == socket.PACKET_OUTGOING)

    def _timestamp(self, cmsgs: list) -> float:
        for level, kind, data in cmsgs:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                seconds, nanoseconds = struct.unpack("qq", data[:16])
                return seconds + nanoseconds * 1e-9
        self.timestamps_missing += 1
        return now()

    def _handle(self, host: int | None, raw: bytes, t: float, outgoing: bool) -> None:
        frame = parse_frame(raw)
        if frame is None:
            return
        if frame.proto == 17:
            if host is not None and not outgoing:
                self._data(host, frame, t)
            return
        records = report_records(frame)
        if not records:
            return
        with self._lock:
            if host is None:
                self.upstream_packets += 1
                for group, kind, label, sources in records:
                    self.upstream.setdefault(group, []).append((t, kind, label, sources))
            elif outgoing:
                for group, kind, label, sources in records:
                    self.host_reports.setdefault((host, group), []).append((t, kind, label, sources))

    def _data(self, host: int, frame: Frame, t: float) -> None:
        payload = frame.payload
        if payload[2:4] != traffic.PORT_BYTES or payload[8:12] != traffic.MAGIC:
            return
        sent = int.from_bytes(payload[20:28], "big") * 1e-9
        with self._lock:
            arrivals = self.data.get((host, frame.dst))
            if arrivals is None:
                arrivals = self.data[(host, frame.dst)] = Arrivals()
            arrivals.add(t, frame.src, sent)

    # -- queries (benchmark thread) --------------------------------------------------------

    def reset(self, host: int, group: bytes) -> None:
        """Forget the data of (host, group) seen so far: ``arrivals`` counts from here on."""
        with self._lock:
            self.data[(host, group)] = Arrivals()

    def arrivals(self, host: int, group: bytes) -> Arrivals:
        with self._lock:
            found = self.data.get((host, group))
            if found is None:
                return Arrivals()
            return Arrivals(found.first, found.last, found.count, dict(found.by_source), found.first_sent)

    def upstream_after(self, group: bytes, kind: str, after: float) -> float | None:
        """Time of the first upstream record of ``kind`` for ``group`` at or after ``after``."""
        with self._lock:
            times = [r[0] for r in self.upstream.get(group, ()) if r[1] == kind and r[0] >= after]
        return min(times) if times else None

    def upstream_records(self, group: bytes, after: float) -> list[Record]:
        with self._lock:
            return [r for r in self.upstream.get(group, ()) if r[0] >= after]

    def upstream_groups_after(self, after: float) -> set[bytes]:
        with self._lock:
            return {g for g, records in self.upstream.items() if any(r[0] >= after for r in records)}

    def host_report_after(self, host: int, group: bytes, kind: str, after: float, nth: int = 0) -> float | None:
        """Time of the host's ``nth`` report (0: first) of ``kind`` for ``group`` at or after ``after``."""
        with self._lock:
            times = sorted(r[0] for r in self.host_reports.get((host, group), ()) if r[1] == kind and r[0] >= after)
        return times[nth] if len(times) > nth else None

    def host_records(self, host: int, group: bytes, after: float) -> list[Record]:
        with self._lock:
            return [r for r in self.host_reports.get((host, group), ()) if r[0] >= after]
