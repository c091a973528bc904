"""Router side of IGMPv3 / MLDv2 on one downstream link and one family.

RFC 3376 §6 and RFC 3810 §7: reports update per-group state through the
tables of ``router_table`` (§6.4), timers expire (§6.5), group-specific and
group-and-source-specific queries are sent and retransmitted (§6.6.3),
General Queries go out at start-up and every Query Interval while we are the
querier (§6.6.2, ``querier``), and queries from other routers elect the
querier and lower timers (§6.6.1). A Non-Querier derives its intervals from
the querier's QRV and QQI (§4.1.6 / §4.1.7, RFC 3810 §5.1.8 / §5.1.9, kept by
``querier``). RFC 3376 §7.3.1 / RFC 3810 §8.3.1: an older-version General
Query is reported as a rate-limited warning ``Trace``; the election treats it
like any other. RFC 3376 §7.3.2 / RFC 3810 §8.3.2: older host compatibility
per group. RFC 4605 §4: a proxy forwards to a link only
while it is the querier there (unless configured otherwise).

Sans-IO: every entry point takes ``now`` and returns actions; deadlines sit
on the records and one ``Deadlines`` heap per interface holds each group's
earliest one. Group and source records are taken from the link's
``StateBudget`` account and given back when they go; a record over a cap is
ignored with a ``limit_*_hit`` trace. A querier's QRV, QQI and Max Resp Time
are clamped (``querier``). See docs/limits.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from mcproxy_pmip.addresses import Family, IPAddress, is_link_local_scope_group
from mcproxy_pmip.membership.actions import (Action, MembershipChanged, QuerierChanged, SendQuery,
                                             Trace)
from mcproxy_pmip.membership.budget import StateBudget
from mcproxy_pmip.membership.deadlines import Deadlines
from mcproxy_pmip.membership.querier import QuerierState
from mcproxy_pmip.membership.query import Query
from mcproxy_pmip.membership.router_group import RouterGroup
from mcproxy_pmip.membership.router_table import (COMPAT, ROWS_EXCLUDE, ROWS_INCLUDE, Compat,
                                                  CompatMode)
from mcproxy_pmip.membership.timers import LinkTimers, RouterOptions
from mcproxy_pmip.wire.records import FilterMode, GroupRecord, RecordType

_NO_SOURCES: frozenset = frozenset()


class RouterInterface:
    """One downstream interface, one family: the multicast router part of RFC 4605.

    Driven by ``start``/``stop``, ``handle_report``, ``handle_query``,
    ``import_records`` and ``handle_timer(now)``; ``get_timer()`` says when
    ``handle_timer`` is next due. Outputs: ``SendQuery``, ``MembershipChanged``,
    ``QuerierChanged`` and ``Trace`` actions.
    """

    def __init__(self, interface: str, family: Family, own_address: IPAddress | None,
                 options: RouterOptions, budget: StateBudget | None = None) -> None:
        self.interface = interface
        self.family = family
        self.own_address = own_address
        self.options = options
        self._newest = family.newest_version
        self._querier = QuerierState(own_address, options.timers, options.querier_election)
        #: this link's account (max_groups, max_link_sources) below ``budget``
        #: (the instance's or the daemon's; a private unlimited root if None)
        self.budget = (budget if budget is not None else StateBudget()).child(
            options.max_groups, options.max_link_sources, "link")
        self._groups: dict[IPAddress, RouterGroup] = {}
        #: RouterGroup -> its earliest running timer (RouterGroup.next_deadline); keyed
        #: by the record, whose identity hash is cheaper than an address's
        self._deadlines = Deadlines()

    def set_own_address(self, address: IPAddress | None) -> None:
        """The link's own address changed (it may come after the link): the election uses the new one."""
        self.own_address = address
        self._querier.own_address = address

    # -- queries about the state -----------------------------------------------

    @property
    def is_querier(self) -> bool:
        return self._querier.is_querier

    @property
    def other_querier(self) -> IPAddress | None:
        return self._querier.other_querier

    @property
    def link_timers(self) -> LinkTimers:
        """The values this link's intervals derive from: configured while we are
        the querier, with the querier's QRV and QQI while we are not."""
        return self._querier.link

    @property
    def _lmqc(self) -> int:
        """Last Member Query Count; a Send Q action sends at least one query."""
        return max(1, self._querier.link.lmq_count)

    @property
    def _lmqt(self) -> float:
        return self._querier.link.last_member_query_time

    def groups(self) -> Iterable[IPAddress]:
        return list(self._groups)

    def membership(self, group: IPAddress) -> tuple[FilterMode, frozenset[IPAddress]] | None:
        g = self._groups.get(group)
        return None if g is None else g.membership()

    def forwards(self, group: IPAddress, source: IPAddress) -> bool:
        if not (self._querier.is_querier or self.options.forward_when_not_querier):
            return False
        g = self._groups.get(group)
        return g is not None and g.forwards(source)

    def compat_version(self, group: IPAddress) -> int:
        g = self._groups.get(group)
        return self._newest if g is None else g.compat_version(self.family)

    def link_version(self) -> int:
        """The oldest version present among the link's groups (newest if none)."""
        return min((g.compat_version(self.family) for g in self._groups.values()),
                   default=self._newest)

    def group_timer_at(self, group: IPAddress) -> float | None:
        """The group (filter) timer deadline, None if not running or no group."""
        g = self._groups.get(group)
        return None if g is None else g.group_timer_at

    def source_timers(self, group: IPAddress) -> dict[IPAddress, float | None]:
        """Each source's timer deadline (None: timer 0, i.e. in Y)."""
        g = self._groups.get(group)
        return {} if g is None else dict(g.sources)

    # -- start, stop -------------------------------------------------------------

    def start(self, now: float) -> list[Action]:
        """Become querier, send a General Query at once, then the startup queries."""
        self._querier.start(now)
        return [self._general_query()]

    def stop(self, now: float) -> list[Action]:
        """Drop all state and deadlines; a MembershipChanged per group dropped."""
        out: list[Action] = [MembershipChanged(self.interface, self.family, group)
                             for group in self._groups]
        for g in self._groups.values():
            g.release()
            self.budget.give_group()
        self._groups.clear()
        self._deadlines.clear()
        self._querier.stop()
        return out

    # -- reports -------------------------------------------------------------------

    def handle_report(self, now: float, version: int, records: Sequence[GroupRecord],
                      source: IPAddress) -> list[Action]:
        """Apply the records of one report (any version, mapped to records)."""
        out: list[Action] = []
        if not 1 <= version <= self._newest:
            out.append(Trace("record_ignored", (("interface", self.interface),
                                                ("reason", "version"), ("version", version))))
            return out
        touched: dict[IPAddress, bool] = {}
        for record in records:
            self._apply_record(now, version, record, touched, out, True)
        self._finish(now, touched, out)
        return out

    def import_records(self, now: float, version: int, records: Sequence[GroupRecord]
                       ) -> list[Action]:
        """Install transferred current-state records as if reported (timers run,
        no queries); other record types are ignored with a Trace."""
        out: list[Action] = []
        if not 1 <= version <= self._newest:
            version = self._newest
        touched: dict[IPAddress, bool] = {}
        for record in records:
            if record.record_type.is_current_state:
                self._apply_record(now, version, record, touched, out, False)
            else:
                out.append(Trace("record_ignored", (("interface", self.interface),
                                                    ("reason", "import_not_current_state"),
                                                    ("group", record.group))))
        self._finish(now, touched, out)
        return out

    def export_records(self, now: float) -> tuple[int, tuple[GroupRecord, ...]]:
        """The link's state as IS_IN(sources) / IS_EX(Y) records and the oldest version."""
        records = []
        for group in sorted(self._groups):
            mode, sources = self._groups[group].membership()
            record_type = (RecordType.MODE_IS_INCLUDE if mode is FilterMode.INCLUDE
                           else RecordType.MODE_IS_EXCLUDE)
            records.append(GroupRecord(record_type, group, tuple(sorted(sources))))
        return self.link_version(), tuple(records)

    def _apply_record(self, now: float, version: int, record: GroupRecord,
                      touched: dict[IPAddress, bool], out: list[Action], queries: bool) -> None:
        group = record.group
        record_type = record.record_type
        g = self._groups.get(group)
        created = g is None
        if created:
            if is_link_local_scope_group(group):     # never held, so checked only here
                out.append(Trace("link_local_group_ignored", (("interface", self.interface),
                                                              ("group", group))))
                return
            scope = self.budget.take_group()
            if scope is not None:
                out.append(Trace("limit_groups_hit", (("interface", self.interface),
                                                      ("family", self.family.name),
                                                      ("group", group), ("scope", scope)),
                                 warning=True))
                return
            g = RouterGroup(group, self.budget)
        if version < self._newest and record_type is RecordType.MODE_IS_EXCLUDE:
            self._older_host_present(g, now, version)
        mode = g.compat_mode(self.family)
        sources = frozenset(record.sources)
        if mode is not CompatMode.CURRENT:
            treatment = COMPAT.get((mode, record_type), Compat.AS_IS)
            if treatment is Compat.IGNORED:
                self._keep(g, created, touched, False)
                return
            if treatment is Compat.NO_SOURCES:
                sources = _NO_SOURCES
        row = (ROWS_INCLUDE if g.filter_mode is FilterMode.INCLUDE else ROWS_EXCLUDE)[record_type]
        changed, query_sources, rest_of_x, refused = g.apply_row(
            row, sources, now, self._querier.link.group_membership_interval,
            self.options.max_sources)
        if refused is not None:
            out.append(Trace("limit_sources_hit", (("interface", self.interface),
                                                   ("family", self.family.name),
                                                   ("group", group),
                                                   ("record", record_type.short),
                                                   ("scope", refused)), warning=True))
            self._keep(g, created, touched, False)
            return
        if queries and self._querier.is_querier:
            self._schedule_queries(g, query_sources, sources if rest_of_x else None,
                                   row.query_group, now, mode)
        self._keep(g, created, touched, changed)

    def _older_host_present(self, g: RouterGroup, now: float, version: int) -> None:
        """§7.3.2 / RFC 3810 §8.3.2: an older-version report sets its Host Present timer."""
        at = now + self._querier.link.older_host_present_interval
        if version == 1:
            g.v1_host_present_at = at
        else:
            g.v2_host_present_at = at

    def _keep(self, g: RouterGroup, created: bool, touched: dict[IPAddress, bool],
              changed: bool) -> None:
        """Insert a new group (unless it is an empty INCLUDE record: its budget goes
        back) and note the change."""
        if created:
            if g.is_empty():
                self.budget.give_group()
                return
            self._groups[g.group] = g
        touched[g.group] = touched.get(g.group, False) or changed

    def _schedule_queries(self, g: RouterGroup, query_sources: list[IPAddress],
                          rest_of_x_but: frozenset[IPAddress] | None, query_group: bool,
                          now: float, mode: CompatMode) -> None:
        """The "Send Q(G,X)" / "Send Q(G)" actions of a row (§6.6.3.1, §6.6.3.2).

        No group-and-source-specific query goes to a group in an older
        compatibility mode when queries follow the hosts' version.
        """
        if ((query_sources or rest_of_x_but is not None)
                and (mode is CompatMode.CURRENT or not self.options.older_version_queries)):
            g.schedule_source_query(query_sources, now, self._lmqt, self._lmqc, rest_of_x_but)
        if query_group:
            g.schedule_group_query(now, self._lmqt, self._lmqc)

    def _finish(self, now: float, touched: dict[IPAddress, bool], out: list[Action]) -> None:
        """Send the queries now due, delete empty groups, reschedule, report changes."""
        for group, changed in touched.items():
            self._settle(self._groups[group], now, changed, out)

    def _settle(self, g: RouterGroup, now: float, changed: bool, out: list[Action]) -> None:
        """After a group's state moved: send its due queries, delete it if empty,
        else reschedule it; report the change."""
        if g.query_due(now):
            self._send_group_queries(g, now, out)
        if g.is_empty():
            del self._groups[g.group]
            self._deadlines.cancel(g)
            g.release()
            self.budget.give_group()
            changed = True
        else:
            self._schedule(g)
        if changed:
            out.append(MembershipChanged(self.interface, self.family, g.group))

    # -- queries from other routers ------------------------------------------------

    def handle_query(self, now: float, query: Query) -> list[Action]:
        """Querier election (§6.6.2), the querier's values (§4.1.6 / §4.1.7) and,
        as a Non-Querier, timer lowering (§6.6.1).

        The lowered deadline is [Last Member Query Count] × the query's Max
        Resp Time (the querier's LMQI): the count follows the adopted QRV
        unless configured.
        """
        out: list[Action] = []
        source = query.source
        if source == self.own_address:
            return out
        group = query.group
        if query.version < self._newest and group is None:
            self._older_querier_heard(now, query.version, source, out)
        querier = self._querier
        before = querier.link
        values = ((query.robustness, query.query_interval) if query.version == self._newest
                  else None)
        clamped = values is not None and querier.clamp(*values) != values
        if clamped:
            values = querier.clamp(*values)
        if querier.query_received(now, source, values):
            self._lost_election(out)
        if clamped and querier.other_querier == source:
            self.budget.count("querier_values_clamped")
            out.append(Trace("querier_values_clamped",
                             (("interface", self.interface), ("family", self.family.name),
                              ("source", source), ("qrv", query.robustness),
                              ("qqi", query.query_interval)), warning=True))
        if querier.link != before:
            out.append(Trace("querier_values_adopted",
                             (("interface", self.interface), ("family", self.family.name),
                              ("source", source), ("robustness", querier.link.robustness),
                              ("query_interval", querier.link.query_interval))))
        if querier.is_querier or group is None or query.suppress_router_processing:
            return out
        g = self._groups.get(group)
        if g is None:
            return out
        interval = querier.lowering_interval(query.max_resp_interval)
        if query.max_resp_interval > 0 and interval != query.max_resp_interval:
            self.budget.count("querier_max_resp_clamped")
        lowered_at = now + self._lmqc * interval
        if query.sources:
            g.lower_source_timers(query.sources, lowered_at)
        else:
            g.lower_group_timer(lowered_at)
        self._schedule(g)
        return out

    def _older_querier_heard(self, now: float, version: int, source: IPAddress,
                             out: list[Action]) -> None:
        """RFC 3376 §7.3.1 / RFC 3810 §8.3.1: warn (rate-limited) about an older querier."""
        held = self._querier.older_query_heard(now)
        if held is not None:
            out.append(Trace("older_version_querier",
                             (("interface", self.interface), ("family", self.family.name),
                              ("source", source), ("version", version), ("held_back", held)),
                             warning=True))

    def _lost_election(self, out: list[Action]) -> None:
        out.append(QuerierChanged(self.interface, self.family, False, self._querier.other_querier))
        for g in self._groups.values():
            g.cancel_queries()
            self._schedule(g)
        self._querier_rule_changed(out)

    def _querier_rule_changed(self, out: list[Action]) -> None:
        """RFC 4605 §4: forwarding to this link depends on being its querier."""
        if not self.options.forward_when_not_querier:
            out.extend(MembershipChanged(self.interface, self.family, group)
                       for group in self._groups)

    # -- timers ---------------------------------------------------------------------

    def get_timer(self) -> float | None:
        """The earliest deadline of this interface, or None."""
        own = self._querier.next_deadline()
        groups = self._deadlines.earliest()
        if groups is None:
            return own
        return groups if own is None else min(own, groups)

    def handle_timer(self, now: float) -> list[Action]:
        """Fire every deadline at or before ``now``."""
        out: list[Action] = []
        querier = self._querier
        if querier.other_querier_expired(now):
            out.append(QuerierChanged(self.interface, self.family, True, None))
            out.append(self._general_query())
            self._querier_rule_changed(out)
        if querier.general_query_due(now):
            out.append(self._general_query())
        for g in self._deadlines.pop_due(now):
            self._settle(g, now, g.expire(now), out)
        return out

    def _schedule(self, g: RouterGroup) -> None:
        """Keep the group's earliest running timer in the interface's deadlines."""
        at = g.next_deadline()
        if at is None:
            self._deadlines.cancel(g)
        else:
            self._deadlines.set(g, at)

    # -- sending queries ---------------------------------------------------------------

    def _general_query(self) -> SendQuery:
        timers = self.options.timers
        version = self.link_version() if self.options.older_version_queries else self._newest
        return SendQuery(self.interface, self.family, version, None, (),
                         timers.query_response_interval, False, timers.robustness,
                         timers.query_interval)

    def _send_group_queries(self, g: RouterGroup, now: float, out: list[Action]) -> None:
        """Transmit the group's due Q(G) / Q(G,X) messages (§6.6.3.1, §6.6.3.2)."""
        if not self._querier.is_querier:
            g.cancel_queries()
            return
        group_query, above, below = g.take_query(now, self._lmqt,
                                                  self._querier.link.last_member_query_interval)
        version = self._newest
        if self.options.older_version_queries:
            version = g.compat_version(self.family)
            if self.family is Family.IPV4 and version == 1:
                version = 2              # IGMPv1 has no group-specific query
        if group_query is not None:
            out.append(self._specific_query(version, g.group, (), group_query))
        if above:
            out.append(self._specific_query(version, g.group, above, True))
        if below:
            out.append(self._specific_query(version, g.group, below, False))

    def _specific_query(self, version: int, group: IPAddress, sources: tuple[IPAddress, ...],
                        suppress_router_processing: bool) -> SendQuery:
        timers = self.options.timers
        return SendQuery(self.interface, self.family, version, group, sources,
                         timers.last_member_query_interval, suppress_router_processing,
                         timers.robustness, timers.query_interval)
