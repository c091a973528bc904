"""Multicast sender of the testbed: sequence-numbered UDP streams at a fixed rate.

Run inside the source namespace: ``python -m mcproxy_pmip_testbed.sender
--iface bb0 --stream ID,GROUP,PORT,RATE[,SIZE] ...``. Each stream is paced by
absolute deadlines (``start_at + n / rate``), so a late wake-up is caught up
at once and the average rate never drifts. TTL / hop limit is above 1 so
routers forward it. On exit (SIGTERM/SIGINT or ``--duration``) it writes
``{"streams": {id: packets_sent}}`` to ``--summary``.
"""

from __future__ import annotations

import argparse
import dataclasses
import heapq
import ipaddress
import json
import logging
import signal
import socket
import struct
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from mcproxy_pmip_testbed import payload

log = logging.getLogger("mcproxy_pmip_testbed.sender")


@dataclasses.dataclass(slots=True)
class StreamSpec:
    stream: int
    group: ipaddress.IPv4Address | ipaddress.IPv6Address
    port: int
    rate: float
    size: int = 64


def parse_stream(text: str) -> StreamSpec:
    fields = text.split(",")
    if len(fields) not in (4, 5):
        raise argparse.ArgumentTypeError("expected ID,GROUP,PORT,RATE[,SIZE]")
    size = int(fields[4]) if len(fields) == 5 else 64
    return StreamSpec(int(fields[0]), ipaddress.ip_address(fields[1]), int(fields[2]),
                      float(fields[3]), size)


def open_socket(spec: StreamSpec, ifname: str, hops: int) -> socket.socket:
    ifindex = socket.if_nametoindex(ifname)
    if spec.group.version == 4:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF,
                        struct.pack("4s4si", bytes(4), bytes(4), ifindex))
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, hops)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
    else:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, ifindex)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, hops)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
    return sock


class _Stop(Exception):
    pass


def send(specs: Sequence[StreamSpec], ifname: str, hops: int, duration: float | None,
         counts: dict[int, int]) -> None:
    """Send every stream until ``duration`` elapses (forever when None)."""
    sockets = {s.stream: open_socket(s, ifname, hops) for s in specs}
    start_at = time.monotonic()
    stop_at = None if duration is None else start_at + duration
    heap = [(start_at, s.stream) for s in specs]
    by_id = {s.stream: s for s in specs}
    for s in specs:
        counts[s.stream] = 0
    while heap:
        due_at, stream = heapq.heappop(heap)
        if stop_at is not None and due_at >= stop_at:
            return
        delay = due_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        spec = by_id[stream]
        seq = counts[stream]
        data = payload.pack(stream, seq, time.time(), spec.size)
        try:
            sockets[stream].sendto(data, (str(spec.group), spec.port))
        except OSError as exc:  # e.g. ENETUNREACH while routes change: counted as sent-and-lost
            log.debug("send_failed stream=%d seq=%d errno=%s", stream, seq, exc.errno)
        counts[stream] = seq + 1
        heapq.heappush(heap, (start_at + counts[stream] / spec.rate, stream))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="testbed multicast sender")
    parser.add_argument("--iface", required=True)
    parser.add_argument("--stream", action="append", type=parse_stream, required=True)
    parser.add_argument("--hops", type=int, default=16)
    parser.add_argument("--duration", type=float)
    parser.add_argument("--summary", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s sender %(message)s")
    counts: dict[int, int] = {}

    def stop(_signum: int, _frame: object) -> None:
        raise _Stop

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        send(args.stream, args.iface, args.hops, args.duration, counts)
    except _Stop:
        log.info("sender_stopped")
    if args.summary is not None:
        args.summary.write_text(json.dumps({"streams": counts}))
    log.info("sender_done %s", " ".join(f"stream{k}={v}" for k, v in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
