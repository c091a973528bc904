"""A rogue querier's values are clamped (RFC 3376 §4.1.6 / §4.1.7 / §8, RFC 3810 §9).

The attack: a host with a lower address sends one query with QRV 7 and QQI
31,744 s. Unclamped, the adopted Group Membership Interval is 61.7 h and our
queries stop for as long. Configured values: robustness 2, query interval
125 s, query response interval 10 s, LMQI 1 s; the bound is ADOPTED_FACTOR
(4) x robustness x query interval + query response interval = 1,010 s.
"""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from mcproxy_pmip.membership.actions import QuerierChanged, Trace
from mcproxy_pmip.membership.querier import ADOPTED_FACTOR
from mcproxy_pmip.membership.query import Query
from mcproxy_pmip.membership.timers import RouterOptions, Timers
from router_support import IS_EX, PLAN_IDS, PLANS, general_queries, report, router

family = pytest.mark.parametrize("plan", PLANS, ids=PLAN_IDS)
BOUND = ADOPTED_FACTOR * 2 * 125.0 + 10.0


def drive(r, clock: Clock, seconds: float) -> list:
    """Advance ``clock`` by ``seconds``, firing the router's deadlines at their times."""
    end = clock.seconds() + seconds
    fired = []
    while (at := r.get_timer()) is not None and at <= end:
        clock.advance(max(0.0, at - clock.seconds()))
        fired.extend(r.handle_timer(clock.seconds()))
    clock.advance(end - clock.seconds())
    return fired


def rogue(r, plan, clock, robustness=7, query_interval=31744.0, group=None, max_resp=10.0):
    return r.handle_query(clock.seconds(), Query(plan.family.newest_version, plan.lower, max_resp,
                                                 group, robustness=robustness,
                                                 query_interval=query_interval))


@family
def test_rogue_querier_cannot_stretch_group_timers(plan):
    clock = Clock()
    r = router(plan)
    r.start(clock.seconds())
    actions = rogue(r, plan, clock)
    assert [a for a in actions if isinstance(a, QuerierChanged)]
    assert [a.event for a in actions if isinstance(a, Trace)][:1] == ["querier_values_clamped"]
    assert r.link_timers.group_membership_interval <= BOUND
    assert r.link_timers.other_querier_present_interval <= BOUND
    report(r, plan, clock.seconds(), IS_EX)
    assert r.group_timer_at(plan.group) <= clock.seconds() + BOUND
    drive(r, clock, BOUND)
    assert list(r.groups()) == []
    assert r.is_querier
    assert r.budget.counters()["querier_values_clamped"] == 1


@family
def test_clamp_keeps_qrv_and_bounds_the_product(plan):
    r = router(plan)
    clock = Clock()
    r.start(0.0)
    rogue(r, plan, clock, robustness=7, query_interval=125.0)
    assert r.link_timers.robustness == 7
    assert r.link_timers.robustness * r.link_timers.query_interval <= ADOPTED_FACTOR * 2 * 125.0
    rogue(r, plan, clock, robustness=1, query_interval=31744.0)
    assert r.link_timers.query_interval == ADOPTED_FACTOR * 125.0


@family
def test_zero_qqi_with_a_high_qrv_is_bounded_too(plan):
    r = router(plan, RouterOptions(timers=Timers(robustness=1)))
    r.start(0.0)
    rogue(r, plan, Clock(), robustness=7, query_interval=0.0)
    assert r.link_timers.group_membership_interval <= ADOPTED_FACTOR * 1 * 125.0 + 10.0


@family
def test_values_within_bounds_are_adopted_as_sent(plan):
    r = router(plan)
    r.start(0.0)
    actions = rogue(r, plan, Clock(), robustness=3, query_interval=60.0)
    assert (r.link_timers.robustness, r.link_timers.query_interval) == (3, 60.0)
    assert not [a for a in actions if isinstance(a, Trace) and a.event == "querier_values_clamped"]


@family
def test_tiny_max_resp_lowers_to_half_our_lmqi_at_least(plan):
    clock = Clock()
    r = router(plan)
    r.start(0.0)
    rogue(r, plan, clock, robustness=2, query_interval=125.0)
    report(r, plan, 0.0, IS_EX)
    clock.advance(5.0)
    rogue(r, plan, clock, robustness=2, query_interval=125.0, group=plan.group, max_resp=0.1)
    assert r.group_timer_at(plan.group) == 5.0 + 2 * 0.5
    assert r.budget.counters()["querier_max_resp_clamped"] == 1
    assert general_queries(drive(r, clock, 1.0)) == []
