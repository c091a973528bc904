"""Who may push and fetch which context over the pmipv6 peer channel (transfer.py), the
bounded context store (context_store.py) and the channel's security settings.

Same set-up as test_pmipv6_transfer.py: the real facade over a MemoryProxy on a
Clock, requests through the plugin's own server protocol (plaintext, so a
peer is identified by its configured address), a fake client for the MAG's
own requests.
"""

from __future__ import annotations

import logging

import pytest
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactor

from mcproxy_pmip.addresses import Family
from mcproxy_pmip.config import parse_config
from mcproxy_pmip.errors import ConfigError
from mcproxy_pmip.plugin import CommandError
from mcproxy_pmip_plugins.pmipv6 import load_peer_credentials, parse_settings, peer_pki
from mcproxy_pmip_plugins.pmipv6.bindings import ContextEntry
from mcproxy_pmip_plugins.pmipv6.context_store import CONTEXT_OVERHEAD, ENTRY_OVERHEAD, ContextStore
from mcproxy_pmip_plugins.pmipv6.peers import PeerError
from mcproxy_pmip_testbed.daemons import mcproxy_config
from mcproxy_pmip_testbed.plan import make_plan
from mcproxy_pmip_testbed.runner import daemon_roles
from mcproxy_pmip_testbed.scenario import default_scenario
from tests.unit.plugins.test_peers import DEEP, HUGE_NUMBER
from tests.unit.plugins.test_pmipv6_transfer import (
    SETTINGS, FakeClientPlugin, attach, client, context_entries, imported, peer_line, result_of, run,
)

MAG2, MAG3 = "fd09::2", "::ffff:192.0.2.3"


@pytest.fixture
def mag(facade):
    facade.reactor = MemoryReactor()
    plugin = FakeClientPlugin()
    plugin.start(facade, SETTINGS)
    yield plugin
    plugin.stop()


def push(facade, mn_id="mn1", peer=MAG2, context=None) -> dict:
    return peer_line(facade, {"op": "push", "mn_id": mn_id,
                              "context": context_entries() if context is None else context}, peer)


def fetch(facade, mn_id="mn1", peer=MAG2) -> dict:
    return peer_line(facade, {"op": "fetch", "mn_id": mn_id}, peer)


# -- pushed contexts at the new MAG


def test_a_push_from_another_peer_than_the_previous_mag_is_not_used(mag, facade, caplog) -> None:
    assert push(facade, peer=MAG3) == {"ok": True}, "mag3 may push; its push is held apart"
    with caplog.at_level(logging.WARNING):
        replying = attach(mag, previous_mag="mag2")
    assert client(mag).requests == [("fetch", "mag2", "mn1")], "mag3's push did not stand in for mag2's"
    assert imported(facade) == {}
    assert "context-refused mn=mn1 origin=pushed peer=mag3 reason=not-previous-mag" in caplog.text
    assert not replying.called
    assert len(mag._channel._pushed) == 0, "the attach dropped every push for the MN"


def test_a_push_cannot_replace_the_previous_mags_push(mag, facade) -> None:
    push(facade, peer=MAG2)
    push(facade, peer=MAG3, context=[{"family": "ipv4", "code": 9, "payload": "00"}])
    result = attach(mag, previous_mag="mag2")
    assert (result["context"], result["records"]) == ("pushed", 2)


def test_an_attach_naming_no_previous_mag_uses_no_pushed_context(mag, facade) -> None:
    push(facade)
    result = attach(mag)
    assert (result["context"], result["records"]) == ("none", 0)
    assert imported(facade) == {} and client(mag).requests == []
    assert mag._refusals.counts["push-no-previous-mag"] == 1


def test_pushes_beyond_the_store_cap_are_refused_and_held_ones_kept(facade) -> None:
    facade.reactor = MemoryReactor()
    plugin = FakeClientPlugin()
    plugin.start(facade, {**SETTINGS, "context_store_bytes": 4096})
    big = [{"family": "ipv4", "code": 1, "payload": "00" * 3000}]
    assert push(facade, "mn1", context=big) == {"ok": True}
    reply = push(facade, "mn2", context=big)
    assert reply["error"] == "store-full"
    assert plugin._channel._pushed.bytes == CONTEXT_OVERHEAD + ENTRY_OVERHEAD + 3000
    assert push(facade, "mn1", context=big) == {"ok": True}, "a peer may replace its own push"
    plugin.stop()


