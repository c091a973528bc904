"""ProxyInstance: one RFC 4605 proxy (one upstream tunnel, N downstreams) on the reactor.

The IO shell around ``membership.InstanceCore``: it gives each interface to
the instance's data plane (``dataplane.port.InstancePlane``, which reads the
core's decisions through ``InstanceView``), tells the packet sockets which
interfaces to listen on, feeds inbound messages to the core, and carries out
the core's actions: packets through the ``Sender``, the plane's update on
``ForwardingChanged`` (every group changed in one reactor turn goes to the
plane in one ``groups_changed`` call at the end of the turn, so that a burst
of reports costs the plane one update), traces to the log. An interface is attached all or
nothing: when the plane refuses it (MRT's 32 vifs), nothing of it stays. Interfaces named in
the configuration that do not exist yet are waited for, not fatal. A downstream
that regains carrier (e.g. an access point's link when a mobile node arrives)
is queried again at once, as at start-up; its state is kept across the outage.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterable, Sequence

from twisted.internet.interfaces import IReactorTime

from mcproxy_pmip.addresses import Family
from mcproxy_pmip.config.filters import RuleFilterPolicy
from mcproxy_pmip.config.model import InstanceConfig, RuleMatching
from mcproxy_pmip.dataplane.port import DataPlane, InstancePlane, PacketSocket, Role
from mcproxy_pmip.errors import McproxyError
from mcproxy_pmip.kernel.interfaces import InterfaceInfo
from mcproxy_pmip.membership.actions import (Action, ForwardingChanged, QuerierChanged, SendQuery,
                                             SendReport, Trace)
from mcproxy_pmip.membership.instance import InstanceCore
from mcproxy_pmip.membership.query import query_from_wire
from mcproxy_pmip.membership.timers import HostOptions
from mcproxy_pmip.proxy.forwarding_view import InstanceView
from mcproxy_pmip.proxy.receiver import Inbound, ReportReceived
from mcproxy_pmip.proxy.sender import Sender
from mcproxy_pmip.proxy.timer_driver import TimerDriver
from mcproxy_pmip.wire.records import GroupRecord

log = logging.getLogger(__name__)

#: how often the data plane is asked to forget idle sources
AGEING_INTERVAL = 60.0


class ProxyInstance:
    """One proxy instance. ``lookup(name)`` answers from the interface monitor;
    ``packets`` maps a family to its packet socket; ``on_change(family, group)``
    hears merged membership changes (for plugins)."""

    def __init__(self, config: InstanceConfig, families: frozenset[Family], plane: DataPlane,
                 clock: IReactorTime, sender: Sender, packets: dict[Family, PacketSocket],
                 lookup: Callable[[str], InterfaceInfo | None],
                 rng: random.Random, on_change: Callable[[Family, object], None] = lambda f, g: None) -> None:
        self.config = config
        self.name = config.name
        self.families = families
        self._plane = plane
        self._clock = clock
        self._sender = sender
        self._packets = packets
        self._lookup = lookup
        self._on_change = on_change
        selection = "all" if config.upstream_forwarding is RuleMatching.ALL else "first"
        self.core = InstanceCore(
            config.name, config.upstreams, RuleFilterPolicy.for_instance(config),
            config.router_options(),
            HostOptions(robustness=config.timers.robustness,
                        unsolicited_report_interval=config.timers.unsolicited_report_interval),
            rng, upstream_selection=selection)
        self.driver = TimerDriver(clock, self.core, self.apply)
        self.forwarding: InstancePlane | None = None
        self.downstreams: list[str] = list(config.downstreams)
        self.attached: set[str] = set()
        self._carrier: dict[str, bool] = {}  # IFF_RUNNING of usable interfaces, as last seen
        self._ifindex: dict[str, int] = {}  # attached interfaces' indexes, kept for when they vanish
        self._ageing_call = None
        self._changed_groups: dict[tuple[Family, object], None] = {}
        self._flush_call = None

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def table(self) -> int | None:
        return self.forwarding.table if self.forwarding is not None else None

    def start(self) -> None:
        self.forwarding = self._plane.open_instance(self.name, self.families, self.config.table,
                                                    InstanceView(self.core))
        for name in self.config.upstreams + tuple(self.downstreams):
            self.interface_changed(name)
        self._ageing_call = self._clock.callLater(AGEING_INTERVAL, self._age)
        log.info("instance_started name=%s table=%s upstreams=%s downstreams=%s", self.name,
                 self.table, ",".join(self.config.upstreams), ",".join(self.downstreams))

    def stop(self) -> None:
        """Remove the instance's forwarding state at once, then leave its groups upstream."""
        if self.forwarding is not None:
            self.forwarding.close()
            self.forwarding = None
        for name in list(self.downstreams):
            self._detach_downstream(name)
        self.driver.cancel()
        for call in (self._ageing_call, self._flush_call):
            if call is not None and call.active():
                call.cancel()
        self._changed_groups.clear()
        self.attached.clear()
        log.info("instance_stopped name=%s", self.name)

    # -- interfaces ----------------------------------------------------------------------

    @property
    def upstreams(self) -> tuple[str, ...]:
        return self.core.upstreams

    def owns(self, name: str) -> bool:
        return name in self.core.upstreams or name in self.downstreams

    def interface_changed(self, name: str) -> None:
        """Attach ``name`` if it exists and is up; detach it if it went away or down."""
        info = self._lookup(name)
        usable = info is not None and info.up
        carrier_regained = usable and info.running and not self._carrier.get(name, True)
        if usable:
            self._carrier[name] = info.running
        if usable and name not in self.attached:
            self._attach(name, info)
        elif carrier_regained and name in self.downstreams:
            log.info("carrier_regained instance=%s interface=%s", self.name, name)
            for family in sorted(self.families):
                if (name, family) in self.core.downstreams:
                    self.driver.call(self.core.restart_downstream, name, family)
        elif not usable and name in self.attached:
            log.info("interface_lost instance=%s interface=%s", self.name, name)
            if name in self.downstreams:
                self._detach_downstream(name)
            else:
                self._release_interface(name)
        elif not usable:
            log.info("interface_waiting instance=%s interface=%s", self.name, name)
        if usable and name in self.attached and name in self.downstreams:
            self._update_own_addresses(name, info)

    def _attach(self, name: str, info: InterfaceInfo) -> None:
        role = Role.DOWNSTREAM if name in self.downstreams else Role.UPSTREAM
        try:
            self.forwarding.add_interface(name, info.ifindex, role)
        except McproxyError as exc:
            log.error("interface_attach_failed instance=%s interface=%s error=%s", self.name, name, exc)
            raise
        self.attached.add(name)
        self._ifindex[name] = info.ifindex
        for family in sorted(self.families):
            self._packets[family].watch(info.ifindex)
            if role is Role.DOWNSTREAM:
                own = info.primary_ipv4 if family is Family.IPV4 else info.ipv6_link_local
                self.driver.call(self.core.add_downstream, name, family, own)
        self.forwarding.refresh()
        log.info("interface_attached instance=%s interface=%s role=%s ifindex=%d", self.name, name,
                 "downstream" if name in self.downstreams else "upstream", info.ifindex)

    def _update_own_addresses(self, name: str, info: InterfaceInfo) -> None:
        """A downstream's addresses may come after the link: the querier election follows them."""
        for family in sorted(self.families):
            if (name, family) not in self.core.downstreams:
                continue
            router = self.core.router(name, family)
            own = info.primary_ipv4 if family is Family.IPV4 else info.ipv6_link_local
            if router.own_address != own:
                router.set_own_address(own)
                log.info("own_address_changed instance=%s interface=%s family=%s address=%s",
                         self.name, name, family.name, own)

    def _detach_downstream(self, name: str) -> None:
        if name not in self.attached:
            return
        for family in sorted(self.families):
            if (name, family) in self.core.downstreams:
                self.driver.call(self.core.remove_downstream, name, family)
        self._release_interface(name)

    def _release_interface(self, name: str) -> None:
        """Take ``name`` out of the data plane and stop listening on it."""
        ifindex = self._ifindex.pop(name, None)
        if ifindex is not None:
            for family in sorted(self.families):
                self._packets[family].unwatch(ifindex)
        if self.forwarding is not None:
            self.forwarding.remove_interface(name)
        self.attached.discard(name)
        self._carrier.pop(name, None)

    def add_downstream(self, name: str) -> None:
        if self.owns(name):
            raise ValueError(f"{name} is already an interface of instance {self.name}")
        self.downstreams.append(name)
        try:
            self.interface_changed(name)
        except McproxyError:
            self.downstreams.remove(name)
            raise

    def remove_downstream(self, name: str) -> None:
        if name not in self.downstreams:
            raise ValueError(f"{name} is not a downstream of instance {self.name}")
        self._detach_downstream(name)
        self.downstreams.remove(name)

    def add_upstream(self, name: str) -> None:
        if self.owns(name):
            raise ValueError(f"{name} is already an interface of instance {self.name}")
        self.driver.call(self.core.add_upstream, name)
        self.interface_changed(name)

    def remove_upstream(self, name: str) -> None:
        if name not in self.core.upstreams:
            raise ValueError(f"{name} is not an upstream of instance {self.name}")
        self.driver.call(self.core.remove_upstream, name)
        self._release_interface(name)

    # -- input -------------------------------------------------------------------------

    def handle_inbound(self, name: str, inbound: Inbound) -> None:
        if inbound.family not in self.families or name not in self.attached:
            return
        if isinstance(inbound, ReportReceived):
            if (name, inbound.family) in self.core.downstreams:
                self.driver.call(self.core.handle_report, name, inbound.family, inbound.version,
                                 inbound.records, inbound.source)
            return
        if name in self.core.upstreams or (name, inbound.family) in self.core.downstreams:
            self.driver.call(self.core.handle_query, name, inbound.family,
                             query_from_wire(inbound.query, inbound.source))

    def export_records(self, name: str) -> list[tuple[Family, int, tuple[GroupRecord, ...]]]:
        found = []
        for family in sorted(self.families):
            if (name, family) in self.core.downstreams:
                version, records = self.core.export_downstream(self._clock.seconds(), name, family)
                if records:
                    found.append((family, version, records))
        return found

    def import_records(self, name: str, family: Family, version: int, records: Sequence[GroupRecord]) -> None:
        if (name, family) not in self.core.downstreams:
            raise ValueError(f"{name} is not an attached {family.name} downstream of instance {self.name}")
        self.driver.call(self.core.import_downstream, name, family, version, tuple(records))

    # -- output ------------------------------------------------------------------------

    def apply(self, actions: Iterable[Action]) -> None:
        for action in actions:
            if isinstance(action, SendQuery):
                self._sender.send_query(action)
            elif isinstance(action, SendReport):
                self._sender.send_report(action)
            elif isinstance(action, ForwardingChanged):
                self._changed_groups[(action.family, action.group)] = None
                if self._flush_call is None or not self._flush_call.active():
                    self._flush_call = self._clock.callLater(0, self._flush_forwarding)
                self._on_change(action.family, action.group)
            elif isinstance(action, QuerierChanged):
                log.info("querier_changed instance=%s interface=%s family=%s querier=%s other=%s",
                         self.name, action.interface, action.family.name, action.is_querier,
                         action.other_querier)
            elif isinstance(action, Trace):
                log.log(logging.WARNING if action.warning else logging.DEBUG,
                        "engine_%s instance=%s %s", action.event, self.name,
                        " ".join(f"{k}={v}" for k, v in action.fields))

    def _flush_forwarding(self) -> None:
        """Hand the groups changed in this reactor turn to the plane, in one call."""
        changed, self._changed_groups = list(self._changed_groups), {}
        if self.forwarding is None or not changed:
            return
        try:
            self.forwarding.groups_changed(changed)
        except McproxyError as exc:
            log.error("forwarding_update_failed instance=%s groups=%d error=%s", self.name, len(changed), exc)

    def _age(self) -> None:
        if self.forwarding is not None:
            self.forwarding.age(self._clock.seconds())
        self._ageing_call = self._clock.callLater(AGEING_INTERVAL, self._age)
