"""A Non-Querier's timer values (RFC 3376 §4.1.6 / §4.1.7, RFC 3810 §5.1.8 / §5.1.9)
and older-version queriers (RFC 3376 §7.3.1, RFC 3810 §8.3.1), both families.

Configured values throughout: robustness 2, query interval 125 s, query
response interval 10 s, LMQI 1 s (GMI 260 s, OQPI 255 s).
"""

from __future__ import annotations

import ipaddress

import pytest

from mcproxy_pmip.addresses import Family
from mcproxy_pmip.membership.actions import QuerierChanged, Trace
from mcproxy_pmip.membership.querier import OLDER_QUERIER_WARNING_INTERVAL
from mcproxy_pmip.membership.query import Query
from mcproxy_pmip.membership.timers import RouterOptions, Timers
from router_support import (IPV4, IS_EX, IS_IN, PLAN_IDS, PLANS, general_queries, report, router,
                            run_until)

family = pytest.mark.parametrize("plan", PLANS, ids=PLAN_IDS)


def query(r, plan, now, source, *, version=None, group=None, max_resp=10.0, robustness=2,
          query_interval=125.0):
    return r.handle_query(now, Query(version or plan.family.newest_version, source, max_resp,
                                     group, robustness=robustness,
                                     query_interval=query_interval))


def older(plan):
    """IGMPv2 / MLDv1."""
    return plan.family.newest_version - 1


def second_lower(plan):
    """Another router below us (and above ``plan.lower``)."""
    return ipaddress.ip_address(int(plan.lower) + 1)


def traces(actions, event):
    return [a for a in actions if isinstance(a, Trace) and a.event == event]


def values(r):
    return r.link_timers.robustness, r.link_timers.query_interval


# -- RFC 3376 §4.1.6 / §4.1.7, RFC 3810 §5.1.8 / §5.1.9 ------------------------------

@family
def test_non_querier_adopts_qrv_and_qqi_and_derives_its_intervals(plan):
    r = router(plan)
    r.start(0.0)
    actions = query(r, plan, 5.0, plan.lower, robustness=3, query_interval=20.0)
    assert QuerierChanged("down0", plan.family, False, plan.lower) in actions
    [adopted] = traces(actions, "querier_values_adopted")
    assert ("robustness", 3) in adopted.fields and ("query_interval", 20.0) in adopted.fields
    assert values(r) == (3, 20.0)
    assert r.get_timer() == 5.0 + 3 * 20.0 + 10.0 / 2          # OQPI 65 s
    report(r, plan, 10.0, IS_EX)
    assert r.group_timer_at(plan.group) == 10.0 + 3 * 20.0 + 10.0   # GMI 70 s
    report(r, plan, 10.0, IS_IN, (plan.s(1),), group=plan.group2)
    assert r.source_timers(plan.group2) == {plan.s(1): 80.0}


@family
def test_older_host_present_interval_follows_the_adopted_values(plan):
    r = router(plan)
    query(r, plan, 0.0, plan.lower, robustness=3, query_interval=20.0)
    report(r, plan, 12.0, IS_EX, version=older(plan))           # older host present until 82
    query(r, plan, 40.0, plan.lower, robustness=3, query_interval=20.0)   # querier still there
    report(r, plan, 50.0, IS_EX)                                 # group timer 120
    run_until(r, 81.9)
    assert r.compat_version(plan.group) == older(plan)
    run_until(r, 82.0)
    assert r.compat_version(plan.group) == plan.family.newest_version
    assert r.group_timer_at(plan.group) == 120.0


@family
def test_zero_qrv_or_qqi_means_the_configured_value(plan):
    r = router(plan)
    query(r, plan, 0.0, plan.lower, robustness=0, query_interval=30.0)
    assert values(r) == (2, 30.0) and r.get_timer() == 2 * 30.0 + 5.0
    query(r, plan, 100.0, plan.lower, robustness=4, query_interval=0.0)
    assert values(r) == (4, 125.0) and r.get_timer() == 100.0 + 4 * 125.0 + 5.0


