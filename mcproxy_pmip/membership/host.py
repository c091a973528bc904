"""The host side of the proxy on one upstream interface, one family.

RFC 4605 §4.1 makes the proxy a host on its upstream interface whose
interface state is the merged membership database. ``UpstreamHost`` keeps that
state per group and implements:

- RFC 3376 §5.1 / RFC 3810 §6.1: state-change reports, sent at once and
  retransmitted [Robustness Variable] - 1 times at random intervals in
  (0, Unsolicited Report Interval]; later changes are merged into the pending
  retransmission state (filter-mode-change records supersede and are
  retransmitted robustness times; source-list changes keep a retransmission
  counter per source). Changes made within ``RETRANSMIT_MERGE_SHARE`` of the
  Unsolicited Report Interval of each other share one random delay, so their
  retransmissions fall due together and leave in one report;
- RFC 3376 §5.2 / RFC 3810 §6.2: answers to General, Group-Specific and
  Group-and-Source-Specific Queries after a random delay in (0, Max Resp Time],
  with the five rules for combining a query with pending responses. The answer
  to a General Query is cut into parts of one report each (at ``mtu``); a
  large state is spread over the response interval, part *i* of *n* at a
  random time in (i/n, (i+1)/n] of Max Resp Time;
- RFC 3376 §7.2.1 / RFC 3810 §8.2.1: older-version querier compatibility
  (IGMPv1/v2, MLDv1 reports while an older querier is present), and hosts of an
  older version (``HostOptions.newest_version``) that stay in its mode.

The class is driven by ``set_membership``, ``handle_query`` and
``handle_timer(now)``; it returns ``SendReport`` / ``Trace`` actions and never
reads a clock.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

from mcproxy_pmip.addresses import Family, IPAddress
from mcproxy_pmip.membership.actions import Action, SendReport, Trace
from mcproxy_pmip.membership.deadlines import Deadlines
from mcproxy_pmip.membership.query import Query
from mcproxy_pmip.membership.timers import HostOptions
from mcproxy_pmip.wire.records import FilterMode, GroupRecord, RecordType
from mcproxy_pmip.wire.reportbody import record_octets
from mcproxy_pmip.wire.split import report_room

#: RFC 3376 §8 / RFC 3810 §9 defaults, used until a newest-version query tells otherwise.
DEFAULT_QUERY_INTERVAL = 125.0
DEFAULT_QUERY_RESPONSE_INTERVAL = 10.0

#: changes this share of the Unsolicited Report Interval apart retransmit together (§5.1)
RETRANSMIT_MERGE_SHARE = 0.1
#: the MTU General Query answer parts are sized for unless ``UpstreamHost.mtu`` is set: the
#: IPv6 minimum link MTU, so that a part is one packet on any link that carries IPv6,
#: tunnels (an ip6tnl's 1,452 octets) included; the Sender packs to the link's real MTU
ANSWER_PART_MTU = 1280

_GENERAL_RESPONSE = "general_response"
_RETRANSMIT = "retransmit"
_GROUP_RESPONSE = "group_response"
_OLDER_QUERIER = "older_querier_present"

_NO_SOURCES: frozenset[IPAddress] = frozenset()


class _GroupState:
    """Interface state of one group plus its pending retransmission and response state."""

    __slots__ = ("mode", "sources", "filter_mode_retransmissions", "source_retransmissions",
                 "response_sources")

    def __init__(self) -> None:
        self.mode = FilterMode.INCLUDE
        self.sources: frozenset[IPAddress] = _NO_SOURCES
        #: state-change reports still to carry a TO_IN / TO_EX record (§5.1)
        self.filter_mode_retransmissions = 0
        #: source -> state-change reports still to carry it in ALLOW / BLOCK (§5.1)
        self.source_retransmissions: dict[IPAddress, int] = {}
        #: recorded sources of a pending group-and-source-specific query (§5.2 rule 3)
        self.response_sources: frozenset[IPAddress] = _NO_SOURCES

    @property
    def has_reception_state(self) -> bool:
        return self.mode is FilterMode.EXCLUDE or bool(self.sources)

    @property
    def has_retransmissions(self) -> bool:
        return self.filter_mode_retransmissions > 0 or bool(self.source_retransmissions)

    def forwards(self, source: IPAddress) -> bool:
        return (source in self.sources) == (self.mode is FilterMode.INCLUDE)


class UpstreamHost:
    """Host-side membership state of one upstream interface for one family.

    ``set_membership`` installs the desired interface state of a group (the
    merged database after filtering); ``handle_query`` answers the upstream
    querier; ``get_timer`` / ``handle_timer`` drive retransmissions, delayed
    responses and the older-version querier present timers. ``mtu`` (the
    IO layer may set the link's) sizes the parts of a General Query answer.
    """

    def __init__(self, interface: str, family: Family, options: HostOptions,
                 rng: random.Random) -> None:
        self.interface = interface
        self.family = family
        self.options = options
        self._rng = rng
        self._groups: dict[IPAddress, _GroupState] = {}
        self._deadlines = Deadlines()
        self._querier_robustness = options.robustness
        self._querier_query_interval = DEFAULT_QUERY_INTERVAL
        self._querier_response_interval = DEFAULT_QUERY_RESPONSE_INTERVAL
        #: the newest version this host speaks: its version without older queriers
        self._speaks = min(family.newest_version, options.newest_version or family.newest_version)
        self.version = self._speaks
        self.mtu = ANSWER_PART_MTU
        #: (first change, deadline) of the retransmission batch changes still join (§5.1)
        self._retransmit_batch: tuple[float, float] | None = None
        #: pending parts of the General Query answer: index -> its groups (None: every group)
        self._general_parts: dict[int, list[IPAddress] | None] = {}
        self._general_started = False

    # -- queries about the state ------------------------------------------------

    def membership(self, group: IPAddress) -> tuple[FilterMode, frozenset[IPAddress]] | None:
        """The interface state of ``group``; None when the host is not a member."""
        state = self._groups.get(group)
        if state is None or not state.has_reception_state:
            return None
        return state.mode, state.sources

    def groups(self) -> Iterable[IPAddress]:
        """Groups the host is a member of."""
        return [group for group, state in self._groups.items() if state.has_reception_state]

    def get_timer(self) -> float | None:
        return self._deadlines.earliest()

    # -- state changes (§5.1) ----------------------------------------------------

    def set_membership(self, now: float, group: IPAddress, mode: FilterMode,
                       sources: frozenset[IPAddress]) -> list[Action]:
        """Install the new interface state of ``group`` and report the change at once.

        INCLUDE with no sources leaves the group. Returns the immediate
        ``SendReport`` (none if nothing changed or the version has no message).
        """
        state = self._groups.get(group)
        if state is None:
            if mode is FilterMode.INCLUDE and not sources:
                return []
            state = self._groups[group] = _GroupState()
            self._add_to_general_answer(group)
        old_mode, old_sources = state.mode, state.sources
        if old_mode is mode and old_sources == sources:
            return []
        state.mode, state.sources = mode, frozenset(sources)
        if self.version == self.family.newest_version:
            self._record_change(state, old_mode, old_sources)
            records = self._state_change_records(group, state)
        else:
            records = self._older_version_change(group, state, old_mode, old_sources)
        self._reschedule_retransmission(now, group, state)
        if not records:
            return []
        return [SendReport(self.interface, self.family, self.version, tuple(records))]

    def _record_change(self, state: _GroupState, old_mode: FilterMode,
                       old_sources: frozenset[IPAddress]) -> None:
        """Merge the old -> new difference into the retransmission state (§5.1)."""
        robustness = self.options.robustness
        if old_mode is not state.mode:
            state.filter_mode_retransmissions = robustness
            state.source_retransmissions.clear()
            return
        for source in old_sources.symmetric_difference(state.sources):
            state.source_retransmissions[source] = robustness

    def _state_change_records(self, group: IPAddress, state: _GroupState) -> list[GroupRecord]:
        """The records of the next state-change report of ``group``; counts it as sent (§5.1)."""
        if state.filter_mode_retransmissions > 0:
            state.filter_mode_retransmissions -= 1
            record_type = (RecordType.CHANGE_TO_INCLUDE if state.mode is FilterMode.INCLUDE
                           else RecordType.CHANGE_TO_EXCLUDE)
            return [GroupRecord(record_type, group, tuple(sorted(state.sources)))]
        allow: list[IPAddress] = []
        block: list[IPAddress] = []
        retransmissions = state.source_retransmissions
        for source, remaining in list(retransmissions.items()):
            (allow if state.forwards(source) else block).append(source)
            if remaining <= 1:
                del retransmissions[source]
            else:
                retransmissions[source] = remaining - 1
        records = []
        if allow:
            records.append(GroupRecord(RecordType.ALLOW_NEW_SOURCES, group, tuple(sorted(allow))))
        if block:
            records.append(GroupRecord(RecordType.BLOCK_OLD_SOURCES, group, tuple(sorted(block))))
        return records

    def _older_version_change(self, group: IPAddress, state: _GroupState, old_mode: FilterMode,
                              old_sources: frozenset[IPAddress]) -> list[GroupRecord]:
        """IGMPv1/v2 / MLDv1: only joining and leaving are reported; source lists are ignored."""
        was_member = old_mode is FilterMode.EXCLUDE or bool(old_sources)
        if was_member == state.has_reception_state:
            return []
        state.source_retransmissions.clear()
        if state.has_reception_state:
            state.filter_mode_retransmissions = self.options.robustness
            return self._older_version_report(group, state)
        state.filter_mode_retransmissions = 0
        if self.version == 1 and self.family is Family.IPV4:
            return []  # IGMPv1 has no Leave message
        return [GroupRecord(RecordType.CHANGE_TO_INCLUDE, group)]

    def _older_version_report(self, group: IPAddress, state: _GroupState) -> list[GroupRecord]:
        if state.filter_mode_retransmissions <= 0:
            return []
        state.filter_mode_retransmissions -= 1
        return [GroupRecord(RecordType.MODE_IS_EXCLUDE, group)]

    def _reschedule_retransmission(self, now: float, group: IPAddress, state: _GroupState) -> None:
        key = (_RETRANSMIT, group)
        if state.has_retransmissions:
            self._deadlines.set(key, self._retransmit_at(now))
            return
        self._deadlines.cancel(key)
        self._forget_if_idle(group, state)

    def _retransmit_at(self, now: float) -> float:
        """The next retransmission time of a change made at ``now``: random in
        (now, now + Unsolicited Report Interval], shared with the changes made
        shortly before it whose retransmission is still ahead."""
        interval = self.options.unsolicited_report_interval
        batch = self._retransmit_batch
        if batch is not None and now - batch[0] <= interval * RETRANSMIT_MERGE_SHARE \
                and now < batch[1]:
            return batch[1]
        at = now + self._random_delay(interval)
        self._retransmit_batch = (now, at)
        return at

    def _forget_if_idle(self, group: IPAddress, state: _GroupState) -> None:
        if not state.has_reception_state and not state.has_retransmissions:
            self._deadlines.cancel((_GROUP_RESPONSE, group))
            del self._groups[group]

    # -- queries (§5.2, §7.2.1) --------------------------------------------------

    def handle_query(self, now: float, query: Query) -> list[Action]:
        """Schedule the answer to a query from the upstream querier ``query.source``.

        The QRV / QQI of a newest-version query (zero: not carried) size the
        Older Version Querier Present Timeout (RFC 3376 §8.12, RFC 3810 §9.12).
        """
        actions: list[Action] = []
        version, group = query.version, query.group
        max_resp_interval = query.max_resp_interval
        if max_resp_interval <= 0:
            max_resp_interval = DEFAULT_QUERY_RESPONSE_INTERVAL
        if version == self.family.newest_version:
            if query.robustness:
                self._querier_robustness = query.robustness
            if query.query_interval:
                self._querier_query_interval = query.query_interval
            self._querier_response_interval = max_resp_interval
        else:
            timeout_interval = (self._querier_robustness * self._querier_query_interval
                                + self._querier_response_interval)
            self._deadlines.set((_OLDER_QUERIER, version), now + timeout_interval)
            actions.extend(self._update_version())
        respond_at = now + self._random_delay(max_resp_interval)
        general_at = self._general_answer_done_at()
        if general_at is not None and general_at <= respond_at:
            return actions  # rule 1: an earlier General Query response covers it
        if group is None:
            self._schedule_general_answer(now, respond_at, max_resp_interval)  # rule 2
            return actions
        state = self._groups.get(group)
        if state is None or not state.has_reception_state:
            actions.append(Trace("host_query_for_unknown_group",
                                 (("interface", self.interface), ("group", group),
                                  ("querier", query.source))))
            return actions
        key = (_GROUP_RESPONSE, group)
        pending_at = self._deadlines.get(key)
        queried = (frozenset(query.sources) if self.version == self.family.newest_version
                   else _NO_SOURCES)
        if pending_at is None:
            state.response_sources = queried  # rule 3
        else:
            respond_at = min(respond_at, pending_at)
            if not queried or not state.response_sources:
                state.response_sources = _NO_SOURCES  # rule 4
            else:
                state.response_sources = state.response_sources | queried  # rule 5
        self._deadlines.set(key, respond_at)
        return actions

    def _general_answer_done_at(self) -> float | None:
        """When the pending General Query answer is complete; None if there is
        none or a part of it already went out (it no longer answers a new query)."""
        if not self._general_parts or self._general_started:
            return None
        return max(self._deadlines.get((_GENERAL_RESPONSE, index)) for index in self._general_parts)

    def _schedule_general_answer(self, now: float, respond_at: float,
                                 max_resp_interval: float) -> None:
        """Cut the answer into parts of one report each and spread them over the response interval."""
        self._cancel_general_answer()
        parts = self._general_answer_parts()
        if len(parts) <= 1:
            self._general_parts[0] = None
            self._deadlines.set((_GENERAL_RESPONSE, 0), respond_at)
            return
        share = max_resp_interval / len(parts)
        for index, groups in enumerate(parts):
            # part i at a random point of the i-th share; part 0 reuses the drawn delay
            fraction = (respond_at - now) / max_resp_interval if index == 0 else self._random_delay(1.0)
            self._general_parts[index] = groups
            self._deadlines.set((_GENERAL_RESPONSE, index), now + share * (index + fraction))

    def _general_answer_parts(self) -> list[list[IPAddress]]:
        """The groups with reception state, cut where a part would overflow one report."""
        room = report_room(self.family, self.mtu)
        newest = self.version == self.family.newest_version
        parts: list[list[IPAddress]] = []
        current: list[IPAddress] = []
        used = 0
        for group, state in self._groups.items():
            if not state.has_reception_state:
                continue
            size = record_octets(self.family, len(state.sources) if newest else 0)
            if current and used + size > room:
                parts.append(current)
                current, used = [], 0
            current.append(group)
            used += size
        if current:
            parts.append(current)
        return parts

    def _add_to_general_answer(self, group: IPAddress) -> None:
        """A group joined while a spread General Query answer is pending goes in its last part."""
        if self._general_parts:
            last = self._general_parts[max(self._general_parts)]
            if last is not None:
                last.append(group)

    def _cancel_general_answer(self) -> None:
        for index in self._general_parts:
            self._deadlines.cancel((_GENERAL_RESPONSE, index))
        self._general_parts.clear()
        self._general_started = False

    def _update_version(self) -> list[Action]:
        """Host Compatibility Mode from the older querier present timers (§7.2.1)."""
        older = [version for version in range(1, self.family.newest_version)
                 if (_OLDER_QUERIER, version) in self._deadlines]
        version = min([*older, self._speaks])
        if version == self.version:
            return []
        previous, self.version = self.version, version
        self._cancel_pending()
        return [Trace("host_compatibility_mode_changed",
                      (("interface", self.interface), ("family", self.family.name),
                       ("from", previous), ("to", version)))]

    def _cancel_pending(self) -> None:
        """A compatibility mode change cancels pending responses and retransmissions."""
        self._cancel_general_answer()
        for group, state in list(self._groups.items()):
            state.filter_mode_retransmissions = 0
            state.source_retransmissions.clear()
            self._deadlines.cancel((_RETRANSMIT, group))
            self._deadlines.cancel((_GROUP_RESPONSE, group))
            self._forget_if_idle(group, state)

    # -- timers --------------------------------------------------------------------

    def handle_timer(self, now: float) -> list[Action]:
        """Send what is due: query responses, retransmissions; expire older queriers."""
        actions: list[Action] = []
        current: dict[IPAddress, GroupRecord] = {}
        changes: list[GroupRecord] = []
        for key in self._deadlines.pop_due(now):
            kind, argument = key
            if kind == _GENERAL_RESPONSE:
                self._answer_general_part(argument, current)
                continue
            if kind == _OLDER_QUERIER:
                actions.extend(self._update_version())
                continue
            state = self._groups.get(argument)
            if state is None:
                continue
            if kind == _GROUP_RESPONSE:
                if state.has_reception_state and argument not in current:
                    record = self._current_state_record(argument, state, state.response_sources)
                    if record is not None:
                        current[argument] = record
                state.response_sources = _NO_SOURCES
            else:
                if self.version == self.family.newest_version:
                    changes.extend(self._state_change_records(argument, state))
                else:
                    changes.extend(self._older_version_report(argument, state))
                self._reschedule_retransmission(now, argument, state)
        if current:
            actions.append(SendReport(self.interface, self.family, self.version,
                                      tuple(current.values())))
        if changes:
            actions.append(SendReport(self.interface, self.family, self.version, tuple(changes)))
        return actions

    def _answer_general_part(self, index: int, current: dict[IPAddress, GroupRecord]) -> None:
        """Add the current-state records of one part of the General Query answer."""
        groups = self._general_parts.pop(index)
        self._general_started = bool(self._general_parts)
        for group in (self._groups if groups is None else groups):
            state = self._groups.get(group)
            if state is not None and state.has_reception_state and group not in current:
                current[group] = self._current_state_record(group, state, _NO_SOURCES)

    def _current_state_record(self, group: IPAddress, state: _GroupState,
                              queried: frozenset[IPAddress]) -> GroupRecord | None:
        """IS_IN / IS_EX for the interface state, or the §5.2 answer to queried sources B."""
        if self.version != self.family.newest_version:
            return GroupRecord(RecordType.MODE_IS_EXCLUDE, group)
        if not queried:
            record_type = (RecordType.MODE_IS_INCLUDE if state.mode is FilterMode.INCLUDE
                           else RecordType.MODE_IS_EXCLUDE)
            return GroupRecord(record_type, group, tuple(sorted(state.sources)))
        if state.mode is FilterMode.INCLUDE:
            answered = state.sources & queried
        else:
            answered = queried - state.sources
        if not answered:
            return None
        return GroupRecord(RecordType.MODE_IS_INCLUDE, group, tuple(sorted(answered)))

    def _random_delay(self, interval: float) -> float:
        """A random delay in (0, interval]: never zero, so nothing is sent at once."""
        return interval * (1.0 - self._rng.random())
