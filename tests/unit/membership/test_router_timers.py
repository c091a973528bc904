"""Timer expiry (RFC 3376 §6.3, §6.5), query retransmission (§6.6.3) and General
Queries (§6.6.2, §8.6/§8.7) of the router side, both families."""

from __future__ import annotations

import pytest

from mcproxy_pmip.membership.actions import MembershipChanged, SendQuery, Trace
from mcproxy_pmip.membership.timers import RouterOptions, Timers
from mcproxy_pmip.wire.records import FilterMode, GroupRecord
from router_support import (ALLOW, BLOCK, IS_EX, IS_IN, PLAN_IDS, PLANS, TO_IN, changed_groups,
                            general_queries, report, router, run_until, specific_queries)

INCLUDE = FilterMode.INCLUDE
EXCLUDE = FilterMode.EXCLUDE
family = pytest.mark.parametrize("plan", PLANS, ids=PLAN_IDS)


def at_times(fired, kind):
    return [(t, a) for t, a in fired if isinstance(a, kind)]


@family
def test_include_source_expiry_deletes_source_then_group(plan):
    r = router(plan)
    report(r, plan, 0.0, IS_IN, (plan.s(1),))
    report(r, plan, 100.0, ALLOW, (plan.s(2),))
    assert r.get_timer() == 260.0
    fired = run_until(r, 259.0)
    assert fired == [] and r.forwards(plan.group, plan.s(1))
    fired = run_until(r, 260.0)
    assert fired == [(260.0, MembershipChanged("down0", plan.family, plan.group))]
    assert r.membership(plan.group) == (INCLUDE, frozenset({plan.s(2)}))
    assert not r.forwards(plan.group, plan.s(1))
    fired = run_until(r, 1000.0)
    assert [t for t, _ in fired] == [360.0]
    assert r.membership(plan.group) is None and list(r.groups()) == []
    assert r.get_timer() is None


@family
def test_exclude_source_expiry_moves_source_to_y_and_group_timer_expiry(plan):
    r = router(plan)
    report(r, plan, 0.0, IS_EX, (plan.s(3),))          # group timer 260
    report(r, plan, 0.0, ALLOW, (plan.s(1),))          # S1 in X until 260
    report(r, plan, 50.0, IS_EX, (plan.s(1), plan.s(3)))  # group timer 310, S1 still 260
    assert r.membership(plan.group) == (EXCLUDE, frozenset({plan.s(3)}))
    fired = run_until(r, 260.0)
    assert [t for t, _ in fired] == [260.0]
    assert r.membership(plan.group) == (EXCLUDE, frozenset({plan.s(1), plan.s(3)}))
    assert not r.forwards(plan.group, plan.s(1)) and r.forwards(plan.group, plan.s(9))
    fired = run_until(r, 400.0)
    assert fired == [(310.0, MembershipChanged("down0", plan.family, plan.group))]
    assert r.membership(plan.group) is None


@family
def test_group_timer_expiry_switches_to_include_with_x(plan):
    r = router(plan)
    report(r, plan, 0.0, IS_EX, ())                    # group timer 260
    report(r, plan, 100.0, IS_IN, (plan.s(1),))        # X = {S1} until 360
    fired = run_until(r, 260.0)
    assert changed_groups([a for _, a in fired]) == [plan.group]
    assert r.membership(plan.group) == (INCLUDE, frozenset({plan.s(1)}))
    assert r.group_timer_at(plan.group) is None
    assert not r.forwards(plan.group, plan.s(2)) and r.forwards(plan.group, plan.s(1))
    assert r.get_timer() == 360.0


@family
def test_source_query_retransmitted_at_lmqi_then_source_expires(plan):
    r = router(plan)
    report(r, plan, 0.0, IS_IN, (plan.s(1), plan.s(2)))
    actions = report(r, plan, 10.0, BLOCK, (plan.s(1),))
    assert specific_queries(actions) == [(plan.group, (plan.s(1),), False)]
    sent = [a for a in actions if isinstance(a, SendQuery)]
    assert sent[0].max_resp_interval == 1.0 and sent[0].version == plan.family.newest_version
    fired = run_until(r, 20.0)
    assert [(t, specific_queries([a])) for t, a in fired] == [
        (11.0, [(plan.group, (plan.s(1),), False)]),
        (12.0, []),
    ]
    assert isinstance(fired[1][1], MembershipChanged)
    assert r.membership(plan.group) == (INCLUDE, frozenset({plan.s(2)}))


@family
def test_source_query_split_by_s_flag_when_a_source_was_refreshed(plan):
    r = router(plan)
    report(r, plan, 0.0, IS_IN, (plan.s(1), plan.s(2)))
    actions = report(r, plan, 10.0, BLOCK, (plan.s(1), plan.s(2)))
    assert specific_queries(actions) == [(plan.group, (plan.s(1), plan.s(2)), False)]
    report(r, plan, 10.5, ALLOW, (plan.s(1),))           # a member answers for S1
    fired = run_until(r, 11.0)
    assert [specific_queries([a]) for _, a in fired] == [
        [(plan.group, (plan.s(1),), True)], [(plan.group, (plan.s(2),), False)]]
    fired = run_until(r, 30.0)
    assert [t for t, _ in fired] == [12.0]             # S2 expires, nothing more sent
    assert r.membership(plan.group) == (INCLUDE, frozenset({plan.s(1)}))


@family
def test_pending_queries_for_one_group_are_merged(plan):
    r = router(plan)
    report(r, plan, 0.0, IS_IN, (plan.s(1), plan.s(2)))
    report(r, plan, 10.0, BLOCK, (plan.s(1),))
    actions = report(r, plan, 10.5, BLOCK, (plan.s(2),))
    assert specific_queries(actions) == [(plan.group, (plan.s(1), plan.s(2)), False)]
    assert r.get_timer() == 11.5
    fired = run_until(r, 11.9)
    assert [(t, specific_queries([a])) for t, a in fired] == [
        (11.5, [(plan.group, (plan.s(2),), False)])]


