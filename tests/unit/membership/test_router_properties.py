"""Property tests of the router side over random report sequences (both families).

Invariants: INCLUDE mode has no Y set; ``forwards()`` agrees with
``membership()``; a MembershipChanged is emitted exactly when ``membership()``
of a group changed; once every timer ran out with no more reports, no group
and no deadline is left but the next General Query.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mcproxy_pmip.membership.actions import MembershipChanged
from mcproxy_pmip.membership.router import RouterInterface
from mcproxy_pmip.membership.router_group import RouterGroup
from mcproxy_pmip.membership.router_table import ROWS
from mcproxy_pmip.wire.records import FilterMode, GroupRecord, RecordType
from router_support import PLANS, router

STEP = st.tuples(
    st.floats(min_value=0.0, max_value=150.0, allow_nan=False),        # time since last step
    st.sampled_from(list(RecordType)),
    st.integers(min_value=0, max_value=1),                             # which group
    st.frozensets(st.integers(min_value=1, max_value=4), max_size=4),  # which sources
    st.sampled_from(["current", "current", "current", "older", "oldest"]),
)


def version_for(plan, which: str) -> int:
    newest = plan.family.newest_version
    return {"current": newest, "older": newest - 1, "oldest": 1}[which]


def snapshot(r: RouterInterface, groups) -> dict:
    return {g: r.membership(g) for g in groups}


def check_invariants(r: RouterInterface, plan, groups) -> None:
    for group in groups:
        state = r.membership(group)
        timers = r.source_timers(group)
        if state is None:
            assert timers == {}
            continue
        mode, sources = state
        if mode is FilterMode.INCLUDE:
            assert None not in timers.values(), "INCLUDE mode with a Y set"
            assert sources, "an INCLUDE record without sources was kept"
            assert r.group_timer_at(group) is None
        else:
            assert r.group_timer_at(group) is not None
        for n in range(1, 6):
            s = plan.s(n)
            expected = (s in sources) if mode is FilterMode.INCLUDE else (s not in sources)
            assert r.forwards(group, s) == expected


def check_changes(before: dict, after: dict, actions: list) -> None:
    announced = {a.group for a in actions if isinstance(a, MembershipChanged)}
    actually = {g for g in before if before[g] != after[g]}
    assert announced == actually


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(family_index=st.integers(min_value=0, max_value=1),
       steps=st.lists(STEP, max_size=30))
def test_random_report_sequences(family_index, steps):
    plan = PLANS[family_index]
    r = router(plan)
    groups = (plan.group, plan.group2)
    r.start(0.0)
    now = 0.0
    for dt, record_type, group_index, source_numbers, which in steps:
        target = now + dt
        while (at := r.get_timer()) is not None and at <= target:
            before = snapshot(r, groups)
            actions = r.handle_timer(at)
            check_changes(before, snapshot(r, groups), actions)
            check_invariants(r, plan, groups)
        now = target
        record = GroupRecord(record_type, groups[group_index],
                             tuple(plan.s(n) for n in sorted(source_numbers)))
        version = version_for(plan, which)
        before = snapshot(r, groups)
        actions = r.handle_report(now, version, [record], plan.host)
        check_changes(before, snapshot(r, groups), actions)
        check_invariants(r, plan, groups)
        assert r.get_timer() is not None and r.get_timer() >= now
    end = now + 10_000.0
    last_general_query = None
    while (at := r.get_timer()) is not None and at <= end:
        actions = r.handle_timer(at)
        if any(getattr(a, "group", 0) is None for a in actions):
            last_general_query = at
    assert list(r.groups()) == []
    assert last_general_query is not None
    assert r.get_timer() == last_general_query + 125.0


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(list(RecordType)),
                          st.frozensets(st.integers(min_value=1, max_value=5), max_size=5)),
                max_size=12))
def test_group_state_never_keeps_deadlines_in_the_past_after_expiry(records):
    plan = PLANS[0]
    g = RouterGroup(plan.group)
    now = 0.0
    for record_type, numbers in records:
        now += 7.0
        g.expire(now)
        deadline = g.next_deadline()
        assert deadline is None or deadline > now
        g.apply_row(ROWS[(g.filter_mode, record_type)],
                    frozenset(plan.s(n) for n in numbers), now, 260.0, 100)
        if g.filter_mode is FilterMode.INCLUDE:
            assert g.excluded() == set()
        deadline = g.next_deadline()
        assert deadline is None or deadline > now
