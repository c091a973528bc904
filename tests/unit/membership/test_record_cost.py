"""Applying a record costs O(its sources + changes), not O(state held).

The attack: a host reports IS_IN with 1,024 sources for one group, then
reports full of ALLOW({}) records for that group. The work is counted, not
timed: every access to a group's source table goes through a counting dict,
and ``RouterGroup.membership`` calls are counted. A differential property
test checks the incremental interpreter against the RFC 3376 §6.4 table
evaluated on whole sets (the way the rows read).
"""

from __future__ import annotations

import ipaddress
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mcproxy_pmip.addresses import Family
from mcproxy_pmip.membership.actions import MembershipChanged
from mcproxy_pmip.membership.filters import AllowAll
from mcproxy_pmip.membership.instance import InstanceCore
from mcproxy_pmip.membership.router_group import RouterGroup
from mcproxy_pmip.membership.router_table import ROWS, TimerValue
from mcproxy_pmip.membership.timers import HostOptions, RouterOptions
from mcproxy_pmip.wire.records import FilterMode, GroupRecord, RecordType
from router_support import ALLOW, BLOCK, IS_EX, IS_IN, PLAN_IDS, PLANS, TO_IN, router

BIG = RouterOptions(max_groups=1024, max_sources=4096, max_link_sources=1 << 20)


class CountingDict(dict):
    """A dict that counts element accesses (lookups, and each element iterated)."""

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.accesses = 0

    def get(self, key, default=None):
        self.accesses += 1
        return super().get(key, default)

    def __getitem__(self, key):
        self.accesses += 1
        return super().__getitem__(key)

    def __contains__(self, key) -> bool:
        self.accesses += 1
        return super().__contains__(key)

    def _counted(self, iterable):
        for item in iterable:
            self.accesses += 1
            yield item

    def __iter__(self):
        return self._counted(super().__iter__())

    def items(self):
        return self._counted(super().items())

    def keys(self):
        return self._counted(super().keys())

    def values(self):
        return self._counted(super().values())


def sources(plan, count: int) -> tuple:
    base = int(plan.s(1))
    return tuple(ipaddress.ip_address(base + i) for i in range(count))


def work_of_allow_report(plan, held: int, record_sources: tuple = (), records: int = 183) -> int:
    """Source-table accesses of one report of ``records`` ALLOW(record_sources) for a
    group already holding ``held`` sources (IS_IN)."""
    r = router(plan, BIG)
    r.handle_report(0.0, plan.family.newest_version,
                    [GroupRecord(IS_IN, plan.group, sources(plan, held))], plan.host)
    g = r._groups[plan.group]
    g.sources = CountingDict(g.sources)
    r.handle_report(1.0, plan.family.newest_version,
                    [GroupRecord(ALLOW, plan.group, record_sources)] * records, plan.host)
    return g.sources.accesses


@pytest.mark.parametrize("plan", PLANS, ids=PLAN_IDS)
def test_allow_of_nothing_costs_the_same_whatever_the_state_held(plan):
    small = work_of_allow_report(plan, 8)
    large = work_of_allow_report(plan, 1024)
    assert large == small
    assert large <= 10 * 183          # a few accesses per record, none per source held


@pytest.mark.parametrize("plan", PLANS, ids=PLAN_IDS)
def test_allow_of_held_sources_costs_its_own_sources_only(plan):
    refresh = sources(plan, 4)
    small = work_of_allow_report(plan, 8, refresh, records=50)
    large = work_of_allow_report(plan, 1024, refresh, records=50)
    assert large <= small        # the small state pays amortised timer-heap rebuilds
    assert large <= 10 * 50 * len(refresh)


@pytest.mark.parametrize("plan", PLANS, ids=PLAN_IDS)
def test_block_and_exclude_records_do_not_walk_the_state(plan):
    """BLOCK(B) in INCLUDE and ALLOW(B) in EXCLUDE mode: only B is looked at."""
    work = []
    for held in (8, 1024):
        r = router(plan, BIG)
        r.handle_report(0.0, plan.family.newest_version,
                        [GroupRecord(IS_IN, plan.group, sources(plan, held)),
                         GroupRecord(IS_EX, plan.group2, sources(plan, held))], plan.host)
        counted = []
        for group in (plan.group, plan.group2):
            g = r._groups[group]
            g.sources = CountingDict(g.sources)
            counted.append(g)
        r.handle_report(1.0, plan.family.newest_version,
                        [GroupRecord(BLOCK, plan.group, (plan.s(1),)),
                         GroupRecord(ALLOW, plan.group2, (plan.s(1),))] * 50, plan.host)
        work.append([g.sources.accesses for g in counted])
    # a small state may pay for an amortised timer-heap rebuild; a large one never pays more
    assert all(large <= small for small, large in zip(*work))
    assert max(work[1]) <= 10 * 50


