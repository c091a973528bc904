"""The daemon's services: sequential start and reverse stop, plugin stop failures only logged."""

from __future__ import annotations

import logging

import pytest
from twisted.application import service

from mcproxy_pmip.proxy.daemon_services import PluginService
from mcproxy_pmip.proxy.service_sequence import SequentialServices


class Step(service.Service):
    def __init__(self, name: str, journal: list[str], fail: bool = False) -> None:
        self.label, self.journal, self.fail = name, journal, fail

    def startService(self) -> None:
        if self.fail:
            raise OSError(f"{self.label} failed")
        self.journal.append(f"start {self.label}")
        super().startService()

    def stopService(self):
        self.journal.append(f"stop {self.label}")
        return super().stopService()


def sequence(journal: list[str], failing: str | None = None) -> SequentialServices:
    services = SequentialServices()
    for name in ("a", "b", "c"):
        Step(name, journal, fail=name == failing).setServiceParent(services)
    return services


def test_children_start_in_order_and_stop_in_reverse() -> None:
    journal: list[str] = []
    services = sequence(journal)
    services.startService()
    services.stopService()
    assert journal == ["start a", "start b", "start c", "stop c", "stop b", "stop a"]


def test_a_failed_start_stops_only_what_started() -> None:
    journal: list[str] = []
    services = sequence(journal, failing="b")
    with pytest.raises(OSError):
        services.startService()
    services.stopService()
    assert journal == ["start a", "stop a"]


class BrokenStop(Step):
    def stopService(self):
        super().stopService()
        raise PermissionError(f"{self.label} cannot stop")


def test_a_child_that_fails_to_stop_is_logged_and_the_others_still_stop(caplog) -> None:
    journal: list[str] = []
    services = SequentialServices()
    for step in (Step("a", journal), BrokenStop("b", journal), Step("c", journal)):
        step.setServiceParent(services)
    services.startService()
    with caplog.at_level(logging.ERROR):
        services.stopService()
    assert journal == ["start a", "start b", "start c", "stop c", "stop b", "stop a"]
    assert [r.getMessage() for r in caplog.records] == ["service_stop_failed service=BrokenStop"]
    assert not any(child.running for child in services)


class BrokenPlugin:
    name = "broken"

    def start(self, api, settings) -> None:
        self.started = (api, settings)

    def stop(self) -> None:
        raise RuntimeError("cannot stop")


def test_a_plugin_that_fails_to_stop_is_logged_and_the_stop_goes_on(caplog) -> None:
    plugin = BrokenPlugin()
    wrapped = PluginService(plugin, "api", {"k": 1})
    wrapped.startService()
    assert plugin.started == ("api", {"k": 1})
    with caplog.at_level(logging.ERROR):
        done = wrapped.stopService()
    assert done.called and not wrapped.running
    assert "plugin_stop_failed plugin=broken" in caplog.text
