"""InstanceCore scenarios (docs/scenarios.md items 8-11, 15, 16 logic, 19, 20), driven by a twisted Clock."""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Sequence

import pytest
from twisted.internet.task import Clock

from mcproxy_pmip.addresses import Family, IPAddress
from mcproxy_pmip.membership.actions import ForwardingChanged, SendQuery, SendReport
from mcproxy_pmip.membership.filters import AllowAll, Direction
from mcproxy_pmip.membership.instance import InstanceCore
from mcproxy_pmip.membership.query import Query
from mcproxy_pmip.membership.timers import HostOptions, RouterOptions
from mcproxy_pmip.wire.records import FilterMode, GroupRecord, RecordType

INC = FilterMode.INCLUDE
EXC = FilterMode.EXCLUDE
V4 = Family.IPV4
V6 = Family.IPV6
G = ipaddress.ip_address("232.1.1.1")
G2 = ipaddress.ip_address("232.1.1.2")
S1, S2, S3 = (ipaddress.ip_address(f"192.0.2.{i}") for i in range(1, 4))
HOST1 = ipaddress.ip_address("10.1.0.10")
HOST2 = ipaddress.ip_address("10.2.0.10")
ROUTER_ADDRESS = {"d1": ipaddress.ip_address("10.1.0.1"), "d2": ipaddress.ip_address("10.2.0.1"),
                  "d3": ipaddress.ip_address("10.3.0.1")}
UPSTREAM_QUERIER = ipaddress.ip_address("10.0.0.254")
G6 = ipaddress.ip_address("ff3e::8000:1")
S6 = ipaddress.ip_address("2001:db8::5")
HOST6 = ipaddress.ip_address("fe80::10")


def rec(kind: RecordType, group: IPAddress, *sources: IPAddress) -> GroupRecord:
    return GroupRecord(kind, group, tuple(sources))


class Harness:
    """An InstanceCore on a Clock; collects every action it returns."""

    def __init__(self, upstreams: Sequence[str] = ("up0",), downstreams: Sequence[str] = ("d1", "d2"),
                 filters=None, selection: str = "all", seed: int = 11) -> None:
        self.clock = Clock()
        self.clock.advance(1000.0)
        self.core = InstanceCore("pmip0", upstreams, filters or AllowAll(), RouterOptions(),
                                 HostOptions(), random.Random(seed), upstream_selection=selection)
        self.actions: list = []
        for name in downstreams:
            self.actions += self.core.add_downstream(self.now, name, V4, ROUTER_ADDRESS[name])

    @property
    def now(self) -> float:
        return self.clock.seconds()

    def report(self, interface: str, *records: GroupRecord, version: int = 3,
               family: Family = V4, source: IPAddress = HOST1) -> list:
        out = self.core.handle_report(self.now, interface, family, version, records, source)
        self.actions += out
        return out

    def advance(self, interval: float) -> list:
        """Step the clock to each deadline within ``interval``, firing it; returns the actions."""
        target = self.now + interval
        out: list = []
        while (deadline := self.core.get_timer()) is not None and deadline <= target:
            self.clock.advance(max(0.0, deadline - self.now))
            out += self.core.handle_timer(self.now)
        self.clock.advance(target - self.now)
        self.actions += out
        return out


def v3_query(source: IPAddress, group: IPAddress | None = None) -> Query:
    """An IGMPv3 query (Max Resp 10 s, QRV 2, QQI 125 s) from ``source``."""
    return Query(3, source, 10.0, group, robustness=2, query_interval=125.0)


def upstream_reports(actions: list, interface: str = "up0") -> list[SendReport]:
    return [a for a in actions if isinstance(a, SendReport) and a.interface == interface]


def upstream_records(actions: list, interface: str = "up0") -> list[tuple[str, object, tuple]]:
    return [(r.record_type.short, r.group, r.sources)
            for a in upstream_reports(actions, interface) for r in a.records]


def test_adding_a_downstream_sends_a_general_query_at_once() -> None:
    h = Harness(downstreams=("d1",))
    queries = [a for a in h.actions if isinstance(a, SendQuery)]
    assert [(q.interface, q.group) for q in queries] == [("d1", None)]


def test_scenario_9_state_change_at_once_then_retransmission_within_one_second() -> None:
    h = Harness()
    out = h.report("d1", rec(RecordType.CHANGE_TO_EXCLUDE, G))
    assert upstream_records(out) == [("TO_EX", G, ())]
    assert ForwardingChanged(V4, G) in out
    later = h.advance(1.0)
    assert upstream_records(later) == [("TO_EX", G, ())]
    assert upstream_records(h.advance(100.0)) == []


