"""The MRT / MRT6 data plane: the kernel's multicast routing, behind the data-plane port.

Facts this plane is built on: the first packet of an unknown (S,G) makes the
kernel queue it and send a NOCACHE upcall on the table's mroute socket;
installing the MFC entry releases the queue. Every (S,G) seen gets an entry,
with no outputs while nobody wants it, so the kernel stops asking. When the
decisions for G change, every entry of G is recomputed at once, so data that
already flows reaches a new member immediately (mcproxy's defect: it waited
for the entry to expire). Entries whose kernel packet counter does not move
for ``IDLE_INTERVAL`` are deleted (source ageing).

Limits, stated: 32 vifs per table (``MAXVIFS`` / ``MAXMIFS``); asking for one
more raises ``PlaneLimitReached`` naming the nftables plane, and leaves the
interface unattached. One table per instance: a configured number, the
kernel's default table for a lone configured instance (mcproxy's behaviour),
else the lowest number from ``AUTO_TABLE_BASE`` that neither the
configuration, another instance nor the kernel uses (any rule naming it, or
MFC entries in it: ``mrules.tables_in_use``; a table another process holds
is skipped at ``MRT_INIT``); numbered tables get one iif and one oif rule
per interface (``ip mrule``). The numbered tables a run uses are recorded in
a state file (``kernel.statefile``) before use: after ``kill -9``, the next
start clears exactly those and the configured ones, never a table named
only by someone else's rule. Needs a kernel built with
``CONFIG_IP_MROUTE`` / ``CONFIG_IPV6_MROUTE`` (and ``..._MULTIPLE_TABLES``).
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable, Iterable

from mcproxy_pmip.addresses import Family, IPAddress
from mcproxy_pmip.dataplane.choice import missing_mroute
from mcproxy_pmip.dataplane.port import (ForwardingView, PlaneLimitReached, PlaneUnavailable, Reader, Role,
                                         RouteBudget, RouteQuota, RouteRow)
from mcproxy_pmip.errors import KernelError
from mcproxy_pmip.kernel import leftovers, mrules, statefile
from mcproxy_pmip.kernel.counters import SourceAgeing, read_sg_counters
from mcproxy_pmip.kernel.mfc import MfcEntry, MfcTable
from mcproxy_pmip.kernel.mroute import MrouteSocket
from mcproxy_pmip.kernel.upcalls import NoCache, WholePacket, WrongVif
from mcproxy_pmip.kernel.vifs import VifLimitReached, VifTable

log = logging.getLogger(__name__)

#: first table number handed to instances that name none (when the default table cannot serve)
AUTO_TABLE_BASE = 1000
#: an (S,G) entry whose packet counter did not move for this long is deleted
IDLE_INTERVAL = 180.0
#: state files (``kernel.statefile``) of the numbered tables a run uses, so a restart after a crash
#: clears those and no other
STATE_KIND = "mroute"
#: how many automatic table numbers held by other processes are skipped before giving up
MAX_BUSY_TABLES = 64


class FamilyRouting:
    """The vifs, rules and MFC entries of one instance and one family (one mroute socket)."""

    def __init__(self, family: Family, table: int | None, view: ForwardingView,
                 quota: RouteQuota | None = None) -> None:
        self.family = family
        self.quota = quota if quota is not None else RouteBudget().quota("")
        self.table = table
        self._view = view
        self.socket = MrouteSocket(family, table)
        self.vifs = VifTable(self.socket)
        self.mfc = MfcTable(self.socket)
        self._rules: dict[str, list[mrules.Mrule]] = {}
        self._ageing = SourceAgeing(lambda s, g: read_sg_counters(self.socket, s, g))
        self.upcalls_seen = 0

    def add_interface(self, name: str, ifindex: int) -> None:
        """Give ``name`` a vif (and, in a numbered table, its iif/oif rules); all or nothing.

        An interface known under another ifindex (deleted and created again)
        is taken out first: its old vif is stale.
        """
        known = self.vifs.ifindex_of(name)
        if known == ifindex:
            return
        if known is not None:
            self.remove_interface(name)
        try:
            self.vifs.add(name, ifindex)
        except VifLimitReached as exc:
            raise PlaneLimitReached("mroute", name, f"{exc}; the nftables data plane "
                                    "(--data-plane nftables) has no such limit") from exc
        if self.table is not None:
            try:
                self._rules[name] = [mrules.add_mrule(self.family, self.table, iif=name),
                                     mrules.add_mrule(self.family, self.table, oif=name)]
            except KernelError:
                self._drop_rules(name)
                self.vifs.remove(name)
                raise

    def remove_interface(self, name: str) -> None:
        """Take ``name`` out of every entry, then release its vif and rules."""
        vif = self.vifs.vif_of(name)
        if vif is not None:
            self.mfc.without_vif(vif)
            try:
                self.vifs.remove(name)
            except KernelError as exc:
                log.warning("vif_remove_failed interface=%s error=%s", name, exc)
        self._drop_rules(name)

    def _drop_rules(self, name: str) -> None:
        for rule in self._rules.pop(name, []):
            try:
                mrules.delete_mrule(rule)
            except KernelError as exc:
                log.warning("mrule_delete_failed rule=%s error=%s", rule, exc)

    def read_upcalls(self) -> None:
        for upcall in self.socket.read_upcalls():
            self.upcalls_seen += 1
            iif = self.vifs.interface_of(upcall.vif)
            if isinstance(upcall, NoCache):
                if iif is None:
                    log.debug("upcall_unknown_vif vif=%d source=%s group=%s", upcall.vif, upcall.source,
                              upcall.group)
                    continue
                if self.mfc.get(upcall.source, upcall.group) is None:
                    self.quota.track(self.family, len(self.mfc))
                    if not self.quota.admit(self.family):
                        continue
                self._install(upcall.source, upcall.group, iif, upcall.vif)
            elif isinstance(upcall, WrongVif):
                log.info("upcall_wrong_vif family=%s vif=%d interface=%s source=%s group=%s",
                         self.family.name, upcall.vif, iif, upcall.source, upcall.group)
            elif isinstance(upcall, WholePacket):
                log.info("upcall_whole_packet family=%s vif=%d source=%s group=%s bytes=%d",
                         self.family.name, upcall.vif, upcall.source, upcall.group, len(upcall.packet))

    def _install(self, source: IPAddress, group: IPAddress, iif: str, iif_vif: int) -> MfcEntry:
        outputs = self._view.outputs(self.family, source, group, iif) - {iif}
        oif_vifs = {v for v in (self.vifs.vif_of(name) for name in outputs) if v is not None}
        return self.mfc.install(source, group, iif_vif, oif_vifs)

    def refresh_group(self, group: IPAddress) -> None:
        for entry in self.mfc.of_group(group):
            self._refresh(entry)

    def refresh_all(self) -> None:
        for entry in self.mfc:
            self._refresh(entry)

    def _refresh(self, entry: MfcEntry) -> None:
        iif = self.vifs.interface_of(entry.iif_vif)
        if iif is None:
            self.mfc.remove(entry.source, entry.group)
            return
        self._install(entry.source, entry.group, iif, entry.iif_vif)

    def age(self, now: float) -> None:
        self.begin_ageing(now)
        self.age_step(max(1, len(self.mfc)))

    def begin_ageing(self, now: float) -> None:
        self._ageing.begin(now, [(entry.source, entry.group) for entry in self.mfc])

    def age_step(self, budget: int) -> bool:
        """Read up to ``budget`` counters of the sweep (one ioctl each), delete the idle entries; True when done."""
        idle, done = self._ageing.step(budget, IDLE_INTERVAL)
        for source, group in idle:
            self.mfc.remove(source, group)
            log.debug("mfc_aged source=%s group=%s", source, group)
        self.quota.track(self.family, len(self.mfc))
        return done

    def rows(self) -> list[RouteRow]:
        rows = []
        for entry in self.mfc:
            try:
                counts = read_sg_counters(self.socket, entry.source, entry.group)
                packets, octets = counts.packets, counts.bytes
            except KernelError:
                packets = octets = None
            rows.append(RouteRow(self.family, entry.group, entry.source, self.vifs.interface_of(entry.iif_vif),
                                 tuple(sorted(filter(None, (self.vifs.interface_of(v) for v in entry.oif_vifs)))),
                                 packets, octets))
        return rows

    def close(self) -> None:
        """Delete our rules, then MRT_DONE (the kernel drops the vifs and entries)."""
        for name in list(self._rules):
            self._drop_rules(name)
        self.socket.close()


class MrouteInstancePlane:
    """``InstancePlane`` of one instance: one ``FamilyRouting`` per family, one table."""

    def __init__(self, name: str, families: frozenset[Family], table: int | None, view: ForwardingView,
                 on_close: Callable[[], None] = lambda: None, quota: RouteQuota | None = None) -> None:
        self.name = name
        self.quota = quota if quota is not None else RouteBudget().quota(name)
        self._ageing_left: list[FamilyRouting] = []
        self.table = table
        self._on_close = on_close
        self.families: dict[Family, FamilyRouting] = {}
        try:
            for family in sorted(families):
                self.families[family] = FamilyRouting(family, table, view, self.quota)
        except KernelError:
            self.close()
            raise

    def add_interface(self, name: str, ifindex: int, role: Role) -> None:
        done = []
        try:
            for routing in self.families.values():
                routing.add_interface(name, ifindex)
                done.append(routing)
        except Exception:
            for routing in done:
                routing.remove_interface(name)
            raise

    def remove_interface(self, name: str) -> None:
        for routing in self.families.values():
            routing.remove_interface(name)

    def interfaces(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for routing in self.families.values():
            found.update({vif.interface: vif.index for vif in routing.vifs})
        return found

    def groups_changed(self, keys: Iterable[tuple[Family, IPAddress]]) -> None:
        for family, group in keys:
            routing = self.families.get(family)
            if routing is not None:
                routing.refresh_group(group)

    def refresh(self) -> None:
        for routing in self.families.values():
            routing.refresh_all()

    def age(self, now: float) -> None:
        for routing in self.families.values():
            routing.age(now)

    def begin_ageing(self, now: float) -> None:
        """A sweep in steps (``port.SteppedAgeing``): each step reads one family's next counters."""
        for routing in self.families.values():
            routing.begin_ageing(now)
        self._ageing_left = list(self.families.values())

    def age_step(self, budget: int) -> bool:
        if self._ageing_left and self._ageing_left[0].age_step(budget):
            self._ageing_left.pop(0)
        return not self._ageing_left

    def routes(self) -> list[RouteRow]:
        return [row for routing in self.families.values() for row in routing.rows()]

    def readers(self) -> list[Reader]:
        return [Reader(f"upcalls-{self.name}-{family.name}", routing.socket.fileno, routing.read_upcalls)
                for family, routing in self.families.items()]

    def counters(self) -> dict[str, int]:
        found = {}
        for family, routing in self.families.items():
            prefix = f"{family.protocol.lower()}_upcalls"
            found[prefix] = routing.upcalls_seen
            found[f"{prefix}_malformed"] = routing.socket.malformed_upcalls
        return {**found, **self.quota.counters()}

    def close(self) -> None:
        for routing in self.families.values():
            try:
                routing.close()
            except KernelError as exc:
                log.warning("routing_close_failed instance=%s error=%s", self.name, exc)
        self.families.clear()
        self.quota.budget.closed(self.quota)
        self._on_close()


