"""UpstreamHost answers to queries (RFC 3376 §5.2, RFC 3810 §6.2) and older-version
querier compatibility (RFC 3376 §7.2.1, RFC 3810 §8.2.1)."""

from __future__ import annotations

import ipaddress
import random

from mcproxy_pmip.addresses import Family
from mcproxy_pmip.membership.actions import SendReport, Trace
from mcproxy_pmip.membership.host import UpstreamHost
from mcproxy_pmip.membership.query import Query
from mcproxy_pmip.membership.timers import HostOptions
from mcproxy_pmip.wire.records import FilterMode

INC = FilterMode.INCLUDE
EXC = FilterMode.EXCLUDE
G = ipaddress.ip_address("232.1.1.1")
G2 = ipaddress.ip_address("232.1.1.2")
A, B, C = (ipaddress.ip_address(f"10.0.0.{i}") for i in range(1, 4))
QUERIER = ipaddress.ip_address("10.0.0.254")
G6 = ipaddress.ip_address("ff3e::1")
QUERIER6 = ipaddress.ip_address("fe80::1")


class FixedRandom(random.Random):
    """``random()`` returns a fixed value, to pin the edges of (0, interval]."""

    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


def make_host(rng: random.Random | None = None, family: Family = Family.IPV4) -> UpstreamHost:
    return UpstreamHost("up0", family, HostOptions(), rng or random.Random(3))


def settled_host(rng: random.Random | None = None) -> UpstreamHost:
    """A host with G in EXCLUDE{} and G2 in INCLUDE{A, B}, retransmissions finished."""
    host = make_host(rng)
    host.set_membership(0.0, G, EXC, frozenset())
    host.set_membership(0.0, G2, INC, frozenset({A, B}))
    host.handle_timer(50.0)
    assert host.get_timer() is None
    return host


def reports(actions: list) -> list[SendReport]:
    return [a for a in actions if isinstance(a, SendReport)]


def records_of(actions: list) -> list[tuple[str, object, tuple]]:
    return [(r.record_type.short, r.group, r.sources) for a in reports(actions) for r in a.records]


def query(host: UpstreamHost, now: float, group=None, sources=(), version: int = 3,
          max_resp: float = 10.0) -> list:
    return host.handle_query(now, Query(version, QUERIER, max_resp, group, sources))


def test_general_query_is_answered_after_a_delay_one_record_per_group() -> None:
    host = settled_host()
    assert reports(query(host, 100.0)) == []
    deadline = host.get_timer()
    assert deadline is not None and 100.0 < deadline <= 110.0
    actions = host.handle_timer(deadline)
    assert len(reports(actions)) == 1
    assert sorted(records_of(actions)) == [("IS_EX", G, ()), ("IS_IN", G2, (A, B))]
    assert host.get_timer() is None


def test_response_delay_is_never_zero_and_at_most_max_resp_time() -> None:
    latest = settled_host(FixedRandom(0.0))
    query(latest, 100.0)
    assert latest.get_timer() == 110.0
    earliest = settled_host(FixedRandom(0.999999))
    query(earliest, 100.0)
    deadline = earliest.get_timer()
    assert deadline is not None and 100.0 < deadline < 100.001


def test_rule_1_earlier_general_response_makes_a_group_query_add_nothing() -> None:
    host = settled_host(FixedRandom(0.5))
    query(host, 100.0, max_resp=2.0)          # general response at 101
    query(host, 100.0, group=G, max_resp=10.0)  # would be at 105
    actions = host.handle_timer(101.0)
    assert sorted(records_of(actions)) == [("IS_EX", G, ()), ("IS_IN", G2, (A, B))]
    assert host.get_timer() is None


def test_rule_2_a_new_general_query_replaces_the_pending_general_response() -> None:
    host = settled_host(FixedRandom(0.5))
    query(host, 100.0, max_resp=10.0)  # at 105
    query(host, 101.0, max_resp=2.0)   # at 102: replaces it
    assert host.get_timer() == 102.0
    assert len(reports(host.handle_timer(102.0))) == 1
    assert host.get_timer() is None


def test_group_specific_query_for_an_unknown_group_gets_no_answer() -> None:
    host = settled_host()
    actions = query(host, 100.0, group=ipaddress.ip_address("232.9.9.9"))
    assert reports(actions) == []
    assert [a.event for a in actions if isinstance(a, Trace)] == ["host_query_for_unknown_group"]
    assert host.get_timer() is None


def test_group_specific_query_answers_that_group_only() -> None:
    host = settled_host()
    query(host, 100.0, group=G2, max_resp=1.0)
    actions = host.handle_timer(101.0)
    assert records_of(actions) == [("IS_IN", G2, (A, B))]


def test_group_and_source_specific_query_include_answers_the_intersection() -> None:
    host = settled_host()
    query(host, 100.0, group=G2, sources=(B, C), max_resp=1.0)
    assert records_of(host.handle_timer(101.0)) == [("IS_IN", G2, (B,))]


def test_group_and_source_specific_query_exclude_answers_sources_not_excluded() -> None:
    host = make_host()
    host.set_membership(0.0, G, EXC, frozenset({A}))
    host.handle_timer(50.0)
    query(host, 100.0, group=G, sources=(A, B), max_resp=1.0)
    assert records_of(host.handle_timer(101.0)) == [("IS_IN", G, (B,))]


def test_group_and_source_specific_query_with_empty_answer_sends_nothing() -> None:
    host = settled_host()
    query(host, 100.0, group=G2, sources=(C,), max_resp=1.0)
    assert reports(host.handle_timer(101.0)) == []


