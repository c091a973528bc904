"""ProxyInstance: one RFC 4605 proxy (one upstream tunnel, N downstreams) on the reactor.

The IO shell around ``membership.InstanceCore``: it gives each interface its
vifs and rules (``Routing``, one per family and the instance's table), joins
224.0.0.22 / 224.0.0.2 and ff02::16 / ff02::2 on downstreams so reports reach
the raw sockets (DESIGN.md), feeds inbound messages and upcalls to the core,
and carries out the core's actions: packets through the ``Sender``, MFC
recomputation on ``ForwardingChanged``, traces to the log. Interfaces named in
the configuration that do not exist yet are waited for, not fatal. A downstream
that regains carrier (e.g. an access point's link when a mobile node arrives)
is queried again at once, as at start-up; its state is kept across the outage.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterable, Sequence

from twisted.internet.interfaces import IReactorTime

from mcproxy_pmip.addresses import (ALL_MLDV2_ROUTERS, ALL_ROUTERS_V4, ALL_ROUTERS_V6, ALL_V3_ROUTERS,
                                    Family)
from mcproxy_pmip.config.filters import RuleFilterPolicy
from mcproxy_pmip.config.model import InstanceConfig, RuleMatching
from mcproxy_pmip.errors import KernelError
from mcproxy_pmip.kernel.interfaces import InterfaceInfo
from mcproxy_pmip.membership.actions import (Action, ForwardingChanged, QuerierChanged, SendQuery,
                                             SendReport, Trace)
from mcproxy_pmip.membership.instance import InstanceCore
from mcproxy_pmip.membership.timers import HostOptions
from mcproxy_pmip.proxy.receiver import Inbound, ReportReceived
from mcproxy_pmip.proxy.routing import Routing
from mcproxy_pmip.proxy.sender import Sender
from mcproxy_pmip.proxy.timer_driver import TimerDriver
from mcproxy_pmip.wire.records import GroupRecord

log = logging.getLogger(__name__)

#: groups joined on every downstream so the raw sockets see reports and leaves
REPORT_GROUPS = {Family.IPV4: (ALL_V3_ROUTERS, ALL_ROUTERS_V4),
                 Family.IPV6: (ALL_MLDV2_ROUTERS, ALL_ROUTERS_V6)}

#: how often kernel counters are read for source ageing, and how long an idle entry lives
AGEING_INTERVAL = 60.0
IDLE_INTERVAL = 180.0


class ProxyInstance:
    """One proxy instance. ``lookup(name)`` answers from the interface monitor;
    ``sockets`` maps a family to its raw IGMP / MLD socket; ``on_change(family, group)``
    hears merged membership changes (for plugins)."""

    def __init__(self, config: InstanceConfig, families: frozenset[Family], table: int | None,
                 clock: IReactorTime, sender: Sender, sockets: dict, lookup: Callable[[str], InterfaceInfo | None],
                 rng: random.Random, on_change: Callable[[Family, object], None] = lambda f, g: None) -> None:
        self.config = config
        self.name = config.name
        self.families = families
        self.table = table
        self._clock = clock
        self._sender = sender
        self._sockets = sockets
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
        self.routing: dict[Family, Routing] = {}
        self.downstreams: list[str] = list(config.downstreams)
        self.attached: set[str] = set()
        self._carrier: dict[str, bool] = {}  # IFF_RUNNING of usable interfaces, as last seen
        self._ageing_call = None

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        for family in sorted(self.families):
            self.routing[family] = Routing(family, self.table, self._decider(family))
        for name in self.config.upstreams + tuple(self.downstreams):
            self.interface_changed(name)
        self._ageing_call = self._clock.callLater(AGEING_INTERVAL, self._age)
        log.info("instance_started name=%s table=%s upstreams=%s downstreams=%s", self.name,
                 self.table, ",".join(self.config.upstreams), ",".join(self.downstreams))

    def stop(self) -> None:
        for name in list(self.downstreams):
            self._detach_downstream(name)
        self.driver.cancel()
        if self._ageing_call is not None and self._ageing_call.active():
            self._ageing_call.cancel()
        for routing in self.routing.values():
            try:
                routing.close()
            except KernelError as exc:
                log.warning("routing_close_failed instance=%s error=%s", self.name, exc)
        self.routing.clear()
        self.attached.clear()
        log.info("instance_stopped name=%s", self.name)

    def _decider(self, family: Family):
        return lambda source, group, iif: self.core.outputs(family, source, group, iif)

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
                self._release_vifs(name)
        elif not usable:
            log.info("interface_waiting instance=%s interface=%s", self.name, name)
        if usable and name in self.attached and name in self.downstreams:
            self._update_own_addresses(name, info)

    def _attach(self, name: str, info: InterfaceInfo) -> None:
        try:
            for routing in self.routing.values():
                routing.add_interface(name, info.ifindex)
        except KernelError as exc:
            log.error("interface_attach_failed instance=%s interface=%s error=%s", self.name, name, exc)
            self._release_vifs(name)
            raise
        self.attached.add(name)
        if name in self.downstreams:
            for family in sorted(self.families):
                for group in REPORT_GROUPS[family]:
                    self._sockets[family].join(info.ifindex, group)
                own = info.primary_ipv4 if family is Family.IPV4 else info.ipv6_link_local
                self.driver.call(self.core.add_downstream, name, family, own)
        for routing in self.routing.values():
            routing.refresh_all()
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
        info = self._lookup(name)
        for family in sorted(self.families):
            if (name, family) in self.core.downstreams:
                self.driver.call(self.core.remove_downstream, name, family)
            if info is not None:
                for group in REPORT_GROUPS[family]:
                    try:
                        self._sockets[family].leave(info.ifindex, group)
                    except KernelError as exc:
                        log.debug("leave_failed interface=%s group=%s error=%s", name, group, exc)
        self._release_vifs(name)

    def _release_vifs(self, name: str) -> None:
        for routing in self.routing.values():
            routing.remove_interface(name)
        self.attached.discard(name)
        self._carrier.pop(name, None)

    def add_downstream(self, name: str) -> None:
        if self.owns(name):
            raise ValueError(f"{name} is already an interface of instance {self.name}")
        self.downstreams.append(name)
        self.interface_changed(name)

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
        self._release_vifs(name)

    # -- input -------------------------------------------------------------------------

    def handle_inbound(self, name: str, inbound: Inbound) -> None:
        if inbound.family not in self.families or name not in self.attached:
            return
        if isinstance(inbound, ReportReceived):
            if (name, inbound.family) in self.core.downstreams:
                self.driver.call(self.core.handle_report, name, inbound.family, inbound.version,
                                 inbound.records, inbound.source)
            return
        query = inbound.query
        if name in self.core.upstreams or (name, inbound.family) in self.core.downstreams:
            self.driver.call(self.core.handle_query, name, inbound.family, query.version, query.group,
                             query.sources, inbound.source, query.max_resp_interval,
                             query.suppress_router_processing, query.robustness, query.query_interval)

    def read_upcalls(self, family: Family) -> None:
        self.routing[family].read_upcalls()

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
                routing = self.routing.get(action.family)
                if routing is not None:
                    routing.refresh_group(action.group)
                self._on_change(action.family, action.group)
            elif isinstance(action, QuerierChanged):
                log.info("querier_changed instance=%s interface=%s family=%s querier=%s other=%s",
                         self.name, action.interface, action.family.name, action.is_querier,
                         action.other_querier)
            elif isinstance(action, Trace):
                log.log(logging.WARNING if action.warning else logging.DEBUG,
                        "engine_%s instance=%s %s", action.event, self.name,
                        " ".join(f"{k}={v}" for k, v in action.fields))

    def _age(self) -> None:
        for routing in self.routing.values():
            routing.age(self._clock.seconds(), IDLE_INTERVAL)
        self._ageing_call = self._clock.callLater(AGEING_INTERVAL, self._age)
