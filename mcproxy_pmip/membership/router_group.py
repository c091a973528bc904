"""Per-group router state of one link and the operations on it.

RFC 3376 §6.2.1 / RFC 3810 §7.2: group record = filter mode, group (filter)
timer, source records with source timers. §6.3: what each source's timer
means for forwarding. §6.4: ``apply_row`` interprets one ``router_table.Row``.
§6.5: ``expire`` moves the state on when timers run out. §6.6.1 / §6.6.3.1 /
§6.6.3.2: lowering timers and the retransmission state of group-specific and
group-and-source-specific queries. §7.3.2 / RFC 3810 §8.3.2: older host
present timers.

Deadlines are absolute times (``*_at``); ``None`` means "not running". A
source whose timer is ``None`` in EXCLUDE mode is in Y (timer 0); in INCLUDE
mode no source has a stopped timer.

Cost (docs/limits.md): applying a record touches the record's sources and the
sources it changes, never the whole state: the size of Y is counted, the
source timers sit in a lazy heap, and a row runs as the per-class fates of
``router_table.PLANS``. "Send Q(G,X-A)" of TO_IN names sources outside the
record; only those whose timer was set since the last such query can still
be above LMQT, so only they are looked at (``_raised``, ``_cool_at``). Every
source record is taken from and given back to the link's ``StateBudget``.
"""

from __future__ import annotations

import heapq

from mcproxy_pmip.addresses import Family, IPAddress
from mcproxy_pmip.membership.budget import StateBudget
from mcproxy_pmip.membership.router_table import (CLASSES, IN_X, IN_Y, PLANS, R_ONLY, X_AND_R,
                                                  X_ONLY, Y_AND_R, Y_ONLY, CompatMode, Fate, Row,
                                                  RowPlan)
from mcproxy_pmip.wire.records import FilterMode

INCLUDE = FilterMode.INCLUDE
EXCLUDE = FilterMode.EXCLUDE

#: A source with no record (distinct from a record whose timer is 0, None); compared
#: by identity only.
_ABSENT = float("nan")
#: Stale timer-heap entries tolerated beyond twice the live ones before a rebuild.
_HEAP_SLACK = 16


