"""The daemon's IGMPv3 / MLDv2 protocol behaviour on the wire, with Linux hosts (docs/scenarios.md items 3, 5, 8, 9, 11).

Timers are shortened in a YAML configuration; times are measured from the
event seen on the wire (the host's report on the downstream link, the query
sent upstream) with AF_PACKET captures read in one loop (``scenario_tools.Watch``).
"""

from __future__ import annotations

import ipaddress
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from mcproxy_pmip.addresses import Family, is_link_local_scope_group
from mcproxy_pmip.wire import igmp, mld
from mcproxy_pmip.wire.records import RecordType
from tests.netns.netns_fixtures import netns_factory  # noqa: F401 (fixture)
from tests.netns.proxy_harness import Capture, ProxyTopology
from tests.netns.scenario_tools import (
    Querier,
    Watch,
    host_stack_groups,
    link_local,
    queries,
    quiet_host_retransmissions,
    reports_from,
    scenario_topology,
    sending,
    yaml_config,
)

pytestmark = pytest.mark.netns

FAMILIES = pytest.mark.parametrize("family", [Family.IPV4, Family.IPV6], ids=["igmpv3", "mldv2"])
GROUP = {Family.IPV4: "239.5.5.1", Family.IPV6: "ff15::5:1"}
GROUP2 = {Family.IPV4: "239.5.5.2", Family.IPV6: "ff15::5:2"}
UNKNOWN = {Family.IPV4: "239.5.5.9", Family.IPV6: "ff15::5:9"}
LINK_LOCAL_GROUP = {Family.IPV4: "224.0.0.251", Family.IPV6: "ff02::fb"}


@pytest.fixture
def topo(netns_factory, tmp_path) -> Iterator[ProxyTopology]:  # noqa: F811
    yield from scenario_topology(netns_factory, tmp_path)


def proxy_upstream_address(topo, family: Family):
    return ipaddress.ip_address("10.1.0.2") if family is Family.IPV4 else link_local(topo.px, "up0")


def host_address(topo, index: int, family: Family):
    return (ipaddress.ip_address(f"10.2.{index + 1}.2") if family is Family.IPV4
            else link_local(topo.hosts[index], "e0"))


def proxy_records(capture: Capture, family: Family, proxy, since: float = 0.0):
    """(time, record) for every record of a routable group in the proxy's reports."""
    return [(seen.at, record) for seen in reports_from(capture, family, proxy, since)
            for record in seen.records() if not is_link_local_scope_group(record.group)]


def offsets(times, origin: float) -> list[float]:
    return [round(t - origin, 3) for t in times]


@FAMILIES
def test_added_downstream_gets_general_query_at_once_then_startup_queries(topo, family) -> None:
    """docs/scenarios.md item 3: add-downstream -> General Query at once, then startup queries every 0.3 s (count 3)."""
    daemon = topo.start_daemon(yaml_config(("d1",), query_interval=5, query_response_interval=1,
                                           startup_query_interval=0.3, startup_query_count=3))
    capture = Capture(topo.hosts[1], "e0")
    watch = Watch([capture])
    added = time.monotonic()
    daemon.request("add-downstream", instance="p", interface="d2")
    watch.run(1.3)
    general = [q for q in queries(capture, family) if q.message.group is None]
    times = offsets([q.at for q in general], added)
    print(f"general queries at {times} s after add-downstream")
    assert len(general) == 3, f"expected 3 startup General Queries in 1.3 s, saw {times}"
    assert times[0] < 0.1, f"first General Query {times[0]} s after add-downstream"
    for index, at in enumerate(times[1:], start=1):
        assert abs(at - times[0] - 0.3 * index) < 0.08, f"startup query {index} at {at} s: {times}"
    own = ipaddress.ip_address("10.2.2.1") if family is Family.IPV4 else link_local(topo.px, "d2")
    for seen in general:
        query = seen.message
        assert seen.source == own
        assert seen.destination == family.all_nodes
        assert (query.version, query.max_resp_interval, query.robustness, query.query_interval) == \
            (family.newest_version, 1.0, 2, 5.0)


