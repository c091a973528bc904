"""The pmipv6 binding state machine over the real facade (ProxyApi on a MemoryProxy, task.Clock).

RFC 5213 §6.9, §6.13 (bindings, lifetimes), RFC 6224 §4 (one instance per
tunnel, access links as its downstreams). Assertions read the proxy's
instances, the memory plane's interfaces and the packets sent.
"""

from __future__ import annotations

import ipaddress
import logging

import pytest

from mcproxy_pmip.addresses import Family
from mcproxy_pmip.dataplane.port import Role
from mcproxy_pmip.plugin import PMIPV6_TIMERS, Arguments, CommandError
from mcproxy_pmip.wire.records import GroupRecord, RecordType
from mcproxy_pmip_plugins.pmipv6 import Pmipv6Plugin
from tests.unit.plugins.real_facade import downstreams, general_queries, proxy_and_facade, upstream_reports

G1 = ipaddress.IPv6Address("ff3e::8000:1")
S1 = ipaddress.IPv6Address("2001:db8::1")
G4 = ipaddress.IPv4Address("232.1.1.1")


@pytest.fixture
def plugin(facade):
    plugin = Pmipv6Plugin()
    plugin.start(facade, {})
    yield plugin
    plugin.stop()


def run(plugin, cmd, **arguments):
    return plugin.commands()[cmd](Arguments(arguments))


def attach(plugin, mn_id="mn1", access_if="acc1", tunnel_if="tun0", **extra):
    return run(plugin, "binding", event="attach", mn_id=mn_id, access_if=access_if,
               tunnel_if=tunnel_if, **extra)


def detach(plugin, mn_id="mn1"):
    return run(plugin, "binding", event="detach", mn_id=mn_id)


def test_first_attach_creates_the_tunnel_instance_with_the_pmipv6_profile(plugin, memory, facade):
    result = attach(plugin, lifetime=30, lma="2001:db8:ffff::1", hnp=["2001:db8:1::/64"])
    assert result["changed"] is True and result["instance"] == "pmip-tun0"
    instance = memory.proxy.instances["pmip-tun0"]
    assert instance.config.timers == PMIPV6_TIMERS and PMIPV6_TIMERS.startup_interval == 1.0
    assert instance.upstreams == ("tun0",) and instance.downstreams == ["acc1"]
    assert memory.plane.instances["pmip-tun0"].roles == {"tun0": Role.UPSTREAM, "acc1": Role.DOWNSTREAM}
    assert general_queries(memory, "acc1") == 2, "a General Query per family at once"
    assert facade.instances()[0]["dynamic"] is True
    assert run(plugin, "bindings")[0]["expires_in"] == 30


def test_repeated_attach_is_idempotent_and_rearms_the_lifetime(plugin, memory, facade):
    attach(plugin, lifetime=30)
    facade.clock.advance(20)
    queries = general_queries(memory, "acc1")
    again = attach(plugin, lifetime=30)
    assert again["changed"] is False
    assert general_queries(memory, "acc1") == queries, "the access link was added again"
    assert downstreams(memory) == {"pmip-tun0": {"acc1"}}
    facade.clock.advance(20)
    assert "mn1" in plugin.table, "refresh by repeated attach did not extend the lifetime"
    facade.clock.advance(10)
    assert "mn1" not in plugin.table and memory.proxy.instances == {}


def test_detach_removes_downstream_and_last_mn_removes_instance(plugin, memory):
    attach(plugin, "mn1", "acc1")
    attach(plugin, "mn2", "acc2")
    first = detach(plugin, "mn1")
    assert first["removed_downstream"] and not first["removed_instance"]
    assert downstreams(memory) == {"pmip-tun0": {"acc2"}}
    assert "acc1" not in memory.plane.instances["pmip-tun0"].roles
    second = detach(plugin, "mn2")
    assert second["removed_instance"] is True
    assert memory.proxy.instances == {}
    assert memory.plane.instances["pmip-tun0"].closed


