"""Older-version host compatibility (RFC 3376 §7.3.2, RFC 3810 §8.3.2), older-version
queries, and context transfer (export/import)."""

from __future__ import annotations

import pytest

from mcproxy_pmip.addresses import Family
from mcproxy_pmip.membership.actions import SendQuery, Trace
from mcproxy_pmip.membership.timers import RouterOptions
from mcproxy_pmip.wire.records import FilterMode, GroupRecord
from router_support import (ALLOW, BLOCK, IPV4, IS_EX, IS_IN, PLAN_IDS, PLANS, TO_EX, TO_IN,
                            general_queries, report, router, run_until, specific_queries)

family = pytest.mark.parametrize("plan", PLANS, ids=PLAN_IDS)
INCLUDE = FilterMode.INCLUDE
EXCLUDE = FilterMode.EXCLUDE


def older(plan):
    return plan.family.newest_version - 1


@family
def test_older_report_sets_host_present_for_260s(plan):
    r = router(plan)
    report(r, plan, 0.0, IS_EX, version=older(plan))
    report(r, plan, 200.0, IS_EX)                      # a current host keeps the group
    assert r.compat_version(plan.group) == older(plan)
    run_until(r, 259.9)
    assert r.compat_version(plan.group) == older(plan)
    run_until(r, 260.0)
    assert r.compat_version(plan.group) == plan.family.newest_version
    assert r.membership(plan.group) == (EXCLUDE, frozenset())


@family
def test_block_ignored_in_older_mode_and_honoured_after(plan):
    r = router(plan)
    report(r, plan, 0.0, IS_EX, version=older(plan))
    report(r, plan, 0.0, ALLOW, (plan.s(1),))
    actions = report(r, plan, 10.0, BLOCK, (plan.s(1),))
    assert specific_queries(actions) == [] and r.source_timers(plan.group)[plan.s(1)] == 260.0
    report(r, plan, 250.0, IS_EX, (plan.s(1),))       # group kept past 260
    report(r, plan, 250.0, ALLOW, (plan.s(1),))       # S1 kept past 260
    run_until(r, 260.0)
    actions = report(r, plan, 270.0, BLOCK, (plan.s(1),))
    assert specific_queries(actions) == [(plan.group, (plan.s(1),), False)]


@family
def test_to_ex_source_list_ignored_in_older_mode(plan):
    r = router(plan)
    report(r, plan, 0.0, IS_EX, version=older(plan))
    report(r, plan, 10.0, TO_EX, (plan.s(1),))
    assert r.membership(plan.group) == (EXCLUDE, frozenset())
    assert r.forwards(plan.group, plan.s(1))
    fresh = router(plan)
    report(fresh, plan, 10.0, TO_EX, (plan.s(1),))
    assert fresh.membership(plan.group) == (EXCLUDE, frozenset({plan.s(1)}))


@family
def test_no_source_specific_query_to_an_older_group(plan):
    r = router(plan)
    report(r, plan, 0.0, IS_EX, version=older(plan))
    report(r, plan, 0.0, ALLOW, (plan.s(1),))
    actions = report(r, plan, 10.0, TO_IN)             # Q(G,{S1}) and Q(G)
    assert specific_queries(actions) == [(plan.group, (), False)]
    assert [a.version for a in actions if isinstance(a, SendQuery)] == [older(plan)]
    assert r.source_timers(plan.group)[plan.s(1)] == 260.0


@family
def test_queries_in_newest_version_when_so_configured(plan):
    r = router(plan, RouterOptions(older_version_queries=False))
    report(r, plan, 0.0, IS_EX, version=older(plan))
    report(r, plan, 0.0, ALLOW, (plan.s(1),))
    assert general_queries(r.start(1.0))[0].version == plan.family.newest_version
    actions = report(r, plan, 10.0, TO_IN)
    assert specific_queries(actions) == [(plan.group, (), False), (plan.group, (plan.s(1),), False)]
    assert {a.version for a in actions if isinstance(a, SendQuery)} == {plan.family.newest_version}


@family
def test_general_query_in_oldest_version_on_the_link(plan):
    r = router(plan)
    report(r, plan, 0.0, IS_EX)
    report(r, plan, 0.0, IS_EX, version=older(plan), group=plan.group2)
    assert r.link_version() == older(plan)
    assert general_queries(r.start(0.0))[0].version == older(plan)


def test_igmpv1_mode_ignores_leaves_and_to_in():
    plan = IPV4
    r = router(plan)
    report(r, plan, 0.0, IS_EX, version=1)
    assert r.compat_version(plan.group) == 1
    assert report(r, plan, 10.0, TO_IN, version=2) == []
    assert report(r, plan, 10.0, TO_IN, (plan.s(1),)) == []
    assert r.group_timer_at(plan.group) == 260.0
    assert general_queries(r.start(11.0))[0].version == 1


def test_igmpv2_report_in_igmpv1_mode_keeps_v1():
    plan = IPV4
    r = router(plan)
    report(r, plan, 0.0, IS_EX, version=1)
    report(r, plan, 100.0, IS_EX, version=2)
    run_until(r, 260.0)
    assert r.compat_version(plan.group) == 2
    run_until(r, 360.0)
    assert r.membership(plan.group) is None


@family
def test_unknown_version_is_traced(plan):
    r = router(plan)
    actions = report(r, plan, 0.0, IS_EX, version=plan.family.newest_version + 1)
    assert [a.event for a in actions if isinstance(a, Trace)] == ["record_ignored"]
    assert list(r.groups()) == []


@family
def test_export_and_import_round_trip(plan):
    a = router(plan)
    report(a, plan, 0.0, IS_IN, (plan.s(1), plan.s(2)))
    report(a, plan, 0.0, IS_EX, (plan.s(3),), group=plan.group2)
    version, records = a.export_records(5.0)
    assert version == plan.family.newest_version
    assert set(records) == {GroupRecord(IS_IN, plan.group, tuple(sorted((plan.s(1), plan.s(2))))),
                            GroupRecord(IS_EX, plan.group2, (plan.s(3),))}
    b = router(plan)
    actions = b.import_records(100.0, version, records)
    assert not any(isinstance(x, SendQuery) for x in actions)
    for g in (plan.group, plan.group2):
        assert b.membership(g) == a.membership(g)
    assert b.group_timer_at(plan.group2) == 360.0
    assert b.source_timers(plan.group)[plan.s(1)] == 360.0


@family
def test_import_keeps_older_version_and_ignores_state_changes(plan):
    r = router(plan)
    records = (GroupRecord(IS_EX, plan.group), GroupRecord(TO_IN, plan.group2, (plan.s(1),)))
    actions = r.import_records(0.0, older(plan), records)
    assert [x.event for x in actions if isinstance(x, Trace)] == ["record_ignored"]
    assert r.compat_version(plan.group) == older(plan)
    assert r.export_records(1.0) == (older(plan), (GroupRecord(IS_EX, plan.group),))
    assert list(r.groups()) == [plan.group]
    assert r.family in (Family.IPV4, Family.IPV6)
