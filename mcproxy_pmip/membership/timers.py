"""Timer and counter values of IGMPv3 / MLDv2, their RFC defaults and derived intervals.

RFC 3376 §8 and RFC 3810 §9 (identical defaults). All durations in seconds.
``Timers`` are the configured values; ``LinkTimers`` the values a router
derives its intervals from on one link, which a Non-Querier takes partly
from the querier's queries (RFC 3376 §4.1.6 / §4.1.7, RFC 3810 §5.1.8 /
§5.1.9). ``RouterOptions`` carries per-interface router-side settings,
``HostOptions`` the upstream host side.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property


@dataclass(frozen=True, slots=True)
class Timers:
    """The configurable protocol variables; unset optional values derive from the others."""

    robustness: int = 2
    query_interval: float = 125.0
    query_response_interval: float = 10.0
    last_member_query_interval: float = 1.0
    last_member_query_count: int | None = None
    startup_query_interval: float | None = None
    startup_query_count: int | None = None
    unsolicited_report_interval: float = 1.0

    def __post_init__(self) -> None:
        if self.robustness < 1:
            raise ValueError("robustness must be at least 1")
        if self.query_response_interval >= self.query_interval:
            raise ValueError("query_response_interval must be less than query_interval")
        for name in ("query_interval", "query_response_interval", "last_member_query_interval",
                     "unsolicited_report_interval"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")

    @property
    def link(self) -> LinkTimers:
        """These values as the intervals of a link where we are the querier."""
        return LinkTimers(self.robustness, self.query_interval, self.query_response_interval,
                          self.last_member_query_interval, self.last_member_query_count)

    @property
    def lmq_count(self) -> int:
        """Last Member Query Count (§8.7/§9.7): defaults to robustness."""
        return self.link.lmq_count

    @property
    def startup_interval(self) -> float:
        """Startup Query Interval (§8.6): defaults to a quarter of the query interval."""
        return self.startup_query_interval if self.startup_query_interval is not None else self.query_interval / 4

    @property
    def startup_count(self) -> int:
        """Startup Query Count (§8.7): defaults to robustness."""
        return self.startup_query_count if self.startup_query_count is not None else self.robustness

    @property
    def group_membership_interval(self) -> float:
        """GMI / MALI (§8.4): robustness × query interval + query response interval (260 s)."""
        return self.link.group_membership_interval

    @property
    def other_querier_present_interval(self) -> float:
        """§8.5: robustness × query interval + half the query response interval (255 s)."""
        return self.link.other_querier_present_interval

    @property
    def older_host_present_interval(self) -> float:
        """§8.13 / MLD Older Version Host Present Timeout (260 s)."""
        return self.link.older_host_present_interval

    @property
    def last_member_query_time(self) -> float:
        """LMQT (§8.14): last member query interval × count (2 s)."""
        return self.link.last_member_query_time


@dataclass(frozen=True)
class LinkTimers:
    """The values a router derives its intervals from on one link.

    While it is the querier, its configured ``Timers`` (``Timers.link``). As
    a Non-Querier, ``adopt`` takes the Robustness Variable from the QRV of the
    most recent query of the querier (RFC 3376 §4.1.6, RFC 3810 §5.1.8) and
    the Query Interval from its QQI (RFC 3376 §4.1.7, RFC 3810 §5.1.9); the
    Query Response Interval and the Last Member Query Interval stay
    configured (the RFCs have no field that carries them). Not validated like
    ``Timers``: a querier's QQI may be shorter than our Query Response Interval.
    The derived intervals are computed once per object (they sit on the
    per-record path of the router); hence no ``slots``.
    """

    robustness: int
    query_interval: float
    query_response_interval: float
    last_member_query_interval: float
    last_member_query_count: int | None

    def adopt(self, robustness: int, query_interval: float) -> LinkTimers:
        """These values with a query's QRV and QQI in place, each unless it is 0
        (QRV 0: the querier's robustness exceeds 7; then ours counts)."""
        return replace(self, robustness=robustness or self.robustness,
                       query_interval=query_interval or self.query_interval)

    @cached_property
    def lmq_count(self) -> int:
        """Last Member Query Count (§8.7/§9.7): defaults to robustness."""
        return self.last_member_query_count if self.last_member_query_count is not None else self.robustness

    @cached_property
    def group_membership_interval(self) -> float:
        """GMI / MALI (§8.4 / RFC 3810 §9.4): robustness × query interval + query response interval."""
        return self.robustness * self.query_interval + self.query_response_interval

    @cached_property
    def other_querier_present_interval(self) -> float:
        """§8.5 / RFC 3810 §9.5: robustness × query interval + half the query response interval."""
        return self.robustness * self.query_interval + self.query_response_interval / 2

    @cached_property
    def older_host_present_interval(self) -> float:
        """§8.13 / RFC 3810 §9.13: robustness × query interval + query response interval."""
        return self.robustness * self.query_interval + self.query_response_interval

    @cached_property
    def last_member_query_time(self) -> float:
        """LMQT (§8.14) / LLQT (RFC 3810 §9.10): last member query interval × count."""
        return self.last_member_query_interval * self.lmq_count


#: RFC 6636 §4.4 / docs/scenarios.md item 3: the PMIPv6 profile's faster start-up queries.
PMIPV6_TIMERS = Timers(startup_query_interval=1.0)


@dataclass(frozen=True, slots=True)
class RouterOptions:
    """Router-side settings of one downstream interface.

    ``older_version_queries``: send queries in the oldest version present on the
    link (RFC 3376 §7.3.1); ``querier_election``: take part in the election
    (when False the proxy always queries); ``forward_when_not_querier``: RFC
    4605 §4 says a non-querier proxy does not forward to that link (False).
    ``max_groups`` / ``max_sources`` / ``max_link_sources``: state limits per
    interface, per group and over all groups of the interface (docs/limits.md);
    a record beyond them is ignored, counted and reported as a ``Trace``.
    """

    timers: Timers = field(default_factory=Timers)
    older_version_queries: bool = True
    querier_election: bool = True
    forward_when_not_querier: bool = False
    max_groups: int = 256
    max_sources: int = 64
    max_link_sources: int = 1024


@dataclass(frozen=True, slots=True)
class HostOptions:
    """Host-side settings of the upstream interface (RFC 3376 §5 / RFC 3810 §6).

    ``newest_version``: the newest protocol version the host speaks (IGMP 1-3, MLD
    1-2; None: the family's newest). A host of an older version stays in that
    version's compatibility mode whatever the querier sends.
    """

    robustness: int = 2
    unsolicited_report_interval: float = 1.0
    newest_version: int | None = None
