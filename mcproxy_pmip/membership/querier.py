"""Querier election and the General Query schedule of one link.

RFC 3376 §6.6.2 / RFC 3810 §7.6.2: every router starts as querier; a query
from a lower address (IGMP: lowest IPv4 address; MLD: lowest link-local IPv6
address) makes it a Non-Querier and starts the Other Querier Present timer;
when that timer expires it is the querier again. RFC 3376 §8.6 / §8.7: after
start-up, [Startup Query Count] General Queries separated by the [Startup
Query Interval], then one every [Query Interval].

This module only keeps the times; ``router.RouterInterface`` turns its
answers into actions.
"""

from __future__ import annotations

from mcproxy_pmip.addresses import IPAddress
from mcproxy_pmip.membership.timers import Timers


class QuerierState:
    """Election state and General Query deadlines of one link and family."""

    __slots__ = ("own_address", "timers", "election", "is_querier", "other_querier",
                 "general_query_at", "startup_queries_left", "other_querier_present_at")

    def __init__(self, own_address: IPAddress | None, timers: Timers, election: bool) -> None:
        self.own_address = own_address
        self.timers = timers
        self.election = election
        self.is_querier = True
        self.other_querier: IPAddress | None = None
        self.general_query_at: float | None = None
        self.startup_queries_left = 0
        self.other_querier_present_at: float | None = None

    def start(self, now: float) -> None:
        """Start-up (§8.6/§8.7): the caller sends the first General Query at ``now``."""
        self.is_querier = True
        self.other_querier = None
        self.other_querier_present_at = None
        self.startup_queries_left = self.timers.startup_count - 1
        self._schedule_next(now)

    def stop(self) -> None:
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
        """Other Querier Present timer expiry: we are the querier again (the
        caller sends a General Query at once). True if that happened."""
        if self.other_querier_present_at is None or self.other_querier_present_at > now:
            return False
        self.other_querier_present_at = None
        self.is_querier = True
        self.other_querier = None
        self.startup_queries_left = 0
        self._schedule_next(now)
        return True

    def query_received(self, now: float, source: IPAddress) -> bool:
        """A query from ``source`` (§6.6.2). True if we stopped being the querier."""
        if not self.election or not self._wins(source):
            return False
        was_querier = self.is_querier
        self.is_querier = False
        self.other_querier = source
        self.general_query_at = None
        self.startup_queries_left = 0
        self.other_querier_present_at = now + self.timers.other_querier_present_interval
        return was_querier

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
