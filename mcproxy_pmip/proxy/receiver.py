"""Receiver: validates IGMP / MLD packets from the kernel sockets and turns them into inbound messages.

SCENARIOS 1-2: IGMP must have TTL 1 and a good checksum (RFC 3376 §4, checked
by the codec); reports from 0.0.0.0 or another subnet are accepted, the
interface is the link the packet socket saw the frame on. MLD must have hop limit 1 and a link-local
source (RFC 3810 §5.1.14, §5.2.13; reports from :: are dropped). Reports
without Router Alert are accepted unless configured otherwise (like the
kernel). Our own host stack's reports (for 224.0.0.22 and friends) are
dropped by source address. Records whose group is not a multicast address
are dropped, the rest of their report is kept (a report left with none is
dropped). Every drop is counted by reason and logged at
debug level; nothing reaches the engine from a dropped packet.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from mcproxy_pmip.addresses import Family, IPAddress
from mcproxy_pmip.errors import MalformedPacket, ProtocolViolation
from mcproxy_pmip.wire import igmp, mld
from mcproxy_pmip.wire.records import GroupRecord, RecordType

log = logging.getLogger(__name__)

_NO_SOURCES: tuple[IPAddress, ...] = ()


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


class Receiver:
    """Reads both sockets, validates, and hands ``Inbound`` messages to ``deliver``.

    ``is_own_address(address)`` tells our own addresses; ``require_router_alert``
    drops reports without the Router Alert option.
    """

    def __init__(self, igmp_socket, mld_socket, deliver: Callable[[Inbound], None],
                 is_own_address: Callable[[IPAddress], bool],
                 require_router_alert: bool = False) -> None:
        self._igmp = igmp_socket
        self._mld = mld_socket
        self._deliver = deliver
        self._is_own_address = is_own_address
        self.require_router_alert = require_router_alert
        self.received: Counter[str] = Counter()
        self.drops: Counter[str] = Counter()

    def read_igmp(self) -> None:
        for packet in self._igmp.read_packets():
            self._accept(Family.IPV4, packet, self._check_igmp)

    def read_mld(self) -> None:
        for packet in self._mld.read_packets():
            self._accept(Family.IPV6, packet, self._check_mld)

    def _accept(self, family: Family, packet, check) -> None:
        try:
            inbound = check(packet)
        except (MalformedPacket, ProtocolViolation) as exc:
            self.drops[f"{family.protocol.lower()}_{exc.reason}"] += 1
            log.debug("packet_dropped family=%s reason=%s src=%s ifindex=%d %s",
                      family.name, exc.reason, packet.src, packet.ifindex, exc.detail)
            return
        if inbound is None:
            return
        self.received[f"{family.protocol.lower()}_{type(inbound).__name__}"] += 1
        self._deliver(inbound)

    def _check_igmp(self, packet) -> Inbound | None:
        if packet.ttl != 1:
            raise ProtocolViolation("bad_ttl", f"ttl={packet.ttl}")
        message = igmp.parse(packet.payload)
        if isinstance(message, igmp.IgmpQuery):
            return QueryReceived(packet.ifindex, Family.IPV4, packet.src, message)
        return self._checked_report(packet, Family.IPV4, message)

    def _check_mld(self, packet) -> Inbound | None:
        if packet.hop_limit != 1:
            raise ProtocolViolation("bad_hop_limit", f"hop_limit={packet.hop_limit}")
        if packet.src.is_unspecified:
            raise ProtocolViolation("unspecified_source")
        if not packet.src.is_link_local:
            raise ProtocolViolation("source_not_link_local", str(packet.src))
        message = mld.parse(packet.payload)
        if isinstance(message, mld.MldQuery):
            return QueryReceived(packet.ifindex, Family.IPV6, packet.src, message)
        return self._checked_report(packet, Family.IPV6, message)

    def _checked_report(self, packet, family: Family, message) -> Inbound | None:
        if self.require_router_alert and not packet.router_alert:
            raise ProtocolViolation("no_router_alert")
        if not packet.src.is_unspecified and self._is_own_address(packet.src):
            self.drops[f"{family.protocol.lower()}_own_report"] += 1
            return None
        skipped = getattr(message, "skipped_records", 0)
        if skipped:
            self.drops[f"{family.protocol.lower()}_unknown_record_type"] += skipped
        report = _report(packet.ifindex, family, packet.src, message)
        records = tuple(r for r in report.records if r.group.is_multicast)
        if len(records) == len(report.records):
            return report
        if not records:
            raise ProtocolViolation("group_not_multicast", f"{len(report.records)} records")
        self.drops[f"{family.protocol.lower()}_group_not_multicast"] += len(report.records) - len(records)
        return ReportReceived(report.ifindex, family, report.version, records, report.source)