class RouterGroup:
    """The state of one group on one link (RFC 3376 §6.2.1)."""

    __slots__ = ("group", "filter_mode", "group_timer_at", "sources", "v1_host_present_at",
                 "v2_host_present_at", "group_query_at", "group_queries_left", "source_query_at",
                 "source_queries_left", "budget", "_excluded", "_timer_heap", "_raised",
                 "_cool_at")

    def __init__(self, group: IPAddress, budget: StateBudget | None = None) -> None:
        self.group = group
        self.filter_mode = INCLUDE
        self.group_timer_at: float | None = None
        self.sources: dict[IPAddress, float | None] = {}
        self.v1_host_present_at: float | None = None
        self.v2_host_present_at: float | None = None
        self.group_query_at: float | None = None
        self.group_queries_left = 0
        self.source_query_at: float | None = None
        self.source_queries_left: dict[IPAddress, int] = {}
        self.budget = budget if budget is not None else StateBudget()
        #: how many sources are in Y (timer 0)
        self._excluded = 0
        #: (deadline, source) for every running source timer, plus stale entries
        #: (a deadline that no longer matches ``sources``) dropped when met
        self._timer_heap: list[tuple[float, IPAddress]] = []
        #: sources in X whose timer was set since the last Q(G,X-A); every other
        #: source in X has a timer at or before ``_cool_at`` (None: empty set)
        self._raised: set[IPAddress] | None = None
        self._cool_at = float("-inf")

    # -- what the state means -------------------------------------------------

    def requested(self) -> set[IPAddress]:
        """INCLUDE: the source list; EXCLUDE: X (timers running)."""
        return {s for s, at in self.sources.items() if at is not None}

    def excluded(self) -> set[IPAddress]:
        """EXCLUDE: Y (timer 0); always empty in INCLUDE mode."""
        return {s for s, at in self.sources.items() if at is None}

    def membership(self) -> tuple[FilterMode, frozenset[IPAddress]]:
        """(INCLUDE, forwarded sources) or (EXCLUDE, blocked sources Y)."""
        if self.filter_mode is INCLUDE:
            return INCLUDE, frozenset(self.sources)
        if not self._excluded:
            return EXCLUDE, frozenset()
        return EXCLUDE, frozenset(self.excluded())

    def forwards(self, source: IPAddress) -> bool:
        """RFC 3376 §6.3: INCLUDE forwards listed sources, EXCLUDE all but Y."""
        if self.filter_mode is INCLUDE:
            return source in self.sources
        return source not in self.sources or self.sources[source] is not None

    def is_empty(self) -> bool:
        """An INCLUDE record without sources is no record (§6.3: delete it)."""
        return self.filter_mode is INCLUDE and not self.sources

    def compat_mode(self, family: Family) -> CompatMode:
        """Group Compatibility Mode (RFC 3376 §7.3.2, RFC 3810 §8.3.2).

        IPv4: ``v1_host_present_at`` is IGMPv1, ``v2_host_present_at`` IGMPv2.
        IPv6: ``v1_host_present_at`` is the MLDv1 Host Present timer.
        """
        if self.v1_host_present_at is not None:
            return CompatMode.V1 if family is Family.IPV4 else CompatMode.V2
        if self.v2_host_present_at is not None:
            return CompatMode.V2
        return CompatMode.CURRENT

    def compat_version(self, family: Family) -> int:
        """The protocol version the group is in: IGMP 1/2/3, MLD 1/2."""
        if self.v1_host_present_at is not None:
            return 1
        if self.v2_host_present_at is not None:
            return 2
        return family.newest_version

    def next_deadline(self) -> float | None:
        """The earliest running timer of this record, or None."""
        heap = self._timer_heap
        sources = self.sources
        while heap and sources.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)
        earliest = heap[0][0] if heap else None
        for at in (self.group_timer_at, self.group_query_at, self.source_query_at,
                   self.v1_host_present_at, self.v2_host_present_at):
            if at is not None and (earliest is None or at < earliest):
                earliest = at
        return earliest

    def release(self) -> None:
        """Drop every source record and give them back to the budget (the group goes)."""
        self.budget.give_sources(len(self.sources))
        self.sources = {}
        self._excluded = 0
        self._timer_heap = []
        self._raised = None

    # -- RFC 3376 §6.4: the one interpreter of the table ----------------------

    def apply_row(self, row: Row, r: frozenset[IPAddress], now: float, gmi: float,
                  max_sources: int) -> tuple[bool | None, list[IPAddress], bool, str | None]:
        """Apply ``row`` for a record with sources ``r``.

        Returns (membership changed, the sources of "Send Q(G,set)" in ``r``,
        whether the set also holds X-r, None), or (None, [], False, scope)
        when the new state would exceed ``max_sources`` (scope "group") or an
        account of the budget (its scope); nothing is changed then. X-r is
        left for ``schedule_source_query`` to find. Costs O(len(r)) plus the
        sources deleted or moved outside ``r``.
        """
        plan = PLANS[id(row)]
        sources = self.sources
        if not r:
            if plan.still:
                return False, [], False, None
            if not sources:      # any-source membership: no source moves, no query
                return self._set_mode(row, now, gmi), [], False, None
        x_and_r: list[IPAddress] = []
        y_and_r: list[IPAddress] = []
        r_only: list[IPAddress] = []
        for s in r:
            at = sources.get(s, _ABSENT)
            if at is None:
                y_and_r.append(s)
            elif at is _ABSENT:
                r_only.append(s)
            else:
                x_and_r.append(s)
        in_y = self._excluded
        size = {X_ONLY: len(sources) - in_y - len(x_and_r), Y_ONLY: in_y - len(y_and_r),
                X_AND_R: len(x_and_r), Y_AND_R: len(y_and_r), R_ONLY: len(r_only)}
        fate = plan.fate
        kept = sum(n for c, n in size.items() if fate[c] is not Fate.DELETE)
        if kept > max_sources:
            return None, [], False, self.budget.refused("sources", "group")
        added = kept - len(sources)
        if added > 0:
            scope = self.budget.take_sources(added)
            if scope is not None:
                return None, [], False, scope
        if row.new_mode is INCLUDE:
            target, before = plan.in_new_x, IN_X
        else:
            target, before = plan.in_new_y, IN_Y
        changed = self.filter_mode is not row.new_mode or any(
            size[c] and (c in target) != (c in before) for c in CLASSES)
        members = {X_AND_R: x_and_r, Y_AND_R: y_and_r, R_ONLY: r_only}
        query = [s for c in plan.query if c in members for s in members[c]]
        # X-r is queried only by rows that keep it as it is (TO_IN), so the old X-r
        # is the new one and can be found after the row
        rest_of_x = X_ONLY in plan.query and size[X_ONLY] > 0
        outside = self._outside(r, plan, size)
        gmi_at = now + gmi
        group_timer_at = self.group_timer_at
        timer_gmi = plan.timer_gmi
        for s, at in outside:
            c = Y_ONLY if at is None else X_ONLY
            self._move(s, at, fate[c], (gmi_at if timer_gmi[c] else group_timer_at)
                       if c in timer_gmi else None)
        for c, listed in members.items():
            if not listed:
                continue
            at_of = (gmi_at if timer_gmi[c] else group_timer_at) if c in timer_gmi else None
            for s in listed:
                self._move(s, sources.get(s, _ABSENT), fate[c], at_of)
        if added < 0:
            self.budget.give_sources(-added)
        return self._set_mode(row, now, gmi) or changed, query, rest_of_x, None

    def _set_mode(self, row: Row, now: float, gmi: float) -> bool:
        """The row's new filter mode and group timer; True if the mode changed."""
        if row.new_mode is INCLUDE:
            self.group_timer_at = None
        elif row.group_timer_gmi:
            self.group_timer_at = now + gmi
        changed = self.filter_mode is not row.new_mode
        self.filter_mode = row.new_mode
        return changed

    def _outside(self, r: frozenset[IPAddress], plan: RowPlan, size: dict[str, int]
                 ) -> list[tuple[IPAddress, float | None]]:
        """The sources outside ``r`` the row moves, deletes or queries (in X or Y only)."""
        fate = plan.fate
        want_x = size[X_ONLY] > 0 and fate[X_ONLY] is not Fate.KEEP
        want_y = size[Y_ONLY] > 0 and fate[Y_ONLY] not in (Fate.KEEP, Fate.TO_Y)
        if not (want_x or want_y):
            return []
        return [(s, at) for s, at in self.sources.items()
                if s not in r and (want_y if at is None else want_x)]

    def _move(self, s: IPAddress, old: float | None, fate: Fate, timed_at: float | None) -> None:
        """One source's part of a row: ``old`` is its timer (None: in Y, NaN: no record)."""
        sources = self.sources
        absent = old is _ABSENT
        if fate is Fate.KEEP:
            if absent:             # a new source in X with no timer action: timer 0
                sources[s] = None
                self._excluded += 1
            return
        if fate is Fate.DELETE:
            if not absent:
                del sources[s]
                if old is None:
                    self._excluded -= 1
                elif self._raised is not None:
                    self._raised.discard(s)
            return
        new = None if fate is Fate.TO_Y else timed_at
        sources[s] = new
        self._excluded += (new is None) - (old is None)
        if new is not None:
            self._push_timer(s, new)
            if self._raised is None:
                self._raised = {s}
            else:
                self._raised.add(s)
        elif self._raised is not None:
            self._raised.discard(s)

    def _push_timer(self, s: IPAddress, at: float) -> None:
        heap = self._timer_heap
        heapq.heappush(heap, (at, s))
        if len(heap) > 2 * len(self.sources) + _HEAP_SLACK:
            self._timer_heap = [(t, source) for source, t in self.sources.items() if t is not None]
            heapq.heapify(self._timer_heap)

    # -- RFC 3376 §6.5 / §6.3: timer expiry -----------------------------------

    def expire(self, now: float) -> bool:
        """Fire the group's due timers except query retransmission; True if membership changed."""
        if self.v1_host_present_at is not None and self.v1_host_present_at <= now:
            self.v1_host_present_at = None
        if self.v2_host_present_at is not None and self.v2_host_present_at <= now:
            self.v2_host_present_at = None
        sources = self.sources
        heap = self._timer_heap
        changed = False
        gone = 0
        raised = self._raised if self._raised is not None else set()
        while heap and heap[0][0] <= now:
            at, s = heapq.heappop(heap)
            if sources.get(s) != at:
                continue
            changed = True
            raised.discard(s)
            if self.filter_mode is INCLUDE:   # §6.3: INCLUDE, timer 0 -> remove source record
                del sources[s]
                gone += 1
            else:                             # §6.3: EXCLUDE, timer 0 -> the source joins Y
                sources[s] = None
                self._excluded += 1
        if (self.filter_mode is EXCLUDE and self.group_timer_at is not None
                and self.group_timer_at <= now):
            # §6.5: group timer expiry in EXCLUDE -> INCLUDE with the sources
            # whose timers still run; Y is deleted.
            self.filter_mode = INCLUDE
            self.group_timer_at = None
            if self._excluded:
                self.sources = {s: at for s, at in sources.items() if at is not None}
                gone += self._excluded
                self._excluded = 0
            changed = True
        self.budget.give_sources(gone)
        left = self.source_queries_left
        if left:
            for s in [s for s in left if self.sources.get(s) is None]:
                del left[s]
        return changed

    # -- RFC 3376 §6.6.1 / §6.6.3: lowering timers and query state -------------

    def lower_group_timer(self, at: float) -> None:
        """Group timer lowered to ``at`` (only if running and larger)."""
        if self.group_timer_at is not None and self.group_timer_at > at:
            self.group_timer_at = at

    def lower_source_timers(self, sources: set[IPAddress] | frozenset | tuple, at: float) -> list[IPAddress]:
        """Source timers larger than ``at`` lowered to ``at``; returns those lowered."""
        lowered = []
        table = self.sources
        for s in sources:
            current = table.get(s)
            if current is not None and current > at:
                table[s] = at
                self._push_timer(s, at)
                lowered.append(s)
        return lowered

    def schedule_group_query(self, now: float, lmqt: float, count: int) -> None:
        """§6.6.3.1 "Send Q(G)": group timer to LMQT, [LMQC] transmissions due now.

        A Q(G) series already under way is kept, not restarted: a repeated leave
        (hosts retransmit theirs) adds no query (pending queries for G merged).
        """
        self.lower_group_timer(now + lmqt)
        if self.group_query_at is not None:
            return
        self.group_queries_left = count
        self.group_query_at = now

    def schedule_source_query(self, sources: list[IPAddress], now: float, lmqt: float,
                              count: int, rest_of_x_but: frozenset[IPAddress] | None = None) -> bool:
        """§6.6.3.2 "Send Q(G,X)": sources of X with timer > LMQT get [LMQC]
        retransmissions and their timers lowered to LMQT. True if any did.

        ``rest_of_x_but``: the set also holds every source of X not in it
        (TO_IN's X-A); only the sources set since the last such query are
        looked at, unless LMQT moved below the bound the others are known to
        be under.
        """
        threshold = now + lmqt
        if rest_of_x_but is not None:
            sources = list(sources)
            if self._cool_at <= threshold:
                candidates = self._raised if self._raised is not None else ()
            else:
                candidates = [s for s, at in self.sources.items() if at is not None]
            sources.extend(s for s in candidates if s not in rest_of_x_but)
        lowered = self.lower_source_timers(sources, threshold)
        if rest_of_x_but is not None:
            # every source of X outside the record is now at or before the threshold
            self._raised = {s for s in rest_of_x_but if self.sources.get(s) is not None} or None
            self._cool_at = threshold
        for s in lowered:
            self.source_queries_left[s] = count
        if lowered:
            self.source_query_at = now
        return bool(lowered)

    def query_due(self, now: float) -> bool:
        """True if a Q(G) or Q(G,X) (re)transmission is due."""
        return ((self.group_query_at is not None and self.group_query_at <= now)
                or (self.source_query_at is not None and self.source_query_at <= now))

    def take_query(self, now: float, lmqt: float, lmqi: float
                   ) -> tuple[bool | None, tuple[IPAddress, ...], tuple[IPAddress, ...]]:
        """Build the queries due now and count them down (§6.6.3.1 / §6.6.3.2).

        Q(G) and Q(G,X) keep their own retransmission schedules: a new Q(G,X)
        sends the pending sources at once without spending a Q(G) transmission.

        Returns (Q(G) with its S flag, or None if no Q(G) is due; sources with
        timer > LMQT, sent with S set; sources with timer <= LMQT, sent with S
        clear). The S-set source message is left out when a Q(G) goes at the
        same time (the note at the end of §6.6.3.2).
        """
        threshold = now + lmqt
        group_query: bool | None = None
        if self.group_query_at is not None and self.group_query_at <= now:
            self.group_queries_left -= 1
            group_query = self.group_timer_at is not None and self.group_timer_at > threshold
            self.group_query_at = now + lmqi if self.group_queries_left > 0 else None
        above: list[IPAddress] = []
        below: list[IPAddress] = []
        if self.source_query_at is None or self.source_query_at > now:
            return group_query, (), ()
        left = self.source_queries_left
        for s in sorted(left):
            at = self.sources.get(s)
            if at is None:         # deleted or moved to Y since it was scheduled
                del left[s]
                continue
            (above if at > threshold else below).append(s)
            if left[s] > 1:
                left[s] -= 1
            else:
                del left[s]
        if group_query is not None:
            above = []
        self.source_query_at = now + lmqi if left else None
        return group_query, tuple(above), tuple(below)

    def cancel_queries(self) -> None:
        """Drop pending query retransmissions (we stopped being the querier)."""
        self.group_queries_left = 0
        self.group_query_at = None
        self.source_queries_left.clear()
        self.source_query_at = None
