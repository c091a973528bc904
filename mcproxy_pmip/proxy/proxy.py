"""Proxy: the daemon's top service. Reads sockets, owns the instances, applies reloads.

One per process, on one Twisted reactor. It is given its data plane
(``dataplane.port.DataPlane``) and a factory of packet sockets from the top
(``daemon``), so tests can hand it the in-memory ones. ``startService`` lets
the plane clear leftovers of a crashed run, opens the shared resources (the
interface monitor, the IGMP and MLD packet sockets) and starts one
``ProxyInstance`` per configured instance (when one fails, those started
are stopped again); ``stopService`` removes every vif,
MFC entry, rule and nftables chain the daemon made. Inbound packets are demultiplexed by
interface to the instance that owns it. ``reload`` applies a new
configuration's difference all or nothing (``proxy.reload``) and keeps the
state of what did not change.
The plugin facade and the control backend live in ``proxy.api``.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable

from twisted.application import service

from mcproxy_pmip.addresses import Family
from mcproxy_pmip.config.diff import diff_configs
from mcproxy_pmip.config.model import Config, InstanceConfig, Limits
from mcproxy_pmip.dataplane.port import DataPlane, PacketSocket
from mcproxy_pmip.kernel.interfaces import InterfaceInfo
from mcproxy_pmip.membership.budget import StateBudget
from mcproxy_pmip.kernel.netmon import (AddressAdded, AddressRemoved, InterfaceMonitor, LinkAdded,
                                        LinkChanged, LinkRemoved, Resynced)
from mcproxy_pmip.plugin import INTERFACE_DOWN, INTERFACE_UP, ProxyEvent
from mcproxy_pmip.proxy.instance import ProxyInstance
from mcproxy_pmip.proxy.reader import SocketReader
from mcproxy_pmip.proxy.receiver import Inbound, Receiver
from mcproxy_pmip.proxy.reload import Reload
from mcproxy_pmip.proxy.sender import Sender

log = logging.getLogger(__name__)



class Proxy(service.Service):
    """The proxy daemon core. ``emit(event)`` forwards daemon events to plugin subscribers.

    ``packet_sockets(family)`` opens the packet socket of a family;
    ``monitor_factory()`` the interface monitor.
    """

    def __init__(self, config: Config, reactor, plane: DataPlane,
                 packet_sockets: Callable[[Family], PacketSocket], *,
                 monitor_factory: Callable[[], InterfaceMonitor] = InterfaceMonitor,
                 require_router_alert: bool = False, seed: int | None = None) -> None:
        self.config = config
        self.reactor = reactor
        self.plane = plane
        self._packet_sockets = packet_sockets
        self._monitor_factory = monitor_factory
        self.families = frozenset(config.families)
        self.require_router_alert = require_router_alert
        self.rng = random.Random(seed)
        self.budget = StateBudget.daemon(config.limits.max_total_groups, config.limits.max_total_sources)
        self.instances: dict[str, ProxyInstance] = {}
        self.listeners: list[Callable[[ProxyEvent], None]] = []
        self.monitor: InterfaceMonitor | None = None
        self.sockets: dict[Family, PacketSocket] = {}
        self.readers: list[SocketReader] = []
        self._plane_readers: dict[str, list[SocketReader]] = {}
        self.sender: Sender | None = None
        self.receiver: Receiver | None = None
        self.started_at = reactor.seconds()

    # -- lifecycle ---------------------------------------------------------------------

    def startService(self) -> None:
        self.plane.start(c.table for c in self.config.instances if c.table is not None)
        self.monitor = self._monitor_factory()
        self._add_reader("netmon", self.monitor.fileno, self._read_interface_events)
        for family in sorted(self.families):
            self.sockets[family] = self._packet_sockets(family)
        self.sender = Sender(self.sockets.get(Family.IPV4), self.sockets.get(Family.IPV6), self.lookup,
                             self.reactor.callLater)
        self.receiver = Receiver(self.sockets.get(Family.IPV4), self.sockets.get(Family.IPV6),
                                 self._deliver, self.monitor.is_own_address, self.require_router_alert,
                                 clock=self.reactor, limits_for=self._limits_of,
                                 is_on_link=self.monitor.is_on_link)
        if Family.IPV4 in self.sockets:
            self._add_reader("igmp", self.sockets[Family.IPV4].fileno, self.receiver.read_igmp)
        if Family.IPV6 in self.sockets:
            self._add_reader("mld", self.sockets[Family.IPV6].fileno, self.receiver.read_mld)
        try:
            for instance_config in self.config.instances:
                self.start_instance(instance_config)
        except Exception:
            for name in list(self.instances):
                self.stop_instance(name)
            raise
        super().startService()

    def stopService(self):
        for name in list(self.instances):
            self.stop_instance(name)
        for reader in self.readers:
            self.reactor.removeReader(reader)
        self.readers.clear()
        if self.receiver is not None:
            self.receiver.close()
        if self.sender is not None:
            self.sender.close()
        for sock in self.sockets.values():
            sock.close()
        self.sockets.clear()
        if self.monitor is not None:
            self.monitor.close()
            self.monitor = None
        self.plane.close()
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
        self.plane.routes.configure_instance(config.name, config.limits.max_routes,
                                             self.config.limits.max_total_routes)
        instance = ProxyInstance(config, self.families, self.plane, self.reactor, self.sender, self.sockets,
                                 self.lookup, random.Random(self.rng.random()), budget=self.budget,
                                 on_change=lambda family, group, name=config.name:
                                 self.emit(ProxyEvent("membership-changed", name, None, family, group)))
        self.instances[config.name] = instance
        try:
            instance.start()
        except Exception:
            del self.instances[config.name]
            instance.stop()
            raise
        readers = []
        for wanted in instance.forwarding.readers():
            reader = SocketReader(wanted.name, wanted.fileno, wanted.on_readable)
            self.reactor.addReader(reader)
            readers.append(reader)
        self._plane_readers[config.name] = readers
        return instance

    def stop_instance(self, name: str) -> None:
        instance = self.instances.pop(name)
        for reader in self._plane_readers.pop(name, []):
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

    def _limits_of(self, ifindex: int) -> Limits | None:
        """The limits of the instance that owns ``ifindex`` (None: no instance does)."""
        info = self.monitor.interface(ifindex)
        instance = self.owner_of(info.name) if info is not None else None
        return instance.config.limits if instance is not None else None

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
        """Apply ``new`` all or nothing (``proxy.reload``): add, remove and restart instances, swap
        downstreams; on a failure the old configuration runs again and ``ReloadFailed`` says why."""
        difference = diff_configs(self.config, new)
        if difference.protocols_changed:
            log.warning("reload_protocols_ignored reason=protocol lines change only at restart")
        if difference.data_plane_changed:
            log.warning("reload_data_plane_ignored running=%s reason=the data plane changes only at restart",
                        self.plane.name)
        Reload(self, self.config, new, difference).apply()
        self.config = new
        log.info("reload_done added=%d removed=%d changed=%d", len(difference.instances_added),
                 len(difference.instances_removed), len(difference.instances_changed))
