"""Multicast receiver of an MN: joins through the kernel host stack, logs arrivals.

Run inside an MN namespace: ``python -m mcproxy_pmip_testbed.receiver --iface
wlan0 --log FILE --join ID,GROUP,PORT[,SOURCE] ...``. Any-source joins use
IP_ADD_MEMBERSHIP / IPV6_JOIN_GROUP, source-specific joins
MCAST_JOIN_SOURCE_GROUP (46), so the kernel's own IGMPv3/MLDv2 host (RFC 3376
§5, RFC 3810 §6) sends the reports. Arrival time is the kernel receive
timestamp (SO_TIMESTAMPNS). Prints ``ready`` once joined.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import logging
import selectors
import signal
import socket
import struct
import sys
from collections.abc import Sequence
from pathlib import Path

from mcproxy_pmip_testbed import payload

log = logging.getLogger("mcproxy_pmip_testbed.receiver")

MCAST_JOIN_SOURCE_GROUP = 46
SO_TIMESTAMPNS = 35
_TIMESPEC = struct.Struct("qq")


@dataclasses.dataclass(frozen=True, slots=True)
class JoinSpec:
    stream: int
    group: ipaddress.IPv4Address | ipaddress.IPv6Address
    port: int
    source: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None


def parse_join(text: str) -> JoinSpec:
    fields = text.split(",")
    if len(fields) not in (3, 4):
        raise argparse.ArgumentTypeError("expected ID,GROUP,PORT[,SOURCE]")
    source = ipaddress.ip_address(fields[3]) if len(fields) == 4 else None
    return JoinSpec(int(fields[0]), ipaddress.ip_address(fields[1]), int(fields[2]), source)


def _sockaddr(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bytes:
    """A sockaddr_in / sockaddr_in6 padded to sockaddr_storage (128 octets)."""
    if address.version == 4:
        raw = struct.pack("=HH4s8x", socket.AF_INET, 0, address.packed)
    else:
        raw = struct.pack("=HHI16sI", socket.AF_INET6, 0, 0, address.packed, 0)
    return raw.ljust(128, b"\0")


def group_source_req(ifindex: int, group: ipaddress.IPv4Address | ipaddress.IPv6Address,
                     source: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bytes:
    """struct group_source_req (RFC 3678 §5.2) as laid out on 64-bit Linux."""
    return struct.pack("=I4x", ifindex) + _sockaddr(group) + _sockaddr(source)


def open_joined(spec: JoinSpec, ifname: str) -> socket.socket:
    ifindex = socket.if_nametoindex(ifname)
    if spec.group.version == 4:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((str(spec.group), spec.port))
        if spec.source is None:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                            struct.pack("4s4si", spec.group.packed, bytes(4), ifindex))
        else:
            sock.setsockopt(socket.IPPROTO_IP, MCAST_JOIN_SOURCE_GROUP,
                            group_source_req(ifindex, spec.group, spec.source))
    else:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((str(spec.group), spec.port, 0, ifindex))
        if spec.source is None:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP,
                            struct.pack("16sI", spec.group.packed, ifindex))
        else:
            sock.setsockopt(socket.IPPROTO_IPV6, MCAST_JOIN_SOURCE_GROUP,
                            group_source_req(ifindex, spec.group, spec.source))
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sock.setblocking(False)
    return sock


def _received_at(ancillary: list[tuple[int, int, bytes]]) -> float | None:
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= _TIMESPEC.size:
            seconds, nanoseconds = _TIMESPEC.unpack_from(data)
            return seconds + nanoseconds / 1e9
    return None


class _Stop(Exception):
    pass


def receive(specs: Sequence[JoinSpec], ifname: str, out: Path) -> None:
    selector = selectors.DefaultSelector()
    for spec in specs:
        selector.register(open_joined(spec, ifname), selectors.EVENT_READ, spec)
    print("ready", flush=True)
    with out.open("w", buffering=1 << 16) as log_file:
        try:
            while True:
                for key, _ in selector.select():
                    _drain(key.fileobj, key.data, log_file)
        finally:
            log_file.flush()


def _drain(sock: socket.socket, spec: JoinSpec, log_file) -> None:
    while True:
        try:
            data, ancillary, _flags, _address = sock.recvmsg(2048, 64)
        except BlockingIOError:
            return
        parsed = payload.unpack(data)
        if parsed is None or parsed[0] != spec.stream:
            continue
        received_at = _received_at(ancillary)
        if received_at is None:
            continue
        log_file.write(payload.format_arrival(
            payload.Arrival(parsed[0], parsed[1], parsed[2], received_at)))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="testbed multicast receiver")
    parser.add_argument("--iface", required=True)
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--join", action="append", type=parse_join, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s receiver %(message)s")

    def stop(_signum: int, _frame: object) -> None:
        raise _Stop

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        receive(args.join, args.iface, args.log)
    except _Stop:
        log.info("receiver_stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