def test_scenario_9_a_change_during_retransmission_is_merged() -> None:
    h = Harness()
    assert upstream_records(h.report("d1", rec(RecordType.ALLOW_NEW_SOURCES, G, S1))) == [
        ("ALLOW", G, (S1,))]
    assert upstream_records(h.report("d2", rec(RecordType.ALLOW_NEW_SOURCES, G, S2))) == [
        ("ALLOW", G, (S1, S2))]
    assert upstream_records(h.advance(1.0)) == [("ALLOW", G, (S2,))]


def test_scenario_10_v2_member_and_include_member_then_v2_member_expires() -> None:
    h = Harness()
    h.report("d1", rec(RecordType.MODE_IS_EXCLUDE, G), version=2)
    h.report("d2", rec(RecordType.MODE_IS_INCLUDE, G, S1, S2), source=HOST2)
    assert h.core.host("up0", V4).membership(G) == (EXC, frozenset())
    h.advance(200.0)
    h.report("d2", rec(RecordType.MODE_IS_INCLUDE, G, S1, S2), source=HOST2)  # d2 keeps answering
    out = h.advance(70.0)  # d1's group membership interval (260 s) runs out
    assert upstream_records(out)[0] == ("TO_IN", G, (S1, S2))
    assert h.core.host("up0", V4).membership(G) == (INC, frozenset({S1, S2}))


def test_scenario_11_general_query_answered_later_one_record_per_group() -> None:
    h = Harness()
    h.report("d1", rec(RecordType.CHANGE_TO_EXCLUDE, G))
    h.report("d2", rec(RecordType.ALLOW_NEW_SOURCES, G2, S1))
    h.advance(5.0)
    out = h.core.handle_query(h.now, "up0", V4, v3_query(UPSTREAM_QUERIER))
    assert upstream_reports(out) == []
    answer = h.advance(10.0)
    reports = upstream_reports(answer)
    assert len(reports) == 1
    assert sorted((r.record_type.short, r.group, r.sources) for r in reports[0].records) == [
        ("IS_EX", G, ()), ("IS_IN", G2, (S1,))]


def test_scenario_11_group_specific_query_for_an_unknown_group_gets_no_answer() -> None:
    h = Harness()
    h.report("d1", rec(RecordType.CHANGE_TO_EXCLUDE, G))
    h.advance(5.0)
    h.core.handle_query(h.now, "up0", V4, v3_query(UPSTREAM_QUERIER, G2))
    assert upstream_reports(h.advance(20.0)) == []


def test_scenario_11_v2_querier_switches_upstream_reports_to_v2() -> None:
    h = Harness()
    h.core.handle_query(h.now, "up0", V4, Query(2, UPSTREAM_QUERIER, 10.0))
    out = h.report("d1", rec(RecordType.ALLOW_NEW_SOURCES, G, S1))
    assert [(r.version, tuple(x.sources for x in r.records)) for r in upstream_reports(out)] == [(2, ((),))]


def test_scenario_8_link_local_scope_groups_create_no_upstream_state() -> None:
    h = Harness()
    out = h.report("d1", rec(RecordType.CHANGE_TO_EXCLUDE, ipaddress.ip_address("224.0.0.251")))
    assert upstream_reports(out) == []
    assert list(h.core.groups(V4)) == []


def test_last_member_leave_sends_to_in_empty_upstream_after_the_queries() -> None:
    # docs/scenarios.md item 5: Q(G) at 0 s and 1 s, forwarding stops at ~2 s, then TO_IN({}) upstream.
    h = Harness()
    h.report("d1", rec(RecordType.CHANGE_TO_EXCLUDE, G))
    h.advance(10.0)
    out = h.report("d1", rec(RecordType.CHANGE_TO_INCLUDE, G))
    assert upstream_reports(out) == []
    later = h.advance(2.5)
    assert upstream_records(later)[0] == ("TO_IN", G, ())
    assert h.core.outputs(V4, S1, G, "up0") == frozenset()


