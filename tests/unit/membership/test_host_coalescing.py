"""Upstream reports packed, retransmissions merged, General Query answers spread
(RFC 3376 §5.1-§5.2, RFC 3810 §6.1-§6.2, RFC 4605 §4.1), driven by a twisted Clock."""

from __future__ import annotations

import ipaddress
import random

from twisted.internet.task import Clock

from mcproxy_pmip.addresses import Family
from mcproxy_pmip.membership.actions import SendReport, Trace, coalesce_reports
from mcproxy_pmip.membership.filters import AllowAll
from mcproxy_pmip.membership.host import UpstreamHost
from mcproxy_pmip.membership.instance import InstanceCore
from mcproxy_pmip.membership.query import Query
from mcproxy_pmip.membership.timers import HostOptions, RouterOptions
from mcproxy_pmip.wire.records import FilterMode, GroupRecord, RecordType
from mcproxy_pmip.wire.split import split_report_records

INC = FilterMode.INCLUDE
EXC = FilterMode.EXCLUDE
V4 = Family.IPV4
V6 = Family.IPV6
HOST = ipaddress.ip_address("10.1.0.10")
QUERIER = ipaddress.ip_address("10.0.0.254")
A = ipaddress.ip_address("192.0.2.1")


def groups(count: int, family: Family = V4) -> list:
    base = ipaddress.ip_address("232.1.0.0" if family is V4 else "ff3e::8000:0")
    return [base + index + 1 for index in range(count)]


def reports(actions: list) -> list[SendReport]:
    return [a for a in actions if isinstance(a, SendReport)]


class Core:
    """An InstanceCore with one upstream and one downstream on a Clock."""

    def __init__(self, family: Family = V4, robustness: int = 2, seed: int = 5) -> None:
        self.clock = Clock()
        self.clock.advance(1000.0)
        self.family = family
        self.core = InstanceCore("i", ["up0"], AllowAll(), RouterOptions(),
                                 HostOptions(robustness=robustness), random.Random(seed))
        own = ipaddress.ip_address("10.1.0.1" if family is V4 else "fe80::1")
        self.core.add_downstream(self.clock.seconds(), "d1", family, own)

    def join(self, count: int) -> list:
        records = [GroupRecord(RecordType.CHANGE_TO_EXCLUDE, g) for g in groups(count, self.family)]
        source = HOST if self.family is V4 else ipaddress.ip_address("fe80::10")
        return self.core.handle_report(self.clock.seconds(), "d1", self.family,
                                       self.family.newest_version, records, source)

    def fire_upstream(self, until: float) -> list[tuple[float, list]]:
        """Fire every deadline up to ``until``; (time, reports) for each firing that sent any."""
        fired = []
        while (deadline := self.core.get_timer()) is not None and deadline <= until:
            self.clock.advance(max(0.0, deadline - self.clock.seconds()))
            sent = reports(self.core.handle_timer(self.clock.seconds()))
            if sent:
                fired.append((self.clock.seconds(), sent))
        return fired


def test_one_downstream_report_joining_183_groups_is_one_report_and_one_packet_upstream() -> None:
    rig = Core()
    sent = reports(rig.join(183))
    assert len(sent) == 1, f"{len(sent)} upstream reports for one downstream report"
    assert [r.group for r in sent[0].records] == groups(183)
    assert {r.record_type for r in sent[0].records} == {RecordType.CHANGE_TO_EXCLUDE}
    packets = split_report_records(sent[0].records, V4, 1500)
    assert [len(p) for p in packets] == [183], "183 records of 8 octets fill one 1,500-octet IGMPv3 report"
    assert [len(p) for p in split_report_records(sent[0].records, V4, 9000)] == [183]
    assert [len(p) for p in split_report_records(sent[0].records, V4, 576)] == [68, 68, 47]


def test_mld_joins_pack_72_records_per_1500_octet_report() -> None:
    rig = Core(V6)
    sent = reports(rig.join(150))
    assert len(sent) == 1 and len(sent[0].records) == 150
    assert [len(p) for p in split_report_records(sent[0].records, V6, 1500)] == [72, 72, 6]


