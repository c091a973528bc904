"""docs/scenarios.md items 3-8 at engine level, driven by ``twisted.internet.task.Clock``.

``ClockDriver`` stands in for the IO layer's timer driver: one ``callLater``
armed at the engine's ``get_timer()``, every action logged with its time.
"""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from mcproxy_pmip.membership.actions import MembershipChanged, QuerierChanged, SendQuery, Trace
from mcproxy_pmip.membership.query import Query
from mcproxy_pmip.membership.router import RouterInterface
from mcproxy_pmip.membership.timers import PMIPV6_TIMERS, RouterOptions
from mcproxy_pmip.wire.records import FilterMode, GroupRecord
from router_support import IS_EX, IS_IN, PLAN_IDS, PLANS, TO_IN, router

family = pytest.mark.parametrize("plan", PLANS, ids=PLAN_IDS)


class ClockDriver:
    """Arms one Clock call at the engine's earliest deadline; logs (time, action)."""

    def __init__(self, engine: RouterInterface) -> None:
        self.clock = Clock()
        self.engine = engine
        self.log: list[tuple[float, object]] = []
        self._call = None

    def feed(self, actions: list) -> None:
        now = self.clock.seconds()
        self.log.extend((now, a) for a in actions)
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        at = self.engine.get_timer()
        if at is not None:
            self._call = self.clock.callLater(max(0.0, at - now), self._fire)

    def _fire(self) -> None:
        self._call = None
        self.feed(self.engine.handle_timer(self.clock.seconds()))

    def advance_to(self, end: float) -> None:
        """Step the clock to each armed call in turn, then to ``end``."""
        while self.clock.getDelayedCalls():
            at = min(c.getTime() for c in self.clock.getDelayedCalls())
            if at > end:
                break
            self.clock.advance(at - self.clock.seconds())
        self.clock.advance(end - self.clock.seconds())

    def report(self, plan, record_type, sources=(), version=None, group=None) -> None:
        record = GroupRecord(record_type, group or plan.group, tuple(sources))
        self.feed(self.engine.handle_report(self.clock.seconds(),
                                            version or plan.family.newest_version,
                                            [record], plan.host))

    def sent(self, kind=SendQuery) -> list[tuple[float, object]]:
        return [(t, a) for t, a in self.log if isinstance(a, kind)]


@family
def test_scenario_3_general_query_at_once_then_startup_queries(plan):
    driver = ClockDriver(router(plan, RouterOptions(timers=PMIPV6_TIMERS)))
    driver.feed(driver.engine.start(driver.clock.seconds()))
    assert [t for t, _ in driver.sent()] == [0.0]
    driver.advance_to(300.0)
    queries = driver.sent()
    assert [t for t, _ in queries] == [0.0, 1.0, 126.0, 251.0]
    assert all(q.group is None and q.version == plan.family.newest_version for _, q in queries)
    assert all(q.interface == "down0" and q.family is plan.family for _, q in queries)


@family
def test_scenario_5_last_member_leaves(plan):
    driver = ClockDriver(router(plan))
    driver.report(plan, IS_EX)
    driver.advance_to(50.0)
    assert driver.engine.forwards(plan.group, plan.s(1))
    driver.report(plan, TO_IN)
    driver.advance_to(51.9)
    specific = [(t, q.group, q.sources, q.suppress_router_processing)
                for t, q in driver.sent() if q.group is not None]
    assert specific == [(50.0, plan.group, (), False), (51.0, plan.group, (), False)]
    assert all(q.max_resp_interval == 1.0 for _, q in driver.sent())
    assert driver.engine.forwards(plan.group, plan.s(1))
    driver.advance_to(52.0)
    assert not driver.engine.forwards(plan.group, plan.s(1))
    assert driver.engine.membership(plan.group) is None
    assert driver.sent(MembershipChanged)[-1] == (52.0, MembershipChanged("down0", plan.family,
                                                                          plan.group))