@family
def test_the_most_recent_query_counts(plan):
    r = router(plan)
    query(r, plan, 0.0, plan.lower, robustness=3, query_interval=20.0)
    actions = query(r, plan, 10.0, plan.lower, robustness=5, query_interval=8.0)
    assert len(traces(actions, "querier_values_adopted")) == 1
    assert values(r) == (5, 8.0) and r.get_timer() == 10.0 + 5 * 8.0 + 5.0
    unchanged = query(r, plan, 20.0, plan.lower, robustness=5, query_interval=8.0)
    assert unchanged == []


@family
def test_a_querier_qqi_below_our_query_response_interval_is_adopted(plan):
    """Our configured Query Response Interval (10 s) stays: GMI 2 x 4 + 10."""
    r = router(plan)
    query(r, plan, 0.0, plan.lower, robustness=2, query_interval=4.0)
    assert r.get_timer() == 2 * 4.0 + 5.0
    report(r, plan, 1.0, IS_EX)
    assert r.group_timer_at(plan.group) == 1.0 + 2 * 4.0 + 10.0


@family
def test_querier_again_goes_back_to_the_configured_values(plan):
    r = router(plan)
    r.start(0.0)
    query(r, plan, 5.0, plan.lower, robustness=3, query_interval=20.0)
    fired = run_until(r, 70.0)
    assert [a for _, a in fired if isinstance(a, QuerierChanged)] == [
        QuerierChanged("down0", plan.family, True, None)]
    [(at, sent)] = [(t, a) for t, a in fired if a in general_queries([a])]
    assert at == 70.0 and (sent.robustness, sent.query_interval) == (2, 125.0)
    assert values(r) == (2, 125.0) and r.get_timer() == 70.0 + 125.0
    report(r, plan, 100.0, IS_EX)
    assert r.group_timer_at(plan.group) == 100.0 + 260.0


@family
def test_higher_routers_values_are_not_adopted(plan):
    r = router(plan)
    r.start(0.0)
    assert query(r, plan, 1.0, plan.higher, robustness=7, query_interval=60.0) == []
    assert values(r) == (2, 125.0)
    query(r, plan, 5.0, plan.lower, robustness=3, query_interval=20.0)
    assert query(r, plan, 6.0, plan.higher, robustness=7, query_interval=60.0) == []
    assert values(r) == (3, 20.0) and r.get_timer() == 70.0


@family
def test_no_adoption_without_election(plan):
    r = router(plan, RouterOptions(querier_election=False))
    r.start(0.0)
    query(r, plan, 1.0, plan.lower, robustness=3, query_interval=20.0)
    assert r.is_querier and values(r) == (2, 125.0)
    report(r, plan, 2.0, IS_EX)
    assert r.group_timer_at(plan.group) == 262.0


@family
def test_restart_goes_back_to_the_configured_values(plan):
    r = router(plan)
    query(r, plan, 0.0, plan.lower, robustness=3, query_interval=20.0)
    r.stop(1.0)
    assert values(r) == (2, 125.0)
    query(r, plan, 2.0, plan.lower, robustness=3, query_interval=20.0)
    r.start(3.0)
    assert r.is_querier and values(r) == (2, 125.0)


@family
def test_lowering_count_follows_the_adopted_qrv(plan):
    r = router(plan)
    report(r, plan, 0.0, IS_EX)
    query(r, plan, 1.0, plan.lower, robustness=3, query_interval=20.0)
    query(r, plan, 10.0, plan.lower, group=plan.group, max_resp=0.5, robustness=3,
          query_interval=20.0)
    assert r.group_timer_at(plan.group) == 10.0 + 3 * 0.5


@family
def test_lowering_count_stays_configured_when_lmqc_is_set(plan):
    r = router(plan, RouterOptions(timers=Timers(last_member_query_count=1)))
    report(r, plan, 0.0, IS_EX)
    query(r, plan, 10.0, plan.lower, group=plan.group, max_resp=0.5, robustness=3,
          query_interval=20.0)
    assert r.group_timer_at(plan.group) == 10.0 + 1 * 0.5


# -- RFC 3376 §7.3.1, RFC 3810 §8.3.1: older-version queriers ---------------------------

