"""Sender: turns the engine's SendQuery / SendReport actions into packets on the wire.

Queries (RFC 3376 §4.1, RFC 3810 §5.1) go to 224.0.0.1 / ff02::1 (general) or
to the group (group-specific), source lists split to the interface MTU.
Reports (RFC 3376 §4.2, RFC 3810 §5.2): IGMPv3 to 224.0.0.22, MLDv2 to ff02::16,
as many records per message as the interface MTU allows (§4.2.16; 1,500 when the
kernel gave none); older versions one message per record, a leave to
224.0.0.2 / a done to ff02::2, paced: at most ``OLD_VERSION_BURST`` messages per
interface and family every ``OLD_VERSION_INTERVAL``, the rest queued in order.
The IP options (Router Alert, TTL / hop limit 1, TOS 0xc0, link-local MLD
source) are the kernel sockets' job.

MLD needs a link-local source (RFC 3810 §5). While the interface has none
that is usable (duplicate address detection after link-up or carrier regain),
or the kernel refuses the one we name (EINVAL / EADDRNOTAVAIL: still
tentative), the message is held and retried every ``RETRY_INTERVAL`` for up
to ``RETRY_INTERVAL * MAX_RETRIES`` (3 s, longer than DAD's 1-2 s), with the
interface looked up again each time, instead of being lost until the next
query: a state-change report lost this way would otherwise not be repeated.
"""

from __future__ import annotations

import errno
import logging
from collections import Counter, deque
from collections.abc import Callable
from types import SimpleNamespace

from mcproxy_pmip.addresses import (ALL_ROUTERS_V4, ALL_ROUTERS_V6, Family, IPAddress)
from mcproxy_pmip.errors import KernelError
from mcproxy_pmip.kernel.interfaces import InterfaceInfo
from mcproxy_pmip.membership.actions import SendQuery, SendReport
from mcproxy_pmip.ratelog import RateLimitedLog
from mcproxy_pmip.wire import igmp, mld
from mcproxy_pmip.wire.records import GroupRecord, RecordType
from mcproxy_pmip.wire.split import DEFAULT_MTU, split_query_sources, split_report_records

log = logging.getLogger(__name__)

_LEAVE_TYPES = (RecordType.CHANGE_TO_INCLUDE, RecordType.MODE_IS_INCLUDE)
_SOURCE_NOT_READY = (errno.EINVAL, errno.EADDRNOTAVAIL)

RETRY_INTERVAL = 0.05
MAX_RETRIES = 60

#: IGMPv1/v2 and MLDv1 messages (one per group) sent per interface and family at once ...
OLD_VERSION_BURST = 32
#: ... and per interval after that: 3,200 messages a second
OLD_VERSION_INTERVAL = 0.01


def _is_leave(record: GroupRecord) -> bool:
    return record.record_type in _LEAVE_TYPES and not record.sources


def _mtu(info: InterfaceInfo) -> int:
    return info.mtu if info.mtu > 0 else DEFAULT_MTU


class _Pacing:
    """Older-version messages of one interface and family waiting for their turn."""

    __slots__ = ("backlog", "sent_in_interval")

    def __init__(self) -> None:
        self.backlog: deque[tuple[int, GroupRecord]] = deque()
        self.sent_in_interval = 0


