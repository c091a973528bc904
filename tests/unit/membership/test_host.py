"""UpstreamHost state-change reports and retransmission merging (RFC 3376 §5.1, RFC 3810 §6.1)."""

from __future__ import annotations

import ipaddress
import random

import pytest

from mcproxy_pmip.addresses import Family
from mcproxy_pmip.membership.actions import SendReport
from mcproxy_pmip.membership.host import UpstreamHost
from mcproxy_pmip.membership.timers import HostOptions
from mcproxy_pmip.wire.records import FilterMode, GroupRecord, RecordType

INC = FilterMode.INCLUDE
EXC = FilterMode.EXCLUDE
G = ipaddress.ip_address("232.1.1.1")
G2 = ipaddress.ip_address("232.1.1.2")
A, B, C = (ipaddress.ip_address(f"10.0.0.{i}") for i in range(1, 4))
G6 = ipaddress.ip_address("ff3e::1")
S6 = ipaddress.ip_address("2001:db8::1")


def make_host(robustness: int = 2, family: Family = Family.IPV4, seed: int = 7) -> UpstreamHost:
    return UpstreamHost("up0", family, HostOptions(robustness=robustness), random.Random(seed))


def records_of(actions: list) -> list[tuple[str, object, tuple]]:
    """The records of every SendReport in ``actions`` as (type, group, sources)."""
    return [(r.record_type.short, r.group, r.sources)
            for action in actions if isinstance(action, SendReport) for r in action.records]


def run_until_idle(host: UpstreamHost, now: float, limit: float = 60.0) -> tuple[list, float]:
    """Fire every deadline up to ``now + limit``; returns the actions and the last time fired."""
    actions: list = []
    while (deadline := host.get_timer()) is not None:
        assert deadline <= now + limit, f"deadline {deadline} beyond {now + limit}"
        now = deadline
        actions.extend(host.handle_timer(now))
    return actions, now


def test_join_sends_to_ex_at_once_then_one_retransmission_within_the_interval() -> None:
    host = make_host()
    actions = host.set_membership(10.0, G, EXC, frozenset())
    assert actions == [SendReport("up0", Family.IPV4, 3,
                                  (GroupRecord(RecordType.CHANGE_TO_EXCLUDE, G, ()),))]
    deadline = host.get_timer()
    assert deadline is not None and 10.0 < deadline <= 11.0
    assert records_of(host.handle_timer(deadline)) == [("TO_EX", G, ())]
    assert host.get_timer() is None
    assert host.membership(G) == (EXC, frozenset())


def test_robustness_three_retransmits_twice_each_within_the_interval() -> None:
    host = make_host(robustness=3)
    host.set_membership(0.0, G, INC, frozenset({A}))
    times = []
    while (deadline := host.get_timer()) is not None:
        assert records_of(host.handle_timer(deadline)) == [("ALLOW", G, (A,))]
        times.append(deadline)
    assert len(times) == 2
    assert 0.0 < times[0] <= 1.0 and 0.0 < times[1] - times[0] <= 1.0


def test_include_to_include_sends_allow_and_block() -> None:
    host = make_host(robustness=1)
    host.set_membership(0.0, G, INC, frozenset({A, B}))
    assert records_of(host.set_membership(5.0, G, INC, frozenset({B, C}))) == [
        ("ALLOW", G, (C,)), ("BLOCK", G, (A,))]


def test_exclude_to_exclude_sends_allow_old_minus_new_and_block_new_minus_old() -> None:
    host = make_host(robustness=1)
    host.set_membership(0.0, G, EXC, frozenset({A, B}))
    assert records_of(host.set_membership(5.0, G, EXC, frozenset({B, C}))) == [
        ("ALLOW", G, (A,)), ("BLOCK", G, (C,))]


def test_exclude_to_include_sends_to_in_and_include_to_exclude_sends_to_ex() -> None:
    host = make_host(robustness=1)
    host.set_membership(0.0, G, EXC, frozenset({A}))
    assert records_of(host.set_membership(5.0, G, INC, frozenset({B, C}))) == [("TO_IN", G, (B, C))]
    assert records_of(host.set_membership(6.0, G, EXC, frozenset({C}))) == [("TO_EX", G, (C,))]


def test_leave_sends_to_in_empty_with_retransmission_then_forgets_the_group() -> None:
    host = make_host()
    host.set_membership(0.0, G, EXC, frozenset())
    run_until_idle(host, 0.0)
    assert records_of(host.set_membership(100.0, G, INC, frozenset())) == [("TO_IN", G, ())]
    assert host.membership(G) is None
    later, _ = run_until_idle(host, 100.0, limit=1.0)
    assert records_of(later) == [("TO_IN", G, ())]
    assert list(host.groups()) == []


def test_unchanged_state_sends_nothing() -> None:
    host = make_host()
    host.set_membership(0.0, G, INC, frozenset({A}))
    assert host.set_membership(0.1, G, INC, frozenset({A})) == []
    assert host.set_membership(0.2, G2, INC, frozenset()) == []


