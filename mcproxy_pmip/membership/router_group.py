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
"""

from __future__ import annotations

from mcproxy_pmip.addresses import Family, IPAddress
from mcproxy_pmip.membership.router_table import CompatMode, Row, TimerValue
from mcproxy_pmip.wire.records import FilterMode

INCLUDE = FilterMode.INCLUDE
EXCLUDE = FilterMode.EXCLUDE


class RouterGroup:
    """The state of one group on one link (RFC 3376 §6.2.1)."""

    __slots__ = ("group", "filter_mode", "group_timer_at", "sources", "v1_host_present_at",
                 "v2_host_present_at", "group_query_at", "group_queries_left", "source_query_at",
                 "source_queries_left")

    def __init__(self, group: IPAddress) -> None:
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
        candidates = [at for at in self.sources.values() if at is not None]
        for at in (self.group_timer_at, self.group_query_at, self.source_query_at,
                   self.v1_host_present_at, self.v2_host_present_at):
            if at is not None:
                candidates.append(at)
        return min(candidates) if candidates else None

    # -- RFC 3376 §6.4: the one interpreter of the table ----------------------

    def apply_row(self, row: Row, r: frozenset[IPAddress], now: float, gmi: float,
                  max_sources: int) -> tuple[bool | None, set[IPAddress] | frozenset]:
        """Apply ``row`` for a record with sources ``r``.

        Returns (membership changed, the sources of "Send Q(G,set)"), or
        (None, empty) when the new state would exceed ``max_sources`` (nothing
        is changed then).
        """
        old = self.sources
        x = self.requested() if old else set()
        y = old.keys() - x if old else set()
        new_x = row.new_x(x, y, r)
        new_y = row.new_y(x, y, r)
        if len(new_x) + len(new_y) > max_sources:
            return None, frozenset()
        sources: dict[IPAddress, float | None] = {s: old.get(s) for s in new_x}
        for s in new_y:
            sources[s] = None
        for expr, value in row.source_timers:
            at = now + gmi if value is TimerValue.GMI else self.group_timer_at
            for s in expr(x, y, r):
                sources[s] = at
        if row.new_mode is INCLUDE:
            changed = self.filter_mode is EXCLUDE or new_x != x
            self.group_timer_at = None
        else:
            changed = self.filter_mode is INCLUDE or new_y != y
            if row.group_timer_gmi:
                self.group_timer_at = now + gmi
        self.filter_mode = row.new_mode
        self.sources = sources
        query = row.query_sources(x, y, r) if row.query_sources is not None else frozenset()
        return changed, query

    # -- RFC 3376 §6.5 / §6.3: timer expiry -----------------------------------

    def expire(self, now: float) -> bool:
        """Fire the group's due timers except query retransmission; True if membership changed."""
        if self.v1_host_present_at is not None and self.v1_host_present_at <= now:
            self.v1_host_present_at = None
        if self.v2_host_present_at is not None and self.v2_host_present_at <= now:
            self.v2_host_present_at = None
        due = [s for s, at in self.sources.items() if at is not None and at <= now]
        changed = bool(due)
        if self.filter_mode is INCLUDE:
            for s in due:          # §6.3: INCLUDE, timer 0 -> remove source record
                del self.sources[s]
        else:
            for s in due:          # §6.3: EXCLUDE, timer 0 -> the source joins Y
                self.sources[s] = None
            if self.group_timer_at is not None and self.group_timer_at <= now:
                # §6.5: group timer expiry in EXCLUDE -> INCLUDE with the sources
                # whose timers still run; Y is deleted.
                self.filter_mode = INCLUDE
                self.group_timer_at = None
                self.sources = {s: at for s, at in self.sources.items() if at is not None}
                changed = True
        for s in [s for s in self.source_queries_left if s not in self.sources
                  or self.sources[s] is None]:
            del self.source_queries_left[s]
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

    def schedule_source_query(self, sources: set[IPAddress] | frozenset, now: float, lmqt: float,
                              count: int) -> bool:
        """§6.6.3.2 "Send Q(G,X)": sources of X with timer > LMQT get [LMQC]
        retransmissions and their timers lowered to LMQT. True if any did."""
        lowered = self.lower_source_timers(sources, now + lmqt)
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