def test_retransmissions_of_a_burst_go_out_together_robustness_minus_one_times() -> None:
    rig = Core(robustness=3)
    start = rig.clock.seconds()
    rig.join(183)
    fired = rig.fire_upstream(start + 10.0)
    assert len(fired) == 2, f"retransmissions at {[t for t, _ in fired]}: expected 2 merged ones"
    for _, sent in fired:
        assert len(sent) == 1 and [r.group for r in sent[0].records] == groups(183)
    assert start < fired[0][0] <= start + 1.0 and 0.0 < fired[1][0] - fired[0][0] <= 1.0


class HalfRandom(random.Random):
    """``random()`` is always 0.5: every random delay is half its interval."""

    def random(self) -> float:
        return 0.5


def _due_records(host: UpstreamHost) -> list[tuple[float, list]]:
    """Fire every deadline; (time, [(record type, group)]) per firing."""
    fired = []
    while (deadline := host.get_timer()) is not None:
        fired.append((deadline, [(r.record_type, r.group)
                                 for a in reports(host.handle_timer(deadline)) for r in a.records]))
    return fired


def test_changes_close_together_share_a_retransmission_far_apart_do_not() -> None:
    host = UpstreamHost("up0", V4, HostOptions(), HalfRandom())
    g1, g2, g3 = groups(3)
    host.set_membership(0.0, g1, EXC, frozenset())
    host.set_membership(0.05, g2, EXC, frozenset())   # within 10 % of the 1 s interval: same batch
    host.set_membership(0.3, g3, EXC, frozenset())    # later: a batch of its own
    to_ex = RecordType.CHANGE_TO_EXCLUDE
    assert _due_records(host) == [(0.5, [(to_ex, g1), (to_ex, g2)]), (0.8, [(to_ex, g3)])]


def test_a_newer_change_of_a_group_in_a_batch_replaces_its_pending_retransmission() -> None:
    to_ex = RecordType.CHANGE_TO_EXCLUDE
    g1, g2 = groups(2)
    for change_at, expected in ((0.3, [(0.5, [(to_ex, g2)]), (0.8, [(to_ex, g1)])]),
                                (0.05, [(0.5, [(to_ex, g2), (to_ex, g1)])])):
        host = UpstreamHost("up0", V4, HostOptions(), HalfRandom())
        host.set_membership(0.0, g1, INC, frozenset({A}))
        host.set_membership(0.0, g2, EXC, frozenset())
        sent = reports(host.set_membership(change_at, g1, EXC, frozenset()))
        assert [(r.record_type, r.sources) for r in sent[0].records] == [(to_ex, ())]
        assert _due_records(host) == expected, "one retransmission of the newer change, no ALLOW"


def _filled_host(count: int, mtu: int = 1500) -> UpstreamHost:
    host = UpstreamHost("up0", V4, HostOptions(), random.Random(9))
    host.mtu = mtu
    for group in groups(count):
        host.set_membership(0.0, group, EXC, frozenset())
    while (deadline := host.get_timer()) is not None:
        host.handle_timer(deadline)
    return host


def test_general_query_answer_for_a_large_state_is_spread_in_report_sized_parts() -> None:
    host = _filled_host(1000)
    host.handle_query(100.0, Query(3, QUERIER, 10.0, None))
    seen: list = []
    times: list[float] = []
    while (deadline := host.get_timer()) is not None:
        sent = reports(host.handle_timer(deadline))
        assert len(sent) == 1
        assert len(split_report_records(sent[0].records, V4, 1500)) == 1, "each part fits one report"
        seen += [r.group for r in sent[0].records]
        times.append(deadline)
    assert len(times) == 6, "1,000 records of 8 octets: 6 reports of at most 183"
    assert sorted(seen) == groups(1000), "every group answered exactly once"
    assert all(100.0 < t <= 110.0 for t in times)
    shares = [int((t - 100.0) / (10.0 / 6) - 1e-9) for t in times]
    assert shares == list(range(6)), f"one part in each sixth of Max Resp Time, got {times}"


