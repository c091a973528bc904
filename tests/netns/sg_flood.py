"""Data from many distinct sources: Ethernet frames of UDP to one group, one frame per (S,G), for flood tests.

``udp_frames`` builds IPv4 frames whose source addresses count up from a
base; ``flood_code`` is a small program (run with ``Netns.python`` in the
source namespace) that puts them on an interface through an AF_PACKET
socket, round after round, for a given time, and prints how many it sent.
"""

from __future__ import annotations

import ipaddress
import os
import struct

from mcproxy_pmip.wire.checksum import internet_checksum

PORT = 5101
SOURCE_BASE = ipaddress.IPv4Address("10.100.0.1")


def source(n: int) -> ipaddress.IPv4Address:
    return SOURCE_BASE + n


def udp_frame(src: ipaddress.IPv4Address, group: ipaddress.IPv4Address, port: int = PORT, ttl: int = 8) -> bytes:
    """One Ethernet frame: IPv4 (no options) and UDP (checksum 0) to ``group``."""
    payload = src.packed
    udp = struct.pack("!HHHH", 40000, port, 8 + len(payload), 0) + payload
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, ttl, 17, 0, src.packed, group.packed)
    header = header[:10] + internet_checksum(header).to_bytes(2, "big") + header[12:]
    mac = b"\x01\x00\x5e" + (int(group) & 0x7FFFFF).to_bytes(3, "big")
    return mac + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00" + header + udp


def flood_code(interface: str, group: str, count: int, seconds: float, first: int = 0) -> str:
    """A program sending frames from sources ``first .. first+count-1`` round after round for ``seconds``."""
    return f"""
import socket, sys, time
sys.path.insert(0, {os.getcwd()!r})
from ipaddress import IPv4Address
from tests.netns.sg_flood import source, udp_frame
frames = [udp_frame(source(n), IPv4Address({group!r})) for n in range({first}, {first} + {count})]
sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
sock.bind(({interface!r}, 0))
sent, end = 0, time.monotonic() + {seconds}
while True:
    for frame in frames:
        try:
            sock.send(frame)
            sent += 1
        except BlockingIOError:
            time.sleep(0.001)
    if time.monotonic() >= end:
        break
print(sent, flush=True)
"""
