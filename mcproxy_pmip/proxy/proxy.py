"""Proxy: the daemon's top service. Reads sockets, owns the instances, applies reloads.

One per process, on one Twisted reactor. ``startService`` clears leftovers of
a crashed run (our rules and tables), opens the shared kernel resources (the
interface monitor, the raw IGMP and MLD sockets) and starts one
``ProxyInstance`` per configured instance; ``stopService`` removes every vif,
MFC entry and rule the daemon made. Inbound packets are demultiplexed by
interface to the instance that owns it. ``reload`` applies a new
configuration's difference and keeps the state of what did not change.
The plugin facade and the control backend live in ``proxy.api``.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable

from twisted.application import service

from mcproxy_pmip.addresses import Family
from mcproxy_pmip.config.diff import diff_configs
from mcproxy_pmip.config.model import Config, InstanceConfig
from mcproxy_pmip.kernel import leftovers, mrules
from mcproxy_pmip.kernel.igmp_socket import IgmpSocket
from mcproxy_pmip.kernel.interfaces import InterfaceInfo
from mcproxy_pmip.kernel.mld_socket import MldSocket
from mcproxy_pmip.kernel.netmon import (AddressAdded, AddressRemoved, InterfaceMonitor, LinkAdded,
                                        LinkChanged, LinkRemoved, Resynced)
from mcproxy_pmip.plugin import INTERFACE_DOWN, INTERFACE_UP, ProxyEvent
from mcproxy_pmip.proxy.instance import ProxyInstance
from mcproxy_pmip.proxy.reader import SocketReader
from mcproxy_pmip.proxy.receiver import Inbound, Receiver
from mcproxy_pmip.proxy.sender import Sender

log = logging.getLogger(__name__)

#: first table number handed to instances that name none (when the default table cannot serve)
AUTO_TABLE_BASE = 1000


class Proxy(service.Service):
    """The proxy daemon core. ``emit(event)`` forwards daemon events to plugin subscribers."""

    def __init__(self, config: Config, reactor, *, require_router_alert: bool = False,
                 dynamic_instances: bool = False, seed: int | None = None) -> None:
        self.config = config
        self.reactor = reactor
        self.families = frozenset(config.families)
        self.require_router_alert = require_router_alert
        self.dynamic_instances = dynamic_instances
        self.rng = random.Random(seed)
        self.instances: dict[str, ProxyInstance] = {}
        self.tables: dict[str, int | None] = {}
        self.listeners: list[Callable[[ProxyEvent], None]] = []
        self.monitor: InterfaceMonitor | None = None
        self.sockets: dict[Family, object] = {}
        self.readers: list[SocketReader] = []
        self._upcall_readers: dict[tuple[str, Family], SocketReader] = {}
        self.sender: Sender | None = None
        self.receiver: Receiver | None = None
        self.started_at = reactor.seconds()

    # -- tables ------------------------------------------------------------------------

    def table_for(self, config: InstanceConfig) -> int | None:
        """The instance's table: its own number, else the kernel's default table for a lone
        configured instance, else the lowest free number from ``AUTO_TABLE_BASE``."""
        if config.name in self.tables:
            return self.tables[config.name]
        if config.table is not None:
            table = config.table
        elif len(self.config.instances) == 1 and not self.dynamic_instances:
            table = None
        else:
            used = {c.table for c in self.config.instances} | set(self.tables.values())
            table = AUTO_TABLE_BASE
            while table in used:
                table += 1
        self.tables[config.name] = table
        return table

    def _leftover_tables(self) -> list[tuple[Family, int]]:
        """Tables to clear at start: the configured ones and every table our rules point to."""
        found = {(family, table) for config in self.config.instances
                 if (table := self.table_for(config)) is not None for family in self.families}
        for family in self.families:
            found.update((family, rule.table) for rule in mrules.list_mrules(family))
        return sorted(found)

    # -- lifecycle ---------------------------------------------------------------------

    def startService(self) -> None:
        cleared = leftovers.clear(self._leftover_tables())
        for rule in cleared.mrules:
            log.info("leftover_removed rule=%s", rule)
        self.monitor = InterfaceMonitor()
        self._add_reader("netmon", self.monitor.fileno, self._read_interface_events)
        if Family.IPV4 in self.families:
            self.sockets[Family.IPV4] = IgmpSocket()
        if Family.IPV6 in self.families:
            self.sockets[Family.IPV6] = MldSocket()
        self.sender = Sender(self.sockets.get(Family.IPV4), self.sockets.get(Family.IPV6), self.lookup,
                             self.reactor.callLater)
        self.receiver = Receiver(self.sockets.get(Family.IPV4), self.sockets.get(Family.IPV6),
                                 self._deliver, self.monitor.is_own_address, self.require_router_alert)
        if Family.IPV4 in self.sockets:
            self._add_reader("igmp", self.sockets[Family.IPV4].fileno, self.receiver.read_igmp)
        if Family.IPV6 in self.sockets:
            self._add_reader("mld", self.sockets[Family.IPV6].fileno, self.receiver.read_mld)
        for instance_config in self.config.instances:
            self.start_instance(instance_config)
        super().startService()

    def stopService(self):
        for name in list(self.instances):
            self.stop_instance(name)
        for reader in self.readers:
            self.reactor.removeReader(reader)
        self.readers.clear()
        for sock in self.sockets.values():
            sock.close()
        self.sockets.clear()
        if self.monitor is not None:
            self.monitor.close()
            self.monitor = None
        log.info("proxy_stopped")
        return super().stopService()

    def _add_reader(self, name: str, fileno, handler) -> SocketReader:
        reader = SocketReader(name, fileno, handler)
        self.reactor.addReader(reader)
        self.readers.append(reader)
        return reader

    def start_instance(self, config: InstanceConfig) -> ProxyInstance:
        if config.name in self.instances:
            raise ValueError(f"instance {config.name} exists already")
        table = self.table_for(config)
        instance = ProxyInstance(config, self.families, table, self.reactor, self.sender, self.sockets,
                                 self.lookup, random.Random(self.rng.random()),
                                 on_change=lambda family, group, name=config.name:
                                 self.emit(ProxyEvent("membership-changed", name, None, family, group)))
        self.instances[config.name] = instance
        try:
            instance.start()
        except Exception:
            del self.instances[config.name]
            instance.stop()
            raise
        for family, routing in instance.routing.items():
            reader = SocketReader(f"upcalls-{config.name}-{family.name}", routing.socket.fileno,
                                  lambda i=instance, f=family: i.read_upcalls(f))
            self.reactor.addReader(reader)
            self._upcall_readers[(config.name, family)] = reader
        return instance

    def stop_instance(self, name: str) -> None:
        instance = self.instances.pop(name)
        self.tables.pop(name, None)
        for family in list(instance.routing):
            reader = self._upcall_readers.pop((name, family), None)
            if reader is not None:
                self.reactor.removeReader(reader)
        instance.stop()

    # -- events ------------------------------------------------------------------------

    def emit(self, event: ProxyEvent) -> None:
        for listener in list(self.listeners):
            try:
                listener(event)
            except Exception:
                log.exception("event_listener_failed event=%s", event.name)

    def lookup(self, name: str) -> InterfaceInfo | None:
        return self.monitor.interface_by_name(name) if self.monitor is not None else None

    def owner_of(self, name: str) -> ProxyInstance | None:
        for instance in self.instances.values():
            if instance.owns(name):
                return instance
        return None

    def _deliver(self, inbound: Inbound) -> None:
        info = self.monitor.interface(inbound.ifindex)
        if info is None:
            return
        instance = self.owner_of(info.name)
        if instance is not None:
            instance.handle_inbound(info.name, inbound)

    def _read_interface_events(self) -> None:
        touched: set[str] = set()
        for event in self.monitor.read_events():
            if isinstance(event, Resynced):
                touched.update(info.name for info in event.snapshot)
                touched.update(name for i in self.instances.values() for name in i.attached)
            elif isinstance(event, (LinkAdded, LinkChanged, LinkRemoved)):
                touched.add(event.name)
            elif isinstance(event, (AddressAdded, AddressRemoved)):
                info = self.monitor.interface(event.ifindex)
                if info is not None:
                    touched.add(info.name)
        for name in touched:
            instance = self.owner_of(name)
            info = self.lookup(name)
            self.emit(ProxyEvent(INTERFACE_UP if info is not None and info.up else INTERFACE_DOWN,
                                 instance.name if instance else None, name))
            if instance is not None:
                instance.interface_changed(name)

    # -- reload ------------------------------------------------------------------------

    def reload(self, new: Config) -> None:
        """Apply ``new``: add and remove instances and downstreams; restart what cannot change in place."""
        difference = diff_configs(self.config, new)
        if difference.protocols_changed:
            log.warning("reload_protocols_ignored reason=protocol lines change only at restart")
        self.config = new
        for gone in difference.instances_removed:
            self.stop_instance(gone.name)
        for change in difference.instances_changed:
            instance = self.instances[change.name]
            if change.needs_restart or change.filters_changed:
                self.stop_instance(change.name)
                self.start_instance(new.instance(change.name))
                continue
            instance.config = new.instance(change.name)
            for name in change.downstreams_removed:
                instance.remove_downstream(name)
            for name in change.downstreams_added:
                instance.add_downstream(name)
        for added in difference.instances_added:
            self.start_instance(added)
        log.info("reload_done added=%d removed=%d changed=%d", len(difference.instances_added),
                 len(difference.instances_removed), len(difference.instances_changed))