@family
def test_scenario_5_another_member_answers_within_lmqt(plan):
    driver = ClockDriver(router(plan))
    driver.report(plan, IS_EX)
    driver.advance_to(50.0)
    changes_before = len(driver.sent(MembershipChanged))
    driver.report(plan, TO_IN)
    driver.advance_to(51.5)
    driver.report(plan, IS_EX)              # the other member's answer
    driver.advance_to(60.0)
    assert driver.engine.forwards(plan.group, plan.s(1))
    assert driver.engine.membership(plan.group) == (FilterMode.EXCLUDE, frozenset())
    assert len(driver.sent(MembershipChanged)) == changes_before
    assert driver.engine.group_timer_at(plan.group) == 51.5 + 260.0


@family
def test_scenario_5_older_version_leave(plan):
    """IGMPv2 Leave / MLDv1 Done (TO_IN({}) with the old version) ends the group after LMQT."""
    driver = ClockDriver(router(plan))
    driver.report(plan, IS_EX, version=plan.family.newest_version - 1)
    driver.advance_to(20.0)
    driver.report(plan, TO_IN, version=plan.family.newest_version - 1)
    driver.advance_to(22.0)
    specific = [(t, q.version) for t, q in driver.sent() if q.group is not None]
    assert specific == [(20.0, plan.family.newest_version - 1), (21.0, plan.family.newest_version - 1)]
    assert driver.engine.membership(plan.group) is None


@family
def test_scenario_6_compatibility_mode_and_back(plan):
    older = plan.family.newest_version - 1
    driver = ClockDriver(router(plan))
    driver.feed(driver.engine.start(0.0))
    driver.report(plan, IS_EX, version=older)
    assert driver.engine.compat_version(plan.group) == older
    driver.advance_to(200.0)
    assert [q.version for _, q in driver.sent()] == [plan.family.newest_version, older, older]
    driver.advance_to(261.0)
    assert driver.engine.compat_version(plan.group) == plan.family.newest_version
    assert driver.engine.membership(plan.group) is None     # the group timer ran out too
    driver.advance_to(300.0)
    assert driver.sent()[-1][1].version == plan.family.newest_version


@family
def test_scenario_7_lower_querier_takes_over_and_we_resume(plan):
    driver = ClockDriver(router(plan))
    engine = driver.engine
    driver.feed(engine.start(0.0))
    driver.report(plan, IS_EX)
    driver.advance_to(10.0)
    driver.feed(engine.handle_query(10.0, Query(plan.family.newest_version, plan.lower, 10.0,
                                                robustness=2, query_interval=125.0)))
    assert not engine.is_querier and engine.other_querier == plan.lower
    assert driver.sent(QuerierChanged) == [(10.0, QuerierChanged("down0", plan.family, False,
                                                                 plan.lower))]
    assert not engine.forwards(plan.group, plan.s(1))
    assert (10.0, MembershipChanged("down0", plan.family, plan.group)) in driver.log
    driver.advance_to(264.9)
    assert [t for t, _ in driver.sent()] == [0.0]       # the startup query at 31.25 never left
    driver.report(plan, IS_EX)                           # membership kept while not querier
    driver.advance_to(265.0)
    assert engine.is_querier
    assert driver.sent(QuerierChanged)[-1] == (265.0, QuerierChanged("down0", plan.family, True,
                                                                     None))
    assert [t for t, _ in driver.sent()] == [0.0, 265.0]
    assert engine.forwards(plan.group, plan.s(1))
    driver.advance_to(400.0)
    assert [t for t, _ in driver.sent()] == [0.0, 265.0, 390.0]


@family
def test_scenario_8_link_local_scope_groups_make_no_state(plan):
    driver = ClockDriver(router(plan))
    driver.report(plan, IS_EX, group=plan.link_local_group)
    driver.report(plan, IS_IN, (plan.s(1),), group=plan.link_local_group)
    assert list(driver.engine.groups()) == []
    assert [a.event for _, a in driver.sent(Trace)] == ["link_local_group_ignored"] * 2
    assert driver.sent(MembershipChanged) == [] and driver.engine.get_timer() is None
