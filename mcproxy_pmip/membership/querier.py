"""Querier election, the General Query schedule and the querier's timer values on one link.

RFC 3376 §6.6.2 / RFC 3810 §7.6.2: every router starts as querier; a query
from a lower address (IGMP: lowest IPv4 address; MLD: lowest link-local IPv6
address) makes it a Non-Querier and starts the Other Querier Present timer;
when that timer expires it is the querier again. The election ignores the
query's version: an IGMPv2 or MLDv1 querier with a lower address wins too.
RFC 3376 §8.6 / §8.7: after start-up, [Startup Query Count] General Queries
separated by the [Startup Query Interval], then one every [Query Interval].

RFC 3376 §4.1.6 / §4.1.7, RFC 3810 §5.1.8 / §5.1.9: a Non-Querier adopts the
QRV and QQI of the most recent query of a router that beats it in the
election (``link``), a zero field meaning our configured value; the Other
Querier Present Interval follows from them. Decisions: queries of routers
with a higher address are not the querier's and change nothing; a router
that becomes querier again (or restarts) goes back to its configured values,
the ones its own queries advertise; an IGMPv1/v2 or MLDv1 query carries no
QRV or QQI, so one from the router whose newer queries gave the values keeps
them (an IGMPv3 querier sends IGMPv2 group-specific queries to groups with
IGMPv2 hosts) and one from any other router means our configured values.

Adopted values are clamped (docs/limits.md), because any host on the link
can send a query from a low address. QRV keeps its field's range (1-7;
§4.1.6). QQI (§4.1.7 / §8.2, RFC 3810 §5.1.9 / §9.2) is lowered until QQI
<= ``ADOPTED_FACTOR`` x configured Query Interval and QRV x QQI <=
``ADOPTED_FACTOR`` x configured robustness x Query Interval. The Group
Membership and Other Querier Present Intervals derived from them (§8.4 /
§8.5, RFC 3810 §9.4 / §9.5) thus stay below ``ADOPTED_FACTOR`` times the
configured ones (1,010 s and 1,005 s at the defaults, not the 61.7 h of
QRV 7 x QQI 31,744 s): a rogue querier can neither hold state for days nor
silence our queries for long with one packet. Shorter values are adopted as
sent: they only make state expire sooner, which a querier on the link can
cause anyway by not querying. The Max Resp Time of a group-specific query
that lowers our timers (§6.6.1 / RFC 3810 §7.6.1) is raised to at least
half the configured Last Member Query Interval (``lowering_interval``), so
hosts on a lossy link keep a window to answer; a longer one cannot stretch
anything (lowering never raises a timer).

RFC 3376 §7.3.1 / RFC 3810 §8.3.1: a router not configured for an older
version that hears an IGMPv1 Query, an IGMPv2 or an MLDv1 General Query
should log a warning, rate-limited (``older_query_heard``). The daemon always
runs IGMPv3 / MLDv2, so every such query is warned about.

This module only keeps the times; ``router.RouterInterface`` turns its
answers into actions.
"""

from __future__ import annotations

from mcproxy_pmip.addresses import IPAddress
from mcproxy_pmip.membership.timers import Timers

#: At most one older-version querier warning per link in this many seconds.
OLDER_QUERIER_WARNING_INTERVAL = 60.0
#: Adopted QQI and QRV x QQI are at most this multiple of the configured values.
ADOPTED_FACTOR = 4.0
#: The Max Resp Time that lowers timers is at least this fraction of our LMQI.
LOWERING_FLOOR_FRACTION = 0.5


