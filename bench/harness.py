"""What every benchmark scenario shares: the running column, host memberships, statistics, waiting.

``Bench`` bundles one column's running pieces (topology, recorder, traffic
source, daemon, family) with the group numbering the scenarios use, so that
two scenarios never use the same group. ``HostMember`` makes a host kernel
join and leave through socket options (RFC 3678 ``MCAST_*`` delta API),
spreading memberships over sockets so that no socket holds more
than ``MEMBERSHIPS_PER_SOCKET`` (the kernel default of
``igmp_max_memberships``, which the benchmark leaves alone everywhere).
"""

from __future__ import annotations

import ipaddress
import math
import statistics
import socket
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

MCAST_JOIN_GROUP = 42
MCAST_BLOCK_SOURCE = 43
MCAST_LEAVE_GROUP = 45
MCAST_JOIN_SOURCE_GROUP = 46
MEMBERSHIPS_PER_SOCKET = 20
SOCKADDR_STORAGE = 128


def wait_for(condition: Callable[[], Any], timeout: float, interval: float = 0.002) -> Any:
    """Poll ``condition`` until it is true or ``timeout`` passed; its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def stats(values: Sequence[float | None]) -> dict[str, float | int | None]:
    """n, min, median, p95 (nearest rank) and max of the values that are not None."""
    present = sorted(v for v in values if v is not None)
    n = len(present)
    if not n:
        return {"n": 0, "missing": len(values), "min": None, "med": None, "p95": None, "max": None}
    middle = n // 2
    median = present[middle] if n % 2 else (present[middle - 1] + present[middle]) / 2
    p95 = present[max(0, math.ceil(0.95 * n) - 1)]
    return {"n": n, "missing": len(values) - n, "min": present[0], "med": median, "p95": p95, "max": present[-1]}


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1e3, 4)


def ms_summary(seconds: Sequence[float]) -> str:
    """Median, min and max of durations in seconds, as one line in ms."""
    values = [v * 1000 for v in seconds]
    return f"median {statistics.median(values):7.1f} ms  min {min(values):7.1f}  max {max(values):7.1f}"


def sockaddr(family: int, address: str) -> bytes:
    """A ``struct sockaddr_storage`` holding ``address`` (port 0)."""
    packed = ipaddress.ip_address(address).packed
    if family == 4:
        raw = struct.pack("=HH4s", socket.AF_INET, 0, packed)
    else:
        raw = struct.pack("=HHI16sI", socket.AF_INET6, 0, 0, packed, 0)
    return raw.ljust(SOCKADDR_STORAGE, b"\0")


class HostMember:
    """The kernel of one host namespace as an IGMPv3 / MLDv2 host on its ``e0``."""

    def __init__(self, ns, family: int, interface: str = "e0") -> None:
        self.ns = ns
        self.family = family
        self.level = socket.IPPROTO_IP if family == 4 else socket.IPPROTO_IPV6
        self.ifindex = ns.ifindex(interface)
        self._sockets: list[tuple[socket.socket, set[str]]] = []
        self.errors = 0

    def _socket_for(self, group: str) -> socket.socket:
        for sock, groups in self._sockets:
            if group in groups:
                return sock
        for sock, groups in self._sockets:
            if len(groups) < MEMBERSHIPS_PER_SOCKET:
                groups.add(group)
                return sock
        with self.ns.entered():
            sock = socket.socket(socket.AF_INET if self.family == 4 else socket.AF_INET6, socket.SOCK_DGRAM)
        self._sockets.append((sock, {group}))
        return sock

    def _option(self, option: int, group: str, value: bytes) -> bool:
        try:
            self._socket_for(group).setsockopt(self.level, option, value)
        except OSError:
            self.errors += 1
            return False
        return True

    def _head(self, group: str) -> bytes:
        return struct.pack("=I4x", self.ifindex) + sockaddr(self.family, group)

    def join(self, group: str) -> bool:
        """EXCLUDE {} (any source)."""
        return self._option(MCAST_JOIN_GROUP, group, self._head(group))

    def join_source(self, group: str, source: str) -> bool:
        """INCLUDE {source}."""
        return self._option(MCAST_JOIN_SOURCE_GROUP, group, self._head(group) + sockaddr(self.family, source))

    def exclude(self, group: str, sources: Sequence[str]) -> bool:
        """EXCLUDE {sources}: join, then block each source at once (before the kernel's report
        timer fires, so its first report is normally one TO_EX(sources))."""
        ok = self.join(group)
        for source in sources:
            ok = self._option(MCAST_BLOCK_SOURCE, group, self._head(group) + sockaddr(self.family, source)) and ok
        return ok

    def leave(self, group: str) -> bool:
        ok = self._option(MCAST_LEAVE_GROUP, group, self._head(group))
        for _sock, groups in self._sockets:
            groups.discard(group)
        return ok

    def close(self) -> None:
        """Close every socket: the kernel leaves all their groups."""
        for sock, _groups in self._sockets:
            sock.close()
        self._sockets.clear()


@dataclass(frozen=True, slots=True)
class Column:
    """One column of the table: a daemon on a data plane in one family."""

    daemon: str
    plane: str
    family: int

    @property
    def label(self) -> str:
        return f"{self.daemon}/{self.plane}/v{self.family}"


#: first group block of each scenario (groups never repeat across scenarios)
BLOCKS = {"latency": 1, "leave": 2, "filter": 3, "scale": 8, "malformed": 5, "idle": 6}


@dataclass
class Bench:
    """One column's running pieces, handed to every scenario."""

    column: Column
    options: Any
    topology: Any
    recorder: Any
    source: Any
    daemon: Any

    @property
    def family(self) -> int:
        return self.column.family

    def group(self, scenario: str, index: int, ssm: bool = False) -> str:
        """Group ``index`` (< 62,500) of ``scenario``: 239/232.B.x.y or ff15/ff3e::B:i."""
        block = BLOCKS[scenario]
        if self.family == 4:
            first = 232 if ssm else 239
            return f"{first}.{block + index // 62500 * 16}.{index // 250 % 250}.{index % 250 + 1}"
        return f"{'ff3e' if ssm else 'ff15'}::{block:x}:{index + 1:x}"

    def packed(self, address: str) -> bytes:
        return ipaddress.ip_address(address).packed

    @property
    def sources(self) -> tuple[str, str]:
        return ("10.1.0.2", "10.1.0.3") if self.family == 4 else ("fd01::2", "fd01::3")

    def member(self, host: int) -> HostMember:
        return HostMember(self.topology.host_ns[host], self.family)