class MroutePlane:
    """``DataPlane`` over MRT / MRT6. ``default_table``: a lone configured instance without a
    table number uses the kernel's default table, as mcproxy does. ``probe_tables(family)``
    answers which table numbers the kernel already uses (``mrules.tables_in_use``)."""

    name = "mroute"
    max_interfaces: int | None = 32

    def __init__(self, families: frozenset[Family], default_table: bool = False,
                 probe_tables: Callable[[Family], set[int]] = mrules.tables_in_use) -> None:
        self.families = families
        self.default_table = default_table
        self.routes = RouteBudget()
        self._probe_tables = probe_tables
        self._tables: dict[str, int | None] = {}
        self._configured: set[int] = set()
        self._recorded = False

    def start(self, configured_tables: Iterable[int]) -> None:
        """Probe MRT (a clear error on kernels without it), then clear our leftovers.

        Ours are the configured tables and the tables a crashed run of this
        daemon recorded (``STATE_KIND`` state files of dead processes); no
        other table is flushed, and only our rules (protocol mark) in them
        are deleted.
        """
        self._configured = set(configured_tables)
        missing = missing_mroute(self.families)
        if missing is not None:
            raise PlaneUnavailable("mroute", f"the kernel has no multicast routing ({missing})",
                                   "use --data-plane nftables or auto")
        found = {(family, table) for table in self._configured for family in self.families}
        crashed = []
        try:
            for state in statefile.found(STATE_KIND):
                if not state.alive:
                    found.update(recorded_tables(state.data, self.families))
                    crashed.append(state.path)
        except KernelError as exc:
            log.warning("mroute_state_read_failed error=%s consequence=only the configured tables are cleared", exc)
        cleared = leftovers.clear(sorted(found))
        for rule in cleared.mrules:
            log.info("leftover_removed rule=%s", rule)
        for path in crashed:
            try:
                statefile.remove(path)
            except KernelError as exc:
                log.warning("mroute_state_remove_failed path=%s error=%s", path, exc)
                continue
            log.info("leftover_state_removed path=%s", path)

    def _table(self, table: int | None, skip: set[int]) -> int | None:
        if table is not None:
            return table
        if self.default_table and None not in self._tables.values():
            return None
        used = self._configured | {t for t in self._tables.values() if t is not None} | skip
        for family in sorted(self.families):
            try:
                used |= self._probe_tables(family)
            except KernelError as exc:
                log.warning("mroute_table_probe_failed family=%s error=%s", family.name, exc)
        number = AUTO_TABLE_BASE
        while number in used:
            number += 1
        return number

    def open_instance(self, name: str, families: frozenset[Family], table: int | None,
                      view: ForwardingView) -> MrouteInstancePlane:
        """The instance's table: ``table``, or one chosen; a chosen table another process holds is skipped."""
        busy: set[int] = set()
        while True:
            chosen = self._table(table, busy)
            self._tables[name] = chosen
            self._record()
            try:
                return MrouteInstancePlane(name, families, chosen, view, on_close=lambda: self._closed(name),
                                           quota=self.routes.quota(name))
            except KernelError as exc:
                self._tables.pop(name, None)
                self._record()
                if table is not None or chosen is None or exc.errno != errno.EADDRINUSE \
                        or len(busy) >= MAX_BUSY_TABLES:
                    raise
                log.info("mroute_table_busy instance=%s table=%d action=next", name, chosen)
                busy.add(chosen)

    def _closed(self, name: str) -> None:
        self._tables.pop(name, None)
        self._record()

    def _record(self) -> None:
        """Write the numbered tables in use to our state file, before the kernel has them."""
        numbers = sorted({t for t in self._tables.values() if t is not None} | self._configured)
        try:
            statefile.write(STATE_KIND, {"tables": [[family.value, number] for number in numbers
                                                    for family in sorted(self.families)]})
        except KernelError as exc:
            log.warning("mroute_state_write_failed error=%s consequence=after a crash the next start "
                        "clears only the configured tables", exc)
            return
        self._recorded = True

    def close(self) -> None:
        self._tables.clear()
        if self._recorded:
            try:
                statefile.remove(statefile.own_path(STATE_KIND))
            except KernelError as exc:
                log.warning("mroute_state_remove_failed error=%s", exc)
            self._recorded = False


def recorded_tables(data: dict, families: frozenset[Family]) -> set[tuple[Family, int]]:
    """The (family, table) pairs of a state file's ``tables`` list, for the families in ``families``."""
    found = set()
    for entry in data.get("tables", []):
        try:
            family, number = Family(int(entry[0])), int(entry[1])
        except (ValueError, TypeError, IndexError):
            log.warning("mroute_state_entry_ignored entry=%r", entry)
            continue
        if family in families:
            found.add((family, number))
    return found
