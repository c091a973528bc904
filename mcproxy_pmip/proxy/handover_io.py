"""Prepared handovers on the reactor: the next MAG's buffer and flush, the previous MAG's record.

docs/handover.md tells the protocol; this is its IO half (the buffer itself is
``handover.buffer.HandoverBuffer``, the taps ``kernel.data_tap``):

- ``PreparedData``: from a prepare until the MN's attach, a tap on the
  instance's upstream (the tunnel) feeds the MN's ``HandoverBuffer`` as the
  reactor finds it readable. ``deliver(access_if, markers, attach, commit)``
  is the attach: the packets the MN missed leave on its link in arrival
  order (TTL decremented as forwarding does), the link becomes a downstream
  with its forwarding held back, what came meanwhile leaves until the tap
  is caught up, then the
  forwarding is committed and the packets that came during the commit are
  sent too, unless a tap on the access link saw the kernel forward them.
  The buffer's figures come back as a dict.
- Packet sockets are closed in the reactor's thread pool (``close_off_the_reactor``).
- ``ForwardRecorder``: on the previous MAG, from a ``handover-prepare`` until
  the MN's detach, a tap on the MN's access link keeps the identity of the
  last packet per group the kernel sent there: the markers the next MAG
  needs to know where the MN's reception stopped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from mcproxy_pmip.handover.buffer import GroupKey, HandoverBuffer
from mcproxy_pmip.kernel.data_tap import DataTap, LinkSender
from mcproxy_pmip.proxy.reader import SocketReader
from mcproxy_pmip.wire.datagram import forwarded_copy, multicast_addresses, packet_identity

log = logging.getLogger(__name__)

#: the catch-up before the commit sends what keeps arriving for at most this long
CATCH_UP_INTERVAL = 0.002


class _Steps:
    """How long each step of a delivery took (``<step>_ms``), from one monotonic clock."""

    def __init__(self) -> None:
        self._last = time.perf_counter()
        self._intervals: dict[str, float] = {}

    def mark(self, step: str) -> None:
        now = time.perf_counter()
        self._intervals[step] = now - self._last
        self._last = now

    def milliseconds(self) -> dict[str, float]:
        return {f"{step}_ms": round(interval * 1000, 3) for step, interval in self._intervals.items()}


def close_off_the_reactor(reactor: Any, sock: Any) -> None:
    """Close a packet socket in the reactor's thread pool: the kernel waits for an RCU grace
    period when a packet socket is released (``synchronize_net``, 10-50 ms measured), which
    would hold up the reply of the attach or detach that closes it. Its reader is already gone."""
    reactor.callInThread(sock.close)


class _TapReading:
    """A tap read by the reactor into ``on_packet(now, packet)``; ``close`` stops both."""

    def __init__(self, reactor: Any, tap: DataTap, on_packet: Callable[[float, bytes], Any]) -> None:
        self._reactor = reactor
        self.tap = tap
        self._on_packet = on_packet
        self._reader = SocketReader(f"data-tap-{tap.interface}", tap.fileno, self.read)
        reactor.addReader(self._reader)
        self.closed = False

    def read(self) -> None:
        now = self._reactor.seconds()
        for packet in self.tap.read_all():
            self._on_packet(now, packet)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._reactor.removeReader(self._reader)
            close_off_the_reactor(self._reactor, self.tap)


class PreparedData:
    """The MN's ``buffer``, filled from the tap on ``upstream_if`` until ``deliver`` or ``close``."""

    def __init__(self, reactor: Any, upstream_if: str, buffer: HandoverBuffer) -> None:
        self.buffer = buffer
        self.upstream_if = upstream_if
        self._reactor = reactor
        self._reading = _TapReading(reactor, DataTap(upstream_if), buffer.add)

    @property
    def closed(self) -> bool:
        return self._reading.closed

    def deliver(self, access_if: str, markers: Mapping[GroupKey, bytes] | None,
                attach: Callable[[], Any], commit: Callable[[], Any],
                live: frozenset[GroupKey] = frozenset()) -> dict[str, Any]:
        """The attach of the MN on ``access_if``, with what it missed delivered first.

        The buffered packets after the markers leave at once; then
        ``attach()`` makes the link a downstream (its forwarding change is
        not committed yet: that happens at the end of the reactor turn, or at
        ``commit()``); then the packets that arrived meanwhile leave, until
        the tap has nothing new (for ``CATCH_UP_INTERVAL`` at most: a stream
        may never pause); then
        ``commit()`` gives the link to the kernel, and what arrived during
        the commit and the kernel did not forward (a tap on the access link,
        opened just before the commit, shows what it did) leaves last. Groups in ``live`` (the link gets
        them already) are not delivered. Closes the tap.
        """
        reading, buffer = self._reading, self.buffer
        steps = _Steps()
        try:
            reading.read()
            missed, skipped = buffer.take(self._reactor.seconds(), markers, live)
            sender = LinkSender(access_if)
            live_path = None
            try:
                flushed = _send(sender, (p.packet for p in missed))
                steps.mark("flush")
                attach()
                steps.mark("attach")
                caught_up = 0
                catch_up_ends = time.perf_counter() + CATCH_UP_INTERVAL
                while (fresh := [p for p in reading.tap.read_all() if buffer.wanted(p)]) \
                        and time.perf_counter() < catch_up_ends:
                    caught_up += _send(sender, fresh)
                live_path = DataTap(access_if, outgoing=True)
                steps.mark("catch_up")
                commit()
                steps.mark("commit")
                late = fresh + [p for p in reading.tap.read_all() if buffer.wanted(p)]
                forwarded = {packet_identity(p) for p in live_path.read_all()}
                late_sent = _send(sender, (p for p in late if packet_identity(p) not in forwarded))
                steps.mark("late")
            finally:
                close_off_the_reactor(self._reactor, sender)
                if live_path is not None:
                    close_off_the_reactor(self._reactor, live_path)
        finally:
            reading.close()
        figures = {"flushed": flushed + caught_up, "late": late_sent, "skipped": skipped,
                   "overflow": buffer.overflow, "unmarked": buffer.unmarked, "buffered": buffer.buffered,
                   **steps.milliseconds()}
        log.info("handover_flushed access_if=%s %s", access_if, " ".join(f"{k}={v}" for k, v in figures.items()))
        return figures

    def close(self) -> None:
        self._reading.close()


def _send(sender: LinkSender, packets: Iterable[bytes]) -> int:
    sent = 0
    for packet in packets:
        copy = forwarded_copy(packet)
        addresses = multicast_addresses(packet)
        if copy is None or addresses is None:
            continue
        sender.send(addresses[0], addresses[2], copy)
        sent += 1
    return sent


class ForwardRecorder:
    """The identity of the last packet of each of ``groups`` the kernel sent on ``access_if``."""

    def __init__(self, reactor: Any, access_if: str, groups: Iterable[GroupKey]) -> None:
        self.access_if = access_if
        self._groups = frozenset(groups)
        self._last: dict[GroupKey, bytes] = {}
        self._reading = _TapReading(reactor, DataTap(access_if, outgoing=True), self._seen)

    def _seen(self, _now: float, packet: bytes) -> None:
        addresses = multicast_addresses(packet)
        if addresses is not None and (addresses[0], addresses[2]) in self._groups:
            self._last[(addresses[0], addresses[2])] = packet_identity(packet)

    def markers(self) -> dict[GroupKey, bytes]:
        """The last identities seen so far (the tap is read first)."""
        if not self._reading.closed:
            self._reading.read()
        return dict(self._last)

    def close(self) -> None:
        self._reading.close()