class QuerierState:
    """Election state, General Query deadlines and timer values of one link and family."""

    __slots__ = ("own_address", "timers", "election", "is_querier", "other_querier", "link",
                 "general_query_at", "startup_queries_left", "other_querier_present_at",
                 "older_warning_at", "older_warnings_held")

    def __init__(self, own_address: IPAddress | None, timers: Timers, election: bool) -> None:
        self.own_address = own_address
        self.timers = timers
        self.election = election
        self.is_querier = True
        self.other_querier: IPAddress | None = None
        self.link = timers.link
        self.general_query_at: float | None = None
        self.startup_queries_left = 0
        self.other_querier_present_at: float | None = None
        self.older_warning_at: float | None = None
        self.older_warnings_held = 0

    def start(self, now: float) -> None:
        """Start-up (§8.6/§8.7): the caller sends the first General Query at ``now``."""
        self.is_querier = True
        self.other_querier = None
        self.link = self.timers.link
        self.other_querier_present_at = None
        self.startup_queries_left = self.timers.startup_count - 1
        self._schedule_next(now)

    def stop(self) -> None:
        self.link = self.timers.link
        self.general_query_at = None
        self.other_querier_present_at = None
        self.startup_queries_left = 0

    def next_deadline(self) -> float | None:
        if self.general_query_at is not None:
            return self.general_query_at
        return self.other_querier_present_at

    def general_query_due(self, now: float) -> bool:
        """True if a General Query is to be sent now; schedules the next one."""
        if self.general_query_at is None or self.general_query_at > now:
            return False
        if self.startup_queries_left > 0:
            self.startup_queries_left -= 1
        self._schedule_next(now)
        return True

    def other_querier_expired(self, now: float) -> bool:
        """Other Querier Present timer expiry: we are the querier again, with our
        configured values (the caller sends a General Query at once). True if
        that happened."""
        if self.other_querier_present_at is None or self.other_querier_present_at > now:
            return False
        self.other_querier_present_at = None
        self.is_querier = True
        self.other_querier = None
        self.link = self.timers.link
        self.startup_queries_left = 0
        self._schedule_next(now)
        return True

    def query_received(self, now: float, source: IPAddress, values: tuple[int, float] | None
                       ) -> bool:
        """A query from ``source``; ``values`` its QRV and QQI, None for an
        older-version query, which carries neither. True if we stopped being
        the querier."""
        if not self.election or not self._wins(source):
            return False
        was_querier = self.is_querier
        if values is not None:
            self.link = self.timers.link.adopt(*values)
        elif was_querier or source != self.other_querier:
            self.link = self.timers.link
        self.is_querier = False
        self.other_querier = source
        self.general_query_at = None
        self.startup_queries_left = 0
        self.other_querier_present_at = now + self.link.other_querier_present_interval
        return was_querier

    def clamp(self, robustness: int, query_interval: float) -> tuple[int, float]:
        """A query's QRV and QQI as this link accepts them (0 stays 0: "use the
        configured value"): QQI lowered to the bounds of ``ADOPTED_FACTOR``."""
        timers = self.timers
        limit = ADOPTED_FACTOR * timers.query_interval
        qqi = query_interval or timers.query_interval
        bounded = min(qqi, limit, limit * timers.robustness / (robustness or timers.robustness))
        return robustness, (query_interval if bounded == qqi else bounded)

    def lowering_interval(self, max_resp_interval: float) -> float:
        """The interval a Non-Querier lowers timers by per count (§6.6.1): the query's
        Max Resp Time, at least ``LOWERING_FLOOR_FRACTION`` of the configured LMQI;
        0 means the adopted LMQI."""
        if max_resp_interval <= 0:
            return self.link.last_member_query_interval
        return max(max_resp_interval,
                   LOWERING_FLOOR_FRACTION * self.timers.last_member_query_interval)

    def older_query_heard(self, now: float) -> int | None:
        """An older-version General Query was heard (§7.3.1 / RFC 3810 §8.3.1).

        None while warnings are held back, else how many were held back since
        the previous warning (the caller warns now).
        """
        if self.older_warning_at is not None and now < self.older_warning_at:
            self.older_warnings_held += 1
            return None
        held = self.older_warnings_held
        self.older_warnings_held = 0
        self.older_warning_at = now + OLDER_QUERIER_WARNING_INTERVAL
        return held

    def _wins(self, source: IPAddress) -> bool:
        """True if ``source`` beats us in the election (lower address).

        The unspecified address (snooping switches' queries) never wins; with
        no own address, any other querier does.
        """
        if source.is_unspecified or source == self.own_address:
            return False
        if self.own_address is None:
            return True
        return int(source) < int(self.own_address)

    def _schedule_next(self, now: float) -> None:
        interval = (self.timers.startup_interval if self.startup_queries_left > 0
                    else self.timers.query_interval)
        self.general_query_at = now + interval