def test_rule_4_group_specific_query_clears_the_recorded_sources() -> None:
    host = settled_host(FixedRandom(0.5))
    query(host, 100.0, group=G2, sources=(A,), max_resp=4.0)  # at 102
    query(host, 100.5, group=G2, max_resp=10.0)               # at 105.5 -> keeps 102
    assert host.get_timer() == 102.0
    assert records_of(host.handle_timer(102.0)) == [("IS_IN", G2, (A, B))]


def test_rule_5_source_lists_of_pending_queries_are_augmented() -> None:
    host = settled_host(FixedRandom(0.5))
    query(host, 100.0, group=G2, sources=(A,), max_resp=10.0)  # at 105
    query(host, 101.0, group=G2, sources=(B,), max_resp=2.0)   # at 102: earliest wins
    assert host.get_timer() == 102.0
    assert records_of(host.handle_timer(102.0)) == [("IS_IN", G2, (A, B))]
    assert host.get_timer() is None


def test_v2_querier_switches_reports_to_v2_and_back_after_the_timeout() -> None:
    host = settled_host()
    actions = query(host, 100.0, version=2)
    assert host.version == 2
    assert any(isinstance(a, Trace) and a.event == "host_compatibility_mode_changed" for a in actions)
    response = host.handle_timer(110.0)
    assert [r.version for r in reports(response)] == [2]
    assert sorted(records_of(response)) == [("IS_EX", G, ()), ("IS_EX", G2, ())]
    # joins become v2 Reports, source-list changes are not reported, a leave is one Leave
    join = host.set_membership(120.0, ipaddress.ip_address("232.1.1.3"), INC, frozenset({C}))
    assert reports(join)[0].version == 2
    assert records_of(join) == [("IS_EX", ipaddress.ip_address("232.1.1.3"), ())]
    assert host.set_membership(121.0, G2, INC, frozenset({A})) == []
    assert records_of(host.set_membership(122.0, G, INC, frozenset())) == [("TO_IN", G, ())]
    # Older Version Querier Present Timeout: 2 x 125 + 10 = 260 s after the query
    while (deadline := host.get_timer()) is not None and deadline < 359.0:
        host.handle_timer(deadline)
    assert host.get_timer() == 360.0
    host.handle_timer(360.0)
    assert host.version == 3
    back = host.set_membership(400.0, G2, INC, frozenset({A, C}))
    assert [r.version for r in reports(back)] == [3]
    assert records_of(back) == [("ALLOW", G2, (C,))]


def test_older_querier_timeout_uses_the_last_robustness_and_query_interval_heard() -> None:
    host = make_host()
    host.handle_query(0.0, Query(3, QUERIER, 5.0, robustness=3, query_interval=60.0))
    host.handle_query(10.0, Query(2, QUERIER, 10.0))
    host.handle_timer(30.0)  # the pending general response
    assert host.get_timer() == 10.0 + 3 * 60.0 + 5.0


def test_v1_querier_leaves_send_nothing_and_v1_wins_over_v2() -> None:
    host = settled_host()
    query(host, 100.0, version=2)
    query(host, 101.0, version=1)
    assert host.version == 1
    assert host.set_membership(102.0, G, INC, frozenset()) == []
    assert host.membership(G) is None


def test_switching_version_cancels_pending_retransmissions() -> None:
    host = make_host()
    host.set_membership(0.0, G, EXC, frozenset())
    query(host, 0.1, version=2, max_resp=1.0)
    actions = []
    while (deadline := host.get_timer()) is not None and deadline < 100.0:
        actions.extend(host.handle_timer(deadline))
    assert records_of(actions) == [("IS_EX", G, ())]  # the query answer only, in v2
    assert [r.version for r in reports(actions)] == [2]


def test_mldv1_querier_switches_mld_reports_to_version_one() -> None:
    host = make_host(family=Family.IPV6)
    host.handle_query(0.0, Query(1, QUERIER6, 10.0))
    assert host.version == 1
    join = host.set_membership(1.0, G6, EXC, frozenset())
    assert [(r.version, r.family) for r in reports(join)] == [(1, Family.IPV6)]
    assert records_of(host.set_membership(2.0, G6, INC, frozenset())) == [("TO_IN", G6, ())]


def test_an_igmpv2_host_stays_in_v2_under_a_v3_querier_and_a_v1_querier_still_wins() -> None:
    host = UpstreamHost("up0", Family.IPV4, HostOptions(newest_version=2), random.Random(3))
    assert host.version == 2
    join = host.set_membership(0.0, G, EXC, frozenset())
    assert [r.version for r in reports(join)] == [2] and records_of(join) == [("IS_EX", G, ())]
    retransmitted = host.handle_timer(host.get_timer())
    assert [r.version for r in reports(retransmitted)] == [2]
    query(host, 10.0, version=3, max_resp=1.0)
    assert host.version == 2
    answer = []
    while (deadline := host.get_timer()) is not None and deadline < 12.0:
        answer.extend(host.handle_timer(deadline))
    assert [r.version for r in reports(answer)] == [2] and records_of(answer) == [("IS_EX", G, ())]
    query(host, 20.0, version=1)
    assert host.version == 1
    while (deadline := host.get_timer()) is not None and deadline < 1000.0:
        host.handle_timer(deadline)
    assert host.version == 2, "after the v1 querier's timeout the host went above its own version"


def test_an_mldv1_host_reports_in_version_one() -> None:
    host = UpstreamHost("up0", Family.IPV6, HostOptions(newest_version=1), random.Random(3))
    join = host.set_membership(0.0, G6, EXC, frozenset())
    assert [(r.version, r.family) for r in reports(join)] == [(1, Family.IPV6)]
