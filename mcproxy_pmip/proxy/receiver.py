"""Receiver: validates IGMP / MLD packets from the kernel sockets and turns them into inbound messages.

IGMP must have TTL 1 and a good checksum (RFC 3376 §4, checked by the
codec); reports from 0.0.0.0 or another subnet are accepted, the interface is
the link the packet socket saw the frame on. MLD must have hop limit 1 and a
link-local source (RFC 3810 §5.1.14, §5.2.13; reports from :: are dropped),
which also makes every MLD query on-link. Reports without Router Alert are
accepted unless configured otherwise (like the kernel). Our own host stack's
reports (for 224.0.0.22 and friends) are dropped by source address. Records
whose group is not a multicast address are dropped, the rest of their report
is kept (a report left with none is dropped).

What one link can make the daemon do is bounded here, before the engine
sees anything (the link's instance ``Limits``, looked up by ``limits_for``):

- rate: every report takes a token from its host's and its link's bucket
  (``proxy.ratelimit``; per family), every query one from its link's query
  bucket;
  without one it is dropped before it is parsed;
- queries from a source that is not on the link (IPv4: outside each of the
  interface's subnets, ``is_on_link``) are dropped, as FRR does: a rogue
  querier elsewhere cannot win the election or shorten timers;
- size: at most ``max_records_per_packet`` records and
  ``max_sources_per_packet`` sources are taken from one report. A record
  that does not fit the sources left is dropped whole, except an EXCLUDE
  record (IS_EX, TO_EX), which keeps the sources that fit: excluding fewer
  sources forwards more, never less (RFC 3376 §4.2.16 truncates these
  records the same way);
- work per reactor turn: one call of ``read_igmp`` / ``read_mld`` handles
  at most ``turn_packets`` packets and ``turn_work`` work units (a packet is
  one unit plus one per record and per source it delivers), then returns to
  the reactor. Packets the socket already handed over wait in a queue for
  the next turn, which a zero-delay call brings; those still in the kernel
  wait there, and the reactor (level-triggered epoll) calls again while the
  socket is readable.

Every drop is counted in ``drops`` by family and reason and logged at debug
level; nothing reaches the engine from a dropped packet. Delivered messages
are counted in ``received`` by family and kind and in ``per_link`` by link,
kind and version.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from mcproxy_pmip.addresses import Family, IPAddress
from mcproxy_pmip.config.model import Limits
from mcproxy_pmip.errors import MalformedPacket, ProtocolViolation
from mcproxy_pmip.proxy.ratelimit import HOST_LIMITED, LINK_LIMITED, QUERY_LIMITED, RateLimiter
from mcproxy_pmip.ratelog import RateLimitedLog
from mcproxy_pmip.wire import igmp, mld
from mcproxy_pmip.wire.records import GroupRecord, RecordType

log = logging.getLogger(__name__)

DEFAULT_TURN_PACKETS = 64
DEFAULT_TURN_WORK = 4096

_NO_SOURCES: tuple[IPAddress, ...] = ()
_DEFAULT_LIMITS = Limits()
#: drops a flooding host causes: logged as warnings, rate-limited per reason (the rest at debug)
_RATE_LIMITED = frozenset({HOST_LIMITED, LINK_LIMITED, QUERY_LIMITED})
_REPORT_TYPES = {
    Family.IPV4: frozenset({igmp.V1_MEMBERSHIP_REPORT, igmp.V2_MEMBERSHIP_REPORT, igmp.V2_LEAVE_GROUP,
                            igmp.V3_MEMBERSHIP_REPORT}),
    Family.IPV6: frozenset({mld.V1_MULTICAST_LISTENER_REPORT, mld.V1_MULTICAST_LISTENER_DONE,
                            mld.V2_MULTICAST_LISTENER_REPORT}),
}
_QUERY_TYPE = {Family.IPV4: igmp.MEMBERSHIP_QUERY, Family.IPV6: mld.MULTICAST_LISTENER_QUERY}
_TRUNCATABLE = frozenset({RecordType.MODE_IS_EXCLUDE, RecordType.CHANGE_TO_EXCLUDE})


@dataclass(frozen=True, slots=True)
class ReportReceived:
    """A valid report, mapped to records (v1/v2 reports: IS_EX({}), leaves: TO_IN({}))."""

    ifindex: int
    family: Family
    version: int
    records: tuple[GroupRecord, ...]
    source: IPAddress


@dataclass(frozen=True, slots=True)
class QueryReceived:
    """A valid query."""

    ifindex: int
    family: Family
    source: IPAddress
    query: igmp.IgmpQuery | mld.MldQuery


Inbound = ReportReceived | QueryReceived


@dataclass(frozen=True, slots=True)
class CappedRecords:
    """What ``cap_records`` took from a report, and how many records and sources it left out."""

    records: tuple[GroupRecord, ...]
    records_dropped: int
    sources_dropped: int


def cap_records(records: Sequence[GroupRecord], max_records: int, max_sources: int) -> CappedRecords:
    """At most ``max_records`` records and ``max_sources`` sources of ``records``, in order.

    A record whose sources do not fit what is left is dropped, or, for
    IS_EX / TO_EX, truncated to what is left.
    """
    taken: list[GroupRecord] = []
    sources_left = max_sources
    records_dropped = sources_dropped = 0
    for index, record in enumerate(records):
        if len(taken) == max_records:
            rest = records[index:]
            records_dropped += len(rest)
            sources_dropped += sum(len(r.sources) for r in rest)
            break
        count = len(record.sources)
        if count <= sources_left:
            taken.append(record)
            sources_left -= count
        elif record.record_type in _TRUNCATABLE:
            taken.append(replace(record, sources=record.sources[:sources_left]))
            sources_dropped += count - sources_left
            sources_left = 0
        else:
            records_dropped += 1
            sources_dropped += count
    return CappedRecords(tuple(taken), records_dropped, sources_dropped)


def _report(ifindex: int, family: Family, source: IPAddress,
            message: object) -> ReportReceived:
    if isinstance(message, (igmp.IgmpV3Report, mld.MldV2Report)):
        return ReportReceived(ifindex, family, family.newest_version, message.records, source)
    if isinstance(message, (igmp.IgmpV2Leave, mld.MldDone)):
        version = 2 if family is Family.IPV4 else 1
        record = GroupRecord(RecordType.CHANGE_TO_INCLUDE, message.group, _NO_SOURCES)
        return ReportReceived(ifindex, family, version, (record,), source)
    version = {igmp.IgmpV1Report: 1, igmp.IgmpV2Report: 2, mld.MldV1Report: 1}[type(message)]
    record = GroupRecord(RecordType.MODE_IS_EXCLUDE, message.group, _NO_SOURCES)
    return ReportReceived(ifindex, family, version, (record,), source)


@dataclass(slots=True)
class _Lane:
    """One family's socket, its check, and the packets read but not yet handled."""

    family: Family
    socket: object
    check: Callable[[object], Inbound | None]
    pending: deque = field(default_factory=deque)
    drain_call: object = None

    @property
    def prefix(self) -> str:
        return self.family.protocol.lower()


