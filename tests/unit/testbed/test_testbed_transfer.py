"""Context mode over the MAG-to-MAG channel in the testbed: the scenario option, the MAG
configs it writes (read back by the daemon's own config reader and the plugin's
validation), and what the handover driver asks of each MAG."""

from __future__ import annotations

import dataclasses

import pytest

from mcproxy_pmip.config import parse_config
from mcproxy_pmip.errors import ConfigError
from mcproxy_pmip_plugins.pmipv6 import parse_settings
from mcproxy_pmip_testbed.daemons import mcproxy_config
from mcproxy_pmip_testbed.driver import HandoverDriver
from mcproxy_pmip_testbed.plan import make_plan
from mcproxy_pmip_testbed.runner import daemon_roles
from mcproxy_pmip_testbed.scenario import Handover, default_scenario, load_scenario
from tests.unit.testbed.test_testbed_scenario import GOOD


def test_context_transfer_option_defaults_to_control_and_is_checked() -> None:
    assert default_scenario().options.context_transfer == "control"
    chosen = load_scenario(GOOD.replace("capture: [\"lma1:src0\"]", "context_transfer: reactive"))
    assert chosen.options.context_transfer == "reactive"
    with pytest.raises(ConfigError) as info:
        load_scenario(GOOD.replace("capture: [\"lma1:src0\"]", "context_transfer: psychic"))
    assert [str(p) for p in info.value.problems] == [
        "<scenario>:0:0: options.context_transfer: must be one of ('control', 'predictive', 'reactive')"]


def test_channel_modes_give_every_mag_its_peers_in_a_config_the_daemon_accepts() -> None:
    plan = make_plan(default_scenario().topology, run_id="0001")
    mags = [r for r in daemon_roles(plan, "context", "predictive") if r.kind == "mag"]
    for role in mags:
        config = parse_config(mcproxy_config(role), f"{role.node}.conf")
        assert config.protocols and config.instances == ()
        settings = parse_settings(config.plugin("pmipv6").settings)
        assert settings.name == role.node
        assert settings.listen.host == plan.mag_peer_address(role.node)
        other = "mag2" if role.node == "mag1" else "mag1"
        assert settings.peers == {other: dataclasses.replace(settings.listen,
                                                             host=plan.mag_peer_address(other))}
    assert plan.mag_peer_address("mag1") in plan.underlay_network("lma1")


@pytest.mark.parametrize(("mode", "transfer"), [("context", "control"), ("plugin", "reactive")])
def test_other_modes_keep_the_mcproxy_grammar_config(mode, transfer) -> None:
    plan = make_plan(default_scenario().topology, run_id="0001")
    for role in daemon_roles(plan, mode, transfer):
        assert role.plugin_settings == {}
        assert mcproxy_config(role).splitlines()[1] == "protocol MLDv2;"


class FakeControl:
    def __init__(self, name: str, calls: list) -> None:
        self.name, self.calls = name, calls

    def context_export(self, mn_id):
        self.calls.append((self.name, "context-export", mn_id))
        return [{"family": "ipv6", "code": 2, "payload": "00"}]

    def handover_prepare(self, mn_id, target):
        self.calls.append((self.name, "handover-prepare", mn_id, target))

    def detach(self, mn_id):
        self.calls.append((self.name, "detach", mn_id))

    def attach(self, mn_id, access_if, tunnel_if, lma, hnp, lifetime, context=None, previous_mag=None):
        self.calls.append((self.name, "attach", mn_id, context is not None, previous_mag))


class FakeTestbed:
    def __init__(self) -> None:
        self.plan = make_plan(default_scenario().topology, run_id="0001")
        self.attached = {"mn1": "mag1"}

    def radio_detach(self, mn):
        pass

    def radio_attach(self, mn, mag):
        self.attached[mn] = mag

    def point_lma_route(self, mn, mag):
        pass


@pytest.mark.parametrize(("transfer", "before", "attach"), [
    ("control", [("mag1", "context-export", "mn1")], ("mag2", "attach", "mn1", True, None)),
    ("predictive", [("mag1", "handover-prepare", "mn1", "mag2")], ("mag2", "attach", "mn1", False, "mag1")),
    ("reactive", [], ("mag2", "attach", "mn1", False, "mag1")),
])
def test_the_driver_moves_the_context_the_chosen_way(transfer, before, attach) -> None:
    calls: list = []
    controls = {name: FakeControl(name, calls) for name in ("mag1", "mag2")}
    driver = HandoverDriver(FakeTestbed(), "context", controls, 60, transfer=transfer)
    driver.handover(Handover(at=2.0, mn="mn1", to="mag2", l2_outage_interval=0.0))
    assert calls == [*before, ("mag1", "detach", "mn1"), attach]
