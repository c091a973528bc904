"""ProxyInstance: one RFC 4605 proxy (one upstream tunnel, N downstreams) on the reactor.

The IO shell around ``membership.InstanceCore``: it decides which interfaces
the instance has and when they come and go, and feeds inbound messages and
context transfers to the core. Its collaborators do the rest:
``InterfaceAttachments`` gives interfaces to the data plane
(``dataplane.port.InstancePlane``, which reads the core's decisions through
``InstanceView``) and the packet sockets, all or nothing;
``ActionDispatcher`` carries out the core's actions; ``SourceAgeing`` asks
the plane to forget idle sources. Interfaces named in the configuration that
do not exist yet are waited for, not fatal. A downstream that regains
carrier (e.g. an access point's link when a mobile node arrives) is queried
again at once, as at start-up; its state is kept across the outage. An
upstream that comes back (carrier regained, or attached again after it went
down or was deleted) gets the whole database reported on it within
``UPSTREAM_RETURN_REPORT_INTERVAL``. An interface deleted and created again
(a new ifindex under the same name) is released and attached afresh.
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
from mcproxy_pmip.membership.actions import Action
from mcproxy_pmip.membership.budget import StateBudget
from mcproxy_pmip.membership.instance import InstanceCore
from mcproxy_pmip.membership.query import Query, query_from_wire
from mcproxy_pmip.membership.timers import HostOptions
from mcproxy_pmip.proxy.ageing import SourceAgeing
from mcproxy_pmip.proxy.attachments import InterfaceAttachments
from mcproxy_pmip.proxy.dispatch import ActionDispatcher
from mcproxy_pmip.proxy.forwarding_view import InstanceView
from mcproxy_pmip.proxy.receiver import Inbound, ReportReceived
from mcproxy_pmip.proxy.sender import Sender
from mcproxy_pmip.proxy.timer_driver import TimerDriver
from mcproxy_pmip.wire.records import GroupRecord

log = logging.getLogger(__name__)

#: an upstream back in service reports the whole database within this many seconds (a General Query's
#: Max Resp Time)
UPSTREAM_RETURN_REPORT_INTERVAL = 1.0


class ProxyInstance:
    """One proxy instance. ``lookup(name)`` answers from the interface monitor;
    ``packets`` maps a family to its packet socket; ``on_change(family, group)``
    hears merged membership changes (for plugins)."""

    def __init__(self, config: InstanceConfig, families: frozenset[Family], plane: DataPlane,
                 clock: IReactorTime, sender: Sender, packets: dict[Family, PacketSocket],
                 lookup: Callable[[str], InterfaceInfo | None],
                 rng: random.Random, on_change: Callable[[Family, object], None] = lambda f, g: None,
                 budget: StateBudget | None = None) -> None:
        self.config = config
        self.name = config.name
        self.families = families
        self._plane = plane
        self._clock = clock
        self._lookup = lookup
        selection = "all" if config.upstream_forwarding is RuleMatching.ALL else "first"
        self.core = InstanceCore(
            config.name, config.upstreams, RuleFilterPolicy.for_instance(config),
            config.router_options(),
            HostOptions(robustness=config.timers.robustness,
                        unsolicited_report_interval=config.timers.unsolicited_report_interval),
            rng, upstream_selection=selection,
            budget=(budget or StateBudget.daemon()).child(
                config.limits.max_instance_groups, config.limits.max_instance_sources, "instance"))
        self._interfaces = InterfaceAttachments(config.name, families, packets)
        self._dispatcher = ActionDispatcher(config.name, clock, sender, lambda: self.forwarding, on_change)
        self._ageing = SourceAgeing(clock, lambda: self.forwarding)
        self.driver = TimerDriver(clock, self.core, self.apply)
        self.downstreams: list[str] = list(config.downstreams)

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def forwarding(self) -> InstancePlane | None:
        return self._interfaces.forwarding

    @property
    def attached(self) -> set[str]:
        return self._interfaces.attached

    @property
    def table(self) -> int | None:
        return self.forwarding.table if self.forwarding is not None else None

    def start(self) -> None:
        self._interfaces.open(self._plane, self.config.table, InstanceView(self.core))
        for name in self.config.upstreams + tuple(self.downstreams):
            self.interface_changed(name)
        self._ageing.start()
        log.info("instance_started name=%s table=%s upstreams=%s downstreams=%s", self.name,
                 self.table, ",".join(self.config.upstreams), ",".join(self.downstreams))

    def stop(self) -> None:
        """Remove the instance's forwarding state at once, then leave its groups upstream."""
        self._interfaces.close()
        for name in list(self.downstreams):
            self._detach_downstream(name)
        self.driver.cancel()
        self._ageing.stop()
        self._dispatcher.cancel()
        self._interfaces.release_all()
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
        if info is not None and self._interfaces.replaced(name, info.ifindex):
            log.info("interface_recreated instance=%s interface=%s old_ifindex=%d ifindex=%d", self.name, name,
                     self._interfaces.ifindex_of(name), info.ifindex)
            self._lose(name)
        usable = info is not None and info.up
        carrier_regained = usable and self._interfaces.note_carrier(name, info.running)
        if usable and name not in self.attached:
            self._attach(name, info)
        elif carrier_regained and name in self.downstreams:
            log.info("carrier_regained instance=%s interface=%s", self.name, name)
            for family in sorted(self.families):
                if (name, family) in self.core.downstreams:
                    self.driver.call(self.core.restart_downstream, name, family)
        elif carrier_regained and name in self.core.upstreams:
            log.info("carrier_regained instance=%s interface=%s", self.name, name)
            self._report_upstream(name)
        elif not usable and name in self.attached:
            log.info("interface_lost instance=%s interface=%s", self.name, name)
            self._lose(name)
        elif not usable:
            log.info("interface_waiting instance=%s interface=%s", self.name, name)
        if usable and name in self.attached and name in self.downstreams:
            self._update_own_addresses(name, info)

    def _attach(self, name: str, info: InterfaceInfo) -> None:
        downstream = name in self.downstreams
        self._interfaces.attach(name, info.ifindex, Role.DOWNSTREAM if downstream else Role.UPSTREAM)
        if downstream:
            for family in sorted(self.families):
                self.driver.call(self.core.add_downstream, name, family, _own_address(info, family))
        else:
            self._report_upstream(name)
        if downstream:
            self._dispatcher.update_soon()
        else:
            self.forwarding.refresh()
        log.info("interface_attached instance=%s interface=%s role=%s ifindex=%d", self.name, name,
                 "downstream" if downstream else "upstream", info.ifindex)

    def _lose(self, name: str) -> None:
        if name in self.downstreams:
            self._detach_downstream(name)
        else:
            self._interfaces.release(name)

    def _report_upstream(self, name: str) -> None:
        """An upstream (back) in service: report the whole database on it soon, as to a General Query
        (what was sent while it was down or gone was lost; the router may have forgotten us). Nothing
        when the upstream's host state is empty (a daemon starting: its first changes go out at once)."""
        for family in sorted(self.families):
            if not any(True for _ in self.core.host(name, family).groups()):
                continue
            query = Query(family.newest_version, family.unspecified, UPSTREAM_RETURN_REPORT_INTERVAL)
            self.driver.call(self.core.handle_query, name, family, query)

    def _update_own_addresses(self, name: str, info: InterfaceInfo) -> None:
        """A downstream's addresses may come after the link: the querier election follows them."""
        for family in sorted(self.families):
            if (name, family) not in self.core.downstreams:
                continue
            router = self.core.router(name, family)
            own = _own_address(info, family)
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
        self._interfaces.release(name)

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
        self._interfaces.release(name)

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

    def hold_records(self, key: str, family: Family, records: Sequence[GroupRecord]) -> None:
        """Join ``records`` upstream for a mobile node not here yet (``InstanceCore.hold``)."""
        if family not in self.families:
            raise ValueError(f"instance {self.name} does not serve {family.name}")
        self.driver.call(self.core.hold, key, family, tuple(records))

    def release_records(self, key: str) -> None:
        self.driver.call(self.core.release, key)

    def commit_forwarding(self) -> None:
        """Give the plane the forwarding changes made so far in this turn, now."""
        self._dispatcher.flush_now()

    # -- output ------------------------------------------------------------------------

    def apply(self, actions: Iterable[Action]) -> None:
        self._dispatcher.apply(actions)


def _own_address(info: InterfaceInfo, family: Family):
    """The address a downstream's querier speaks from: primary IPv4, or IPv6 link-local."""
    return info.primary_ipv4 if family is Family.IPV4 else info.ipv6_link_local
