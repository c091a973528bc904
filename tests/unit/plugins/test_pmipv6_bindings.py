"""The pmipv6 binding state machine on a Clock with a fake facade (RFC 5213 §6.9, §6.13; RFC 6224 §4)."""

from __future__ import annotations

import ipaddress

import pytest

from mcproxy_pmip.addresses import Family
from mcproxy_pmip.plugin import PMIPV6_TIMERS, Arguments, CommandError, ProxyEvent
from mcproxy_pmip.wire.records import GroupRecord, RecordType
from mcproxy_pmip_plugins.pmipv6 import Pmipv6Plugin

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


def test_first_attach_creates_the_tunnel_instance_with_the_pmipv6_profile(plugin, facade):
    result = attach(plugin, lifetime=30, lma="2001:db8:ffff::1", hnp=["2001:db8:1::/64"])
    assert facade.calls == [("create", "pmip-tun0", PMIPV6_TIMERS), ("add", "pmip-tun0", "acc1")]
    assert PMIPV6_TIMERS.startup_interval == 1.0
    assert result["changed"] is True and result["instance"] == "pmip-tun0"
    assert run(plugin, "bindings")[0]["expires_in"] == 30


def test_repeated_attach_is_idempotent_and_rearms_the_lifetime(plugin, facade):
    attach(plugin, lifetime=30)
    facade.clock.advance(20)
    again = attach(plugin, lifetime=30)
    assert again["changed"] is False
    assert [c for c in facade.calls if c[0] == "add"] == [("add", "pmip-tun0", "acc1")]
    facade.clock.advance(20)
    assert "mn1" in plugin.table, "refresh by repeated attach did not extend the lifetime"
    facade.clock.advance(10)
    assert "mn1" not in plugin.table


def test_detach_removes_downstream_and_last_mn_removes_instance(plugin, facade):
    attach(plugin, "mn1", "acc1")
    attach(plugin, "mn2", "acc2")
    first = run(plugin, "binding", event="detach", mn_id="mn1")
    assert first["removed_downstream"] and not first["removed_instance"]
    assert facade.downstreams() == {"pmip-tun0": {"acc2"}}
    second = run(plugin, "binding", event="detach", mn_id="mn2")
    assert second["removed_instance"] is True
    assert facade.instances == {}
    assert facade.calls[-2:] == [("remove", "pmip-tun0", "acc2"), ("remove-instance", "pmip-tun0")]


def test_instance_kept_when_remove_empty_instance_is_false(facade):
    plugin = Pmipv6Plugin()
    plugin.start(facade, {"remove_empty_instance": False})
    attach(plugin)
    run(plugin, "binding", event="detach", mn_id="mn1")
    assert "pmip-tun0" in facade.instances
    assert ("remove-instance", "pmip-tun0") not in facade.calls
    plugin.stop()


def test_unknown_mn_detach_and_refresh_are_errors(plugin, facade):
    for event in ({"event": "detach"}, {"event": "refresh", "lifetime": 10}):
        with pytest.raises(CommandError) as info:
            run(plugin, "binding", mn_id="ghost", **event)
        assert info.value.code == "unknown-mn"
    assert facade.calls == []


def test_lifetime_expiry_acts_as_detach(plugin, facade):
    attach(plugin, lifetime=10)
    facade.clock.advance(9.9)
    assert facade.downstreams() == {"pmip-tun0": {"acc1"}}
    facade.clock.advance(0.2)
    assert facade.instances == {}
    assert "mn1" not in plugin.table


def test_refresh_extends_and_lifetime_zero_deregisters(plugin, facade):
    attach(plugin, lifetime=10)
    facade.clock.advance(8)
    assert run(plugin, "binding", event="refresh", mn_id="mn1", lifetime=10)["expires_in"] == 10
    facade.clock.advance(8)
    assert "mn1" in plugin.table
    result = run(plugin, "binding", event="refresh", mn_id="mn1", lifetime=0)
    assert result["event"] == "detach" and result["reason"] == "deregistration"
    assert facade.instances == {}
    facade.clock.advance(100)
    assert facade.clock.getDelayedCalls() == []


def test_attach_with_lifetime_zero_is_a_deregistration(plugin, facade):
    attach(plugin)
    assert attach(plugin, lifetime=0)["event"] == "detach"
    with pytest.raises(CommandError) as info:
        attach(plugin, lifetime=0)
    assert info.value.code == "unknown-mn"


def test_refresh_with_other_access_link_is_refused(plugin, facade):
    attach(plugin)
    with pytest.raises(CommandError) as info:
        run(plugin, "binding", event="refresh", mn_id="mn1", lifetime=5, access_if="acc9")
    assert info.value.code == "binding-mismatch"


