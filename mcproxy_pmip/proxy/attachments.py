"""InterfaceAttachments: an instance's place in the data plane and its packet sockets.

Holds the instance's ``InstancePlane`` while it is open, and for each
interface given to it: the plane's vif/port (``add_interface``), the packet
sockets' watch of its index, and its carrier as last seen. An interface is
attached all or nothing: when the plane refuses it (MRT's 32 vifs), nothing
of it is recorded. Membership state is not kept here (that is the core's).

An interface deleted and created again under the same name has a new
ifindex; when the monitor shows the name with an index other than the one
it was attached with (the removal and the creation may come in one batch of
link events), ``replaced`` says so and the instance releases and attaches
it again, so the plane and the packet sockets follow the new index.
"""

from __future__ import annotations

import logging

from mcproxy_pmip.addresses import Family
from mcproxy_pmip.dataplane.port import DataPlane, ForwardingView, InstancePlane, PacketSocket, Role
from mcproxy_pmip.errors import McproxyError

log = logging.getLogger(__name__)


class InterfaceAttachments:
    """The plane and packet-socket side of one instance's interfaces."""

    def __init__(self, instance: str, families: frozenset[Family], packets: dict[Family, PacketSocket]) -> None:
        self._instance = instance
        self._families = families
        self._packets = packets
        self.forwarding: InstancePlane | None = None
        self.attached: set[str] = set()
        self._carrier: dict[str, bool] = {}  # IFF_RUNNING of usable interfaces, as last seen
        self._ifindex: dict[str, int] = {}  # attached interfaces' indexes, kept for when they vanish

    def open(self, plane: DataPlane, table: int | None, view: ForwardingView) -> None:
        self.forwarding = plane.open_instance(self._instance, self._families, table, view)

    def close(self) -> None:
        """Remove the instance's forwarding state from the plane at once."""
        if self.forwarding is not None:
            self.forwarding.close()
            self.forwarding = None

    def attach(self, name: str, ifindex: int, role: Role) -> None:
        """Give ``name`` to the plane, then listen on it; a refusal raises and records nothing."""
        try:
            self.forwarding.add_interface(name, ifindex, role)
        except McproxyError as exc:
            log.error("interface_attach_failed instance=%s interface=%s error=%s", self._instance, name, exc)
            raise
        self.attached.add(name)
        self._ifindex[name] = ifindex
        for family in sorted(self._families):
            self._packets[family].watch(ifindex)

    def ifindex_of(self, name: str) -> int | None:
        """The index ``name`` was attached with; None if it is not attached."""
        return self._ifindex.get(name)

    def replaced(self, name: str, ifindex: int) -> bool:
        """True if ``name`` is attached under an index other than ``ifindex`` (deleted, then created again)."""
        known = self._ifindex.get(name)
        return known is not None and known != ifindex

    def release(self, name: str) -> None:
        """Take ``name`` out of the data plane and stop listening on it."""
        ifindex = self._ifindex.pop(name, None)
        if ifindex is not None:
            for family in sorted(self._families):
                self._packets[family].unwatch(ifindex)
        if self.forwarding is not None:
            self.forwarding.remove_interface(name)
        self.attached.discard(name)
        self._carrier.pop(name, None)

    def note_carrier(self, name: str, running: bool) -> bool:
        """Record a usable interface's carrier; True when it has just come back."""
        regained = running and not self._carrier.get(name, True)
        self._carrier[name] = running
        return regained

    def release_all(self) -> None:
        """Release every interface still attached (the instance is stopping: its upstreams)."""
        for name in list(self.attached):
            self.release(name)
