"""State budgets: caps per group, link, instance and daemon; refusals counted; state given back.

Driven by a twisted Clock through ``InstanceCore`` (two instances share one
daemon-wide root, as the daemon builds them).
"""

from __future__ import annotations

import ipaddress
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock

from mcproxy_pmip.addresses import Family
from mcproxy_pmip.config.model import InstanceConfig, Limits
from mcproxy_pmip.membership.actions import Trace
from mcproxy_pmip.membership.budget import StateBudget
from mcproxy_pmip.membership.filters import AllowAll
from mcproxy_pmip.membership.instance import InstanceCore
from mcproxy_pmip.membership.timers import HostOptions, RouterOptions
from mcproxy_pmip.wire.records import FilterMode, GroupRecord, RecordType
from router_support import ALLOW, BLOCK, IS_EX, IS_IN, PLANS, TO_EX, TO_IN, router

V4 = Family.IPV4
V6 = Family.IPV6
HOST = {V4: ipaddress.ip_address("10.1.0.10"), V6: ipaddress.ip_address("fe80::10")}
OWN = {V4: ipaddress.ip_address("10.1.0.1"), V6: ipaddress.ip_address("fe80::1")}


def group(family: Family, n: int):
    return ipaddress.ip_address((0xE8010000 if family is V4 else (0xFF3E << 112)) + n)


def source(family: Family, n: int):
    return ipaddress.ip_address((0xC0000200 if family is V4 else (0x20010DB8 << 96)) + n)


def rec(kind, family, g, *sources):
    return GroupRecord(kind, group(family, g), tuple(source(family, s) for s in sources))


class Daemon:
    """Instances sharing one daemon budget, on one Clock."""

    def __init__(self, daemon: StateBudget, options: RouterOptions,
                 instance_groups: int = 1 << 20, instance_sources: int = 1 << 20,
                 instances: int = 1) -> None:
        self.clock = Clock()
        self.root = daemon
        self.cores = [InstanceCore(f"i{i}", [f"up{i}"], AllowAll(), options, HostOptions(),
                                   random.Random(i), budget=daemon.child(
                                       instance_groups, instance_sources, "instance"))
                      for i in range(instances)]

    def now(self) -> float:
        return self.clock.seconds()

    def add(self, core: int, link: str, family: Family = V4) -> None:
        self.cores[core].add_downstream(self.now(), link, family, OWN[family])

    def report(self, core: int, link: str, *records, family: Family = V4) -> list:
        return self.cores[core].handle_report(self.now(), link, family, family.newest_version,
                                              list(records), HOST[family])

    def run(self, seconds: float) -> None:
        """Advance the clock, firing every deadline at its time."""
        end = self.now() + seconds
        while True:
            due = [at for core in self.cores if (at := core.get_timer()) is not None and at <= end]
            if not due:
                break
            self.clock.advance(max(0.0, min(due) - self.now()))
            for core in self.cores:
                at = core.get_timer()
                if at is not None and at <= self.now():
                    core.handle_timer(self.now())
        self.clock.advance(end - self.now())


def traces(actions, event):
    return [dict(a.fields) for a in actions if isinstance(a, Trace) and a.event == event]


def test_link_source_cap_refuses_new_sources_and_keeps_existing_members():
    d = Daemon(StateBudget.daemon(), RouterOptions(max_sources=8, max_link_sources=10))
    d.add(0, "d1")
    d.report(0, "d1", rec(IS_IN, V4, 1, 1, 2, 3, 4, 5, 6))
    refused = d.report(0, "d1", rec(IS_IN, V4, 2, 7, 8, 9, 10, 11))
    assert [t["scope"] for t in traces(refused, "limit_sources_hit")] == ["link"]
    router = d.cores[0].router("d1", V4)
    assert router.membership(group(V4, 1)) == (FilterMode.INCLUDE,
                                               frozenset(source(V4, s) for s in range(1, 7)))
    assert router.membership(group(V4, 2)) is None
    assert d.root.counters()["limit_sources_link"] == 1
    assert d.root.counters()["state_sources"] == 6
    # the refused host still fits within the cap with fewer sources
    d.report(0, "d1", rec(IS_IN, V4, 2, 7, 8, 9, 10))
    assert d.root.sources == 10 and d.root.groups == 2


def test_per_group_source_cap_is_counted_with_group_scope():
    d = Daemon(StateBudget.daemon(), RouterOptions(max_sources=2))
    d.add(0, "d1")
    actions = d.report(0, "d1", rec(IS_IN, V4, 1, 1, 2, 3))
    assert [t["scope"] for t in traces(actions, "limit_sources_hit")] == ["group"]
    assert d.root.counters()["limit_sources_group"] == 1
    assert d.root.sources == 0 and d.root.groups == 0


def test_link_group_cap():
    d = Daemon(StateBudget.daemon(), RouterOptions(max_groups=2))
    d.add(0, "d1")
    actions = d.report(0, "d1", rec(IS_EX, V4, 1), rec(IS_EX, V4, 2), rec(IS_EX, V4, 3))
    assert [t["scope"] for t in traces(actions, "limit_groups_hit")] == ["link"]
    assert sorted(d.cores[0].router("d1", V4).groups()) == [group(V4, 1), group(V4, 2)]
    assert d.root.counters()["limit_groups_link"] == 1


