"""Caps on data-driven (S,G) state: per instance and daemon-wide, on the memory plane and through the Proxy."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

from mcproxy_pmip.addresses import Family
from mcproxy_pmip.dataplane.memory import IDLE_INTERVAL, MemoryPlane
from mcproxy_pmip.dataplane.port import Role
from mcproxy_pmip.dataplane.route_budget import RouteBudget
from mcproxy_pmip.proxy.api import ProxyApi
from tests.unit.proxy.memory_proxy import MemoryProxy
from tests.forwarding_views import FixedOutputs

GROUP = IPv4Address("232.1.1.1")
V4 = Family.IPV4


def source(n: int) -> IPv4Address:
    return IPv4Address(0x0A000000 + n)


def open_instance(plane: MemoryPlane, name: str, max_routes: int, max_total: int):
    plane.routes.configure_instance(name, max_routes, max_total)
    instance = plane.open_instance(name, frozenset({V4}), None, FixedOutputs(frozenset({"down"})))
    instance.add_interface("up", 1, Role.UPSTREAM)
    instance.add_interface("down", 2, Role.DOWNSTREAM)
    return instance


def test_at_the_instance_cap_new_sg_are_refused_counted_and_still_forwarded_by_group() -> None:
    plane = MemoryPlane()
    instance = open_instance(plane, "a", max_routes=100, max_total=1000)
    for n in range(150):
        assert instance.data(V4, source(n), GROUP, "up", 0.0) == {"down"}
    assert len(instance.sg) == 100
    counters = instance.counters()
    assert counters["routes"] == 100 and counters["routes_refused"] == 50
    assert counters["routes_refused_instance_cap"] == 50 and counters["routes_refused_daemon_cap"] == 0
    # Existing entries keep counting their packets.
    instance.data(V4, source(0), GROUP, "up", 1.0)
    assert instance.sg[(V4, source(0), GROUP)].packets == 2
    assert plane.routes.counters() == {"routes_total": 100, "routes_total_max": 1000}


def test_the_daemon_wide_cap_is_shared_by_instances() -> None:
    plane = MemoryPlane()
    a = open_instance(plane, "a", max_routes=80, max_total=100)
    b = open_instance(plane, "b", max_routes=80, max_total=100)
    for n in range(80):
        a.data(V4, source(n), GROUP, "up", 0.0)
    for n in range(80):
        b.data(V4, source(n), GROUP, "up", 0.0)
    assert (len(a.sg), len(b.sg)) == (80, 20)
    assert b.counters()["routes_refused_daemon_cap"] == 60
    assert plane.routes.in_use == 100
    a.close()
    assert plane.routes.in_use == 20, "a closed instance gives its share back"
    b.data(V4, source(500), GROUP, "up", 0.0)
    assert len(b.sg) == 21


def test_entries_that_age_out_free_room_for_new_sources() -> None:
    plane = MemoryPlane()
    instance = open_instance(plane, "a", max_routes=10, max_total=100)
    for n in range(10):
        instance.data(V4, source(n), GROUP, "up", 0.0)
    assert not instance.data(V4, source(99), GROUP, "up", 0.0) - {"down"}
    assert (V4, source(99), GROUP) not in instance.sg
    instance.age(0.0)
    instance.age(IDLE_INTERVAL)
    assert instance.sg == {} and instance.quota.in_use == 0
    instance.data(V4, source(99), GROUP, "up", IDLE_INTERVAL)
    assert (V4, source(99), GROUP) in instance.sg


def test_a_reservation_takes_what_is_left_of_the_total() -> None:
    budget = RouteBudget(max_total=100, per_instance={"a": 70, "b": 70, "c": 70})
    assert [budget.quota(name).reserve() for name in "abc"] == [70, 30, 0]
    assert budget.in_use == 100


def test_refusals_are_logged_sparsely(caplog) -> None:
    plane = MemoryPlane()
    instance = open_instance(plane, "a", max_routes=1, max_total=100)
    for n in range(1001):
        instance.data(V4, source(n), GROUP, "up", 0.0)
    logged = [r for r in caplog.records if r.getMessage().startswith("route_refused")]
    assert instance.quota.refused == 1000
    assert len(logged) == 10, "one line at the 1st, 2nd, 4th, ... 512th refusal"


def test_the_proxy_takes_the_caps_from_the_configuration_and_status_shows_them() -> None:
    config = ("protocols: [IGMPv3, MLDv2]\nlimits: {max_total_routes: 50}\ninstances:\n"
              "  - {name: a, upstreams: [up0], downstreams: [d1], limits: {max_routes: 30}}\n"
              "  - {name: b, upstreams: [up1], downstreams: [d2], limits: {max_routes: 30}}\n")
    run = MemoryProxy(config, ["up0", "up1", "d1", "d2"])
    try:
        a, b = run.plane.instances["a"], run.plane.instances["b"]
        for n in range(40):
            a.data(V4, source(n), GROUP, "up0", 0.0)
        for n in range(40):
            b.data(Family.IPV6, IPv6Address(f"fd00::{n + 1:x}"), IPv6Address("ff3e::1"), "up1", 0.0)
        counters = ProxyApi(run.proxy).status()["counters"]
        assert counters["routes"] == 50 and counters["routes_total"] == 50
        assert counters["routes_total_max"] == 50
        assert counters["routes_refused"] == 30
        assert counters["routes_refused_instance_cap"] == 10 and counters["routes_refused_daemon_cap"] == 20
    finally:
        run.stop()
