"""Routing: the vifs, multicast rules and MFC entries of one instance and one address family.

Data plane facts (DESIGN.md): the first packet of an unknown (S,G) makes the
kernel queue it and send a NOCACHE upcall; installing the entry releases the
queue. Every (S,G) seen gets an entry, with no outputs while nobody wants it,
so the kernel stops asking. When the membership of G changes
(``ForwardingChanged``) every entry of G is recomputed at once, so data that
already flows reaches a new member immediately (mcproxy's defect: it waited
for the entry to expire). Entries whose kernel packet counter does not move for
``idle_interval`` are deleted (source ageing).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

from mcproxy_pmip.addresses import Family, IPAddress
from mcproxy_pmip.errors import KernelError
from mcproxy_pmip.kernel import mrules
from mcproxy_pmip.kernel.counters import SourceAgeing, read_sg_counters
from mcproxy_pmip.kernel.mfc import MfcEntry, MfcTable
from mcproxy_pmip.kernel.mroute import MrouteSocket
from mcproxy_pmip.kernel.upcalls import NoCache, Upcall, WholePacket, WrongVif
from mcproxy_pmip.kernel.vifs import VifTable

log = logging.getLogger(__name__)

#: (source, group, incoming interface name) -> names of the output interfaces
Decide = Callable[[IPAddress, IPAddress, str], frozenset[str]]


class Routing:
    """Owns one MRT socket (``table`` None: the kernel's default table, no rules)."""

    def __init__(self, family: Family, table: int | None, decide: Decide) -> None:
        self.family = family
        self.table = table
        self._decide = decide
        self.socket = MrouteSocket(family, table)
        self.vifs = VifTable(self.socket)
        self.mfc = MfcTable(self.socket)
        self._rules: dict[str, list[mrules.Mrule]] = {}
        self._ageing = SourceAgeing(lambda s, g: read_sg_counters(self.socket, s, g))
        self.upcalls_seen = 0

    # -- interfaces ----------------------------------------------------------------

    def add_interface(self, name: str, ifindex: int) -> int:
        """Give ``name`` a vif (and, in a numbered table, its iif/oif rules)."""
        existing = self.vifs.vif_of(name)
        if existing is not None:
            return existing
        vif = self.vifs.add(name, ifindex)
        if self.table is not None:
            try:
                self._rules[name] = [mrules.add_mrule(self.family, self.table, iif=name),
                                     mrules.add_mrule(self.family, self.table, oif=name)]
            except KernelError:
                self._drop_rules(name)
                self.vifs.remove(name)
                raise
        return vif.index

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

    # -- entries ---------------------------------------------------------------------

    def read_upcalls(self) -> None:
        for upcall in self.socket.read_upcalls():
            self.handle_upcall(upcall)

    def handle_upcall(self, upcall: Upcall) -> None:
        self.upcalls_seen += 1
        iif = self.vifs.interface_of(upcall.vif)
        if isinstance(upcall, NoCache):
            if iif is None:
                log.debug("upcall_unknown_vif vif=%d source=%s group=%s", upcall.vif, upcall.source, upcall.group)
                return
            self._install(upcall.source, upcall.group, iif, upcall.vif)
        elif isinstance(upcall, WrongVif):
            log.info("upcall_wrong_vif family=%s vif=%d interface=%s source=%s group=%s",
                     self.family.name, upcall.vif, iif, upcall.source, upcall.group)
        elif isinstance(upcall, WholePacket):
            log.info("upcall_whole_packet family=%s vif=%d source=%s group=%s bytes=%d",
                     self.family.name, upcall.vif, upcall.source, upcall.group, len(upcall.packet))

    def _install(self, source: IPAddress, group: IPAddress, iif: str, iif_vif: int) -> MfcEntry:
        outputs = self._decide(source, group, iif) - {iif}
        oif_vifs = {v for v in (self.vifs.vif_of(name) for name in outputs) if v is not None}
        return self.mfc.install(source, group, iif_vif, oif_vifs)

    def refresh_group(self, group: IPAddress) -> None:
        """Recompute the outputs of every (S, ``group``) entry."""
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

    def age(self, now: float, idle_interval: float) -> list[tuple[IPAddress, IPAddress]]:
        """Delete entries with no new packet for ``idle_interval``; returns them."""
        keys = [(entry.source, entry.group) for entry in self.mfc]
        try:
            idle = self._ageing.sweep(now, keys, idle_interval)
        except KernelError as exc:
            log.warning("source_ageing_failed family=%s table=%s error=%s", self.family.name, self.table, exc)
            return []
        for source, group in idle:
            self.mfc.remove(source, group)
            log.debug("mfc_aged source=%s group=%s", source, group)
        return idle

    def entries(self) -> Iterator[MfcEntry]:
        return iter(self.mfc)

    def packet_count(self, entry: MfcEntry) -> int | None:
        try:
            return read_sg_counters(self.socket, entry.source, entry.group).packets
        except KernelError:
            return None

    def close(self) -> None:
        """Delete our rules, then MRT_DONE (the kernel drops the vifs and entries)."""
        for name in list(self._rules):
            self._drop_rules(name)
        self.socket.close()