def test_instance_kept_when_remove_empty_instance_is_false(facade, memory):
    plugin = Pmipv6Plugin()
    plugin.start(facade, {"remove_empty_instance": False})
    attach(plugin)
    assert detach(plugin)["removed_instance"] is False
    assert downstreams(memory) == {"pmip-tun0": set()}
    assert memory.plane.instances["pmip-tun0"].roles == {"tun0": Role.UPSTREAM}
    plugin.stop()


def test_unknown_mn_detach_and_refresh_are_errors(plugin, memory):
    for event in ({"event": "detach"}, {"event": "refresh", "lifetime": 10}):
        with pytest.raises(CommandError) as info:
            run(plugin, "binding", mn_id="ghost", **event)
        assert info.value.code == "unknown-mn"
    assert memory.proxy.instances == {}


def test_lifetime_expiry_acts_as_detach(plugin, memory, facade):
    attach(plugin, lifetime=10)
    facade.clock.advance(9.9)
    assert downstreams(memory) == {"pmip-tun0": {"acc1"}}
    facade.clock.advance(0.2)
    assert memory.proxy.instances == {}
    assert "mn1" not in plugin.table


def test_refresh_extends_and_lifetime_zero_deregisters(plugin, memory, facade):
    attach(plugin, lifetime=10)
    facade.clock.advance(8)
    assert run(plugin, "binding", event="refresh", mn_id="mn1", lifetime=10)["expires_in"] == 10
    facade.clock.advance(8)
    assert "mn1" in plugin.table
    result = run(plugin, "binding", event="refresh", mn_id="mn1", lifetime=0)
    assert result["event"] == "detach" and result["reason"] == "deregistration"
    assert memory.proxy.instances == {}
    facade.clock.advance(100)
    assert facade.clock.getDelayedCalls() == []


def test_attach_with_lifetime_zero_is_a_deregistration(plugin, memory):
    attach(plugin)
    assert attach(plugin, lifetime=0)["event"] == "detach"
    assert memory.proxy.instances == {}
    with pytest.raises(CommandError) as info:
        attach(plugin, lifetime=0)
    assert info.value.code == "unknown-mn"


def test_refresh_with_other_access_link_is_refused(plugin, memory):
    attach(plugin)
    with pytest.raises(CommandError) as info:
        run(plugin, "binding", event="refresh", mn_id="mn1", lifetime=5, access_if="acc9")
    assert info.value.code == "binding-mismatch"
    assert downstreams(memory) == {"pmip-tun0": {"acc1"}}


def test_out_of_order_attach_on_another_link_moves_and_carries_records():
    memory, facade = proxy_and_facade(max_interfaces=2)
    plugin = Pmipv6Plugin()
    plugin.start(facade, {})
    attach(plugin, "mn1", "acc1")
    records = (GroupRecord(RecordType.MODE_IS_INCLUDE, G1, (S1,)),)
    facade.import_records("pmip-tun0", "acc1", Family.IPV6, 2, records)
    result = attach(plugin, "mn1", "acc2")
    assert result["moved_from"] == {"access_if": "acc1", "tunnel_if": "tun0"}
    assert result["context_records"] == 1
    assert downstreams(memory) == {"pmip-tun0": {"acc2"}}
    plane = memory.plane.instances["pmip-tun0"]
    assert plane.roles == {"tun0": Role.UPSTREAM, "acc2": Role.DOWNSTREAM}, \
        "two interfaces per instance: the old link must go before the new one comes"
    assert facade.export_records("pmip-tun0", "acc2") == [(Family.IPV6, 2, records)]
    facade.clock.advance(0)
    assert [name for name, _ in plane.groups[(Family.IPV6, G1)].downstreams] == ["acc2"]
    plugin.stop()
    memory.stop()


def test_move_to_another_tunnel_removes_the_old_instance(plugin, memory):
    attach(plugin, "mn1", "acc1", "tun0")
    attach(plugin, "mn1", "acc1", "tun1")
    assert downstreams(memory) == {"pmip-tun1": {"acc1"}}
    assert memory.plane.instances["pmip-tun0"].closed