@family
def test_group_query_s_flag_set_after_a_member_answered(plan):
    r = router(plan)
    report(r, plan, 0.0, IS_EX, ())
    actions = report(r, plan, 10.0, TO_IN, ())
    assert specific_queries(actions) == [(plan.group, (), False)]
    assert r.group_timer_at(plan.group) == 12.0
    report(r, plan, 10.5, IS_EX, ())
    assert r.group_timer_at(plan.group) == 270.5
    fired = run_until(r, 100.0)
    assert [(t, specific_queries([a])) for t, a in fired] == [(11.0, [(plan.group, (), True)])]
    assert r.membership(plan.group) == (EXCLUDE, frozenset())


@family
def test_group_query_suppresses_the_s_set_source_message(plan):
    r = router(plan)
    report(r, plan, 0.0, IS_EX, ())
    report(r, plan, 0.0, ALLOW, (plan.s(1), plan.s(2)))
    report(r, plan, 10.0, TO_IN, (plan.s(1), plan.s(2)))  # X-A empty: only Q(G)
    report(r, plan, 10.0, BLOCK, (plan.s(1),))            # Q(G,{S1}) merged
    report(r, plan, 10.5, IS_EX, (plan.s(1),))            # group timer refreshed
    report(r, plan, 10.5, ALLOW, (plan.s(1),))            # S1 refreshed above LMQT
    fired = run_until(r, 11.0)
    assert [specific_queries([a]) for _, a in fired] == [[(plan.group, (), True)]]


@family
def test_startup_queries_then_one_every_query_interval(plan):
    r = router(plan, RouterOptions(timers=Timers(startup_query_interval=1.0,
                                                 startup_query_count=3)))
    first = r.start(0.0)
    assert len(general_queries(first)) == 1 and len(first) == 1
    assert first[0].max_resp_interval == 10.0 and first[0].query_interval == 125.0
    assert first[0].robustness == 2 and not first[0].suppress_router_processing
    fired = run_until(r, 500.0)
    assert [t for t, a in fired if isinstance(a, SendQuery)] == [1.0, 2.0, 127.0, 252.0, 377.0]
    assert all(a.group is None for _, a in fired)


@family
def test_default_startup_interval_is_a_quarter_of_query_interval(plan):
    r = router(plan)
    r.start(5.0)
    assert r.get_timer() == 5.0 + 31.25
    fired = run_until(r, 200.0)
    assert [t for t, _ in fired] == [36.25, 161.25]


@family
def test_stop_drops_state_and_deadlines(plan):
    r = router(plan)
    r.start(0.0)
    report(r, plan, 1.0, IS_EX, ())
    report(r, plan, 1.0, IS_IN, (plan.s(1),), group=plan.group2)
    actions = r.stop(2.0)
    assert sorted(changed_groups(actions)) == sorted([plan.group, plan.group2])
    assert list(r.groups()) == [] and r.get_timer() is None


@family
def test_link_local_scope_group_creates_no_state(plan):
    r = router(plan)
    actions = report(r, plan, 0.0, IS_EX, (), group=plan.link_local_group)
    assert [a.event for a in actions if isinstance(a, Trace)] == ["link_local_group_ignored"]
    assert list(r.groups()) == [] and r.get_timer() is None


@family
def test_group_limit(plan):
    r = router(plan, RouterOptions(max_groups=1))
    report(r, plan, 0.0, IS_EX, ())
    actions = report(r, plan, 0.0, IS_EX, (), group=plan.group2)
    assert [a.event for a in actions if isinstance(a, Trace)] == ["limit_groups_hit"]
    assert list(r.groups()) == [plan.group]


@family
def test_source_limit(plan):
    r = router(plan, RouterOptions(max_sources=2))
    report(r, plan, 0.0, IS_IN, (plan.s(1), plan.s(2)))
    actions = report(r, plan, 1.0, ALLOW, (plan.s(3),))
    assert [a.event for a in actions if isinstance(a, Trace)] == ["limit_sources_hit"]
    assert r.membership(plan.group) == (INCLUDE, frozenset({plan.s(1), plan.s(2)}))
    assert r.source_timers(plan.group)[plan.s(1)] == 260.0


@family
def test_several_records_one_membership_changed_per_group(plan):
    r = router(plan)
    records = [GroupRecord(IS_IN, plan.group, (plan.s(1),)),
               GroupRecord(ALLOW, plan.group, (plan.s(2),)),
               GroupRecord(IS_EX, plan.group2, ())]
    actions = r.handle_report(0.0, plan.family.newest_version, records, plan.host)
    assert changed_groups(actions) == [plan.group, plan.group2]
    unchanged = r.handle_report(5.0, plan.family.newest_version, records, plan.host)
    assert changed_groups(unchanged) == []


@family
def test_repeated_leave_merges_into_the_pending_group_query(plan):
    """docs/scenarios.md item 4: a host's retransmitted leave adds no query to the Q(G) series under way."""
    r = router(plan)
    report(r, plan, 0.0, IS_EX, ())
    first = report(r, plan, 10.0, TO_IN, ())
    second = report(r, plan, 10.1, TO_IN, ())
    fired = run_until(r, 13.0)
    sent = specific_queries(first) + specific_queries(second) + specific_queries([a for _, a in fired])
    assert [g for g, _, _ in sent] == [plan.group, plan.group]
    assert [t for t, a in fired if isinstance(a, SendQuery) and a.group is not None] == [11.0]
    assert r.membership(plan.group) is None
