"""Virtual interfaces (IPv4 vifs, IPv6 mifs) of one multicast routing table.

Each interface that takes part in forwarding needs a vif index in its table
(``MRT_ADD_VIF`` with ``VIFF_USE_IFINDEX`` / ``MRT6_ADD_MIF``). The kernel has
``MAXVIFS`` = ``MAXMIFS`` = 32 per table and answers the 33rd with a misleading
``ENFILE``; :class:`VifTable` allocates the lowest free index and raises
:class:`VifLimitReached` with a clear message before it asks the kernel.

When an interface is deleted, the kernel drops its vif by itself
(``NETDEV_UNREGISTER``) and a later ``MRT_DEL_VIF`` answers
``EADDRNOTAVAIL``: :meth:`VifTable.remove` then forgets the vif all the same,
so an interface re-created under the same name (with a new ifindex) gets a
vif again instead of keeping a stale one.
"""

from __future__ import annotations

import errno
import logging
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from mcproxy_pmip.addresses import Family
from mcproxy_pmip.errors import KernelError
from mcproxy_pmip.kernel import mroute

log = logging.getLogger(__name__)


class VifLimitReached(KernelError):
    """All vif indices of the table are taken (``MAXVIFS`` / ``MAXMIFS``)."""

    def __init__(self, table: int | None, interface: str, limit: int) -> None:
        super().__init__(
            "MRT_ADD_VIF",
            errno.ENFILE,
            f"table {table} already has {limit} vifs, the kernel's limit per table; "
            f"cannot add {interface} (split the downstreams over several instances/tables "
            f"or attach them through a bridge)",
        )
        self.table = table
        self.interface = interface
        self.limit = limit


@dataclass(frozen=True, slots=True)
class Vif:
    """An interface installed in a table under ``index``."""

    index: int
    interface: str
    ifindex: int


def interface_index(interface: str) -> int:
    """The kernel ifindex of ``interface`` in the current network namespace."""
    try:
        return socket.if_nametoindex(interface)
    except OSError as exc:
        raise KernelError("if_nametoindex", exc.errno or errno.ENODEV, interface) from exc


class VifTable:
    """The vifs of one :class:`~mcproxy_pmip.kernel.mroute.MrouteSocket`, by interface name."""

    def __init__(self, sock: mroute.MrouteSocket, limit: int = mroute.MAXVIFS) -> None:
        self._sock = sock
        self._limit = limit
        self._by_interface: dict[str, Vif] = {}
        self._by_index: dict[int, Vif] = {}

    def add(self, interface: str, ifindex: int | None = None) -> Vif:
        """Install ``interface`` (idempotent: an installed one returns its vif).

        An interface installed under another ifindex (deleted and created
        again) has its old vif removed first.
        """
        if ifindex is None:
            ifindex = interface_index(interface)
        existing = self._by_interface.get(interface)
        if existing is not None and existing.ifindex == ifindex:
            return existing
        if existing is not None:
            log.info("vif_stale table=%s vif=%d interface=%s old_ifindex=%d ifindex=%d", self._sock.table,
                     existing.index, interface, existing.ifindex, ifindex)
            self.remove(interface)
        free = next((i for i in range(self._limit) if i not in self._by_index), None)
        if free is None:
            raise VifLimitReached(self._sock.table, interface, self._limit)
        if self._sock.family is Family.IPV4:
            self._sock.setsockopt("MRT_ADD_VIF", mroute.MRT_ADD_VIF, mroute.pack_vifctl(free, ifindex))
        else:
            self._sock.setsockopt("MRT6_ADD_MIF", mroute.MRT6_ADD_MIF, mroute.pack_mif6ctl(free, ifindex))
        vif = Vif(free, interface, ifindex)
        self._by_interface[interface] = vif
        self._by_index[free] = vif
        log.debug("vif_added table=%s vif=%d interface=%s", self._sock.table, free, interface)
        return vif

    def remove(self, interface: str) -> Vif | None:
        """Take ``interface`` out of the table; None if it was not in it.

        A vif the kernel already dropped (its device was deleted) is forgotten
        without error; any other refusal raises and keeps it.
        """
        vif = self._by_interface.get(interface)
        if vif is None:
            return None
        try:
            if self._sock.family is Family.IPV4:
                self._sock.setsockopt("MRT_DEL_VIF", mroute.MRT_DEL_VIF,
                                      mroute.pack_vifctl(vif.index, vif.ifindex))
            else:
                self._sock.setsockopt("MRT6_DEL_MIF", mroute.MRT6_DEL_MIF, struct.pack("@H", vif.index))
        except KernelError as exc:
            if exc.errno != errno.EADDRNOTAVAIL:
                raise
            log.info("vif_already_gone table=%s vif=%d interface=%s", self._sock.table, vif.index, interface)
        del self._by_interface[interface]
        del self._by_index[vif.index]
        log.debug("vif_removed table=%s vif=%d interface=%s", self._sock.table, vif.index, interface)
        return vif

    def ifindex_of(self, interface: str) -> int | None:
        """The ifindex ``interface`` was installed with; None if it is not installed."""
        vif = self._by_interface.get(interface)
        return None if vif is None else vif.ifindex

    def vif_of(self, interface: str) -> int | None:
        vif = self._by_interface.get(interface)
        return None if vif is None else vif.index

    def interface_of(self, index: int) -> str | None:
        vif = self._by_index.get(index)
        return None if vif is None else vif.interface

    def __iter__(self) -> Iterator[Vif]:
        return iter(sorted(self._by_index.values(), key=lambda vif: vif.index))

    def __len__(self) -> int:
        return len(self._by_index)