@family
def test_older_general_query_from_lower_address_wins_with_configured_values(plan):
    r = router(plan)
    r.start(0.0)
    query(r, plan, 1.0, plan.lower, robustness=3, query_interval=20.0)
    actions = query(r, plan, 5.0, second_lower(plan), version=older(plan), max_resp=10.0,
                    robustness=0, query_interval=0.0)
    [warning] = traces(actions, "older_version_querier")
    assert warning.warning
    assert warning.fields == (("interface", "down0"), ("family", plan.family.name),
                              ("source", second_lower(plan)), ("version", older(plan)),
                              ("held_back", 0))
    assert not r.is_querier and r.other_querier == second_lower(plan)
    assert values(r) == (2, 125.0)                      # no QRV / QQI: ours
    assert r.get_timer() == 5.0 + 255.0


@family
def test_older_version_querier_takes_over_from_us(plan):
    r = router(plan)
    r.start(0.0)
    report(r, plan, 1.0, IS_EX)
    actions = query(r, plan, 5.0, plan.lower, version=older(plan), robustness=0,
                    query_interval=0.0)
    assert QuerierChanged("down0", plan.family, False, plan.lower) in actions
    assert not r.forwards(plan.group, plan.s(1))        # RFC 4605 §4: not the querier
    assert r.get_timer() == 5.0 + 255.0
    fired = run_until(r, 260.0)
    assert [a for _, a in fired if isinstance(a, QuerierChanged)] == [
        QuerierChanged("down0", plan.family, True, None)]


@family
def test_older_group_query_of_the_querier_keeps_its_values_and_lowers_timers(plan):
    """An IGMPv3 / MLDv2 querier asks groups with older hosts in the older format."""
    r = router(plan)
    report(r, plan, 0.0, IS_EX)
    query(r, plan, 1.0, plan.lower, robustness=3, query_interval=20.0)
    actions = query(r, plan, 10.0, plan.lower, version=older(plan), group=plan.group,
                    max_resp=1.0, robustness=0, query_interval=0.0)
    assert actions == []                                # no warning for a group query
    assert values(r) == (3, 20.0) and r.get_timer() == 10.0 + 3 * 1.0
    assert r.group_timer_at(plan.group) == 13.0
    assert run_until(r, 13.0) and r.membership(plan.group) is None


@family
def test_older_query_of_another_router_means_configured_values(plan):
    r = router(plan)
    report(r, plan, 0.0, IS_EX)
    query(r, plan, 1.0, second_lower(plan), robustness=3, query_interval=20.0)
    query(r, plan, 10.0, plan.lower, version=older(plan), group=plan.group, max_resp=1.0,
          robustness=0, query_interval=0.0)
    assert values(r) == (2, 125.0)
    assert r.group_timer_at(plan.group) == 10.0 + 2 * 1.0


@family
def test_older_querier_warnings_are_rate_limited(plan):
    r = router(plan)
    r.start(0.0)

    def warned(now, source):
        actions = query(r, plan, now, source, version=older(plan), robustness=0,
                        query_interval=0.0)
        return [dict(t.fields)["held_back"] for t in traces(actions, "older_version_querier")]

    assert warned(0.0, plan.higher) == [0]              # heard, even from a loser
    assert r.is_querier
    assert warned(30.0, plan.higher) == []
    assert warned(59.9, plan.lower) == []
    assert warned(OLDER_QUERIER_WARNING_INTERVAL, plan.lower) == [2]
    assert warned(OLDER_QUERIER_WARNING_INTERVAL + 1, plan.lower) == []


@family
def test_no_warning_for_newest_version_or_own_queries(plan):
    r = router(plan)
    r.start(0.0)
    assert traces(query(r, plan, 1.0, plan.higher), "older_version_querier") == []
    assert query(r, plan, 2.0, plan.own, version=older(plan), robustness=0,
                 query_interval=0.0) == []


def test_igmpv1_query_warns_and_takes_part_in_the_election():
    """An IGMPv1 Query (Max Resp Code 0, read as 10 s) from a lower address."""
    plan = IPV4
    r = router(plan)
    r.start(0.0)
    actions = r.handle_query(5.0, Query(1, plan.lower, 10.0))
    assert [dict(t.fields)["version"] for t in traces(actions, "older_version_querier")] == [1]
    assert QuerierChanged("down0", Family.IPV4, False, plan.lower) in actions
    assert values(r) == (2, 125.0) and r.get_timer() == 5.0 + 255.0
