"""InstanceCore properties: the upstream state is always the RFC 4605 §4.1 merge of the
downstream routers' states, and everything expires cleanly."""

from __future__ import annotations

import ipaddress
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from mcproxy_pmip.addresses import Family
from mcproxy_pmip.membership.filters import AllowAll
from mcproxy_pmip.membership.instance import InstanceCore
from mcproxy_pmip.membership.merge import merge
from mcproxy_pmip.membership.timers import HostOptions, RouterOptions
from mcproxy_pmip.wire.records import GroupRecord, RecordType

V4 = Family.IPV4
DOWNSTREAMS = ("d1", "d2", "d3")
GROUPS = tuple(ipaddress.ip_address(f"232.1.1.{i}") for i in (1, 2))
SOURCES = tuple(ipaddress.ip_address(f"192.0.2.{i}") for i in (1, 2, 3))
HOST = ipaddress.ip_address("10.9.0.10")

v3_record = st.builds(lambda kind, group, sources: GroupRecord(kind, group, tuple(sources)),
                      st.sampled_from(list(RecordType)), st.sampled_from(GROUPS),
                      st.lists(st.sampled_from(SOURCES), max_size=3, unique=True))
v2_record = st.builds(lambda kind, group: GroupRecord(kind, group),
                      st.sampled_from([RecordType.MODE_IS_EXCLUDE, RecordType.CHANGE_TO_INCLUDE]),
                      st.sampled_from(GROUPS))
step = st.one_of(
    st.tuples(st.just(3), st.sampled_from(DOWNSTREAMS), st.lists(v3_record, min_size=1, max_size=3),
              st.floats(0.0, 150.0)),
    st.tuples(st.just(2), st.sampled_from(DOWNSTREAMS), st.lists(v2_record, min_size=1, max_size=2),
              st.floats(0.0, 150.0)),
)


def fire_until(core: InstanceCore, now: float, target: float) -> float:
    while (deadline := core.get_timer()) is not None and deadline <= target:
        now = max(now, deadline)
        core.handle_timer(now)
        check_upstream_is_merge(core)
    return target


def check_upstream_is_merge(core: InstanceCore) -> None:
    host = core.host("up0", V4)
    for group in GROUPS:
        expected = merge(core.router(name, V4).membership(group) for name in DOWNSTREAMS)
        assert core.membership(V4, group) == expected, f"database of {group}"
        assert host.membership(group) == expected, f"upstream state of {group}"


@settings(max_examples=150, deadline=None)
@given(st.lists(step, max_size=25), st.integers(0, 10_000))
def test_upstream_equals_merge_of_downstreams_and_all_expires(steps: list, seed: int) -> None:
    core = InstanceCore("prop", ["up0"], AllowAll(), RouterOptions(), HostOptions(),
                        random.Random(seed))
    now = 0.0
    for name in DOWNSTREAMS:
        core.add_downstream(now, name, V4, ipaddress.ip_address(f"10.9.0.{DOWNSTREAMS.index(name) + 1}"))
    for version, interface, records, pause in steps:
        now = fire_until(core, now, now + pause)
        core.handle_report(now, interface, V4, version, records, HOST)
        check_upstream_is_merge(core)
    now = fire_until(core, now, now + 600.0)
    assert list(core.groups(V4)) == []
    for name in DOWNSTREAMS:
        assert list(core.router(name, V4).groups()) == []
    host = core.host("up0", V4)
    assert list(host.groups()) == [] and host.get_timer() is None, "upstream retransmissions left"