def test_removing_a_downstream_updates_the_upstream_at_once() -> None:
    h = Harness()
    h.report("d1", rec(RecordType.CHANGE_TO_EXCLUDE, G))
    h.report("d2", rec(RecordType.ALLOW_NEW_SOURCES, G, S1))
    h.advance(10.0)
    out = h.core.remove_downstream(h.now, "d1", V4)
    assert upstream_records(out) == [("TO_IN", G, (S1,))]
    assert ForwardingChanged(V4, G) in out
    assert upstream_records(h.advance(2.0)) == [("TO_IN", G, (S1,))]
    out = h.core.remove_downstream(h.now, "d2", V4)
    assert upstream_records(out) == [("BLOCK", G, (S1,))]
    assert h.core.host("up0", V4).membership(G) is None
    assert h.core.downstreams == ()


def test_scenario_15_outputs_never_include_the_incoming_interface() -> None:
    h = Harness(downstreams=("d1", "d2", "d3"))
    h.report("d1", rec(RecordType.CHANGE_TO_EXCLUDE, G))
    h.report("d2", rec(RecordType.CHANGE_TO_EXCLUDE, G))
    assert h.core.outputs(V4, S1, G, "up0") == {"d1", "d2"}
    assert h.core.outputs(V4, HOST1, G, "d1") == {"up0", "d2"}
    assert h.core.outputs(V4, S1, G, "d3") == {"up0", "d1", "d2"}
    assert h.core.outputs(V4, S1, G, "nowhere") == frozenset()


def test_source_specific_subscription_forwards_only_that_source() -> None:
    h = Harness()
    h.report("d1", rec(RecordType.ALLOW_NEW_SOURCES, G, S1))
    assert h.core.outputs(V4, S1, G, "up0") == {"d1"}
    assert h.core.outputs(V4, S2, G, "up0") == frozenset()


class _Rules:
    """Deny (interface, direction, group) triples; everything else passes."""

    def __init__(self, *denied: tuple[str, Direction, IPAddress, IPAddress | None]) -> None:
        self.denied = set(denied)

    def allows(self, interface, direction, group, source) -> bool:
        return ((interface, direction, group, source) not in self.denied
                and (interface, direction, group, None) not in self.denied)


def test_downstream_in_filter_keeps_disallowed_subscriptions_out() -> None:
    h = Harness(filters=_Rules(("d1", Direction.IN, G, None), ("d1", Direction.IN, G2, S2)))
    assert upstream_reports(h.report("d1", rec(RecordType.CHANGE_TO_EXCLUDE, G))) == []
    out = h.report("d1", rec(RecordType.ALLOW_NEW_SOURCES, G2, S1, S2))
    assert upstream_records(out) == [("ALLOW", G2, (S1,))]


def test_upstream_out_filter_and_selection_first() -> None:
    rules = _Rules(("up0", Direction.OUT, G2, None))
    h = Harness(upstreams=("up0", "up1"), filters=rules, selection="first")
    out = h.report("d1", rec(RecordType.CHANGE_TO_EXCLUDE, G))
    assert upstream_records(out, "up0") == [("TO_EX", G, ())] and upstream_records(out, "up1") == []
    out = h.report("d1", rec(RecordType.CHANGE_TO_EXCLUDE, G2))
    assert upstream_records(out, "up0") == [] and upstream_records(out, "up1") == [("TO_EX", G2, ())]
    assert h.core.outputs(V4, HOST1, G2, "d1") == {"up1"}


def test_upstream_selection_all_reports_on_every_upstream() -> None:
    h = Harness(upstreams=("up0", "up1"))
    out = h.report("d1", rec(RecordType.CHANGE_TO_EXCLUDE, G))
    assert upstream_records(out, "up0") == upstream_records(out, "up1") == [("TO_EX", G, ())]


def test_removing_the_first_upstream_moves_reports_to_the_next() -> None:
    h = Harness(upstreams=("up0", "up1"), selection="first")
    h.report("d1", rec(RecordType.CHANGE_TO_EXCLUDE, G))
    out = h.core.remove_upstream(h.now, "up0")
    assert upstream_records(out, "up0") == [("TO_IN", G, ())]
    assert upstream_records(out, "up1") == [("TO_EX", G, ())]
    assert h.core.upstreams == ("up1",)


def test_both_families_in_one_instance() -> None:
    h = Harness()
    h.core.add_downstream(h.now, "d1", V6, ipaddress.ip_address("fe80::1"))
    out = h.report("d1", rec(RecordType.ALLOW_NEW_SOURCES, G6, S6), version=2, family=V6, source=HOST6)
    assert [(r.family, r.version) for r in upstream_reports(out)] == [(V6, 2)]
    assert h.core.outputs(V6, S6, G6, "up0") == {"d1"}
    assert h.core.outputs(V4, S6, G6, "up0") == frozenset()
    assert list(h.core.groups(V6)) == [G6] and list(h.core.groups(V4)) == []


