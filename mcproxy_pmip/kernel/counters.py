"""Per-(S,G) packet counters of the kernel's MFC, and source ageing built on them.

``SIOCGETSGCNT`` (IPv4, ``struct sioc_sg_req``) and ``SIOCGETSGCNT_IN6``
(IPv6, ``struct sioc_sg_req6``) on the table's mroute socket return the
packets, bytes and wrong-interface arrivals of one MFC entry. A proxy learns
sources only from data (RFC 4605 §4.2: forwarding by (S,G)), so it must also
notice when a source stops sending: :class:`SourceAgeing` remembers when each
entry's packet counter last moved and names the entries idle for longer than
an interval, whose MFC entries the caller may then remove. A sweep runs at
once (``sweep``) or a bounded number of reads at a time (``begin``, then
``step`` until it says done), one ioctl per entry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from mcproxy_pmip.addresses import Family, IPAddress
from mcproxy_pmip.errors import KernelError
from mcproxy_pmip.kernel import mroute


@dataclass(frozen=True, slots=True)
class SgCounters:
    """What the kernel counted for one (S,G) entry."""

    packets: int
    bytes: int
    wrong_if: int


def read_sg_counters(sock: mroute.MrouteSocket, source: IPAddress, group: IPAddress) -> SgCounters:
    """The counters of (source, group) in ``sock``'s table (``EADDRNOTAVAIL``: no such entry)."""
    if sock.family is Family.IPV4:
        op, request = "SIOCGETSGCNT", mroute.SIOCGETSGCNT
    else:
        op, request = "SIOCGETSGCNT_IN6", mroute.SIOCGETSGCNT_IN6
    answer = sock.ioctl(op, request, mroute.pack_sioc_sg_req(sock.family, source, group))
    packets, octets, wrong_if = mroute.unpack_sioc_sg_req(sock.family, bytes(answer))
    return SgCounters(packets, octets, wrong_if)


@dataclass(slots=True)
class _Activity:
    packets: int
    last_active_at: float


class SourceAgeing:
    """Tracks when each (S,G) last forwarded a packet, from its kernel counter.

    ``read`` is :func:`read_sg_counters` bound to a socket (tests inject their own).
    """

    def __init__(self, read: Callable[[IPAddress, IPAddress], SgCounters]) -> None:
        self._read = read
        self._activity: dict[tuple[IPAddress, IPAddress], _Activity] = {}
        #: counter reads that failed (each spares its entry, the sweep goes on)
        self.read_failures = 0
        self._now = 0.0
        self._pending: list[tuple[IPAddress, IPAddress]] = []
        self._seen: dict[tuple[IPAddress, IPAddress], _Activity] = {}

    def sweep(
        self, now: float, entries: Iterable[tuple[IPAddress, IPAddress]], idle_interval: float
    ) -> list[tuple[IPAddress, IPAddress]]:
        """Read the counters of ``entries``; return those with no new packet for ``idle_interval``.

        An entry seen for the first time counts as active now. Entries not
        listed are forgotten. An entry whose counter cannot be read
        (``KernelError``) is neither idle nor active this time.
        """
        self.begin(now, entries)
        idle, _ = self.step(len(self._pending), idle_interval)
        return idle

    def begin(self, now: float, entries: Iterable[tuple[IPAddress, IPAddress]]) -> None:
        """Start a sweep of ``entries`` at ``now``, to be read ``step`` by ``step``."""
        self._now = now
        self._pending = list(entries)
        self._pending.reverse()
        self._seen = {}

    def step(self, budget: int, idle_interval: float) -> tuple[list[tuple[IPAddress, IPAddress]], bool]:
        """Read up to ``budget`` more counters of the sweep: (the idle ones among them, sweep done)."""
        idle: list[tuple[IPAddress, IPAddress]] = []
        now, seen = self._now, self._seen
        for _ in range(min(budget, len(self._pending))):
            key = self._pending.pop()
            activity = self._activity.get(key)
            try:
                packets = self._read(*key).packets
            except KernelError:
                self.read_failures += 1
                seen[key] = activity if activity is not None else _Activity(-1, now)
                continue
            if activity is None or packets != activity.packets:
                activity = _Activity(packets, now)
            elif now - activity.last_active_at >= idle_interval:
                idle.append(key)
            seen[key] = activity
        if self._pending:
            return idle, False
        self._activity = seen
        return idle, True

    def last_active_at(self, source: IPAddress, group: IPAddress) -> float | None:
        activity = self._activity.get((source, group))
        return None if activity is None else activity.last_active_at
