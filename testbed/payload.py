"""Payload of testbed multicast packets and the receivers' arrival log format.

Payload (network byte order): magic ``MPTB``, stream id (u32), sequence number
(u64, from 0), send time (float64, seconds since the epoch), zero padding.
Arrival log: one text line per received packet, ``stream seq send_ts recv_ts``.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Iterable, Iterator

MAGIC = b"MPTB"
HEADER = struct.Struct("!4sIQd")


@dataclasses.dataclass(frozen=True, slots=True)
class Arrival:
    """One packet received by an MN."""

    stream: int
    seq: int
    sent_at: float
    received_at: float


def pack(stream: int, seq: int, sent_at: float, size: int) -> bytes:
    header = HEADER.pack(MAGIC, stream, seq, sent_at)
    return header + bytes(max(0, size - len(header)))


def unpack(data: bytes) -> tuple[int, int, float] | None:
    """(stream, seq, sent_at) or None when the bytes are not ours."""
    if len(data) < HEADER.size:
        return None
    magic, stream, seq, sent_at = HEADER.unpack_from(data)
    if magic != MAGIC:
        return None
    return stream, seq, sent_at


def format_arrival(arrival: Arrival) -> str:
    return f"{arrival.stream} {arrival.seq} {arrival.sent_at:.6f} {arrival.received_at:.6f}\n"


def parse_arrivals(lines: Iterable[str]) -> Iterator[Arrival]:
    """Parse an arrival log; a torn last line (process killed mid-write) is skipped."""
    for line in lines:
        fields = line.split()
        if len(fields) != 4:
            continue
        try:
            yield Arrival(int(fields[0]), int(fields[1]), float(fields[2]), float(fields[3]))
        except ValueError:
            continue
