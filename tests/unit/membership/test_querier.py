"""Querier election (RFC 3376 §6.6.2, RFC 3810 §7.6.2) and a Non-Querier's timer
updates on received queries (RFC 3376 §6.6.1), both families."""

from __future__ import annotations

import pytest

from mcproxy_pmip.membership.actions import MembershipChanged, QuerierChanged
from mcproxy_pmip.membership.query import Query
from mcproxy_pmip.membership.router import RouterInterface
from mcproxy_pmip.membership.timers import RouterOptions
from mcproxy_pmip.wire.records import FilterMode
from router_support import (ALLOW, IS_EX, PLAN_IDS, PLANS, TO_IN, changed_groups,
                            general_queries, report, router, run_until, specific_queries)

family = pytest.mark.parametrize("plan", PLANS, ids=PLAN_IDS)


def query(r, plan, now, source, group=None, sources=(), suppress=False, max_resp=10.0,
          robustness=2):
    return r.handle_query(now, Query(plan.family.newest_version, source, max_resp, group,
                                     tuple(sources), suppress, robustness, 125.0))


@family
def test_query_from_higher_address_changes_nothing(plan):
    r = router(plan)
    r.start(0.0)
    assert query(r, plan, 5.0, plan.higher) == []
    assert r.is_querier and r.get_timer() == 31.25


@family
def test_query_from_own_or_unspecified_address_is_no_contender(plan):
    r = router(plan)
    r.start(0.0)
    assert query(r, plan, 5.0, plan.own) == []
    assert query(r, plan, 5.0, plan.family.unspecified) == []
    assert r.is_querier


@family
def test_lower_address_wins_and_other_querier_timer_restarts(plan):
    r = router(plan)
    r.start(0.0)
    actions = query(r, plan, 5.0, plan.lower)
    assert actions == [QuerierChanged("down0", plan.family, False, plan.lower)]
    assert not r.is_querier and r.get_timer() == 5.0 + 255.0
    assert query(r, plan, 100.0, plan.lower) == []        # still non-querier, timer restarted
    assert r.get_timer() == 355.0
    fired = run_until(r, 355.0)
    assert [a for _, a in fired if isinstance(a, QuerierChanged)] == [
        QuerierChanged("down0", plan.family, True, None)]
    assert [t for t, a in fired if a in general_queries([a])] == [355.0]
    assert r.is_querier and r.get_timer() == 480.0


@family
def test_without_own_address_any_other_querier_wins(plan):
    r = RouterInterface("down0", plan.family, None, RouterOptions())
    r.start(0.0)
    query(r, plan, 1.0, plan.higher)
    assert not r.is_querier


@family
def test_election_disabled_keeps_querying(plan):
    r = router(plan, RouterOptions(querier_election=False))
    r.start(0.0)
    assert query(r, plan, 1.0, plan.lower) == []
    assert r.is_querier and r.get_timer() == 31.25


@family
def test_losing_the_election_cancels_pending_group_queries(plan):
    r = router(plan)
    report(r, plan, 0.0, IS_EX)
    report(r, plan, 10.0, TO_IN)
    actions = query(r, plan, 10.5, plan.lower)
    assert changed_groups(actions) == [plan.group]
    fired = run_until(r, 12.0)
    assert specific_queries([a for _, a in fired]) == []
    assert r.membership(plan.group) is None               # group timer was already at LMQT


@family
def test_non_querier_sends_no_queries_and_keeps_timers_on_leave(plan):
    r = router(plan)
    report(r, plan, 0.0, IS_EX)
    query(r, plan, 1.0, plan.lower)
    actions = report(r, plan, 10.0, TO_IN)
    assert specific_queries(actions) == []
    assert r.group_timer_at(plan.group) == 260.0


@family
def test_non_querier_lowers_group_timer_on_group_query(plan):
    r = router(plan)
    report(r, plan, 0.0, IS_EX)
    query(r, plan, 1.0, plan.lower)
    query(r, plan, 10.0, plan.lower, group=plan.group, suppress=True, max_resp=1.0)
    assert r.group_timer_at(plan.group) == 260.0          # S set: no update
    query(r, plan, 10.0, plan.lower, group=plan.group, max_resp=0.5, robustness=3)
    assert r.group_timer_at(plan.group) == 11.5           # QRV x Max Resp Time
    assert r.get_timer() == 11.5
    fired = run_until(r, 11.5)
    assert changed_groups([a for _, a in fired]) == [plan.group]
    assert r.membership(plan.group) is None


@family
def test_non_querier_lowers_source_timers_on_group_and_source_query(plan):
    r = router(plan)
    report(r, plan, 0.0, ALLOW, (plan.s(1), plan.s(2)))
    query(r, plan, 1.0, plan.lower)
    query(r, plan, 10.0, plan.lower, group=plan.group, sources=(plan.s(1), plan.s(7)),
          max_resp=1.0)
    assert r.source_timers(plan.group) == {plan.s(1): 12.0, plan.s(2): 260.0}


@family
def test_querier_ignores_group_queries_of_higher_routers(plan):
    r = router(plan)
    report(r, plan, 0.0, IS_EX)
    query(r, plan, 10.0, plan.higher, group=plan.group, max_resp=1.0)
    assert r.group_timer_at(plan.group) == 260.0


@family
def test_forward_when_not_querier_option(plan):
    r = router(plan, RouterOptions(forward_when_not_querier=True))
    report(r, plan, 0.0, IS_EX)
    actions = query(r, plan, 1.0, plan.lower)
    assert not any(isinstance(a, MembershipChanged) for a in actions)
    assert r.forwards(plan.group, plan.s(1))
    assert r.membership(plan.group) == (FilterMode.EXCLUDE, frozenset())