def test_filter_mode_change_is_repeated_robustness_times_before_source_changes() -> None:
    # §5.1: a change during pending retransmissions is sent at once, merged; the
    # filter-mode-change record goes out robustness times, then the source-list changes.
    host = make_host()
    assert records_of(host.set_membership(0.0, G, EXC, frozenset())) == [("TO_EX", G, ())]
    assert records_of(host.set_membership(0.1, G, EXC, frozenset({A}))) == [("TO_EX", G, (A,))]
    later, _ = run_until_idle(host, 0.1)
    assert records_of(later) == [("BLOCK", G, (A,)), ("BLOCK", G, (A,))]


def test_source_changes_merge_with_per_source_retransmission_counters() -> None:
    host = make_host()
    assert records_of(host.set_membership(0.0, G, INC, frozenset({A}))) == [("ALLOW", G, (A,))]
    assert records_of(host.set_membership(0.1, G, INC, frozenset({A, B}))) == [("ALLOW", G, (A, B))]
    assert records_of(host.set_membership(0.2, G, INC, frozenset({B}))) == [
        ("ALLOW", G, (B,)), ("BLOCK", G, (A,))]
    later, last = run_until_idle(host, 0.2)
    assert records_of(later) == [("BLOCK", G, (A,))]
    assert 0.2 < last <= 1.2


def test_a_merged_change_restarts_the_retransmission_schedule() -> None:
    host = make_host(seed=1)
    host.set_membership(0.0, G, INC, frozenset({A}))
    host.set_membership(0.5, G, INC, frozenset({A, B}))
    deadline = host.get_timer()
    assert deadline is not None and 0.5 < deadline <= 1.5


def test_groups_retransmit_independently_and_due_ones_share_one_report() -> None:
    host = make_host()
    host.set_membership(0.0, G, EXC, frozenset())
    host.set_membership(0.0, G2, EXC, frozenset())
    actions = host.handle_timer(5.0)
    reports = [a for a in actions if isinstance(a, SendReport)]
    assert len(reports) == 1
    assert {r.group for r in reports[0].records} == {G, G2}


def test_mld_uses_version_two_and_ipv6_addresses() -> None:
    host = make_host(family=Family.IPV6)
    actions = host.set_membership(0.0, G6, INC, frozenset({S6}))
    assert actions == [SendReport("up0", Family.IPV6, 2,
                                  (GroupRecord(RecordType.ALLOW_NEW_SOURCES, G6, (S6,)),))]


class _ObservingRouter:
    """A lossless listener applying state-change records to its copy of the host's state."""

    def __init__(self) -> None:
        self.state: dict[object, tuple[FilterMode, frozenset]] = {}

    def apply(self, actions: list) -> None:
        for action in actions:
            if not isinstance(action, SendReport):
                continue
            for record in action.records:
                mode, sources = self.state.get(record.group, (INC, frozenset()))
                received = frozenset(record.sources)
                kind = record.record_type
                if kind is RecordType.CHANGE_TO_INCLUDE:
                    mode, sources = INC, received
                elif kind is RecordType.CHANGE_TO_EXCLUDE:
                    mode, sources = EXC, received
                elif kind is RecordType.ALLOW_NEW_SOURCES:
                    sources = sources | received if mode is INC else sources - received
                elif kind is RecordType.BLOCK_OLD_SOURCES:
                    sources = sources - received if mode is INC else sources | received
                else:
                    pytest.fail(f"unexpected record {record}")
                self.state[record.group] = (mode, sources)


def _observed(observer: _ObservingRouter, group: object) -> tuple[FilterMode, frozenset] | None:
    state = observer.state.get(group)
    return None if state is None or state == (INC, frozenset()) else state


def test_property_lossless_listener_tracks_the_host_state() -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    state_strategy = st.tuples(st.sampled_from([INC, EXC]), st.frozensets(st.sampled_from([A, B, C])))
    step = st.tuples(st.sampled_from([G, G2]), state_strategy, st.floats(0.0, 1.5))

    @settings(max_examples=200, deadline=None)
    @given(st.lists(step, max_size=12), st.integers(1, 3), st.integers(0, 1000))
    def check(steps: list, robustness: int, seed: int) -> None:
        host = make_host(robustness=robustness, seed=seed)
        observer = _ObservingRouter()
        now = 0.0
        for group, (mode, sources), pause in steps:
            while (deadline := host.get_timer()) is not None and deadline <= now + pause:
                observer.apply(host.handle_timer(deadline))
            now += pause
            observer.apply(host.set_membership(now, group, mode, sources))
            for g in (G, G2):
                assert _observed(observer, g) == host.membership(g)
        actions, _ = run_until_idle(host, now, limit=robustness * 1.0 + 1e-9)
        observer.apply(actions)
        assert host.get_timer() is None
        for g in (G, G2):
            assert _observed(observer, g) == host.membership(g)
        assert set(host.groups()) == {g for g in (G, G2) if host.membership(g) is not None}

    check()