def test_malformed_requests_leave_the_plugin_working(mag, facade) -> None:
    for line in (DEEP, HUGE_NUMBER, b"\xff", b'{"op": "push", "mn_id": "mn1", "context": {}}'):
        assert fetch(facade) is not None
        reply = peer_line(facade, line)
        assert (reply["ok"], reply["error"]) == (False, "bad-request")
    assert push(facade) == {"ok": True}
    assert attach(mag, previous_mag="mag2")["context"] == "pushed"


# -- departed contexts at the old MAG


def test_after_handover_prepare_only_the_target_may_fetch_once(mag, facade) -> None:
    attach(mag, context=context_entries())
    preparing = run(mag, "handover-prepare", mn_id="mn1", target="mag2")
    client(mag).pending[0].callback({"ok": True})
    assert result_of(preparing)["target"] == "mag2"
    run(mag, "binding", event="detach", mn_id="mn1")
    assert fetch(facade, peer=MAG3)["error"] == "not-next-mag"
    assert len(fetch(facade, peer=MAG2)["context"]) == 2
    assert fetch(facade, peer=MAG2)["error"] == "unknown-mn", "the next MAG's fetch consumed it"


def test_a_failed_prepare_names_no_next_mag(mag, facade) -> None:
    attach(mag, context=context_entries())
    preparing = run(mag, "handover-prepare", mn_id="mn1", target="mag3")
    client(mag).pending[0].errback(PeerError("unreachable", "mag3"))
    assert isinstance(result_of(preparing).value, CommandError)
    run(mag, "binding", event="detach", mn_id="mn1")
    assert fetch(facade, peer=MAG2)["ok"] is True


def test_a_detach_naming_next_mag_restricts_the_fetch(mag, facade) -> None:
    attach(mag, context=context_entries())
    with pytest.raises(CommandError) as info:
        run(mag, "binding", event="detach", mn_id="mn1", next_mag="mag9")
    assert info.value.code == "unknown-peer"
    assert [b["mn_id"] for b in run(mag, "bindings")] == ["mn1"], "the refused detach changed nothing"
    run(mag, "binding", event="detach", mn_id="mn1", next_mag="mag3")
    assert fetch(facade, peer=MAG2)["error"] == "not-next-mag"
    assert fetch(facade, peer=MAG3)["ok"] is True


def test_departed_contexts_expire_on_the_clock(facade) -> None:
    facade.reactor = MemoryReactor()
    plugin = FakeClientPlugin()
    plugin.start(facade, {**SETTINGS, "context_hold_interval": 5})
    attach(plugin, context=context_entries())
    run(plugin, "binding", event="detach", mn_id="mn1")
    assert len(plugin._channel._departed) == 1
    facade.clock.advance(5)
    assert len(plugin._channel._departed) == 0 and plugin._channel._departed.bytes == 0
    assert fetch(facade)["error"] == "unknown-mn"
    plugin.stop()


# -- the store


def entries(size: int) -> tuple[ContextEntry, ...]:
    return (ContextEntry(Family.IPV6, 2, bytes(size)),)


def test_store_holds_bytes_not_json_and_counts_them() -> None:
    clock = Clock()
    store = ContextStore(clock, hold_interval=10, max_bytes=10_000)
    assert store.put("a", entries(1000))
    assert store.put("b", entries(2000), tag="mag2")
    assert store.bytes == 2 * (CONTEXT_OVERHEAD + ENTRY_OVERHEAD) + 3000
    assert isinstance(store.get("a").entries[0].payload, bytes)
    assert store.get("b").tag == "mag2"
    assert store.put("a", entries(10)) and store.bytes == 2 * (CONTEXT_OVERHEAD + ENTRY_OVERHEAD) + 2010
    assert not store.put("c", entries(9000)), "over the cap"
    assert store.pop("b").tag == "mag2" and len(store) == 1


def test_store_expires_in_order_with_one_timer() -> None:
    clock = Clock()
    store = ContextStore(clock, hold_interval=10)
    store.put("a", entries(1))
    clock.advance(4)
    store.put("b", entries(1))
    assert len(clock.getDelayedCalls()) == 1
    clock.advance(6)
    assert store.get("a") is None and store.get("b") is not None
    clock.advance(4)
    assert len(store) == 0 and store.bytes == 0 and clock.getDelayedCalls() == []


def test_store_close_cancels_its_timer() -> None:
    clock = Clock()
    store = ContextStore(clock)
    store.put("a", entries(1))
    store.close()
    assert clock.getDelayedCalls() == [] and len(store) == 0