def test_answer_parts_are_sized_for_1280_octets_unless_told_the_mtu() -> None:
    host = UpstreamHost("up0", V4, HostOptions(), random.Random(9))
    for group in groups(1000):
        host.set_membership(0.0, group, EXC, frozenset())
    host.handle_timer(10.0)
    host.handle_query(100.0, Query(3, QUERIER, 10.0, None))
    parts = []
    while (deadline := host.get_timer()) is not None:
        parts += [a.records for a in reports(host.handle_timer(deadline))]
    assert [len(part) for part in parts] == [156] * 6 + [64], "1,280 - 24 - 8 octets hold 156 records"
    assert all(len(split_report_records(part, V4, 1452)) == 1 for part in parts), \
        "one packet each on a 1,452-octet tunnel"


def test_a_small_state_answers_a_general_query_in_one_report() -> None:
    host = _filled_host(183)
    host.handle_query(100.0, Query(3, QUERIER, 10.0, None))
    deadline = host.get_timer()
    sent = reports(host.handle_timer(deadline))
    assert len(sent) == 1 and len(sent[0].records) == 183
    assert host.get_timer() is None


def test_joins_and_leaves_during_a_spread_answer_are_reflected_in_it() -> None:
    host = _filled_host(400)
    host.handle_query(100.0, Query(3, QUERIER, 10.0, None))
    first = host.get_timer()
    left, joined = groups(400)[-1], ipaddress.ip_address("232.9.9.9")
    host.set_membership(first - 1e-3, left, INC, frozenset())
    host.set_membership(first - 1e-3, joined, EXC, frozenset())
    answered: list = []
    while (deadline := host.get_timer()) is not None:
        answered += [r.group for a in reports(host.handle_timer(deadline)) for r in a.records
                     if r.record_type is RecordType.MODE_IS_EXCLUDE]
    assert left not in answered
    assert answered.count(joined) == 1 and answered[-1] == joined
    assert sorted(answered) == sorted(groups(399) + [joined])


def test_a_general_query_after_part_of_the_answer_went_out_starts_a_new_answer() -> None:
    host = _filled_host(400)
    host.handle_query(100.0, Query(3, QUERIER, 10.0, None))
    first = host.get_timer()
    host.handle_timer(first)
    host.handle_query(first + 0.01, Query(3, QUERIER, 10.0, None))
    answered: list = []
    while (deadline := host.get_timer()) is not None:
        answered += [r.group for a in reports(host.handle_timer(deadline)) for r in a.records]
    assert sorted(answered) == groups(400), "the new answer covers every group again"


def test_a_group_specific_query_still_gets_its_one_record_from_a_large_state() -> None:
    host = _filled_host(1000)
    target = groups(1000)[500]
    actions = host.handle_query(100.0, Query(3, QUERIER, 1.0, target))
    assert not [a for a in actions if isinstance(a, Trace)]
    sent = reports(host.handle_timer(host.get_timer()))
    assert [(r.record_type, r.group) for a in sent for r in a.records] == [
        (RecordType.MODE_IS_EXCLUDE, target)]
    assert host.get_timer() is None


def test_igmpv2_compatibility_mode_sends_one_record_per_group_in_one_action() -> None:
    rig = Core()
    rig.core.handle_query(rig.clock.seconds(), "up0", V4, Query(2, QUERIER, 10.0, None))
    sent = reports(rig.join(183))
    assert len(sent) == 1 and sent[0].version == 2
    assert [r.group for r in sent[0].records] == groups(183)


def test_coalescing_keeps_answers_and_changes_apart_and_other_actions_in_place() -> None:
    g1, g2, g3 = groups(3)
    change = lambda g: SendReport("up0", V4, 3, (GroupRecord(RecordType.CHANGE_TO_EXCLUDE, g),))  # noqa: E731
    answer = SendReport("up0", V4, 3, (GroupRecord(RecordType.MODE_IS_EXCLUDE, g3),))
    other = SendReport("up1", V4, 3, (GroupRecord(RecordType.CHANGE_TO_EXCLUDE, g3),))
    trace = Trace("x")
    merged = coalesce_reports([change(g1), trace, answer, change(g2), other, change(g1)])
    assert merged == [SendReport("up0", V4, 3, tuple(GroupRecord(RecordType.CHANGE_TO_EXCLUDE, g)
                                                     for g in (g1, g2, g1))),
                      trace, answer, other]
    single = [change(g1), trace]
    assert coalesce_reports(single) is single