@FAMILIES
def test_last_member_leaves(topo, family) -> None:
    """docs/scenarios.md item 5: Q(G) at ~0 and ~LMQI, forwarding stops at ~LMQT, upstream TO_IN({}) twice."""
    host = topo.hosts[0]
    quiet_host_retransmissions(host)
    group = ipaddress.ip_address(GROUP[family])
    up, d1, h1 = Capture(topo.up, "u0"), Capture(topo.px, "d1"), Capture(host, "e0")
    watch = Watch([up, d1, h1])
    topo.start_daemon(yaml_config(query_interval=5, query_response_interval=1, last_member_query_interval=0.2,
                                  last_member_query_count=2, unsolicited_report_interval=0.2))
    proxy = proxy_upstream_address(topo, family)
    receiver = topo.join(host, family, GROUP[family])
    watch.receivers.append(receiver)
    send = sending(topo.sender(family), GROUP[family])
    watch.until(lambda: watch.arrivals.get(receiver), 5, "data at the host", send=send, period=0.01)
    watch.run(0.3, send=send, period=0.01)  # the join's upstream retransmission is over
    closed = time.monotonic()
    watch.receivers.remove(receiver)
    receiver.close()
    watch.run(1.2, send=send, period=0.01)

    leaves = [s for s in reports_from(d1, family, host_address(topo, 0, family), closed)
              if any(r.record_type is RecordType.CHANGE_TO_INCLUDE and not r.sources for r in s.records(group))]
    assert leaves, "the host's TO_IN({}) report on d1"
    left = leaves[0].at
    specific = [q for q in queries(h1, family, left) if q.message.group == group]
    query_times = offsets([q.at for q in specific], left)
    data_times = offsets([at for at, _, proto, _, dst, _ in h1.drain() if proto == 17 and dst == group
                          and at >= left], left)
    upstream = [(at, r) for at, r in proxy_records(up, family, proxy, left) if r.group == group]
    upstream_times = offsets([at for at, _ in upstream], left)
    print(f"after the leave: leaves at {offsets([s.at for s in leaves], left)}, Q(G) at {query_times}, last data at {data_times[-1:]}, upstream at {upstream_times}")

    # The host retransmits its leave ~10 ms later; per §6.6.3.1 that is one more "Send Q(G)"
    # (sent at once, retransmitted after LMQI) but the group timer is only ever lowered.
    leave_times = offsets([s.at for s in leaves], left)
    assert len(specific) >= 2, f"two Q(G) expected, saw {query_times}"
    assert query_times[0] < 0.05, f"first Q(G) not sent at once: {query_times}"
    assert any(abs(q - t - 0.2) < 0.07 for q in query_times for t in leave_times), \
        f"no Q(G) retransmission LMQI after a leave: queries {query_times}, leaves {leave_times}"
    assert query_times[-1] < 0.45, f"Q(G) after the group timer expired: {query_times}"
    assert all(q.message.max_resp_interval == pytest.approx(0.2) for q in specific), "Max Resp = LMQI"
    assert not specific[0].message.suppress_router_processing
    assert data_times and 0.3 <= data_times[-1] <= 0.55, f"forwarding should stop at ~0.4 s: {data_times[-5:]}"
    assert [r.record_type for _, r in upstream] == [RecordType.CHANGE_TO_INCLUDE] * 2, upstream
    assert all(not r.sources for _, r in upstream)
    assert 0.3 <= upstream_times[0] <= 0.55, f"upstream TO_IN({{}}) at {upstream_times}"
    assert upstream_times[1] - upstream_times[0] <= 0.25, "retransmission within the unsolicited report interval"
    rows = topo.daemons[0].request("groups", instance="p", interface="d1")
    assert str(group) not in [row["group"] for row in rows]