def test_out_of_order_attach_on_another_link_moves_and_carries_records(plugin, facade):
    attach(plugin, "mn1", "acc1")
    records = (GroupRecord(RecordType.MODE_IS_INCLUDE, G1, (S1,)),)
    facade.import_records("pmip-tun0", "acc1", Family.IPV6, 2, records)
    result = attach(plugin, "mn1", "acc2")
    assert result["moved_from"] == {"access_if": "acc1", "tunnel_if": "tun0"}
    assert facade.downstreams() == {"pmip-tun0": {"acc2"}}
    remove_at = facade.calls.index(("remove", "pmip-tun0", "acc1"))
    add_at = facade.calls.index(("add", "pmip-tun0", "acc2"))
    assert remove_at < add_at
    assert facade.calls[-1] == ("import", "pmip-tun0", "acc2", Family.IPV6, 2, records)
    assert result["context_records"] == 1


def test_move_to_another_tunnel_removes_the_old_instance(plugin, facade):
    attach(plugin, "mn1", "acc1", "tun0")
    attach(plugin, "mn1", "acc1", "tun1")
    assert facade.downstreams() == {"pmip-tun1": {"acc1"}}


def test_shared_access_link_stays_until_its_last_mn_leaves(plugin, facade):
    attach(plugin, "mn1", "br0")
    attach(plugin, "mn2", "br0")
    assert [c for c in facade.calls if c[0] == "add"] == [("add", "pmip-tun0", "br0")]
    assert run(plugin, "binding", event="detach", mn_id="mn1")["removed_downstream"] is False
    assert facade.downstreams() == {"pmip-tun0": {"br0"}}


def test_failed_add_downstream_leaves_no_binding_and_no_instance(plugin, facade):
    facade.fail_add.add("acc1")
    with pytest.raises(CommandError) as info:
        attach(plugin)
    assert info.value.code == "proxy-error"
    assert "mn1" not in plugin.table and facade.instances == {}


def test_instance_removed_elsewhere_drops_its_bindings(plugin, facade):
    attach(plugin, lifetime=50)
    facade.instances.pop("pmip-tun0")
    facade.emit(ProxyEvent("instance-removed", instance="pmip-tun0"))
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
def test_bad_arguments_are_refused_without_changes(plugin, facade, arguments):
    with pytest.raises(CommandError) as info:
        run(plugin, "binding", **arguments)
    assert info.value.code == "bad-argument"
    assert facade.calls == []


def test_context_export_then_attach_with_context_round_trip(facade):
    old_mag, new_mag = Pmipv6Plugin(), Pmipv6Plugin()
    old_mag.start(facade, {})
    attach(old_mag, "mn1", "acc1", "tun0")
    v6 = (GroupRecord(RecordType.MODE_IS_INCLUDE, G1, (S1,)),)
    v4 = (GroupRecord(RecordType.MODE_IS_EXCLUDE, G4, ()),)
    facade.import_records("pmip-tun0", "acc1", Family.IPV6, 2, v6)
    facade.import_records("pmip-tun0", "acc1", Family.IPV4, 2, v4)
    exported = run(old_mag, "context-export", mn_id="mn1")
    assert sorted((e["family"], e["code"]) for e in exported["context"]) == [("ipv4", 3), ("ipv6", 2)]

    new_mag.start(facade, {})
    result = attach(new_mag, "mn1", "acc7", "tun5", context=exported["context"])
    assert result["context_records"] == 2
    imported = {c[3]: (c[4], c[5]) for c in facade.calls if c[0] == "import" and c[2] == "acc7"}
    assert imported == {Family.IPV6: (2, v6), Family.IPV4: (2, v4)}
    old_mag.stop()
    new_mag.stop()


def test_bad_context_payload_refuses_the_attach(plugin, facade):
    with pytest.raises(CommandError) as info:
        attach(plugin, context=[{"family": "ipv6", "code": 1, "payload": "00000000"}])
    assert info.value.code == "bad-context", "an IGMPv3 code declared as ipv6 must be refused"
    with pytest.raises(CommandError) as info:
        attach(plugin, context=[{"family": "ipv6", "code": 99, "payload": "00000000"}])
    assert info.value.code == "bad-context"
    assert facade.calls == []


def test_context_export_of_unknown_mn(plugin):
    with pytest.raises(CommandError) as info:
        run(plugin, "context-export", mn_id="ghost")
    assert info.value.code == "unknown-mn"
