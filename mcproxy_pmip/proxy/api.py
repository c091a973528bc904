"""The daemon as plugins and the control socket see it: ``ProxyFacade`` and ``ControlBackend``.

A thin layer over ``Proxy``: it checks names, turns refusals into
``CommandError`` codes ("unknown-instance", "unknown-interface", "conflict"),
and renders state as JSON-ready rows. It holds no state of its own besides
the names of instances created for plugins.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

from mcproxy_pmip import __version__
from mcproxy_pmip.addresses import Family
from mcproxy_pmip.config.model import InstanceConfig
from mcproxy_pmip.control.protocol import CommandError
from mcproxy_pmip.errors import KernelError
from mcproxy_pmip.handover.buffer import GroupKey, HandoverBuffer, subscriptions_of
from mcproxy_pmip.membership.timers import Timers
from mcproxy_pmip.plugin import (
    DOWNSTREAM_REMOVED, EVENT_NAMES, INSTANCE_CREATED, INSTANCE_REMOVED, ProxyEvent,
)
from mcproxy_pmip.proxy.handover_io import ForwardRecorder, PreparedData
from mcproxy_pmip.proxy.instance import ProxyInstance
from mcproxy_pmip.proxy.proxy import Proxy
from mcproxy_pmip.proxy.status import group_rows, instance_row, route_rows
from mcproxy_pmip.wire.records import GroupRecord


class ProxyApi:
    """Implements ``mcproxy_pmip.plugin.ProxyFacade`` and ``control.server.ControlBackend``."""

    def __init__(self, proxy: Proxy, plugin_names: Iterable[str] = ()) -> None:
        self.proxy = proxy
        self.clock = proxy.reactor
        self.reactor = proxy.reactor
        self.plugin_names = tuple(plugin_names)
        self.created: set[str] = set()

    # -- helpers -------------------------------------------------------------------------

    def _instance(self, name: str) -> ProxyInstance:
        instance = self.proxy.instances.get(name)
        if instance is None:
            raise CommandError("unknown-instance", f"no instance named {name!r}")
        return instance

    @staticmethod
    def _refused(exc: ValueError) -> CommandError:
        return CommandError("conflict", str(exc))

    # -- ProxyFacade ---------------------------------------------------------------------

    def find_or_create_instance(self, upstream_if: str, timers_profile: Timers) -> str:
        for instance in self.proxy.instances.values():
            if upstream_if in instance.upstreams:
                return instance.name
        owner = self.proxy.owner_of(upstream_if)
        if owner is not None:
            raise CommandError("conflict", f"{upstream_if} is a downstream of instance {owner.name}")
        name = f"pmip-{upstream_if}"
        self.proxy.start_instance(InstanceConfig(name=name, upstreams=(upstream_if,), timers=timers_profile))
        self.created.add(name)
        self.proxy.emit(ProxyEvent(INSTANCE_CREATED, name, upstream_if))
        return name

    def remove_instance(self, name: str) -> bool:
        if name not in self.created or name not in self.proxy.instances:
            return False
        self.proxy.stop_instance(name)
        self.created.discard(name)
        self.proxy.emit(ProxyEvent(INSTANCE_REMOVED, name))
        return True

    def add_downstream(self, instance: str, interface: str) -> None:
        target = self._instance(instance)
        owner = self.proxy.owner_of(interface)
        if owner is not None and owner is not target:
            raise CommandError("conflict", f"{interface} belongs to instance {owner.name}")
        try:
            target.add_downstream(interface)
        except ValueError as exc:
            raise self._refused(exc) from exc

    def remove_downstream(self, instance: str, interface: str) -> None:
        try:
            self._instance(instance).remove_downstream(interface)
        except ValueError as exc:
            raise CommandError("unknown-interface", str(exc)) from exc
        self.proxy.emit(ProxyEvent(DOWNSTREAM_REMOVED, instance, interface))

    def export_records(self, instance: str, interface: str) -> list[tuple[Family, int, tuple[GroupRecord, ...]]]:
        return self._instance(instance).export_records(interface)

    def import_records(self, instance: str, interface: str, family: Family, version: int,
                       records: Iterable[GroupRecord]) -> None:
        try:
            self._instance(instance).import_records(interface, family, version, tuple(records))
        except ValueError as exc:
            raise CommandError("unknown-interface", str(exc)) from exc

    def hold_records(self, instance: str, key: str, family: Family, records: Iterable[GroupRecord]) -> None:
        try:
            self._instance(instance).hold_records(key, family, tuple(records))
        except ValueError as exc:
            raise self._refused(exc) from exc

    def release_records(self, instance: str, key: str) -> None:
        self._instance(instance).release_records(key)

    def commit_forwarding(self, instance: str) -> None:
        self._instance(instance).commit_forwarding()

    def open_handover_buffer(self, instance: str, records: Iterable[tuple[Family, int, Iterable[GroupRecord]]],
                             max_interval: float, max_bytes: int) -> PreparedData:
        target = self._instance(instance)
        subscriptions: dict[GroupKey, Any] = {}
        for family, _version, family_records in records:
            subscriptions.update(subscriptions_of(family, family_records))
        try:
            return PreparedData(self.reactor, target.upstreams[0],
                                HandoverBuffer(subscriptions, max_interval, max_bytes))
        except KernelError as exc:
            raise CommandError("kernel-error", f"handover buffer on {target.upstreams[0]}: {exc}") from exc

    def open_forward_recorder(self, interface: str, groups: Iterable[GroupKey]) -> ForwardRecorder:
        try:
            return ForwardRecorder(self.reactor, interface, groups)
        except KernelError as exc:
            raise CommandError("kernel-error", f"forwarding record on {interface}: {exc}") from exc

    def subscribe(self, event_name: str, callback: Callable[[ProxyEvent], None]) -> Callable[[], None]:
        if event_name not in EVENT_NAMES:
            raise ValueError(f"unknown event {event_name!r}")

        def listener(event: ProxyEvent) -> None:
            if event.name == event_name:
                callback(event)

        self.proxy.listeners.append(listener)
        return lambda: self.proxy.listeners.remove(listener) if listener in self.proxy.listeners else None

    # -- ControlBackend ------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        proxy = self.proxy
        counters: dict[str, int] = {}
        if proxy.receiver is not None:
            for source in (proxy.receiver.received, proxy.receiver.drops, proxy.sender.sent,
                           proxy.sender.failures):
                counters.update(source)
        counters.update(proxy.budget.counters())
        counters.update(proxy.plane.routes.counters())
        for family, sock in proxy.sockets.items():
            counters.update({f"{family.protocol.lower()}_socket_{reason}": n for reason, n in sock.drops.items()})
        for instance in proxy.instances.values():
            if instance.forwarding is not None:
                for name, value in instance.forwarding.counters().items():
                    counters[name] = counters.get(name, 0) + value
        return {
            "pid": os.getpid(),
            "version": __version__,
            "uptime": round(proxy.reactor.seconds() - proxy.started_at, 3),
            "protocols": list(proxy.config.protocols),
            "instances": len(proxy.instances),
            "data_plane": proxy.plane.name,
            "plugins": list(self.plugin_names),
            "counters": dict(sorted(counters.items())),
        }

    def version(self) -> dict[str, Any]:
        return {"version": __version__, "protocols": ["IGMPv1", "IGMPv2", "IGMPv3", "MLDv1", "MLDv2"]}

    def instances(self) -> list[dict[str, Any]]:
        return [instance_row(i, i.name in self.created) for i in self.proxy.instances.values()]

    def groups(self, instance: str | None, interface: str | None) -> list[dict[str, Any]]:
        chosen = [self._instance(instance)] if instance else list(self.proxy.instances.values())
        now = self.clock.seconds()
        return [row for i in chosen for row in group_rows(i, now) if interface in (None, row["interface"])]

    def routes(self) -> list[dict[str, Any]]:
        return [row for i in self.proxy.instances.values() for row in route_rows(i)]

    def add_upstream(self, instance: str, interface: str) -> None:
        owner = self.proxy.owner_of(interface)
        if owner is not None:
            raise CommandError("conflict", f"{interface} belongs to instance {owner.name}")
        try:
            self._instance(instance).add_upstream(interface)
        except ValueError as exc:
            raise self._refused(exc) from exc

    def del_downstream(self, instance: str, interface: str) -> None:
        self.remove_downstream(instance, interface)

    def del_upstream(self, instance: str, interface: str) -> None:
        try:
            self._instance(instance).remove_upstream(interface)
        except ValueError as exc:
            raise CommandError("unknown-interface", str(exc)) from exc