@FAMILIES
def test_database_change_reports_upstream_at_once_then_retransmits(topo, family) -> None:
    """docs/scenarios.md item 9: TO_EX({}) upstream at once after the host's report, then robustness-1 more within 0.3 s."""
    host = topo.hosts[0]
    quiet_host_retransmissions(host)
    group = ipaddress.ip_address(GROUP[family])
    up, d1 = Capture(topo.up, "u0"), Capture(topo.px, "d1")
    watch = Watch([up, d1])
    topo.start_daemon(yaml_config(robustness=3, query_interval=5, query_response_interval=1,
                                  unsolicited_report_interval=0.3))
    proxy = proxy_upstream_address(topo, family)
    started = time.monotonic()
    member = topo.join(host, family, GROUP[family])  # noqa: F841 (kept open: closing it leaves)
    watch.until(lambda: [r for _, r in proxy_records(up, family, proxy, started) if r.group == group], 5,
                "the proxy's report upstream")
    watch.run(0.6)
    joined = [s for s in reports_from(d1, family, host_address(topo, 0, family), started) if s.records(group)]
    assert joined, "the host's report on d1"
    upstream = [(at, r) for at, r in proxy_records(up, family, proxy, started) if r.group == group]
    times = offsets([at for at, _ in upstream], joined[0].at)
    print(f"upstream reports {times} s after the host's report (first {times[0] * 1000:.1f} ms)")
    assert [r.record_type for _, r in upstream] == [RecordType.CHANGE_TO_EXCLUDE] * 3, upstream
    assert all(not r.sources for _, r in upstream)
    assert 0 <= times[0] < 0.05, f"state-change report not sent at once: {times}"
    assert times[-1] - times[0] <= 0.35, f"retransmissions beyond the unsolicited report interval: {times}"


@FAMILIES
def test_upstream_queries_answered_from_the_database(topo, family) -> None:
    """docs/scenarios.md item 11: General Query -> one current-state record per group after a delay in (0, MRT];
    Q(G) for an unknown group -> silence; Q(G) for a known group -> that group only."""
    groups = {ipaddress.ip_address(GROUP[family]), ipaddress.ip_address(GROUP2[family])}
    up = Capture(topo.up, "u0")
    watch = Watch([up])
    topo.start_daemon(yaml_config(query_interval=5, query_response_interval=1, unsolicited_report_interval=0.1))
    proxy = proxy_upstream_address(topo, family)
    members = [topo.join(topo.hosts[0], family, GROUP[family]),  # noqa: F841 (kept open)
               topo.join(topo.hosts[1], family, GROUP2[family])]
    watch.until(lambda: {r.group for _, r in proxy_records(up, family, proxy)} >= groups, 5,
                "state-change reports for both groups upstream")
    watch.run(0.3)
    querier = Querier(topo.up, "u0")
    try:
        asked = querier.query(family, max_resp_interval=1.0)
        watch.run(1.3)
        own = host_stack_groups(topo.px, "up0")  # e.g. ff05::2: the px kernel answers for those itself
        answer = [(at, r) for at, r in proxy_records(up, family, proxy, asked) if r.group not in own]
        delays = offsets([at for at, _ in answer], asked)
        print(f"General Query answered after {delays} s")
        assert answer, "no answer to the General Query"
        assert all(0.002 < d <= 1.05 for d in delays), f"answer not delayed within (0, 1 s]: {delays}"
        assert Counter(r.group for _, r in answer) == Counter(groups), answer
        assert {(r.record_type, r.sources) for _, r in answer} == {(RecordType.MODE_IS_EXCLUDE, ())}

        asked = querier.query(family, max_resp_interval=0.5, group=UNKNOWN[family])
        watch.run(0.8)
        assert proxy_records(up, family, proxy, asked) == [], "a query for an unknown group was answered"

        known = ipaddress.ip_address(GROUP[family])
        asked = querier.query(family, max_resp_interval=0.5, group=str(known))
        watch.until(lambda: proxy_records(up, family, proxy, asked), 1.0, "the answer to Q(G)")
        watch.run(0.1)
        answer = proxy_records(up, family, proxy, asked)
        assert [(r.record_type, r.group, r.sources) for _, r in answer] == \
            [(RecordType.MODE_IS_EXCLUDE, known, ())], answer
        assert 0 < answer[0][0] - asked <= 0.55
    finally:
        querier.close()


