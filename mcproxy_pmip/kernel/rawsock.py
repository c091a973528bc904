"""What the raw IGMP and MLD sockets share: opening, options, the bounded non-blocking read.

Subclasses give the socket's domain/protocol, their ancillary buffer size and
``_decode`` (one datagram and its ancillary data to a received-packet
dataclass, or ``MalformedPacket``); undecodable datagrams are counted in
``drops`` by reason and logged at debug level.
"""

from __future__ import annotations

import errno
import logging
import socket
from collections import Counter
from typing import Any

from mcproxy_pmip.errors import KernelError, MalformedPacket

log = logging.getLogger(__name__)

RECV_BUFFER_SIZE = 65535
DEFAULT_MAX_PACKETS_PER_READ = 64


def setsockopt(sock: socket.socket, level: int, option: int, value: int | bytes, op: str) -> None:
    """``sock.setsockopt`` raising ``KernelError(op, errno)``."""
    try:
        sock.setsockopt(level, option, value)
    except OSError as exc:
        raise KernelError(op, exc.errno or errno.EINVAL) from exc


class RawPacketSocket:
    """A non-blocking raw socket; ``_configure`` sets the subclass's options."""

    #: name used in errors and logs ("IGMP", "ICMPv6")
    what = "raw"
    ancillary_size = 0

    def __init__(self, domain: int, protocol: int,
                 max_packets_per_read: int = DEFAULT_MAX_PACKETS_PER_READ) -> None:
        self.max_packets_per_read = max_packets_per_read
        self.drops: Counter[str] = Counter()
        try:
            self._sock = socket.socket(domain, socket.SOCK_RAW, protocol)
        except OSError as exc:
            raise KernelError(f"socket(SOCK_RAW {self.what})", exc.errno or errno.EPERM) from exc
        try:
            self._sock.setblocking(False)
            self._configure()
        except KernelError:
            self._sock.close()
            raise

    def _configure(self) -> None:
        raise NotImplementedError

    def _decode(self, data: bytes, ancillary: list[tuple[int, int, bytes]], flags: int, address: Any):
        raise NotImplementedError

    def fileno(self) -> int:
        return self._sock.fileno()

    def close(self) -> None:
        """Close the socket; the kernel drops its memberships."""
        self._sock.close()

    def read_packets(self) -> list:
        """Read what is queued, up to ``max_packets_per_read`` datagrams, without blocking."""
        packets = []
        for _ in range(self.max_packets_per_read):
            try:
                data, ancillary, flags, address = self._sock.recvmsg(RECV_BUFFER_SIZE, self.ancillary_size)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                raise KernelError(f"recvmsg({self.what})", exc.errno or errno.EIO) from exc
            try:
                packets.append(self._decode(data, ancillary, flags, address))
            except MalformedPacket as exc:
                self.drops[exc.reason] += 1
                log.debug("packet_dropped socket=%s reason=%s %s", self.what, exc.reason, exc.detail)
        return packets