def test_shared_access_link_stays_until_its_last_mn_leaves(plugin, memory):
    attach(plugin, "mn1", "br0")
    assert attach(plugin, "mn2", "br0")["changed"] is True
    assert general_queries(memory, "br0") == 2, "br0 was added once"
    assert detach(plugin, "mn1")["removed_downstream"] is False
    assert downstreams(memory) == {"pmip-tun0": {"br0"}}
    assert detach(plugin, "mn2")["removed_instance"] is True


def test_failed_add_downstream_leaves_no_binding_and_no_instance():
    memory, facade = proxy_and_facade(max_interfaces=1)
    plugin = Pmipv6Plugin()
    plugin.start(facade, {})
    with pytest.raises(CommandError) as info:
        attach(plugin)
    assert info.value.code == "proxy-error"
    assert "mn1" not in plugin.table and memory.proxy.instances == {}
    plugin.stop()
    memory.stop()


def test_instance_removed_elsewhere_drops_its_bindings(plugin, facade):
    attach(plugin, lifetime=50)
    assert facade.remove_instance("pmip-tun0") is True
    assert run(plugin, "bindings") == []
    assert facade.clock.getDelayedCalls() == []


@pytest.mark.parametrize("arguments", [
    {"event": "jump", "mn_id": "m"},
    {"event": "attach", "mn_id": "m", "access_if": "a"},
    {"event": "attach", "mn_id": "m", "access_if": "a", "tunnel_if": "t", "lifetime": -1},
    {"event": "attach", "mn_id": "m", "access_if": "a", "tunnel_if": "t", "hnp": "x"},
    {"event": "detach", "mn_id": 5},
    {"event": "detach", "mn_id": "m", "colour": "red"},
    {"event": "attach", "mn_id": "m", "access_if": "a", "tunnel_if": "t",
     "context": [{"family": "ipx", "code": 2, "payload": ""}]},
    {"event": "attach", "mn_id": "m", "access_if": "a", "tunnel_if": "t",
     "context": [{"family": "ipv6", "code": 2, "payload": "zz"}]},
])
def test_bad_arguments_are_refused_without_changes(plugin, memory, arguments):
    with pytest.raises(CommandError) as info:
        run(plugin, "binding", **arguments)
    assert info.value.code == "bad-argument"
    assert memory.proxy.instances == {}


def test_context_export_then_attach_with_context_round_trip():
    (old_proxy, old_facade), (new_proxy, new_facade) = proxy_and_facade(), proxy_and_facade()
    old_mag, new_mag = Pmipv6Plugin(), Pmipv6Plugin()
    old_mag.start(old_facade, {})
    attach(old_mag, "mn1", "acc1", "tun0")
    v6 = (GroupRecord(RecordType.MODE_IS_INCLUDE, G1, (S1,)),)
    v4 = (GroupRecord(RecordType.MODE_IS_EXCLUDE, G4, ()),)
    old_facade.import_records("pmip-tun0", "acc1", Family.IPV6, 2, v6)
    old_facade.import_records("pmip-tun0", "acc1", Family.IPV4, 2, v4)
    exported = run(old_mag, "context-export", mn_id="mn1")
    assert sorted((e["family"], e["code"]) for e in exported["context"]) == [("ipv4", 3), ("ipv6", 2)]

    new_mag.start(new_facade, {})
    result = attach(new_mag, "mn1", "acc2", "tun1", context=exported["context"])
    assert result["context_records"] == 2
    assert sorted(new_facade.export_records("pmip-tun1", "acc2")) == [(Family.IPV4, 2, v4), (Family.IPV6, 2, v6)]
    assert {r.group for family in Family for report in new_proxy.sent_reports(family, "tun1")
            for r in report.records} == {G1, G4}, "the new MAG reports upstream before any query"
    old_mag.stop()
    new_mag.stop()
    old_proxy.stop()
    new_proxy.stop()