class Sender:
    """Builds and sends; ``lookup(name)`` gives the interface's index, MTU and addresses;
    ``call_later(delay, f, *args)`` (the reactor's) schedules retries, None disables them."""

    def __init__(self, igmp_socket, mld_socket, lookup: Callable[[str], InterfaceInfo | None],
                 call_later: Callable | None = None) -> None:
        self._sockets = {Family.IPV4: igmp_socket, Family.IPV6: mld_socket}
        self._lookup = lookup
        self._call_later = call_later
        self.sent: Counter[str] = Counter()
        self.failures: Counter[str] = Counter()
        #: failures: logged once a minute per link, family and kind, the rest counted (a flood must not fill the log)
        self._failure_log = (RateLimitedLog(log, SimpleNamespace(callLater=call_later), summary="send_failures")
                             if call_later is not None else None)
        #: messages sent, by (interface, family, "query" | "report" | "leave", version)
        self.per_link: Counter[tuple[str, Family, str, int]] = Counter()
        self._pacing: dict[tuple[str, Family], _Pacing] = {}

    def send_query(self, action: SendQuery) -> None:
        info = self._interface(action.interface)
        if info is None:
            return
        destination = action.group if action.group is not None else action.family.all_nodes
        for sources in split_query_sources(action.sources, action.family, _mtu(info)):
            fields = dict(version=action.version, max_resp_interval=action.max_resp_interval,
                          group=action.group, sources=sources,
                          suppress_router_processing=action.suppress_router_processing,
                          robustness=action.robustness, query_interval=action.query_interval)
            if action.family is Family.IPV4:
                if action.version == 1:
                    fields.update(group=None, sources=())
                message = igmp.build(igmp.IgmpQuery(**fields))
            else:
                message = mld.build(mld.MldQuery(**fields))
            self._send(info, action.family, destination, message, "query", action.version)

    def send_report(self, action: SendReport) -> None:
        info = self._interface(action.interface)
        if info is None:
            return
        family = action.family
        if action.version == family.newest_version:
            for records in split_report_records(action.records, family, _mtu(info)):
                if family is Family.IPV4:
                    message = igmp.build(igmp.IgmpV3Report(records=records))
                else:
                    message = mld.build(mld.MldV2Report(records=records))
                self._send(info, family, family.all_routers_report_group, message, "report",
                           family.newest_version)
            return
        if self._call_later is None:
            for record in action.records:
                self._send_old_version(info, family, action.version, record)
            return
        key = (action.interface, family)
        pacing = self._pacing.get(key)
        if pacing is None:
            pacing = self._pacing[key] = _Pacing()
            self._call_later(OLD_VERSION_INTERVAL, self._next_interval, key)
        pacing.backlog.extend((action.version, record) for record in action.records)
        self._send_paced(info, family, pacing)

    def _send_paced(self, info: InterfaceInfo, family: Family, pacing: _Pacing) -> None:
        backlog = pacing.backlog
        while backlog and pacing.sent_in_interval < OLD_VERSION_BURST:
            version, record = backlog.popleft()
            self._send_old_version(info, family, version, record)
            pacing.sent_in_interval += 1

    def _next_interval(self, key: tuple[str, Family]) -> None:
        """Start a new pacing interval; the pacing state goes once an interval sent nothing."""
        pacing = self._pacing[key]
        if pacing.sent_in_interval == 0:
            del self._pacing[key]
            return
        pacing.sent_in_interval = 0
        if pacing.backlog:
            info = self._interface(key[0])
            if info is None:
                self.failures["report_dropped_interface_gone"] += len(pacing.backlog)
                del self._pacing[key]
                return
            self._send_paced(info, key[1], pacing)
        self._call_later(OLD_VERSION_INTERVAL, self._next_interval, key)

    def _send_old_version(self, info: InterfaceInfo, family: Family, version: int,
                          record: GroupRecord) -> None:
        leave = _is_leave(record)
        if family is Family.IPV4:
            if leave and version == 1:
                return
            if leave:
                self._send(info, family, ALL_ROUTERS_V4, igmp.build(igmp.IgmpV2Leave(record.group)),
                           "leave", 2)
            else:
                report = igmp.IgmpV1Report(record.group) if version == 1 else igmp.IgmpV2Report(record.group)
                self._send(info, family, record.group, igmp.build(report), "report", version)
        elif leave:
            self._send(info, family, ALL_ROUTERS_V6, mld.build(mld.MldDone(record.group)), "leave", 1)
        else:
            self._send(info, family, record.group, mld.build(mld.MldV1Report(record.group)), "report", 1)

    def _interface(self, name: str) -> InterfaceInfo | None:
        info = self._lookup(name)
        if info is None:
            self.failures["interface_gone"] += 1
            log.debug("send_skipped reason=interface_gone interface=%s", name)
        return info

    def _send(self, info: InterfaceInfo, family: Family, destination: IPAddress,
              message: bytes, kind: str, version: int, attempt: int = 0) -> None:
        source = info.primary_ipv4 if family is Family.IPV4 else info.ipv6_link_local
        counter = f"{family.protocol.lower()}_{kind}"
        try:
            if family is Family.IPV6 and source is None:
                raise KernelError("sendmsg(ICMPv6)", errno.EADDRNOTAVAIL, f"{info.name} has no usable link-local")
            self._sockets[family].send(info.ifindex, source, destination, message)
        except KernelError as exc:
            if exc.errno in _SOURCE_NOT_READY and self._call_later is not None and attempt < MAX_RETRIES:
                self.failures[f"{counter}_retried"] += 1
                log.debug("send_retry interface=%s family=%s kind=%s attempt=%d error=%s",
                          info.name, family.name, kind, attempt + 1, exc)
                self._call_later(RETRY_INTERVAL, self._retry, info.name, family, destination, message,
                                 kind, version, attempt + 1)
                return
            self.failures[counter] += 1
            self._log_failure(f"{info.name}/{family.name}/{kind}", "send_failed interface=%s family=%s kind=%s "
                              "error=%s", info.name, family.name, kind, exc)
            return
        self.sent[counter] += 1
        self.per_link[(info.name, family, kind, version)] += 1

    def _log_failure(self, reason: str, message: str, *args: object) -> None:
        if self._failure_log is None:
            log.warning(message, *args)
        else:
            self._failure_log.event(reason, message, *args)

    def close(self) -> None:
        """Cancel the pending failure summaries (the Proxy stops)."""
        if self._failure_log is not None:
            self._failure_log.close()

    def _retry(self, name: str, family: Family, destination: IPAddress, message: bytes, kind: str,
               version: int, attempt: int) -> None:
        info = self._interface(name)
        if info is not None:
            self._send(info, family, destination, message, kind, version, attempt)