@pytest.mark.parametrize("plan", PLANS, ids=PLAN_IDS)
def test_repeated_to_in_of_nothing_does_not_walk_the_state(plan):
    """TO_IN({}) sends Q(G,X): the first one lowers every timer (a change per source),
    the ones after it find nothing above LMQT without looking at every source."""
    work = []
    for held in (8, 1024):
        r = router(plan, BIG)
        r.handle_report(0.0, plan.family.newest_version,
                        [GroupRecord(IS_IN, plan.group, sources(plan, held))], plan.host)
        r.handle_report(1.0, plan.family.newest_version, [GroupRecord(TO_IN, plan.group, ())],
                        plan.host)
        g = r._groups[plan.group]
        g.sources = CountingDict(g.sources)
        r.handle_report(1.5, plan.family.newest_version,
                        [GroupRecord(TO_IN, plan.group, ())] * 183, plan.host)
        work.append(g.sources.accesses)
    assert work[1] <= work[0]
    assert work[1] <= 10 * 183


def test_the_attack_packet_computes_no_membership_in_the_instance(monkeypatch):
    """A report of 183 ALLOW({}) records changes nothing: no MembershipChanged, no
    membership set built, no re-merge."""
    calls = []
    original = RouterGroup.membership

    def counting(self):
        calls.append(self.group)
        return original(self)

    monkeypatch.setattr(RouterGroup, "membership", counting)
    core = InstanceCore("i", ["up0"], AllowAll(), BIG, HostOptions(), random.Random(1))
    plan = PLANS[0]
    core.add_downstream(0.0, "d1", Family.IPV4, plan.own)
    core.handle_report(0.0, "d1", Family.IPV4, 3,
                       [GroupRecord(IS_IN, plan.group, sources(plan, 1024))], plan.host)
    calls.clear()
    actions = core.handle_report(1.0, "d1", Family.IPV4, 3,
                                 [GroupRecord(ALLOW, plan.group, ())] * 183, plan.host)
    assert calls == []
    assert not [a for a in actions if isinstance(a, MembershipChanged)]


# -- the incremental interpreter agrees with the table read on whole sets -----------------

def reference_apply(state, row, r, now, gmi):
    """RFC 3376 §6.4 on whole sets: (mode, {source: timer}, group timer) -> new, changed, query."""
    mode, old, group_timer_at = state
    x = {s for s, at in old.items() if at is not None}
    y = {s for s, at in old.items() if at is None}
    new_x = row.new_x(x, y, r)
    new_y = row.new_y(x, y, r)
    table = {s: old.get(s) for s in new_x}
    for s in new_y:
        table[s] = None
    for expr, value in row.source_timers:
        at = now + gmi if value is TimerValue.GMI else group_timer_at
        for s in expr(x, y, r):
            table[s] = at
    if row.new_mode is FilterMode.INCLUDE:
        changed = mode is FilterMode.EXCLUDE or new_x != x
        group_timer_at = None
    else:
        changed = mode is FilterMode.INCLUDE or new_y != y
        if row.group_timer_gmi:
            group_timer_at = now + gmi
    query = set(row.query_sources(x, y, r)) if row.query_sources is not None else set()
    return (row.new_mode, table, group_timer_at), changed, query


def reference_expire(state, now):
    mode, table, group_timer_at = state
    table = dict(table)
    for s, at in list(table.items()):
        if at is not None and at <= now:
            if mode is FilterMode.INCLUDE:
                del table[s]
            else:
                table[s] = None
    if mode is FilterMode.EXCLUDE and group_timer_at is not None and group_timer_at <= now:
        return (FilterMode.INCLUDE, {s: at for s, at in table.items() if at is not None}, None)
    return (mode, table, group_timer_at)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(list(RecordType)),
                          st.frozensets(st.integers(min_value=1, max_value=8), max_size=6),
                          st.sampled_from([0.0, 1.0, 30.0, 300.0]),
                          st.booleans(),
                          st.sampled_from([2.0, 0.5, 40.0])),
                max_size=25))
def test_incremental_rows_match_the_table_on_whole_sets(steps):
    plan = PLANS[0]
    g = RouterGroup(plan.group)
    state = (FilterMode.INCLUDE, {}, None)
    now = 0.0
    for record_type, numbers, gap, lower, lmqt in steps:
        now += gap
        g.expire(now)
        state = reference_expire(state, now)
        r = frozenset(plan.s(n) for n in numbers)
        row = ROWS[(g.filter_mode, record_type)]
        old_x = {s for s, at in state[1].items() if at is not None}
        changed, query, rest_of_x, refused = g.apply_row(row, r, now, 260.0, 100)
        state, want_changed, want_query = reference_apply(state, row, r, now, 260.0)
        assert refused is None
        assert (g.filter_mode, dict(g.sources), g.group_timer_at) == state
        assert changed == want_changed
        assert set(query) | (old_x - r if rest_of_x else set()) == want_query
        if lower and want_query:
            g.schedule_source_query(query, now, lmqt, 2, r if rest_of_x else None)
            table = {s: (now + lmqt if s in want_query and at is not None and at > now + lmqt
                         else at) for s, at in state[1].items()}
            state = (state[0], table, state[2])
            assert dict(g.sources) == table
        assert g._excluded == len(g.excluded())
        assert g.budget.sources == len(g.sources)
        deadline = g.next_deadline()
        running = [at for at in g.sources.values() if at is not None]
        if running:
            assert deadline is not None and deadline <= min(running)
    g.release()
    assert g.budget.sources == 0
