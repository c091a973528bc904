"""A fake ProxyFacade for plugin tests: records every call, keeps downstream records for export."""

from __future__ import annotations

from collections import defaultdict

import pytest
from twisted.internet.task import Clock

from mcproxy_pmip.errors import KernelError
from mcproxy_pmip.plugin import ProxyEvent


class FakeFacade:
    """Instances named after their upstream; ``fail_add`` makes add_downstream raise like a full vif table."""

    def __init__(self) -> None:
        self.clock = Clock()
        self.reactor = None
        self.calls: list[tuple] = []
        self.instances: dict[str, dict] = {}
        self.records: dict[tuple[str, str], dict] = {}
        self.subscribers: dict[str, list] = defaultdict(list)
        self.fail_add: set[str] = set()

    def find_or_create_instance(self, upstream_if, timers_profile):
        name = f"pmip-{upstream_if}"
        if name not in self.instances:
            self.calls.append(("create", name, timers_profile))
            self.instances[name] = {"upstream": upstream_if, "downstreams": set(), "profile": timers_profile}
        return name

    def remove_instance(self, name):
        self.calls.append(("remove-instance", name))
        return self.instances.pop(name, None) is not None

    def add_downstream(self, instance, interface):
        if interface in self.fail_add:
            raise KernelError("MRT_ADD_VIF", 23)
        self.calls.append(("add", instance, interface))
        assert interface not in self.instances[instance]["downstreams"], "downstream added twice"
        self.instances[instance]["downstreams"].add(interface)

    def remove_downstream(self, instance, interface):
        self.calls.append(("remove", instance, interface))
        self.instances[instance]["downstreams"].remove(interface)
        self.records.pop((instance, interface), None)

    def export_records(self, instance, interface):
        assert interface in self.instances[instance]["downstreams"]
        return [(family, version, records)
                for family, (version, records) in self.records.get((instance, interface), {}).items()]

    def import_records(self, instance, interface, family, version, records):
        assert interface in self.instances[instance]["downstreams"], "import on a non-downstream"
        self.calls.append(("import", instance, interface, family, version, tuple(records)))
        self.records.setdefault((instance, interface), {})[family] = (version, tuple(records))

    def subscribe(self, event_name, callback):
        self.subscribers[event_name].append(callback)
        return lambda: self.subscribers[event_name].remove(callback)

    def emit(self, event: ProxyEvent) -> None:
        for callback in list(self.subscribers[event.name]):
            callback(event)

    def downstreams(self) -> dict[str, set[str]]:
        return {name: set(inst["downstreams"]) for name, inst in self.instances.items()}


@pytest.fixture
def facade() -> FakeFacade:
    return FakeFacade()