class Receiver:
    """Reads both sockets, validates, and hands ``Inbound`` messages to ``deliver``.

    ``is_own_address(address)`` tells our own addresses; ``require_router_alert``
    drops reports without the Router Alert option. ``clock`` (``IReactorTime``)
    times the rate limits and schedules the next turn; ``limits_for(ifindex)``
    gives the ``Limits`` of a link's instance (None: the defaults);
    ``is_on_link(ifindex, address)`` tells whether a query source is a
    neighbour on that link.
    """

    def __init__(self, igmp_socket, mld_socket, deliver: Callable[[Inbound], None],
                 is_own_address: Callable[[IPAddress], bool],
                 require_router_alert: bool = False, *, clock,
                 limits_for: Callable[[int], Limits | None] = lambda ifindex: None,
                 is_on_link: Callable[[int, IPAddress], bool] = lambda ifindex, address: True,
                 turn_packets: int = DEFAULT_TURN_PACKETS, turn_work: int = DEFAULT_TURN_WORK) -> None:
        if turn_packets < 1 or turn_work < 1:
            raise ValueError("a turn must admit at least one packet")
        self._deliver = deliver
        self._is_own_address = is_own_address
        self._clock = clock
        self._limits_for = limits_for
        self._is_on_link = is_on_link
        self.require_router_alert = require_router_alert
        self.turn_packets = turn_packets
        self.turn_work = turn_work
        self.rate = RateLimiter(clock)
        self._abuse = RateLimitedLog(log, clock, summary="reports_rate_limited")
        self.received: Counter[str] = Counter()
        self.drops: Counter[str] = Counter()
        #: valid messages delivered, by (ifindex, family, "report" | "query", version)
        self.per_link: Counter[tuple[int, Family, str, int]] = Counter()
        self._lanes = {Family.IPV4: _Lane(Family.IPV4, igmp_socket, self._check_igmp),
                       Family.IPV6: _Lane(Family.IPV6, mld_socket, self._check_mld)}

    def limits(self, ifindex: int) -> Limits:
        """The ``Limits`` that apply to packets from ``ifindex``."""
        return self._limits_for(ifindex) or _DEFAULT_LIMITS

    def read_igmp(self) -> None:
        self._turn(self._lanes[Family.IPV4])

    def read_mld(self) -> None:
        self._turn(self._lanes[Family.IPV6])

    def pending(self, family: Family) -> int:
        """Packets read from ``family``'s socket and not handled yet."""
        return len(self._lanes[family].pending)

    def close(self) -> None:
        """Forget queued packets and cancel the next turn and the pending log summaries."""
        self._abuse.close()
        for lane in self._lanes.values():
            lane.pending.clear()
            if lane.drain_call is not None and lane.drain_call.active():
                lane.drain_call.cancel()
            lane.drain_call = None

    # -- turns -----------------------------------------------------------------------

    def _turn(self, lane: _Lane) -> None:
        """Handle up to one turn's budget: queued packets first, then one read from the socket."""
        packets = work = 0
        read = False
        try:
            while packets < self.turn_packets and work < self.turn_work:
                if not lane.pending:
                    if read or lane.socket is None:
                        break
                    lane.pending.extend(lane.socket.read_packets())
                    read = True
                    if not lane.pending:
                        break
                work += self._accept(lane, lane.pending.popleft())
                packets += 1
        finally:
            if lane.pending and lane.drain_call is None:
                self.received[f"{lane.prefix}_turns_deferred"] += 1
                lane.drain_call = self._clock.callLater(0, self._drain, lane)

    def _drain(self, lane: _Lane) -> None:
        lane.drain_call = None
        self._turn(lane)

    def _accept(self, lane: _Lane, packet) -> int:
        """Validate and deliver one packet; the work units it took."""
        try:
            inbound = lane.check(packet)
        except (MalformedPacket, ProtocolViolation) as exc:
            self.drops[f"{lane.prefix}_{exc.reason}"] += 1
            if exc.reason in _RATE_LIMITED:
                self._abuse.event(f"{lane.prefix}_{exc.reason}", "reports_rate_limited family=%s reason=%s "
                                  "src=%s ifindex=%d", lane.family.name, exc.reason, packet.src, packet.ifindex)
                return 1
            log.debug("packet_dropped family=%s reason=%s src=%s ifindex=%d %s",
                      lane.family.name, exc.reason, packet.src, packet.ifindex, exc.detail)
            return 1
        if inbound is None:
            return 1
        self.received[f"{lane.prefix}_{type(inbound).__name__}"] += 1
        self._deliver(inbound)
        if isinstance(inbound, ReportReceived):
            self.per_link[(inbound.ifindex, lane.family, "report", inbound.version)] += 1
            return 1 + len(inbound.records) + sum(len(r.sources) for r in inbound.records)
        self.per_link[(inbound.ifindex, lane.family, "query", inbound.query.version)] += 1
        return 1 + len(inbound.query.sources)

    # -- checks ----------------------------------------------------------------------

    def _check_igmp(self, packet) -> Inbound | None:
        if packet.ttl != 1:
            raise ProtocolViolation("bad_ttl", f"ttl={packet.ttl}")
        return self._check_message(packet, Family.IPV4, igmp.parse)

    def _check_mld(self, packet) -> Inbound | None:
        if packet.hop_limit != 1:
            raise ProtocolViolation("bad_hop_limit", f"hop_limit={packet.hop_limit}")
        if packet.src.is_unspecified:
            raise ProtocolViolation("unspecified_source")
        if not packet.src.is_link_local:
            raise ProtocolViolation("source_not_link_local", str(packet.src))
        return self._check_message(packet, Family.IPV6, mld.parse)

    def _check_message(self, packet, family: Family, parse) -> Inbound | None:
        kind = packet.payload[0] if packet.payload else None
        if kind in _REPORT_TYPES[family]:
            limits = self.limits(packet.ifindex)
            if not self._admit_report(packet, family, limits):
                return None
            return self._checked_report(packet, family, parse(packet.payload), limits)
        if kind == _QUERY_TYPE[family]:
            if not self._is_on_link(packet.ifindex, packet.src):
                raise ProtocolViolation("query_not_on_link", str(packet.src))
            refused = self.rate.admit_query(packet.ifindex, packet.src.version, self.limits(packet.ifindex))
            if refused is not None:
                raise ProtocolViolation(refused, f"ifindex={packet.ifindex}")
        # A query, or what the codec refuses (an unknown type, too short).
        return QueryReceived(packet.ifindex, family, packet.src, parse(packet.payload))

    def _admit_report(self, packet, family: Family, limits: Limits) -> bool:
        """Router Alert, own reports, then the rate limits; False for our own reports (counted)."""
        if self.require_router_alert and not packet.router_alert:
            raise ProtocolViolation("no_router_alert")
        if not packet.src.is_unspecified and self._is_own_address(packet.src):
            self.drops[f"{family.protocol.lower()}_own_report"] += 1
            return False
        refused = self.rate.admit_report(packet.ifindex, packet.src, limits)
        if refused is not None:
            raise ProtocolViolation(refused, f"ifindex={packet.ifindex}")
        return True

    def _checked_report(self, packet, family: Family, message, limits: Limits) -> Inbound | None:
        prefix = family.protocol.lower()
        skipped = getattr(message, "skipped_records", 0)
        if skipped:
            self.drops[f"{prefix}_unknown_record_type"] += skipped
        report = _report(packet.ifindex, family, packet.src, message)
        if not report.records:
            raise ProtocolViolation("no_records")
        records = tuple(r for r in report.records if r.group.is_multicast)
        if len(records) < len(report.records):
            if not records:
                raise ProtocolViolation("group_not_multicast", f"{len(report.records)} records")
            self.drops[f"{prefix}_group_not_multicast"] += len(report.records) - len(records)
        capped = cap_records(records, limits.max_records_per_packet, limits.max_sources_per_packet)
        if capped.records_dropped:
            self.drops[f"{prefix}_records_over_cap"] += capped.records_dropped
        if capped.sources_dropped:
            self.drops[f"{prefix}_sources_over_cap"] += capped.sources_dropped
        if not capped.records:
            return None
        if len(capped.records) == len(report.records) and not capped.sources_dropped:
            return report
        return ReportReceived(report.ifindex, family, report.version, capped.records, report.source)