def test_bad_context_payload_refuses_the_attach(plugin, memory):
    with pytest.raises(CommandError) as info:
        attach(plugin, context=[{"family": "ipv6", "code": 1, "payload": "00000000"}])
    assert info.value.code == "bad-context", "an IGMPv3 code declared as ipv6 must be refused"
    with pytest.raises(CommandError) as info:
        attach(plugin, context=[{"family": "ipv6", "code": 99, "payload": "00000000"}])
    assert info.value.code == "bad-context"
    assert memory.proxy.instances == {}


def test_context_export_of_unknown_mn(plugin):
    with pytest.raises(CommandError) as info:
        run(plugin, "context-export", mn_id="ghost")
    assert info.value.code == "unknown-mn"


# -- the operator's del-downstream (downstream-removed event)


def test_operator_del_downstream_forgets_the_binding_and_the_empty_instance(plugin, memory, facade):
    attach(plugin, lifetime=50)
    facade.del_downstream("pmip-tun0", "acc1")
    assert run(plugin, "bindings") == []
    assert memory.proxy.instances == {}, "the plugin's instance had no binding left"
    assert facade.clock.getDelayedCalls() == [], "the lifetime timer of the dropped binding runs on"
    result = attach(plugin)
    assert result["changed"] is True and downstreams(memory) == {"pmip-tun0": {"acc1"}}


def test_operator_del_downstream_drops_only_the_bindings_on_that_link(plugin, memory, facade):
    attach(plugin, "mn1", "br0")
    attach(plugin, "mn2", "br0")
    attach(plugin, "mn3", "acc2")
    facade.del_downstream("pmip-tun0", "br0")
    assert [row["mn_id"] for row in run(plugin, "bindings")] == ["mn3"]
    assert downstreams(memory) == {"pmip-tun0": {"acc2"}}
    with pytest.raises(CommandError) as info:
        detach(plugin, "mn1")
    assert info.value.code == "unknown-mn"


def test_operator_del_downstream_keeps_the_instance_without_remove_empty_instance(facade, memory):
    plugin = Pmipv6Plugin()
    plugin.start(facade, {"remove_empty_instance": False})
    attach(plugin)
    facade.del_downstream("pmip-tun0", "acc1")
    assert run(plugin, "bindings") == []
    assert downstreams(memory) == {"pmip-tun0": set()}
    plugin.stop()


def test_operator_del_downstream_of_another_instance_changes_nothing(facade, memory):
    plugin = Pmipv6Plugin()
    plugin.start(facade, {})
    attach(plugin)
    facade.find_or_create_instance("tun1", PMIPV6_TIMERS)
    facade.add_downstream("pmip-tun1", "acc2")
    facade.del_downstream("pmip-tun1", "acc2")
    assert [row["mn_id"] for row in run(plugin, "bindings")] == ["mn1"]
    assert downstreams(memory) == {"pmip-tun0": {"acc1"}, "pmip-tun1": set()}
    plugin.stop()


def test_the_plugins_own_removals_are_not_taken_for_the_operators(plugin, memory, facade, caplog):
    heard = []
    facade.subscribe("downstream-removed", heard.append)
    attach(plugin, "mn1", "acc1")
    attach(plugin, "mn2", "acc2")
    with caplog.at_level(logging.WARNING, logger="mcproxy_pmip_plugins.pmipv6.bindings"):
        attach(plugin, "mn1", "acc2")
        assert detach(plugin, "mn2")["removed_downstream"] is False
        assert detach(plugin, "mn1")["removed_instance"] is True
    assert [(e.instance, e.interface) for e in heard] == [("pmip-tun0", "acc1"), ("pmip-tun0", "acc2")]
    assert not [r for r in caplog.records if "binding-dropped" in r.getMessage()]
    assert memory.proxy.instances == {} and upstream_reports(memory, "tun0") == 0


def test_a_refused_del_downstream_emits_nothing_and_keeps_the_binding(plugin, facade):
    heard = []
    facade.subscribe("downstream-removed", heard.append)
    attach(plugin)
    with pytest.raises(CommandError) as info:
        facade.del_downstream("pmip-tun0", "acc2")
    assert info.value.code == "unknown-interface"
    assert heard == [] and [row["mn_id"] for row in run(plugin, "bindings")] == ["mn1"]