@FAMILIES
def test_link_local_scope_group_creates_no_upstream_state(topo, family) -> None:
    """docs/scenarios.md item 8: a host's report for a link-local scope group is ignored (no group row, no upstream record)."""
    host = topo.hosts[0]
    link_group = ipaddress.ip_address(LINK_LOCAL_GROUP[family])
    up, d1 = Capture(topo.up, "u0"), Capture(topo.px, "d1")
    watch = Watch([up, d1])
    daemon = topo.start_daemon(yaml_config(query_interval=5, query_response_interval=1))
    proxy = proxy_upstream_address(topo, family)
    started = time.monotonic()
    members = [topo.join(host, family, LINK_LOCAL_GROUP[family])]
    watch.until(lambda: [s for s in reports_from(d1, family, host_address(topo, 0, family), started)
                         if s.records(link_group) or getattr(s.message, "group", None) == link_group],
                5, f"the host's report for {link_group} on d1")
    members.append(topo.join(host, family, GROUP[family]))
    watch.until(lambda: [r for _, r in proxy_records(up, family, proxy) if str(r.group) == GROUP[family]], 5,
                "the control group's report upstream")
    watch.run(0.2)
    upstream_groups = {r.group for seen in reports_from(up, family, proxy) for r in seen.records()}
    assert link_group not in upstream_groups
    rows = daemon.request("groups", instance="p", interface="d1")
    assert [row["group"] for row in rows if row["family"] == family.name.lower()] == [GROUP[family]]


@FAMILIES
def test_older_upstream_querier_switches_reports_to_its_version(topo, family) -> None:
    """docs/scenarios.md item 11: after an IGMPv2 / MLDv1 General Query upstream, answers and new joins go in that version."""
    old = {Family.IPV4: (2, igmp.IgmpV2Report), Family.IPV6: (1, mld.MldV1Report)}[family]
    version, report_type = old
    first, second = ipaddress.ip_address(GROUP[family]), ipaddress.ip_address(GROUP2[family])
    up = Capture(topo.up, "u0")
    watch = Watch([up])
    topo.start_daemon(yaml_config(query_interval=5, query_response_interval=1, unsolicited_report_interval=0.1))
    proxy = proxy_upstream_address(topo, family)
    members = [topo.join(topo.hosts[0], family, str(first))]
    watch.until(lambda: [r for _, r in proxy_records(up, family, proxy) if r.group == first], 5,
                "the first group's report upstream")
    watch.run(0.3)
    querier = Querier(topo.up, "u0")
    try:
        asked = querier.query(family, max_resp_interval=0.5, version=version)
        watch.until(lambda: [s for s in reports_from(up, family, proxy, asked)
                             if isinstance(s.message, report_type) and s.message.group == first],
                    1.0, f"a version {version} report for {first}")
        members.append(topo.join(topo.hosts[1], family, str(second)))
        joined = time.monotonic()
        watch.until(lambda: [s for s in reports_from(up, family, proxy, joined)
                             if getattr(s.message, "group", None) == second], 5, f"a report for {second}")
        watch.run(0.3)
        # The proxy namespace's own host stack shares the source address and reports its own
        # memberships (ff05::2 once forwarding is on); only the proxied groups are the daemon's.
        newer = [s for s in reports_from(up, family, proxy, asked)
                 if any(r.group in (first, second) for r in s.records())]
        assert newer == [], f"newest-version reports after the older query: {newer}"
        later = [s for s in reports_from(up, family, proxy, joined) if getattr(s.message, "group", None) == second]
        assert all(isinstance(s.message, report_type) and s.destination == second for s in later), later
    finally:
        querier.close()
