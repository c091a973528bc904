"""Report and query rate limits of the receive path: token buckets per link and per reporting host.

A token bucket holds at most ``burst`` tokens and gains ``rate`` tokens a
second; a message passes when a whole token is there and takes it. Each
link and family (IGMP and MLD are separate protocols with their own state)
has one bucket for reports and one for queries, and each reporting host on
a link (its source address, 0.0.0.0 and ``::`` included) has one for
reports. A report passes when both its host's
and its link's buckets hold a token, and then takes one from each: a host
over its own rate is refused without draining the link's bucket, so it
cannot starve its neighbours of more than its own share.

The host table of a link is bounded (``max_hosts`` entries, least recently
seen evicted first): spoofed sources cost a fixed amount of memory, and the
link's bucket still bounds what they get through together. Evicting a host
gives it a full bucket again when it comes back, so a full bucket (a host
idle for ``burst / rate`` seconds) loses nothing by being evicted. The link
table is bounded the same way (``max_links`` pairs of link and family).

Rates and depths come from the instance's ``Limits`` of that link at each
message, so a reload's new limits apply to the next message. Time is the
injected clock's (``IReactorTime.seconds``); nothing here schedules calls.
"""

from __future__ import annotations

from collections import OrderedDict

from mcproxy_pmip.addresses import IPAddress
from mcproxy_pmip.config.model import Limits

DEFAULT_MAX_HOSTS_PER_LINK = 256
"""Reporting hosts tracked per link; an MN link has a handful."""

DEFAULT_MAX_LINKS = 65536
"""(link, family) pairs tracked (far above the number of downstreams a MAG serves)."""


class TokenBucket:
    """Tokens that refill at a rate up to a depth; starts full (``burst`` tokens).

    Rate and depth are given at each ``refill``, so new limits apply at once.
    """

    __slots__ = ("tokens", "updated_at")

    def __init__(self, burst: int, now: float) -> None:
        self.tokens = float(burst)
        self.updated_at = now

    def refill(self, now: float, rate: float, burst: int) -> float:
        """Add what ``rate`` tokens a second earned since the last refill (at most ``burst`` held); the tokens."""
        self.tokens = min(float(burst), self.tokens + max(0.0, now - self.updated_at) * rate)
        self.updated_at = now
        return self.tokens


HOST_LIMITED = "rate_limited_host"
LINK_LIMITED = "rate_limited_link"
QUERY_LIMITED = "rate_limited_query"


class _LinkBuckets:
    """The report, query and per-host buckets of one link."""

    __slots__ = ("reports", "queries", "hosts")

    def __init__(self, limits: Limits, now: float) -> None:
        self.reports = TokenBucket(limits.report_burst, now)
        self.queries = TokenBucket(limits.report_burst, now)
        self.hosts: OrderedDict[IPAddress, TokenBucket] = OrderedDict()


class RateLimiter:
    """Admits reports and queries per link and per host, at the rates of the ``Limits`` given with each.

    ``clock`` is an ``IReactorTime``. ``hosts_evicted`` counts host buckets
    dropped to keep a link's table within ``max_hosts``.
    """

    def __init__(self, clock, *, max_hosts: int = DEFAULT_MAX_HOSTS_PER_LINK, max_links: int = DEFAULT_MAX_LINKS) -> None:
        if max_hosts < 1 or max_links < 1:
            raise ValueError("max_hosts and max_links must be at least 1")
        self._clock = clock
        self.max_hosts = max_hosts
        self.max_links = max_links
        self.hosts_evicted = 0
        self._links: OrderedDict[tuple[int, int], _LinkBuckets] = OrderedDict()

    def tracked_links(self) -> int:
        """How many (link, family) entries are held."""
        return len(self._links)

    def tracked_hosts(self, ifindex: int, version: int) -> int:
        """How many host buckets the link ``ifindex`` holds for IP ``version`` (4 or 6)."""
        link = self._links.get((ifindex, version))
        return 0 if link is None else len(link.hosts)

    def admit_report(self, ifindex: int, source: IPAddress, limits: Limits) -> str | None:
        """Take a token from ``source``'s and the link's report buckets: None, or the slug of the empty one."""
        now = self._clock.seconds()
        link = self._link((ifindex, source.version), limits, now)
        host = link.hosts.get(source)
        if host is None:
            host = TokenBucket(limits.host_report_burst, now)
            link.hosts[source] = host
            if len(link.hosts) > self.max_hosts:
                link.hosts.popitem(last=False)
                self.hosts_evicted += 1
        else:
            link.hosts.move_to_end(source)
        if host.refill(now, limits.host_report_rate, limits.host_report_burst) < 1.0:
            return HOST_LIMITED
        if link.reports.refill(now, limits.report_rate, limits.report_burst) < 1.0:
            return LINK_LIMITED
        host.tokens -= 1.0
        link.reports.tokens -= 1.0
        return None

    def admit_query(self, ifindex: int, version: int, limits: Limits) -> str | None:
        """Take a token from the link's query bucket (as deep and as fast as its report bucket): None, or a slug."""
        now = self._clock.seconds()
        bucket = self._link((ifindex, version), limits, now).queries
        if bucket.refill(now, limits.report_rate, limits.report_burst) < 1.0:
            return QUERY_LIMITED
        bucket.tokens -= 1.0
        return None

    def _link(self, key: tuple[int, int], limits: Limits, now: float) -> _LinkBuckets:
        link = self._links.get(key)
        if link is None:
            link = _LinkBuckets(limits, now)
            self._links[key] = link
            if len(self._links) > self.max_links:
                self._links.popitem(last=False)
        else:
            self._links.move_to_end(key)
        return link