def test_instance_caps_span_links_and_families():
    d = Daemon(StateBudget.daemon(), RouterOptions(), instance_groups=3, instance_sources=4)
    for link, family in (("d1", V4), ("d2", V4), ("d1", V6)):
        d.add(0, link, family)
    d.report(0, "d1", rec(IS_IN, V4, 1, 1, 2))
    d.report(0, "d2", rec(IS_IN, V4, 1, 3, 4))
    sources_refused = d.report(0, "d1", rec(IS_IN, V6, 1, 1), family=V6)
    assert [t["scope"] for t in traces(sources_refused, "limit_sources_hit")] == ["instance"]
    d.report(0, "d1", rec(IS_EX, V6, 1), family=V6)
    groups_refused = d.report(0, "d2", rec(IS_EX, V4, 2))
    assert [t["scope"] for t in traces(groups_refused, "limit_groups_hit")] == ["instance"]
    assert (d.root.groups, d.root.sources) == (3, 4)


def test_daemon_caps_span_instances():
    d = Daemon(StateBudget.daemon(max_total_groups=2, max_total_sources=3), RouterOptions(),
               instances=2)
    d.add(0, "a1")
    d.add(1, "b1")
    d.report(0, "a1", rec(IS_IN, V4, 1, 1, 2))
    refused = d.report(1, "b1", rec(IS_IN, V4, 1, 3, 4))
    assert [t["scope"] for t in traces(refused, "limit_sources_hit")] == ["daemon"]
    d.report(1, "b1", rec(IS_EX, V4, 1))
    refused = d.report(1, "b1", rec(IS_EX, V4, 2))
    assert [t["scope"] for t in traces(refused, "limit_groups_hit")] == ["daemon"]
    assert d.root.counters()["limit_groups_daemon"] == 1
    assert d.root.counters()["limit_sources_daemon"] == 1
    # a leave on one instance frees room for the other
    d.report(0, "a1", rec(BLOCK, V4, 1, 1, 2))
    d.run(5.0)
    assert d.cores[0].router("a1", V4).membership(group(V4, 1)) is None
    d.report(1, "b1", rec(IS_EX, V4, 2))
    assert d.cores[1].router("b1", V4).membership(group(V4, 2)) == (FilterMode.EXCLUDE, frozenset())


def fill(d: Daemon) -> None:
    """INCLUDE and EXCLUDE groups with X and Y sources on two links, both families."""
    for link in ("d1", "d2"):
        for family in (V4, V6):
            d.add(0, link, family)
            d.report(0, link, rec(IS_IN, family, 1, 1, 2, 3), rec(IS_EX, family, 2, 4, 5),
                     rec(ALLOW, family, 2, 6), rec(TO_EX, family, 3), family=family)
    assert d.root.groups == 12 and d.root.sources == 24


def test_budget_returns_to_zero_after_expiry():
    d = Daemon(StateBudget.daemon(), RouterOptions())
    fill(d)
    d.run(1000.0)
    assert (d.root.groups, d.root.sources) == (0, 0)


def test_budget_returns_to_zero_after_leaves():
    d = Daemon(StateBudget.daemon(), RouterOptions())
    fill(d)
    for link in ("d1", "d2"):
        for family in (V4, V6):
            d.report(0, link, rec(TO_IN, family, 1), rec(TO_IN, family, 2), rec(TO_IN, family, 3),
                     family=family)
    d.run(30.0)       # last member queries unanswered: LMQT, then the sources' timers
    assert (d.root.groups, d.root.sources) == (0, 0)


def test_budget_returns_to_zero_after_detach_and_instance_stop():
    d = Daemon(StateBudget.daemon(), RouterOptions())
    fill(d)
    core = d.cores[0]
    core.remove_downstream(d.now(), "d1", V4)
    assert (d.root.groups, d.root.sources) == (9, 18)
    for link, family in list(core.downstreams):
        core.remove_downstream(d.now(), link, family)
    assert (d.root.groups, d.root.sources) == (0, 0)
    assert (core.budget.groups, core.budget.sources) == (0, 0)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(list(RecordType)),
                          st.integers(min_value=1, max_value=4),
                          st.frozensets(st.integers(min_value=1, max_value=6), max_size=5),
                          st.sampled_from([0.0, 1.0, 3.0, 100.0, 300.0])),
                max_size=30))
def test_accounts_match_the_state_held_and_end_at_zero(steps):
    root = StateBudget.daemon(max_total_groups=3, max_total_sources=8)
    plan = PLANS[0]
    r = router(plan, RouterOptions(max_sources=4, max_link_sources=6))
    r.budget = root.child(3, 6, "link")    # the router's own account, below a small root
    now = 0.0
    for kind, g, numbers, gap in steps:
        now += gap
        r.handle_timer(now)
        r.handle_report(now, 3, [rec(kind, V4, g, *numbers)], plan.host)
        held = [r.source_timers(x) for x in r.groups()]
        assert root.groups == len(held) <= 3
        assert root.sources == sum(len(t) for t in held) <= 6
    r.stop(now)
    assert (root.groups, root.sources) == (0, 0)


def test_config_limits_reach_the_router_options():
    config = InstanceConfig("i", downstreams=("d1",), limits=Limits(max_groups=5, max_sources=6,
                                                                     max_link_sources=7))
    options = config.router_options()
    assert (options.max_groups, options.max_sources, options.max_link_sources) == (5, 6, 7)


@pytest.mark.parametrize("kind", [IS_IN, ALLOW])
def test_refused_record_changes_nothing(kind):
    d = Daemon(StateBudget.daemon(), RouterOptions(max_sources=3))
    d.add(0, "d1")
    d.report(0, "d1", rec(IS_IN, V4, 1, 1, 2))
    before = d.cores[0].router("d1", V4).source_timers(group(V4, 1))
    d.clock.advance(10.0)
    d.report(0, "d1", rec(kind, V4, 1, 2, 3, 4))
    assert d.cores[0].router("d1", V4).source_timers(group(V4, 1)) == before
