"""Multicast forwarding cache (MFC) entries of one table: add, update, delete.

An entry says: packets from ``source`` to ``group`` arriving on vif ``iif_vif``
go out on the vifs ``oif_vifs`` (RFC 4605 §4.2). IPv4 writes a ``mfcctl`` whose
``mfcc_ttls`` hold TTL threshold 1 on each outgoing vif; IPv6 writes a
``mf6cctl`` whose ``if_set`` bitmap has a bit per outgoing mif. ``MRT_ADD_MFC``
on an existing (S,G) replaces its iif and outputs, so an update is an add.
An entry with no outputs is kept too: it stops repeated NOCACHE upcalls.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from mcproxy_pmip.addresses import Family, IPAddress, family_of
from mcproxy_pmip.kernel import mroute

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class MfcEntry:
    """One (S,G) forwarding entry as installed."""

    source: IPAddress
    group: IPAddress
    iif_vif: int
    oif_vifs: frozenset[int]


class MfcTable:
    """The MFC entries this process installed in one table, mirrored in memory."""

    def __init__(self, sock: mroute.MrouteSocket) -> None:
        self._sock = sock
        self._entries: dict[tuple[IPAddress, IPAddress], MfcEntry] = {}
        self._sources: dict[IPAddress, set[IPAddress]] = {}  # group -> sources with an entry

    def _pack(self, entry: MfcEntry) -> bytes:
        if self._sock.family is Family.IPV4:
            return mroute.pack_mfcctl(entry.source, entry.group, entry.iif_vif, entry.oif_vifs)
        return mroute.pack_mf6cctl(entry.source, entry.group, entry.iif_vif, entry.oif_vifs)

    def _check(self, source: IPAddress, group: IPAddress) -> None:
        if family_of(source) is not self._sock.family or family_of(group) is not self._sock.family:
            raise ValueError(f"({source}, {group}) is not {self._sock.family.name}")
        if not group.is_multicast:
            raise ValueError(f"{group} is not a multicast group")

    def install(self, source: IPAddress, group: IPAddress, iif_vif: int, oif_vifs: Iterable[int]) -> MfcEntry:
        """Add or update (S,G); no syscall when the entry is already so. The iif never forwards."""
        self._check(source, group)
        outputs = frozenset(oif_vifs)
        if iif_vif in outputs:
            raise ValueError(f"({source}, {group}): iif vif {iif_vif} among the outputs {sorted(outputs)}")
        entry = MfcEntry(source, group, iif_vif, outputs)
        if self._entries.get((source, group)) == entry:
            return entry
        op = "MRT_ADD_MFC" if self._sock.family is Family.IPV4 else "MRT6_ADD_MFC"
        self._sock.setsockopt(op, mroute.MRT_ADD_MFC, self._pack(entry))
        self._entries[(source, group)] = entry
        self._sources.setdefault(group, set()).add(source)
        log.debug(
            "mfc_installed table=%s source=%s group=%s iif=%d oifs=%s",
            self._sock.table, source, group, iif_vif, sorted(outputs),
        )
        return entry

    def remove(self, source: IPAddress, group: IPAddress) -> MfcEntry | None:
        """Delete (S,G); None when this table had no such entry."""
        entry = self._entries.get((source, group))
        if entry is None:
            return None
        op = "MRT_DEL_MFC" if self._sock.family is Family.IPV4 else "MRT6_DEL_MFC"
        self._sock.setsockopt(op, mroute.MRT_DEL_MFC, self._pack(entry))
        del self._entries[(source, group)]
        sources = self._sources[group]
        sources.discard(source)
        if not sources:
            del self._sources[group]
        log.debug("mfc_removed table=%s source=%s group=%s", self._sock.table, source, group)
        return entry

    def without_vif(self, vif: int) -> list[MfcEntry]:
        """Before a vif goes: delete entries arriving on it, drop it from the others' outputs.

        Returns the entries that were deleted or changed (their new state when changed).
        """
        touched: list[MfcEntry] = []
        for entry in list(self._entries.values()):
            if entry.iif_vif == vif:
                self.remove(entry.source, entry.group)
                touched.append(entry)
            elif vif in entry.oif_vifs:
                touched.append(self.install(entry.source, entry.group, entry.iif_vif, entry.oif_vifs - {vif}))
        return touched

    def of_group(self, group: IPAddress) -> list[MfcEntry]:
        """The entries of ``group`` (every source), without scanning the table."""
        return [self._entries[(source, group)] for source in self._sources.get(group, ())]

    def get(self, source: IPAddress, group: IPAddress) -> MfcEntry | None:
        return self._entries.get((source, group))

    def __iter__(self) -> Iterator[MfcEntry]:
        return iter(list(self._entries.values()))

    def __len__(self) -> int:
        return len(self._entries)