def test_scenario_19_imported_context_reports_upstream_only_when_not_covered() -> None:
    h = Harness(downstreams=("d1", "d2", "d3"))
    h.report("d1", rec(RecordType.CHANGE_TO_EXCLUDE, G), rec(RecordType.ALLOW_NEW_SOURCES, G2, S1))
    h.advance(5.0)
    version, records = h.core.export_downstream(h.now, "d1", V4)
    assert version == 3 and {r.group for r in records} == {G, G2}
    covered = h.core.import_downstream(h.now, "d2", V4, version, records)
    assert upstream_reports(covered) == []
    assert ForwardingChanged(V4, G) in covered and h.core.outputs(V4, S1, G, "up0") == {"d1", "d2"}
    h.core.remove_downstream(h.now, "d1", V4)
    h.core.remove_downstream(h.now, "d2", V4)
    h.advance(5.0)
    fresh = h.core.import_downstream(h.now, "d3", V4, version, records)
    assert sorted(upstream_records(fresh)) == [("ALLOW", G2, (S1,)), ("TO_EX", G, ())]


def test_report_on_an_upstream_is_traced_not_applied() -> None:
    h = Harness()
    out = h.core.handle_report(h.now, "up0", V4, 3, [rec(RecordType.CHANGE_TO_EXCLUDE, G)], HOST1)
    assert [a.event for a in out] == ["report_not_on_downstream"]
    assert list(h.core.groups(V4)) == []


def test_get_timer_is_the_earliest_child_deadline() -> None:
    h = Harness()
    h.report("d1", rec(RecordType.CHANGE_TO_EXCLUDE, G))
    host_at = h.core.host("up0", V4).get_timer()
    router_at = min(h.core.router(name, V4).get_timer() for name in ("d1", "d2"))
    assert h.core.get_timer() == min(host_at, router_at)


def test_invalid_configuration_is_refused() -> None:
    with pytest.raises(ValueError):
        InstanceCore("x", ["up0"], AllowAll(), RouterOptions(), HostOptions(), random.Random(0),
                     upstream_selection="mutex")
    h = Harness()
    with pytest.raises(ValueError):
        h.core.add_downstream(h.now, "up0", V4, None)
    with pytest.raises(ValueError):
        h.core.add_downstream(h.now, "d1", V4, None)


def test_losing_the_querier_election_stops_forwarding_to_that_link() -> None:
    # docs/scenarios.md item 7 / RFC 4605 §4: a non-querier proxy does not forward onto the link.
    h = Harness()
    h.report("d1", rec(RecordType.CHANGE_TO_EXCLUDE, G))
    h.report("d2", rec(RecordType.CHANGE_TO_EXCLUDE, G))
    lower = ipaddress.ip_address("10.1.0.0")
    out = h.core.handle_query(h.now, "d1", V4, v3_query(lower))
    assert ForwardingChanged(V4, G) in out
    assert h.core.outputs(V4, S1, G, "up0") == {"d2"}


def test_data_filters_upstream_in_and_downstream_out() -> None:
    rules = _Rules(("up0", Direction.IN, G, S2), ("d2", Direction.OUT, G, S1))
    h = Harness(filters=rules)
    h.report("d1", rec(RecordType.CHANGE_TO_EXCLUDE, G))
    h.report("d2", rec(RecordType.CHANGE_TO_EXCLUDE, G))
    assert h.core.outputs(V4, S1, G, "up0") == {"d1"}
    assert h.core.outputs(V4, S2, G, "up0") == frozenset()
    assert h.core.outputs(V4, S3, G, "up0") == {"d1", "d2"}


def test_subscribers_are_the_downstreams_with_a_membership_of_the_group() -> None:
    h = Harness()
    assert h.core.subscribers(V4, G) == ()
    h.report("d2", rec(RecordType.CHANGE_TO_EXCLUDE, G))
    h.report("d1", rec(RecordType.ALLOW_NEW_SOURCES, G, S1))
    assert sorted(h.core.subscribers(V4, G)) == ["d1", "d2"]
    h.report("d2", rec(RecordType.CHANGE_TO_INCLUDE, G))
    h.advance(3.0)
    assert h.core.subscribers(V4, G) == ("d1",), "d2 left after the last member queries"