# -- security settings


@pytest.fixture(scope="module")
def domain(tmp_path_factory):
    root = tmp_path_factory.mktemp("pki")
    files = peer_pki.make_domain(root / "ours", ["mag1", "mag2"])
    files["foreign"] = peer_pki.make_domain(root / "other", ["mag1"])["mag1"]
    return files


PEERS = {"name": "mag1", "peers": {"mag2": "192.0.2.2"}}


@pytest.mark.parametrize(("settings", "message"), [
    ({}, "the peer channel needs mutual TLS (tls_ca, tls_cert, tls_key; docs/peer-tls.md) or, "
         "on a testbed only, insecure_plaintext: true"),
    ({"tls_ca": "/x"}, "tls_cert, tls_key missing: the peer channel's TLS needs tls_ca, tls_cert and tls_key"),
    ({"tls_ca": "/a", "tls_cert": "/b", "tls_key": "/c", "insecure_plaintext": True},
     "insecure_plaintext and tls_* settings exclude each other"),
    ({"insecure_plaintext": "yes"}, "insecure_plaintext must be true or false"),
    ({"insecure_plaintext": True, "peer_max_connections": 0}, "peer_max_connections must be an integer of at least 1"),
    ({"insecure_plaintext": True, "peer_idle_interval": "5"}, "peer_idle_interval must be a number of at least 0.1"),
    ({"insecure_plaintext": True, "context_store_bytes": 10}, "context_store_bytes must be an integer of at least 4096"),
    ({"insecure_plaintext": True, "context_hold_interval": float("inf")},
     "context_hold_interval must be a number of at least 1"),
])
def test_channel_security_settings_are_checked(settings, message) -> None:
    with pytest.raises(ConfigError) as info:
        parse_settings({**PEERS, **settings})
    assert message in [p.message for p in info.value.problems]


def test_a_mag_name_must_be_a_dns_name() -> None:
    with pytest.raises(ConfigError) as info:
        parse_settings({"peers": {"mag 2": "192.0.2.2"}, "insecure_plaintext": True})
    assert "is not a MAG name" in info.value.problems[0].message


def test_channel_limits_reach_the_settings() -> None:
    settings = parse_settings({**PEERS, "insecure_plaintext": True, "peer_max_connections": 3,
                               "peer_idle_interval": 1.5, "peer_max_request": 4096,
                               "context_hold_interval": 9, "context_store_bytes": 65536})
    assert (settings.limits.max_connections, settings.limits.idle_interval, settings.limits.max_request) == (
        3, 1.5, 4096)
    assert (settings.hold_interval, settings.store_bytes) == (9, 65536)


def test_tls_files_are_loaded_and_checked_at_start(facade, domain) -> None:
    facade.reactor = MemoryReactor()
    plugin = FakeClientPlugin()
    plugin.start(facade, {**PEERS, "listen": "192.0.2.1", **domain["mag1"]})
    assert plugin.client.credentials.names == {"mag1"}
    (_port, factory, _backlog, _interface), = facade.reactor.tcpServers
    assert factory.credentials is plugin.client.credentials
    plugin.stop()
    for name, tls, fragment in (("mag2", domain["mag1"], "names ['mag1'], not this MAG (mag2)"),
                                ("mag1", {**domain["mag1"], "tls_ca": domain["foreign"]["tls_ca"]},
                                 "is not issued by the CA")):
        with pytest.raises(ConfigError) as info:
            FakeClientPlugin().start(facade, {"name": name, "peers": {"mag3": "192.0.2.3"}, **tls})
        assert fragment in str(info.value)


def test_the_testbed_gives_its_mags_certificates_the_plugin_accepts(tmp_path) -> None:
    plan = make_plan(default_scenario().topology, run_id="0001")
    mags = [r for r in daemon_roles(plan, "context", "reactive", tmp_path / "tls") if r.kind == "mag"]
    assert len(mags) == 2
    for role in mags:
        settings = parse_settings(parse_config(mcproxy_config(role), "x.conf").plugin("pmipv6").settings)
        assert not settings.insecure_plaintext
        assert load_peer_credentials(settings).names == {role.node}
    assert sorted(p.name for p in (tmp_path / "tls").iterdir()) == [
        "ca.key", "ca.pem", "mag1.key", "mag1.pem", "mag2.key", "mag2.pem"], "one CA for the run"
