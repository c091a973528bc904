"""Rate-limited warnings of the IO layer: an engine limit hit and a report flood log once per interval."""

from __future__ import annotations

import logging

from twisted.internet.task import Clock

from mcproxy_pmip.addresses import Family
from mcproxy_pmip.membership.actions import Trace
from mcproxy_pmip.proxy.dispatch import ActionDispatcher
from mcproxy_pmip.ratelog import LOG_INTERVAL, RateLimitedLog


def test_a_thousand_limit_traces_log_one_warning_then_one_summary(caplog) -> None:
    clock = Clock()
    dispatcher = ActionDispatcher("i", clock, sender=None, forwarding=lambda: None,
                                  on_change=lambda family, group: None)
    trace = Trace("limit_groups_hit", (("interface", "d1"), ("family", Family.IPV4.name)), warning=True)
    with caplog.at_level(logging.DEBUG, logger="mcproxy_pmip.proxy.dispatch"):
        dispatcher.apply([trace] * 1000)
        clock.advance(LOG_INTERVAL)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["engine_limit_groups_hit instance=i interface=d1 family=IPV4",
                        f"engine_warnings_suppressed reason=limit_groups_hit suppressed=999 interval={LOG_INTERVAL:g}"]


def test_debug_traces_are_not_rate_limited_and_not_warnings(caplog) -> None:
    clock = Clock()
    dispatcher = ActionDispatcher("i", clock, sender=None, forwarding=lambda: None,
                                  on_change=lambda family, group: None)
    with caplog.at_level(logging.DEBUG, logger="mcproxy_pmip.proxy.dispatch"):
        dispatcher.apply([Trace("record_ignored", (("group", "239.1.1.1"),))] * 3)
    assert [r.levelno for r in caplog.records] == [logging.DEBUG] * 3
    assert clock.getDelayedCalls() == []


def test_cancel_drops_pending_summaries() -> None:
    clock = Clock()
    limiter = RateLimitedLog(logging.getLogger("test"), clock, interval=10, summary="x")
    limiter.event("a", "one")
    limiter.event("a", "two")
    limiter.close()
    assert clock.getDelayedCalls() == [] and limiter.counts["a"] == 2
