"""Userspace RFC 2473 tunnel end: TUN devices relayed over raw IPv6 sockets.

Stands in for ip6tnl where the kernel lacks it. One process per namespace
serves every tunnel of that namespace. A packet the kernel routes into a TUN
device (IFF_TUN | IFF_NO_PI, so the read is the bare inner packet) is sent to
the tunnel's peer on a raw AF_INET6 socket of protocol 41 (inner IPv6) or 4
(inner IPv4), so the kernel prepends the outer IPv6 header with that Next
Header value (RFC 2473 §3, §5). A packet received on those sockets is
demultiplexed by its outer source address to the tunnel of that peer and
written into the TUN device, i.e. decapsulated (RFC 2473 §3.2). Multicast
crosses the tunnel both ways: the TUN device is IFF_MULTICAST, so MLD/IGMP
reports enter it at the MAG and data at the LMA. No Tunnel Encapsulation
Limit option is added (RFC 2473 §4.1.1 makes it optional).

Run as ``python -m mcproxy_pmip_testbed.relay --tunnel IF,LOCAL,PEER ...``
inside the namespace; the TUN devices must exist (``create_tun``) or are
created. Prints ``ready`` on stdout once every device is attached.
"""

from __future__ import annotations

import argparse
import errno
import fcntl
import ipaddress
import logging
import os
import selectors
import signal
import socket
import struct
import sys
from collections.abc import Sequence

log = logging.getLogger("mcproxy_pmip_testbed.relay")

TUNSETIFF = 0x400454CA
TUNSETPERSIST = 0x400454CB
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
IPPROTO_IPV6_IN_IPV6 = 41
IPPROTO_IPV4_IN_IPV6 = 4
_READ_BURST = 64
_MAX_PACKET = 65535


def _ifreq(name: str) -> bytes:
    return struct.pack("16sH22x", name.encode(), IFF_TUN | IFF_NO_PI)


def open_tun(name: str) -> int:
    """Attach to (or create) TUN device ``name`` and return its non-blocking fd."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    try:
        fcntl.ioctl(fd, TUNSETIFF, _ifreq(name))
    except OSError:
        os.close(fd)
        raise
    return fd


def create_tun(name: str) -> None:
    """Create a persistent TUN device in the current namespace (the relay attaches later)."""
    fd = open_tun(name)
    try:
        fcntl.ioctl(fd, TUNSETPERSIST, 1)
    finally:
        os.close(fd)


class Relay:
    """Moves packets between TUN devices and the raw encapsulation sockets."""

    def __init__(self, tunnels: Sequence[tuple[str, str]]) -> None:
        self.selector = selectors.DefaultSelector()
        self.tun_by_peer: dict[bytes, int] = {}
        self.peer_by_tun: dict[int, str] = {}
        self.counters = {"encapsulated": 0, "decapsulated": 0, "unknown_peer": 0,
                         "send_errors": 0}
        self.raw = {
            IPPROTO_IPV6_IN_IPV6: socket.socket(socket.AF_INET6, socket.SOCK_RAW,
                                                IPPROTO_IPV6_IN_IPV6),
            IPPROTO_IPV4_IN_IPV6: socket.socket(socket.AF_INET6, socket.SOCK_RAW,
                                                IPPROTO_IPV4_IN_IPV6),
        }
        for sock in self.raw.values():
            sock.setblocking(False)
            self.selector.register(sock, selectors.EVENT_READ, self._decapsulate)
        for name, peer in tunnels:
            fd = open_tun(name)
            self.tun_by_peer[ipaddress.IPv6Address(peer).packed] = fd
            self.peer_by_tun[fd] = peer
            self.selector.register(fd, selectors.EVENT_READ, self._encapsulate)

    def _encapsulate(self, fd: int) -> None:
        peer = self.peer_by_tun[fd]
        for _ in range(_READ_BURST):
            try:
                packet = os.read(fd, _MAX_PACKET)
            except BlockingIOError:
                return
            if not packet:
                return
            version = packet[0] >> 4
            proto = IPPROTO_IPV6_IN_IPV6 if version == 6 else IPPROTO_IPV4_IN_IPV6
            if version not in (4, 6):
                continue
            try:
                self.raw[proto].sendto(packet, (peer, 0))
            except OSError as exc:
                self.counters["send_errors"] += 1
                log.debug("encapsulate_failed peer=%s errno=%s", peer, exc.errno)
                continue
            self.counters["encapsulated"] += 1

    def _decapsulate(self, sock: socket.socket) -> None:
        for _ in range(_READ_BURST):
            try:
                packet, address = sock.recvfrom(_MAX_PACKET)
            except BlockingIOError:
                return
            fd = self.tun_by_peer.get(ipaddress.IPv6Address(address[0].split("%")[0]).packed)
            if fd is None:
                self.counters["unknown_peer"] += 1
                continue
            try:
                os.write(fd, packet)
            except OSError as exc:
                # EIO while the TUN device is down: the packet is dropped like on a down link
                if exc.errno not in (errno.EIO, errno.EAGAIN, errno.EINVAL):
                    raise
                continue
            self.counters["decapsulated"] += 1

    def run(self) -> None:
        while True:
            for key, _ in self.selector.select():
                key.data(key.fileobj)


def _parse_tunnel(text: str) -> tuple[str, str]:
    parts = text.split(",")
    if len(parts) != 3:
        raise argparse.ArgumentTypeError("expected IF,LOCAL,PEER")
    ipaddress.IPv6Address(parts[2])
    return parts[0], parts[2]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tunnel", action="append", type=_parse_tunnel, required=True,
                        help="IF,LOCAL,PEER (IPv6 underlay addresses)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s relay %(message)s")
    relay = Relay(args.tunnel)

    def stop(signum: int, _frame: object) -> None:
        log.info("relay_stopped signal=%d %s", signum,
                 " ".join(f"{k}={v}" for k, v in relay.counters.items()))
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print("ready", flush=True)
    relay.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
